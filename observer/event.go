package observer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// The course events the editor publishes. Other types that match the type
// pattern are delivered too.
const (
	TypeChapterUpdateComplete = "chapter-update-complete"
	TypeChapterCreateComplete = "chapter-create-complete"
	TypeChapterDeleteComplete = "chapter-delete-complete"
	TypeVideoUpdateComplete   = "video-update-complete"
	TypeVideoDeleteComplete   = "video-delete-complete"
	TypeUploadProgress        = "upload-progress"
	TypeUploadComplete        = "upload-complete"

	// TypeReset is the SSE event name of a reset notice. It is reserved:
	// nobody may publish an event of this type.
	TypeReset = "reset"
)

// KnownTypes lists the seven course events, in the order of the contract.
var KnownTypes = []string{
	TypeChapterUpdateComplete, TypeChapterCreateComplete, TypeChapterDeleteComplete,
	TypeVideoUpdateComplete, TypeVideoDeleteComplete, TypeUploadProgress, TypeUploadComplete,
}

// Limits of the envelope fields.
const (
	MaxCourseIDLen    = 128
	MaxTypeLen        = 64
	MaxOperationIDLen = 128 // characters, not bytes
	// DefaultMaxEventBytes bounds the size of one encoded envelope.
	DefaultMaxEventBytes = 65536
)

// Validation errors. Callers branch on them with errors.Is; the wrapped
// message says what exactly was wrong.
var (
	ErrInvalidCourseID    = errors.New("invalid course id")
	ErrInvalidType        = errors.New("invalid event type")
	ErrInvalidData        = errors.New("invalid data")
	ErrInvalidOperationID = errors.New("invalid operation id")
	ErrTooLarge           = errors.New("event too large")
	ErrInvalidEnvelope    = errors.New("invalid envelope")
)

// ValidCourseID reports whether s matches ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$.
func ValidCourseID(s string) bool {
	if len(s) == 0 || len(s) > MaxCourseIDLen || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// ValidType reports whether s matches ^[a-z0-9][a-z0-9._-]{0,63}$.
func ValidType(s string) bool {
	if len(s) == 0 || len(s) > MaxTypeLen || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLowerAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || ('A' <= c && c <= 'Z') }

// Message is what a publisher hands in: an event before it has an id.
type Message struct {
	CourseID    string
	Type        string
	Data        json.RawMessage // any JSON value; empty means null
	OperationID string          // optional
}

// Event is a stored course event. It is immutable once created and shared
// by every listener: never modify one.
type Event struct {
	ID          uint64
	CourseID    string
	Type        string
	Data        json.RawMessage
	OperationID string
	Timestamp   int64 // unix milliseconds

	// JSON is the envelope, encoded once where the event was stored. SSE and
	// polling send exactly these bytes. It never contains a line break.
	JSON []byte

	// Frame is the event as one SSE frame, "id: <id>\nevent: <type>\n
	// data: <JSON>\n\n", built once per event and written as is to every
	// subscriber. JSON is a slice of it.
	Frame []byte

	// Chunk is Frame as one HTTP/1.1 chunk ("<hex length>\r\n" Frame
	// "\r\n"), for streams written straight to their connection. Frame is
	// a slice of it.
	Chunk []byte

	// Reset marks a notice rather than a stored event: the course's sequence
	// cannot continue from what listeners have seen (history lost). ID is
	// then the course's current last id and JSON is empty.
	Reset bool

	subject atomic.Pointer[string] // Subject, computed on first use
}

// Subject is what the event is about, for debouncing: data.chapterId,
// else data.videoId (as JSON text, so "1" and 1 differ, prefixed so that a
// chapter and a video of the same id differ), else "". It is computed once
// per event, however many subscribers ask.
func (e *Event) Subject() string {
	if p := e.subject.Load(); p != nil {
		return *p
	}
	s := subjectOf(e.Data)
	e.subject.Store(&s)
	return s
}

func subjectOf(data json.RawMessage) string {
	if len(data) == 0 || data[0] != '{' {
		return ""
	}
	var s struct {
		ChapterID json.RawMessage `json:"chapterId"`
		VideoID   json.RawMessage `json:"videoId"`
	}
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	switch {
	case len(s.ChapterID) > 0 && string(s.ChapterID) != "null":
		return "c" + string(s.ChapterID)
	case len(s.VideoID) > 0 && string(s.VideoID) != "null":
		return "v" + string(s.VideoID)
	}
	return ""
}

// LogValue implements slog.LogValuer; it leaves the data out.
func (e *Event) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("course", e.CourseID),
		slog.Uint64("id", e.ID),
		slog.String("type", e.Type),
		slog.String("operation", e.OperationID),
	)
}

