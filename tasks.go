package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The task handlers. Each one is a userHandler: it runs behind requireAuth
// with the token's user id, and returns its error for writeError to answer.

// userHandler serves one authenticated request for userID.
type userHandler func(w http.ResponseWriter, r *http.Request, userID string) error

// forUser adapts h to http.Handler. A request without a user id here means
// the route was wired without requireAuth: a bug, answered 500, never a
// request served for an empty user.
func forUser(h userHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, ok := userIDFrom(r.Context())
		if !ok {
			writeError(w, r, errNoUserID)
			return
		}
		if err := h(w, r, userID); err != nil {
			writeError(w, r, err)
		}
	})
}

// listPageBytes is how much of a list answer is built before it is
// written: a list that fits goes out in one Write with its Content-Length;
// a longer one is read and sent a page of about this size at a time, so an
// answer holds about a page and a task in memory whatever the user stores,
// and holds no database connection while its client reads.
const listPageBytes = 64 << 10

func (s *server) handleListTasks() http.Handler {
	return forUser(func(w http.ResponseWriter, r *http.Request, userID string) error {
		filter, err := parseListFilter(r)
		if err != nil {
			return err
		}
		buf := getBuffer()
		answer := newListAnswer(w, (*buf)[:0])
		defer func() {
			*buf = answer.body
			putBuffer(buf)
		}()
		list := newTaskList(userID, filter)
		for done := false; !done; {
			ctx, cancel := s.dbContext(r)
			answer.markPage()
			done, err = s.store.NextPage(ctx, list, answer)
			cancel()
			if err == nil && !done && answer.full() {
				err = answer.send(s.clientStall)
			}
			if err != nil && !answer.streaming {
				return err
			}
			if err != nil {
				s.cutList(r, err)
			}
		}
		answer.body = append(answer.body, ']')
		if !answer.streaming {
			writeJSON(w, http.StatusOK, answer.body)
			return nil
		}
		answer.body = append(answer.body, '\n')
		if err := answer.send(s.clientStall); err != nil {
			s.cutList(r, err)
		}
		return nil
	})
}

// cutList ends a list whose answer is partly sent: the connection is cut
// before the last chunk, so the client cannot take half a list for a
// whole one.
func (s *server) cutList(r *http.Request, err error) {
	noteError(r.Context(), err)
	var clientErr *clientWriteError
	if errors.As(err, &clientErr) {
		s.logger.Info("list answer cut off: the client stopped reading", "request_id", requestIDFrom(r.Context()), "error", clip(err.Error()))
	} else {
		s.logger.Error("list answer cut off midway", "request_id", requestIDFrom(r.Context()), "error", clip(err.Error()))
	}
	panic(http.ErrAbortHandler)
}

// listAnswer is a list's JSON array as the store hands it tasks, a
// taskSink: built until it holds about listPageBytes, then sent.
type listAnswer struct {
	w         http.ResponseWriter
	body      []byte // what is not sent yet
	tasks     int
	streaming bool // the status line and a first page are out
	// Where the current page began (markPage), for dropPage.
	pageStart, pageTasks int
}

func newListAnswer(w http.ResponseWriter, buf []byte) *listAnswer {
	return &listAnswer{w: w, body: append(buf, '[')}
}

func (a *listAnswer) add(t *Task) (full bool) {
	if a.tasks > 0 {
		a.body = append(a.body, ',')
	}
	a.tasks++
	a.body = t.appendJSON(a.body)
	return a.full()
}

// full reports that what is built is due to be sent.
func (a *listAnswer) full() bool { return len(a.body) >= listPageBytes }

// markPage notes where the next page begins.
func (a *listAnswer) markPage() { a.pageStart, a.pageTasks = len(a.body), a.tasks }

func (a *listAnswer) dropPage() {
	a.body, a.tasks = a.body[:a.pageStart], a.pageTasks
}

// send writes what is built so far, the status line first. The client
// has stall to take it: a client that stops reading is cut then, whatever
// the list's length, and one that keeps reading is never cut.
func (a *listAnswer) send(stall time.Duration) error {
	rc := http.NewResponseController(a.w)
	if !a.streaming {
		a.w.Header()["Content-Type"] = contentTypeJSON
		a.w.WriteHeader(http.StatusOK)
		a.streaming = true
		// The request is read: the server's ReadTimeout, still running,
		// would cancel the request's context midway through a long list.
		rc.SetReadDeadline(time.Time{})
	}
	rc.SetWriteDeadline(time.Now().Add(stall))
	if _, err := a.w.Write(a.body); err != nil {
		return &clientWriteError{err}
	}
	a.body = a.body[:0]
	return nil
}

// clientWriteError: the client did not take an answer in time, or is gone.
type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return "write to client: " + e.err.Error() }

func (s *server) handleCreateTask() http.Handler {
	return forUser(func(w http.ResponseWriter, r *http.Request, userID string) error {
		body, err := decode(w, r)
		if err != nil {
			return err
		}
		fields, err := parseTaskFields(body)
		if err != nil {
			return err
		}
		in := taskInput{title: *fields.title, description: fields.description}
		if fields.completed != nil {
			in.completed = *fields.completed
		}
		key, err := idempotencyKey(r.Header)
		if err != nil {
			return err
		}
		ctx, cancel := s.dbContext(r)
		defer cancel()
		if key != "" {
			return s.createTaskOnce(ctx, w, r, userID, key, in)
		}
		task, err := s.store.CreateTask(ctx, userID, in)
		if err != nil {
			return err
		}
		w.Header().Set("Location", taskLocation(r, task.ID))
		writeTask(w, http.StatusCreated, &task)
		return nil
	})
}

