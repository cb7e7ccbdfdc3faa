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

// coursesAuth guards a route of several courses (?courses=a,b,...) as
// auth.Middleware guards a /v1/courses/{courseId}/... one: the course list
// is validated first (400), then the token must allow every listed course
// (401, or 403 naming one refused course). A nil Authorizer (open dev
// mode) lets everything through. The token's expiry reaches the request
// through expire (nil: as the context's deadline).
func coursesAuth(a *auth.Authorizer, access auth.Access, expire func(context.Context, time.Time) context.Context) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, cancel := admitCourses(a, w, r, access, expire)
			if r == nil {
				return
			}
			defer cancel()
			next.ServeHTTP(w, r) // an SSE stream stays in here: keep this frame small
		})
	}
}

// admitCourses checks r and returns it with the token's expiry, or answers
// the error itself and returns nil.
//
//go:noinline
func admitCourses(a *auth.Authorizer, w http.ResponseWriter, r *http.Request, access auth.Access, expire func(context.Context, time.Time) context.Context) (*http.Request, context.CancelFunc) {
	courses, err := cursor.ParseCourses(r.URL.Query()["courses"])
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return nil, nil
	}
	exp, _, err := a.CheckCourses(r, courses, access)
	switch {
	case errors.Is(err, auth.ErrForbidden):
		httpjson.Error(w, http.StatusForbidden, err.Error())
		return nil, nil
	case err != nil:
		w.Header().Set("WWW-Authenticate", `Bearer realm="coursestream"`)
		httpjson.Error(w, http.StatusUnauthorized, err.Error())
		return nil, nil
	}
	switch {
	case exp.IsZero():
		return r, func() {}
	case expire != nil:
		return r.WithContext(expire(r.Context(), exp)), func() {}
	}
	ctx, cancel := context.WithDeadlineCause(r.Context(), exp, errTokenExpired)
	return r.WithContext(ctx), cancel
}

// errTokenExpired is the cause of a request context ended by its token's
// expiry.
var errTokenExpired = errors.New("token expired")