// Normalize checks m and returns its data in the stored form: compact JSON
// (insignificant whitespace removed, value, digits and key order kept),
// "null" when absent. It does not check the size; see Encode.
func (m Message) Normalize() (json.RawMessage, error) {
	if !ValidCourseID(m.CourseID) {
		return nil, fmt.Errorf("%w: %q must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", ErrInvalidCourseID, truncate(m.CourseID))
	}
	if !ValidType(m.Type) {
		return nil, fmt.Errorf("%w: %q must match ^[a-z0-9][a-z0-9._-]{0,63}$", ErrInvalidType, truncate(m.Type))
	}
	if m.Type == TypeReset {
		return nil, fmt.Errorf("%w: %q is reserved for reset notices", ErrInvalidType, m.Type)
	}
	if err := ValidOperationID(m.OperationID); err != nil {
		return nil, err
	}
	data := m.Data
	if len(bytes.TrimSpace(data)) == 0 {
		return json.RawMessage("null"), nil
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrInvalidData)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%w: not a JSON value", ErrInvalidData)
	}
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := json.Compact(&buf, data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidData, err)
	}
	return buf.Bytes(), nil
}

// ValidOperationID checks an optional operation id: valid UTF-8 of at most
// 128 characters.
func ValidOperationID(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidOperationID)
	}
	if n := utf8.RuneCountInString(s); n > MaxOperationIDLen {
		return fmt.Errorf("%w: %d characters, at most %d", ErrInvalidOperationID, n, MaxOperationIDLen)
	}
	return nil
}

// NewEvent builds the stored event for a message that passed Normalize,
// encoding its envelope once. It returns ErrTooLarge when the envelope
// exceeds maxBytes (0 means DefaultMaxEventBytes).
func NewEvent(m Message, data json.RawMessage, id uint64, timestamp int64, maxBytes int) (*Event, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxEventBytes
	}
	ev := &Event{
		ID: id, CourseID: m.CourseID, Type: m.Type, Data: data,
		OperationID: m.OperationID, Timestamp: timestamp,
	}
	frame := appendFrameHead(make([]byte, chunkReserve, chunkReserve+128+len(m.CourseID)+2*len(m.Type)+len(data)+len(m.OperationID)), ev)
	start := len(frame)
	frame = AppendEnvelope(frame, ev)
	if n := len(frame) - start; n > maxBytes {
		return nil, fmt.Errorf("%w: the envelope is %d bytes, at most %d", ErrTooLarge, n, maxBytes)
	}
	ev.setFrame(frame, start)
	ev.Data = ev.JSON[bytes.Index(ev.JSON, []byte(`"data":`))+len(`"data":`):][:len(data)]
	return ev, nil
}

// appendFrameHead appends the SSE lines before the data: id and event.
func appendFrameHead(b []byte, ev *Event) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, ev.ID, 10)
	b = append(b, "\nevent: "...)
	b = append(b, ev.Type...)
	return append(b, "\ndata: "...)
}

// setFrame finishes frame (head plus envelope from start, after a chunk
// header reserve of chunkReserve bytes) and points Chunk, Frame and JSON
// into it.
func (ev *Event) setFrame(buf []byte, start int) {
	end := len(buf)
	buf = append(buf, "\n\n\r\n"...)
	frame := buf[chunkReserve : len(buf)-2]
	// The chunk header goes right before the frame, in the reserve.
	var hdr [chunkReserve]byte
	h := strconv.AppendUint(hdr[:0], uint64(len(frame)), 16)
	h = append(h, '\r', '\n')
	at := chunkReserve - len(h)
	copy(buf[at:], h)
	ev.Chunk = buf[at:]
	ev.Frame = frame[:len(frame):len(frame)]
	ev.JSON = buf[start:end:end]
}

