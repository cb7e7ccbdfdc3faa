package stream

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"coursestream/observer"
)

// direct writes an HTTP/1.1 stream straight to its connection, taken over
// from net/http after the request: headers, then each frame as one chunk
// of a chunked body. Live events go out as the chunk encoded once per
// event (frame.chunk).
//
// While the request goroutine replays (live is false) writes are buffered
// and flushed with blocking writes. Live, the hub's workers write with
// non-blocking writes; what the kernel does not take at once waits in
// pending (bounded by Config.ClientBuffer) and a flusher goroutine, alive
// only while pending is not empty, pushes it out. A reader goroutine per
// connection notices the client going away; it owns the cleanup.
type direct struct {
	c   *conn
	nc  net.Conn
	raw syscall.RawConn
	buf []byte // replay: bytes not yet written

	// tryWrite's arguments and results, kept here so that its callback is
	// made once (a closure per write would allocate). Under c.mu.
	wp      []byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool

	// Under c.mu.
	live      bool // the workers write (the replay is over)
	pending   []byte
	flushing  bool // a flusher goroutine runs
	finishing bool // the last chunk is written: close once pending is out
	closed    bool
}

var (
	errClientGone = errors.New("the client went away")
	// errHijacked: taking the connection over failed after net/http gave it
	// up; it is closed, and no response can be written any more.
	errHijacked = errors.New("stream: the hijacked connection cannot be written directly")
)

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
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("%w: %T has no file descriptor", errHijacked, nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: %w", errHijacked, err)
	}
	_ = brw // what the client sent after its request is ignored: it has nothing to say
	_ = nc.SetDeadline(time.Time{})
	d := newDirect(c, nc, raw)
	d.buf = appendResponseHead(d.buf, header)
	return d, nil
}

// isLive: live changes once, under c.mu, from the request goroutine that
// replays; the workers that write afterwards got the connection under
// c.mu, after the change.
func (d *direct) isLive() bool { return d.live }

func (d *direct) frame(p []byte) bool { return d.write(chunk(p)) }

func (d *direct) fixed(f *fixedFrame) bool { return d.write(f.chunk) }

func (d *direct) event(f *frame) bool { return d.write(f.chunk) }

// history appends a replayed event's chunk straight into the replay buffer.
func (d *direct) history(ev *observer.Event) bool {
	if d.isLive() {
		return d.write(appendEventChunk(nil, ev))
	}
	d.buf = appendEventChunk(d.buf, ev)
	return d.spill()
}

func (d *direct) write(p []byte) bool {
	if !d.isLive() {
		d.buf = append(d.buf, p...)
		return d.spill()
	}
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	return d.writeLocked(p)
}

// spill writes out a replay buffer that has grown long: a long replay is
// not held all in memory.
func (d *direct) spill() bool {
	if len(d.buf) >= 64<<10 {
		return d.flush()
	}
	return true
}

// writeLocked writes p now if the kernel takes it, else queues what is
// left for the flusher. c.mu is held.
func (d *direct) writeLocked(p []byte) bool {
	if d.closed {
		return false
	}
	if d.flushing || len(d.pending) > 0 {
		return d.queueLocked(p)
	}
	n, err := d.tryWrite(p)
	if err != nil {
		d.c.stopLocked(err)
		return false
	}
	if n < len(p) {
		return d.queueLocked(p[n:])
	}
	return true
}

// queueLocked keeps p for the flusher; a client that would hold more than
// Config.ClientBuffer is too slow: it is cut, and resumes with its id.
func (d *direct) queueLocked(p []byte) bool {
	if len(d.pending)+len(p) > d.c.h.cfg.ClientBuffer {
		d.c.h.cfg.Metrics.Dropped(len(d.c.queue) + 1)
		d.c.stopLocked(errSlow)
		return false
	}
	d.pending = append(d.pending, p...)
	if !d.flushing {
		d.flushing = true
		d.c.h.wg.Add(1)
		go d.flushLoop()
	}
	return true
}

func newDirect(c *conn, nc net.Conn, raw syscall.RawConn) *direct {
	d := &direct{c: c, nc: nc, raw: raw}
	d.writeFn = d.rawWrite
	return d
}

