package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxTitleRunes is the title limit in Unicode code points, as varchar(255)
// counts them.
const maxTitleRunes = 255

// maxListLimit caps one page of GET /api/tasks.
const maxListLimit = 1000

// Task is one user's todo item as the API shows it.
type Task struct {
	ID          int64
	UserID      string
	Title       string
	Description *string
	Completed   bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int64 // bumped by every write; shown only as the ETag
}

// etag is the task's strong entity tag: its row version, not a timestamp.
func (t *Task) etag() string { return etagOf(t.Version) }

func etagOf(version int64) string { return `"v` + strconv.FormatInt(version, 10) + `"` }

// etagCondition is a parsed If-Match or If-None-Match header.
type etagCondition struct {
	any      bool    // "*"
	versions []int64 // the versions of the entity tags it lists
}

// parseETagCondition reads every value of header; nil means the header is
// absent. Tags that are not ours are kept as matching nothing. Weak tags
// count only where weak comparison applies (If-None-Match).
func parseETagCondition(h http.Header, name string, weakMatches bool) *etagCondition {
	values := h.Values(name)
	if len(values) == 0 {
		return nil
	}
	c := &etagCondition{versions: []int64{}}
	for _, value := range values {
		for _, tag := range strings.Split(value, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" {
				c.any = true
				continue
			}
			if strings.HasPrefix(tag, "W/") {
				if !weakMatches {
					continue
				}
				tag = tag[2:]
			}
			if len(tag) < 4 || !strings.HasPrefix(tag, `"v`) || !strings.HasSuffix(tag, `"`) {
				continue
			}
			if v, ok := parseTaskID(tag[2 : len(tag)-1]); ok {
				c.versions = append(c.versions, v)
			}
		}
	}
	return c
}

// matches reports whether a task at version satisfies the condition.
func (c *etagCondition) matches(version int64) bool {
	if c.any {
		return true
	}
	for _, v := range c.versions {
		if v == version {
			return true
		}
	}
	return false
}

// ifMatchVersions turns If-Match into the store's argument: nil for no
// condition ("*" only asks that the task exists, which every write does).
func ifMatchVersions(r *http.Request) []int64 {
	c := parseETagCondition(r.Header, "If-Match", false)
	if c == nil || c.any {
		return nil
	}
	return c.versions
}

// timeLayout is RFC 3339 with the microseconds PostgreSQL keeps, always
// six digits so clients can compare times as strings.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// appendJSON writes t as the contract's JSON object without reflection; it
// runs for every task of every list.
func (t *Task) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, t.ID, 10)
	b = append(b, `,"user_id":`...)
	b = appendJSONString(b, t.UserID)
	b = append(b, `,"title":`...)
	b = appendJSONString(b, t.Title)
	b = append(b, `,"description":`...)
	if t.Description == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *t.Description)
	}
	b = append(b, `,"completed":`...)
	b = strconv.AppendBool(b, t.Completed)
	b = append(b, `,"created_at":"`...)
	b = appendTimestamp(b, t.CreatedAt)
	b = append(b, `","updated_at":"`...)
	b = appendTimestamp(b, t.UpdatedAt)
	return append(b, `"}`...)
}

// appendTimestamp writes t as timeLayout does, several times faster: it
// runs twice for every task of every answer.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	hour, minute, second := t.Clock()
	micro := t.Nanosecond() / 1000
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, second, 2)
	b = append(b, '.')
	b = appendDigits(b, micro, 6)
	return append(b, 'Z')
}

// appendDigits writes the last width decimal digits of a non-negative n.
func appendDigits(b []byte, n, width int) []byte {
	var digits [8]byte
	for i := width - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, digits[:width]...)
}

// pgTimestamp scans timestamptz::text (PostgreSQL's ISO output, in the
// session's time zone: 2026-01-18 10:00:00.123456+00, +05:30, -03 ...)
// into a time.Time. It replaces lib/pq's general parser, which showed up as
// a tenth of the CPU of a list; PostgreSQL runs the same output function
// either way.
type pgTimestamp struct{ t *time.Time }

