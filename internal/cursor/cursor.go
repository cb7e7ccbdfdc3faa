// Package cursor is the position of a multi-course stream or poll: the
// course list of a request (?courses=a,b,...) and the cursor text that
// names, for every course of it, the last event id delivered
// ("<courseId>:<seq>,<courseId>:<seq>,..."), as the SSE id: line, the
// Last-Event-ID of a resume, and the poll's cursor= and answer.
//
// Both stream (SSE) and poller (polling) read and write it with one
// grammar and one set of error texts, and neither imports the other, so it
// lives here.
package cursor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"coursestream/observer"
)

// MaxCourses is the most distinct courses one request may list.
const MaxCourses = 64

// Errors, wrapped with what exactly was wrong.
var (
	// ErrCourses: the course list is empty, too long or holds an invalid id.
	ErrCourses = errors.New("invalid courses")
	// ErrMalformed: a cursor text does not have the cursor's form.
	ErrMalformed = errors.New("malformed cursor")
)

// ParseCourses reads the ?courses= values: ids separated by commas (the
// parameter may also repeat), 1 to MaxCourses distinct ones, each matching
// the course id pattern. A repeated id counts once, at its first place;
// the order is kept, as it is the order of the cursor.
func ParseCourses(values []string) ([]string, error) {
	var ids []string
	seen := make(map[string]struct{})
	for _, v := range values {
		for id := range strings.SplitSeq(v, ",") {
			if err := observer.CheckCourseID(id); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrCourses, err)
			}
			if _, dup := seen[id]; dup {
				continue
			}
			if len(ids) == MaxCourses {
				return nil, fmt.Errorf("%w: more than %d courses", ErrCourses, MaxCourses)
			}
			seen[id] = struct{}{}
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: courses= must list 1 to %d course ids", ErrCourses, MaxCourses)
	}
	return ids, nil
}

// Positions is what a cursor text says: the last id per course it names.
type Positions map[string]uint64

// maxText bounds a cursor text: 64 courses of the longest id and sequence,
// with their separators, and room for entries of courses not listed
// (ignored, but read).
const maxText = 4 * MaxCourses * (observer.MaxCourseIDLen + 1 + 20 + 1)

// Parse reads a cursor text: entries "<courseId>:<seq>" joined by ",".
// The sequence is the part after the last colon (course ids may hold
// colons, sequences are digits). An empty text names no course. An
// entry that is not of that form, an invalid id, or a course named twice
// is an error wrapping ErrMalformed.
func Parse(s string) (Positions, error) {
	if s == "" {
		return Positions{}, nil
	}
	if len(s) > maxText {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(s), maxText)
	}
	ps := make(Positions)
	for entry := range strings.SplitSeq(s, ",") {
		colon := strings.LastIndexByte(entry, ':')
		if colon < 0 {
			return nil, fmt.Errorf("%w: %.64q is not <courseId>:<seq>", ErrMalformed, entry)
		}
		id, seqText := entry[:colon], entry[colon+1:]
		if !observer.ValidCourseID(id) {
			return nil, fmt.Errorf("%w: %.64q is not a course id", ErrMalformed, id)
		}
		seq, err := observer.ParseID(seqText)
		if err != nil {
			return nil, fmt.Errorf("%w: course %s: %w", ErrMalformed, id, err)
		}
		if _, dup := ps[id]; dup {
			return nil, fmt.Errorf("%w: course %s named twice", ErrMalformed, id)
		}
		ps[id] = seq
	}
	return ps, nil
}

// Cursor is the position of a stream or poll in its courses: Seqs[i] is
// the last id delivered (or examined) of Courses[i]. The order of Courses
// is the request's, and it is the order of the text.
type Cursor struct {
	Courses []string
	Seqs    []uint64
}

// New returns the cursor of courses at the given positions: a course that
// ps does not name starts at 0.
func New(courses []string, ps Positions) Cursor {
	c := Cursor{Courses: courses, Seqs: make([]uint64, len(courses))}
	for i, id := range courses {
		c.Seqs[i] = ps[id]
	}
	return c
}

// Index returns the place of course in c, or -1.
func (c Cursor) Index(course string) int {
	for i, id := range c.Courses {
		if id == course {
			return i
		}
	}
	return -1
}

// Append appends the cursor text of c to b.
func (c Cursor) Append(b []byte) []byte {
	for i, id := range c.Courses {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, id...)
		b = append(b, ':')
		b = strconv.AppendUint(b, c.Seqs[i], 10)
	}
	return b
}

// String is the cursor text of c.
func (c Cursor) String() string { return string(c.Append(nil)) }
