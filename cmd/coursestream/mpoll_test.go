package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"coursestream/internal/cursor"
	"coursestream/internal/redistest"
	"coursestream/poller"
)

// The multi-course poll (GET /v1/poll?courses=&cursor=) end to end, against
// real servers in embedded and Redis mode.

// multiPoll is the body of a multi-course poll.
type multiPoll struct {
	Cursor string `json:"cursor"`
	Events []struct {
		ID       string `json:"id"`
		CourseID string `json:"courseId"`
		Type     string `json:"type"`
	} `json:"events"`
	More   bool `json:"more"`
	Resets []struct {
		CourseID    string `json:"courseId"`
		LastEventID string `json:"lastEventId"`
	} `json:"resets"`
}

// events lists the answer's events as course:id.
func (m multiPoll) events() string {
	var s []string
	for _, ev := range m.Events {
		s = append(s, ev.CourseID+":"+ev.ID)
	}
	return strings.Join(s, " ")
}

// keepAlive publishes many events quickly.
var keepAlive = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

// pollCourses GETs /v1/poll?query and decodes a 200.
func pollCourses(t *testing.T, s *server, query string, header ...string) (int, http.Header, multiPoll) {
	t.Helper()
	code, h, body := get(t, s.url("/v1/poll?"+query), header...)
	var m multiPoll
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &m); err != nil || m.Events == nil || m.Resets == nil {
			t.Fatalf("GET /v1/poll?%s: body %q (%v)", query, body, err)
		}
	}
	return code, h, m
}

func TestMultiPollEndToEnd(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"embedded", "redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"--history", "600"}
			if mode == "redis" {
				rs := redistest.Start(t, redistest.Options{})
				args = append(args, "--redis-url", rs.URL())
			}
			s := startServer(t, args...)
			waitStatus(t, s, "/readyz", 200)
			multiPollScenario(t, s)
		})
	}
}

func multiPollScenario(t *testing.T, s *server) {
	publishN(t, s, "mp-a", "upload-progress", `{"n":1}`, 2)
	publishN(t, s, "mp-b", "upload-complete", `{"n":1}`, 1)

	// Pages: grouped by course in the order of courses=.
	code, h, m := pollCourses(t, s, "courses=mp-b,mp-a,mp-c")
	if code != 200 || m.Cursor != "mp-b:1,mp-a:2,mp-c:0" || m.events() != "mp-b:1 mp-a:1 mp-a:2" || m.More || len(m.Resets) != 0 {
		t.Fatalf("first poll: %d %+v", code, m)
	}
	if h.Get("Cache-Control") != "no-cache" || h.Get("Content-Type") != "application/json" || !strings.HasPrefix(h.Get("ETag"), `W/"`) {
		t.Fatalf("headers %v", h)
	}
	tag := h.Get("ETag")

	// ETag and 304: as for one course, whatever the cursor sent.
	for _, inm := range []string{tag, strings.TrimPrefix(tag, "W/"), `W/"x", ` + tag} {
		for _, cur := range []string{"", "&cursor=mp-a:1", "&cursor=" + m.Cursor} {
			code, h, _ := pollCourses(t, s, "courses=mp-b,mp-a,mp-c"+cur, "If-None-Match", inm)
			if code != http.StatusNotModified || h.Get("ETag") != tag {
				t.Errorf("If-None-Match %s%s: %d %s", inm, cur, code, h.Get("ETag"))
			}
		}
	}
	// Another course order is another cursor, so another tag.
	if code, h, _ := pollCourses(t, s, "courses=mp-a,mp-b,mp-c", "If-None-Match", tag); code != 200 || h.Get("ETag") == tag {
		t.Fatalf("other order: %d %s", code, h.Get("ETag"))
	}

	// types filters; the cursor (and the tag) still moves.
	publishN(t, s, "mp-a", "upload-complete", `{"n":1}`, 1)
	code, h, m = pollCourses(t, s, "courses=mp-b,mp-a,mp-c&types=upload-complete")
	if code != 200 || m.events() != "mp-b:1 mp-a:3" || m.Cursor != "mp-b:1,mp-a:3,mp-c:0" {
		t.Fatalf("types: %d %+v", code, m)
	}
	if code, h2, _ := pollCourses(t, s, "courses=mp-b,mp-a,mp-c&cursor=mp-a:2,mp-b:1", "If-None-Match", h.Get("ETag")); code != http.StatusNotModified || h2.Get("ETag") != h.Get("ETag") {
		t.Fatalf("the filtered answer's tag is not the cursor's: %d", code)
	}

	// The 500 cap across courses, with more, and the next page after it.
	publishN(t, s, "mp-x", "upload-progress", `{"n":1}`, 300)
	publishN(t, s, "mp-y", "upload-progress", `{"n":1}`, 250)
	code, _, m = pollCourses(t, s, "courses=mp-x,mp-y,mp-a")
	if code != 200 || len(m.Events) != 500 || !m.More || m.Cursor != "mp-x:300,mp-y:200,mp-a:0" {
		t.Fatalf("capped: %d, %d events, more %v, cursor %s", code, len(m.Events), m.More, m.Cursor)
	}
	code, _, m = pollCourses(t, s, "courses=mp-x,mp-y,mp-a&cursor="+m.Cursor)
	if code != 200 || len(m.Events) != 53 || m.More || m.Cursor != "mp-x:300,mp-y:250,mp-a:3" || m.Events[0].ID != "201" {
		t.Fatalf("after the cap: %d, %d events, more %v, cursor %s", code, len(m.Events), m.More, m.Cursor)
	}

	// Resets per course: a position ahead of its course.
	code, _, m = pollCourses(t, s, "courses=mp-a,mp-b&cursor=mp-a:99,mp-b:0")
	if code != 200 || m.Cursor != "mp-a:3,mp-b:1" || m.events() != "mp-b:1" || len(m.Resets) != 1 ||
		m.Resets[0].CourseID != "mp-a" || m.Resets[0].LastEventID != "3" {
		t.Fatalf("reset: %d %+v", code, m)
	}

	// A long-poll on three courses is woken by an event in any of them.
	cur := "mp-a:3,mp-b:1,mp-c:0"
	done := make(chan multiPoll, 1)
	go func() {
		resp, err := noKeepAlive.Get(s.url("/v1/poll?courses=mp-a,mp-b,mp-c&wait=25s&cursor=" + cur))
		var m multiPoll
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
		}
		done <- m
	}()
	waitMetric(t, s, `coursestream_connections{transport="longpoll"} 1`)
	publishN(t, s, "mp-c", "upload-complete", `{"n":1}`, 1)
	select {
	case m := <-done:
		if m.events() != "mp-c:1" || m.Cursor != "mp-a:3,mp-b:1,mp-c:1" {
			t.Fatalf("long-poll woken with %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll was not woken by an event of its third course")
	}
	waitMetric(t, s, `coursestream_connections{transport="longpoll"} 0`)

	// Bad inputs.
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	for _, q := range []string{
		"", "courses=", "courses=mp-a,,mp-b", "courses=-bad", "courses=" + strings.Join(many, ","),
		"courses=mp-a&cursor=mp-a", "courses=mp-a&cursor=mp-a:x", "courses=mp-a&cursor=mp-a:1,mp-a:2", "courses=mp-a&wait=31s",
	} {
		code, _, body := get(t, s.url("/v1/poll?"+q))
		if code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("%q: %d %s, want 400", q, code, body)
		}
	}
}

