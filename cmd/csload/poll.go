package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// poller follows one course with conditional GETs.
type poller struct {
	course     string
	last       uint64
	etag       string
	received   int
	duplicates int
	outOfOrder int
	requests   int
	notMod     int
	latencies  []time.Duration
}

func (p *poller) poll(ctx context.Context, hc *http.Client, base, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		base+"/v1/courses/"+p.course+"/poll?after="+strconv.FormatUint(p.last, 10), nil)
	if err != nil {
		return err
	}
	if p.etag != "" {
		req.Header.Set("If-None-Match", p.etag)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	p.requests++
	switch resp.StatusCode {
	case http.StatusNotModified:
		p.notMod++
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("poll: status %d", resp.StatusCode)
	}
	var body struct {
		LastEventID string            `json:"lastEventId"`
		Events      []json.RawMessage `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	now := time.Now()
	for _, raw := range body.Events {
		id, sent, ok := parseData(raw)
		if !ok {
			continue
		}
		switch {
		case p.last != 0 && id <= p.last:
			p.duplicates++
		case p.last != 0 && id != p.last+1:
			p.outOfOrder++
		}
		if id > p.last {
			p.last = id
		}
		p.received++
		if sent > 0 {
			p.latencies = append(p.latencies, now.Sub(time.Unix(0, sent)))
		}
	}
	if n, err := strconv.ParseUint(body.LastEventID, 10, 64); err == nil && n > p.last {
		p.last = n
	}
	p.etag = resp.Header.Get("ETag")
	return nil
}

func runPoll(ctx context.Context, c config) (*report, error) {
	base := strings.TrimRight(strings.Split(c.Server, ",")[0], "/")
	rep := &report{Mode: "poll", Clients: c.Clients, Courses: c.Courses, Events: c.Events, Rate: c.Rate, Payload: c.Payload, Publish: c.Publish}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c.Clients, MaxConnsPerHost: c.Clients}}
	defer hc.CloseIdleConnections()
	pollers := make([]*poller, c.Clients)
	for i := range pollers {
		pollers[i] = &poller{course: c.CoursePfx + strconv.Itoa(i%c.Courses)}
	}
	perCourse := make([]int, c.Courses)
	for i := range c.Events {
		perCourse[i%c.Courses]++
	}
	pctx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	var wg sync.WaitGroup
	start := time.Now()
	for i, p := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the pollers over the interval.
			offset := time.Duration(i) * c.PollEvery / time.Duration(len(pollers))
			select {
			case <-pctx.Done():
				return
			case <-time.After(offset):
			}
			t := time.NewTicker(c.PollEvery)
			defer t.Stop()
			for {
				_ = p.poll(pctx, hc, base, c.Token)
				select {
				case <-pctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	pub, err := newPublisher(c)
	if err != nil {
		return rep, err
	}
	defer pub.close()
	published, err := publishAll(ctx, c, pub)
	rep.Published = published
	if err == nil {
		select {
		case <-ctx.Done():
		case <-time.After(c.Drain):
		}
	}
	stopPolling()
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var lat []time.Duration
	for i, p := range pollers {
		rep.Expected += perCourse[i%c.Courses]
		rep.Received += p.received
		rep.Duplicates += p.duplicates
		rep.OutOfOrder += p.outOfOrder
		rep.Requests += p.requests
		rep.NotModOK += p.notMod
		lat = append(lat, p.latencies...)
	}
	rep.Connected = len(pollers)
	rep.Lost = rep.Expected - (rep.Received - rep.Duplicates)
	rep.RequestsPS = float64(rep.Requests) / elapsed
	rep.LatencyP50, rep.LatencyP90, rep.LatencyP99, rep.LatencyMax = pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100)
	return rep, err
}
