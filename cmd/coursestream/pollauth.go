package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"coursestream/internal/auth"
	"coursestream/internal/cursor"
	"coursestream/internal/httpjson"
)

// errPollExpired is the cause of a multi-course poll ended by its
// token's expiry.
var errPollExpired = errors.New("token expired")

// coursesAuth guards GET /v1/poll?courses=...: the course list is checked
// first (400, as the poller would answer), then the token must allow
// every listed course (401; 403 naming the first refused one). The poll
// gets the token's expiry as its deadline. A nil Authorizer (open dev
// mode) lets everything through.
//
// It checks course by course with the single-course check; when the
// multi-course stream's (*auth.Authorizer).CheckCourses lands, this is
// where it goes.
func coursesAuth(a *auth.Authorizer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			courses, err := cursor.ParseCourses(r.URL.Query()["courses"])
			if err != nil {
				httpjson.Error(w, http.StatusBadRequest, err.Error())
				return
			}
			var exp time.Time
			for _, course := range courses {
				if exp, err = a.Check(r, course, auth.Subscribe); err != nil {
					break
				}
			}
			switch {
			case errors.Is(err, auth.ErrForbidden):
				httpjson.Error(w, http.StatusForbidden, err.Error())
				return
			case err != nil:
				w.Header().Set("WWW-Authenticate", `Bearer realm="coursestream"`)
				httpjson.Error(w, http.StatusUnauthorized, err.Error())
				return
			}
			if !exp.IsZero() {
				ctx, cancel := context.WithDeadlineCause(r.Context(), exp, errPollExpired)
				defer cancel()
				r = r.WithContext(ctx)
			}
			next.ServeHTTP(w, r)
		})
	}
}
