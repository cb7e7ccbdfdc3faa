package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Idle mode opens every stream on its own connection and reports the
// server's RSS per connection; a --proto that does not fit the server's
// scheme is a usage error.
func TestIdleStreams(t *testing.T) {
	url, pid := startServer(t)
	c := config{Server: url, Clients: 50, Courses: 5, Ramp: 1000, PID: pid, Timeout: time.Minute,
		Settle: 100 * time.Millisecond, CoursePfx: "idle-", Proto: "h1"}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	rep, err := runIdle(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 50 || rep.ConnectFailed != 0 || rep.ServerRSSMiB <= 0 {
		t.Fatalf("connected %d, failed %d, server RSS %.1f MiB; want 50, 0 and a figure", rep.Connected, rep.ConnectFailed, rep.ServerRSSMiB)
	}
	t.Logf("%.1f KiB per idle HTTP/1.1 stream", rep.RSSPerConnKiB)

	c.Proto = "h2" // an http:// server
	_, err = runIdle(ctx, c)
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "https://") {
		t.Fatalf("h2 against http://: %v; want a usage error asking for https://", err)
	}
}
