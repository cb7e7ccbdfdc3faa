package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	valerrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"

	"coursestream/docs"
	"coursestream/web"
)

// apiCase is one request of TestOpenAPIHoldsToTheServer and the answer it
// wants. Adding an operation to the document is adding its cases here.
type apiCase struct {
	op      string // the document's operation: "METHOD /path/{template}"
	srv     *server
	path    string // with the query
	header  map[string]string
	body    string
	status  int
	refused bool // the document itself refuses the request: a bad input it describes
	// sse reads the first frames of a stream until done says enough (the
	// stream is then left, not waited for) and checks them.
	sse      func(frames []sseFrame) (done bool)
	keepOpen bool // the stream is held until every case has run
	check    func(t *testing.T, h http.Header, body []byte)
}

// notExercised are the documented answers the test cannot bring about
// with a healthy embedded broker, and why; every other documented
// (operation, status) must be the answer of some case.
var notExercised = map[string]string{
	"GET /v1/courses/{courseId}/events 503":  "only the steering 503 is sent here; the broker-down one needs Redis gone (fault suite)",
	"POST /v1/courses/{courseId}/events 503": "the broker down: Redis gone (fault suite)",
	"GET /v1/courses/{courseId}/poll 503":    "the broker down: Redis gone (fault suite)",
	"HEAD /v1/courses/{courseId}/poll 503":   "the broker down: Redis gone (fault suite)",
	"GET /v1/poll 503":                       "the broker down: Redis gone (fault suite)",
	"HEAD /v1/poll 503":                      "the broker down: Redis gone (fault suite)",
	"GET /readyz 503":                        "starting, shutting down or Redis gone (ops and fault tests)",
	"HEAD /readyz 503":                       "starting, shutting down or Redis gone (ops and fault tests)",
}

