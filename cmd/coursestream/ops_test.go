package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const testKey = "test-secret-0123456789abcdef"

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func mint(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"token", "--jwt-key", testKey}, args...)...).Output()
	if err != nil {
		t.Fatalf("token %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func do(t *testing.T, method, url string, header map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, "" // a stream: not read here
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--jwt-key", testKey)
	sub := mint(t, "--course", "c1,c2")
	pub := mint(t, "--course", "c1", "--publish")
	expired := mint(t, "--course", "c1", "--ttl", "1ns")
	event := `{"type":"chapter-update-complete","data":{"chapterId":"x"}}`
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		body               string
		want               int
	}{
		{"publish without token", "POST", "/v1/courses/c1/events", nil, event, 401},
		{"publish with a subscriber token", "POST", "/v1/courses/c1/events", bearer(sub), event, 403},
		{"publish", "POST", "/v1/courses/c1/events", bearer(pub), event, 201},
		{"publish to another course", "POST", "/v1/courses/c2/events", bearer(pub), event, 403},
		{"poll without token", "GET", "/v1/courses/c1/poll", nil, "", 401},
		{"poll with a tampered token", "GET", "/v1/courses/c1/poll", bearer(sub[:len(sub)-2] + "xx"), "", 401},
		{"poll with an expired token", "GET", "/v1/courses/c1/poll", bearer(expired), "", 401},
		{"poll a course not in the token", "GET", "/v1/courses/c3/poll", bearer(sub), "", 403},
		{"poll with the bearer", "GET", "/v1/courses/c1/poll", bearer(sub), "", 200},
		{"poll with ?token=", "GET", "/v1/courses/c2/poll?token=" + sub, nil, "", 200},
		{"poll with the cookie", "GET", "/v1/courses/c1/poll", map[string]string{"Cookie": "coursestream_token=" + sub}, "", 200},
		{"sse without token", "GET", "/v1/courses/c1/events", nil, "", 401},
		{"sse with ?token=", "GET", "/v1/courses/c1/events?token=" + sub, nil, "", 200},
		{"sse on a course not in the token", "GET", "/v1/courses/c3/events?token=" + sub, nil, "", 403},
		{"health needs no token", "GET", "/healthz", nil, "", 200},
	} {
		resp, body := do(t, tc.method, s.url(tc.path), tc.header, tc.body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.want)
			continue
		}
		if tc.want >= 400 {
			var e struct{ Error string }
			if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: body %q is not a JSON error", tc.name, body)
			}
		}
	}
}

