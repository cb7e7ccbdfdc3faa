package stream

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"coursestream/observer"
)

// socket is a connection taken over from net/http, and the one place where
// its bytes are written: this is the only file of the service that uses
// syscall.
//
// Who may write the socket at a given moment is its phase, which every
// write checks:
//
//	sockReplay    the request goroutine alone, while it replays history:
//	              writes gather in buf and go out with blocking writes.
//	sockLive      the stream's writer of the moment, under s.mu, with
//	              non-blocking writes: a hub worker during the stream's turn
//	              on the run queue, or the publisher writing inline when no
//	              turn is queued (the stream's lock decides between those two,
//	              see direct). Bytes the kernel does not take at once wait in
//	              pending, and the phase becomes sockFlushing.
//	sockFlushing  the flusher goroutine alone, with blocking writes of
//	              pending; a write only appends to pending. Once pending is
//	              out the phase is sockLive again.
//	sockDraining  as sockFlushing, after the response's last chunk: the
//	              socket closes once pending is out (or drainTimeout passes).
//	sockClosed    nobody.
//
// Every change of phase is in this file. The phase only moves forward,
// except for sockLive ⇄ sockFlushing.
type socket struct {
	nc           net.Conn
	raw          syscall.RawConn
	limit        int           // bytes that may wait for the client before it counts as too slow
	writeTimeout time.Duration // a blocking write that takes no byte for this long fails
	wg           *sync.WaitGroup
	failed       func(error) // the flusher's write failed; called without s.mu

	buf []byte // sockReplay: bytes not yet written; touched by the request goroutine only

	mu      sync.Mutex
	phase   sockPhase
	pending []byte

	// tryWrite's argument and results, kept here so that its callback is
	// made once (a closure per write would allocate). Under s.mu.
	wp      []byte
	wn      int
	werr    error
	writeFn func(fd uintptr) bool
	// writev's, likewise: the two pieces of a gathered write.
	iov      [2]syscall.Iovec
	writevFn func(fd uintptr) bool
}

// sockPhase is who may write a socket; see socket.
type sockPhase uint8

const (
	sockReplay sockPhase = iota
	sockLive
	sockFlushing
	sockDraining
	sockClosed
)

var (
	// errHijacked: taking the connection over failed after net/http gave it
	// up; it is closed, and no response can be written any more.
	errHijacked = errors.New("stream: the hijacked connection cannot be written directly")
	// errClosed: the socket is closed.
	errClosed = errors.New("stream: the connection is closed")
)

// newSocket takes nc over, in phase sockReplay. The flusher goroutine, when
// one runs, is counted in wg; failed is told when it cannot write. On
// failure nc is closed.
func newSocket(nc net.Conn, limit int, writeTimeout time.Duration, wg *sync.WaitGroup, failed func(error)) (*socket, error) {
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
	_ = nc.SetDeadline(time.Time{})
	s := &socket{nc: nc, raw: raw, limit: limit, writeTimeout: writeTimeout, wg: wg, failed: failed}
	s.writeFn, s.writevFn = s.rawWrite, s.rawWritev
	return s, nil
}

// replaying reports whether the socket is in sockReplay.
func (s *socket) replaying() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase == sockReplay
}

// write writes p as the phase allows: in sockReplay into the replay
// buffer (written out once it has grown long), in sockLive at once if the
// kernel takes it, else after what is pending. It fails with errSlow when
// more than the limit would wait for the client, errClosed once closed.
func (s *socket) write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.phase {
	case sockReplay:
		s.buf = append(s.buf, p...) // buf is the request goroutine's
		if len(s.buf) < 64<<10 {
			return nil
		}
		s.mu.Unlock()
		defer s.mu.Lock()
		return s.flushReplay()
	case sockLive:
		n, err := s.tryWrite(p)
		if err != nil {
			return err
		}
		if n < len(p) {
			return s.queueLocked(p[n:])
		}
		return nil
	case sockFlushing, sockDraining:
		return s.queueLocked(p)
	}
	return errClosed
}

// writev writes head then tail as write(head+tail) would, gathered: in
// sockLive one writev system call, so that a shared tail (an event's body,
// encoded once for every stream) is not copied per stream. Only what the
// kernel does not take is copied, into pending.
func (s *socket) writev(head, tail []byte) error {
	if len(head) == 0 || len(tail) == 0 {
		if err := s.write(head); err != nil {
			return err
		}
		return s.write(tail)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.phase {
	case sockReplay:
		s.buf = append(append(s.buf, head...), tail...) // buf is the request goroutine's
		if len(s.buf) < 64<<10 {
			return nil
		}
		s.mu.Unlock()
		defer s.mu.Lock()
		return s.flushReplay()
	case sockLive:
		n, err := s.tryWritev(head, tail)
		if err != nil {
			return err
		}
		if n < len(head) {
			return s.queueLocked(head[n:], tail)
		}
		if n -= len(head); n < len(tail) {
			return s.queueLocked(tail[n:])
		}
		return nil
	case sockFlushing, sockDraining:
		return s.queueLocked(head, tail)
	}
	return errClosed
}

// writeHistory writes a replayed event's chunk (in the form of d, with
// cursor as its id when not nil), built in place in the replay buffer
// (sockReplay: no allocation), or as write does in the live phases.
func (s *socket) writeHistory(ev *observer.Event, d dispatch, cursor []byte) error {
	if !s.replaying() {
		return s.write(appendEventChunk(nil, ev, d, cursor))
	}
	s.buf = appendEventChunk(s.buf, ev, d, cursor)
	if len(s.buf) >= 64<<10 { // a long replay is not held all in memory
		return s.flushReplay()
	}
	return nil
}

// flushReplay writes the replay buffer with a blocking write (sockReplay);
// in the live phases writes are already out or pending.
func (s *socket) flushReplay() error {
	if !s.replaying() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.phase == sockClosed {
			return errClosed
		}
		return nil
	}
	if len(s.buf) == 0 {
		return nil
	}
	_ = s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	_, err := s.nc.Write(s.buf)
	// No deadline may outlive a blocking write: the non-blocking writes of
	// the live phase check it first, and an expired one would fail them all.
	_ = s.nc.SetWriteDeadline(time.Time{})
	s.buf = s.buf[:0]
	return err
}

