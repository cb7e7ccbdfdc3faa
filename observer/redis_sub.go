package observer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

const (
	singleSlot   = -1              // the key of the one pub/sub connection on a single Redis
	fillWorkers  = 4               // goroutines reading history to fill gaps
	resendAfter  = time.Second     // an unconfirmed SUBSCRIBE is sent again after this
	commandWait  = 5 * time.Second // bound of one subscription command
	maxHeld      = 4 * MaxPage     // live events held per course while a fill runs
	fillAttempts = 3               // failed history reads before a fill waits for the reconcile
	probeMisses  = 3               // probes in a row reaching nobody before a connection is rebuilt
)

// rcourse is the broker's state of one course with local listeners.
//
// Ordering: every event reaches the observer under rcourse.mu, with an id
// above last (or as a Reset notice), so listeners see ids in order, once.
// While a fill runs (filling), live events are held and the fill worker,
// not the receive loop, delivers: the receive loop never waits on Redis.
type rcourse struct {
	id, channel string
	ready       chan struct{} // closed once the course's position is known

	// Under Redis.mu.
	refs   int       // Subscribe calls holding the course
	sub    *psub     // where its channel is subscribed; nil: not yet
	sentAt time.Time // when SUBSCRIBE was last sent while unconfirmed

	mu          sync.Mutex
	readyClosed bool
	confirmed   bool     // Redis confirmed the subscription at least once
	known       bool     // last is the course's position
	last        uint64   // id of the last event delivered (or the baseline)
	high        uint64   // the highest id ever delivered or seen as baseline; survives resets
	filling     bool     // a fill worker owns delivery
	refill      bool     // the fill must run once more (a reconnect happened meanwhile)
	overflow    bool     // held events were dropped
	stalled     bool     // the fill gave up for now; the reconcile requeues it
	dead        bool     // no longer subscribed: deliver nothing
	held        []*Event // live events that arrived while filling
}

func newCourse(id string) *rcourse {
	return &rcourse{id: id, channel: ChannelName(id), ready: make(chan struct{})}
}

