package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"

	"coursestream/observer"
)

// sentinelFlags are the Redis Sentinel flags, shared by serve and publish.
type sentinelFlags struct {
	Sentinel string // --redis-sentinel HOST:PORT,HOST:PORT
	Master   string // --redis-master NAME
	Password string // --redis-password
}

func (s *sentinelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.Sentinel, "redis-sentinel", "", "Redis Sentinel addresses HOST:PORT,HOST:PORT; run on the master they name (with --redis-master)")
	fs.StringVar(&s.Master, "redis-master", "", "the master's name in the sentinels' configuration (with --redis-sentinel)")
	fs.StringVar(&s.Password, "redis-password", "", "password of the Redis servers behind --redis-sentinel")
}

// given reports whether any Sentinel flag names a setup.
func (s sentinelFlags) given() bool { return s.Sentinel != "" || s.Master != "" }

// validate checks the Sentinel flags against the other Redis flags (url,
// cluster: empty when the command has none); the error is one line.
func (s sentinelFlags) validate(redisURL, cluster string) error {
	switch {
	case !s.given():
		if s.Password != "" {
			return errors.New("--redis-password needs --redis-sentinel and --redis-master (a --redis-url carries its own password)")
		}
		return nil
	case s.Sentinel == "":
		return errors.New("--redis-master needs --redis-sentinel HOST:PORT,HOST:PORT")
	case s.Master == "":
		return errors.New("--redis-sentinel needs --redis-master NAME")
	case redisURL != "" || cluster != "":
		return errors.New("--redis-sentinel is exclusive with --redis-url and --redis-cluster: give one")
	}
	_, err := s.config()
	return err
}

// config is the observer's Sentinel configuration of the flags.
func (s sentinelFlags) config() (observer.SentinelConfig, error) {
	cfg := observer.SentinelConfig{Master: s.Master, Password: s.Password}
	for a := range strings.SplitSeq(s.Sentinel, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return cfg, fmt.Errorf("--redis-sentinel %q: want HOST:PORT,HOST:PORT", s.Sentinel)
		}
		cfg.Addrs = append(cfg.Addrs, a)
	}
	if len(cfg.Addrs) == 0 {
		return cfg, fmt.Errorf("--redis-sentinel %q: want HOST:PORT,HOST:PORT", s.Sentinel)
	}
	return cfg, nil
}
