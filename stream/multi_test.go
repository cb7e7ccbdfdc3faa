package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coursestream/internal/cursor"
	"coursestream/observer"
)

// The multi-course stream (GET /v1/events?courses=...) and dispatch=message,
// through the same real server as the single-course tests.

// multiEvent is one course event of a multi-course stream: the cursor of
// its id line and the envelope of its data.
type multiEvent struct {
	frame  sseFrame
	cursor cursor.Positions
	ev     *observer.Event
}

// multiEvents reads n course events (resets included, as ev.Reset with
// the course and id of their data), failing on EOF or a frame that does
// not carry a cursor naming exactly courses.
func (c *sseClient) multiEvents(n int, courses ...string) []multiEvent {
	c.t.Helper()
	out := make([]multiEvent, 0, n)
	for _, f := range c.events(n) {
		ps, err := cursor.Parse(f.id)
		if err != nil || len(ps) != len(courses) {
			c.t.Fatalf("id %q is not a cursor of %v: %v", f.id, courses, err)
		}
		if got := cursor.New(courses, ps).String(); got != f.id {
			c.t.Fatalf("id %q is not in the order of courses= (%s)", f.id, got)
		}
		me := multiEvent{frame: f, cursor: ps}
		if f.event == "reset" {
			var r struct{ CourseID, LastEventID string }
			if err := json.Unmarshal([]byte(f.data), &r); err != nil {
				c.t.Fatalf("reset data %q: %v", f.data, err)
			}
			id, _ := strconv.ParseUint(r.LastEventID, 10, 64)
			me.ev = &observer.Event{CourseID: r.CourseID, ID: id, Reset: true}
		} else if me.ev, err = observer.ParseEnvelope([]byte(f.data)); err != nil {
			c.t.Fatalf("data %q: %v", f.data, err)
		}
		if ps[me.ev.CourseID] != me.ev.ID {
			c.t.Fatalf("frame of %s:%d has cursor %q", me.ev.CourseID, me.ev.ID, f.id)
		}
		out = append(out, me)
	}
	return out
}

// perCourse splits events by course, as ids.
func perCourse(evs []multiEvent) map[string][]uint64 {
	m := make(map[string][]uint64)
	for _, e := range evs {
		m[e.ev.CourseID] = append(m[e.ev.CourseID], e.ev.ID)
	}
	return m
}

func TestMultiCursorAndOrder(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	c := e.open("/v1/events?courses=course-a,course-b,course-a", nil) // a repeated id counts once
	var want []string
	for i := range 30 {
		course := []string{"course-a", "course-b", "course-b"}[i%3]
		ev := e.publish(course, "upload-progress", `{"videoId":"v"}`)
		want = append(want, fmt.Sprintf("%s:%d", course, ev.ID))
	}
	got := c.multiEvents(30, "course-a", "course-b")
	for i, g := range got {
		if s := fmt.Sprintf("%s:%d", g.ev.CourseID, g.ev.ID); s != want[i] || g.frame.event != "upload-progress" {
			t.Fatalf("event %d is %s (%s), want %s: the order the instance received them", i, s, g.frame.event, want[i])
		}
	}
	if last := got[len(got)-1].frame.id; last != "course-a:10,course-b:20" {
		t.Fatalf("last cursor %q, want course-a:10,course-b:20", last)
	}
	// The envelope is the one of the course's own stream.
	single := e.open("/v1/courses/course-b/events", map[string]string{"Last-Event-ID": "19"})
	if f, _ := single.nextEvent(); f.data != got[len(got)-1].frame.data {
		t.Fatalf("single-course data %q, multi-course %q", f.data, got[len(got)-1].frame.data)
	}
}