func TestTokenExpiryEndsStream(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--jwt-key", testKey, "--heartbeat", "100ms")
	tok := mint(t, "--course", "c1", "--ttl", "4s") // exp has second precision: 3-4 s from now (2 s left no room for a loaded machine: 401)
	exp := tokenExpiry(t, tok)
	resp, err := noKeepAlive.Get(s.url("/v1/courses/c1/events?token=" + tok))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	start := time.Now()
	done := make(chan error, 1)
	var body bytes.Buffer
	go func() { _, err := io.Copy(&body, resp.Body); done <- err }()
	select {
	case err := <-done:
		t.Logf("stream ended %s after opening", time.Since(start))
		// Ended cleanly (the end of the chunked response, not a cut) with
		// the drain frame that tells the client when to come back.
		if err != nil {
			t.Fatalf("stream cut: %v", err)
		}
		if !strings.Contains(body.String(), ": the token expired") || !strings.Contains(body.String(), "event: coursestream:drain\n") {
			t.Fatalf("no drain frame for the token's expiry in %q", body.String())
		}
		// The stream ended because of the token's expiry, not at once:
		// not before exp. (Measured against exp itself, not the time the
		// stream opened: minting and opening take a second on a loaded
		// machine, and CI once saw the stream end 1.98 s after opening,
		// on time.)
		if now := time.Now(); now.Before(exp) {
			t.Fatalf("the stream ended %s before its token expired", exp.Sub(now))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open 10 s after its token expired")
	}
}

// tokenExpiry is tok's exp claim, read without checking the signature (the
// server checks it).
func tokenExpiry(t *testing.T, tok string) time.Time {
	t.Helper()
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil || claims.ExpiresAt == nil {
		t.Fatalf("token %q: no exp (%v)", tok, err)
	}
	return claims.ExpiresAt.Time
}

func TestTokenSubcommandErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"token", "--course", "c1"},
		{"token", "--jwt-key", testKey},
		{"token", "--jwt-key", testKey, "--course", "a/b"},
	} {
		if code, _, stderr := runCLI(args, nil); code != exitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d %q, want 2 and one line", args, code, stderr)
		}
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--cors-origins", "https://app.example")
	resp, _ := do(t, "OPTIONS", s.url("/v1/courses/c1/poll"), map[string]string{
		"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
		"Access-Control-Request-Headers": "authorization, if-none-match, last-event-id",
	}, "")
	if resp.StatusCode >= 300 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// Spelled as the contract spells them (names are case-insensitive, but
	// a check may compare strings).
	allowed := resp.Header.Get("Access-Control-Allow-Headers")
	for _, h := range []string{"Authorization", "If-None-Match", "Last-Event-ID"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("preflight does not allow %s: %q", h, allowed)
		}
	}
	for _, path := range []string{"/v1/courses/c1/poll", "/v1/courses/c1/events"} {
		req, _ := http.NewRequest("GET", s.url(path), nil)
		req.Header.Set("Origin", "https://app.example")
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if exposed := resp.Header.Get("Access-Control-Expose-Headers"); exposed != "ETag, Retry-After" {
			t.Fatalf("GET %s: exposed headers %q, want \"ETag, Retry-After\"", path, exposed)
		}
	}
	resp, _ = do(t, "GET", s.url("/v1/courses/c1/poll"), map[string]string{"Origin": "https://evil.example"}, "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("an unlisted origin was allowed")
	}
	resp, _ = do(t, "OPTIONS", s.url("/v1/courses/c1/poll"), map[string]string{
		"Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
	}, "")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight of an unlisted origin: %d %v, want 200 and no CORS headers", resp.StatusCode, resp.Header)
	}
	// An OPTIONS that is no preflight reaches the routes: none takes it.
	if resp, _ = do(t, "OPTIONS", s.url("/v1/courses/c1/poll"), nil, ""); resp.StatusCode != 405 {
		t.Fatalf("OPTIONS without a preflight's headers: %d, want 405", resp.StatusCode)
	}
}

