package observer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"coursestream/internal/redistest"
)

// TestMain fails the package when any test leaves a goroutine behind: the
// Redis broker's Run must end everything it starts. go-redis logs through a
// hook that counts the messages it drops off a full Go channel (set
// REDIS_LOG=1 to see its log).
func TestMain(m *testing.M) {
	redis.SetLogger(goRedisLog{})
	goleak.VerifyTestMain(m)
}

// goRedisDropped receives one value per message go-redis dropped.
var goRedisDropped = make(chan struct{}, 10000)

type goRedisLog struct{}

func (goRedisLog) Printf(_ context.Context, format string, v ...any) {
	if strings.Contains(format, "message is dropped") {
		select {
		case goRedisDropped <- struct{}{}:
		default:
		}
	}
	if os.Getenv("REDIS_LOG") != "" {
		fmt.Fprintf(os.Stderr, "redis: "+format+"\n", v...)
	}
}

// testWait bounds every wait of the Redis tests.
const testWait = 15 * time.Second

// testMetrics counts what a broker reports.
type testMetrics struct {
	mu          sync.Mutex
	received    int
	malformed   map[string]int
	published   int
	reconnected int
	recovered   int
	canaries    int
}

func newTestMetrics() *testMetrics { return &testMetrics{malformed: map[string]int{}} }

func (m *testMetrics) Received()                     { m.mu.Lock(); m.received++; m.mu.Unlock() }
func (m *testMetrics) Malformed(kind string)         { m.mu.Lock(); m.malformed[kind]++; m.mu.Unlock() }
func (m *testMetrics) Published(d time.Duration)     { m.mu.Lock(); m.published++; m.mu.Unlock() }
func (m *testMetrics) Reconnected()                  { m.mu.Lock(); m.reconnected++; m.mu.Unlock() }
func (m *testMetrics) Recovered(n int)               { m.mu.Lock(); m.recovered += n; m.mu.Unlock() }
func (m *testMetrics) CanaryRoundTrip(time.Duration) { m.mu.Lock(); m.canaries++; m.mu.Unlock() }

func (m *testMetrics) get(f func(*testMetrics) int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return f(m)
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// runRedis builds a broker on srv (or the cluster addresses in cfg), runs
// it until the test ends and waits until it is ready.
func runRedis(t *testing.T, cfg RedisConfig) *Redis {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.Reconcile == 0 {
		cfg.Reconcile = 100 * time.Millisecond
	}
	r, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(testWait):
			var stacks strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Errorf("Run did not return %s after its context ended:\n%s", testWait, stacks.String())
		}
		_ = r.Close()
	})
	waitReady(t, r)
	return r
}

// waitReady polls Ready until it passes: readiness has no event to wait on.
func waitReady(t *testing.T, r *Redis) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		err := r.Ready(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after %s: %v", testWait, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder is a listener that keeps what it gets and signals each call.
type recorder struct {
	mu     sync.Mutex
	evs    []*Event
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (rc *recorder) listen(ev *Event) {
	rc.mu.Lock()
	rc.evs = append(rc.evs, ev)
	rc.mu.Unlock()
	select {
	case rc.notify <- struct{}{}:
	default:
	}
}

func (rc *recorder) events() []*Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*Event(nil), rc.evs...)
}

// waitFor waits until cond holds for what was received.
func (rc *recorder) waitFor(t *testing.T, what string, cond func([]*Event) bool) []*Event {
	t.Helper()
	timeout := time.NewTimer(testWait)
	defer timeout.Stop()
	for {
		evs := rc.events()
		if cond(evs) {
			return evs
		}
		select {
		case <-rc.notify:
		case <-timeout.C:
			t.Fatalf("waiting for %s: got %s", what, describe(rc.events()))
		}
	}
}

// upTo reports whether the events reach id n (a Reset notice counts).
func upTo(n uint64) func([]*Event) bool {
	return func(evs []*Event) bool { return len(evs) > 0 && evs[len(evs)-1].ID >= n }
}

// checkOrder fails unless events rise by one from first, once each, with
// Reset notices restarting the count at their id.
func checkOrder(t *testing.T, evs []*Event, first uint64) {
	t.Helper()
	next := first
	for i, ev := range evs {
		if ev.Reset {
			next = ev.ID + 1
			continue
		}
		if ev.ID != next {
			t.Fatalf("event %d has id %d, want %d: %s", i, ev.ID, next, describe(evs))
		}
		next++
	}
}

func describe(evs []*Event) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, ev := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		if ev.Reset {
			b.WriteString("reset@")
		}
		b.WriteString(formatUint(ev.ID))
	}
	b.WriteByte(']')
	return b.String()
}

func formatUint(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// pub publishes one event through the broker.
func pub(t *testing.T, b Broker, course string) *Event {
	t.Helper()
	ev, err := b.Publish(context.Background(), Message{CourseID: course, Type: "chapter-update-complete", Data: json.RawMessage(`{"chapterId":"ch"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func subscribe(t *testing.T, b Broker, course string) *recorder {
	t.Helper()
	rc := newRecorder()
	un, err := b.Subscribe(context.Background(), course, rc.listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(un)
	return rc
}

func startRedis(t *testing.T, opt redistest.Options) *redistest.Server {
	t.Helper()
	return redistest.Start(t, opt)
}

// capture returns a logger writing into a buffer.
func capture() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}
