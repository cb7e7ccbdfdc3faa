// Package poller serves the polling endpoints, for clients that cannot
// keep a stream open (buffering proxies, background tabs, degraded
// networks), with optional long-polling:
//
//   - GET /v1/courses/{courseId}/poll?after=<seq>: one course; the answer
//     carries the events after ?after= and the weak ETag
//     W/"<courseId>:<lastEventId>".
//   - GET /v1/poll?courses=<id>,...&cursor=<cursor>: up to 64 courses, the
//     position in the multi-course stream's cursor form; the weak ETag is
//     a hash of the answer's cursor (CursorETag).
//
// Both are one code path: a single-course poll is a cursor of one course.
// A request whose If-None-Match matches the current ETag gets 304 and an
// empty body. ?wait= holds the request until an event after the position
// exists in any of its courses: it waits on one broker listener per
// course, not on a timer loop. Given a Handback (a Listener), a long-poll
// over plain HTTP/1.1 is taken over from net/http while it waits (see
// parked): a held poll then costs its connection, its listeners and one
// small goroutine, and its connection goes back to net/http once it is
// answered. Drain answers every waiting long-poll at once (shutdown);
// Wait waits for the taken-over ones to be written.
package poller

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"coursestream/internal/httpjson"
	"coursestream/observer"
)

// Defaults and bounds.
const (
	// MaxWait is the longest long-poll a client may ask for.
	MaxWait = 30 * time.Second
	// PageSize is the most events one response carries.
	PageSize = 500
)

// Config configures a Poller. Zero values mean the defaults.
type Config struct {
	MaxLongPolls int // long-polls held at once; past it they are answered at once; 0 = no limit
	// Handback takes back the connections of the long-polls taken over
	// from net/http; nil: long-polls are held by their handlers.
	Handback Handback
	Metrics  Metrics
	Logger   *slog.Logger
}

// Metrics receives the poller's counts; nil in Config means NopMetrics.
type Metrics interface {
	// Polled counts an answered poll: its status and the events it carried.
	Polled(status, events int)
	// LongPolls moves the number of waiting long-polls by delta.
	LongPolls(delta int)
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) Polled(int, int) {}
func (NopMetrics) LongPolls(int)   {}

// Poller is the polling handler.
type Poller struct {
	broker observer.Broker
	cfg    Config

	mu       sync.Mutex
	waiting  int
	draining chan struct{}        // closed by Drain
	parked   map[*parked]struct{} // the long-polls taken over from net/http
	emptied  chan struct{}        // closed when parked empties, for Wait

	onWait func() // test hook: a long-poll is about to wait
}

// New returns a poller reading from b.
func New(b observer.Broker, cfg Config) *Poller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	return &Poller{broker: b, cfg: cfg, draining: make(chan struct{})}
}

// Drain answers every waiting long-poll now and every later one at once.
// Safe to call more than once.
func (p *Poller) Drain() {
	p.mu.Lock()
	if p.isDraining() {
		p.mu.Unlock()
		return
	}
	close(p.draining)
	woken := make([]*longPoll, 0, len(p.parked))
	for pk := range p.parked {
		woken = append(woken, pk.lp)
	}
	p.mu.Unlock()
	for _, lp := range woken {
		lp.wake()
	}
}

// isDraining reports whether Drain was called.
func (p *Poller) isDraining() bool {
	select {
	case <-p.draining:
		return true
	default:
		return false
	}
}

// Wait waits until every long-poll taken over from net/http is answered
// (after Drain: at once, but for the writes), or ctx ends.
func (p *Poller) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		if len(p.parked) == 0 {
			p.mu.Unlock()
			return nil
		}
		if p.emptied == nil {
			p.emptied = make(chan struct{})
		}
		emptied := p.emptied
		p.mu.Unlock()
		select {
		case <-emptied:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// LongPolls returns the number of long-polls waiting now.
func (p *Poller) LongPolls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// ServeHTTP implements http.Handler: GET /v1/courses/{courseId}/poll.
func (p *Poller) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.serve(w, r, oneCourse) }

// ServeCourses serves GET /v1/poll?courses=<id>,...&cursor=<cursor>: the
// poll of several courses at once, with the multi-course stream's cursor.
// The route authorizes every listed course before it.
func (p *Poller) ServeCourses(w http.ResponseWriter, r *http.Request) { p.serve(w, r, manyCourses) }

// serve is the poll of either shape.
func (p *Poller) serve(w http.ResponseWriter, r *http.Request, s shape) {
	var one single
	req, err := parse(r, s, &one)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	h := w.Header()
	h["Cache-Control"] = noCache

	inm := r.Header.Get("If-None-Match")
	if req.wait == 0 && inm != "" {
		// The cheap path: a client that is up to date costs one LastID
		// read per course.
		tag, err := p.currentTag(ctx, req)
		if err != nil {
			p.unavailable(w, ctx, err)
			return
		}
		if tag != "" && MatchNoneMatch(inm, tag) {
			h["Etag"] = []string{tag}
			w.WriteHeader(http.StatusNotModified)
			p.cfg.Metrics.Polled(http.StatusNotModified, 0)
			return
		}
	}

	if req.wait > 0 && p.enter() {
		p.serveLongPoll(w, r, req, inm)
		return
	}
	// No wait asked, or over the long-poll bound: answer at once.
	ans, err := p.readOnce(ctx, req)
	p.respond(w, ctx, req, inm, ans, err)
}

