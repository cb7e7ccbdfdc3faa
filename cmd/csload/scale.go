package main

// csload scale: several coursestream instances on one Redis, the same
// course subscribed on each, events published straight into Redis.
//
// The parent starts --instances of --cs on free loopback ports (or takes
// the --server instances as they are), waits for each /readyz, then runs
// one child per instance, one after another: itself as `csload sse
// --subscribe-only` against that instance, which connects --clients at
// --ramp, prints "ready N" and waits for "go" on stdin. Once every child
// is ready the parent reads the instances' and Redis's CPU time, says go,
// and publishes --events with FCALL coursestream_publish, the send time in
// the data: one at a time (--one-at-a-time: the next once every subscriber
// of every instance has the last) or at --rate. A child prints "got ID"
// once all its clients have event ID; the parent's fan-out completion of
// an event is the latest of the children's last deliveries of it (their
// eventMaxLatency). The children's reports (JSON on stdout after the got
// lines) give the deliveries, loss and duplicates; the instances are
// always killed at the end.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// scaleConfig holds the flags of csload scale and of its children.
type scaleConfig struct {
	CS            string // coursestream binary to start --instances of
	Instances     int
	RedisPID      int
	PIDs          string // pids of --server's instances, when not started here
	OneAtATime    bool
	SubscribeOnly bool // sse: a scale child
}

func scaleFlags(fs *flag.FlagSet, s *scaleConfig) {
	fs.StringVar(&s.CS, "cs", "", "scale: coursestream binary; start --instances of it on free loopback ports with --redis-url (empty: use --server's instances)")
	fs.IntVar(&s.Instances, "instances", 2, "scale: instances of --cs to start")
	fs.IntVar(&s.RedisPID, "redis-pid", 0, "scale: redis-server pid; its CPU is INFO cpu's, else /proc's with this pid (0: INFO's process_id when --redis-url is loopback)")
	fs.StringVar(&s.PIDs, "pids", "", "scale without --cs: the --server instances' pids, comma-separated, for their CPU")
	fs.BoolVar(&s.OneAtATime, "one-at-a-time", false, "scale: publish the next event once every subscriber has the last (else at --rate)")
	fs.BoolVar(&s.SubscribeOnly, "subscribe-only", false, "sse: publish nothing; print \"ready N\" once connected, wait for \"go\" on stdin, print \"got ID\" once every client has event ID (csload scale's children; --courses 1)")
}

// scaleTrack is a subscribe-only child's per-event count: how many
// clients have each id and the latest delivery's latency. Duplicates
// count too (they fail the run anyway).
type scaleTrack struct {
	mu     sync.Mutex
	out    io.Writer
	want   int // clients connected; 0 until ready
	n      map[uint64]int
	max    map[uint64]time.Duration
	closed bool
}

func newScaleTrack(c config) *scaleTrack {
	if !c.SubscribeOnly {
		return nil
	}
	return &scaleTrack{out: os.Stdout, n: make(map[uint64]int), max: make(map[uint64]time.Duration)}
}

// note records one delivery of id; the one that completes the id prints
// "got ID".
func (t *scaleTrack) note(id uint64, lat time.Duration) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n[id]++
	t.max[id] = max(t.max[id], lat)
	if t.n[id] == t.want && !t.closed {
		fmt.Fprintf(t.out, "got %d\n", id)
	}
}

