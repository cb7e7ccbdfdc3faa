package observer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"coursestream/internal/redistest"
	"coursestream/observer"
	"coursestream/stream"
)

// benchBroker runs a Redis broker on a fresh redis-server until b ends.
func benchBroker(b *testing.B) (*observer.Redis, *redistest.Server) {
	b.Helper()
	srv := redistest.Start(b, redistest.Options{})
	r, err := observer.NewRedis(observer.RedisConfig{URL: srv.URL(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done; _ = r.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for r.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			b.Fatal("broker not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r, srv
}

// BenchmarkRedisPublish measures publishing through the function library:
// raw FCALL coursestream_publish as a backend calls it (one connection, and
// parallel), and Broker.Publish (Go validation + FCALL + envelope parse).
func BenchmarkRedisPublish(b *testing.B) {
	r, srv := benchBroker(b)
	ctx := context.Background()
	for _, size := range []struct {
		name string
		data string
	}{
		{"small", `{"chapterId":"ch-1","title":"Intro"}`},
		{"4KiB", `{"text":"` + strings.Repeat("x", 4096) + `"}`},
	} {
		b.Run("FCALL/"+size.name, func(b *testing.B) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
			defer rdb.Close()
			b.ReportAllocs()
			for b.Loop() {
				if err := rdb.FCall(ctx, observer.FunctionPublish, []string{"bench-fcall"}, "chapter-update-complete", size.data).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("FCALL-parallel/"+size.name, func(b *testing.B) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
			defer rdb.Close()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					course := "bench-par-" + strconv.Itoa(i%16)
					if err := rdb.FCall(ctx, observer.FunctionPublish, []string{course}, "chapter-update-complete", size.data).Err(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("Broker/"+size.name, func(b *testing.B) {
			msg := observer.Message{CourseID: "bench-broker", Type: "chapter-update-complete", Data: json.RawMessage(size.data)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Publish(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRedisToSSE measures end to end: a backend's FCALL, Redis
// pub/sub, this instance's fan-in and observer, the SSE handler, and an
// HTTP client reading the frame. One event at a time, so ns/op is the
// latency; p50 and p99 are reported too.
func BenchmarkRedisToSSE(b *testing.B) {
	r, srv := benchBroker(b)
	hub := stream.New(r, stream.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := http.NewServeMux()
	mux.Handle("GET /v1/courses/{courseId}/events", hub)
	ts := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = hub.Run(ctx) }()
	b.Cleanup(func() {
		hub.Drain()
		ts.Close()
		cancel()
		<-ran
	})

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/v1/courses/bench-e2e/events", nil)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		b.Fatalf("first line %q, %v", line, err) // written once the stream is subscribed
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()

	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		began := time.Now()
		id, err := rdb.FCall(ctx, observer.FunctionPublish, []string{"bench-e2e"}, "upload-progress", `{"videoId":"v1","pct":42}`).Int64()
		if err != nil {
			b.Fatal(err)
		}
		want := "id: " + strconv.FormatInt(id, 10) + "\n"
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if line == want {
				break
			}
		}
		lat = append(lat, time.Since(began))
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
	}
}
