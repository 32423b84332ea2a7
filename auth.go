package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tokenVerifier turns a bearer token into the user id it was issued for,
// and tells until when the token is valid.
type tokenVerifier interface {
	VerifyUntil(token string, now time.Time) (userID string, validUntil time.Time, err error)
}

// userIDKey is the context key of the authenticated user id; only
// requireAuth sets it.
type userIDKey struct{}

func withUserID(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, userIDKey{}, userID)
}

// userIDFrom returns the authenticated user id that requireAuth stored.
func userIDFrom(ctx context.Context) (string, bool) {
	userID, ok := ctx.Value(userIDKey{}).(string)
	return userID, ok && userID != ""
}

// newVerifiers builds the token verifiers cfg asks for. JWKS tokens must
// carry the origin of BETTER_AUTH_URL as iss and aud (what Better Auth's
// own verifier checks) unless JWT_ISSUER / JWT_AUDIENCE say otherwise, and
// their user id is sub. The JWKS verifier gets its keys from keys.
func newVerifiers(cfg config, keys keySource) *verifiers {
	v := &verifiers{}
	t := cfg.tokens
	if t.secret != nil {
		v.hs256 = newHS256Verifier(t.secret, t.issuer, t.audience, t.userClaim)
	}
	if cfg.authOrigin != "" {
		rules := claimRules{issuer: cfg.authOrigin, audience: cfg.authOrigin, userClaims: []string{"sub"}}
		if t.issuer != "" {
			rules.issuer = t.issuer
		}
		if t.audience != "" {
			rules.audience = t.audience
		}
		v.jwks = &jwksVerifier{keys: keys, rules: rules}
	}
	return v
}

// tokenCache remembers tokens that verified, so a client sending the same
// token with every request pays for the HMAC and the claims once. An entry
// lives until the token expires or tokenCacheMaxAge passes, whichever is
// first (so a JWKS key the issuer rotates out stops working within that
// time); the map is capped, evicting a random entry when full. Entries are
// keyed by the whole token, so a token differing in any byte is verified
// from scratch.
//
// The cap is sized for the users active within tokenCacheMaxAge, not for
// a benchmark's few: with 10,000 users sending at random, a 4096-entry
// cache missed three requests in five, and get at 1,000,000 rows (10,000
// users) lost to HS256 and its garbage what it did not lose to the table.
// An entry costs about 300 bytes with a 150-byte token (the token itself,
// copied out of its header line, and the map's share), so a full cache
// holds about 5 MiB.
type tokenCache struct {
	mu      sync.RWMutex
	entries map[string]cachedToken
	max     int
}

type cachedToken struct {
	userID string
	until  time.Time
}

const (
	tokenCacheSize   = 16384
	tokenCacheMaxAge = time.Minute
)

func newTokenCache(size int) *tokenCache {
	return &tokenCache{entries: map[string]cachedToken{}, max: size}
}

func (c *tokenCache) get(token string, now time.Time) (string, bool) {
	c.mu.RLock()
	e, ok := c.entries[token]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return "", false
	}
	return e.userID, true
}

func (c *tokenCache) put(token, userID string, validUntil, now time.Time) {
	until := now.Add(tokenCacheMaxAge)
	if validUntil.Before(until) {
		until = validUntil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k := range c.entries { // map order is random: a random victim
			delete(c.entries, k)
			break
		}
	}
	// A copy: token is a slice of its request's Authorization header, and
	// the whole header line would otherwise stay alive with the entry.
	c.entries[strings.Clone(token)] = cachedToken{userID: userID, until: until}
}

// verify checks token through the cache.
func (c *tokenCache) verify(v tokenVerifier, token string, now time.Time) (string, error) {
	if userID, ok := c.get(token, now); ok {
		return userID, nil
	}
	userID, until, err := v.VerifyUntil(token, now)
	if err != nil {
		return "", err
	}
	c.put(token, userID, until, now)
	return userID, nil
}

// requireAuth lets a request through only with a valid bearer token, before
// anything else about the request (body, route, method) is looked at. Every
// failure gets the same 401; the reason goes to the request's log line.
func requireAuth(verifier tokenVerifier, now func() time.Time, next http.Handler) http.Handler {
	cache := newTokenCache(tokenCacheSize)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r.Header)
		if !ok {
			writeError(w, r, unauthenticated(errNoBearerToken))
			return
		}
		userID, err := cache.verify(verifier, token, now())
		if err != nil {
			writeError(w, r, unauthenticated(err))
			return
		}
		if info := infoFrom(r.Context()); info != nil {
			info.userID = userID
		}
		next.ServeHTTP(w, r.WithContext(withUserID(r.Context(), userID)))
	})
}

// errNoBearerToken: no usable "Authorization: Bearer" header at all.
var errNoBearerToken = &tokenError{"missing", "missing or malformed Authorization header"}

// unauthenticated is the one 401 every refused token gets; reason is only
// for the log line and the metrics.
func unauthenticated(reason error) error {
	return &apiError{code: codeAuthenticationRequired, detail: "authentication required: send a valid bearer token", cause: reason}
}

// bearerToken takes the token from exactly one "Authorization: Bearer"
// header; the scheme name is case-insensitive (RFC 9110 section 11.1).
func bearerToken(h http.Header) (string, bool) {
	values := h.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}
