package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"coursestream/internal/tlstest"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost,
// made for one test, in PEM files.
type testCert struct {
	certFile, keyFile string
	pool              *x509.CertPool // trusts the certificate
}

func newTestCert(t *testing.T) testCert {
	c := tlstest.New(t)
	return testCert{certFile: c.CertFile, keyFile: c.KeyFile, pool: c.Pool}
}

// startTLS runs the binary with a fresh certificate.
func startTLS(t *testing.T, args ...string) (*server, testCert) {
	t.Helper()
	c := newTestCert(t)
	s := startServer(t, append([]string{"--tls-cert", c.certFile, "--tls-key", c.keyFile}, args...)...)
	return s, c
}

func (s *server) https(path string) string { return "https://" + s.addr + path }

// client is an HTTPS client that trusts c and speaks only the protocols
// given: one HTTP/2 client multiplexes all its requests on one connection.
func (c testCert) client(t *testing.T, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool}, Protocols: new(http.Protocols)}
	if h2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// sseFrames reads a stream's frames (the text between blank lines) on a
// goroutine that ends with the body; the last value is the read's error
// (nil for a clean end).
type sseFrames struct {
	c   chan string
	end chan error
}

func readSSE(body io.Reader) *sseFrames {
	f := &sseFrames{c: make(chan string, 1024), end: make(chan error, 1)}
	go func() {
		defer close(f.c)
		r := bufio.NewReader(body)
		var frame strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				f.end <- err
				return
			}
			if line == "\n" {
				f.c <- frame.String()
				frame.Reset()
				continue
			}
			frame.WriteString(line)
		}
	}()
	return f
}

// next returns the next frame that has want in it, failing the test after
// 10 s or at the stream's end.
func (f *sseFrames) next(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case fr, ok := <-f.c:
			if !ok {
				t.Fatalf("stream ended (%v) before a frame with %q", <-f.end, want)
			}
			if strings.Contains(fr, want) {
				return fr
			}
		case <-timeout:
			t.Fatalf("no frame with %q in 10 s", want)
		}
	}
}

// ended waits for the end of the stream and returns its error (nil: a
// clean end of the response).
func (f *sseFrames) ended(t *testing.T) error {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-f.c:
			if !ok {
				return <-f.end
			}
		case <-timeout:
			t.Fatal("stream still open after 10 s")
		}
	}
}

// send sends a request and checks that it went over the protocol wanted.
func send(t *testing.T, c *http.Client, method, url string, header map[string]string, body string, proto int) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if resp.ProtoMajor != proto {
		resp.Body.Close()
		t.Fatalf("%s %s answered over %s, want HTTP/%d", method, url, resp.Proto, proto)
	}
	return resp
}

func publishOver(t *testing.T, c *http.Client, s *server, course, data string) {
	t.Helper()
	resp := send(t, c, http.MethodPost, s.https("/v1/courses/"+course+"/events"),
		map[string]string{"Content-Type": "application/json"}, `{"type":"t","data":`+data+`}`, resp2(c))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
}

// resp2 is the protocol c speaks.
func resp2(c *http.Client) int {
	if c.Transport.(*http.Transport).Protocols.HTTP2() {
		return 2
	}
	return 1
}

