// Command csload measures a running coursestream: it opens N SSE clients
// (or N pollers) over C courses at a paced rate, publishes M events at rate
// R over HTTP (or Redis FCALL) with the send time in the data, checks every
// client's ids (no loss, no duplicate, in order) and reports connections,
// loss, latency percentiles, and, given the server's pid, its RSS per
// connection and CPU per delivery.
//
//	csload sse   [flags]   SSE subscribers + publisher (the default)
//	csload poll  [flags]   ETag pollers + publisher
//	csload soak  [flags]   clients come and go on fresh courses; server RSS sampled
//	csload floor [flags]   a bare net/http server (304 and idle SSE) to compare with
//	csload plot  [--out f.svg] a.json b.json...   an SVG of sse --json reports against subscribers
//	csload idle  [flags]   idle SSE streams over --proto h1, h1tls or h2; server RSS per connection
//	csload sweep [flags]   the same load at several --points, on fresh servers, against references; medians, ratios, SVG
//	csload scale [flags]   K instances on one Redis, one csload sse child each; CPU per delivery, fan-out completion
//
// It targets loopback only unless --allow-remote, and every run ends by
// itself (--timeout).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "csload:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "csload:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

// config is the run configuration.
type config struct {
	Server      string
	Clients     int
	Courses     int
	PerStream   int // courses per SSE stream: above 1, GET /v1/events?courses=
	Ramp        int // connections per second
	Events      int
	Rate        float64 // events per second, all courses together
	Payload     int     // bytes of padding in each event
	Publish     string  // http or fcall
	RedisURL    string
	Token       string
	PID         int
	Timeout     time.Duration
	Settle      time.Duration // wait after connecting before publishing
	Drain       time.Duration // wait for the last deliveries after publishing
	PollEvery   time.Duration
	Concurrency int // publisher goroutines
	AllowRemote bool
	CoursePfx   string
	JSON        bool
	Addr        string // floor: listen address
	Duration    time.Duration
	Cycle       time.Duration
	Reconnect   bool
	Pipeline    int
	Proto       string // idle: h1, h1tls or h2
	scaleConfig        // scale, and sse --subscribe-only (scale.go)
	// Fan-out floor and plots.
	FloorSSE    string // floor: fanout or held
	Label       string // sse: the report's label (plot series)
	Target      string // sse: the server's kind, coursestream or centrifugo (centrifugo.go)
	sweepConfig        // sweep (sweep.go)
	// Poll mode.
	Polls       int           // polls per poller (0: until the run ends)
	Wait        time.Duration // long-poll: ?wait= of every poll
	PerPoll     int           // courses per poll: above 1, GET /v1/poll?courses=
	DurationSet bool          // --duration was given (poll: how long to poll)
}

const modesUsage = `usage: csload [mode] [flags]   (127.0.0.1 only unless --allow-remote)
modes:
  sse    (default) --clients SSE streams over --courses; publish --events at --rate; report lost, duplicates, latency
  poll   --clients pollers with ETags every --poll-every; publish; report lost, duplicates, requests/s
  soak   connect-publish-leave cycles for --duration; report the server's RSS per cycle (--pid)
  floor  serve bare net/http 304s and idle SSE on --addr: the floor to compare the server with
         (--floor-sse fanout: hijacked sockets, one write per delivery, publishable; held: idle only)
  plot   csload plot [--out plot.svg] a.json b.json ...: sse --json reports, per subscribers, as SVG
  idle   --clients idle SSE streams, one connection each, over --proto h1|h1tls|h2; the server's RSS per connection (--pid)
  sweep  --targets coursestream,floor,centrifugo at --points (--clients values), --runs each, fresh servers (--cs, --centrifugo); medians, ratio to the reference, --svg
  scale  --instances of --cs on one --redis-url, --clients each (one csload sse --subscribe-only child per instance); FCALL --events one at a time or at --rate
flags:
`

