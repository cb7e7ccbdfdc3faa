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
	known, after, pre, ok := c.beginRound()
	if !ok {
		return true, nil
	}
	var seq uint64
	var page Page
	if known {
		page, err = r.History(ctx, c.id, after, MaxPage)
		seq = page.LastID
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
		reset = r.deliverPage(ctx, c, page)
		if page.More() {
			return false, nil
		}
	}
	if !r.deliverHeld(c, pre, seq, reset) {
		return false, nil
	}
	return c.fillDone(), nil
}

// deliverPage delivers the events of a history page above the last one
// delivered and, when the page is a reset, the Reset notice; it reports a
// reset. c.mu is held.
func (r *Redis) deliverPage(ctx context.Context, c *rcourse, page Page) (reset bool) {
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
	if to < c.high {
		// The sequence went backwards: Redis lost its data. Continue
		// above every id ever delivered, so that no client can take a new
		// event for one it already has.
		if floor, err := r.raiseSequence(ctx, c.id, c.high); err == nil {
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
