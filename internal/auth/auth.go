// Package auth checks the JWTs that guard subscribing, polling and
// publishing when coursestream runs with --jwt-key (HS256, a shared
// secret) or --jwt-jwks-url (RS256, ES256 or EdDSA, the keys of an
// identity provider's JSON Web Key Set, chosen by kid), or both; and it
// mints HS256 tokens.
//
// A token carries two claims besides the registered ones: courses (the
// course ids its bearer may subscribe to and poll, "*" for all) and publish
// (the course ids it may publish to, "*" for all). exp, when present, is
// enforced without leeway; iss and aud are when an issuer or audience is
// configured. The token's alg picks the key, and each algorithm is pinned
// to one kind of key: "none", any other algorithm, and an algorithm whose
// key is not configured are refused, so that a public key can never be
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

	"coursestream/internal/cursor"
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

// Authorizer checks tokens signed with the HS256 shared secret, with a
// key of a KeySet, or either.
type Authorizer struct {
	key      []byte  // nil: HS256 refused
	keys     *KeySet // nil: RS256, ES256 and EdDSA refused
	issuer   string
	audience string
	parser   *jwt.Parser
	now      func() time.Time
}

// Options configure an Authorizer. At least one of Key and KeySet is set.
type Options struct {
	Key      []byte           // the HS256 shared secret
	KeySet   *KeySet          // the identity provider's keys
	Issuer   string           // when set, iss must equal it
	Audience string           // when set, aud must contain it
	Now      func() time.Time // the clock; nil: time.Now
}

// New returns an Authorizer for the HS256 key. now is the clock (nil:
// time.Now).
func New(key []byte, now func() time.Time) *Authorizer {
	if key == nil {
		key = []byte{}
	}
	a, _ := NewAuthorizer(Options{Key: key, Now: now}) // a key is set: no error
	return a
}

// NewAuthorizer returns an Authorizer for o.
func NewAuthorizer(o Options) (*Authorizer, error) {
	if o.Key == nil && o.KeySet == nil {
		return nil, errors.New("no key: give the HS256 secret, a key set, or both")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var algs []string
	if o.Key != nil {
		algs = append(algs, sharedSecretAlgs...)
	}
	if o.KeySet != nil {
		algs = append(algs, keySetAlgs...)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithTimeFunc(o.Now), jwt.WithLeeway(0)}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		opts = append(opts, jwt.WithAudience(o.Audience))
	}
	return &Authorizer{
		key: o.Key, keys: o.KeySet, issuer: o.Issuer, audience: o.Audience,
		now: o.Now, parser: jwt.NewParser(opts...),
	}, nil
}

// Ready is nil when the Authorizer can check every kind of token it takes:
// without a key set always, with one once it has been fetched.
func (a *Authorizer) Ready(ctx context.Context) error {
	if a.keys == nil {
		return nil
	}
	return a.keys.Ready(ctx)
}

// Parse verifies a token and returns its claims; any failure wraps
// ErrUnauthorized.
func (a *Authorizer) Parse(token string) (*Claims, error) {
	return a.parse(context.Background(), token)
}

// parse is Parse; ctx bounds a fetch of the key set for an unknown kid.
func (a *Authorizer) parse(ctx context.Context, token string) (*Claims, error) {
	var c Claims
	_, err := a.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		return a.keyFor(ctx, t)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return &c, nil
}

// keyFor returns the key that verifies t, picked by its algorithm (which
// the parser has already held to the configured ones).
func (a *Authorizer) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	switch {
	case slices.Contains(sharedSecretAlgs, alg) && a.key != nil:
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, fmt.Errorf("algorithm %s not allowed", alg)
		}
		return a.key, nil
	case slices.Contains(keySetAlgs, alg) && a.keys != nil:
		return a.keys.key(ctx, t)
	}
	return nil, fmt.Errorf("algorithm %v not allowed", t.Header["alg"])
}

// Mint signs a HS256 token allowing courses (and publishing to them when
// publish is set) that expires after ttl (0: never), with the configured
// issuer and audience.
func (a *Authorizer) Mint(courses []string, publish bool, ttl time.Duration) (string, error) {
	c := Claims{Courses: courses}
	c.Issuer = a.issuer
	if a.audience != "" {
		c.Audience = jwt.ClaimStrings{a.audience}
	}
	if publish {
		c.Publish = courses
	}
	now := a.now()
	c.IssuedAt = jwt.NewNumericDate(now)
	if ttl > 0 {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	}
	if a.key == nil {
		return "", errors.New("no HS256 key to sign with")
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
	exp, _, err := a.CheckCourses(r, []string{course}, access)
	return exp, err
}

// Middleware guards a /v1/courses/{courseId}/... route. A nil Authorizer
// (open dev mode) lets everything through. The course id is validated first
// (400), then the token (401, 403). A request whose token expires is told
// so by expire, which returns the request's context carrying the expiry:
// an SSE stream's (stream.WithExpiry) ends then with its final frame, after
// which the client reconnects with a fresh token. A nil expire gives the
// context the expiry as its deadline.
func Middleware(a *Authorizer, access Access, expire func(context.Context, time.Time) context.Context) func(http.Handler) http.Handler {
	return guard(a, access, expire, pathCourse)
}

// CoursesMiddleware guards a route of several courses (?courses=a,b,...,
// the multi-course stream and poll) as Middleware guards a one-course
// route: the course list is validated first (400), then the token must
// allow every listed course (401, or 403 naming the first refused one).
func CoursesMiddleware(a *Authorizer, access Access, expire func(context.Context, time.Time) context.Context) func(http.Handler) http.Handler {
	return guard(a, access, expire, queryCourses)
}

func pathCourse(r *http.Request) ([]string, error) {
	course := r.PathValue("courseId")
	if err := observer.CheckCourseID(course); err != nil {
		return nil, err
	}
	return []string{course}, nil
}

func queryCourses(r *http.Request) ([]string, error) {
	return cursor.ParseCourses(r.URL.Query()["courses"])
}

func guard(a *Authorizer, access Access, expire func(context.Context, time.Time) context.Context, courses func(*http.Request) ([]string, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, cancel := a.admit(w, r, access, expire, courses)
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
func (a *Authorizer) admit(w http.ResponseWriter, r *http.Request, access Access, expire func(context.Context, time.Time) context.Context, courses func(*http.Request) ([]string, error)) (*http.Request, context.CancelFunc) {
	list, err := courses(r)
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, err.Error())
		return nil, nil
	}
	exp, _, err := a.CheckCourses(r, list, access)
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
