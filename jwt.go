package main

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// maxTokenBytes bounds the work an unauthenticated client can make us do.
const maxTokenBytes = 8 << 10

// clockLeeway tolerates clock skew between the token issuer and this server.
const clockLeeway = 30 * time.Second

// maxUserIDBytes matches the user_id column's check constraint.
const maxUserIDBytes = 255

// defaultUserClaims are tried in order when no claim is configured: frontends
// in the wild mint HS256 tokens with any of these names; sub is the standard.
var defaultUserClaims = []string{"sub", "user_id", "userId", "id"}

// Each verification failure has its own error so the reason can be logged;
// the client always sees the same 401.
var (
	errTokenTooLarge     = errors.New("token too large")
	errTokenMalformed    = errors.New("token malformed")
	errTokenAlgorithm    = errors.New("token algorithm not accepted")
	errTokenCrit         = errors.New("token header has crit")
	errTokenSignature    = errors.New("token signature invalid")
	errTokenExpired      = errors.New("token expired")
	errTokenMissingExp   = errors.New("token has no exp")
	errTokenNotYetValid  = errors.New("token not valid yet")
	errTokenIssuedFuture = errors.New("token issued in the future")
	errTokenIssuer       = errors.New("token issuer mismatch")
	errTokenAudience     = errors.New("token audience mismatch")
	errTokenUserID       = errors.New("token has no usable user id")
)

// parsedToken is a token split into its parts, its header read and checked,
// before any signature work.
type parsedToken struct {
	alg          string
	kid          string
	signingInput string
	payloadB64   string
	signature    []byte
}

// parseToken applies the rules every token must meet whatever its
// algorithm: size, three segments, a JSON object header with a string alg
// and no crit. The signature is decoded but not checked.
func parseToken(token string) (parsedToken, error) {
	if len(token) > maxTokenBytes {
		return parsedToken{}, errTokenTooLarge
	}
	headerB64, rest, ok := strings.Cut(token, ".")
	if !ok {
		return parsedToken{}, errTokenMalformed
	}
	payloadB64, signatureB64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(signatureB64, ".") {
		return parsedToken{}, errTokenMalformed
	}
	header, err := decodeSegment(headerB64)
	if err != nil {
		return parsedToken{}, errTokenMalformed
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(header, &hdr); err != nil || hdr == nil {
		return parsedToken{}, errTokenMalformed
	}
	p := parsedToken{signingInput: token[:len(headerB64)+1+len(payloadB64)], payloadB64: payloadB64}
	if p.alg, ok = jsonString(hdr["alg"]); !ok {
		return parsedToken{}, errTokenAlgorithm
	}
	if _, ok := hdr["crit"]; ok {
		return parsedToken{}, errTokenCrit
	}
	if raw, ok := hdr["kid"]; ok {
		if p.kid, ok = jsonString(raw); !ok {
			return parsedToken{}, errTokenMalformed
		}
	}
	if p.signature, err = decodeSegment(signatureB64); err != nil {
		return parsedToken{}, errTokenSignature
	}
	return p, nil
}

// claimRules are what a token's claims must say, once its signature holds.
type claimRules struct {
	issuer     string   // required iss when non-empty
	audience   string   // required member of aud when non-empty
	userClaims []string // claims that may hold the user id, in order
}

// check reads the payload of a token whose signature is valid and returns
// its user id and the time it expires (exp plus the leeway).
func (c claimRules) check(payloadB64 string, now time.Time) (string, time.Time, error) {
	payload, err := decodeSegment(payloadB64)
	if err != nil {
		return "", time.Time{}, errTokenMalformed
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return "", time.Time{}, errTokenMalformed
	}
	expires, err := c.checkTimesAndParties(claims, now)
	if err != nil {
		return "", time.Time{}, err
	}
	userID, err := c.userID(claims)
	return userID, expires, err
}

// hs256Verifier checks HS256 tokens against one shared secret. It is safe
// for concurrent use.
type hs256Verifier struct {
	secret []byte
	rules  claimRules
}

func newHS256Verifier(secret []byte, issuer, audience, userClaim string) *hs256Verifier {
	claims := defaultUserClaims
	if userClaim != "" {
		claims = []string{userClaim}
	}
	return &hs256Verifier{secret: secret, rules: claimRules{issuer: issuer, audience: audience, userClaims: claims}}
}

// Verify returns the user id that token carries when the token is valid at
// time now, and an error naming the first rule it breaks otherwise.
func (v *hs256Verifier) Verify(token string, now time.Time) (string, error) {
	userID, _, err := v.VerifyUntil(token, now)
	return userID, err
}

// VerifyUntil is Verify that also tells until when the token is valid.
func (v *hs256Verifier) VerifyUntil(token string, now time.Time) (string, time.Time, error) {
	return (&verifiers{hs256: v}).VerifyUntil(token, now)
}

func (v *hs256Verifier) verifyParsed(p parsedToken, now time.Time) (string, time.Time, error) {
	// The algorithm is pinned before the signature is looked at, so neither
	// "none" nor a confused algorithm ever reaches the comparison.
	if p.alg != "HS256" {
		return "", time.Time{}, errTokenAlgorithm
	}
	if len(p.signature) != sha256.Size || !hmac.Equal(p.signature, v.sign(p.signingInput)) {
		return "", time.Time{}, errTokenSignature
	}
	return v.rules.check(p.payloadB64, now)
}

// checkTimesAndParties returns when the token stops being valid.
func (c claimRules) checkTimesAndParties(claims map[string]json.RawMessage, now time.Time) (time.Time, error) {
	rawExp, ok := claims["exp"]
	if !ok {
		return time.Time{}, errTokenMissingExp
	}
	exp, err := numericDate(rawExp)
	if err != nil {
		return time.Time{}, err
	}
	expires := exp.Add(clockLeeway)
	if !now.Before(expires) {
		return time.Time{}, errTokenExpired
	}
	if raw, ok := claims["nbf"]; ok {
		nbf, err := numericDate(raw)
		if err != nil {
			return time.Time{}, err
		}
		if nbf.After(now.Add(clockLeeway)) {
			return time.Time{}, errTokenNotYetValid
		}
	}
	if raw, ok := claims["iat"]; ok {
		iat, err := numericDate(raw)
		if err != nil {
			return time.Time{}, err
		}
		if iat.After(now.Add(clockLeeway)) {
			return time.Time{}, errTokenIssuedFuture
		}
	}
	if c.issuer != "" {
		if iss, ok := jsonString(claims["iss"]); !ok || iss != c.issuer {
			return time.Time{}, errTokenIssuer
		}
	}
	if c.audience != "" && !audienceContains(claims["aud"], c.audience) {
		return time.Time{}, errTokenAudience
	}
	return expires, nil
}

// userID takes the first of the configured claims that is present; a present
// claim that is not a usable string is an error, not a reason to look further.
func (c claimRules) userID(claims map[string]json.RawMessage) (string, error) {
	for _, name := range c.userClaims {
		raw, ok := claims[name]
		if !ok {
			continue
		}
		id, ok := jsonString(raw)
		// PostgreSQL text cannot hold NUL, so such an id could never own a row.
		if !ok || id == "" || len(id) > maxUserIDBytes || strings.IndexByte(id, 0) >= 0 {
			return "", errTokenUserID
		}
		return id, nil
	}
	return "", errTokenUserID
}

func (v *hs256Verifier) sign(signingInput string) []byte {
	mac := hmac.New(sha256.New, v.secret)
	mac.Write([]byte(signingInput))
	return mac.Sum(nil)
}

// Sign makes an HS256 token of claims with the verifier's secret; it serves
// the token command and the tests.
func (v *hs256Verifier) Sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	return signingInput + "." + enc.EncodeToString(v.sign(signingInput)), nil
}

