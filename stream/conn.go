package stream

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"coursestream/observer"
)

// conn is one SSE client. The broker's publishing goroutine calls onEvent,
// which only queues and never blocks. The frames are written by one writer
// at a time, the sink's (see sink): for a stream taken over (direct), the
// request goroutine while it replays, then the stream's turn on the hub's
// workers; otherwise (viaHandler) the request goroutine for the stream's
// whole life.
type conn struct {
	h      *Hub
	req    request
	ctx    context.Context
	cancel context.CancelCauseFunc
	out    sink

	queued atomic.Int64 // bytes of frames in queue

	mu     sync.Mutex
	state  connState
	flags  connFlags
	queue  []*frame
	spare  []*frame // the other queue buffer, swapped in by take
	ending error    // end was called: send the final frame, then stop

	// One per course of the stream, in the request's order (a
	// single-course stream has one). The slice is fixed from newConn on.
	lanes []lane

	// Owned by the writer.
	co     *coalescer
	idText []byte      // the cursor being written (multi-course streams)
	owed   *fixedFrame // the heartbeat of this turn, until an event's write carries it (deliver)

	// Set by Hub.open, released by Hub.release.
	stopAfter func() bool
	timers    []*time.Timer
	opened    time.Time
}

// lane is one course of a stream: its topic, its position and its
// listener.
type lane struct {
	course string
	topic  *topic // the course's record in the hub (Hub.topics), from register to unregister

	liveHead uint64 // under c.mu: the highest id announced while replaying
	// edge is the course's last id when the stream had subscribed: every
	// later event reaches the listener (set by begin).
	edge uint64

	// Owned by the writer.
	pos  uint64 // the last id sent or examined
	sent uint64 // the last id delivered (or the start): the cursor's entry

	unsubscribe func() // set by Hub.open
}

func newConn(h *Hub, ctx context.Context, cancel context.CancelCauseFunc, req request) *conn {
	c := &conn{
		h: h, req: req, ctx: ctx, cancel: cancel, co: newCoalescer(req.coalesce),
		lanes: make([]lane, len(req.courses)),
	}
	for i, course := range req.courses {
		c.lanes[i].course = course
	}
	return c
}

// laneOf returns the lane of course (the stream has it: its listeners are
// the stream's own courses').
func (c *conn) laneOf(course string) *lane {
	if len(c.lanes) == 1 {
		return &c.lanes[0]
	}
	for i := range c.lanes {
		if c.lanes[i].course == course {
			return &c.lanes[i]
		}
	}
	return &c.lanes[0] // not reached: a listener gets its own course's events
}

// cursor is the id line's value of a multi-course stream's next frame (its
// lanes' sent positions, see cursor.Cursor), or nil for a single-course
// stream, whose frames carry the event's own id. The writer calls it, after
// setting the sent position of the frame's course; the bytes are valid
// until the next call.
func (c *conn) cursor() []byte {
	if c.req.ids != idCursor {
		return nil
	}
	b := c.idText[:0]
	for i := range c.lanes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.lanes[i].course...)
		b = append(b, ':')
		b = strconv.AppendUint(b, c.lanes[i].sent, 10)
	}
	c.idText = b
	return b
}

// transport is the stream's metrics label.
func (c *conn) transport() Transport {
	if c.req.ids == idCursor {
		return TransportSSEMulti
	}
	return TransportSSE
}

