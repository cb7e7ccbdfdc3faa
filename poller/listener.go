package poller

import (
	"net"
	"sync"
)

// Listener is a net.Listener for an http.Server that also accepts the
// connections the poller hands back (Handback) after answering a
// long-poll it took over: net/http serves their next requests as on a new
// connection. Close stops both.
type Listener struct {
	inner    net.Listener
	accepted chan acceptResult
	back     chan net.Conn
	done     chan struct{}
	failed   chan struct{} // the inner listener failed for good: err
	err      error
	once     sync.Once
	pump     sync.WaitGroup
}

type acceptResult struct {
	c   net.Conn
	err error
}

// NewListener wraps inner; its accept loop runs until Close.
func NewListener(inner net.Listener) *Listener {
	l := &Listener{
		inner:    inner,
		accepted: make(chan acceptResult),
		back:     make(chan net.Conn),
		done:     make(chan struct{}),
		failed:   make(chan struct{}),
	}
	l.pump.Add(1)
	go l.run()
	return l
}

// run accepts from the inner listener, one connection at a time, as the
// server asks for them.
func (l *Listener) run() {
	defer l.pump.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil && !temporary(err) {
			l.err = err
			close(l.failed)
			return
		}
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.done:
			if c != nil {
				_ = c.Close()
			}
			return
		}
	}
}

// temporary is what net/http retries an Accept error on.
func temporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// Accept returns the next new or handed-back connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.accepted:
		return a.c, a.err
	case c := <-l.back:
		return c, nil
	case <-l.failed:
		return nil, l.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Handback implements Handback: c is served again, unless the listener
// is closed.
func (l *Listener) Handback(c net.Conn) bool {
	select {
	case l.back <- c:
		return true
	case <-l.done:
		return false
	}
}

// Close closes the inner listener and waits for the accept loop to end.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.pump.Wait()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }
