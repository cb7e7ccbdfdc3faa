// Package redistest runs real redis-server processes for tests: one server
// on a free loopback port in a temporary directory, stopped and restarted on
// the same port, a Redis Cluster of several masters, or a master with
// replicas watched by three Sentinels (sentinel.go); and a loopback proxy
// that can silence the pub/sub connections through it (proxy.go).
//
// Start and StartCluster skip a test when redis-server is missing, except
// under CI=true where they fail it: CI must not pass by skipping the Redis
// tests.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startWait bounds how long a server may take to accept connections.
const startWait = 15 * time.Second

// binary returns the redis-server to run: $REDIS_SERVER, else redis-server
// from PATH.
func binary() (string, error) {
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return exec.LookPath(p)
	}
	return exec.LookPath("redis-server")
}

// require returns the redis-server binary. Without one it skips the test,
// or fails it when CI=true.
func require(tb testing.TB) string {
	tb.Helper()
	bin, err := binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redis-server is required (CI=true): %v; install it (apt-get install redis-server) or set REDIS_SERVER", err)
		}
		tb.Skipf("redis-server not found (%v); skipping (CI=true makes this a failure)", err)
	}
	return bin
}

// Options configures a server.
type Options struct {
	// AOF turns on the append-only file (fsync always), so the data
	// survives Stop and Restart. Without it nothing is saved.
	AOF bool
	// Args are more redis-server arguments, e.g. "--maxmemory", "10mb".
	Args []string
}

// Server is one redis-server process owned by a test.
type Server struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Dir  string // its working directory (AOF, cluster config)

	tb    testing.TB
	bin   string
	args  []string
	ready string // the log line that says it accepts connections ("" : a server's)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs redis-server on a free loopback port and returns once it
// accepts connections. The server is stopped when the test ends.
func Start(tb testing.TB, opt Options) *Server {
	tb.Helper()
	return start(tb, opt, false)
}

func start(tb testing.TB, opt Options, cluster bool) *Server {
	tb.Helper()
	bin := require(tb)
	dir := tb.TempDir()
	var lastErr error
	for range 5 { // a port picked as free may be taken before redis binds it
		port, err := freePort(cluster)
		if err != nil {
			tb.Fatal(err)
		}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--daemonize", "no", "--protected-mode", "no", "--loglevel", "notice",
		}
		if opt.AOF {
			args = append(args, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			args = append(args, "--appendonly", "no")
		}
		if cluster {
			args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "5000")
		}
		args = append(args, opt.Args...)
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: dir, tb: tb, bin: bin, args: args}
		if lastErr = s.launch(); lastErr == nil {
			tb.Cleanup(s.Kill)
			return s
		}
	}
	tb.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// launch starts the process and waits for "Ready to accept connections".
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	log := &lockedBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(pw, log)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(exited)
	}()
	ready := make(chan struct{})
	want := s.ready
	if want == "" {
		want = "Ready to accept connections"
	}
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), want) {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-ready:
	case <-exited:
		return fmt.Errorf("redis-server exited before it was ready:\n%s", log.String())
	case <-t.C:
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server not ready after %s:\n%s", startWait, log.String())
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Stop shuts the server down (SIGTERM; with AOF the data is kept) and
// waits for it to exit.
func (s *Server) Stop() {
	s.tb.Helper()
	s.signal(syscall.SIGTERM)
}

// Kill ends the server at once (SIGKILL) and waits for it to exit.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = cmd.Process.Kill()
		<-exited
	}
	s.mu.Lock()
	if s.cmd == cmd {
		s.cmd = nil
	}
	s.mu.Unlock()
}

// Restart stops the server if it runs and starts it again on the same
// port, with the same directory and arguments.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var err error
	for range 50 { // the port is ours; only a lingering socket may delay the bind
		if err = s.launch(); err == nil {
			return
		}
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("restarting redis-server on %s: %v", s.Addr, err)
}