func (p pgTimestamp) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("timestamp: unexpected %T", src)
	}
	t, ok := parsePGTimestamp(s)
	if !ok {
		return fmt.Errorf("timestamp: unexpected format %q", s)
	}
	*p.t = t
	return nil
}

// parsePGTimestamp reads YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]].
func parsePGTimestamp(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02 15:04:05+00") || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	second, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	i, nanos := 19, 0
	if i < len(s) && s[i] == '.' {
		i++
		scale := 100_000_000
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			nanos += int(s[i]-'0') * scale
			scale /= 10
		}
	}
	// The offset: ±HH, ±HH:MM or ±HH:MM:SS.
	zone := len(s) - i
	if (zone != 3 && zone != 6 && zone != 9) || (s[i] != '+' && s[i] != '-') {
		return time.Time{}, false
	}
	sign := 1
	if s[i] == '-' {
		sign = -1
	}
	offset, ok := num(i+1, i+3)
	if !ok {
		return time.Time{}, false
	}
	offset *= 3600
	for j, unit := i+3, 60; j < len(s); j, unit = j+3, 1 {
		part, ok := num(j+1, j+3)
		if s[j] != ':' || !ok {
			return time.Time{}, false
		}
		offset += part * unit
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, nanos, time.UTC)
	return t.Add(-time.Duration(sign*offset) * time.Second), true
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as a JSON string (RFC 8259 section 7). Invalid
// UTF-8 becomes U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// taskInput is a validated POST body.
type taskInput struct {
	title       string
	description *string
	completed   bool
}

// taskUpdate is a validated PUT body, and what POST reads before it gives
// missing fields their defaults: nil or unset means "left out".
type taskUpdate struct {
	title          string
	descriptionSet bool
	description    *string
	completed      *bool
}

// parseTaskFields applies the body rules shared by POST and PUT and reports
// every broken rule at once. Members other than these are ignored.
func parseTaskFields(body map[string]json.RawMessage) (taskUpdate, []fieldError) {
	var f taskUpdate
	var errs []fieldError

	if raw, ok := body["title"]; !ok || isJSONNull(raw) {
		errs = append(errs, fieldError{"title", "title is required"})
	} else if title, ok := jsonString(raw); !ok {
		errs = append(errs, fieldError{"title", "title must be a string"})
	} else if strings.IndexByte(title, 0) >= 0 {
		errs = append(errs, fieldError{"title", "title must not contain the NUL character"})
	} else {
		f.title = strings.TrimSpace(title)
		if f.title == "" {
			errs = append(errs, fieldError{"title", "title must not be empty"})
		} else if utf8.RuneCountInString(f.title) > maxTitleRunes {
			errs = append(errs, fieldError{"title", "title must be at most 255 characters"})
		}
	}

	if raw, ok := body["description"]; ok {
		f.descriptionSet = true
		if !isJSONNull(raw) {
			if description, ok := jsonString(raw); !ok {
				errs = append(errs, fieldError{"description", "description must be a string or null"})
			} else if strings.IndexByte(description, 0) >= 0 {
				errs = append(errs, fieldError{"description", "description must not contain the NUL character"})
			} else {
				f.description = &description
			}
		}
	}

	if raw, ok := body["completed"]; ok {
		if completed, ok := jsonBool(raw); ok {
			f.completed = &completed
		} else {
			errs = append(errs, fieldError{"completed", "completed must be true or false"})
		}
	}
	return f, errs
}

func isJSONNull(raw json.RawMessage) bool { return string(raw) == "null" }

