package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"

	"coursestream/internal/httpjson"
	"coursestream/observer"
)

// Defaults of Config.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultRetry        = 3 * time.Second
	DefaultClientBuffer = 1 << 20
	DefaultWriteTimeout = 15 * time.Second
	DefaultDrainJitter  = 5 * time.Second
	// drainTimeout bounds how long a stream being ended on purpose may take
	// to write its final frame before it is cut.
	drainTimeout = 2 * time.Second
	// MaxCoalesce is the longest debounce window a client may ask for.
	MaxCoalesce = 10 * time.Second
	// replayPage is how many history events one read fetches while replaying.
	replayPage = 256
)

// Config configures a Hub. Zero values mean the defaults.
type Config struct {
	Heartbeat      time.Duration // a comment at least this often (default 15s)
	Retry          time.Duration // reconnection delay told to clients (default 3s)
	ClientBuffer   int           // bytes of frames that may wait for one client (default 1 MiB)
	MaxConnections int           // open streams before new ones get 503 + fallback; 0 = no limit
	// WriteTimeout bounds one write to a client: a peer that accepts no
	// bytes for this long is dropped (default 15s).
	WriteTimeout time.Duration
	// MaxStreamAge ends a stream after 80-100% of this age (randomized, so
	// that streams opened together do not all reconnect together); the
	// client reconnects with Last-Event-ID. 0: never.
	MaxStreamAge time.Duration
	// DrainJitter spreads reconnections when streams are ended on purpose
	// (shutdown, MaxStreamAge): the final frame tells each client to retry
	// after Retry plus a random share of this (default 5s).
	DrainJitter time.Duration
	Metrics     Metrics // nil: NopMetrics
	Logger      *slog.Logger
}

// Hub serves GET /v1/courses/{courseId}/events: one SSE stream per request,
// fed from the broker. It owns an r3labs/sse server used for the wire side
// (headers, framing, flushing), with one r3labs stream per connection so
// that a slow client never holds up another; fan-out, replay, filtering,
// coalescing and backpressure are done here.
//
// Run sends the heartbeats; Drain ends every stream (at shutdown); Close
// releases the r3labs server once every handler has returned.
type Hub struct {
	cfg    Config
	broker observer.Broker
	log    *slog.Logger
	sse    *sse.Server
	retry  []byte // the first frame of every stream

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool

	nextID atomic.Uint64
	active atomic.Int64
}

// New returns a Hub reading from b. It starts nothing; see Run.
func New(b observer.Broker, cfg Config) *Hub {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = DefaultClientBuffer
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.DrainJitter <= 0 {
		cfg.DrainJitter = DefaultDrainJitter
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := sse.New()
	s.AutoReplay = false // ids and history are ours; its log is unbounded and rewrites ids
	s.AutoStream = false // streams are created per connection, by us
	s.SplitData = false  // envelopes are single-line JSON
	s.EncodeBase64 = false
	s.BufferSize = 16 // our queue is the real buffer; this is a hand-off
	s.Headers["X-Accel-Buffering"] = "no"
	return &Hub{
		cfg: cfg, broker: b, log: cfg.Logger, sse: s,
		retry: fmt.Appendf(nil, "retry: %d\n\n", cfg.Retry.Milliseconds()),
		conns: make(map[*conn]struct{}),
	}
}

// Connections returns the number of open streams.
func (h *Hub) Connections() int { return int(h.active.Load()) }

// Run sends a heartbeat comment to every stream each Config.Heartbeat until
// ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, c := range h.snapshot() {
				c.heartbeat()
			}
		}
	}
}

// Drain refuses new streams from now on and ends every open one: each gets
// a final frame with a jittered retry: (so that clients do not all
// reconnect at once) and is closed; clients reconnect, to another instance,
// with their Last-Event-ID. Safe to call more than once; http.Server.Shutdown
// does not end streams by itself, so call it first.
func (h *Hub) Drain() {
	h.mu.Lock()
	h.draining = true
	h.mu.Unlock()
	for _, c := range h.snapshot() {
		c.end(errShutdown)
	}
}

// Close releases the r3labs server. Call it after the HTTP server has
// stopped and every handler has returned.
func (h *Hub) Close() { h.sse.Close() }

func (h *Hub) snapshot() []*conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		cs = append(cs, c)
	}
	return cs
}

// register adds c unless the hub is draining or full.
func (h *Hub) register(c *conn) (full bool, refused error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.draining:
		return false, errShutdown
	case h.cfg.MaxConnections > 0 && len(h.conns) >= h.cfg.MaxConnections:
		return true, errFull
	}
	h.conns[c] = struct{}{}
	h.active.Add(1)
	return false, nil
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.active.Add(-1)
}

var (
	errShutdown = errors.New("the server is shutting down: reconnect")
	errSlow     = errors.New("client too slow: its buffer is full")
	errFull     = errors.New("too many open streams: use polling")
	errMaxAge   = errors.New("stream reached --max-stream-age: reconnect")
)

