package observer

// Counts the tests read; they are not part of the package's API.

// Courses returns how many courses the broker holds state for.
func (m *Memory) Courses() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.courses)
}

// Retained returns how many events of courseID are held in memory.
func (m *Memory) Retained(courseID string) int {
	c, _ := m.course(courseID, false)
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Total returns the number of listeners of all courses.
func (o *Observer) Total() int {
	n := 0
	for _, id := range o.Courses() {
		n += o.Listeners(id)
	}
	return n
}

// Courses returns the ids of the courses that have listeners, in no order.
func (o *Observer) Courses() []string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	ids := make([]string, 0, len(o.courses))
	for id := range o.courses {
		ids = append(ids, id)
	}
	return ids
}
