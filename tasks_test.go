package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTaskLifecycle(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)

	res := srv.request(t, "GET", "/api/tasks", token, nil)
	if res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != "[]" {
		t.Fatalf("empty list = %s; want 200 []", res)
	}

	res = srv.request(t, "POST", "/api/tasks", token, map[string]any{
		"title": "  Buy milk \n", "id": 999, "user_id": "someone-else", "created_at": "1999-01-01T00:00:00Z",
	})
	if res.status != http.StatusCreated {
		t.Fatalf("create = %s; want 201", res)
	}
	created := decodeTask(t, res)
	if got, want := res.header.Get("Location"), taskPath(created.ID); got != want {
		t.Errorf("Location = %q; want %q", got, want)
	}
	if created.Title != "Buy milk" || created.UserID != user || created.Completed || created.Description != nil {
		t.Errorf("created = %+v; want trimmed title, own user id, not completed, null description", created)
	}
	if created.ID == 999 || created.CreatedAt != created.UpdatedAt || strings.HasPrefix(created.CreatedAt, "1999") {
		t.Errorf("created = %+v; body's id/created_at must be ignored and updated_at equal created_at", created)
	}
	for _, ts := range []string{created.CreatedAt, created.UpdatedAt} {
		parsed, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.HasSuffix(ts, "Z") || len(ts) != len("2026-01-18T10:00:00.123456Z") {
			t.Errorf("timestamp %q is not RFC 3339 UTC with microseconds (%v)", ts, err)
		}
		if d := time.Since(parsed); d < -time.Minute || d > time.Minute {
			t.Errorf("timestamp %q is not now", ts)
		}
	}
	if !bytes.Contains(res.body, []byte(`"description":null`)) {
		t.Errorf("body %s; want description null", res.body)
	}

	res = srv.request(t, "GET", taskPath(created.ID), token, nil)
	if res.status != http.StatusOK || !sameTask(decodeTask(t, res), created) {
		t.Fatalf("get = %s; want 200 %+v", res, created)
	}

	res = srv.request(t, "PUT", taskPath(created.ID), token, map[string]any{"title": "Buy oat milk", "description": "2 litres", "completed": true})
	if res.status != http.StatusOK {
		t.Fatalf("put = %s; want 200", res)
	}
	updated := decodeTask(t, res)
	if updated.Title != "Buy oat milk" || updated.Description == nil || *updated.Description != "2 litres" || !updated.Completed {
		t.Errorf("updated = %+v", updated)
	}
	if updated.CreatedAt != created.CreatedAt || updated.UpdatedAt <= created.UpdatedAt {
		t.Errorf("updated_at %s must move past %s with created_at kept", updated.UpdatedAt, created.UpdatedAt)
	}

	// Left out: kept. Explicit null: cleared.
	res = srv.request(t, "PUT", taskPath(created.ID), token, map[string]any{"title": "Buy oat milk"})
	kept := decodeTask(t, res)
	if kept.Description == nil || *kept.Description != "2 litres" || !kept.Completed || kept.UpdatedAt <= updated.UpdatedAt {
		t.Errorf("put without description/completed = %+v; want them kept and updated_at moved", kept)
	}
	res = srv.request(t, "PUT", taskPath(created.ID), token, map[string]any{"title": "Buy oat milk", "description": nil, "completed": false})
	cleared := decodeTask(t, res)
	if cleared.Description != nil || cleared.Completed {
		t.Errorf("put with description null = %+v; want description cleared", cleared)
	}

	res = srv.request(t, "PATCH", taskPath(created.ID)+"/complete", token, map[string]any{"completed": true})
	completed := decodeTask(t, res)
	if res.status != http.StatusOK || !completed.Completed || completed.UpdatedAt <= cleared.UpdatedAt || completed.Title != "Buy oat milk" {
		t.Errorf("complete = %s; want completed with updated_at moved", res)
	}
	res = srv.request(t, "PATCH", taskPath(created.ID)+"/complete", token, map[string]any{"completed": false})
	if decodeTask(t, res).Completed {
		t.Errorf("un-complete = %s; want completed false", res)
	}

	res = srv.request(t, "DELETE", taskPath(created.ID), token, nil)
	if res.status != http.StatusNoContent || len(res.body) != 0 {
		t.Fatalf("delete = %s; want 204 with no body", res)
	}
	wantError(t, srv.request(t, "DELETE", taskPath(created.ID), token, nil), http.StatusNotFound, codeNotFound)
	wantError(t, srv.request(t, "GET", taskPath(created.ID), token, nil), http.StatusNotFound, codeNotFound)
}