func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func jsonBool(raw json.RawMessage) (bool, bool) {
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// parseTaskID accepts only the canonical decimal form of a positive int64;
// anything else names no task and is a 404 like any other missing task.
func parseTaskID(s string) (int64, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}

// parseListFilter reads completed, limit and offset; each may appear once.
func parseListFilter(r *http.Request) (listFilter, []fieldError) {
	var f listFilter
	var errs []fieldError
	query := r.URL.Query()
	single := func(name string) (string, bool) {
		values, ok := query[name]
		if !ok {
			return "", false
		}
		if len(values) != 1 {
			errs = append(errs, fieldError{name, name + " must be given at most once"})
			return "", false
		}
		return values[0], true
	}
	if v, ok := single("completed"); ok {
		switch v {
		case "true", "false":
			completed := v == "true"
			f.completed = &completed
		default:
			errs = append(errs, fieldError{"completed", "completed must be true or false"})
		}
	}
	if v, ok := single("limit"); ok {
		limit, err := strconv.ParseInt(v, 10, 64)
		if err != nil || limit < 1 || limit > maxListLimit {
			errs = append(errs, fieldError{"limit", "limit must be an integer from 1 to 1000"})
		} else {
			f.limit = &limit
		}
	}
	if v, ok := single("offset"); ok {
		offset, err := strconv.ParseInt(v, 10, 64)
		if err != nil || offset < 0 {
			errs = append(errs, fieldError{"offset", "offset must be a non-negative integer"})
		} else {
			f.offset = offset
		}
	}
	return f, errs
}

func (s *server) handleListTasks() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		filter, errs := parseListFilter(r)
		if len(errs) > 0 {
			writeValidationError(w, r, errs)
			return
		}
		userID, _ := userIDFrom(r.Context())
		ctx, cancel := s.dbContext(r)
		defer cancel()
		buf := getBuffer()
		defer putBuffer(buf)
		body, err := s.store.AppendTaskList(ctx, (*buf)[:0], userID, filter)
		*buf = body
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
}

func (s *server) handleCreateTask() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, apiErr := decode(w, r)
		if apiErr != nil {
			writeAPIError(w, r, apiErr)
			return
		}
		fields, errs := parseTaskFields(body)
		if len(errs) > 0 {
			writeValidationError(w, r, errs)
			return
		}
		in := taskInput{title: fields.title, description: fields.description}
		if fields.completed != nil {
			in.completed = *fields.completed
		}
		key, hasKey, keyErr := idempotencyKey(r.Header)
		if keyErr != nil {
			writeValidationError(w, r, []fieldError{*keyErr})
			return
		}
		userID, _ := userIDFrom(r.Context())
		ctx, cancel := s.dbContext(r)
		defer cancel()
		if hasKey {
			s.createTaskOnce(ctx, w, r, userID, key, in)
			return
		}
		task, err := s.store.CreateTask(ctx, userID, in)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		w.Header().Set("Location", taskLocation(task.ID))
		writeTask(w, http.StatusCreated, &task)
	})
}

func taskLocation(id int64) string { return "/api/tasks/" + strconv.FormatInt(id, 10) }

// writeTask answers with one task and its ETag.
func writeTask(w http.ResponseWriter, status int, t *Task) {
	w.Header().Set("ETag", t.etag())
	buf := getBuffer()
	defer putBuffer(buf)
	*buf = t.appendJSON((*buf)[:0])
	writeJSON(w, status, *buf)
}

// maxIdempotencyKeyBytes bounds the Idempotency-Key header.
const maxIdempotencyKeyBytes = 255

// idempotencyKey reads the optional Idempotency-Key header: one value of 1
// to 255 visible ASCII characters.
func idempotencyKey(h http.Header) (string, bool, *fieldError) {
	values := h.Values("Idempotency-Key")
	if len(values) == 0 {
		return "", false, nil
	}
	bad := &fieldError{"Idempotency-Key", "Idempotency-Key must be one value of 1 to 255 visible ASCII characters"}
	if len(values) != 1 || values[0] == "" || len(values[0]) > maxIdempotencyKeyBytes {
		return "", false, bad
	}
	for i := 0; i < len(values[0]); i++ {
		if c := values[0][i]; c < 0x21 || c > 0x7e {
			return "", false, bad
		}
	}
	return values[0], true, nil
}

