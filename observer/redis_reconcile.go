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

// checkProbes sends a canary on each connection and marks for a rebuild
// one that has had no canary back for canaryDeafAfter: it is not subscribed (a
// slot moved, or a connection go-redis does not see is dead), or it stays
// open and delivers nothing.
func (r *Redis) checkProbes(ctx context.Context, subs []*psub) {
	if len(subs) == 0 {
		return
	}
	names := make([]string, len(subs))
	for i, p := range subs {
		names[i] = p.probe
	}
	if _, err := r.sendCanaries(ctx, names); err != nil {
		return // Redis does not answer: nothing to learn about the connections
	}
	now, deaf := time.Now(), r.canaryDeafAfter()
	r.mu.Lock()
	for _, p := range subs {
		if p.canary.deaf(now, deaf) && r.subs[p.slot] == p && !p.broken {
			r.log.Info("redis: a pub/sub connection delivers nothing (no canary back); opening a new one",
				slog.Int("slot", p.slot), slog.Duration("silent for", deaf))
			p.broken = true
		}
	}
	r.mu.Unlock()
	r.wake()
}
