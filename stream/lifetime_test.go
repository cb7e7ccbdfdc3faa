package stream

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"coursestream/observer"
)

// TestStreamOutlivesWriteTimeout: a live stream that is read keeps going
// past the write timeout (a deadline left by a blocking write must not
// fail the later non-blocking ones), and still delivers.
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	m := newRecorder()
	e := newEnv(t, Config{WriteTimeout: 100 * time.Millisecond, Heartbeat: 25 * time.Millisecond, Metrics: m}, observer.MemoryConfig{})
	c := e.open("/v1/courses/c1/events", map[string]string{"Last-Event-ID": "0"})
	start := time.Now()
	beats := 0
	for time.Since(start) < 8*100*time.Millisecond {
		f, ok := c.next()
		if !ok {
			t.Fatalf("the stream ended after %s (%d heartbeats): %v; the write timeout is 100ms and the client reads",
				time.Since(start).Round(time.Millisecond), beats, c.err)
		}
		if f.comment {
			beats++
		}
	}
	id := e.publish("c1", "upload-complete", `{}`).ID
	if f, ok := c.nextEvent(); !ok || f.id != strconv.FormatUint(id, 10) {
		t.Fatalf("after %d heartbeats: %+v, %v", beats, f, ok)
	}
}

// TestCloseDoesNotHangOnAStalledDrain: a client that stopped reading with
// frames pending when the hub drains: Close cuts it and returns.
func TestCloseDoesNotHangOnAStalledDrain(t *testing.T) {
	e := newEnv(t, Config{ClientBuffer: 64 << 20}, observer.MemoryConfig{MaxEventBytes: 1 << 20, History: 100})
	dialStalled(t, e, "/v1/courses/c1/events")
	big := `"` + strings.Repeat("x", 512<<10) + `"`
	for range 48 { // 24 MiB: far more than the socket buffers, so most waits in pending
		e.publish("c1", "upload-progress", big)
	}
	e.hub.Drain()
	done := make(chan struct{})
	go func() { e.hub.Close(); close(done) }()
	// Close cuts the stalled drain itself: it does not wait for the drain
	// timeout (nor for the write deadlines that would end it too).
	select {
	case <-done:
	case <-time.After(drainTimeout):
		t.Fatalf("Close still blocked %s after Drain, %d streams open", drainTimeout, e.hub.Connections())
	}
}

// slowStart delays the read of where a stream starts (LastIDs): the
// stream is still opening when its context ends.
type slowStart struct {
	observer.Broker
	delay time.Duration
}

func (b slowStart) LastIDs(ctx context.Context, courses []string) ([]uint64, error) {
	time.Sleep(b.delay)
	return b.Broker.LastIDs(ctx, courses)
}

// TestExpiredWhileOpening: a token that expires while the stream opens
// ends it; it does not linger open and silent.
func TestExpiredWhileOpening(t *testing.T) {
	mem := observer.NewMemory(observer.MemoryConfig{Logger: quiet()})
	h, srv := serveHub(t, slowStart{mem, 80 * time.Millisecond}, Config{Heartbeat: 20 * time.Millisecond}, func(mux *http.ServeMux, h *Hub) {
		mux.Handle("GET /v1/courses/{courseId}/events", deadline(h, 30*time.Millisecond))
	})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(srv.URL + "/v1/courses/c1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Ended on purpose, with its final frame and a clean end, well before
	// the drain timeout would cut it.
	type result struct {
		body []byte
		err  error
	}
	ended := make(chan result, 1)
	go func() { b, err := io.ReadAll(resp.Body); ended <- result{b, err} }()
	select {
	case r := <-ended:
		if r.err != nil || !strings.Contains(string(r.body), "event: "+DrainEvent+"\n") {
			t.Fatalf("stream ended with %v, body %q: want the drain frame and a clean end", r.err, r.body)
		}
	case <-time.After(drainTimeout / 2):
		t.Fatalf("the token expired at 30ms, the stream is still open after %s (%d streams)", drainTimeout/2, h.Connections())
	}
}

// TestCoalescedClientsLeaving: coalesced streams whose clients leave while
// events flow (the window's timer is armed and released concurrently).
func TestCoalescedClientsLeaving(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e.publish("c1", "video-update-complete", `{"videoId":"v`+strconv.Itoa(i%3)+`"}`)
		}
	}()
	for range 100 {
		c := e.open("/v1/courses/c1/events?coalesce=1ms", nil)
		c.nextEvent()
		c.close()
	}
	close(stop)
	wg.Wait()
}