// TestOpenAPIHoldsToTheServer sends real requests, good and bad, to real
// servers for every operation of docs/openapi.json and validates each
// request and each response against the document, so that the document
// cannot drift from the code. SSE streams are checked for their status,
// headers and the grammar of their first frames, whose data must match
// the document's schemas.
func TestOpenAPIHoldsToTheServer(t *testing.T) {
	t.Parallel()
	api := loadOpenAPI(t)

	const key = "openapi-test-key-0123456789abcdef"
	open := startServer(t, "--max-event-bytes", "1024", "--heartbeat", "100ms")
	keyed := startServer(t, "--jwt-key", key, "--max-connections", "1")
	tok := func(args ...string) string {
		code, out, errs := runCLI(append([]string{"token", "--jwt-key", key}, args...), nil)
		if code != 0 {
			t.Fatalf("token %v: %d %s", args, code, errs)
		}
		return strings.TrimSpace(out)
	}
	subTok, pubTok, otherTok := tok("--course", "c-keyed"), tok("--course", "c-keyed", "--publish"), tok("--course", "other", "--publish")
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	const (
		events = "/v1/courses/{courseId}/events"
		poll   = "/v1/courses/{courseId}/poll"
	)
	var cases []apiCase
	add := func(c ...apiCase) { cases = append(cases, c...) }

	// Publishing: the events every later case reads (ids 1 to 3 of c-open).
	add(
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"type":"chapter-update-complete","data":{"chapterId":"ch-1"},"operationId":"op-1"}`, status: 201,
			check: wantJSON(`{"id":"1"}`)},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"type":"video-update-complete","data":{"videoId":"v1"}}`, status: 201},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"type":"custom.type_2"}`, status: 201, check: wantJSON(`{"id":"3"}`)},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"data":{}}`, status: 400, refused: true},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"type":"Bad Type"}`, status: 400, refused: true},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"type":"x","operationId":"` + strings.Repeat("o", 129) + `"}`, status: 400, refused: true},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"type":`, status: 400, refused: true},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/bad%20id/events", body: `{"type":"x"}`, status: 400, refused: true},
		apiCase{op: "POST " + events, srv: open, path: "/v1/courses/c-open/events", body: `{"type":"x","data":"` + strings.Repeat("d", 2000) + `"}`, status: 413},
		apiCase{op: "POST " + events, srv: keyed, path: "/v1/courses/c-keyed/events", header: bearer(pubTok), body: `{"type":"upload-complete","data":{"videoId":"v2"}}`, status: 201},
		apiCase{op: "POST " + events, srv: keyed, path: "/v1/courses/c-keyed/events", body: `{"type":"x"}`, status: 401},
		apiCase{op: "POST " + events, srv: keyed, path: "/v1/courses/c-keyed/events", header: bearer("not-a-jwt"), body: `{"type":"x"}`, status: 401},
		apiCase{op: "POST " + events, srv: keyed, path: "/v1/courses/c-keyed/events", header: bearer(subTok), body: `{"type":"x"}`, status: 403},
	)
	// Subscribing.
	add(
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events", header: map[string]string{"Last-Event-ID": "0"}, status: 200,
			sse: func(f []sseFrame) bool { return countEvents(f) == 3 }},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events?lastEventId=1&types=custom.type_2", status: 200,
			sse: func(f []sseFrame) bool { return countEvents(f) == 1 }, check: wantFrame("id: 3\nevent: custom.type_2\n")},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events?coalesce=50ms", header: map[string]string{"Last-Event-ID": "99"}, status: 200,
			sse: func(f []sseFrame) bool { return len(f) >= 2 }, check: wantFrame("id: 3\nevent: reset\n")},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events", status: 200, // live edge: a heartbeat comes
			sse: func(f []sseFrame) bool { return len(f) >= 2 }, check: wantFrame(": hb\n")},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events?coalesce=11s", status: 400},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events?coalesce=soon", status: 400, refused: true},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events?types=Nope", status: 400, refused: true},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/.bad/events", status: 400, refused: true},
		apiCase{op: "GET " + events, srv: keyed, path: "/v1/courses/c-keyed/events", status: 401},
		apiCase{op: "GET " + events, srv: keyed, path: "/v1/courses/c-keyed/events?token=" + otherTok, status: 403},
		// The keyed instance holds one stream (--max-connections 1): the
		// first is taken and held, the next is steered to polling.
		apiCase{op: "GET " + events, srv: keyed, path: "/v1/courses/c-keyed/events?token=" + subTok + "&lastEventId=0", status: 200, keepOpen: true,
			sse: func(f []sseFrame) bool { return countEvents(f) == 1 }, check: wantFrame("id: 1\nevent: upload-complete\n")},
		apiCase{op: "GET " + events, srv: keyed, path: "/v1/courses/c-keyed/events", header: bearer(subTok), status: 503,
			check: wantJSON(`{"error":"*","fallback":"/v1/courses/c-keyed/poll"}`)},
	)
	// Several courses on one stream, and unnamed dispatch.
	const multi = "/v1/events"
	add(
		apiCase{op: "GET " + multi, srv: open, path: "/v1/events?courses=c-open,c-none", header: map[string]string{"Last-Event-ID": "c-open:1"}, status: 200,
			sse: func(f []sseFrame) bool { return countEvents(f) == 2 }, check: wantFrame("id: c-open:2,c-none:0\nevent: video-update-complete\n")},
		apiCase{op: "GET " + multi, srv: open, path: "/v1/events?courses=c-open&lastEventId=c-open:99&dispatch=message", status: 200,
			sse: func(f []sseFrame) bool { return len(f) >= 2 }, check: wantFrame("id: c-open:3\nevent: reset\n")},
		apiCase{op: "GET " + multi, srv: open, path: "/v1/events?courses=c-open&dispatch=message", header: map[string]string{"Last-Event-ID": "c-open:2"}, status: 200,
			sse: func(f []sseFrame) bool { return len(f) >= 2 }, check: wantFrame("id: c-open:3\ndata: ")},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events?dispatch=message&lastEventId=2", status: 200,
			sse: func(f []sseFrame) bool { return len(f) >= 2 }, check: wantFrame("id: 3\ndata: ")},
		apiCase{op: "GET " + events, srv: open, path: "/v1/courses/c-open/events?dispatch=named", status: 400, refused: true},
		apiCase{op: "GET " + multi, srv: open, path: "/v1/events?courses=c-open&dispatch=named", status: 400, refused: true},
		apiCase{op: "GET " + multi, srv: open, path: "/v1/events", status: 400, refused: true},
		apiCase{op: "GET " + multi, srv: open, path: "/v1/events?courses=c-open,,x", status: 400, refused: true},
		apiCase{op: "GET " + multi, srv: open, path: "/v1/events?courses=c-open,.bad", status: 400},
		apiCase{op: "GET " + multi, srv: keyed, path: "/v1/events?courses=c-keyed", status: 401},
		apiCase{op: "GET " + multi, srv: keyed, path: "/v1/events?courses=c-keyed,other", header: bearer(subTok), status: 403,
			check: func(t *testing.T, _ http.Header, body []byte) {
				if !bytes.Contains(body, []byte(`course other`)) {
					t.Errorf("403 body %s does not name the refused course", body)
				}
			}},
		apiCase{op: "GET " + multi, srv: keyed, path: "/v1/events?courses=c-keyed", header: bearer(subTok), status: 503,
			check: wantJSON(`{"error":"*","fallback":"/v1/poll?courses=c-keyed"}`)},
	)
	// Polling.
	add(
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?after=1", status: 200,
			check: func(t *testing.T, h http.Header, body []byte) {
				if h.Get("ETag") != `W/"c-open:3"` || !bytes.Contains(body, []byte(`"lastEventId":"3"`)) {
					t.Errorf("poll after=1: ETag %q, body %s", h.Get("ETag"), body)
				}
			}},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll", header: map[string]string{"If-None-Match": `W/"c-open:3"`}, status: 304},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?after=3&wait=50ms", header: map[string]string{"If-None-Match": `"c-open:3"`}, status: 304},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?after=3&wait=1", status: 200, check: wantJSON(`{"courseId":"c-open","lastEventId":"3","events":[],"more":false,"reset":false}`)},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?after=7", status: 200, check: wantJSON(`{"courseId":"c-open","lastEventId":"3","events":[],"more":false,"reset":true}`)},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?types=video-update-complete,upload-progress", status: 200},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/never-used/poll", status: 200, check: wantJSON(`{"courseId":"never-used","lastEventId":"0","events":[],"more":false,"reset":false}`)},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?after=-1", status: 400, refused: true},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?wait=31s", status: 400},
		apiCase{op: "GET " + poll, srv: open, path: "/v1/courses/c-open/poll?wait=later", status: 400, refused: true},
		apiCase{op: "GET " + poll, srv: keyed, path: "/v1/courses/c-keyed/poll", header: map[string]string{"Cookie": "coursestream_token=" + subTok}, status: 200},
		apiCase{op: "GET " + poll, srv: keyed, path: "/v1/courses/c-keyed/poll", status: 401},
		apiCase{op: "GET " + poll, srv: keyed, path: "/v1/courses/c-keyed/poll", header: bearer(otherTok), status: 403},
		apiCase{op: "HEAD " + poll, srv: open, path: "/v1/courses/c-open/poll", status: 200},
		apiCase{op: "HEAD " + poll, srv: open, path: "/v1/courses/c-open/poll", header: map[string]string{"If-None-Match": `W/"c-open:0", W/"c-open:3"`}, status: 304},
		apiCase{op: "HEAD " + poll, srv: open, path: "/v1/courses/c-open/poll?after=x", status: 400, refused: true},
		apiCase{op: "HEAD " + poll, srv: keyed, path: "/v1/courses/c-keyed/poll", status: 401},
		apiCase{op: "HEAD " + poll, srv: keyed, path: "/v1/courses/c-keyed/poll?token=" + otherTok, status: 403},
	)
	add(multiPollAPICases(open, keyed, subTok, otherTok)...)
	// Operations and files.
	for _, m := range []string{"GET", "HEAD"} {
		add(
			apiCase{op: m + " /healthz", srv: open, path: "/healthz", status: 200},
			apiCase{op: m + " /readyz", srv: keyed, path: "/readyz", status: 200},
			apiCase{op: m + " /metrics", srv: open, path: "/metrics", status: 200, check: func(t *testing.T, _ http.Header, body []byte) {
				if m == http.MethodGet && !regexp.MustCompile(`(?m)^coursestream_build_info\{goversion="[^"]+",revision="[^"]+",version="[^"]+"\} 1$`).Match(body) {
					t.Errorf("/metrics has no coursestream_build_info")
				}
			}},
			apiCase{op: m + " /openapi.json", srv: open, path: "/openapi.json", status: 200, check: func(t *testing.T, _ http.Header, body []byte) {
				if m == http.MethodGet && !bytes.Equal(body, docs.OpenAPI()) {
					t.Errorf("/openapi.json is not docs/openapi.json")
				}
			}},
			apiCase{op: m + " /", srv: open, path: "/", status: 200},
			apiCase{op: m + " /{file}", srv: open, path: "/no-such-file.js", status: 404},
		)
	}
	for _, name := range web.Names() {
		switch {
		case name == "index.html":
		case strings.HasPrefix(name, "coursestream/"):
			add(apiCase{op: "GET /coursestream/{module}", srv: open, path: "/" + name, status: 200})
		default:
			add(apiCase{op: "GET /{file}", srv: open, path: "/" + name, status: 200})
		}
	}
	add(apiCase{op: "HEAD /{file}", srv: open, path: "/coursestream.js", status: 200})
	add(apiCase{op: "GET /coursestream/{module}", srv: open, path: "/coursestream/no-such-module.js", status: 404})
	add(apiCase{op: "HEAD /coursestream/{module}", srv: open, path: "/coursestream/connection.js", status: 200})
	add(apiCase{op: "HEAD /coursestream/{module}", srv: open, path: "/coursestream/no-such-module.js", status: 404})

	defer func() {
		for _, stop := range api.kept {
			stop()
		}
	}()
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.op+" "+strconv.Itoa(c.status)] = true
		name := regexp.MustCompile(`token=[^&]*`).ReplaceAllString(c.path, "token=T")
		t.Run(c.op+" "+name, func(t *testing.T) { api.exchange(t, c) })
	}
	// Every documented answer of every operation is brought about, or
	// said not to be and why.
	reasons := maps.Clone(notExercised)
	for _, key := range api.answers() {
		if !seen[key] && reasons[key] == "" {
			t.Errorf("%s is documented and no case brings it about", key)
		}
		delete(reasons, key)
	}
	for key := range reasons {
		t.Errorf("notExercised names %s, which the document does not have", key)
	}
	for key := range seen {
		if !slices.Contains(api.answers(), key) {
			t.Errorf("a case gets %s, which the document does not have", key)
		}
	}
}

