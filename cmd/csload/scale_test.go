package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"coursestream/internal/redistest"
)

// asCsloadEnv makes the test binary csload itself: csload scale runs its
// children as os.Executable(), which in a test is this binary (built with
// -race when the test is).
const asCsloadEnv = "CSLOAD_TEST_AS_CSLOAD"

func TestMain(m *testing.M) {
	if os.Getenv(asCsloadEnv) == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// coursestreamBinary builds the real coursestream once for the package's
// tests and returns its path.
func coursestreamBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "csload-test-"); binErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "coursestream"), "../coursestream").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "coursestream")
}

// TestScale runs csload scale small: 2 instances of the real binary on
// one real redis-server, 50 subscribers of one course on each, 5 events
// published with FCALL, one at a time and at a rate. Every subscriber of
// both instances gets every event once.
func TestScale(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	bin := coursestreamBinary(t)
	t.Setenv(asCsloadEnv, "1")
	for _, one := range []bool{true, false} {
		t.Run("one-at-a-time="+strconv.FormatBool(one), func(t *testing.T) {
			c := config{
				Server: "http://127.0.0.1:8080", Clients: 50, Courses: 1, Ramp: 2000, Events: 5, Rate: 50, Payload: 16,
				Publish: "http", RedisURL: srv.URL(), Timeout: 2 * time.Minute, Drain: 20 * time.Second, Concurrency: 1,
				CoursePfx:   "scale-" + strconv.FormatBool(one) + "-",
				scaleConfig: scaleConfig{CS: bin, Instances: 2, OneAtATime: one},
			}
			if err := c.check(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
			defer cancel()
			rep, err := runScale(ctx, c)
			if rep != nil {
				rep.print(os.Stdout, false)
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Instances != 2 || rep.Connected != 100 || rep.ConnectFailed != 0 || rep.Published != 5 ||
				rep.Expected != 500 || rep.Received != 500 || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 ||
				rep.Incomplete != 0 || rep.CompletionMax <= 0 || rep.CompletionP50 > rep.CompletionP99 || rep.RedisPID == 0 || rep.RedisCPUFrom != "info" {
				t.Fatalf("report %+v", rep)
			}
			for i, in := range rep.PerInstance {
				if in.Connected != 50 || in.Received != 250 || in.Lost != 0 || in.Duplicates != 0 || in.PID == 0 {
					t.Errorf("instance %d: %+v", i+1, in)
				}
				// Killed and reaped at the end: the port refuses.
				if conn, err := net.Dial("tcp", strings.TrimPrefix(in.Server, "http://")); err == nil {
					conn.Close()
					t.Errorf("instance %d still listens on %s", i+1, in.Server)
				}
			}
			// The events are the course's 1..5, stored once in Redis.
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
			defer rdb.Close()
			if n, err := rdb.XLen(ctx, "coursestream:{"+rep.Course+"}:history").Result(); err != nil || n != 5 {
				t.Fatalf("history of %s: %d entries, %v", rep.Course, n, err)
			}
		})
	}
}

func TestScaleNeedsRedis(t *testing.T) {
	c := config{Clients: 1, Courses: 1, scaleConfig: scaleConfig{CS: "cs", Instances: 1}}
	if _, err := runScale(context.Background(), c); err == nil {
		t.Fatal("scale without --redis-url was accepted")
	}
}
