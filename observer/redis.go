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
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"coursestream/internal/workq"
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
	// Sentinel names a master watched by Redis Sentinels (classic
	// pub/sub; the broker follows failovers). Exclusive with URL and
	// Cluster.
	Sentinel SentinelConfig

	// WaitReplicas, when above 0, makes Publish return only once that many
	// replicas have the event (Redis WAIT on the connection of the FCALL),
	// and fail with ErrNotReplicated when they do not within WaitTimeout
	// (default 1s).
	WaitReplicas int
	WaitTimeout  time.Duration

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
	single   *redis.Client        // nil on a Cluster
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
	// listeners are called), then the fill queue's lock or noteMu.
	mu      sync.Mutex
	courses map[string]*rcourse
	subs    map[int]*psub // by hash slot; singleSlot on one Redis

	fills *workq.Queue[*rcourse] // courses with a gap to fill (see rcourse.startFill)

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
	orDefault(&cfg.History, DefaultHistory)
	orDefault(&cfg.HistoryTTL, DefaultHistoryTTL)
	orDefault(&cfg.MaxEventBytes, DefaultMaxEventBytes)
	orDefault(&cfg.Reconcile, DefaultReconcile)
	orDefault(&cfg.SubscribeTimeout, DefaultSubscribeTimeout)
	orDefault(&cfg.ChannelSize, DefaultChannelSize)
	orDefault(&cfg.ChannelSendTimeout, DefaultChannelSendTimeout)
	orDefault(&cfg.WaitTimeout, DefaultWaitTimeout)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	r := &Redis{
		cfg: cfg, log: cfg.Logger, met: cfg.Metrics,
		lib:     libraryConfig{History: cfg.History, HistoryTTL: cfg.HistoryTTL, MaxEventBytes: cfg.MaxEventBytes, Sharded: len(cfg.Cluster) > 0},
		obs:     NewObserver(cfg.Logger),
		stopped: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		fills:   workq.New[*rcourse](fillWorkers),
		courses: make(map[string]*rcourse),
		subs:    make(map[int]*psub),
		noted:   make(map[string]bool),
	}
	r.source = renderLibrary(r.lib)
	var id [8]byte
	_, _ = rand.Read(id[:])
	r.instance = hex.EncodeToString(id[:])

	switch {
	case cfg.URL != "" && len(cfg.Cluster) > 0:
		return nil, errors.New("redis: give a URL or cluster addresses, not both")
	case cfg.Sentinel.enabled() && (cfg.URL != "" || len(cfg.Cluster) > 0):
		return nil, errors.New("redis: give sentinels, a URL or cluster addresses, only one of them")
	case cfg.Sentinel.enabled():
		if err := cfg.Sentinel.check(); err != nil {
			return nil, err
		}
		r.single = newFailoverClient(cfg.Sentinel)
		r.rdb = r.single
	case len(cfg.Cluster) > 0:
		r.cluster = newClusterClient(cfg.Cluster)
		r.rdb = r.cluster
	case cfg.URL != "":
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url %q: %w", cfg.URL, err)
		}
		r.single = newSingleClient(opt)
		r.rdb = r.single
	default:
		return nil, errors.New("redis: a URL, cluster addresses or sentinels are required")
	}
	return r, nil
}

// orDefault sets a knob left zero (or negative) to its default.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
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
	for range r.fills.Workers() {
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
	v, err := r.publishCall(ctx, m.CourseID, fcallArgs(m, data))
	if errors.Is(err, ErrNotReplicated) {
		return nil, err
	}
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

// LastID implements Broker.
func (r *Redis) LastID(ctx context.Context, courseID string) (uint64, error) {
	if !ValidCourseID(courseID) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidCourseID, truncate(courseID))
	}
	s, err := r.rdb.Get(ctx, SeqKey(courseID)).Result()
	return parseSeq(courseID, s, err)
}

// LastIDs implements Broker: one pipeline of GETs, one round trip (per
// node in a cluster, where go-redis splits the pipeline by slot; MGET
// would refuse keys of several slots).
func (r *Redis) LastIDs(ctx context.Context, courseIDs []string) ([]uint64, error) {
	for _, c := range courseIDs {
		if !ValidCourseID(c) {
			return nil, fmt.Errorf("%w: %q", ErrInvalidCourseID, truncate(c))
		}
	}
	if len(courseIDs) == 1 {
		id, err := r.LastID(ctx, courseIDs[0])
		if err != nil {
			return nil, err
		}
		return []uint64{id}, nil
	}
	gets := make([]*redis.StringCmd, len(courseIDs))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range courseIDs {
			gets[i] = p.Get(ctx, SeqKey(c))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) { // Pipelined returns the first command's error
		return nil, mapError(err)
	}
	ids := make([]uint64, len(courseIDs))
	for i, g := range gets {
		s, err := g.Result()
		if ids[i], err = parseSeq(courseIDs[i], s, err); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// parseSeq reads a course's sequence key as GET returned it: no key is 0.
func parseSeq(courseID, s string, err error) (uint64, error) {
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
	c, release := r.join(courseID, l)
	if err := r.awaitPosition(ctx, c); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// join adds l to the listeners of a course, the course to those the
// subscription control subscribes (for its first listener), and returns
// the function that undoes both, once.
func (r *Redis) join(courseID string, l Listener) (*rcourse, func()) {
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
	return c, func() {
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
}

// awaitPosition waits until Redis has confirmed the course's subscription
// and its position is known, within SubscribeTimeout.
func (r *Redis) awaitPosition(ctx context.Context, c *rcourse) error {
	select {
	case <-c.ready:
		return nil
	default:
	}
	// Not subscribed yet: when Redis does not even answer, say so now
	// rather than after SubscribeTimeout.
	pctx, cancel := context.WithTimeout(ctx, min(r.cfg.SubscribeTimeout, time.Second))
	err := r.rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("%w: subscribing to %s: %w", ErrUnavailable, c.id, err)
	}
	t := time.NewTimer(r.cfg.SubscribeTimeout)
	defer t.Stop()
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: subscribing to %s: %w", ErrUnavailable, c.id, context.Cause(ctx))
	case <-t.C:
		return fmt.Errorf("%w: Redis did not confirm the subscription of %s within %s", ErrUnavailable, c.id, r.cfg.SubscribeTimeout)
	case <-r.stopped:
		return fmt.Errorf("%w: the Redis broker is stopped", ErrUnavailable)
	}
}

// Ready implements Readiness: nil when Redis answers, has the function
// library (on every master of a Cluster) and each of this instance's
// pub/sub connections is seen delivering: a canary published through
// Redis on its probe channel came back over it within the last few
// seconds, or does so now (redis_canary.go).
func (r *Redis) Ready(ctx context.Context) error {
	if !r.running.Load() {
		return fmt.Errorf("%w: the Redis broker is not running", ErrUnavailable)
	}
	if err := r.checkLibrary(ctx, false); err != nil {
		return err
	}
	r.mu.Lock()
	subs := slices.Collect(maps.Values(r.subs))
	r.mu.Unlock()
	if len(subs) == 0 && r.cluster == nil {
		return fmt.Errorf("%w: the pub/sub connection is not open yet", ErrUnavailable)
	}
	return r.proveDelivery(ctx, subs)
}

// courseList returns the courses this instance follows, to go through
// without holding r.mu.
func (r *Redis) courseList() []*rcourse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Collect(maps.Values(r.courses))
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
