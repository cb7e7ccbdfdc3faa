package observer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// History implements Broker. The course's sequence and the page are read
// together by one read-only function call, so Page.LastID (the poll ETag)
// always matches the events returned.
//
// Identical reads in flight at the same time (a reconnect storm: thousands
// of clients of one course resuming from the same id) share one Redis call;
// the page they get is shared, and must not be modified.
func (r *Redis) History(ctx context.Context, courseID string, after uint64, limit int) (Page, error) {
	if !ValidCourseID(courseID) {
		return Page{}, fmt.Errorf("%w: %q", ErrInvalidCourseID, truncate(courseID))
	}
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	// The key holds the last id this instance has announced for the course:
	// a caller that saw an event announced never joins a read that started
	// before it, and so always gets that event back.
	key := courseID + "\x00" + strconv.FormatUint(after, 10) + "\x00" + strconv.Itoa(limit) +
		"\x00" + strconv.FormatUint(r.announced(courseID), 10)
	ch := r.reads.DoChan(key, func() (any, error) {
		// Not the first caller's context: the others share the result.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyTimeout)
		defer cancel()
		return r.history(rctx, courseID, after, limit)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return Page{}, res.Err
		}
		return res.Val.(Page), nil
	case <-ctx.Done():
		return Page{}, ctx.Err()
	}
}

// announced returns the id of the last event this instance delivered to
// the course's listeners (0 when it has none).
func (r *Redis) announced(courseID string) uint64 {
	r.mu.Lock()
	c := r.courses[courseID]
	r.mu.Unlock()
	if c == nil {
		return 0
	}
	return c.lastDelivered()
}

// historyTimeout bounds one shared history read.
const historyTimeout = 10 * time.Second

func (r *Redis) history(ctx context.Context, courseID string, after uint64, limit int) (Page, error) {
	v, err := r.fcall(ctx, true, fnHistory, []string{courseID}, strconv.FormatUint(after, 10), limit)
	if err != nil {
		return Page{}, mapError(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 || len(arr)%2 != 1 {
		return Page{}, fmt.Errorf("%w: unexpected reply from %s", ErrUnavailable, fnHistory)
	}
	seq, ok := replyUint(arr[0])
	if !ok {
		return Page{}, fmt.Errorf("%w: unexpected sequence %v from %s", ErrUnavailable, arr[0], fnHistory)
	}
	p := Page{LastID: seq}
	switch {
	case after > seq:
		p.Reset = true
		return p, nil
	case after == seq:
		return p, nil
	}
	if len(arr) == 1 { // nothing retained after `after`, yet the course went on
		p.Reset = true
		return p, nil
	}
	// The page must continue `after` one id at a time: an id missing
	// (trimmed, lost with Redis' data, or an entry that is not ours) ends
	// the page there, and a page that cannot start is a reset: never a
	// silent gap.
	p.Events = make([]*Event, 0, len(arr)/2)
	prev := after
	for i := 1; i+1 < len(arr); i += 2 {
		ev := r.historyEntry(courseID, prev+1, arr[i], arr[i+1])
		if ev == nil {
			if len(p.Events) == 0 {
				p.Reset, p.Events = true, nil
			}
			return p, nil
		}
		p.Events = append(p.Events, ev)
		prev = ev.ID
	}
	return p, nil
}

// historyEntry is the event of one history stream entry (its id and
// envelope) when it is the course's event number want, else nil; a
// damaged envelope is counted as malformed.
func (r *Redis) historyEntry(courseID string, want uint64, entryID, envelope any) *Event {
	sid, _ := entryID.(string)
	env, _ := envelope.(string)
	id, err := ParseID(strings.TrimSuffix(sid, "-0"))
	if err != nil || id != want {
		return nil
	}
	ev, err := ParseEnvelope([]byte(env))
	switch {
	case err != nil:
		r.malformed("history", HistoryKey(courseID), env, err)
		return nil
	case ev.ID != id || ev.CourseID != courseID:
		r.malformed("history", HistoryKey(courseID), env, errors.New("the envelope does not match its stream entry"))
		return nil
	}
	return ev
}
