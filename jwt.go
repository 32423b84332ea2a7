package main

import (
	"crypto/hmac"
	"crypto/sha256"
	_ "crypto/sha512"
	"encoding/base64"
	"encoding/json"
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

// usableUserID is the one rule for a user id: 1 to maxUserIDBytes bytes
// and no NUL, which PostgreSQL text cannot hold, so such an id could never
// own a row.
func usableUserID(id string) bool {
	return id != "" && len(id) <= maxUserIDBytes && strings.IndexByte(id, 0) < 0
}

// defaultUserClaims are tried in order when no claim is configured: frontends
// in the wild mint HS256 tokens with any of these names; sub is the standard.
var defaultUserClaims = []string{"sub", "user_id", "userId", "id"}

// tokenError is why a token was refused: a message for the log line and a
// short, bounded reason for the metrics' label. The client always sees the
// same 401.
type tokenError struct {
	reason string
	msg    string
}

// Error is the message for the log line.
func (e *tokenError) Error() string { return e.msg }

// Each way a token fails verification has its own error here (a request
// with no token at all is auth.go's errNoBearerToken).
var (
	errTokenTooLarge     = &tokenError{"too_large", "token too large"}
	errTokenMalformed    = &tokenError{"malformed", "token malformed"}
	errTokenAlgorithm    = &tokenError{"algorithm", "token algorithm not accepted"}
	errTokenCrit         = &tokenError{"crit", "token header has crit"}
	errTokenType         = &tokenError{"typ", "token typ is not JWT"}
	errTokenSignature    = &tokenError{"signature", "token signature invalid"}
	errTokenExpired      = &tokenError{"expired", "token expired"}
	errTokenMissingExp   = &tokenError{"missing_exp", "token has no exp"}
	errTokenNotYetValid  = &tokenError{"not_yet_valid", "token not valid yet"}
	errTokenIssuedFuture = &tokenError{"issued_in_future", "token issued in the future"}
	errTokenIssuer       = &tokenError{"issuer", "token issuer mismatch"}
	errTokenAudience     = &tokenError{"audience", "token audience mismatch"}
	errTokenUserID       = &tokenError{"user_id", "token has no usable user id"}
	// errTokenUnknownKey: the token names a kid the key set does not hold.
	errTokenUnknownKey = &tokenError{"unknown_key", "token signed with an unknown key"}
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
	if err != nil || !strictJSONText(header) {
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
	// RFC 8725 section 3.11: a typ, when present, must say this is a JWT,
	// so that other HS256 objects under the same secret (Better Auth's
	// session-cache cookies among them) are not taken for access tokens.
	if raw, ok := hdr["typ"]; ok {
		if typ, ok := jsonString(raw); !ok || !strings.EqualFold(typ, "JWT") {
			return parsedToken{}, errTokenType
		}
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
	if err != nil || !strictJSONText(payload) {
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

// VerifyUntil returns the user id that token carries when the token is
// valid at time now, and until when it is; otherwise an error naming the
// first rule it breaks.
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
	if err := notAfter(claims["nbf"], now, errTokenNotYetValid); err != nil {
		return time.Time{}, err
	}
	if err := notAfter(claims["iat"], now, errTokenIssuedFuture); err != nil {
		return time.Time{}, err
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

// notAfter checks an optional date claim (nbf, iat): when present it must
// be a number and not later than now plus the leeway, else tooLate.
func notAfter(raw json.RawMessage, now time.Time, tooLate error) error {
	if raw == nil {
		return nil
	}
	date, err := numericDate(raw)
	if err != nil {
		return err
	}
	if date.After(now.Add(clockLeeway)) {
		return tooLate
	}
	return nil
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
		if !ok || !usableUserID(id) {
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

// VerifyUntil returns the user id token carries when it is valid at now,
// and until when it is.
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
