package observer

import (
	"runtime"
	"testing"
)

// TestNewRedisStartsNothing: the constructor connects to nothing and
// starts no goroutine (go-redis' included); Run does that.
func TestNewRedisStartsNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	r, err := NewRedis(RedisConfig{URL: "redis://127.0.0.1:1/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := NewRedis(RedisConfig{Cluster: []string{"127.0.0.1:1", "127.0.0.1:2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("NewRedis started %d goroutines", after-before)
	}
	for _, cfg := range []RedisConfig{{}, {URL: "http://x"}, {URL: "redis://a/0", Cluster: []string{"b:1"}}} {
		if _, err := NewRedis(cfg); err == nil {
			t.Errorf("NewRedis(%+v) accepted", cfg)
		}
	}
}