// openAPI is the document with its validator.
type openAPI struct {
	v       validator.Validator
	ops     map[string][]string // "METHOD /path" → documented status codes
	schemas map[string]*base.Schema
	kept    []func() // end the streams held open
}

func loadOpenAPI(t *testing.T) *openAPI {
	t.Helper()
	doc, err := libopenapi.NewDocument(docs.OpenAPI())
	if err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	if doc.GetVersion() != "3.1.0" {
		t.Fatalf("docs/openapi.json is OpenAPI %s, want 3.1.0", doc.GetVersion())
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("docs/openapi.json: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Fatalf("docs/openapi.json is not a valid OpenAPI 3.1 document: %s", describe(verrs))
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	api := &openAPI{v: v, ops: map[string][]string{}, schemas: map[string]*base.Schema{}}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			key := strings.ToUpper(method) + " " + path
			for code := range op.Responses.Codes.KeysFromOldest() {
				api.ops[key] = append(api.ops[key], code)
			}
		}
	}
	for name, s := range model.Model.Components.Schemas.FromOldest() {
		api.schemas[name] = s.Schema()
	}
	return api
}

// answers lists "METHOD /path STATUS" for every documented response.
func (api *openAPI) answers() []string {
	var out []string
	for op, codes := range api.ops {
		for _, code := range codes {
			out = append(out, op+" "+code)
		}
	}
	slices.Sort(out)
	return out
}

