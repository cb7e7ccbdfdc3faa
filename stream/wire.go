package stream

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"coursestream/observer"
)

// This file makes every SSE byte the hub sends: the response headers, the
// event frames, the reset, drain, retry and heartbeat frames, and their
// HTTP/1.1 chunk framing for the streams written straight to a socket.
// Nothing else in the service knows the SSE wire format.

// setHeaders sets the SSE response headers on h.
func setHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// appendResponseHead appends the HTTP/1.1 status line and headers of a
// taken-over stream (a chunked body that owns the connection) to b. h is
// what middleware set (CORS ...); it is modified.
func appendResponseHead(b []byte, h http.Header) []byte {
	setHeaders(h)
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close") // the stream owns the connection to its end
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Del("Content-Length")
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	hb := headerBuffer{b: b}
	_ = h.Write(&hb) // a headerBuffer never fails
	return append(hb.b, "\r\n"...)
}

type headerBuffer struct{ b []byte }

func (h *headerBuffer) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

// dispatch is how a stream names its course events: dispatchNamed (the
// default) gives each frame an "event: <type>" line; dispatchMessage
// (?dispatch=message) leaves it out, so that EventSource dispatches every
// event as its default "message" (the envelope's type says which it is).
// Resets and the service's own frames keep their names either way.
type dispatch uint8

const (
	dispatchNamed dispatch = iota
	dispatchMessage
)

// frame is one live event (or reset notice) as SSE bytes, built once per
// instance by the first stream of its course that wants it (topic.frameOf)
// and shared, read-only, by every stream of the course. It holds the event
// in the form of each dispatch: the named one built at once, the unnamed
// one on first use (so each is still built once per event per instance).
type frame struct {
	ev      *observer.Event
	named   form
	unnamed atomic.Pointer[form] // dispatchMessage's, on first use

	subject atomic.Pointer[string] // what the event is about (coalescing), on first use
}

// form is one SSE frame of an event in one buffer: a reserve for the chunk
// header, then the SSE frame, then the chunk's CRLF.
//
// The frame is "id: <id>\n" followed by the body ("event: <type>\ndata:
// <envelope>\n\n", without the event line for dispatchMessage): id() and
// body() split it there, so that a stream with its own id line (the
// multi-course cursor) can gather its id with the shared body.
type form struct {
	chunk []byte // "<hex length>\r\n" sse "\r\n": direct streams
	sse   []byte // the SSE frame: streams through a ResponseWriter
	idLen int    // sse[:idLen] is the id line
}

// chunkReserve is room before a frame for its chunk header: up to 16 hex
// digits and CRLF.
const chunkReserve = 18

// newFrame builds ev's frame: a reset notice for a reset event.
func newFrame(ev *observer.Event) *frame {
	f := &frame{ev: ev}
	f.named = newForm(ev, dispatchNamed)
	return f
}

func newForm(ev *observer.Event, d dispatch) form {
	n := frameLen(ev, d)
	buf := make([]byte, chunkReserve, chunkReserve+n+2)
	buf = appendEventFrame(buf, ev, d, nil)
	buf = append(buf, "\r\n"...)
	sse := buf[chunkReserve : chunkReserve+n : chunkReserve+n]
	var hdr [chunkReserve]byte
	h := appendChunkHead(hdr[:0], n)
	at := chunkReserve - len(h)
	copy(buf[at:], h)
	return form{chunk: buf[at:], sse: sse, idLen: len("id: \n") + digits(ev.ID)}
}

// form returns the frame in the form of d: a reset has one form only.
func (f *frame) form(d dispatch) *form {
	if d == dispatchNamed || f.ev.Reset {
		return &f.named
	}
	if u := f.unnamed.Load(); u != nil {
		return u
	}
	u := newForm(f.ev, d)
	f.unnamed.CompareAndSwap(nil, &u)
	return f.unnamed.Load()
}

// id is the form's id line; body is the rest; bodyChunk is the body with
// the chunk's CRLF (what follows a stream's own chunk header and id line).
func (f *form) id() []byte        { return f.sse[:f.idLen] }
func (f *form) body() []byte      { return f.sse[f.idLen:] }
func (f *form) bodyChunk() []byte { return f.chunk[len(f.chunk)-len(f.sse)-2+f.idLen:] }

// frameLen is the length of ev's SSE frame in the form of d, with its
// numeric id line.
func frameLen(ev *observer.Event, d dispatch) int {
	return len("id: \n") + digits(ev.ID) + bodyLen(ev, d)
}

// bodyLen is the length of ev's frame after its id line.
func bodyLen(ev *observer.Event, d dispatch) int {
	if ev.Reset {
		return len("event: "+observer.TypeReset+"\ndata: {\"courseId\":\"\",\"lastEventId\":\"\"}\n\n") +
			digits(ev.ID) + len(ev.CourseID)
	}
	if d == dispatchMessage {
		return len("data: \n\n") + len(ev.JSON)
	}
	return len("event: \ndata: \n\n") + len(ev.Type) + len(ev.JSON)
}

