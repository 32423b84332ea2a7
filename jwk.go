package main

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// JSON Web Keys (RFC 7517, 7518, 8037): reading a JWK Set into the public
// keys the JWKS verifier checks signatures with. Fetching the set is in
// jwks.go; the verifier itself in jwt.go.

// publicKey is one verification key from a JWKS. Its own kty, crv and alg
// decide which algorithms it verifies; a JWKS key is never an HMAC secret.
type publicKey struct {
	kid  string
	algs []string
	key  crypto.PublicKey // ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey
}

func (k publicKey) allows(alg string) bool {
	for _, a := range k.algs {
		if a == alg {
			return true
		}
	}
	return false
}

// verify checks signature over signingInput with alg, which allows has
// already matched to the key.
func (k publicKey) verify(alg, signingInput string, signature []byte) bool {
	switch key := k.key.(type) {
	case ed25519.PublicKey:
		return len(signature) == ed25519.SignatureSize && ed25519.Verify(key, []byte(signingInput), signature)
	case *ecdsa.PublicKey:
		size := (key.Curve.Params().BitSize + 7) / 8
		if len(signature) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(signature[:size])
		s := new(big.Int).SetBytes(signature[size:])
		return ecdsa.Verify(key, digest(alg, signingInput), r, s)
	case *rsa.PublicKey:
		hash := hashOf(alg)
		if strings.HasPrefix(alg, "PS") {
			return rsa.VerifyPSS(key, hash, digest(alg, signingInput), signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: hash}) == nil
		}
		return rsa.VerifyPKCS1v15(key, hash, digest(alg, signingInput), signature) == nil
	}
	return false
}

// hashOf maps the digits of ES256, RS384, PS512 ... to their hash.
func hashOf(alg string) crypto.Hash {
	switch {
	case strings.HasSuffix(alg, "384"):
		return crypto.SHA384
	case strings.HasSuffix(alg, "512"):
		return crypto.SHA512
	}
	return crypto.SHA256
}

func digest(alg, signingInput string) []byte {
	h := hashOf(alg).New()
	h.Write([]byte(signingInput))
	return h.Sum(nil)
}

// jsonWebKey holds the JWK members this verifier reads (RFC 7517, 7518, 8037).
type jsonWebKey struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	N      string   `json:"n"`
	E      string   `json:"e"`
}

// minRSABits refuses RSA keys too small to trust.
const minRSABits = 2048

var ecCurves = map[string]struct {
	curve elliptic.Curve
	ecdh  ecdh.Curve // checks that a point is on the curve
	alg   string
}{
	"P-256": {elliptic.P256(), ecdh.P256(), "ES256"},
	"P-384": {elliptic.P384(), ecdh.P384(), "ES384"},
	"P-521": {elliptic.P521(), ecdh.P521(), "ES512"},
}

// parseJWKS reads a JWK Set. Keys it cannot use for verifying (symmetric
// keys, unknown types, bad material, no kid) are left out and reported;
// an error means the document itself is not a JWK Set.
func parseJWKS(data []byte) (map[string]publicKey, []error, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("not a JWK set: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New("not a JWK set: no keys member")
	}
	keys := map[string]publicKey{}
	var skipped []error
	for i, raw := range set.Keys {
		var jwk jsonWebKey
		if err := json.Unmarshal(raw, &jwk); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		key, err := jwk.publicKey()
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, jwk.Kid, err))
			continue
		}
		if _, dup := keys[key.kid]; dup {
			skipped = append(skipped, fmt.Errorf("key %d: kid %q appears twice", i, jwk.Kid))
			delete(keys, key.kid) // ambiguous: trust neither
			continue
		}
		keys[key.kid] = key
	}
	return keys, skipped, nil
}

func (j jsonWebKey) publicKey() (publicKey, error) {
	if j.Kid == "" {
		return publicKey{}, errors.New("no kid")
	}
	if j.Use != "" && j.Use != "sig" {
		return publicKey{}, fmt.Errorf("use %q is not sig", j.Use)
	}
	if j.KeyOps != nil && !slicesContains(j.KeyOps, "verify") {
		return publicKey{}, errors.New("key_ops lacks verify")
	}
	k := publicKey{kid: j.Kid}
	switch j.Kty {
	case "OKP":
		x, err := decodeSegment(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, errors.New("not an Ed25519 public key")
		}
		k.key, k.algs = ed25519.PublicKey(x), []string{"EdDSA", "Ed25519"}
	case "EC":
		c, ok := ecCurves[j.Crv]
		if !ok {
			return publicKey{}, fmt.Errorf("curve %q not supported", j.Crv)
		}
		x, errX := decodeSegment(j.X)
		y, errY := decodeSegment(j.Y)
		size := (c.curve.Params().BitSize + 7) / 8
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return publicKey{}, errors.New("bad EC coordinates")
		}
		uncompressed := append(append([]byte{4}, x...), y...)
		if _, err := c.ecdh.NewPublicKey(uncompressed); err != nil {
			return publicKey{}, errors.New("EC point not on its curve")
		}
		pub := &ecdsa.PublicKey{Curve: c.curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		k.key, k.algs = pub, []string{c.alg}
	case "RSA":
		n, errN := decodeSegment(j.N)
		e, errE := decodeSegment(j.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return publicKey{}, errors.New("bad RSA modulus or exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
			return publicKey{}, fmt.Errorf("RSA key of %d bits or exponent %d refused", pub.N.BitLen(), pub.E)
		}
		k.key, k.algs = pub, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	default:
		// "oct" above all: a shared secret published in a JWKS is no key.
		return publicKey{}, fmt.Errorf("key type %q not used for verifying", j.Kty)
	}
	if j.Alg != "" {
		if !k.allows(j.Alg) {
			return publicKey{}, fmt.Errorf("alg %q does not fit a %s key", j.Alg, j.Kty)
		}
		k.algs = []string{j.Alg}
	}
	return k, nil
}

func slicesContains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

// keySource finds a verification key by kid; the JWKS cache is one.
type keySource interface {
	key(kid string) (publicKey, error)
}