// subscribed is the rest of runSSE for a subscribe-only child: ready, go,
// then every client's events, or --drain after the parent's end line.
func subscribed(ctx context.Context, c config, rep *report, clients []*client, t *scaleTrack) (*report, error) {
	if c.Courses != 1 || c.PerStream != 1 {
		return rep, errors.New("--subscribe-only wants --courses 1")
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.mu.Lock()
	t.want = len(clients)
	fmt.Fprintf(t.out, "ready %d\n", len(clients))
	t.mu.Unlock()
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case l := <-lines:
		if l != "go" {
			return rep, fmt.Errorf("stdin: %q before go", l)
		}
	}
	start := time.Now()
	var deadline <-chan time.Time
	end := lines // any line or the end of stdin: the parent has published
wait:
	for _, cl := range clients {
		for waiting := true; waiting; {
			select {
			case <-cl.done:
				waiting = false
			case <-end:
				end, deadline = nil, time.After(c.Drain)
			case <-deadline:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
	}
	rep.PublishSeconds = time.Since(start).Seconds()
	t.mu.Lock()
	t.closed = true
	rep.EventMaxLatency = make(map[string]time.Duration, len(t.max))
	for id, d := range t.max {
		rep.EventMaxLatency[strconv.FormatUint(id, 10)] = d
	}
	t.mu.Unlock()
	var lat []time.Duration
	for _, cl := range clients {
		cl.mu.Lock()
		rep.Received += cl.received
		rep.Duplicates += cl.duplicates
		rep.OutOfOrder += cl.outOfOrder
		rep.Resets += cl.resets
		rep.Reconnects += cl.reconnects
		for _, s := range cl.samples {
			lat = append(lat, s.lat)
		}
		cl.mu.Unlock()
	}
	rep.settle()
	rep.LatencyP50, rep.LatencyP90, rep.LatencyP99, rep.LatencyMax = pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100)
	return rep, nil
}

// scaleReport is what csload scale measured.
type scaleReport struct {
	Mode               string  `json:"mode"`
	Instances          int     `json:"instances"`
	ClientsPerInstance int     `json:"clientsPerInstance"`
	Course             string  `json:"course"`
	Events             int     `json:"events"`
	OneAtATime         bool    `json:"oneAtATime"`
	Rate               float64 `json:"rate,omitempty"` // without --one-at-a-time
	Payload            int     `json:"payload"`
	Connected          int     `json:"connected"`
	ConnectFailed      int     `json:"connectFailed"`
	Published          int     `json:"published"`
	PublishSeconds     float64 `json:"publishSeconds"`
	// Seconds is the measured window: from the first publish to the last
	// event's fan-out completion (or the --drain bound).
	Seconds float64 `json:"seconds"`
	tally
	DeliveriesPerSecond float64 `json:"deliveriesPerSecond"`
	// Fan-out completion of an event: from its send time to its last
	// subscriber's delivery, over every instance; percentiles over the
	// events that reached every subscriber (the others are Incomplete).
	CompletionP50 time.Duration `json:"completionP50"`
	CompletionP99 time.Duration `json:"completionP99"`
	CompletionMax time.Duration `json:"completionMax"`
	Incomplete    int           `json:"incomplete"`
	// Redis, over the window: from INFO cpu (used_cpu_sys+used_cpu_user,
	// every thread, microseconds), else /proc/<redisPid>/stat (10 ms ticks).
	RedisPID               int             `json:"redisPid,omitempty"`
	RedisCPUFrom           string          `json:"redisCpuFrom,omitempty"` // info, proc, or empty: not measured
	RedisCPUSeconds        float64         `json:"redisCpuSeconds"`
	RedisCPUPerEventMicros float64         `json:"redisCpuPerEventMicros"`
	PerInstance            []scaleInstance `json:"perInstance"`
}

// scaleInstance is one instance and its child's figures.
type scaleInstance struct {
	Server               string        `json:"server"`
	PID                  int           `json:"pid,omitempty"`
	Connected            int           `json:"connected"`
	ConnectSeconds       float64       `json:"connectSeconds"`
	Expected             int           `json:"expected"`
	Received             int           `json:"received"`
	Lost                 int           `json:"lost"`
	Duplicates           int           `json:"duplicates"`
	LatencyP50           time.Duration `json:"latencyP50"`
	LatencyP99           time.Duration `json:"latencyP99"`
	CPUSeconds           float64       `json:"cpuSeconds"` // over the window, with its pid
	CPUPerDeliveryMicros float64       `json:"cpuPerDeliveryMicros"`
	CsloadCPUSeconds     float64       `json:"csloadCpuSeconds"` // its child's, the load generator
}

func (r *scaleReport) print(w io.Writer, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return
	}
	how := "one at a time"
	if !r.OneAtATime {
		how = fmt.Sprintf("at %g/s", r.Rate)
	}
	fmt.Fprintf(w, "scale: %d instances on one Redis, %d clients each on course %s; %d events %s (FCALL, %d B padding)\n",
		r.Instances, r.ClientsPerInstance, r.Course, r.Events, how, r.Payload)
	fmt.Fprintf(w, "connected %d, %d failed; published %d in %.2fs; deliveries expected %d, received %d in %.2fs: %.0f/s\n",
		r.Connected, r.ConnectFailed, r.Published, r.PublishSeconds, r.Expected, r.Received, r.Seconds, r.DeliveriesPerSecond)
	r.printLoss(w, "")
	fmt.Fprintf(w, "fan-out completion (last subscriber of every instance): p50 %s p99 %s max %s over %d events (%d incomplete)\n",
		ms(r.CompletionP50), ms(r.CompletionP99), ms(r.CompletionMax), r.Events-r.Incomplete, r.Incomplete)
	if r.RedisCPUFrom != "" {
		fmt.Fprintf(w, "redis (pid %d): CPU %.4fs (%s), %.1f µs per event\n", r.RedisPID, r.RedisCPUSeconds, r.RedisCPUFrom, r.RedisCPUPerEventMicros)
	}
	for i, in := range r.PerInstance {
		fmt.Fprintf(w, "instance %d %s: %d connected in %.1fs, %d received, %d lost, %d duplicates; latency p50 %s p99 %s",
			i+1, in.Server, in.Connected, in.ConnectSeconds, in.Received, in.Lost, in.Duplicates, ms(in.LatencyP50), ms(in.LatencyP99))
		if in.PID > 0 {
			fmt.Fprintf(w, "; CPU %.3fs, %.2f µs per delivery", in.CPUSeconds, in.CPUPerDeliveryMicros)
		}
		fmt.Fprintf(w, "; its csload %.2fs CPU\n", in.CsloadCPUSeconds)
	}
}

