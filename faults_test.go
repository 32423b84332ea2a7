package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSlowClientsDoNotStopService holds 500 connections open, half idle and
// half trickling a header a byte at a time, and checks that normal requests
// are still served by the real program.
func TestSlowClientsDoNotStopService(t *testing.T) {
	t.Parallel()
	base, stop, done, _ := startProgram(t, baseEnv(nil))
	defer func() { stop(); <-done }()
	addr := strings.TrimPrefix(base, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 500; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	stopTrickle := make(chan struct{})
	var trickling sync.WaitGroup
	for i := 0; i < 250; i++ {
		trickling.Add(1)
		go func(c net.Conn) {
			defer trickling.Done()
			header := "GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
			for j := 0; j < len(header); j++ {
				if _, err := c.Write([]byte{header[j]}); err != nil {
					return
				}
				select {
				case <-stopTrickle:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}(conns[i])
	}
	defer func() { close(stopTrickle); trickling.Wait() }()

	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, newUser(t))
	for i := 0; i < 20; i++ {
		if res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "still served"}); res.status != http.StatusCreated {
			t.Fatalf("request %d beside 500 slow connections = %s", i, res)
		}
	}
}

func TestConcurrentStartOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	dsn := createDatabase(t)
	type instance struct {
		base string
		stop context.CancelFunc
		done <-chan error
	}
	instances := make(chan instance, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base, stop, done, _, err := launchProgram(baseEnv(map[string]string{"DATABASE_URL": dsn}))
			if err != nil {
				t.Error(err)
				return
			}
			instances <- instance{base, stop, done}
		}()
	}
	wg.Wait()
	close(instances)
	token := mustToken(t, newUser(t))
	n := 0
	for in := range instances {
		n++
		srv := &testServer{Server: &httptest.Server{URL: in.base}}
		mustCreate(t, srv, token, map[string]any{"title": "from " + in.base})
		in.stop()
		if err := <-in.done; err != nil {
			t.Errorf("instance at %s: %v", in.base, err)
		}
	}
	if n != 3 {
		t.Fatalf("%d instances came up; want 3", n)
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
	handler := newServer(logger, testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, newMetrics(testStore))
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
