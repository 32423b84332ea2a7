package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestRateLimiterBuckets(t *testing.T) {
	t.Parallel()
	l := newRateLimiter(2, 3) // 2 per second, bursts of 3
	t0 := pinnedNow
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a", t0); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("fourth request = %v, wait %v; want refused with 500ms to wait", ok, wait)
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Fatal("another user was limited by a's bucket")
	}
	if ok, _ := l.allow("a", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("a token did not come back after 1/rate seconds")
	}
	// Idle users' buckets are reclaimed.
	l.allow("c", t0.Add(2*time.Minute))
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets after everyone but c went idle; want 1", n)
	}
	if newRateLimiter(0, 10) != nil {
		t.Fatal("RATE_LIMIT_RPS=0 must turn the limit off")
	}
}

func TestRateLimitAnswers429(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.rateLimitRPS, cfg.rateLimitBurst = 0.5, 3
	srv := newTestServer(t, cfg, testStore)
	token := mustToken(t, newUser(t))
	for i := 0; i < 3; i++ {
		if res := srv.request(t, "GET", "/api/tasks", token, nil); res.status != http.StatusOK {
			t.Fatalf("request %d = %s; want 200 within the burst", i+1, res)
		}
	}
	res := srv.request(t, "GET", "/api/tasks", token, nil, "Origin", "http://localhost:3000")
	wantError(t, res, http.StatusTooManyRequests, codeRateLimited)
	if ra, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After = %q; want 1 or 2 seconds", res.header.Get("Retry-After"))
	}
	if res.header.Get("Access-Control-Allow-Origin") == "" {
		t.Error("429 lacks CORS headers")
	}
	if res := srv.request(t, "GET", "/api/tasks", mustToken(t, newUser(t)), nil); res.status != http.StatusOK {
		t.Errorf("another user = %s; want 200", res)
	}
}

// size is the number of users with a bucket.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