// exchange sends the case's request, validates it and the answer against
// the document and checks what the case wants.
func (api *openAPI) exchange(t *testing.T, c apiCase) {
	method, tmpl, _ := strings.Cut(c.op, " ")
	if _, ok := api.ops[c.op]; !ok {
		t.Fatalf("the document has no operation %s", c.op)
	}
	if p, _, _ := strings.Cut(c.path, "?"); !templateRE(tmpl).MatchString(p) {
		t.Fatalf("%s is not a path of %s", c.path, tmpl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer func() {
		if !c.keepOpen {
			cancel()
		}
	}()
	req, err := http.NewRequestWithContext(ctx, method, c.srv.url(c.path), strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	// The validator reads the request body: give it its own copy.
	vreq := req.Clone(ctx)
	vreq.Body = io.NopCloser(strings.NewReader(c.body))
	if ok, errs := api.v.ValidateHttpRequestSync(vreq); ok == c.refused {
		if c.refused {
			t.Errorf("the document allows %s %s, a bad input the server refuses with %d: describe the limit", method, c.path, c.status)
		} else {
			t.Errorf("the document refuses the request: %s", describe(errs))
		}
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if c.keepOpen {
		api.kept = append(api.kept, func() { cancel(); resp.Body.Close() })
	} else {
		defer resp.Body.Close() // a stream is left once read: it does not end by itself
	}
	var body []byte
	if c.sse != nil && resp.StatusCode == http.StatusOK {
		frames, raw := readFrames(t, resp.Body, c.sse)
		api.checkFrames(t, frames)
		body = raw
	} else if body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != c.status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, body)
	}
	if method == http.MethodHead && len(body) != 0 {
		t.Errorf("HEAD answered with a body: %q", body)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if ok, errs := api.v.ValidateHttpResponse(vreq, resp); !ok {
		t.Errorf("the answer (%d %s) breaks the document: %s\nbody: %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), describe(errs), body)
	}
	if c.check != nil {
		c.check(t, resp.Header, body)
	}
}

func templateRE(tmpl string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `[^/]+`) + "$")
}

func describe(errs []*valerrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  %s: %s", e.Message, e.Reason)
		for _, s := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    %s (%s)", s.Reason, s.KeywordLocation)
		}
	}
	return b.String()
}

