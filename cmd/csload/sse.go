package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// client is one SSE subscriber. It checks its ids as they come: each must
// be the previous one plus one (the publisher is the only writer of its
// course during a run).
type client struct {
	course string
	conn   net.Conn

	mu         sync.Mutex
	last       uint64 // last id seen; 0 before the first
	received   int
	duplicates int
	outOfOrder int
	gaps       int // ids skipped
	latencies  []time.Duration
	done       chan struct{} // closed when the expected count arrived
	expect     int
}

// dial opens the stream and reads up to the first frame (retry:), which
// the server writes once the subscription is effective.
func dial(ctx context.Context, base *url.URL, course, token string) (*client, time.Duration, *bufio.Reader, error) {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", base.Host)
	if err != nil {
		return nil, 0, nil, err
	}
	path := "/v1/courses/" + course + "/events"
	if token != "" {
		path += "?token=" + url.QueryEscape(token)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, base.Host); err != nil {
		conn.Close()
		return nil, 0, nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, 0, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body := bufio.NewReaderSize(resp.Body, 4096)
	line, err := body.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte("retry:")) {
		conn.Close()
		return nil, 0, nil, fmt.Errorf("first line %q: %v", line, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &client{course: course, conn: conn, done: make(chan struct{})}, time.Since(start), body, nil
}

// read parses frames until the connection ends.
func (c *client) read(r *bufio.Reader) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		now := time.Now()
		id, sent, ok := parseData(line[len("data: "):])
		if !ok {
			continue
		}
		c.mu.Lock()
		switch {
		case c.last != 0 && id <= c.last:
			c.duplicates++
		case c.last != 0 && id != c.last+1:
			c.gaps += int(id - c.last - 1)
			c.outOfOrder++
			c.last = id
		default:
			c.last = id
		}
		c.received++
		if sent > 0 {
			c.latencies = append(c.latencies, now.Sub(time.Unix(0, sent)))
		}
		if c.received == c.expect {
			close(c.done)
		}
		c.mu.Unlock()
	}
}

// parseData finds "id":"N" and the "t":<unix nanos> the publisher put in
// data, without decoding the whole envelope (the load tool shares the
// machine with the server: it must be cheap).
func parseData(b []byte) (id uint64, sent int64, ok bool) {
	i := bytes.Index(b, []byte(`"id":"`))
	if i < 0 {
		return 0, 0, false
	}
	rest := b[i+6:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(string(rest[:j]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if k := bytes.Index(b, []byte(`"t":`)); k >= 0 {
		rest = b[k+4:]
		end := bytes.IndexAny(rest, ",}")
		if end > 0 {
			sent, _ = strconv.ParseInt(string(rest[:end]), 10, 64)
		}
	}
	return id, sent, true
}

func runSSE(ctx context.Context, c config) (*report, error) {
	base, _ := url.Parse(c.Server)
	rep := &report{Mode: "sse", Clients: c.Clients, Courses: c.Courses, Events: c.Events, Rate: c.Rate, Payload: c.Payload, Publish: c.Publish}
	proc := newProc(c.PID)
	rssBefore := proc.rss()

	// Connect at the paced rate.
	clients := make([]*client, 0, c.Clients)
	var mu sync.Mutex
	var connectTimes []time.Duration
	var failed atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(c.Ramp))
	connectStart := time.Now()
	for i := range c.Clients {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
		}
		course := c.CoursePfx + strconv.Itoa(i%c.Courses)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, took, body, err := dial(ctx, base, course, c.Token)
			if err != nil {
				if failed.Add(1) <= 3 {
					fmt.Printf("connect: %v\n", err)
				}
				return
			}
			mu.Lock()
			clients = append(clients, cl)
			connectTimes = append(connectTimes, took)
			mu.Unlock()
			go cl.read(body)
		}()
	}
	tick.Stop()
	wg.Wait()
	rep.ConnectSeconds = time.Since(connectStart).Seconds()
	rep.Connected = len(clients)
	rep.ConnectFailed = int(failed.Load())
	rep.ConnectP50, rep.ConnectP99 = pct(connectTimes, 50), pct(connectTimes, 99)
	defer func() {
		for _, cl := range clients {
			cl.conn.Close()
		}
	}()

	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(c.Settle):
	}
	rssAfter := proc.rss()
	if c.PID > 0 && len(clients) > 0 {
		rep.ServerRSSMiB = float64(rssAfter) / (1 << 20)
		rep.RSSPerConnKiB = float64(rssAfter-rssBefore) / float64(len(clients)) / 1024
	}

	// Every client expects every event of its course.
	perCourse := make([]int, c.Courses)
	for i := range c.Events {
		perCourse[i%c.Courses]++
	}
	for _, cl := range clients {
		var idx int
		fmt.Sscanf(cl.course[len(c.CoursePfx):], "%d", &idx)
		cl.expect = perCourse[idx]
		rep.Expected += cl.expect
		if cl.expect == 0 {
			close(cl.done)
		}
	}

	pub, err := newPublisher(c)
	if err != nil {
		return rep, err
	}
	defer pub.close()
	cpuBefore := proc.cpu()
	pubStart := time.Now()
	published, err := publishAll(ctx, c, pub)
	rep.Published = published
	rep.PublishSeconds = time.Since(pubStart).Seconds()
	if err != nil {
		return rep, err
	}

	// Wait for every client to have its events, or the drain bound.
	deadline := time.After(c.Drain)
wait:
	for _, cl := range clients {
		select {
		case <-cl.done:
		case <-deadline:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	rep.ServerCPUSeconds = proc.cpu() - cpuBefore

	var lat []time.Duration
	for _, cl := range clients {
		cl.mu.Lock()
		rep.Received += cl.received
		rep.Duplicates += cl.duplicates
		rep.OutOfOrder += cl.outOfOrder
		lat = append(lat, cl.latencies...)
		cl.mu.Unlock()
	}
	rep.Lost = rep.Expected - (rep.Received - rep.Duplicates)
	rep.LatencyP50, rep.LatencyP90, rep.LatencyP99, rep.LatencyMax = pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100)
	if c.PID > 0 && rep.Received > 0 {
		rep.CPUPerDeliveryMicros = rep.ServerCPUSeconds / float64(rep.Received) * 1e6
	}
	return rep, nil
}
