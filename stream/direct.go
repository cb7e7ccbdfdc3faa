package stream

import (
	"errors"
	"net/http"
	"time"

	"coursestream/observer"
)

// direct is the sink of an HTTP/1.1 stream taken over from net/http: its
// socket gets the response headers, then each frame as one chunk of a
// chunked body. Live events go out as the chunk encoded once per event
// (frame.chunk).
//
// Who writes the socket, and when (see socket for how each phase is
// enforced): the request goroutine while it replays (Hub.serve → begin);
// then, live, the stream's turn: a hub worker while the stream is queued
// on the run queue (turnQueued, from wakeLocked until the turn finds no
// more work), or else the publisher itself, inline, holding the stream's
// lock (inlineLocked); the flusher goroutine while the kernel holds bytes
// back. A reader goroutine per connection notices the client going away;
// it owns the cleanup.
type direct struct {
	c *conn
	s *socket

	head []byte // the writer's: a multi-course frame's chunk header and id line

	// Under c.mu.
	turn        turnFlags
	windowTimer *time.Timer // the coalesce window's end
}

// turnFlags is how a direct stream stands with the hub's workers.
type turnFlags uint8

const (
	// turnLive: the replay is over; the workers (or the inline publisher)
	// write.
	turnLive turnFlags = 1 << iota
	// turnQueued: the stream is on the run queue or a worker runs it.
	turnQueued
	// turnWindowDue: the coalesce window closed: the next turn sends it.
	turnWindowDue
)

var errClientGone = errors.New("the client went away")

// takeOver hijacks the connection of w and writes the response headers
// (into the replay buffer).
func takeOver(c *conn, w http.ResponseWriter) (*direct, error) {
	hj, ok := innermost(w).(http.Hijacker)
	if !ok {
		return nil, http.ErrNotSupported
	}
	header := w.Header().Clone() // what middleware set (CORS ...)
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, err
	}
	_ = brw // what the client sent after its request is ignored: it has nothing to say
	s, err := newSocket(nc, c.h.cfg.ClientBuffer, c.h.cfg.WriteTimeout, &c.h.wg, c.stop)
	if err != nil {
		return nil, err
	}
	d := &direct{c: c, s: s}
	s.buf = appendResponseHead(s.buf, header)
	return d, nil
}

// run replays on the request goroutine, then leaves the live stream to
// the workers and the reader goroutine, and returns.
func (d *direct) run(st start) {
	handoff := make(chan struct{})
	go d.readLoop(handoff) // h.wg.Add was done by open, with the stopped check
	d.c.begin(st)
	close(handoff)
}

// result turns a socket error into the stream's end: false, the stream
// stopped (a slow client counted as dropped).
func (d *direct) result(err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, errSlow) {
		d.c.tooSlow()
	} else {
		d.c.stop(err)
	}
	return false
}

func (d *direct) frame(p []byte) bool { return d.result(d.s.write(chunk(p))) }

func (d *direct) fixed(f *fixedFrame) bool { return d.result(d.s.write(f.chunk)) }

func (d *direct) event(f *form, cursor []byte, beat *fixedFrame) bool {
	return d.result(d.writeEvent(f, cursor, beat))
}

// writeEvent writes f's chunk, encoded once for every stream; with a
// cursor, the stream's own chunk header and id line gathered with the
// shared body (one writev, no copy of the body). A beat's chunk goes
// first, gathered in the same writev.
func (d *direct) writeEvent(f *form, cursor []byte, beat *fixedFrame) error {
	switch {
	case cursor == nil && beat == nil:
		return d.s.write(f.chunk)
	case cursor == nil:
		return d.s.writev(beat.chunk, f.chunk)
	}
	d.head = d.head[:0]
	if beat != nil {
		d.head = append(d.head, beat.chunk...)
	}
	d.head = appendIDChunkHead(d.head, cursor, len(f.body()))
	return d.s.writev(d.head, f.bodyChunk())
}

func (d *direct) history(ev *observer.Event, cursor []byte) bool {
	return d.result(d.s.writeHistory(ev, d.c.req.dispatch, cursor))
}

// flush writes the replay buffer with a blocking write; live, writes are
// already out (or pending).
func (d *direct) flush() bool {
	if err := d.s.flushReplay(); err != nil {
		return d.result(err)
	}
	return !d.c.isStopped()
}

