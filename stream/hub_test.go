package stream

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"coursestream/observer"
)

// TestRawBytes reads the response as bytes off a TCP connection: status,
// headers, and retry: in the first bytes, before any event exists.
func TestRawBytes(t *testing.T) {
	e := newEnv(t, Config{Retry: 2500 * time.Millisecond}, observer.MemoryConfig{})
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/courses/course-123/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Close || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Connection close %v, Transfer-Encoding %v: want a chunked stream that owns its connection (taken over)", resp.Close, resp.TransferEncoding)
	}
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	first := make([]byte, len("retry: 2500\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("reading the first bytes: %v", err)
	}
	if string(first) != "retry: 2500\n\n" {
		t.Fatalf("first bytes %q, want retry: 2500", first)
	}
	e.publish("course-123", "chapter-update-complete", `{"chapterId":"ch-1"}`)
	r := bufio.NewReader(resp.Body)
	var got []string
	for len(got) < 4 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, line)
	}
	if got[0] != "id: 1\n" || got[1] != "event: chapter-update-complete\n" ||
		!strings.HasPrefix(got[2], `data: {"id":"1","courseId":"course-123","type":"chapter-update-complete","data":{"chapterId":"ch-1"},"timestamp":`) || got[3] != "\n" {
		t.Fatalf("frame %q", got)
	}
}

func TestLiveEventsInOrderUnderConcurrentPublishing(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	c := e.open("/v1/courses/c1/events", nil)
	const publishers, each = 4, 250
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				e.publish("c1", "upload-progress", `{"videoId":"v1","progress":1}`)
			}
		}()
	}
	frames := c.events(publishers * each)
	wg.Wait()
	consecutive(t, frameIDs(frames), 1)
	for _, f := range frames {
		ev, err := observer.ParseEnvelope([]byte(f.data))
		if err != nil || strconv.FormatUint(ev.ID, 10) != f.id || f.event != ev.Type {
			t.Fatalf("frame %+v does not carry its envelope: %v", f, err)
		}
	}
}

// TestResumeReplayThenLive resumes at several positions while events are
// published: history then live, with no gap and no duplicate.
func TestResumeReplayThenLive(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{History: 5000})
	for range 300 {
		e.publish("c1", "chapter-update-complete", `{"chapterId":"ch"}`)
	}
	const total = 1300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range total - 300 {
			e.publish("c1", "chapter-update-complete", `{"chapterId":"ch"}`)
		}
	}()
	for _, from := range []uint64{0, 1, 150, 299} {
		c := e.open("/v1/courses/c1/events", map[string]string{"Last-Event-ID": strconv.FormatUint(from, 10)})
		ids := frameIDs(c.events(total - int(from)))
		consecutive(t, ids, from+1)
		c.close()
	}
	<-done
}

func TestResumeByQueryAndHeaderWins(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	for range 10 {
		e.publish("c1", "video-update-complete", `{"videoId":"v"}`)
	}
	c := e.open("/v1/courses/c1/events?lastEventId=3", nil)
	consecutive(t, frameIDs(c.events(7)), 4)
	c = e.open("/v1/courses/c1/events?lastEventId=3", map[string]string{"Last-Event-ID": "8"})
	consecutive(t, frameIDs(c.events(2)), 9)
}

func TestReset(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{History: 5})
	var last uint64
	for range 20 {
		last = e.publish("c1", "chapter-delete-complete", `{"chapterId":"x"}`).ID
	}
	for _, tc := range []struct{ name, lastID string }{
		{"trimmed", "2"},
		{"zero with history gone", "0"},
		{"ahead of the course", "99"},
		{"not one of our ids", "1700000000000-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.open("/v1/courses/c1/events", map[string]string{"Last-Event-ID": tc.lastID})
			f, ok := c.nextEvent()
			want := strconv.FormatUint(last, 10)
			if !ok || f.event != "reset" || f.id != want || f.data != `{"courseId":"c1","lastEventId":"`+want+`"}` {
				t.Fatalf("first frame %+v, want reset at %s", f, want)
			}
			last = e.publish("c1", "chapter-delete-complete", `{"chapterId":"x"}`).ID
			f, _ = c.nextEvent()
			if f.id != strconv.FormatUint(last, 10) || f.event != "chapter-delete-complete" {
				t.Fatalf("after reset got %+v, want the next live event %d", f, last)
			}
			c.close()
		})
	}
	// Within the retained history: no reset.
	c := e.open("/v1/courses/c1/events", map[string]string{"Last-Event-ID": strconv.FormatUint(last-2, 10)})
	f, _ := c.nextEvent()
	if f.event == "reset" || f.id != strconv.FormatUint(last-1, 10) {
		t.Fatalf("resume within history got %+v", f)
	}
}