// Client returns a go-redis client of the server, closed when the test
// ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// freePort returns a loopback port nobody listens on; for a cluster node
// the bus port (+10000) must be free too.
func freePort(cluster bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !cluster {
			l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		l.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port pair for a cluster node")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Cluster is a Redis Cluster of masters only, each a Server on loopback.
type Cluster struct {
	Nodes []*Server
	ids   []string
	tb    testing.TB
}

// StartCluster starts n masters (3 or more for a real cluster), splits the
// 16384 slots evenly between them and returns once every node sees the
// cluster as ok.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb}
	for range n {
		c.Nodes = append(c.Nodes, start(tb, Options{}, true))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, s := range c.Nodes {
		cl := s.Client()
		id, err := cl.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			tb.Fatalf("CLUSTER MYID on %s: %v", s.Addr, err)
		}
		c.ids = append(c.ids, id)
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			tb.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", s.Addr, err)
		}
	}
	first := c.Nodes[0].Client()
	for _, s := range c.Nodes[1:] {
		if err := first.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", s.Port).Err(); err != nil {
			tb.Fatalf("CLUSTER MEET %s: %v", s.Addr, err)
		}
	}
	c.waitAgree(ctx, func(owner func(slot int) int) bool {
		for i := range c.Nodes {
			if owner(i*16384/n) != i {
				return false
			}
		}
		return true
	})
	return c
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// Owner returns the index of the node that owns slot, as node 0 sees it.
func (c *Cluster) Owner(slot int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owners, err := c.owners(ctx, c.Nodes[0])
	if err != nil {
		c.tb.Fatal(err)
	}
	return owners(slot)
}

// BeginMove marks slot as migrating to node `to` (IMPORTING on it,
// MIGRATING on its owner) and returns the function that moves the keys and
// the ownership, returning once every node agrees. Between the two, the
// slot is in the middle of a resharding. A node that loses a slot ends the
// shard channel subscriptions in it with a server-sent SUNSUBSCRIBE.
func (c *Cluster) BeginMove(slot, to int) (finish func()) {
	c.tb.Helper()
	from := c.Owner(slot)
	if from == to {
		return func() {}
	}
	src, dst := c.Nodes[from].Client(), c.Nodes[to].Client()
	must := func(err error) {
		if err != nil {
			c.tb.Helper()
			c.tb.Fatalf("moving slot %d from %d to %d: %v", slot, from, to, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.ids[from]).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.ids[to]).Err())
	return func() {
		c.tb.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.finishMove(ctx, slot, from, to, src, dst, must)
	}
}

func (c *Cluster) finishMove(ctx context.Context, slot, from, to int, src, dst *redis.Client, must func(error)) {
	c.tb.Helper()
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		must(err)
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", c.Nodes[to].Port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err())
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to]).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to]).Err())
	for i, s := range c.Nodes {
		if i != from && i != to {
			must(s.Client().Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", c.ids[to]).Err())
		}
	}
	c.waitAgree(ctx, func(owner func(int) int) bool { return owner(slot) == to })
}

// waitAgree polls every node until each sees the cluster ok and ok(owner)
// holds for its view of the slots. Cluster convergence has no event to
// wait on, so this polls a condition, bounded by ctx.
func (c *Cluster) waitAgree(ctx context.Context, ok func(owner func(slot int) int) bool) {
	c.tb.Helper()
	clients := make([]*redis.Client, len(c.Nodes))
	for i, s := range c.Nodes {
		clients[i] = s.Client()
	}
	var last error
	for {
		agreed := true
		for i, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))) {
				agreed, last = false, fmt.Errorf("node %d: %v %q", i, err, firstLine(info))
				break
			}
			owners, err := c.owners(ctx, c.Nodes[i])
			if err != nil || !ok(owners) {
				agreed, last = false, fmt.Errorf("node %d does not agree yet (%v)", i, err)
				break
			}
		}
		if agreed {
			return
		}
		select {
		case <-ctx.Done():
			c.tb.Fatalf("the cluster did not converge: %v", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// owners reads CLUSTER SLOTS on s and returns slot → node index.
func (c *Cluster) owners(ctx context.Context, s *Server) (func(int) int, error) {
	cl := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	defer cl.Close()
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, err
	}
	return func(slot int) int {
		for _, r := range slots {
			if int(r.Start) <= slot && slot <= int(r.End) && len(r.Nodes) > 0 {
				for i, n := range c.Nodes {
					if r.Nodes[0].Addr == n.Addr || strings.HasSuffix(r.Nodes[0].Addr, ":"+strconv.Itoa(n.Port)) {
						return i
					}
				}
			}
		}
		return -1
	}, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
