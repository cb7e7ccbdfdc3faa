// Package poller serves GET /v1/courses/{courseId}/poll: the ETag polling
// endpoint for clients that cannot keep a stream open (buffering proxies,
// background tabs, degraded networks), with optional long-polling.
//
// A response carries the events after ?after= and the weak ETag
// W/"<courseId>:<lastEventId>"; a request whose If-None-Match matches the
// current ETag gets 304 and an empty body. ?wait= holds the request until an
// event after ?after= exists: the handler waits on a broker listener, not
// on a timer loop. Handlers start no goroutines; Drain answers every
// waiting long-poll at once (shutdown).
package poller

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"coursestream/internal/httpjson"
	"coursestream/internal/typefilter"
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
	Metrics      Metrics
	Logger       *slog.Logger
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
	draining chan struct{} // closed by Drain

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
	defer p.mu.Unlock()
	select {
	case <-p.draining:
	default:
		close(p.draining)
	}
}

// LongPolls returns the number of long-polls waiting now.
func (p *Poller) LongPolls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// request is a parsed poll request.
type request struct {
	course string
	after  uint64
	types  typefilter.Set
	wait   time.Duration
}

func parse(r *http.Request) (request, error) {
	req := request{course: r.PathValue("courseId")}
	if err := observer.CheckCourseID(req.course); err != nil {
		return req, err
	}
	// One pass over the query: polls are the hottest request there is,
	// and url.ParseQuery builds a map for three parameters.
	var typeValues []string
	seenAfter, seenWait := false, false
	for rest := r.URL.RawQuery; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			k, _ = url.QueryUnescape(k)
		}
		if k != "after" && k != "types" && k != "wait" {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			var err error
			if v, err = url.QueryUnescape(v); err != nil {
				return req, fmt.Errorf("invalid query: %v", err)
			}
		}
		switch k {
		case "after":
			if seenAfter {
				continue // the first one counts, as with url.Values.Get
			}
			seenAfter = true
			var err error
			if req.after, err = observer.ParseID(v); err != nil {
				return req, fmt.Errorf("invalid after %.32q: a decimal event id is required", v)
			}
		case "types":
			typeValues = append(typeValues, v)
		case "wait":
			if seenWait || v == "" {
				continue
			}
			seenWait = true
			d, err := parseWait(v)
			if err != nil {
				return req, err
			}
			req.wait = d
		}
	}
	var err error
	if req.types, err = typefilter.Parse(typeValues); err != nil {
		return req, err
	}
	return req, nil
}

// parseWait accepts a Go duration ("25s", "500ms") or whole seconds ("25").
func parseWait(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseUint(v, 10, 32)
		if nerr != nil {
			d = -1
		} else {
			d = time.Duration(n) * time.Second
		}
	}
	if d < 0 || d > MaxWait {
		return 0, fmt.Errorf("invalid wait %.32q: a duration such as 25s, at most %s", v, MaxWait)
	}
	return d, nil
}

// ServeHTTP implements http.Handler.
func (p *Poller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := parse(r)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	h := w.Header()
	h["Cache-Control"] = noCache

	inm := r.Header.Get("If-None-Match")
	if req.wait == 0 && inm != "" {
		// The cheap path: a client that is up to date costs one LastID read.
		last, err := p.broker.LastID(ctx, req.course)
		if err != nil {
			p.unavailable(w, r, err)
			return
		}
		if last <= req.after+PageSize { // no 500 cap: lastEventId is the course's
			tag := ETag(req.course, last)
			if MatchNoneMatch(inm, tag) {
				h["Etag"] = []string{tag}
				w.WriteHeader(http.StatusNotModified)
				p.cfg.Metrics.Polled(http.StatusNotModified, 0)
				return
			}
		}
	}

	page, err := p.read(ctx, req)
	if err != nil {
		p.unavailable(w, r, err)
		return
	}
	tag := ETag(req.course, page.lastID)
	h["Etag"] = []string{tag}
	if inm != "" && MatchNoneMatch(inm, tag) {
		w.WriteHeader(http.StatusNotModified)
		p.cfg.Metrics.Polled(http.StatusNotModified, 0)
		return
	}
	h["Content-Type"] = applicationJSON
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(page.appendJSON(make([]byte, 0, page.size()), req.course))
	p.cfg.Metrics.Polled(http.StatusOK, len(page.events))
}

// read returns the response page, long-polling when asked to.
func (p *Poller) read(ctx context.Context, req request) (response, error) {
	if req.wait == 0 {
		pg, err := p.broker.History(ctx, req.course, req.after, PageSize)
		return build(pg, req), err
	}
	if !p.enter() {
		// Over the long-poll bound: answer at once, as a plain poll.
		pg, err := p.broker.History(ctx, req.course, req.after, PageSize)
		return build(pg, req), err
	}
	defer p.leave()

	wake := make(chan struct{}, 1)
	unsubscribe, err := p.broker.Subscribe(ctx, req.course, func(ev *observer.Event) {
		if ev.Reset || ev.ID > req.after {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		return response{}, err
	}
	defer unsubscribe()
	timer := time.NewTimer(req.wait)
	defer timer.Stop()
	for {
		pg, err := p.broker.History(ctx, req.course, req.after, PageSize)
		if err != nil || pg.Reset || len(pg.Events) > 0 {
			return build(pg, req), err
		}
		if p.onWait != nil {
			p.onWait()
		}
		select {
		case <-wake:
		case <-timer.C:
			return build(pg, req), nil
		case <-p.draining:
			return build(pg, req), nil
		case <-ctx.Done():
			return build(pg, req), nil
		}
	}
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

func (p *Poller) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	p.cfg.Logger.Warn("poll: broker unavailable", slog.Any("err", err))
	w.Header().Set("Retry-After", "1")
	w.Header().Del("ETag")
	httpjson.Error(w, http.StatusServiceUnavailable, "events are unavailable right now; retry")
}

// response is the body of a 200.
type response struct {
	lastID uint64
	events []*observer.Event
	more   bool
	reset  bool
}

// build applies the types filter and the page cap to a history page.
// lastEventId is the course's last id, or the last event examined when the
// cap cut the page short.
func build(pg observer.Page, req request) response {
	resp := response{lastID: pg.LastID, reset: pg.Reset}
	if pg.Reset {
		return resp
	}
	for _, ev := range pg.Events {
		if req.types.Has(ev.Type) {
			resp.events = append(resp.events, ev)
		}
	}
	if pg.More() {
		resp.more = true
		resp.lastID = pg.Events[len(pg.Events)-1].ID
	}
	return resp
}

func (resp response) size() int {
	n := 96
	for _, ev := range resp.events {
		n += len(ev.JSON) + 1
	}
	return n
}

// appendJSON writes the body; envelopes go out as the stored text.
func (resp response) appendJSON(b []byte, course string) []byte {
	b = append(b, `{"courseId":"`...)
	b = append(b, course...)
	b = append(b, `","lastEventId":"`...)
	b = strconv.AppendUint(b, resp.lastID, 10)
	b = append(b, `","events":[`...)
	for i, ev := range resp.events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ev.JSON...)
	}
	b = append(b, `],"more":`...)
	b = strconv.AppendBool(b, resp.more)
	b = append(b, `,"reset":`...)
	b = strconv.AppendBool(b, resp.reset)
	return append(b, "}\n"...)
}

// Constant header values, shared by every response (net/http copies, and
// appending to a full one-element slice copies too).
var (
	noCache         = []string{"no-cache"}
	applicationJSON = []string{"application/json"}
)