// sink is where a stream's bytes go, and what differs between the two
// ways of writing them: through the ResponseWriter from the request
// goroutine (viaHandler), or straight to a taken-over socket by the hub's
// workers (direct). It owns how its writer is woken, the coalesce
// window's timer, the bytes it holds back, and how the connection is cut.
//
// The write methods (frame ... finish) are called by the stream's writer
// of the moment only; the methods named ...Locked with c.mu held.
type sink interface {
	// run serves the stream from the request goroutine: it writes the
	// start (begin) and returns once the request goroutine is done with
	// the stream.
	run(st start)

	// frame writes one frame that is not an event's (reset, final...).
	frame(p []byte) bool
	// fixed writes a frame that every stream sends (retry:, heartbeat),
	// framed once.
	fixed(f *fixedFrame) bool
	// event writes a live event's frame, encoded once for every stream;
	// a cursor that is not nil replaces its id line (the shared body is
	// gathered after the stream's own id line, not copied). A beat that is
	// not nil goes out first, in the same write.
	event(f *form, cursor []byte, beat *fixedFrame) bool
	// history writes an event replayed from history (with cursor as id,
	// when not nil).
	history(ev *observer.Event, cursor []byte) bool
	// flush pushes out what is buffered.
	flush() bool
	// finish ends the response cleanly after the final frame.
	finish()

	// armWindow ends the coalesce window after d: the writer then calls
	// closeWindow. dropWindow forgets it.
	armWindow(d time.Duration)
	dropWindow()

	// wakeLocked tells the writer there is work.
	wakeLocked()
	// goLiveLocked: the replay is over.
	goLiveLocked()
	// canInlineLocked reports whether a live frame may be written on the
	// caller's goroutine now (then nobody else writes the stream until
	// c.mu is released); writeInlineLocked writes it.
	canInlineLocked() bool
	writeInlineLocked(f *form, cursor []byte)
	// pendingLocked is the bytes the sink holds that the client has not
	// taken.
	pendingLocked() int
	// abort cuts the connection, so that a write blocked on it returns at
	// once; clean and killed say how the stream is ending.
	abort(clean, killed bool)
	// releaseLocked gives back what the sink holds (timers) at the end.
	releaseLocked()
}

// start is where a stream begins: per course, after pos, with a reset
// frame first when reset is set, replaying page (read after pos) before
// anything else.
type start struct{ lanes []laneStart }

type laneStart struct {
	pos   uint64
	edge  uint64 // the course's last id, read after subscribing
	reset bool
	page  observer.Page
}

// startPosition reads where each course of the stream starts: the
// history after the position of a resumed course, the last id of one
// that starts from now. The last ids of the courses from now are one
// broker read (one Redis round trip for them all).
func (c *conn) startPosition(ctx context.Context) (start, error) {
	st := start{lanes: make([]laneStart, len(c.lanes))}
	var fresh []int // the lanes that start from now
	for i := range c.lanes {
		after, ok := c.resumeFrom(c.lanes[i].course)
		if !ok {
			fresh = append(fresh, i)
			continue
		}
		ls, err := c.resumeLane(ctx, c.lanes[i].course, after)
		if err != nil {
			return start{}, err
		}
		st.lanes[i] = ls
	}
	if len(fresh) == 0 {
		return st, nil
	}
	courses := make([]string, len(fresh))
	for j, i := range fresh {
		courses[j] = c.lanes[i].course
	}
	last, err := c.h.broker.LastIDs(ctx, courses)
	if err != nil {
		return start{}, err
	}
	for j, i := range fresh {
		// From now on (with a reset first when the request's id could not be read).
		st.lanes[i] = laneStart{pos: last[j], edge: last[j], reset: c.req.badID, page: observer.Page{LastID: last[j]}}
	}
	return st, nil
}

// resumeFrom returns the position the request resumes course from, and
// false when the course starts from now: no resumption asked, an id
// that is not one of ours (it cannot be continued), or a course the
// cursor does not name.
func (c *conn) resumeFrom(course string) (uint64, bool) {
	after, named := c.req.positions[course]
	return after, c.req.resume && !c.req.badID && named
}

// resumeLane is the start of a course resumed after its position: the
// history page from there, or a reset when it cannot be continued.
func (c *conn) resumeLane(ctx context.Context, course string, after uint64) (laneStart, error) {
	p, err := c.h.broker.History(ctx, course, after, replayPage)
	if err != nil {
		return laneStart{}, err
	}
	if p.Reset {
		return laneStart{pos: p.LastID, edge: p.LastID, reset: true, page: observer.Page{LastID: p.LastID}}, nil
	}
	return laneStart{pos: after, edge: max(p.LastID, after), page: p}, nil
}

