package observer

import (
	"io"
	"log/slog"
	"sync"
	"testing"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestObserverSubscribeUnsubscribe(t *testing.T) {
	t.Parallel()
	o := NewObserver(quietLogger())
	var got []uint64
	un := o.Subscribe("c1", func(ev *Event) { got = append(got, ev.ID) })
	un2 := o.Subscribe("c1", func(*Event) {})
	if n := o.Listeners("c1"); n != 2 {
		t.Fatalf("Listeners = %d, want 2", n)
	}
	if n := o.Emit(&Event{ID: 1, CourseID: "c1"}); n != 2 {
		t.Fatalf("Emit reached %d listeners, want 2", n)
	}
	o.Emit(&Event{ID: 1, CourseID: "other"})
	un()
	un() // twice is harmless
	o.Emit(&Event{ID: 2, CourseID: "c1"})
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("listener got %v, want [1]", got)
	}
	if o.Total() != 1 || o.Listeners("c1") != 1 {
		t.Fatalf("Total = %d, Listeners = %d, want 1, 1", o.Total(), o.Listeners("c1"))
	}
	un2()
	if o.Total() != 0 || len(o.Courses()) != 0 {
		t.Fatalf("after last unsubscribe: Total = %d, Courses = %v", o.Total(), o.Courses())
	}
}

func TestObserverPanickingListenerDoesNotAffectOthers(t *testing.T) {
	t.Parallel()
	o := NewObserver(quietLogger())
	var before, after int
	o.Subscribe("c", func(*Event) { before++ })
	o.Subscribe("c", func(*Event) { panic("boom") })
	o.Subscribe("c", func(*Event) { after++ })
	for i := range 3 {
		o.Emit(&Event{ID: uint64(i + 1), CourseID: "c"})
	}
	if before != 3 || after != 3 {
		t.Fatalf("healthy listeners got %d and %d events, want 3 and 3", before, after)
	}
}

func TestObserverConcurrentSubscribeEmit(t *testing.T) {
	t.Parallel()
	o := NewObserver(quietLogger())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				un := o.Subscribe("c", func(*Event) {})
				un()
			}
		}()
	}
	stop := make(chan struct{})
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
				o.Emit(&Event{ID: i, CourseID: "c"})
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-emitted
	if o.Total() != 0 || o.Listeners("c") != 0 {
		t.Fatalf("leftover listeners: %d", o.Total())
	}
}
