package observer

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis side of the contract: key names (every key of a course shares
// the hash tag {courseId}), the function library and its functions.
const (
	// LibraryName is the name of the Redis function library.
	LibraryName = "coursestream"
	// FunctionPublish is what backends call:
	// FCALL coursestream_publish 1 <courseId> <type> <data JSON> [<operationId>].
	FunctionPublish = "coursestream_publish"

	fnPublishEvent = "coursestream_publish_event" // same path, answers the envelope too
	fnHistory      = "coursestream_history"       // read-only: sequence + page, one snapshot
	fnConfig       = "coursestream_config"        // read-only: the limits the library holds

	// ErrorPrefix starts the error reply of every refused FCALL.
	ErrorPrefix = "ERR coursestream: "
)

// SeqKey is the key of a course's sequence (it never expires).
func SeqKey(courseID string) string { return "coursestream:{" + courseID + "}:seq" }

// HistoryKey is the key of a course's history stream (entry ids <seq>-0).
func HistoryKey(courseID string) string { return "coursestream:{" + courseID + "}:history" }

// ChannelName is the pub/sub channel of a course (message: the envelope).
func ChannelName(courseID string) string { return "coursestream:{" + courseID + "}:events" }

// courseOfChannel returns the course id of a channel named by ChannelName.
func courseOfChannel(ch string) (string, bool) {
	const pre, suf = "coursestream:{", "}:events"
	if !strings.HasPrefix(ch, pre) || !strings.HasSuffix(ch, suf) || len(ch) <= len(pre)+len(suf) {
		return "", false
	}
	id := ch[len(pre) : len(ch)-len(suf)]
	return id, ValidCourseID(id)
}

//go:embed redis.lua
var librarySource string

// libraryConfig is what is written into the library when it is loaded.
type libraryConfig struct {
	History       int
	HistoryTTL    time.Duration
	MaxEventBytes int
	Sharded       bool // SPUBLISH (Redis Cluster) instead of PUBLISH
}

// fingerprint is what coursestream_config answers for this configuration.
func (c libraryConfig) fingerprint() string {
	pub := "publish"
	if c.Sharded {
		pub = "spublish"
	}
	return fmt.Sprintf("history=%d history-ttl=%s max-event-bytes=%d pubsub=%s", c.History, c.HistoryTTL, c.MaxEventBytes, pub)
}

// renderLibrary returns the library source with the limits written in.
func renderLibrary(c libraryConfig) string {
	pub := "PUBLISH"
	if c.Sharded {
		pub = "SPUBLISH"
	}
	ttl := c.HistoryTTL.Milliseconds()
	if ttl < 1 {
		ttl = 1
	}
	return strings.NewReplacer(
		"__HISTORY_TTL_MS__", strconv.FormatInt(ttl, 10),
		"__HISTORY__", strconv.Itoa(c.History),
		"__MAX_EVENT_BYTES__", strconv.Itoa(c.MaxEventBytes),
		"__PUBLISH__", pub,
		"__CONFIG__", c.fingerprint(),
	).Replace(librarySource)
}

// isFunctionMissing reports a call to a function Redis does not have (it
// restarted without persistence, or FUNCTION FLUSH ran).
func isFunctionMissing(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(err.Error(), "Function not found")
}

// The validation errors of the library, by the reason that follows
// ErrorPrefix, mapped to the same sentinels as the embedded broker's.
var libraryErrors = []struct {
	reason string
	err    error
}{
	{"invalid course id", ErrInvalidCourseID},
	{"invalid event type", ErrInvalidType},
	{"invalid data", ErrInvalidData},
	{"invalid operation id", ErrInvalidOperationID},
	{"event too large", ErrTooLarge},
}

// ErrRefused is wrapped by an error reply of the library that is not one of
// the field errors (wrong number of arguments, a damaged sequence key).
var ErrRefused = errors.New("refused by the coursestream function")

// mapError turns a Redis error into the observer's errors: the library's
// refusals into the validation sentinels (so HTTP answers 400/413 as with
// the embedded broker), anything else into ErrUnavailable.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := err.Error()
		if rest, ok := strings.CutPrefix(msg, ErrorPrefix); ok {
			for _, le := range libraryErrors {
				if detail, ok := strings.CutPrefix(rest, le.reason); ok {
					return fmt.Errorf("%w%s", le.err, detail)
				}
			}
			return fmt.Errorf("%w: %s", ErrRefused, rest)
		}
	}
	return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
}

// fcallArgs are the FCALL arguments of a message, as the contract lists them.
func fcallArgs(m Message, data []byte) []any {
	args := []any{m.Type, data}
	if m.OperationID != "" {
		args = append(args, m.OperationID)
	}
	return args
}

// FunctionCaller is what PublishFCALL needs of a go-redis client (a
// *redis.Client, *redis.ClusterClient or pipeline).
type FunctionCaller interface {
	FCall(ctx context.Context, function string, keys []string, args ...any) *redis.Cmd
}

// PublishFCALL publishes m with FCALL coursestream_publish on c, exactly as
// a backend does, and returns the id. m.Data is sent as written; none
// (empty or blank) is sent as null, as Message.Normalize reads it, since
// the function wants a JSON value. Refusals wrap the same Err* sentinels as
// Message.Normalize; a Redis without the library answers an error saying so.
func PublishFCALL(ctx context.Context, c FunctionCaller, m Message) (uint64, error) {
	data := []byte(m.Data)
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("null")
	}
	res, err := c.FCall(ctx, FunctionPublish, []string{m.CourseID}, fcallArgs(m, data)...).Int64()
	if isFunctionMissing(err) {
		return 0, fmt.Errorf("%w: the %s function library is not loaded in this Redis: start coursestream with --redis-url first", ErrUnavailable, LibraryName)
	}
	if err != nil {
		return 0, mapError(err)
	}
	return uint64(res), nil
}

// slotOf is the Redis Cluster hash slot of a key (CRC16/XMODEM of the hash
// tag, or of the whole key without one, modulo 16384).
func slotOf(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