// psub is one pub/sub connection: the only one on a single Redis, one per
// hash slot in use on a Cluster (go-redis opens a sharded PubSub on the node
// of its first channel and resubscribes all its channels in one command,
// so one slot per connection is what survives reconnects and slot moves).
type psub struct {
	slot  int
	probe string // this instance's probe channel on the connection
	ps    *redis.PubSub

	// Under Redis.mu.
	channels  map[string]*rcourse
	unsub     map[string]int // UNSUBSCRIBEs sent and not yet confirmed
	broken    bool           // the slot moved away, or the probe reaches nobody: rebuild
	misses    int            // probes in a row that reached nobody
	missSince time.Time      // since when

	probeSeen bool // receive loop only: the probe was confirmed once
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

type subAction struct {
	op string // "subscribe", "unsubscribe", "open", "close"
	p  *psub
	ch []string
}

// sync compares the courses with what is subscribed and sends the
// difference. Decisions are taken under Redis.mu; commands are sent after.
func (r *Redis) sync(ctx context.Context, wg *sync.WaitGroup, opened map[*psub]bool) {
	var acts []subAction
	now := time.Now()
	r.mu.Lock()
	// Rebuild Cluster connections whose slot moved.
	rebuilt := false
	for slot, p := range r.subs {
		if !p.broken {
			continue
		}
		rebuilt = true
		if len(p.channels) == 0 && slot != singleSlot {
			delete(r.subs, slot)
			acts = append(acts, subAction{op: "close", p: p})
			continue
		}
		np := r.newSlotSub(slot, p.channels)
		if slot == singleSlot {
			np.probe = p.probe
		}
		r.subs[slot] = np
		acts = append(acts, subAction{op: "close", p: p}, subAction{op: "open", p: np})
		chans := make([]string, 0, len(np.channels))
		for ch, c := range np.channels {
			c.sub, c.sentAt = np, now
			chans = append(chans, ch)
		}
		if len(chans) > 0 {
			acts = append(acts, subAction{op: "subscribe", p: np, ch: chans})
		}
	}
	for id, c := range r.courses {
		switch {
		case c.refs == 0:
			delete(r.courses, id)
			c.kill()
			if p := c.sub; p != nil {
				delete(p.channels, c.channel)
				p.unsub[c.channel]++
				acts = append(acts, subAction{op: "unsubscribe", p: p, ch: []string{c.channel}})
				if p.slot != singleSlot && len(p.channels) == 0 {
					delete(r.subs, p.slot)
					acts = append(acts, subAction{op: "close", p: p})
				}
			}
		case c.sub == nil:
			p := r.subs[singleSlot]
			if r.cluster != nil {
				slot := slotOf(c.channel)
				p = r.subs[slot]
				if p == nil {
					p = r.newSlotSub(slot, nil)
					p.probe = "coursestream:{" + c.id + "}:probe:" + r.instance
					r.subs[slot] = p
					acts = append(acts, subAction{op: "open", p: p})
				}
			}
			p.channels[c.channel] = c
			c.sub, c.sentAt = p, now
			acts = append(acts, subAction{op: "subscribe", p: p, ch: []string{c.channel}})
		case now.Sub(c.sentAt) >= resendAfter && !c.isConfirmed():
			c.sentAt = now
			acts = append(acts, subAction{op: "subscribe", p: c.sub, ch: []string{c.channel}})
		}
	}
	r.mu.Unlock()
	if rebuilt {
		r.met.Reconnected()
		if r.cluster != nil {
			r.cluster.ReloadState(ctx) // the next connection goes to the slot's new owner
		}
	}

	for _, a := range acts {
		switch a.op {
		case "open":
			if ctx.Err() == nil {
				r.open(ctx, wg, a.p)
				opened[a.p] = true
			}
		case "close":
			if opened[a.p] {
				_ = a.p.ps.Close()
				delete(opened, a.p)
			}
		case "subscribe", "unsubscribe":
			if !opened[a.p] || ctx.Err() != nil {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, commandWait)
			var err error
			switch {
			case a.op == "subscribe" && r.cluster != nil:
				err = a.p.ps.SSubscribe(cctx, a.ch...)
			case a.op == "subscribe":
				err = a.p.ps.Subscribe(cctx, a.ch...)
			case r.cluster != nil:
				err = a.p.ps.SUnsubscribe(cctx, a.ch...)
			default:
				err = a.p.ps.Unsubscribe(cctx, a.ch...)
			}
			cancel()
			// go-redis keeps the channel set and sends it again when it
			// reconnects; an unconfirmed SUBSCRIBE is also resent.
			if err != nil && ctx.Err() == nil {
				r.log.Debug("redis: pub/sub command failed; it is retried", slog.String("op", a.op), slog.Any("channels", a.ch), slog.Any("err", err))
			}
		}
	}
}

func (r *Redis) newSlotSub(slot int, channels map[string]*rcourse) *psub {
	p := &psub{slot: slot, channels: make(map[string]*rcourse, len(channels)), unsub: make(map[string]int)}
	for ch, c := range channels {
		p.channels[ch] = c
		if p.probe == "" {
			p.probe = "coursestream:{" + c.id + "}:probe:" + r.instance
		}
	}
	return p
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
	ch := p.ps.ChannelWithSubscriptions(
		redis.WithChannelSize(r.cfg.ChannelSize),
		redis.WithChannelSendTimeout(r.cfg.ChannelSendTimeout),
	)
	wg.Go(func() {
		for m := range ch {
			switch m := m.(type) {
			case *redis.Message:
				r.onMessage(p, m)
			case *redis.Subscription:
				r.onSubscription(p, m)
			}
		}
	})
}

// onSubscription handles a subscription confirmation or an unsubscription.
// A confirmation of a course already confirmed means go-redis reconnected
// and resubscribed silently: what was published meanwhile is read from the
// history. An unsubscription nobody asked for means the slot moved.
func (r *Redis) onSubscription(p *psub, s *redis.Subscription) {
	switch s.Kind {
	case "subscribe", "ssubscribe":
		if s.Channel == p.probe {
			if p.probeSeen {
				r.met.Reconnected()
				r.log.Info("redis: pub/sub connection re-established; reading what was missed from history", slog.Int("slot", p.slot))
				r.mu.Lock()
				clear(p.unsub) // their confirmations were lost with the connection
				r.mu.Unlock()
			}
			p.probeSeen = true
			return
		}
		c := r.courseOn(p, s.Channel)
		if c != nil {
			c.confirm(r)
		}
	case "unsubscribe", "sunsubscribe":
		r.mu.Lock()
		defer r.mu.Unlock()
		if n := p.unsub[s.Channel]; n > 0 {
			if n == 1 {
				delete(p.unsub, s.Channel)
			} else {
				p.unsub[s.Channel] = n - 1
			}
			return
		}
		if r.subs[p.slot] != p {
			return // an old connection
		}
		if s.Channel != p.probe && p.channels[s.Channel] == nil {
			return
		}
		switch {
		case r.cluster != nil:
			r.log.Info("redis: a slot moved; subscribing on its new node", slog.Int("slot", p.slot), slog.String("channel", s.Channel))
			p.broken = true
		case s.Channel == p.probe:
			r.log.Info("redis: the pub/sub connection was unsubscribed; opening a new one")
			p.broken = true
		default:
			c := p.channels[s.Channel]
			delete(p.channels, s.Channel)
			c.sub = nil // subscribe again; the confirmation triggers a fill
		}
		r.wake()
	}
}

// courseOn returns the course of channel ch if it is subscribed on p.
func (r *Redis) courseOn(p *psub, ch string) *rcourse {
	id, ok := courseOfChannel(ch)
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.courses[id]
	if c == nil || c.sub != p {
		return nil
	}
	return c
}

// onMessage handles one pub/sub message: garbage is counted, logged once
// per kind and dropped; an event is delivered at once when it is the next
// one, held while a fill runs, and starts a fill when ids jumped.
func (r *Redis) onMessage(p *psub, m *redis.Message) {
	if m.Channel == p.probe {
		return
	}
	id, ok := courseOfChannel(m.Channel)
	if !ok {
		r.malformed("channel", m.Channel, m.Payload, errors.New("not a course channel"))
		return
	}
	r.mu.Lock()
	c := r.courses[id]
	r.mu.Unlock()
	if c == nil {
		return // unsubscribed meanwhile
	}
	ev, err := ParseEnvelope([]byte(m.Payload))
	if err != nil {
		kind := "fields"
		if !jsonValid(m.Payload) {
			kind = "json"
		}
		r.malformed(kind, m.Channel, m.Payload, err)
		return
	}
	if ev.CourseID != id {
		r.malformed("course", m.Channel, m.Payload, errors.New("the envelope's courseId is not the channel's"))
		return
	}
	r.met.Received()
	c.live(r, ev)
}

// live takes one event from pub/sub.
func (c *rcourse) live(r *Redis, ev *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.dead || !c.confirmed:
		// Before the confirmation: published before the position is read,
		// so it is at or below the baseline anyway.
	case c.filling:
		if len(c.held) < maxHeld {
			c.held = append(c.held, ev)
		} else {
			c.overflow = true
		}
	case ev.ID <= c.last:
		// Already delivered (read from history, or sent twice).
	case ev.ID == c.last+1:
		c.last = ev.ID
		c.high = max(c.high, ev.ID)
		r.obs.Emit(ev)
	default:
		c.held = append(c.held[:0], ev)
		c.startFill(r)
	}
}

