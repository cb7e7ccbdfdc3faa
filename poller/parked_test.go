package poller

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coursestream/observer"
)

// takeoverEnv is a real HTTP server whose listener takes back the
// connections of the long-polls the poller takes over, as cmd wires it.
type takeoverEnv struct {
	b       *observer.Memory
	p       *Poller
	srv     *httptest.Server
	ln      *Listener
	dials   atomic.Int32 // connections the client opened
	client  *http.Client
	waiting chan struct{} // one tick per wait that began
}

func newTakeoverEnv(t *testing.T, wrap func(http.Handler) http.Handler) *takeoverEnv {
	t.Helper()
	return newTakeoverEnvOn(t, wrap, nil)
}

// newTakeoverEnvOn is newTakeoverEnv with the poller reading through
// broker(memory) (nil: the memory broker itself).
func newTakeoverEnvOn(t *testing.T, wrap func(http.Handler) http.Handler, broker func(*observer.Memory) observer.Broker) *takeoverEnv {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &takeoverEnv{b: observer.NewMemory(observer.MemoryConfig{Logger: quiet}), waiting: make(chan struct{}, 64)}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.ln = NewListener(tcp)
	var b observer.Broker = e.b
	if broker != nil {
		b = broker(e.b)
	}
	e.p = New(b, Config{Logger: quiet, Handback: e.ln})
	e.p.onWait = func() { e.waiting <- struct{}{} }
	mux := http.NewServeMux()
	mux.Handle("GET /v1/courses/{courseId}/poll", e.p)
	mux.Handle("HEAD /v1/courses/{courseId}/poll", e.p)
	mux.HandleFunc("GET /v1/poll", e.p.ServeCourses)
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(h)
	}
	e.srv = &httptest.Server{Listener: e.ln, Config: &http.Server{Handler: h}}
	e.srv.Start()
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		e.dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		e.p.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.p.Wait(ctx); err != nil {
			t.Errorf("parked polls still running: %v", err)
		}
		e.srv.Close()
	})
	return e
}

// parkedNow is how many long-polls are taken over at this moment.
func (e *takeoverEnv) parkedNow() int {
	e.p.mu.Lock()
	defer e.p.mu.Unlock()
	return len(e.p.parked)
}

// get sends a GET through the env's client (keep-alive) and reads the body.
func (e *takeoverEnv) get(t *testing.T, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+target, nil)
	maps(req.Header, header)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp, string(b)
}

