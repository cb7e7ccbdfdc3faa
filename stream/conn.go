package stream

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"coursestream/observer"
)

// conn is one SSE client. Two goroutines touch it: the broker's publishing
// goroutine calls onEvent (which never blocks), and the request goroutine
// runs serve, the only writer to the client.
type conn struct {
	h      *Hub
	req    request
	ctx    context.Context
	cancel context.CancelCauseFunc
	w      http.ResponseWriter
	rc     *http.ResponseController

	notify chan struct{} // the queue, a heartbeat or an end is waiting (cap 1)
	queued atomic.Int64  // bytes of frames in queue

	mu        sync.Mutex
	queue     []*observer.Event
	spare     []*observer.Event // the other queue buffer, swapped in by take
	replaying bool              // catching up from history: events are not queued
	liveHead  uint64            // highest id announced while replaying
	beat      bool              // a heartbeat is due
	ending    error             // end was called: send the final frame, then stop
	stopped   bool              // no more events are queued
	clean     bool              // the final frame is out: end without cutting the connection
	finished  bool              // the handler returned: rc must not be used

	armed time.Time // the write deadline last set; request goroutine only

	// Set by Hub.open, released by Hub.close.
	unsubscribe func()
	stopAfter   func() bool
	ageTimer    *time.Timer
	opened      time.Time
}

func newConn(h *Hub, ctx context.Context, cancel context.CancelCauseFunc, req request, w http.ResponseWriter) *conn {
	w = innermost(w)
	return &conn{
		h: h, req: req, ctx: ctx, cancel: cancel, w: w, rc: http.NewResponseController(w),
		notify: make(chan struct{}, 1), replaying: true,
	}
}

// innermost unwraps middleware writers (request logging, ...) down to
// net/http's own: every frame is written and flushed directly, not through
// a chain of wrappers. Headers set on any layer share one map.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// start is where a stream begins: after pos, with a reset frame first when
// reset is set, replaying page (read after pos) before anything else.
type start struct {
	pos   uint64
	reset bool
	page  observer.Page
}

func (c *conn) startPosition(ctx context.Context) (start, error) {
	if !c.req.resume || c.req.badID {
		// From now on; an id that is not one of ours cannot be continued.
		last, err := c.h.broker.LastID(ctx, c.req.course)
		return start{pos: last, reset: c.req.badID, page: observer.Page{LastID: last}}, err
	}
	p, err := c.h.broker.History(ctx, c.req.course, c.req.lastID, replayPage)
	if err != nil {
		return start{}, err
	}
	if p.Reset {
		return start{pos: p.LastID, reset: true, page: observer.Page{LastID: p.LastID}}, nil
	}
	return start{pos: c.req.lastID, page: p}, nil
}

// onEvent is the observer listener. It never blocks: while replaying it
// only notes the newest id; live, it queues the event, and a client whose
// waiting frames would pass Config.ClientBuffer is disconnected (it resumes
// with Last-Event-ID).
func (c *conn) onEvent(ev *observer.Event) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	if c.replaying {
		if ev.Reset || ev.ID > c.liveHead {
			c.liveHead = ev.ID
		}
		c.mu.Unlock()
		return
	}
	if !ev.Reset && !c.req.types.Has(ev.Type) {
		c.mu.Unlock()
		return
	}
	size := int64(len(ev.Frame))
	if q := c.queued.Load(); q > 0 && q+size > int64(c.h.cfg.ClientBuffer) {
		dropped := len(c.queue) + 1
		c.mu.Unlock()
		c.h.cfg.Metrics.Dropped(dropped)
		c.stop(errSlow)
		return
	}
	c.queue = append(c.queue, ev)
	c.queued.Add(size)
	c.mu.Unlock()
	c.wake()
}

func (c *conn) heartbeat() {
	c.mu.Lock()
	c.beat = true
	c.mu.Unlock()
	c.wake()
}

func (c *conn) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// stop ends the stream now: the request context is cancelled and a write
// blocked on a peer that does not read is interrupted (unless the stream
// is ending cleanly: then net/http must still write the response's end).
func (c *conn) stop(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.cancel(cause)
	if !c.finished && !c.clean {
		_ = c.rc.SetWriteDeadline(time.Now())
	}
}

