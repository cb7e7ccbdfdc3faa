package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// client is one SSE subscriber, of one course or (--courses-per-stream)
// of several on one multi-course stream. It checks its ids as they come:
// each course's must be the previous one plus one (the publisher is the
// only writer of its course during a run), or follow a reset.
//
// With --reconnect it behaves like a browser with the library: when its
// stream ends it comes back with Last-Event-ID after the delay the drain
// frame gave, or a full-jitter backoff, to the next server of --server.
type client struct {
	courses []string // one: the course's own stream; more: /v1/events?courses=
	index   []int    // the courses' numbers in the run
	cfg     *config
	bases   []*url.URL
	storm   *storm

	mu         sync.Mutex
	conn       io.Closer
	server     int      // index in bases of the current connection
	last       []uint64 // last id seen per course; 0 before the first
	received   int
	duplicates int
	outOfOrder int
	gaps       int // ids skipped
	resets     int
	reconnects int
	dropped    bool // its first connection ended (for the storm figures)
	samples    []sample
	done       chan struct{} // closed when the expected count arrived
	doneClosed bool
	expect     int
	stopped    bool
	scale      *scaleTrack // sse --subscribe-only (csload scale's child): per-event counts (scale.go)
}

// sample is one delivery: its course (the number in the run), its id and
// its latency, for the latency percentiles and each event's fan-out
// completion (the latency of its last subscriber).
type sample struct {
	id     uint64
	lat    time.Duration
	course int32
}

// storm records when clients lost their first connection and when they
// first tried again: how fast a crowd comes back.
type storm struct {
	firstDrop, lastRetry atomic.Int64 // unix nanos
	retried              atomic.Int64
}

func (s *storm) note(v *atomic.Int64, less bool) {
	now := time.Now().UnixNano()
	for {
		old := v.Load()
		if old != 0 && (less && old <= now || !less && old >= now) {
			return
		}
		if v.CompareAndSwap(old, now) {
			return
		}
	}
}

