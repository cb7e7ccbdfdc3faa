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

	"github.com/r3labs/sse/v2"

	"coursestream/observer"
)

// conn is one SSE client. Three goroutines touch it:
//   - the broker's publishing goroutine calls onEvent (must not block);
//   - the feeder (feed) moves history and queued events to r3labs;
//   - r3labs' ServeHTTP, on the request goroutine, writes them (writer).
//
// The handler owns the feeder: it waits for it before returning.
type conn struct {
	h      *Hub
	id     string // the r3labs stream id, unique per connection
	req    request
	ctx    context.Context
	cancel context.CancelCauseFunc
	rc     *http.ResponseController

	ready   chan struct{} // closed once r3labs has registered its subscriber
	drained chan struct{} // a frame was flushed (cap 1)
	notify  chan struct{} // the queue or a heartbeat is waiting (cap 1)

	// Bytes of frames: handed to r3labs, written by it, and queued here.
	// handed-written+queued is what waits for this client.
	handed, written, queued atomic.Int64

	mu        sync.Mutex
	queue     []*observer.Event
	replaying bool   // catching up from history: events are not queued
	liveHead  uint64 // highest id announced while replaying
	beat      bool   // a heartbeat is due
	ending    error  // end was called: send the final frame, then stop
	stopped   bool   // no more events are queued
	finished  bool   // the handler returned: rc must not be used
}

