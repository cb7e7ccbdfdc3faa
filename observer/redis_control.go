package observer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	singleSlot  = -1              // the key of the one pub/sub connection on a single Redis
	resendAfter = time.Second     // an unconfirmed SUBSCRIBE is sent again after this
	commandWait = 5 * time.Second // bound of one subscription command
)

// psub is one pub/sub connection: the only one on a single Redis, one per
// hash slot in use on a Cluster (go-redis opens a sharded PubSub on the node
// of its first channel and resubscribes all its channels in one command,
// so one slot per connection is what survives reconnects and slot moves).
type psub struct {
	slot  int
	probe string // this instance's probe channel on the connection
	ps    *redis.PubSub

	// Under Redis.mu.
	channels map[string]*rcourse
	unsub    map[string]int // UNSUBSCRIBEs sent and not yet confirmed
	broken   bool           // the slot moved away, or no canary comes back: rebuild

	canary    canary // when the connection last proved delivering (redis_canary.go)
	probeSeen bool   // receive loop only: the probe was confirmed once
}

// newSlotSub returns the connection of a Cluster hash slot for channels,
// its probe channel in the slot of the first of them.
func (r *Redis) newSlotSub(slot int, channels map[string]*rcourse) *psub {
	p := &psub{slot: slot, channels: make(map[string]*rcourse, len(channels)), unsub: make(map[string]int)}
	for ch, c := range channels {
		p.channels[ch] = c
		if p.probe == "" {
			p.probe = courseProbe(c.id, r.instance)
		}
	}
	return p
}

// courseProbe is this instance's probe channel in the hash slot of a course.
func courseProbe(courseID, instance string) string {
	return "coursestream:{" + courseID + "}:probe:" + instance
}

// subOp is one thing the subscription control does to a connection.
type subOp uint8

const (
	opOpen        subOp = iota // create the PubSub and start its receive loop
	opClose                    // close the PubSub (its receive loop ends)
	opSubscribe                // (S)SUBSCRIBE channels
	opUnsubscribe              // (S)UNSUBSCRIBE channels
)

func (o subOp) String() string {
	return [...]string{opOpen: "open", opClose: "close", opSubscribe: "subscribe", opUnsubscribe: "unsubscribe"}[o]
}

// subAction is one step of the subscription control: op on p, with the
// channels of a (un)subscription.
type subAction struct {
	op subOp
	p  *psub
	ch []string
}

// control owns the pub/sub connections: it alone sends SUBSCRIBE and
// UNSUBSCRIBE, in the order it decides them, so a course that leaves and
// comes back is never left unsubscribed. It closes every connection when
// ctx ends and the receive loops then exit.
func (r *Redis) control(ctx context.Context, wg *sync.WaitGroup) {
	opened := make(map[*psub]bool) // every PubSub open, current or replaced
	defer func() {
		for p := range opened {
			_ = p.ps.Close()
		}
	}()
	if r.cluster == nil {
		p := &psub{slot: singleSlot, probe: "coursestream:probe:" + r.instance,
			channels: make(map[string]*rcourse), unsub: make(map[string]int)}
		r.mu.Lock()
		r.subs[singleSlot] = p
		r.mu.Unlock()
		r.open(ctx, wg, p)
		opened[p] = true
	}
	tick := time.NewTicker(min(r.cfg.Reconcile, resendAfter))
	defer tick.Stop()
	for {
		r.sync(ctx, wg, opened)
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-tick.C:
		}
	}
}

// sync compares the courses with what is subscribed and sends the
// difference. Decisions are taken under Redis.mu; commands are sent after.
func (r *Redis) sync(ctx context.Context, wg *sync.WaitGroup, opened map[*psub]bool) {
	now := time.Now()
	r.mu.Lock()
	acts, rebuilt := r.planRebuilds(now, nil)
	acts = r.planCourses(now, acts)
	r.mu.Unlock()
	if rebuilt {
		r.met.Reconnected()
		if r.cluster != nil {
			r.cluster.ReloadState(ctx) // the next connection goes to the slot's new owner
		}
	}
	for _, a := range acts {
		r.apply(ctx, wg, opened, a)
	}
}

// planRebuilds replaces every broken connection (a slot moved, or the
// probe reaches nobody) by a new one subscribed to the same channels, and
// reports whether there was any. Redis.mu is held.
func (r *Redis) planRebuilds(now time.Time, acts []subAction) ([]subAction, bool) {
	rebuilt := false
	for slot, p := range r.subs {
		if !p.broken {
			continue
		}
		rebuilt = true
		if len(p.channels) == 0 && slot != singleSlot {
			delete(r.subs, slot)
			acts = append(acts, subAction{op: opClose, p: p})
			continue
		}
		np := r.newSlotSub(slot, p.channels)
		if slot == singleSlot {
			np.probe = p.probe
		}
		r.subs[slot] = np
		acts = append(acts, subAction{op: opClose, p: p}, subAction{op: opOpen, p: np})
		chans := make([]string, 0, len(np.channels))
		for ch, c := range np.channels {
			c.sub, c.sentAt = np, now
			chans = append(chans, ch)
		}
		if len(chans) > 0 {
			acts = append(acts, subAction{op: opSubscribe, p: np, ch: chans})
		}
	}
	return acts, rebuilt
}

