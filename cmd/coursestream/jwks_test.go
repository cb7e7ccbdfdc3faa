package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"coursestream/internal/auth"
	"coursestream/internal/auth/authtest"
)

const (
	testIssuer   = "https://idp.test/realms/courses"
	testAudience = "coursestream"
)

// idpClaims are the claims of an identity provider's token for courses,
// publishing to them when publish is set.
func idpClaims(courses string, publish bool, mod ...func(*auth.Claims)) auth.Claims {
	c := auth.Claims{Courses: splitList(courses)}
	if publish {
		c.Publish = c.Courses
	}
	c.Issuer, c.Audience = testIssuer, jwt.ClaimStrings{testAudience}
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	for _, m := range mod {
		m(&c)
	}
	return c
}

// waitReadyz polls /readyz until it answers want (there is no signal to
// wait on from outside the process) and returns the last body.
func waitReadyz(t *testing.T, s *server, want int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, body := do(t, "GET", s.url("/readyz"), nil, "")
		if resp.StatusCode == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz is %d %s after %s, want %d\n%s", resp.StatusCode, body, within, want, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestJWKSConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--jwt-jwks-url", "not a url"}, nil, "--jwt-jwks-url"},
		{[]string{"--jwt-jwks-url", "ftp://idp.example/jwks.json"}, nil, "--jwt-jwks-url"},
		{[]string{"--jwt-jwks-url", "https:///jwks.json"}, nil, "--jwt-jwks-url"},
		{nil, map[string]string{"COURSESTREAM_JWT_JWKS_URL": "idp.example/jwks"}, "--jwt-jwks-url"},
		{[]string{"--jwt-audience", "coursestream"}, nil, "--jwt-audience"},
		{[]string{"--jwt-issuer", "https://idp.example/"}, nil, "--jwt-issuer"},
		{[]string{"--addr", "0.0.0.0:8080", "--jwt-issuer", "https://idp.example/"}, nil, "--jwt-issuer"},
	} {
		code, _, stderr := runCLI(tc.args, tc.env)
		lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n") + 1
		if code != exitUsage || !strings.Contains(stderr, tc.want) || lines != 1 {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and one line with %q", tc.args, tc.env, code, stderr, tc.want)
		}
	}
	// The real process exits 2 with one line too.
	out, err := exec.Command(binary, "--jwt-jwks-url", "::not a url").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("coursestream --jwt-jwks-url ::not a url: %v, %q; want exit 2 and one line", err, out)
	}

	// A key set is not open dev mode: a non-loopback address needs no
	// --insecure-open with it.
	for _, args := range [][]string{
		{"--addr", "0.0.0.0:8080", "--jwt-jwks-url", "https://idp.example/.well-known/jwks.json"},
		{"--addr", "0.0.0.0:8080", "--jwt-jwks-url", "https://idp.example/jwks", "--jwt-issuer", "https://idp.example/", "--jwt-audience", "api"},
		{"--jwt-key", testKey, "--jwt-audience", "api"},
	} {
		var cfg Config
		if err := parseFlags(newServeFlags(&cfg), args, noEnv); err != nil {
			t.Fatal(err)
		}
		if err := cfg.validate(); err != nil || cfg.open() {
			t.Errorf("%v: %v (open %v), want valid and not open", args, err, cfg.open())
		}
	}
}

