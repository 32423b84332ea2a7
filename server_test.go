package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRouting(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "a"})

	t.Run("trailing slash without redirect", func(t *testing.T) {
		for _, r := range []struct {
			method, path string
			body         any
			want         int
		}{
			{"GET", "/api/tasks/", nil, 200},
			{"POST", "/api/tasks/", map[string]any{"title": "b"}, 201},
			{"GET", taskPath(task.ID) + "/", nil, 200},
			{"PUT", taskPath(task.ID) + "/", map[string]any{"title": "c"}, 200},
			{"PATCH", taskPath(task.ID) + "/complete/", map[string]any{"completed": true}, 200},
			{"GET", "/healthz/", nil, 200},
		} {
			if res := srv.request(t, r.method, r.path, token, r.body); res.status != r.want {
				t.Errorf("%s %s = %s; want %d", r.method, r.path, res, r.want)
			}
		}
	})
	t.Run("unknown routes", func(t *testing.T) {
		for _, p := range []string{"/", "/nope", "/api", "/api/", "/api/nope", "/api/tasks/1/nope", "/api//tasks", "/api/tasks//", "/api/tasks/../tasks", "/healthz/x"} {
			wantError(t, srv.request(t, "GET", p, token, nil), http.StatusNotFound, codeNotFound)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		for _, r := range []struct{ method, path, allow string }{
			{"DELETE", "/api/tasks", "GET, HEAD, POST"},
			{"PUT", "/api/tasks", "GET, HEAD, POST"},
			{"POST", taskPath(task.ID), "DELETE, GET, HEAD, PATCH, PUT"},
			{"GET", taskPath(task.ID) + "/complete", "PATCH"},
			{"POST", "/healthz", "GET, HEAD"},
		} {
			res := srv.request(t, r.method, r.path, token, nil)
			wantError(t, res, http.StatusMethodNotAllowed, codeMethodNotAllowed)
			if got := res.header.Get("Allow"); got != r.allow {
				t.Errorf("%s %s: Allow = %q; want %q", r.method, r.path, got, r.allow)
			}
		}
	})
	t.Run("head", func(t *testing.T) {
		if res := srv.request(t, "HEAD", "/api/tasks", token, nil); res.status != http.StatusOK {
			t.Errorf("HEAD /api/tasks = %s; want 200", res)
		}
	})
}

func TestHealth(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	for _, p := range []string{"/healthz", "/readyz"} {
		res := srv.request(t, "GET", p, "", nil)
		if res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != `{"status":"ok"}` {
			t.Errorf("GET %s = %s; want 200 {\"status\":\"ok\"}", p, res)
		}
	}
}

func TestResponseHeaders(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	res := srv.request(t, "GET", "/api/tasks", token, nil, "X-Request-ID", "abc-123")
	if got := res.header.Get("X-Request-ID"); got != "abc-123" {
		t.Errorf("X-Request-ID = %q; want the caller's abc-123 echoed", got)
	}
	if res.header.Get("Content-Type") != "application/json" || res.header.Get("X-Content-Type-Options") != "nosniff" || res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers = %v; want JSON, nosniff, no-store", res.header)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("a", 65), "semi;colon"} {
		res := srv.request(t, "GET", "/api/nope", token, nil, "X-Request-ID", bad)
		id := res.header.Get("X-Request-ID")
		if id == "" || id == bad {
			t.Errorf("X-Request-ID %q: answered %q; want a fresh id", bad, id)
		}
		var body errorBody
		if json.Unmarshal(res.body, &body); body.RequestID != id {
			t.Errorf("error body request_id = %q; want %q", body.RequestID, id)
		}
	}
	if !strings.Contains(srv.logs.String(), `"request_id":"abc-123"`) {
		t.Errorf("log lines lack the request id:\n%s", srv.logs)
	}
}

func TestPanicIsContractError(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	s := &server{logger: slog.New(slog.NewJSONHandler(logs, nil))}
	cors, _ := parseCORSOrigins("http://localhost:3000")
	h := s.logRequests(cors.middleware(s.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom: secret internals")
	}))))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res := (&testServer{Server: srv}).request(t, "GET", "/api/tasks", "", nil, "Origin", "http://localhost:3000")
	wantError(t, res, http.StatusInternalServerError, codeInternal)
	if strings.Contains(string(res.body), "boom") || strings.Contains(string(res.body), "goroutine") {
		t.Errorf("500 body leaks the panic: %s", res.body)
	}
	if res.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("500 lacks CORS headers: %v", res.header)
	}
	if !strings.Contains(logs.String(), "boom: secret internals") || !strings.Contains(logs.String(), "stack") {
		t.Errorf("panic not logged with its stack:\n%s", logs)
	}
}