func TestTypesFilter(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	e.publish("c1", "chapter-update-complete", `{}`) // 1
	e.publish("c1", "upload-complete", `{}`)         // 2, replayed
	c := e.open("/v1/courses/c1/events?types=upload-complete,video-delete-complete", map[string]string{"Last-Event-ID": "0"})
	e.publish("c1", "upload-progress", `{}`)       // 3
	e.publish("c1", "video-delete-complete", `{}`) // 4
	e.publish("c1", "chapter-update-complete", `{}`)
	e.publish("c1", "upload-complete", `{}`) // 6
	got := c.events(3)
	if ids := frameIDs(got); ids[0] != 2 || ids[1] != 4 || ids[2] != 6 {
		t.Fatalf("filtered ids %v, want [2 4 6]", ids)
	}
}

func TestCoalesce(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	c := e.open("/v1/courses/c1/events?coalesce=300ms", nil)
	e.publish("c1", "upload-progress", `{"videoId":"v1","progress":10}`)       // 1
	e.publish("c1", "upload-progress", `{"videoId":"v2","progress":5}`)        // 2 kept
	e.publish("c1", "upload-progress", `{"videoId":"v1","progress":20}`)       // 3
	e.publish("c1", "chapter-update-complete", `{"chapterId":"ch1"}`)          // 4 kept
	e.publish("c1", "upload-progress", `{"videoId":"v1","progress":30}`)       // 5 kept
	e.publish("c1", "chapter-update-complete", `{"chapterId":"ch2","x":true}`) // 6 kept
	got := c.events(4)
	if ids := frameIDs(got); fmt.Sprint(ids) != "[2 4 5 6]" {
		t.Fatalf("coalesced ids %v, want [2 4 5 6]", ids)
	}
	// The next window starts fresh.
	e.publish("c1", "upload-progress", `{"videoId":"v1","progress":40}`)
	if f, _ := c.nextEvent(); f.id != "7" {
		t.Fatalf("next window got %+v", f)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	for _, path := range []string{
		"/v1/courses/-bad/events",
		"/v1/courses/" + strings.Repeat("a", 129) + "/events",
		"/v1/courses/c1/events?coalesce=11s",
		"/v1/courses/c1/events?coalesce=soon",
		"/v1/courses/c1/events?coalesce=-1s",
		"/v1/courses/c1/events?types=Bad",
	} {
		resp, err := e.client.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || err != nil || body.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %q (%v), want 400 with a JSON error", path, resp.StatusCode, body.Error, err)
		}
	}
}

func TestHeartbeat(t *testing.T) {
	e := newEnv(t, Config{Heartbeat: 20 * time.Millisecond}, observer.MemoryConfig{})
	c := e.open("/v1/courses/c1/events", nil)
	for {
		f, ok := c.next()
		if !ok {
			t.Fatal("stream ended before a heartbeat")
		}
		if f.comment {
			return
		}
	}
}

// TestStreamParamIgnored: r3labs/sse's server read ?stream= to pick a
// stream; ours never does, and the course comes from the path only.
func TestStreamParamIgnored(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	e.publish("b", "chapter-update-complete", `{}`)
	e.publish("a", "upload-complete", `{}`)
	c := e.open("/v1/courses/a/events?stream=c1", map[string]string{"Last-Event-ID": "0"})
	f, _ := c.nextEvent()
	if !strings.Contains(f.data, `"courseId":"a"`) {
		t.Fatalf("got %+v, want course a", f)
	}
}

