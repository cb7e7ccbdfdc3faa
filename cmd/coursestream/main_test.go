package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the coursestream binary built once for the process tests,
// with the race detector; fastBinary is built without it, for the
// scenarios that measure memory or hold thousands of clients.
var binary, fastBinary string

// csloadBinary is the load tool, the clients of the reconnect storm.
var csloadBinary string

func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") { // fuzzing (FuzzEndpoints) runs in-process: no binaries
			os.Exit(m.Run())
		}
	}
	dir, err := os.MkdirTemp("", "coursestream-bin")
	if err != nil {
		panic(err)
	}
	binary, fastBinary = filepath.Join(dir, "coursestream"), filepath.Join(dir, "coursestream-fast")
	csloadBinary = filepath.Join(dir, "csload")
	for _, b := range []*exec.Cmd{
		exec.Command("go", "build", "-race", "-o", binary, "."),
		exec.Command("go", "build", "-o", fastBinary, "."),
		exec.Command("go", "build", "-o", csloadBinary, "../csload"),
	} {
		b.Stderr = os.Stderr
		if err := b.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building coursestream:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func noEnv(string) string { return "" }

func runCLI(args []string, env map[string]string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code = run(context.Background(), args, &out, &errb, getenv)
	return code, out.String(), errb.String()
}

func TestBadConfigurationExits2WithOneLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--nope"}, nil, "flag provided but not defined"},
		{[]string{"--history", "0"}, nil, "--history"},
		{[]string{"--history", "ten"}, nil, "invalid value"},
		{[]string{"--heartbeat", "-1s"}, nil, "--heartbeat"},
		{[]string{"--max-event-bytes", "10"}, nil, "--max-event-bytes"},
		{[]string{"--client-buffer", "lots"}, nil, "invalid value"},
		{[]string{"--addr", "nonsense"}, nil, "--addr"},
		{[]string{"--addr", "127.0.0.1:99999"}, nil, "--addr"},
		{[]string{"--debug-addr", "127.0.0.1:-1"}, nil, "--debug-addr"},
		{[]string{"--cors-origins", "not a url"}, nil, "--cors-origins"},
		{[]string{"--cors-origins", "https://app.example/path"}, nil, "--cors-origins"},
		{[]string{"--addr", "0.0.0.0:8080"}, nil, "--jwt-key"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{[]string{"--redis-url", "http://x"}, nil, "--redis-url"},
		{[]string{"--jwt-key-file", "/does/not/exist"}, nil, "--jwt-key-file"},
		{[]string{"--debug-addr", "0.0.0.0:6060"}, nil, "--debug-addr"},
		{nil, map[string]string{"COURSESTREAM_HISTORY_TTL": "forever"}, "COURSESTREAM_HISTORY_TTL"},
		{[]string{"serve", "extra"}, nil, "unexpected argument"},
		{[]string{"frobnicate"}, nil, "unknown command"},
		{[]string{"publish", "--type", "x"}, nil, "--course"},
		{[]string{"publish", "--course", "c", "--type", "x", "--data", "{"}, nil, "invalid data"},
		{[]string{"publish", "--course", "a/b", "--type", "x"}, nil, "invalid course id"},
		{[]string{"publish", "--course", "c", "--type", "x", "--timeout", "0"}, nil, "--timeout"},
		{[]string{"publish", "--course", "c", "--type", "x", "--timeout", "-1s"}, nil, "--timeout"},
		{[]string{"version", "--bogus"}, nil, "flag provided but not defined"},
		{[]string{"version", "extra"}, nil, "unexpected argument"},
	} {
		code, _, stderr := runCLI(tc.args, tc.env)
		lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n") + 1
		if code != exitUsage || !strings.Contains(stderr, tc.want) || lines != 1 {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and one line with %q", tc.args, tc.env, code, stderr, tc.want)
		}
	}
}

