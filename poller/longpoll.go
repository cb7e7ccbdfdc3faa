package poller

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"coursestream/internal/cursor"
	"coursestream/observer"
)

// longPoll is a poll waiting for news: one broker listener per course of
// the request, all waking one signal. Who waits on the signal is either
// the request's handler (a channel) or, once the poll is taken over from
// net/http, the reader of its connection (a read deadline moved to the
// past); see parked.
type longPoll struct {
	req          request // the poll's own copy: a single-course request's lives in serve's frame
	unsubscribes []func()

	mu    sync.Mutex
	state wakeState
	ch    chan struct{} // the handler's wake, while it waits
	conn  net.Conn      // the taken-over connection: the wake interrupts its read
}

// wakeState is where a long-poll stands with its wake.
type wakeState uint8

const (
	// asleep: nothing new since the waiter last read.
	asleep wakeState = iota
	// woken: an event moved a course, or Drain: the waiter reads again.
	woken
	// detached: the poll is being answered; a wake does nothing.
	detached
)

// past is a read deadline that interrupts a blocked Read at once (what
// net/http does to end its own background read).
var past = time.Unix(1, 0)

// listen starts a long-poll of req: a listener on each of its courses.
func (p *Poller) listen(ctx context.Context, req request) (*longPoll, error) {
	lp := &longPoll{req: req.own(), ch: make(chan struct{}, 1)}
	lp.unsubscribes = make([]func(), 0, len(lp.req.at.Courses))
	for i, course := range lp.req.at.Courses {
		after := lp.req.at.Seqs[i]
		unsubscribe, err := p.broker.Subscribe(ctx, course, func(ev *observer.Event) {
			if ev.Reset || ev.ID > after {
				lp.wake()
			}
		})
		if err != nil {
			lp.close()
			return nil, err
		}
		lp.unsubscribes = append(lp.unsubscribes, unsubscribe)
	}
	return lp, nil
}

// own returns a copy of req that shares nothing with it. Every field is
// copied apart (no "r := req"): the escape analysis follows a struct as a
// whole, and a copy holding any of req's pointers would move a
// single-course request's position, in serve's frame, to the heap for
// every poll.
func (req *request) own() request {
	return request{
		shape: req.shape,
		at:    cursor.Cursor{Courses: slices.Clone(req.at.Courses), Seqs: slices.Clone(req.at.Seqs)},
		types: req.types.Clone(),
		wait:  req.wait,
	}
}

// wake tells the waiter to read again. It never blocks: a broker's
// dispatch calls it.
func (lp *longPoll) wake() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.state != asleep {
		return
	}
	lp.state = woken
	if lp.conn != nil {
		_ = lp.conn.SetReadDeadline(past)
		return
	}
	select {
	case lp.ch <- struct{}{}:
	default:
	}
}

// takeWake reports whether the poll was woken since the last call, and
// clears it.
func (lp *longPoll) takeWake() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.state != woken {
		return false
	}
	lp.state = asleep
	return true
}

// watch hands the wake to the reader of conn, whose reads end at end (or
// at once, if the poll was woken meanwhile).
func (lp *longPoll) watch(conn net.Conn, end time.Time) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.conn = conn
	if lp.state == woken {
		end = past
	}
	_ = conn.SetReadDeadline(end)
}

// detach ends the wake's hold on the taken-over connection, before the
// connection is answered and handed back: a late wake (a listener's call
// in flight, Drain's) must not move the read deadline of a connection
// net/http serves again.
func (lp *longPoll) detach() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.conn = nil
	lp.state = detached
}

// close removes the listeners.
func (lp *longPoll) close() {
	for _, unsubscribe := range lp.unsubscribes {
		unsubscribe()
	}
	lp.unsubscribes = nil
}

// holdLongPoll waits in the request's handler until the poll finds news,
// its wait ends, the client leaves or Drain, and returns its last read.
// lp is read once already (last).
func (p *Poller) holdLongPoll(ctx context.Context, lp *longPoll, last answer) (answer, error) {
	timer := time.NewTimer(lp.req.wait)
	defer timer.Stop()
	for ans := last; ; {
		if p.onWait != nil {
			p.onWait()
		}
		select {
		case <-lp.ch:
		case <-timer.C:
			return ans, nil
		case <-p.draining:
			return ans, nil
		case <-ctx.Done():
			return ans, nil
		}
		lp.takeWake()
		var err error
		if ans, err = p.readOnce(ctx, lp.req); err != nil || ans.found() {
			return ans, err
		}
	}
}