// taskLocation is the created task's path, in the shape of the request's:
// /api/tasks/{id}, or /api/{user_id}/tasks/{id} for a path-scoped POST.
func taskLocation(r *http.Request, id int64) string {
	prefix := "/api"
	if pathUser := r.PathValue("user_id"); pathUser != "" {
		prefix += "/" + pathSegment(pathUser)
	}
	return prefix + "/tasks/" + strconv.FormatInt(id, 10)
}

// pathSegment escapes a user id as one path segment. url.PathEscape
// leaves "." and ".." as they are, and a URL resolver removes those as
// dot segments; escaped, they stay the user's segment.
func pathSegment(userID string) string {
	switch userID {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(userID)
}

// writeTask answers with one task and its ETag.
func writeTask(w http.ResponseWriter, status int, t *Task) {
	w.Header()["Etag"] = []string{t.etag()} // Set would canonicalize "ETag" into a new string
	buf := getBuffer()
	defer putBuffer(buf)
	*buf = t.appendJSON((*buf)[:0])
	writeJSON(w, status, *buf)
}

// createTaskOnce answers a POST that carries an Idempotency-Key: the first
// time with the task it creates, every later time with that same 201.
func (s *server) createTaskOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, userID, key string, in taskInput) error {
	task, replayed, err := s.store.CreateTaskOnce(ctx, userID, key, in.fingerprint(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", taskLocation(r, task.ID))
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeTask(w, http.StatusCreated, &task)
	return nil
}

// forTask serves a request about the task in the path that has no body:
// a malformed id is the not-found 404 at once, and h gets the id and a
// context bounding its database work.
func (s *server) forTask(h func(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, id int64) error) http.Handler {
	return forUser(func(w http.ResponseWriter, r *http.Request, userID string) error {
		id, ok := parseTaskID(r)
		if !ok {
			return errNotFound
		}
		ctx, cancel := s.dbContext(r)
		defer cancel()
		return h(ctx, w, r, userID, id)
	})
}

func (s *server) handleGetTask() http.Handler {
	return s.forTask(func(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, id int64) error {
		task, err := s.store.GetTask(ctx, userID, id)
		if err != nil {
			return err
		}
		if c := parseETagCondition(r.Header, "If-None-Match", true); c != nil && c.matches(task.Version) {
			w.Header().Set("ETag", task.etag())
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		writeTask(w, http.StatusOK, &task)
		return nil
	})
}

// taskChange is a validated PUT or PATCH, ready to run against the store.
type taskChange func(ctx context.Context, userID string, id int64, ifMatch []int64) (Task, error)

// handleChangeTask serves PUT and PATCH alike: parse reads the body into a
// taskChange, which runs under If-Match and answers the changed task. The
// id is checked after the body, so that a bad body gets the same answer
// whatever the id.
func (s *server) handleChangeTask(parse func(w http.ResponseWriter, r *http.Request) (taskChange, error)) http.Handler {
	return forUser(func(w http.ResponseWriter, r *http.Request, userID string) error {
		id, idOK := parseTaskID(r)
		change, err := parse(w, r)
		if err != nil {
			return err
		}
		if !idOK {
			return errNotFound
		}
		ctx, cancel := s.dbContext(r)
		defer cancel()
		task, err := change(ctx, userID, id, ifMatchVersions(r))
		if err != nil {
			return err
		}
		writeTask(w, http.StatusOK, &task)
		return nil
	})
}

// handleUpdateTask is a PUT: title required, what is left out is kept.
func (s *server) handleUpdateTask() http.Handler { return s.handleFieldChange(parseTaskFields) }

// handlePatchTask is a partial update: any of title, description and
// completed, each under PUT's rule; what is left out is kept.
func (s *server) handlePatchTask() http.Handler { return s.handleFieldChange(parsePatchFields) }

// handleFieldChange serves a PUT or a PATCH, whose body parse reads.
func (s *server) handleFieldChange(parse func(map[string]json.RawMessage) (taskUpdate, error)) http.Handler {
	return s.handleChangeTask(func(w http.ResponseWriter, r *http.Request) (taskChange, error) {
		body, err := decode(w, r)
		if err != nil {
			return nil, err
		}
		fields, err := parse(body)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, userID string, id int64, ifMatch []int64) (Task, error) {
			return s.store.UpdateTask(ctx, userID, id, fields, ifMatch)
		}, nil
	})
}

// handleCompleteTask sets completed from {"completed": true|false}; with
// no body at all, from ?completed=true|false, or else flips it.
func (s *server) handleCompleteTask() http.Handler {
	return s.handleChangeTask(func(w http.ResponseWriter, r *http.Request) (taskChange, error) {
		raw, err := readBody(w, r)
		if err != nil {
			return nil, err
		}
		completed, err := completedFromQuery(r)
		switch {
		case err != nil:
			return nil, err
		case len(raw) == 0 && completed == nil:
			return s.store.ToggleCompleted, nil
		case len(raw) > 0 && completed != nil:
			return nil, validationError(fieldError{"completed", "give completed in the body or in the query, not both"})
		case len(raw) > 0:
			body, err := decodeObject(raw)
			if err != nil {
				return nil, err
			}
			v, ok := jsonBool(body["completed"])
			if !ok {
				return nil, validationError(fieldError{"completed", "completed is required and must be true or false"})
			}
			completed = &v
		}
		return func(ctx context.Context, userID string, id int64, ifMatch []int64) (Task, error) {
			return s.store.SetCompleted(ctx, userID, id, *completed, ifMatch)
		}, nil
	})
}

func (s *server) handleDeleteTask() http.Handler {
	return s.forTask(func(ctx context.Context, w http.ResponseWriter, r *http.Request, userID string, id int64) error {
		if err := s.store.DeleteTask(ctx, userID, id, ifMatchVersions(r)); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
