package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Long-polls through the whole server (chi, CORS, the listener main
// serves on): taken over from net/http while they wait (the goroutine
// profile shows one parked reader per poll), answered with the
// middleware's headers, their connections kept for the next request, and
// answered with Connection: close by a shutdown.
func TestLongPollsTakenOverEndToEnd(t *testing.T) {
	t.Parallel()
	debug := freeLoopbackAddr(t)
	s := startServer(t, "--debug-addr", debug, "--cors-origins", "https://app.example")
	waitStatus(t, s, "/readyz", 200)
	var dials atomic.Int32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	defer client.CloseIdleConnections()
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	poll := func(target string) <-chan result {
		res := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, s.url(target), nil)
			req.Header.Set("Origin", "https://app.example")
			resp, err := client.Do(req)
			if err != nil {
				res <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			res <- result{resp, string(b), err}
		}()
		return res
	}
	const n = 5
	var held []<-chan result
	for range n {
		held = append(held, poll("/v1/courses/lp-e2e/poll?wait=25s"))
	}
	waitMetric(t, s, `coursestream_connections{transport="longpoll"} 5`)
	waitParked(t, debug, n)
	publishN(t, s, "lp-e2e", "upload-complete", `{"n":1}`, 1)
	for i, res := range held {
		r := <-res
		if r.err != nil {
			t.Fatalf("long-poll %d: %v", i, r.err)
		}
		if r.resp.StatusCode != 200 || !strings.Contains(r.body, `"lastEventId":"1"`) ||
			r.resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.resp.Header.Get("ETag") != `W/"lp-e2e:1"` {
			t.Fatalf("long-poll %d: %d %v %q", i, r.resp.StatusCode, r.resp.Header, r.body)
		}
	}
	// Their connections serve the next polls: no new dial.
	var next []<-chan result
	for range n {
		next = append(next, poll("/v1/courses/lp-e2e/poll?after=1&wait=25s"))
	}
	waitMetric(t, s, `coursestream_connections{transport="longpoll"} 5`)
	waitParked(t, debug, n) // taken over again: a shutdown answers them with Connection: close
	if d := dials.Load(); d != n {
		t.Fatalf("%d dials for %d pollers polling twice: connections were not kept", d, n)
	}
	// A shutdown answers them at once, and closes their connections.
	took := s.terminate(t)
	for i, res := range next {
		r := <-res
		if r.err != nil {
			t.Fatalf("long-poll %d at shutdown: %v", i, r.err)
		}
		if r.resp.StatusCode != 200 || !r.resp.Close {
			t.Fatalf("long-poll %d at shutdown: %d, close %v", i, r.resp.StatusCode, r.resp.Close)
		}
	}
	if took > 5*time.Second {
		t.Fatalf("shutdown took %s with parked long-polls", took)
	}
}

// freeLoopbackAddr is a loopback address free a moment ago (for a second
// listener whose address the server does not log before it is ready).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitParked polls the server's goroutine profile until it shows n
// parked long-poll readers (nothing outside the server says when a poll
// is taken over).
func waitParked(t *testing.T, debug string, n int) {
	t.Helper()
	got, err := 0, error(nil)
	for deadline := time.Now().Add(10 * time.Second); ; { // the pprof server starts beside the main one
		var resp *http.Response
		if resp, err = noKeepAlive.Get("http://" + debug + "/debug/pprof/goroutine?debug=2"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got = strings.Count(string(body), "coursestream/poller.(*parked).run("); got == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d parked readers in the goroutine profile (%v), want %d: the long-polls were not taken over", got, err, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
