package observer

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"coursestream/internal/redistest"
)

// TestRedisClusterShardedFanIn runs two instances on a real 3-master
// cluster: each course's keys share a hash tag, its channel is a shard
// channel subscribed on the node that owns its slot, events published by
// the other instance and by FCALL arrive, and a slot moving to another node
// while events are published loses nothing.
func TestRedisClusterShardedFanIn(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	ctx := context.Background()
	met := newTestMetrics()
	a := runRedis(t, RedisConfig{Cluster: cl.Addrs(), Metrics: met})
	b := runRedis(t, RedisConfig{Cluster: cl.Addrs()})

	courses := make([]string, 3) // one course per node
	for i, found := 0, 0; found < 3; i++ {
		id := "course-" + strconv.Itoa(i)
		if n := cl.Owner(slotOf(id)); courses[n] == "" {
			courses[n] = id
			found++
		}
	}
	rcs := make(map[string]*recorder)
	for _, id := range courses {
		rcs[id] = subscribe(t, a, id)
	}
	backend := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer backend.Close()
	for _, id := range courses {
		pub(t, b, id)
		if _, err := PublishFCALL(ctx, backend, Message{CourseID: id, Type: "t", Data: json.RawMessage(`{"via":"fcall"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for node, id := range courses {
		evs := rcs[id].waitFor(t, id+" events 1 and 2", upTo(2))
		checkOrder(t, evs, 1)
		if len(evs) != 2 || string(evs[1].Data) != `{"via":"fcall"}` {
			t.Fatalf("%s: got %s", id, describe(evs))
		}
		subs, err := cl.Nodes[node].Client().PubSubShardNumSub(ctx, ChannelName(id)).Result()
		if err != nil || subs[ChannelName(id)] != 1 {
			t.Fatalf("node %d: shard subscribers of %s: %v %v, want 1", node, id, subs, err)
		}
		pa, err := a.History(ctx, id, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := b.History(ctx, id, 0, 10)
		if err != nil || pa.LastID != 2 || pb.LastID != 2 || len(pb.Events) != 2 || string(pa.Events[1].JSON) != string(pb.Events[1].JSON) {
			t.Fatalf("%s: histories differ: %+v / %+v (%v)", id, pa, pb, err)
		}
	}

	// The last ids of courses on three nodes, in one read (a pipeline
	// that go-redis splits by slot: MGET would refuse them).
	if ids, err := a.LastIDs(ctx, courses); err != nil || !slices.Equal(ids, []uint64{2, 2, 2}) {
		t.Fatalf("LastIDs across the nodes = %v, %v; want [2 2 2]", ids, err)
	}

	// Move the slot of the first course to node 1 while publishing to it.
	// Before its keys have moved, a call lands on the importing node (the
	// declared key, the course id, is not a real key): it must refuse
	// rather than start the course again at id 1.
	moving := courses[0]
	finish := cl.BeginMove(slotOf(moving), 1)
	if _, err := PublishFCALL(ctx, backend, Message{CourseID: moving, Type: "t"}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "TRYAGAIN") {
		t.Fatalf("publish before the keys moved: %v, want TRYAGAIN", err)
	}
	if _, err := b.History(ctx, moving, 0, 10); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("history before the keys moved: %v, want unavailable", err)
	}
	if n, _ := cl.Nodes[1].Client().Exists(ctx, SeqKey(moving), HistoryKey(moving)).Result(); n != 0 {
		t.Fatalf("the importing node got %d keys of %s before the move", n, moving)
	}
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			_, err := b.Publish(ctx, Message{CourseID: moving, Type: "t"})
			switch {
			case err == nil:
				n++
			case errors.Is(err, ErrUnavailable): // TRYAGAIN while its keys move
				time.Sleep(5 * time.Millisecond)
			default:
				t.Error(err)
				done <- n
				return
			}
		}
	}()
	finish()
	close(stop)
	during := <-done
	last := pub(t, b, moving).ID
	if want := uint64(2 + during + 1); last != want {
		t.Fatalf("last id %d, want %d: ids restarted or skipped during the move", last, want)
	}
	evs := rcs[moving].waitFor(t, "every event across the move", upTo(last))
	checkOrder(t, evs, 1)
	if uint64(len(evs)) != last {
		t.Fatalf("got %d events (%s), want %d", len(evs), describe(evs), last)
	}
	for _, ev := range evs {
		if ev.Reset {
			t.Fatalf("reset during a slot move: %s", describe(evs))
		}
	}
	waitReady(t, a)
	subs, err := cl.Nodes[1].Client().PubSubShardNumSub(ctx, ChannelName(moving)).Result()
	if err != nil || subs[ChannelName(moving)] != 1 {
		t.Fatalf("after the move, node 1 has %v subscribers of %s (%v), want 1", subs, moving, err)
	}
	t.Logf("%d events published during the move; %d recovered from history", during, met.get(func(m *testMetrics) int { return m.recovered }))
}

// TestClusterNodeAndNewClient: ClusterNode tells a cluster node from a
// single Redis (and from one that cannot be reached), and NewClient on
// one node's URL publishes to courses of every node of the cluster.
func TestClusterNodeAndNewClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	single := startRedis(t, redistest.Options{})
	if addr, ok := ClusterNode(ctx, single.URL()); ok {
		t.Fatalf("a single Redis was taken for a cluster node (%s)", addr)
	}
	if _, ok := ClusterNode(ctx, "redis://127.0.0.1:1/0"); ok {
		t.Fatal("an unreachable Redis was taken for a cluster node")
	}
	cl := redistest.StartCluster(t, 3)
	if addr, ok := ClusterNode(ctx, cl.Nodes[1].URL()); !ok || addr != cl.Nodes[1].Addr {
		t.Fatalf("cluster node %s: ClusterNode = %q, %v", cl.Nodes[1].Addr, addr, ok)
	}
	runRedis(t, RedisConfig{Cluster: cl.Addrs()}) // loads the library on every master
	rdb, err := NewClient(ctx, cl.Nodes[1].URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	for i, found := 0, map[int]bool{}; len(found) < 3; i++ {
		id := "nc-" + strconv.Itoa(i)
		n := cl.Owner(slotOf(id))
		if found[n] {
			continue
		}
		found[n] = true
		if got, err := PublishFCALL(ctx, rdb, Message{CourseID: id, Type: "upload-complete", Data: json.RawMessage(`{}`)}); err != nil || got != 1 {
			t.Fatalf("publishing to %s (node %d) through node 1's client: id %d, %v", id, n, got, err)
		}
	}
}