func digits(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// appendID appends an id line: the stream's own (the multi-course cursor,
// without "id: " and the line break) when cursor is not nil, else the
// event's id.
func appendID(b []byte, id uint64, cursor []byte) []byte {
	b = append(b, "id: "...)
	if cursor != nil {
		b = append(b, cursor...)
	} else {
		b = strconv.AppendUint(b, id, 10)
	}
	return append(b, '\n')
}

// appendEventFrame appends ev's SSE frame in the form of d to b: a reset
// notice for a reset event, else "id: <id>\nevent: <type>\ndata:
// <envelope>\n\n" (no event line for dispatchMessage). A cursor that is not
// nil is the id line's value instead of the event's id.
func appendEventFrame(b []byte, ev *observer.Event, d dispatch, cursor []byte) []byte {
	if ev.Reset {
		return appendReset(b, ev.CourseID, ev.ID, cursor)
	}
	b = appendID(b, ev.ID, cursor)
	if d != dispatchMessage {
		b = append(b, "event: "...)
		b = append(b, ev.Type...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, ev.JSON...)
	return append(b, "\n\n"...)
}

// appendEventChunk appends ev's frame as one HTTP/1.1 chunk, in place: a
// replay builds its events straight into its buffer.
func appendEventChunk(b []byte, ev *observer.Event, d dispatch, cursor []byte) []byte {
	n := bodyLen(ev, d) + len("id: \n")
	if cursor != nil {
		n += len(cursor)
	} else {
		n += digits(ev.ID)
	}
	b = appendChunkHead(b, n)
	b = appendEventFrame(b, ev, d, cursor)
	return append(b, "\r\n"...)
}

// appendIDChunkHead appends the chunk header of a frame made of a
// stream's own id line (cursor) and a shared body of n bytes, then that id
// line: what a multi-course stream writes before the shared bodyChunk.
func appendIDChunkHead(b []byte, cursor []byte, n int) []byte {
	b = appendChunkHead(b, len("id: \n")+len(cursor)+n)
	return appendID(b, 0, cursor)
}

// appendReset appends a reset notice: the client must refetch everything
// of course, then carry on after last. Its id line is last, or the
// stream's cursor when cursor is not nil.
func appendReset(b []byte, course string, last uint64, cursor []byte) []byte {
	b = appendID(b, last, cursor)
	b = append(b, "event: "+observer.TypeReset+"\ndata: {\"courseId\":\""...)
	b = append(b, course...) // the course id pattern needs no escaping
	b = append(b, `","lastEventId":"`...)
	b = strconv.AppendUint(b, last, 10)
	return append(b, "\"}\n\n"...)
}

// DrainEvent is the SSE event name of the final frame of a stream ended on
// purpose (shutdown, --max-stream-age); its data is {"retryMs": N}, the
// delay after which to reconnect. The colon keeps it outside the pattern of
// course event types.
const DrainEvent = "coursestream:drain"

// appendDrain appends the final frame of a stream ended on purpose: a
// comment with the cause, a DrainEvent with the delay, and retry: with the
// same delay for EventSource (which does not show retry: to scripts). It
// has no id line, so the client's last event id is unchanged.
func appendDrain(b []byte, cause error, retry time.Duration) []byte {
	b = append(b, ": "...)
	b = append(b, cause.Error()...)
	b = append(b, "\nevent: "+DrainEvent+"\ndata: {\"retryMs\":"...)
	b = strconv.AppendInt(b, retry.Milliseconds(), 10)
	b = append(b, "}\nretry: "...)
	b = strconv.AppendInt(b, retry.Milliseconds(), 10)
	return append(b, "\n\n"...)
}

// fixedFrame is a frame that is the same for every stream, also framed as
// an HTTP/1.1 chunk, once, for the streams written to their sockets.
type fixedFrame struct{ sse, chunk []byte }

func newFixedFrame(sse []byte) *fixedFrame { return &fixedFrame{sse: sse, chunk: chunk(sse)} }

// retryFrame is the first frame of every stream: the reconnection delay.
func retryFrame(retry time.Duration) *fixedFrame {
	b := append([]byte("retry: "), strconv.AppendInt(nil, retry.Milliseconds(), 10)...)
	return newFixedFrame(append(b, "\n\n"...))
}

// heartbeat is the comment every stream gets each Config.Heartbeat.
var heartbeat = newFixedFrame([]byte(": hb\n\n"))

// chunk frames p as one HTTP/1.1 chunk.
func chunk(p []byte) []byte {
	b := appendChunkHead(make([]byte, 0, len(p)+chunkReserve+2), len(p))
	b = append(b, p...)
	return append(b, "\r\n"...)
}

func appendChunkHead(b []byte, n int) []byte {
	b = strconv.AppendUint(b, uint64(n), 16)
	return append(b, "\r\n"...)
}

// lastChunk ends a chunked body.
var lastChunk = []byte("0\r\n\r\n")
