package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"coursestream/observer"
)

// publishConfig is the configuration of the publish subcommand.
type publishConfig struct {
	Course      string
	Type        string
	Data        string
	OperationID string
	Server      string
	Token       string
	RedisURL    string
	Sentinel    sentinelFlags
	Timeout     time.Duration
}

func (c *publishConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Course, "course", "", "course id (required)")
	fs.StringVar(&c.Type, "type", "", "event type, e.g. chapter-update-complete (required)")
	fs.StringVar(&c.Data, "data", "null", "event data, any JSON value")
	fs.StringVar(&c.OperationID, "operation-id", "", "operation id the client awaits (optional)")
	fs.StringVar(&c.Server, "server", "http://127.0.0.1:8080", "coursestream server to publish to over HTTP (embedded broker)")
	fs.StringVar(&c.Token, "token", "", "bearer token with the publish claim, when the server has --jwt-key")
	fs.StringVar(&c.RedisURL, "redis-url", "", "publish straight into Redis with FCALL instead of over HTTP")
	c.Sentinel.register(fs)
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "give up after this long")
}

// publish publishes one event through the path a backend uses (HTTP, or
// FCALL with --redis-url) and prints its id.
func publish(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var cfg publishConfig
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	cfg.register(fs)
	if err := parseFlags(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, "usage: coursestream publish --course ID --type T --data JSON [--operation-id X]", fs)
			return err
		}
		return usageError{err}
	}
	msg := observer.Message{CourseID: cfg.Course, Type: cfg.Type, Data: json.RawMessage(cfg.Data), OperationID: cfg.OperationID}
	switch {
	case cfg.Course == "":
		return usagef("--course is required")
	case cfg.Type == "":
		return usagef("--type is required")
	case cfg.Timeout <= 0:
		return usagef("--timeout must be positive, got %s", cfg.Timeout)
	}
	if err := cfg.Sentinel.validate(cfg.RedisURL, ""); err != nil {
		return usageError{err}
	}
	if _, err := msg.Normalize(); err != nil { // the same checks the server makes, before sending
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var id string
	var err error
	if cfg.RedisURL != "" || cfg.Sentinel.given() {
		id, err = publishRedis(ctx, cfg, msg)
	} else {
		id, err = publishHTTP(ctx, cfg, msg)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

func publishHTTP(ctx context.Context, cfg publishConfig, msg observer.Message) (string, error) {
	base, err := url.Parse(cfg.Server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", usagef("--server %q: want http://HOST:PORT", cfg.Server)
	}
	body, _ := json.Marshal(struct {
		Type        string          `json:"type"`
		Data        json.RawMessage `json:"data"`
		OperationID string          `json:"operationId,omitempty"`
	}{msg.Type, msg.Data, msg.OperationID})
	u := strings.TrimRight(cfg.Server, "/") + "/v1/courses/" + url.PathEscape(msg.CourseID) + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("publish to %s: %w", cfg.Server, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var out struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	_ = json.Unmarshal(b, &out)
	switch {
	case resp.StatusCode == http.StatusCreated && out.ID != "":
		return out.ID, nil
	case out.Error != "":
		err = fmt.Errorf("publish refused (%d): %s", resp.StatusCode, out.Error)
	default:
		err = fmt.Errorf("publish refused (%d)", resp.StatusCode)
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return "", usageError{err}
	}
	return "", err
}