func maps(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// goGet is get on its own goroutine.
func (e *takeoverEnv) goGet(t *testing.T, target string, header http.Header) <-chan takeoverResult {
	return e.goGetWith(e.client, target, header)
}

// goGetWith is goGet through client.
func (e *takeoverEnv) goGetWith(client *http.Client, target string, header http.Header) <-chan takeoverResult {
	res := make(chan takeoverResult, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+target, nil)
		maps(req.Header, header)
		resp, err := client.Do(req)
		if err != nil {
			res <- takeoverResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- takeoverResult{resp: resp, body: string(b), err: err}
	}()
	return res
}

type takeoverResult struct {
	resp *http.Response
	body string
	err  error
}

func (e *takeoverEnv) waited(t *testing.T) {
	t.Helper()
	select {
	case <-e.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll never waited")
	}
}

func mustResult(t *testing.T, res <-chan takeoverResult) takeoverResult {
	t.Helper()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("long-poll: %v", r.err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll was not answered")
	}
	return takeoverResult{}
}

// A long-poll over HTTP/1.1 is taken over while it waits, answered when
// an event comes, and its connection serves the next request (one dial
// for both); the answer has the headers net/http gives a held one.
func TestTakenOverLongPollKeepsItsConnection(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "https://app.example") // a middleware's header
			h.ServeHTTP(w, r)
		})
	})
	publish(t, e.b, "c1", "chapter-update-complete", 2)
	res := e.goGet(t, "/v1/courses/c1/poll?after=2&wait=25s", http.Header{"If-None-Match": {`W/"c1:2"`}})
	e.waited(t)
	if n := e.parkedNow(); n != 1 {
		t.Fatalf("%d long-polls taken over, want 1", n)
	}
	if n := e.p.LongPolls(); n != 1 {
		t.Fatalf("%d long-polls counted, want 1", n)
	}
	publish(t, e.b, "c1", "video-delete-complete", 1)
	r := mustResult(t, res)
	var got body
	if r.resp.StatusCode != 200 || json.Unmarshal([]byte(r.body), &got) != nil || got.LastEventID != "3" || len(got.Events) != 1 {
		t.Fatalf("long-poll: %d %q", r.resp.StatusCode, r.body)
	}
	h := r.resp.Header
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Etag": `W/"c1:3"`, "Cache-Control": "no-cache",
		"Access-Control-Allow-Origin": "https://app.example",
	} {
		if h.Get(k) != want {
			t.Errorf("%s: %q, want %q", k, h.Get(k), want)
		}
	}
	if _, err := http.ParseTime(h.Get("Date")); err != nil || r.resp.ContentLength != int64(len(r.body)) || r.resp.Close {
		t.Errorf("Date %q, Content-Length %d for %d bytes, close %v", h.Get("Date"), r.resp.ContentLength, len(r.body), r.resp.Close)
	}
	if n := e.p.LongPolls(); n != 0 {
		t.Errorf("%d long-polls still counted", n)
	}
	if n := e.b.Observer().Listeners("c1"); n != 0 {
		t.Errorf("%d broker listeners left", n)
	}

	// The same connection, handed back, serves the next poll.
	resp, _ := e.get(t, "/v1/courses/c1/poll?after=3", http.Header{"If-None-Match": {`W/"c1:3"`}})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("next poll: %d", resp.StatusCode)
	}
	if n := e.dials.Load(); n != 1 {
		t.Fatalf("%d connections dialed for two polls: the long-poll's was not kept", n)
	}
}

// The answers of a held and of a taken-over long-poll carry the same
// headers (but Date's value) and body, for a 200 and a 304.
func TestTakenOverAnswerIsNetHTTPs(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, nil)
	closing := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // Connection: close: not taken over
	defer closing.CloseIdleConnections()
	publish(t, e.b, "c1", "upload-progress", 1)
	for _, tc := range []struct {
		name, target string
		inm          http.Header
		publish      bool
		want         int
	}{
		{"200", "/v1/courses/c1/poll?after=1&wait=25s", nil, true, 200},
		{"304", "/v1/courses/c1/poll?after=2&wait=200ms", http.Header{"If-None-Match": {ETag("c1", 2)}}, false, 304},
	} {
		held := e.goGetWith(closing, tc.target, tc.inm)
		e.waited(t)
		taken := e.goGet(t, tc.target, tc.inm)
		e.waited(t)
		if n := e.parkedNow(); n != 1 {
			t.Fatalf("%s: %d long-polls taken over, want 1 (the one without Connection: close)", tc.name, n)
		}
		if tc.publish {
			publish(t, e.b, "c1", "upload-progress", 1)
		}
		a, b := mustResult(t, held), mustResult(t, taken)
		if a.resp.StatusCode != tc.want || b.resp.StatusCode != tc.want || a.body != b.body {
			t.Fatalf("%s: held %d %q, taken over %d %q", tc.name, a.resp.StatusCode, a.body, b.resp.StatusCode, b.body)
		}
		ha, hb := a.resp.Header.Clone(), b.resp.Header.Clone()
		ha.Del("Date")
		hb.Del("Date")
		ha.Del("Connection") // the held one was asked to close
		if ka, kb := keys(ha), keys(hb); !slices.Equal(ka, kb) {
			t.Fatalf("%s: held headers %v, taken over %v", tc.name, ha, hb)
		}
		for k := range ha {
			if ha.Get(k) != hb.Get(k) {
				t.Errorf("%s: %s: held %q, taken over %q", tc.name, k, ha.Get(k), hb.Get(k))
			}
		}
	}
}

