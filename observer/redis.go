package observer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Defaults of the Redis broker's knobs.
const (
	DefaultReconcile          = 2 * time.Second
	DefaultSubscribeTimeout   = 5 * time.Second
	DefaultChannelSize        = 1024
	DefaultChannelSendTimeout = time.Second
)

// RedisConfig configures the Redis broker. Zero values mean the defaults.
// Instances sharing a Redis must use the same History, HistoryTTL and
// MaxEventBytes: they are written into the function library on load.
type RedisConfig struct {
	// URL is redis://HOST:PORT/DB of one Redis (classic pub/sub).
	URL string
	// Cluster lists seed addresses HOST:PORT of a Redis Cluster (sharded
	// pub/sub, one connection per hash slot in use). Exclusive with URL.
	Cluster []string

	History       int           // events kept per course (default 1000)
	HistoryTTL    time.Duration // history dropped after this long without an event (default 24h)
	MaxEventBytes int           // largest envelope accepted (default 65536)

	// Reconcile is how often the last delivered id of each course with
	// local listeners is compared with its sequence in Redis (a message
	// lost off the end of a burst shows only there), the function library
	// is checked, and stalled work is retried. Default 2s.
	Reconcile time.Duration
	// SubscribeTimeout bounds how long Subscribe waits for Redis to
	// confirm a course's subscription. Default 5s.
	SubscribeTimeout time.Duration
	// ChannelSize and ChannelSendTimeout configure go-redis' Go channel
	// between the pub/sub socket and the receive loop: a message that
	// waits longer than the timeout for room is dropped by go-redis (the
	// gap is then read back from the history). Defaults 1024 and 1s.
	ChannelSize        int
	ChannelSendTimeout time.Duration

	Logger  *slog.Logger
	Metrics Metrics // nil: NopMetrics
}

// Redis is the broker of a service running on Redis: events are numbered,
// stored and announced by the coursestream function library (redis.lua),
// so any number of instances, and backends calling FCALL directly, act as
// one service. It is safe for concurrent use.
//
// Live events come over one pub/sub connection per instance (one per hash
// slot in use on a Redis Cluster), subscribed to the channels of the
// courses that have local listeners, and are fanned out by an in-process
// Observer. The broker remembers the last id delivered per course and
// reads what pub/sub lost (a gap in ids, a reconnect, a full Go channel, a
// dropped last message seen by the periodic reconcile) from the history
// stream before going on; when the history cannot fill the gap, listeners
// get an Event with Reset set.
//
// NewRedis starts nothing. Run starts and owns every goroutine (receive
// loops, subscription control, gap fills, reconcile) and returns once they
// have all exited; Subscribe works only while Run runs. Close releases the
// client after Run has returned.
type Redis struct {
	cfg      RedisConfig
	log      *slog.Logger
	met      Metrics
	lib      libraryConfig
	source   string // the library with the limits written in
	rdb      redis.UniversalClient
	cluster  *redis.ClusterClient // nil on one Redis
	obs      *Observer
	instance string // names this instance's probe channels
	reads    singleflight.Group

	running  atomic.Bool
	stopped  chan struct{} // closed when Run stops: Subscribe gives up
	kick     chan struct{} // cap 1: the subscription control has work
	closeOne sync.Once

	// mu guards courses, subs and the fields of rcourse and psub marked
	// "under Redis.mu". Lock order: Redis.mu, then rcourse.mu (under which
	// listeners are called), then fillMu or noteMu.
	mu      sync.Mutex
	courses map[string]*rcourse
	subs    map[int]*psub // by hash slot; singleSlot on one Redis

	fillMu   sync.Mutex
	fillQ    []*rcourse
	fillKick chan struct{} // cap 1

	noteMu sync.Mutex
	noted  map[string]bool // malformed kinds and library mismatches already logged
}

var (
	_ Broker    = (*Redis)(nil)
	_ Readiness = (*Redis)(nil)
)

