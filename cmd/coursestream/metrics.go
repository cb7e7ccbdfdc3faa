package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"coursestream/observer"
	"coursestream/poller"
	"coursestream/stream"
)

// metrics implements the Metrics hooks of observer, stream and poller with
// Prometheus collectors on a registry of its own, served at /metrics.
type metrics struct {
	reg *prometheus.Registry

	connections    *prometheus.GaugeVec   // transport: sse, sse-multi, longpoll
	received       prometheus.Counter     // events entering this instance's fan-out
	delivered      *prometheus.CounterVec // transport: sse, sse-multi, poll
	dropped        prometheus.Counter
	malformed      *prometheus.CounterVec // kind
	replayed       prometheus.Counter
	resets         prometheus.Counter
	closed         *prometheus.CounterVec // reason
	polls          *prometheus.CounterVec // code
	publishLatency prometheus.Histogram
	deliveryLag    prometheus.Histogram
	reconnects     prometheus.Counter
	recovered      prometheus.Counter
	canaryRTT      prometheus.Histogram

	// Children resolved once: the hot paths skip the label lookup.
	sseConns, longPolls     prometheus.Gauge
	sseDelivered, pollDeliv prometheus.Counter
	multiConns              prometheus.Gauge   // transport="sse-multi"
	multiDelivered          prometheus.Counter // transport="sse-multi"
}

var (
	_ observer.Metrics = (*metrics)(nil)
	_ stream.Metrics   = (*metrics)(nil)
	_ poller.Metrics   = (*metrics)(nil)
)

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{reg: reg}
	m.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "coursestream_connections",
		Help: "Open client connections by transport (sse streams, waiting long-polls)."}, []string{"transport"})
	m.received = prometheus.NewCounter(prometheus.CounterOpts{Name: "coursestream_events_received_total",
		Help: "Events entering this instance's fan-out (published here or arriving from Redis)."})
	m.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coursestream_events_delivered_total",
		Help: "Events handed to clients, by transport."}, []string{"transport"})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "coursestream_events_dropped_total",
		Help: "Events queued for a client that was disconnected as too slow (it resumes from its last id)."})
	m.malformed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coursestream_events_malformed_total",
		Help: "Garbage received on Redis channels, dropped, by kind."}, []string{"kind"})
	m.replayed = prometheus.NewCounter(prometheus.CounterOpts{Name: "coursestream_replayed_events_total",
		Help: "Events sent from history to resuming SSE clients."})
	m.resets = prometheus.NewCounter(prometheus.CounterOpts{Name: "coursestream_resets_total",
		Help: "Reset notices sent to SSE clients."})
	m.closed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coursestream_streams_closed_total",
		Help: "SSE streams closed, by reason (client, slow, shutdown, age, expired, error)."}, []string{"reason"})
	m.polls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coursestream_polls_total",
		Help: "Answered polls by status code."}, []string{"code"})
	m.publishLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "coursestream_publish_duration_seconds",
		Help: "Time to validate and store one published event.", Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14)})
	m.deliveryLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "coursestream_delivery_lag_seconds",
		Help: "Time from an event's timestamp to its hand-off to an SSE client.", Buckets: prometheus.ExponentialBuckets(100e-6, 2, 18)})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "coursestream_redis_reconnects_total",
		Help: "Redis pub/sub reconnections."})
	m.recovered = prometheus.NewCounter(prometheus.CounterOpts{Name: "coursestream_recovered_events_total",
		Help: "Events read back from Redis history to fill gaps in pub/sub delivery."})
	m.canaryRTT = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "coursestream_redis_canary_seconds",
		Help:    "Round trip of the readiness canary: PUBLISH through Redis to its arrival on this instance's pub/sub connection.",
		Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16)})
	// The build, as Prometheus exporters show theirs: a gauge at 1 whose
	// labels are the facts (join on it to tell versions apart in a rollout).
	bi := readBuildInfo()
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "coursestream_build_info",
		Help:        "The running build: version, VCS revision and Go version as labels; the value is 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion}})
	build.Set(1)
	for _, c := range []prometheus.Collector{build, m.connections, m.received, m.delivered, m.dropped, m.malformed, m.replayed,
		m.resets, m.closed, m.polls, m.publishLatency, m.deliveryLag, m.reconnects, m.recovered, m.canaryRTT,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	// Series that exist before their first event, so dashboards see zeros.
	m.sseConns, m.longPolls = m.connections.WithLabelValues("sse"), m.connections.WithLabelValues("longpoll")
	m.sseDelivered, m.pollDeliv = m.delivered.WithLabelValues("sse"), m.delivered.WithLabelValues("poll")
	m.multiConns = m.connections.WithLabelValues(string(stream.TransportSSEMulti))
	m.multiDelivered = m.delivered.WithLabelValues(string(stream.TransportSSEMulti))
	for _, kind := range observer.MalformedKinds {
		m.malformed.WithLabelValues(kind)
	}
	return m
}

// Handler serves the Prometheus text format.
func (m *metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// observer.Metrics

func (m *metrics) Received()                       { m.received.Inc() }
func (m *metrics) Malformed(kind string)           { m.malformed.WithLabelValues(kind).Inc() }
func (m *metrics) Published(d time.Duration)       { m.publishLatency.Observe(d.Seconds()) }
func (m *metrics) Reconnected()                    { m.reconnects.Inc() }
func (m *metrics) Recovered(n int)                 { m.recovered.Add(float64(n)) }
func (m *metrics) CanaryRoundTrip(d time.Duration) { m.canaryRTT.Observe(d.Seconds()) }

// stream.Metrics

func (m *metrics) StreamOpened(t stream.Transport) { m.streamConns(t).Inc() }
func (m *metrics) StreamClosed(t stream.Transport, reason string) {
	m.streamConns(t).Dec()
	m.closed.WithLabelValues(reason).Inc()
}
func (m *metrics) Delivered(t stream.Transport, lag time.Duration) {
	if t == stream.TransportSSEMulti {
		m.multiDelivered.Inc()
	} else {
		m.sseDelivered.Inc()
	}
	m.deliveryLag.Observe(lag.Seconds())
}

// streamConns is the open-streams gauge of t.
func (m *metrics) streamConns(t stream.Transport) prometheus.Gauge {
	if t == stream.TransportSSEMulti {
		return m.multiConns
	}
	return m.sseConns
}
func (m *metrics) Replayed(n int) { m.replayed.Add(float64(n)) }
func (m *metrics) ResetSent()     { m.resets.Inc() }
func (m *metrics) Dropped(n int)  { m.dropped.Add(float64(n)) }

// poller.Metrics

func (m *metrics) Polled(status, events int) {
	m.polls.WithLabelValues(strconv.Itoa(status)).Inc()
	if events > 0 {
		m.pollDeliv.Add(float64(events))
	}
}
func (m *metrics) LongPolls(delta int) { m.longPolls.Add(float64(delta)) }
