package poller

import (
	"strconv"

	"coursestream/internal/cursor"
	"coursestream/observer"
)

// answer is the outcome of a poll: where it leaves the client in each
// course, and the events and resets on the way there.
type answer struct {
	next     []uint64          // per course of the request: the position to send next time
	events   []*observer.Event // after the types filter, grouped by course in request order
	resets   []int             // the courses (request indexes) whose position could not be continued
	examined int               // events read, before the types filter
	more     bool              // the page cap cut the answer short
}

// add takes course i's history page: its events that pass the filter,
// and its position, which is the course's last id, or the last event
// examined when the page was cut short (limit reached).
func (a *answer) add(i int, pg observer.Page, req request) {
	a.next[i] = pg.LastID
	if pg.Reset {
		a.resets = append(a.resets, i)
		return
	}
	a.examined += len(pg.Events)
	for _, ev := range pg.Events {
		if req.types.Has(ev.Type) {
			a.events = append(a.events, ev)
		}
	}
	if pg.More() {
		a.more = true
		a.next[i] = pg.Events[len(pg.Events)-1].ID
	}
}

// found reports whether the answer moves the client: a long-poll ends on
// it. An event filtered out by ?types= moves the position too.
func (a *answer) found() bool { return a.examined > 0 || len(a.resets) > 0 }

// etag is the answer's entity tag.
func (a *answer) etag(req request) string { return req.shape.etag(req.at.Courses, a.next) }

// etag is the entity tag of a request of this shape whose answer leaves
// the client at next.
func (s shape) etag(courses []string, next []uint64) string {
	if s == oneCourse {
		return ETag(courses[0], next[0])
	}
	return CursorETag(cursor.Cursor{Courses: courses, Seqs: next})
}

// size is a capacity for the body, so that it is built with one allocation.
func (a *answer) size(req request) int {
	n := 96
	for _, id := range req.at.Courses {
		n += len(id) + 22
	}
	n += len(a.resets) * (observer.MaxCourseIDLen + 40)
	for _, ev := range a.events {
		n += len(ev.JSON) + 1
	}
	return n
}

// appendJSON appends the body of a 200; envelopes go out as the stored text.
//
//	one course:   {"courseId":..,"lastEventId":"<seq>","events":[..],"more":false,"reset":false}
//	many courses: {"cursor":"<cursor>","events":[..],"more":false,"resets":[{"courseId":..,"lastEventId":".."}]}
func (a *answer) appendJSON(b []byte, req request) []byte {
	if req.shape == oneCourse {
		b = append(b, `{"courseId":"`...)
		b = append(b, req.at.Courses[0]...)
		b = append(b, `","lastEventId":"`...)
		b = strconv.AppendUint(b, a.next[0], 10)
		b = append(b, '"')
	} else {
		b = append(b, `{"cursor":"`...)
		b = cursor.Cursor{Courses: req.at.Courses, Seqs: a.next}.Append(b)
		b = append(b, '"')
	}
	b = append(b, `,"events":[`...)
	for i, ev := range a.events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ev.JSON...)
	}
	b = append(b, `],"more":`...)
	b = strconv.AppendBool(b, a.more)
	if req.shape == oneCourse {
		b = append(b, `,"reset":`...)
		b = strconv.AppendBool(b, len(a.resets) > 0)
		return append(b, "}\n"...)
	}
	b = append(b, `,"resets":[`...)
	for n, i := range a.resets {
		if n > 0 {
			b = append(b, ',')
		}
		// Course ids and sequences need no JSON escaping.
		b = append(b, `{"courseId":"`...)
		b = append(b, req.at.Courses[i]...)
		b = append(b, `","lastEventId":"`...)
		b = strconv.AppendUint(b, a.next[i], 10)
		b = append(b, `"}`...)
	}
	return append(b, "]}\n"...)
}
