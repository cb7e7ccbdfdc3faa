// Package auth checks and mints the HS256 JWTs that guard subscribing,
// polling and publishing when coursestream runs with --jwt-key.
//
// A token carries two claims besides the registered ones: courses (the
// course ids its bearer may subscribe to and poll, "*" for all) and publish
// (the course ids it may publish to, "*" for all). exp, when present, is
// enforced without leeway. The algorithm is pinned to HS256: "none", RS256
// and every other algorithm are refused, so a public key can never be
// passed off as the HMAC secret.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"coursestream/internal/httpjson"
	"coursestream/observer"
)

// CookieName is the cookie a browser may carry its token in.
const CookieName = "coursestream_token"

// Errors of Check. ErrUnauthorized maps to 401, ErrForbidden to 403.
var (
	ErrUnauthorized = errors.New("missing, invalid or expired token")
	ErrForbidden    = errors.New("the token does not allow this course")
)

// Claims are the claims of a coursestream token.
type Claims struct {
	Courses List `json:"courses,omitempty"`
	Publish List `json:"publish,omitempty"`
	jwt.RegisteredClaims
}

// List is a claim holding course ids. It decodes from an array of strings
// or from a single string.
type List []string

// UnmarshalJSON implements json.Unmarshaler.
func (l *List) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = List{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("a course list must be an array of strings: %w", err)
	}
	*l = many
	return nil
}

// Allows reports whether the list names course or "*".
func (l List) Allows(course string) bool {
	return slices.Contains(l, "*") || slices.Contains(l, course)
}

// Authorizer checks tokens signed with one HS256 key.
type Authorizer struct {
	key    []byte
	parser *jwt.Parser
	now    func() time.Time
}

// New returns an Authorizer for key. now is the clock (nil: time.Now).
func New(key []byte, now func() time.Time) *Authorizer {
	if now == nil {
		now = time.Now
	}
	return &Authorizer{
		key: key,
		now: now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithTimeFunc(now),
			jwt.WithLeeway(0),
		),
	}
}

// Parse verifies a token and returns its claims; any failure wraps
// ErrUnauthorized.
func (a *Authorizer) Parse(token string) (*Claims, error) {
	var c Claims
	_, err := a.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok || t.Method.Alg() != "HS256" {
			return nil, fmt.Errorf("algorithm %v not allowed", t.Header["alg"])
		}
		return a.key, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return &c, nil
}

// Mint signs a token allowing courses (and publishing to them when
// publish is set) that expires after ttl (0: never).
func (a *Authorizer) Mint(courses []string, publish bool, ttl time.Duration) (string, error) {
	c := Claims{Courses: courses}
	if publish {
		c.Publish = courses
	}
	now := a.now()
	c.IssuedAt = jwt.NewNumericDate(now)
	if ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.key)
	if err != nil {
		return "", fmt.Errorf("signing the token: %w", err)
	}
	return s, nil
}

// TokenFrom returns the request's token: the Authorization bearer, else
// ?token=, else the coursestream_token cookie.
func TokenFrom(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return "" // another scheme: not ours, and not silently replaced by a weaker source
	}
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value
	}
	return ""
}

// Access is what a route needs.
type Access int

// The accesses of the routes.
const (
	Subscribe Access = iota // SSE and polling: the courses claim
	Publish                 // HTTP publish: the publish claim
)

// Check authorizes r for course. On success it returns the token's expiry
// (zero when it has none).
func (a *Authorizer) Check(r *http.Request, course string, access Access) (time.Time, error) {
	tok := TokenFrom(r)
	if tok == "" {
		return time.Time{}, fmt.Errorf("%w: send it as Authorization: Bearer, ?token= or the %s cookie", ErrUnauthorized, CookieName)
	}
	c, err := a.Parse(tok)
	if err != nil {
		return time.Time{}, err
	}
	list := c.Courses
	if access == Publish {
		list = c.Publish
	}
	if !list.Allows(course) {
		if access == Publish {
			return time.Time{}, fmt.Errorf("%w: no publish claim for course %s", ErrForbidden, course)
		}
		return time.Time{}, fmt.Errorf("%w: course %s is not in the courses claim", ErrForbidden, course)
	}
	var exp time.Time
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	return exp, nil
}

// Middleware guards a /v1/courses/{courseId}/... route. A nil Authorizer
// (open dev mode) lets everything through. The course id is validated first
// (400), then the token (401, 403). A request whose token expires is told
// so by expire, which returns the request's context carrying the expiry:
// an SSE stream's (stream.WithExpiry) ends then with its final frame, after
// which the client reconnects with a fresh token. A nil expire gives the
// context the expiry as its deadline.
func Middleware(a *Authorizer, access Access, expire func(context.Context, time.Time) context.Context) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, cancel := a.admit(w, r, access, expire)
			if r == nil {
				return
			}
			defer cancel()
			next.ServeHTTP(w, r) // an SSE stream stays in here: keep this frame small
		})
	}
}

// admit checks r and returns it with the token's expiry, or answers the
// error itself and returns nil.
//
//go:noinline
func (a *Authorizer) admit(w http.ResponseWriter, r *http.Request, access Access, expire func(context.Context, time.Time) context.Context) (*http.Request, context.CancelFunc) {
	course := r.PathValue("courseId")
	if err := observer.CheckCourseID(course); err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return nil, nil
	}
	exp, err := a.Check(r, course, access)
	switch {
	case errors.Is(err, ErrForbidden):
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
	ctx, cancel := context.WithDeadlineCause(r.Context(), exp, errExpired)
	return r.WithContext(ctx), cancel
}

// errExpired is the cause of a request context ended by its token's expiry.
var errExpired = errors.New("token expired")
