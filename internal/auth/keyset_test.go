package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"coursestream/internal/auth/authtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runKeySet runs a KeySet of url until the test ends (and waits for Run
// to return then).
func runKeySet(t *testing.T, cfg KeySetConfig) *KeySet {
	t.Helper()
	k, err := NewKeySet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return k
}

func waitFetched(t *testing.T, k *KeySet) {
	t.Helper()
	select {
	case <-k.first:
	case <-time.After(10 * time.Second):
		t.Fatalf("the key set was not fetched: %v", k.Ready(context.Background()))
	}
}

// subject is a token's claims: course c1, expiring in an hour, from the
// test issuer to the test audience.
func subject(mod ...func(*Claims)) Claims {
	c := claims([]string{"c1"}, []string{"c1"}, time.Now().Add(time.Hour))
	c.Issuer, c.Audience = "https://idp.test/", jwt.ClaimStrings{"coursestream", "other"}
	for _, m := range mod {
		m(&c)
	}
	return c
}

func TestKeySetTokens(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIdP(t)
	rsaKey, ecKey, edKey := authtest.RSA(t), authtest.EC(t), authtest.Ed25519(t)
	idp.Add(t, "rsa", rsaKey)
	idp.Add(t, "ec", ecKey)
	idp.Add(t, "ed", edKey)
	keys := runKeySet(t, KeySetConfig{URL: idp.URL()})
	waitFetched(t, keys)
	setOnly, err := NewAuthorizer(Options{KeySet: keys, Issuer: "https://idp.test/", Audience: "coursestream"})
	if err != nil {
		t.Fatal(err)
	}
	both, _ := NewAuthorizer(Options{Key: key, KeySet: keys, Issuer: "https://idp.test/", Audience: "coursestream"})

	// The public keys as an attacker would use them for HMAC secrets: the
	// PEM and DER of the RSA key, the raw Ed25519 key.
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	good := subject()
	rs256 := authtest.Sign(t, jwt.SigningMethodRS256, rsaKey, "rsa", good)
	parts := strings.Split(rs256, ".")
	payload, _ := json.Marshal(subject(func(c *Claims) { c.Courses = List{"*"} }))
	other := authtest.RSA(t)
	hs256 := authtest.Sign(t, jwt.SigningMethodHS256, key, "", good)

	for _, tc := range []struct {
		name string
		a    *Authorizer
		tok  string
		want error
	}{
		{"RS256", setOnly, rs256, nil},
		{"ES256", setOnly, authtest.Sign(t, jwt.SigningMethodES256, ecKey, "ec", good), nil},
		{"EdDSA", setOnly, authtest.Sign(t, jwt.SigningMethodEdDSA, edKey, "ed", good), nil},
		{"RS256 with the secret too", both, rs256, nil},
		{"HS256 with the secret too", both, hs256, nil},
		{"HS256 without a secret", setOnly, hs256, ErrUnauthorized},
		{"alg none", setOnly, authtest.Sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa", good), ErrUnauthorized},
		{"alg none with the secret too", both, authtest.Sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good), ErrUnauthorized},
		{"HS256 by the RSA PEM", setOnly, authtest.Sign(t, jwt.SigningMethodHS256, pemKey, "rsa", good), ErrUnauthorized},
		{"HS256 by the RSA PEM, secret set", both, authtest.Sign(t, jwt.SigningMethodHS256, pemKey, "rsa", good), ErrUnauthorized},
		{"HS256 by the RSA DER, secret set", both, authtest.Sign(t, jwt.SigningMethodHS256, der, "rsa", good), ErrUnauthorized},
		{"HS256 by the Ed25519 key, secret set", both, authtest.Sign(t, jwt.SigningMethodHS256, []byte(edKey.Public().(ed25519.PublicKey)), "ed", good), ErrUnauthorized},
		{"RS384", setOnly, authtest.Sign(t, jwt.SigningMethodRS384, rsaKey, "rsa", good), ErrUnauthorized},
		{"ES256 naming the RSA key", setOnly, authtest.Sign(t, jwt.SigningMethodES256, ecKey, "rsa", good), ErrUnauthorized},
		{"EdDSA naming the EC key", setOnly, authtest.Sign(t, jwt.SigningMethodEdDSA, edKey, "ec", good), ErrUnauthorized},
		{"another RSA key under the kid", setOnly, authtest.Sign(t, jwt.SigningMethodRS256, other, "rsa", good), ErrUnauthorized},
		{"no kid", setOnly, authtest.Sign(t, jwt.SigningMethodRS256, rsaKey, "", good), ErrUnauthorized},
		{"tampered payload", setOnly, parts[0] + "." + b64(payload) + "." + parts[2], ErrUnauthorized},
		{"expired", setOnly, authtest.Sign(t, jwt.SigningMethodRS256, rsaKey, "rsa", subject(func(c *Claims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Second))
		})), ErrUnauthorized},
		{"wrong iss", setOnly, authtest.Sign(t, jwt.SigningMethodRS256, rsaKey, "rsa", subject(func(c *Claims) { c.Issuer = "https://evil.test/" })), ErrUnauthorized},
		{"no iss", setOnly, authtest.Sign(t, jwt.SigningMethodRS256, rsaKey, "rsa", subject(func(c *Claims) { c.Issuer = "" })), ErrUnauthorized},
		{"wrong aud", setOnly, authtest.Sign(t, jwt.SigningMethodRS256, rsaKey, "rsa", subject(func(c *Claims) { c.Audience = jwt.ClaimStrings{"billing"} })), ErrUnauthorized},
		{"HS256 without iss", both, authtest.Sign(t, jwt.SigningMethodHS256, key, "", claims([]string{"c1"}, nil, time.Now().Add(time.Hour))), ErrUnauthorized},
		{"wrong course", setOnly, authtest.Sign(t, jwt.SigningMethodRS256, rsaKey, "rsa", subject(func(c *Claims) { c.Courses = List{"c2"} })), ErrForbidden},
	} {
		if err := check(tc.a, tc.tok, "c1", Subscribe); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := check(setOnly, rs256, "c1", Publish); err != nil {
		t.Errorf("publish claim of a key-set token: %v", err)
	}
	// A minted token carries the issuer and audience, so it passes.
	minted, err := both.Mint([]string{"c1"}, false, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(both, minted, "c1", Subscribe); err != nil {
		t.Errorf("minted token: %v", err)
	}
	if _, err := setOnly.Mint([]string{"c1"}, false, time.Minute); err == nil {
		t.Error("minted without a secret")
	}
}

func TestKeySetRotation(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIdP(t)
	oldKey, newKey := authtest.RSA(t), authtest.EC(t)
	idp.Add(t, "old", oldKey)
	const every = RefetchEvery // the contract's: the burst below is over well before it
	keys := runKeySet(t, KeySetConfig{URL: idp.URL()})
	waitFetched(t, keys)
	a, _ := NewAuthorizer(Options{KeySet: keys})
	good := claims([]string{"c1"}, nil, time.Now().Add(time.Hour))
	oldTok := authtest.Sign(t, jwt.SigningMethodRS256, oldKey, "old", good)
	newTok := authtest.Sign(t, jwt.SigningMethodES256, newKey, "new", good)
	if err := check(a, oldTok, "c1", Subscribe); err != nil {
		t.Fatalf("old key before the rotation: %v", err)
	}
	if got := idp.Fetches(); got != 1 {
		t.Fatalf("%d fetches at start, want 1", got)
	}

	// Rotation: the new key in, the old one out. A token of the new key
	// refetches the set at once (no restart); the old key is gone with it.
	idp.Add(t, "new", newKey)
	idp.Remove("old")
	if err := check(a, oldTok, "c1", Subscribe); err != nil {
		t.Fatalf("the old key is held until the set is fetched again: %v", err)
	}
	if err := check(a, newTok, "c1", Subscribe); err != nil {
		t.Fatalf("rotated-in key: %v", err)
	}
	refetched := time.Now()
	if err := check(a, oldTok, "c1", Subscribe); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("rotated-out key after the refetch: %v", err)
	}

	// A burst of unknown kids fetches the set at most once per interval,
	// and each is refused.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var accepted int
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := authtest.Sign(t, jwt.SigningMethodES256, newKey, "unknown-"+string(rune('a'+i%26)), good)
			if check(a, tok, "c1", Subscribe) == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(refetched)
	// The start, the rotation's, then one per interval (a request waits
	// for the next at most refetchTimeout).
	allowed := 2 + int64((elapsed+refetchTimeout)/every)
	if got := idp.Fetches(); got > allowed || accepted != 0 {
		t.Fatalf("%d fetches (%d allowed in %s), %d unknown kids accepted", got, allowed, elapsed, accepted)
	}
	t.Logf("%d fetches for 40 unknown kids over %s", idp.Fetches()-2, elapsed)
}

