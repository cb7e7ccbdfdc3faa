package observer

import (
	"encoding/json"
	"errors"
	"log/slog"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// receive is the receive loop of connection p: it reads what go-redis
// hands over from the socket until the PubSub is closed (by control), and
// never waits on Redis itself.
func (r *Redis) receive(p *psub, ch <-chan any) {
	for m := range ch {
		switch m := m.(type) {
		case *redis.Message:
			r.onMessage(p, m)
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				r.onSubscribed(p, m.Channel)
			case "unsubscribe", "sunsubscribe":
				r.onUnsubscribed(p, m.Channel)
			}
		}
	}
}

// onSubscribed handles a subscription confirmation. A confirmation of the
// probe already confirmed means go-redis reconnected and resubscribed
// silently; each course's confirmation then has what was published
// meanwhile read from the history (rcourse.confirm).
func (r *Redis) onSubscribed(p *psub, channel string) {
	if channel != p.probe {
		if c := r.courseOn(p, channel); c != nil {
			c.confirm(r)
		}
		return
	}
	if p.probeSeen {
		r.met.Reconnected()
		r.log.Info("redis: pub/sub connection re-established; reading what was missed from history", slog.Int("slot", p.slot))
		r.mu.Lock()
		clear(p.unsub) // their confirmations were lost with the connection
		r.mu.Unlock()
	}
	p.probeSeen = true
}

// onUnsubscribed handles an unsubscription. One nobody asked for means the
// slot moved (Cluster) or the connection was unsubscribed: it is rebuilt,
// or the course subscribed again.
func (r *Redis) onUnsubscribed(p *psub, channel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.confirmUnsubscribe(channel) {
		return
	}
	if r.subs[p.slot] != p {
		return // an old connection
	}
	if channel != p.probe && p.channels[channel] == nil {
		return
	}
	switch {
	case r.cluster != nil:
		r.log.Info("redis: a slot moved; subscribing on its new node", slog.Int("slot", p.slot), slog.String("channel", channel))
		p.broken = true
	case channel == p.probe:
		r.log.Info("redis: the pub/sub connection was unsubscribed; opening a new one")
		p.broken = true
	default:
		c := p.channels[channel]
		delete(p.channels, channel)
		c.sub = nil // subscribe again; the confirmation triggers a fill
	}
	r.wake()
}

// confirmUnsubscribe counts off an UNSUBSCRIBE the control sent on
// channel, and reports whether there was one. Redis.mu is held.
func (p *psub) confirmUnsubscribe(channel string) bool {
	n := p.unsub[channel]
	switch {
	case n == 0:
		return false
	case n == 1:
		delete(p.unsub, channel)
	default:
		p.unsub[channel] = n - 1
	}
	return true
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
// per kind and dropped; an event goes to its course (rcourse.live).
func (r *Redis) onMessage(p *psub, m *redis.Message) {
	if m.Channel == p.probe {
		r.onCanary(p, m.Payload)
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

// jsonValid tells apart a payload that is not JSON at all from an envelope
// with wrong fields, for the malformed counts.
func jsonValid(s string) bool { return utf8.ValidString(s) && json.Valid([]byte(s)) }
