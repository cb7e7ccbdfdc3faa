package observer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"coursestream/internal/redistest"
)

// TestRedisGarbageOnChannel: whatever lands on a course channel that is
// not an envelope of that course is counted by kind, logged once per kind,
// dropped, and the course goes on.
func TestRedisGarbageOnChannel(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	log, logs := capture()
	met := newTestMetrics()
	r := runRedis(t, RedisConfig{URL: srv.URL(), Logger: log, Metrics: met})
	rdb := srv.Client()
	ctx := context.Background()
	rc := subscribe(t, r, "c")
	pub(t, r, "c")
	rc.waitFor(t, "event 1", upTo(1))

	garbage := map[string][]string{
		"json":   {"not json", "{", "\xff\xfe", ""},
		"fields": {`{}`, `[1,2]`, `{"id":"2","courseId":"c","type":"t","timestamp":1}`, `{"id":"x","courseId":"c","type":"t","data":1,"timestamp":1}`, `{"id":"2","courseId":"c","type":"reset","data":1,"timestamp":1}`, `{"id":"0","courseId":"c","type":"t","data":1,"timestamp":1}`},
		"course": {`{"id":"2","courseId":"other","type":"t","data":1,"timestamp":1}`},
		"id":     {`{"id":"999999","courseId":"c","type":"t","data":1,"timestamp":1}`}, // ahead of the sequence: forged
	}
	for _, msgs := range garbage {
		for _, m := range msgs {
			if err := rdb.Publish(ctx, ChannelName("c"), m).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub(t, r, "c")
	pub(t, r, "c")
	evs := rc.waitFor(t, "events 2 and 3", upTo(3))
	checkOrder(t, evs, 1)
	if len(evs) != 3 {
		t.Fatalf("got %s, want [1 2 3]", describe(evs))
	}
	deadline := time.Now().Add(testWait)
	for kind, msgs := range garbage {
		for met.get(func(m *testMetrics) int { return m.malformed[kind] }) < len(msgs) {
			if time.Now().After(deadline) {
				t.Fatalf("malformed %q counted %d, want %d", kind, met.get(func(m *testMetrics) int { return m.malformed[kind] }), len(msgs))
			}
			time.Sleep(10 * time.Millisecond) // the forged id is judged by the next fill or reconcile
		}
		if n := strings.Count(logs.String(), "kind="+kind+" "); n != 1 {
			t.Errorf("kind %q logged %d times, want once:\n%s", kind, n, logs)
		}
	}
}

// TestRedisClientKillPubsubLosesNothing kills the pub/sub connections again
// and again while another instance publishes: go-redis reconnects and
// resubscribes silently, and the broker reads what was missed from the
// history. The listener sees every id once, in order.
func TestRedisClientKillPubsubLosesNothing(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	met := newTestMetrics()
	a := runRedis(t, RedisConfig{URL: srv.URL(), Metrics: met})
	b := runRedis(t, RedisConfig{URL: srv.URL()})
	rdb := srv.Client()
	ctx := context.Background()
	rcs := []*recorder{subscribe(t, a, "k1"), subscribe(t, a, "k2")}

	const total = 400
	progress := make(chan struct{}, total)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			course := "k1"
			if i%2 == 1 {
				course = "k2"
			}
			if _, err := b.Publish(ctx, Message{CourseID: course, Type: "t"}); err != nil {
				t.Error(err)
				return
			}
			if i%40 == 39 {
				progress <- struct{}{}
			}
		}
	}()
	kills := 0
	for range total/40 - 1 { // kill after every 40 events while they flow
		select {
		case <-progress:
		case <-done:
		}
		if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		kills++
	}
	<-done
	for _, rc := range rcs {
		evs := rc.waitFor(t, "every event", upTo(total/2))
		checkOrder(t, evs, 1)
		if len(evs) != total/2 {
			t.Fatalf("got %d events, want %d", len(evs), total/2)
		}
	}
	if met.get(func(m *testMetrics) int { return m.reconnected }) == 0 {
		t.Fatalf("%d kills, no reconnect counted", kills)
	}
	t.Logf("%d kills; %d events recovered from history", kills, met.get(func(m *testMetrics) int { return m.recovered }))
}

