package observer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

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
