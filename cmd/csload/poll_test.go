package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startFloor runs csload floor in-process on a free loopback port.

func pollConfig(url string, pid int) config {
	return config{Server: url, Clients: 50, Courses: 5, Ramp: 1000, Rate: 100, Payload: 16, Publish: "http",
		PID: pid, Timeout: time.Minute, PollEvery: 100 * time.Millisecond, Concurrency: 2,
		CoursePfx: fmt.Sprintf("p%d-", time.Now().UnixNano()%1e6), Drain: 2 * time.Second}
}

func runPollT(t *testing.T, c config) *report {
	t.Helper()
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	rep, err := runPoll(ctx, c)
	if rep != nil {
		rep.print(os.Stdout, false)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// With no events, every poller's first poll is a 200 that gives it the
// ETag and every later one a 304, against coursestream and the floor
// alike (W/"<course>:0" on both), each poller on one connection of its
// own; with --pid the CPU per request is over the window after the 200s.
func TestPoll304SteadyState(t *testing.T) {
	url, pid := startServer(t)
	for _, target := range []struct {
		name string
		url  string
		pid  int
	}{{"coursestream", url, pid}, {"floor", startFloor(t, "fanout"), 0}} {
		t.Run(target.name, func(t *testing.T) {
			c := pollConfig(target.url, target.pid)
			c.Polls = 5
			rep := runPollT(t, c)
			if rep.Requests != 250 || rep.NotModOK != 200 || rep.PollErrors != 0 || rep.PollConns != 50 {
				t.Fatalf("%d requests, %d x 304, %d errors, %d connections; want 250, 200, 0, 50 (one per poller)",
					rep.Requests, rep.NotModOK, rep.PollErrors, rep.PollConns)
			}
			if rep.PollSeconds <= 0 || rep.PollRequests <= 0 || rep.PollRequests > 200 {
				t.Fatalf("polling window %.2fs with %d requests: want one after the first answers", rep.PollSeconds, rep.PollRequests)
			}
			if target.pid > 0 && (rep.ServerRSSMiB <= 0 || rep.ServerCPUSeconds > 0 && rep.CPUPerRequestMicros <= 0) {
				t.Fatalf("server RSS %.1f MiB, CPU %.3fs, %.2f µs per request: want figures", rep.ServerRSSMiB, rep.ServerCPUSeconds, rep.CPUPerRequestMicros)
			}
		})
	}
}

// Poll mode with --events 0 runs for --duration, or wants a bound.
func TestPollDurationAndUsage(t *testing.T) {
	url, _ := startServer(t)
	c := pollConfig(url, 0)
	c.Clients, c.Courses = 10, 1
	if _, err := runPoll(context.Background(), c); err == nil || !strings.Contains(err.Error(), "--duration") {
		t.Fatalf("--events 0 without --duration, --polls or --wait: %v; want a usage error", err)
	}
	var out strings.Builder
	err := run(context.Background(), []string{"poll", "--server", url, "--clients", "10", "--events", "0",
		"--poll-every", "100ms", "--duration", "500ms", "--json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"notModified"`) || !strings.Contains(out.String(), `"pollWindowRequests"`) {
		t.Fatalf("report %s: want 304s and a polling window", out.String())
	}
}

// The multi-course poll: each poller follows 8 of 16 courses with
// /v1/poll?courses=&cursor=, and gets every event of each exactly once
// and in order; with no events the cursor's ETag gives 304s.
func TestMultiCoursePoll(t *testing.T) {
	url, pid := startServer(t)
	c := pollConfig(url, pid)
	c.Courses, c.PerPoll, c.Events, c.Rate = 16, 8, 320, 320
	rep := runPollT(t, c)
	if rep.Expected != 50*8*320/16 || rep.Received != rep.Expected || rep.Lost != 0 || rep.Duplicates != 0 ||
		rep.OutOfOrder != 0 || rep.Resets != 0 || rep.PollErrors != 0 || rep.PollConns != 50 {
		t.Fatalf("report %+v", rep)
	}

	c = pollConfig(url, pid)
	c.Courses, c.PerPoll, c.Polls = 16, 8, 4
	rep = runPollT(t, c)
	if rep.Requests != 200 || rep.NotModOK != 150 || rep.PollErrors != 0 {
		t.Fatalf("%d requests, %d x 304, %d errors; want 200, 150, 0", rep.Requests, rep.NotModOK, rep.PollErrors)
	}

	c.PerPoll = 17
	if _, err := runPoll(context.Background(), c); err == nil {
		t.Fatal("--courses-per-poll above --courses was accepted")
	}
}

// Long-polls (--wait) deliver every event too.
func TestLongPollDelivers(t *testing.T) {
	url, _ := startServer(t)
	c := pollConfig(url, 0)
	c.Courses, c.PerPoll, c.Events, c.Rate, c.Wait = 4, 2, 200, 200, 5*time.Second
	rep := runPollT(t, c)
	if rep.Expected != 50*2*200/4 || rep.Received != rep.Expected || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 ||
		rep.PollConns != 50 {
		t.Fatalf("report %+v", rep)
	}
}

// metric reads one sample of the server's /metrics.
func metric(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return ""
}

// Held long-polls: --wait with --events 0 reports every poller's poll
// held once --settle has passed, as the server counts them too, and no
// answer before.
func TestHeldLongPolls(t *testing.T) {
	url, pid := startServer(t)
	var serverHeld string
	onHeld = func(int) { serverHeld = metric(t, url, `coursestream_connections{transport="longpoll"}`) }
	t.Cleanup(func() { onHeld = nil })
	c := pollConfig(url, pid)
	c.Wait, c.Settle = 30*time.Second, 100*time.Millisecond
	rep := runPollT(t, c)
	if rep.HeldPolls != 50 || serverHeld != "50" || rep.Requests != 0 || rep.PollConns != 50 || rep.ServerRSSMiB <= 0 {
		t.Fatalf("%d held (server: %s), %d answered, %d connections, RSS %.1f MiB; want 50, 50, 0, 50 and a figure",
			rep.HeldPolls, serverHeld, rep.Requests, rep.PollConns, rep.ServerRSSMiB)
	}
	t.Logf("%.1f KiB per held long-poll", rep.RSSPerHeldKiB)
}

// Against a bare held long-poll handler, as csload floor's is to be: it
// holds GET /v1/courses/{id}/poll?wait= until the wait ends. (A local
// server: csload floor has no held long-poll yet.)
func TestHeldLongPollsBareHandler(t *testing.T) {
	var held atomic.Int64
	var mu sync.Mutex
	var queries []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/courses/{courseId}/poll", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		d, err := time.ParseDuration(r.URL.Query().Get("wait"))
		if err != nil {
			http.Error(w, "no wait", http.StatusBadRequest)
			return
		}
		held.Add(1)
		defer held.Add(-1)
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("ETag", `W/"`+r.PathValue("courseId")+`:0"`)
		w.WriteHeader(http.StatusNotModified)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var serverHeld int64
	onHeld = func(int) { serverHeld = held.Load() }
	t.Cleanup(func() { onHeld = nil })
	c := pollConfig(srv.URL, 0)
	c.Wait, c.Settle = 30*time.Second, 50*time.Millisecond
	rep := runPollT(t, c)
	if rep.HeldPolls != 50 || serverHeld != 50 || rep.Requests != 0 {
		t.Fatalf("%d held, the server holds %d, %d answered; want 50, 50, 0", rep.HeldPolls, serverHeld, rep.Requests)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(queries) != 50 || !strings.HasSuffix(queries[0], "/poll?after=0&wait=30s") {
		t.Fatalf("%d requests, the first %q", len(queries), queries[0])
	}
}

// A multi-course poller sends the last answer's cursor and ETag, takes a
// reset's position, and checks each course on its own.
func TestMultiCoursePollerCursorAndResets(t *testing.T) {
	answers := []struct{ etag, body string }{
		{`W/"1"`, `{"cursor":"a:2,b:0","events":[{"id":"1","courseId":"a"},{"id":"2","courseId":"a"}],"more":false,"resets":[]}`},
		{`W/"2"`, `{"cursor":"a:3,b:7","events":[{"id":"3","courseId":"a"}],"more":false,"resets":[{"courseId":"b","lastEventId":"7"}]}`},
		{`W/"3"`, `{"cursor":"a:3,b:8","events":[{"id":"8","courseId":"b"}],"more":false,"resets":[]}`},
	}
	var got []string
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.RawQuery+" "+r.Header.Get("If-None-Match"))
		w.Header().Set("ETag", answers[n].etag)
		_, _ = io.WriteString(w, answers[n].body)
		n++
	}))
	defer srv.Close()
	p := &poller{courses: []string{"a", "b"}, hc: srv.Client(), last: make([]uint64, 2)}
	st := &pollStats{allHeld: make(chan struct{})}
	for range answers {
		if _, err := p.poll(context.Background(), srv.URL, &config{}, st); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"courses=a,b ", `courses=a,b&cursor=a:2,b:0 W/"1"`, `courses=a,b&cursor=a:3,b:7 W/"2"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("requests %q, want %q", got, want)
	}
	if p.received != 4 || p.resets != 1 || p.duplicates != 0 || p.outOfOrder != 0 || p.last[0] != 3 || p.last[1] != 8 {
		t.Fatalf("received %d, resets %d, dup %d, ooo %d, last %v", p.received, p.resets, p.duplicates, p.outOfOrder, p.last)
	}
}