// TestMultiResume resumes from cursors while three courses are published:
// each course's history then live, no gap, no duplicate; a course the
// cursor does not name starts at its live edge.
func TestMultiResume(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{History: 5000})
	courses := []string{"m1", "m2", "m3"}
	for i := range 300 {
		e.publish(courses[i%2], "chapter-update-complete", `{"chapterId":"ch"}`) // m1, m2: 150 each
	}
	const more = 600 // 200 per course
	c := e.open("/v1/events?courses=m1,m2,m3", map[string]string{"Last-Event-ID": "m2:100,m1:7,zz:5"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range more {
			e.publish(courses[i%3], "chapter-update-complete", `{"chapterId":"ch"}`)
		}
	}()
	got := perCourse(c.multiEvents(150-7+150-100+more, courses...))
	<-done
	consecutive(t, got["m1"], 8)
	consecutive(t, got["m2"], 101)
	consecutive(t, got["m3"], 1) // not named: its live edge was 0
	if len(got["m1"]) != 150-7+200 || len(got["m2"]) != 150-100+200 || len(got["m3"]) != 200 {
		t.Fatalf("got %d %d %d events", len(got["m1"]), len(got["m2"]), len(got["m3"]))
	}
	// ?lastEventId= works too, and the header wins over it.
	q := e.open("/v1/events?courses=m1,m2&lastEventId=m1:1,m2:1", map[string]string{"Last-Event-ID": "m1:349,m2:349"})
	if got := q.multiEvents(2, "m1", "m2"); got[0].frame.id != "m1:350,m2:349" || got[1].frame.id != "m1:350,m2:350" {
		t.Fatalf("resumed at %q then %q", got[0].frame.id, got[1].frame.id)
	}
}

// TestMultiOrderAcrossReplay: events published while a resumed stream
// replays its courses' history still go out in the order the instance
// received them, across courses: history up to each course's edge, then
// the queue. With a client buffer too small for that queue, the stream
// falls back to history alone: each course stays gapless and in order.
func TestMultiOrderAcrossReplay(t *testing.T) {
	for _, buffer := range []int{0, 2048} {
		t.Run(fmt.Sprintf("buffer=%d", buffer), func(t *testing.T) {
			e := newEnv(t, Config{ClientBuffer: buffer}, observer.MemoryConfig{History: 5000})
			for i := range 1000 {
				e.publish([]string{"oa", "ob"}[i%2], "upload-progress", `{"videoId":"v"}`) // 500 each
			}
			c := e.open("/v1/events?courses=oa,ob", map[string]string{"Last-Event-ID": "oa:0,ob:0"})
			var want []string
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range 400 {
					course := []string{"oa", "ob", "ob", "oa", "oa"}[i%5]
					ev := e.publish(course, "upload-progress", `{"videoId":"v"}`)
					want = append(want, fmt.Sprintf("%s:%d", course, ev.ID))
				}
			}()
			var got []multiEvent
			for len(got) < 1400 {
				f, ok := c.nextEvent()
				if !ok && buffer != 0 && len(got) > 0 {
					// Cut as slow by the tiny buffer: resume, as a client does.
					c = e.open("/v1/events?courses=oa,ob", map[string]string{"Last-Event-ID": got[len(got)-1].frame.id})
					continue
				}
				if !ok {
					t.Fatalf("stream ended after %d events", len(got))
				}
				ev, err := observer.ParseEnvelope([]byte(f.data))
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, multiEvent{frame: f, ev: ev})
			}
			<-done
			ids := perCourse(got)
			consecutive(t, ids["oa"], 1)
			consecutive(t, ids["ob"], 1)
			if buffer != 0 {
				return // history alone: no order across courses for what arrived meanwhile
			}
			var live []string
			for _, g := range got {
				if g.ev.ID > 500 {
					live = append(live, fmt.Sprintf("%s:%d", g.ev.CourseID, g.ev.ID))
				}
			}
			if strings.Join(live, " ") != strings.Join(want, " ") {
				t.Fatalf("what arrived during the replay went out as %v..., published as %v...", live[:10], want[:10])
			}
		})
	}
}

