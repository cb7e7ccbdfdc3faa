// Package typefilter is the ?types= filter of a subscription: the set of
// event types a client asked for. Both stream (SSE) and poller (polling)
// read it from their requests and apply it to each event, with one
// meaning and one error text; it is a request notion, not the broker's,
// so it lives here rather than in observer, and neither delivery package
// imports the other.
package typefilter

import (
	"fmt"
	"strings"

	"coursestream/observer"
)

// Set is a set of event types a client asked for; nil means all.
type Set map[string]struct{}

// Parse reads the ?types= values (comma separated, the parameter may
// repeat). No types at all means every type (nil). An invalid type is an
// error wrapping observer.ErrInvalidType.
func Parse(values []string) (Set, error) {
	var ts Set
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !observer.ValidType(t) {
				return nil, fmt.Errorf("%w: %.64q in types", observer.ErrInvalidType, t)
			}
			if ts == nil {
				ts = make(Set)
			}
			ts[t] = struct{}{}
		}
	}
	return ts, nil
}

// Has reports whether typ is in the set; every type is in a nil set.
func (ts Set) Has(typ string) bool {
	if ts == nil {
		return true
	}
	_, ok := ts[typ]
	return ok
}

// Clone returns a set equal to ts that shares nothing with it (nil for
// nil). It copies key by key: maps.Clone hides its argument from the
// escape analysis, which then moves whatever holds ts to the heap.
func (ts Set) Clone() Set {
	if ts == nil {
		return nil
	}
	out := make(Set, len(ts))
	for t := range ts {
		out[t] = struct{}{}
	}
	return out
}
