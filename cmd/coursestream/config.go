package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"coursestream/internal/auth"
	"coursestream/observer"
	"coursestream/stream"
)

// envPrefix is the prefix of every flag's environment fallback.
const envPrefix = "COURSESTREAM_"

// Config is the serve configuration, filled from flags and COURSESTREAM_*
// environment variables (a flag given on the command line wins).
type Config struct {
	Addr           string
	RedisURL       string
	RedisCluster   string
	RedisSentinel  sentinelFlags // --redis-sentinel, --redis-master, --redis-password
	RedisWait      int           // --redis-wait-replicas
	History        int
	HistoryTTL     time.Duration
	Heartbeat      time.Duration
	Retry          time.Duration
	JWTKey         string
	JWTKeyFile     string
	JWTJWKSURL     string
	JWTIssuer      string
	JWTAudience    string
	CORSOrigins    string
	MaxEventBytes  byteSize
	MaxConnections int
	MaxLongPolls   int
	ClientBuffer   byteSize
	MaxStreamAge   time.Duration
	DrainJitter    time.Duration
	ShutdownGrace  time.Duration
	InsecureOpen   bool
	LogLevel       string
	LogFormat      string
	DebugAddr      string
	TLSCert        string
	TLSKey         string

	tls *tls.Config // loaded by validate from TLSCert and TLSKey; nil: plain HTTP
}

// newServeFlags returns the serve flag set bound to c.
func newServeFlags(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.register(fs)
	return fs
}

func (c *Config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL redis://HOST:PORT/DB; empty runs the embedded broker")
	fs.StringVar(&c.RedisCluster, "redis-cluster", "", "Redis Cluster seed addresses HOST:PORT,HOST:PORT (sharded pub/sub)")
	c.RedisSentinel.register(fs)
	fs.IntVar(&c.RedisWait, "redis-wait-replicas", 0, "answer a publish 201 only once this many replicas have the event (Redis WAIT, 1 s; else 503)")
	fs.IntVar(&c.History, "history", observer.DefaultHistory, "events kept per course for resume and polling")
	fs.DurationVar(&c.HistoryTTL, "history-ttl", observer.DefaultHistoryTTL, "drop a course's history after this long without an event")
	fs.DurationVar(&c.Heartbeat, "heartbeat", stream.DefaultHeartbeat, "send an SSE comment at least this often")
	fs.DurationVar(&c.Retry, "retry", stream.DefaultRetry, "reconnection delay told to SSE clients (retry:)")
	fs.StringVar(&c.JWTKey, "jwt-key", "", "HS256 secret; when set, subscribing, polling and publishing need a token")
	fs.StringVar(&c.JWTKeyFile, "jwt-key-file", "", "file holding the HS256 secret")
	fs.StringVar(&c.JWTJWKSURL, "jwt-jwks-url", "", "JSON Web Key Set URL of an identity provider; when set, tokens signed RS256, ES256 or EdDSA by its keys are accepted (and required)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "when set, a token's iss must equal it")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "when set, a token's aud must contain it")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "comma-separated origins allowed by CORS (* for any)")
	c.MaxEventBytes = observer.DefaultMaxEventBytes
	fs.Var(&c.MaxEventBytes, "max-event-bytes", "largest event envelope accepted, in bytes (64KiB, 1MiB also work)")
	fs.IntVar(&c.MaxConnections, "max-connections", 0, "SSE streams held at once; past it clients get 503 and the poll fallback (0: no limit)")
	fs.IntVar(&c.MaxLongPolls, "max-longpolls", 0, "long-polls held at once; past it they are answered at once (0: no limit)")
	c.ClientBuffer = stream.DefaultClientBuffer
	fs.Var(&c.ClientBuffer, "client-buffer", "bytes of frames that may wait for one SSE client before it is disconnected")
	fs.DurationVar(&c.MaxStreamAge, "max-stream-age", 0, "end SSE streams after 80-100% of this age so clients reconnect (0: never)")
	fs.DurationVar(&c.DrainJitter, "drain-jitter", stream.DefaultDrainJitter, "streams ended on purpose (shutdown, max age) tell clients to retry after --retry plus up to this")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 8*time.Second, "longest wait for requests to finish on SIGTERM/SIGINT")
	fs.BoolVar(&c.InsecureOpen, "insecure-open", false, "allow a non-loopback address without --jwt-key or --jwt-jwks-url (anyone may subscribe and publish)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "loopback address for pprof endpoints (empty: off)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate chain: serve HTTPS (HTTP/2 by ALPN); needs --tls-key")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
}

// validate checks what flag parsing cannot; the error is one line.
func (c *Config) validate() error {
	switch {
	case c.History < 1:
		return fmt.Errorf("--history must be at least 1, got %d", c.History)
	case c.HistoryTTL <= 0:
		return fmt.Errorf("--history-ttl must be positive, got %s", c.HistoryTTL)
	case c.Heartbeat <= 0:
		return fmt.Errorf("--heartbeat must be positive, got %s", c.Heartbeat)
	case c.Retry <= 0:
		return fmt.Errorf("--retry must be positive, got %s", c.Retry)
	case c.MaxEventBytes < 256 || c.MaxEventBytes > 8<<20:
		return fmt.Errorf("--max-event-bytes must be between 256 and 8MiB, got %d", c.MaxEventBytes)
	case c.ClientBuffer < 1024:
		return fmt.Errorf("--client-buffer must be at least 1KiB, got %d", c.ClientBuffer)
	case c.MaxConnections < 0:
		return fmt.Errorf("--max-connections must not be negative, got %d", c.MaxConnections)
	case c.MaxLongPolls < 0:
		return fmt.Errorf("--max-longpolls must not be negative, got %d", c.MaxLongPolls)
	case c.MaxStreamAge < 0:
		return fmt.Errorf("--max-stream-age must not be negative, got %s", c.MaxStreamAge)
	case c.DrainJitter <= 0:
		return fmt.Errorf("--drain-jitter must be positive, got %s", c.DrainJitter)
	case c.ShutdownGrace <= 0:
		return fmt.Errorf("--shutdown-grace must be positive, got %s", c.ShutdownGrace)
	case c.JWTKey != "" && c.JWTKeyFile != "":
		return errors.New("--jwt-key and --jwt-key-file are exclusive: give one")
	case c.RedisURL != "" && c.RedisCluster != "":
		return errors.New("--redis-url and --redis-cluster are exclusive: give one")
	case c.RedisWait < 0:
		return fmt.Errorf("--redis-wait-replicas must not be negative, got %d", c.RedisWait)
	case c.RedisWait > 0 && c.RedisURL == "" && c.RedisCluster == "" && !c.RedisSentinel.given():
		return errors.New("--redis-wait-replicas needs Redis (--redis-url, --redis-cluster or --redis-sentinel)")
	}
	if err := c.RedisSentinel.validate(c.RedisURL, c.RedisCluster); err != nil {
		return err
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, got %q", c.LogFormat)
	}
	if _, ok := hostPort(c.Addr); !ok {
		return fmt.Errorf("--addr %q: want HOST:PORT, the port 0-65535", c.Addr)
	}
	for _, o := range splitList(c.CORSOrigins) {
		if !validOrigin(o) {
			return fmt.Errorf("--cors-origins: %q is not an origin: want scheme://host[:port] (a * in the host for subdomains), or * alone", o)
		}
	}
	if c.DebugAddr != "" {
		host, ok := hostPort(c.DebugAddr)
		if !ok || !isLoopback(host) {
			return fmt.Errorf("--debug-addr %q: want a loopback HOST:PORT", c.DebugAddr)
		}
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return fmt.Errorf("--redis-url %q: want redis://HOST:PORT/DB", c.RedisURL)
		}
	}
	if c.JWTKeyFile != "" {
		b, err := os.ReadFile(c.JWTKeyFile)
		if err != nil {
			return fmt.Errorf("--jwt-key-file: %w", err)
		}
		c.JWTKey = strings.TrimRight(string(b), "\r\n")
		if c.JWTKey == "" {
			return fmt.Errorf("--jwt-key-file %s is empty", c.JWTKeyFile)
		}
	}
	if f := (tlsFiles{cert: c.TLSCert, key: c.TLSKey}); f.enabled() {
		cfg, err := f.load()
		if err != nil {
			return err
		}
		c.tls = cfg
	}
	if c.JWTJWKSURL != "" {
		if err := auth.CheckKeySetURL(c.JWTJWKSURL); err != nil {
			return fmt.Errorf("--jwt-jwks-url %q: want https://HOST/PATH, the identity provider's JSON Web Key Set", c.JWTJWKSURL)
		}
	}
	if c.open() && (c.JWTIssuer != "" || c.JWTAudience != "") {
		return errors.New("--jwt-issuer and --jwt-audience check tokens: give --jwt-key or --jwt-jwks-url too")
	}
	host, _, _ := net.SplitHostPort(c.Addr)
	if c.open() && !c.InsecureOpen && !isLoopback(host) {
		return fmt.Errorf("--addr %s is not loopback and neither --jwt-key nor --jwt-jwks-url is set: anyone could read and publish; set one or pass --insecure-open", c.Addr)
	}
	return nil
}

