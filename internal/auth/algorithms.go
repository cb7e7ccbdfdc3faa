package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// The algorithms a token may be signed with, each pinned to one kind of
// key: HS256 to the shared secret (--jwt-key), the others to a key of the
// key set of that type. A token of any other algorithm ("none" included),
// or of one whose key is not configured, is refused.
var (
	sharedSecretAlgs = []string{jwt.SigningMethodHS256.Alg()}
	keySetAlgs       = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg()}
)

// minRSABits is the smallest RSA key accepted (RFC 7518 3.3 asks for 2048).
const minRSABits = 2048

// checkKeyType reports whether key is of the type that alg verifies with,
// so that a key of the set is never used with an algorithm of another
// kind (an RSA key's bytes as an HMAC secret, a P-384 key for ES256).
func checkKeyType(alg string, key any) error {
	ok := false
	switch alg {
	case "RS256":
		k, isRSA := key.(*rsa.PublicKey)
		ok = isRSA && k.N.BitLen() >= minRSABits
	case "ES256":
		k, isEC := key.(*ecdsa.PublicKey)
		ok = isEC && k.Curve == elliptic.P256()
	case "EdDSA":
		_, ok = key.(ed25519.PublicKey)
	}
	if !ok {
		return fmt.Errorf("a %T is not a key for %s", key, alg)
	}
	return nil
}
