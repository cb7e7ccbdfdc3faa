package redistest

import (
	"context"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{AOF: true})
	ctx := context.Background()
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while stopped")
	}
	s.Restart()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after a restart with AOF: %q, %v", v, err)
	}

	plain := Start(t, Options{})
	pc := plain.Client()
	if err := pc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	plain.Restart()
	if n, err := pc.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after a restart without persistence: exists %d, %v", n, err)
	}
	if plain.Port == s.Port {
		t.Fatal("two servers on one port")
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	ctx := context.Background()
	slot := 100
	if c.Owner(slot) != 0 {
		t.Fatalf("slot %d owned by %d", slot, c.Owner(slot))
	}
	n0 := c.Nodes[0].Client()
	// A key in slot 100: find one by asking the node.
	key := ""
	for i := 0; key == ""; i++ {
		k := "k" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
		if s, err := n0.ClusterKeySlot(ctx, k).Result(); err == nil && s == int64(slot) {
			key = k
		}
	}
	if err := n0.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.BeginMove(slot, 2)()
	if c.Owner(slot) != 2 {
		t.Fatalf("slot %d owned by %d after the move", slot, c.Owner(slot))
	}
	if v, err := c.Nodes[2].Client().Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("moved key: %q, %v", v, err)
	}
}
