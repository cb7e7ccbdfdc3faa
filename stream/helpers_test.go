package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"go.uber.org/goleak"
	"gopkg.in/cenkalti/backoff.v1"

	"coursestream/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env is a hub on a memory broker behind a real HTTP server.
type env struct {
	t      testing.TB
	broker *observer.Memory
	hub    *Hub
	srv    *httptest.Server
	client *http.Client
}

func newEnv(t testing.TB, cfg Config, mcfg observer.MemoryConfig) *env {
	t.Helper()
	mcfg.Logger = quiet()
	b := observer.NewMemory(mcfg)
	h, srv := serveHub(t, b, cfg, func(mux *http.ServeMux, h *Hub) {
		var events, multi http.Handler = h, http.HandlerFunc(h.ServeCourses)
		if forceViaHandler {
			events = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(noHijack{w}, r) })
			multi = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeCourses(noHijack{w}, r) })
		}
		mux.Handle("GET /v1/courses/{courseId}/events", events)
		mux.Handle("GET /v1/events", multi)
		mux.Handle("POST /v1/courses/{courseId}/events", NewPublisher(b, PublishConfig{Logger: quiet(), MaxEventBytes: mcfg.MaxEventBytes}))
	})
	return &env{t: t, broker: b, hub: h, srv: srv, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
}

// serveHub runs a hub on b behind a real HTTP server whose routes route
// adds, with Run going; when the test ends it drains the hub, closes the
// server, closes the hub and stops Run.
func serveHub(t testing.TB, b observer.Broker, cfg Config, route func(*http.ServeMux, *Hub)) (*Hub, *httptest.Server) {
	t.Helper()
	cfg.Logger = quiet()
	h := New(b, cfg)
	mux := http.NewServeMux()
	route(mux, h)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = h.Run(ctx) }()
	t.Cleanup(func() {
		h.Drain()
		srv.Close()
		h.Close()
		cancel()
		<-ran
	})
	return h, srv
}

func (e *env) publish(course, typ, data string) *observer.Event {
	e.t.Helper()
	ev, err := e.broker.Publish(context.Background(), observer.Message{CourseID: course, Type: typ, Data: json.RawMessage(data)})
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// sseFrame is one parsed SSE frame.
type sseFrame struct {
	id, event, data, retry string
	comment                bool
	hasID                  bool
}

// sseClient reads raw SSE bytes from a response.
type sseClient struct {
	t    testing.TB
	resp *http.Response
	r    *bufio.Reader
	err  error    // what ended the stream
	nc   net.Conn // the socket, for a client dialled by hand (dialStalled)
}

func (e *env) open(path string, header map[string]string) *sseClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	c := &sseClient{t: e.t, resp: resp, r: bufio.NewReader(resp.Body)}
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode == http.StatusOK {
		// The first frame is retry:, written once the handler has
		// subscribed: from here on no event is missed.
		if f, ok := c.next(); !ok || f.retry == "" {
			e.t.Fatalf("first frame %+v (ok=%v), want retry:", f, ok)
		}
	}
	return c
}

func (c *sseClient) close() { c.resp.Body.Close() }

// next returns the next frame, or ok=false at EOF. A test that hangs here
// fails by the test timeout; callers bound their own waits with deadlines.
func (c *sseClient) next() (f sseFrame, ok bool) {
	c.t.Helper()
	seen := false
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.err = err
			return f, false
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				return f, true
			}
			continue
		}
		seen = true
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "":
			f.comment = true
		case "id":
			f.id, f.hasID = value, true
		case "event":
			f.event = value
		case "data":
			f.data = value
		case "retry":
			f.retry = value
		}
	}
}

// nextEvent skips comments and retry-only frames.
func (c *sseClient) nextEvent() (sseFrame, bool) {
	c.t.Helper()
	for {
		f, ok := c.next()
		if !ok || f.data != "" {
			return f, ok
		}
	}
}

// events reads n data frames and returns their ids, failing on EOF.
func (c *sseClient) events(n int) []sseFrame {
	c.t.Helper()
	out := make([]sseFrame, 0, n)
	for len(out) < n {
		f, ok := c.nextEvent()
		if !ok {
			c.t.Fatalf("stream ended after %d of %d events", len(out), n)
		}
		out = append(out, f)
	}
	return out
}

func frameIDs(fs []sseFrame) []uint64 {
	ids := make([]uint64, len(fs))
	for i, f := range fs {
		ids[i], _ = strconv.ParseUint(f.id, 10, 64)
	}
	return ids
}

// consecutive checks that ids run from first by one.
func consecutive(t testing.TB, ids []uint64, first uint64) {
	t.Helper()
	for i, id := range ids {
		if id != first+uint64(i) {
			t.Fatalf("ids %v: at %d got %d, want %d (gap or duplicate)", short(ids), i, id, first+uint64(i))
		}
	}
}

func short(ids []uint64) []uint64 {
	if len(ids) > 20 {
		return ids[:20]
	}
	return ids
}

// forceViaHandler makes newEnv serve streams through a ResponseWriter that
// cannot be hijacked: the path HTTP/2 and HTTP/1.0 streams take.
var forceViaHandler bool

// noHijack hides http.Hijacker (and Unwrap) but keeps flushing and write
// deadlines, as an HTTP/2 ResponseWriter does.
type noHijack struct{ w http.ResponseWriter }

func (n noHijack) Header() http.Header         { return n.w.Header() }
func (n noHijack) Write(p []byte) (int, error) { return n.w.Write(p) }
func (n noHijack) WriteHeader(code int)        { n.w.WriteHeader(code) }
func (n noHijack) FlushError() error           { return http.NewResponseController(n.w).Flush() }
func (n noHijack) SetWriteDeadline(t time.Time) error {
	return http.NewResponseController(n.w).SetWriteDeadline(t)
}

// r3labsSubscribe reads path with r3labs/sse's own client, as a Go program
// would, resuming from lastID; it returns the events with data and the
// client (its LastEventID), and stops the client when the test ends.
func (e *env) r3labsSubscribe(t *testing.T, path, lastID string) (<-chan *sse.Event, *sse.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client := sse.NewClient(e.srv.URL+path, sse.ClientMaxBufferSize(1<<20))
	client.Connection = e.client
	client.ReconnectStrategy = backoff.WithContext(backoff.NewExponentialBackOff(), ctx)
	client.LastEventID.Store([]byte(lastID))
	got := make(chan *sse.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- client.SubscribeRawWithContext(ctx, func(ev *sse.Event) {
			if len(ev.Data) > 0 {
				got <- ev
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return got, client
}