func keys(h http.Header) []string {
	var ks []string
	for k := range h {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// A request that asked to close, HTTP/1.0 and HEAD are held by their
// handler, not taken over (and answered as before).
func TestNotTakenOver(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, nil)
	for _, raw := range []string{
		"GET /v1/courses/c1/poll?wait=200ms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET /v1/courses/c1/poll?wait=200ms HTTP/1.0\r\nHost: x\r\n\r\n",
		"HEAD /v1/courses/c1/poll?wait=200ms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	} {
		conn := e.rawPoll(t, raw)
		if n := e.parkedNow(); n != 0 {
			t.Fatalf("%q: %d long-polls taken over, want 0", raw, n)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: strings.Fields(raw)[0]})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%q: %v %v", raw, resp, err)
		}
		_ = conn.Close()
	}
}

// rawPoll sends the raw request on a connection of its own and returns
// the connection once the poll waits.
func (e *takeoverEnv) rawPoll(t *testing.T, request string) net.Conn {
	t.Helper()
	conn := e.dial(t)
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	e.waited(t)
	return conn
}

func (e *takeoverEnv) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// A request the client pipelined behind a held long-poll is served, in
// order, once the long-poll is answered: the bytes read while it was held
// go back to net/http with the connection.
func TestTakenOverKeepsPipelinedRequests(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, nil)
	conn := e.rawPoll(t, "GET /v1/courses/c1/poll?wait=25s HTTP/1.1\r\nHost: x\r\n\r\n")
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /v1/courses/c2/poll HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	publish(t, e.b, "c1", "upload-complete", 1)
	br := bufio.NewReader(conn)
	for _, course := range []string{"c1", "c2"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", course, err)
		}
		b, _ := io.ReadAll(resp.Body)
		var got body
		if resp.StatusCode != 200 || json.Unmarshal(b, &got) != nil || got.CourseID != course {
			t.Fatalf("answer for %s: %d %q", course, resp.StatusCode, b)
		}
	}
}

// A client leaving a taken-over long-poll ends it: listeners removed,
// count back to zero, its goroutine gone (Wait returns; goleak checks at
// the end).
func TestTakenOverClientGone(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, nil)
	conn := e.rawPoll(t, "GET /v1/poll?courses=a,b&wait=25s HTTP/1.1\r\nHost: x\r\n\r\n")
	if e.parkedNow() != 1 || e.b.Observer().Listeners("a") != 1 || e.b.Observer().Listeners("b") != 1 {
		t.Fatalf("%d parked, %d+%d listeners", e.parkedNow(), e.b.Observer().Listeners("a"), e.b.Observer().Listeners("b"))
	}
	_ = conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.p.Wait(ctx); err != nil {
		t.Fatalf("the poll of a client gone was not ended: %v", err)
	}
	if e.p.LongPolls() != 0 || e.b.Observer().Listeners("a") != 0 || e.b.Observer().Listeners("b") != 0 {
		t.Fatalf("%d long-polls, %d+%d listeners left", e.p.LongPolls(), e.b.Observer().Listeners("a"), e.b.Observer().Listeners("b"))
	}
}

// Drain answers taken-over long-polls at once with Connection: close, and
// closes their connections; Wait then returns.
func TestTakenOverDrain(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, nil)
	var conns []net.Conn
	for range 3 {
		conn := e.rawPoll(t, "GET /v1/courses/c1/poll?wait=30s HTTP/1.1\r\nHost: x\r\n\r\n")
		defer conn.Close()
		conns = append(conns, conn)
	}
	e.p.Drain()
	for i, conn := range conns {
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("poll %d: %v %v, want 200 with Connection: close", i, resp, err)
		}
		_, _ = io.ReadAll(resp.Body)
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("poll %d: connection not closed after the drained answer: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// A token's expiry (the request context's deadline) ends a taken-over
// poll before its ?wait=.
func TestTakenOverEndsAtTheDeadline(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 300*time.Millisecond)
			defer cancel()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	})
	start := time.Now()
	res := e.goGet(t, "/v1/courses/c1/poll?wait=25s", http.Header{"If-None-Match": {ETag("c1", 0)}})
	r := mustResult(t, res)
	if r.resp.StatusCode != http.StatusNotModified {
		t.Fatalf("%d %q", r.resp.StatusCode, r.body)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("answered after %s, want the 300ms deadline", took)
	}
}

