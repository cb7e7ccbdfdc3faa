package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is what a run measured.
type report struct {
	Mode          string  `json:"mode"`
	Clients       int     `json:"clients"`
	PerStream     int     `json:"coursesPerStream,omitempty"`
	Courses       int     `json:"courses"`
	Events        int     `json:"events"`
	Rate          float64 `json:"rate"`
	Payload       int     `json:"payload"`
	Publish       string  `json:"publish"`
	Connected     int     `json:"connected"`
	ConnectFailed int     `json:"connectFailed"`
	// ConnectSeconds is how long the paced ramp took.
	ConnectSeconds float64       `json:"connectSeconds"`
	ConnectP50     time.Duration `json:"connectP50"`
	ConnectP99     time.Duration `json:"connectP99"`
	Published      int           `json:"published"`
	PublishSeconds float64       `json:"publishSeconds"`
	tally
	Reconnects int `json:"reconnects"`
	// Reconnected clients lost their first connection and came back;
	// ReconnectSpread is from the first such loss to the last first retry.
	Reconnected     int           `json:"reconnected,omitempty"`
	ReconnectSpread time.Duration `json:"reconnectSpread,omitempty"`
	LatencyP50      time.Duration `json:"latencyP50"`
	LatencyP90      time.Duration `json:"latencyP90"`
	LatencyP99      time.Duration `json:"latencyP99"`
	LatencyMax      time.Duration `json:"latencyMax"`
	// Fan-out completion (sse): per event, the latency of its last
	// subscriber; the percentiles are over the run's events.
	CompletionEvents int           `json:"completionEvents,omitempty"`
	CompletionP50    time.Duration `json:"completionP50,omitempty"`
	CompletionP99    time.Duration `json:"completionP99,omitempty"`
	CompletionMax    time.Duration `json:"completionMax,omitempty"`
	Label            string        `json:"label,omitempty"` // --label: what was measured (plot series)
	// Server figures, with --pid.
	ServerRSSMiB         float64 `json:"serverRssMiB,omitempty"`
	RSSPerConnKiB        float64 `json:"rssPerConnKiB,omitempty"`
	ServerCPUSeconds     float64 `json:"serverCpuSeconds,omitempty"`
	CPUPerDeliveryMicros float64 `json:"cpuPerDeliveryMicros,omitempty"`
	// Soak mode.
	RSSStartMiB float64 `json:"rssStartMiB,omitempty"`
	RSSEndMiB   float64 `json:"rssEndMiB,omitempty"`
	RSSMaxMiB   float64 `json:"rssMaxMiB,omitempty"`
	// Poll mode.
	Requests   int     `json:"requests,omitempty"`
	NotModOK   int     `json:"notModified,omitempty"`
	RequestsPS float64 `json:"requestsPerSecond,omitempty"`
	// sse --subscribe-only: per event id, its last delivery's latency here.
	EventMaxLatency map[string]time.Duration `json:"eventMaxLatency,omitempty"`
	// Poll mode: the polling window (from every poller's first answer, or
	// every long-poll held, to the end), its requests and the server's CPU
	// per request and per 304 over it (--pid); held long-polls and the
	// server's RSS per held poll.
	PerPoll             int           `json:"coursesPerPoll,omitempty"`
	Wait                time.Duration `json:"wait,omitempty"`
	PollConns           int           `json:"pollConnections,omitempty"`
	PollErrors          int           `json:"pollErrors,omitempty"`
	PollSeconds         float64       `json:"pollWindowSeconds,omitempty"`
	PollRequests        int           `json:"pollWindowRequests,omitempty"`
	CPUPerRequestMicros float64       `json:"cpuPerRequestMicros,omitempty"`
	CPUPer304Micros     float64       `json:"cpuPer304Micros,omitempty"`
	HeldPolls           int           `json:"heldPolls,omitempty"`
	RSSPerHeldKiB       float64       `json:"rssPerHeldPollKiB,omitempty"`
}

