package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTokenCommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	env := envFrom(map[string]string{"BETTER_AUTH_SECRET": testSecret, "JWT_ISSUER": "iss", "JWT_AUDIENCE": "aud", "JWT_USER_CLAIM": "uid"})
	if err := run(context.Background(), []string{"todo-backend", "token", "-ttl", "2m", "someone"}, env, &stdout, &stderr); err != nil {
		t.Fatalf("token: %v (%s)", err, stderr.String())
	}
	token := strings.TrimSpace(stdout.String())
	v := newHS256Verifier([]byte(testSecret), "iss", "aud", "uid")
	if got, err := v.Verify(token, time.Now()); err != nil || got != "someone" {
		t.Fatalf("Verify(token) = %q, %v; want someone", got, err)
	}
	if _, err := v.Verify(token, time.Now().Add(3*time.Minute)); !errors.Is(err, errTokenExpired) {
		t.Errorf("token valid past its -ttl: %v", err)
	}

	stdout.Reset()
	if err := run(context.Background(), []string{"todo-backend", "token", "a", "b", "c"}, env, &stdout, io.Discard); err != nil || strings.Count(stdout.String(), "\n") != 3 {
		t.Errorf("three user ids = %q, %v; want three lines", stdout.String(), err)
	}
	for _, args := range [][]string{{"token"}, {"token", "a", ""}, {"token", "-ttl", "-1h", "a"}, {"token", "-nope", "a"}, {"token", strings.Repeat("u", 256)}} {
		if err := run(context.Background(), append([]string{"todo-backend"}, args...), env, io.Discard, io.Discard); err == nil {
			t.Errorf("todo-backend %v succeeded; want an error", args)
		}
	}
	if err := run(context.Background(), []string{"todo-backend", "token", "u"}, envFrom(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET") {
		t.Errorf("token without a secret: %v; want an error naming BETTER_AUTH_SECRET", err)
	}
	if err := run(context.Background(), []string{"todo-backend", "serve"}, env, io.Discard, io.Discard); err == nil {
		t.Error("unknown argument accepted")
	}
	stdout.Reset()
	if err := run(context.Background(), []string{"todo-backend", "-version"}, env, &stdout, io.Discard); err != nil || !strings.Contains(stdout.String(), version) {
		t.Errorf("-version = %q, %v", stdout.String(), err)
	}
}

func TestRunServesAndDrains(t *testing.T) {
	t.Parallel()
	base, stop, done, logs := startProgram(t, baseEnv(map[string]string{"LOG_LEVEL": "debug"}))
	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "through the real program"})
	if res := srv.request(t, "GET", taskPath(task.ID), token, nil); res.status != http.StatusOK {
		t.Fatalf("get = %s", res)
	}
	if res := srv.request(t, "GET", "/readyz", "", nil); res.status != http.StatusOK {
		t.Fatalf("readyz = %s", res)
	}

	// A request in flight when the signal comes is finished, not cut: its
	// headers arrive before the signal and its body after.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"title":"in flight"}`
	fmt.Fprintf(conn, "POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", token, len(body))
	time.Sleep(100 * time.Millisecond)
	stop()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("run returned %v with a request in flight", err)
	default:
	}
	io.WriteString(conn, body)
	inFlight, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	inFlight.Body.Close()
	if inFlight.StatusCode != http.StatusCreated {
		t.Errorf("in-flight request during shutdown = %d; want 201", inFlight.StatusCode)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after shutdown = %v; want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
	for _, want := range []string{`"msg":"request"`, `"method":"POST"`, `"status":201`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), testSecret) {
		t.Error("logs contain the token or the secret")
	}
}

func TestRunWaitsForDatabaseThenGivesUp(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	var stderr syncBuffer
	env := baseEnv(map[string]string{
		"DATABASE_URL": "postgres://todo:hunter2@" + addr + "/todo?sslmode=disable",
		"DB_WAIT":      "1s",
	})
	start := time.Now()
	err := run(context.Background(), []string{"todo-backend"}, envFrom(env), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "database not reachable") {
		t.Fatalf("run = %v; want 'database not reachable'", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v; want about DB_WAIT", d)
	}
	if !strings.Contains(stderr.String(), "retrying") {
		t.Errorf("no retry logged:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String()+err.Error(), "hunter2") {
		t.Error("the database password reached the log or the error")
	}
}

func TestRunFailsFastOnWrongDatabase(t *testing.T) {
	t.Parallel()
	env := baseEnv(map[string]string{"DATABASE_URL": withDatabase(testDSN, "no_such_database_"+randomHex(4)), "DB_WAIT": "30s"})
	start := time.Now()
	err := run(context.Background(), []string{"todo-backend"}, envFrom(env), io.Discard, io.Discard)
	if err == nil {
		t.Fatal("run against a missing database succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v; an error that waiting cannot fix should not wait for DB_WAIT", d)
	}
}

// TestDrainHasALameDuckPeriod: after SIGTERM, /readyz answers 503 at once
// while the API still answers, each answer with Connection: close.
func TestDrainHasALameDuckPeriod(t *testing.T) {
	t.Parallel()
	base, stop, done, logs := startProgram(t, baseEnv(map[string]string{"SHUTDOWN_LAME_DUCK": "3s"}))
	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, newUser(t))
	if res := srv.request(t, "GET", "/readyz", "", nil); res.status != http.StatusOK || res.close {
		t.Fatalf("readyz before the drain = %s, Connection: close %v", res, res.close)
	}
	stop()
	deadline := time.Now().Add(2 * time.Second)
	for {
		res := srv.request(t, "GET", "/readyz", "", nil)
		if res.status == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz during the drain = %s; want 503", res)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "during the lame duck"})
	if res.status != http.StatusCreated {
		t.Errorf("POST during the lame duck = %s; want 201", res)
	}
	if !res.close {
		t.Error("answer during the lame duck lacks Connection: close")
	}
	if err := <-done; err != nil {
		t.Errorf("run after the drain: %v", err)
	}
	// The drain's own 503s are the drain working: info, not errors.
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"path":"/readyz","status":503`) && !strings.Contains(line, `"level":"INFO"`) {
			t.Errorf("a /readyz 503 while draining logged as %s", line)
		}
	}
	if !strings.Contains(logs.String(), `"path":"/readyz","status":503`) {
		t.Error("no /readyz 503 logged while draining")
	}
}