func TestMultiReset(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{History: 5})
	for range 20 {
		e.publish("ra", "chapter-delete-complete", `{"chapterId":"x"}`)
		e.publish("rb", "chapter-delete-complete", `{"chapterId":"x"}`)
	}
	// ra:2 is gone, rb:99 is ahead: each course alone gets a reset.
	c := e.open("/v1/events?courses=ra,rb,rc", map[string]string{"Last-Event-ID": "ra:2,rb:99"})
	got := c.multiEvents(2, "ra", "rb", "rc")
	if got[0].frame.event != "reset" || got[0].frame.data != `{"courseId":"ra","lastEventId":"20"}` ||
		got[1].frame.event != "reset" || got[1].frame.data != `{"courseId":"rb","lastEventId":"20"}` || got[1].frame.id != "ra:20,rb:20,rc:0" {
		t.Fatalf("got %+v, %+v: want a reset of ra then rb", got[0].frame, got[1].frame)
	}
	e.publish("rc", "upload-complete", `{}`)
	if f := c.multiEvents(1, "ra", "rb", "rc")[0].frame; f.id != "ra:20,rb:20,rc:1" || f.event != "upload-complete" {
		t.Fatalf("after the resets got %+v", f)
	}
	// Within history: no reset.
	c = e.open("/v1/events?courses=ra,rb", map[string]string{"Last-Event-ID": "ra:17,rb:20"})
	if f := c.multiEvents(1, "ra", "rb")[0].frame; f.event == "reset" || f.id != "ra:18,rb:20" {
		t.Fatalf("resume within history got %+v", f)
	}
	// Not a cursor: every course is reset (never a 400, which would stop
	// an EventSource).
	for _, bad := range []string{"17", "ra:x", "ra:1,ra:2", "-bad:1", strings.Repeat("x", 70000)} {
		c := e.open("/v1/events?courses=ra,rc", map[string]string{"Last-Event-ID": bad})
		got := c.multiEvents(2, "ra", "rc")
		if got[0].frame.data != `{"courseId":"ra","lastEventId":"20"}` || got[1].frame.data != `{"courseId":"rc","lastEventId":"1"}` ||
			got[1].frame.id != "ra:20,rc:1" {
			t.Fatalf("Last-Event-ID %.20q: got %+v %+v, want a reset of every course", bad, got[0].frame, got[1].frame)
		}
		c.close()
	}
}

func TestMultiFiltersAndCoalesce(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	e.publish("fa", "upload-complete", `{}`)         // fa 1, replayed
	e.publish("fb", "chapter-update-complete", `{}`) // fb 1, filtered
	c := e.open("/v1/events?courses=fa,fb&types=upload-complete", map[string]string{"Last-Event-ID": "fa:0,fb:0"})
	got := c.multiEvents(1, "fa", "fb")      // the replay, course by course
	e.publish("fb", "upload-complete", `{}`) // fb 2
	e.publish("fa", "upload-progress", `{}`) // fa 2, filtered
	e.publish("fa", "upload-complete", `{}`) // fa 3
	got = append(got, c.multiEvents(2, "fa", "fb")...)
	if got[0].frame.id != "fa:1,fb:0" || got[1].frame.id != "fa:1,fb:2" || got[2].frame.id != "fa:3,fb:2" {
		t.Fatalf("filtered cursors %q %q %q", got[0].frame.id, got[1].frame.id, got[2].frame.id)
	}

	// Coalescing is per course, type and subject; what is kept goes out
	// in the order it arrived.
	k := e.open("/v1/events?courses=fa,fb&coalesce=300ms", nil)
	e.publish("fa", "upload-progress", `{"videoId":"v1","progress":1}`) // fa 4
	e.publish("fb", "upload-progress", `{"videoId":"v1","progress":1}`) // fb 3
	e.publish("fa", "upload-progress", `{"videoId":"v1","progress":2}`) // fa 5 kept
	e.publish("fb", "upload-progress", `{"videoId":"v2","progress":2}`) // fb 4 kept
	e.publish("fb", "upload-progress", `{"videoId":"v1","progress":3}`) // fb 5 kept
	got = k.multiEvents(3, "fa", "fb")
	var ids []string
	for _, g := range got {
		ids = append(ids, fmt.Sprintf("%s:%d", g.ev.CourseID, g.ev.ID))
	}
	if s := strings.Join(ids, " "); s != "fa:5 fb:4 fb:5" {
		t.Fatalf("coalesced %s, want fa:5 fb:4 fb:5", s)
	}
	if got[2].frame.id != "fa:5,fb:5" {
		t.Fatalf("last cursor %q", got[2].frame.id)
	}
}

