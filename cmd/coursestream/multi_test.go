package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"coursestream/internal/cursor"
	"coursestream/internal/redistest"
)

// TestMultiCourseStream runs the multi-course stream's scenarios on real
// processes, embedded and on Redis (where the stream's instance is not the
// one published to, and a drained client resumes on another instance):
// resume across replay and live with no gap and no duplicate, a reset per
// course, filters, coalescing and dispatch=message, max stream age and
// shutdown drains resumed from the cursor.
func TestMultiCourseStream(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"embedded", "redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"--history", "100", "--heartbeat", "100ms"}
			var a, b, aged *server
			if mode == "redis" {
				rs := redistest.Start(t, redistest.Options{})
				args = append(args, "--redis-url", rs.URL())
				a, b = startServer(t, args...), startServer(t, args...)
				aged = startServer(t, append(args, "--max-stream-age", "1s")...)
				for _, s := range []*server{a, b, aged} {
					waitStatus(t, s, "/readyz", 200)
				}
			} else {
				a = startServer(t, args...)
				b = a
				aged = startServer(t, append(args, "--max-stream-age", "1s")...)
			}
			testMultiResume(t, a, b)
			testMultiReset(t, a, b)
			testMultiOptions(t, a, b)
			testMultiDrains(t, aged, mode == "redis", b)
		})
	}
}

// multiFrame is an event frame of a multi-course stream, read.
type multiFrame struct {
	frame
	course string
	seq    uint64
}

func readMulti(t *testing.T, s *sse, courses ...string) multiFrame {
	t.Helper()
	f := s.next(t)
	ps, err := cursor.Parse(f.id)
	if err != nil || cursor.New(courses, ps).String() != f.id {
		t.Fatalf("id %q is not a cursor of %v", f.id, courses)
	}
	var env struct{ ID, CourseID, LastEventID string }
	_ = json.Unmarshal([]byte(f.data), &env)
	seq := env.ID
	if f.event == "reset" {
		seq = env.LastEventID
	}
	n, _ := strconv.ParseUint(seq, 10, 64)
	if ps[env.CourseID] != n {
		t.Fatalf("frame %+v: its cursor does not hold its event", f)
	}
	return multiFrame{frame: f, course: env.CourseID, seq: n}
}

func publishN(t *testing.T, s *server, course, typ, data string, n int) {
	t.Helper()
	for range n {
		post(t, s.url("/v1/courses/"+course+"/events"), `{"type":"`+typ+`","data":`+data+`}`)
	}
}

func testMultiResume(t *testing.T, a, b *server) {
	publishN(t, b, "r-1", "upload-progress", `{"videoId":"v"}`, 20)
	publishN(t, b, "r-2", "upload-progress", `{"videoId":"v"}`, 10)
	s := openSSE(t, a.url("/v1/events?courses=r-1,r-2,r-3"), "r-2:4,r-1:5,r-9:3")
	var wg sync.WaitGroup
	for _, c := range []string{"r-1", "r-2", "r-3"} {
		wg.Go(func() { publishN(t, b, c, "upload-progress", `{"videoId":"v"}`, 30) })
	}
	next := map[string]uint64{"r-1": 6, "r-2": 5, "r-3": 1}
	for n := 15 + 6 + 90; n > 0; n-- {
		f := readMulti(t, s, "r-1", "r-2", "r-3")
		if f.event != "upload-progress" || f.seq != next[f.course] {
			t.Fatalf("got %s:%d (%s), want %s:%d: a gap or a duplicate", f.course, f.seq, f.event, f.course, next[f.course])
		}
		next[f.course]++
	}
	wg.Wait()
	if next["r-1"] != 51 || next["r-2"] != 41 || next["r-3"] != 31 {
		t.Fatalf("ended at %v", next)
	}
	// Counted under their own transport label.
	if n := metric(t, a, `coursestream_events_delivered_total{transport="sse-multi"}`); n < 111 {
		t.Errorf(`coursestream_events_delivered_total{transport="sse-multi"} is %v, want at least 111`, n)
	}
	if n := metric(t, a, `coursestream_connections{transport="sse-multi"}`); n < 1 {
		t.Errorf(`coursestream_connections{transport="sse-multi"} is %v with a stream open`, n)
	}
}

func testMultiReset(t *testing.T, a, b *server) {
	publishN(t, b, "x-1", "chapter-delete-complete", `{"chapterId":"c"}`, 150) // past --history 100
	publishN(t, b, "x-2", "chapter-delete-complete", `{"chapterId":"c"}`, 3)
	s := openSSE(t, a.url("/v1/events?courses=x-1,x-2"), "x-1:2,x-2:9")
	// Every course is at its start from the first frame on.
	for _, course := range []string{"x-1", "x-2"} {
		if f := readMulti(t, s, "x-1", "x-2"); f.event != "reset" || f.course != course || f.id != "x-1:150,x-2:3" {
			t.Fatalf("got %+v, want a reset of %s with id x-1:150,x-2:3", f.frame, course)
		}
	}
	post(t, b.url("/v1/courses/x-2/events"), `{"type":"upload-complete"}`)
	if f := readMulti(t, s, "x-1", "x-2"); f.id != "x-1:150,x-2:4" {
		t.Fatalf("after the resets got %+v", f.frame)
	}
	g := openSSE(t, a.url("/v1/events?courses=x-1,x-2"), "garbage")
	if f1, f2 := readMulti(t, g, "x-1", "x-2"), readMulti(t, g, "x-1", "x-2"); f1.event != "reset" || f2.event != "reset" || f2.id != "x-1:150,x-2:4" {
		t.Fatalf("a Last-Event-ID that is no cursor got %+v %+v, want a reset of every course", f1.frame, f2.frame)
	}
}