// respond writes the answer to a poll (or the broker's failure to give
// one): 200 with the answer, or 304 when If-None-Match matches its ETag.
func (p *Poller) respond(w http.ResponseWriter, ctx context.Context, req request, inm string, ans answer, err error) {
	if err != nil {
		p.unavailable(w, ctx, err)
		return
	}
	h := w.Header()
	tag := ans.etag(req)
	h["Etag"] = []string{tag}
	if inm != "" && MatchNoneMatch(inm, tag) {
		w.WriteHeader(http.StatusNotModified)
		p.cfg.Metrics.Polled(http.StatusNotModified, 0)
		return
	}
	h["Content-Type"] = applicationJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(ans.appendJSON(make([]byte, 0, ans.size(req)), req))
	p.cfg.Metrics.Polled(http.StatusOK, len(ans.events))
}

// currentTag returns the ETag that the answer to req would carry, from
// the courses' last ids alone (one broker read for them all), or "" when
// the answer could be cut short by the page cap (its cursor is then not
// the courses' last ids).
func (p *Poller) currentTag(ctx context.Context, req request) (string, error) {
	var one [1]uint64 // a single-course poll builds no slice (the hot 304 path)
	last := one[:]
	if len(req.at.Courses) > 1 {
		var err error
		if last, err = p.lastIDs(ctx, req); err != nil {
			return "", err
		}
	} else {
		id, err := p.broker.LastID(ctx, req.at.Courses[0])
		if err != nil {
			return "", err
		}
		one[0] = id
	}
	var ahead uint64 // the events at most between the request and now
	for i, id := range last {
		if id > req.at.Seqs[i] {
			ahead += id - req.at.Seqs[i]
		}
	}
	if ahead > PageSize {
		return "", nil
	}
	return req.shape.etag(req.at.Courses, last), nil
}

// lastIDs reads the last ids of a poll of several courses in one broker
// read. It hands the broker a copy of the course list: the list of a
// single-course poll lives in serve's stack frame, and passing it through
// the interface would move it to the heap for every poll, 304s included.
func (p *Poller) lastIDs(ctx context.Context, req request) ([]uint64, error) {
	return p.broker.LastIDs(ctx, slices.Clone(req.at.Courses))
}

// serveLongPoll answers req (counted by enter), waiting for news up to
// its ?wait=: in the handler, or, when it has to wait and can be, taken
// over from net/http (its reader answers it then).
func (p *Poller) serveLongPoll(w http.ResponseWriter, r *http.Request, req request, inm string) {
	ctx := r.Context()
	lp, err := p.listen(ctx, req) // listening first: no event falls between the read and the wait
	if err != nil {
		p.leave()
		p.respond(w, ctx, req, inm, answer{}, err)
		return
	}
	ans, err := p.readOnce(ctx, lp.req)
	if err == nil && !ans.found() {
		if p.takeOver(w, r, lp, inm, ans) {
			return
		}
		ans, err = p.holdLongPoll(ctx, lp, ans)
	}
	lp.close()
	p.leave()
	p.respond(w, ctx, req, inm, ans, err)
}

// readOnce reads the history after req's position in each course, in the
// request's order, PageSize events at most in all. Once the cap is
// reached the courses left keep their position, and more tells the
// client to ask again at once if any of them has moved. A poll of several
// courses reads their last ids first, in one broker read, and the history
// of the courses that moved only: a poll costs one round trip to Redis
// plus one per course with news, not one per course.
func (p *Poller) readOnce(ctx context.Context, req request) (answer, error) {
	ans := answer{next: make([]uint64, len(req.at.Courses))}
	var last []uint64 // nil for one course: its History call reads its last id too
	if len(req.at.Courses) > 1 {
		var err error
		if last, err = p.lastIDs(ctx, req); err != nil {
			return answer{}, err
		}
	}
	for i, course := range req.at.Courses {
		after := req.at.Seqs[i]
		if last != nil && last[i] == after {
			ans.next[i] = after // nothing new, nothing to continue: no history to read
			continue
		}
		if budget := PageSize - ans.examined; budget > 0 {
			pg, err := p.broker.History(ctx, course, after, budget)
			if err != nil {
				return answer{}, err
			}
			ans.add(i, pg, req)
			continue
		}
		// The cap is reached, which takes two courses at least: last is set,
		// and this course moved (last[i] != after).
		ans.next[i] = after
		ans.more = true
	}
	return ans, nil
}

func (p *Poller) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.MaxLongPolls > 0 && p.waiting >= p.cfg.MaxLongPolls {
		return false
	}
	p.waiting++
	p.cfg.Metrics.LongPolls(1)
	return true
}

func (p *Poller) leave() {
	p.mu.Lock()
	p.waiting--
	p.mu.Unlock()
	p.cfg.Metrics.LongPolls(-1)
}

// unavailable answers 503 when the broker failed, unless ctx ended (the
// client left, or its token expired): then nothing is written.
func (p *Poller) unavailable(w http.ResponseWriter, ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	p.cfg.Logger.Warn("poll: broker unavailable", slog.Any("err", err))
	w.Header().Set("Retry-After", "1")
	w.Header().Del("ETag")
	httpjson.Error(w, http.StatusServiceUnavailable, "events are unavailable right now; retry")
}

// Constant header values, shared by every response (net/http copies, and
// appending to a full one-element slice copies too).
var (
	noCache         = []string{"no-cache"}
	applicationJSON = []string{"application/json"}
)
