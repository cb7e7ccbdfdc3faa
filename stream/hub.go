package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"coursestream/internal/cursor"
	"coursestream/internal/httpjson"
	"coursestream/internal/typefilter"
	"coursestream/internal/workq"
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
// fed from the broker. The broker's listener only appends an event to the
// connection's bounded queue, so a slow client never holds up another.
// Each event's frame is encoded once (wire.go, shared through the course's
// topic) and written as it is to every stream.
//
// An HTTP/1.1 stream is taken over from net/http after its replay: the
// hub's workers (one per CPU) write its live frames straight to the socket
// without waiting, and one small reader goroutine per connection notices
// the client leaving. Other streams (HTTP/2, HTTP/1.0) are written by
// their request goroutine through the ResponseWriter.
//
// Run owns the workers and the heartbeats; Drain ends every stream (at
// shutdown); Close cuts what is left and waits for every goroutine of the
// hub.
type Hub struct {
	cfg    Config
	broker observer.Broker
	log    *slog.Logger
	retry  *fixedFrame // the first frame of every stream
	runq   *runq
	wg     sync.WaitGroup // direct streams' reader and flusher goroutines

	mu       sync.Mutex
	conns    map[*conn]struct{}
	topics   map[string]*topic // per course with streams open here
	draining bool
	empty    chan struct{} // closed when the last stream ends (Wait's signal); nil when nobody waits
}

// inlineFanout is the most streams a course may have for its publisher to
// write their live events itself (no hand-off to a worker: the lowest
// latency); above it the workers write, in parallel, and the publisher
// (an HTTP request, or the Redis receive loop) is not held up.
const inlineFanout = 32

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
	return &Hub{
		cfg: cfg, broker: b, log: cfg.Logger, runq: workq.New[*direct](runtime.GOMAXPROCS(0)),
		retry: retryFrame(cfg.Retry),
		conns: make(map[*conn]struct{}), topics: make(map[string]*topic),
	}
}

// WithExpiry returns ctx telling the stream served with it that its
// client's authorization ends at t (a token's expiry): the stream then ends
// cleanly, with its final frame, and the client reconnects with a fresh
// token. A deadline of the request's context is not an expiry: it cuts the
// stream.
func WithExpiry(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, expiryKey{}, t)
}

type expiryKey struct{}

// Run sends a heartbeat comment to every stream at least each
// Config.Heartbeat until ctx ends: it ticks twice a period, and a stream
// that writes events carries its comment in one of those writes.
//
// It also runs the workers that write the live frames of direct streams:
// call it before serving, and keep it running until the server has
// stopped (Drain's final frames are written by them).
func (h *Hub) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range h.runq.Workers() {
		wg.Add(1)
		go func() { defer wg.Done(); h.runq.Work(ctx, (*direct).runTurn) }()
	}
	defer wg.Wait()
	t := time.NewTicker(max(h.cfg.Heartbeat/2, 1)) // two ticks a heartbeat: see conn.beatTickLocked
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

// Wait waits until no stream is open (after Drain, they end by themselves
// within drainTimeout) or ctx ends.
func (h *Hub) Wait(ctx context.Context) {
	h.mu.Lock()
	if len(h.conns) == 0 {
		h.mu.Unlock()
		return
	}
	if h.empty == nil {
		h.empty = make(chan struct{})
	}
	empty := h.empty
	h.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-empty:
	}
}

// Close cuts every stream still open and waits for the goroutines of
// direct streams. Call it after Drain, once the HTTP server has stopped.
func (h *Hub) Close() {
	for _, c := range h.snapshot() {
		c.kill(errShutdown)
	}
	h.wg.Wait()
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
	for i := range c.lanes {
		l := &c.lanes[i]
		t := h.topics[l.course]
		if t == nil {
			t = new(topic)
			h.topics[l.course] = t
		}
		t.streams.Add(1)
		l.topic = t
	}
	return false, nil
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	if _, ok := h.conns[c]; ok {
		delete(h.conns, c)
		for i := range c.lanes {
			if c.lanes[i].topic.streams.Add(-1) == 0 {
				delete(h.topics, c.lanes[i].course)
			}
		}
		if len(h.conns) == 0 && h.empty != nil {
			close(h.empty)
			h.empty = nil
		}
	}
	h.mu.Unlock()
}

var (
	errShutdown = errors.New("the server is shutting down: reconnect")
	errSlow     = errors.New("client too slow: its buffer is full")
	errFull     = errors.New("too many open streams: use polling")
	errMaxAge   = errors.New("stream reached --max-stream-age: reconnect")
	errExpired  = errors.New("the token expired: reconnect with a fresh one")
)

// ServeHTTP implements http.Handler for GET /v1/courses/{courseId}/events.
//
// It is split in three so that the frame that stays on the stack for the
// life of the stream is small: setup and teardown happen in functions that
// have returned by the time serve blocks. A stream's goroutine stack then
// shrinks to 8 KiB, which is most of what an idle connection costs.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, st := h.open(w, r, parseRequest)
	if c == nil {
		return
	}
	c.out.run(st)
}

