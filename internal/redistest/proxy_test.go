package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestProxySilencesPubSub: through the proxy a subscriber gets messages;
// once silenced, Redis still counts it as a receiver but nothing arrives,
// while commands on other connections still work.
func TestProxySilencesPubSub(t *testing.T) {
	s := Start(t, Options{})
	p := StartProxy(t, s.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1})
	defer c.Close()
	ps := c.Subscribe(ctx, "ch")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	ch := ps.Channel(redis.WithChannelHealthCheckInterval(0))
	direct := s.Client()
	if err := direct.Publish(ctx, "ch", "one").Err(); err != nil {
		t.Fatal(err)
	}
	if m := <-ch; m.Payload != "one" {
		t.Fatalf("got %q", m.Payload)
	}
	if n := p.SilencePubSub(); n != 1 {
		t.Fatalf("silenced %d connections, want 1", n)
	}
	if n, err := direct.Publish(ctx, "ch", "two").Result(); err != nil || n != 1 {
		t.Fatalf("PUBLISH reached %d, %v; want 1 (the connection is still subscribed)", n, err)
	}
	select {
	case m := <-ch:
		t.Fatalf("a silenced connection delivered %q", m.Payload)
	case <-time.After(300 * time.Millisecond): // proving an absence: nothing signals it
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("a new connection through the proxy: %v", err)
	}
}
