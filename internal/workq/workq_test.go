package workq

import (
	"context"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestOrderAndReuse(t *testing.T) {
	q := New[*int](2)
	if q.Workers() != 2 {
		t.Fatalf("Workers() = %d, want 2", q.Workers())
	}
	vals := make([]int, 200)
	for round := 0; round < 3; round++ {
		for i := range vals {
			vals[i] = i
			q.Push(&vals[i])
		}
		if q.Len() != len(vals) {
			t.Fatalf("Len() = %d, want %d", q.Len(), len(vals))
		}
		for i := range vals {
			v, ok := q.Pop()
			if !ok || *v != i {
				t.Fatalf("round %d: pop %d = %v, %v", round, i, v, ok)
			}
		}
		if _, ok := q.Pop(); ok {
			t.Fatal("pop of an empty queue succeeded")
		}
	}
}

func TestPopForgetsItems(t *testing.T) {
	q := New[*int](1)
	x := 1
	q.Push(&x)
	q.Pop()
	if q.items[:1][0] != nil {
		t.Fatal("the queue kept a reference to a popped item")
	}
}

func TestWorkRunsEverythingAndStops(t *testing.T) {
	defer goleak.VerifyNone(t)
	q := New[int](3)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	seen := map[int]bool{}
	done := make(chan struct{})
	const n = 1000
	var wg sync.WaitGroup
	for range q.Workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.Work(ctx, func(v int) {
				mu.Lock()
				seen[v] = true
				if len(seen) == n {
					close(done)
				}
				mu.Unlock()
			})
		}()
	}
	for i := range n {
		q.Push(i)
	}
	<-done
	cancel()
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("ran %d items, want %d", len(seen), n)
	}
}

func BenchmarkPushPop(b *testing.B) {
	q := New[*int](1)
	x := 0
	b.ReportAllocs()
	for b.Loop() {
		q.Push(&x)
		q.Pop()
	}
}
