package stream

import (
	"context"
	"sync"
)

// runq hands connections with work (events, heartbeats, an end) to the
// hub's workers. A connection is on it at most once (conn.scheduled), and
// one worker at a time runs it, so its frames stay in order. push never
// blocks: the broker's listeners call it.
type runq struct {
	mu    sync.Mutex
	items []*conn
	head  int
	wake  chan struct{}
}

func newRunq(workers int) *runq { return &runq{wake: make(chan struct{}, workers)} }

func (q *runq) push(c *conn) {
	q.mu.Lock()
	q.items = append(q.items, c)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *runq) pop() *conn {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		return nil
	}
	c := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head > 64 && q.head*2 > len(q.items) {
		// Never empty for long under a steady backlog: move what is left
		// to the front, so the array does not grow forever.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return c
}

// work runs connections until ctx ends.
func (q *runq) work(ctx context.Context) {
	for {
		for c := q.pop(); c != nil; c = q.pop() {
			c.runDirect()
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
	}
}

// runDirect is one worker's turn on a direct connection: the coalesce
// window if it closed, then what was queued. New work arriving meanwhile
// puts the connection back on the queue when the turn ends.
func (c *conn) runDirect() {
	c.mu.Lock()
	due, stopped := c.windowDue, c.stopped
	c.windowDue = false
	c.mu.Unlock()
	if !stopped {
		if !due || c.closeWindow() {
			c.deliver()
		}
	}
	c.mu.Lock()
	if !c.stopped && (len(c.queue) > 0 || c.beat || c.ending != nil || c.windowDue) {
		c.h.runq.push(c) // still scheduled
	} else {
		c.scheduled = false
	}
	c.mu.Unlock()
}
