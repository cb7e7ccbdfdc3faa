package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// poller follows one course with conditional GETs, or (--courses-per-poll)
// several with the multi-course poll GET /v1/poll?courses=&cursor=. It
// keeps its own keep-alive connection (its own transport), as the
// browsers of different users do, and checks each course's ids as the
// SSE client does: each the previous one plus one, or after a reset.
type poller struct {
	courses []string // one: /v1/courses/{id}/poll?after=; more: /v1/poll?courses=
	index   []int    // the courses' numbers in the run
	hc      *http.Client
	last    []uint64 // last id seen per course
	after   uint64   // one course: the lastEventId of the last answer
	cursor  string   // several: the cursor of the last answer
	etag    string

	received   int
	duplicates int
	outOfOrder int
	resets     int
	requests   int
	notMod     int
	errors     int
	latencies  []time.Duration
}

// pollStats are the counts the run reads while the pollers run.
type pollStats struct {
	requests, notMod atomic.Int64 // answered polls, and those answered 304
	conns            atomic.Int64 // connections the pollers opened
	held             atomic.Int64 // requests written and not answered yet
	errors           atomic.Int64
	target           int64         // --clients: every poller has a request held
	allHeld          chan struct{} // closed when held first reaches target
	heldOnce         sync.Once
}

// pollAnswer is the body of a 200 of either poll.
type pollAnswer struct {
	LastEventID string            `json:"lastEventId"` // one course
	Reset       bool              `json:"reset"`       // one course
	Cursor      string            `json:"cursor"`      // several
	Resets      []pollReset       `json:"resets"`      // several
	Events      []json.RawMessage `json:"events"`
	More        bool              `json:"more"`
}

type pollReset struct {
	CourseID    string `json:"courseId"`
	LastEventID string `json:"lastEventId"`
}

// url is the poller's next request.
func (p *poller) url(base string, c *config) string {
	var b strings.Builder
	b.WriteString(base)
	if len(p.courses) == 1 {
		b.WriteString("/v1/courses/" + p.courses[0] + "/poll?after=" + strconv.FormatUint(p.after, 10))
	} else {
		// Course ids and cursors are made of URL-safe characters.
		b.WriteString("/v1/poll?courses=" + strings.Join(p.courses, ","))
		if p.cursor != "" {
			b.WriteString("&cursor=" + p.cursor)
		}
	}
	if c.Wait > 0 {
		b.WriteString("&wait=" + c.Wait.String())
	}
	return b.String()
}

