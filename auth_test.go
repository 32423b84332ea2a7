package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAuthRequired(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	expired, err := newHS256Verifier([]byte(testSecret), "", "", "").Sign(map[string]any{"sub": "u", "exp": time.Now().Add(-time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	valid := mustToken(t, newUser(t))
	tests := []struct {
		name    string
		method  string
		path    string
		headers []string
		body    any
	}{
		{"no header", "GET", "/api/tasks", nil, nil},
		{"no header, bad body", "POST", "/api/tasks", nil, "{not json"},
		{"no header, huge body", "POST", "/api/tasks", nil, strings.Repeat("x", maxBodyBytes+10)},
		{"no header, unknown api path", "GET", "/api/nothing-here", nil, nil},
		{"no header, wrong method", "DELETE", "/api/tasks", nil, nil},
		{"no header, bad id", "GET", "/api/tasks/abc", nil, nil},
		{"basic scheme", "GET", "/api/tasks", []string{"Authorization", "Basic dXNlcjpwYXNz"}, nil},
		{"bearer without token", "GET", "/api/tasks", []string{"Authorization", "Bearer"}, nil},
		{"bearer with blank token", "GET", "/api/tasks", []string{"Authorization", "Bearer   "}, nil},
		{"token without scheme", "GET", "/api/tasks", []string{"Authorization", valid}, nil},
		{"two authorization headers", "GET", "/api/tasks", []string{"Authorization", "Bearer " + valid, "Authorization", "Bearer " + valid}, nil},
		{"token with inner space", "GET", "/api/tasks", []string{"Authorization", "Bearer " + valid + " extra"}, nil},
		{"forged", "GET", "/api/tasks", []string{"Authorization", "Bearer " + rawToken("some-other-secret-of-at-least-32-bytes", `{"alg":"HS256"}`, `{"sub":"u","exp":9999999999}`)}, nil},
		{"expired", "GET", "/api/tasks", []string{"Authorization", "Bearer " + expired}, nil},
		{"garbage", "GET", "/api/tasks/1", []string{"Authorization", "Bearer a.b.c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := srv.request(t, tt.method, tt.path, "", tt.body, tt.headers...)
			wantError(t, res, http.StatusUnauthorized, codeAuthenticationRequired)
			if got := res.header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q; want Bearer", got)
			}
		})
	}
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		res := srv.request(t, "GET", "/api/tasks", "", nil, "Authorization", scheme+" "+token)
		if res.status != http.StatusOK {
			t.Errorf("scheme %q: %s; want 200", scheme, res)
		}
	}
	res := srv.request(t, "GET", "/api/tasks", "", nil, "Authorization", "Bearer   "+token)
	if res.status != http.StatusOK {
		t.Errorf("extra spaces before the token: %s; want 200", res)
	}
}

func TestAuthFailureIsLoggedWithoutToken(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	forged := rawToken("some-other-secret-of-at-least-32-bytes", `{"alg":"HS256"}`, `{"sub":"u","exp":9999999999}`)
	srv.request(t, "GET", "/api/tasks", forged, nil)
	good := mustToken(t, newUser(t))
	srv.request(t, "GET", "/api/tasks", good, nil)
	logs := srv.logs.String()
	if !strings.Contains(logs, errTokenSignature.Error()) {
		t.Errorf("logs do not give the failure reason %q:\n%s", errTokenSignature, logs)
	}
	for _, secret := range []string{forged, good, strings.Split(good, ".")[2], testSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain a token or the secret:\n%s", logs)
		}
	}
}

