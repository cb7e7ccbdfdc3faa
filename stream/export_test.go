package stream

import (
	"testing"
	"time"
)

// Connections returns the number of open streams (for tests; not part of
// the package's API).
func (h *Hub) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// waitLive waits until every open stream has ended its replay: from then
// on, events of different courses go out in the order they arrive. The
// replay's end has no signal of its own; this polls, bounded.
func (h *Hub) waitLive(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		live := true
		for _, c := range h.snapshot() {
			c.mu.Lock()
			live = live && c.state == stateLive
			c.mu.Unlock()
		}
		if live {
			return
		}
	}
	t.Fatal("a stream did not go live within 5s")
}