// end ends the stream on purpose (shutdown, age): serve sends a final frame
// with a jittered retry: and returns. A client that does not take the frame
// within drainTimeout is cut anyway.
func (c *conn) end(cause error) {
	c.mu.Lock()
	first := c.ending == nil && !c.stopped
	if first {
		c.ending = cause
	}
	c.mu.Unlock()
	if first {
		c.wake()
		time.AfterFunc(drainTimeout, func() { c.stop(cause) })
	}
}

// finish marks the handler as returning: rc is no longer usable.
func (c *conn) finish() {
	c.mu.Lock()
	c.finished, c.stopped = true, true
	c.mu.Unlock()
}

// take returns the queued events and what else is due, and empties the
// queue (the two buffers alternate: no allocation once they have grown).
func (c *conn) take() (batch []*observer.Event, beat bool, ending error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch, beat, ending = c.queue, c.beat, c.ending
	c.queue, c.spare = c.spare[:0], batch
	c.beat = false
	return batch, beat, ending
}

// serve writes the stream until the context ends: the retry: frame, then
// the reset or replay, then live events. It runs on the request goroutine;
// the work is in begin and deliver so that the frame left on the stack
// while serve waits is small.
func (c *conn) serve(st start) {
	co := newCoalescer(c.req.coalesce)
	pos, ok := c.begin(st, co)
	var window <-chan time.Time
	for ok {
		select {
		case <-c.ctx.Done():
			return
		case <-window:
			window = nil
			ok = c.writeEvents(co.flush()) && c.flush()
		case <-c.notify:
			ok = c.deliver(&pos, co, &window)
		}
	}
}

// begin writes the headers and the retry: frame, then the reset or the
// replay, and switches the connection to live events.
//
//go:noinline
func (c *conn) begin(st start, co *coalescer) (pos uint64, ok bool) {
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.w.WriteHeader(http.StatusOK)
	if !c.write(c.h.retry) || !c.flush() {
		return 0, false
	}
	pos = st.pos
	if st.reset && !c.writeReset(pos) {
		return 0, false
	}
	return pos, c.catchUp(&pos, st.page, co)
}

// deliver writes what was queued since the last call and flushes once.
// It reports false when the stream has ended.
//
//go:noinline
func (c *conn) deliver(pos *uint64, co *coalescer, window *<-chan time.Time) bool {
	batch, beat, ending := c.take()
	defer clear(batch) // drop the references the spare buffer would keep
	for _, ev := range batch {
		size := int64(len(ev.Frame))
		switch {
		case ev.Reset:
			if !c.writeEvents(co.flush()) || !c.writeReset(ev.ID) {
				return false
			}
			*pos = ev.ID
		case ev.ID <= *pos:
			// already sent from history
		case co.enabled():
			*pos = ev.ID
			if co.add(ev) && *window == nil {
				*window = co.start()
			}
		default:
			*pos = ev.ID
			if !c.writeEvent(ev) {
				return false
			}
		}
		c.queued.Add(-size)
	}
	if beat && !c.write(heartbeatFrame) {
		return false
	}
	if ending != nil {
		c.writeEvents(co.flush())
		c.finalFrame(ending)
		return false
	}
	return c.flush()
}