// NewRedis returns a Redis broker for cfg. It checks the configuration and
// builds the client but connects to nothing and starts no goroutine.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.HistoryTTL <= 0 {
		cfg.HistoryTTL = DefaultHistoryTTL
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = DefaultMaxEventBytes
	}
	if cfg.Reconcile <= 0 {
		cfg.Reconcile = DefaultReconcile
	}
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = DefaultSubscribeTimeout
	}
	if cfg.ChannelSize <= 0 {
		cfg.ChannelSize = DefaultChannelSize
	}
	if cfg.ChannelSendTimeout <= 0 {
		cfg.ChannelSendTimeout = DefaultChannelSendTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	r := &Redis{
		cfg: cfg, log: cfg.Logger, met: cfg.Metrics,
		lib:      libraryConfig{History: cfg.History, HistoryTTL: cfg.HistoryTTL, MaxEventBytes: cfg.MaxEventBytes, Sharded: len(cfg.Cluster) > 0},
		obs:      NewObserver(cfg.Logger),
		stopped:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		fillKick: make(chan struct{}, 1),
		courses:  make(map[string]*rcourse),
		subs:     make(map[int]*psub),
		noted:    make(map[string]bool),
	}
	r.source = renderLibrary(r.lib)
	var id [8]byte
	_, _ = rand.Read(id[:])
	r.instance = hex.EncodeToString(id[:])

	switch {
	case cfg.URL != "" && len(cfg.Cluster) > 0:
		return nil, errors.New("redis: give a URL or cluster addresses, not both")
	case len(cfg.Cluster) > 0:
		r.cluster = newClusterClient(cfg.Cluster)
		r.rdb = r.cluster
	case cfg.URL != "":
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url %q: %w", cfg.URL, err)
		}
		r.rdb = newSingleClient(opt)
	default:
		return nil, errors.New("redis: a URL or cluster addresses are required")
	}
	return r, nil
}

// Observer returns the observer that fans events out to local listeners.
func (r *Redis) Observer() *Observer { return r.obs }

// Close closes the client. Call it after Run has returned.
func (r *Redis) Close() error {
	var err error
	r.closeOne.Do(func() { err = r.rdb.Close() })
	return err
}

// Run loads the function library, then runs the subscription control, the
// receive loops, the gap fills and the reconcile until ctx ends. Redis
// being unreachable is not an error: Run keeps trying (Ready says so
// meanwhile). It returns nil once every goroutine it started has exited.
func (r *Redis) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("observer: Redis.Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := r.loadLibrary(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("redis: loading the function library failed; retrying", slog.Any("err", err))
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.control(ctx, &wg) })
	for range fillWorkers {
		wg.Go(func() { r.fillWorker(ctx) })
	}
	wg.Go(func() { r.reconcileLoop(ctx) })
	<-ctx.Done()
	r.running.Store(false)
	close(r.stopped)
	wg.Wait()
	return nil
}