func TestMaxConnectionsFallback(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--max-connections", "1")
	first, err := noKeepAlive.Get(s.url("/v1/courses/c1/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	resp, body := do(t, "GET", s.url("/v1/courses/c1/events"), nil, "")
	var e struct{ Error, Fallback string }
	_ = json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || e.Error == "" || e.Fallback != "/v1/courses/c1/poll" {
		t.Fatalf("got %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestMetricsMove scrapes /metrics, parses the text format, and checks
// that the counters follow what happened.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	stream, err := noKeepAlive.Get(s.url("/v1/courses/c1/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	r := bufio.NewReader(stream.Body)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "retry:") { // subscribed
		t.Fatalf("first line %q", line)
	}
	for range 3 {
		do(t, "POST", s.url("/v1/courses/c1/events"), nil, `{"type":"upload-complete","data":{}}`)
	}
	for got := 0; got < 3; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data:") {
			got++
		}
	}
	do(t, "GET", s.url("/v1/courses/c1/poll"), nil, "")
	do(t, "GET", s.url("/v1/courses/c1/poll?after=3"), map[string]string{"If-None-Match": `W/"c1:3"`}, "")
	resp, body := do(t, "GET", s.url("/metrics"), nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		f := families[name]
		if f == nil {
			t.Fatalf("no metric %s", name)
		}
	next:
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		return -1
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"coursestream_connections", map[string]string{"transport": "sse"}, 1},
		{"coursestream_events_received_total", nil, 3},
		{"coursestream_events_delivered_total", map[string]string{"transport": "sse"}, 3},
		{"coursestream_events_delivered_total", map[string]string{"transport": "poll"}, 3},
		{"coursestream_polls_total", map[string]string{"code": "200"}, 1},
		{"coursestream_polls_total", map[string]string{"code": "304"}, 1},
		{"coursestream_publish_duration_seconds", nil, 3},
		{"coursestream_delivery_lag_seconds", nil, 3},
		{"coursestream_events_dropped_total", nil, 0},
		{"coursestream_resets_total", nil, 0},
		// Every series the contract names is there from the start, at zero
		// until something happens (malformed comes from Redis channels only).
		{"coursestream_events_malformed_total", map[string]string{"kind": "json"}, 0},
		{"coursestream_events_malformed_total", map[string]string{"kind": "fields"}, 0},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The first line (retry:) leaves before the stream has caught up with
	// the history: an event published in that moment is sent as a replay
	// (still delivered once, and counted in delivered above). So the
	// replayed series exists and counts at most the three events.
	if got := value("coursestream_replayed_events_total", nil); got < 0 || got > 3 {
		t.Errorf("coursestream_replayed_events_total = %v, want 0 to 3", got)
	}
}

// TestShutdownWithStreamsAndLongPolls: SIGTERM with SSE streams and a
// long-poll open: readiness goes first, streams get a final jittered retry
// and end, the long-poll is answered, and the process exits 0 in time.
func TestShutdownWithStreamsAndLongPolls(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--retry", "1s", "--drain-jitter", "2s")
	do(t, "POST", s.url("/v1/courses/c1/events"), nil, `{"type":"upload-complete","data":{}}`)
	type result struct {
		retry int
		err   error
	}
	streams := make(chan result, 3)
	for range 3 {
		resp, err := noKeepAlive.Get(s.url("/v1/courses/c1/events"))
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(resp.Body)
		if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "retry:") {
			t.Fatalf("first line %q", line)
		}
		go func() {
			defer resp.Body.Close()
			var res result
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					streams <- res
					return
				}
				if v, ok := strings.CutPrefix(line, "retry: "); ok {
					res.retry, res.err = strconv.Atoi(strings.TrimSpace(v))
				}
			}
		}()
	}
	longPoll := make(chan int, 1)
	go func() {
		resp, err := noKeepAlive.Get(s.url("/v1/courses/c1/poll?after=1&wait=30s"))
		if err != nil {
			longPoll <- 0
			return
		}
		resp.Body.Close()
		longPoll <- resp.StatusCode
	}()
	// The long-poll is waiting once the long-poll gauge says so.
	waitMetric(t, s, `coursestream_connections{transport="longpoll"} 1`)
	// A socket that never sends a request (a browser's preconnect): net/http's
	// Shutdown would wait 5 s for it; the server closes it.
	pre, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	// The server accepts connections in order, and tracks each before it
	// accepts the next: once a later request is answered, pre is known
	// (else a SIGTERM with it still in the listen backlog tests nothing).
	if resp, _ := do(t, "GET", s.url("/healthz"), nil, ""); resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	preClosed := make(chan error, 1)
	go func() { _, err := pre.Read(make([]byte, 1)); preClosed <- err }()

	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res := <-streams
		if res.err != nil || res.retry < 1000 || res.retry >= 3000 {
			t.Errorf("stream ended with retry %d (%v), want retry in [1000,3000)", res.retry, res.err)
		}
	}
	if code := <-longPoll; code != 200 {
		t.Errorf("long-poll answered %d, want 200", code)
	}
	if err := <-preClosed; err != io.EOF {
		t.Errorf("the preconnected socket read %v, want EOF", err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
		s.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM")
	}
	took := time.Since(start)
	t.Logf("exited %s after SIGTERM", took)
	if !strings.Contains(s.stderr.String(), `msg="closed connections that sent no request" connections=1`) {
		t.Errorf("the server did not close the preconnected socket itself:\n%s", s.stderr)
	}
	// net/http alone holds a socket that sent nothing for 5 s.
	if took >= 5*time.Second {
		t.Errorf("exit took %s: the preconnected socket held the shutdown", took)
	}
}

