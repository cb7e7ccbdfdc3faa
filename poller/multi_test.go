package poller

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"coursestream/internal/cursor"
	"coursestream/observer"
)

// multiBody is the body of a multi-course poll.
type multiBody struct {
	Cursor string     `json:"cursor"`
	Events []envelope `json:"events"`
	More   bool       `json:"more"`
	Resets []struct {
		CourseID    string `json:"courseId"`
		LastEventID string `json:"lastEventId"`
	} `json:"resets"`
}

type envelope struct {
	ID       string `json:"id"`
	CourseID string `json:"courseId"`
	Type     string `json:"type"`
}

func setupMulti(t testing.TB, history int, cfg Config) (*observer.Memory, *Poller, http.Handler) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := observer.NewMemory(observer.MemoryConfig{History: history, Logger: quiet})
	cfg.Logger = quiet
	p := New(b, cfg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/poll", p.ServeCourses)
	mux.Handle("GET /v1/courses/{courseId}/poll", p)
	return b, p, mux
}

func getMulti(t *testing.T, h http.Handler, target, inm string) (*httptest.ResponseRecorder, multiBody) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var b multiBody
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatalf("GET %s: body %q: %v", target, rec.Body, err)
		}
		if b.Events == nil || b.Resets == nil {
			t.Fatalf("GET %s: events and resets must be arrays: %s", target, rec.Body)
		}
	}
	return rec, b
}

// tagOf is the ETag a cursor text must have.
func tagOf(t *testing.T, text string, courses ...string) string {
	t.Helper()
	ps, err := cursor.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return CursorETag(cursor.New(courses, ps))
}

// ids lists the events as course:id.
func ids(evs []envelope) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.CourseID+":"+ev.ID)
	}
	return strings.Join(s, " ")
}

func TestMultiEmptyCourses(t *testing.T) {
	t.Parallel()
	_, _, h := setupMulti(t, 0, Config{})
	rec, got := getMulti(t, h, "/v1/poll?courses=a,b", "")
	if rec.Code != 200 || got.Cursor != "a:0,b:0" || len(got.Events) != 0 || got.More || len(got.Resets) != 0 {
		t.Fatalf("got %d %+v", rec.Code, got)
	}
	if rec.Header().Get("ETag") != tagOf(t, "a:0,b:0", "a", "b") || !strings.HasPrefix(rec.Header().Get("ETag"), `W/"`) {
		t.Fatalf("ETag %s", rec.Header().Get("ETag"))
	}
	if rec.Header().Get("Cache-Control") != "no-cache" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", rec.Header())
	}
	if want := `{"cursor":"a:0,b:0","events":[],"more":false,"resets":[]}` + "\n"; rec.Body.String() != want {
		t.Fatalf("body %q, want %q", rec.Body, want)
	}
}

func TestMultiGroupsByCourseInRequestOrder(t *testing.T) {
	t.Parallel()
	b, _, h := setupMulti(t, 0, Config{})
	publish(t, b, "a", "upload-progress", 1)
	publish(t, b, "b", "upload-progress", 2)
	publish(t, b, "a", "upload-progress", 2)
	cases := []struct{ query, cursor, events string }{
		{"courses=a,b", "a:3,b:2", "a:1 a:2 a:3 b:1 b:2"},
		{"courses=b,a", "b:2,a:3", "b:1 b:2 a:1 a:2 a:3"},
		{"courses=b&courses=a,b", "b:2,a:3", "b:1 b:2 a:1 a:2 a:3"}, // repeated: counts once
		{"courses=a,b&cursor=a:1", "a:3,b:2", "a:2 a:3 b:1 b:2"},
		{"courses=a,b&cursor=b:1,a:2", "a:3,b:2", "a:3 b:2"},
		{"courses=a&cursor=a:1,zz:7", "a:3", "a:2 a:3"}, // an entry of a course not listed is ignored
		{"courses=a,b&cursor=a:3,b:2", "a:3,b:2", ""},
		{"courses=a,b&cursor=a:3,b:2&after=1", "a:3,b:2", ""}, // after= is the single-course parameter
	}
	for _, c := range cases {
		rec, got := getMulti(t, h, "/v1/poll?"+c.query, "")
		if rec.Code != 200 || got.Cursor != c.cursor || ids(got.Events) != c.events || got.More || len(got.Resets) != 0 {
			t.Errorf("%s: %d cursor %s events %q, want %s %q", c.query, rec.Code, got.Cursor, ids(got.Events), c.cursor, c.events)
		}
		if tag := rec.Header().Get("ETag"); tag != CursorETag(mustCursor(t, c.cursor)) {
			t.Errorf("%s: ETag %s is not the cursor's", c.query, tag)
		}
	}
	// The envelopes are the stored text, byte for byte.
	rec, _ := getMulti(t, h, "/v1/poll?courses=b&cursor=b:1", "")
	pg, _ := b.History(t.Context(), "b", 1, 1)
	if !strings.Contains(rec.Body.String(), `"events":[`+string(pg.Events[0].JSON)+`]`) {
		t.Fatalf("body %s does not carry the stored envelope %s", rec.Body, pg.Events[0].JSON)
	}
}

