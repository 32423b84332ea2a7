package main

import (
	"net/http"
	"strings"
	"testing"
)

func TestCORS(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	var err error
	if cfg.cors, err = parseCORSOrigins("http://localhost:3000, https://app.example.com/"); err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, cfg, testStore)
	token := mustToken(t, newUser(t))

	for _, r := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"success", "GET", "/api/tasks", token, 200},
		{"401", "GET", "/api/tasks", "", 401},
		{"404", "GET", "/api/tasks/999999999999", token, 404},
		{"405", "DELETE", "/api/tasks", token, 405},
		{"422", "GET", "/api/tasks?limit=0", token, 422},
	} {
		for _, origin := range []string{"http://localhost:3000", "https://app.example.com"} {
			res := srv.request(t, r.method, r.path, r.token, nil, "Origin", origin)
			if res.status != r.want {
				t.Errorf("%s: status %d; want %d", r.name, res.status, r.want)
			}
			if res.header.Get("Access-Control-Allow-Origin") != origin || res.header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(strings.Join(res.header.Values("Vary"), ","), "Origin") {
				t.Errorf("%s from %s: headers %v; want the origin allowed with credentials and Vary: Origin", r.name, origin, res.header)
			}
		}
	}

	res := srv.request(t, "GET", "/api/tasks", token, nil, "Origin", "https://evil.example")
	for name := range res.header {
		if strings.HasPrefix(name, "Access-Control-Allow-") {
			t.Errorf("unlisted origin got %s", name)
		}
	}

	pre := srv.request(t, "OPTIONS", "/api/tasks/123/complete", "", nil,
		"Origin", "http://localhost:3000", "Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "authorization, content-type")
	if pre.status != http.StatusNoContent {
		t.Fatalf("preflight = %s; want 204 without a token", pre)
	}
	methods := pre.header.Get("Access-Control-Allow-Methods")
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		if !strings.Contains(methods, m) {
			t.Errorf("Allow-Methods %q lacks %s", methods, m)
		}
	}
	if h := strings.ToLower(pre.header.Get("Access-Control-Allow-Headers")); !strings.Contains(h, "authorization") || !strings.Contains(h, "content-type") {
		t.Errorf("Allow-Headers = %q; want Authorization and Content-Type", h)
	}
	if pre.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("preflight Allow-Origin = %q", pre.header.Get("Access-Control-Allow-Origin"))
	}
	evilPre := srv.request(t, "OPTIONS", "/api/tasks", "", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if evilPre.header.Get("Access-Control-Allow-Origin") != "" || evilPre.header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight from an unlisted origin got CORS headers %v", evilPre.header)
	}

	t.Run("wildcard", func(t *testing.T) {
		cfg := testConfig()
		cfg.cors, _ = parseCORSOrigins("*")
		srv := newTestServer(t, cfg, testStore)
		res := srv.request(t, "GET", "/api/tasks", "", nil, "Origin", "https://anywhere.example")
		if res.header.Get("Access-Control-Allow-Origin") != "*" || res.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("wildcard headers = %v; want * without credentials", res.header)
		}
	})
}

func TestParseCORSOrigins(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"localhost:3000", "ftp://x.example", "http://x.example/path", ",", "http://", "https://a.example?x=1"} {
		if _, err := parseCORSOrigins(bad); err == nil {
			t.Errorf("parseCORSOrigins(%q) = nil error; want an error", bad)
		}
	}
	p, err := parseCORSOrigins(" http://a.example:8080 ,https://b.example/ ")
	if err != nil || !p.origins["http://a.example:8080"] || !p.origins["https://b.example"] || p.anyOrigin {
		t.Errorf("parseCORSOrigins = %+v, %v", p, err)
	}
}

func TestCORSForConditionalHeaders(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	pre := srv.request(t, "OPTIONS", "/api/tasks/1", "", nil, "Origin", "http://localhost:3000", "Access-Control-Request-Method", "PUT")
	allowed := strings.ToLower(pre.header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"if-match", "if-none-match", "idempotency-key"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("preflight Allow-Headers %q lacks %s", allowed, h)
		}
	}
	res := srv.request(t, "GET", "/api/tasks", mustToken(t, newUser(t)), nil, "Origin", "http://localhost:3000")
	if !strings.Contains(res.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Errorf("Expose-Headers %q lacks ETag", res.header.Get("Access-Control-Expose-Headers"))
	}
}
