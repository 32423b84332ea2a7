package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestPathScopedLifecycle: every operation answers at /api/{user_id}/tasks
// as it does at /api/tasks, with the shape of the request in Location.
func TestPathScopedLifecycle(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)

	res := srv.request(t, "POST", userPath(user, ""), token, map[string]any{"title": "scoped"})
	if res.status != http.StatusCreated {
		t.Fatalf("scoped create = %s; want 201", res)
	}
	task := decodeTask(t, res)
	if want := userPath(user, "/"+strconv.FormatInt(task.ID, 10)); res.header.Get("Location") != want {
		t.Errorf("Location = %q; want %q", res.header.Get("Location"), want)
	}
	if task.UserID != user {
		t.Errorf("user_id = %q; want %q", task.UserID, user)
	}
	one := userPath(user, "/"+strconv.FormatInt(task.ID, 10))
	if got := decodeTask(t, srv.request(t, "GET", one, token, nil)); !sameTask(got, task) {
		t.Errorf("scoped get = %+v; want %+v", got, task)
	}
	// The same task by the other shape.
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); !sameTask(got, task) {
		t.Errorf("unscoped get = %+v; want %+v", got, task)
	}
	if got := decodeTasks(t, srv.request(t, "GET", userPath(user, "/"), token, nil)); len(got) != 1 || got[0].ID != task.ID {
		t.Errorf("scoped list (trailing slash) = %+v; want the one task", got)
	}
	res = srv.request(t, "PUT", one, token, map[string]any{"title": "renamed"}, "If-Match", `"v1"`)
	if res.status != http.StatusOK || decodeTask(t, res).Title != "renamed" || res.header.Get("ETag") != `"v2"` {
		t.Fatalf("scoped PUT with If-Match = %s %q", res, res.header.Get("ETag"))
	}
	wantError(t, srv.request(t, "PUT", one, token, map[string]any{"title": "stale"}, "If-Match", `"v1"`), http.StatusPreconditionFailed, codePreconditionFailed)
	wantError(t, srv.request(t, "PUT", one, token, map[string]any{"title": ""}), http.StatusUnprocessableEntity, codeValidation)
	if res := srv.request(t, "GET", one, token, nil, "If-None-Match", `"v2"`); res.status != http.StatusNotModified {
		t.Errorf("scoped If-None-Match = %s; want 304", res)
	}
	res = srv.request(t, "PATCH", one+"/complete", token, map[string]any{"completed": true})
	if res.status != http.StatusOK || !decodeTask(t, res).Completed {
		t.Errorf("scoped complete = %s", res)
	}
	res = srv.request(t, "PATCH", one+"/complete", token, nil)
	if res.status != http.StatusOK || decodeTask(t, res).Completed {
		t.Errorf("scoped empty toggle = %s; want completed false again", res)
	}
	res = srv.request(t, "DELETE", one, token, nil)
	if res.status != http.StatusNoContent {
		t.Errorf("scoped delete = %s; want 204", res)
	}
	wantError(t, srv.request(t, "DELETE", one, token, nil), http.StatusNotFound, codeNotFound)

	// Idempotency-Key: the replay keeps the request's shape in Location.
	first := srv.request(t, "POST", userPath(user, ""), token, map[string]any{"title": "once"}, "Idempotency-Key", "k1")
	again := srv.request(t, "POST", userPath(user, ""), token, map[string]any{"title": "once"}, "Idempotency-Key", "k1")
	if first.status != http.StatusCreated || again.status != http.StatusCreated || again.header.Get("Idempotent-Replayed") != "true" ||
		string(first.body) != string(again.body) || !strings.HasPrefix(again.header.Get("Location"), userPath(user, "/")) {
		t.Errorf("scoped idempotent create: %s then %s (Location %q)", first, again, again.header.Get("Location"))
	}

	// Authentication comes first, whoever the path names.
	res = srv.request(t, "GET", userPath("someone-else", ""), "", nil)
	wantError(t, res, http.StatusUnauthorized, codeAuthenticationRequired)
	// A wrong method is a 405 with Allow.
	res = srv.request(t, "PATCH", userPath(user, ""), token, nil)
	wantError(t, res, http.StatusMethodNotAllowed, codeMethodNotAllowed)
	if allow := res.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("Allow = %q; want GET and POST", allow)
	}
	// A preflight needs no token.
	res = srv.request(t, "OPTIONS", userPath(user, "/1"), "", nil, "Origin", "http://localhost:3000", "Access-Control-Request-Method", "PUT")
	if res.status != http.StatusNoContent || res.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("scoped preflight = %d %v", res.status, res.header)
	}
}