// logBuffer collects a logger's lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestKeySetUnreachableThenReachable(t *testing.T) {
	t.Parallel()
	idp := authtest.NewIdP(t)
	key := authtest.EC(t)
	idp.Add(t, "k", key)
	idp.Fail(http.StatusServiceUnavailable)
	var logs logBuffer
	keys := runKeySet(t, KeySetConfig{URL: idp.URL(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	a, _ := NewAuthorizer(Options{KeySet: keys})
	tok := authtest.Sign(t, jwt.SigningMethodES256, key, "k", claims([]string{"c1"}, nil, time.Now().Add(time.Hour)))

	deadline := time.Now().Add(10 * time.Second)
	for idp.Fetches() < 3 && time.Now().Before(deadline) {
		if err := check(a, tok, "c1", Subscribe); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("a token before the set is fetched: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling the IdP's count: there is no signal to wait on
	}
	if err := keys.Ready(context.Background()); !errors.Is(err, ErrKeySetNotFetched) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Ready while the set answers 503: %v", err)
	}
	if n := strings.Count(logs.String(), "cannot be fetched"); n != 1 || idp.Fetches() < 3 {
		t.Fatalf("%d failure lines for %d failed fetches, want 1:\n%s", n, idp.Fetches(), logs.String())
	}

	idp.Fail(0)
	waitFetched(t, keys)
	if err := keys.Ready(context.Background()); err != nil {
		t.Fatalf("Ready once fetched: %v", err)
	}
	if err := check(a, tok, "c1", Subscribe); err != nil {
		t.Fatalf("a token once the set is fetched: %v", err)
	}
	if !strings.Contains(logs.String(), "JWT key set fetched") {
		t.Fatalf("the recovery is not logged:\n%s", logs.String())
	}
}

func TestKeySetNothingListening(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/jwks.json"
	ln.Close() // nothing listens there now
	var logs logBuffer
	keys := runKeySet(t, KeySetConfig{URL: url, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "kind=unreachable") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the log: there is no signal to wait on
	}
	if err := keys.Ready(context.Background()); !errors.Is(err, ErrKeySetNotFetched) || !strings.Contains(logs.String(), "kind=unreachable") {
		t.Fatalf("Ready with nothing listening: %v; log:\n%s", err, logs.String())
	}
}

func TestKeySetConfig(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "idp.example/jwks", "ftp://idp.example/jwks", "https://", "://x"} {
		if _, err := NewKeySet(KeySetConfig{URL: u}); err == nil {
			t.Errorf("NewKeySet(%q) accepted", u)
		}
	}
	if _, err := NewAuthorizer(Options{}); err == nil {
		t.Error("an Authorizer without keys was made")
	}
	k, err := NewKeySet(KeySetConfig{URL: "https://idp.example/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Ready(context.Background()); !errors.Is(err, ErrKeySetNotFetched) {
		t.Errorf("Ready before Run: %v", err)
	}
}

// TestKeySetRunStops: Run returns when its context ends, and leaves no
// goroutine behind (jwkset's refresh goroutine, the HTTP client's
// connections).
func TestKeySetRunStops(t *testing.T) {
	before := goleak.IgnoreCurrent()
	var serving atomic.Bool
	hits := make(chan struct{}, 100)
	// Not authtest's IdP: its cleanup would run after the check below.
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- struct{}{}
		if !serving.Load() {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	for _, status := range []string{"failing", "fetched"} {
		serving.Store(status == "fetched")
		k, err := NewKeySet(KeySetConfig{URL: idp.URL})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()
		if status == "fetched" {
			waitFetched(t, k)
		} else {
			<-hits // the first attempt and a retry
			<-hits
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: Run: %v", status, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Run did not return after its context ended", status)
		}
		if err := k.Ready(context.Background()); !errors.Is(err, ErrKeySetNotFetched) {
			t.Fatalf("%s: Ready after Run: %v", status, err)
		}
		if err := k.Run(context.Background()); err == nil {
			t.Fatalf("%s: a second Run was accepted", status)
		}
	}
	idp.Close()
	goleak.VerifyNone(t, before)
}