// TestUnauthenticatedErrorsShareTheLogBudget: a flood of 404s for long
// paths nobody signed in for writes a bounded log, each path cut to
// maxLoggedBytes with its length noted; and the count of lines not
// written appears about a second after the flood ends, with no later
// request to carry it.
func TestUnauthenticatedErrorsShareTheLogBudget(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	long := strings.Repeat("a", 60<<10)
	start := time.Now()
	for i := range 120 {
		path := "/" + long
		if i%2 == 0 {
			path = "/api//" + long
		}
		if res := srv.request(t, "GET", path, "", nil); res.status != http.StatusNotFound {
			t.Fatalf("GET %.20s... = %d; want 404", path, res.status)
		}
	}
	windows := int(time.Since(start)/floodLogWindow) + 2
	logs := srv.logs.String()
	if lines := strings.Count(logs, `"status":404`); lines > windows*floodLogLines {
		t.Errorf("120 404s in %d log windows wrote %d request lines; want at most %d a window", windows, lines, floodLogLines)
	}
	for _, line := range strings.Split(logs, "\n") {
		if len(line) > maxLoggedBytes+512 {
			t.Fatalf("a log line of %d bytes: %.300s", len(line), line)
		}
	}
	if !strings.Contains(logs, fmt.Sprintf("...(%d bytes)", len(long)+1)) {
		t.Errorf("no cut path with its length in the log:\n%.2000s", logs)
	}
	time.Sleep(floodLogWindow + 500*time.Millisecond)
	if !strings.Contains(srv.logs.String(), "answers not logged one by one") {
		t.Errorf("no count of the lines not logged, %v after the flood:\n%.2000s", floodLogWindow+500*time.Millisecond, srv.logs)
	}
}

// FuzzHandler drives the whole handler stack with arbitrary methods, paths,
// headers and bodies: no panic, no 500, and every error in the contract's
// shape.
func FuzzHandler(f *testing.F) {
	f.Add(uint8(0), "/api/tasks", true, "", "", []byte(`{"title":"a"}`))
	f.Add(uint8(1), "/api/tasks/1", true, "If-Match", `"v1"`, []byte(`{"title":"b","completed":true}`))
	f.Add(uint8(2), "/api/tasks/1/complete", true, "Content-Type", "text/plain", []byte(`{"completed":false}`))
	f.Add(uint8(3), "/api/tasks/9223372036854775808", false, "", "", []byte{})
	f.Add(uint8(4), "/api/tasks?limit=0&completed=maybe", true, "Origin", "http://localhost:3000", []byte("\xff"))
	f.Add(uint8(5), "/healthz/", false, "Access-Control-Request-Method", "PUT", []byte(nil))
	f.Add(uint8(0), "/api/tasks", true, "Idempotency-Key", "k1", []byte(`{"title":"\u0000"}`))
	methods := []string{"POST", "PUT", "PATCH", "GET", "DELETE", "OPTIONS", "HEAD", "TRACE", "BREW"}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	cfg := testConfig()
	cfg.rateLimitRPS, cfg.rateLimitBurst = 1000, 1000
	handler := handlerOf(newServer(logger, testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, newMetrics(testStore)))
	user := "fuzz-" + randomHex(6)
	token := rawToken(testSecret, `{"alg":"HS256"}`, fmt.Sprintf(`{"sub":%q,"exp":%d}`, user, time.Now().Add(24*time.Hour).Unix()))

	f.Fuzz(func(t *testing.T, method uint8, target string, authed bool, headerName, headerValue string, body []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		req := &http.Request{
			Method: methods[int(method)%len(methods)], URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Host: "example",
		}
		if authed {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if headerName != "" && !strings.EqualFold(headerName, "Authorization") {
			req.Header.Add(headerName, headerValue)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req.WithContext(context.Background()))
		if rec.Code >= 500 {
			t.Fatalf("%s %s = %d %s", req.Method, target, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 {
			var e map[string]any
			if rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &e) != nil {
				t.Fatalf("%s %s = %d with a body not in the contract's shape: %q", req.Method, target, rec.Code, rec.Body.String())
			}
			if detail, _ := e["detail"].(string); detail == "" {
				t.Fatalf("error without detail: %q", rec.Body.String())
			}
			if code, _ := e["error_code"].(string); code == "" {
				t.Fatalf("error without error_code: %q", rec.Body.String())
			}
		}
	})
}

// TestClipCutsOnACharacter: a long logged value is cut at a character
// boundary at most maxLoggedBytes in, its length noted.
func TestClipCutsOnACharacter(t *testing.T) {
	t.Parallel()
	long := "a" + strings.Repeat("é", maxLoggedBytes)
	got := clip(long)
	head, _, _ := strings.Cut(got, "...(")
	if !utf8.ValidString(got) || len(head) > maxLoggedBytes || !strings.HasSuffix(got, fmt.Sprintf("(%d bytes)", len(long))) {
		t.Errorf("clip gave %q", got)
	}
	if clip("short") != "short" {
		t.Error("clip changed a short value")
	}
}

// TestHandlerWithoutAuthIsA500: a task handler reached without
// requireAuth in front of it is a wiring bug, answered 500, never served
// for an empty user.
func TestHandlerWithoutAuthIsA500(t *testing.T) {
	t.Parallel()
	s := &server{logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	rec := httptest.NewRecorder()
	s.handleListTasks().ServeHTTP(rec, httptest.NewRequest("GET", "/api/tasks", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status %d; want 500", rec.Code)
	}
}
