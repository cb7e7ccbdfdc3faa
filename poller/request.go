package poller

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"coursestream/internal/cursor"
	"coursestream/internal/typefilter"
	"coursestream/observer"
)

// shape is the endpoint a request came to. It decides the request's
// position parameter, its ETag and the form of its body; everything else
// (reads, the page cap, long-polls, If-None-Match) is one code path.
type shape int

const (
	// oneCourse: GET /v1/courses/{courseId}/poll?after=<seq>.
	oneCourse shape = iota
	// manyCourses: GET /v1/poll?courses=<id>,...&cursor=<cursor>.
	manyCourses
)

// request is a parsed poll request: the courses, in the request's order,
// and the position in each (the single-course poll is a cursor of one).
type request struct {
	shape shape
	at    cursor.Cursor
	types typefilter.Set
	wait  time.Duration
}

// single holds the position of a single-course request, so that the
// hottest request allocates no cursor: the caller's, on its stack.
type single struct {
	course [1]string
	seq    [1]uint64
}

// parse reads a request of shape s; a single-course one is held in one.
// The single-course id is checked before the query is read, as the
// route's authorization does.
func parse(r *http.Request, s shape, one *single) (request, error) {
	req := request{shape: s}
	if s == oneCourse {
		one.course[0] = r.PathValue("courseId")
		if err := observer.CheckCourseID(one.course[0]); err != nil {
			return req, err
		}
		req.at = cursor.Cursor{Courses: one.course[:], Seqs: one.seq[:]}
	}
	// One pass over the query: polls are the hottest request there is,
	// and url.ParseQuery builds a map for three parameters. The first
	// after, cursor and wait count, as with url.Values.Get; types and
	// courses may repeat.
	var typeValues, courseValues []string
	var cursorText string
	seenAfter, seenCursor, seenWait := false, false, false
	for rest := r.URL.RawQuery; rest != ""; {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			k, _ = url.QueryUnescape(k)
		}
		switch k {
		case "types", "wait":
		case "after":
			if s != oneCourse || seenAfter {
				continue
			}
		case "courses":
			if s != manyCourses {
				continue
			}
		case "cursor":
			if s != manyCourses || seenCursor {
				continue
			}
		default:
			continue
		}
		if strings.ContainsAny(v, "%+") {
			var err error
			if v, err = url.QueryUnescape(v); err != nil {
				return req, fmt.Errorf("invalid query: %v", err)
			}
		}
		switch k {
		case "after":
			seenAfter = true
			var err error
			if req.at.Seqs[0], err = observer.ParseID(v); err != nil {
				return req, fmt.Errorf("invalid after %.32q: a decimal event id is required", v)
			}
		case "courses":
			courseValues = append(courseValues, v)
		case "cursor":
			seenCursor, cursorText = true, v
		case "types":
			typeValues = append(typeValues, v)
		case "wait":
			if seenWait || v == "" {
				continue
			}
			seenWait = true
			d, err := parseWait(v)
			if err != nil {
				return req, err
			}
			req.wait = d
		}
	}
	if s == manyCourses {
		courses, err := cursor.ParseCourses(courseValues)
		if err != nil {
			return req, err
		}
		ps, err := cursor.Parse(cursorText)
		if err != nil {
			return req, err
		}
		req.at = cursor.New(courses, ps)
	}
	var err error
	if req.types, err = typefilter.Parse(typeValues); err != nil {
		return req, err
	}
	return req, nil
}

// parseWait accepts a Go duration ("25s", "500ms") or whole seconds ("25").
func parseWait(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseUint(v, 10, 32)
		if nerr != nil {
			d = -1
		} else {
			d = time.Duration(n) * time.Second
		}
	}
	if d < 0 || d > MaxWait {
		return 0, fmt.Errorf("invalid wait %.32q: a duration such as 25s, at most %s", v, MaxWait)
	}
	return d, nil
}