// ServeHTTP implements http.Handler for GET /v1/courses/{courseId}/events.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := parseRequest(r)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	c := newConn(h, ctx, cancel, req, http.NewResponseController(w))
	defer c.finish()
	if full, refused := h.register(c); refused != nil {
		w.Header().Set("Retry-After", "1")
		if !full {
			httpjson.Error(w, http.StatusServiceUnavailable, refused.Error())
			return
		}
		// Steer this client to polling (the browser library follows it).
		httpjson.Write(w, http.StatusServiceUnavailable, struct {
			Error    string `json:"error"`
			Fallback string `json:"fallback"`
		}{refused.Error(), "/v1/courses/" + req.course + "/poll"})
		return
	}
	h.cfg.Metrics.StreamOpened()
	defer func() {
		h.unregister(c)
		h.cfg.Metrics.StreamClosed(closeReason(ctx))
	}()
	// However the context ends (client gone, token expired, stop), a write
	// blocked on the client is interrupted.
	defer context.AfterFunc(ctx, func() { c.stop(context.Cause(ctx)) })()
	if h.cfg.MaxStreamAge > 0 {
		age := time.Duration(float64(h.cfg.MaxStreamAge) * (0.8 + 0.2*rand.Float64()))
		defer time.AfterFunc(age, func() { c.end(errMaxAge) }).Stop()
	}

	// Subscribe first, then read where to start: an event is either in
	// what we read or delivered to the listener (or both; dropped by id).
	unsubscribe, err := h.broker.Subscribe(ctx, req.course, c.onEvent)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	defer unsubscribe()
	start, err := c.startPosition(ctx)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}

	if h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.LogAttrs(ctx, slog.LevelDebug, "stream open", slog.String("course", req.course),
			slog.String("conn", c.id), slog.Uint64("from", start.pos), slog.Bool("reset", start.reset))
	}
	opened := time.Now()

	h.sse.CreateStream(c.id)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		c.feed(start)
	}()

	// r3labs reads the stream from ?stream=: always ours, whatever the client sent.
	r2 := r.Clone(ctx)
	q := r2.URL.Query()
	q.Set("stream", c.id)
	r2.URL.RawQuery = q.Encode()
	r2.Header.Del("Last-Event-ID")         // handled above; r3labs would 400 a non-integer
	_ = c.rc.SetWriteDeadline(time.Time{}) // a server WriteTimeout must not cut streams; writer arms its own
	h.sse.ServeHTTP(&writer{ResponseWriter: w, c: c, retry: h.retry}, r2)

	// ServeHTTP returns once its subscriber is removed, so the stream has
	// no subscriber left and removing it leaks nothing.
	cancel(nil)
	h.sse.RemoveStream(c.id)
	<-fed

	if h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.LogAttrs(context.Background(), slog.LevelDebug, "stream close", slog.String("course", req.course),
			slog.String("conn", c.id), slog.Duration("open", time.Since(opened)), slog.Any("cause", context.Cause(ctx)))
	}
}

// closeReason names why a stream's context ended, for metrics.
func closeReason(ctx context.Context) string {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errSlow):
		return "slow"
	case errors.Is(cause, errShutdown):
		return "shutdown"
	case errors.Is(cause, errMaxAge):
		return "age"
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "expired"
	case cause == nil, errors.Is(cause, context.Canceled):
		return "client"
	}
	return "error"
}

func (h *Hub) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client is gone
	}
	h.log.Warn("stream: broker unavailable", slog.Any("err", err))
	w.Header().Set("Retry-After", "1")
	httpjson.Error(w, http.StatusServiceUnavailable, "events are unavailable right now; retry")
}

// request is a parsed and validated subscription request.
type request struct {
	course   string
	types    observer.Types
	coalesce time.Duration
	// lastID is where the client is; resume says it gave one, badID that
	// what it gave is not an id of ours (it gets a reset).
	lastID uint64
	resume bool
	badID  bool
}

func parseRequest(r *http.Request) (request, error) {
	req := request{course: r.PathValue("courseId")}
	if !observer.ValidCourseID(req.course) {
		return req, fmt.Errorf("invalid course id: it must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
	}
	q := r.URL.Query()
	var err error
	if req.types, err = observer.ParseTypes(q["types"]); err != nil {
		return req, err
	}
	if v := q.Get("coalesce"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxCoalesce {
			return req, fmt.Errorf("invalid coalesce %q: a duration such as 500ms, at most %s", truncate(v), MaxCoalesce)
		}
		req.coalesce = d
	}
	// The header wins: on reconnect the browser sends its latest id there
	// while the URL still has the id the page started from.
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = q.Get("lastEventId")
	}
	if v != "" {
		req.resume = true
		if req.lastID, err = observer.ParseID(v); err != nil {
			req.badID = true
		}
	}
	return req, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// formatID is the decimal form of an id, as on the wire.
func formatID(id uint64) []byte { return strconv.AppendUint(nil, id, 10) }