func TestEnvFallbackAndFlagPrecedence(t *testing.T) {
	t.Parallel()
	var cfg Config
	fs := newServeFlags(&cfg)
	env := map[string]string{"COURSESTREAM_HISTORY": "7", "COURSESTREAM_HEARTBEAT": "3s", "COURSESTREAM_CLIENT_BUFFER": "2MiB"}
	if err := parseFlags(fs, []string{"--history", "9"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if cfg.History != 9 || cfg.Heartbeat != 3*time.Second || cfg.ClientBuffer != 2<<20 {
		t.Fatalf("got history %d heartbeat %s buffer %d; want 9 (flag wins), 3s and 2MiB (env)", cfg.History, cfg.Heartbeat, cfg.ClientBuffer)
	}
}

func TestHelpListsCommandsThenServeFlagsWithEnv(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"-help"}} {
		code, stdout, stderr := runCLI(args, nil)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, stderr)
		}
		// Every command on a line of its own, with its summary.
		for _, c := range commands {
			if !regexp.MustCompile(`(?m)^  ` + c.name + ` +\S.*$`).MatchString(stdout) {
				t.Errorf("%v does not list the %s command on a line of its own:\n%s", args, c.name, stdout)
			}
		}
		for _, want := range []string{"--addr", "COURSESTREAM_ADDR", "--redis-url", "COURSESTREAM_REDIS_URL", "--history-ttl", "--heartbeat",
			"--jwt-key", "--jwt-key-file", "--cors-origins", "--max-event-bytes", "--max-connections", "--client-buffer", "COURSESTREAM_CLIENT_BUFFER"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%v does not list %s", args, want)
			}
		}
		if i, j := strings.Index(stdout, "  publish "), strings.Index(stdout, "--addr"); i < 0 || j < i {
			t.Errorf("%v: the commands should come before serve's flags", args)
		}
	}
	// Every serve flag, with its environment variable.
	_, stdout, _ := runCLI([]string{"--help"}, nil)
	newServeFlags(new(Config)).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(stdout, "--"+f.Name+" ") || !strings.Contains(stdout, "env "+envName(f.Name)+"\n") {
			t.Errorf("--help does not list --%s with %s", f.Name, envName(f.Name))
		}
	})
}

func TestCommandHelpListsItsFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args      []string
		want, not string
	}{
		{[]string{"serve", "--help"}, "COURSESTREAM_MAX_CONNECTIONS", "  publish "},
		{[]string{"publish", "--help"}, "--operation-id", "--max-connections"},
		{[]string{"publish", "-h"}, "COURSESTREAM_OPERATION_ID", "--max-connections"},
		{[]string{"help", "publish"}, "--operation-id", "--max-connections"},
		{[]string{"token", "--help"}, "--ttl", "--operation-id"},
		{[]string{"help", "token"}, "COURSESTREAM_TTL", "--operation-id"},
		{[]string{"version", "--help"}, "usage: coursestream version", "--addr"},
	} {
		code, stdout, stderr := runCLI(tc.args, nil)
		if code != 0 || stderr != "" || !strings.Contains(stdout, tc.want) || strings.Contains(stdout, tc.not) {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want 0 and %q without %q", tc.args, code, stderr, stdout, tc.want, tc.not)
		}
	}
}

func TestUnknownCommandListsTheCommands(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"frobnicate"}, {"help", "frobnicate"}, {"frobnicate", "--help"}} {
		code, stdout, stderr := runCLI(args, nil)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, `unknown command "frobnicate"`) {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q; want 2 and unknown command", args, code, stdout, stderr)
		}
		for _, c := range commands {
			if !strings.Contains(stderr, c.name) {
				t.Errorf("%v: the error does not name the %s command: %q", args, c.name, stderr)
			}
		}
	}
	// The real process exits 2 too.
	err := exec.Command(binary, "frobnicate").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage {
		t.Fatalf("coursestream frobnicate: %v, want exit status 2", err)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, stdout, stderr := runCLI(args, nil)
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if code != 0 || stderr != "" || len(lines) != 4 || !strings.HasPrefix(lines[0], "coursestream ") ||
			!strings.HasPrefix(lines[1], "revision ") || !regexp.MustCompile(`^modified (true|false)$`).MatchString(lines[2]) ||
			lines[3] != "go "+runtime.Version() {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want coursestream V, revision R, modified B, go V", args, code, stderr, stdout)
		}
	}
}