// decodeSegment is strict: no padding and no stray bits, so one token has
// exactly one encoding.
func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// numericDate reads a JSON number of seconds since the epoch; fractions are
// allowed (RFC 7519 section 2).
func numericDate(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, errTokenMalformed
	}
	seconds, err := strconv.ParseFloat(string(raw), 64)
	// Beyond ±2^53 s the date is meaningless and the conversion overflows.
	if err != nil || math.Abs(seconds) > 1<<53 {
		return time.Time{}, errTokenMalformed
	}
	whole, frac := math.Modf(seconds)
	return time.Unix(int64(whole), int64(frac*1e9)), nil
}

// audienceContains reports whether aud, a string or an array of strings,
// names want.
func audienceContains(raw json.RawMessage, want string) bool {
	if len(raw) == 0 {
		return false
	}
	if one, ok := jsonString(raw); ok {
		return one == want
	}
	var many []string
	if raw[0] != '[' || json.Unmarshal(raw, &many) != nil {
		return false
	}
	for _, aud := range many {
		if aud == want {
			return true
		}
	}
	return false
}

// errTokenUnknownKey: the token names a kid the key set does not hold.
var errTokenUnknownKey = errors.New("token signed with an unknown key")

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

// jwksVerifier checks tokens signed with a key from a JWK Set, as Better
// Auth's jwt() plugin issues them.
type jwksVerifier struct {
	keys  keySource
	rules claimRules
}

// asymmetricAlgs are the algorithms some JWKS key could verify; anything
// else is refused before a key is looked up (or fetched).
var asymmetricAlgs = map[string]bool{
	"EdDSA": true, "Ed25519": true, "ES256": true, "ES384": true, "ES512": true,
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true,
}

func (v *jwksVerifier) verifyParsed(p parsedToken, now time.Time) (string, time.Time, error) {
	if !asymmetricAlgs[p.alg] {
		return "", time.Time{}, errTokenAlgorithm
	}
	if p.kid == "" {
		return "", time.Time{}, errTokenUnknownKey
	}
	k, err := v.keys.key(p.kid)
	if err != nil {
		return "", time.Time{}, err
	}
	// The key decides the algorithm; the header must agree with it.
	if !k.allows(p.alg) {
		return "", time.Time{}, errTokenAlgorithm
	}
	if !k.verify(p.alg, p.signingInput, p.signature) {
		return "", time.Time{}, errTokenSignature
	}
	return v.rules.check(p.payloadB64, now)
}

// verifiers accepts HS256 tokens with the shared secret and asymmetric
// tokens from the JWKS, whichever are configured. The header's alg only
// picks the path; each path then pins its own algorithms.
type verifiers struct {
	hs256 *hs256Verifier // nil without BETTER_AUTH_SECRET
	jwks  *jwksVerifier  // nil without BETTER_AUTH_URL
}

func (v *verifiers) Verify(token string, now time.Time) (string, error) {
	userID, _, err := v.VerifyUntil(token, now)
	return userID, err
}

// VerifyUntil is Verify that also tells until when the token is valid.
func (v *verifiers) VerifyUntil(token string, now time.Time) (string, time.Time, error) {
	p, err := parseToken(token)
	if err != nil {
		return "", time.Time{}, err
	}
	if p.alg == "HS256" {
		if v.hs256 == nil {
			return "", time.Time{}, errTokenAlgorithm
		}
		return v.hs256.verifyParsed(p, now)
	}
	if v.jwks == nil {
		return "", time.Time{}, errTokenAlgorithm
	}
	return v.jwks.verifyParsed(p, now)
}