// waitMetric polls /metrics until a line appears (no event says so).
func waitMetric(t *testing.T, s *server, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := do(t, "GET", s.url("/metrics"), nil, "")
		if strings.Contains(body, line) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShortKeyWorksWithAWarning: the contract sets no minimum key size; a
// short secret is accepted (tokens minted with it work) and warned about.
func TestShortKeyWorksWithAWarning(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--jwt-key", "secret")
	if !strings.Contains(s.stderr.String(), "the --jwt-key is short") {
		t.Fatalf("no warning about the short key:\n%s", s.stderr)
	}
	out, err := exec.Command(binary, "token", "--jwt-key", "secret", "--course", "c1").Output()
	if err != nil {
		t.Fatalf("token with a short key: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if resp, _ := do(t, "GET", s.url("/v1/courses/c1/poll"), map[string]string{"Authorization": "Bearer " + tok}, ""); resp.StatusCode != 200 {
		t.Fatalf("poll with a short-key token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", s.url("/v1/courses/c1/poll"), map[string]string{"Authorization": "Bearer " + mint(t, "--course", "c1")}, ""); resp.StatusCode != 401 {
		t.Fatalf("poll with another key's token: %d, want 401", resp.StatusCode)
	}
}

// TestWrongMethodAndUnknownPath: 405 names the allowed methods, 404 and
// 405 answer JSON errors, on every route.
func TestWrongMethodAndUnknownPath(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"POST", "/metrics", 405, "GET, HEAD"},
		{"DELETE", "/metrics", 405, "GET, HEAD"},
		{"PUT", "/v1/courses/c1/events", 405, "GET, POST"},
		{"HEAD", "/v1/courses/c1/events", 405, "GET, POST"},
		{"POST", "/v1/courses/c1/poll", 405, "GET, HEAD"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"POST", "/readyz", 405, "GET, HEAD"},
		{"GET", "/v1/courses/c1/nope", 404, ""},
		{"GET", "/v2/anything", 404, ""},
		{"POST", "/nope", 404, ""},
		{"DELETE", "/v1", 404, ""},
		{"POST", "/coursestream.js", 405, "GET, HEAD"},
		{"POST", "/", 405, "GET, HEAD"},
	} {
		resp, body := do(t, tc.method, s.url(tc.path), nil, "")
		if resp.StatusCode != tc.code || resp.Header.Get("Allow") != tc.allow ||
			resp.Header.Get("Content-Type") != "application/json" || (tc.method != "HEAD" && !strings.HasPrefix(body, `{"error":`)) {
			t.Errorf("%s %s: %d Allow %q %s %s; want %d Allow %q and a JSON error", tc.method, tc.path,
				resp.StatusCode, resp.Header.Get("Allow"), resp.Header.Get("Content-Type"), body, tc.code, tc.allow)
		}
	}
	if resp, body := do(t, "GET", s.url("/metrics"), nil, ""); resp.StatusCode != 200 || !strings.Contains(body, "coursestream_") {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	for _, path := range []string{"/healthz", "/metrics", "/v1/courses/c1/poll", "/", "/coursestream.js", "/coursestream-tanstack.js"} {
		if resp, body := do(t, "HEAD", s.url(path), nil, ""); resp.StatusCode != 200 || body != "" {
			t.Errorf("HEAD %s: %d %q, want 200 and no body", path, resp.StatusCode, body)
		}
	}
}