func mustCursor(t *testing.T, text string) cursor.Cursor {
	t.Helper()
	ps, err := cursor.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	var courses []string
	for entry := range strings.SplitSeq(text, ",") {
		courses = append(courses, entry[:strings.LastIndexByte(entry, ':')])
	}
	return cursor.New(courses, ps)
}

func TestMultiCapAcrossCourses(t *testing.T) {
	t.Parallel()
	b, _, h := setupMulti(t, 1000, Config{})
	publish(t, b, "a", "upload-progress", 400)
	publish(t, b, "b", "upload-progress", 300)
	publish(t, b, "c", "upload-progress", 10)
	rec, got := getMulti(t, h, "/v1/poll?courses=a,b,c", "")
	if rec.Code != 200 || len(got.Events) != PageSize || !got.More || got.Cursor != "a:400,b:100,c:0" {
		t.Fatalf("first page: %d, %d events, more %v, cursor %s", rec.Code, len(got.Events), got.More, got.Cursor)
	}
	if last := got.Events[len(got.Events)-1]; last.CourseID != "b" || last.ID != "100" {
		t.Fatalf("first page ends at %s:%s", last.CourseID, last.ID)
	}
	// The course's last ids are not the answer: no 304 for their tag.
	if rec, _ := getMulti(t, h, "/v1/poll?courses=a,b,c", tagOf(t, "a:400,b:300,c:10", "a", "b", "c")); rec.Code != 200 {
		t.Fatalf("capped answer got %d to the courses' tag", rec.Code)
	}
	rec, got = getMulti(t, h, "/v1/poll?courses=a,b,c&cursor="+got.Cursor, "")
	if rec.Code != 200 || len(got.Events) != 210 || got.More || got.Cursor != "a:400,b:300,c:10" || got.Events[0].ID != "101" {
		t.Fatalf("second page: %d, %d events, more %v, cursor %s", rec.Code, len(got.Events), got.More, got.Cursor)
	}

	// The cap reached exactly: more only when a course left out has moved.
	b2, _, h2 := setupMulti(t, 1000, Config{})
	publish(t, b2, "a", "upload-progress", 500)
	if _, got := getMulti(t, h2, "/v1/poll?courses=a,b", ""); got.More || got.Cursor != "a:500,b:0" {
		t.Fatalf("500 and nothing left: more %v cursor %s", got.More, got.Cursor)
	}
	publish(t, b2, "b", "upload-progress", 1)
	_, got = getMulti(t, h2, "/v1/poll?courses=a,b", "")
	if !got.More || got.Cursor != "a:500,b:0" || len(got.Events) != 500 {
		t.Fatalf("500 and b moved: more %v cursor %s, %d events", got.More, got.Cursor, len(got.Events))
	}
	if _, got = getMulti(t, h2, "/v1/poll?courses=a,b&cursor="+got.Cursor, ""); got.More || ids(got.Events) != "b:1" {
		t.Fatalf("after the cap: more %v events %s", got.More, ids(got.Events))
	}
}

