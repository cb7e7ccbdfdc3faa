package main

import (
	"context"
	"log/slog"

	"coursestream/observer"
)

// newRedisBroker builds the Redis broker from --redis-url or --redis-cluster.
func newRedisBroker(cfg Config, log *slog.Logger) (broker, string, error) {
	return nil, "", usagef("Redis support is not built yet")
}

// publishRedis publishes with FCALL coursestream_publish, as a backend does.
func publishRedis(ctx context.Context, cfg publishConfig, msg observer.Message) (string, error) {
	return "", usagef("--redis-url: Redis support is not built yet")
}