func TestMultiBadRequests(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	var many []string
	for i := range 65 {
		many = append(many, "c"+strconv.Itoa(i))
	}
	for _, path := range []string{
		"/v1/events",
		"/v1/events?courses=",
		"/v1/events?courses=a,,b",
		"/v1/events?courses=a,-bad",
		"/v1/events?courses=" + strings.Join(many, ","),
		"/v1/events?courses=a&coalesce=11s",
		"/v1/events?courses=a&types=Bad",
		"/v1/events?courses=a&dispatch=named",
		"/v1/events?courses=a&dispatch=",
		"/v1/courses/c1/events?dispatch=Message",
		"/v1/courses/c1/events?dispatch=message&dispatch=message",
	} {
		resp, err := e.client.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || err != nil || body.Error == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %.60s: %d %q (%v), want 400 with a JSON error", path, resp.StatusCode, body.Error, err)
		}
	}
	// 64 is allowed.
	c := e.open("/v1/events?courses="+strings.Join(many[:64], ","), nil)
	e.publish("c63", "upload-complete", `{}`)
	if got := c.multiEvents(1, many[:64]...); got[0].cursor["c63"] != 1 {
		t.Fatalf("got %+v", got[0].frame)
	}
}

func TestMultiSteersToPolling(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 1}, observer.MemoryConfig{})
	e.open("/v1/courses/c1/events", nil)
	resp, err := e.client.Get(e.srv.URL + "/v1/events?courses=b,a,b")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error, Fallback string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		body.Error == "" || body.Fallback != "/v1/poll?courses=b,a" {
		t.Fatalf("got %d Retry-After=%q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestDispatchMessage: course events without an event: line on both
// endpoints, replayed and live; resets and the drain frame keep their
// names.
func TestDispatchMessage(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{History: 3})
	for range 5 {
		e.publish("d1", "some-new-type", `{}`)
	}
	single := e.open("/v1/courses/d1/events?dispatch=message", map[string]string{"Last-Event-ID": "3"})
	reset := e.open("/v1/courses/d1/events?dispatch=message", map[string]string{"Last-Event-ID": "1"})
	multi := e.open("/v1/events?courses=d1,d2&dispatch=message", map[string]string{"Last-Event-ID": "d1:4,d2:9"})
	named := e.open("/v1/events?courses=d1", nil)
	e.publish("d1", "chapter-update-complete", `{}`) // 6
	e.publish("d2", "upload-complete", `{}`)

	for _, f := range single.events(3) { // 4, 5 replayed, 6 live
		if f.event != "" || !strings.Contains(f.data, `"type":`) {
			t.Fatalf("single-course frame %+v has an event: line", f)
		}
	}
	if f := reset.events(2); f[0].event != "reset" || f[1].event != "" || f[1].id != "6" {
		t.Fatalf("got %+v, want a named reset then an unnamed event", f)
	}
	got := multi.multiEvents(3, "d1", "d2") // d1:5 replayed, a reset of d2 (9 is ahead of it), then live ones
	for _, g := range got {
		if g.ev.Reset != (g.frame.event == "reset") {
			t.Fatalf("multi-course frame %+v: want event: only on the reset", g.frame)
		}
	}
	if f := named.multiEvents(1, "d1")[0].frame; f.event != "chapter-update-complete" {
		t.Fatalf("without dispatch the frame is %+v", f)
	}
	e.hub.Drain()
	var final sseFrame
	for {
		f, ok := multi.next()
		if !ok {
			break
		}
		final = f
	}
	if final.event != DrainEvent || final.hasID {
		t.Fatalf("final frame %+v, want %s", final, DrainEvent)
	}
}

// TestMultiSlowClientCutAndResume: a multi-course client that does not
// read is cut; what it got is a gapless prefix per course, and it resumes
// from its last cursor with no gap and no duplicate.
func TestMultiSlowClientCutAndResume(t *testing.T) {
	e := newEnv(t, Config{ClientBuffer: 256 << 10}, observer.MemoryConfig{History: 10000})
	stalled := dialStalled(t, e, "/v1/events?courses=s1,s2")
	const n = 200
	data := `{"videoId":"v","pad":"` + strings.Repeat("x", 16<<10) + `"}`
	for i := range n {
		e.publish([]string{"s1", "s2"}[i%2], "upload-progress", data)
	}
	var last string
	seen := map[string][]uint64{}
	for {
		f, ok := stalled.nextEvent()
		if !ok {
			break
		}
		ev, err := observer.ParseEnvelope([]byte(f.data))
		if err != nil {
			t.Fatal(err)
		}
		seen[ev.CourseID] = append(seen[ev.CourseID], ev.ID)
		last = f.id
	}
	if len(seen["s1"])+len(seen["s2"]) >= n {
		t.Fatal("the stalled client got every event: it was never cut off")
	}
	consecutive(t, seen["s1"], 1)
	consecutive(t, seen["s2"], 1)
	c := e.open("/v1/events?courses=s1,s2", map[string]string{"Last-Event-ID": last})
	got := perCourse(c.multiEvents(n-len(seen["s1"])-len(seen["s2"]), "s1", "s2"))
	consecutive(t, got["s1"], uint64(len(seen["s1"])+1))
	consecutive(t, got["s2"], uint64(len(seen["s2"])+1))
}

func TestMultiMaxStreamAgeAndMetrics(t *testing.T) {
	m := newRecorder()
	e := newEnv(t, Config{MaxStreamAge: 100 * time.Millisecond, Metrics: m}, observer.MemoryConfig{})
	c := e.open("/v1/events?courses=g1,g2", nil)
	e.publish("g2", "upload-complete", `{}`)
	var final sseFrame
	for {
		f, ok := c.next()
		if !ok {
			break
		}
		final = f
	}
	if final.retry == "" || final.hasID || final.event != DrainEvent {
		t.Fatalf("final frame %+v, want the drain frame", final)
	}
	if reason := <-m.closed; reason != "age" {
		t.Fatalf("closed for %q, want age", reason)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.multiOpened != 1 || m.multiDelivered != 1 {
		t.Fatalf("sse-multi: opened %d delivered %d, want 1 1", m.multiOpened, m.multiDelivered)
	}
}

func TestMultiLeavesNoListener(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	var cs []*sseClient
	for range 5 {
		cs = append(cs, e.open("/v1/events?courses=l1,l2,l3", nil))
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for i := range 30 {
				e.publish("l"+strconv.Itoa(i%3+1), "upload-progress", `{}`)
			}
		})
	}
	wg.Wait()
	for _, c := range cs {
		perCourse(c.multiEvents(90, "l1", "l2", "l3"))
		c.close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.hub.Connections() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the reader notices the close on its own: no signal to wait on
	}
	for _, course := range []string{"l1", "l2", "l3"} {
		if n := e.broker.Observer().Listeners(course); n != 0 || e.hub.Connections() != 0 {
			t.Fatalf("%s: %d listeners, %d connections left", course, n, e.hub.Connections())
		}
	}
}