// dial opens a stream on bases[server] and reads up to the first frame
// (retry:), which the server writes once the subscription is effective.
func (c *client) dial(ctx context.Context, server int) (time.Duration, *bufio.Reader, error) {
	start := time.Now()
	base := c.bases[server%len(c.bases)]
	path, sep := "/v1/courses/"+c.courses[0]+"/events", "?"
	if len(c.courses) > 1 {
		path, sep = "/v1/events?courses="+strings.Join(c.courses, ","), "&"
	}
	first := func(line []byte) bool { return bytes.HasPrefix(line, []byte("retry:")) }
	if c.cfg.Target == "centrifugo" {
		path, first = centrifugoPath(c.courses[0]), centrifugoFirst
	}
	resume := ""
	if c.cfg.Reconnect {
		c.mu.Lock()
		resume = c.cursor()
		c.mu.Unlock()
	}
	if p := protocols[c.cfg.Proto]; p.tls { // h1tls, h2: through net/http's client
		_, body, closer, err := openStream(ctx, strings.TrimRight(base.String(), "/")+path, c.cfg.Token, resume, p)
		if err != nil {
			return 0, nil, err
		}
		return time.Since(start), body, c.took(closer, server)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", base.Host)
	if err != nil {
		return 0, nil, err
	}
	if c.cfg.Token != "" {
		path += sep + "token=" + url.QueryEscape(c.cfg.Token)
	}
	if resume != "" {
		resume = "Last-Event-ID: " + resume + "\r\n"
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n%s\r\n", path, base.Host, resume); err != nil {
		conn.Close()
		return 0, nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return 0, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body := bufio.NewReaderSize(resp.Body, 4096)
	line, err := body.ReadSlice('\n')
	for err == nil && len(bytes.TrimSpace(line)) == 0 { // centrifugo starts with a blank line
		line, err = body.ReadSlice('\n')
	}
	if err != nil || !first(line) {
		conn.Close()
		return 0, nil, fmt.Errorf("first line %q: %v", line, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return time.Since(start), body, c.took(conn, server)
}

// took makes conn the client's connection (the socket over h1, the
// stream's body and its transport over h1tls and h2), and closes it if the client
// was stopped meanwhile. It returns nil.
func (c *client) took(conn io.Closer, server int) error {
	c.mu.Lock()
	c.conn, c.server = conn, server
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		conn.Close()
	}
	return nil
}

// cursor is where the client is: the last id of its course, or the
// multi-course cursor. c.mu is held.
func (c *client) cursor() string {
	if len(c.courses) == 1 {
		return strconv.FormatUint(c.last[0], 10)
	}
	var b []byte
	for i, course := range c.courses {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, course...)
		b = append(b, ':')
		b = strconv.AppendUint(b, c.last[i], 10)
	}
	return string(b)
}

// lane is the place in c.courses of the course an envelope names.
func (c *client) lane(data []byte) int {
	if len(c.courses) == 1 {
		return 0
	}
	i := bytes.Index(data, []byte(`"courseId":"`))
	if i < 0 {
		return -1
	}
	rest := data[i+len(`"courseId":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return -1
	}
	for k, course := range c.courses {
		if course == string(rest[:j]) {
			return k
		}
	}
	return -1
}

// run reads the stream, and with --reconnect comes back until ctx ends or
// stop is called.
func (c *client) run(ctx context.Context, r *bufio.Reader) {
	attempt := 0
	for {
		retry := c.read(r)
		if !c.cfg.Reconnect || ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		first := !c.dropped
		c.dropped = true
		stopped := c.stopped
		c.mu.Unlock()
		if stopped {
			return
		}
		if first && c.storm != nil {
			c.storm.note(&c.storm.firstDrop, true)
		}
		for {
			delay := retry
			if delay < 0 {
				attempt++
				delay = time.Duration(rand.Int64N(int64(min(5*time.Second, 100*time.Millisecond<<min(attempt-1, 6)))))
			}
			retry = -1
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			if first && c.storm != nil {
				c.storm.note(&c.storm.lastRetry, false)
				c.storm.retried.Add(1)
				first = false
			}
			c.mu.Lock()
			next := c.server + 1
			c.reconnects++
			c.mu.Unlock()
			_, body, err := c.dial(ctx, next)
			if err == nil {
				attempt = 0
				r = body
				break
			}
			c.mu.Lock()
			c.server = next // and the one after, next time
			c.mu.Unlock()
		}
	}
}

// stop closes the connection and ends reconnecting.
func (c *client) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.conn != nil {
		c.conn.Close()
	}
}

// read parses frames until the connection ends. It returns the delay a
// drain frame asked for, or -1.
func (c *client) read(r *bufio.Reader) time.Duration {
	var event []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return -1
		}
		switch {
		case len(line) == 1: // the blank line ending a frame
			event = nil
			continue
		case bytes.HasPrefix(line, []byte("event: ")):
			event = append(event[:0], bytes.TrimSpace(line[len("event: "):])...)
			continue
		case !bytes.HasPrefix(line, []byte("data: ")):
			continue
		}
		data := line[len("data: "):]
		switch string(event) {
		case "coursestream:drain":
			var d struct{ RetryMs int64 }
			_ = json.Unmarshal(data, &d)
			return time.Duration(d.RetryMs) * time.Millisecond
		case "reset":
			var d struct{ LastEventID string }
			_ = json.Unmarshal(data, &d)
			n, _ := strconv.ParseUint(d.LastEventID, 10, 64)
			if k := c.lane(data); k >= 0 {
				c.mu.Lock()
				c.last[k] = n
				c.resets++
				c.mu.Unlock()
			}
			continue
		}
		now := time.Now()
		id, sent, ok := parseData(data)
		k := c.lane(data)
		if !ok || k < 0 {
			continue
		}
		c.mu.Lock()
		switch last := c.last[k]; {
		case last != 0 && id <= last:
			c.duplicates++
		case last != 0 && id != last+1:
			c.gaps += int(id - last - 1)
			c.outOfOrder++
			c.last[k] = id
		default:
			c.last[k] = id
		}
		c.received++
		if sent > 0 {
			course := int32(-1 - k) // a client without its courses' numbers (soak)
			if k < len(c.index) {
				course = int32(c.index[k])
			}
			c.samples = append(c.samples, sample{id: id, lat: now.Sub(time.Unix(0, sent)), course: course})
			c.scale.note(id, now.Sub(time.Unix(0, sent))) // nil-safe
		}
		if c.received == c.expect && !c.doneClosed {
			c.doneClosed = true
			close(c.done)
		}
		c.mu.Unlock()
	}
}

// parseData finds "id":"N" and the "t":<unix nanos> the publisher put in
// data, without decoding the whole envelope (the load tool shares the
// machine with the server: it must be cheap).
func parseData(b []byte) (id uint64, sent int64, ok bool) {
	i := bytes.Index(b, []byte(`"id":"`))
	if i < 0 {
		return 0, 0, false
	}
	rest := b[i+6:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(string(rest[:j]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if k := bytes.Index(b, []byte(`"t":`)); k >= 0 {
		rest = b[k+4:]
		end := bytes.IndexAny(rest, ",}")
		if end > 0 {
			sent, _ = strconv.ParseInt(string(rest[:end]), 10, 64)
		}
	}
	return id, sent, true
}

func runSSE(ctx context.Context, c config) (*report, error) {
	bases, _ := parseServers(c.Server)
	if c.Proto == "" {
		c.Proto = "h1"
	}
	p, ok := protocols[c.Proto]
	if !ok {
		return nil, usageError{fmt.Errorf("--proto %q: want h1, h1tls or h2", c.Proto)}
	}
	for _, b := range bases {
		if (b.Scheme == "https") != p.tls {
			return nil, usageError{fmt.Errorf("--proto %s wants %s --server, got %s", c.Proto, map[bool]string{true: "https://", false: "http://"}[p.tls], b)}
		}
	}
	st := &storm{}
	rep := &report{Mode: "sse", Clients: c.Clients, Courses: c.Courses, PerStream: c.PerStream, Events: c.Events, Rate: c.Rate, Payload: c.Payload, Publish: c.Publish}
	if c.Proto != "h1" {
		rep.Mode = "sse " + c.Proto
	}
	rep.Label = c.Label
	proc := newProc(c.PID)
	rssBefore := proc.rss()
	track := newScaleTrack(c) // nil unless --subscribe-only

	// Connect at the paced rate.
	clients := make([]*client, 0, c.Clients)
	var mu sync.Mutex
	var connectTimes []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(c.Ramp))
	connectStart := time.Now()
	for i := range c.Clients {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
		}
		cl := &client{cfg: &c, bases: bases, storm: st, done: make(chan struct{}), last: make([]uint64, c.PerStream)}
		cl.scale = track
		for j := range c.PerStream { // distinct courses: --courses-per-stream <= --courses
			n := (i*c.PerStream + j) % c.Courses
			cl.courses, cl.index = append(cl.courses, c.CoursePfx+strconv.Itoa(n)), append(cl.index, n)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, body, err := cl.dial(ctx, 0)
			if err != nil {
				if failed.Add(1) <= 3 {
					fmt.Fprintf(os.Stderr, "csload: connect: %v\n", err)
				}
				return
			}
			mu.Lock()
			clients = append(clients, cl)
			connectTimes = append(connectTimes, took)
			mu.Unlock()
			go cl.run(ctx, body)
		}()
	}
	tick.Stop()
	wg.Wait()
	rep.ConnectSeconds = time.Since(connectStart).Seconds()
	rep.Connected = len(clients)
	rep.ConnectFailed = int(failed.Load())
	rep.ConnectP50, rep.ConnectP99 = pct(connectTimes, 50), pct(connectTimes, 99)
	defer func() {
		for _, cl := range clients {
			cl.stop()
		}
	}()

	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(c.Settle):
	}
	rssAfter := proc.rss()
	if c.PID > 0 && len(clients) > 0 {
		rep.ServerRSSMiB = float64(rssAfter) / (1 << 20)
		rep.RSSPerConnKiB = float64(rssAfter-rssBefore) / float64(len(clients)) / 1024
	}

	// Every client expects every event of its course.
	perCourse := make([]int, c.Courses)
	for i := range c.Events {
		perCourse[i%c.Courses]++
	}
	for _, cl := range clients {
		cl.mu.Lock()
		cl.expect = 0
		for _, idx := range cl.index {
			cl.expect += perCourse[idx]
		}
		rep.Expected += cl.expect
		if cl.expect == 0 || cl.received >= cl.expect {
			cl.doneClosed = true
			close(cl.done)
		}
		cl.mu.Unlock()
	}
	fmt.Fprintf(os.Stderr, "csload: ready: %d clients connected, publishing %d events\n", len(clients), c.Events)

	if c.SubscribeOnly { // csload scale publishes; this child only receives
		return subscribed(ctx, c, rep, clients, track)
	}
	pub, err := newPublisher(c)
	if err != nil {
		return rep, err
	}
	defer pub.close()
	if hp, ok := pub.(*httpPublisher); ok && p.tls {
		if tr, ok := hp.client.Transport.(*http.Transport); ok {
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // loopback load: the server's own test certificate
		}
	}
	cpuBefore := proc.cpu()
	pubStart := time.Now()
	published, err := publishAll(ctx, c, pub)
	rep.Published = published
	rep.PublishSeconds = time.Since(pubStart).Seconds()
	if err != nil {
		return rep, err
	}

	// Wait for every client to have its events, or the drain bound.
	deadline := time.After(c.Drain)
wait:
	for _, cl := range clients {
		select {
		case <-cl.done:
		case <-deadline:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	rep.ServerCPUSeconds = proc.cpu() - cpuBefore

	var lat []time.Duration
	type event struct {
		course int32
		id     uint64
	}
	last := make(map[event]time.Duration) // each event's latency to its last subscriber
	for _, cl := range clients {
		cl.mu.Lock()
		rep.Received += cl.received
		rep.Duplicates += cl.duplicates
		rep.OutOfOrder += cl.outOfOrder
		rep.Resets += cl.resets
		rep.Reconnects += cl.reconnects
		for _, s := range cl.samples {
			lat = append(lat, s.lat)
			if e := (event{s.course, s.id}); s.lat > last[e] {
				last[e] = s.lat
			}
		}
		cl.mu.Unlock()
	}
	completion := make([]time.Duration, 0, len(last))
	for _, d := range last {
		completion = append(completion, d)
	}
	rep.CompletionEvents = len(completion)
	rep.CompletionP50, rep.CompletionP99, rep.CompletionMax = pct(completion, 50), pct(completion, 99), pct(completion, 100)
	rep.settle()
	if n := st.retried.Load(); n > 0 {
		rep.Reconnected = int(n)
		rep.ReconnectSpread = time.Duration(st.lastRetry.Load() - st.firstDrop.Load())
	}
	rep.LatencyP50, rep.LatencyP90, rep.LatencyP99, rep.LatencyMax = pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100)
	if c.PID > 0 && rep.Received > 0 {
		rep.CPUPerDeliveryMicros = rep.ServerCPUSeconds / float64(rep.Received) * 1e6
	}
	return rep, nil
}

// parseServers reads --server: one base URL, or several comma-separated
// (clients start on the first and move to the next when their stream ends).
func parseServers(s string) ([]*url.URL, error) {
	var out []*url.URL
	for v := range strings.SplitSeq(s, ",") {
		u, err := url.Parse(strings.TrimSpace(v))
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--server %q: want http://HOST:PORT[,http://HOST:PORT...]", s)
		}
		out = append(out, u)
	}
	return out, nil
}
