package observer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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

	// TypeReset is the type of a reset notice (Event.Reset): it is
	// reserved, nobody may publish an event of this type.
	TypeReset = "reset"
)

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

// courseIDPattern is what a course id must match, for error messages.
const courseIDPattern = "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"

// CheckCourseID returns nil when s is a valid course id, else an error
// wrapping ErrInvalidCourseID that quotes s and names the pattern. It is the
// one check of a request's course id.
func CheckCourseID(s string) error {
	if !ValidCourseID(s) {
		return fmt.Errorf("%w %q: it must match %s", ErrInvalidCourseID, truncate(s), courseIDPattern)
	}
	return nil
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

	// JSON is the envelope, encoded once where the event was stored. Redis
	// stores it, and SSE and polling send exactly these bytes. It never
	// contains a line break.
	JSON []byte

	// Reset marks a notice rather than a stored event: the course's sequence
	// cannot continue from what listeners have seen (history lost). ID is
	// then the course's current last id and JSON is empty.
	Reset bool
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
	if err := CheckCourseID(m.CourseID); err != nil {
		return nil, err
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
	js := AppendEnvelope(make([]byte, 0, 96+len(m.CourseID)+len(m.Type)+len(data)+len(m.OperationID)), ev)
	if len(js) > maxBytes {
		return nil, fmt.Errorf("%w: the envelope is %d bytes, at most %d", ErrTooLarge, len(js), maxBytes)
	}
	ev.JSON = js[:len(js):len(js)]
	ev.Data = ev.JSON[bytes.Index(ev.JSON, []byte(`"data":`))+len(`"data":`):][:len(data)]
	return ev, nil
}

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
// a copy of b as its JSON, any line break compacted away, so it is sent as
// is.
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
	} else {
		b = bytes.Clone(b) // the caller may reuse b
	}
	ev.JSON = b[:len(b):len(b)]
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
