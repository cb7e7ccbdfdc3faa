package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"coursestream/internal/cursor"
)

// multiWatcher is an SSE client of one multi-course stream
// (GET /v1/events?courses=...) over every course of a scenario's load: it
// keeps a history per course, reconnects to a live instance with its
// cursor as Last-Event-ID, waits what the drain frame says, and backs off
// with full jitter after errors, as the browser library does.
type multiWatcher struct {
	courses  []string
	hist     []*history // per course, in the order of courses
	fleet    *fleet
	connects atomic.Int64
}

// watchMulti starts n multi-course watchers over the courses of l; the
// function it returns, called once l.finish has stopped the publisher
// (defer it), checks each course of each watcher (every event once, in
// order, no reset) and stops them.
func watchMulti(t *testing.T, l *load, name string, n int) (check func()) {
	t.Helper()
	var ws []*multiWatcher
	var fns []func(context.Context)
	for range n {
		w := &multiWatcher{courses: l.courses, fleet: l.f}
		for range l.courses {
			w.hist = append(w.hist, &history{})
		}
		ws = append(ws, w)
		fns = append(fns, w.run)
	}
	ctx, stop := context.WithCancel(context.Background())
	wait := startAll(ctx, fns...)
	t.Cleanup(func() { stop(); wait() })
	return func() {
		t.Helper()
		l.stopPub()
		l.waitPub()
		var hs []*history
		var courseOf []string
		for _, w := range ws {
			for i, h := range w.hist {
				hs = append(hs, h)
				courseOf = append(courseOf, w.courses[i])
			}
		}
		o := checkAll(t, l.f, name+" (multi-course SSE)", int(l.pub.ok.Load()), hs, l.courses, func(i int) string { return courseOf[i] }, false)
		if o.lost != 0 || o.dups != 0 {
			t.Errorf("multi-course streams: %d lost, %d duplicated", o.lost, o.dups)
		}
		stop()
		wait()
	}
}

func (w *multiWatcher) cursor() string {
	c := cursor.Cursor{Courses: w.courses, Seqs: make([]uint64, len(w.courses))}
	for i, h := range w.hist {
		c.Seqs[i] = h.position()
	}
	return c.String()
}

func (w *multiWatcher) run(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		base := w.fleet.pick()
		if base == "" {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		w.connects.Add(1)
		delay, opened := w.stream(ctx, base)
		if opened {
			attempt = 0
		}
		if delay < 0 {
			attempt++
			delay = time.Duration(rand.Int64N(int64(min(2*time.Second, 50*time.Millisecond<<min(attempt, 6)))))
		}
		sleep(ctx, delay)
	}
}

// stream reads one connection until it ends; see watcher.stream.
func (w *multiWatcher) stream(ctx context.Context, base string) (time.Duration, bool) {
	addr := strings.TrimPrefix(base, "http://")
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return -1, false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	from := w.cursor()
	where := fmt.Sprintf("multi-course connection %d to %s from %s at %s", w.connects.Load(), addr, from, time.Now().Format("15:04:05.000"))
	for _, h := range w.hist {
		h.connected(where)
	}
	fmt.Fprintf(conn, "GET /v1/events?courses=%s HTTP/1.1\r\nHost: %s\r\nLast-Event-ID: %s\r\n\r\n", strings.Join(w.courses, ","), addr, from)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return -1, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, false
	}
	index := make(map[string]int, len(w.courses))
	for i, c := range w.courses {
		index[c] = i
	}
	r := bufio.NewReaderSize(resp.Body, 4096)
	var id, event, data string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return -1, true
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			switch {
			case event == "coursestream:drain":
				var d struct{ RetryMs int64 }
				_ = json.Unmarshal([]byte(data), &d)
				return time.Duration(d.RetryMs) * time.Millisecond, true
			case data != "":
				w.frame(index, id, event, data)
			}
			id, event, data = "", "", ""
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

// frame records one event or reset in its course's history, after
// checking that the frame's cursor names it.
func (w *multiWatcher) frame(index map[string]int, id, event, data string) {
	var env struct{ ID, CourseID, LastEventID string }
	_ = json.Unmarshal([]byte(data), &env)
	seq := env.ID
	if event == "reset" {
		seq = env.LastEventID
	}
	i, ok := index[env.CourseID]
	n, err := strconv.ParseUint(seq, 10, 64)
	ps, perr := cursor.Parse(id)
	if !ok || err != nil || perr != nil || ps[env.CourseID] != n {
		h := w.hist[0]
		h.mu.Lock()
		h.bad = append(h.bad, fmt.Sprintf("frame id %q does not carry event %s:%s", id, env.CourseID, seq))
		h.mu.Unlock()
		return
	}
	if event == "reset" {
		w.hist[i].reset(n)
	} else {
		w.hist[i].event(n)
	}
}