// catchUp replays history after *pos until it meets the live events, then
// switches the connection to live queueing. History, not the queue, holds
// what a replaying client has not seen, so a long replay never overflows.
func (c *conn) catchUp(pos *uint64, page observer.Page, co *coalescer) bool {
	stuck := 0 // history reads in a row that did not reach an announced id
	for {
		replayed := 0
		for _, ev := range page.Events {
			if ev.ID <= *pos {
				continue
			}
			*pos = ev.ID
			if !c.req.types.Has(ev.Type) {
				continue
			}
			replayed++
			if co.enabled() {
				co.add(ev)
			} else if !c.writeEvent(ev) {
				return false
			}
		}
		c.h.cfg.Metrics.Replayed(replayed)
		if !c.writeEvents(co.flush()) {
			return false
		}
		if page.Reset {
			if !c.writeReset(page.LastID) {
				return false
			}
			*pos = page.LastID
		}
		if !c.flush() {
			return false
		}
		c.mu.Lock()
		if !page.More() && c.liveHead <= *pos {
			c.replaying = false
			c.mu.Unlock()
			return true
		}
		head := c.liveHead
		c.mu.Unlock()
		var err error
		page, err = c.h.broker.History(c.ctx, c.req.course, *pos, replayPage)
		if err != nil {
			if c.ctx.Err() == nil {
				c.h.log.Warn("stream: history read failed; closing the stream", slog.String("course", c.req.course), slog.Any("err", err))
				c.stop(err)
			}
			return false
		}
		if len(page.Events) > 0 || page.Reset || head <= *pos || page.More() {
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
		c.h.log.Warn("stream: announced event missing from history; resetting the client", slog.String("course", c.req.course),
			slog.Uint64("announced", head), slog.Uint64("last", page.LastID))
		page = observer.Page{Reset: true, LastID: max(head, page.LastID)}
		stuck = 0
	}
}

// writeEvents writes frames without flushing.
func (c *conn) writeEvents(evs []*observer.Event) bool {
	for _, ev := range evs {
		if !c.writeEvent(ev) {
			return false
		}
	}
	return true
}

// writeEvent writes one event's frame, shared by every subscriber, and
// counts it as delivered.
func (c *conn) writeEvent(ev *observer.Event) bool {
	if !c.write(ev.Frame) {
		return false
	}
	c.h.cfg.Metrics.Delivered(time.Since(time.UnixMilli(ev.Timestamp)))
	return true
}

func (c *conn) writeReset(last uint64) bool {
	id := strconv.AppendUint(nil, last, 10)
	b := make([]byte, 0, 96+len(c.req.course))
	b = append(b, "id: "...)
	b = append(b, id...)
	b = append(b, "\nevent: "+observer.TypeReset+"\ndata: {\"courseId\":\""...)
	b = append(b, c.req.course...)
	b = append(b, `","lastEventId":"`...)
	b = append(b, id...)
	b = append(b, "\"}\n\n"...)
	c.h.cfg.Metrics.ResetSent()
	return c.write(b)
}

// finalFrame tells the client when to come back (Config.Retry plus a random
// share of Config.DrainJitter, so that clients spread their reconnections),
// flushes, and stops the stream. The frame sets retry: for EventSource and
// carries the same delay as a DrainEvent for libraries that reconnect by
// themselves (EventSource does not show retry: to scripts). It has no id
// line, so the client's last event id is unchanged, and its event name
// cannot be a course event type, so no course listener fires.
func (c *conn) finalFrame(cause error) {
	jitter := time.Duration(rand.Int64N(int64(c.h.cfg.DrainJitter)))
	ms := strconv.AppendInt(nil, (c.h.cfg.Retry + jitter).Milliseconds(), 10)
	b := make([]byte, 0, 128)
	b = append(b, ": "+cause.Error()+"\nevent: "+DrainEvent+"\ndata: {\"retryMs\":"...)
	b = append(b, ms...)
	b = append(b, "}\nretry: "...)
	b = append(b, ms...)
	b = append(b, "\n\n"...)
	if c.write(b) && c.flush() {
		// Out: end the request normally, so that net/http closes the
		// chunked body properly (a clean end, not a cut connection).
		c.mu.Lock()
		c.clean = true
		c.mu.Unlock()
	}
	c.stop(cause)
}

// DrainEvent is the SSE event name of the final frame of a stream ended on
// purpose (shutdown, --max-stream-age); its data is {"retryMs": N}, the
// delay after which to reconnect. The colon keeps it outside the pattern of
// course event types.
const DrainEvent = "coursestream:drain"

var heartbeatFrame = []byte(": hb\n\n")

// write writes p to the client (buffered by net/http until flush), with the
// write deadline armed. An error stops the stream.
func (c *conn) write(p []byte) bool {
	c.arm()
	if _, err := c.w.Write(p); err != nil {
		c.stop(err)
		return false
	}
	return true
}

func (c *conn) flush() bool {
	c.arm()
	if err := c.rc.Flush(); err != nil {
		c.stop(err)
		return false
	}
	return true
}

// arm pushes the write deadline forward once half of it has passed (a
// deadline per write would cost a runtime call each), so that a peer that
// takes no bytes for Config.WriteTimeout is dropped. A stopped stream keeps
// the deadline stop set.
func (c *conn) arm() {
	now := time.Now()
	timeout := c.h.cfg.WriteTimeout
	if now.Before(c.armed.Add(-timeout / 2)) {
		return
	}
	c.mu.Lock()
	if !c.stopped {
		c.armed = now.Add(timeout)
		_ = c.rc.SetWriteDeadline(c.armed)
	}
	c.mu.Unlock()
}
