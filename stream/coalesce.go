package stream

import (
	"slices"
	"time"

	"coursestream/observer"
)

// coalescer is the debounced mode (?coalesce=): within each window at most
// one event per (type, subject) is sent, the latest, where subject is
// data.chapterId, data.videoId or else nothing (the type alone). What it
// sends keeps id order. A zero window disables it. It is used by whoever
// writes the stream (a hub worker, or the request goroutine), one at a time.
type coalescer struct {
	window  time.Duration
	pending map[coalesceKey]*observer.Event
}

type coalesceKey struct{ typ, subject string }

// newCoalescer is not inlined: inlined, its struct and map would live in
// the stream's long-lived stack frame.
//
//go:noinline
func newCoalescer(window time.Duration) *coalescer {
	if window <= 0 {
		return &coalescer{}
	}
	return &coalescer{window: window, pending: make(map[coalesceKey]*observer.Event)}
}

func (co *coalescer) enabled() bool { return co.window > 0 }

// add keeps ev as the latest of its key. It reports whether ev is the first
// event of a window (the caller then starts the timer).
func (co *coalescer) add(ev *observer.Event) (first bool) {
	first = len(co.pending) == 0
	co.pending[coalesceKey{ev.Type, ev.Subject()}] = ev
	return first
}

// start returns the channel that fires when the current window ends.
func (co *coalescer) start() <-chan time.Time { return time.After(co.window) }

// flush returns the kept events in id order and empties the window.
func (co *coalescer) flush() []*observer.Event {
	if len(co.pending) == 0 {
		return nil
	}
	evs := make([]*observer.Event, 0, len(co.pending))
	for k, ev := range co.pending {
		evs = append(evs, ev)
		delete(co.pending, k)
	}
	slices.SortFunc(evs, func(a, b *observer.Event) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return evs
}
