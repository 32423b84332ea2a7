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
		if fields.title == "" || fields.title != strings.TrimSpace(fields.title) || utf8.RuneCountInString(fields.title) > maxTitleRunes ||
			strings.IndexByte(fields.title, 0) >= 0 || !utf8.ValidString(fields.title) {
			t.Fatalf("accepted title %q", fields.title)
		}
		if fields.description != nil && strings.IndexByte(*fields.description, 0) >= 0 {
			t.Fatalf("accepted description with NUL")
		}
		task := Task{ID: 1, UserID: "u", Title: fields.title, Description: fields.description, CreatedAt: pinnedNow, UpdatedAt: pinnedNow}
		var back taskJSON
		if err := json.Unmarshal(task.appendJSON(nil), &back); err != nil || back.Title != fields.title {
			t.Fatalf("task JSON does not round-trip: %v", err)
		}
	})
}