// chunkReserve is room before a frame for its chunk header: up to 16 hex
// digits and CRLF.
const chunkReserve = 18

// AppendEnvelope appends the envelope JSON of ev to b: the contract's field
// order, operationId omitted when empty, data as stored.
func AppendEnvelope(b []byte, ev *Event) []byte {
	b = append(b, `{"id":"`...)
	b = strconv.AppendUint(b, ev.ID, 10)
	b = append(b, `","courseId":"`...)
	b = append(b, ev.CourseID...) // the pattern needs no escaping
	b = append(b, `","type":"`...)
	b = append(b, ev.Type...)
	b = append(b, `","data":`...)
	b = append(b, ev.Data...)
	if ev.OperationID != "" {
		b = append(b, `,"operationId":`...)
		b = appendJSONString(b, ev.OperationID)
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ev.Timestamp, 10)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// envelope is the wire form of Event for decoding.
type envelope struct {
	ID          *string         `json:"id"`
	CourseID    *string         `json:"courseId"`
	Type        *string         `json:"type"`
	Data        json.RawMessage `json:"data"`
	OperationID *string         `json:"operationId"`
	Timestamp   *int64          `json:"timestamp"`
}

// ParseEnvelope decodes an envelope received from elsewhere (a Redis
// channel or history stream) and checks every field. The returned event keeps
// b as its JSON after compacting away any line break, so it is sent as is.
func ParseEnvelope(b []byte) (*Event, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrInvalidEnvelope)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEnvelope, err)
	}
	switch {
	case env.ID == nil || env.CourseID == nil || env.Type == nil || env.Timestamp == nil || env.Data == nil:
		return nil, fmt.Errorf("%w: id, courseId, type, data and timestamp are required", ErrInvalidEnvelope)
	case !ValidCourseID(*env.CourseID):
		return nil, fmt.Errorf("%w: %w", ErrInvalidEnvelope, ErrInvalidCourseID)
	case !ValidType(*env.Type) || *env.Type == TypeReset:
		return nil, fmt.Errorf("%w: %w", ErrInvalidEnvelope, ErrInvalidType)
	}
	id, err := ParseID(*env.ID)
	if err != nil || id == 0 {
		return nil, fmt.Errorf("%w: id %q is not a positive decimal", ErrInvalidEnvelope, truncate(*env.ID))
	}
	ev := &Event{ID: id, CourseID: *env.CourseID, Type: *env.Type, Data: env.Data, Timestamp: *env.Timestamp}
	if env.OperationID != nil {
		if err := ValidOperationID(*env.OperationID); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEnvelope, err)
		}
		ev.OperationID = *env.OperationID
	}
	if bytes.ContainsAny(b, "\r\n") {
		var buf bytes.Buffer
		_ = json.Compact(&buf, b) // b is valid JSON: Unmarshal succeeded
		b = buf.Bytes()
	}
	frame := appendFrameHead(make([]byte, chunkReserve, chunkReserve+48+len(ev.Type)+len(b)), ev)
	start := len(frame)
	ev.setFrame(append(frame, b...), start)
	return ev, nil
}

// ParseID parses a decimal event id as used in Last-Event-ID, after and the
// SSE id field. Only plain digits are accepted.
func ParseID(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("id %q: not a decimal number", truncate(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("id %q: not a decimal number", truncate(s))
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// truncate keeps error messages short whatever the input.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// Types is a set of event types a client asked for; nil means all.
type Types map[string]struct{}

// ParseTypes reads the ?types= values (comma separated, the parameter may
// repeat). No types at all means every type (nil).
func ParseTypes(values []string) (Types, error) {
	var ts Types
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !ValidType(t) {
				return nil, fmt.Errorf("%w: %q in types", ErrInvalidType, truncate(t))
			}
			if ts == nil {
				ts = make(Types)
			}
			ts[t] = struct{}{}
		}
	}
	return ts, nil
}

// Has reports whether typ is in the set; every type is in a nil set.
func (ts Types) Has(typ string) bool {
	if ts == nil {
		return true
	}
	_, ok := ts[typ]
	return ok
}
