package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/cors"
	"golang.org/x/sync/errgroup"

	"coursestream/docs"
	"coursestream/internal/auth"
	"coursestream/internal/httpjson"
	"coursestream/observer"
	"coursestream/poller"
	"coursestream/stream"
	"coursestream/web"
)

// broker is what serve needs of a broker: the interface plus a run loop.
type broker interface {
	observer.Broker
	Run(ctx context.Context) error
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var cfg Config
	fs := newServeFlags(&cfg)
	if err := parseFlags(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, "usage: coursestream [serve] [flags]", fs)
			return err
		}
		return usageError{err}
	}
	if err := cfg.validate(); err != nil {
		return usageError{err}
	}
	log := newLogger(stderr, cfg)
	if cfg.JWTKey != "" && len(cfg.JWTKey) < recommendedKeyBytes {
		log.Warn("the --jwt-key is short: HS256 wants a secret of at least 32 random bytes, a shorter one can be guessed",
			slog.Int("bytes", len(cfg.JWTKey)))
	}
	m := newMetrics()

	b, mode, err := newBroker(cfg, log, m)
	if err != nil {
		return err
	}
	hub := stream.New(b, stream.Config{
		Heartbeat: cfg.Heartbeat, Retry: cfg.Retry, ClientBuffer: int(cfg.ClientBuffer),
		MaxConnections: cfg.MaxConnections, MaxStreamAge: cfg.MaxStreamAge, DrainJitter: cfg.DrainJitter,
		Metrics: m, Logger: log,
	})
	pub := stream.NewPublisher(b, stream.PublishConfig{MaxEventBytes: int(cfg.MaxEventBytes), Logger: log})
	var authz *auth.Authorizer
	var keys *auth.KeySet
	var checks []observer.Readiness
	if !cfg.open() {
		if authz, keys, err = newAuthorizer(cfg, log); err != nil {
			return err
		}
		checks = append(checks, authz) // ready once its key set is fetched
	}

	tcp, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	// The listener also takes back the connections of the long-polls the
	// poller takes over while they wait, so that they stay alive.
	ln := poller.NewListener(tcp)
	poll := poller.New(b, poller.Config{MaxLongPolls: cfg.MaxLongPolls, Handback: ln, Metrics: m, Logger: log})

	var ready atomic.Bool
	handler := routes(routeDeps{log: log, broker: b, hub: hub, pub: pub, poll: poll, ready: &ready,
		metrics: m, auth: authz, checks: checks, cors: splitList(cfg.CORSOrigins)})

	var unused unusedConns
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState:         unused.track, // the *tls.Conn with TLS, as net/http's HTTP/2 server reports it too
		TLSConfig:         cfg.tls,
		// An HTTP/2 connection that takes no bytes for 15 s is closed with
		// every stream on it: the bound the HTTP/1.1 path puts on a stalled
		// socket (a stalled stream alone is cut by the hub).
		HTTP2: &http.HTTP2Config{WriteByteTimeout: stream.DefaultWriteTimeout},
	}

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { return b.Run(gctx) })
	if keys != nil {
		g.Go(func() error { return keys.Run(gctx) }) // fetches and refreshes the key set until the end
	}
	// The hub's workers write the streams' final frames at shutdown: they
	// stop after the streams, not with the first background task to fail.
	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(hubCtx) }()
	if cfg.DebugAddr != "" {
		g.Go(func() error { return serveDebug(gctx, cfg.DebugAddr, log) })
	}
	served := make(chan error, 1)
	go func() {
		if cfg.tls != nil {
			served <- srv.ServeTLS(ln, "", "") // the key pair is in TLSConfig; ServeTLS offers h2 by ALPN
			return
		}
		served <- srv.Serve(ln)
	}()

	ready.Store(true)
	log.Info("coursestream listening", slog.String("addr", ln.Addr().String()), slog.String("broker", mode),
		slog.Bool("tls", cfg.tls != nil), slog.Bool("open", cfg.open()), slog.String("version", version()), slog.String("revision", readBuildInfo().Revision))

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", slog.Duration("grace", cfg.ShutdownGrace))
	case err := <-served:
		runErr = fmt.Errorf("http server: %w", err)
	case <-gctx.Done():
		runErr = fmt.Errorf("background task: %w", g.Wait())
	}

	// Not ready first (load balancers stop sending), then end streams and
	// long-polls (Shutdown does not end them by itself), then wait for the
	// rest within the grace period.
	ready.Store(false)
	stopping := time.Now()
	hub.Drain()
	poll.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	// Shutdown closes the listener first: no connection is new after it.
	closeUnused := time.AfterFunc(unusedGrace, func() {
		if n := unused.closeAll(); n > 0 {
			log.Info("closed connections that sent no request", slog.Int("connections", n))
		}
	})
	err = srv.Shutdown(sctx)
	closeUnused.Stop()
	if err != nil {
		log.Warn("shutdown grace ran out; closing connections", slog.Any("err", err))
		_ = srv.Close()
	}
	hub.Wait(sctx)      // streams taken over from net/http end on their own
	_ = poll.Wait(sctx) // so do the long-polls taken over
	hub.Close()
	stopHub()
	<-hubDone
	stopBG()
	if err := g.Wait(); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	if c, ok := b.(io.Closer); ok { // the Redis broker owns its client
		_ = c.Close()
	}
	if runErr == nil {
		log.Info("stopped", slog.Duration("took", time.Since(stopping)))
	}
	return runErr
}