// onEvent is the observer listener. It never blocks: while replaying it
// only notes the newest id; live, it queues the event for the writer, and a
// client whose waiting frames would pass Config.ClientBuffer is
// disconnected (it resumes with Last-Event-ID).
func (c *conn) onEvent(l *lane, ev *observer.Event) {
	c.mu.Lock()
	switch c.state {
	case stateStopped:
		c.mu.Unlock()
		return
	case stateReplaying:
		if ev.Reset || ev.ID > l.liveHead {
			l.liveHead = ev.ID
		}
		if c.queuesWhileReplayingLocked() && (ev.Reset || c.req.types.Has(ev.Type)) {
			f := l.topic.frameOf(ev)
			if size := int64(len(f.named.sse)); c.queued.Load()+size > int64(c.h.cfg.ClientBuffer) {
				c.overflowLocked()
			} else {
				c.queue = append(c.queue, f)
				c.queued.Add(size)
			}
		}
		c.mu.Unlock()
		return
	}
	if !ev.Reset && !c.req.types.Has(ev.Type) {
		c.mu.Unlock()
		return
	}
	f := l.topic.frameOf(ev)
	size := int64(len(f.named.sse))
	if q := c.queued.Load() + int64(c.out.pendingLocked()); q > 0 && q+size > int64(c.h.cfg.ClientBuffer) {
		c.tooSlowLocked()
		c.mu.Unlock()
		return
	}
	if c.writeInlineLocked(l, f) {
		c.mu.Unlock()
		c.h.cfg.Metrics.Delivered(c.transport(), time.Since(time.UnixMilli(ev.Timestamp)))
		return
	}
	c.queue = append(c.queue, f)
	c.queued.Add(size)
	c.wakeLocked()
	c.mu.Unlock()
}

// queuesWhileReplayingLocked reports whether live events are queued while
// the stream replays. A multi-course stream does, up to
// Config.ClientBuffer, so that what arrives during its replay goes out in
// the order the instance received it, across courses: each course
// replays from history up to its edge, and everything after comes from
// the queue. Past the bound (flagOverflow), and on a single-course stream
// (one course has one order), history alone holds what the client has not
// seen, up to the newest announced id. c.mu is held.
func (c *conn) queuesWhileReplayingLocked() bool {
	return c.req.ids == idCursor && !c.flags.has(flagOverflow)
}

// writeInlineLocked writes a live event from the publishing goroutine
// itself when nothing else is due for a stream of a small course and its
// sink allows it (direct, idle): no hand-off adds latency. c.mu is held.
func (c *conn) writeInlineLocked(l *lane, f *frame) bool {
	ev := f.ev
	// The sink first: only when it can write inline is the writer's
	// position ours to read (no turn is queued, nobody else writes).
	if !c.out.canInlineLocked() || len(c.queue) > 0 || c.beatPendingLocked() || c.ending != nil ||
		ev.Reset || ev.ID <= l.pos || c.co.enabled() || l.topic.streams.Load() > inlineFanout {
		return false
	}
	l.pos, l.sent = ev.ID, ev.ID
	c.out.writeInlineLocked(f.form(c.req.dispatch), c.cursor())
	return true
}

// heartbeat is the hub's tick (see beatTickLocked).
func (c *conn) heartbeat() {
	c.mu.Lock()
	if !c.stoppedLocked() && c.beatTickLocked() {
		c.wakeLocked()
	}
	c.mu.Unlock()
}

// wakeLocked tells the writer there is work. c.mu is held.
func (c *conn) wakeLocked() { c.out.wakeLocked() }

// stop ends the stream now: the context is cancelled and the connection
// cut (unless it is ending cleanly), so a write blocked on a peer that does
// not read returns.
func (c *conn) stop(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(cause)
}

// kill stops the stream and cuts its connection even while it ends
// cleanly (its final bytes not taken within drainTimeout, or Hub.Close).
func (c *conn) kill(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killLocked(cause)
}

// tooSlow stops a client whose waiting frames would pass
// Config.ClientBuffer (it resumes with Last-Event-ID), counting what it
// loses here as dropped.
func (c *conn) tooSlow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tooSlowLocked()
}

func (c *conn) tooSlowLocked() {
	if c.state != stateStopped {
		c.h.cfg.Metrics.Dropped(len(c.queue) + 1)
	}
	c.stopLocked(errSlow)
}

// after runs f in d, unless the stream is released first. The timer may
// fire at once (a token already expiring): c.timers is guarded by c.mu.
func (c *conn) after(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, time.AfterFunc(d, f))
}

// end ends the stream on purpose (shutdown, age): the writer sends a final
// frame with a jittered retry: and finishes the response. A client that
// does not take the frame within drainTimeout is cut anyway.
func (c *conn) end(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.endLocked(cause) {
		return
	}
	c.wakeLocked()
	c.timers = append(c.timers, time.AfterFunc(drainTimeout, func() { c.kill(cause) })) // c.mu is held
}