// Publish implements Broker: it validates m as the embedded broker does,
// then calls the library (the same code path as FCALL coursestream_publish),
// which numbers, stores and announces the event.
func (r *Redis) Publish(ctx context.Context, m Message) (*Event, error) {
	began := time.Now()
	data, err := m.Normalize()
	if err != nil {
		return nil, err
	}
	v, err := r.fcall(ctx, false, fnPublishEvent, []string{m.CourseID}, fcallArgs(m, data)...)
	if err != nil {
		return nil, mapError(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return nil, fmt.Errorf("%w: unexpected reply %T from %s", ErrUnavailable, v, fnPublishEvent)
	}
	id, _ := replyUint(arr[0])
	env, _ := arr[1].(string)
	ev, err := storedEvent(m, data, id, env)
	if err != nil {
		return nil, fmt.Errorf("redis: the stored envelope: %w", err)
	}
	r.met.Published(time.Since(began))
	return ev, nil
}

// storedEvent is the event the library stored for m: its envelope as
// stored, fields from m. Only the timestamp (the Redis clock's) is read
// from the envelope; anything unexpected is parsed in full.
func storedEvent(m Message, data []byte, id uint64, env string) (*Event, error) {
	const dataKey, tsKey = `,"data":`, `,"timestamp":`
	js := []byte(env)
	d := bytes.Index(js, []byte(dataKey))
	t := bytes.LastIndex(js, []byte(tsKey))
	if d > 0 && t > d && js[len(js)-1] == '}' && bytes.HasPrefix(js[d+len(dataKey):], data) {
		if ts, err := strconv.ParseInt(env[t+len(tsKey):len(env)-1], 10, 64); err == nil {
			ev := &Event{ID: id, CourseID: m.CourseID, Type: m.Type, OperationID: m.OperationID, Timestamp: ts,
				JSON: js[:len(js):len(js)]}
			ev.Data = ev.JSON[d+len(dataKey):][:len(data)]
			return ev, nil
		}
	}
	return ParseEnvelope(js)
}

// History implements Broker. The course's sequence and the page are read
// together by one read-only function call, so Page.LastID (the poll ETag)
// always matches the events returned.
//
// Identical reads in flight at the same time (a reconnect storm: thousands
// of clients of one course resuming from the same id) share one Redis call;
// the page they get is shared, and must not be modified.
func (r *Redis) History(ctx context.Context, courseID string, after uint64, limit int) (Page, error) {
	if !ValidCourseID(courseID) {
		return Page{}, fmt.Errorf("%w: %q", ErrInvalidCourseID, truncate(courseID))
	}
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	// The key holds the last id this instance has announced for the course:
	// a caller that saw an event announced never joins a read that started
	// before it, and so always gets that event back.
	key := courseID + "\x00" + strconv.FormatUint(after, 10) + "\x00" + strconv.Itoa(limit) +
		"\x00" + strconv.FormatUint(r.announced(courseID), 10)
	ch := r.reads.DoChan(key, func() (any, error) {
		// Not the first caller's context: the others share the result.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyTimeout)
		defer cancel()
		return r.history(rctx, courseID, after, limit)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return Page{}, res.Err
		}
		return res.Val.(Page), nil
	case <-ctx.Done():
		return Page{}, ctx.Err()
	}
}

// announced returns the id of the last event this instance delivered to
// the course's listeners (0 when it has none).
func (r *Redis) announced(courseID string) uint64 {
	r.mu.Lock()
	c := r.courses[courseID]
	r.mu.Unlock()
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// historyTimeout bounds one shared history read.
const historyTimeout = 10 * time.Second

func (r *Redis) history(ctx context.Context, courseID string, after uint64, limit int) (Page, error) {
	v, err := r.fcall(ctx, true, fnHistory, []string{courseID}, strconv.FormatUint(after, 10), limit)
	if err != nil {
		return Page{}, mapError(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 || len(arr)%2 != 1 {
		return Page{}, fmt.Errorf("%w: unexpected reply from %s", ErrUnavailable, fnHistory)
	}
	seq, ok := replyUint(arr[0])
	if !ok {
		return Page{}, fmt.Errorf("%w: unexpected sequence %v from %s", ErrUnavailable, arr[0], fnHistory)
	}
	p := Page{LastID: seq}
	switch {
	case after > seq:
		p.Reset = true
		return p, nil
	case after == seq:
		return p, nil
	}
	if len(arr) == 1 { // nothing retained after `after`, yet the course went on
		p.Reset = true
		return p, nil
	}
	// The page must continue `after` one id at a time: an id missing
	// (trimmed, lost with Redis' data, or an entry that is not ours) ends
	// the page there, and a page that cannot start is a reset: never a
	// silent gap.
	p.Events = make([]*Event, 0, len(arr)/2)
	prev := after
	for i := 1; i+1 < len(arr); i += 2 {
		sid, _ := arr[i].(string)
		env, _ := arr[i+1].(string)
		id, err := ParseID(strings.TrimSuffix(sid, "-0"))
		var ev *Event
		if err == nil && id == prev+1 {
			var perr error
			ev, perr = ParseEnvelope([]byte(env))
			switch {
			case perr != nil:
				r.malformed("history", HistoryKey(courseID), env, perr)
				ev = nil
			case ev.ID != id || ev.CourseID != courseID:
				r.malformed("history", HistoryKey(courseID), env, errors.New("the envelope does not match its stream entry"))
				ev = nil
			}
		}
		if ev == nil {
			if len(p.Events) == 0 {
				p.Reset, p.Events = true, nil
			}
			return p, nil
		}
		p.Events = append(p.Events, ev)
		prev = id
	}
	return p, nil
}

// LastID implements Broker.
func (r *Redis) LastID(ctx context.Context, courseID string) (uint64, error) {
	if !ValidCourseID(courseID) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidCourseID, truncate(courseID))
	}
	s, err := r.rdb.Get(ctx, SeqKey(courseID)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, mapError(err)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s holds %q", ErrUnavailable, SeqKey(courseID), truncate(s))
	}
	return n, nil
}

// Subscribe implements Broker. For the first local listener of a course it
// returns once Redis has confirmed the channel's subscription and the
// broker knows where the course stands; a History call made after that
// misses nothing the listener will not see.
func (r *Redis) Subscribe(ctx context.Context, courseID string, l Listener) (func(), error) {
	if !ValidCourseID(courseID) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidCourseID, truncate(courseID))
	}
	select {
	case <-r.stopped:
		return nil, fmt.Errorf("%w: the Redis broker is stopped", ErrUnavailable)
	default:
	}
	r.mu.Lock()
	c := r.courses[courseID]
	if c == nil {
		c = newCourse(courseID)
		r.courses[courseID] = c
	}
	c.refs++
	r.mu.Unlock()
	r.wake()

	unlisten := r.obs.Subscribe(courseID, l)
	var once sync.Once
	release := func() {
		once.Do(func() {
			unlisten()
			r.mu.Lock()
			c.refs--
			last := c.refs == 0
			r.mu.Unlock()
			if last {
				r.wake()
			}
		})
	}

	select {
	case <-c.ready:
		return release, nil
	default:
	}
	// Not subscribed yet: when Redis does not even answer, say so now
	// rather than after SubscribeTimeout.
	pctx, cancel := context.WithTimeout(ctx, min(r.cfg.SubscribeTimeout, time.Second))
	err := r.rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		release()
		return nil, fmt.Errorf("%w: subscribing to %s: %w", ErrUnavailable, courseID, err)
	}
	t := time.NewTimer(r.cfg.SubscribeTimeout)
	defer t.Stop()
	select {
	case <-c.ready:
		return release, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("%w: subscribing to %s: %w", ErrUnavailable, courseID, context.Cause(ctx))
	case <-t.C:
		release()
		return nil, fmt.Errorf("%w: Redis did not confirm the subscription of %s within %s", ErrUnavailable, courseID, r.cfg.SubscribeTimeout)
	case <-r.stopped:
		release()
		return nil, fmt.Errorf("%w: the Redis broker is stopped", ErrUnavailable)
	}
}

