package observer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"coursestream/internal/redistest"
)

// TestRedisSilentPubSub: a pub/sub connection that stays open but stops
// delivering (a proxy drops what Redis sends it) turns Ready into an error
// within 10 s, is built anew, and the events published meanwhile still
// reach the listener, once each, in order.
func TestRedisSilentPubSub(t *testing.T) {
	s := startRedis(t, redistest.Options{})
	p := redistest.StartProxy(t, s.Addr)
	m := newTestMetrics()
	r := runRedis(t, RedisConfig{URL: p.URL(), Metrics: m})
	rc := subscribe(t, r, "silent")
	direct := s.Client()
	publishDirect := func(n int) {
		for range n {
			if _, err := PublishFCALL(context.Background(), direct, Message{CourseID: "silent", Type: "t", Data: json.RawMessage(`1`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publishDirect(5)
	rc.waitFor(t, "the first events", upTo(5))
	if m.get(func(m *testMetrics) int { return m.canaries }) == 0 {
		t.Fatal("no canary round trip observed while the connection delivered")
	}

	if n := p.SilencePubSub(); n != 1 {
		t.Fatalf("silenced %d pub/sub connections, want 1", n)
	}
	silenced := time.Now()
	publishDirect(5) // into the silence
	var readyErr error
	for readyErr == nil {
		readyErr = r.Ready(context.Background())
		if time.Since(silenced) > 10*time.Second {
			t.Fatal("Ready still passes 10 s after the pub/sub connection went silent")
		}
		time.Sleep(50 * time.Millisecond) // readiness has no event to wait on
	}
	if !errors.Is(readyErr, ErrUnavailable) {
		t.Fatalf("Ready: %v, want ErrUnavailable", readyErr)
	}
	t.Logf("not ready %s after the silence: %v", time.Since(silenced).Round(time.Millisecond), readyErr)
	evs := rc.waitFor(t, "the events published into the silence", upTo(10))
	checkOrder(t, evs, 1)
	for _, ev := range evs {
		if ev.Reset {
			t.Fatalf("a reset where nothing was lost: %s", describe(evs))
		}
	}
	waitReady(t, r)
	publishDirect(1)
	checkOrder(t, rc.waitFor(t, "an event on the new connection", upTo(11)), 1)
}

// TestRedisWaitReplicasShort: with WaitReplicas above the replicas there
// are, Publish fails with ErrNotReplicated (and ErrUnavailable) after the
// wait, not before and not much later.
func TestRedisWaitReplicasShort(t *testing.T) {
	s := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: s.URL(), WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond})
	began := time.Now()
	_, err := r.Publish(context.Background(), Message{CourseID: "w", Type: "t", Data: json.RawMessage(`1`)})
	took := time.Since(began)
	if !errors.Is(err, ErrNotReplicated) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish with no replica: %v, want ErrNotReplicated and ErrUnavailable", err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("Publish failed after %s, want the 300ms wait", took)
	}
}

// TestRedisSentinelFailover: a broker on a Sentinel master with two
// replicas, publishing with WaitReplicas 1 while the master is killed: it
// follows the failover (publishes succeed on the new master), the
// listener sees each event once in order (or a reset), every event it got
// is the one the new master holds under that id unless a reset followed,
// and every acknowledged publish is in the new master's history.
func TestRedisSentinelFailover(t *testing.T) {
	st := redistest.StartSentinel(t, redistest.SentinelOptions{Replicas: 2})
	r := runRedis(t, RedisConfig{Sentinel: SentinelConfig{Addrs: st.Addrs(), Master: redistest.MasterName}, WaitReplicas: 1})
	const course = "failover"
	rc := subscribe(t, r, course)

	var mu sync.Mutex
	acked := map[uint64]string{}
	failed := 0
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			data := fmt.Sprintf(`{"n":%d}`, i)
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			ev, err := r.Publish(pctx, Message{CourseID: course, Type: "t", Data: json.RawMessage(data)})
			cancel()
			mu.Lock()
			if err == nil {
				acked[ev.ID] = data
			} else {
				failed++
			}
			mu.Unlock()
			pause := 2 * time.Millisecond // a steady publisher, not a flood
			if err != nil {
				pause = 20 * time.Millisecond // a client's pause between retries
			}
			time.Sleep(pause)
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitCount := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d publishes acknowledged, want %d", count(), n)
			}
			time.Sleep(10 * time.Millisecond) // counting publishes: polled
		}
	}
	waitCount(20)
	old := st.Master.Addr
	began := time.Now()
	st.Master.Kill()
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := st.WaitFailover(wctx, old); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(began)
	before := count()
	waitCount(before + 20) // publishing works on the new master
	stop()
	wg.Wait()
	t.Logf("failover in %s; %d publishes acknowledged, %d failed", promoted.Round(time.Millisecond), count(), failed)

	last, err := r.LastID(context.Background(), course)
	if err != nil {
		t.Fatal(err)
	}
	evs := rc.waitFor(t, "the last event", upTo(last))
	checkOrder(t, evs, 1)
	var entries []redis.XMessage
	for attempt := 0; ; attempt++ {
		// A fresh failover client may see +switch-master (and close its
		// connection to the old master) while this read is on it.
		entries, err = st.Client().XRange(context.Background(), HistoryKey(course), "-", "+").Result()
		if err == nil || attempt == 3 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	kept := map[uint64]string{}
	for _, e := range entries {
		s, _ := e.Values["envelope"].(string)
		ev, err := ParseEnvelope([]byte(s))
		if err != nil {
			t.Fatalf("history entry %s: %v", e.ID, err)
		}
		kept[ev.ID] = string(ev.Data)
	}
	// Every event delivered is the one the new master holds under its id,
	// unless a reset came after it: an id never names a different event
	// than before without the listener being told.
	resets, told := 0, false
	for i := len(evs) - 1; i >= 0; i-- {
		ev := evs[i]
		switch {
		case ev.Reset:
			resets++
			told = true
		case !told && kept[ev.ID] != string(ev.Data):
			t.Errorf("delivered event %d (%s) is %q on the new master, and no reset followed", ev.ID, ev.Data, kept[ev.ID])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, data := range acked {
		if kept[id] != data {
			t.Errorf("acknowledged event %d (%s) is %q on the new master", id, data, kept[id])
		}
	}
	t.Logf("%d resets", resets)
}

// TestRedisIDReusedAfterLoss: Redis lost the last events this instance
// delivered (a failover to a replica that lacked them) and other events
// were published under their ids before the instance noticed. On its
// reconnect the broker sees that the id it delivered last names another
// event now: listeners get a reset, the sequence continues above every id
// delivered, and no new event reuses one.
func TestRedisIDReusedAfterLoss(t *testing.T) {
	s := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: s.URL()})
	const course = "reused"
	rc := subscribe(t, r, course)
	for range 3 {
		pub(t, r, course)
	}
	rc.waitFor(t, "three events", upTo(3))

	// The loss: the new master has only event 1 ...
	ctx := context.Background()
	rdb := s.Client()
	first, err := rdb.XRangeN(ctx, HistoryKey(course), "1-0", "1-0", 1).Result()
	if err != nil || len(first) != 1 {
		t.Fatalf("reading event 1: %v %v", first, err)
	}
	if err := rdb.Del(ctx, HistoryKey(course)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: HistoryKey(course), ID: "1-0", Values: first[0].Values}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, SeqKey(course), 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// ... and ids 2 and 3 go to other events (later by a few ms).
	time.Sleep(5 * time.Millisecond) // the new events' timestamps differ from the old ones
	for range 2 {
		if _, err := PublishFCALL(ctx, rdb, Message{CourseID: course, Type: "t", Data: json.RawMessage(`"new"`)}); err != nil {
			t.Fatal(err)
		}
	}
	// The failover breaks the pub/sub connection.
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	evs := rc.waitFor(t, "a reset", func(evs []*Event) bool { return len(evs) > 3 && evs[len(evs)-1].Reset })
	reset := evs[len(evs)-1]
	if reset.ID < 3+lossMargin {
		t.Fatalf("reset to %d, want above every id delivered plus the margin: %s", reset.ID, describe(evs))
	}
	next := pub(t, r, course)
	if next.ID <= reset.ID {
		t.Fatalf("the next event got id %d, at or below the reset %d", next.ID, reset.ID)
	}
	checkOrder(t, rc.waitFor(t, "the next event", upTo(next.ID)), 1)
}
