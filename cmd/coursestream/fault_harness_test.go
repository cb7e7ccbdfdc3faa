package main

// The fault suite's harness: real redis-server, real coursestream
// processes, clients that behave like browsers (they reconnect with
// Last-Event-ID, honour the drain frame, back off with jitter), continuous
// publishing over FCALL and HTTP, and one invariant checker for every
// scenario: each client's ids run consecutively from where it started, with
// no duplicate, or it got a reset and carried on consecutively from there.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"coursestream/internal/redistest"
)

// fleet is a Redis and the coursestream instances running on it.
type fleet struct {
	t     *testing.T
	redis *redistest.Server
	rdb   *redis.Client
	args  []string
	bin   string   // the coursestream binary (default: the race build)
	where []string // the Redis flags of an instance; nil: --redis-url of redis

	mu   sync.Mutex
	live []*server
	next atomic.Uint64
}

func newFleet(t *testing.T, opt redistest.Options, instances int, args ...string) *fleet {
	t.Helper()
	return newFleetOf(t, binary, opt, instances, args...)
}

func newFleetOf(t *testing.T, bin string, opt redistest.Options, instances int, args ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, redis: redistest.Start(t, opt), args: args, bin: bin}
	f.rdb = f.redis.Client()
	for range instances {
		f.add()
	}
	return f
}

// add starts one more instance.
func (f *fleet) add() *server {
	f.t.Helper()
	where := f.where
	if where == nil {
		where = []string{"--redis-url", f.redis.URL()}
	}
	s := startBinary(f.t, f.bin, append(append([]string(nil), where...), f.args...)...)
	f.mu.Lock()
	f.live = append(f.live, s)
	f.mu.Unlock()
	return s
}

// drop takes s out of the rotation (before it is stopped).
func (f *fleet) drop(s *server) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range f.live {
		if l == s {
			f.live = append(f.live[:i], f.live[i+1:]...)
			return
		}
	}
}

// pick returns the base URL of a live instance, round-robin.
func (f *fleet) pick() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.live) == 0 {
		return ""
	}
	return "http://" + f.live[int(f.next.Add(1))%len(f.live)].addr
}

// seq is a course's last id, from Redis.
func (f *fleet) seq(course string) uint64 {
	v, err := f.rdb.Get(context.Background(), "coursestream:{"+course+"}:seq").Uint64()
	if err != nil && err != redis.Nil {
		f.t.Fatalf("reading the sequence of %s: %v", course, err)
	}
	return v
}

// terminate sends SIGTERM and waits for a clean exit.
func (s *server) terminate(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after SIGTERM")
	}
	return time.Since(start)
}

// kill sends SIGKILL and waits.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	err := <-s.done
	s.done <- err
}

// entry is one thing a client saw: an event id, or a reset to an id.
type entry struct {
	id    uint64
	reset bool
}

// history is what one client saw, checked against the invariant.
type history struct {
	mu      sync.Mutex
	pos     uint64
	entries []entry
	resets  int
	bad     []string // invariant violations, described
	where   string   // the current connection, for the descriptions
	inConn  int      // events seen on the current connection
}

func (h *history) connected(where string) {
	h.mu.Lock()
	h.where, h.inConn = where, 0
	h.mu.Unlock()
}

func (h *history) event(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inConn++
	switch {
	case id <= h.pos:
		h.bad = append(h.bad, fmt.Sprintf("duplicate %d at position %d (%s, event %d of the connection)", id, h.pos, h.where, h.inConn))
	case id != h.pos+1:
		h.bad = append(h.bad, fmt.Sprintf("gap: %d after %d (%s, event %d of the connection)", id, h.pos, h.where, h.inConn))
		h.pos = id
	default:
		h.pos = id
	}
	h.entries = append(h.entries, entry{id: id})
}

func (h *history) reset(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pos = id
	h.resets++
	h.entries = append(h.entries, entry{id: id, reset: true})
}

func (h *history) position() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos
}

// watcher is an SSE client that behaves like a browser with the library:
// it reconnects to a live instance with its Last-Event-ID, waits what the
// drain frame says, backs off with full jitter after errors.
type watcher struct {
	history
	course string
	fleet  *fleet
	// stall, when set, makes the client stop reading while it is set.
	stall atomic.Bool
	// slow, while non-zero, makes it read one byte at a time with this
	// pause between reads.
	slow atomic.Int64

	connects atomic.Int64
	// onConn, when set, is called at each connection attempt.
	onConn atomic.Pointer[func(url string)]
	// tinyBuffer gives the socket a 4 KiB receive buffer, so that a client
	// that stops reading holds up the server's writes soon.
	tinyBuffer bool
}