func TestJWKSReadiness(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIdP(t)
	key := authtest.EC(t)
	idp.Add(t, "k", key)
	idp.Fail(http.StatusBadGateway)
	s := startServer(t, "--jwt-jwks-url", idp.URL())
	tok := authtest.Sign(t, jwt.SigningMethodES256, key, "k", idpClaims("c1", false))

	// Unfetched: not ready, tokens refused, the process alive and logging
	// the failure once however often it retries.
	body := waitReadyz(t, s, 503, 5*time.Second)
	if !strings.Contains(body, "key set") {
		t.Errorf("/readyz body %q does not name the key set", body)
	}
	if resp, _ := do(t, "GET", s.url("/healthz"), nil, ""); resp.StatusCode != 200 {
		t.Errorf("/healthz is %d while the key set is unfetched", resp.StatusCode)
	}
	for idp.Fetches() < 4 {
		if resp, body := do(t, "GET", s.url("/v1/courses/c1/poll"), map[string]string{"Authorization": "Bearer " + tok}, ""); resp.StatusCode != 401 {
			t.Fatalf("a poll before the key set is fetched: %d %s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond) // polling the IdP's count: there is no signal to wait on
	}
	waitReadyz(t, s, 503, time.Second)
	if n := strings.Count(s.stderr.String(), "cannot be fetched"); n != 1 {
		t.Errorf("%d failure lines for %d fetches, want 1:\n%s", n, idp.Fetches(), s.stderr)
	}

	// Reachable: ready, and the token passes.
	idp.Fail(0)
	waitReadyz(t, s, 200, 15*time.Second)
	if resp, body := do(t, "GET", s.url("/v1/courses/c1/poll"), map[string]string{"Authorization": "Bearer " + tok}, ""); resp.StatusCode != 200 {
		t.Fatalf("a poll once the key set is fetched: %d %s", resp.StatusCode, body)
	}
}

func TestJWKSNothingListening(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/jwks.json"
	ln.Close()
	s := startServer(t, "--jwt-jwks-url", url)
	waitReadyz(t, s, 503, 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.stderr.String(), "kind=unreachable") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling the log: there is no signal to wait on
	}
	select {
	case err := <-s.done:
		t.Fatalf("exited with the key set unreachable: %v\n%s", err, s.stderr)
	default:
	}
	if body := waitReadyz(t, s, 503, time.Second); !strings.Contains(s.stderr.String(), "kind=unreachable") {
		t.Fatalf("no unreachable failure logged (readyz %s):\n%s", body, s.stderr)
	}
}

func TestJWKSTokens(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIdP(t)
	rsaKey, ecKey, edKey := authtest.RSA(t), authtest.EC(t), authtest.Ed25519(t)
	idp.Add(t, "rsa", rsaKey)
	idp.Add(t, "ec", ecKey)
	idp.Add(t, "ed", edKey)
	s := startServer(t, "--jwt-jwks-url", idp.URL(), "--jwt-key", testKey, "--jwt-issuer", testIssuer, "--jwt-audience", testAudience)
	waitReadyz(t, s, 200, 10*time.Second)

	sign := func(method jwt.SigningMethod, key any, kid string, c auth.Claims) string {
		return authtest.Sign(t, method, key, kid, c)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	rs := sign(jwt.SigningMethodRS256, rsaKey, "rsa", idpClaims("c1", true))
	parts := strings.Split(rs, ".")
	widened, _ := json.Marshal(idpClaims("*", true))
	// The token subcommand mints HS256 with the same issuer and audience.
	hs := mint(t, "--course", "c1", "--publish", "--jwt-issuer", testIssuer, "--jwt-audience", testAudience)
	event := `{"type":"chapter-update-complete","data":{"chapterId":"x"}}`

	accepted := map[string]string{
		"RS256": rs,
		"ES256": sign(jwt.SigningMethodES256, ecKey, "ec", idpClaims("c1", true)),
		"EdDSA": sign(jwt.SigningMethodEdDSA, edKey, "ed", idpClaims("c1", true)),
		"HS256": hs,
	}
	for alg, tok := range accepted {
		bearer := map[string]string{"Authorization": "Bearer " + tok}
		for _, r := range []struct {
			method, path string
			header       map[string]string
			body         string
			want         int
		}{
			{"GET", "/v1/courses/c1/events?token=" + tok, nil, "", 200},
			{"GET", "/v1/courses/c1/poll", bearer, "", 200},
			{"POST", "/v1/courses/c1/events", bearer, event, 201},
			{"GET", "/v1/courses/c2/poll", bearer, "", 403},
		} {
			resp, body := do(t, r.method, s.url(r.path), r.header, r.body)
			if resp.StatusCode != r.want {
				t.Errorf("%s: %s %s: %d %s, want %d", alg, r.method, r.path, resp.StatusCode, body, r.want)
			}
		}
	}
	subscriber := sign(jwt.SigningMethodES256, ecKey, "ec", idpClaims("c1", false))
	if resp, body := do(t, "POST", s.url("/v1/courses/c1/events"), map[string]string{"Authorization": "Bearer " + subscriber}, event); resp.StatusCode != 403 {
		t.Errorf("publish without the publish claim: %d %s, want 403", resp.StatusCode, body)
	}

	refused := map[string]string{
		"alg none":               sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa", idpClaims("c1", true)),
		"HS256 by the RSA PEM":   sign(jwt.SigningMethodHS256, pemKey, "rsa", idpClaims("c1", true)),
		"HS256 by the RSA DER":   sign(jwt.SigningMethodHS256, der, "", idpClaims("c1", true)),
		"RS512":                  sign(jwt.SigningMethodRS512, rsaKey, "rsa", idpClaims("c1", true)),
		"ES256 naming the RSA":   sign(jwt.SigningMethodES256, ecKey, "rsa", idpClaims("c1", true)),
		"wrong iss":              sign(jwt.SigningMethodRS256, rsaKey, "rsa", idpClaims("c1", true, func(c *auth.Claims) { c.Issuer = "https://evil.test/" })),
		"wrong aud":              sign(jwt.SigningMethodRS256, rsaKey, "rsa", idpClaims("c1", true, func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"billing"} })),
		"expired":                sign(jwt.SigningMethodRS256, rsaKey, "rsa", idpClaims("c1", true, func(c *auth.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Second)) })),
		"tampered payload":       parts[0] + "." + base64.RawURLEncoding.EncodeToString(widened) + "." + parts[2],
		"HS256 without iss, aud": mint(t, "--course", "c1", "--publish"),
		"unknown kid":            sign(jwt.SigningMethodRS256, authtest.RSA(t), "nobody", idpClaims("c1", true)),
	}
	for name, tok := range refused {
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/v1/courses/c1/events?token=" + tok, ""},
			{"POST", "/v1/courses/c1/events?token=" + tok, event},
		} {
			resp, body := do(t, r.method, s.url(r.path), nil, r.body)
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: %s: %d %s, want 401 with WWW-Authenticate", name, r.method, resp.StatusCode, body)
			}
		}
	}
}

