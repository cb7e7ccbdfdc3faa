package observer

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"coursestream/internal/redistest"
)

// roundTrips counts the calls a go-redis client makes to Redis: one
// command, or one pipeline, is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// TestRedisLastIDs: the last ids of several courses, in order, with 0
// for a course without events, in one round trip; a bad course id is
// refused before anything is sent, a sequence key that does not hold a
// number is ErrUnavailable.
func TestRedisLastIDs(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, redistest.Options{})
	r := runRedis(t, RedisConfig{URL: srv.URL()})
	ctx := context.Background()
	for range 3 {
		pub(t, r, "li-a")
	}
	pub(t, r, "li-c")

	hook := &roundTrips{}
	r.rdb.AddHook(hook)
	ids, err := r.LastIDs(ctx, []string{"li-a", "li-b", "li-c"})
	if err != nil || !slices.Equal(ids, []uint64{3, 0, 1}) {
		t.Fatalf("LastIDs = %v, %v; want [3 0 1]", ids, err)
	}
	if n := hook.n.Load(); n != 1 {
		t.Fatalf("LastIDs of 3 courses took %d round trips, want 1", n)
	}
	if ids, err := r.LastIDs(ctx, []string{"li-a"}); err != nil || !slices.Equal(ids, []uint64{3}) {
		t.Fatalf("LastIDs of one = %v, %v", ids, err)
	}

	hook.n.Store(0)
	if _, err := r.LastIDs(ctx, []string{"li-a", "bad id"}); !errors.Is(err, ErrInvalidCourseID) {
		t.Fatalf("a bad course id: %v, want ErrInvalidCourseID", err)
	}
	if n := hook.n.Load(); n != 0 {
		t.Fatalf("a refused read sent %d round trips", n)
	}
	if err := srv.Client().Set(ctx, SeqKey("li-x"), "nope", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LastIDs(ctx, []string{"li-a", "li-x"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a sequence key holding %q: %v, want ErrUnavailable", "nope", err)
	}
}