// TestMultiR3labsClient reads a multi-course stream with r3labs/sse's Go
// client, resuming with its Last-Event-ID (a cursor).
func TestMultiR3labsClient(t *testing.T) {
	e := newEnv(t, Config{}, observer.MemoryConfig{})
	for range 3 {
		e.publish("r1", "video-update-complete", `{"videoId":"v1"}`)
	}
	got, client := e.r3labsSubscribe(t, "/v1/events?courses=r1,r2", "r1:1")
	for _, want := range []string{"r1:2,r2:0", "r1:3,r2:0"} {
		if ev := <-got; string(ev.ID) != want || string(ev.Event) != "video-update-complete" {
			t.Fatalf("got id %s event %s, want %s", ev.ID, ev.Event, want)
		}
	}
	e.publish("r2", "upload-complete", `{}`)
	if ev := <-got; string(ev.ID) != "r1:3,r2:1" {
		t.Fatalf("live event id %s, want r1:3,r2:1", ev.ID)
	}
	if id, _ := client.LastEventID.Load().([]byte); string(id) != "r1:3,r2:1" {
		t.Fatalf("the client keeps %q as its Last-Event-ID", id)
	}
}

// TestMultiViaHandlerPath runs the multi-course tests through a
// ResponseWriter that cannot be taken over (HTTP/2, HTTP/1.0).
func TestMultiViaHandlerPath(t *testing.T) {
	forceViaHandler = true
	defer func() { forceViaHandler = false }()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"order", TestMultiCursorAndOrder},
		{"resume", TestMultiResume},
		{"reset", TestMultiReset},
		{"order across the replay", TestMultiOrderAcrossReplay},
		{"filters", TestMultiFiltersAndCoalesce},
		{"dispatch", TestDispatchMessage},
		{"slow client", TestMultiSlowClientCutAndResume},
		{"max age", TestMultiMaxStreamAgeAndMetrics},
		{"no listener left", TestMultiLeavesNoListener},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// readCounter counts a broker's start reads: LastID and LastIDs calls,