// goLive ends the replay (its buffer written out): from now on the
// stream's live writers write.
func (s *socket) goLive() {
	s.mu.Lock()
	if s.phase == sockReplay {
		s.phase = sockLive
	}
	s.mu.Unlock()
	s.buf = nil
}

// idle reports whether a write now would go straight to the kernel: live,
// nothing pending, no flusher.
func (s *socket) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase == sockLive && len(s.pending) == 0
}

// pendingBytes is what waits for the kernel to take it.
func (s *socket) pendingBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// closed reports whether the socket is closed.
func (s *socket) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase == sockClosed
}

// queueLocked keeps ps, in order, for the flusher, which it starts if
// none runs.
func (s *socket) queueLocked(ps ...[]byte) error {
	n := len(s.pending)
	for _, p := range ps {
		n += len(p)
	}
	if n > s.limit {
		return errSlow
	}
	for _, p := range ps {
		s.pending = append(s.pending, p...)
	}
	if s.phase == sockLive {
		s.phase = sockFlushing
		s.wg.Add(1)
		go s.flushLoop()
	}
	return nil
}

// tryWrite writes what the kernel takes without waiting. s.mu is held.
func (s *socket) tryWrite(p []byte) (int, error) {
	s.wp = p
	err := s.raw.Write(s.writeFn)
	s.wp = nil
	return s.written(err)
}

// written is the outcome of a non-blocking write: what the kernel took
// (nothing, without an error, when it would have had to wait). s.mu is
// held.
func (s *socket) written(err error) (int, error) {
	n, werr := s.wn, s.werr
	s.werr = nil
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

func (s *socket) rawWrite(fd uintptr) bool {
	for {
		s.wn, s.werr = syscall.Write(int(fd), s.wp)
		if s.werr != syscall.EINTR {
			return true // never wait for the socket: the flusher does
		}
	}
}

// tryWritev writes what the kernel takes of head then tail without
// waiting, in one writev. s.mu is held; neither is empty.
func (s *socket) tryWritev(head, tail []byte) (int, error) {
	s.iov[0].Base, s.iov[1].Base = &head[0], &tail[0]
	s.iov[0].SetLen(len(head))
	s.iov[1].SetLen(len(tail))
	err := s.raw.Write(s.writevFn)
	s.iov = [2]syscall.Iovec{} // keep no reference to the bytes
	return s.written(err)
}

func (s *socket) rawWritev(fd uintptr) bool {
	for {
		r, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.iov[0])), uintptr(len(s.iov)))
		s.wn, s.werr = int(r), nil
		if errno != 0 {
			s.wn, s.werr = 0, errno
		}
		if errno != syscall.EINTR {
			return true // never wait for the socket: the flusher does
		}
	}
}

// flushLoop is the flusher: it pushes pending out with blocking writes,
// then ends (sockFlushing → sockLive, sockDraining → sockClosed). It is
// counted in s.wg. It clears its write deadline before it gives the socket
// back, since the live phase's non-blocking writes check it.
func (s *socket) flushLoop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(s.pending) == 0 && s.phase != sockClosed {
			s.mu.Unlock()
			_ = s.nc.SetWriteDeadline(time.Time{})
			s.mu.Lock()
		}
		if len(s.pending) == 0 || s.phase == sockClosed {
			s.pending = nil
			closeNow := s.phase == sockDraining
			switch s.phase {
			case sockDraining:
				s.phase = sockClosed
			case sockFlushing:
				s.phase = sockLive
			}
			s.mu.Unlock()
			if closeNow {
				s.nc.Close()
			}
			return
		}
		p := s.pending
		timeout := s.writeTimeout
		if s.phase == sockDraining {
			timeout = min(timeout, drainTimeout)
		}
		s.mu.Unlock()
		_ = s.nc.SetWriteDeadline(time.Now().Add(timeout))
		n, err := s.nc.Write(p)
		s.mu.Lock()
		s.pending = s.pending[n:] // appends meanwhile went after p
		if err != nil {
			// The peer takes nothing (or is gone): cut it, draining or not.
			s.pending = nil
			s.phase = sockClosed
			s.mu.Unlock()
			s.nc.Close()
			s.failed(err)
			return
		}
		s.mu.Unlock()
	}
}

// finish writes the response's last chunk and closes the socket once
// everything is out: at once, or by the flusher (sockDraining).
func (s *socket) finish(last []byte) error {
	if err := s.write(last); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.phase {
	case sockLive:
		s.phase = sockClosed
		s.nc.Close()
	case sockFlushing:
		s.phase = sockDraining
		// A write in flight may hold a longer deadline: bring it to drainTimeout.
		_ = s.nc.SetWriteDeadline(time.Now().Add(drainTimeout))
	}
	return nil
}

// abort closes the socket, so that a write blocked on it returns at once;
// a socket draining its last bytes is left to the flusher unless force.
func (s *socket) abort(force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase == sockClosed || s.phase == sockDraining && !force {
		return
	}
	s.phase = sockClosed
	s.nc.Close()
}

// read reads what the client sends (a stream's client sends nothing: it
// returns when the client goes away).
func (s *socket) read(b []byte) (int, error) { return s.nc.Read(b) }
