package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// runSoak connects and disconnects clients for c.Duration: every cycle,
// c.Clients clients subscribe to c.Courses courses never used before, get
// a few events, and leave. The server's RSS is sampled every cycle; it must
// stay flat (courses nobody watches any more must not cost memory).
func runSoak(ctx context.Context, c config, out io.Writer) (*report, error) {
	bases, _ := parseServers(c.Server)
	proc := newProc(c.PID)
	rep := &report{Mode: "soak", Clients: c.Clients, Courses: c.Courses, Publish: c.Publish}
	pub, err := newPublisher(c)
	if err != nil {
		return rep, err
	}
	defer pub.close()
	perCycle := max(1, c.Events)
	start := time.Now()
	var samples []float64
	for cycle := 0; time.Since(start) < c.Duration && ctx.Err() == nil; cycle++ {
		cycleStart := time.Now()
		prefix := fmt.Sprintf("%ssoak%d-", c.CoursePfx, cycle)
		clients := make([]*client, 0, c.Clients)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range c.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := &client{courses: []string{prefix + strconv.Itoa(i%c.Courses)}, last: make([]uint64, 1), cfg: &c, bases: bases, done: make(chan struct{})}
				cl.expect = perCycle / c.Courses
				if i%c.Courses < perCycle%c.Courses {
					cl.expect++
				}
				if cl.expect == 0 {
					cl.doneClosed = true
					close(cl.done)
				}
				_, body, err := cl.dial(ctx, 0)
				if err != nil {
					return
				}
				go cl.run(ctx, body)
				mu.Lock()
				clients = append(clients, cl)
				mu.Unlock()
			}()
		}
		wg.Wait()
		rep.Connected += len(clients)
		rep.ConnectFailed += c.Clients - len(clients)
		for i := range perCycle {
			data := []byte(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)
			if err := pub.publish(ctx, prefix+strconv.Itoa(i%c.Courses), data); err != nil {
				return rep, err
			}
			rep.Published++
		}
		deadline := time.After(c.Drain)
	wait:
		for _, cl := range clients {
			select {
			case <-cl.done:
			case <-deadline:
				break wait
			}
		}
		for _, cl := range clients {
			cl.stop()
			cl.mu.Lock()
			rep.Expected += cl.expect
			rep.Received += cl.received
			rep.Duplicates += cl.duplicates
			rep.OutOfOrder += cl.outOfOrder
			cl.mu.Unlock()
		}
		rss := float64(proc.rss()) / (1 << 20)
		samples = append(samples, rss)
		fmt.Fprintf(out, "cycle %d at %s: %d clients, RSS %.1f MiB\n", cycle, time.Since(start).Round(time.Second), len(clients), rss)
		if d := time.Until(cycleStart.Add(c.Cycle)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	rep.settle()
	rep.Events = rep.Published
	if len(samples) > 0 {
		rep.RSSStartMiB, rep.RSSEndMiB = samples[min(len(samples)-1, len(samples)/10)], samples[len(samples)-1]
		for _, s := range samples {
			rep.RSSMaxMiB = max(rep.RSSMaxMiB, s)
		}
	}
	return rep, nil
}