// ServeCourses serves GET /v1/events?courses=a,b,...: one stream for 1 to
// cursor.MaxCourses courses, whose frames carry the stream's cursor as
// their id (see the cursor package), resumed from a cursor in
// Last-Event-ID or ?lastEventId=. It behaves as ServeHTTP otherwise, and
// its streams count as TransportSSEMulti. Authorizing every listed course
// is the route's (as for ServeHTTP).
func (h *Hub) ServeCourses(w http.ResponseWriter, r *http.Request) {
	c, st := h.open(w, r, parseCoursesRequest)
	if c == nil {
		return
	}
	c.out.run(st)
}

// open validates and registers the request, subscribes it to the broker
// and reads where it starts; an HTTP/1.1 connection is then taken over. On
// failure it answers the request itself and returns a nil conn.
//
//go:noinline
func (h *Hub) open(w http.ResponseWriter, r *http.Request, parse func(*http.Request) (request, error)) (*conn, start) {
	req, err := parse(r)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return nil, start{}
	}
	_, hijackable := innermost(w).(http.Hijacker)
	takeover := hijackable && r.ProtoAtLeast(1, 1) && r.TLS == nil // a TLS connection has no socket to write to

	base := r.Context()
	if takeover {
		// A taken-over stream outlives its request: keep the request's
		// values, not its cancellation.
		base = context.WithoutCancel(base)
	}
	ctx, cancel := context.WithCancelCause(base)
	c := newConn(h, ctx, cancel, req)
	c.out = newViaHandler(c, w) // until taken over
	if full, refused := h.register(c); refused != nil {
		c.mu.Lock()
		c.releaseLocked()
		c.mu.Unlock()
		c.cancel(nil)
		w.Header().Set("Retry-After", "1")
		if !full {
			httpjson.Error(w, http.StatusServiceUnavailable, refused.Error())
			return nil, start{}
		}
		// Steer this client to polling (the browser library follows it).
		httpjson.Write(w, http.StatusServiceUnavailable, struct {
			Error    string `json:"error"`
			Fallback string `json:"fallback"`
		}{refused.Error(), req.fallback()})
		return nil, start{}
	}
	h.cfg.Metrics.StreamOpened(c.transport())
	// However the context ends (client gone, token expired, stop), a write
	// blocked on the client is interrupted.
	c.stopAfter = context.AfterFunc(ctx, func() { c.stop(context.Cause(ctx)) })
	if expiry, ok := r.Context().Value(expiryKey{}).(time.Time); ok {
		// The token's expiry: the stream ends cleanly then, with its final
		// frame.
		c.after(time.Until(expiry), func() { c.end(errExpired) })
	}
	if h.cfg.MaxStreamAge > 0 {
		age := time.Duration(float64(h.cfg.MaxStreamAge) * (0.8 + 0.2*rand.Float64()))
		c.after(age, func() { c.end(errMaxAge) })
	}

	// Subscribe first, then read where to start: an event is either in
	// what we read or delivered to the listener (or both; dropped by id).
	err = c.subscribe(ctx)
	var st start
	if err == nil {
		st, err = c.startPosition(ctx)
	}
	if err == nil && takeover {
		var d *direct
		if d, err = takeOver(c, w); err == nil {
			c.mu.Lock()
			c.out = d
			stopped := c.stoppedLocked()
			if !stopped {
				// Counted under c.mu with the check: Close either stopped
				// the stream before (then no reader starts) or waits for it.
				h.wg.Add(1)
			}
			c.mu.Unlock()
			if stopped {
				// Stopped while opening (its token expired, the hub closed):
				// the viaHandler abort could not reach the taken-over socket.
				d.s.abort(true)
				h.release(c)
				return nil, start{}
			}
		}
	}
	if err != nil {
		h.release(c)
		if !errors.Is(err, errHijacked) { // a hijacked connection is closed already: nothing to answer on
			h.unavailable(w, r, err)
		}
		return nil, start{}
	}
	if h.log.Enabled(ctx, slog.LevelDebug) {
		from := make([]string, len(st.lanes))
		for i, ls := range st.lanes {
			from[i] = strconv.FormatUint(ls.pos, 10)
			if ls.reset {
				from[i] += " (reset)"
			}
		}
		h.log.LogAttrs(ctx, slog.LevelDebug, "stream open", slog.Any("courses", req.courses),
			slog.Any("from", from), slog.Bool("direct", takeover))
	}
	c.opened = time.Now()
	return c, st
}