func newConn(h *Hub, ctx context.Context, cancel context.CancelCauseFunc, req request, rc *http.ResponseController) *conn {
	return &conn{
		h: h, id: "c" + strconv.FormatUint(h.nextID.Add(1), 10), req: req,
		ctx: ctx, cancel: cancel, rc: rc,
		ready: make(chan struct{}), drained: make(chan struct{}, 1), notify: make(chan struct{}, 1),
		replaying: true,
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
// queue would pass Config.ClientBuffer is disconnected (it resumes with
// Last-Event-ID).
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
	size := int64(eventSize(ev))
	if pending := c.queued.Load() + c.inFlight(); pending > 0 && pending+size > int64(c.h.cfg.ClientBuffer) {
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

func (c *conn) inFlight() int64 { return c.handed.Load() - c.written.Load() }

// stop ends the stream now: the request context is cancelled (r3labs then
// removes its subscriber) and a write blocked on a peer that does not read
// is interrupted.
func (c *conn) stop(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.cancel(cause)
	if !c.finished {
		_ = c.rc.SetWriteDeadline(time.Now())
	}
}

// end ends the stream on purpose (shutdown, age): the feeder sends a final
// frame with a jittered retry: and stops. A client that does not take the
// frame within drainTimeout is cut anyway.
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

// feed sends the stream's frames: the reset or replay, then live events,
// until the context ends.
func (c *conn) feed(st start) {
	select {
	case <-c.ready:
	case <-c.ctx.Done():
		return
	}
	co := newCoalescer(c.req.coalesce)
	pos := st.pos
	if st.reset && !c.sendReset(pos) {
		return
	}
	if !c.catchUp(&pos, st.page, co) {
		return
	}

	var window <-chan time.Time
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-window:
			window = nil
			if !c.sendAll(co.flush()) {
				return
			}
			continue
		case <-c.notify:
		}
		c.mu.Lock()
		batch, beat, ending := c.queue, c.beat, c.ending
		c.queue, c.beat = nil, false
		c.mu.Unlock()
		for _, ev := range batch {
			size := int64(eventSize(ev))
			switch {
			case ev.Reset:
				if !c.sendAll(co.flush()) || !c.sendReset(ev.ID) {
					return
				}
				pos = ev.ID
			case ev.ID <= pos:
				// already sent from history
			case co.enabled():
				pos = ev.ID
				if co.add(ev) && window == nil {
					window = co.start()
				}
			default:
				pos = ev.ID
				if !c.sendEvent(ev, c.h.cfg.ClientBuffer) {
					return
				}
			}
			c.queued.Add(-size)
		}
		if beat && !c.send(heartbeatEvent, c.h.cfg.ClientBuffer) {
			return
		}
		if ending != nil {
			c.sendAll(co.flush())
			c.finalFrame(pos, ending)
			return
		}
	}
}

// finalFrame tells the client when to come back, then stops the stream
// once the frame is written (or drainTimeout passes). The frame keeps the
// client's id (id: pos), so the reconnection resumes where it is; its event
// name cannot be a course event type, so no listener fires.
func (c *conn) finalFrame(pos uint64, cause error) {
	jitter := time.Duration(rand.Int64N(int64(c.h.cfg.DrainJitter)))
	retry := strconv.AppendInt(nil, (c.h.cfg.Retry + jitter).Milliseconds(), 10)
	if c.send(&sse.Event{ID: formatID(pos), Event: []byte(drainEvent), Data: []byte("{}"), Retry: retry}, c.h.cfg.ClientBuffer) {
		timeout := time.NewTimer(drainTimeout)
		defer timeout.Stop()
		for c.inFlight() > 0 {
			select {
			case <-c.drained:
			case <-timeout.C:
				c.stop(cause)
				return
			case <-c.ctx.Done():
				return
			}
		}
	}
	c.stop(cause)
}

// drainEvent names the final frame of a stream ended on purpose. The colon
// keeps it outside the pattern of course event types.
const drainEvent = "coursestream:drain"

// catchUp replays history after *pos until it meets the live events, then
// switches the connection to live queueing. History, not the queue, holds
// what a replaying client has not seen, so a long replay never overflows.
func (c *conn) catchUp(pos *uint64, page observer.Page, co *coalescer) bool {
	window := int64(c.h.cfg.ClientBuffer / 4) // leave room for live events queued meanwhile
	for {
		for _, ev := range page.Events {
			if ev.ID <= *pos {
				continue
			}
			*pos = ev.ID
			if !c.req.types.Has(ev.Type) {
				continue
			}
			c.h.cfg.Metrics.Replayed(1)
			if co.enabled() {
				co.add(ev)
			} else if !c.sendEvent(ev, int(window)) {
				return false
			}
		}
		if !c.sendAll(co.flush()) {
			return false
		}
		if page.Reset {
			if !c.sendReset(page.LastID) {
				return false
			}
			*pos = page.LastID
		}
		c.mu.Lock()
		if !page.More() && c.liveHead <= *pos {
			c.replaying = false
			c.mu.Unlock()
			return true
		}
		head := c.liveHead
		c.mu.Unlock()
		before := *pos
		var err error
		page, err = c.h.broker.History(c.ctx, c.req.course, *pos, replayPage)
		if err != nil {
			if c.ctx.Err() == nil {
				c.h.log.Warn("stream: history read failed; closing the stream", slog.String("course", c.req.course), slog.Any("err", err))
				c.stop(err)
			}
			return false
		}
		if len(page.Events) == 0 && !page.Reset && *pos == before && head > *pos && !page.More() {
			// The broker announced an id its history does not have. Do not
			// spin: go live from what history says is the last id.
			c.h.log.Warn("stream: announced event missing from history", slog.String("course", c.req.course),
				slog.Uint64("announced", head), slog.Uint64("last", page.LastID))
			c.mu.Lock()
			c.liveHead = *pos
			c.mu.Unlock()
		}
	}
}

func (c *conn) sendAll(evs []*observer.Event) bool {
	for _, ev := range evs {
		if !c.sendEvent(ev, c.h.cfg.ClientBuffer) {
			return false
		}
	}
	return true
}

// sendEvent sends one event's frame and counts it as delivered.
func (c *conn) sendEvent(ev *observer.Event, window int) bool {
	if !c.send(c.frame(ev), window) {
		return false
	}
	c.h.cfg.Metrics.Delivered(time.Since(time.UnixMilli(ev.Timestamp)))
	return true
}

func (c *conn) sendReset(last uint64) bool {
	id := formatID(last)
	data := make([]byte, 0, 48+len(c.req.course))
	data = append(data, `{"courseId":"`...)
	data = append(data, c.req.course...)
	data = append(data, `","lastEventId":"`...)
	data = append(data, id...)
	data = append(data, `"}`...)
	c.h.cfg.Metrics.ResetSent()
	return c.send(&sse.Event{ID: id, Event: []byte(observer.TypeReset), Data: data}, c.h.cfg.ClientBuffer)
}

func (c *conn) frame(ev *observer.Event) *sse.Event {
	return &sse.Event{ID: formatID(ev.ID), Event: []byte(ev.Type), Data: ev.JSON}
}

var heartbeatEvent = &sse.Event{Comment: []byte("hb")}

// send hands e to r3labs once the bytes in flight leave room for it within
// window (a frame is always sent when nothing is in flight). It reports
// false when the stream has ended.
func (c *conn) send(e *sse.Event, window int) bool {
	size := int64(wireSize(e))
	for {
		in := c.inFlight()
		if in <= 0 || in+size <= int64(window) {
			break
		}
		select {
		case <-c.drained:
		case <-c.ctx.Done():
			return false
		}
	}
	if c.ctx.Err() != nil {
		return false
	}
	c.handed.Add(size)
	c.h.sse.Publish(c.id, e) // returns at once unless r3labs' hand-off is full; ends with the stream
	return true
}

// wireSize is the number of bytes r3labs writes for e (http.go, v2.10.0):
// "id: ", "data: ", "event: " lines for data events, ": " for a comment,
// then a blank line. It must match exactly: the in-flight count relies on it.
func wireSize(e *sse.Event) int {
	n := 1
	if len(e.Data) > 0 {
		n += len("id: \n") + len(e.ID) + len("data: \n") + len(e.Data)
		if len(e.Event) > 0 {
			n += len("event: \n") + len(e.Event)
		}
		if len(e.Retry) > 0 {
			n += len("retry: \n") + len(e.Retry)
		}
	}
	if len(e.Comment) > 0 {
		n += len(": \n") + len(e.Comment)
	}
	return n
}

// eventSize is wireSize of an event's frame, without building it.
func eventSize(ev *observer.Event) int {
	if ev.Reset {
		return 96 + len(ev.CourseID)
	}
	digits := 1
	for v := ev.ID; v >= 10; v /= 10 {
		digits++
	}
	return 1 + len("id: \n") + digits + len("data: \n") + len(ev.JSON) + len("event: \n") + len(ev.Type)
}

// writer sits between r3labs and the ResponseWriter: it sends the retry
// frame right after the 200 (r3labs only writes retry with data), tells the
// feeder when r3labs' subscriber is registered (r3labs writes the header
// just after registering it) and counts what is written and flushed.
//
// It also arms a write deadline (Config.WriteTimeout) so that a peer that
// takes no bytes is dropped, and stops the stream on the first write error
// (r3labs ignores them).
type writer struct {
	http.ResponseWriter
	c           *conn
	retry       []byte
	wroteHeader bool
	armed       time.Time // the write deadline last set
}

func (w *writer) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.arm()
	w.ResponseWriter.WriteHeader(code)
	if code == http.StatusOK {
		_, _ = w.ResponseWriter.Write(w.retry)
		close(w.c.ready)
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.arm()
	n, err := w.ResponseWriter.Write(p)
	w.c.written.Add(int64(n))
	if err != nil {
		w.c.stop(err)
	}
	return n, err
}

func (w *writer) Flush() {
	w.arm()
	if err := w.c.rc.Flush(); err != nil {
		w.c.stop(err)
	}
	select {
	case w.c.drained <- struct{}{}:
	default:
	}
}

// arm pushes the write deadline forward once half of it has passed (a
// deadline per write would cost a runtime call each). A stopped stream
// keeps the deadline stop set.
func (w *writer) arm() {
	now := time.Now()
	timeout := w.c.h.cfg.WriteTimeout
	if now.Before(w.armed.Add(-timeout / 2)) {
		return
	}
	w.c.mu.Lock()
	if !w.c.stopped {
		w.armed = now.Add(timeout)
		_ = w.c.rc.SetWriteDeadline(w.armed)
	}
	w.c.mu.Unlock()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
