package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"unicode/utf8"

	"coursestream/internal/httpjson"
	"coursestream/observer"
)

// PublishConfig configures the HTTP publish endpoint.
type PublishConfig struct {
	MaxEventBytes int // the largest envelope (default observer.DefaultMaxEventBytes)
	Logger        *slog.Logger
}

// Publisher serves POST /v1/courses/{courseId}/events for backends without
// Redis access: the body {"type","data","operationId"} becomes an event
// through the broker's Publish, the same path as a Redis FCALL.
type Publisher struct {
	broker observer.Broker
	cfg    PublishConfig
}

// NewPublisher returns the publish handler.
func NewPublisher(b observer.Broker, cfg PublishConfig) *Publisher {
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = observer.DefaultMaxEventBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Publisher{broker: b, cfg: cfg}
}

// publishBody is the request body. Pointers tell absent from empty.
type publishBody struct {
	Type        *string         `json:"type"`
	Data        json.RawMessage `json:"data"`
	OperationID *string         `json:"operationId"`
}

// ServeHTTP implements http.Handler.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	course := r.PathValue("courseId")
	if err := observer.CheckCourseID(course); err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	// The body holds the data plus a little; whitespace may make it larger
	// than the envelope, so allow twice the limit before refusing unread.
	limit := int64(2*p.cfg.MaxEventBytes + 4096)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			httpjson.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("event too large: the body is over %d bytes", limit))
			return
		}
		httpjson.Error(w, http.StatusBadRequest, "reading the body failed")
		return
	}
	msg, err := decodePublish(course, body)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	ev, err := p.broker.Publish(r.Context(), msg)
	switch {
	case errors.Is(err, observer.ErrTooLarge):
		httpjson.Error(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case isInvalid(err):
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		p.cfg.Logger.Warn("publish failed", slog.String("course", course), slog.Any("err", err))
		w.Header().Set("Retry-After", "1")
		httpjson.Error(w, http.StatusServiceUnavailable, "publishing is unavailable right now; retry")
		return
	}
	httpjson.Write(w, http.StatusCreated, struct {
		ID string `json:"id"`
	}{strconv.FormatUint(ev.ID, 10)})
}

// decodePublish turns a request body into a message, with a clear error.
func decodePublish(course string, body []byte) (observer.Message, error) {
	if !utf8.Valid(body) {
		return observer.Message{}, errors.New("invalid body: not valid UTF-8")
	}
	var b publishBody
	if err := json.Unmarshal(body, &b); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return observer.Message{}, fmt.Errorf("invalid body: %s must be a string", typeErr.Field)
		}
		return observer.Message{}, fmt.Errorf("invalid body: a JSON object {\"type\",\"data\",\"operationId\"} is required: %v", err)
	}
	if b.Type == nil {
		return observer.Message{}, errors.New("invalid body: type is required")
	}
	m := observer.Message{CourseID: course, Type: *b.Type, Data: b.Data}
	if b.OperationID != nil {
		m.OperationID = *b.OperationID
	}
	return m, nil
}

func isInvalid(err error) bool {
	for _, e := range []error{observer.ErrInvalidCourseID, observer.ErrInvalidType, observer.ErrInvalidData, observer.ErrInvalidOperationID} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
