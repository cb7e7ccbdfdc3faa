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
	// is not a valid envelope); kind is a short fixed label such as
	// "json", "fields", "course".
	Malformed(kind string)
	// Published observes how long one Publish took, validation to stored.
	Published(d time.Duration)
	// Reconnected counts a re-established Redis pub/sub connection.
	Reconnected()
	// Recovered counts events read back from history to fill a gap in
	// what pub/sub delivered.
	Recovered(n int)
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) Received()               {}
func (NopMetrics) Malformed(string)        {}
func (NopMetrics) Published(time.Duration) {}
func (NopMetrics) Reconnected()            {}
func (NopMetrics) Recovered(int)           {}