// take returns the queued events and what else is due, and empties the
// queue (the two buffers alternate: no allocation once they have grown).
func (c *conn) take() (batch []*frame, beat bool, ending error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch, ending = c.queue, c.ending
	beat = c.takeBeatLocked(len(batch) > 0)
	c.queue, c.spare = c.spare[:0], batch
	return batch, beat, ending
}

// begin writes the retry: frame, then the resets and the replay, and
// switches the connection to live events. The sink has sent the headers.
func (c *conn) begin(st start) bool {
	if !c.out.fixed(c.h.retry) || !c.out.flush() {
		return false
	}
	pages := make([]observer.Page, len(c.lanes))
	for i, ls := range st.lanes {
		c.lanes[i].pos, c.lanes[i].sent, c.lanes[i].edge = ls.pos, ls.pos, ls.edge
		pages[i] = ls.page
	}
	for i, ls := range st.lanes {
		if ls.reset && !c.writeReset(&c.lanes[i], ls.pos) {
			return false
		}
	}
	return c.catchUp(pages)
}

// deliver writes what was queued since the last call and flushes once.
// It reports false when the stream has ended.
func (c *conn) deliver() bool {
	batch, beat, ending := c.take()
	defer clear(batch) // drop the references the spare buffer would keep
	if beat {
		c.owed = heartbeat // the turn's first event write carries it: no write of its own
	}
	for _, f := range batch {
		ev := f.ev
		l := c.laneOf(ev.CourseID)
		size := int64(len(f.named.sse))
		switch {
		case ev.Reset:
			if kept := c.co.flush(); kept != nil {
				c.dropWindow()
				if !c.writeEvents(kept) {
					return false
				}
			}
			c.h.cfg.Metrics.ResetSent()
			l.pos, l.sent = ev.ID, ev.ID
			if !c.out.event(f.form(c.req.dispatch), c.cursor(), c.payBeat()) {
				return false
			}
		case ev.ID <= l.pos:
			// already sent from history
		case c.co.enabled():
			l.pos = ev.ID
			if c.co.add(f) {
				c.startWindow()
			}
		default:
			l.pos = ev.ID
			if !c.writeEvent(l, f) {
				return false
			}
		}
		c.queued.Add(-size)
	}
	if owed := c.payBeat(); owed != nil && !c.out.fixed(owed) { // no event carried it
		return false
	}
	if ending != nil {
		c.writeEvents(c.co.flush())
		c.finalFrame(ending)
		return false
	}
	return c.out.flush()
}

// startWindow arms the end of a coalesce window.
func (c *conn) startWindow() { c.out.armWindow(c.co.window) }

// dropWindow forgets an open coalesce window whose events were just sent.
func (c *conn) dropWindow() { c.out.dropWindow() }

// closeWindow sends what the coalesce window kept.
func (c *conn) closeWindow() bool {
	return c.writeEvents(c.co.flush()) && c.out.flush()
}

// catchUp replays each course's history after its position until it
// meets the course's live events, then, once no course has been announced
// past its position meanwhile, switches the connection to live queueing
// (under one lock, for every course at once). History, not the queue,
// holds what a replaying client has not seen, so a long replay never
// overflows.
func (c *conn) catchUp(pages []observer.Page) bool {
	for {
		for i := range c.lanes {
			if !c.replay(&c.lanes[i], pages[i]) {
				return false
			}
			pages[i] = observer.Page{}
		}
		c.mu.Lock()
		behind := false
		for i := range c.lanes {
			// Queued while replaying, what came after each edge is in the
			// queue; otherwise history must reach what was announced.
			behind = behind || !c.queuesWhileReplayingLocked() && c.lanes[i].liveHead > c.lanes[i].pos
		}
		if !behind {
			c.goLiveLocked()
			if c.hasWorkLocked() {
				c.wakeLocked()
			}
			c.mu.Unlock()
			return true
		}
		c.mu.Unlock()
	}
}