func TestMultiResetsPerCourse(t *testing.T) {
	t.Parallel()
	b, _, h := setupMulti(t, 5, Config{})
	publish(t, b, "a", "upload-progress", 10) // retains 6..10
	publish(t, b, "b", "upload-progress", 2)
	rec, got := getMulti(t, h, "/v1/poll?courses=a,b,c&cursor=a:2,b:1,c:4", "")
	if rec.Code != 200 || got.Cursor != "a:10,b:2,c:0" || ids(got.Events) != "b:2" || got.More {
		t.Fatalf("got %d %+v", rec.Code, got)
	}
	want := `[{"courseId":"a","lastEventId":"10"},{"courseId":"c","lastEventId":"0"}]`
	if !strings.Contains(rec.Body.String(), `"resets":`+want) {
		t.Fatalf("resets: %s, want %s", rec.Body, want)
	}
	if rec.Header().Get("ETag") != tagOf(t, got.Cursor, "a", "b", "c") {
		t.Fatalf("ETag %s", rec.Header().Get("ETag"))
	}
	// From the reset positions on, nothing is reset.
	if _, got := getMulti(t, h, "/v1/poll?courses=a,b,c&cursor="+got.Cursor, ""); len(got.Resets) != 0 || len(got.Events) != 0 {
		t.Fatalf("after the resets: %+v", got)
	}
}

func TestMultiETagAnd304(t *testing.T) {
	t.Parallel()
	b, _, h := setupMulti(t, 0, Config{})
	publish(t, b, "a", "upload-progress", 3)
	publish(t, b, "b", "upload-progress", 1)
	tag := tagOf(t, "a:3,b:1", "a", "b")
	opaque := strings.TrimPrefix(tag, "W/")
	for _, inm := range []string{tag, opaque, `"x", ` + tag, `*`, ` W/"a:1",` + opaque + ` `} {
		for _, cur := range []string{"", "a:1", "a:3,b:1", "b:1"} {
			rec, _ := getMulti(t, h, "/v1/poll?courses=a,b&cursor="+cur, inm)
			if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 || rec.Header().Get("ETag") != tag || rec.Header().Get("Cache-Control") != "no-cache" {
				t.Errorf("If-None-Match %s cursor=%s: %d body %q etag %s", inm, cur, rec.Code, rec.Body, rec.Header().Get("ETag"))
			}
		}
	}
	// The tag of the other course order, of another position, or not a tag.
	for _, inm := range []string{tagOf(t, "b:1,a:3", "b", "a"), tagOf(t, "a:3,b:0", "a", "b"), opaque[1 : len(opaque)-1], tag[:len(tag)-1]} {
		if rec, _ := getMulti(t, h, "/v1/poll?courses=a,b&cursor=a:3,b:1", inm); rec.Code != 200 {
			t.Errorf("If-None-Match %s: %d, want 200", inm, rec.Code)
		}
	}
	// An event in any course changes the tag.
	publish(t, b, "b", "upload-progress", 1)
	rec, got := getMulti(t, h, "/v1/poll?courses=a,b&cursor=a:3,b:1", tag)
	if rec.Code != 200 || ids(got.Events) != "b:2" || rec.Header().Get("ETag") != tagOf(t, "a:3,b:2", "a", "b") {
		t.Fatalf("after an event in b: %d %+v %s", rec.Code, got, rec.Header().Get("ETag"))
	}
}

func TestMultiTypes(t *testing.T) {
	t.Parallel()
	b, _, h := setupMulti(t, 0, Config{})
	publish(t, b, "a", "upload-progress", 2)
	publish(t, b, "b", "upload-complete", 1)
	publish(t, b, "a", "upload-complete", 1)
	rec, got := getMulti(t, h, "/v1/poll?courses=a,b&types=upload-complete", "")
	if ids(got.Events) != "a:3 b:1" || got.Cursor != "a:3,b:1" || rec.Header().Get("ETag") != tagOf(t, "a:3,b:1", "a", "b") {
		t.Fatalf("filtered: %+v etag %s", got, rec.Header().Get("ETag"))
	}
	for _, ev := range got.Events {
		if ev.Type != "upload-complete" {
			t.Fatalf("type %s passed the filter", ev.Type)
		}
	}
}

