package auth

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/MicahParks/jwkset"
)

// fetchFailure is the kind of a failed fetch of the key set: a failure is
// logged when its kind differs from the last one, not on every retry or
// every token that names an unknown kid.
type fetchFailure string

// The kinds of fetch failures.
const (
	noFailure   fetchFailure = ""
	unreachable fetchFailure = "unreachable" // no answer: DNS, connection, timeout
	badStatus   fetchFailure = "status"      // an answer other than 200
	badDocument fetchFailure = "document"    // 200, but not a JSON Web Key Set
)

func kindOf(err error) fetchFailure {
	var netErr net.Error
	switch {
	case errors.Is(err, jwkset.ErrInvalidHTTPStatusCode):
		return badStatus
	case errors.As(err, &netErr), errors.Is(err, context.DeadlineExceeded):
		return unreachable
	}
	return badDocument
}

// failureLog logs the key set's fetches: the first that succeeds, the
// first failure of each kind in a row, and the success that ends them.
type failureLog struct {
	log *slog.Logger
	url string

	mu      sync.Mutex
	fetches int
	last    fetchFailure
}

func (f *failureLog) failed(err error) {
	kind := kindOf(err)
	f.mu.Lock()
	changed := kind != f.last
	f.last = kind
	f.mu.Unlock()
	if changed {
		f.log.Warn("the JWT key set cannot be fetched; tokens of its keys are refused until it is, and it is tried again",
			slog.String("url", f.url), slog.String("kind", string(kind)), slog.Any("err", err))
	}
}

func (f *failureLog) succeeded(keys int) {
	f.mu.Lock()
	f.fetches++
	first, recovered := f.fetches == 1, f.last != noFailure
	f.last = noFailure
	f.mu.Unlock()
	level := slog.LevelDebug
	if first || recovered {
		level = slog.LevelInfo
	}
	f.log.LogAttrs(context.Background(), level, "JWT key set fetched", slog.String("url", f.url), slog.Int("keys", keys))
}
