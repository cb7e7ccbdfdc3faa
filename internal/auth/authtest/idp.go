// Package authtest is the tests' identity provider: a JSON Web Key Set
// served on a loopback port (its keys can be rotated, its answers made to
// fail, its fetches counted), the keys to sign with, and the signing.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// IdP serves a JSON Web Key Set of public keys at URL.
type IdP struct {
	srv     *httptest.Server
	fetches atomic.Int64

	mu     sync.Mutex
	kids   []string
	keys   map[string]crypto.Signer
	status int // 0: the set is served
}

// NewIdP starts an IdP with no keys; it is closed when t ends.
func NewIdP(t testing.TB) *IdP {
	t.Helper()
	p := &IdP{keys: map[string]crypto.Signer{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// URL is the key set's address.
func (p *IdP) URL() string { return p.srv.URL + "/.well-known/jwks.json" }

// Add puts key's public half in the set under kid.
func (p *IdP) Add(t testing.TB, kid string, key crypto.Signer) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.keys[kid]; !ok {
		p.kids = append(p.kids, kid)
	}
	p.keys[kid] = key
}

// Remove takes kid out of the set.
func (p *IdP) Remove(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, kid)
	p.kids = slices.DeleteFunc(p.kids, func(k string) bool { return k == kid })
}

// Fail makes the set answer status with no body (0: serve it again).
func (p *IdP) Fail(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
}

// Fetches is the number of requests the set has had.
func (p *IdP) Fetches() int64 { return p.fetches.Load() }

func (p *IdP) serve(w http.ResponseWriter, r *http.Request) {
	p.fetches.Add(1)
	p.mu.Lock()
	status := p.status
	var set jwkset.JWKSMarshal
	for _, kid := range p.kids {
		jwk, err := jwkset.NewJWKFromKey(p.keys[kid].Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: jwkset.UseSig},
		})
		if err != nil {
			p.mu.Unlock()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	p.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// RSA returns a new 2048-bit RSA key.
func RSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// EC returns a new P-256 key.
func EC(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Ed25519 returns a new Ed25519 key.
func Ed25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Sign signs claims with key by method, naming kid in the header (none
// when empty).
func Sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
