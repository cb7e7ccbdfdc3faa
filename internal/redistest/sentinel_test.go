package redistest

import (
	"context"
	"testing"
	"time"
)

// TestSentinelFailover: the sentinels name the master; once it is killed
// they promote the replica within a few seconds, and the failover client
// writes there.
func TestSentinelFailover(t *testing.T) {
	st := StartSentinel(t, SentinelOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, err := st.MasterAddr(ctx)
	if err != nil || addr != st.Master.Addr {
		t.Fatalf("master %q, %v; want %s", addr, err, st.Master.Addr)
	}
	c := st.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Replication is asynchronous: k is on the replica once WAIT says so
	// (without it, a master killed at once may not have sent it yet).
	if n, err := c.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n < 1 {
		t.Fatalf("WAIT for the replica: %d replicas have k, %v", n, err)
	}
	began := time.Now()
	st.Master.Kill()
	got, err := st.WaitFailover(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if got != st.Replica.Addr {
		t.Fatalf("promoted %s, want the replica %s", got, st.Replica.Addr)
	}
	t.Logf("failover took %s", time.Since(began).Round(time.Millisecond))
	for {
		err := c.Set(ctx, "k2", "v", 0).Err()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no write on the new master: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // the client finds the new master at its next dial
	}
	if v, _ := st.Replica.Client().Get(ctx, "k").Result(); v != "v" {
		t.Fatalf("the promoted replica lacks k: %q", v)
	}
}
