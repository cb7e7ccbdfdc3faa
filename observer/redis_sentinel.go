package observer

import (
	"errors"

	"github.com/redis/go-redis/v9"
)

// SentinelConfig names a Redis watched by Sentinels: the broker (or a
// publishing client) runs on the master the sentinels name and follows it
// through a failover. go-redis' failover client asks a sentinel for the
// master's address at each new connection and listens for +switch-master;
// a pub/sub connection to the old master breaks (or stops delivering,
// which the canary sees) and is built anew on the new one.
type SentinelConfig struct {
	Addrs    []string // HOST:PORT of the sentinels
	Master   string   // the master's name in the sentinels' configuration
	Password string   // the password of the Redis servers (not the sentinels'); empty: none
}

// enabled reports whether a Sentinel setup is configured.
func (s SentinelConfig) enabled() bool { return len(s.Addrs) > 0 || s.Master != "" }

// check reports a half-given Sentinel configuration.
func (s SentinelConfig) check() error {
	switch {
	case len(s.Addrs) == 0:
		return errors.New("redis: a Sentinel master name needs the sentinels' addresses")
	case s.Master == "":
		return errors.New("redis: the sentinels' addresses need the master's name")
	}
	return nil
}

// newFailoverClient is the client of the master that the sentinels name,
// configured as newSingleClient (no retried commands, bounded contexts).
func newFailoverClient(s SentinelConfig) *redis.Client {
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            s.Master,
		SentinelAddrs:         s.Addrs,
		Password:              s.Password,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
}

// NewSentinelClient returns a client of the master the sentinels of s
// name, as the service's own, for publishing with PublishFCALL.
func NewSentinelClient(s SentinelConfig) (*redis.Client, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return newFailoverClient(s), nil
}