// confirm handles a subscription confirmation.
func (c *rcourse) confirm(r *Redis) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.dead:
	case !c.confirmed:
		c.confirmed = true
		c.startFill(r) // reads the baseline
	case c.filling:
		c.refill = true
	default:
		c.startFill(r)
	}
}

func (c *rcourse) isConfirmed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.confirmed
}

// kill marks a course that is no longer subscribed.
func (c *rcourse) kill() {
	c.mu.Lock()
	c.dead, c.held = true, nil
	c.mu.Unlock()
}

// startFill hands delivery to a fill worker. c.mu is held.
func (c *rcourse) startFill(r *Redis) {
	c.filling, c.stalled = true, false
	r.fillMu.Lock()
	r.fillQ = append(r.fillQ, c)
	r.fillMu.Unlock()
	select {
	case r.fillKick <- struct{}{}:
	default:
	}
}

func (r *Redis) fillWorker(ctx context.Context) {
	for {
		r.fillMu.Lock()
		var c *rcourse
		if len(r.fillQ) > 0 {
			c = r.fillQ[0]
			r.fillQ[0] = nil
			r.fillQ = r.fillQ[1:]
		}
		r.fillMu.Unlock()
		if c == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.fillKick:
				continue
			}
		}
		r.fill(ctx, c)
	}
}