// Every endpoint answers the same over HTTP/2 as over HTTP/1.1: health,
// publish, poll with its ETag and 304, and the SSE stream with its
// heartbeats.
func TestTLSEveryEndpointOverHTTP2AndHTTP1(t *testing.T) {
	t.Parallel()
	s, cert := startTLS(t, "--heartbeat", "100ms")
	for _, proto := range []int{2, 1} {
		t.Run(fmt.Sprintf("HTTP/%d", proto), func(t *testing.T) {
			c := cert.client(t, proto == 2)
			course := fmt.Sprintf("tls-h%d", proto)
			resp := send(t, c, http.MethodGet, s.https("/healthz"), nil, "", proto)
			if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(b), `"ok"`) {
				t.Fatalf("/healthz: %d %s", resp.StatusCode, b)
			}
			resp.Body.Close()

			stream := send(t, c, http.MethodGet, s.https("/v1/courses/"+course+"/events"), map[string]string{"Last-Event-ID": "0"}, "", proto)
			defer stream.Body.Close()
			if stream.StatusCode != 200 || stream.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("stream: %d %q", stream.StatusCode, stream.Header.Get("Content-Type"))
			}
			frames := readSSE(stream.Body)
			frames.next(t, "retry: ")

			publishOver(t, c, s, course, `{"n":1}`)
			if fr := frames.next(t, "id: 1\n"); !strings.Contains(fr, `"courseId":"`+course+`"`) || !strings.Contains(fr, `"data":{"n":1}`) {
				t.Fatalf("event frame %q", fr)
			}
			// Two heartbeats, so that they are periodic, not a first-frame
			// artefact.
			frames.next(t, ": hb")
			frames.next(t, ": hb")

			poll := send(t, c, http.MethodGet, s.https("/v1/courses/"+course+"/poll?after=0"), nil, "", proto)
			b, _ := io.ReadAll(poll.Body)
			poll.Body.Close()
			etag := poll.Header.Get("ETag")
			if poll.StatusCode != 200 || etag == "" || !strings.Contains(string(b), `"id":"1"`) {
				t.Fatalf("poll: %d ETag %q %s", poll.StatusCode, etag, b)
			}
			again := send(t, c, http.MethodGet, s.https("/v1/courses/"+course+"/poll?after=0"), map[string]string{"If-None-Match": etag}, "", proto)
			again.Body.Close()
			if again.StatusCode != http.StatusNotModified {
				t.Fatalf("poll with If-None-Match %s: %d, want 304", etag, again.StatusCode)
			}
		})
	}
}

// A stream whose client stops reading is cut once --client-buffer is
// full, while another stream on the same HTTP/2 connection (same course)
// keeps delivering. Over HTTP/2 "stops reading" is per stream: the
// client's connection keeps being read, the stalled stream's flow-control
// window (64 KiB here, 4 MiB for Go's default client, 6 MiB for Chrome)
// fills, then the server's writes to that stream block and its queue
// grows to the bound.
func TestTLSStalledH2StreamIsCutWhileItsConnectionDelivers(t *testing.T) {
	t.Parallel()
	s, cert := startTLS(t, "--client-buffer", "32KiB")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.pool}, Protocols: new(http.Protocols),
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10}}
	tr.Protocols.SetHTTP2(true)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}

	conns := map[string]bool{}
	open := func() *http.Response {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conns[i.Conn.LocalAddr().String()] = true }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodGet, s.https("/v1/courses/shared/events"), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("stream: %s %d", resp.Proto, resp.StatusCode)
		}
		return resp
	}
	stalled, reading := open(), open()
	defer stalled.Body.Close()
	defer reading.Body.Close()
	if len(conns) != 1 {
		t.Fatalf("the two streams went over %d connections, want 1", len(conns))
	}
	frames := readSSE(reading.Body)
	frames.next(t, "retry: ")

	// 200 events of 2 KiB: 400 KiB, past the stalled stream's window and
	// its buffer together.
	pad := strings.Repeat("x", 2048)
	const events = 200
	for i := 1; i <= events; i++ {
		publishOver(t, c, s, "shared", fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, pad))
	}
	for i := 1; i <= events; i++ {
		frames.next(t, fmt.Sprintf("id: %d\n", i))
	}
	// The stalled stream was cut (a reset, not a clean end), once.
	if n := tlsMetric(t, c, s, `coursestream_streams_closed_total{reason="slow"}`); n != 1 {
		t.Fatalf("%v streams closed as slow, want 1", n)
	}
	if _, err := io.Copy(io.Discard, stalled.Body); err == nil {
		t.Fatal("the stalled stream ended cleanly; want it cut")
	} else {
		t.Logf("stalled stream: %v", err)
	}
	// The reading stream is still live, on the same connection.
	publishOver(t, c, s, "shared", `{"n":"after"}`)
	frames.next(t, fmt.Sprintf("id: %d\n", events+1))
}