func run(ctx context.Context, args []string, out io.Writer) error {
	mode := "sse"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		mode, args = args[0], args[1:]
	}
	if mode == "plot" {
		return runPlot(args, out)
	}
	switch mode {
	case "sse", "poll", "soak", "floor", "idle", "scale", "sweep":
	default:
		return usageError{fmt.Errorf("unknown mode %q: want sse, poll, soak, floor, idle, scale or sweep", mode)}
	}
	var c config
	fs := flag.NewFlagSet("csload "+mode, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), modesUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Server, "server", "http://127.0.0.1:8080", "coursestream base URL; several comma-separated for --reconnect")
	fs.BoolVar(&c.Reconnect, "reconnect", false, "clients come back with Last-Event-ID when their stream ends (to the next --server)")
	fs.IntVar(&c.Clients, "clients", 1000, "SSE clients (sse) or pollers (poll)")
	fs.IntVar(&c.Courses, "courses", 1, "courses the clients spread over")
	fs.IntVar(&c.PerStream, "courses-per-stream", 1, "sse: courses per stream (above 1, one multi-course stream /v1/events?courses= per client)")
	fs.IntVar(&c.Ramp, "ramp", 2000, "new connections per second")
	fs.IntVar(&c.Events, "events", 100, "events to publish")
	fs.Float64Var(&c.Rate, "rate", 100, "events per second (all courses)")
	fs.IntVar(&c.Payload, "payload", 64, "padding bytes per event")
	fs.StringVar(&c.Publish, "publish", "http", "http or fcall")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis for --publish fcall")
	fs.StringVar(&c.Token, "token", "", "token for subscribing and publishing (servers with --jwt-key)")
	fs.IntVar(&c.PID, "pid", 0, "server pid: report its RSS per connection and CPU per delivery")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "the whole run ends after this")
	fs.DurationVar(&c.Settle, "settle", 2*time.Second, "pause between connecting and publishing")
	fs.DurationVar(&c.Drain, "drain", 10*time.Second, "longest wait for deliveries after the last publish")
	fs.DurationVar(&c.PollEvery, "poll-every", time.Second, "poll mode: interval between polls of one poller")
	fs.IntVar(&c.Concurrency, "publishers", 4, "publisher goroutines")
	fs.IntVar(&c.Pipeline, "pipeline", 1, "--publish fcall: FCALLs sent per round trip (a backend publishing in batches)")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow a non-loopback server")
	fs.StringVar(&c.CoursePfx, "course-prefix", "", "course id prefix (default: a fresh one per run)")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8090", "floor: listen address")
	fs.DurationVar(&c.Duration, "duration", 10*time.Minute, "soak: how long to run")
	fs.DurationVar(&c.Cycle, "cycle", 2*time.Second, "soak: one connect-publish-leave cycle")
	fs.StringVar(&c.Proto, "proto", "h2", "idle (default h2) and sse (default h1): h1 (http://), h1tls or h2 (https://)")
	scaleFlags(fs, &c.scaleConfig)
	fs.StringVar(&c.FloorSSE, "floor-sse", "fanout", "floor: the events path, fanout (publishable, hijacked sockets) or held (a handler holding an idle response)")
	fs.StringVar(&c.Target, "target", "coursestream", "sse: the server's kind: coursestream, or centrifugo (v6 uni_sse, started by csload sweep: its token and API keys)")
	sweepFlags(fs, &c.sweepConfig)
	fs.StringVar(&c.Label, "label", "", "sse: a label for the report (csload plot's series, e.g. coursestream or floor)")
	fs.IntVar(&c.Polls, "polls", 0, "poll: polls per poller, then it stops (0: until --duration, or the events' --drain)")
	fs.DurationVar(&c.Wait, "wait", 0, "poll: long-poll, ?wait= on every poll (at most 30s); with --events 0, the server's RSS per held poll after --settle")
	fs.IntVar(&c.PerPoll, "courses-per-poll", 1, "poll: courses per poll (above 1, the multi-course poll /v1/poll?courses=&cursor=)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	fs.Visit(func(f *flag.Flag) { c.DurationSet = c.DurationSet || f.Name == "duration" })
	if mode == "floor" {
		return serveFloor(ctx, c.Addr, c.FloorSSE, out)
	}
	if (mode == "sse" || mode == "sweep") && !flagSet(fs, "proto") {
		c.Proto = "h1" // sse's default; idle's is h2
	}
	if err := c.check(); err != nil {
		return usageError{err}
	}
	if c.CoursePfx == "" {
		c.CoursePfx = fmt.Sprintf("load-%d-", time.Now().UnixNano()%1e9)
	}
	if mode == "sweep" {
		return runSweep(ctx, c, out) // each of its runs ends by --timeout
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var rep *report
	var err error
	switch mode {
	case "sse":
		rep, err = runSSE(ctx, c)
	case "poll":
		rep, err = runPoll(ctx, c)
	case "soak":
		rep, err = runSoak(ctx, c, out)
	case "idle":
		rep, err = runIdle(ctx, c)
	case "scale":
		err = runScaleMode(ctx, c, out) // prints its own report
	}
	if rep != nil {
		rep.print(out, c.JSON)
	}
	if err == nil && rep != nil {
		err = rep.broken()
	}
	return err
}

func (c *config) check() error {
	bases, err := parseServers(c.Server)
	if err != nil {
		return err
	}
	for _, u := range bases {
		host := u.Hostname()
		ip := net.ParseIP(host)
		if !c.AllowRemote && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("--server %s is not loopback; pass --allow-remote to load another machine", u)
		}
	}
	if c.PerStream == 0 {
		c.PerStream = 1
	}
	switch {
	case c.Clients < 1 || c.Courses < 1 || c.Courses > c.Clients:
		return errors.New("want --clients >= --courses >= 1")
	case c.PerStream < 1 || c.PerStream > c.Courses || c.PerStream > 64:
		return errors.New("want 1 <= --courses-per-stream <= --courses (and at most 64)")
	case c.Ramp < 1 || c.Rate <= 0 || c.Events < 0 || c.Concurrency < 1:
		return errors.New("want --ramp, --rate, --publishers positive and --events >= 0")
	case c.Publish != "http" && c.Publish != "fcall":
		return errors.New("--publish is http or fcall")
	case c.Publish == "fcall" && c.RedisURL == "":
		return errors.New("--publish fcall needs --redis-url")
	}
	return nil
}

// flagSet reports whether the flag name was given.
func flagSet(fs *flag.FlagSet, name string) (set bool) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
