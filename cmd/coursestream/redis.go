package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"coursestream/observer"
)

// newRedisBroker builds the Redis broker from --redis-url or --redis-cluster,
// with the same history and size limits as the embedded broker (they are
// written into the Redis function library when it is loaded).
func newRedisBroker(cfg Config, log *slog.Logger, m observer.Metrics) (broker, string, error) {
	rc := observer.RedisConfig{
		History: cfg.History, HistoryTTL: cfg.HistoryTTL, MaxEventBytes: int(cfg.MaxEventBytes),
		WaitReplicas: cfg.RedisWait, Logger: log, Metrics: m,
	}
	mode := "redis"
	switch {
	case cfg.RedisSentinel.given():
		s, err := cfg.RedisSentinel.config()
		if err != nil {
			return nil, "", usageError{err}
		}
		rc.Sentinel, mode = s, "redis-sentinel"
	case cfg.RedisCluster != "":
		for a := range strings.SplitSeq(cfg.RedisCluster, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, "", usagef("--redis-cluster %q: want HOST:PORT,HOST:PORT", cfg.RedisCluster)
			}
			rc.Cluster = append(rc.Cluster, a)
		}
		if len(rc.Cluster) == 0 {
			return nil, "", usagef("--redis-cluster %q: want HOST:PORT,HOST:PORT", cfg.RedisCluster)
		}
		mode = "redis-cluster"
	default:
		if _, err := redis.ParseURL(cfg.RedisURL); err != nil {
			return nil, "", usagef("--redis-url: %v", err)
		}
		rc.URL = cfg.RedisURL
	}
	redis.SetLogger(goRedisLog{log}) // before the first client: its dial errors go to the log
	if rc.URL != "" {
		if addr, ok := observer.ClusterNode(context.Background(), rc.URL); ok {
			// A node of a Redis Cluster behind --redis-url: the cluster it
			// belongs to, with sharded pub/sub (a plain client would get
			// MOVED for the courses of the other nodes).
			log.Info("--redis-url is a Redis Cluster node: running in cluster mode, as --redis-cluster would", slog.String("seed", addr))
			rc.URL, rc.Cluster, mode = "", []string{addr}, "redis-cluster"
		}
	}
	r, err := observer.NewRedis(rc)
	if err != nil {
		return nil, "", usageError{err}
	}
	return r, mode, nil
}

// publishRedis publishes with FCALL coursestream_publish, as a backend does,
// and returns the id. A refusal by the function (ERR coursestream: ...) is
// the caller's error: exit status 2, one line.
func publishRedis(ctx context.Context, cfg publishConfig, msg observer.Message) (string, error) {
	rdb, where, err := publishClient(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer rdb.Close()
	id, err := observer.PublishFCALL(ctx, rdb, msg)
	if err != nil {
		for _, e := range []error{observer.ErrInvalidCourseID, observer.ErrInvalidType, observer.ErrInvalidData,
			observer.ErrInvalidOperationID, observer.ErrTooLarge, observer.ErrRefused} {
			if errors.Is(err, e) {
				return "", usageError{err}
			}
		}
		return "", fmt.Errorf("publish to Redis %s: %w", where, err) // not the URL: it may hold a password
	}
	return strconv.FormatUint(id, 10), nil
}

// publishClient is the client publish --redis-url or --redis-sentinel
// uses, and where it publishes, for messages (never the URL: it may hold a
// password).
func publishClient(ctx context.Context, cfg publishConfig) (redis.UniversalClient, string, error) {
	if cfg.Sentinel.given() {
		s, err := cfg.Sentinel.config()
		if err != nil {
			return nil, "", usageError{err}
		}
		rdb, err := observer.NewSentinelClient(s)
		if err != nil {
			return nil, "", usageError{err}
		}
		return rdb, "master " + s.Master + " of sentinels " + strings.Join(s.Addrs, ","), nil
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, "", usagef("--redis-url %q: want redis://HOST:PORT/DB", cfg.RedisURL)
	}
	rdb, err := observer.NewClient(ctx, cfg.RedisURL)
	if err != nil {
		return nil, "", usageError{err}
	}
	return rdb, opt.Addr, nil
}

// goRedisLog sends go-redis' own messages to the service log: a message
// dropped off a full pub/sub channel as a warning (the broker reads it back
// from the history), the rest (reconnect attempts) at debug level.
type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	level := slog.LevelDebug
	if strings.Contains(format, "dropped") {
		level = slog.LevelWarn
	}
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, "go-redis: "+fmt.Sprintf(format, v...))
	}
}