// Many taken-over polls answered at once by one event, then every
// connection reused: nothing lost, one dial per client.
func TestTakenOverManyAtOnce(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, nil)
	const n = 20
	var wg sync.WaitGroup
	results := make([]<-chan takeoverResult, n)
	for i := range n {
		results[i] = e.goGet(t, "/v1/courses/c1/poll?wait=25s", nil)
		e.waited(t)
	}
	if got := e.parkedNow(); got != n {
		t.Fatalf("%d taken over, want %d", got, n)
	}
	publish(t, e.b, "c1", "upload-complete", 1)
	for i := range n {
		if r := mustResult(t, results[i]); r.resp.StatusCode != 200 || !strings.Contains(r.body, `"lastEventId":"1"`) {
			t.Fatalf("poll %d: %d %q", i, r.resp.StatusCode, r.body)
		}
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/courses/c1/poll?after=1", nil)
			req.Header.Set("If-None-Match", ETag("c1", 1))
			if resp, err := e.client.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
				t.Errorf("next poll: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if d := e.dials.Load(); d > n {
		t.Fatalf("%d dials for %d clients", d, n)
	}
}

// failingHistory is a broker whose History fails once failing is set.
type failingHistory struct {
	*observer.Memory
	failing atomic.Bool
}

func (f *failingHistory) History(ctx context.Context, course string, after uint64, limit int) (observer.Page, error) {
	if f.failing.Load() {
		return observer.Page{}, observer.ErrUnavailable
	}
	return f.Memory.History(ctx, course, after, limit)
}

// A broker failing when a taken-over poll is woken gets the client the
// 503 a held poll would get (JSON error, Retry-After), not a cut.
func TestTakenOverBrokerFailureIs503(t *testing.T) {
	t.Parallel()
	var fb *failingHistory
	withExpiry := func(h http.Handler) http.Handler { // a token's expiry, as auth sets it: the poll's reads have a deadline
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
			defer cancel()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	e := newTakeoverEnvOn(t, withExpiry, func(m *observer.Memory) observer.Broker {
		fb = &failingHistory{Memory: m}
		return fb
	})
	res := e.goGet(t, "/v1/courses/c1/poll?wait=25s", nil)
	e.waited(t)
	if n := e.parkedNow(); n != 1 {
		t.Fatalf("%d taken over, want 1", n)
	}
	fb.failing.Store(true)
	publish(t, e.b, "c1", "upload-complete", 1)
	r := mustResult(t, res)
	var body struct{ Error string }
	if r.resp.StatusCode != http.StatusServiceUnavailable || r.resp.Header.Get("Retry-After") != "1" ||
		r.resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(r.body), &body) != nil || body.Error == "" {
		t.Fatalf("%d %v %q, want a JSON 503 with Retry-After", r.resp.StatusCode, r.resp.Header, r.body)
	}
}

// A client that closes its side after its request (a half-close) gets the
// answer at once, with Connection: close, as net/http gives a held poll
// whose client it sees leave.
func TestTakenOverHalfClose(t *testing.T) {
	t.Parallel()
	e := newTakeoverEnv(t, nil)
	conn := e.rawPoll(t, "GET /v1/courses/c1/poll?wait=25s HTTP/1.1\r\nHost: x\r\n\r\n")
	defer conn.Close()
	if n := e.parkedNow(); n != 1 {
		t.Fatalf("%d taken over, want 1", n)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("after a half-close: %v %v, want 200 with Connection: close", resp, err)
	}
	b, _ := io.ReadAll(resp.Body)
	var got body
	if json.Unmarshal(b, &got) != nil || got.CourseID != "c1" || len(got.Events) != 0 {
		t.Fatalf("body %q", b)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after the answer: %v", err)
	}
}