func TestMultiPollAuthorization(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--jwt-key", testKey)
	tok := mint(t, "--course", "mp-a,mp-b")
	auth := "Bearer " + tok
	if code, _, m := pollCourses(t, s, "courses=mp-a,mp-b", "Authorization", auth); code != 200 || m.Cursor != "mp-a:0,mp-b:0" {
		t.Fatalf("allowed courses: %d %+v", code, m)
	}
	if code, _, _ := pollCourses(t, s, "courses=mp-b&token="+tok); code != 200 {
		t.Fatalf("?token=: %d", code)
	}
	code, _, body := get(t, s.url("/v1/poll?courses=mp-a,mp-z,mp-b"), "Authorization", auth)
	if code != http.StatusForbidden || !strings.Contains(body, "mp-z") {
		t.Fatalf("a refused course: %d %s, want 403 naming mp-z", code, body)
	}
	code, h, _ := get(t, s.url("/v1/poll?courses=mp-a"))
	if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d %v", code, h)
	}
	if code, _, _ := get(t, s.url("/v1/poll?courses=mp-a,,x"), "Authorization", auth); code != http.StatusBadRequest {
		t.Fatalf("a bad list with a token: %d, want 400", code)
	}
	if code, _, _ := get(t, s.url("/v1/poll?courses=mp-a&cursor=nope"), "Authorization", auth); code != http.StatusBadRequest {
		t.Fatalf("a malformed cursor with a token: %d, want 400", code)
	}
	if code, _, _ := pollCourses(t, s, "courses=*", "Authorization", "Bearer "+mint(t, "--course", "*")); code != http.StatusBadRequest {
		t.Fatalf("courses=*: %d, want 400 (not a course id)", code)
	}
	if code, _, _ := pollCourses(t, s, "courses=mp-a,mp-q", "Authorization", "Bearer "+mint(t, "--course", "*")); code != 200 {
		t.Fatalf("a token for every course: %d", code)
	}
}

