package stream

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"coursestream/observer"
)

// checkFrame checks every form of ev's frame, built once (newFrame) and
// in place (appendEventFrame, appendEventChunk), against the SSE text of
// its named form: the unnamed form (dispatch=message) is the same without
// its event: line (a reset keeps it), and a cursor replaces the id line.
func checkFrame(tb testing.TB, ev *observer.Event, want string) {
	tb.Helper()
	f := newFrame(ev)
	unnamed := want
	if !ev.Reset {
		unnamed = regexp.MustCompile("(?m)^event: .*\n").ReplaceAllString(want, "")
	}
	for d, want := range map[dispatch]string{dispatchNamed: want, dispatchMessage: unnamed} {
		fm := f.form(d)
		if fm != f.form(d) {
			tb.Fatalf("dispatch %d: the form was built twice", d)
		}
		if string(fm.sse) != want {
			tb.Fatalf("dispatch %d: frame %q, want %q", d, fm.sse, want)
		}
		if wantChunk := fmt.Sprintf("%x\r\n%s\r\n", len(want), want); string(fm.chunk) != wantChunk {
			tb.Fatalf("dispatch %d: chunk %q, want %q", d, fm.chunk, wantChunk)
		}
		if string(fm.id())+string(fm.body()) != want || !strings.HasPrefix(string(fm.id()), "id: ") || !strings.HasSuffix(string(fm.id()), "\n") ||
			strings.Count(string(fm.id()), "\n") != 1 || string(fm.bodyChunk()) != string(fm.body())+"\r\n" {
			tb.Fatalf("dispatch %d: id %q and body %q do not split %q after its id line", d, fm.id(), fm.body(), want)
		}
		if got := appendEventFrame([]byte("x"), ev, d, nil); string(got) != "x"+want {
			tb.Fatalf("dispatch %d: appendEventFrame %q", d, got)
		}
		if got := appendEventChunk([]byte("x"), ev, d, nil); string(got) != "x"+string(fm.chunk) {
			tb.Fatalf("dispatch %d: appendEventChunk %q, want %q", d, got, fm.chunk)
		}
		// A multi-course stream's frame: its cursor as id, the shared body.
		cur := []byte("a:1,b:22")
		withCursor := "id: a:1,b:22\n" + string(fm.body())
		if got := appendEventFrame(nil, ev, d, cur); string(got) != withCursor {
			tb.Fatalf("dispatch %d: with a cursor %q, want %q", d, got, withCursor)
		}
		chunked := fmt.Sprintf("%x\r\n%s\r\n", len(withCursor), withCursor)
		if got := appendEventChunk(nil, ev, d, cur); string(got) != chunked {
			tb.Fatalf("dispatch %d: chunk with a cursor %q, want %q", d, got, chunked)
		}
		if got := string(appendIDChunkHead(nil, cur, len(fm.body()))) + string(fm.bodyChunk()); got != chunked {
			tb.Fatalf("dispatch %d: gathered chunk %q, want %q", d, got, chunked)
		}
	}
}

func TestEventFrame(t *testing.T) {
	t.Parallel()
	m := observer.Message{CourseID: "course-123", Type: "chapter-update-complete", Data: json.RawMessage(`{"chapterId":"ch-1"}`), OperationID: "op-9"}
	data, err := m.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := observer.NewEvent(m, data, 42, 1764072000000, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkFrame(t, ev, "id: 42\nevent: chapter-update-complete\ndata: "+string(ev.JSON)+"\n\n")

	good := `{"id":"7","courseId":"c1","type":"upload-progress","data":{"p":1},"operationId":"o","timestamp":3}`
	if ev, err = observer.ParseEnvelope([]byte(good)); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, ev, "id: 7\nevent: upload-progress\ndata: "+good+"\n\n")

	reset := &observer.Event{CourseID: "c1", ID: 1234567, Reset: true}
	checkFrame(t, reset, "id: 1234567\nevent: reset\ndata: {\"courseId\":\"c1\",\"lastEventId\":\"1234567\"}\n\n")
}

func TestTopicBuildsOnce(t *testing.T) {
	var tp topic
	a := &observer.Event{ID: 1, CourseID: "c", Type: "t", JSON: []byte(`{}`)}
	b := &observer.Event{ID: 2, CourseID: "c", Type: "t", JSON: []byte(`{}`)}
	fa := tp.frameOf(a)
	if tp.frameOf(a) != fa {
		t.Fatal("the second stream of a course built the frame again")
	}
	if fb := tp.frameOf(b); fb == fa || fb.ev != b {
		t.Fatal("a new event got the previous frame")
	}
	if allocs := testing.AllocsPerRun(100, func() { tp.frameOf(b) }); allocs != 0 {
		t.Fatalf("finding a built frame allocates %v times", allocs)
	}
}

// FuzzEventFrame: whatever envelope the broker accepts, its frame is one
// SSE event (four line breaks, the envelope as data) and its chunk frames it.
func FuzzEventFrame(f *testing.F) {
	f.Add([]byte(`{"id":"7","courseId":"c1","type":"upload-progress","data":{"p":1},"operationId":"o","timestamp":3}`))
	f.Add([]byte("{\"id\":\"1\",\n\"courseId\":\"c\",\"type\":\"t\",\"data\":\"\\u2028\",\"timestamp\":1}"))
	f.Add([]byte(`{"id":"18446744073709551615","courseId":"c","type":"t","data":"\r\n","timestamp":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := observer.ParseEnvelope(b)
		if err != nil {
			return
		}
		want := "id: " + fmt.Sprint(ev.ID) + "\nevent: " + ev.Type + "\ndata: " + string(ev.JSON) + "\n\n"
		if strings.Count(want, "\n") != 4 {
			t.Fatalf("frame %q is not one SSE event", want)
		}
		checkFrame(t, ev, want)
	})
}

func TestSubject(t *testing.T) {
	t.Parallel()
	for data, want := range map[string]string{
		`{"chapterId":"ch-1","videoId":"v"}`: `c"ch-1"`,
		`{"videoId":"v1"}`:                   `v"v1"`,
		`{"videoId":1}`:                      `v1`,
		`{"chapterId":null,"videoId":"v"}`:   `v"v"`,
		`{"other":1}`:                        "",
		`[1]`:                                "",
		`null`:                               "",
	} {
		f := newFrame(&observer.Event{Data: json.RawMessage(data)})
		if got := f.subjectOf(); got != want || f.subjectOf() != want {
			t.Errorf("subject of %s = %q, want %q", data, got, want)
		}
	}
}
