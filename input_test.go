package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeTask: no body panics the decoder; whatever it accepts obeys
// every body rule, and the stored task encodes to JSON that decodes back.
func FuzzDecodeTask(f *testing.F) {
	for _, seed := range []string{
		`{"title":"a"}`, `{"title":" b ","description":null,"completed":true}`, `{"title":"` + strings.Repeat("é", 256) + `"}`,
		`{"title":"a\u0000"}`, `{"title":1}`, `[]`, `null`, ``, `{"title":"a"} x`, "{\"title\":\"\xff\"}", `{"completed":"true"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := decodeObject(body)
		if err != nil {
			var apiErr *apiError
			if !errors.As(err, &apiErr) || (statusOf[apiErr.code] != http.StatusBadRequest && statusOf[apiErr.code] != http.StatusUnprocessableEntity) {
				t.Fatalf("decodeObject(%q) = %v; want a 400 or 422", body, err)
			}
			return
		}
		fields, err := parseTaskFields(obj)
		if err != nil {
			return
		}
		title := *fields.title
		if title == "" || title != strings.TrimSpace(title) || utf8.RuneCountInString(title) > maxTitleRunes ||
			strings.IndexByte(title, 0) >= 0 || !utf8.ValidString(title) {
			t.Fatalf("accepted title %q", title)
		}
		if fields.description != nil && strings.IndexByte(*fields.description, 0) >= 0 {
			t.Fatalf("accepted description with NUL")
		}
		task := Task{ID: 1, UserID: "u", Title: title, Description: fields.description, CreatedAt: pinnedNow, UpdatedAt: pinnedNow}
		var back taskJSON
		if err := json.Unmarshal(task.appendJSON(nil), &back); err != nil || back.Title != title {
			t.Fatalf("task JSON does not round-trip: %v", err)
		}
	})
}

// TestBodyTextIsNeverRewritten: a lone surrogate in a stored field is a
// 422 naming the field, and a pair is kept as the one character it is.
func TestBodyTextIsNeverRewritten(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "before"})
	for _, c := range []struct{ body, field string }{
		{`{"title":"a\ud800b"}`, "title"},
		{`{"title":"a\udfff"}`, "title"},
		{`{"title":"ok","description":"\ud800"}`, "description"},
	} {
		for _, req := range []struct{ method, path string }{{"POST", "/api/tasks"}, {"PUT", taskPath(task.ID)}} {
			res := srv.request(t, req.method, req.path, token, c.body)
			wantError(t, res, http.StatusUnprocessableEntity, codeValidation)
			if !strings.Contains(string(res.body), `"field":"`+c.field+`"`) {
				t.Errorf("%s %s: 422 does not name %s: %s", req.method, c.body, c.field, res.body)
			}
		}
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); got.Title != "before" {
		t.Errorf("title after refused PUTs = %q; want before", got.Title)
	}
	if got := mustCreate(t, srv, token, `{"title":"\ud83d\ude00"}`); got.Title != "\U0001F600" {
		t.Errorf("surrogate pair stored as %q", got.Title)
	}
}

// TestListQueryDropsNothing: a list parameter whose name or value cannot
// be percent-decoded is a 422 naming it, never a list as if it were not
// there; and a repeat is a 422 even when one copy cannot be decoded.
func TestListQueryDropsNothing(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	mustCreate(t, srv, token, map[string]any{"title": "open"})
	mustCreate(t, srv, token, map[string]any{"title": "done", "completed": true})
	for _, c := range []struct{ query, field string }{
		{"limit=%zz", "limit"},
		{"limit=1%", "limit"},
		{"completed=tru%e", "completed"},
		{"status=complete%", "status"},
		{"limit=1&limit=%zz", "limit"},
		{"lim%zzit=1", "lim%zzit"},
		{strings.Repeat("n", 100) + "%zz=1", strings.Repeat("n", 64) + "..."},
		{"limit=1;limit=2", "query"},
	} {
		res := srv.request(t, "GET", "/api/tasks?"+c.query, token, nil)
		wantError(t, res, http.StatusUnprocessableEntity, codeValidation)
		if !strings.Contains(string(res.body), `"field":"`+c.field+`"`) {
			t.Errorf("?%s: 422 does not name %s: %s", c.query, c.field, res.body)
		}
	}
	if res := srv.request(t, "GET", "/api/tasks?completed=tr%75e&unknown=x", token, nil); len(decodeTasks(t, res)) != 1 {
		t.Errorf("a well-escaped filter beside an unknown parameter: %s", res)
	}
}