// TestMultiPollLongPollBoundAndShutdown: multi-course long-polls count
// against --max-longpolls with single-course ones, and SIGTERM answers
// the held one.
func TestMultiPollLongPollBoundAndShutdown(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--max-longpolls", "1")
	publishN(t, s, "mp-a", "upload-progress", `{"n":1}`, 1)
	held := make(chan int, 1)
	go func() {
		resp, err := noKeepAlive.Get(s.url("/v1/poll?courses=mp-a,mp-b&cursor=mp-a:1&wait=30s"))
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	waitMetric(t, s, `coursestream_connections{transport="longpoll"} 1`)
	start := time.Now()
	if code, _, _ := get(t, s.url("/v1/courses/mp-a/poll?after=1&wait=30s"), "If-None-Match", `W/"mp-a:1"`); code != http.StatusNotModified || time.Since(start) > 5*time.Second {
		t.Fatalf("single-course long-poll over the bound: %d after %s, want 304 at once", code, time.Since(start))
	}
	if code, _, _ := pollCourses(t, s, "courses=mp-b&wait=30s"); code != 200 || time.Since(start) > 5*time.Second {
		t.Fatalf("multi-course long-poll over the bound: %d after %s, want 200 at once", code, time.Since(start))
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-held:
		if code != 200 {
			t.Fatalf("held long-poll answered %d at shutdown, want 200", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held long-poll was not answered at shutdown")
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
}

// multiPollAPICases are TestOpenAPIHoldsToTheServer's cases of
// /v1/poll, run after its publishing cases (c-open holds ids 1 to 3;
// the keyed instance's token subTok allows c-keyed, otherTok does not).
func multiPollAPICases(open, keyed *server, subTok, otherTok string) []apiCase {
	const (
		get  = "GET /v1/poll"
		head = "HEAD /v1/poll"
	)
	tag := poller.CursorETag(cursor.Cursor{Courses: []string{"c-open", "mp-empty"}, Seqs: []uint64{3, 0}})
	inm := func(v string) map[string]string { return map[string]string{"If-None-Match": v} }
	many := make([]string, cursor.MaxCourses+1)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	return []apiCase{
		{op: get, srv: open, path: "/v1/poll?courses=c-open,mp-empty", status: 200,
			check: func(t *testing.T, h http.Header, body []byte) {
				var m multiPoll
				if err := json.Unmarshal(body, &m); err != nil || h.Get("ETag") != tag || m.Cursor != "c-open:3,mp-empty:0" || m.events() != "c-open:1 c-open:2 c-open:3" {
					t.Errorf("ETag %q (want %q), body %s", h.Get("ETag"), tag, body)
				}
			}},
		{op: get, srv: open, path: "/v1/poll?courses=mp-empty,c-open&cursor=c-open:1&types=custom.type_2", status: 200,
			check: func(t *testing.T, _ http.Header, body []byte) {
				if !bytes.Contains(body, []byte(`"cursor":"mp-empty:0,c-open:3"`)) || !bytes.Contains(body, []byte(`"id":"3"`)) || bytes.Contains(body, []byte(`"id":"2"`)) {
					t.Errorf("body %s", body)
				}
			}},
		{op: get, srv: open, path: "/v1/poll?courses=c-open,mp-empty&cursor=c-open:7,mp-empty:0", status: 200,
			check: wantJSON(`{"cursor":"c-open:3,mp-empty:0","events":[],"more":false,"resets":[{"courseId":"c-open","lastEventId":"3"}]}`)},
		{op: get, srv: open, path: "/v1/poll?courses=c-open,mp-empty&cursor=c-open:3&wait=1", status: 200,
			check: wantJSON(`{"cursor":"c-open:3,mp-empty:0","events":[],"more":false,"resets":[]}`)},
		{op: get, srv: open, path: "/v1/poll?courses=c-open,mp-empty", header: inm(tag), status: 304},
		{op: get, srv: open, path: "/v1/poll?courses=c-open&courses=mp-empty&cursor=c-open:3&wait=50ms", header: inm(`W/"x", ` + strings.TrimPrefix(tag, "W/")), status: 304},
		{op: get, srv: open, path: "/v1/poll", status: 400, refused: true},
		{op: get, srv: open, path: "/v1/poll?courses=", status: 400, refused: true},
		{op: get, srv: open, path: "/v1/poll?courses=c-open,,x", status: 400, refused: true},
		{op: get, srv: open, path: "/v1/poll?courses=" + strings.Join(many, ","), status: 400},
		{op: get, srv: open, path: "/v1/poll?courses=c-open&cursor=c-open", status: 400, refused: true},
		{op: get, srv: open, path: "/v1/poll?courses=c-open&cursor=c-open:1,c-open:2", status: 400},
		{op: get, srv: open, path: "/v1/poll?courses=c-open&wait=31s", status: 400},
		{op: get, srv: keyed, path: "/v1/poll?courses=c-keyed", header: map[string]string{"Authorization": "Bearer " + subTok}, status: 200},
		{op: get, srv: keyed, path: "/v1/poll?courses=c-keyed", status: 401},
		{op: get, srv: keyed, path: "/v1/poll?courses=c-keyed,other&token=" + subTok, status: 403},
		{op: get, srv: keyed, path: "/v1/poll?courses=c-keyed&token=" + otherTok, status: 403},
		{op: head, srv: open, path: "/v1/poll?courses=c-open,mp-empty", status: 200},
		{op: head, srv: open, path: "/v1/poll?courses=c-open,mp-empty", header: inm(tag), status: 304},
		{op: head, srv: open, path: "/v1/poll?courses=c-open&cursor=x", status: 400, refused: true},
		{op: head, srv: keyed, path: "/v1/poll?courses=c-keyed", status: 401},
		{op: head, srv: keyed, path: "/v1/poll?courses=c-keyed&token=" + otherTok, status: 403},
	}
}
