package observer

import (
	"context"
	"errors"
)

// Broker is where course events are stored and announced: the embedded
// Memory broker, or Redis shared by many instances. The stream, poller and
// publish handlers use only this interface.
//
// Every implementation keeps this promise, on which replay without gap or
// duplicate rests: an event is in the history before any listener sees it,
// and a listener registered by Subscribe (once Subscribe has returned) sees
// every event that a History call made after it does not return.
type Broker interface {
	// Publish validates m, assigns the course's next id, stores the event in
	// the bounded history and announces it to the course's listeners.
	// Invalid input returns an error wrapping one of the Err* validation
	// errors and stores nothing.
	Publish(ctx context.Context, m Message) (*Event, error)

	// History returns at most limit retained events of courseID with an id
	// greater than after, oldest first, together with the course's last id.
	// When events after `after` are no longer retained, or after is ahead of
	// the course, Page.Reset is set and Page.Events is empty.
	History(ctx context.Context, courseID string, after uint64, limit int) (Page, error)

	// LastID returns the id of the course's last event, 0 if it has none.
	LastID(ctx context.Context, courseID string) (uint64, error)

	// LastIDs returns LastID of each course, in order, in one read where
	// the broker can (one Redis round trip for them all): what a poll of
	// several courses asks first.
	LastIDs(ctx context.Context, courseIDs []string) ([]uint64, error)

	// Subscribe registers l for courseID's live events. It returns once the
	// registration is effective (for Redis: the channel is subscribed); the
	// returned function removes it. l must not block (see Listener).
	Subscribe(ctx context.Context, courseID string, l Listener) (unsubscribe func(), err error)
}

// Page is one read of a course's history. Its Events may be shared with
// other callers (and the events always are): read them, never modify them.
type Page struct {
	Events []*Event // ids greater than the requested one, oldest first
	LastID uint64   // the course's last id when the page was read
	Reset  bool     // the requested position can no longer be continued
}

// More reports whether events after the page's last one exist.
func (p Page) More() bool {
	return !p.Reset && len(p.Events) > 0 && p.Events[len(p.Events)-1].ID < p.LastID
}

// Readiness is implemented by brokers that can be not ready (Redis
// unreachable, pub/sub not subscribed). Ready returns nil when the broker
// can take and deliver events.
type Readiness interface {
	Ready(ctx context.Context) error
}

// ErrUnavailable is returned (wrapped) when the broker cannot be reached.
var ErrUnavailable = errors.New("broker unavailable")

// MaxPage bounds the limit of one History call.
const MaxPage = 1000
