package stream

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"coursestream/observer"
)

// discard is a ResponseWriter that drops what it is given.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

func benchEvents(b *testing.B, n int) []*observer.Event {
	evs := make([]*observer.Event, n)
	for i := range evs {
		m := observer.Message{CourseID: "course-123", Type: "upload-progress",
			Data: json.RawMessage(`{"videoId":"v` + strconv.Itoa(i%10) + `","progress":42}`)}
		data, _ := m.Normalize()
		ev, err := observer.NewEvent(m, data, uint64(i+1), time.Now().UnixMilli(), 0)
		if err != nil {
			b.Fatal(err)
		}
		evs[i] = ev
	}
	return evs
}

// BenchmarkDeliver is one subscriber's hot path for one event: the
// listener queues it, the stream goroutine writes its frame and flushes.
// It must not allocate.
func BenchmarkDeliver(b *testing.B) {
	h := New(observer.NewMemory(observer.MemoryConfig{Logger: quiet()}), Config{Logger: quiet()})
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	c := newConn(h, ctx, cancel, request{course: "course-123"}, &discard{h: http.Header{}})
	c.replaying = false
	co := newCoalescer(0)
	var window <-chan time.Time
	evs := benchEvents(b, 4096)
	var pos uint64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := evs[i%len(evs)]
		if ev.ID == 1 {
			pos = 0
		}
		c.onEvent(ev)
		<-c.notify
		if !c.deliver(&pos, co, &window) {
			b.Fatal("stream ended")
		}
	}
}

func BenchmarkCoalesce(b *testing.B) {
	evs := benchEvents(b, 100) // 10 subjects
	co := newCoalescer(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		for _, ev := range evs {
			co.add(ev)
		}
		if got := co.flush(); len(got) != 10 {
			b.Fatalf("kept %d", len(got))
		}
	}
}
