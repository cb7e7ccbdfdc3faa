package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func sign(t testing.TB, method jwt.SigningMethod, k any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(courses, publish []string, exp time.Time) Claims {
	c := Claims{Courses: courses, Publish: publish}
	if !exp.IsZero() {
		c.ExpiresAt = jwt.NewNumericDate(exp)
	}
	return c
}

func check(a *Authorizer, tok, course string, access Access) error {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	_, err := a.Check(r, course, access)
	return err
}

func TestCheck(t *testing.T) {
	t.Parallel()
	a := New(key, nil)
	future := time.Now().Add(time.Hour)
	good := sign(t, jwt.SigningMethodHS256, key, claims([]string{"c1", "c2"}, nil, future))
	publisher := sign(t, jwt.SigningMethodHS256, key, claims(nil, []string{"c1"}, future))
	all := sign(t, jwt.SigningMethodHS256, key, claims([]string{"*"}, []string{"*"}, future))
	noExp := sign(t, jwt.SigningMethodHS256, key, claims([]string{"c1"}, nil, time.Time{}))
	expired := sign(t, jwt.SigningMethodHS256, key, claims([]string{"c1"}, nil, time.Now().Add(-time.Second)))
	otherKey := sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-32-bytes-xxxxx"), claims([]string{"c1"}, nil, future))
	hs384 := sign(t, jwt.SigningMethodHS384, key, claims([]string{"c1"}, nil, future))
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims([]string{"c1"}, nil, future))
	parts := strings.Split(good, ".")
	payload, _ := json.Marshal(claims([]string{"*"}, []string{"*"}, future))
	tampered := parts[0] + "." + b64(payload) + "." + parts[2]

	// RS/HS confusion: a token "signed" with HS256 using the PEM of a
	// public key as the secret must not pass; neither may a real RS256 one.
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	confused := sign(t, jwt.SigningMethodHS256, pubPEM, claims([]string{"c1"}, nil, future))
	rs256 := sign(t, jwt.SigningMethodRS256, rsaKey, claims([]string{"c1"}, nil, future))

	for _, tc := range []struct {
		name   string
		tok    string
		course string
		access Access
		want   error
	}{
		{"valid", good, "c1", Subscribe, nil},
		{"valid second course", good, "c2", Subscribe, nil},
		{"star", all, "anything", Subscribe, nil},
		{"star publishes", all, "anything", Publish, nil},
		{"no exp", noExp, "c1", Subscribe, nil},
		{"missing", "", "c1", Subscribe, ErrUnauthorized},
		{"garbage", "not.a.token", "c1", Subscribe, ErrUnauthorized},
		{"tampered payload", tampered, "c1", Subscribe, ErrUnauthorized},
		{"expired", expired, "c1", Subscribe, ErrUnauthorized},
		{"other key", otherKey, "c1", Subscribe, ErrUnauthorized},
		{"HS384", hs384, "c1", Subscribe, ErrUnauthorized},
		{"alg none", none, "c1", Subscribe, ErrUnauthorized},
		{"RS256", rs256, "c1", Subscribe, ErrUnauthorized},
		{"public key as HMAC secret", confused, "c1", Subscribe, ErrUnauthorized},
		{"wrong course", good, "c3", Subscribe, ErrForbidden},
		{"subscriber token used to publish", good, "c1", Publish, ErrForbidden},
		{"publish claim does not subscribe", publisher, "c1", Subscribe, ErrForbidden},
		{"publisher publishes", publisher, "c1", Publish, nil},
	} {
		if err := check(a, tc.tok, tc.course, tc.access); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestTokenSources(t *testing.T) {
	t.Parallel()
	a := New(key, nil)
	tok, err := a.Mint([]string{"c1"}, false, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]func(*http.Request){
		"bearer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) },
		"query":  func(r *http.Request) { r.URL.RawQuery = "token=" + tok },
		"cookie": func(r *http.Request) { r.AddCookie(&http.Cookie{Name: CookieName, Value: tok}) },
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		set(r)
		if exp, err := a.Check(r, "c1", Subscribe); err != nil || exp.IsZero() {
			t.Errorf("%s: %v (exp %v)", name, err, exp)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/?token="+tok, nil)
	r.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	if _, err := a.Check(r, "c1", Subscribe); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("a non-bearer Authorization header must not fall back to ?token=: %v", err)
	}
}

func TestMintAndListForms(t *testing.T) {
	t.Parallel()
	a := New(key, nil)
	tok, _ := a.Mint([]string{"*"}, true, time.Hour)
	c, err := a.Parse(tok)
	if err != nil || !c.Courses.Allows("x") || !c.Publish.Allows("y") || c.ExpiresAt == nil {
		t.Fatalf("minted %+v, %v", c, err)
	}
	// A single string is accepted as a one-course list.
	one := sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"courses": "c9", "exp": time.Now().Add(time.Hour).Unix()})
	if c, err := a.Parse(one); err != nil || !c.Courses.Allows("c9") || c.Courses.Allows("c1") {
		t.Fatalf("string claim: %+v %v", c, err)
	}
	bad := sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"courses": 5})
	if _, err := a.Parse(bad); err == nil {
		t.Fatal("a numeric courses claim was accepted")
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	a := New(key, nil)
	var deadline time.Time
	h := Middleware(a, Subscribe, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadline, _ = r.Context().Deadline()
		w.WriteHeader(http.StatusNoContent)
	}))
	mux := http.NewServeMux()
	mux.Handle("GET /v1/courses/{courseId}/events", h)
	tok, _ := a.Mint([]string{"c1"}, false, time.Minute)
	for _, tc := range []struct {
		path, tok string
		want      int
	}{
		{"/v1/courses/c1/events", tok, http.StatusNoContent},
		{"/v1/courses/c1/events", "", http.StatusUnauthorized},
		{"/v1/courses/c2/events", tok, http.StatusForbidden},
		{"/v1/courses/-x/events", tok, http.StatusBadRequest},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.tok != "" {
			r.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		var body struct{ Error string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != tc.want || (tc.want >= 400 && body.Error == "") {
			t.Errorf("%s: %d %q, want %d", tc.path, rec.Code, rec.Body, tc.want)
		}
		if tc.want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	if deadline.IsZero() || time.Until(deadline) > time.Minute {
		t.Fatalf("request deadline %v, want the token's expiry", deadline)
	}
	open := httptest.NewRecorder()
	Middleware(nil, Subscribe, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })).
		ServeHTTP(open, httptest.NewRequest(http.MethodGet, "/v1/courses/c1/events", nil))
	if open.Code != 299 {
		t.Fatalf("open mode answered %d without calling the handler", open.Code)
	}
}

// FuzzParse: no input panics, and nothing is accepted that the key did not
// sign with HS256.
func FuzzParse(f *testing.F) {
	a := New(key, nil)
	good, _ := a.Mint([]string{"c1"}, true, time.Hour)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJjb3Vyc2VzIjpbIioiXX0.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := a.Parse(tok)
		if err != nil {
			return
		}
		// Accepted: it must be exactly a token this key signs.
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %q", tok)
		}
		sig, err := jwt.SigningMethodHS256.Sign(parts[0]+"."+parts[1], key)
		if err != nil || string(sig) != string(mustDecode(t, parts[2])) {
			t.Fatalf("accepted a token not signed by the key: %q (%+v)", tok, c)
		}
	})
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := jwt.NewParser().DecodeSegment(s)
	if err != nil {
		t.Fatalf("decoding the signature of an accepted token: %v", err)
	}
	return b
}