// Ready implements Readiness: nil when Redis answers, has the function
// library (on every master of a Cluster) and this instance's pub/sub
// connections are subscribed (a probe published on each reaches it).
func (r *Redis) Ready(ctx context.Context) error {
	if !r.running.Load() {
		return fmt.Errorf("%w: the Redis broker is not running", ErrUnavailable)
	}
	if err := r.checkLibrary(ctx, false); err != nil {
		return err
	}
	r.mu.Lock()
	probes := make([]string, 0, len(r.subs))
	for _, p := range r.subs {
		probes = append(probes, p.probe)
	}
	r.mu.Unlock()
	if len(probes) == 0 && r.cluster == nil {
		return fmt.Errorf("%w: the pub/sub connection is not open yet", ErrUnavailable)
	}
	n, err := r.probe(ctx, probes)
	if err != nil {
		return mapError(err)
	}
	for i, got := range n {
		if got < 1 {
			return fmt.Errorf("%w: the pub/sub connection is not subscribed (%s)", ErrUnavailable, probes[i])
		}
	}
	return nil
}

// probe publishes an empty message on each probe channel and returns how
// many subscribers each reached.
func (r *Redis) probe(ctx context.Context, channels []string) ([]int64, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(channels))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ch := range channels {
			if r.cluster != nil {
				cmds[i] = p.SPublish(ctx, ch, "")
			} else {
				cmds[i] = p.Publish(ctx, ch, "")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// fcall calls a library function; when Redis no longer has the library
// (it restarted or was flushed) it loads it again and retries once.
func (r *Redis) fcall(ctx context.Context, readOnly bool, fn string, keys []string, args ...any) (any, error) {
	for attempt := 0; ; attempt++ {
		var v any
		var err error
		if readOnly {
			v, err = r.rdb.FCallRO(ctx, fn, keys, args...).Result()
		} else {
			v, err = r.rdb.FCall(ctx, fn, keys, args...).Result()
		}
		if attempt == 0 && isFunctionMissing(err) {
			r.log.Info("redis: the function library is missing; loading it again")
			r.raiseSequences(ctx) // before anyone can publish again
			if lerr := r.loadLibrary(ctx); lerr != nil {
				return nil, lerr
			}
			continue
		}
		return v, err
	}
}

// lossMargin is how far above the highest id an instance delivered a
// course's sequence continues after Redis lost its data: events published
// but not yet delivered when the data was lost stay below it.
const lossMargin = 1000

// raiseScript sets a course's sequence to ARGV[2] when it is below ARGV[1]
// (missing counts as 0): the data behind the ids this instance delivered
// is gone. It is a plain script, not part of the library: it runs when the
// library itself is missing.
var raiseScript = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if v < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0`)

// raiseSequence makes the course's sequence continue above high after a
// data loss, and returns the new floor.
func (r *Redis) raiseSequence(ctx context.Context, courseID string, high uint64) (uint64, error) {
	floor := high + lossMargin
	raised, err := raiseScript.Run(ctx, r.rdb, []string{SeqKey(courseID)}, high, floor).Int()
	if err != nil {
		return 0, mapError(err)
	}
	if raised == 1 {
		r.log.Warn("redis: the course's sequence was behind the ids delivered (Redis lost its data); it continues above them",
			slog.String("course", courseID), slog.Uint64("delivered", high), slog.Uint64("from", floor))
	}
	return floor, nil
}

// courseList returns the courses this instance follows, to go through
// without holding r.mu.
func (r *Redis) courseList() []*rcourse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Values(r.courses))
}

// raiseSequences raises the sequence of every course with local listeners
// that Redis lost (see raiseSequence). It runs before the library is loaded
// again, so that no publish can reuse an id a client already has.
func (r *Redis) raiseSequences(ctx context.Context) {
	for _, c := range r.courseList() {
		c.mu.Lock()
		high := c.high
		c.mu.Unlock()
		if high > 0 {
			_, _ = r.raiseSequence(ctx, c.id, high)
		}
	}
}

// loadLibrary loads the library with FUNCTION LOAD REPLACE (on every
// master of a Cluster: a function only touches the keys of its own node).
func (r *Redis) loadLibrary(ctx context.Context) error {
	load := func(ctx context.Context, c *redis.Client) error {
		if err := c.FunctionLoadReplace(ctx, r.source).Err(); err != nil {
			return fmt.Errorf("FUNCTION LOAD REPLACE on %s: %w", c.Options().Addr, err)
		}
		return nil
	}
	if r.cluster != nil {
		return r.cluster.ForEachMaster(ctx, load)
	}
	return load(ctx, r.rdb.(*redis.Client))
}

// checkLibrary asks every node for the library's configuration. A missing
// library is loaded again when repair is set, else reported; a library
// loaded by an instance with other limits is logged once.
func (r *Redis) checkLibrary(ctx context.Context, repair bool) error {
	check := func(ctx context.Context, c *redis.Client) error {
		got, err := c.FCallRO(ctx, fnConfig, nil).Text()
		switch {
		case isFunctionMissing(err) && repair:
			r.log.Info("redis: the function library is missing; loading it again", slog.String("node", c.Options().Addr))
			r.raiseSequences(ctx) // before anyone can publish again
			if err := c.FunctionLoadReplace(ctx, r.source).Err(); err != nil {
				return mapError(err)
			}
			return nil
		case isFunctionMissing(err):
			return fmt.Errorf("%w: the %s function library is not loaded on %s", ErrUnavailable, LibraryName, c.Options().Addr)
		case err != nil:
			return mapError(err)
		case got != r.lib.fingerprint():
			if r.noteOnce("library:" + got) {
				r.log.Warn("redis: the function library was loaded by an instance with other limits; instances sharing a Redis must use the same --history, --history-ttl and --max-event-bytes",
					slog.String("node", c.Options().Addr), slog.String("loaded", got), slog.String("ours", r.lib.fingerprint()))
			}
		}
		return nil
	}
	if r.cluster != nil {
		return r.cluster.ForEachMaster(ctx, check)
	}
	return check(ctx, r.rdb.(*redis.Client))
}

// noteOnce reports whether key is seen for the first time.
func (r *Redis) noteOnce(key string) bool {
	r.noteMu.Lock()
	defer r.noteMu.Unlock()
	if r.noted[key] {
		return false
	}
	r.noted[key] = true
	return true
}

// malformed counts and drops garbage; each kind is logged once.
func (r *Redis) malformed(kind, where, sample string, err error) {
	if r.noteOnce("malformed:" + kind) {
		r.log.Warn("redis: dropping a malformed message (logged once per kind, counted in metrics)",
			slog.String("kind", kind), slog.String("where", where), slog.String("sample", truncate(sample)), slog.Any("err", err))
	}
	r.met.Malformed(kind)
}

func replyUint(v any) (uint64, bool) {
	switch n := v.(type) {
	case int64:
		return uint64(n), n >= 0
	case string:
		u, err := strconv.ParseUint(n, 10, 64)
		return u, err == nil
	}
	return 0, false
}

// wake tells the subscription control to look at the courses again.
func (r *Redis) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}