// and the courses of History calls.
type readCounter struct {
	observer.Broker
	lastID, lastIDs atomic.Int64
	mu              sync.Mutex
	histories       []string
}

func (b *readCounter) LastID(ctx context.Context, course string) (uint64, error) {
	b.lastID.Add(1)
	return b.Broker.LastID(ctx, course)
}

func (b *readCounter) LastIDs(ctx context.Context, courses []string) ([]uint64, error) {
	b.lastIDs.Add(1)
	return b.Broker.LastIDs(ctx, courses)
}

func (b *readCounter) History(ctx context.Context, course string, after uint64, limit int) (observer.Page, error) {
	b.mu.Lock()
	b.histories = append(b.histories, course)
	b.mu.Unlock()
	return b.Broker.History(ctx, course, after, limit)
}

// TestMultiStartReadsLastIDsTogether: a multi-course stream reads where
// its courses that start from now stand in one broker read (one Redis
// round trip), and the history of the courses it resumes, one by one.
func TestMultiStartReadsLastIDsTogether(t *testing.T) {
	mem := observer.NewMemory(observer.MemoryConfig{Logger: quiet()})
	b := &readCounter{Broker: mem}
	for _, c := range []string{"s1", "s2", "s3"} {
		if _, err := mem.Publish(context.Background(), observer.Message{CourseID: c, Type: "t", Data: json.RawMessage(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	_, srv := serveHub(t, b, Config{}, func(mux *http.ServeMux, h *Hub) {
		mux.HandleFunc("GET /v1/events", h.ServeCourses)
	})
	for _, tc := range []struct {
		query           string
		lastID, lastIDs int64
		histories       string
		firstEventID    string
	}{
		{"courses=s1,s2,s3", 0, 1, "", ""},                                  // all from now
		{"courses=s1,s2,s3&lastEventId=s2:0", 0, 1, "s2", "s1:1,s2:1,s3:1"}, // s2 resumed, s1 and s3 from now
		{"courses=s1,s2&lastEventId=s1:0", 0, 1, "s1", "s1:1,s2:1"},         // one from now: LastIDs too
	} {
		b.lastID.Store(0)
		b.lastIDs.Store(0)
		b.mu.Lock()
		b.histories = nil
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/events?"+tc.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			cancel()
			t.Fatalf("%s: %v %v", tc.query, resp, err)
		}
		br := bufio.NewReader(resp.Body)
		for { // the retry frame comes once the start is read
			line, err := br.ReadString('\n')
			if err != nil {
				cancel()
				t.Fatalf("%s: %v", tc.query, err)
			}
			if strings.HasPrefix(line, "retry:") {
				break
			}
		}
		if tc.firstEventID != "" {
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					cancel()
					t.Fatalf("%s: %v", tc.query, err)
				}
				if strings.HasPrefix(line, "id: ") {
					if got := strings.TrimSpace(strings.TrimPrefix(line, "id: ")); got != tc.firstEventID {
						cancel()
						t.Fatalf("%s: replayed id %s, want %s", tc.query, got, tc.firstEventID)
					}
					break
				}
			}
		}
		cancel()
		resp.Body.Close()
		b.mu.Lock()
		h := strings.Join(b.histories, ",")
		b.mu.Unlock()
		if b.lastID.Load() != tc.lastID || b.lastIDs.Load() != tc.lastIDs || h != tc.histories {
			t.Fatalf("%s: LastID %d, LastIDs %d, histories %q; want %d, %d, %q",
				tc.query, b.lastID.Load(), b.lastIDs.Load(), h, tc.lastID, tc.lastIDs, tc.histories)
		}
	}
}