// tlsMetric is metric for a server on HTTPS, read through c.
func tlsMetric(t *testing.T, c *http.Client, s *server, name string) float64 {
	t.Helper()
	resp := send(t, c, http.MethodGet, s.https("/metrics"), nil, "", resp2(c))
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// SIGTERM ends every HTTP/2 stream with the drain frame and a clean end,
// and connections that sent no request (a bare TCP connection, a finished
// TLS handshake) are closed, not waited on for 5 s.
func TestTLSShutdownDrainsH2Streams(t *testing.T) {
	t.Parallel()
	s, cert := startTLS(t)
	c := cert.client(t, true)
	var streams []*sseFrames
	for _, course := range []string{"a", "b"} {
		resp := send(t, c, http.MethodGet, s.https("/v1/courses/"+course+"/events"), nil, "", 2)
		defer resp.Body.Close()
		f := readSSE(resp.Body)
		f.next(t, "retry: ")
		streams = append(streams, f)
	}
	bare, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	handshaken, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: cert.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer handshaken.Close()

	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, f := range streams {
		if fr := f.next(t, "event: coursestream:drain\n"); !strings.Contains(fr, `"retryMs":`) || strings.Contains(fr, "id: ") {
			t.Fatalf("stream %d: drain frame %q", i, fr)
		}
		if err := f.ended(t); err != nil {
			t.Fatalf("stream %d cut after its drain frame: %v", i, err)
		}
	}
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after SIGTERM:\n%s", s.stderr)
	}
	took := time.Since(start)
	if took > 4*time.Second {
		t.Fatalf("stopped %s after SIGTERM: the connections without a request were waited on", took)
	}
	if !strings.Contains(s.stderr.String(), `msg="closed connections that sent no request" connections=2`) {
		t.Fatalf("the two unused connections were not closed as such:\n%s", s.stderr)
	}
	t.Logf("stopped %s after SIGTERM", took)
}

// A token expiring ends its HTTP/2 stream with the drain frame.
func TestTLSTokenExpiryEndsH2Stream(t *testing.T) {
	t.Parallel()
	s, cert := startTLS(t, "--jwt-key", testKey, "--heartbeat", "100ms")
	tok := mint(t, "--course", "c1", "--ttl", "4s")
	exp := tokenExpiry(t, tok)
	resp := send(t, cert.client(t, true), http.MethodGet, s.https("/v1/courses/c1/events?token="+tok), nil, "", 2)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	f := readSSE(resp.Body)
	f.next(t, ": hb")
	fr := f.next(t, "event: coursestream:drain\n")
	if !strings.Contains(fr, ": the token expired") {
		t.Fatalf("drain frame %q does not name the token's expiry", fr)
	}
	if err := f.ended(t); err != nil {
		t.Fatalf("stream cut: %v", err)
	}
	if now := time.Now(); now.Before(exp) {
		t.Fatalf("the stream ended %s before its token expired", exp.Sub(now))
	}
}

func TestTLSConfigurationErrorsExit2(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--tls-cert", cert.certFile}, nil, "--tls-cert is set without --tls-key"},
		{[]string{"--tls-key", cert.keyFile}, nil, "--tls-key is set without --tls-cert"},
		{nil, map[string]string{"COURSESTREAM_TLS_CERT": cert.certFile}, "without --tls-key"},
		{[]string{"--tls-key", cert.keyFile}, map[string]string{"COURSESTREAM_TLS_CERT": "/does/not/exist.pem"}, "/does/not/exist.pem"},
		{[]string{"--tls-cert", garbage, "--tls-key", cert.keyFile}, nil, "--tls-cert " + garbage},
		{[]string{"--tls-cert", cert.keyFile, "--tls-key", cert.certFile}, nil, "--tls-cert"}, // swapped
	} {
		code, _, stderr := runCLI(tc.args, tc.env)
		lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n") + 1
		if code != exitUsage || !strings.Contains(stderr, tc.want) || lines != 1 {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and one line with %q", tc.args, tc.env, code, stderr, tc.want)
		}
	}
	// Both from the environment: served.
	code, _, stderr := runCLI([]string{"--addr", "127.0.0.1:99999"}, map[string]string{
		"COURSESTREAM_TLS_CERT": cert.certFile, "COURSESTREAM_TLS_KEY": cert.keyFile})
	if code != exitUsage || !strings.Contains(stderr, "--addr") {
		t.Errorf("a valid pair from the environment: exit %d %q; want the --addr error only", code, stderr)
	}
}
