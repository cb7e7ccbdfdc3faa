package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"coursestream/internal/redistest"
	"coursestream/observer"
)

// frame is one SSE event as a client reads it.
type frame struct{ id, event, data string }

// sse reads the frames of one stream into a channel until it ends.
type sse struct {
	frames chan frame
	resp   *http.Response
}

func openSSE(t *testing.T, url, lastEventID string) *sse {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	s := &sse{frames: make(chan frame, 1000), resp: resp}
	go func() {
		defer close(s.frames)
		r := bufio.NewReader(resp.Body)
		var f frame
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if f.data != "" {
					s.frames <- f
				}
				f = frame{}
			case strings.HasPrefix(line, "id: "):
				f.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				f.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				f.data = line[6:]
			}
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return s
}

// next returns the next event frame.
func (s *sse) next(t *testing.T) frame {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			t.Fatal("the stream ended")
		}
		return f
	case <-time.After(20 * time.Second):
		t.Fatal("no frame within 20s")
	}
	return frame{}
}

func get(t *testing.T, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func post(t *testing.T, url, body string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// waitStatus polls GET path until it answers want (readiness has no event
// to wait on).
func waitStatus(t *testing.T, s *server, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, body := get(t, s.url(path))
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s, want %d", path, code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisTwoProcessesAreOneService runs two coursestream processes on one
// Redis: a stream on one gets what is published over HTTP on the other, by
// the publish subcommand and by a backend's FCALL; a client resumes on the
// other with Last-Event-ID; polls answer the same ETag everywhere; readyz
// follows Redis going away and coming back, and delivery resumes.
func TestRedisTwoProcessesAreOneService(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Options{})
	a := startServer(t, "--redis-url", rs.URL(), "--heartbeat", "100ms", "--max-event-bytes", "1024")
	b := startServer(t, "--redis-url", rs.URL(), "--heartbeat", "100ms", "--max-event-bytes", "1024")
	waitStatus(t, a, "/readyz", 200)
	waitStatus(t, b, "/readyz", 200)

	stream := openSSE(t, a.url("/v1/courses/course-123/events"), "")
	if got := post(t, b.url("/v1/courses/course-123/events"), `{"type":"chapter-update-complete","data":{"chapterId":"ch-1"},"operationId":"op-9"}`); got != `{"id":"1"}`+"\n" && got != `{"id":"1"}` {
		t.Fatalf("POST answered %q", got)
	}
	out, err := exec.Command(binary, "publish", "--redis-url", rs.URL(), "--course", "course-123",
		"--type", "video-update-complete", "--data", "{\"videoId\":\n\"v1\"}").Output()
	if err != nil || strings.TrimSpace(string(out)) != "2" {
		t.Fatalf("publish --redis-url printed %q (%v), want 2", out, err)
	}
	id, err := rs.Client().FCall(context.Background(), observer.FunctionPublish, []string{"course-123"},
		"upload-complete", `[1, 12345678901234567890]`, "op-x").Int64()
	if err != nil || id != 3 {
		t.Fatalf("FCALL: %d, %v", id, err)
	}
	var live []frame
	for want := range 3 {
		f := stream.next(t)
		if f.id != string(rune('1'+want)) {
			t.Fatalf("frame %d has id %q: %+v", want, f.id, f)
		}
		live = append(live, f)
	}
	for _, w := range []struct{ event, prefix string }{
		{"chapter-update-complete", `{"id":"1","courseId":"course-123","type":"chapter-update-complete","data":{"chapterId":"ch-1"},"operationId":"op-9","timestamp":`},
		{"video-update-complete", `{"id":"2","courseId":"course-123","type":"video-update-complete","data":{"videoId": "v1"},"timestamp":`},
		{"upload-complete", `{"id":"3","courseId":"course-123","type":"upload-complete","data":[1, 12345678901234567890],"operationId":"op-x","timestamp":`},
	} {
		f := live[0]
		live = live[1:]
		if f.event != w.event || !strings.HasPrefix(f.data, w.prefix) {
			t.Fatalf("frame %+v, want event %s and data %s...", f, w.event, w.prefix)
		}
	}

	// Resume on the other instance.
	resumed := openSSE(t, b.url("/v1/courses/course-123/events"), "1")
	for _, want := range []string{"2", "3"} {
		if f := resumed.next(t); f.id != want {
			t.Fatalf("resumed on b: frame %+v, want id %s", f, want)
		}
	}

	// The same poll, the same ETag, 304 on both.
	codeA, hA, bodyA := get(t, a.url("/v1/courses/course-123/poll?after=0"))
	codeB, hB, bodyB := get(t, b.url("/v1/courses/course-123/poll?after=0"))
	if codeA != 200 || codeB != 200 || hA.Get("ETag") != `W/"course-123:3"` || hA.Get("ETag") != hB.Get("ETag") || bodyA != bodyB {
		t.Fatalf("polls differ:\n a %d %s %s\n b %d %s %s", codeA, hA.Get("ETag"), bodyA, codeB, hB.Get("ETag"), bodyB)
	}
	for _, s := range []*server{a, b} {
		if code, _, _ := get(t, s.url("/v1/courses/course-123/poll?after=3"), "If-None-Match", `W/"course-123:3"`); code != 304 {
			t.Fatalf("poll with the current ETag: %d, want 304", code)
		}
	}

	// A refusal by the function: exit 2, one line.
	cmd := exec.Command(binary, "publish", "--redis-url", rs.URL(), "--course", "course-123", "--type", "t",
		"--data", `"`+strings.Repeat("x", 2000)+`"`)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 ||
		!strings.Contains(stderr.String(), "event too large") {
		t.Fatalf("too large: %v, stderr %q; want exit 2 and one line", err, stderr.String())
	}

	// Redis goes away: both instances are not ready; it comes back empty:
	// ready again, streams get a reset, then new events, with ids above
	// the ones delivered before (no id is reused).
	rs.Stop()
	waitStatus(t, a, "/readyz", 503)
	waitStatus(t, b, "/readyz", 503)
	rs.Restart()
	waitStatus(t, a, "/readyz", 200)
	waitStatus(t, b, "/readyz", 200)
	post(t, b.url("/v1/courses/course-123/events"), `{"type":"chapter-update-complete","data":{}}`)
	f := stream.next(t)
	if f.event != "reset" {
		t.Fatalf("after Redis lost its data: frame %+v, want a reset", f)
	}
	resetTo, _ := strconv.ParseUint(f.id, 10, 64)
	if resetTo <= 3 {
		t.Fatalf("reset to %d: ids at or below 3 were delivered before", resetTo)
	}
	post(t, b.url("/v1/courses/course-123/events"), `{"type":"chapter-update-complete","data":{}}`)
	f = stream.next(t)
	if f.event == "reset" || f.id != strconv.FormatUint(resetTo+1, 10) {
		t.Fatalf("after the reset to %d: frame %+v, want the next id", resetTo, f)
	}
}

// TestRedisClusterProcess: --redis-cluster serves on a 3-master cluster.
func TestRedisClusterProcess(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	s := startServer(t, "--redis-cluster", strings.Join(cl.Addrs(), ","))
	waitStatus(t, s, "/readyz", 200)
	stream := openSSE(t, s.url("/v1/courses/c-1/events"), "")
	post(t, s.url("/v1/courses/c-1/events"), `{"type":"upload-progress","data":{"pct":50}}`)
	if f := stream.next(t); f.id != "1" || f.event != "upload-progress" {
		t.Fatalf("frame %+v", f)
	}
	if !strings.Contains(s.stderr.String(), "broker=redis-cluster") {
		t.Fatalf("not on the cluster:\n%s", s.stderr)
	}
}

// TestRedisURLOfAClusterNode: --redis-url naming one node of a cluster
// runs in cluster mode: courses of every node's slots work, over HTTP and
// with publish --redis-url (a plain client would get MOVED for most).
func TestRedisURLOfAClusterNode(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	url := "redis://" + cl.Addrs()[0] + "/0"
	s := startServer(t, "--redis-url", url)
	waitStatus(t, s, "/readyz", 200)
	if !strings.Contains(s.stderr.String(), "broker=redis-cluster") {
		t.Fatalf("--redis-url of a cluster node is not in cluster mode:\n%s", s.stderr)
	}
	for i := range 12 { // courses spread over the three masters
		course := "cl-" + strconv.Itoa(i)
		if got := post(t, s.url("/v1/courses/"+course+"/events"), `{"type":"upload-complete","data":{}}`); got != `{"id":"1"}`+"\n" {
			t.Fatalf("POST to %s: %q", course, got)
		}
		code, stdout, stderr := runCLI([]string{"publish", "--redis-url", url, "--course", course, "--type", "upload-complete", "--data", "{}"}, nil)
		if code != exitOK || strings.TrimSpace(stdout) != "2" {
			t.Fatalf("publish --redis-url %s --course %s: exit %d, %q %q", url, course, code, stdout, stderr)
		}
	}
	// The courses' keys are on every master: the test reached them all.
	for i, n := range cl.Nodes {
		keys, err := n.Client().Keys(context.Background(), "coursestream:{cl-*}:seq").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("node %d holds %d of the courses (%v): the test does not reach every master", i, len(keys), err)
		}
	}
}

func TestRedisBadClusterFlag(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCLI([]string{"--redis-cluster", "nonsense"}, nil)
	if code != exitUsage || !strings.Contains(stderr, "--redis-cluster") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI([]string{"publish", "--redis-url", "http://x", "--course", "c", "--type", "t"}, nil)
	if code != exitUsage || !strings.Contains(stderr, "--redis-url") {
		t.Fatalf("publish --redis-url http://x: exit %d, %q", code, stderr)
	}
}