func (w *watcher) run(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		base := w.fleet.pick()
		if base == "" {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		if fn := w.onConn.Load(); fn != nil {
			(*fn)(base)
		}
		w.connects.Add(1)
		delay, opened := w.stream(ctx, base)
		if opened {
			attempt = 0
		}
		if delay < 0 { // no drain frame: jittered backoff, as the library does
			attempt++
			delay = time.Duration(rand.Int64N(int64(min(2*time.Second, 50*time.Millisecond<<min(attempt, 6)))))
		}
		sleep(ctx, delay)
	}
}

// stream reads one connection until it ends. It returns the delay the
// drain frame asked for (-1 without one) and whether the stream opened.
//
// It speaks HTTP over a raw connection: one goroutine per client, so that
// thousands of clients stay within the race detector's goroutine limit.
func (w *watcher) stream(ctx context.Context, base string) (time.Duration, bool) {
	addr := strings.TrimPrefix(base, "http://")
	d := net.Dialer{Timeout: 5 * time.Second}
	if w.tinyBuffer {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return -1, false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	from := w.position()
	w.connected(fmt.Sprintf("connection %d to %s from %d at %s", w.connects.Load(), addr, from, time.Now().Format("15:04:05.000")))
	fmt.Fprintf(conn, "GET /v1/courses/%s/events HTTP/1.1\r\nHost: %s\r\nLast-Event-ID: %d\r\n\r\n", w.course, addr, from)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return -1, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, false
	}
	r := bufio.NewReaderSize(&slowReader{r: resp.Body, every: &w.slow}, 4096)
	var id, event, data string
	for {
		for w.stall.Load() && ctx.Err() == nil {
			sleep(ctx, 20*time.Millisecond)
		}
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
			case event == "reset":
				n, _ := strconv.ParseUint(id, 10, 64)
				w.reset(n)
			case data != "":
				n, err := strconv.ParseUint(id, 10, 64)
				if err != nil {
					w.mu.Lock()
					w.bad = append(w.bad, fmt.Sprintf("event without a decimal id: %q", id))
					w.mu.Unlock()
				} else {
					w.event(n)
				}
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

// slowReader, while *every is non-zero, hands out one byte per call and
// pauses between calls.
type slowReader struct {
	r     io.Reader
	every *atomic.Int64
}

func (s *slowReader) Read(p []byte) (int, error) {
	if d := time.Duration(s.every.Load()); d > 0 {
		time.Sleep(d) // the point of this client is to be slow
		return s.r.Read(p[:1])
	}
	return s.r.Read(p)
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// pollWatcher follows a course with ETag polls.
type pollWatcher struct {
	history
	course  string
	fleet   *fleet
	every   time.Duration
	etagSeq uint64 // highest ETag id seen, to check it never goes back
}

func (p *pollWatcher) run(ctx context.Context) {
	var etag string
	for ctx.Err() == nil {
		base := p.fleet.pick()
		if base != "" {
			etag = p.poll(ctx, base, etag)
		}
		sleep(ctx, p.every)
	}
}

func (p *pollWatcher) poll(ctx context.Context, base, etag string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/courses/"+p.course+"/poll?after="+strconv.FormatUint(p.position(), 10), nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		return etag
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
		return etag
	}
	tag := resp.Header.Get("ETag")
	var body struct {
		LastEventID string            `json:"lastEventId"`
		Events      []json.RawMessage `json:"events"`
		Reset       bool              `json:"reset"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return etag
		}
	}
	// The ETag's id never goes back, unless the course was reset.
	if i := strings.LastIndexByte(tag, ':'); i > 0 {
		n, _ := strconv.ParseUint(strings.TrimSuffix(tag[i+1:], `"`), 10, 64)
		p.mu.Lock()
		if n < p.etagSeq && !body.Reset {
			p.bad = append(p.bad, fmt.Sprintf("ETag went back from %d to %d", p.etagSeq, n))
		}
		if body.Reset || n > p.etagSeq {
			p.etagSeq = n
		}
		p.mu.Unlock()
	}
	if resp.StatusCode == http.StatusNotModified {
		return tag
	}
	last, _ := strconv.ParseUint(body.LastEventID, 10, 64)
	if body.Reset {
		p.reset(last)
		return tag
	}
	for _, raw := range body.Events {
		var ev struct{ ID string }
		_ = json.Unmarshal(raw, &ev)
		n, _ := strconv.ParseUint(ev.ID, 10, 64)
		p.event(n)
	}
	return tag
}

var pollClient = &http.Client{Timeout: 10 * time.Second}

// publisher publishes continuously, alternating FCALL (as a backend) and
// HTTP POST to a live instance, over the given courses.
type publisher struct {
	fleet   *fleet
	courses []string
	every   time.Duration
	payload string

	ok, failed atomic.Int64
}

func (p *publisher) run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		course := p.courses[i%len(p.courses)]
		data := `{"n":` + strconv.Itoa(i) + p.payload + `}`
		var err error
		if i%2 == 0 {
			err = p.fleet.rdb.FCall(ctx, "coursestream_publish", []string{course}, "upload-progress", data).Err()
		} else {
			err = p.http(ctx, course, data)
		}
		if err != nil {
			p.failed.Add(1)
		} else {
			p.ok.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

func (p *publisher) http(ctx context.Context, course, data string) error {
	base := p.fleet.pick()
	if base == "" {
		return fmt.Errorf("no instance")
	}
	body := `{"type":"chapter-update-complete","data":` + data + `}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/courses/"+course+"/events", strings.NewReader(body))
	resp, err := pollClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("publish: %d", resp.StatusCode)
	}
	return nil
}

// outcome is one scenario's row of the report.
type outcome struct {
	scenario                     string
	published, lost, dups, reset int
	clients                      int
}

// checkAll waits until every client reached its course's last id (or the
// deadline), then checks the invariant for each: consecutive ids, no
// duplicate, resets only as allowed. It returns the report row.
func checkAll(t *testing.T, f *fleet, name string, published int, watchers []*history, courses []string, courseOf func(i int) string, resetsAllowed bool) outcome {
	t.Helper()
	final := map[string]uint64{}
	for _, c := range courses {
		final[c] = f.seq(c)
	}
	deadline := time.Now().Add(20 * time.Second)
	for i, h := range watchers {
		for h.position() != final[courseOf(i)] && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // waiting for delivery; no signal crosses the process boundary
		}
	}
	out := outcome{scenario: name, published: published, clients: len(watchers)}
	for i, h := range watchers {
		h.mu.Lock()
		want := final[courseOf(i)]
		if h.pos < want {
			out.lost += int(want - h.pos)
			h.bad = append(h.bad, fmt.Sprintf("stopped at %d, the course is at %d", h.pos, want))
		}
		for _, b := range h.bad {
			if strings.HasPrefix(b, "duplicate") {
				out.dups++
			}
			if strings.HasPrefix(b, "gap") {
				out.lost++
			}
		}
		out.reset += h.resets
		if len(h.bad) > 0 {
			t.Errorf("%s: client %d (course %s): %v", name, i, courseOf(i), h.bad[:min(5, len(h.bad))])
		}
		if !resetsAllowed && h.resets > 0 {
			t.Errorf("%s: client %d got %d resets where none may happen", name, i, h.resets)
		}
		h.mu.Unlock()
	}
	report(t, out)
	return out
}

// report logs the row and appends it to $FAULT_REPORT when set (the
// README's table is made from it).
func report(t *testing.T, o outcome) {
	line := fmt.Sprintf("| %s | %d | %d | %d | %d | %d |", o.scenario, o.clients, o.published, o.lost, o.dups, o.reset)
	t.Log(line)
	if path := os.Getenv("FAULT_REPORT"); path != "" {
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
}

// startAll runs fn for each item in its own goroutine until ctx ends and
// returns a wait function.
func startAll(ctx context.Context, fns ...func(context.Context)) (wait func()) {
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx) }()
	}
	return wg.Wait
}

// metric reads /metrics: the sum of the series whose lines start with
// prefix (a name alone sums its labels).
func metric(t *testing.T, s *server, prefix string) float64 {
	t.Helper()
	resp, err := noKeepAlive.Get(s.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(prefix)) {
			f := strings.Fields(string(line))
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}
