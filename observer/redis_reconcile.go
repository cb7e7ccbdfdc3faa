package observer

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// probeMisses is how many probes in a row reach nobody before a
// connection is rebuilt.
const probeMisses = 3

// reconcileLoop runs reconcile every Reconcile until ctx ends.
func (r *Redis) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.reconcile(ctx)
	}
}

// reconcile catches what no message shows: the function library gone,
// the last message of a burst dropped, the sequence gone backwards (Redis
// lost its data), a stalled fill, a connection that no longer receives.
func (r *Redis) reconcile(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Reconcile, commandWait))
	defer cancel()
	if err := r.checkLibrary(ctx, true); err != nil && ctx.Err() == nil {
		r.log.Debug("redis: checking the function library failed", slog.Any("err", err))
	}
	r.checkSequences(ctx, r.courseList())
	r.mu.Lock()
	subs := slices.Collect(maps.Values(r.subs))
	r.mu.Unlock()
	r.checkProbes(ctx, subs)
}

// seqCheck is a live course's last delivered id, to compare with its
// sequence in Redis.
type seqCheck struct {
	c    *rcourse
	last uint64
	cmd  *redis.StringCmd
}

// checkSequences queues the stalled fills again and starts a fill for
// every live course whose sequence in Redis is not its last delivered id
// (a message lost off the end of a burst shows only there).
func (r *Redis) checkSequences(ctx context.Context, courses []*rcourse) {
	var checks []seqCheck
	for _, c := range courses {
		if last, ok := c.reconcileStep(r); ok {
			checks = append(checks, seqCheck{c: c, last: last})
		}
	}
	if len(checks) == 0 {
		return
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range checks {
			checks[i].cmd = p.Get(ctx, SeqKey(checks[i].c.id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		r.log.Debug("redis: reading the sequences failed", slog.Any("err", err))
	}
	for _, ch := range checks {
		if seq, ok := sequenceOf(ch.cmd); ok && seq != ch.last {
			ch.c.sequenceMoved(r, ch.last)
		}
	}
}

// sequenceOf is the sequence a GET of a course's seq key read (a missing
// key is 0); ok is false when the read failed or the key holds garbage.
func sequenceOf(cmd *redis.StringCmd) (uint64, bool) {
	s, err := cmd.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, true
	case err != nil:
		return 0, false
	}
	return replyUint(s)
}

// checkProbes publishes on the probe channel of each connection and marks
// for a rebuild one whose probe has reached nobody for a while: Redis
// answers but the connection is not subscribed (a slot moved, or a
// connection go-redis does not see is dead).
func (r *Redis) checkProbes(ctx context.Context, subs []*psub) {
	if len(subs) == 0 {
		return
	}
	names := make([]string, len(subs))
	for i, p := range subs {
		names[i] = p.probe
	}
	n, err := r.probe(ctx, names)
	if err != nil {
		return
	}
	// go-redis reconnects by itself within seconds; rebuild only a
	// connection that stays deaf longer than that.
	deaf := min(5*time.Second, 10*r.cfg.Reconcile)
	now := time.Now()
	r.mu.Lock()
	for i, p := range subs {
		if p.probed(n[i] >= 1, now, deaf) && r.subs[p.slot] == p && !p.broken {
			r.log.Info("redis: a pub/sub connection receives nothing; opening a new one", slog.Int("slot", p.slot))
			p.broken = true
		}
	}
	r.mu.Unlock()
	r.wake()
}

// probed counts one probe of p, which reached it or not, and reports that
// it has missed probeMisses probes in a row over at least deaf. Redis.mu
// is held.
func (p *psub) probed(reached bool, now time.Time, deaf time.Duration) bool {
	if reached {
		p.misses, p.missSince = 0, time.Time{}
		return false
	}
	if p.misses == 0 {
		p.missSince = now
	}
	p.misses++
	return p.misses >= probeMisses && now.Sub(p.missSince) >= deaf
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