func TestCreateWithAllFields(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	desc := "line one\nline \"two\" \\ tab\t and \u2028 émoji 🎉 and control \x01"
	task := mustCreate(t, srv, token, map[string]any{"title": "Ünïcode ✓", "description": desc, "completed": true})
	if task.Title != "Ünïcode ✓" || task.Description == nil || *task.Description != desc || !task.Completed {
		t.Fatalf("created = %+v; want every field as sent", task)
	}
	empty := mustCreate(t, srv, token, map[string]any{"title": "x", "description": ""})
	if empty.Description == nil || *empty.Description != "" {
		t.Fatalf("empty description = %v; want \"\" kept apart from null", empty.Description)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	existing := mustCreate(t, srv, token, map[string]any{"title": "keep me", "description": "d"})

	bad := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"empty body", "", 400, codeBadRequest, ""},
		{"truncated", `{"title": "a"`, 400, codeBadRequest, ""},
		{"trailing garbage", `{"title": "a"} x`, 400, codeBadRequest, ""},
		{"two objects", `{"title": "a"}{"title": "b"}`, 400, codeBadRequest, ""},
		{"not JSON", `title=a`, 400, codeBadRequest, ""},
		{"invalid UTF-8 in title", []byte("{\"title\": \"a\xff\"}"), 422, codeValidation, "title"},
		{"invalid UTF-8 in description", []byte("{\"title\": \"a\", \"description\": \"\xc3\"}"), 422, codeValidation, "description"},
		{"array", `[{"title": "a"}]`, 422, codeValidation, ""},
		{"null", `null`, 422, codeValidation, ""},
		{"string", `"a"`, 422, codeValidation, ""},
		{"number", `7`, 422, codeValidation, ""},
		{"no title", `{}`, 422, codeValidation, "title"},
		{"title null", `{"title": null}`, 422, codeValidation, "title"},
		{"title number", `{"title": 5}`, 422, codeValidation, "title"},
		{"title object", `{"title": {"a": 1}}`, 422, codeValidation, "title"},
		{"title empty", `{"title": ""}`, 422, codeValidation, "title"},
		{"title blank", `{"title": " \t\n\u00a0 "}`, 422, codeValidation, "title"},
		{"title 256 ascii", map[string]any{"title": strings.Repeat("a", 256)}, 422, codeValidation, "title"},
		{"title 256 multi-byte", map[string]any{"title": strings.Repeat("é", 256)}, 422, codeValidation, "title"},
		{"title 256 emoji", map[string]any{"title": strings.Repeat("🎉", 256)}, 422, codeValidation, "title"},
		{"title NUL", `{"title": "a\u0000b"}`, 422, codeValidation, "title"},
		{"description NUL", `{"title": "a", "description": "x\u0000"}`, 422, codeValidation, "description"},
		{"description number", `{"title": "a", "description": 1}`, 422, codeValidation, "description"},
		{"description array", `{"title": "a", "description": ["x"]}`, 422, codeValidation, "description"},
		{"completed string", `{"title": "a", "completed": "true"}`, 422, codeValidation, "completed"},
		{"completed number", `{"title": "a", "completed": 1}`, 422, codeValidation, "completed"},
		{"completed null", `{"title": "a", "completed": null}`, 422, codeValidation, "completed"},
		{"title key case", `{"Title": "a"}`, 422, codeValidation, "title"},
	}
	for _, tt := range bad {
		for _, target := range []struct{ method, path string }{{"POST", "/api/tasks"}, {"PUT", taskPath(existing.ID)}} {
			t.Run(target.method+" "+tt.name, func(t *testing.T) {
				res := srv.request(t, target.method, target.path, token, tt.body)
				wantError(t, res, tt.status, tt.code)
				if tt.field != "" {
					var body errorBody
					if err := json.Unmarshal(res.body, &body); err != nil || len(body.Errors) == 0 || body.Errors[0].Field != tt.field {
						t.Errorf("errors = %s; want field %q named", res.body, tt.field)
					}
				}
			})
		}
	}

	// Several broken rules are reported together.
	res := srv.request(t, "POST", "/api/tasks", token, `{"title": 1, "description": 2, "completed": "x"}`)
	var body errorBody
	if err := json.Unmarshal(res.body, &body); err != nil || len(body.Errors) != 3 {
		t.Errorf("three broken rules: %s; want three errors", res.body)
	}

	good := []struct {
		name  string
		title string
	}{
		{"255 ascii", strings.Repeat("a", 255)},
		{"255 multi-byte", strings.Repeat("é", 255)},
		{"255 emoji", strings.Repeat("🎉", 255)},
		{"255 after trimming", "  " + strings.Repeat("b", 255) + "  "},
	}
	for _, tt := range good {
		t.Run("accepts "+tt.name, func(t *testing.T) {
			task := mustCreate(t, srv, token, map[string]any{"title": tt.title})
			if task.Title != strings.TrimSpace(tt.title) {
				t.Errorf("title = %q; want %q", task.Title, strings.TrimSpace(tt.title))
			}
		})
	}

	// None of the rejected PUTs changed the row.
	res = srv.request(t, "GET", taskPath(existing.ID), token, nil)
	if !sameTask(decodeTask(t, res), existing) {
		t.Errorf("after rejected PUTs = %s; want unchanged %+v", res, existing)
	}
}

