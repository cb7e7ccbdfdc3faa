package observer

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
)

// benchListener does what an SSE connection's listener does: take a lock,
// append to its queue, signal without blocking.
type benchListener struct {
	mu     sync.Mutex
	queue  []*Event
	notify chan struct{}
}

func (l *benchListener) on(ev *Event) {
	l.mu.Lock()
	l.queue = append(l.queue, ev)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// BenchmarkPublishFanOut publishes through the memory broker to n
// listeners of one course; the per-listener queues are drained before the
// timer stops, so the cost of holding the events is included.
func BenchmarkPublishFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run("listeners="+strconv.Itoa(n), func(b *testing.B) {
			m := NewMemory(MemoryConfig{Logger: quietLogger()})
			ls := make([]*benchListener, n)
			for i := range ls {
				ls[i] = &benchListener{notify: make(chan struct{}, 1), queue: make([]*Event, 0, 64)}
				un, _ := m.Subscribe(context.Background(), "c", ls[i].on)
				defer un()
			}
			msg := Message{CourseID: "c", Type: "upload-progress", Data: json.RawMessage(`{"videoId":"v1","progress":42}`)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := m.Publish(context.Background(), msg); err != nil {
					b.Fatal(err)
				}
				if i%64 == 63 {
					for _, l := range ls {
						l.mu.Lock()
						l.queue = l.queue[:0]
						l.mu.Unlock()
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

func BenchmarkNewEvent(b *testing.B) {
	msg := Message{CourseID: "course-123", Type: "chapter-update-complete", Data: json.RawMessage(`{"chapterId":"ch-1","title":"Intro"}`), OperationID: "op-9"}
	b.ReportAllocs()
	for b.Loop() {
		data, err := msg.Normalize()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := NewEvent(msg, data, 42, 1764072000000, 0); err != nil {
			b.Fatal(err)
		}
	}
}