func TestMaxConnectionsSteersToPolling(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 1}, observer.MemoryConfig{})
	e.open("/v1/courses/c1/events", nil)
	resp, err := e.client.Get(e.srv.URL + "/v1/courses/c1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error, Fallback string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		body.Error == "" || body.Fallback != "/v1/courses/c1/poll" {
		t.Fatalf("got %d Retry-After=%q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestSlowClientDoesNotDelayOthers: a client that never reads fills its
// bounded buffer and is disconnected; a fast client on the same course gets
// every event meanwhile.
func TestSlowClientDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{}) // 1 MiB client buffer
	stalled := dialStalled(t, e, "/v1/courses/c1/events")
	fast := e.open("/v1/courses/c1/events", nil)
	const n = 400 // 400 x 32 KiB: far more than the socket buffers and the client buffer hold
	data := `{"videoId":"v","pad":"` + strings.Repeat("x", 32<<10) + `"}`
	// Publish at the pace the fast client reads (at most 16 ahead), as a
	// live course would: only the stalled client falls behind.
	progress := make(chan struct{}, n)
	go func() {
		for i := range n {
			if i >= 16 {
				<-progress
			}
			e.publish("c1", "upload-progress", data)
		}
	}()
	var ids []uint64
	for range n {
		ids = append(ids, frameIDs(fast.events(1))...)
		progress <- struct{}{}
	}
	consecutive(t, ids, 1)
	ids = nil

	// Now read the stalled one: it was cut off before the end, and what it
	// got is a gapless prefix it can resume from.
	for {
		f, ok := stalled.nextEvent()
		if !ok {
			break
		}
		id, _ := strconv.ParseUint(f.id, 10, 64)
		ids = append(ids, id)
	}
	if len(ids) >= n {
		t.Fatalf("stalled client got all %d events: it was never cut off", len(ids))
	}
	consecutive(t, ids, 1)
}

// dialStalled opens a stream on a socket with a tiny receive buffer and
// reads only the response headers and first bytes.
func dialStalled(t *testing.T, e *env, path string) *sseClient {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &sseClient{t: t, resp: resp, r: bufio.NewReaderSize(resp.Body, 512), nc: conn}
	if f, ok := c.next(); !ok || f.retry == "" {
		t.Fatalf("first frame %+v", f)
	}
	return c
}

func TestDrainEndsStreamsAndRefusesNew(t *testing.T) {
	e := newEnv(t, Config{Retry: time.Second, DrainJitter: 4 * time.Second}, observer.MemoryConfig{})
	var cs []*sseClient
	for range 3 {
		cs = append(cs, e.open("/v1/courses/c1/events", nil))
	}
	e.publish("c1", "upload-complete", `{}`)
	retries := map[int]bool{}
	for _, c := range cs {
		var final sseFrame
		got := 0
		for {
			f, ok := c.next()
			if !ok {
				break
			}
			if f.data != "" && f.event != DrainEvent {
				got++
				if got == 1 {
					e.hub.Drain() // after the event, so nothing is lost to the drain
				}
			}
			final = f
		}
		// The last frame tells the client to come back after 1s plus up
		// to 4s of jitter (as retry: and as the drain event's data), and
		// changes no id.
		retry, _ := strconv.Atoi(final.retry)
		if final.hasID || final.event != DrainEvent || final.data != `{"retryMs":`+final.retry+`}` || retry < 1000 || retry >= 5000 {
			t.Fatalf("final frame %+v, want %s with retry in [1000,5000)", final, DrainEvent)
		}
		retries[retry] = true
		if c.err != io.EOF {
			t.Fatalf("the drained stream ended with %v, want a clean end of the chunked body", c.err)
		}
	}
	if len(retries) < 2 {
		t.Fatalf("3 streams got the same retry %v: no jitter", retries)
	}
	resp, err := e.client.Get(e.srv.URL + "/v1/courses/c1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Drain a new stream got %d, want 503", resp.StatusCode)
	}
}

// TestNoGoroutineLeftAfterDisconnect: clients come and go; every goroutine
// of theirs (ours and r3labs') ends, and the broker has no listener left.
func TestNoGoroutineLeftAfterDisconnect(t *testing.T) {
	e := newEnv(t, Config{Heartbeat: 5 * time.Millisecond}, observer.MemoryConfig{})
	before := goleak.IgnoreCurrent()
	workers := goleak.IgnoreTopFunction(workerFunc) // Run's, checked by TestMain
	var cs []*sseClient
	for i := range 20 {
		cs = append(cs, e.open("/v1/courses/c"+strconv.Itoa(i%3)+"/events", nil))
	}
	for i := range 50 {
		e.publish("c"+strconv.Itoa(i%3), "upload-progress", `{}`)
	}
	for _, c := range cs {
		c.close()
	}
	e.client.CloseIdleConnections()
	goleak.VerifyNone(t, before, workers)
	if n := e.broker.Observer().Listeners("c0") + e.broker.Observer().Listeners("c1") + e.broker.Observer().Listeners("c2"); n != 0 {
		t.Fatalf("%d listeners left", n)
	}
	if n := e.hub.Connections(); n != 0 {
		t.Fatalf("%d connections left", n)
	}
}

