// Package stream serves course events over Server-Sent Events (Hub, GET
// /v1/courses/{courseId}/events) and takes events over HTTP (Publisher,
// POST on the same path).
//
// Files: wire.go makes every SSE byte (headers, frames, chunking); topic.go
// is the hub's per-course record, through which each event's frame is built
// once per instance and shared by all its streams; conn.go is one stream
// (queue, replay); direct.go writes a
// taken-over HTTP/1.1 socket, handler.go writes through the
// http.ResponseWriter (HTTP/2, HTTP/1.0, TLS): both are a sink, the seam
// that owns what differs between them; coalesce.go is the debounced mode.
//
// Goroutines: Hub.Run owns the heartbeat ticker and the workers that write
// live frames of direct streams (stream/runq.go, on internal/workq); each
// direct stream has a reader goroutine (it notices the client leaving and
// releases the stream) and, only while the kernel holds back bytes, a
// flusher; both are counted in the hub's wait group, which Close waits
// for. A stream through the ResponseWriter is written by its request
// goroutine only.
package stream