// open reports whether the service runs without authorization.
func (c *Config) open() bool { return c.JWTKey == "" && c.JWTJWKSURL == "" }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// parseFlags parses args into fs, then fills every flag not given from its
// COURSESTREAM_* variable. flag.ErrHelp is returned for -h/--help.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value %q for %s: %v", v, name, e)
			}
		}
	})
	return err
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// usage prints the flags of fs with their environment variables.
func usage(w io.Writer, head string, fs *flag.FlagSet) {
	fmt.Fprintln(w, head)
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s %s\n    \t%s", f.Name, name, help)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "\n    \tenv %s\n", envName(f.Name))
	})
}

// byteSize is a flag value in bytes that also takes KiB/MiB/KB/MB suffixes.
type byteSize int

func (b *byteSize) String() string { return strconv.Itoa(int(*b)) }

func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > (1<<31)/mult {
		return fmt.Errorf("want a size in bytes such as 65536 or 1MiB")
	}
	*b = byteSize(n * mult)
	return nil
}

// hostPort splits a listen address and checks its port (a number up to
// 65535 or a service name), so that a bad one is a configuration error
// (exit 2) rather than a failure to listen.
func hostPort(addr string) (host string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", false
	}
	return host, true
}

// recommendedKeyBytes is the HS256 secret size RFC 7518 (3.2) asks for: a
// shorter --jwt-key is accepted, with a warning.
const recommendedKeyBytes = 32

// validOrigin accepts what a browser sends as Origin (scheme://host[:port]),
// a * in the host (go-chi/cors matches subdomains with it), or * alone.
func validOrigin(o string) bool {
	if o == "*" {
		return true
	}
	u, err := url.Parse(strings.Replace(o, "*", "x", 1))
	return err == nil && u.Scheme != "" && u.Host != "" && u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}