// release gives back what open took, once the stream is over: on the
// request goroutine for a stream through the ResponseWriter, on the reader
// goroutine for a direct one.
//
//go:noinline
func (h *Hub) release(c *conn) {
	for i := range c.lanes {
		if c.lanes[i].unsubscribe != nil {
			c.lanes[i].unsubscribe()
		}
	}
	c.mu.Lock()
	timers := c.timers
	c.timers = nil
	c.releaseLocked()
	// A stream whose final frame went out ended for the reason it was
	// ended, even when the reader saw the connection close first.
	cause := context.Cause(c.ctx)
	if c.flags.has(flagClean) && c.ending != nil {
		cause = c.ending
	}
	reason := closeReason(cause)
	c.out.releaseLocked()
	c.mu.Unlock()
	for _, t := range timers {
		t.Stop()
	}
	if c.stopAfter != nil {
		c.stopAfter()
	}
	c.cancel(nil)
	h.unregister(c)
	h.cfg.Metrics.StreamClosed(c.transport(), reason)
	if h.log.Enabled(c.ctx, slog.LevelDebug) {
		h.log.LogAttrs(context.Background(), slog.LevelDebug, "stream close", slog.Any("courses", c.req.courses),
			slog.Duration("open", time.Since(c.opened)), slog.String("reason", reason))
	}
}

// closeReason names why a stream ended, for metrics, from the cause of
// its context.
func closeReason(cause error) string {
	switch {
	case errors.Is(cause, errSlow):
		return "slow"
	case errors.Is(cause, errShutdown):
		return "shutdown"
	case errors.Is(cause, errMaxAge):
		return "age"
	case errors.Is(cause, errExpired):
		return "expired"
	case cause == nil, errors.Is(cause, context.Canceled), errors.Is(cause, errClientGone):
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

// subscribe registers one listener per course of the stream. Each
// listener knows its lane, so an event needs no lookup on the hot path.
func (c *conn) subscribe(ctx context.Context) error {
	for i := range c.lanes {
		l := &c.lanes[i]
		unsubscribe, err := c.h.broker.Subscribe(ctx, l.course, func(ev *observer.Event) { c.onEvent(l, ev) })
		if err != nil {
			return err
		}
		l.unsubscribe = unsubscribe
	}
	return nil
}

// request is a parsed and validated subscription request.
type request struct {
	courses  []string // one for GET /v1/courses/{courseId}/events
	ids      idForm
	types    typefilter.Set
	coalesce time.Duration
	dispatch dispatch
	// positions is where the client is, per course it named; resume says
	// it gave a position, badID that what it gave is not one of ours
	// (every course gets a reset).
	positions cursor.Positions
	resume    bool
	badID     bool
}

// idForm is what a stream's id lines hold.
type idForm uint8

const (
	// idEvent: the event's own id (a single-course stream).
	idEvent idForm = iota
	// idCursor: the stream's cursor, "<courseId>:<seq>" for each of its
	// courses (a multi-course stream).
	idCursor
)

// fallback is where a client refused for want of room polls instead.
func (req request) fallback() string {
	if req.ids == idCursor {
		return "/v1/poll?courses=" + strings.Join(req.courses, ",")
	}
	return "/v1/courses/" + req.courses[0] + "/poll"
}

func parseRequest(r *http.Request) (request, error) {
	course := r.PathValue("courseId")
	req := request{courses: []string{course}}
	if err := observer.CheckCourseID(course); err != nil {
		return req, err
	}
	if err := parseOptions(r, &req); err != nil {
		return req, err
	}
	if v := lastEventID(r); v != "" {
		req.resume = true
		last, err := observer.ParseID(v)
		req.badID = err != nil
		req.positions = cursor.Positions{course: last}
	}
	return req, nil
}

// parseCoursesRequest parses GET /v1/events?courses=...: the course list
// (1 to cursor.MaxCourses valid ids, else an error: 400), the options, and
// a cursor to resume from. A Last-Event-ID that is not a cursor is no
// error (that would stop an EventSource for good): every course is reset.
func parseCoursesRequest(r *http.Request) (request, error) {
	var req request
	courses, err := cursor.ParseCourses(r.URL.Query()["courses"])
	if err != nil {
		return req, err
	}
	req.courses, req.ids = courses, idCursor
	if err := parseOptions(r, &req); err != nil {
		return req, err
	}
	if v := lastEventID(r); v != "" {
		req.resume = true
		req.positions, err = cursor.Parse(v)
		req.badID = err != nil
	}
	return req, nil
}

// parseOptions reads what both stream endpoints take: types, coalesce,
// dispatch.
func parseOptions(r *http.Request, req *request) error {
	q := r.URL.Query()
	var err error
	if req.types, err = typefilter.Parse(q["types"]); err != nil {
		return err
	}
	if v := q.Get("coalesce"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxCoalesce {
			return fmt.Errorf("invalid coalesce %.32q: a duration such as 500ms, at most %s", v, MaxCoalesce)
		}
		req.coalesce = d
	}
	if vs, ok := q["dispatch"]; ok {
		if len(vs) != 1 || vs[0] != "message" {
			return fmt.Errorf("invalid dispatch %.32q: the only value is message", strings.Join(vs, ","))
		}
		req.dispatch = dispatchMessage
	}
	return nil
}

// lastEventID is where the client says it is: the header wins, since on
// reconnect the browser sends its latest id there while the URL still has
// the id the page started from.
func lastEventID(r *http.Request) string {
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		return v
	}
	return r.URL.Query().Get("lastEventId")
}
