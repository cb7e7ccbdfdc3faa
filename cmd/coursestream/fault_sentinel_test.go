package main

// The fault suite's high-availability scenarios (issue 15): a Sentinel
// failover under load, with acknowledged publishes, and a pub/sub
// connection that stays open but stops delivering. Both run real
// redis-server processes (and sentinels) and two coursestream processes on
// loopback and check every client with the shared invariant.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coursestream/internal/redistest"
)

// ackPublisher publishes like a backend that needs its events kept:
// alternately over HTTP (the instance waits for its replicas with
// --redis-wait-replicas) and with FCALL then WAIT on one connection (the
// recipe of docs/redis.md). It records every acknowledged event.
type ackPublisher struct {
	fleet   *fleet
	courses []string
	every   time.Duration
	waitN   int // replicas an FCALL waits for

	ok, failed atomic.Int64
	mu         sync.Mutex
	acked      map[string]map[uint64]string // course → id → data
	errs       []string                     // the first refusals, for the log
}

func (p *ackPublisher) run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		course := p.courses[i%len(p.courses)]
		data := `{"n":` + strconv.Itoa(i) + `}`
		var id uint64
		var err error
		if i%2 == 0 {
			id, err = p.fcallWait(ctx, course, data)
		} else {
			id, err = p.http(ctx, course, data)
		}
		if err != nil {
			p.failed.Add(1)
			p.mu.Lock()
			if len(p.errs) < 5 {
				p.errs = append(p.errs, time.Now().Format("15:04:05.000 ")+err.Error())
			}
			p.mu.Unlock()
		} else {
			p.mu.Lock()
			if p.acked[course] == nil {
				p.acked[course] = map[uint64]string{}
			}
			p.acked[course][id] = data
			p.mu.Unlock()
			p.ok.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// fcallWait is FCALL coursestream_publish then WAIT, pipelined.
func (p *ackPublisher) fcallWait(ctx context.Context, course, data string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	pipe := p.fleet.rdb.Pipeline()
	call := pipe.FCall(ctx, "coursestream_publish", []string{course}, "upload-progress", data)
	wait := pipe.Do(ctx, "WAIT", p.waitN, 1000)
	_, _ = pipe.Exec(ctx)
	id, err := call.Int64()
	if err != nil {
		return 0, err
	}
	if n, err := wait.Int64(); err != nil || n < int64(p.waitN) {
		return 0, fmt.Errorf("WAIT: %d replicas, %v", n, err)
	}
	return uint64(id), nil
}

func (p *ackPublisher) http(ctx context.Context, course, data string) (uint64, error) {
	base := p.fleet.pick()
	if base == "" {
		return 0, fmt.Errorf("no instance")
	}
	body := `{"type":"chapter-update-complete","data":` + data + `}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/courses/"+course+"/events", strings.NewReader(body))
	resp, err := pollClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("publish: %d %s", resp.StatusCode, b)
	}
	var out struct{ ID string }
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, err
	}
	return strconv.ParseUint(out.ID, 10, 64)
}

// kept reads a course's history on the current master: id → data.
func kept(t *testing.T, f *fleet, course string) map[uint64]string {
	t.Helper()
	entries, err := f.rdb.XRange(context.Background(), "coursestream:{"+course+"}:history", "-", "+").Result()
	if err != nil {
		t.Fatalf("reading the history of %s: %v", course, err)
	}
	out := make(map[uint64]string, len(entries))
	for _, e := range entries {
		var env struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		s, _ := e.Values["envelope"].(string)
		if err := json.Unmarshal([]byte(s), &env); err != nil {
			t.Fatalf("history entry %s of %s: %v", e.ID, course, err)
		}
		id, _ := strconv.ParseUint(env.ID, 10, 64)
		out[id] = string(env.Data)
	}
	return out
}

// TestFaultSentinelFailover: two instances on a Sentinel master, SSE and
// poll clients, continuous publishing (acknowledged after WAIT with
// --redis-wait-replicas 1, as soon as the master has the event with 0);
// the master is SIGKILLed, the sentinels promote a replica and point the
// other one at it. Every client ends at its course's last id with no gap
// and no duplicate (or a reset, where the promoted replica lacked events
// it was sent); with --redis-wait-replicas 1 no acknowledged event is
// missing from the new master.
func TestFaultSentinelFailover(t *testing.T) {
	for _, wait := range []int{1, 0} {
		t.Run(fmt.Sprintf("wait-replicas=%d", wait), func(t *testing.T) { sentinelFailover(t, wait) })
	}
}

func sentinelFailover(t *testing.T, wait int) {
	st := redistest.StartSentinel(t, redistest.SentinelOptions{Replicas: 2})
	f := &fleet{t: t, rdb: st.Client(), bin: binary,
		where: []string{"--redis-sentinel", strings.Join(st.Addrs(), ","), "--redis-master", redistest.MasterName},
		args:  []string{"--redis-wait-replicas", strconv.Itoa(wait), "--history", "10000"}}
	f.add()
	f.add()
	waitReady(t, f)

	var courses []string
	for i := range 2 {
		courses = append(courses, fmt.Sprintf("failover-%d-%d", time.Now().UnixNano()%1e6, i))
	}
	var watchers []*watcher
	var pollers []*pollWatcher
	var clients []func(context.Context)
	for _, c := range courses {
		for range 8 {
			w := &watcher{course: c, fleet: f}
			watchers = append(watchers, w)
			clients = append(clients, w.run)
		}
		for range 2 {
			p := &pollWatcher{course: c, fleet: f, every: 100 * time.Millisecond}
			pollers = append(pollers, p)
			clients = append(clients, p.run)
		}
	}
	cctx, stopClients := context.WithCancel(context.Background())
	waitClients := startAll(cctx, clients...)
	pub := &ackPublisher{fleet: f, courses: courses, every: 10 * time.Millisecond, waitN: wait, acked: map[string]map[uint64]string{}}
	pctx, stopPub := context.WithCancel(context.Background())
	waitPub := startAll(pctx, pub.run)
	t.Cleanup(func() { stopPub(); stopClients(); waitPub(); waitClients() })

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s (%d publishes acknowledged, %d failed)", what, pub.ok.Load(), pub.failed.Load())
			}
			time.Sleep(10 * time.Millisecond) // across processes: polled
		}
	}
	waitFor("events before the fault", func() bool {
		for _, w := range watchers {
			if w.position() < 10 {
				return false
			}
		}
		return true
	})

	old := st.Master.Addr
	began := time.Now()
	st.Master.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := st.WaitFailover(ctx, old); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(began)
	failedBefore := pub.failed.Load()
	from := pub.ok.Load()
	waitFor("a publish on the new master", func() bool { return pub.ok.Load() > from })
	recovered := time.Since(began)
	waitFor("publishing after the failover", func() bool { return pub.ok.Load() >= from+200 })
	stopPub()
	waitPub()

	name := fmt.Sprintf("Sentinel failover, master SIGKILLed, --redis-wait-replicas %d (promoted in %.1f s, publishing again after %.1f s)",
		wait, promoted.Seconds(), recovered.Seconds())
	hs := func(n int, h func(i int) *history) []*history {
		out := make([]*history, n)
		for i := range out {
			out[i] = h(i)
		}
		return out
	}
	published := int(pub.ok.Load())
	sse := checkAll(t, f, name+" (SSE)", published, hs(len(watchers), func(i int) *history { return &watchers[i].history }),
		courses, func(i int) string { return watchers[i].course }, true)
	checkAll(t, f, name+" (polls)", published, hs(len(pollers), func(i int) *history { return &pollers[i].history }),
		courses, func(i int) string { return pollers[i].course }, true)
	stopClients()
	waitClients()

	lost := 0
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for _, c := range courses {
		have := kept(t, f, c)
		for id, data := range pub.acked[c] {
			if have[id] != data {
				lost++
				if lost <= 5 && wait > 0 {
					t.Errorf("acknowledged event %d of %s (%s) is %q on the new master", id, c, data, have[id])
				}
			}
		}
	}
	t.Logf("%d acknowledged publishes, %d refused (%d after the promotion; master killed at %s), %d acknowledged events lost, %d SSE resets; first refusals: %q",
		published, pub.failed.Load(), pub.failed.Load()-failedBefore, began.Format("15:04:05.000"), lost, sse.reset, pub.errs)
	waitReady(t, f)

	// publish --redis-sentinel finds the new master too.
	before := f.seq(courses[0])
	code, stdout, stderr := runCLI([]string{"publish", "--redis-sentinel", strings.Join(st.Addrs(), ","), "--redis-master", redistest.MasterName,
		"--course", courses[0], "--type", "chapter-update-complete", "--data", `{"after":"failover"}`}, nil)
	if code != 0 || strings.TrimSpace(stdout) != strconv.FormatUint(before+1, 10) {
		t.Fatalf("publish --redis-sentinel after the failover: exit %d, stdout %q, stderr %q; want id %d", code, stdout, stderr, before+1)
	}
}

// TestFaultSilentPubSub: both instances reach Redis through a proxy that
// then stops forwarding what Redis sends their pub/sub connections, TCP
// left open. /readyz turns 503 within 10 s, the connections are built
// anew, readiness comes back, and every client gets every event: no gap,
// no duplicate, no reset.
func TestFaultSilentPubSub(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	p := redistest.StartProxy(t, s.Addr)
	f := &fleet{t: t, redis: s, rdb: s.Client(), bin: binary, where: []string{"--redis-url", p.URL()}}
	f.add()
	f.add()
	waitReady(t, f)
	l := startLoad(t, f, "silent", loadSpec{courses: 2, watchers: 8, pollers: 2, every: 10 * time.Millisecond})
	l.waitDelivered(5)
	if n := p.SilencePubSub(); n != 2 {
		t.Fatalf("silenced %d pub/sub connections, want one per instance", n)
	}
	silenced := time.Now()
	// Each instance is watched on its own: its 503 lasts only until the
	// new connection delivers, and a /readyz that sends a canary takes up
	// to a second.
	noticedAt := make([]time.Duration, len(f.live)) // each instance's first 503; 0: none within 10 s
	var wg sync.WaitGroup
	for i, srv := range f.live {
		wg.Go(func() {
			for time.Since(silenced) < 10*time.Second {
				resp, err := noKeepAlive.Get(srv.url("/readyz"))
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable {
						noticedAt[i] = time.Since(silenced)
						return
					}
				}
				time.Sleep(20 * time.Millisecond) // across processes: polled
			}
		})
	}
	wg.Wait()
	var noticed time.Duration
	for i, d := range noticedAt {
		if d == 0 {
			t.Fatalf("%s did not turn 503 within 10 s of its pub/sub connection going silent", f.live[i].addr)
		}
		noticed = max(noticed, d)
	}
	waitReady(t, f)
	l.waitPublished(50)
	l.finish(fmt.Sprintf("pub/sub connection silent, TCP open (503 after %.1f s, rebuilt)", noticed.Seconds()), false)
	for _, srv := range f.live {
		if n := metric(t, srv, "coursestream_redis_canary_seconds_count"); n == 0 {
			t.Errorf("%s observed no canary round trip", srv.addr)
		}
		if n := metric(t, srv, "coursestream_redis_reconnects_total"); n == 0 {
			t.Errorf("%s did not build its pub/sub connection anew", srv.addr)
		}
	}
}
