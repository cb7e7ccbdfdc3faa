package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// unusedGrace is how long, once shutdown has begun, a connection that has
// not sent a whole request yet is given before it is closed.
const unusedGrace = 250 * time.Millisecond

// unusedConns tracks the connections that have not begun their first
// request (http.StateNew): a browser's preconnected socket, a client that
// dialed and then used another connection, a slow header. Server.Shutdown
// waits up to 5 s for those (net/http treats a StateNew connection as idle
// only after 5 s), which every deploy would pay; closing them at shutdown
// is what Shutdown already does to idle keep-alive connections.
type unusedConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// track is the http.Server's ConnState hook.
func (u *unusedConns) track(c net.Conn, s http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s == http.StateNew {
		if u.m == nil {
			u.m = make(map[net.Conn]struct{})
		}
		u.m[c] = struct{}{}
		return
	}
	delete(u.m, c)
}

// closeAll closes the connections that still have not begun a request and
// returns how many it closed.
func (u *unusedConns) closeAll() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := len(u.m)
	for c := range u.m {
		_ = c.Close()
		delete(u.m, c)
	}
	return n
}
