package main

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Reading what a request asks for: task bodies, list queries, ids and the
// Idempotency-Key, each checked against the contract's rules.

// maxTitleRunes is the title limit in Unicode code points, as varchar(255)
// counts them.
const maxTitleRunes = 255

// maxDescriptionRunes caps a description in code points, so that one task,
// and with maxListLimit one page of a list, holds a bounded amount.
const maxDescriptionRunes = 10_000

// maxListLimit caps one page of GET /api/tasks.
const maxListLimit = 1000

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
func parseTaskFields(body map[string]json.RawMessage) (taskUpdate, error) {
	var f taskUpdate
	var errs []fieldError

	if raw, ok := body["title"]; !ok || isJSONNull(raw) {
		errs = append(errs, fieldError{"title", "title is required"})
	} else if title, ok := jsonString(raw); !ok {
		errs = append(errs, fieldError{"title", "title must be a string"})
	} else if !strictJSONText(raw) {
		errs = append(errs, fieldError{"title", rewrittenTextMessage("title")})
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
			} else if !strictJSONText(raw) {
				errs = append(errs, fieldError{"description", rewrittenTextMessage("description")})
			} else if strings.IndexByte(description, 0) >= 0 {
				errs = append(errs, fieldError{"description", "description must not contain the NUL character"})
			} else if utf8.RuneCountInString(description) > maxDescriptionRunes {
				errs = append(errs, fieldError{"description", "description must be at most 10000 characters"})
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
	if len(errs) > 0 {
		return taskUpdate{}, validationError(errs...)
	}
	return f, nil
}

func rewrittenTextMessage(field string) string {
	return field + ` must be valid UTF-8 without lone surrogate escapes (\ud800 to \udfff without its pair)`
}

// parsePositiveDecimal accepts only the canonical decimal form of a
// positive int64: a task id in a path, or the version in one of our ETags.
func parsePositiveDecimal(s string) (int64, bool) {
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

// parseTaskID reads the {id} of a task path; anything but the canonical
// form names no task and is a 404 like any other missing task.
func parseTaskID(r *http.Request) (int64, bool) {
	return parsePositiveDecimal(r.PathValue("id"))
}

// parseQuery reads a query string as url.ParseQuery does, but drops
// nothing: Go's parser silently skips a pair it cannot percent-decode or
// that holds a ";", so ?limit=%zz or ?limit=1;limit=2 would answer the
// whole list. Each such pair is a fieldError naming it instead.
func parseQuery(raw string) (url.Values, []fieldError) {
	values := url.Values{}
	var errs []fieldError
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if strings.Contains(pair, ";") {
			errs = append(errs, fieldError{"query", "the query string must not contain ';' (separate parameters with '&')"})
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			errs = append(errs, fieldError{clipName(rawName), "the parameter name " + strconv.Quote(clipName(rawName)) + " is not valid percent-encoding"})
			continue
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			errs = append(errs, fieldError{clipName(name), clipName(name) + " is not valid percent-encoding"})
			continue
		}
		values[name] = append(values[name], value)
	}
	return values, errs
}

// clipName bounds a parameter name quoted back in an error body.
func clipName(name string) string {
	const most = 64
	if len(name) <= most {
		return name
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut] + "..."
}

// parseListFilter reads completed, status, sort, limit and offset; each may
// appear once, and completed and status not together. Other names are
// ignored, but nothing in the query is dropped silently (parseQuery).
func parseListFilter(r *http.Request) (listFilter, error) {
	var f listFilter
	query, errs := parseQuery(r.URL.RawQuery)
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
	if v, ok := single("status"); ok {
		if _, both := query["completed"]; both {
			errs = append(errs, fieldError{"status", "status and completed cannot be given together"})
		}
		switch v {
		case "all":
		case "pending", "completed":
			completed := v == "completed"
			f.completed = &completed
		default:
			errs = append(errs, fieldError{"status", "status must be all, pending or completed"})
		}
	}
	if v, ok := single("sort"); ok {
		switch v {
		case "created":
		case "title":
			f.byTitle = true
		default:
			errs = append(errs, fieldError{"sort", "sort must be created or title"})
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
	if len(errs) > 0 {
		return listFilter{}, validationError(errs...)
	}
	return f, nil
}

// maxIdempotencyKeyBytes bounds the Idempotency-Key header.
const maxIdempotencyKeyBytes = 255

// idempotencyKey reads the optional Idempotency-Key header: one value of 1
// to 255 visible ASCII characters; "" when there is none.
func idempotencyKey(h http.Header) (string, error) {
	values := h.Values("Idempotency-Key")
	if len(values) == 0 {
		return "", nil
	}
	bad := validationError(fieldError{"Idempotency-Key", "Idempotency-Key must be one value of 1 to 255 visible ASCII characters"})
	if len(values) != 1 || values[0] == "" || len(values[0]) > maxIdempotencyKeyBytes {
		return "", bad
	}
	for i := 0; i < len(values[0]); i++ {
		if c := values[0][i]; c < 0x21 || c > 0x7e {
			return "", bad
		}
	}
	return values[0], nil
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
