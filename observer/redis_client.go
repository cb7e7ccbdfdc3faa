package observer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ClusterProbeTimeout bounds ClusterNode's look at a Redis.
const ClusterProbeTimeout = 2 * time.Second

// newSingleClient is the client of one Redis: commands are never retried
// (a publish must not be sent twice), contexts bound every call.
func newSingleClient(opt *redis.Options) *redis.Client {
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.MaintNotificationsConfig = noMaintNotifications()
	return redis.NewClient(opt)
}

// newClusterClient is the client of a Redis Cluster seeded with addrs,
// configured as newSingleClient.
func newClusterClient(addrs []string) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                    addrs,
		ContextTimeoutEnabled:    true,
		MaxRetries:               -1,
		MaintNotificationsConfig: noMaintNotifications(),
	})
}

// noMaintNotifications turns off go-redis' handling of Redis Enterprise
// maintenance notifications: it starts a goroutine in the constructor and
// asks every new connection for something Redis 7 does not have.
func noMaintNotifications() *maintnotifications.Config {
	return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// ClusterNode tells whether the Redis at url (redis://HOST:PORT/DB) is a
// node of a Redis Cluster (INFO cluster: cluster_enabled:1), and its
// address, to seed a cluster client with. A Redis that cannot be reached
// within ClusterProbeTimeout is taken for a single one.
func ClusterNode(ctx context.Context, url string) (addr string, ok bool) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return "", false
	}
	opt.DialerRetries = 1 // one look
	rdb := newSingleClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, ClusterProbeTimeout)
	defer cancel()
	info, err := rdb.Info(ctx, "cluster").Result()
	if err != nil {
		return "", false
	}
	return opt.Addr, strings.Contains(info, "cluster_enabled:1")
}

// NewClient returns a client of the Redis at url, as the service's own
// (no retried commands), for publishing with PublishFCALL: a cluster
// client when url names a node of a Redis Cluster (see ClusterNode).
func NewClient(ctx context.Context, url string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url %q: %w", url, err)
	}
	if addr, ok := ClusterNode(ctx, url); ok {
		return newClusterClient([]string{addr}), nil
	}
	return newSingleClient(opt), nil
}