// newAuthorizer returns the Authorizer of cfg's keys, and its key set
// when --jwt-jwks-url is given (to be run).
func newAuthorizer(cfg Config, log *slog.Logger) (*auth.Authorizer, *auth.KeySet, error) {
	o := auth.Options{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
	if cfg.JWTKey != "" {
		o.Key = []byte(cfg.JWTKey)
	}
	if cfg.JWTJWKSURL != "" {
		if u, err := url.Parse(cfg.JWTJWKSURL); err == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) {
			log.Warn("the --jwt-jwks-url is plain http: whoever can alter that traffic can make tokens the service accepts; use https",
				slog.String("url", cfg.JWTJWKSURL))
		}
		var err error
		if o.KeySet, err = auth.NewKeySet(auth.KeySetConfig{URL: cfg.JWTJWKSURL, Logger: log}); err != nil {
			return nil, nil, usageError{err}
		}
	}
	a, err := auth.NewAuthorizer(o)
	if err != nil {
		return nil, nil, usageError{err}
	}
	return a, o.KeySet, nil
}

func newLogger(w io.Writer, cfg Config) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel) // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newBroker(cfg Config, log *slog.Logger, m observer.Metrics) (broker, string, error) {
	if cfg.RedisURL != "" || cfg.RedisCluster != "" || cfg.RedisSentinel.given() {
		return newRedisBroker(cfg, log, m)
	}
	return observer.NewMemory(observer.MemoryConfig{
		History: cfg.History, HistoryTTL: cfg.HistoryTTL, MaxEventBytes: int(cfg.MaxEventBytes), Logger: log, Metrics: m,
	}), "memory", nil
}

// routeDeps is what the router serves.
type routeDeps struct {
	log     *slog.Logger
	broker  observer.Broker
	hub     *stream.Hub
	pub     *stream.Publisher
	poll    *poller.Poller
	ready   *atomic.Bool
	metrics *metrics
	auth    *auth.Authorizer     // nil: open dev mode
	checks  []observer.Readiness // besides the broker's, what /readyz waits for
	cors    []string             // allowed origins; none: no CORS
}

// routes is the HTTP surface of the contract.
func routes(d routeDeps) http.Handler {
	log, b, ready := d.log, d.broker, d.ready
	r := chi.NewRouter()
	r.Use(requestLog(log), recoverJSON(log))
	if len(d.cors) > 0 {
		r.Use(corsHandler(d.cors))
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "not found: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// A 405 names the methods the path takes (RFC 9110 15.5.6).
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				allow = append(allow, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		httpjson.Error(w, http.StatusMethodNotAllowed, "method "+req.Method+" not allowed on "+req.URL.Path)
	})

	// HEAD is answered wherever GET is, but on the SSE stream (a stream
	// has no head to give); net/http drops the bodies.
	getHead := func(path string, h http.HandlerFunc) {
		r.Get(path, h)
		r.Head(path, h)
	}
	getHead("/healthz", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	getHead("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			httpjson.Error(w, http.StatusServiceUnavailable, "not ready: starting or shutting down")
			return
		}
		checks := d.checks
		if rd, ok := b.(observer.Readiness); ok {
			checks = append([]observer.Readiness{rd}, checks...)
		}
		for _, c := range checks {
			if err := c.Ready(r.Context()); err != nil {
				httpjson.Error(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
				return
			}
		}
		httpjson.Write(w, http.StatusOK, map[string]string{"status": "ready"})
	})

	getHead("/metrics", d.metrics.Handler().ServeHTTP)
	getHead("/openapi.json", docs.Handler().ServeHTTP)

	// A stream ends at its token's expiry with its final frame; a poll or a
	// publish gets the expiry as its deadline.
	subscribe, publish := auth.Middleware(d.auth, auth.Subscribe, nil), auth.Middleware(d.auth, auth.Publish, nil)
	streams := auth.Middleware(d.auth, auth.Subscribe, stream.WithExpiry)
	r.With(streams).Get("/v1/courses/{courseId}/events", d.hub.ServeHTTP)
	r.With(auth.CoursesMiddleware(d.auth, auth.Subscribe, stream.WithExpiry)).Get("/v1/events", d.hub.ServeCourses)
	r.With(publish).Post("/v1/courses/{courseId}/events", d.pub.ServeHTTP)
	r.With(subscribe).Get("/v1/courses/{courseId}/poll", d.poll.ServeHTTP)
	r.With(subscribe).Head("/v1/courses/{courseId}/poll", d.poll.ServeHTTP)
	polls := auth.CoursesMiddleware(d.auth, auth.Subscribe, nil)
	r.With(polls).Get("/v1/poll", d.poll.ServeCourses)
	r.With(polls).Head("/v1/poll", d.poll.ServeCourses)

	files := web.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "not found: "+r.URL.Path)
	}))
	getHead("/", files.ServeHTTP)
	// One route per file, so that a path that names none is a 404 for
	// every method (a /{file} pattern made POST /nope a 405).
	for _, name := range web.Names() {
		if name != "index.html" {
			getHead("/"+name, files.ServeHTTP)
		}
	}
	return r
}

