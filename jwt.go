package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

// hs256Verifier checks HS256 tokens against one shared secret. It is safe
// for concurrent use.
type hs256Verifier struct {
	secret     []byte
	issuer     string   // required iss when non-empty
	audience   string   // required member of aud when non-empty
	userClaims []string // claims that may hold the user id, in order
}

func newHS256Verifier(secret []byte, issuer, audience, userClaim string) *hs256Verifier {
	claims := defaultUserClaims
	if userClaim != "" {
		claims = []string{userClaim}
	}
	return &hs256Verifier{
		secret:     secret,
		issuer:     issuer,
		audience:   audience,
		userClaims: claims,
	}
}

// Verify returns the user id that token carries when the token is valid at
// time now, and an error naming the first rule it breaks otherwise.
func (v *hs256Verifier) Verify(token string, now time.Time) (string, error) {
	if len(token) > maxTokenBytes {
		return "", errTokenTooLarge
	}
	headerB64, rest, ok := strings.Cut(token, ".")
	if !ok {
		return "", errTokenMalformed
	}
	payloadB64, signatureB64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(signatureB64, ".") {
		return "", errTokenMalformed
	}

	header, err := decodeSegment(headerB64)
	if err != nil {
		return "", errTokenMalformed
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(header, &hdr); err != nil || hdr == nil {
		return "", errTokenMalformed
	}
	// The algorithm is pinned before the signature is looked at, so neither
	// "none" nor a confused algorithm ever reaches the comparison.
	if alg, ok := hdr["alg"]; !ok || !bytes.Equal(alg, []byte(`"HS256"`)) {
		return "", errTokenAlgorithm
	}
	if _, ok := hdr["crit"]; ok {
		return "", errTokenCrit
	}

	signature, err := decodeSegment(signatureB64)
	if err != nil || len(signature) != sha256.Size {
		return "", errTokenSignature
	}
	signingInput := token[:len(headerB64)+1+len(payloadB64)]
	if !hmac.Equal(signature, v.sign(signingInput)) {
		return "", errTokenSignature
	}

	payload, err := decodeSegment(payloadB64)
	if err != nil {
		return "", errTokenMalformed
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return "", errTokenMalformed
	}
	if err := v.checkClaims(claims, now); err != nil {
		return "", err
	}
	return v.userID(claims)
}

func (v *hs256Verifier) checkClaims(claims map[string]json.RawMessage, now time.Time) error {
	rawExp, ok := claims["exp"]
	if !ok {
		return errTokenMissingExp
	}
	exp, err := numericDate(rawExp)
	if err != nil {
		return err
	}
	if !now.Before(exp.Add(clockLeeway)) {
		return errTokenExpired
	}
	if raw, ok := claims["nbf"]; ok {
		nbf, err := numericDate(raw)
		if err != nil {
			return err
		}
		if nbf.After(now.Add(clockLeeway)) {
			return errTokenNotYetValid
		}
	}
	if raw, ok := claims["iat"]; ok {
		iat, err := numericDate(raw)
		if err != nil {
			return err
		}
		if iat.After(now.Add(clockLeeway)) {
			return errTokenIssuedFuture
		}
	}
	if v.issuer != "" {
		var iss string
		if err := json.Unmarshal(claims["iss"], &iss); err != nil || iss != v.issuer {
			return errTokenIssuer
		}
	}
	if v.audience != "" && !audienceContains(claims["aud"], v.audience) {
		return errTokenAudience
	}
	return nil
}

// userID takes the first of the configured claims that is present; a present
// claim that is not a usable string is an error, not a reason to look further.
func (v *hs256Verifier) userID(claims map[string]json.RawMessage) (string, error) {
	for _, name := range v.userClaims {
		raw, ok := claims[name]
		if !ok {
			continue
		}
		var id string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &id) != nil {
			return "", errTokenUserID
		}
		// PostgreSQL text cannot hold NUL, so such an id could never own a row.
		if id == "" || len(id) > maxUserIDBytes || strings.IndexByte(id, 0) >= 0 {
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
	var one string
	if json.Unmarshal(raw, &one) == nil && raw[0] == '"' {
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