// TestRedisChannelOverflowDropsAreRecovered: with the receive loop stalled,
// go-redis drops what does not fit its Go channel, the last message of the
// burst included. The next message shows a gap; only the reconcile can see
// the missing tail. Everything arrives, once, in order.
func TestRedisChannelOverflowDropsAreRecovered(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	met := newTestMetrics()
	r := runRedis(t, RedisConfig{URL: srv.URL(), Metrics: met, ChannelSize: 1, ChannelSendTimeout: 5 * time.Millisecond})
	b := runRedis(t, RedisConfig{URL: srv.URL()})
	ctx := context.Background()

	stall, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rc := newRecorder()
	un, err := r.Subscribe(ctx, "burst", func(ev *Event) {
		rc.listen(ev)
		if ev.ID == 1 {
			once.Do(func() { close(stall) })
			<-release // against the Listener contract, to stall the receive loop
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer un()
	for len(goRedisDropped) > 0 { // nothing else drops; start from zero
		<-goRedisDropped
	}
	pub(t, b, "burst")
	<-stall
	for range 30 {
		pub(t, b, "burst")
	}
	// Event 2 waits in the channel; 3 to 31, the last one included, are
	// dropped by go-redis after the send timeout.
	timeout := time.After(testWait)
	for range 29 {
		select {
		case <-goRedisDropped:
		case <-timeout:
			t.Fatal("go-redis dropped fewer than 29 messages")
		}
	}
	close(release)
	evs := rc.waitFor(t, "all 31 events", upTo(31))
	checkOrder(t, evs, 1)
	if len(evs) != 31 {
		t.Fatalf("got %s", describe(evs))
	}
	if met.get(func(m *testMetrics) int { return m.recovered }) == 0 {
		t.Fatal("nothing was recovered from history: go-redis dropped nothing?")
	}
}

// TestRedisRestartWithoutPersistence: Redis goes away; Ready says so and
// publishing fails with ErrUnavailable. It comes back empty: the library
// is loaded again, Ready passes, the course's sequence continues above the
// ids delivered (no id is ever reused), and listeners get a reset notice
// then the new events.
func TestRedisRestartWithoutPersistence(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL()})
	ctx := context.Background()
	rc := subscribe(t, r, "c")
	for range 3 {
		pub(t, r, "c")
	}
	rc.waitFor(t, "3 events", upTo(3))

	srv.Stop()
	if err := r.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready with Redis down: %v", err)
	}
	if _, err := r.Publish(ctx, Message{CourseID: "c", Type: "t"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish with Redis down: %v", err)
	}
	if _, err := r.History(ctx, "c", 0, 10); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("History with Redis down: %v", err)
	}
	began := time.Now()
	if _, err := r.Subscribe(ctx, "other", func(*Event) {}); !errors.Is(err, ErrUnavailable) || time.Since(began) > 2*time.Second {
		t.Fatalf("Subscribe with Redis down: %v after %s, want unavailable at once", err, time.Since(began))
	}
	srv.Restart()
	waitReady(t, r)
	ev := pub(t, r, "c")
	if ev.ID != 3+lossMargin+1 {
		t.Fatalf("first id after an empty restart %d, want %d: above every id delivered", ev.ID, 3+lossMargin+1)
	}
	// The reset carries the course's id when the history was read: before
	// the new event (then the event follows), or at it (then the refetch
	// the reset asks for includes it).
	evs := rc.waitFor(t, "a reset, then or at the new event", func(evs []*Event) bool {
		for i, e := range evs {
			if e.Reset {
				return e.ID == ev.ID || i+1 < len(evs) && evs[i+1].ID == ev.ID && e.ID == ev.ID-1
			}
		}
		return false
	})
	checkOrder(t, evs, 1)
	t.Logf("listener saw %s", describe(evs))
}

// TestRedisRestartWithAOF: Redis restarts with its data: no reset, the ids
// go on and delivery resumes.
func TestRedisRestartWithAOF(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{AOF: true})
	r := runRedis(t, RedisConfig{URL: srv.URL()})
	rc := subscribe(t, r, "c")
	for range 3 {
		pub(t, r, "c")
	}
	rc.waitFor(t, "3 events", upTo(3))
	srv.Restart()
	waitReady(t, r)
	ev := pub(t, r, "c")
	if ev.ID != 4 {
		t.Fatalf("id after a restart with AOF %d, want 4", ev.ID)
	}
	evs := rc.waitFor(t, "event 4", upTo(4))
	checkOrder(t, evs, 1)
	if len(evs) != 4 {
		t.Fatalf("got %s", describe(evs))
	}
}