func TestCompleteValidation(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "a"})
	path := taskPath(task.ID) + "/complete"
	for _, body := range []string{`{}`, `{"completed": null}`, `{"completed": "true"}`, `{"completed": 1}`, `[]`, `{"done": true}`} {
		wantError(t, srv.request(t, "PATCH", path, token, body), http.StatusUnprocessableEntity, codeValidation)
	}
	for _, body := range []string{`{"completed": true`, `{"completed": true} {}`, ` `} {
		wantError(t, srv.request(t, "PATCH", path, token, body), http.StatusBadRequest, codeBadRequest)
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); !sameTask(got, task) {
		t.Errorf("after rejected PATCHes = %+v; want unchanged %+v", got, task)
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	huge := `{"title": "a", "description": "` + strings.Repeat("x", maxBodyBytes) + `"}`
	wantError(t, srv.request(t, "POST", "/api/tasks", token, huge), http.StatusRequestEntityTooLarge, codePayloadTooLarge)

	// Without a Content-Length the limit still holds while reading.
	req, err := http.NewRequest("POST", srv.URL+"/api/tasks", io.MultiReader(strings.NewReader(huge)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked huge body: status %d; want 413", res.StatusCode)
	}

	// Just under the limit is read (the padding is an ignored member).
	fits := `{"title": "a", "pad": "` + strings.Repeat("y", maxBodyBytes-100) + `"}`
	mustCreate(t, srv, token, fits)

	// A description may hold maxDescriptionRunes code points, not one more.
	longest := strings.Repeat("é", maxDescriptionRunes)
	task := mustCreate(t, srv, token, map[string]any{"title": "a", "description": longest})
	if task.Description == nil || *task.Description != longest {
		t.Errorf("a description of %d code points was not stored whole", maxDescriptionRunes)
	}
	tooLong := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "a", "description": longest + "x"})
	wantError(t, tooLong, http.StatusUnprocessableEntity, codeValidation)
	if !strings.Contains(string(tooLong.body), `"field":"description"`) {
		t.Errorf("422 for a long description does not name it: %s", tooLong.body)
	}
}

func TestTaskIDs(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "a"})
	for _, id := range []string{
		"0", "-1", "abc", "1.5", "+1", "01", "9223372036854775808", "99999999999999999999999",
		"9223372036854775807", " 1", "1e3", "%00", "0x10",
	} {
		path := "/api/tasks/" + id
		wantError(t, srv.request(t, "GET", path, token, nil), http.StatusNotFound, codeNotFound)
		wantError(t, srv.request(t, "PUT", path, token, map[string]any{"title": "b"}), http.StatusNotFound, codeNotFound)
		wantError(t, srv.request(t, "PATCH", path+"/complete", token, map[string]any{"completed": true}), http.StatusNotFound, codeNotFound)
		wantError(t, srv.request(t, "DELETE", path, token, nil), http.StatusNotFound, codeNotFound)
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); !sameTask(got, task) {
		t.Errorf("task changed: %+v; want %+v", got, task)
	}
}