// TestR3labsClient subscribes with r3labs/sse's own client, resuming from
// an id, as a Go program would.
func TestR3labsClient(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	for range 3 {
		e.publish("c1", "video-update-complete", `{"videoId":"v1"}`)
	}
	got, _ := e.r3labsSubscribe(t, "/v1/courses/c1/events", "1")
	for _, want := range []string{"2", "3"} {
		ev := <-got
		if string(ev.ID) != want || string(ev.Event) != "video-update-complete" {
			t.Fatalf("got id %s event %s, want %s", ev.ID, ev.Event, want)
		}
	}
	e.publish("c1", "video-update-complete", `{"videoId":"v1"}`)
	if ev := <-got; string(ev.ID) != "4" {
		t.Fatalf("live event id %s, want 4", ev.ID)
	}
}

func TestMaxStreamAge(t *testing.T) {
	m := newRecorder()
	e := newEnv(t, Config{MaxStreamAge: 50 * time.Millisecond, Metrics: m}, observer.MemoryConfig{})
	c := e.open("/v1/courses/c1/events", nil)
	var final sseFrame
	for {
		f, ok := c.next()
		if !ok {
			break
		}
		final = f
	}
	if final.retry == "" || final.hasID || final.event != DrainEvent {
		t.Fatalf("final frame %+v, want the drain frame", final)
	}
	if reason := <-m.closed; reason != "age" {
		t.Fatalf("closed for %q, want age", reason)
	}
}

// TestDeadPeerDroppedByWriteTimeout: a peer that takes no bytes is dropped
// after the write timeout even when its buffer never fills (one big event).
func TestDeadPeerDroppedByWriteTimeout(t *testing.T) {
	m := newRecorder()
	e := newEnv(t, Config{WriteTimeout: 200 * time.Millisecond, ClientBuffer: 64 << 20, Metrics: m}, observer.MemoryConfig{MaxEventBytes: 8 << 20})
	dialStalled(t, e, "/v1/courses/c1/events")
	e.publish("c1", "upload-progress", `"`+strings.Repeat("x", 7<<20)+`"`) // more than the socket buffers hold
	if reason := <-m.closed; reason == "" {
		t.Fatal("no reason")
	}
	if n := e.hub.Connections(); n != 0 {
		t.Fatalf("%d connections left", n)
	}
}

func TestStreamEndsAtItsExpiry(t *testing.T) {
	m := newRecorder()
	e := newEnv(t, Config{Metrics: m}, observer.MemoryConfig{})
	// What the auth middleware does for a token that expires.
	e.srv.Config.Handler = deadline(e.srv.Config.Handler, 100*time.Millisecond)
	c := e.open("/v1/courses/c1/events", nil)
	var final sseFrame
	for {
		f, ok := c.next()
		if !ok {
			break
		}
		final = f
	}
	// Ended cleanly, not cut: the drain frame, then the end of the response.
	if final.retry == "" || final.hasID || final.event != DrainEvent {
		t.Fatalf("final frame %+v, want the drain frame", final)
	}
	if c.err != io.EOF {
		t.Fatalf("stream cut: %v", c.err)
	}
	if reason := <-m.closed; reason != "expired" {
		t.Fatalf("closed for %q, want expired", reason)
	}
}

// deadline gives each request an expiry d from now, as the auth middleware
// does for a token that expires (cmd: auth.Middleware with WithExpiry).
func deadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(WithExpiry(r.Context(), time.Now().Add(d))))
	})
}

func TestMetricsCount(t *testing.T) {
	m := newRecorder()
	e := newEnv(t, Config{Metrics: m}, observer.MemoryConfig{History: 3})
	for range 5 {
		e.publish("c1", "upload-complete", `{}`)
	}
	c := e.open("/v1/courses/c1/events", map[string]string{"Last-Event-ID": "3"})
	c.events(2)
	c.close()
	<-m.closed
	c = e.open("/v1/courses/c1/events", map[string]string{"Last-Event-ID": "1"}) // trimmed: reset
	c.nextEvent()
	c.close()
	<-m.closed
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opened != 2 || m.replayed != 2 || m.delivered != 2 || m.resets != 1 {
		t.Fatalf("opened %d replayed %d delivered %d resets %d; want 2 2 2 1", m.opened, m.replayed, m.delivered, m.resets)
	}
}

