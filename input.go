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

// taskUpdate is a validated PUT or PATCH body, and what POST reads before
// it gives missing fields their defaults: nil or unset means "left out".
type taskUpdate struct {
	title          *string // never nil for POST and PUT
	descriptionSet bool
	description    *string
	completed      *bool
}

// parseTaskFields applies the body rules of POST and PUT (title required)
// and reports every broken rule at once. Members other than these are
// ignored.
func parseTaskFields(body map[string]json.RawMessage) (taskUpdate, error) {
	return parseFields(body, true)
}

// parsePatchFields applies the body rules of a PATCH, a partial update:
// each member given follows PUT's rule for it, and at least one of title,
// description and completed must be given.
func parsePatchFields(body map[string]json.RawMessage) (taskUpdate, error) {
	_, title := body["title"]
	_, description := body["description"]
	_, completed := body["completed"]
	if !title && !description && !completed {
		return taskUpdate{}, validationError(fieldError{"body", "give at least one of title, description and completed"})
	}
	return parseFields(body, false)
}

func parseFields(body map[string]json.RawMessage, titleRequired bool) (taskUpdate, error) {
	var f taskUpdate
	var errs []fieldError

	if raw, ok := body["title"]; ok || titleRequired {
		f.title, errs = parseTitle(raw, ok && !(titleRequired && isJSONNull(raw)), errs)
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

// parseTitle reads a title that is given (a JSON null given where the
// title is required counts as not given), trimmed of white space.
func parseTitle(raw json.RawMessage, given bool, errs []fieldError) (*string, []fieldError) {
	title, isString := jsonString(raw)
	switch {
	case !given:
		return nil, append(errs, fieldError{"title", "title is required"})
	case !isString:
		return nil, append(errs, fieldError{"title", "title must be a string"})
	case !strictJSONText(raw):
		return nil, append(errs, fieldError{"title", rewrittenTextMessage("title")})
	case strings.IndexByte(title, 0) >= 0:
		return nil, append(errs, fieldError{"title", "title must not contain the NUL character"})
	}
	title = strings.TrimSpace(title)
	if title == "" {
		return nil, append(errs, fieldError{"title", "title must not be empty"})
	}
	if utf8.RuneCountInString(title) > maxTitleRunes {
		return nil, append(errs, fieldError{"title", "title must be at most 255 characters"})
	}
	return &title, errs
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
	if head := cutAt(name, 64); head != name {
		return head + "..."
	}
	return name
}

// cutAt is s cut to at most most bytes, on a character boundary.
func cutAt(s string, most int) string {
	if len(s) <= most {
		return s
	}
	for most > 0 && !utf8.RuneStart(s[most]) {
		most--
	}
	return s[:most]
}

// parseListFilter reads the list's query: completed (or is_complete,
// is_completed), status (or task_status), sort (created, created_at or
// title, optionally :asc or :desc), order (or sort_order), limit and
// offset. Each may appear once and under one spelling; completed and
// status not together, nor a direction in sort and in order. Other names
// are ignored, but nothing in the query is dropped silently (parseQuery).
func parseListFilter(r *http.Request) (listFilter, error) {
	var f listFilter
	query, errs := parseQuery(r.URL.RawQuery)
	// one reads the parameter spelled as any of names.
	one := func(names ...string) (name, value string, ok bool) {
		for _, n := range names {
			values, given := query[n]
			switch {
			case !given:
			case len(values) != 1:
				errs = append(errs, fieldError{n, n + " must be given at most once"})
				return "", "", false
			case ok:
				errs = append(errs, fieldError{n, n + " and " + name + " mean the same: give one of them"})
				return "", "", false
			default:
				name, value, ok = n, values[0], true
			}
		}
		return name, value, ok
	}
	completedName, v, byCompleted := one("completed", "is_complete", "is_completed")
	if byCompleted {
		if completed, ok := parseBool(v); ok {
			f.completed = &completed
		} else {
			errs = append(errs, fieldError{completedName, completedName + " must be true or false"})
		}
	}
	if name, v, ok := one("status", "task_status"); ok {
		if byCompleted {
			errs = append(errs, fieldError{name, name + " and " + completedName + " cannot be given together"})
		}
		switch v {
		case "all":
		case "pending", "completed":
			completed := v == "completed"
			f.completed = &completed
		default:
			errs = append(errs, fieldError{name, name + " must be all, pending or completed"})
		}
	}
	direction, directionGiven := "", false
	if _, v, ok := one("sort"); ok {
		key, dir, withDirection := strings.Cut(v, ":")
		switch key {
		case "created", "created_at":
		case "title":
			f.order.byTitle = true
		default:
			errs = append(errs, fieldError{"sort", "sort must be created, created_at or title, optionally with :asc or :desc"})
		}
		direction, directionGiven = dir, withDirection
	}
	if name, v, ok := one("order", "sort_order"); ok {
		if directionGiven {
			errs = append(errs, fieldError{name, name + " and a direction in sort cannot be given together"})
		}
		direction, directionGiven = v, true
	}
	f.order.ascending = f.order.byTitle // each key's own default
	if directionGiven {
		switch direction {
		case "asc", "desc":
			f.order.ascending = direction == "asc"
		default:
			errs = append(errs, fieldError{"sort", "the direction must be asc or desc"})
		}
	}
	if _, v, ok := one("limit"); ok {
		limit, err := strconv.ParseInt(v, 10, 64)
		if err != nil || limit < 1 || limit > maxListLimit {
			errs = append(errs, fieldError{"limit", "limit must be an integer from 1 to 1000"})
		} else {
			f.limit = &limit
		}
	}
	if _, v, ok := one("offset"); ok {
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

// parseBool reads true or false, exactly.
func parseBool(v string) (value, ok bool) {
	return v == "true", v == "true" || v == "false"
}

// completedFromQuery reads PATCH .../complete's ?completed=true|false;
// nil when it is not given.
func completedFromQuery(r *http.Request) (*bool, error) {
	query, errs := parseQuery(r.URL.RawQuery)
	values, given := query["completed"]
	switch {
	case len(errs) > 0:
	case !given:
		return nil, nil
	case len(values) != 1:
		errs = append(errs, fieldError{"completed", "completed must be given at most once"})
	default:
		if completed, ok := parseBool(values[0]); ok {
			return &completed, nil
		}
		errs = append(errs, fieldError{"completed", "completed must be true or false"})
	}
	return nil, validationError(errs...)
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