func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIdP(t)
	oldKey, newKey := authtest.RSA(t), authtest.Ed25519(t)
	idp.Add(t, "2025", oldKey)
	s := startServer(t, "--jwt-jwks-url", idp.URL())
	waitReadyz(t, s, 200, 10*time.Second)
	oldTok := authtest.Sign(t, jwt.SigningMethodRS256, oldKey, "2025", idpClaims("c1", false))
	newTok := authtest.Sign(t, jwt.SigningMethodEdDSA, newKey, "2026", idpClaims("c1", false))
	poll := func(tok string) int {
		resp, _ := do(t, "GET", s.url("/v1/courses/c1/poll?token="+tok), nil, "")
		return resp.StatusCode
	}
	if got := poll(oldTok); got != 200 {
		t.Fatalf("the old key before the rotation: %d", got)
	}
	// The IdP rotates: the new key in, the old one out. No restart.
	idp.Add(t, "2026", newKey)
	idp.Remove("2025")
	before := idp.Fetches()
	if got := poll(newTok); got != 200 {
		t.Fatalf("the rotated-in key: %d, want 200 after the refetch", got)
	}
	refetched := time.Now()
	if got := poll(oldTok); got != 401 {
		t.Fatalf("the rotated-out key after the refetch: %d, want 401", got)
	}
	if got := idp.Fetches() - before; got != 1 {
		t.Fatalf("%d fetches for the rotation, want 1", got)
	}

	// A burst of unknown kids: each refused, the set fetched at most once
	// per 10 s (a request waits at most 5 s for the next).
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := range cap(codes) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- poll(authtest.Sign(t, jwt.SigningMethodEdDSA, newKey, fmt.Sprintf("forged-%d", i), idpClaims("c1", false)))
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 401 {
			t.Fatalf("an unknown kid: %d, want 401", c)
		}
	}
	elapsed := time.Since(refetched)
	allowed := int64((elapsed + 5*time.Second) / auth.RefetchEvery)
	if got := idp.Fetches() - before - 1; got > allowed {
		t.Fatalf("%d fetches for 50 unknown kids in %s, want at most %d", got, elapsed, allowed)
	}
	t.Logf("%d fetches for 50 unknown kids over %s", idp.Fetches()-before-1, elapsed)
	// Without --jwt-key, an HS256 token is refused whatever its secret.
	if got := poll(mint(t, "--course", "c1")); got != 401 {
		t.Fatalf("HS256 without --jwt-key: %d, want 401", got)
	}
}
