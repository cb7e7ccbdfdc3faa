// Package workq is the work queue that hands items to a fixed set of worker
// goroutines: the stream hub's connections with frames to write, and the
// Redis broker's courses with a gap to fill. Push never blocks (it is called
// from listeners that must not), items are run in the order they were
// pushed, and the queue's storage is reused once it has grown, so a steady
// flow allocates nothing.
//
// The queue does not deduplicate: a caller that must not have an item
// queued twice (and so run by two workers at once) keeps its own "queued"
// mark, set before Push and cleared by the item's run.
package workq

import (
	"context"
	"sync"
)

// Queue is a FIFO of items of type T. The zero value is not usable: see New.
type Queue[T any] struct {
	mu    sync.Mutex
	items []T
	head  int
	wake  chan struct{}
}

// New returns an empty queue meant for the given number of workers: that
// many can be woken at once by pushes.
func New[T any](workers int) *Queue[T] {
	if workers < 1 {
		workers = 1
	}
	return &Queue[T]{wake: make(chan struct{}, workers)}
}

// Workers is the number of workers the queue was made for.
func (q *Queue[T]) Workers() int { return cap(q.wake) }

// Push appends v and wakes a waiting worker. It never blocks.
func (q *Queue[T]) Push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Pop removes and returns the oldest item; ok is false when the queue is
// empty.
func (q *Queue[T]) Pop() (v T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		return v, false
	}
	v = q.items[q.head]
	var zero T
	q.items[q.head] = zero // the queue keeps no reference to what it handed out
	q.head++
	if q.head > 64 && q.head*2 > len(q.items) {
		// Never empty for long under a steady backlog: move what is left
		// to the front, so the array does not grow forever.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return v, true
}

// Len is the number of items waiting.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// Work is one worker: it runs do on each item as it comes, until ctx ends.
// Start Workers() of them; each returns when ctx is done.
func (q *Queue[T]) Work(ctx context.Context, do func(T)) {
	for {
		for v, ok := q.Pop(); ok; v, ok = q.Pop() {
			do(v)
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
	}
}
