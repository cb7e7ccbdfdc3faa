package observer

import (
	"sync"
	"time"
)

// courseState is where the delivery of one course with local listeners
// stands. The state changes only in the methods of this file, under
// rcourse.mu:
//
//	pending --confirm--> filling            the first fill reads the baseline
//	live    --startFill--> filling          a gap in ids, a reconnect (confirm),
//	                                        or the reconcile saw the sequence move
//	filling --fillDone--> live              history read, held events delivered
//	filling --stall--> stalled              the history could not be read
//	stalled --reconcileStep--> filling      the reconcile queues the fill again
//	any     --kill--> dead                  no listener left; final
//
// The state is also the fill queue's "queued" mark: a course is pushed on
// it only by startFill, from a state other than filling, so no course is
// ever queued twice.
type courseState uint8

const (
	// statePending: subscribed, not yet confirmed by Redis. Live events
	// are dropped: they were published before the position is read, so
	// they are at or below the baseline anyway.
	statePending courseState = iota
	// stateFilling: a fill is queued or running and owns delivery; live
	// events are held for it (the receive loop never waits on Redis).
	stateFilling
	// stateStalled: the fill gave up for now; events are still held and
	// the reconcile queues the fill again.
	stateStalled
	// stateLive: the next event is delivered as it arrives.
	stateLive
	// stateDead: no longer subscribed; nothing is delivered.
	stateDead
)

// courseFlags are facts about a course that hold in several states.
type courseFlags uint8

const (
	// flagKnown: last is the course's position (the baseline was read).
	// Set once by setBaseline, never cleared.
	flagKnown courseFlags = 1 << iota
	// flagRefill: a reconnect happened while filling; the fill runs once
	// more. Cleared when a fill round starts.
	flagRefill
	// flagOverflow: held events were dropped (more than maxHeld); the fill
	// runs once more. Cleared when a fill round starts.
	flagOverflow
)

func (f courseFlags) has(b courseFlags) bool { return f&b != 0 }
func (f *courseFlags) set(b courseFlags)     { *f |= b }
func (f *courseFlags) clear(b courseFlags)   { *f &^= b }

// rcourse is the broker's state of one course with local listeners.
//
// Ordering: every event reaches the observer under rcourse.mu, with an id
// above last (or as a Reset notice), so listeners see ids in order, once.
type rcourse struct {
	id, channel string
	ready       chan struct{} // closed once the course's position is known (flagKnown)

	// Under Redis.mu.
	refs   int       // Subscribe calls holding the course
	sub    *psub     // where its channel is subscribed; nil: not yet
	sentAt time.Time // when SUBSCRIBE was last sent while unconfirmed

	mu    sync.Mutex
	state courseState
	flags courseFlags
	last  uint64   // id of the last event delivered (or the baseline)
	stamp int64    // timestamp of the event last names; 0: last is a baseline or a reset
	high  uint64   // the highest id ever delivered or seen as baseline; survives resets
	held  []*Event // live events that arrived while filling or stalled
}

func newCourse(id string) *rcourse {
	return &rcourse{id: id, channel: ChannelName(id), ready: make(chan struct{})}
}

// live takes one event from pub/sub: delivered when it is the next one,
// held while a fill owns delivery, and the start of a fill when ids jumped.
func (c *rcourse) live(r *Redis, ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case statePending, stateDead:
	case stateFilling, stateStalled:
		if len(c.held) < maxHeld {
			c.held = append(c.held, ev)
		} else {
			c.flags.set(flagOverflow)
		}
	case stateLive:
		switch {
		case ev.ID <= c.last:
			// Already delivered (read from history, or sent twice).
		case ev.ID == c.last+1:
			c.deliver(r, ev)
		default:
			c.held = append(c.held[:0], ev)
			c.startFill(r)
		}
	}
}

// confirm handles a subscription confirmation: the first one reads the
// baseline; a later one means go-redis resubscribed after a reconnect, and
// what was published meanwhile is read from the history.
func (c *rcourse) confirm(r *Redis) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case statePending, stateLive:
		c.startFill(r)
	case stateFilling, stateStalled:
		c.flags.set(flagRefill)
	}
}

// pending reports that Redis has not confirmed the subscription yet.
func (c *rcourse) pending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == statePending
}

// kill marks a course that is no longer subscribed.
func (c *rcourse) kill() {
	c.mu.Lock()
	c.state, c.held = stateDead, nil
	c.mu.Unlock()
}

// startFill hands delivery to a fill worker. c.mu is held.
func (c *rcourse) startFill(r *Redis) {
	c.state = stateFilling
	r.fills.Push(c)
}

// beginRound starts one round of a fill: it clears the reasons to run
// again and returns where the course stands, and how many events were
// held before the read. ok is false when the course is dead: the fill ends.
func (c *rcourse) beginRound() (known bool, after uint64, stamp int64, pre int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateDead {
		c.held = nil
		return false, 0, 0, 0, false
	}
	c.flags.clear(flagRefill | flagOverflow)
	return c.flags.has(flagKnown), c.last, c.stamp, len(c.held), true
}

// setBaseline records the course's position, read by its first fill, and
// lets Subscribe return. c.mu is held.
func (c *rcourse) setBaseline(seq uint64) {
	c.last, c.high, c.stamp = seq, max(c.high, seq), 0
	if !c.flags.has(flagKnown) {
		c.flags.set(flagKnown)
		close(c.ready)
	}
}

// deliver hands ev (the next event, or a Reset notice) to the listeners.
// c.mu is held.
func (c *rcourse) deliver(r *Redis, ev *Event) {
	c.last, c.high, c.stamp = ev.ID, max(c.high, ev.ID), ev.Timestamp
	r.obs.Emit(ev)
}

// fillDone ends a fill whose round read and delivered everything: the
// course is live again unless something asked for another round. c.mu is
// held.
func (c *rcourse) fillDone() bool {
	if c.flags.has(flagRefill | flagOverflow) {
		return false
	}
	c.state = stateLive
	return true
}

// stall leaves a fill whose reads failed for the reconcile to requeue.
func (c *rcourse) stall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateFilling {
		c.state = stateStalled
	}
}

// reconcileStep is the reconcile's look at the course: a stalled fill is
// queued again; a live course reports its last id, to be compared with
// its sequence in Redis (check).
func (c *rcourse) reconcileStep(r *Redis) (last uint64, check bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateStalled:
		c.startFill(r)
	case stateLive:
		return c.last, true
	}
	return 0, false
}

// sequenceMoved starts a fill when the course is still live at last while
// its sequence in Redis is elsewhere: ahead, events were missed; behind,
// Redis lost its data (the fill delivers a reset).
func (c *rcourse) sequenceMoved(r *Redis, last uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateLive && c.last == last {
		c.startFill(r)
	}
}

// lastDelivered returns the id of the last event delivered.
func (c *rcourse) lastDelivered() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// highest returns the highest id ever delivered or seen as baseline.
func (c *rcourse) highest() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.high
}
