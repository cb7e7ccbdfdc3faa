package poller

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"coursestream/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type body struct {
	CourseID    string            `json:"courseId"`
	LastEventID string            `json:"lastEventId"`
	Events      []json.RawMessage `json:"events"`
	More        bool              `json:"more"`
	Reset       bool              `json:"reset"`
}

func setup(t testing.TB, history int) (*observer.Memory, *Poller, http.Handler) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := observer.NewMemory(observer.MemoryConfig{History: history, Logger: quiet})
	p := New(b, Config{Logger: quiet})
	mux := http.NewServeMux()
	mux.Handle("GET /v1/courses/{courseId}/poll", p)
	return b, p, mux
}

func publish(t testing.TB, b observer.Broker, course, typ string, n int) {
	t.Helper()
	for range n {
		if _, err := b.Publish(context.Background(), observer.Message{CourseID: course, Type: typ, Data: json.RawMessage(`{"x":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

func get(t *testing.T, h http.Handler, target string, inm string) (*httptest.ResponseRecorder, body) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var b body
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatalf("GET %s: body %q: %v", target, rec.Body, err)
		}
	}
	return rec, b
}

func TestEmptyCourse(t *testing.T) {
	t.Parallel()
	_, _, h := setup(t, 0)
	rec, b := get(t, h, "/v1/courses/new-course/poll", "")
	if rec.Code != 200 || rec.Header().Get("ETag") != `W/"new-course:0"` || b.LastEventID != "0" || b.Events == nil || len(b.Events) != 0 || b.More || b.Reset {
		t.Fatalf("got %d %s %+v", rec.Code, rec.Header().Get("ETag"), b)
	}
	if rec.Header().Get("Cache-Control") != "no-cache" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", rec.Header())
	}
}

func TestPollETagAnd304(t *testing.T) {
	t.Parallel()
	b, _, h := setup(t, 0)
	publish(t, b, "c1", "chapter-update-complete", 3)
	rec, got := get(t, h, "/v1/courses/c1/poll?after=1", "")
	if rec.Code != 200 || got.LastEventID != "3" || len(got.Events) != 2 || rec.Header().Get("ETag") != `W/"c1:3"` {
		t.Fatalf("got %d %s %+v", rec.Code, rec.Header().Get("ETag"), got)
	}
	hist, _ := b.History(context.Background(), "c1", 1, 10)
	if string(got.Events[0]) != string(hist.Events[0].JSON) {
		t.Fatalf("envelope text differs from the stored one:\n%s\n%s", got.Events[0], hist.Events[0].JSON)
	}
	for _, inm := range []string{`W/"c1:3"`, `"c1:3"`, `"x", W/"c1:3"`, `*`, ` W/"a:1",W/"c1:3" `} {
		for _, after := range []string{"1", "3"} {
			rec, _ := get(t, h, "/v1/courses/c1/poll?after="+after, inm)
			if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 || rec.Header().Get("ETag") != `W/"c1:3"` {
				t.Errorf("If-None-Match %s after=%s: %d body %q etag %s", inm, after, rec.Code, rec.Body, rec.Header().Get("ETag"))
			}
		}
	}
	for _, inm := range []string{`W/"c1:2"`, `W/"c2:3"`, `c1:3`, `W/"c1:3`} {
		if rec, _ := get(t, h, "/v1/courses/c1/poll?after=3", inm); rec.Code != 200 {
			t.Errorf("If-None-Match %s: %d, want 200", inm, rec.Code)
		}
	}
}

func TestPollResetAndPages(t *testing.T) {
	t.Parallel()
	b, _, h := setup(t, 1200)
	publish(t, b, "c1", "upload-progress", 1300) // retains 101..1300
	for _, after := range []string{"0", "99", "1301"} {
		rec, got := get(t, h, "/v1/courses/c1/poll?after="+after, "")
		if rec.Code != 200 || !got.Reset || len(got.Events) != 0 || got.LastEventID != "1300" || rec.Header().Get("ETag") != `W/"c1:1300"` {
			t.Fatalf("after=%s: %d %+v", after, rec.Code, got)
		}
	}
	after, pages := "100", 0
	for {
		rec, got := get(t, h, "/v1/courses/c1/poll?after="+after, "")
		pages++
		if rec.Header().Get("ETag") != `W/"c1:`+got.LastEventID+`"` || len(got.Events) > PageSize {
			t.Fatalf("page %d: etag %s, %d events", pages, rec.Header().Get("ETag"), len(got.Events))
		}
		var first struct{ ID string }
		_ = json.Unmarshal(got.Events[0], &first)
		if n, _ := strconv.Atoi(after); first.ID != strconv.Itoa(n+1) {
			t.Fatalf("page after %s starts at %s", after, first.ID)
		}
		after = got.LastEventID
		if !got.More {
			break
		}
	}
	if pages != 3 || after != "1300" {
		t.Fatalf("%d pages ending at %s, want 3 ending at 1300", pages, after)
	}
	// A client at the end of a capped page must not get 304 for the next one.
	if rec, _ := get(t, h, "/v1/courses/c1/poll?after=100", `W/"c1:1300"`); rec.Code != 200 {
		t.Fatalf("capped page answered %d to the course's ETag", rec.Code)
	}
}

func TestPollTypes(t *testing.T) {
	t.Parallel()
	b, _, h := setup(t, 0)
	publish(t, b, "c1", "upload-progress", 2)
	publish(t, b, "c1", "upload-complete", 1)
	publish(t, b, "c1", "upload-progress", 1)
	rec, got := get(t, h, "/v1/courses/c1/poll?types=upload-complete", "")
	if len(got.Events) != 1 || got.LastEventID != "4" || rec.Header().Get("ETag") != `W/"c1:4"` {
		t.Fatalf("filtered: %+v etag %s", got, rec.Header().Get("ETag"))
	}
}

func TestPollBadRequests(t *testing.T) {
	t.Parallel()
	_, _, h := setup(t, 0)
	for _, q := range []string{
		"/v1/courses/_x/poll", "/v1/courses/c/poll?after=-1", "/v1/courses/c/poll?after=abc", "/v1/courses/c/poll?after=",
		"/v1/courses/c/poll?after=1.5", "/v1/courses/c/poll?wait=31s", "/v1/courses/c/poll?wait=soon",
		"/v1/courses/c/poll?wait=-1s", "/v1/courses/c/poll?types=A",
	} {
		rec, _ := get(t, h, q, "")
		var e struct{ Error string }
		if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %q, want 400 with an error", q, rec.Code, rec.Body)
		}
	}
}

func TestLongPollWokenByEvent(t *testing.T) {
	t.Parallel()
	b, p, h := setup(t, 0)
	publish(t, b, "c1", "chapter-update-complete", 2)
	waiting := make(chan struct{})
	p.onWait = func() { close(waiting) }
	srv := httptest.NewServer(h)
	defer srv.Close()
	type result struct {
		code int
		b    body
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/courses/c1/poll?after=2&wait=25s", nil)
		req.Header.Set("If-None-Match", `W/"c1:2"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{}
			return
		}
		defer resp.Body.Close()
		var b body
		_ = json.NewDecoder(resp.Body).Decode(&b)
		res <- result{resp.StatusCode, b}
	}()
	<-waiting
	publish(t, b, "c1", "chapter-update-complete", 1)
	r := <-res
	if r.code != 200 || len(r.b.Events) != 1 || r.b.LastEventID != "3" {
		t.Fatalf("long-poll got %d %+v", r.code, r.b)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestLongPollTimesOut(t *testing.T) {
	t.Parallel()
	b, _, h := setup(t, 0)
	publish(t, b, "c1", "chapter-update-complete", 1)
	start := time.Now()
	rec, _ := get(t, h, "/v1/courses/c1/poll?after=1&wait=100ms", `W/"c1:1"`)
	if rec.Code != http.StatusNotModified || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("got %d after %s, want 304 after the wait", rec.Code, time.Since(start))
	}
	rec, got := get(t, h, "/v1/courses/c1/poll?after=1&wait=1", "")
	if rec.Code != 200 || len(got.Events) != 0 || got.LastEventID != "1" {
		t.Fatalf("without If-None-Match got %d %+v, want 200 with no events", rec.Code, got)
	}
}

func TestLongPollAnsweredByDrain(t *testing.T) {
	t.Parallel()
	_, p, h := setup(t, 0)
	waiting := make(chan struct{})
	var once sync.Once
	p.onWait = func() { once.Do(func() { close(waiting) }) }
	done := make(chan int)
	go func() {
		rec, _ := get(t, h, "/v1/courses/c1/poll?wait=30s", "")
		done <- rec.Code
	}()
	<-waiting
	p.Drain()
	if code := <-done; code != 200 {
		t.Fatalf("drained long-poll got %d", code)
	}
	if p.LongPolls() != 0 {
		t.Fatalf("%d long-polls still counted", p.LongPolls())
	}
	if rec, _ := get(t, h, "/v1/courses/c1/poll?wait=30s", ""); rec.Code != 200 {
		t.Fatalf("long-poll after Drain got %d", rec.Code)
	}
}

func FuzzMatchNoneMatch(f *testing.F) {
	for _, s := range []string{`W/"c:1"`, `"c:1"`, `*`, `"a", W/"b"`, `W/`, `"`, `,,,`, "W/\"\x00\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got := MatchNoneMatch(header, `W/"c:1"`)
		// A header holding exactly the tag, weak or strong, always matches.
		if (header == `W/"c:1"` || header == `"c:1"`) && !got {
			t.Fatalf("%q did not match", header)
		}
		if got && !strings.Contains(header, `"c:1"`) && !strings.Contains(header, "*") {
			t.Fatalf("%q matched without the tag", header)
		}
	})
}

// FuzzParse: the poll request parser never panics and keeps its bounds.
func FuzzParse(f *testing.F) {
	f.Add("c1", "after=5&wait=25s&types=a,b")
	f.Add("c1", "after=18446744073709551616")
	f.Add("c1", "wait=30")
	f.Add("", "%%")
	f.Fuzz(func(t *testing.T, course, query string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.RawQuery = query
		r.SetPathValue("courseId", course)
		req, err := parse(r, oneCourse, new(single))
		if err != nil {
			return
		}
		if len(req.at.Courses) != 1 || len(req.at.Seqs) != 1 || !observer.ValidCourseID(req.at.Courses[0]) || req.wait < 0 || req.wait > MaxWait {
			t.Fatalf("accepted %+v", req)
		}
	})
}
