package observer

import "time"

// Metrics receives a broker's counts. cmd wires a Prometheus
// implementation; nil in a config means NopMetrics. Implementations must be
// safe for concurrent use and must not block.
type Metrics interface {
	// Received counts an event entering this process's fan-out (published
	// here, or arriving on a Redis channel).
	Received()
	// Malformed counts garbage from outside (a Redis channel message that
	// is not a valid envelope); kind is one of MalformedKinds.
	Malformed(kind string)
	// Published observes how long one Publish took, validation to stored.
	Published(d time.Duration)
	// Reconnected counts a re-established Redis pub/sub connection.
	Reconnected()
	// Recovered counts events read back from history to fill a gap in
	// what pub/sub delivered.
	Recovered(n int)
	// CanaryRoundTrip observes how long a Redis readiness canary took from
	// PUBLISH to coming back over this instance's pub/sub connection.
	CanaryRoundTrip(d time.Duration)
}

// MalformedKinds are the kinds of garbage Metrics.Malformed counts: not
// JSON; JSON without the envelope's fields; an envelope of another course
// than its channel's; an id ahead of the course's sequence; a message on a
// channel that is not a course's; a history entry that is not the envelope
// of its id.
var MalformedKinds = []string{"json", "fields", "course", "id", "channel", "history"}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) Received()                     {}
func (NopMetrics) Malformed(string)              {}
func (NopMetrics) Published(time.Duration)       {}
func (NopMetrics) Reconnected()                  {}
func (NopMetrics) Recovered(int)                 {}
func (NopMetrics) CanaryRoundTrip(time.Duration) {}
