package observer

import (
	"testing"
)

// TestRedisCourseTransitions walks one course through the states of
// redis_course.go without a Redis: what each state does with a live event,
// when the course is queued for a fill (once, never twice), and what ends
// a fill. The fill queue is read by hand instead of by fill workers.
func TestRedisCourseTransitions(t *testing.T) {
	r, err := NewRedis(RedisConfig{URL: "redis://127.0.0.1:1/0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rc := newRecorder()
	defer r.obs.Subscribe("c", rc.listen)()
	c := newCourse("c")
	ev := func(id uint64) *Event { return &Event{CourseID: "c", ID: id} }
	queued := func(want int) {
		t.Helper()
		if n := r.fills.Len(); n != want {
			t.Fatalf("%d fills queued, want %d", n, want)
		}
		for range want {
			if got, _ := r.fills.Pop(); got != c {
				t.Fatalf("queued %v, want the course", got)
			}
		}
	}
	state := func(want courseState) {
		t.Helper()
		if c.state != want {
			t.Fatalf("state %d, want %d", c.state, want)
		}
	}

	// Pending: before the confirmation, live events are dropped.
	c.live(r, ev(1))
	state(statePending)
	if !c.pending() || len(rc.events()) != 0 || len(c.held) != 0 {
		t.Fatalf("a pending course took an event: delivered %s, held %d", describe(rc.events()), len(c.held))
	}

	// The confirmation queues the fill that reads the baseline; meanwhile
	// live events are held, and a second confirmation only asks for one
	// more round.
	c.confirm(r)
	state(stateFilling)
	queued(1)
	c.live(r, ev(6))
	c.confirm(r)
	queued(0)
	known, _, _, pre, ok := c.beginRound()
	if known || pre != 1 || !ok || c.flags.has(flagRefill) {
		t.Fatalf("first round: known %v, held %d, ok %v, flags %b", known, pre, ok, c.flags)
	}
	c.mu.Lock()
	c.setBaseline(5)
	select {
	case <-c.ready:
	default:
		t.Fatal("ready not closed by the baseline")
	}
	if !r.deliverHeld(c, pre, 5, false) || !c.fillDone() {
		t.Fatal("the first fill did not end")
	}
	c.mu.Unlock()
	state(stateLive)
	rc.waitFor(t, "event 6", upTo(6))

	// Live: the next event is delivered, an old one dropped, a jump starts
	// a fill holding it.
	c.live(r, ev(7))
	c.live(r, ev(7))
	c.live(r, ev(9))
	state(stateFilling)
	queued(1)
	if evs := rc.events(); len(evs) != 2 || evs[1].ID != 7 || len(c.held) != 1 {
		t.Fatalf("live: delivered %s, held %d", describe(evs), len(c.held))
	}

	// A reconnect while filling, or overflowing what is held, keeps the
	// fill running for another round.
	c.confirm(r)
	c.mu.Lock()
	done := c.fillDone()
	c.mu.Unlock()
	if done {
		t.Fatal("a fill asked to run again ended")
	}
	for range maxHeld {
		c.live(r, ev(10))
	}
	if !c.flags.has(flagOverflow) || len(c.held) != maxHeld {
		t.Fatalf("held %d events, flags %b", len(c.held), c.flags)
	}
	if _, _, _, _, ok := c.beginRound(); !ok || c.flags.has(flagRefill|flagOverflow) {
		t.Fatalf("a round kept the flags %b", c.flags)
	}
	c.held = nil

	// Stalled: still holding; the reconcile queues the fill again, and a
	// live course reports its last id for the sequence check.
	c.stall()
	state(stateStalled)
	c.live(r, ev(8))
	if _, check := c.reconcileStep(r); check || len(c.held) != 1 {
		t.Fatalf("stalled: checked %v, held %d", check, len(c.held))
	}
	state(stateFilling)
	queued(1)
	c.mu.Lock()
	if !r.deliverHeld(c, 0, 9, false) || !c.fillDone() {
		t.Fatal("the fill did not end")
	}
	c.mu.Unlock()
	if last, check := c.reconcileStep(r); !check || last != 8 {
		t.Fatalf("live: reconcile check %v at %d, want 8", check, last)
	}
	c.sequenceMoved(r, 7) // an old look: nothing to do
	queued(0)
	c.sequenceMoved(r, 8)
	queued(1)

	// Dead: final; a fill still queued ends at once.
	c.kill()
	state(stateDead)
	c.live(r, ev(9))
	c.confirm(r)
	c.stall()
	if _, _, _, _, ok := c.beginRound(); ok {
		t.Fatal("a dead course's fill went on")
	}
	state(stateDead)
	queued(0)
	if evs := rc.events(); len(evs) != 3 || evs[2].ID != 8 {
		t.Fatalf("delivered %s, want [6 7 8]", describe(evs))
	}
}
