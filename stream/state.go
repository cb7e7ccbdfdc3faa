package stream

// connState is where a stream is in its life. It only moves forward:
//
//	stateReplaying ──goLiveLocked──▶ stateLive
//	      │                              │
//	      └──────────stopLocked──────────┴──▶ stateStopped
//
// While replaying, the listener only notes the newest announced id (history
// holds what the client has not seen); live, it queues frames for the
// writer; stopped, nothing more is queued or written. A stream asked to end
// on purpose (shutdown, age, token expiry) keeps its state and has its
// cause in conn.ending until the writer has sent the final frame.
type connState uint8

const (
	stateReplaying connState = iota
	stateLive
	stateStopped
)

// connFlags are the facts about a stream that are not its state, as bits.
// Every change of them and of connState is in this file. All under c.mu.
type connFlags uint8

const (
	// flagBeat: a heartbeat is due.
	flagBeat connFlags = 1 << iota
	// flagClean: the final frame is out: the stream ends without cutting
	// the connection.
	flagClean
	// flagKilled: stop at any cost: even a clean end is cut.
	flagKilled
	// flagReleased: the request goroutine is done with the ResponseWriter
	// (Hub.release, or a refused request): nothing may touch it any more.
	flagReleased
	// flagOverflow: the live events queued while a multi-course stream
	// replays passed Config.ClientBuffer and were dropped: its replay
	// reads them from history instead (see conn.queuesWhileReplaying).
	flagOverflow
	// flagBeatSoon: a heartbeat was marked at the hub's last tick; it goes
	// out with the stream's next write of events, or at the next tick (as
	// flagBeat) if no write has carried it by then (see beatTickLocked).
	flagBeatSoon
)

func (f connFlags) has(b connFlags) bool { return f&b != 0 }

// stoppedLocked reports whether the stream is stopped. c.mu is held.
func (c *conn) stoppedLocked() bool { return c.state == stateStopped }

// isStopped reports whether the stream is stopped.
func (c *conn) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateStopped
}

// goLiveLocked ends the replay: from now on live events are queued and
// the sink's live writers write. c.mu is held.
func (c *conn) goLiveLocked() {
	if c.state != stateReplaying {
		return
	}
	c.state = stateLive
	c.out.goLiveLocked()
}

// stopLocked stops the stream: its context is cancelled with cause, and
// its connection is cut (unless the request goroutine is done with it, or
// the sink lets a clean end finish). c.mu is held.
func (c *conn) stopLocked(cause error) {
	if c.state != stateStopped {
		c.state = stateStopped
		c.cancel(cause)
	}
	if !c.flags.has(flagReleased) {
		c.out.abort(c.flags.has(flagClean), c.flags.has(flagKilled))
	}
}

// killLocked stops the stream and cuts its connection even while it ends
// cleanly. c.mu is held.
func (c *conn) killLocked(cause error) {
	c.flags |= flagKilled
	c.stopLocked(cause)
}

// endLocked asks the writer to send a final frame with cause and stop; it
// reports false when the stream is stopped or ending already. c.mu is held.
func (c *conn) endLocked(cause error) bool {
	if c.ending != nil || c.state == stateStopped {
		return false
	}
	c.ending = cause
	return true
}

// cleanLocked marks the final frame as out. c.mu is held.
func (c *conn) cleanLocked() { c.flags |= flagClean }

// releaseLocked marks the stream as over for good: stopped, and its
// ResponseWriter no longer touched. c.mu is held.
func (c *conn) releaseLocked() {
	c.state = stateStopped
	c.flags |= flagReleased
}

// overflowLocked drops what a replaying stream queued: history holds it.
// c.mu is held.
func (c *conn) overflowLocked() {
	c.flags |= flagOverflow
	clear(c.queue)
	c.queue = c.queue[:0]
	c.queued.Store(0)
}

// beatTickLocked is the hub's heartbeat tick, every half
// Config.Heartbeat. A heartbeat marked at the last tick that no write has
// carried since becomes due now, and the writer must be woken (it reports
// true); otherwise one is marked, to ride the stream's next write of
// events. So a comment goes out at least every Config.Heartbeat (marked
// at one tick, out by the next), an idle stream gets one every
// Config.Heartbeat, as with one tick a period, and a stream that carries
// events sends its comments inside those writes, never in a write of
// their own. c.mu is held.
func (c *conn) beatTickLocked() (wake bool) {
	if c.flags.has(flagBeatSoon) {
		c.flags = c.flags&^flagBeatSoon | flagBeat
		return true
	}
	c.flags |= flagBeatSoon
	return false
}

// beatPendingLocked reports whether a heartbeat is due or marked: a live
// event then waits for the writer's turn, which carries the heartbeat
// with it, rather than being written inline. c.mu is held.
func (c *conn) beatPendingLocked() bool { return c.flags.has(flagBeat | flagBeatSoon) }

// takeBeatLocked reports whether the writer's turn writes a heartbeat (a
// due one, or a marked one when the turn has events to write too) and
// clears it. c.mu is held.
func (c *conn) takeBeatLocked(events bool) bool {
	if !c.flags.has(flagBeat) && (!events || !c.flags.has(flagBeatSoon)) {
		return false
	}
	c.flags &^= flagBeat | flagBeatSoon
	return true
}

// hasWorkLocked reports whether the writer has something to do: queued
// frames, a heartbeat, an end. c.mu is held.
func (c *conn) hasWorkLocked() bool {
	return c.state != stateStopped && (len(c.queue) > 0 || c.flags.has(flagBeat) || c.ending != nil)
}
