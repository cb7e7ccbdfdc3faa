// Package stream serves course events over Server-Sent Events (Hub, GET
// /v1/courses/{courseId}/events, and Hub.ServeCourses, GET
// /v1/events?courses=... for several courses on one stream) and takes
// events over HTTP (Publisher, POST on the same path).
//
// A stream has one lane per course (conn.go): its topic, its position and
// its listener; a single-course stream has one. A multi-course stream's
// id lines are its cursor (internal/cursor's form), built per frame by
// the writer, and gathered with the event's shared body (frame.form's
// bodyChunk) in one writev on a taken-over socket, so the body is still
// encoded once per event per instance and never copied per stream.
//
// Files, one concept each: wire.go makes every SSE byte (headers, frames,
// chunking); topic.go is the hub's per-course record, through which each
// event's frame is built once per instance and shared by all its streams;
// conn.go is one stream (queue, replay, end) and state.go its states;
// coalesce.go is the debounced mode. Bytes go to a sink (conn.go's sink
// interface, the seam that owns what differs between the two transports:
// waking the writer, the coalesce window's timer, bytes held back, how the
// connection is cut): handler.go writes through the http.ResponseWriter
// (HTTP/2, HTTP/1.0, TLS) from the request goroutine; direct.go writes an
// HTTP/1.1 connection taken over from net/http, through socket.go, the one
// file that writes a socket (and uses syscall). Who may write a socket at a
// given moment is the socket's phase (see socket): the request goroutine
// while replaying, then the stream's turn (a hub worker, or the publisher
// inline when no turn is queued), or the flusher while the kernel holds
// bytes back.
//
// Goroutines: Hub.Run owns the heartbeat ticker and the workers that run
// direct streams' turns (runq.go, on internal/workq), stopped by Run's
// context; each direct stream has a reader goroutine (it notices the
// client leaving and releases the stream) and, only while the kernel holds
// back bytes, a flusher; both are counted in the hub's wait group, which
// Close waits for. A stream through the ResponseWriter is written by its
// request goroutine only.
package stream