// TestReleaseBuildVersion builds the binary as make build does, with the
// version given to the linker, and finds it where an operator looks: the
// version command, --version, the startup log line and /metrics.
func TestReleaseBuildVersion(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "coursestream")
	const v = "v9.8.7-test"
	b := exec.Command("go", "build", "-ldflags", "-X main.releaseVersion="+v+" -X main.releaseRevision=0123abc -X main.releaseModified=true", "-o", bin, ".")
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if want := "coursestream " + v + "\nrevision 0123abc\nmodified true\n"; err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("%s: %q (%v), want it to start %q", arg, out, err, want)
		}
	}
	s := startBinary(t, bin)
	if !strings.Contains(s.stderr.String(), "version="+v+" revision=0123abc") {
		t.Errorf("the startup log line has no version=%s revision=0123abc:\n%s", v, s.stderr)
	}
	resp, err := http.Get(s.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := regexp.MustCompile(`(?m)^coursestream_build_info\{goversion="` + regexp.QuoteMeta(runtime.Version()) + `",revision="0123abc",version="` + regexp.QuoteMeta(v) + `"\} 1$`)
	if !want.Match(body) {
		t.Errorf("/metrics has no line matching %s", want)
	}
}

// server is a coursestream process started by a test.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var listenRE = regexp.MustCompile(`msg="coursestream listening" addr=(\S+)`)

// startServer runs the binary on a free loopback port and waits for its
// "listening" line.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	return startBinary(t, binary, args...)
}

func startBinary(t *testing.T, bin string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive a test binary that panics
	pr, pw := io.Pipe()
	s := &server{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	// The buffer first: when the scanner below sees a line, s.stderr has it.
	cmd.Stderr = io.MultiWriter(s.stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait(); pw.Close() }()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatalf("server exited before listening:\n%s", s.stderr)
		}
		s.addr = addr
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("server did not start:\n%s", s.stderr)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

func TestServePublishSubscribeAndShutdown(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--heartbeat", "50ms")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	for _, path := range []string{"/healthz", "/readyz", "/", "/coursestream.js"} {
		resp, err := client.Get(s.url(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}

	if resp, err := client.Head(s.url("/coursestream.js")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD /coursestream.js: %v %v", resp, err)
	}

	// The publish subcommand posts to the running server and prints the id.
	out, err := exec.Command(binary, "publish", "--server", "http://"+s.addr, "--course", "course-123",
		"--type", "chapter-update-complete", "--data", `{"chapterId":"ch-1"}`, "--operation-id", "op-9").Output()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("publish printed %q (%v), want 1", out, err)
	}

	req, _ := http.NewRequest(http.MethodGet, s.url("/v1/courses/course-123/events"), nil)
	req.Header.Set("Last-Event-ID", "0")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	var sawEvent bool
	for !sawEvent {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended early: %v", err)
		}
		sawEvent = strings.HasPrefix(line, `data: {"id":"1","courseId":"course-123","type":"chapter-update-complete","data":{"chapterId":"ch-1"},"operationId":"op-9"`)
	}

	// SIGTERM with the stream open: the stream ends, the process exits 0
	// well within 10 s.
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Logf("stream ended with %v", err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.stderr)
		}
		s.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after SIGTERM:\n%s", s.stderr)
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start))
	if !strings.Contains(s.stderr.String(), "msg=stopped") {
		t.Fatalf("no clean stop logged:\n%s", s.stderr)
	}
}

func TestValidOrigin(t *testing.T) {
	for o, want := range map[string]bool{
		"*": true, "https://app.example": true, "http://localhost:5173": true, "https://*.example.com": true,
		"app.example": false, "https://app.example/": false, "not a url": false, "https://": false, "https://a.example?x=1": false,
	} {
		if got := validOrigin(o); got != want {
			t.Errorf("validOrigin(%q) = %v, want %v", o, got, want)
		}
	}
}