// fingerprint identifies what a create asked for, so a retry with the same
// key can be told from a different request reusing it. NUL cannot occur in
// the fields, so it separates them unambiguously.
func (in taskInput) fingerprint() []byte {
	h := sha256.New()
	h.Write([]byte(in.title))
	h.Write([]byte{0})
	if in.description != nil {
		h.Write([]byte{1})
		h.Write([]byte(*in.description))
	}
	h.Write([]byte{0})
	if in.completed {
		h.Write([]byte{1})
	}
	return h.Sum(nil)
}

// createTaskOnce answers a POST that carries an Idempotency-Key.
func (s *server) createTaskOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, userID, key string, in taskInput) {
	taskID, body, replayed, err := s.store.CreateTaskOnce(ctx, userID, key, in.fingerprint(), in)
	if errors.Is(err, errKeyReused) {
		writeValidationError(w, r, []fieldError{{"Idempotency-Key", "Idempotency-Key was already used with a different request body"}})
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Location", taskLocation(taskID))
	h.Set("ETag", etagOf(1)) // the version every task is created at
	if replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(http.StatusCreated)
	w.Write(append(body, '\n'))
}

func (s *server) handleGetTask() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseTaskID(r.PathValue("id"))
		if !ok {
			writeTaskNotFound(w, r)
			return
		}
		userID, _ := userIDFrom(r.Context())
		ctx, cancel := s.dbContext(r)
		defer cancel()
		task, err := s.store.GetTask(ctx, userID, id)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		if c := parseETagCondition(r.Header, "If-None-Match", true); c != nil && c.matches(task.Version) {
			w.Header().Set("ETag", task.etag())
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeTask(w, http.StatusOK, &task)
	})
}

func (s *server) handleUpdateTask() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseTaskID(r.PathValue("id"))
		body, apiErr := decode(w, r)
		if apiErr != nil {
			writeAPIError(w, r, apiErr)
			return
		}
		fields, errs := parseTaskFields(body)
		if len(errs) > 0 {
			writeValidationError(w, r, errs)
			return
		}
		// A malformed id names no task; it is checked after the body so
		// that a bad body gets the same answer whatever the id.
		if !ok {
			writeTaskNotFound(w, r)
			return
		}
		userID, _ := userIDFrom(r.Context())
		ctx, cancel := s.dbContext(r)
		defer cancel()
		task, err := s.store.UpdateTask(ctx, userID, id, fields, ifMatchVersions(r))
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		writeTask(w, http.StatusOK, &task)
	})
}

func (s *server) handleCompleteTask() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseTaskID(r.PathValue("id"))
		body, apiErr := decode(w, r)
		if apiErr != nil {
			writeAPIError(w, r, apiErr)
			return
		}
		completed, valid := jsonBool(body["completed"])
		if !valid {
			writeValidationError(w, r, []fieldError{{"completed", "completed is required and must be true or false"}})
			return
		}
		if !ok {
			writeTaskNotFound(w, r)
			return
		}
		userID, _ := userIDFrom(r.Context())
		ctx, cancel := s.dbContext(r)
		defer cancel()
		task, err := s.store.SetCompleted(ctx, userID, id, completed, ifMatchVersions(r))
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		writeTask(w, http.StatusOK, &task)
	})
}

func (s *server) handleDeleteTask() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseTaskID(r.PathValue("id"))
		if !ok {
			writeTaskNotFound(w, r)
			return
		}
		userID, _ := userIDFrom(r.Context())
		ctx, cancel := s.dbContext(r)
		defer cancel()
		if err := s.store.DeleteTask(ctx, userID, id, ifMatchVersions(r)); err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func writeTaskNotFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, codeNotFound, "task not found")
}
