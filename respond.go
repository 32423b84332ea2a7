package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// statusOf is the one table from an error code to its HTTP status.
var statusOf = map[string]int{
	codeBadRequest:             http.StatusBadRequest,
	codeAuthenticationRequired: http.StatusUnauthorized,
	codeNotFound:               http.StatusNotFound,
	codeMethodNotAllowed:       http.StatusMethodNotAllowed,
	codePreconditionFailed:     http.StatusPreconditionFailed,
	codePayloadTooLarge:        http.StatusRequestEntityTooLarge,
	codeValidation:             http.StatusUnprocessableEntity,
	codeRateLimited:            http.StatusTooManyRequests,
	codeQuotaExceeded:          http.StatusConflict,
	codeInternal:               http.StatusInternalServerError,
	codeUnavailable:            http.StatusServiceUnavailable,
}

// statusClientClosed is logged (never seen) for requests whose client left.
const statusClientClosed = 499

var (
	errPayloadTooLarge = &apiError{code: codePayloadTooLarge, detail: "request body is larger than 1 MiB"}
	// errNoUserID: a handler that needs the user was reached without
	// requireAuth in front of it, a bug in the wiring.
	errNoUserID = errors.New("handler reached without an authenticated user id")
)

// errorBody is the contract's error shape.
type errorBody struct {
	Detail    string       `json:"detail"`
	ErrorCode string       `json:"error_code"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
}

// writeError is the one way an error reaches a client. An *apiError (also
// wrapped) answers with its own code (the store gives one for every
// database failure it can name, an outage included); any other error is
// unexpected: a client that left is logged as 499, and everything else is
// a 500 "internal error". Every 5xx puts err on the request's log line;
// the client never sees more than the detail.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *apiError
	status := 0
	switch {
	case errors.As(err, &e):
		status = statusOf[e.code]
	case r.Context().Err() != nil:
		// The client is gone; nobody reads this answer.
		e, status = &apiError{code: codeUnavailable, detail: "request cancelled"}, statusClientClosed
	default:
		e = &apiError{code: codeInternal, detail: "internal error"}
	}
	if status == 0 {
		status = statusOf[e.code]
	}
	h := w.Header()
	switch e.code {
	case codeAuthenticationRequired:
		noteAuthFailure(r.Context(), e.cause)
		h.Set("WWW-Authenticate", "Bearer")
	case codeUnavailable:
		h.Set("Retry-After", "1")
	}
	if status >= 500 {
		noteError(r.Context(), err)
	}
	encode(w, status, errorBody{
		Detail:    e.detail,
		ErrorCode: e.code,
		RequestID: requestIDFrom(r.Context()),
		Errors:    e.fields,
	})
}

// encode writes v as the JSON body of an answer with status. Tasks, the
// hot path, have their own encoder (writeTask).
func encode(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types reach here; a failure is a bug, and the
		// client still gets the contract's shape.
		status = http.StatusInternalServerError
		body = []byte(`{"detail":"internal error","error_code":"INTERNAL_ERROR"}`)
	}
	writeJSON(w, status, body)
}

// writeJSON sends body and a newline. The newline is appended in place, so
// body must be the caller's own; it may be reused afterwards. One Write
// matters: a body past net/http's 4 KiB buffer is written straight through,
// and a separate newline after it cost a third write system call per list.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	body = append(body, '\n')
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

var contentTypeJSON = []string{"application/json"}

// bufferPool recycles response buffers; one task is about 250 bytes, and a
// buffer grows to fit a list once, then is reused at that size.
var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuffer() *[]byte { return bufferPool.Get().(*[]byte) }

// putBuffer returns a buffer unless it grew past what is worth keeping.
func putBuffer(b *[]byte) {
	if cap(*b) <= 1<<20 {
		bufferPool.Put(b)
	}
}

// maxBodyBytes is the largest request body accepted.
const maxBodyBytes = 1 << 20

// readBody reads a request body of at most maxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBodyBytes {
		return nil, errPayloadTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errPayloadTooLarge
		}
		return nil, &apiError{code: codeBadRequest, detail: "could not read the request body", cause: err}
	}
	return body, nil
}

// decode reads a request body that must be one JSON object. Unparseable
// input is a 400; parseable JSON of another shape is a 422.
func decode(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	return decodeObject(body)
}

// decodeObject parses body. Invalid UTF-8 inside a string is left for the
// field rules to name (parseTaskFields), never read as U+FFFD.
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(body) {
		return nil, &apiError{code: codeBadRequest, detail: "request body is not valid JSON"}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, &apiError{code: codeValidation, detail: "request body must be a JSON object"}
	}
	return obj, nil
}
