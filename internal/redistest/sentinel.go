package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the sentinels of StartSentinel know the master by.
const MasterName = "coursestream"

// SentinelOptions configures a Sentinel setup.
type SentinelOptions struct {
	// Data configures the master and the replicas (AOF, more arguments).
	Data Options
	// Replicas is how many replicas the master has (default 1).
	Replicas int
	// DownAfter is the sentinels' down-after-milliseconds (default 1 s)
	// and FailoverTimeout their failover-timeout (default 3 s): a killed
	// master is replaced within a few seconds.
	DownAfter, FailoverTimeout time.Duration
}

// Sentinel is a master, its replicas and three sentinels (quorum 2) on
// loopback, all stopped when the test ends.
type Sentinel struct {
	Master    *Server
	Replica   *Server   // the first of Replicas
	Replicas  []*Server // in sync when StartSentinel returns
	Sentinels []*Server
	tb        testing.TB
}

// StartSentinel starts the master, its replicas and three sentinels, and
// returns once the replicas are in sync and every sentinel knows them and
// the other sentinels (a failover can then happen).
func StartSentinel(tb testing.TB, opt SentinelOptions) *Sentinel {
	tb.Helper()
	if opt.DownAfter <= 0 {
		opt.DownAfter = time.Second
	}
	if opt.FailoverTimeout <= 0 {
		opt.FailoverTimeout = 3 * time.Second
	}
	st := &Sentinel{tb: tb}
	st.Master = Start(tb, opt.Data)
	ropt := opt.Data
	ropt.Args = append(append([]string(nil), opt.Data.Args...), "--replicaof", "127.0.0.1", strconv.Itoa(st.Master.Port))
	for range max(opt.Replicas, 1) {
		st.Replicas = append(st.Replicas, Start(tb, ropt))
	}
	st.Replica = st.Replicas[0]
	for range 3 {
		st.Sentinels = append(st.Sentinels, startSentinel(tb, st.Master.Port, opt))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.waitSettled(ctx); err != nil {
		tb.Fatalf("the Sentinel setup did not settle: %v", err)
	}
	return st
}

// startSentinel runs one redis-server --sentinel watching the master on
// masterPort, with its own (rewritable) configuration file.
func startSentinel(tb testing.TB, masterPort int, opt SentinelOptions) *Server {
	tb.Helper()
	bin := require(tb)
	dir := tb.TempDir()
	var lastErr error
	for range 5 {
		port, err := freePort(false)
		if err != nil {
			tb.Fatal(err)
		}
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nprotected-mode no\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s %d\n"+
			"sentinel parallel-syncs %s 1\n",
			port, dir, MasterName, masterPort, MasterName, opt.DownAfter.Milliseconds(),
			MasterName, opt.FailoverTimeout.Milliseconds(), MasterName)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Dir: dir, tb: tb, bin: bin,
			args: []string{conf, "--sentinel"}, ready: "+monitor master"}
		if lastErr = s.launch(); lastErr == nil {
			tb.Cleanup(s.Kill)
			return s
		}
	}
	tb.Fatalf("starting redis-server --sentinel: %v", lastErr)
	return nil
}

// Addrs are the sentinels' addresses.
func (st *Sentinel) Addrs() []string {
	out := make([]string, len(st.Sentinels))
	for i, s := range st.Sentinels {
		out[i] = s.Addr
	}
	return out
}

// Client returns a failover client of the master the sentinels name,
// closed when the test ends.
func (st *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: st.Addrs(),
		ContextTimeoutEnabled: true, MaxRetries: -1})
	st.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterAddr is the master's address as the first sentinel that answers
// names it.
func (st *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var lastErr error
	for _, s := range st.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialerRetries: 1})
		a, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		c.Close()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1]), nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("no sentinel names the master: %v", lastErr)
}

// WaitFailover waits until every sentinel that answers names a master
// other than from, and that master says it is one; it returns the new
// master's address.
func (st *Sentinel) WaitFailover(ctx context.Context, from string) (string, error) {
	for {
		addr, err := st.MasterAddr(ctx)
		if err == nil && addr != from && role(ctx, addr) == "master" {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no failover away from %s: %w (last: %s %v)", from, ctx.Err(), addr, err)
		case <-time.After(50 * time.Millisecond): // polling the sentinels: they send no signal here
		}
	}
}

// role is what ROLE answers first at addr ("master", "slave"), or "".
func role(ctx context.Context, addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	s, _ := v[0].(string)
	return s
}

// waitSettled waits until the replicas are in sync and each sentinel sees
// them and the two other sentinels.
func (st *Sentinel) waitSettled(ctx context.Context) error {
	for {
		err := st.settled(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond): // sentinels discover each other by hello messages every 2 s
		}
	}
}

func (st *Sentinel) settled(ctx context.Context) error {
	for _, r := range st.Replicas {
		rc := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
		info, err := rc.Info(ctx, "replication").Result()
		rc.Close()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica %s not in sync", r.Addr)
		}
	}
	for _, s := range st.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		reps, err1 := c.Replicas(ctx, MasterName).Result()
		sens, err2 := c.Sentinels(ctx, MasterName).Result()
		c.Close()
		switch {
		case err1 != nil:
			return err1
		case err2 != nil:
			return err2
		case len(reps) < len(st.Replicas):
			return fmt.Errorf("sentinel %s sees %d replicas", s.Addr, len(reps))
		case len(sens) < len(st.Sentinels)-1:
			return fmt.Errorf("sentinel %s sees %d other sentinels", s.Addr, len(sens))
		}
	}
	return nil
}
