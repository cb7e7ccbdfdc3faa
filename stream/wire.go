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

// frame is one live event (or reset notice) as SSE bytes, built once per
// instance by the first stream of its course that wants it (topic.frameOf)
// and shared, read-only, by every stream of the course. Its one buffer
// holds both forms: a reserve for the chunk header, then the SSE frame,
// then the chunk's CRLF.
//
// The frame is "id: <id>\n" followed by the body "event: <type>\ndata:
// <envelope>\n\n": id() and body() split it there, so that a stream with
// its own id line (the multi-course cursor) can gather its id with the
// shared body.
type frame struct {
	ev    *observer.Event
	chunk []byte // "<hex length>\r\n" sse "\r\n": direct streams
	sse   []byte // the SSE frame: streams through a ResponseWriter
	idLen int    // sse[:idLen] is the id line

	subject atomic.Pointer[string] // what the event is about (coalescing), on first use
}

// chunkReserve is room before a frame for its chunk header: up to 16 hex
// digits and CRLF.
const chunkReserve = 18

// newFrame builds ev's frame: a reset notice for a reset event.
func newFrame(ev *observer.Event) *frame {
	n := frameLen(ev)
	buf := make([]byte, chunkReserve, chunkReserve+n+2)
	buf = appendEventFrame(buf, ev)
	buf = append(buf, "\r\n"...)
	sse := buf[chunkReserve : chunkReserve+n : chunkReserve+n]
	var hdr [chunkReserve]byte
	h := appendChunkHead(hdr[:0], n)
	at := chunkReserve - len(h)
	copy(buf[at:], h)
	return &frame{ev: ev, chunk: buf[at:], sse: sse, idLen: len("id: \n") + digits(ev.ID)}
}

// id is the frame's id line; body is the rest.
func (f *frame) id() []byte   { return f.sse[:f.idLen] }
func (f *frame) body() []byte { return f.sse[f.idLen:] }

// frameLen is the length of ev's SSE frame.
func frameLen(ev *observer.Event) int {
	if ev.Reset {
		return len("id: \nevent: "+observer.TypeReset+"\ndata: {\"courseId\":\"\",\"lastEventId\":\"\"}\n\n") +
			2*digits(ev.ID) + len(ev.CourseID)
	}
	return len("id: \nevent: \ndata: \n\n") + digits(ev.ID) + len(ev.Type) + len(ev.JSON)
}

func digits(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// appendEventFrame appends ev's SSE frame to b: a reset notice for a reset
// event, else "id: <id>\nevent: <type>\ndata: <envelope>\n\n".
func appendEventFrame(b []byte, ev *observer.Event) []byte {
	if ev.Reset {
		return appendReset(b, ev.CourseID, ev.ID)
	}
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, ev.ID, 10)
	b = append(b, "\nevent: "...)
	b = append(b, ev.Type...)
	b = append(b, "\ndata: "...)
	b = append(b, ev.JSON...)
	return append(b, "\n\n"...)
}

// appendEventChunk appends ev's frame as one HTTP/1.1 chunk, in place: a
// replay builds its events straight into its buffer.
func appendEventChunk(b []byte, ev *observer.Event) []byte {
	b = appendChunkHead(b, frameLen(ev))
	b = appendEventFrame(b, ev)
	return append(b, "\r\n"...)
}

// appendReset appends a reset notice: the client must refetch everything,
// then carry on after last.
func appendReset(b []byte, course string, last uint64) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, last, 10)
	b = append(b, "\nevent: "+observer.TypeReset+"\ndata: {\"courseId\":\""...)
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
