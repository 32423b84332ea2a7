package main

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rateLimiter is a token bucket per user id. Buckets of users who have been
// idle long enough to be full again carry no information and are dropped by
// a sweep that runs at most once a minute.
type rateLimiter struct {
	rate  float64 // tokens added per second
	burst float64 // bucket size

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newRateLimiter returns nil when rate is 0: no limit.
func newRateLimiter(rate float64, burst int) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes one token from userID's bucket; when it is empty it reports
// how long until the next token.
func (l *rateLimiter) allow(userID string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		l.sweep(now)
	}
	b, ok := l.buckets[userID]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[userID] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	for userID, b := range l.buckets {
		if now.Sub(b.last) >= refill {
			delete(l.buckets, userID)
		}
	}
}

var errRateLimited = &apiError{code: codeRateLimited, detail: "too many requests: slow down and retry after the Retry-After seconds"}

// limitPerUser answers 429 once the authenticated user's bucket is empty.
// It runs after authentication, so a flood of bad tokens never reaches it
// (nor the database): those are rejected by the verifier alone.
func (l *rateLimiter) limitPerUser(now func() time.Time, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, ok := userIDFrom(r.Context())
		if !ok {
			writeError(w, r, errNoUserID)
			return
		}
		if ok, wait := l.allow(userID, now()); !ok {
			seconds := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(seconds, 1)))
			writeError(w, r, errRateLimited)
			return
		}
		next.ServeHTTP(w, r)
	})
}
