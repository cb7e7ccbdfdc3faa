package stream

import "time"

// Transport is the label a stream's counts are kept under.
type Transport string

// The transports of the hub's streams.
const (
	TransportSSE      Transport = "sse"       // GET /v1/courses/{courseId}/events
	TransportSSEMulti Transport = "sse-multi" // GET /v1/events?courses=...
)

// Metrics receives the hub's counts; cmd wires Prometheus. nil in Config
// means NopMetrics. Implementations must be safe for concurrent use.
type Metrics interface {
	// StreamOpened and StreamClosed track open SSE streams; reason is one
	// of "client", "slow", "shutdown", "age", "expired", "error".
	StreamOpened(t Transport)
	StreamClosed(t Transport, reason string)
	// Delivered counts one event frame handed to a client; lag is the time
	// since the event was stored.
	Delivered(t Transport, lag time.Duration)
	// Replayed counts events sent from history on resume.
	Replayed(n int)
	// ResetSent counts reset notices sent.
	ResetSent()
	// Dropped counts events that were waiting for a client when it was
	// disconnected for being too slow (it resumes from its last id).
	Dropped(n int)
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) StreamOpened(Transport)             {}
func (NopMetrics) StreamClosed(Transport, string)     {}
func (NopMetrics) Delivered(Transport, time.Duration) {}
func (NopMetrics) Replayed(int)                       {}
func (NopMetrics) ResetSent()                         {}
func (NopMetrics) Dropped(int)                        {}