// TestTwoUsers: for every operation, another user's task is exactly as
// missing as a task that never existed, and stays untouched.
func TestTwoUsers(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	alice, bob := mustToken(t, newUser(t)), mustToken(t, newUser(t))
	task := mustCreate(t, srv, alice, map[string]any{"title": "alice's", "description": "private"})
	missing := taskPath(task.ID + 1_000_000_000)

	ops := []struct {
		name   string
		method string
		suffix string
		body   any
	}{
		{"get", "GET", "", nil},
		{"put", "PUT", "", map[string]any{"title": "bob was here"}},
		{"complete", "PATCH", "/complete", map[string]any{"completed": true}},
		{"delete", "DELETE", "", nil},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			other := srv.request(t, op.method, taskPath(task.ID)+op.suffix, bob, op.body)
			never := srv.request(t, op.method, missing+op.suffix, bob, op.body)
			wantError(t, other, http.StatusNotFound, codeNotFound)
			wantError(t, never, http.StatusNotFound, codeNotFound)
			if stripRequestID(other.body) != stripRequestID(never.body) {
				t.Errorf("another user's task answers %s; a missing one %s; want the same", other.body, never.body)
			}
		})
	}
	if list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", bob, nil)); len(list) != 0 {
		t.Errorf("bob's list = %+v; want empty", list)
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), alice, nil)); !sameTask(got, task) {
		t.Errorf("alice's task after bob = %+v; want unchanged %+v", got, task)
	}
	// A user id in the body or the query is never used.
	res := srv.request(t, "GET", "/api/tasks?user_id="+task.UserID, bob, nil)
	if list := decodeTasks(t, res); len(list) != 0 {
		t.Errorf("bob listing with ?user_id=alice = %+v; want empty", list)
	}
	created := mustCreate(t, srv, bob, map[string]any{"title": "mine", "user_id": task.UserID})
	if created.UserID == task.UserID {
		t.Errorf("bob created a task owned by %q", created.UserID)
	}
}

// TestConcurrentWritesNeverFail runs on a pool of two connections, so the
// creates share statements and the changes of the one task queue in the
// change batcher (never in one statement: they name the same task).
func TestConcurrentWritesNeverFail(t *testing.T) {
	t.Parallel()
	store := newStore(t, nil, 2)
	srv := newTestServer(t, testConfig(), store)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "contended"})

	const workers = 16
	var wg sync.WaitGroup
	statuses := make(chan string, workers*3)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for _, r := range []struct {
				method, path string
				body         any
				want         int
			}{
				{"POST", "/api/tasks", map[string]any{"title": fmt.Sprintf("parallel %d", i)}, 201},
				{"PUT", taskPath(task.ID), map[string]any{"title": fmt.Sprintf("update %d", i), "completed": i%2 == 0}, 200},
				{"PATCH", taskPath(task.ID) + "/complete", map[string]any{"completed": i%2 == 1}, 200},
			} {
				res, err := srv.do(r.method, r.path, token, r.body)
				if err != nil {
					statuses <- err.Error()
					continue
				}
				if res.status != r.want {
					statuses <- fmt.Sprintf("%s %s = %s", r.method, r.path, res)
				}
			}
		}(i)
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		t.Error(s)
	}
	if list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", token, nil)); len(list) != workers+1 {
		t.Errorf("list has %d tasks; want %d", len(list), workers+1)
	}
	if statements, shared := batchesOf(store, "create"); shared == 0 {
		t.Errorf("create: %d statements for waiting requests, none shared: no batch formed", statements)
	}
	if statements, _ := batchesOf(store, "change"); statements == 0 {
		t.Error("change: no request waited in the batcher")
	}
	if etag, want := srv.request(t, "GET", taskPath(task.ID), token, nil).header.Get("ETag"), etagOf(1+2*workers); etag != want {
		t.Errorf("the contended task's ETag is %s after %d changes; want %s", etag, 2*workers, want)
	}
}