// TestBadTokensNeverReachTheDatabase: a flood of bad tokens gets 401s and
// opens not one database connection. The pool keeps no idle connection,
// so any database work would have to connect through the counting proxy;
// one good request at the end shows that it does.
func TestBadTokensNeverReachTheDatabase(t *testing.T) {
	t.Parallel()
	proxy, store, db := newProxiedStore(t)
	db.SetMaxIdleConns(0)
	srv := newTestServer(t, testConfig(), store)
	before := proxy.accepted.Load()
	forged := rawToken("some-other-secret-of-at-least-32-bytes", `{"alg":"HS256"}`, `{"sub":"u","exp":9999999999}`)
	for i := 0; i < 200; i++ {
		token := []string{forged, "a.b.c", ""}[i%3]
		res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "flood"})
		if res.status != http.StatusUnauthorized {
			t.Fatalf("bad token %d = %s; want 401 without touching the database", i, res)
		}
	}
	if n := proxy.accepted.Load() - before; n != 0 {
		t.Errorf("a bad-token flood opened %d database connections; want 0", n)
	}
	mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "counted"})
	if proxy.accepted.Load() == before {
		t.Error("a good request opened no database connection: the count proves nothing")
	}
}

func TestTokenCache(t *testing.T) {
	t.Parallel()
	v := &verifiers{hs256: newHS256Verifier([]byte(testSecret), "", "", "")}
	c := newTokenCache(3)
	sign := func(sub string, exp time.Time) string {
		token, _ := v.hs256.Sign(map[string]any{"sub": sub, "exp": exp.Unix()})
		return token
	}
	now := pinnedNow
	short := sign("short", now.Add(10*time.Second)) // valid until exp + 30 s leeway
	long := sign("long", now.Add(time.Hour))
	for _, token := range []string{short, long} {
		if _, err := c.verify(v, token, now); err != nil {
			t.Fatal(err)
		}
	}
	if id, ok := c.get(short, now.Add(39*time.Second)); !ok || id != "short" {
		t.Errorf("cached short token before its expiry: %q, %v", id, ok)
	}
	if _, ok := c.get(short, now.Add(40*time.Second)); ok {
		t.Error("cache served a token past exp + leeway")
	}
	if _, err := c.verify(v, short, now.Add(40*time.Second)); !errors.Is(err, errTokenExpired) {
		t.Errorf("expired token through the cache: %v; want expired", err)
	}
	if _, ok := c.get(long, now.Add(tokenCacheMaxAge)); ok {
		t.Error("cache served a token longer than tokenCacheMaxAge")
	}
	for i := 0; i < 10; i++ {
		c.verify(v, sign(fmt.Sprint("u", i), now.Add(time.Hour)), now)
	}
	if n := len(c.entries); n > 3 {
		t.Errorf("cache holds %d entries; capped at 3", n)
	}
	tampered := long[:len(long)-2] + "AA"
	if _, err := c.verify(v, tampered, now); err == nil {
		t.Error("a tampered copy of a cached token passed")
	}
}

// TestUnauthorizedFloodLogIsBounded: 200 bad tokens at once leave at most
// floodLogLines request lines in the window, every 401 is counted
// in metrics, and one 401 alone is still logged with its request id.
func TestUnauthorizedFloodLogIsBounded(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	first := srv.request(t, "GET", "/api/tasks", "forged.token.x", nil)
	wantError(t, first, http.StatusUnauthorized, codeAuthenticationRequired)
	id := first.header.Get("X-Request-ID")
	if !strings.Contains(srv.logs.String(), `"request_id":"`+id+`"`) {
		t.Fatalf("a single 401 left no log line with its request id %s:\n%s", id, srv.logs)
	}
	for i := 0; i < 200; i++ {
		srv.request(t, "GET", "/api/tasks", "forged.token.x", nil)
	}
	if n := strings.Count(srv.logs.String(), `"status":401`); n > 2*floodLogLines {
		t.Errorf("%d request lines for 201 401s; want at most %d (a window may end during the flood)", n, 2*floodLogLines)
	}
	time.Sleep(floodLogWindow)
	srv.request(t, "GET", "/api/tasks", "forged.token.x", nil)
	if !strings.Contains(srv.logs.String(), "answers not logged one by one") {
		t.Errorf("no summary line after the flood:\n%s", srv.logs)
	}
}
