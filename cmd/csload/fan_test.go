package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coursestream/internal/tlstest"

	"go.uber.org/goleak"
)

// startFloor serves the floor (sse: fanout or held) on a free loopback
// port until the test ends.
func startFloor(t *testing.T, sse string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveFloorOn(ctx, ln, sse, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("floor: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// startTLSServer builds and runs coursestream over HTTPS (HTTP/2 by ALPN)
// on a free loopback port, with a test certificate.
func startTLSServer(t *testing.T) string {
	t.Helper()
	cert := tlstest.New(t)
	url, _ := startCoursestream(t, "https://", "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile)
	return url
}

func sseRun(t *testing.T, c config) *report {
	t.Helper()
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	rep, err := runSSE(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	rep.print(os.Stdout, false)
	return rep
}

// wantAll checks that every client got each of its courses' events once,
// in order, and that each event has its fan-out completion.
func wantAll(t *testing.T, rep *report, clients, expected, events int) {
	t.Helper()
	if rep.Connected != clients || rep.Published != events || rep.Expected != expected ||
		rep.Received != expected || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 {
		t.Fatalf("report %+v", rep)
	}
	// Every event's last delivery is one of the deliveries, and the
	// slowest of them all is the slowest event's last.
	if rep.CompletionEvents != events || rep.CompletionP50 <= 0 || rep.CompletionP99 < rep.CompletionP50 ||
		rep.CompletionMax != rep.LatencyMax {
		t.Fatalf("completion over %d events: p50 %s p99 %s max %s (latency max %s); want %d events, 0 < p50 <= p99, max the latency max",
			rep.CompletionEvents, rep.CompletionP50, rep.CompletionP99, rep.CompletionMax, rep.LatencyMax, events)
	}
}

// The floor's fan-out is loaded exactly as coursestream: csload sse gets
// every event, once and in order, with its completion time.
func TestFloorFanOut(t *testing.T) {
	// Registered first, so run last: once the floor is shut down, none of
	// its goroutines (the taken-over streams' handlers) nor the clients' is left.
	others := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, others) })
	url := startFloor(t, "fanout")
	c := config{
		Server: url, Clients: 100, Courses: 2, Ramp: 2000, Events: 10, Rate: 100, Payload: 16,
		Publish: "http", Timeout: time.Minute, Settle: 50 * time.Millisecond, Drain: 20 * time.Second,
		Concurrency: 2, CoursePfx: "fan-", Label: "floor",
	}
	rep := sseRun(t, c)
	wantAll(t, rep, 100, 100*10/2, 10)
	if rep.Mode != "sse" || rep.Label != "floor" {
		t.Fatalf("mode %q label %q, want sse and floor", rep.Mode, rep.Label)
	}

	// The multi-course stream: each client on 2 of 4 courses.
	c.Courses, c.PerStream, c.Clients, c.Events, c.CoursePfx = 4, 2, 40, 20, "fanmulti-"
	wantAll(t, sseRun(t, c), 40, 40*2*20/4, 20)

	// A course's ids go on from where its last run left them (1..5 then
	// 6..10 on the floor): the clients of the second run check that too.
	c.Courses, c.PerStream, c.Clients, c.Events, c.CoursePfx = 1, 1, 10, 5, "fanagain-"
	wantAll(t, sseRun(t, c), 10, 50, 5)
	wantAll(t, sseRun(t, c), 10, 50, 5)
}

// The floor's publish answers 201 with the course's ids in turn, and its
// frame is coursestream's shape as csload's client reads it.
func TestFloorPublishAndFrame(t *testing.T) {
	url := startFloor(t, "fanout")
	for want := range []string{"1", "2"} {
		resp, err := http.Post(url+"/v1/courses/c1/events", "application/json", strings.NewReader(`{"type":"upload-progress","data":{"a": 1}}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || string(b) != `{"id":"`+string(rune('1'+want))+`"}` {
			t.Fatalf("publish %d: %d %s", want+1, resp.StatusCode, b)
		}
	}
	resp, err := http.Post(url+"/v1/courses/c1/events", "application/json", strings.NewReader(`{"data":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a publish without a type: %d, want 400", resp.StatusCode)
	}

	f := string(appendFloorFrame(nil, 7, "c1", "upload-progress", []byte(`{"t":42}`), 1000))
	if want := "id: 7\nevent: upload-progress\ndata: {\"id\":\"7\",\"courseId\":\"c1\",\"type\":\"upload-progress\",\"data\":{\"t\":42},\"timestamp\":1000}\n\n"; f != want {
		t.Fatalf("frame %q\nwant  %q", f, want)
	}
	cl := &client{courses: []string{"c0", "c1"}}
	data := []byte(strings.TrimPrefix(strings.Split(f, "\n")[2], "data: "))
	if id, sent, ok := parseData(data); !ok || id != 7 || sent != 42 || cl.lane(data) != 1 {
		t.Fatalf("csload reads id %d sent %d ok %v lane %d; want 7, 42, true, 1", id, sent, ok, cl.lane(data))
	}
}

// The floor's streams stay idle while nothing is published (csload idle
// reads them through net/http's client: the Connection: close head), in
// both kinds.
func TestFloorIdle(t *testing.T) {
	for _, kind := range []string{"fanout", "held"} {
		c := config{Server: startFloor(t, kind), Clients: 20, Courses: 2, Ramp: 1000, Timeout: time.Minute,
			Settle: 10 * time.Millisecond, CoursePfx: "idle-", Proto: "h1"}
		ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
		rep, err := runIdle(ctx, c)
		cancel()
		if err != nil || rep.Connected != 20 {
			t.Fatalf("%s: %v, %d connected; want 20", kind, err, rep.Connected)
		}
	}
	err := serveFloor(context.Background(), "127.0.0.1:0", "nonsense", io.Discard)
	if !errors.As(err, new(usageError)) {
		t.Fatalf("--floor-sse nonsense: %v, want a usage error", err)
	}
}

// The floor's poll answers 304 at once without ?wait=, and holds the
// request with it.
func TestFloorHeldPoll(t *testing.T) {
	url := startFloor(t, "fanout") + "/v1/courses/c1/poll"
	get := func(hc *http.Client, u string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("If-None-Match", `W/"c1:0"`)
		return hc.Do(req)
	}
	resp, err := get(http.DefaultClient, url)
	if err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("poll: %v %v, want 304", resp, err)
	}
	resp.Body.Close()
	start := time.Now()
	resp, err = get(http.DefaultClient, url+"?wait=150ms")
	if err != nil || resp.StatusCode != http.StatusNotModified || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("poll?wait=150ms: %v %v after %s, want 304 after 150ms", resp, err, time.Since(start))
	}
	resp.Body.Close()
	// Held 30 s: the client gives up first.
	_, err = get(&http.Client{Timeout: 200 * time.Millisecond}, url+"?wait=30s")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("poll?wait=30s with a 200ms client: %v, want the client's timeout", err)
	}
}

// csload sse over HTTP/2 and over HTTP/1.1 with TLS, each client on its
// own connection, against coursestream over HTTPS: the same checks.
func TestSSEOverTLS(t *testing.T) {
	url := startTLSServer(t)
	for _, p := range []string{"h2", "h1tls"} {
		c := config{
			Server: url, Clients: 40, Courses: 2, Ramp: 2000, Events: 10, Rate: 100, Payload: 16,
			Publish: "http", Timeout: time.Minute, Settle: 50 * time.Millisecond, Drain: 20 * time.Second,
			Concurrency: 2, CoursePfx: "tls-" + p + "-", Proto: p,
		}
		rep := sseRun(t, c)
		wantAll(t, rep, 40, 40*10/2, 10)
		if rep.Mode != "sse "+p {
			t.Fatalf("mode %q, want sse %s", rep.Mode, p)
		}
	}
	c := config{Server: strings.Replace(url, "https", "http", 1), Clients: 1, Courses: 1, Ramp: 1, Rate: 1, Concurrency: 1, Publish: "http", Proto: "h2"}
	if _, err := runSSE(context.Background(), c); !errors.As(err, new(usageError)) {
		t.Fatalf("h2 against http://: %v, want a usage error", err)
	}
}

// csload plot: the SVG parses as XML, with one point per report in each
// panel, the larger value higher.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	reps := map[string]report{
		"cs-1000.json":    {Mode: "sse", Clients: 1000, Connected: 1000, RSSPerConnKiB: 7.5, CPUPerDeliveryMicros: 12, CompletionP99: 300 * time.Millisecond},
		"cs-2000.json":    {Mode: "sse", Clients: 2000, Connected: 2000, RSSPerConnKiB: 7.6, CPUPerDeliveryMicros: 13, CompletionP99: 500 * time.Millisecond},
		"floor-1000.json": {Mode: "sse", Clients: 1000, Connected: 1000, RSSPerConnKiB: 4, CPUPerDeliveryMicros: 8, CompletionP99: 100 * time.Millisecond},
		"x.json":          {Mode: "sse h2", Label: "coursestream", Clients: 500, Connected: 500, RSSPerConnKiB: 66, CPUPerDeliveryMicros: 20, CompletionP99: time.Second},
	}
	var files []string
	for name, r := range reps {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		r.print(f, true)
		f.Close()
		files = append(files, f.Name())
	}
	svg := filepath.Join(dir, "plot.svg")
	if err := run(context.Background(), append([]string{"plot", "--out", svg}, files...), io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	type circle struct {
		CY    float64 `xml:"cy,attr"`
		Title string  `xml:"title"`
	}
	var doc struct {
		XMLName xml.Name `xml:"svg"`
		Panels  []struct {
			Metric  string   `xml:"data-metric,attr"`
			Circles []circle `xml:"circle"`
		} `xml:"g"`
		Legend []string `xml:"text"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the SVG is not XML: %v\n%s", err, b)
	}
	if len(doc.Panels) != 3 {
		t.Fatalf("%d panels, want 3", len(doc.Panels))
	}
	for _, p := range doc.Panels {
		if len(p.Circles) != len(reps) {
			t.Fatalf("panel %s: %d points, want %d", p.Metric, len(p.Circles), len(reps))
		}
		cy := map[string]float64{}
		for _, c := range p.Circles {
			cy[strings.SplitN(c.Title, ":", 2)[0]] = c.CY
		}
		if !(cy["x.json"] < cy["cs-2000.json"] && cy["cs-2000.json"] < cy["floor-1000.json"]) { // SVG's y grows downwards
			t.Fatalf("panel %s: heights %v, want x above cs-2000 above floor-1000", p.Metric, cy)
		}
	}
	for _, want := range []string{"cs", "floor", "coursestream h2"} {
		if !strings.Contains(string(b), ">"+want+"</text>") {
			t.Fatalf("no legend %q in\n%s", want, b)
		}
	}
	if err := run(context.Background(), []string{"plot"}, io.Discard); !errors.As(err, new(usageError)) {
		t.Fatalf("plot without reports: %v, want a usage error", err)
	}
}

// TestFloorShutdownEndsStreams: a stream still open when the floor stops
// is closed by it (net/http's Close does not reach a taken-over socket),
// and none of the floor's goroutines is left.
func TestFloorShutdownEndsStreams(t *testing.T) {
	others := goleak.IgnoreCurrent()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveFloorOn(ctx, ln, "fanout", io.Discard) }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/courses/c1/events HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("before retry: %v", err)
		}
		if strings.HasPrefix(line, "retry:") {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the stream was not closed by the floor's shutdown: %v", err)
	}
	goleak.VerifyNone(t, others)
}