// fill delivers what pub/sub did not: the baseline of a new course, or the
// events after the last one delivered, from the history, then the events
// held meanwhile. It retries a few times, then leaves the course stalled for
// the reconcile to requeue.
func (r *Redis) fill(ctx context.Context, c *rcourse) {
	failures := 0
	for ctx.Err() == nil {
		done, err := r.fillRound(ctx, c)
		if done {
			return
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		if failures >= fillAttempts {
			c.mu.Lock()
			c.stalled = true
			c.mu.Unlock()
			r.log.Warn("redis: reading a course's history failed; retrying at the next reconcile",
				slog.String("course", c.id), slog.Any("err", err))
			return
		}
		t := time.NewTimer(time.Duration(failures) * 50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// fillRound reads once and delivers; done reports that the course is live
// again (or dead).
func (r *Redis) fillRound(ctx context.Context, c *rcourse) (done bool, err error) {
	c.mu.Lock()
	if c.dead {
		c.filling, c.held = false, nil
		c.mu.Unlock()
		return true, nil
	}
	known, after, pre := c.known, c.last, len(c.held)
	c.refill, c.overflow = false, false
	c.mu.Unlock()

	var seq uint64
	var page Page
	if known {
		page, err = r.History(ctx, c.id, after, MaxPage)
		seq = page.LastID
	} else {
		seq, err = r.LastID(ctx, c.id)
	}
	if err != nil {
		return false, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		c.filling, c.held = false, nil
		return true, nil
	}
	reset := false
	if !known {
		c.last, c.known = seq, true
		c.high = max(c.high, seq)
		if !c.readyClosed {
			c.readyClosed = true
			close(c.ready)
		}
	} else {
		n := 0
		for _, ev := range page.Events {
			if ev.ID > c.last {
				c.last = ev.ID
				c.high = max(c.high, ev.ID)
				r.obs.Emit(ev)
				n++
			}
		}
		if n > 0 {
			r.met.Recovered(n)
		}
		if page.Reset {
			reset = true
			to := page.LastID
			if to < c.high {
				// The sequence went backwards: Redis lost its data. Continue
				// above every id ever delivered, so that no client can take
				// a new event for one it already has.
				if floor, err := r.raiseSequence(ctx, c.id, c.high); err == nil {
					to = max(to, floor)
				}
			}
			r.log.Warn("redis: the history cannot fill a gap (trimmed, or Redis lost its data); listeners get a reset",
				slog.String("course", c.id), slog.Uint64("delivered", c.last), slog.Uint64("sequence", page.LastID), slog.Uint64("reset to", to))
			c.last = to
			c.high = max(c.high, to)
			r.obs.Emit(&Event{CourseID: c.id, ID: to, Reset: true})
		}
		if page.More() {
			return false, nil
		}
	}
	// The held events, in arrival order. Those that arrived before the read
	// cannot be above the sequence it saw: such an id is forged.
	held := c.held
	c.held = nil
	again := c.refill || c.overflow
	for i, ev := range held {
		switch {
		case ev.ID <= c.last:
		case ev.ID == c.last+1:
			c.last = ev.ID
			c.high = max(c.high, ev.ID)
			r.obs.Emit(ev)
		case i < pre && ev.ID > seq:
			if !reset { // after a reset, held events belong to the old sequence
				r.malformed("id", c.channel, string(ev.JSON), errors.New("id ahead of the course's sequence"))
			}
		default:
			c.held = append(c.held, held[i:]...)
			return false, nil
		}
	}
	if again {
		return false, nil
	}
	c.filling = false
	return true, nil
}

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
// lost its data), a stalled fill, a Cluster subscription that no longer
// receives.
func (r *Redis) reconcile(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Reconcile, commandWait))
	defer cancel()
	if err := r.checkLibrary(ctx, true); err != nil && ctx.Err() == nil {
		r.log.Debug("redis: checking the function library failed", slog.Any("err", err))
	}

	type check struct {
		c    *rcourse
		last uint64
		cmd  *redis.StringCmd
	}
	var checks []check
	r.mu.Lock()
	courses := slices.Collect(maps.Values(r.courses))
	probes := slices.Collect(maps.Values(r.subs))
	r.mu.Unlock()
	for _, c := range courses {
		c.mu.Lock()
		switch {
		case c.dead:
		case c.stalled:
			c.startFill(r)
		case c.known && !c.filling:
			checks = append(checks, check{c: c, last: c.last})
		}
		c.mu.Unlock()
	}
	if len(checks) > 0 {
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
			s, err := ch.cmd.Result()
			var seq uint64
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				continue
			default:
				n, ok := replyUint(s)
				if !ok {
					continue
				}
				seq = n
			}
			if seq == ch.last {
				continue
			}
			c := ch.c
			c.mu.Lock()
			if !c.dead && c.known && !c.filling && c.last == ch.last {
				c.startFill(r) // ahead: missed events; behind: Redis lost its data (a reset)
			}
			c.mu.Unlock()
		}
	}

	if len(probes) > 0 {
		names := make([]string, len(probes))
		for i, p := range probes {
			names[i] = p.probe
		}
		n, err := r.probe(ctx, names)
		if err != nil {
			return
		}
		r.mu.Lock()
		for i, p := range probes {
			if n[i] >= 1 {
				p.misses, p.missSince = 0, time.Time{}
				continue
			}
			if p.misses == 0 {
				p.missSince = time.Now()
			}
			p.misses++
			// go-redis reconnects by itself within seconds; rebuild only a
			// connection that stays deaf longer than that.
			if p.misses >= probeMisses && time.Since(p.missSince) >= min(5*time.Second, 10*r.cfg.Reconcile) &&
				r.subs[p.slot] == p && !p.broken {
				// Redis answers but the connection is not subscribed (a
				// slot moved, or a connection go-redis does not see is
				// dead): open a new one.
				r.log.Info("redis: a pub/sub connection receives nothing; opening a new one", slog.Int("slot", p.slot))
				p.broken = true
			}
		}
		r.mu.Unlock()
		r.wake()
	}
}

// jsonValid tells apart a payload that is not JSON at all from an envelope
// with wrong fields, for the malformed counts.
func jsonValid(s string) bool { return utf8.ValidString(s) && json.Valid([]byte(s)) }