// runScaleMode runs csload scale and prints its report; it fails when an
// event was lost or duplicated, or a client could not connect.
func runScaleMode(ctx context.Context, c config, out io.Writer) error {
	rep, err := runScale(ctx, c)
	if rep != nil {
		rep.print(out, c.JSON)
	}
	if err == nil && rep != nil {
		if err = rep.broken(); err == nil && rep.ConnectFailed > 0 {
			err = fmt.Errorf("invariant broken: %d connections failed", rep.ConnectFailed)
		}
	}
	return err
}

// instance is one coursestream the run talks to, started here or given.
// child is one csload sse --subscribe-only process.
type child struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	ready    chan struct{} // closed on "ready N"
	done     chan struct{} // closed when stdout ended: rep or err set
	waited   bool
	conn     int
	rep      *report
	err      error
	cpuStart float64
}

// kill ends the child if it still runs and reaps it.
func (ch *child) kill() {
	if ch.waited {
		return
	}
	_ = ch.cmd.Process.Kill()
	<-ch.done
	_ = ch.cmd.Wait()
	ch.waited = true
}

// progress counts, per event id, the children that reported "got ID".
type progress struct {
	mu       sync.Mutex
	k        int
	n        map[uint64]int
	full     map[uint64]chan struct{} // closed when all k children have the id
	complete int
}

func (p *progress) ch(id uint64) chan struct{} {
	ch := p.full[id]
	if ch == nil {
		ch = make(chan struct{})
		p.full[id] = ch
	}
	return ch
}

// wait returns the channel closed when every child has id.
func (p *progress) wait(id uint64) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ch(id)
}

func (p *progress) got(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n[id]++
	if p.n[id] == p.k {
		close(p.ch(id))
		p.complete++
	}
}

