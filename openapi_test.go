package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

// documentedStatuses maps "METHOD /path/{id}" to the statuses openapi.json
// lists for that operation.
func documentedStatuses(t *testing.T) map[string]map[string]bool {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q; want 3.1.0", doc.OpenAPI)
	}
	ops := map[string]map[string]bool{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			statuses := map[string]bool{}
			for status := range op.Responses {
				statuses[status] = true
			}
			ops[strings.ToUpper(method)+" "+path] = statuses
		}
	}
	return ops
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	documented := documentedStatuses(t)
	routes := map[string]bool{}
	for _, rt := range (&server{}).routes() {
		routes[rt.pattern] = true
		if documented[rt.pattern] == nil {
			t.Errorf("route %s is missing from openapi.json", rt.pattern)
		}
	}
	for op := range documented {
		if !routes[op] {
			t.Errorf("openapi.json documents %s, which no route serves", op)
		}
	}

	srv := newTestServer(t, testConfig(), testStore)
	res := srv.request(t, "GET", "/openapi.json", "", nil)
	if res.status != http.StatusOK || !bytes.Equal(res.body, openAPIDocument) || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q; want the embedded document without auth", res.status, res.header.Get("Content-Type"))
	}
}

// TestOpenAPIListsReturnedStatuses drives every operation through its
// common outcomes and checks openapi.json lists each status it saw.
func TestOpenAPIListsReturnedStatuses(t *testing.T) {
	t.Parallel()
	documented := documentedStatuses(t)
	cfg := testConfig()
	srv := newTestServer(t, cfg, testStore)
	limitedCfg := testConfig()
	limitedCfg.rateLimitRPS, limitedCfg.rateLimitBurst = 0.001, 1
	limited := newTestServer(t, limitedCfg, testStore)

	proxy, downStore, _ := newProxiedStore(t)
	down := newTestServer(t, cfg, downStore)
	proxy.stop()

	user := newUser(t)
	token := mustToken(t, user)
	limitedToken := mustToken(t, newUser(t)) // its one-request burst goes first
	other := taskPath(mustCreate(t, srv, token, map[string]any{"title": "kept for the 304"}).ID)
	huge := `{"title":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	good := map[string]any{"title": "t"}
	complete := map[string]any{"completed": true}

	type call struct {
		op, method, path string
		body             any
		headers          []string
		on               *testServer
		token            string
	}
	limited.request(t, "GET", "/healthz", limitedToken, nil)
	limited.request(t, "GET", "/api/tasks", limitedToken, nil) // spends the burst
	var calls []call

	// Each operation in both shapes: /api/tasks... and /api/{user_id}/tasks...
	for _, scoped := range []bool{false, true} {
		task := mustCreate(t, srv, token, map[string]any{"title": "documented"})
		id, missing := taskPath(task.ID), "/api/tasks/0"
		ops := []struct {
			op, method, path string
			body             any
		}{
			{"GET /api/tasks", "GET", "/api/tasks", nil},
			{"POST /api/tasks", "POST", "/api/tasks", good},
			{"GET /api/tasks/{id}", "GET", id, nil},
			{"PUT /api/tasks/{id}", "PUT", id, good},
			{"PATCH /api/tasks/{id}/complete", "PATCH", id + "/complete", complete},
			{"DELETE /api/tasks/{id}", "DELETE", id, nil},
		}
		if scoped {
			for i := range ops {
				ops[i].op = strings.Replace(ops[i].op, " /api/tasks", " /api/{user_id}/tasks", 1)
				ops[i].path = userPath(user, strings.TrimPrefix(ops[i].path, "/api/tasks"))
			}
			id, missing = userPath(user, strings.TrimPrefix(id, "/api/tasks")), userPath(user, "/0")
			// Another user's path is the missing-task 404, for the list and create too.
			calls = append(calls,
				call{"GET /api/{user_id}/tasks", "GET", userPath("someone-else", ""), nil, nil, srv, token},
				call{"POST /api/{user_id}/tasks", "POST", userPath("someone-else", ""), good, nil, srv, token},
				call{"GET /api/{user_id}/tasks", "GET", userPath(user, "?limit=0"), nil, nil, srv, token})
		}
		for _, o := range ops {
			calls = append(calls,
				call{o.op, o.method, o.path, o.body, nil, srv, ""},                                     // 401
				call{o.op, o.method, o.path, o.body, nil, down, token},                                 // 503
				call{o.op, o.method, o.path, o.body, nil, limited, limitedToken},                       // 429 (after its one-request burst)
				call{o.op, o.method, o.path, o.body, []string{"If-Match", `"v999"`}, srv, token},       // 412 where it applies
				call{o.op, o.method, o.path, "{", nil, srv, token},                                     // 400 where there is a body
				call{o.op, o.method, o.path, `{"title": 1, "completed": "x"}`, nil, srv, token},        // 422
				call{o.op, o.method, o.path, huge, nil, srv, token},                                    // 413
				call{o.op, o.method, strings.Replace(o.path, id, missing, 1), o.body, nil, srv, token}, // 404
				call{o.op, o.method, o.path, o.body, nil, srv, token},                                  // 2xx, last: DELETE deletes
			)
		}
	}
	calls = append(calls,
		call{"GET /api/tasks", "GET", "/api/tasks?limit=0", nil, nil, srv, token},
		call{"GET /api/tasks/{id}", "GET", other, nil, []string{"If-None-Match", `"v1"`}, srv, token},
		call{"GET /readyz", "GET", "/readyz", nil, nil, down, ""},
		call{"GET /healthz", "GET", "/healthz", nil, nil, srv, ""},
		call{"GET /readyz", "GET", "/readyz", nil, nil, srv, ""},
		call{"GET /openapi.json", "GET", "/openapi.json", nil, nil, srv, ""},
		call{"GET /healthz", "POST", "/healthz", nil, nil, srv, ""},
		call{"GET /api/tasks", "DELETE", "/api/tasks", nil, nil, srv, token},
		call{"GET /api/tasks/{id}", "POST", other, nil, nil, srv, token},
		call{"PATCH /api/tasks/{id}/complete", "GET", other + "/complete", nil, nil, srv, token},
	)
	seen := map[string]map[int]bool{}
	for _, c := range calls {
		res := c.on.request(t, c.method, c.path, c.token, c.body, c.headers...)
		if seen[c.op] == nil {
			seen[c.op] = map[int]bool{}
		}
		seen[c.op][res.status] = true
		if !documented[c.op][strconv.Itoa(res.status)] {
			t.Errorf("%s %s answered %d, which openapi.json does not list for %s", c.method, c.path, res.status, c.op)
		}
	}
	// The drive above must really reach the interesting outcomes.
	for op, want := range map[string][]int{
		"GET /api/tasks":                           {200, 401, 405, 422, 429, 503},
		"POST /api/tasks":                          {201, 400, 401, 413, 422, 429, 503},
		"GET /api/tasks/{id}":                      {200, 304, 401, 404, 405, 429, 503},
		"PUT /api/tasks/{id}":                      {200, 400, 401, 404, 412, 413, 422, 429, 503},
		"PATCH /api/tasks/{id}/complete":           {200, 400, 401, 404, 405, 412, 413, 422, 429, 503},
		"DELETE /api/tasks/{id}":                   {204, 401, 404, 412, 429, 503},
		"GET /readyz":                              {200, 503},
		"GET /api/{user_id}/tasks":                 {200, 401, 404, 422, 429, 503},
		"POST /api/{user_id}/tasks":                {201, 400, 401, 404, 413, 422, 429, 503},
		"GET /api/{user_id}/tasks/{id}":            {200, 401, 404, 429, 503},
		"PUT /api/{user_id}/tasks/{id}":            {200, 400, 401, 404, 412, 413, 422, 429, 503},
		"PATCH /api/{user_id}/tasks/{id}/complete": {200, 400, 401, 404, 412, 413, 422, 429, 503},
		"DELETE /api/{user_id}/tasks/{id}":         {204, 401, 404, 412, 429, 503},
	} {
		for _, status := range want {
			if !seen[op][status] {
				t.Errorf("%s never answered %d in this test; the drive is incomplete", op, status)
			}
		}
	}
}
