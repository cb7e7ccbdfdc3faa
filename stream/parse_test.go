package stream

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"coursestream/observer"
)

// FuzzParseRequest feeds arbitrary course ids, queries and Last-Event-ID
// headers to the request parser: it never panics, and what it accepts is
// within the contract's bounds.
func FuzzParseRequest(f *testing.F) {
	f.Add("course-123", "types=a,b&coalesce=500ms&lastEventId=7", "12")
	f.Add("c", "coalesce=10s", "1700000000000-0")
	f.Add("x", "types=&types=,,&coalesce=0", "")
	f.Add("-", "%zz", "\x00")
	f.Fuzz(func(t *testing.T, course, query, lastID string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.RawQuery = query
		r.SetPathValue("courseId", course)
		r.Header.Set("Last-Event-ID", lastID)
		req, err := parseRequest(r)
		if err != nil {
			return
		}
		if len(req.courses) != 1 || !observer.ValidCourseID(req.courses[0]) || req.coalesce < 0 || req.coalesce > MaxCoalesce {
			t.Fatalf("accepted %+v", req)
		}
		for typ := range req.types {
			if !observer.ValidType(typ) {
				t.Fatalf("accepted type %q", typ)
			}
		}
		q, _ := url.ParseQuery(query)
		if lastID == "" && q.Get("lastEventId") == "" && req.resume {
			t.Fatalf("resume without an id: %+v", req)
		}
	})
}

// FuzzParseCoursesRequest feeds arbitrary queries and Last-Event-ID
// headers to the multi-course parser: it never panics; what it accepts
// lists 1 to 64 distinct valid courses, and a Last-Event-ID it cannot read
// is a reset of every course, never an error.
func FuzzParseCoursesRequest(f *testing.F) {
	f.Add("courses=a,b&types=x&dispatch=message", "a:1,b:2")
	f.Add("courses=a&courses=b,a&coalesce=1s", "17")
	f.Add("courses=,", "a:")
	f.Add("courses=a:b", "a:b:3,zz:0")
	f.Fuzz(func(t *testing.T, query, lastID string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.RawQuery = query
		r.Header.Set("Last-Event-ID", lastID)
		req, err := parseCoursesRequest(r)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, c := range req.courses {
			if !observer.ValidCourseID(c) || seen[c] {
				t.Fatalf("accepted courses %q", req.courses)
			}
			seen[c] = true
		}
		if len(req.courses) < 1 || len(req.courses) > 64 || req.ids != idCursor {
			t.Fatalf("accepted %+v", req)
		}
		if lastID != "" && !req.resume {
			t.Fatalf("Last-Event-ID %q ignored", lastID)
		}
	})
}