func TestETagsAndConditionalRequests(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "tagged"})
	task := decodeTask(t, res)
	path := taskPath(task.ID)
	if got := res.header.Get("ETag"); got != `"v1"` {
		t.Fatalf("POST ETag = %q; want \"v1\"", got)
	}
	get := srv.request(t, "GET", path, token, nil)
	if get.header.Get("ETag") != `"v1"` {
		t.Fatalf("GET ETag = %q", get.header.Get("ETag"))
	}

	t.Run("If-None-Match", func(t *testing.T) {
		for _, header := range []string{`"v1"`, `W/"v1"`, `*`, `"v7", "v1"`, ` "x" ,"v1"`} {
			res := srv.request(t, "GET", path, token, nil, "If-None-Match", header)
			if res.status != http.StatusNotModified || len(res.body) != 0 || res.header.Get("ETag") != `"v1"` {
				t.Errorf("If-None-Match %s = %s; want 304, no body, the ETag", header, res)
			}
		}
		for _, header := range []string{`"v2"`, `v1`, `"1"`, `""`} {
			if res := srv.request(t, "GET", path, token, nil, "If-None-Match", header); res.status != http.StatusOK {
				t.Errorf("If-None-Match %s = %s; want 200", header, res)
			}
		}
	})

	t.Run("If-Match mismatch changes nothing", func(t *testing.T) {
		for _, header := range []string{`"v2"`, `W/"v1"`, `garbage`, `"v0"`} {
			wantError(t, srv.request(t, "PUT", path, token, map[string]any{"title": "changed"}, "If-Match", header), http.StatusPreconditionFailed, codePreconditionFailed)
			wantError(t, srv.request(t, "PATCH", path+"/complete", token, map[string]any{"completed": true}, "If-Match", header), http.StatusPreconditionFailed, codePreconditionFailed)
			wantError(t, srv.request(t, "DELETE", path, token, nil, "If-Match", header), http.StatusPreconditionFailed, codePreconditionFailed)
		}
		if got := decodeTask(t, srv.request(t, "GET", path, token, nil)); !sameTask(got, task) {
			t.Fatalf("after 412s = %+v; want unchanged %+v", got, task)
		}
	})

	t.Run("If-Match match writes and moves the ETag", func(t *testing.T) {
		res := srv.request(t, "PUT", path, token, map[string]any{"title": "v2"}, "If-Match", `"v1"`)
		if res.status != http.StatusOK || res.header.Get("ETag") != `"v2"` {
			t.Fatalf("PUT If-Match v1 = %s ETag %q; want 200 \"v2\"", res, res.header.Get("ETag"))
		}
		res = srv.request(t, "PATCH", path+"/complete", token, map[string]any{"completed": true}, "If-Match", `"v9", "v2"`)
		if res.status != http.StatusOK || res.header.Get("ETag") != `"v3"` {
			t.Fatalf("PATCH If-Match list = %s ETag %q; want 200 \"v3\"", res, res.header.Get("ETag"))
		}
		res = srv.request(t, "PUT", path, token, map[string]any{"title": "v4"}, "If-Match", `*`)
		if res.status != http.StatusOK || res.header.Get("ETag") != `"v4"` {
			t.Fatalf("PUT If-Match * = %s; want 200", res)
		}
		// Without If-Match, writes are unconditional as before.
		if res := srv.request(t, "PUT", path, token, map[string]any{"title": "v5"}); res.status != http.StatusOK || res.header.Get("ETag") != `"v5"` {
			t.Fatalf("PUT without If-Match = %s", res)
		}
		if res := srv.request(t, "DELETE", path, token, nil, "If-Match", `"v5"`); res.status != http.StatusNoContent {
			t.Fatalf("DELETE If-Match v5 = %s; want 204", res)
		}
	})

	t.Run("missing or another user's task is 404 not 412", func(t *testing.T) {
		other := mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "not yours"})
		for _, p := range []string{path, taskPath(other.ID)} {
			wantError(t, srv.request(t, "PUT", p, token, map[string]any{"title": "x"}, "If-Match", `"v1"`), http.StatusNotFound, codeNotFound)
			wantError(t, srv.request(t, "DELETE", p, token, nil, "If-Match", `"v1"`), http.StatusNotFound, codeNotFound)
			wantError(t, srv.request(t, "GET", p, token, nil, "If-None-Match", `*`), http.StatusNotFound, codeNotFound)
		}
	})
}