// gatedStart holds the first read of where a stream starts (LastIDs)
// until release is closed: the stream is still opening (subscribed, not
// yet taken over).
type gatedStart struct {
	observer.Broker
	entered, release chan struct{}
}

func (b gatedStart) LastIDs(ctx context.Context, courses []string) ([]uint64, error) {
	close(b.entered)
	<-b.release
	return b.Broker.LastIDs(ctx, courses)
}

// TestClosedWhileOpening: Hub.Close while a stream is between subscribing
// and being taken over. The stream finds itself stopped once it holds the
// socket: it closes it without a response, and leaves nothing behind (no
// connection, no listener; no goroutine: TestMain).
func TestClosedWhileOpening(t *testing.T) {
	mem := observer.NewMemory(observer.MemoryConfig{Logger: quiet()})
	b := gatedStart{mem, make(chan struct{}), make(chan struct{})}
	h, srv := serveHub(t, b, Config{}, func(mux *http.ServeMux, h *Hub) { mux.Handle("GET /v1/courses/{courseId}/events", h) })

	type result struct {
		status int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get(srv.URL + "/v1/courses/c1/events")
		if err != nil {
			got <- result{err: err}
			return
		}
		resp.Body.Close()
		got <- result{status: resp.StatusCode}
	}()
	<-b.entered
	if n := h.Connections(); n != 1 {
		t.Fatalf("%d streams registered while opening, want 1", n)
	}
	h.Close()
	close(b.release)
	select {
	case r := <-got:
		if r.err == nil {
			t.Fatalf("the stream closed while opening answered %d, want its connection closed with no response", r.status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request of a stream closed while opening is still waiting after 5s")
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	h.Wait(wctx)
	if n := h.Connections(); n != 0 {
		t.Fatalf("%d streams left after Close", n)
	}
	if n := mem.Observer().Listeners("c1"); n != 0 {
		t.Fatalf("%d listeners left after Close", n)
	}
}

// TestClientLeavesWithBytesPending: a client that stopped reading, with
// megabytes waiting for it, closes its socket: the stream ends (Wait sees
// it), and its reader and flusher goroutines with it.
func TestClientLeavesWithBytesPending(t *testing.T) {
	e := newEnv(t, Config{ClientBuffer: 64 << 20}, observer.MemoryConfig{MaxEventBytes: 1 << 20, History: 100})
	before := goleak.IgnoreCurrent()
	workers := goleak.IgnoreTopFunction(workerFunc)
	c := dialStalled(t, e, "/v1/courses/c1/events")
	big := `"` + strings.Repeat("x", 512<<10) + `"`
	for range 16 { // 8 MiB: more than the socket buffers hold
		e.publish("c1", "upload-progress", big)
	}
	c.nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.hub.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the client left 5s ago, %d streams still open", e.hub.Connections())
	}
	if n := e.broker.Observer().Listeners("c1"); n != 0 {
		t.Fatalf("%d listeners left", n)
	}
	goleak.VerifyNone(t, before, workers)
}

// TestWaitEndsWithItsContext: Wait returns when its context ends, even
// with streams open, and at once when none is.
func TestWaitEndsWithItsContext(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	idle := make(chan struct{})
	go func() { e.hub.Wait(context.Background()); close(idle) }()
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait with no stream open did not return")
	}
	e.open("/v1/courses/c1/events", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	e.hub.Wait(ctx)
	if ctx.Err() == nil || e.hub.Connections() != 1 {
		t.Fatalf("Wait returned with ctx %v and %d streams, want the deadline and 1 stream", ctx.Err(), e.hub.Connections())
	}
}