func (r *report) print(w io.Writer, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return
	}
	fmt.Fprintf(w, "mode %s: %d clients over %d courses, %d events at %.0f/s (%d B padding, %s)\n",
		r.Mode, r.Clients, r.Courses, r.Events, r.Rate, r.Payload, r.Publish)
	if r.PerStream > 1 {
		fmt.Fprintf(w, "each client: one stream of %d courses (/v1/events?courses=)\n", r.PerStream)
	}
	fmt.Fprintf(w, "connections: %d ok, %d failed in %.1fs; connect p50 %s p99 %s\n",
		r.Connected, r.ConnectFailed, r.ConnectSeconds, ms(r.ConnectP50), ms(r.ConnectP99))
	fmt.Fprintf(w, "published %d in %.1fs; deliveries expected %d, received %d\n", r.Published, r.PublishSeconds, r.Expected, r.Received)
	r.printLoss(w, fmt.Sprintf(", reconnections %d", r.Reconnects))
	if r.Reconnected > 0 {
		fmt.Fprintf(w, "%d clients lost their stream and tried again within %s\n", r.Reconnected, ms(r.ReconnectSpread))
	}
	fmt.Fprintf(w, "latency p50 %s p90 %s p99 %s max %s\n", ms(r.LatencyP50), ms(r.LatencyP90), ms(r.LatencyP99), ms(r.LatencyMax))
	if r.CompletionEvents > 0 {
		fmt.Fprintf(w, "fan-out completion (last subscriber) over %d events: p50 %s p99 %s max %s\n", r.CompletionEvents, ms(r.CompletionP50), ms(r.CompletionP99), ms(r.CompletionMax))
	}
	if r.Requests > 0 {
		fmt.Fprintf(w, "polls: %d requests (%d x 304), %.0f/s\n", r.Requests, r.NotModOK, r.RequestsPS)
	}
	r.printPoll(w)
	if r.RSSEndMiB > 0 {
		fmt.Fprintf(w, "soak: RSS %.1f MiB after warm-up, %.1f MiB at the end, %.1f MiB at most\n", r.RSSStartMiB, r.RSSEndMiB, r.RSSMaxMiB)
	}
	if r.ServerRSSMiB > 0 {
		fmt.Fprintf(w, "server: RSS %.1f MiB, %.1f KiB per connection; CPU %.2fs, %.2f µs per delivery\n",
			r.ServerRSSMiB, r.RSSPerConnKiB, r.ServerCPUSeconds, r.CPUPerDeliveryMicros)
	}
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// pct returns the p-th percentile (nearest rank); 100 is the maximum.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

// proc reads a process's RSS and CPU time from /proc.
type proc struct{ pid int }

func newProc(pid int) proc { return proc{pid} }

// rss returns the resident set in bytes (0 without a pid).
func (p proc) rss() int64 {
	if p.pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpu returns user+system CPU seconds (0 without a pid).
func (p proc) cpu() float64 {
	if p.pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// printPoll prints the poll mode's figures.
func (r *report) printPoll(w io.Writer) {
	if r.Mode != "poll" && r.Mode != "long-poll" {
		return
	}
	if r.PerPoll > 1 || r.Wait > 0 {
		fmt.Fprintf(w, "each poller: %d course(s) per poll, wait %s\n", max(r.PerPoll, 1), r.Wait)
	}
	fmt.Fprintf(w, "pollers: %d connections opened, %d poll errors\n", r.PollConns, r.PollErrors)
	if r.HeldPolls > 0 || r.Wait > 0 {
		fmt.Fprintf(w, "held long-polls: %d of %d", r.HeldPolls, r.Clients)
		if r.ServerRSSMiB > 0 {
			fmt.Fprintf(w, "; server RSS %.1f KiB per held poll", r.RSSPerHeldKiB)
		}
		fmt.Fprintln(w)
	}
	if r.PollRequests > 0 {
		fmt.Fprintf(w, "polling window %.1fs: %d requests", r.PollSeconds, r.PollRequests)
		if r.ServerCPUSeconds > 0 {
			fmt.Fprintf(w, "; server CPU %.2fs, %.2f µs per request, %.2f µs per 304", r.ServerCPUSeconds, r.CPUPerRequestMicros, r.CPUPer304Micros)
		}
		fmt.Fprintln(w)
	}
}
