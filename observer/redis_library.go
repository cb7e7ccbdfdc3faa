package observer

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The function library's side of the Redis contract (the key names are in
// redis_keys.go): the library, its functions and their error replies.
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

// eachNode runs f on the one Redis, or on every master of a Cluster (a
// function only touches the keys of its own node).
func (r *Redis) eachNode(ctx context.Context, f func(ctx context.Context, node *redis.Client) error) error {
	if r.cluster != nil {
		return r.cluster.ForEachMaster(ctx, f)
	}
	return f(ctx, r.single)
}

// loadLibrary loads the library with FUNCTION LOAD REPLACE on every node.
func (r *Redis) loadLibrary(ctx context.Context) error { return r.eachNode(ctx, r.loadOn) }

// loadOn loads the library on one node.
func (r *Redis) loadOn(ctx context.Context, node *redis.Client) error {
	if err := node.FunctionLoadReplace(ctx, r.source).Err(); err != nil {
		return fmt.Errorf("FUNCTION LOAD REPLACE on %s: %w", node.Options().Addr, err)
	}
	return nil
}

// repairLibrary loads the library again where Redis lost it (it restarted
// without persistence, or FUNCTION FLUSH ran): on node, or on every node
// when node is nil. The sequences of the courses with local listeners are
// raised first, so that no publish can reuse an id a client already has.
func (r *Redis) repairLibrary(ctx context.Context, node *redis.Client) error {
	attrs := []any{}
	if node != nil {
		attrs = append(attrs, slog.String("node", node.Options().Addr))
	}
	r.log.Info("redis: the function library is missing; loading it again", attrs...)
	r.raiseSequences(ctx)
	if node != nil {
		return r.loadOn(ctx, node)
	}
	return r.loadLibrary(ctx)
}

// checkLibrary asks every node for the library's configuration. A missing
// library is loaded again when repair is set, else reported; a library
// loaded by an instance with other limits is logged once.
func (r *Redis) checkLibrary(ctx context.Context, repair bool) error {
	return r.eachNode(ctx, func(ctx context.Context, node *redis.Client) error {
		got, err := node.FCallRO(ctx, fnConfig, nil).Text()
		switch {
		case isFunctionMissing(err) && repair:
			return r.repairLibrary(ctx, node)
		case isFunctionMissing(err):
			return fmt.Errorf("%w: the %s function library is not loaded on %s", ErrUnavailable, LibraryName, node.Options().Addr)
		case err != nil:
			return mapError(err)
		case got != r.lib.fingerprint() && r.noteOnce("library:"+got):
			r.log.Warn("redis: the function library was loaded by an instance with other limits; instances sharing a Redis must use the same --history, --history-ttl and --max-event-bytes",
				slog.String("node", node.Options().Addr), slog.String("loaded", got), slog.String("ours", r.lib.fingerprint()))
		}
		return nil
	})
}

// fcall calls a library function; when Redis no longer has the library
// it loads it again and retries once.
func (r *Redis) fcall(ctx context.Context, readOnly bool, fn string, keys []string, args ...any) (any, error) {
	call := r.rdb.FCall
	if readOnly {
		call = r.rdb.FCallRO
	}
	v, err := call(ctx, fn, keys, args...).Result()
	if isFunctionMissing(err) {
		if err := r.repairLibrary(ctx, nil); err != nil {
			return nil, err
		}
		v, err = call(ctx, fn, keys, args...).Result()
	}
	return v, err
}
