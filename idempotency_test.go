package main

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)
	body := map[string]any{"title": "once", "description": "only once"}

	first := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", "key-1")
	if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first POST = %s; want 201, not a replay", first)
	}
	created := decodeTask(t, first)

	replay := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", "key-1")
	if replay.status != http.StatusCreated || replay.header.Get("Idempotent-Replayed") != "true" ||
		!bytes.Equal(replay.body, first.body) || replay.header.Get("Location") != first.header.Get("Location") || replay.header.Get("ETag") != `"v1"` {
		t.Fatalf("replay = %s %v; want the original 201 byte for byte", replay, replay.header)
	}
	// Same meaning, other spelling: still the same request.
	same := srv.request(t, "POST", "/api/tasks", token, `{"description":"only once",  "title":" once ","completed":false}`, "Idempotency-Key", "key-1")
	if same.status != http.StatusCreated || decodeTask(t, same).ID != created.ID {
		t.Fatalf("equivalent body = %s; want the original task", same)
	}
	// The replay stands even after the task changes or goes away.
	srv.request(t, "DELETE", taskPath(created.ID), token, nil)
	if again := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", "key-1"); !bytes.Equal(again.body, first.body) {
		t.Fatalf("replay after delete = %s; want the original answer", again)
	}

	res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "different"}, "Idempotency-Key", "key-1")
	wantError(t, res, http.StatusUnprocessableEntity, codeValidation)
	if !strings.Contains(string(res.body), "Idempotency-Key") {
		t.Errorf("mismatch body %s; want it to name the key", res.body)
	}
	if n := countTasks(t, user); n != 0 {
		t.Fatalf("user has %d tasks; want 0 (one created, then deleted; nothing else)", n)
	}

	// Keys are per user.
	otherUser := newUser(t)
	other := srv.request(t, "POST", "/api/tasks", mustToken(t, otherUser), body, "Idempotency-Key", "key-1")
	if other.status != http.StatusCreated || other.header.Get("Idempotent-Replayed") != "" || decodeTask(t, other).ID == created.ID {
		t.Fatalf("other user's POST with the same key = %s; want a task of their own", other)
	}

	// After 24 hours the key is forgotten.
	if _, err := testDB.Exec(`UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE user_id = $1`, user); err != nil {
		t.Fatal(err)
	}
	fresh := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "different"}, "Idempotency-Key", "key-1")
	if fresh.status != http.StatusCreated || fresh.header.Get("Idempotent-Replayed") != "" || decodeTask(t, fresh).ID == created.ID {
		t.Fatalf("POST with an expired key = %s; want a new task", fresh)
	}

	for _, bad := range [][]string{
		{"Idempotency-Key", ""},
		{"Idempotency-Key", strings.Repeat("k", 256)},
		{"Idempotency-Key", "has space"},
		{"Idempotency-Key", "caf\u00e9"},
		{"Idempotency-Key", "a", "Idempotency-Key", "b"},
	} {
		res := srv.request(t, "POST", "/api/tasks", token, body, bad...)
		wantError(t, res, http.StatusUnprocessableEntity, codeValidation)
	}
	if res := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", strings.Repeat("k", 255)); res.status != http.StatusCreated {
		t.Errorf("255-character key = %s; want 201", res)
	}
}

func TestIdempotentCreateConcurrent(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)
	const requests = 100
	ids := make(chan string, requests)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := 0; i < requests; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			res, err := srv.do("POST", "/api/tasks", token, map[string]any{"title": "exactly one"}, "Idempotency-Key", "retry-storm")
			if err != nil {
				ids <- err.Error()
				return
			}
			if res.status != http.StatusCreated {
				ids <- "status " + res.String()
				return
			}
			ids <- res.header.Get("Location")
		}()
	}
	start.Done()
	done.Wait()
	close(ids)
	seen := map[string]int{}
	for id := range ids {
		seen[id]++
	}
	if len(seen) != 1 {
		t.Fatalf("answers = %v; want one Location for all %d", seen, requests)
	}
	if n := countTasks(t, user); n != 1 {
		t.Fatalf("%d tasks created; want 1", n)
	}
}

func TestExpiredKeysAreSwept(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	stale := newUser(t)
	if _, err := testDB.Exec(`INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at) VALUES ($1, 'old', '\x00', now() - interval '2 days')`, stale); err != nil {
		t.Fatal(err)
	}
	srv.request(t, "POST", "/api/tasks", mustToken(t, newUser(t)), map[string]any{"title": "x"}, "Idempotency-Key", "sweeper")
	var n int
	if err := testDB.QueryRow(`SELECT count(*) FROM idempotency_keys WHERE user_id = $1`, stale).Scan(&n); err != nil || n != 0 {
		t.Fatalf("stale user's expired keys = %d, %v; want swept on another user's insert", n, err)
	}
}
