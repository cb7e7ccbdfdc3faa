package main

// csload sweep: the same load at several sizes, against coursestream and
// its references, each run on a freshly started server, runs alternating,
// so that every figure has its reference measured in the same session.
//
//	csload sweep --cs ./cs --targets coursestream,floor --points 1000,5000,10000,19000 \
//	  --runs 3 --out sweep/ --svg docs/growth.svg -- <the sse or poll flags of one run>
//
// For each run and each point (the value of --clients) it starts every
// target in turn (the order reversed on every other run), runs one csload
// sse (or poll, --sweep-mode) against it with --pid set to the target's
// process, kills the target, and writes the report to --out as
// <target>-<point>-<run>.json. At the end it prints, per point, the
// median of the runs of each target and the ratio of coursestream's to
// the first other target's (the reference), and makes --svg from the
// reports (csload plot). It exits non-zero when a run lost, duplicated or
// reordered an event.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sweepConfig holds csload sweep's own flags.
type sweepConfig struct {
	Targets    string // comma-separated: coursestream, floor, centrifugo
	Points     string // comma-separated --clients values
	Runs       int
	Out        string
	SVG        string
	SweepMode  string // sse or poll
	CSArgs     string // extra coursestream flags (space-separated)
	Centrifugo string // centrifugo binary
	CFRedis    string // centrifugo: Redis engine at host:port (empty: memory engine)
}

func sweepFlags(fs *flag.FlagSet, s *sweepConfig) {
	fs.StringVar(&s.Targets, "targets", "coursestream,floor", "sweep: servers to run each point against: coursestream (--cs), floor (csload floor), centrifugo (--centrifugo)")
	fs.StringVar(&s.Points, "points", "1000,5000,10000", "sweep: the --clients values, comma-separated")
	fs.IntVar(&s.Runs, "runs", 3, "sweep: runs of each point and target (the figures are their median)")
	fs.StringVar(&s.Out, "out", "", "sweep: directory for the runs' JSON reports (default: a temporary one)")
	fs.StringVar(&s.SVG, "svg", "", "sweep: write an SVG plot of the reports here (csload plot)")
	fs.StringVar(&s.SweepMode, "sweep-mode", "sse", "sweep: the load of one run, sse or poll")
	fs.StringVar(&s.CSArgs, "cs-args", "", "sweep: more coursestream flags, space-separated (e.g. \"--redis-url redis://127.0.0.1:6390/0\")")
	fs.StringVar(&s.Centrifugo, "centrifugo", "", "sweep: the centrifugo binary for the centrifugo target (v6, uni_sse)")
	fs.StringVar(&s.CFRedis, "centrifugo-redis", "", "sweep: run centrifugo on its Redis engine at this host:port (default: memory engine)")
}

// sweepMetrics are the report fields a sweep summarises, by JSON name, per
// mode; a field a report does not have shows as -.
var sweepMetrics = map[string][]string{
	"sse":  {"rssPerConnKiB", "cpuPerDeliveryMicros", "latencyP50", "latencyP99", "completionP99"},
	"poll": {"cpuPerRequestMicros", "cpuPer304Micros", "rssPerConnKiB", "rssPerHeldPollKiB", "heldPolls", "requestsPerSecond"},
}

// sweepTarget is one kind of server a sweep runs against.
type sweepTarget struct {
	name  string
	start func(ctx context.Context) (*instance, error)
}