// TestRedisUnannouncedTrimmedGapResets: events stored without a message
// (a lost PUBLISH) are found by the reconcile and read from the history;
// when the history no longer holds them, listeners get a reset.
func TestRedisUnannouncedTrimmedGapResets(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL()})
	rdb := srv.Client()
	ctx := context.Background()
	rc := subscribe(t, r, "c")
	pub(t, r, "c")
	rc.waitFor(t, "event 1", upTo(1))

	// Stored, not announced: the reconcile finds and delivers it.
	store := func(id string) {
		t.Helper()
		if err := rdb.Set(ctx, SeqKey("c"), id, 0).Err(); err != nil {
			t.Fatal(err)
		}
		env := `{"id":"` + id + `","courseId":"c","type":"t","data":null,"timestamp":1}`
		if err := rdb.Do(ctx, "XADD", HistoryKey("c"), id+"-0", "envelope", env).Err(); err != nil {
			t.Fatal(err)
		}
	}
	store("2")
	rc.waitFor(t, "event 2 from history", upTo(2))

	// Stored, not announced, and trimmed away: a reset at the sequence.
	store("3")
	store("4")
	if err := rdb.Do(ctx, "XTRIM", HistoryKey("c"), "MINID", "4-0").Err(); err != nil {
		t.Fatal(err)
	}
	evs := rc.waitFor(t, "a reset", func(evs []*Event) bool { return evs[len(evs)-1].Reset })
	if last := evs[len(evs)-1]; last.ID != 4 || len(evs) != 3 {
		t.Fatalf("got %s, want [1 2 reset@4]", describe(evs))
	}
	pub(t, r, "c")
	evs = rc.waitFor(t, "event 5", upTo(5))
	checkOrder(t, evs, 1)
}

// TestRedisFlushAllResets: the data goes (FLUSHALL; the function library
// stays) while the connection stays. The next publish may take id 1 again,
// but the reconcile sees the sequence behind the ids delivered: it raises
// the sequence above them and listeners get a reset before the new events.
func TestRedisFlushAllResets(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL()})
	rdb := srv.Client()
	ctx := context.Background()
	rc := subscribe(t, r, "c")
	for range 5 {
		pub(t, r, "c")
	}
	rc.waitFor(t, "5 events", upTo(5))
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	pub(t, r, "c")
	rc.waitFor(t, "a reset", func(evs []*Event) bool { return evs[len(evs)-1].Reset })
	second := pub(t, r, "c")
	if second.ID <= 5+lossMargin {
		t.Fatalf("id after the reset %d: an id below %d could be taken for one delivered", second.ID, 5+lossMargin)
	}
	evs := rc.waitFor(t, "the next event", upTo(second.ID))
	sawReset := false
	for _, e := range evs {
		sawReset = sawReset || (e.Reset && e.ID >= 5+lossMargin)
	}
	if !sawReset {
		t.Fatalf("got %s, want a reset above %d", describe(evs), 5+lossMargin)
	}
	checkOrder(t, evs, 1)
}

// TestRedisLibraryLoadedAgain: after FUNCTION FLUSH the library is loaded
// again (by the next call that needs it, or the reconcile); Ready reports
// the gap meanwhile, and backends' FCALL works again.
func TestRedisLibraryLoadedAgain(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL(), Reconcile: time.Hour})
	rdb := srv.Client()
	ctx := context.Background()
	if err := rdb.FunctionFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Ready(ctx); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Fatalf("Ready without the library: %v", err)
	}
	if ev := pub(t, r, "c"); ev.ID != 1 { // loads it again
		t.Fatalf("id %d", ev.ID)
	}
	if err := r.Ready(ctx); err != nil {
		t.Fatalf("Ready after reload: %v", err)
	}
	// The reconcile does it too, and an instance with other limits is told.
	log, logs := capture()
	other := runRedis(t, RedisConfig{URL: srv.URL(), History: 7, Reconcile: 50 * time.Millisecond, Logger: log})
	if err := rdb.FunctionFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, other)
	if n, err := rdb.FCall(ctx, FunctionPublish, []string{"c"}, "t", "1").Int64(); err != nil || n != 2 {
		t.Fatalf("FCALL after the reconcile reloaded the library: %d, %v", n, err)
	}
	_ = r.loadLibrary(ctx) // r's limits again: other notices at its next check
	deadline := time.Now().Add(testWait)
	for !strings.Contains(logs.String(), "other limits") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about other limits:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisDeafConnectionIsReplaced: a pub/sub connection that Redis
// answers for but that receives nothing (its probe reaches nobody) is
// replaced by a new one, subscribed to every course; what was published
// meanwhile is read from the history.
func TestRedisDeafConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL(), Reconcile: 20 * time.Millisecond})
	ctx := context.Background()
	rc := subscribe(t, r, "c")
	pub(t, r, "c")
	rc.waitFor(t, "event 1", upTo(1))

	// Make the connection deaf behind the broker's back: unsubscribe it
	// from everything, its probe channel included.
	r.mu.Lock()
	old := r.subs[singleSlot]
	r.mu.Unlock()
	if err := old.ps.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	pub(t, r, "c") // lost on the deaf connection
	deadline := time.Now().Add(testWait)
	for {
		r.mu.Lock()
		now := r.subs[singleSlot]
		r.mu.Unlock()
		if now != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deaf connection was not replaced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitReady(t, r)
	pub(t, r, "c")
	evs := rc.waitFor(t, "events 2 and 3", upTo(3))
	checkOrder(t, evs, 1)
	if len(evs) != 3 {
		t.Fatalf("got %s", describe(evs))
	}
}
