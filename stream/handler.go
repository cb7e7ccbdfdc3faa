package stream

import (
	"net/http"
	"time"

	"coursestream/observer"
)

// viaHandler writes a stream through the http.ResponseWriter, from the
// request goroutine, for the stream's whole life. It is the path for
// writers that cannot be taken over (HTTP/2, HTTP/1.0, test recorders);
// HTTP/1.1 streams go direct.
type viaHandler struct {
	c      *conn
	w      http.ResponseWriter
	rc     *http.ResponseController
	notify chan struct{}    // work is waiting (cap 1)
	window <-chan time.Time // the coalesce window's end; the writer's
	armed  time.Time        // the write deadline last set

	scratch []byte // history: the frame being written
}

func newViaHandler(c *conn, w http.ResponseWriter) *viaHandler {
	w = innermost(w)
	v := &viaHandler{c: c, w: w, rc: http.NewResponseController(w), notify: make(chan struct{}, 1)}
	// A server WriteTimeout must not cut streams: arm sets its own.
	_ = v.rc.SetWriteDeadline(time.Time{})
	return v
}

// innermost unwraps middleware writers (request logging, ...) down to
// net/http's own: every frame is written and flushed directly, not through
// a chain of wrappers. Headers set on any layer share one map.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// run writes the stream until it ends, then releases it. The frame left
// on the stack while it waits is small: the work is in begin and deliver.
func (v *viaHandler) run(st start) {
	v.serve(st)
	v.c.h.release(v.c)
}

func (v *viaHandler) serve(st start) {
	c := v.c
	setHeaders(v.w.Header())
	v.w.WriteHeader(http.StatusOK)
	ok := c.begin(st)
	for ok {
		select {
		case <-c.ctx.Done():
			return
		case <-v.window:
			v.window = nil
			ok = c.closeWindow()
		case <-v.notify:
			ok = c.deliver()
		}
	}
}

// wakeLocked tells the request goroutine there is work. c.mu is held.
func (v *viaHandler) wakeLocked() {
	select {
	case v.notify <- struct{}{}:
	default:
	}
}

// armWindow ends the coalesce window after w (the request goroutine
// waits for it in serve).
func (v *viaHandler) armWindow(w time.Duration) { v.window = time.After(w) }

func (v *viaHandler) dropWindow() { v.window = nil }

// The request goroutine writes the whole stream: nothing changes when the
// replay ends, nothing is written inline, nothing is held back here (the
// ResponseWriter's buffer is flushed by every batch).
func (v *viaHandler) goLiveLocked()                   {}
func (v *viaHandler) canInlineLocked() bool           { return false }
func (v *viaHandler) writeInlineLocked(*form, []byte) {}
func (v *viaHandler) pendingLocked() int              { return 0 }
func (v *viaHandler) releaseLocked()                  {}

func (v *viaHandler) frame(p []byte) bool { return v.write(p) }

func (v *viaHandler) fixed(f *fixedFrame) bool { return v.write(f.sse) }

// event writes f's frame, or the stream's own id line then f's shared
// body; a beat first. They go out together at the batch's flush.
func (v *viaHandler) event(f *form, cursor []byte, beat *fixedFrame) bool {
	if beat != nil && !v.write(beat.sse) {
		return false
	}
	if cursor == nil {
		return v.write(f.sse)
	}
	v.scratch = appendID(v.scratch[:0], 0, cursor)
	return v.write(v.scratch) && v.write(f.body())
}

// history builds a replayed event's frame in a buffer reused for each.
func (v *viaHandler) history(ev *observer.Event, cursor []byte) bool {
	v.scratch = appendEventFrame(v.scratch[:0], ev, v.c.req.dispatch, cursor)
	return v.write(v.scratch)
}

func (v *viaHandler) write(p []byte) bool {
	v.arm()
	if _, err := v.w.Write(p); err != nil {
		v.c.stop(err)
		return false
	}
	return true
}

func (v *viaHandler) flush() bool {
	v.arm()
	if err := v.rc.Flush(); err != nil {
		v.c.stop(err)
		return false
	}
	return true
}

// finish: returning from the handler ends the response; net/http writes
// the last chunk.
func (v *viaHandler) finish() {}

// abort interrupts a blocked write. c.mu is held; the handler has not
// returned. A stream ending cleanly is left to end: net/http still has to
// write the response's last chunk.
func (v *viaHandler) abort(clean, _ bool) {
	if !clean {
		_ = v.rc.SetWriteDeadline(time.Now())
	}
}

// arm pushes the write deadline forward once half of it has passed (a
// deadline per write would cost a runtime call each), so that a peer that
// takes no bytes for Config.WriteTimeout is dropped. A stopped stream keeps
// the deadline stop set.
func (v *viaHandler) arm() {
	now := time.Now()
	timeout := v.c.h.cfg.WriteTimeout
	if now.Before(v.armed.Add(-timeout / 2)) {
		return
	}
	v.c.mu.Lock()
	if !v.c.stoppedLocked() {
		v.armed = now.Add(timeout)
		_ = v.rc.SetWriteDeadline(v.armed)
	}
	v.c.mu.Unlock()
}
