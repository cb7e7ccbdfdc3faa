package observer

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
)

func publishN(t testing.TB, b Broker, course string, n int) []*Event {
	t.Helper()
	evs := make([]*Event, n)
	for i := range n {
		ev, err := b.Publish(context.Background(), Message{CourseID: course, Type: "chapter-update-complete", Data: json.RawMessage(`{"chapterId":"ch"}`)})
		if err != nil {
			t.Fatal(err)
		}
		evs[i] = ev
	}
	return evs
}

func ids(evs []*Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func TestMemorySequencePerCourse(t *testing.T) {
	t.Parallel()
	m := NewMemory(MemoryConfig{Logger: quietLogger()})
	a := publishN(t, m, "a", 3)
	b := publishN(t, m, "b", 2)
	if got := ids(a); got[0] != 1 || got[2] != 3 {
		t.Fatalf("course a ids %v", got)
	}
	if got := ids(b); got[0] != 1 || got[1] != 2 {
		t.Fatalf("course b ids %v", got)
	}
	if last, _ := m.LastID(context.Background(), "a"); last != 3 {
		t.Fatalf("LastID = %d", last)
	}
	if last, _ := m.LastID(context.Background(), "none"); last != 0 {
		t.Fatalf("LastID of unknown course = %d", last)
	}
}

func TestMemoryRejectsInvalidAndStoresNothing(t *testing.T) {
	t.Parallel()
	m := NewMemory(MemoryConfig{Logger: quietLogger(), MaxEventBytes: 200})
	ctx := context.Background()
	for _, msg := range []Message{
		{CourseID: "c", Type: "BAD"},
		{CourseID: "c", Type: "t", Data: json.RawMessage(`{`)},
		{CourseID: "c", Type: "t", Data: json.RawMessage(`"` + string(make([]byte, 300)) + `"`)},
	} {
		if _, err := m.Publish(ctx, msg); err == nil {
			t.Fatalf("Publish(%+v) accepted", msg)
		}
	}
	big := Message{CourseID: "c", Type: "t", Data: json.RawMessage(`"` + string(make([]byte, 0)) + stringOf('x', 300) + `"`)}
	if _, err := m.Publish(ctx, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: err = %v", err)
	}
	ev, err := m.Publish(ctx, Message{CourseID: "c", Type: "t"})
	if err != nil || ev.ID != 1 {
		t.Fatalf("first valid event got id %v (%v), want 1: a refused event used an id", ev, err)
	}
}

func stringOf(c byte, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func TestMemoryHistoryBoundsAndReset(t *testing.T) {
	t.Parallel()
	m := NewMemory(MemoryConfig{Logger: quietLogger(), History: 5})
	ctx := context.Background()
	publishN(t, m, "c", 12) // retains 8..12
	tests := []struct {
		after     uint64
		limit     int
		wantIDs   []uint64
		wantReset bool
		wantMore  bool
	}{
		{after: 0, wantReset: true},
		{after: 6, wantReset: true},
		{after: 7, wantIDs: []uint64{8, 9, 10, 11, 12}},
		{after: 10, wantIDs: []uint64{11, 12}},
		{after: 7, limit: 2, wantIDs: []uint64{8, 9}, wantMore: true},
		{after: 12},
		{after: 13, wantReset: true},
	}
	for _, tt := range tests {
		p, err := m.History(ctx, "c", tt.after, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if p.LastID != 12 || p.Reset != tt.wantReset || p.More() != tt.wantMore || !equalIDs(ids(p.Events), tt.wantIDs) {
			t.Errorf("History(after=%d, limit=%d) = ids %v reset %v more %v last %d; want %v reset %v more %v",
				tt.after, tt.limit, ids(p.Events), p.Reset, p.More(), p.LastID, tt.wantIDs, tt.wantReset, tt.wantMore)
		}
	}
	if n := m.Retained("c"); n != 5 {
		t.Fatalf("Retained = %d, want 5", n)
	}
	p, _ := m.History(ctx, "unknown", 0, 10)
	if p.Reset || p.LastID != 0 || len(p.Events) != 0 {
		t.Fatalf("unknown course after 0: %+v", p)
	}
	if p, _ := m.History(ctx, "unknown", 3, 10); !p.Reset {
		t.Fatalf("unknown course after 3 should reset: %+v", p)
	}
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestMemoryHistoryTTL(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	m := NewMemory(MemoryConfig{Logger: quietLogger(), HistoryTTL: time.Hour, Now: clock.Now})
	ctx := context.Background()
	publishN(t, m, "c", 3)
	clock.Add(59 * time.Minute)
	if p, _ := m.History(ctx, "c", 0, 10); len(p.Events) != 3 {
		t.Fatalf("history dropped before the TTL: %+v", p)
	}
	clock.Add(2 * time.Minute)
	// A listener keeps the course (and its sequence) alive.
	un, _ := m.Subscribe(ctx, "c", func(*Event) {})
	m.sweep()
	if n := m.Retained("c"); n != 0 {
		t.Fatalf("sweep kept %d events of an idle course", n)
	}
	p, _ := m.History(ctx, "c", 1, 10)
	if !p.Reset || p.LastID != 3 {
		t.Fatalf("after the TTL, after=1 should reset at 3: %+v", p)
	}
	if ev := publishN(t, m, "c", 1)[0]; ev.ID != 4 {
		t.Fatalf("sequence of a watched course restarted after the TTL: id %d, want 4", ev.ID)
	}
	un()

	// Unwatched and idle: forgotten entirely.
	publishN(t, m, "other", 2)
	clock.Add(2 * time.Hour)
	m.sweep()
	if n := m.Courses(); n != 0 {
		t.Fatalf("%d courses kept after the TTL with no listener", n)
	}
	// Forgotten, a course keeps its last id: a client at that id is up
	// to date, one behind it is reset, and the ids go on (never from 1
	// again: a client at id 1 would silently miss a new event 1).
	if last, _ := m.LastID(ctx, "c"); last != 4 {
		t.Fatalf("forgotten course: LastID %d, want 4", last)
	}
	if p, _ := m.History(ctx, "c", 4, 10); p.Reset || p.LastID != 4 || len(p.Events) != 0 {
		t.Fatalf("forgotten course, after=4: %+v", p)
	}
	if p, _ := m.History(ctx, "c", 1, 10); !p.Reset || p.LastID != 4 {
		t.Fatalf("forgotten course, after=1: %+v", p)
	}
	if ev := publishN(t, m, "c", 1)[0]; ev.ID != 5 {
		t.Fatalf("forgotten course went on at %d, want 5", ev.ID)
	}
	if ev := publishN(t, m, "other", 1)[0]; ev.ID != 3 {
		t.Fatalf("forgotten course went on at %d, want 3", ev.ID)
	}
	if p, _ := m.History(ctx, "new", 0, 10); p.Reset || p.LastID != 0 {
		t.Fatalf("new course, after=0: %+v", p)
	}
}

// TestMemorySweepRacesPublish: a publish never lands in a course that a
// concurrent sweep forgets.
func TestMemorySweepRacesPublish(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	m := NewMemory(MemoryConfig{Logger: quietLogger(), HistoryTTL: time.Nanosecond, Now: clock.Now})
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			m.sweep()
		}
	}()
	for i := range 2000 {
		ev := publishN(t, m, "c", 1)[0]
		// Forgotten or not, the course's ids go on and its last id stays.
		if last, _ := m.LastID(ctx, "c"); ev.ID != uint64(i+1) || last != ev.ID {
			t.Fatalf("publish %d: id %d, LastID %d", i, ev.ID, last)
		}
		clock.Add(time.Millisecond)
	}
	<-done
}

func TestMemoryRunStops(t *testing.T) {
	t.Parallel()
	m := NewMemory(MemoryConfig{Logger: quietLogger(), HistoryTTL: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMemorySubscribeThenHistoryHasNoGap is the promise replay rests on:
// subscribe, then read history; together they hold every event once the
// duplicates (ids in both) are dropped, under concurrent publishing.
func TestMemorySubscribeThenHistoryHasNoGap(t *testing.T) {
	t.Parallel()
	m := NewMemory(MemoryConfig{Logger: quietLogger()})
	ctx := context.Background()
	const total = 800 // below MaxPage, so one History call sees all retained
	quarter, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			if i == total/4 {
				close(quarter)
			}
			if _, err := m.Publish(ctx, Message{CourseID: "c", Type: "t"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	<-quarter
	var mu sync.Mutex
	var live []uint64
	un, _ := m.Subscribe(ctx, "c", func(ev *Event) { mu.Lock(); live = append(live, ev.ID); mu.Unlock() })
	defer un()
	p, err := m.History(ctx, "c", 0, MaxPage)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	last := uint64(0)
	for _, id := range ids(p.Events) {
		if id != last+1 {
			t.Fatalf("history gap between %d and %d", last, id)
		}
		last = id
	}
	for _, id := range live {
		if id <= last {
			continue // also in the history: the duplicate a reader drops
		}
		if id != last+1 {
			t.Fatalf("gap between %d and %d", last, id)
		}
		last = id
	}
	if last != total {
		t.Fatalf("saw up to %d, want %d", last, total)
	}
}