// tryWrite writes what the kernel takes without waiting. c.mu is held.
func (d *direct) tryWrite(p []byte) (int, error) {
	d.wp = p
	err := d.raw.Write(d.writeFn)
	n, werr := d.wn, d.werr
	d.wp, d.werr = nil, nil
	switch {
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

func (d *direct) rawWrite(fd uintptr) bool {
	for {
		d.wn, d.werr = syscall.Write(int(fd), d.wp)
		if d.werr != syscall.EINTR {
			return true // never wait for the socket: the flusher does
		}
	}
}

// flushLoop pushes pending out with blocking writes, then ends. It is
// owned by the hub's wait group. While it runs (flushing) no worker
// writes: they append to pending; it clears its write deadline before it
// gives the socket back, since the workers' non-blocking writes check it.
func (d *direct) flushLoop() {
	defer d.c.h.wg.Done()
	for {
		d.c.mu.Lock()
		if len(d.pending) == 0 && !d.closed {
			d.c.mu.Unlock()
			_ = d.nc.SetWriteDeadline(time.Time{})
			d.c.mu.Lock()
		}
		if len(d.pending) == 0 || d.closed {
			d.flushing = false
			d.pending = nil
			closeNow := d.finishing && !d.closed
			if closeNow {
				d.closed = true
			}
			d.c.mu.Unlock()
			if closeNow {
				d.nc.Close()
			}
			return
		}
		p := d.pending
		timeout := d.c.h.cfg.WriteTimeout
		if d.finishing {
			timeout = min(timeout, drainTimeout)
		}
		d.c.mu.Unlock()
		_ = d.nc.SetWriteDeadline(time.Now().Add(timeout))
		n, err := d.nc.Write(p)
		d.c.mu.Lock()
		d.pending = d.pending[n:] // appends meanwhile went after p
		if err != nil {
			// The peer takes nothing (or is gone): cut it, finishing or not.
			d.flushing, d.pending = false, nil
			d.closed = true
			d.c.mu.Unlock()
			d.nc.Close()
			d.c.stop(err)
			return
		}
		d.c.mu.Unlock()
	}
}

// flush writes the replay buffer with a blocking write; live, writes are
// already out (or pending).
func (d *direct) flush() bool {
	if d.isLive() {
		d.c.mu.Lock()
		defer d.c.mu.Unlock()
		return !d.closed && !d.c.stopped
	}
	if len(d.buf) == 0 {
		return true
	}
	_ = d.nc.SetWriteDeadline(time.Now().Add(d.c.h.cfg.WriteTimeout))
	_, err := d.nc.Write(d.buf)
	// No deadline may outlive a blocking write: the workers' non-blocking
	// writes check it first, and an expired one would fail them all.
	_ = d.nc.SetWriteDeadline(time.Time{})
	d.buf = d.buf[:0]
	if err != nil {
		d.c.stop(err)
		return false
	}
	return true
}

// finish writes the last chunk and closes the connection once everything
// is out (a clean end of the response).
func (d *direct) finish() {
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	if d.closed || !d.writeLocked(lastChunk) {
		return
	}
	d.finishing = true
	if !d.flushing && len(d.pending) == 0 {
		d.closed = true
		d.nc.Close()
		return
	}
	// A write in flight may hold a longer deadline: bring it to drainTimeout.
	_ = d.nc.SetWriteDeadline(time.Now().Add(drainTimeout))
}

// abort closes the connection (c.mu is held), unless it is finishing
// cleanly: then the flusher closes it, within drainTimeout, unless the
// stream is killed (drain timeout, Hub.Close).
func (d *direct) abort() {
	if d.closed || d.finishing && !d.c.killed {
		return
	}
	d.closed = true
	d.nc.Close()
}

// readLoop waits for the client to go away (a stream's client sends
// nothing), then stops the stream and, once the request goroutine is done
// with it (handoff), releases it. It is owned by the hub's wait group.
func (d *direct) readLoop(handoff <-chan struct{}) {
	defer d.c.h.wg.Done()
	b := make([]byte, 64)
	for {
		if _, err := d.nc.Read(b); err != nil {
			break
		}
	}
	d.c.stop(errClientGone)
	<-handoff
	d.c.h.release(d.c)
	d.c.mu.Lock()
	d.closed = true
	d.c.mu.Unlock()
	d.nc.Close()
}
