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
	c     *conn
	w     http.ResponseWriter
	rc    *http.ResponseController
	armed time.Time // the write deadline last set

	scratch []byte // history: the frame being written
}

func newViaHandler(c *conn, w http.ResponseWriter) *viaHandler {
	w = innermost(w)
	return &viaHandler{c: c, w: w, rc: http.NewResponseController(w)}
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

// serve writes the stream until it ends. The frame left on the stack
// while serve waits is small: the work is in begin and deliver.
func (v *viaHandler) serve(st start) {
	c := v.c
	setHeaders(v.w.Header())
	v.w.WriteHeader(http.StatusOK)
	ok := c.begin(st)
	for ok {
		select {
		case <-c.ctx.Done():
			return
		case <-c.window:
			c.window = nil
			ok = c.closeWindow()
		case <-c.notify:
			ok = c.deliver()
		}
	}
}

func (v *viaHandler) frame(p []byte) bool { return v.write(p) }

func (v *viaHandler) fixed(f *fixedFrame) bool { return v.write(f.sse) }

func (v *viaHandler) event(f *frame) bool { return v.write(f.sse) }

// history builds a replayed event's frame in a buffer reused for each.
func (v *viaHandler) history(ev *observer.Event) bool {
	v.scratch = appendEventFrame(v.scratch[:0], ev)
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
// returned (c.finished is false). A stream ending cleanly is left to end:
// net/http still has to write the response's last chunk.
func (v *viaHandler) abort() {
	if !v.c.clean {
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
	if !v.c.stopped {
		v.armed = now.Add(timeout)
		_ = v.rc.SetWriteDeadline(v.armed)
	}
	v.c.mu.Unlock()
}
