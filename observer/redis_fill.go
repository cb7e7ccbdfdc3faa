package observer

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

const (
	fillWorkers  = 4           // goroutines reading history to fill gaps
	maxHeld      = 4 * MaxPage // live events held per course while a fill runs
	fillAttempts = 3           // failed history reads before a fill waits for the reconcile
)

// fillWorker is one of the fillWorkers goroutines Run starts: it fills the
// courses queued by startFill until ctx ends.
func (r *Redis) fillWorker(ctx context.Context) {
	r.fills.Work(ctx, func(c *rcourse) { r.fill(ctx, c) })
}

// fill delivers what pub/sub did not: the baseline of a new course, or the
// events after the last one delivered, from the history, then the events
// held meanwhile. It retries a few times, then leaves the course stalled for
// the reconcile to requeue.
func (r *Redis) fill(ctx context.Context, c *rcourse) {
	failures := 0
	for ctx.Err() == nil {
		done, err := r.fillRound(ctx, c)
		if done {
			return
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		if failures >= fillAttempts {
			c.stall()
			r.log.Warn("redis: reading a course's history failed; retrying at the next reconcile",
				slog.String("course", c.id), slog.Any("err", err))
			return
		}
		t := time.NewTimer(time.Duration(failures) * 50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// fillRound reads once and delivers; done reports that the course is live
// again (or dead).
func (r *Redis) fillRound(ctx context.Context, c *rcourse) (done bool, err error) {
	known, after, stamp, pre, ok := c.beginRound()
	if !ok {
		return true, nil
	}
	var seq uint64
	var page Page
	reused := false
	if known {
		from := after
		if stamp != 0 {
			from = after - 1 // read the last event delivered too, to check it is still the same
		}
		page, err = r.History(ctx, c.id, from, MaxPage)
		seq = page.LastID
		if err == nil && from < after {
			page, reused = verifyLast(page, after, stamp)
		}
	} else {
		seq, err = r.LastID(ctx, c.id)
	}
	if err != nil {
		return false, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateDead {
		c.held = nil
		return true, nil
	}
	reset := false
	if !known {
		c.setBaseline(seq)
	} else {
		reset = r.deliverPage(ctx, c, page, reused)
		if page.More() {
			return false, nil
		}
	}
	if !r.deliverHeld(c, pre, seq, reset) {
		return false, nil
	}
	return c.fillDone(), nil
}

// verifyLast checks a page read from the id before after: the event after
// (the last one delivered, of timestamp stamp) must still be there, the
// same. It returns the page from after on; or a reset when Redis no
// longer has it (the sequence went back: a failover to a replica that
// lacked it, or a restart without persistence), and reports reused when
// its id now names another event (published on the new master before this
// instance saw the loss). The page may be shared: it is not modified.
func verifyLast(page Page, after uint64, stamp int64) (Page, bool) {
	switch {
	case page.LastID < after:
		return Page{LastID: page.LastID, Reset: true}, false
	case len(page.Events) == 0 || page.Events[0].ID != after:
		return page, false // a reset (trimmed) already
	case page.Events[0].Timestamp != stamp:
		return Page{LastID: page.LastID, Reset: true}, true
	}
	page.Events = page.Events[1:]
	return page, false
}

// deliverPage delivers the events of a history page above the last one
// delivered and, when the page is a reset, the Reset notice; it reports a
// reset. reused says that ids already delivered now name other events: the
// sequence is raised above them even if it is not behind. c.mu is held.
func (r *Redis) deliverPage(ctx context.Context, c *rcourse, page Page, reused bool) (reset bool) {
	n := 0
	for _, ev := range page.Events {
		if ev.ID > c.last {
			c.deliver(r, ev)
			n++
		}
	}
	if n > 0 {
		r.met.Recovered(n)
	}
	if !page.Reset {
		return false
	}
	to := page.LastID
	if to < c.high || (reused && to == c.high) {
		// The sequence went backwards (Redis lost its data), or came back
		// to where it was with other events. Continue above every id ever
		// delivered, so that no client can take a new event for one it
		// already has.
		threshold := c.high
		if reused {
			threshold++
		}
		if floor, err := r.raiseSequence(ctx, c.id, threshold); err == nil {
			to = max(to, floor)
		}
	}
	r.log.Warn("redis: the history cannot fill a gap (trimmed, or Redis lost its data); listeners get a reset",
		slog.String("course", c.id), slog.Uint64("delivered", c.last), slog.Uint64("sequence", page.LastID), slog.Uint64("reset to", to))
	c.deliver(r, &Event{CourseID: c.id, ID: to, Reset: true})
	return true
}

// deliverHeld delivers the events held while the fill ran, in arrival
// order. The first pre arrived before the read, so they cannot be above
// the sequence seq it saw: such an id is forged (unless a reset came
// between: they belong to the old sequence). It reports false when an id
// is still missing before the next held event: the rest stays held for
// another round. c.mu is held.
func (r *Redis) deliverHeld(c *rcourse, pre int, seq uint64, reset bool) bool {
	held := c.held
	c.held = nil
	for i, ev := range held {
		switch {
		case ev.ID <= c.last:
		case ev.ID == c.last+1:
			c.deliver(r, ev)
		case i < pre && ev.ID > seq:
			if !reset {
				r.malformed("id", c.channel, string(ev.JSON), errors.New("id ahead of the course's sequence"))
			}
		default:
			c.held = append(c.held, held[i:]...)
			return false
		}
	}
	return true
}