func TestRacingIfMatchWritersOneWins(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "contended"})
	const writers = 12
	statuses := make(chan int, writers)
	var start sync.WaitGroup
	start.Add(1)
	var done sync.WaitGroup
	for i := 0; i < writers; i++ {
		done.Add(1)
		go func(i int) {
			defer done.Done()
			start.Wait()
			var res response
			var err error
			if i%2 == 0 {
				res, err = srv.do("PUT", taskPath(task.ID), token, map[string]any{"title": fmt.Sprintf("writer %d", i)}, "If-Match", `"v1"`)
			} else {
				res, err = srv.do("PATCH", taskPath(task.ID)+"/complete", token, map[string]any{"completed": true}, "If-Match", `"v1"`)
			}
			if err != nil {
				t.Error(err)
			}
			statuses <- res.status
		}(i)
	}
	start.Done()
	done.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[200] != 1 || counts[412] != writers-1 {
		t.Fatalf("statuses = %v; want exactly one 200 and %d 412", counts, writers-1)
	}
	res := srv.request(t, "GET", taskPath(task.ID), token, nil)
	if res.header.Get("ETag") != `"v2"` {
		t.Fatalf("final ETag %q; want \"v2\" (one write)", res.header.Get("ETag"))
	}
}

// TestPatchIsAPartialUpdate: PATCH /api/tasks/{id}, through both route
// shapes, changes the members given under PUT's rules and keeps the rest,
// with If-Match, 404 and 422 as PUT has them.
func TestPatchIsAPartialUpdate(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)
	for _, base := range []string{"/api/tasks", userPath(user, "")} {
		task := mustCreate(t, srv, token, map[string]any{"title": "first", "description": "kept"})
		one := base + "/" + strconv.FormatInt(task.ID, 10)
		steps := []struct {
			body        any
			title, desc string // desc "-" for null
			completed   bool
		}{
			{map[string]any{"completed": true}, "first", "kept", true},
			{map[string]any{"title": "  second  "}, "second", "kept", true},
			{map[string]any{"description": "changed"}, "second", "changed", true},
			{map[string]any{"description": nil, "completed": false}, "second", "-", false},
			{map[string]any{"title": "third", "description": "back", "completed": true, "id": 99}, "third", "back", true},
		}
		for _, step := range steps {
			res := srv.request(t, "PATCH", one, token, step.body)
			if res.status != http.StatusOK {
				t.Fatalf("PATCH %s %v = %s", one, step.body, res)
			}
			got := decodeTask(t, res)
			desc := "-"
			if got.Description != nil {
				desc = *got.Description
			}
			if got.ID != task.ID || got.Title != step.title || desc != step.desc || got.Completed != step.completed {
				t.Errorf("PATCH %v gave %+v; want %q %q %v", step.body, got, step.title, step.desc, step.completed)
			}
			if again := decodeTask(t, srv.request(t, "GET", one, token, nil)); again.Title != got.Title || again.Completed != got.Completed {
				t.Errorf("GET after PATCH = %+v; want %+v", again, got)
			}
		}
		etag := srv.request(t, "GET", one, token, nil).header.Get("ETag")
		wantError(t, srv.request(t, "PATCH", one, token, map[string]any{"title": "stale"}, "If-Match", `"v1"`), http.StatusPreconditionFailed, codePreconditionFailed)
		if res := srv.request(t, "PATCH", one, token, map[string]any{"title": "current"}, "If-Match", etag); res.status != http.StatusOK {
			t.Errorf("PATCH with the current ETag = %s", res)
		}
		for _, body := range []any{map[string]any{}, map[string]any{"title": ""}, map[string]any{"title": nil}, map[string]any{"completed": "true"}, map[string]any{"description": 5}, []any{}} {
			wantError(t, srv.request(t, "PATCH", one, token, body), http.StatusUnprocessableEntity, codeValidation)
		}
		wantError(t, srv.request(t, "PATCH", one, token, `{"title":`), http.StatusBadRequest, codeBadRequest)
		wantError(t, srv.request(t, "PATCH", one, mustToken(t, newUser(t)), map[string]any{"title": "theirs"}), http.StatusNotFound, codeNotFound)
		wantError(t, srv.request(t, "PATCH", base+"/999999999", token, map[string]any{"title": "none"}), http.StatusNotFound, codeNotFound)
		if got := decodeTask(t, srv.request(t, "GET", one, token, nil)); got.Title != "current" {
			t.Errorf("refused PATCHes changed the task: %+v", got)
		}
	}
}