func TestMultiBadRequests(t *testing.T) {
	t.Parallel()
	_, _, h := setupMulti(t, 0, Config{})
	many := make([]string, cursor.MaxCourses+1)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	for _, q := range []string{
		"", "courses=", "courses=a,,b", "courses=_x", "courses=a&courses=", "courses=" + strings.Repeat("x", 129),
		"courses=" + strings.Join(many, ","),
		"courses=a&cursor=a", "courses=a&cursor=a:x", "courses=a&cursor=a:-1", "courses=a&cursor=a:1,a:2",
		"courses=a&cursor=_x:1", "courses=a&cursor=a:1,", "courses=a&cursor=%zz",
		"courses=a&wait=31s", "courses=a&wait=soon", "courses=a&types=A",
	} {
		rec, _ := getMulti(t, h, "/v1/poll?"+q, "")
		var e struct{ Error string }
		if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("%q: %d %q, want 400 with an error", q, rec.Code, rec.Body)
		}
	}
	// 64 courses are allowed.
	if rec, got := getMulti(t, h, "/v1/poll?courses="+strings.Join(many[:cursor.MaxCourses], ","), ""); rec.Code != 200 || strings.Count(got.Cursor, ",") != cursor.MaxCourses-1 {
		t.Fatalf("64 courses: %d %s", rec.Code, got.Cursor)
	}
}

// goLongPoll runs a multi-course long-poll against a real server and
// returns its answer on the channel.
func goLongPoll(t *testing.T, h http.Handler, target, inm string) <-chan multiResult {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	res := make(chan multiResult, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+target, nil)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			res <- multiResult{err: err}
			return
		}
		defer resp.Body.Close()
		var b multiBody
		if resp.StatusCode == http.StatusOK {
			err = json.NewDecoder(resp.Body).Decode(&b)
		}
		res <- multiResult{code: resp.StatusCode, body: b, etag: resp.Header.Get("ETag"), err: err}
	}()
	return res
}

type multiResult struct {
	code int
	body multiBody
	etag string
	err  error
}

func TestMultiLongPollWokenByAnyCourse(t *testing.T) {
	t.Parallel()
	for _, woken := range []string{"a", "b", "c"} {
		t.Run(woken, func(t *testing.T) {
			t.Parallel()
			b, p, h := setupMulti(t, 0, Config{})
			publish(t, b, "a", "upload-progress", 2)
			publish(t, b, "b", "upload-progress", 1)
			waiting := make(chan struct{})
			var once sync.Once
			p.onWait = func() { once.Do(func() { close(waiting) }) }
			cur := "a:2,b:1,c:0"
			res := goLongPoll(t, h, "/v1/poll?courses=a,b,c&cursor="+cur+"&wait=25s", tagOf(t, cur, "a", "b", "c"))
			<-waiting
			for _, c := range []string{"a", "b", "c"} {
				if n := b.Observer().Listeners(c); n != 1 {
					t.Errorf("course %s: %d listeners while waiting, want 1", c, n)
				}
			}
			publish(t, b, woken, "upload-complete", 1)
			r := <-res
			if r.err != nil || r.code != 200 || len(r.body.Events) != 1 || r.body.Events[0].CourseID != woken {
				t.Fatalf("long-poll got %d %+v %v", r.code, r.body, r.err)
			}
			if r.etag != tagOf(t, r.body.Cursor, "a", "b", "c") || r.body.Cursor == cur {
				t.Fatalf("cursor %s etag %s", r.body.Cursor, r.etag)
			}
			for _, c := range []string{"a", "b", "c"} {
				if n := b.Observer().Listeners(c); n != 0 {
					t.Errorf("course %s: %d listeners left after the answer", c, n)
				}
			}
			if p.LongPolls() != 0 {
				t.Fatalf("%d long-polls still counted", p.LongPolls())
			}
		})
	}
}