// TestPathScopedTwoUsers: another user's id in the path, and one's own path
// with another user's task id, both answer exactly as a missing task does,
// for every operation, and change nothing.
func TestPathScopedTwoUsers(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	alice, bob := newUser(t), newUser(t)
	aliceToken, bobToken := mustToken(t, alice), mustToken(t, bob)
	task := mustCreate(t, srv, aliceToken, map[string]any{"title": "alice's"})
	id := "/" + strconv.FormatInt(task.ID, 10)
	never := srv.request(t, "GET", taskPath(task.ID+1_000_000_000), bobToken, nil)
	wantError(t, never, http.StatusNotFound, codeNotFound)

	ops := []struct {
		method, rest string
		body         any
	}{
		{"GET", "", nil},
		{"POST", "", map[string]any{"title": "planted"}},
		{"GET", id, nil},
		{"PUT", id, map[string]any{"title": "bob was here"}},
		{"DELETE", id, nil},
		{"PATCH", id + "/complete", map[string]any{"completed": true}},
		{"PATCH", id + "/complete", nil},
	}
	for _, op := range ops {
		paths := []string{userPath(alice, op.rest)} // bob's token, alice's path
		if op.rest != "" {
			paths = append(paths, userPath(bob, op.rest)) // bob's path, alice's task
		}
		for _, path := range paths {
			res := srv.request(t, op.method, path, bobToken, op.body)
			wantError(t, res, http.StatusNotFound, codeNotFound)
			if stripRequestID(res.body) != stripRequestID(never.body) {
				t.Errorf("%s %s = %s; want the missing-task body %s", op.method, path, res.body, never.body)
			}
		}
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), aliceToken, nil)); !sameTask(got, task) {
		t.Errorf("alice's task after bob = %+v; want unchanged %+v", got, task)
	}
	for _, who := range []struct{ user, token string }{{alice, aliceToken}, {bob, bobToken}} {
		list := decodeTasks(t, srv.request(t, "GET", userPath(who.user, ""), who.token, nil))
		for _, got := range list {
			if got.UserID != who.user || got.Title == "planted" && who.user == alice {
				t.Errorf("%s's list holds %+v", who.user, got)
			}
		}
	}
	if n := countTasks(t, alice); n != 1 {
		t.Errorf("alice has %d tasks; want 1 (nothing written through her path by bob)", n)
	}
}

// TestPathScopedUserIDIsDecoded: the {user_id} segment is compared after
// percent-decoding, so ids with a space or a non-ASCII letter work.
func TestPathScopedUserIDIsDecoded(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := "ada lovelace-é-" + randomHex(4)
	token := mustToken(t, user)
	path := userPath(user, "")
	if !strings.Contains(path, "%20") || !strings.Contains(path, "%C3%A9") {
		t.Fatalf("path %q is not percent-encoded", path)
	}
	res := srv.request(t, "POST", path, token, map[string]any{"title": "encoded"})
	if res.status != http.StatusCreated || decodeTask(t, res).UserID != user {
		t.Fatalf("create at %s = %s", path, res)
	}
	if loc := res.header.Get("Location"); !strings.HasPrefix(loc, path+"/") {
		t.Errorf("Location = %q; want under %q", loc, path)
	}
	if list := decodeTasks(t, srv.request(t, "GET", path, token, nil)); len(list) != 1 {
		t.Errorf("list at %s = %+v; want 1 task", path, list)
	}
	// The same id unencoded differs by one byte: not the token's user.
	wantError(t, srv.request(t, "GET", userPath(strings.TrimSuffix(user, user[len(user)-1:]), ""), token, nil), http.StatusNotFound, codeNotFound)
}

// TestTasksPathKeepsItsMeaning: /api/tasks/{id} wins over
// /api/{user_id}/tasks for /api/tasks/tasks, and an encoded slash is part
// of an id, which then names no task.
func TestTasksPathKeepsItsMeaning(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, "tasks")
	wantError(t, srv.request(t, "GET", "/api/tasks/tasks", token, nil), http.StatusNotFound, codeNotFound)
	res := srv.request(t, "POST", "/api/tasks/tasks", token, map[string]any{"title": "x"})
	wantError(t, res, http.StatusMethodNotAllowed, codeMethodNotAllowed)
	// The user "tasks" still reaches its tasks by id in the scoped shape.
	task := mustCreate(t, srv, token, map[string]any{"title": "mine"})
	if got := decodeTask(t, srv.request(t, "GET", userPath("tasks", "/"+strconv.FormatInt(task.ID, 10)), token, nil)); got.ID != task.ID {
		t.Errorf("GET /api/tasks/tasks/%d = %+v", task.ID, got)
	}
	other := mustToken(t, newUser(t))
	two := mustCreate(t, srv, other, map[string]any{"title": "two"})
	for _, p := range []string{taskPath(two.ID) + "%2F", taskPath(two.ID) + "%2F/", taskPath(two.ID) + "%2f/complete"} {
		method := "GET"
		if strings.HasSuffix(p, "complete") {
			method = "PATCH"
		}
		wantError(t, srv.request(t, method, p, other, map[string]any{"completed": true}), http.StatusNotFound, codeNotFound)
	}
}

// TestEveryUserIDRoundTrips: a path-scoped create's Location GETs back
// the task for user ids a URL resolver would rewrite ("." and "..") and
// for ones that need escaping.
func TestEveryUserIDRoundTrips(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	for _, user := range []string{".", "..", "...", "a/b", "%2E", "é ?#"} {
		token := mustToken(t, user)
		res := srv.request(t, "POST", "/api/"+pathSegment(user)+"/tasks", token, map[string]any{"title": "round trip"})
		if res.status != http.StatusCreated {
			t.Fatalf("user %q: create = %s", user, res)
		}
		created := decodeTask(t, res)
		location := res.header.Get("Location")
		got := srv.request(t, "GET", location, token, nil)
		if got.status != http.StatusOK || decodeTask(t, got).ID != created.ID {
			t.Errorf("user %q: GET %s = %s; want the created task", user, location, got)
		}
	}
}