func runScale(ctx context.Context, c config) (*scaleReport, error) {
	if c.RedisURL == "" {
		return nil, usageError{errors.New("scale needs --redis-url (the instances' Redis, published to with FCALL)")}
	}
	opt, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		return nil, usageError{fmt.Errorf("--redis-url: %w", err)}
	}
	if c.Instances < 1 && c.CS != "" {
		return nil, usageError{errors.New("want --instances >= 1")}
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis %s: %w", c.RedisURL, err)
	}
	redisPID := c.RedisPID
	if redisPID == 0 {
		redisPID = localRedisPID(ctx, rdb, opt.Addr)
	}

	var instances []*instance
	defer func() {
		for _, in := range instances {
			in.kill()
		}
	}()
	if c.CS != "" {
		for i := range c.Instances {
			in, err := startProcess(ctx, func(addr string) []string {
				return []string{c.CS, "--addr", addr, "--redis-url", c.RedisURL, "--log-level", "warn"}
			}, false, "/readyz")
			if err != nil {
				return nil, fmt.Errorf("instance %d: %w", i+1, err)
			}
			instances = append(instances, in)
			fmt.Fprintf(os.Stderr, "csload scale: instance %d ready on %s (pid %d)\n", i+1, in.url, in.pid)
		}
	} else {
		bases, _ := parseServers(c.Server)
		var pids []int
		if c.PIDs != "" {
			for p := range strings.SplitSeq(c.PIDs, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(p))
				if err != nil {
					return nil, usageError{fmt.Errorf("--pids %q: want pids, comma-separated", c.PIDs)}
				}
				pids = append(pids, n)
			}
			if len(pids) != len(bases) {
				return nil, usageError{fmt.Errorf("--pids: %d pids for %d --server instances", len(pids), len(bases))}
			}
		}
		for i, u := range bases {
			in := &instance{url: strings.TrimRight(u.String(), "/")}
			if pids != nil {
				in.pid = pids[i]
			}
			if err := waitOK(ctx, in.url+"/readyz", nil); err != nil {
				return nil, fmt.Errorf("instance %s: %w", in.url, err)
			}
			instances = append(instances, in)
		}
	}
	k := len(instances)
	course := c.CoursePfx + "0" // the children's only course (--courses 1)
	rep := &scaleReport{Mode: "scale", Instances: k, ClientsPerInstance: c.Clients, Course: course, Events: c.Events,
		OneAtATime: c.OneAtATime, Payload: c.Payload, RedisPID: redisPID, PerInstance: make([]scaleInstance, k)}
	if !c.OneAtATime {
		rep.Rate = c.Rate
	}

	// One child per instance, one after another: the ramp is --ramp in all.
	prog := &progress{k: k, n: make(map[uint64]int), full: make(map[uint64]chan struct{})}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var children []*child
	defer func() {
		for _, ch := range children {
			ch.kill()
		}
	}()
	for i, in := range instances {
		ch, err := startChild(self, c, in.url, prog)
		if err != nil {
			return nil, fmt.Errorf("child %d: %w", i+1, err)
		}
		children = append(children, ch)
		select {
		case <-ch.ready:
		case <-ch.done:
			return nil, fmt.Errorf("child %d (%s) ended before ready: %v", i+1, in.url, ch.err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "csload scale: child %d: %d clients on %s\n", i+1, ch.conn, in.url)
	}

	// Measure from here: CPU, go, publish.
	cpu := make([]float64, k)
	for i, in := range instances {
		cpu[i] = newProc(in.pid).cpu()
		children[i].cpuStart = newProc(children[i].cmd.Process.Pid).cpu()
	}
	redisCPU, redisFrom := redisCPUTime(ctx, rdb, redisPID)
	for i, ch := range children {
		if _, err := io.WriteString(ch.stdin, "go\n"); err != nil {
			return nil, fmt.Errorf("child %d: %w", i+1, err)
		}
	}
	pad := strings.Repeat("x", c.Payload)
	interval := time.Duration(float64(time.Second) / c.Rate)
	var ids []uint64
	start := time.Now()
	for i := range c.Events {
		if !c.OneAtATime {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				select {
				case <-ctx.Done():
					return rep, ctx.Err()
				case <-time.After(d):
				}
			}
		}
		data := `{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"pad":"` + pad + `"}`
		id, err := rdb.FCall(ctx, "coursestream_publish", []string{course}, "upload-progress", data).Int64()
		if err != nil {
			return rep, fmt.Errorf("FCALL coursestream_publish: %w", err)
		}
		ids = append(ids, uint64(id))
		if c.OneAtATime {
			select {
			case <-prog.wait(uint64(id)):
			case <-time.After(c.Drain): // lost somewhere: the reports tell
			case <-ctx.Done():
				return rep, ctx.Err()
			}
		}
	}
	rep.Published = len(ids)
	rep.PublishSeconds = time.Since(start).Seconds()
	for _, ch := range children {
		_ = ch.stdin.Close() // the end of stdin: published; the children drain
	}
	drain := time.After(c.Drain)
	for _, id := range ids {
		select {
		case <-prog.wait(id):
			continue
		case <-drain:
		case <-ctx.Done():
			return rep, ctx.Err()
		}
		break
	}
	window := time.Since(start)
	rep.Seconds = window.Seconds()
	if after, from := redisCPUTime(ctx, rdb, redisPID); from == redisFrom {
		redisCPU = after - redisCPU
	} else {
		redisFrom = ""
	}
	for i, in := range instances {
		rep.PerInstance[i] = scaleInstance{Server: in.url, PID: in.pid, CPUSeconds: newProc(in.pid).cpu() - cpu[i]}
	}

	// The children's reports.
	for i, ch := range children {
		select {
		case <-ch.done:
		case <-ctx.Done():
			return rep, ctx.Err()
		}
		pi := &rep.PerInstance[i]
		_ = ch.cmd.Wait() // exits non-zero when it lost events: its report says
		ch.waited = true
		if st := ch.cmd.ProcessState; st != nil {
			pi.CsloadCPUSeconds = (st.UserTime() + st.SystemTime()).Seconds() - ch.cpuStart
		}
		if ch.rep == nil {
			return rep, fmt.Errorf("child %d (%s): no report: %v", i+1, pi.Server, ch.err)
		}
		r := ch.rep
		pi.Connected, pi.ConnectSeconds, pi.Expected, pi.Received = r.Connected, r.ConnectSeconds, r.Expected, r.Received
		pi.Lost, pi.Duplicates, pi.LatencyP50, pi.LatencyP99 = r.Lost, r.Duplicates, r.LatencyP50, r.LatencyP99
		if pi.PID > 0 && r.Received > 0 {
			pi.CPUPerDeliveryMicros = pi.CPUSeconds / float64(r.Received) * 1e6
		}
		rep.Connected += r.Connected
		rep.ConnectFailed += r.ConnectFailed
		rep.add(r.tally)
	}
	rep.DeliveriesPerSecond = float64(rep.Received) / window.Seconds()
	if redisFrom != "" {
		rep.RedisCPUSeconds, rep.RedisCPUFrom = redisCPU, redisFrom
		if len(ids) > 0 {
			rep.RedisCPUPerEventMicros = redisCPU / float64(len(ids)) * 1e6
		}
	}
	var completion []time.Duration
	prog.mu.Lock()
	for _, id := range ids {
		if prog.n[id] < k {
			rep.Incomplete++
			continue
		}
		var last time.Duration
		for _, ch := range children {
			last = max(last, ch.rep.EventMaxLatency[strconv.FormatUint(id, 10)])
		}
		completion = append(completion, last)
	}
	prog.mu.Unlock()
	rep.CompletionP50, rep.CompletionP99, rep.CompletionMax = pct(completion, 50), pct(completion, 99), pct(completion, 100)
	return rep, nil
}