// poll makes one request. more reports that the answer was cut short by
// the page cap: the poller asks again at once.
func (p *poller) poll(ctx context.Context, base string, c *config, st *pollStats) (more bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url(base, c), nil)
	if err != nil {
		return false, err
	}
	// held: 0 before the request is written, 1 written and unanswered,
	// 2 answered (or failed). The written count is what tells the run a
	// long-poll is held: the server has it and has not answered.
	var state atomic.Int32
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				st.conns.Add(1)
			}
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil && state.CompareAndSwap(0, 1) && st.held.Add(1) == st.target {
				st.heldOnce.Do(func() { close(st.allHeld) })
			}
		},
	}))
	if p.etag != "" {
		req.Header.Set("If-None-Match", p.etag)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := p.hc.Do(req)
	if state.Swap(2) == 1 {
		st.held.Add(-1)
	}
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	p.requests++
	st.requests.Add(1)
	switch resp.StatusCode {
	case http.StatusNotModified:
		p.notMod++
		st.notMod.Add(1)
		_, _ = io.Copy(io.Discard, resp.Body)
		return false, nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return false, fmt.Errorf("poll: status %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var body pollAnswer
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, err
	}
	// To the end (the newline after the JSON): a body closed before its
	// end costs the connection, and the poller would dial again.
	_, _ = io.Copy(io.Discard, resp.Body)
	now := time.Now()
	for _, raw := range body.Events {
		id, sent, ok := parseData(raw)
		k := p.lane(raw)
		if !ok || k < 0 {
			continue
		}
		switch last := p.last[k]; {
		case last != 0 && id <= last:
			p.duplicates++
		case last != 0 && id != last+1:
			p.outOfOrder++
		}
		if id > p.last[k] {
			p.last[k] = id
		}
		p.received++
		if sent > 0 {
			p.latencies = append(p.latencies, now.Sub(time.Unix(0, sent)))
		}
	}
	if len(p.courses) == 1 {
		n, _ := strconv.ParseUint(body.LastEventID, 10, 64)
		if body.Reset {
			p.resets++
			p.last[0] = n
		}
		p.after = max(p.after, n)
	} else {
		for _, r := range body.Resets {
			for k, course := range p.courses {
				if course == r.CourseID {
					p.resets++
					p.last[k], _ = strconv.ParseUint(r.LastEventID, 10, 64)
				}
			}
		}
		p.cursor = body.Cursor
	}
	// The floor answers {} with an ETag: the ETag is learned from the
	// first 200 of either server.
	p.etag = resp.Header.Get("ETag")
	return body.More, nil
}

// lane is the place in p.courses of the course an envelope names.
func (p *poller) lane(raw []byte) int {
	if len(p.courses) == 1 {
		return 0
	}
	_, rest, ok := bytes.Cut(raw, []byte(`"courseId":"`))
	if !ok {
		return -1
	}
	id, _, ok := bytes.Cut(rest, []byte(`"`))
	if !ok {
		return -1
	}
	for k, course := range p.courses {
		if course == string(id) {
			return k
		}
	}
	return -1
}

// onHeld, when set (tests), is called while the held long-polls are
// measured, before they are let go.
var onHeld func(held int)

// runPoll runs c.Clients pollers. Without --wait each polls every
// --poll-every with If-None-Match (304 while nothing changed), the
// pollers spread evenly over the interval; with --wait each long-polls
// and asks again as soon as it is answered, the pollers started at
// --ramp. Polling ends once the published events had --drain to arrive
// (--events > 0), after --duration, once every poller made --polls,
// or, for --wait --events 0 with neither, once the held polls were
// measured: --settle after every poller had one held.
//
// With --pid the report has the server's CPU over the polling window
// (from every poller's first answer to the end) per request, and its RSS
// per poller (each one connection) or per held long-poll.
func runPoll(ctx context.Context, c config) (*report, error) {
	base := strings.TrimRight(strings.Split(c.Server, ",")[0], "/")
	perPoll := max(c.PerPoll, 1)
	switch {
	case perPoll > c.Courses || perPoll > 64:
		return nil, usageError{fmt.Errorf("want 1 <= --courses-per-poll <= --courses (and at most 64)")}
	case c.Wait < 0 || c.Wait > 30*time.Second:
		return nil, usageError{fmt.Errorf("--wait %s: at most 30s", c.Wait)}
	case c.Polls < 0:
		return nil, usageError{fmt.Errorf("--polls %d: want >= 0", c.Polls)}
	case c.Events == 0 && c.Wait == 0 && !c.DurationSet && c.Polls == 0:
		return nil, usageError{fmt.Errorf("poll --events 0 needs --duration or --polls (or --wait for held long-polls)")}
	case c.PollEvery <= 0:
		return nil, usageError{fmt.Errorf("want --poll-every > 0")}
	}
	rep := &report{Mode: "poll", Clients: c.Clients, Courses: c.Courses, Events: c.Events, Rate: c.Rate, Payload: c.Payload, Publish: c.Publish,
		PerPoll: perPoll, Wait: c.Wait}
	if c.Wait > 0 {
		rep.Mode = "long-poll"
	}
	proc := newProc(c.PID)
	rssBefore := proc.rss()
	st := &pollStats{target: int64(c.Clients), allHeld: make(chan struct{})}

	pollers := make([]*poller, c.Clients)
	for i := range pollers {
		// Its own transport: one keep-alive connection per poller, never
		// shared with another poller (a pool would serve them all with a
		// few connections between their spread-out requests).
		tr := &http.Transport{MaxIdleConns: 1, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
		p := &poller{hc: &http.Client{Timeout: c.Wait + 30*time.Second, Transport: tr}, last: make([]uint64, perPoll)}
		for j := range perPoll { // distinct courses: --courses-per-poll <= --courses
			n := (i*perPoll + j) % c.Courses
			p.courses, p.index = append(p.courses, c.CoursePfx+strconv.Itoa(n)), append(p.index, n)
		}
		pollers[i] = p
	}
	defer func() {
		for _, p := range pollers {
			p.hc.CloseIdleConnections()
		}
	}()
	perCourse := make([]int, c.Courses)
	for i := range c.Events {
		perCourse[i%c.Courses]++
	}

	pctx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	var (
		wg                 sync.WaitGroup
		firstDone, allDone atomic.Int64
		allFirst           = make(chan struct{}) // every poller has had its first answer
		allPolled          = make(chan struct{}) // every poller made --polls
	)
	start := time.Now()
	for i, p := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the pollers over the interval, or start long-polls
			// at the ramp.
			offset := time.Duration(i) * c.PollEvery / time.Duration(len(pollers))
			if c.Wait > 0 {
				offset = time.Duration(i) * time.Second / time.Duration(c.Ramp)
			}
			select {
			case <-pctx.Done():
				return
			case <-time.After(offset):
			}
			t := time.NewTicker(c.PollEvery)
			defer t.Stop()
			for n := 0; c.Polls == 0 || n < c.Polls; n++ {
				more, err := p.poll(pctx, base, &c, st)
				if pctx.Err() != nil {
					return
				}
				if n == 0 && firstDone.Add(1) == int64(len(pollers)) {
					close(allFirst)
				}
				if err != nil {
					p.errors++
					if st.errors.Add(1) <= 3 {
						fmt.Fprintf(os.Stderr, "csload: poll %s: %v\n", p.courses[0], err)
					}
				}
				if more || (c.Wait > 0 && err == nil) {
					continue // the rest of the page, or the next long-poll
				}
				select {
				case <-pctx.Done():
					return
				case <-t.C:
				}
			}
			if allDone.Add(1) == int64(len(pollers)) {
				close(allPolled)
			}
		}()
	}
	var durationC <-chan time.Time
	if c.DurationSet {
		durationC = time.After(c.Duration)
	}

	// The polling window, for CPU per request: it opens once every poller
	// had its first answer (connections open, ETags learned), or, for
	// long-polls, once every poller has one held.
	var (
		cpuStart           float64
		reqStart, notStart int64
		windowStart        time.Time
	)
	openWindow := func() {
		cpuStart, windowStart = proc.cpu(), time.Now()
		reqStart, notStart = st.requests.Load(), st.notMod.Load()
	}
	var err error
	if c.Wait > 0 {
		// Every poller's first request is written and held; give the
		// server up to one --wait after the ramp to have them all.
		bound := time.After(time.Duration(c.Clients)*time.Second/time.Duration(c.Ramp) + c.Wait)
		select {
		case <-st.allHeld:
		case <-bound:
			fmt.Fprintf(os.Stderr, "csload: only %d of %d long-polls held\n", st.held.Load(), c.Clients)
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err == nil {
			select {
			case <-time.After(c.Settle):
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		rep.HeldPolls = int(st.held.Load())
		if rss := proc.rss(); rss > 0 && rep.HeldPolls > 0 {
			rep.ServerRSSMiB = float64(rss) / (1 << 20)
			rep.RSSPerConnKiB = float64(rss-rssBefore) / float64(c.Clients) / 1024
			rep.RSSPerHeldKiB = float64(rss-rssBefore) / float64(rep.HeldPolls) / 1024
		}
		if onHeld != nil {
			onHeld(rep.HeldPolls)
		}
		openWindow()
	}

	windowOpen := c.Wait > 0
	waitFirst := func(until <-chan struct{}) {
		// Open the window at allFirst, if it comes before until.
		if windowOpen {
			return
		}
		select {
		case <-allFirst:
			openWindow()
			windowOpen = true
		case <-until:
		}
	}
	switch {
	case err != nil:
	case c.Events > 0:
		pub, perr := newPublisher(c)
		if perr != nil {
			return rep, perr
		}
		defer pub.close()
		published := make(chan struct{})
		go func() {
			defer close(published)
			pubStart := time.Now()
			rep.Published, err = publishAll(ctx, c, pub)
			rep.PublishSeconds = time.Since(pubStart).Seconds()
		}()
		waitFirst(published)
		<-published
		if err == nil {
			select {
			case <-ctx.Done():
			case <-time.After(c.Drain):
			case <-durationC:
			case <-allPolled:
			}
		}
	case c.Wait > 0 && !c.DurationSet && c.Polls == 0:
		// Held long-polls measured: done.
	default:
		stop := make(chan struct{})
		go func() {
			defer close(stop)
			select {
			case <-ctx.Done():
			case <-durationC:
			case <-allPolled:
			}
		}()
		waitFirst(stop)
		<-stop
	}
	// Close the window before the pollers are let go.
	if windowOpen {
		rep.PollSeconds = time.Since(windowStart).Seconds()
		rep.ServerCPUSeconds = proc.cpu() - cpuStart
		rep.PollRequests = int(st.requests.Load() - reqStart)
		if c.PID > 0 && rep.PollRequests > 0 {
			rep.CPUPerRequestMicros = rep.ServerCPUSeconds / float64(rep.PollRequests) * 1e6
			if n := st.notMod.Load() - notStart; n > 0 {
				rep.CPUPer304Micros = rep.ServerCPUSeconds / float64(n) * 1e6
			}
		}
	}
	if c.Wait == 0 {
		if rss := proc.rss(); rss > 0 {
			rep.ServerRSSMiB = float64(rss) / (1 << 20)
			rep.RSSPerConnKiB = float64(rss-rssBefore) / float64(c.Clients) / 1024
		}
	}
	stopPolling()
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	var lat []time.Duration
	for _, p := range pollers {
		for _, idx := range p.index {
			rep.Expected += perCourse[idx]
		}
		rep.Received += p.received
		rep.Duplicates += p.duplicates
		rep.OutOfOrder += p.outOfOrder
		rep.Resets += p.resets
		rep.Requests += p.requests
		rep.NotModOK += p.notMod
		lat = append(lat, p.latencies...)
	}
	rep.Connected = len(pollers)
	rep.PollConns = int(st.conns.Load())
	rep.PollErrors = int(st.errors.Load())
	rep.settle()
	rep.RequestsPS = float64(rep.Requests) / elapsed
	if rep.PollSeconds > 0 {
		rep.RequestsPS = float64(rep.PollRequests) / rep.PollSeconds
	}
	rep.LatencyP50, rep.LatencyP90, rep.LatencyP99, rep.LatencyMax = pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100)
	return rep, err
}
