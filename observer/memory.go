package observer

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults of the history bounds, shared by both brokers.
const (
	DefaultHistory    = 1000
	DefaultHistoryTTL = 24 * time.Hour
)

// MemoryConfig configures the embedded broker. Zero values mean the defaults.
type MemoryConfig struct {
	History       int           // events kept per course (default 1000)
	HistoryTTL    time.Duration // history dropped after this long without an event (default 24h)
	MaxEventBytes int           // largest envelope accepted (default 65536)
	Logger        *slog.Logger
	Metrics       Metrics          // nil: NopMetrics
	Now           func() time.Time // clock, for tests
}

// Memory is the embedded in-process broker: one process, no Redis. Ids are
// per course, from 1. It is safe for concurrent use.
//
// A course idle for the history TTL loses its history (lazily, when next
// read or written, or in Run's sweep). Run also forgets such a course once
// nobody listens to it: all that is left of it is its last id (a map entry
// of some 50 bytes, what Redis keeps as its seq key), so that its ids never
// start over: published to again, it goes on from that id.
type Memory struct {
	cfg MemoryConfig
	obs *Observer

	mu      sync.Mutex
	courses map[string]*memCourse
	ended   map[string]uint64 // last id of each forgotten course
}

type memCourse struct {
	mu   sync.Mutex
	dead bool // removed from Memory.courses by sweep: look the course up again
	seq  uint64
	ring []*Event // retained events: ring[(head+i)%cap], i < n
	head int
	n    int
	last time.Time // time of the last event
}

var _ Broker = (*Memory)(nil)

// NewMemory returns an empty embedded broker.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.HistoryTTL <= 0 {
		cfg.HistoryTTL = DefaultHistoryTTL
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = DefaultMaxEventBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	return &Memory{cfg: cfg, obs: NewObserver(cfg.Logger), courses: make(map[string]*memCourse), ended: make(map[string]uint64)}
}

// Observer returns the observer that fans events out to local listeners.
func (m *Memory) Observer() *Observer { return m.obs }

// course returns the state of course id, created (from its last id, if it
// was forgotten) when create is set. Without create, a course the broker
// holds no state for is nil, with its last id (0 for a new course).
func (m *Memory) course(id string, create bool) (*memCourse, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.courses[id]
	if c != nil {
		return c, 0
	}
	last := m.ended[id]
	if create {
		c = &memCourse{seq: last}
		m.courses[id] = c
		delete(m.ended, id)
	}
	return c, last
}

// Publish implements Broker.
func (m *Memory) Publish(_ context.Context, msg Message) (*Event, error) {
	began := time.Now()
	data, err := msg.Normalize()
	if err != nil {
		return nil, err
	}
	now := m.cfg.Now()
	c := m.lockCourse(msg.CourseID)
	defer c.mu.Unlock()
	ev, err := NewEvent(msg, data, c.seq+1, now.UnixMilli(), m.cfg.MaxEventBytes)
	if err != nil {
		return nil, err
	}
	c.seq = ev.ID
	m.expire(c, now)
	c.push(ev, m.cfg.History)
	c.last = now
	// Announce under the course lock: listeners see ids in order, and a
	// History call that starts after this returns includes ev.
	m.obs.Emit(ev)
	m.cfg.Metrics.Received()
	m.cfg.Metrics.Published(time.Since(began))
	return ev, nil
}

// lockCourse returns the course, created if needed, locked and live.
func (m *Memory) lockCourse(id string) *memCourse {
	for {
		c, _ := m.course(id, true)
		c.mu.Lock()
		if !c.dead {
			return c
		}
		c.mu.Unlock()
	}
}

func (c *memCourse) push(ev *Event, capacity int) {
	if c.n < capacity { // not full yet: head is 0 and len(ring) == n
		c.ring = append(c.ring, ev)
		c.n++
		return
	}
	c.ring[c.head] = ev
	c.head = (c.head + 1) % len(c.ring)
}

// expire drops the history of a course idle for longer than the TTL.
func (m *Memory) expire(c *memCourse, now time.Time) {
	if c.n > 0 && now.Sub(c.last) >= m.cfg.HistoryTTL {
		c.ring, c.head, c.n = nil, 0, 0
	}
}

// History implements Broker.
func (m *Memory) History(_ context.Context, courseID string, after uint64, limit int) (Page, error) {
	c, last := m.course(courseID, false)
	if c == nil {
		return Page{LastID: last, Reset: after != last}, nil
	}
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m.expire(c, m.cfg.Now())
	p := Page{LastID: c.seq}
	oldest := c.seq - uint64(c.n) + 1 // c.seq+1 when nothing is retained
	switch {
	case after > c.seq || after+1 < oldest:
		p.Reset = after != c.seq
		return p, nil
	case after == c.seq:
		return p, nil
	}
	start := int(after + 1 - oldest)
	count := min(c.n-start, limit)
	p.Events = make([]*Event, count)
	for i := range count {
		p.Events[i] = c.ring[(c.head+start+i)%len(c.ring)]
	}
	return p, nil
}

// LastID implements Broker.
func (m *Memory) LastID(_ context.Context, courseID string) (uint64, error) {
	c, last := m.course(courseID, false)
	if c == nil {
		return last, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, nil
}

// LastIDs implements Broker.
func (m *Memory) LastIDs(ctx context.Context, courseIDs []string) ([]uint64, error) {
	ids := make([]uint64, len(courseIDs))
	for i, c := range courseIDs {
		id, err := m.LastID(ctx, c)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

// Subscribe implements Broker. The registration is effective at once. It
// holds the course map's lock so that a sweep either sees the listener or
// forgets the course before the caller reads its position.
func (m *Memory) Subscribe(_ context.Context, courseID string, l Listener) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.obs.Subscribe(courseID, l), nil
}

// Run frees the history of courses idle for longer than the history TTL,
// and forgets those that nobody listens to, until ctx ends.
func (m *Memory) Run(ctx context.Context) error {
	every := min(m.cfg.HistoryTTL/4, time.Minute)
	t := time.NewTicker(max(every, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep drops expired history everywhere and forgets idle courses without
// listeners.
func (m *Memory) sweep() {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, c := range m.courses {
		c.mu.Lock()
		if now.Sub(c.last) >= m.cfg.HistoryTTL {
			m.expire(c, now)
			if m.obs.Listeners(id) == 0 {
				c.dead = true
				delete(m.courses, id)
				if c.seq > 0 {
					m.ended[id] = c.seq
				}
			}
		}
		c.mu.Unlock()
	}
}
