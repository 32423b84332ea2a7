package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
)

// tokenVerifier turns a bearer token into the user id it was issued for.
type tokenVerifier interface {
	Verify(token string, now time.Time) (userID string, err error)
}

type userIDKey struct{}

// userIDFrom returns the authenticated user id that requireAuth stored.
func userIDFrom(ctx context.Context) (string, bool) {
	userID, ok := ctx.Value(userIDKey{}).(string)
	return userID, ok && userID != ""
}

// requireAuth lets a request through only with a valid bearer token, before
// anything else about the request (body, route, method) is looked at. Every
// failure gets the same 401; the reason goes to the request's log line.
func requireAuth(verifier tokenVerifier, now func() time.Time, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r.Header)
		if !ok {
			rejectUnauthenticated(w, r, errNoBearerToken)
			return
		}
		userID, err := verifier.Verify(token, now())
		if err != nil {
			rejectUnauthenticated(w, r, err)
			return
		}
		noteUserID(r.Context(), userID)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userIDKey{}, userID)))
	})
}

// errNoBearerToken: no usable "Authorization: Bearer" header at all.
var errNoBearerToken = errors.New("missing or malformed Authorization header")

func rejectUnauthenticated(w http.ResponseWriter, r *http.Request, reason error) {
	noteAuthFailure(r.Context(), reason)
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeError(w, r, http.StatusUnauthorized, codeAuthenticationRequired, "authentication required: send a valid bearer token")
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
