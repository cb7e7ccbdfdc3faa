package stream

import (
	"sync/atomic"

	"coursestream/observer"
)

// topic is the hub's record of one course: how many streams it has open
// here, and the latest frame built for it. A stream holds its course's
// topic from register to unregister.
//
// The broker calls a course's listeners one after another on one goroutine
// (observer.Observer.Emit), so the first stream that wants an event builds
// its frame and the others find it in last: each event is encoded once per
// instance, and a delivery allocates nothing.
type topic struct {
	streams atomic.Int32
	last    atomic.Pointer[frame]
}

// frameOf returns ev's frame, built on the first call for ev.
func (t *topic) frameOf(ev *observer.Event) *frame {
	if f := t.last.Load(); f != nil && f.ev == ev {
		return f
	}
	f := newFrame(ev)
	t.last.Store(f)
	return f
}