func testMultiOptions(t *testing.T, a, b *server) {
	s := openSSE(t, a.url("/v1/events?courses=o-1,o-2&types=upload-progress&coalesce=300ms&dispatch=message"), "o-1:0,o-2:0")
	for i := range 5 {
		for _, c := range []string{"o-1", "o-2"} {
			post(t, b.url("/v1/courses/"+c+"/events"), fmt.Sprintf(`{"type":"upload-progress","data":{"videoId":"v","progress":%d}}`, i))
			post(t, b.url("/v1/courses/"+c+"/events"), `{"type":"upload-complete","data":{"videoId":"v"}}`)
		}
	}
	seen := map[string]bool{}
	for len(seen) < 2 { // the windows may split the burst: each course ends on its latest
		f := readMulti(t, s, "o-1", "o-2")
		if f.event != "" || !strings.Contains(f.data, `"type":"upload-progress"`) {
			t.Fatalf("got %+v: want upload-progress only, without an event: line", f.frame)
		}
		if f.seq == 9 {
			seen[f.course] = true
		}
	}
}

func testMultiDrains(t *testing.T, aged *server, redis bool, other *server) {
	s := openSSE(t, aged.url("/v1/events?courses=d-1,d-2"), "")
	post(t, aged.url("/v1/courses/d-1/events"), `{"type":"upload-complete"}`)
	last := readMulti(t, s, "d-1", "d-2").id
	if f := s.next(t); f.event != "coursestream:drain" || f.id != "" {
		t.Fatalf("at its age the stream sent %+v, want the drain frame", f)
	}
	post(t, aged.url("/v1/courses/d-2/events"), `{"type":"upload-complete"}`)
	s = openSSE(t, aged.url("/v1/events?courses=d-1,d-2"), last)
	if f := readMulti(t, s, "d-1", "d-2"); f.id != "d-1:1,d-2:1" {
		t.Fatalf("resumed after the age drain with %+v", f.frame)
	}
	// Shutdown: the drain frame, then (Redis) the rest on another instance.
	aged.terminate(t)
	for {
		f, ok := <-s.frames
		if !ok {
			t.Fatal("the stream ended without the drain frame")
		}
		if f.event == "coursestream:drain" {
			break
		}
	}
	if !redis {
		return
	}
	post(t, other.url("/v1/courses/d-1/events"), `{"type":"upload-complete"}`)
	r := openSSE(t, other.url("/v1/events?courses=d-1,d-2"), "d-1:1,d-2:1")
	if f := readMulti(t, r, "d-1", "d-2"); f.id != "d-1:2,d-2:1" {
		t.Fatalf("resumed on another instance with %+v", f.frame)
	}
}

// TestMultiCourseAuthorization: with --jwt-key, a multi-course stream
// needs a token allowing every listed course (403 naming a refused one)
// and ends at the token's expiry with the drain frame.
func TestMultiCourseAuthorization(t *testing.T) {
	t.Parallel()
	const key = "multi-course-test-key-0123456789abcdef"
	s := startServer(t, "--jwt-key", key)
	tok := func(ttl string) string {
		code, out, errs := runCLI([]string{"token", "--jwt-key", key, "--course", "k-1,k-2", "--ttl", ttl}, nil)
		if code != 0 {
			t.Fatalf("token: %d %s", code, errs)
		}
		return strings.TrimSpace(out)
	}
	long, short := tok("1h"), tok("2s")
	if code, _, body := get(t, s.url("/v1/events?courses=k-1,k-3,k-4"), "Authorization", "Bearer "+long); code != 403 || !strings.Contains(body, "k-3") {
		t.Fatalf("a course the token does not allow: %d %s, want 403 naming k-3", code, body)
	}
	if code, _, _ := get(t, s.url("/v1/events?courses=k-1")); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, _, _ := get(t, s.url("/v1/events?courses=k-1,bad%20id"), "Authorization", "Bearer "+long); code != 400 {
		t.Fatalf("an invalid id: %d, want 400 before the token", code)
	}
	st := openSSE(t, s.url("/v1/events?courses=k-2,k-1&token="+short), "")
	if f := st.next(t); f.event != "coursestream:drain" {
		t.Fatalf("at the token's expiry the stream sent %+v, want the drain frame", f)
	}
}