// planCourses unsubscribes the courses nobody listens to any more,
// subscribes the new ones and sends again a SUBSCRIBE left unconfirmed.
// Redis.mu is held.
func (r *Redis) planCourses(now time.Time, acts []subAction) []subAction {
	for id, c := range r.courses {
		switch {
		case c.refs == 0:
			delete(r.courses, id)
			c.kill()
			acts = r.planRelease(c, acts)
		case c.sub == nil:
			acts = r.planSubscribe(c, now, acts)
		case now.Sub(c.sentAt) >= resendAfter && c.pending():
			c.sentAt = now
			acts = append(acts, subAction{op: opSubscribe, p: c.sub, ch: []string{c.channel}})
		}
	}
	return acts
}

// planRelease unsubscribes the channel of a course that is gone, and
// closes a Cluster connection left with no channel. Redis.mu is held.
func (r *Redis) planRelease(c *rcourse, acts []subAction) []subAction {
	p := c.sub
	if p == nil {
		return acts
	}
	delete(p.channels, c.channel)
	p.unsub[c.channel]++
	acts = append(acts, subAction{op: opUnsubscribe, p: p, ch: []string{c.channel}})
	if p.slot != singleSlot && len(p.channels) == 0 {
		delete(r.subs, p.slot)
		acts = append(acts, subAction{op: opClose, p: p})
	}
	return acts
}

// planSubscribe subscribes a course on the connection of its slot, opening
// that connection first on a Cluster when it has none. Redis.mu is held.
func (r *Redis) planSubscribe(c *rcourse, now time.Time, acts []subAction) []subAction {
	p := r.subs[singleSlot]
	if r.cluster != nil {
		slot := slotOf(c.channel)
		p = r.subs[slot]
		if p == nil {
			p = r.newSlotSub(slot, nil)
			p.probe = courseProbe(c.id, r.instance)
			r.subs[slot] = p
			acts = append(acts, subAction{op: opOpen, p: p})
		}
	}
	p.channels[c.channel] = c
	c.sub, c.sentAt = p, now
	return append(acts, subAction{op: opSubscribe, p: p, ch: []string{c.channel}})
}

// apply carries out one action. A failed (un)subscription is only logged:
// go-redis keeps the channel set and sends it again when it reconnects,
// and an unconfirmed SUBSCRIBE is sent again by planCourses.
func (r *Redis) apply(ctx context.Context, wg *sync.WaitGroup, opened map[*psub]bool, a subAction) {
	switch a.op {
	case opOpen:
		if ctx.Err() == nil {
			r.open(ctx, wg, a.p)
			opened[a.p] = true
		}
	case opClose:
		if opened[a.p] {
			_ = a.p.ps.Close()
			delete(opened, a.p)
		}
	case opSubscribe, opUnsubscribe:
		if !opened[a.p] || ctx.Err() != nil {
			return
		}
		if err := r.send(ctx, a); err != nil && ctx.Err() == nil {
			r.log.Debug("redis: pub/sub command failed; it is retried", slog.String("op", a.op.String()), slog.Any("channels", a.ch), slog.Any("err", err))
		}
	}
}

// send sends one (un)subscription: sharded on a Cluster, classic else.
func (r *Redis) send(ctx context.Context, a subAction) error {
	ctx, cancel := context.WithTimeout(ctx, commandWait)
	defer cancel()
	switch {
	case a.op == opSubscribe && r.cluster != nil:
		return a.p.ps.SSubscribe(ctx, a.ch...)
	case a.op == opSubscribe:
		return a.p.ps.Subscribe(ctx, a.ch...)
	case r.cluster != nil:
		return a.p.ps.SUnsubscribe(ctx, a.ch...)
	default:
		return a.p.ps.Unsubscribe(ctx, a.ch...)
	}
}

// open creates the PubSub of p, subscribed to its probe channel, and starts
// its receive loop (owned by wg; it ends when the PubSub is closed).
func (r *Redis) open(ctx context.Context, wg *sync.WaitGroup, p *psub) {
	cctx, cancel := context.WithTimeout(ctx, commandWait)
	defer cancel()
	if r.cluster != nil {
		p.ps = r.cluster.SSubscribe(cctx, p.probe)
	} else {
		p.ps = r.rdb.Subscribe(cctx, p.probe)
	}
	p.canary.start(time.Now())
	ch := p.ps.ChannelWithSubscriptions(
		redis.WithChannelSize(r.cfg.ChannelSize),
		redis.WithChannelSendTimeout(r.cfg.ChannelSendTimeout),
	)
	wg.Go(func() { r.receive(p, ch) })
}