// TestCompleteFromTheQuery: PATCH .../complete with no body and
// ?completed=true|false sets that value (twice is still that value, not a
// flip); with neither it flips; a body beside the query, or a bad value,
// is 422.
func TestCompleteFromTheQuery(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)
	for _, base := range []string{"/api/tasks", userPath(user, "")} {
		task := mustCreate(t, srv, token, map[string]any{"title": "query"})
		complete := base + "/" + strconv.FormatInt(task.ID, 10) + "/complete"
		for _, step := range []struct {
			query string
			want  bool
		}{{"?completed=false", false}, {"?completed=true", true}, {"?completed=true", true}, {"", false}, {"?completed=false", false}, {"", true}} {
			res := srv.request(t, "PATCH", complete+step.query, token, nil)
			if res.status != http.StatusOK || decodeTask(t, res).Completed != step.want {
				t.Errorf("PATCH %s%s = %s; want completed %v", complete, step.query, res, step.want)
			}
		}
		wantError(t, srv.request(t, "PATCH", complete+"?completed=false", token, map[string]any{"completed": true}), http.StatusUnprocessableEntity, codeValidation)
		wantError(t, srv.request(t, "PATCH", complete+"?completed=maybe", token, nil), http.StatusUnprocessableEntity, codeValidation)
		wantError(t, srv.request(t, "PATCH", complete+"?completed=%zz", token, nil), http.StatusUnprocessableEntity, codeValidation)
	}
}

// TestToggle: PATCH .../complete with no body flips completed in one
// statement, bumping the version, under If-Match; twenty at once leave an
// even count of flips, so the task is as before.
func TestToggle(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "flip"})
	path := taskPath(task.ID) + "/complete"

	res := srv.request(t, "PATCH", path, token, nil)
	flipped := decodeTask(t, res)
	if res.status != http.StatusOK || !flipped.Completed || res.header.Get("ETag") != `"v2"` || flipped.UpdatedAt <= task.UpdatedAt {
		t.Fatalf("toggle = %s (ETag %q); want completed, v2, updated_at moved", res, res.header.Get("ETag"))
	}
	wantError(t, srv.request(t, "PATCH", path, token, nil, "If-Match", `"v1"`), http.StatusPreconditionFailed, codePreconditionFailed)
	res = srv.request(t, "PATCH", path, token, nil, "If-Match", `"v2"`)
	if res.status != http.StatusOK || decodeTask(t, res).Completed {
		t.Fatalf("toggle with the current ETag = %s; want completed false", res)
	}
	wantError(t, srv.request(t, "PATCH", path, token, `{}`), http.StatusUnprocessableEntity, codeValidation)
	wantError(t, srv.request(t, "PATCH", taskPath(task.ID+1_000_000_000)+"/complete", token, nil), http.StatusNotFound, codeNotFound)

	const togglers = 20
	var wg sync.WaitGroup
	errs := make(chan string, togglers)
	for i := 0; i < togglers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := srv.do("PATCH", path, token, nil)
			if err != nil {
				errs <- err.Error()
			} else if res.status != http.StatusOK {
				errs <- res.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent toggle: %s", e)
	}
	res = srv.request(t, "GET", taskPath(task.ID), token, nil)
	if got := decodeTask(t, res); got.Completed || res.header.Get("ETag") != fmt.Sprintf(`"v%d"`, 3+togglers) {
		t.Errorf("after %d toggles: completed %v, ETag %q; want false and v%d", togglers, got.Completed, res.header.Get("ETag"), 3+togglers)
	}
}