func TestMultiLongPollTimesOutAndDrains(t *testing.T) {
	t.Parallel()
	b, p, h := setupMulti(t, 0, Config{MaxLongPolls: 1})
	publish(t, b, "a", "upload-progress", 1)
	tag := tagOf(t, "a:1,b:0", "a", "b")
	if rec, _ := getMulti(t, h, "/v1/poll?courses=a,b&cursor=a:1&wait=50ms", tag); rec.Code != http.StatusNotModified {
		t.Fatalf("timed-out long-poll got %d, want 304", rec.Code)
	}
	waiting := make(chan struct{})
	var once sync.Once
	p.onWait = func() { once.Do(func() { close(waiting) }) }
	res := goLongPoll(t, h, "/v1/poll?courses=a,b&cursor=a:1&wait=30s", "")
	<-waiting
	// The bound is shared with single-course long-polls: past it, at once.
	if rec, _ := get(t, h, "/v1/courses/a/poll?after=1&wait=30s", `W/"a:1"`); rec.Code != http.StatusNotModified {
		t.Fatalf("single-course long-poll over the bound got %d, want 304 at once", rec.Code)
	}
	if rec, _ := getMulti(t, h, "/v1/poll?courses=a&cursor=a:1&wait=30s", ""); rec.Code != 200 {
		t.Fatalf("multi-course long-poll over the bound got %d, want 200 at once", rec.Code)
	}
	p.Drain()
	r := <-res
	if r.err != nil || r.code != 200 || r.body.Cursor != "a:1,b:0" || len(r.body.Events) != 0 {
		t.Fatalf("drained long-poll got %d %+v %v", r.code, r.body, r.err)
	}
	if p.LongPolls() != 0 || b.Observer().Listeners("a") != 0 || b.Observer().Listeners("b") != 0 {
		t.Fatalf("%d long-polls, %d+%d listeners left", p.LongPolls(), b.Observer().Listeners("a"), b.Observer().Listeners("b"))
	}
}

// FuzzParseCourses: the multi-course request parser never panics, and
// what it accepts keeps the bounds: 1 to 64 distinct valid courses, a
// position for each, a wait within MaxWait.
func FuzzParseCourses(f *testing.F) {
	f.Add("courses=a,b&cursor=a:5,b:0&wait=25s&types=a,b")
	f.Add("courses=a&cursor=a:18446744073709551616")
	f.Add("courses=a:b:c&cursor=a:b:c:7")
	f.Add("courses=a&courses=b,a&cursor=")
	f.Add("courses=%%&cursor=,")
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.RawQuery = query
		req, err := parse(r, manyCourses, new(single))
		if err != nil {
			return
		}
		n := len(req.at.Courses)
		if n < 1 || n > cursor.MaxCourses || len(req.at.Seqs) != n || req.wait < 0 || req.wait > MaxWait {
			t.Fatalf("accepted %+v", req)
		}
		seen := make(map[string]bool)
		for _, id := range req.at.Courses {
			if !observer.ValidCourseID(id) || seen[id] {
				t.Fatalf("accepted course %q of %v", id, req.at.Courses)
			}
			seen[id] = true
		}
		// The answer's cursor reads back as the request's position.
		ps, err := cursor.Parse(req.at.String())
		if err != nil || len(ps) != n {
			t.Fatalf("cursor %q does not read back: %v", req.at.String(), err)
		}
	})
}