// replay replays one course's history after l.pos, from page on, until it
// reaches the course's edge (the queue has what came after), or, when the
// stream does not queue while replaying, the newest id announced for it.
func (c *conn) replay(l *lane, page observer.Page) bool {
	stuck := 0 // history reads in a row that did not reach an announced id
	for {
		c.mu.Lock()
		queues := c.queuesWhileReplayingLocked()
		c.mu.Unlock()
		replayed := 0
		for _, ev := range page.Events {
			if ev.ID <= l.pos || queues && ev.ID > l.edge {
				continue
			}
			l.pos = ev.ID
			if !c.req.types.Has(ev.Type) {
				continue
			}
			replayed++
			if c.co.enabled() {
				c.co.add(newFrame(ev)) // kept until the window closes
			} else if !c.writeHistory(l, ev) {
				return false
			}
		}
		c.h.cfg.Metrics.Replayed(replayed)
		if !c.writeEvents(c.co.flush()) {
			return false
		}
		if page.Reset {
			if !c.writeReset(l, page.LastID) {
				return false
			}
			l.pos = page.LastID
		}
		if !c.out.flush() {
			return false
		}
		c.mu.Lock()
		head := l.liveHead
		if c.queuesWhileReplayingLocked() {
			head = l.edge
			if l.pos >= head {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
		if !page.More() && head <= l.pos {
			return true
		}
		var err error
		page, err = c.h.broker.History(c.ctx, l.course, l.pos, replayPage)
		if err != nil {
			if c.ctx.Err() == nil {
				c.h.log.Warn("stream: history read failed; closing the stream", slog.String("course", l.course), slog.Any("err", err))
				c.stop(err)
			}
			return false
		}
		if len(page.Events) > 0 || page.Reset || head <= l.pos || page.More() {
			stuck = 0
			continue
		}
		// The broker announced an id its history does not show (yet). Ask
		// again a few times; then tell the client to reset rather than go
		// on with a silent gap.
		if stuck++; stuck < 5 {
			select {
			case <-c.ctx.Done():
				return false
			case <-time.After(time.Duration(stuck) * 5 * time.Millisecond):
			}
			continue
		}
		c.h.log.Warn("stream: announced event missing from history; resetting the client", slog.String("course", l.course),
			slog.Uint64("announced", head), slog.Uint64("last", page.LastID))
		page = observer.Page{Reset: true, LastID: max(head, page.LastID)}
		stuck = 0
	}
}

// writeEvents writes frames without flushing.
func (c *conn) writeEvents(fs []*frame) bool {
	for _, f := range fs {
		if !c.writeEvent(c.laneOf(f.ev.CourseID), f) {
			return false
		}
	}
	return true
}

// writeEvent writes one event's frame, shared by every stream, and counts
// it as delivered.
func (c *conn) writeEvent(l *lane, f *frame) bool {
	l.sent = f.ev.ID
	if !c.out.event(f.form(c.req.dispatch), c.cursor(), c.payBeat()) {
		return false
	}
	c.h.cfg.Metrics.Delivered(c.transport(), time.Since(time.UnixMilli(f.ev.Timestamp)))
	return true
}

// payBeat returns the turn's heartbeat, if one is owed, for the write
// about to go out to carry, and clears it. Called by the writer.
func (c *conn) payBeat() *fixedFrame {
	b := c.owed
	c.owed = nil
	return b
}

// writeHistory writes one replayed event and counts it as delivered.
func (c *conn) writeHistory(l *lane, ev *observer.Event) bool {
	l.sent = ev.ID
	if !c.out.history(ev, c.cursor()) {
		return false
	}
	c.h.cfg.Metrics.Delivered(c.transport(), time.Since(time.UnixMilli(ev.Timestamp)))
	return true
}

// writeReset tells the client that l's course must be refetched, then
// followed after last.
func (c *conn) writeReset(l *lane, last uint64) bool {
	c.h.cfg.Metrics.ResetSent()
	l.sent = last
	cur := c.cursor()
	return c.out.frame(appendReset(make([]byte, 0, 96+len(l.course)+len(cur)), l.course, last, cur))
}

// finalFrame tells the client when to come back (Config.Retry plus a random
// share of Config.DrainJitter, so that clients spread their reconnections;
// see appendDrain), and ends the stream cleanly.
func (c *conn) finalFrame(cause error) {
	jitter := time.Duration(rand.Int64N(int64(c.h.cfg.DrainJitter)))
	b := appendDrain(make([]byte, 0, 128), cause, c.h.cfg.Retry+jitter)
	if c.out.frame(b) && c.out.flush() {
		c.mu.Lock()
		c.cleanLocked()
		c.mu.Unlock()
		c.out.finish()
	}
	c.stop(cause)
}