// finish writes the last chunk and closes the connection once everything
// is out (a clean end of the response).
func (d *direct) finish() { d.result(d.s.finish(lastChunk)) }

// abort closes the connection unless it is ending cleanly: then the
// flusher closes it, within drainTimeout, unless the stream is killed
// (drain timeout, Hub.Close). c.mu is held.
func (d *direct) abort(_, killed bool) { d.s.abort(killed) }

// goLiveLocked hands the socket to the live writers. c.mu is held.
func (d *direct) goLiveLocked() {
	d.s.goLive()
	d.turn |= turnLive
}

// wakeLocked queues the stream for a worker's turn, unless it is queued
// already or still replaying (the replay's end looks for work). c.mu is
// held.
func (d *direct) wakeLocked() {
	if d.turn&turnLive == 0 || d.turn&turnQueued != 0 {
		return
	}
	d.turn |= turnQueued
	d.c.h.runq.Push(d)
}

// canInlineLocked: the publishing goroutine may write a live frame itself
// when no turn is queued and the socket is idle: the write does not wait
// (what the kernel does not take goes to the flusher), and no hand-off
// adds latency. c.mu is held.
func (d *direct) canInlineLocked() bool {
	return d.turn&turnLive != 0 && d.turn&turnQueued == 0 && d.s.idle()
}

// writeInlineLocked writes f from the publishing goroutine; c.mu is held.
func (d *direct) writeInlineLocked(f *form, cursor []byte) {
	switch err := d.writeEvent(f, cursor, nil); {
	case errors.Is(err, errSlow):
		d.c.tooSlowLocked()
	case err != nil:
		d.c.stopLocked(err)
	}
}

// pendingLocked is what the kernel has not taken yet. c.mu is held.
func (d *direct) pendingLocked() int { return d.s.pendingBytes() }

// armWindow ends the coalesce window after w: a worker's turn sends it.
func (d *direct) armWindow(w time.Duration) {
	t := time.AfterFunc(w, func() {
		d.c.mu.Lock()
		if !d.c.stoppedLocked() { // a stopped stream has nothing left to send
			d.turn |= turnWindowDue
			d.wakeLocked()
		}
		d.c.mu.Unlock()
	})
	d.c.mu.Lock()
	if d.c.flags.has(flagReleased) {
		t.Stop()
	} else {
		d.windowTimer = t
	}
	d.c.mu.Unlock()
}

// dropWindow forgets an open coalesce window whose events were just sent.
func (d *direct) dropWindow() {
	d.c.mu.Lock()
	d.releaseLocked()
	d.turn &^= turnWindowDue
	d.c.mu.Unlock()
}

// releaseLocked stops the window timer. c.mu is held.
func (d *direct) releaseLocked() {
	if d.windowTimer != nil {
		d.windowTimer.Stop()
		d.windowTimer = nil
	}
}

// runTurn is one worker's turn on the stream: the coalesce window if it
// closed, then what was queued. New work arriving meanwhile queues the
// stream again when the turn ends.
func (d *direct) runTurn() {
	c := d.c
	c.mu.Lock()
	due, stopped := d.turn&turnWindowDue != 0, c.stoppedLocked()
	d.turn &^= turnWindowDue
	c.mu.Unlock()
	if !stopped {
		if !due || c.closeWindow() {
			c.deliver()
		}
	}
	c.mu.Lock()
	if c.hasWorkLocked() || !c.stoppedLocked() && d.turn&turnWindowDue != 0 {
		c.h.runq.Push(d) // still queued
	} else {
		d.turn &^= turnQueued
	}
	c.mu.Unlock()
}

// readLoop waits for the client to go away (a stream's client sends
// nothing), then stops the stream and, once the request goroutine is done
// with it (handoff), releases it. It is owned by the hub's wait group.
func (d *direct) readLoop(handoff <-chan struct{}) {
	defer d.c.h.wg.Done()
	b := make([]byte, 64)
	for {
		if _, err := d.s.read(b); err != nil {
			break
		}
	}
	d.c.stop(errClientGone)
	<-handoff
	d.c.h.release(d.c)
	d.s.abort(true)
}