// recorder is a Metrics that counts, and reports closes on a channel.
type recorder struct {
	mu                                         sync.Mutex
	opened, delivered, replayed, resets, drops int
	multiOpened, multiDelivered                int // of them, TransportSSEMulti's
	closed                                     chan string
}

func newRecorder() *recorder { return &recorder{closed: make(chan string, 100)} }

func (r *recorder) StreamOpened(t Transport) {
	r.mu.Lock()
	r.opened++
	if t == TransportSSEMulti {
		r.multiOpened++
	}
	r.mu.Unlock()
}
func (r *recorder) StreamClosed(_ Transport, reason string) { r.closed <- reason }
func (r *recorder) Delivered(t Transport, _ time.Duration) {
	r.mu.Lock()
	r.delivered++
	if t == TransportSSEMulti {
		r.multiDelivered++
	}
	r.mu.Unlock()
}
func (r *recorder) Replayed(n int) { r.mu.Lock(); r.replayed += n; r.mu.Unlock() }
func (r *recorder) ResetSent()     { r.mu.Lock(); r.resets++; r.mu.Unlock() }
func (r *recorder) Dropped(n int)  { r.mu.Lock(); r.drops += n; r.mu.Unlock() }

// TestViaHandlerPath runs the core stream tests through a ResponseWriter
// that cannot be taken over (HTTP/2, HTTP/1.0): the request goroutine
// writes the stream itself.
func TestViaHandlerPath(t *testing.T) {
	forceViaHandler = true
	defer func() { forceViaHandler = false }()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"live", TestLiveEventsInOrderUnderConcurrentPublishing},
		{"resume", TestResumeReplayThenLive},
		{"reset", TestReset},
		{"types", TestTypesFilter},
		{"coalesce", TestCoalesce},
		{"heartbeat", TestHeartbeat},
		{"slow client", TestSlowClientDoesNotDelayOthers},
		{"drain", TestDrainEndsStreamsAndRefusesNew},
		{"max age", TestMaxStreamAge},
		{"expiry", TestStreamEndsAtItsExpiry},
		{"no leak", TestNoGoroutineLeftAfterDisconnect},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// TestHeartbeatRidesEvents: a stream that carries events gets its
// heartbeat comments inside the writes of its events, never in a write
// of their own, and still at least one every Config.Heartbeat; an idle
// stream keeps getting one a period (TestHeartbeat). On loopback a write
// arrives whole in one read, so a read of a lone heartbeat chunk is a
// write of its own.
func TestHeartbeatRidesEvents(t *testing.T) {
	const beat = 200 * time.Millisecond
	e := newEnv(t, Config{Heartbeat: beat}, observer.MemoryConfig{})
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/courses/c1/events HTTP/1.1\r\nHost: x\r\n\r\n")

	stop := make(chan struct{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				e.publish("c1", "upload-progress", `{"p":1}`)
			}
		}
	}()
	const lone = "6\r\n: hb\n\n\r\n" // a write of a heartbeat alone: one chunk
	var (
		beats, alone int
		last         time.Time
		longest      time.Duration
		all          []byte
	)
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(6*beat + beat/2)
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if n > 0 {
			all = append(all, buf[:n]...)
			if k := strings.Count(string(buf[:n]), ": hb\n\n"); k > 0 {
				now := time.Now()
				if !last.IsZero() && now.Sub(last) > longest {
					longest = now.Sub(last)
				}
				last = now
				beats += k
				if string(buf[:n]) == lone {
					alone++
				}
			}
		}
		if err != nil {
			break
		}
	}
	close(stop)
	<-published
	if !strings.Contains(string(all), "event: upload-progress") {
		t.Fatalf("no events read:\n%q", all)
	}
	// 6.5 periods: 6 comments at least (one a period), 13 at most (two).
	if beats < 5 || alone > 1 {
		t.Fatalf("%d heartbeats, %d of them in a write of their own; want 5 at least, all but one at most riding an event's write", beats, alone)
	}
	if longest > 2*beat {
		t.Fatalf("%s between two heartbeats, the period is %s", longest, beat)
	}
}