// startChild runs `csload sse --subscribe-only` against one instance; its
// stdout is read for ready, got and the report.
func startChild(self string, c config, server string, prog *progress) (*child, error) {
	args := []string{"sse", "--subscribe-only", "--json", "--server", server,
		"--clients", strconv.Itoa(c.Clients), "--courses", "1", "--course-prefix", c.CoursePfx,
		"--events", strconv.Itoa(c.Events), "--ramp", strconv.Itoa(c.Ramp), "--settle", "0s",
		"--drain", c.Drain.String(), "--timeout", c.Timeout.String()}
	if c.Token != "" {
		args = append(args, "--token", c.Token)
	}
	if c.AllowRemote {
		args = append(args, "--allow-remote")
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := &child{cmd: cmd, stdin: stdin, ready: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ch.done)
		br := bufio.NewReader(stdout)
		for {
			line, err := br.ReadString('\n')
			if v, ok := strings.CutPrefix(line, "ready "); ok && err == nil {
				ch.conn, _ = strconv.Atoi(strings.TrimSpace(v))
				close(ch.ready)
				continue
			}
			if v, ok := strings.CutPrefix(line, "got "); ok && err == nil {
				if id, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 64); perr == nil {
					prog.got(id)
				}
				continue
			}
			if strings.TrimSpace(line) == "" && err != nil {
				ch.err = errors.New("its output ended without a report")
				return
			}
			var r report
			if err := json.NewDecoder(io.MultiReader(strings.NewReader(line), br)).Decode(&r); err != nil {
				ch.err = fmt.Errorf("its report: %w", err)
			} else {
				ch.rep = &r
			}
			_, _ = io.Copy(io.Discard, br)
			return
		}
	}()
	return ch, nil
}

// redisCPUTime is Redis's user+system CPU seconds: INFO cpu's, else
// /proc's with its pid, else "" for from.
func redisCPUTime(ctx context.Context, rdb *redis.Client, pid int) (secs float64, from string) {
	if info, err := rdb.Info(ctx, "cpu").Result(); err == nil {
		var sys, user float64
		var n int
		for line := range strings.SplitSeq(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			f, err := strconv.ParseFloat(v, 64)
			switch {
			case err != nil:
			case k == "used_cpu_sys":
				sys, n = f, n+1
			case k == "used_cpu_user":
				user, n = f, n+1
			}
		}
		if n == 2 {
			return sys + user, "info"
		}
	}
	if pid > 0 {
		return newProc(pid).cpu(), "proc"
	}
	return 0, ""
}

// localRedisPID is the process_id of INFO server when Redis is on
// loopback and its pid is visible here; else 0.
func localRedisPID(ctx context.Context, rdb *redis.Client, addr string) int {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			if pid, err := strconv.Atoi(v); err == nil {
				if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
					return pid
				}
			}
		}
	}
	return 0
}