// corsHandler allows the given origins ("*" for any) to read the API from
// a browser, with the request headers the contract names, and exposes
// ETag and Retry-After. Credentials (the token cookie) are allowed only
// for origins named explicitly.
func corsHandler(origins []string) func(http.Handler) http.Handler {
	c := cors.Handler(cors.Options{
		AllowedOrigins:   origins,
		AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodOptions},
		AllowedHeaders:   []string{"Authorization", "If-None-Match", "Last-Event-ID", "Content-Type", "Cache-Control"},
		ExposedHeaders:   []string{"ETag", "Retry-After"},
		AllowCredentials: !slices.Contains(origins, "*"),
		MaxAge:           600,
		// cors hands the preflight on once its headers are set, so that
		// they are respelled below; it is answered there.
		OptionsPassthrough: true,
	})
	return func(next http.Handler) http.Handler {
		return c(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			respellCORS(w.Header())
			if _, origin := r.Header["Origin"]; origin && r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				w.WriteHeader(http.StatusOK) // a preflight (as cors tells one): answered
				return
			}
			next.ServeHTTP(w, r)
		}))
	}
}

// corsSpelling: go-chi/cors canonicalizes header names the Go way (Etag,
// Last-Event-Id); the lists it answers with spell them as the contract and
// the HTTP specs do. Header names are case-insensitive, but people grep.
var corsSpelling = strings.NewReplacer("Etag", "ETag", "Last-Event-Id", "Last-Event-ID")

func respellCORS(h http.Header) {
	for _, k := range []string{"Access-Control-Expose-Headers", "Access-Control-Allow-Headers"} {
		if v := h.Get(k); v != "" {
			h.Set(k, corsSpelling.Replace(v))
		}
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// serveDebug serves pprof on a loopback address until ctx ends.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	log.Info("pprof listening", slog.String("addr", ln.Addr().String()))
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	return nil
}

// requestLog logs each request at debug level (5xx at warn), after it ends.
// Its frame stays on an SSE stream's stack for the stream's life, so the
// logging itself is in a separate function.
func requestLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor) // keeps Flush and Unwrap
			next.ServeHTTP(ww, r)
			logRequest(log, r, ww, start)
		})
	}
}

//go:noinline
func logRequest(log *slog.Logger, r *http.Request, ww middleware.WrapResponseWriter, start time.Time) {
	level, status := slog.LevelDebug, ww.Status()
	if status == 0 {
		status = http.StatusOK // no WriteHeader: 200, or an SSE stream taken over from net/http
	}
	if status >= 500 {
		level = slog.LevelWarn
	}
	if log.Enabled(r.Context(), level) {
		log.LogAttrs(context.Background(), level, "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Int("bytes", ww.BytesWritten()),
			slog.Duration("took", time.Since(start)), slog.String("remote", r.RemoteAddr))
	}
}

// recoverJSON turns a handler panic into a logged 500 with a JSON body.
func recoverJSON(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.Error("handler panicked", slog.String("path", r.URL.Path), slog.Any("panic", p))
					httpjson.Error(w, http.StatusInternalServerError, "internal error")
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}
