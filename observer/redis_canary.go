package observer

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The canary proves that a pub/sub connection delivers, not only that it
// is subscribed (a connection can stay open, subscribed as far as Redis
// knows, and deliver nothing: centrifugo#1189). Each reconcile publishes a
// canary on every connection's probe channel; its receive loop records
// when the canary came back.
const (
	// canarySlack is how much later than one Reconcile period a canary may
	// come back and still prove the connection delivering (Ready): with
	// DefaultReconcile, a canary is fresh for 3 s; after that Ready sends
	// one itself.
	canarySlack = time.Second
	// canaryWait bounds how long Ready waits for the canary it sent.
	canaryWait = time.Second
	// canaryDeaf is how long a connection may go without a canary coming
	// back before it is built anew (at least two Reconcile periods and a
	// second: with DefaultReconcile, a silent connection is rebuilt within
	// about 7 s).
	canaryDeaf = 5 * time.Second
)

// canaryFresh is how long a canary that came back proves the connection
// delivering.
func (r *Redis) canaryFresh() time.Duration { return r.cfg.Reconcile + canarySlack }

// canaryDeafAfter is how long a connection may go without a canary back.
func (r *Redis) canaryDeafAfter() time.Duration {
	return max(canaryDeaf, 2*r.cfg.Reconcile+canarySlack)
}

// canary is the delivery record of one pub/sub connection. Its fields are
// atomics: the receive loop writes them, Ready and the reconcile read them.
type canary struct {
	opened atomic.Int64                  // unix nanoseconds the connection was opened
	heard  atomic.Int64                  // unix nanoseconds the last canary came back; 0: none yet
	echo   atomic.Pointer[chan struct{}] // closed (and replaced) when a canary comes back
}

// start marks the connection opened at now.
func (c *canary) start(now time.Time) {
	ch := make(chan struct{})
	c.echo.Store(&ch)
	c.opened.Store(now.UnixNano())
}

// back records a canary that came back with payload (the unix nanoseconds
// it was sent at) and returns its round trip; ok is false for a payload
// that is not one of this process's canaries.
func (c *canary) back(payload string, now time.Time) (rtt time.Duration, ok bool) {
	sent, err := strconv.ParseInt(payload, 10, 64)
	if err != nil || sent <= 0 {
		return 0, false
	}
	c.heard.Store(now.UnixNano())
	next := make(chan struct{})
	if old := c.echo.Swap(&next); old != nil {
		close(*old)
	}
	return now.Sub(time.Unix(0, sent)), true
}

// freshSince reports whether a canary came back at or after t.
func (c *canary) freshSince(t time.Time) bool { return c.heard.Load() >= t.UnixNano() }

// deaf reports whether the connection, opened for longer than after, has
// had no canary back for that long.
func (c *canary) deaf(now time.Time, after time.Duration) bool {
	last := max(c.heard.Load(), c.opened.Load())
	return last > 0 && now.Sub(time.Unix(0, last)) > after
}

// sendCanaries publishes a canary on each probe channel and returns how
// many subscribers each reached (0: the connection is not even
// subscribed).
func (r *Redis) sendCanaries(ctx context.Context, channels []string) ([]int64, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	payload := strconv.FormatInt(time.Now().UnixNano(), 10)
	cmds := make([]*redis.IntCmd, len(channels))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ch := range channels {
			if r.cluster != nil {
				cmds[i] = p.SPublish(ctx, ch, payload)
			} else {
				cmds[i] = p.Publish(ctx, ch, payload)
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

// onCanary handles a message on the probe channel of p.
func (r *Redis) onCanary(p *psub, payload string) {
	if rtt, ok := p.canary.back(payload, time.Now()); ok {
		r.met.CanaryRoundTrip(rtt)
	}
}

// proveDelivery returns nil when every connection of subs had a canary
// back within canaryFresh, or gets one back now within canaryWait.
func (r *Redis) proveDelivery(ctx context.Context, subs []*psub) error {
	now := time.Now()
	var stale []*psub
	for _, p := range subs {
		if !p.canary.freshSince(now.Add(-r.canaryFresh())) {
			stale = append(stale, p)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	names := make([]string, len(stale))
	echoes := make([]chan struct{}, len(stale))
	for i, p := range stale {
		names[i] = p.probe
		if ch := p.canary.echo.Load(); ch != nil {
			echoes[i] = *ch
		}
	}
	sent := time.Now()
	n, err := r.sendCanaries(ctx, names)
	if err != nil {
		return mapError(err)
	}
	t := time.NewTimer(canaryWait)
	defer t.Stop()
	for i, p := range stale {
		if n[i] < 1 {
			return fmt.Errorf("%w: the pub/sub connection is not subscribed (%s)", ErrUnavailable, p.probe)
		}
		for !p.canary.freshSince(sent) {
			select {
			case <-echoes[i]:
				if ch := p.canary.echo.Load(); ch != nil {
					echoes[i] = *ch
				}
			case <-t.C:
				return fmt.Errorf("%w: the pub/sub connection delivers nothing (no canary back within %s on %s)", ErrUnavailable, canaryWait, p.probe)
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
			}
		}
	}
	return nil
}
