package stream

// Connections returns the number of open streams (for tests; not part of
// the package's API).
func (h *Hub) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}
