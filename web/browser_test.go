package web

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBrowser runs the browser tests (web/test/*.test.mjs, node:test with
// playwright-core) in Debian's headless Chromium against the real binary,
// and the type checks of the library (TypeScript on its JSDoc and .d.ts):
// it builds ./cmd/coursestream, starts six servers on free loopback ports
// (one with --max-connections 1 for the 503 fallback, one whose streams end
// on purpose every 1.2-1.5 s, for planned reconnections, one on HTTPS for
// HTTP/2, and one for the React tests alone, whose /metrics counts their
// streams) and runs node; react.test.mjs packs the npm package (npm pack)
// and bundles an app with the esbuild of web/test/react-app.
// Missing Chromium, node or node_modules skip the test locally and fail it
// when CI=true; .ci/deps installs them.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests are not short")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	node, nodeErr := exec.LookPath("node")
	_, npmErr := exec.LookPath("npm") // react.test.mjs: npm pack
	for _, need := range []struct {
		what string
		err  error
	}{
		{"chromium (" + chromium + ")", statErr(chromium)},
		{"node", nodeErr},
		{"web/test/node_modules (npm ci in web/test)", statErr(filepath.Join("test", "node_modules", "playwright-core", "package.json"))},
		{"@tanstack/query-core in web/test/node_modules", statErr(filepath.Join("test", "node_modules", "@tanstack", "query-core", "package.json"))},
		{"typescript in web/test/node_modules", statErr(filepath.Join("test", "node_modules", "typescript", "package.json"))},
		{"web/test/react-app/node_modules (npm ci in web/test/react-app)", statErr(filepath.Join("test", "react-app", "node_modules", "esbuild", "package.json"))},
		{"npm", npmErr},
	} {
		if need.err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (%v); .ci/deps installs it", need.what, need.err)
			}
			t.Skipf("%s is missing (%v); run bash .ci/deps", need.what, need.err)
		}
	}

	bin := filepath.Join(t.TempDir(), "coursestream")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/coursestream")
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	base := startServer(t, bin, "--heartbeat", "1s", "--retry", "500ms")
	limited := startServer(t, bin, "--heartbeat", "1s", "--retry", "500ms", "--max-connections", "1")
	aged := startServer(t, bin, "--heartbeat", "1s", "--retry", "200ms", "--max-stream-age", "1500ms", "--drain-jitter", "300ms")
	// share.test.mjs: tokens that expire during the test (HS256, minted by the test with this key).
	const jwtKey = "browser-test-key-0123456789abcdef"
	jwt := startServer(t, bin, "--heartbeat", "1s", "--retry", "500ms", "--jwt-key", jwtKey)
	tlsBase := startTLSServer(t, bin) // HTTPS, HTTP/2 by ALPN (tls_test.go)
	// The React tests' own server: its /metrics counts their streams only.
	react := startServer(t, bin, "--heartbeat", "1s", "--retry", "500ms")

	files, err := filepath.Glob(filepath.Join("test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no browser tests in web/test: %v", err)
	}
	for i, f := range files {
		files[i] = filepath.Base(f)
	}
	if only := os.Getenv("BROWSER_TESTS"); only != "" { // e.g. BROWSER_TESTS=share.test.mjs,react.test.mjs
		files = strings.Split(only, ",")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute) // a shared, loaded machine
	defer cancel()
	args := append([]string{"--test", "--test-concurrency=1", "--test-reporter=spec"}, files...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = "test"
	cmd.Env = append(withoutCoursestreamEnv(os.Environ()),
		"CS_BASE_URL="+base, "CS_LIMITED_URL="+limited, "CS_AGED_URL="+aged, "CS_TLS_URL="+tlsBase,
		"CS_REACT_URL="+react, "CHROMIUM="+chromium, "CS_JWT_URL="+jwt, "CS_JWT_KEY="+jwtKey)
	if os.Getenv("UPDATE_DEMO_PNG") != "" { // refresh the screenshot checked in as web/demo.png
		abs, err := filepath.Abs("demo.png")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "CS_DEMO_PNG="+abs)
	}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("browser tests failed (%v):\n%s", err, out)
	}
	t.Logf("browser tests:\n%s", out)
}

func statErr(path string) error {
	_, err := os.Stat(path)
	return err
}

// withoutCoursestreamEnv drops COURSESTREAM_* so that the servers run with
// the flags given here only (no Redis, no JWT key from the environment).
func withoutCoursestreamEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "COURSESTREAM_") {
			out = append(out, kv)
		}
	}
	return out
}

var listening = regexp.MustCompile(`msg="coursestream listening" addr=(127\.0\.0\.1:\d+)`)

// startServer runs the binary on a free loopback port and returns its base
// URL. The server is stopped with SIGTERM when the test ends; its log is
// shown when the test fails.
func startServer(t *testing.T, bin string, flags ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0"}, flags...)...)
	cmd.Env = withoutCoursestreamEnv(os.Environ())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	addr := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			log.WriteString(line + "\n")
			mu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // after a line too long for the scanner
	}()
	t.Cleanup(func() {
		// The pipe reaches EOF when the process exits; Wait comes after
		// every read, as os/exec asks.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-drained
		}
		_ = cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("server %s log:\n%s", strings.Join(flags, " "), log.String())
			mu.Unlock()
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(15 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the server did not log its address within 15s:\n%s", log.String())
		return ""
	}
}