// sseFrame is one frame of a stream: its lines, without the blank line
// that ends it.
type sseFrame []string

func (f sseFrame) field(name string) (string, bool) {
	for _, l := range f {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v, true
		}
	}
	return "", false
}

func countEvents(frames []sseFrame) int {
	n := 0
	for _, f := range frames {
		if ev, ok := f.field("event"); ok && ev != "reset" {
			n++
		}
	}
	return n
}

// readFrames reads frames until done says enough, or fails the test
// when the stream ends or stalls first. It returns the frames and the
// bytes read.
func readFrames(t *testing.T, r io.Reader, done func([]sseFrame) bool) ([]sseFrame, []byte) {
	t.Helper()
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(r, &raw))
	var frames []sseFrame
	var cur sseFrame
	for !done(frames) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended (%v) after %d frames: %q", err, len(frames), raw.String())
		}
		if line = strings.TrimSuffix(line, "\n"); line == "" {
			frames, cur = append(frames, cur), nil
			continue
		}
		cur = append(cur, line)
	}
	return frames, raw.Bytes()
}

// checkFrames holds the frames to the grammar in the document's
// description of the SSE operation, and their data to its schemas.
func (api *openAPI) checkFrames(t *testing.T, frames []sseFrame) {
	t.Helper()
	is := func(f sseFrame, re string) bool {
		return regexp.MustCompile(`^` + re + `$`).MatchString(strings.Join(f, "\n"))
	}
	const seq = `[0-9]{1,20}`
	const cursor = `[A-Za-z0-9][^,:\n]*:` + seq + `(,[A-Za-z0-9][^,:\n]*:` + seq + `)*` // a multi-course stream's id
	const anyID = `(` + seq + `|` + cursor + `)`
	for i, f := range frames {
		switch {
		case i == 0:
			if !is(f, `retry: [0-9]+`) {
				t.Errorf("the first frame is %q, want retry: <ms>", f)
			}
		case is(f, `(:.*\n?)+`): // comments
		case is(f, `id: `+anyID+`\nevent: reset\ndata: .*`):
			data, _ := f.field("data")
			id, _ := f.field("id")
			api.checkData(t, "ResetData", data)
			var reset struct{ CourseID, LastEventID string }
			_ = json.Unmarshal([]byte(data), &reset)
			if !strings.Contains(data, `"lastEventId":"`+id+`"`) && !slices.Contains(strings.Split(id, ","), reset.CourseID+":"+reset.LastEventID) {
				t.Errorf("reset frame %q: data does not carry its id", f)
			}
		case is(f, `:.*\nevent: coursestream:drain\ndata: .*\nretry: [0-9]+`):
			data, _ := f.field("data")
			api.checkData(t, "DrainData", data)
		case is(f, `id: `+anyID+`\n(event: [a-z0-9][a-z0-9._-]{0,63}\n)?data: .*`):
			data, _ := f.field("data")
			id, _ := f.field("id")
			typ, named := f.field("event")
			api.checkData(t, "Envelope", data)
			var env struct{ ID, Type, CourseID string }
			if json.Unmarshal([]byte(data), &env) != nil || env.ID != id && !slices.Contains(strings.Split(id, ","), env.CourseID+":"+env.ID) ||
				named && env.Type != typ {
				t.Errorf("event frame %q: the envelope's id and type are not the frame's", f)
			}
		default:
			t.Errorf("frame %d %q follows no production of the grammar", i, f)
		}
	}
}