func runSweep(ctx context.Context, c config, out io.Writer) error {
	s := c.sweepConfig
	metrics, ok := sweepMetrics[s.SweepMode]
	if !ok {
		return usageError{fmt.Errorf("--sweep-mode %q: want sse or poll", s.SweepMode)}
	}
	var points []int
	for v := range strings.SplitSeq(s.Points, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return usageError{fmt.Errorf("--points %q: want positive client counts, comma-separated", s.Points)}
		}
		points = append(points, n)
	}
	if s.Runs < 1 {
		return usageError{errors.New("--runs must be at least 1")}
	}
	targets, err := sweepTargets(c)
	if err != nil {
		return usageError{err}
	}
	dir := s.Out
	if dir == "" {
		if dir, err = os.MkdirTemp("", "csload-sweep-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "csload: sweep: reports in %s\n", dir)

	type key struct {
		target string
		point  int
	}
	results := map[key][]map[string]any{}
	var files []string
	var broken []string
	for run := range s.Runs {
		order := slices.Clone(targets)
		if run%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range points {
			for _, t := range order {
				rep, err := sweepRun(ctx, c, t, p)
				if rep == nil {
					return fmt.Errorf("%s at %d clients, run %d: %w", t.name, p, run+1, err)
				}
				if err != nil {
					broken = append(broken, fmt.Sprintf("%s at %d clients, run %d: %v", t.name, p, run+1, err))
				}
				if b := rep.broken(); b != nil {
					broken = append(broken, fmt.Sprintf("%s at %d clients, run %d: %v", t.name, p, run+1, b))
				}
				b, _ := json.MarshalIndent(rep, "", "  ")
				f := filepath.Join(dir, fmt.Sprintf("%s-%d-%d.json", t.name, p, run+1))
				if err := os.WriteFile(f, b, 0o644); err != nil {
					return err
				}
				files = append(files, f)
				var m map[string]any
				_ = json.Unmarshal(b, &m)
				results[key{t.name, p}] = append(results[key{t.name, p}], m)
				fmt.Fprintf(os.Stderr, "csload: sweep: %s, %d clients, run %d: %s\n", t.name, p, run+1, summary(m, metrics))
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
	}

	// The table: per point, each target's medians, then coursestream's
	// ratio to the reference.
	ref := ""
	for _, t := range targets {
		if t.name != "coursestream" {
			ref = t.name
			break
		}
	}
	fmt.Fprintf(out, "sweep (%s): median of %d runs; ratio = coursestream / %s\n", s.SweepMode, s.Runs, cmp.Or(ref, "-"))
	fmt.Fprintf(out, "| clients | target | %s |\n|---|---|%s\n", strings.Join(metrics, " | "), strings.Repeat("---|", len(metrics)))
	for _, p := range points {
		for _, t := range targets {
			row := []string{}
			for _, m := range metrics {
				row = append(row, fmtMetric(m, median(results[key{t.name, p}], m)))
			}
			fmt.Fprintf(out, "| %d | %s | %s |\n", p, t.name, strings.Join(row, " | "))
		}
		if ref != "" && len(results[key{"coursestream", p}]) > 0 {
			row := []string{}
			for _, m := range metrics {
				a, b := median(results[key{"coursestream", p}], m), median(results[key{ref, p}], m)
				if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
					row = append(row, "-")
				} else {
					row = append(row, strconv.FormatFloat(a/b, 'f', 2, 64)+"×")
				}
			}
			fmt.Fprintf(out, "| %d | ratio | %s |\n", p, strings.Join(row, " | "))
		}
	}
	if s.SVG != "" && s.SweepMode == "sse" {
		if err := runPlot(append([]string{"--out", s.SVG}, files...), io.Discard); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		fmt.Fprintf(out, "plot: %s\n", s.SVG)
	}
	if len(broken) > 0 {
		return fmt.Errorf("invariant broken in %d runs: %s", len(broken), strings.Join(broken, "; "))
	}
	return nil
}

// sweepRun starts t, runs one load of p clients against it and stops it.
func sweepRun(ctx context.Context, c config, t sweepTarget, p int) (*report, error) {
	in, err := t.start(ctx)
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	defer in.kill()
	rc := c
	rc.Clients, rc.Server, rc.PID, rc.Label = p, in.url, in.pid, t.name
	rc.Target = map[bool]string{true: "centrifugo", false: "coursestream"}[t.name == "centrifugo"]
	rc.CoursePfx = fmt.Sprintf("sweep-%d-", time.Now().UnixNano()%1e9)
	if rc.Courses > rc.Clients {
		rc.Courses = rc.Clients
	}
	rctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	if c.SweepMode == "poll" {
		return runPoll(rctx, rc)
	}
	return runSSE(rctx, rc)
}

func sweepTargets(c config) ([]sweepTarget, error) {
	s := c.sweepConfig
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tlsOn := c.Proto == "h2" || c.Proto == "h1tls"
	var out []sweepTarget
	for name := range strings.SplitSeq(s.Targets, ",") {
		switch name = strings.TrimSpace(name); name {
		case "coursestream":
			if c.CS == "" {
				return nil, errors.New("the coursestream target needs --cs")
			}
			extra := strings.Fields(s.CSArgs)
			out = append(out, sweepTarget{name, func(ctx context.Context) (*instance, error) {
				return startProcess(ctx, func(addr string) []string {
					return append([]string{c.CS, "--addr", addr, "--log-level", "warn"}, extra...)
				}, tlsOn, "/readyz")
			}})
		case "floor":
			out = append(out, sweepTarget{name, func(ctx context.Context) (*instance, error) {
				return startProcess(ctx, func(addr string) []string {
					return []string{self, "floor", "--addr", addr}
				}, false, "/v1/courses/ready/poll")
			}})
		case "centrifugo":
			if s.Centrifugo == "" {
				return nil, errors.New("the centrifugo target needs --centrifugo")
			}
			out = append(out, sweepTarget{name, func(ctx context.Context) (*instance, error) {
				return startProcess(ctx, func(addr string) []string {
					return []string{s.Centrifugo, "-c", centrifugoConfig(addr, s.CFRedis)}
				}, false, "/health")
			}})
		default:
			return nil, fmt.Errorf("--targets: unknown %q (coursestream, floor, centrifugo)", name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--targets is empty")
	}
	return out, nil
}

// median of the runs' field m; NaN when no run has it.
func median(runs []map[string]any, m string) float64 {
	var vs []float64
	for _, r := range runs {
		if v, ok := r[m].(float64); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return math.NaN()
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

// fmtMetric prints a field: durations (JSON nanoseconds) in ms.
func fmtMetric(m string, v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case strings.HasPrefix(m, "latency") || strings.HasPrefix(m, "completion"):
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + " ms"
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func summary(m map[string]any, metrics []string) string {
	var parts []string
	for _, k := range metrics {
		v, ok := m[k].(float64)
		if !ok {
			continue
		}
		parts = append(parts, k+" "+fmtMetric(k, v))
	}
	if v, ok := m["lost"].(float64); ok {
		parts = append(parts, fmt.Sprintf("lost %.0f", v))
	}
	return strings.Join(parts, ", ")
}
