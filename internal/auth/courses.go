package auth

import (
	"fmt"
	"net/http"
	"time"
)

// CheckCourses authorizes r for every one of courses (a multi-course
// stream or poll: ?courses=a,b,...), reading the token once. On success it
// returns the token's expiry (zero when it has none). When the token does
// not allow a course, refused is the first such course in the order of
// courses and err wraps ErrForbidden (403, naming it); a missing or bad
// token wraps ErrUnauthorized (401) with refused empty. The course ids are
// the caller's to validate first (400).
func (a *Authorizer) CheckCourses(r *http.Request, courses []string, access Access) (expiry time.Time, refused string, err error) {
	tok := TokenFrom(r)
	if tok == "" {
		return time.Time{}, "", fmt.Errorf("%w: send it as Authorization: Bearer, ?token= or the %s cookie", ErrUnauthorized, CookieName)
	}
	c, err := a.parse(r.Context(), tok) // a key-set refetch is bounded by the request
	if err != nil {
		return time.Time{}, "", err
	}
	list := c.Courses
	if access == Publish {
		list = c.Publish
	}
	for _, course := range courses {
		if list.Allows(course) {
			continue
		}
		if access == Publish {
			return time.Time{}, course, fmt.Errorf("%w: no publish claim for course %s", ErrForbidden, course)
		}
		return time.Time{}, course, fmt.Errorf("%w: course %s is not in the courses claim", ErrForbidden, course)
	}
	if c.ExpiresAt != nil {
		expiry = c.ExpiresAt.Time
	}
	return expiry, "", nil
}