// A long-poll ends on what moves the client even when it carries no
// event: a reset (at once), or an event that ?types= filters out.
func TestMultiLongPollEndsOnResetAndFilteredEvents(t *testing.T) {
	t.Parallel()
	b, p, h := setupMulti(t, 0, Config{})
	publish(t, b, "a", "upload-progress", 1)
	// Either ends long before its 30s wait would (the wait is the bound
	// that tells an answer from a timeout).
	const soon = 10 * time.Second
	start := time.Now()
	rec, got := getMulti(t, h, "/v1/poll?courses=a,b&cursor=a:5&wait=30s", "")
	if rec.Code != 200 || got.Cursor != "a:1,b:0" || len(got.Resets) != 1 || got.Resets[0].CourseID != "a" || time.Since(start) > soon {
		t.Fatalf("long-poll from a position ahead: %d %+v after %s", rec.Code, got, time.Since(start))
	}
	waiting := make(chan struct{})
	var once sync.Once
	p.onWait = func() { once.Do(func() { close(waiting) }) }
	res := goLongPoll(t, h, "/v1/poll?courses=a,b&cursor=a:1&types=upload-complete&wait=30s", "")
	<-waiting
	start = time.Now()
	publish(t, b, "b", "upload-progress", 1)
	r := <-res
	if r.err != nil || r.code != 200 || len(r.body.Events) != 0 || r.body.Cursor != "a:1,b:1" || r.etag != tagOf(t, "a:1,b:1", "a", "b") || time.Since(start) > soon {
		t.Fatalf("long-poll woken by a filtered event: %d %+v %s %v after %s", r.code, r.body, r.etag, r.err, time.Since(start))
	}
}

// countingBroker counts the reads a poll makes of its broker.
type countingBroker struct {
	*observer.Memory
	mu        sync.Mutex
	histories []string // the courses whose History was read, in order
	lastID    int      // LastID calls
	lastIDs   int      // LastIDs calls
}

func (c *countingBroker) History(ctx context.Context, course string, after uint64, limit int) (observer.Page, error) {
	c.mu.Lock()
	c.histories = append(c.histories, course)
	c.mu.Unlock()
	return c.Memory.History(ctx, course, after, limit)
}

func (c *countingBroker) LastID(ctx context.Context, course string) (uint64, error) {
	c.mu.Lock()
	c.lastID++
	c.mu.Unlock()
	return c.Memory.LastID(ctx, course)
}

func (c *countingBroker) LastIDs(ctx context.Context, courses []string) ([]uint64, error) {
	c.mu.Lock()
	c.lastIDs++
	c.mu.Unlock()
	return c.Memory.LastIDs(ctx, courses)
}

// reads returns and clears what was counted.
func (c *countingBroker) reads() (histories []string, lastID, lastIDs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	histories, lastID, lastIDs = c.histories, c.lastID, c.lastIDs
	c.histories, c.lastID, c.lastIDs = nil, 0, 0
	return histories, lastID, lastIDs
}

// TestMultiReadsOnlyCoursesThatMoved: a poll of 8 courses reads their
// last ids in one broker read (one Redis round trip) and the history of
// the courses that moved alone; its 304 reads nothing else. On Redis a
// poll was one round trip per course.
func TestMultiReadsOnlyCoursesThatMoved(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := &countingBroker{Memory: observer.NewMemory(observer.MemoryConfig{Logger: quiet})}
	p := New(b, Config{Logger: quiet})
	courses := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	for _, c := range courses {
		publish(t, b.Memory, c, "upload-progress", 2)
	}
	target := "/v1/poll?courses=" + strings.Join(courses, ",") + "&cursor=m0:2,m1:2,m2:2,m3:1,m4:2,m5:2,m6:2,m7:0"
	rec, got := getMulti(t, http.HandlerFunc(p.ServeCourses), target, "")
	if rec.Code != 200 || ids(got.Events) != "m3:2 m7:1 m7:2" {
		t.Fatalf("poll: %d %s", rec.Code, ids(got.Events))
	}
	if h, one, many := b.reads(); strings.Join(h, ",") != "m3,m7" || one != 0 || many != 1 {
		t.Fatalf("the poll read the history of %v, LastID %d times, LastIDs %d times; want m3,m7, 0, 1", h, one, many)
	}
	tag := rec.Header().Get("ETag")
	rec, _ = getMulti(t, http.HandlerFunc(p.ServeCourses), "/v1/poll?courses="+strings.Join(courses, ",")+"&cursor="+got.Cursor, tag)
	if rec.Code != http.StatusNotModified {
		t.Fatalf("poll from the answer's cursor with its tag: %d, want 304", rec.Code)
	}
	if h, one, many := b.reads(); len(h) != 0 || one != 0 || many != 1 {
		t.Fatalf("the 304 read the history of %v, LastID %d times, LastIDs %d times; want none, 0, 1", h, one, many)
	}
}