func (api *openAPI) checkData(t *testing.T, schema, data string) {
	t.Helper()
	s := api.schemas[schema]
	if s == nil {
		t.Fatalf("the document has no schema %s", schema)
	}
	if ok, errs := schema_validation.NewSchemaValidator().ValidateSchemaStringWithVersion(s, data, 3.1); !ok {
		t.Errorf("data %s does not match the %s schema: %s", data, schema, describe(errs))
	}
}

// wantJSON checks the body against want, where a "*" string matches any.
func wantJSON(want string) func(t *testing.T, h http.Header, body []byte) {
	return func(t *testing.T, _ http.Header, body []byte) {
		t.Helper()
		var got, w map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatal(err)
		}
		for k, v := range w {
			if v == "*" {
				if _, ok := got[k]; ok {
					got[k] = "*"
				}
			}
		}
		if g, _ := json.Marshal(got); !bytes.Equal(g, mustCompact(want)) {
			t.Errorf("body %s, want %s", body, want)
		}
	}
}

func mustCompact(s string) []byte {
	var m map[string]any
	_ = json.Unmarshal([]byte(s), &m)
	b, _ := json.Marshal(m)
	return b
}

// wantFrame checks that the stream's text holds s at the start of a frame.
func wantFrame(s string) func(t *testing.T, h http.Header, body []byte) {
	return func(t *testing.T, _ http.Header, body []byte) {
		t.Helper()
		if !bytes.Contains(body, []byte("\n\n"+s)) {
			t.Errorf("the stream has no frame starting %q: %q", s, body)
		}
	}
}
