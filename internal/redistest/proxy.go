package redistest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a Redis. It forwards bytes
// both ways until told to silence the pub/sub connections: from then on
// what Redis sends to them is read and thrown away, while TCP stays open
// and the client's commands still reach Redis (a middlebox that black-holes
// one direction, or a server that stops writing to a subscriber).
type Proxy struct {
	Addr string // 127.0.0.1:PORT, to give clients instead of the server's

	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	closed bool
}

// proxyConn is one client connection and its connection to Redis.
type proxyConn struct {
	client, server net.Conn
	pubsub         atomic.Bool // the client sent a (S|P)SUBSCRIBE
	silent         atomic.Bool // Redis' bytes to the client are dropped
}

// StartProxy listens on a free loopback port and forwards to target. It
// is closed, with every connection through it, when the test ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[*proxyConn]struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// URL is the proxy's redis:// URL, database 0.
func (p *Proxy) URL() string { return "redis://" + p.Addr + "/0" }

// SilencePubSub stops forwarding Redis' bytes to every connection that is
// a pub/sub connection now, and returns how many it silenced. Connections
// opened later are forwarded as usual.
func (p *Proxy) SilencePubSub() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if c.pubsub.Load() {
			c.silent.Store(true)
			n++
		}
	}
	return n
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.client.Close()
		c.server.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); c.up(); p.drop(c) }()
		go func() { defer p.wg.Done(); c.down(); p.drop(c) }()
	}
}

// drop closes both sides of c (the other copier ends too).
func (p *Proxy) drop(c *proxyConn) {
	c.client.Close()
	c.server.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

var subscribeCmd = []byte("subscribe")

// up copies the client's bytes to Redis, noting a subscription command.
func (c *proxyConn) up() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			if !c.pubsub.Load() && bytes.Contains(bytes.ToLower(buf[:n]), subscribeCmd) {
				c.pubsub.Store(true)
			}
			if _, werr := c.server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// down copies Redis' bytes to the client, or drops them once silenced.
func (c *proxyConn) down() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.server.Read(buf)
		if n > 0 && !c.silent.Load() {
			if _, werr := c.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
