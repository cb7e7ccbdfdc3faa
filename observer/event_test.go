package observer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestValidCourseID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"course-123": true, "C": true, "a.b:c_d-e": true, "9": true,
		strings.Repeat("a", 128): true, strings.Repeat("a", 129): false,
		"": false, "-a": false, "_a": false, "a/b": false, "a b": false, "é": false,
		"a\n": false, ".a": false, "a%2F": false,
	} {
		if got := ValidCourseID(id); got != want {
			t.Errorf("ValidCourseID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestValidType(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]bool{
		"chapter-update-complete": true, "upload.progress_2": true, "0": true,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false,
		"": false, "Chapter": false, "-x": false, "a b": false, "a:b": false, "a\nb": false,
	} {
		if got := ValidType(typ); got != want {
			t.Errorf("ValidType(%q) = %v, want %v", typ, got, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	ok := Message{CourseID: "c1", Type: "chapter-update-complete"}
	tests := []struct {
		name    string
		msg     Message
		want    string
		wantErr error
	}{
		{"object kept", with(ok, `{"b":1,"a":2}`), `{"b":1,"a":2}`, nil},
		{"empty array stays array", with(ok, `[]`), `[]`, nil},
		{"big number keeps digits", with(ok, `12345678901234567890`), `12345678901234567890`, nil},
		{"whitespace and newlines removed", with(ok, "{\n  \"a\" : [1, 2]\r\n}"), `{"a":[1,2]}`, nil},
		{"string with escaped newline", with(ok, `"a\nb"`), `"a\nb"`, nil},
		{"absent data is null", ok, `null`, nil},
		{"bad json", with(ok, `{"a":`), "", ErrInvalidData},
		{"two values", with(ok, `1 2`), "", ErrInvalidData},
		{"invalid utf8", with(ok, "\"\xff\""), "", ErrInvalidData},
		{"bad course", Message{CourseID: "a/b", Type: "x"}, "", ErrInvalidCourseID},
		{"bad type", Message{CourseID: "c", Type: "X"}, "", ErrInvalidType},
		{"reserved type", Message{CourseID: "c", Type: "reset"}, "", ErrInvalidType},
		{"long operation", Message{CourseID: "c", Type: "x", OperationID: strings.Repeat("é", 129)}, "", ErrInvalidOperationID},
		{"operation of 128 chars", Message{CourseID: "c", Type: "x", OperationID: strings.Repeat("é", 128)}, "null", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.msg.Normalize()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Fatalf("data = %s, want %s", got, tt.want)
			}
		})
	}
}

func with(m Message, data string) Message { m.Data = json.RawMessage(data); return m }

func TestNewEventEnvelope(t *testing.T) {
	t.Parallel()
	m := Message{CourseID: "course-123", Type: "chapter-update-complete", Data: json.RawMessage(`{"chapterId":"ch-1"}`), OperationID: "op-9"}
	data, err := m.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvent(m, data, 42, 1764072000000, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"42","courseId":"course-123","type":"chapter-update-complete","data":{"chapterId":"ch-1"},"operationId":"op-9","timestamp":1764072000000}`
	if string(ev.JSON) != want {
		t.Fatalf("envelope\n got %s\nwant %s", ev.JSON, want)
	}
	if string(ev.Data) != `{"chapterId":"ch-1"}` {
		t.Fatalf("Data = %s", ev.Data)
	}
	m.OperationID = ""
	ev, _ = NewEvent(m, data, 1, 5, 0)
	if strings.Contains(string(ev.JSON), "operationId") {
		t.Fatalf("empty operationId not omitted: %s", ev.JSON)
	}
	m.OperationID = "a\"<b>\n"
	ev, _ = NewEvent(m, data, 1, 5, 0)
	back, err := ParseEnvelope(ev.JSON)
	if err != nil || back.OperationID != m.OperationID {
		t.Fatalf("operation id did not round-trip: %v %q", err, back.OperationID)
	}
	if strings.ContainsAny(string(ev.JSON), "\r\n") {
		t.Fatalf("envelope has a line break: %q", ev.JSON)
	}
}

func TestNewEventTooLarge(t *testing.T) {
	t.Parallel()
	m := Message{CourseID: "c", Type: "t", Data: json.RawMessage(`"` + strings.Repeat("x", 200) + `"`)}
	data, _ := m.Normalize()
	if _, err := NewEvent(m, data, 1, 1, 200); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := NewEvent(m, data, 1, 1, 300); err != nil {
		t.Fatalf("err = %v", err)
	}
}

func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	good := `{"id":"7","courseId":"c1","type":"upload-progress","data":{"p":1},"operationId":"o","timestamp":3}`
	ev, err := ParseEnvelope([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != 7 || ev.CourseID != "c1" || ev.Type != "upload-progress" || string(ev.Data) != `{"p":1}` || ev.OperationID != "o" || ev.Timestamp != 3 || string(ev.JSON) != good {
		t.Fatalf("parsed %+v", ev)
	}
	multi, err := ParseEnvelope([]byte("{\"id\":\"1\",\n\"courseId\":\"c\",\"type\":\"t\",\"data\":null,\"timestamp\":1}"))
	if err != nil || strings.Contains(string(multi.JSON), "\n") {
		t.Fatalf("line break not compacted: %v %q", err, multi.JSON)
	}
	for _, bad := range []string{
		``, `nope`, `[]`, `{}`,
		`{"id":"0","courseId":"c","type":"t","data":1,"timestamp":1}`,
		`{"id":"x","courseId":"c","type":"t","data":1,"timestamp":1}`,
		`{"id":7,"courseId":"c","type":"t","data":1,"timestamp":1}`,
		`{"id":"1","courseId":"a/b","type":"t","data":1,"timestamp":1}`,
		`{"id":"1","courseId":"c","type":"T","data":1,"timestamp":1}`,
		`{"id":"1","courseId":"c","type":"reset","data":1,"timestamp":1}`,
		`{"id":"1","courseId":"c","type":"t","timestamp":1}`,
		`{"id":"1","courseId":"c","type":"t","data":1}`,
		"{\"id\":\"1\",\"courseId\":\"c\",\"type\":\"t\",\"data\":\"\xff\",\"timestamp\":1}",
	} {
		if _, err := ParseEnvelope([]byte(bad)); !errors.Is(err, ErrInvalidEnvelope) {
			t.Errorf("ParseEnvelope(%q) err = %v, want ErrInvalidEnvelope", bad, err)
		}
	}
}

func TestParseID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]uint64{"0": 0, "42": 42, "18446744073709551615": 1<<64 - 1} {
		if got, err := ParseID(s); err != nil || got != want {
			t.Errorf("ParseID(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "-1", "+1", "1.0", "1e3", " 1", "0x10", "18446744073709551616", "1700000000000-0"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}

// FuzzParseEnvelope checks that decoding never panics and that whatever is
// accepted is a valid, single-line envelope that decodes to the same event.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"id":"7","courseId":"c1","type":"upload-progress","data":{"p":1},"operationId":"o","timestamp":3}`))
	f.Add([]byte(`{"id":"1","courseId":"c","type":"t","data":[],"timestamp":-1}`))
	f.Add([]byte("{\"id\":\"1\",\n\"courseId\":\"c\",\"type\":\"t\",\"data\":\"\\u2028\",\"timestamp\":1}"))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		if strings.ContainsAny(string(ev.JSON), "\r\n") {
			t.Fatalf("accepted envelope has a line break: %q", ev.JSON)
		}
		if !ValidCourseID(ev.CourseID) || !ValidType(ev.Type) || ev.ID == 0 {
			t.Fatalf("accepted invalid fields: %+v", ev)
		}
		again, err := ParseEnvelope(ev.JSON)
		if err != nil || again.ID != ev.ID || again.CourseID != ev.CourseID || again.Type != ev.Type {
			t.Fatalf("re-parse differs: %v", err)
		}
	})
}

// FuzzNormalize checks that accepted data is compact, single-line JSON that
// means the same as the input.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "[1,\n2]", `12345678901234567890`, `"\u2028"`, `{`, "\"\xff\""} {
		f.Add("c1", "t", s, "op")
	}
	f.Fuzz(func(t *testing.T, course, typ, data, op string) {
		m := Message{CourseID: course, Type: typ, Data: json.RawMessage(data), OperationID: op}
		got, err := m.Normalize()
		if err != nil {
			return
		}
		if !json.Valid(got) || strings.ContainsAny(string(got), "\r\n") {
			t.Fatalf("Normalize(%q) = %q: not single-line JSON", data, got)
		}
		ev, err := NewEvent(m, got, 1, 1, 1<<20)
		if err != nil {
			t.Fatalf("NewEvent: %v", err)
		}
		back, err := ParseEnvelope(ev.JSON)
		if err != nil {
			t.Fatalf("own envelope rejected: %v (%q)", err, ev.JSON)
		}
		if string(back.Data) != string(got) || back.OperationID != op {
			t.Fatalf("round trip changed data %q -> %q or op %q -> %q", got, back.Data, op, back.OperationID)
		}
	})
}
