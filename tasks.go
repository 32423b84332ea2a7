package main

import (
	"encoding/json"
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
	b = t.CreatedAt.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","updated_at":"`...)
	b = t.UpdatedAt.UTC().AppendFormat(b, timeLayout)
	return append(b, `"}`...)
}

// MarshalJSON lets encoding/json (and so the tests) see the same bytes.
func (t Task) MarshalJSON() ([]byte, error) {
	return t.appendJSON(nil), nil
}

type taskList []Task

func (l taskList) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = l[i].appendJSON(b)
	}
	return append(b, ']')
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
		tasks, err := s.store.ListTasks(ctx, userID, filter)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		encode(w, http.StatusOK, taskList(tasks))
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
		userID, _ := userIDFrom(r.Context())
		ctx, cancel := s.dbContext(r)
		defer cancel()
		task, err := s.store.CreateTask(ctx, userID, in)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		w.Header().Set("Location", "/api/tasks/"+strconv.FormatInt(task.ID, 10))
		encode(w, http.StatusCreated, &task)
	})
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
		encode(w, http.StatusOK, &task)
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
		task, err := s.store.UpdateTask(ctx, userID, id, fields)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		encode(w, http.StatusOK, &task)
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
		task, err := s.store.SetCompleted(ctx, userID, id, completed)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		encode(w, http.StatusOK, &task)
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
		if err := s.store.DeleteTask(ctx, userID, id); err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func writeTaskNotFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, codeNotFound, "task not found")
}
