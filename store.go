package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// The store's own errors carry the contract's code, so writeError answers
// them as they are.
var (
	// errNotFound covers a task that never existed, was deleted, or belongs
	// to another user: callers must not be able to tell these apart.
	errNotFound = &apiError{code: codeNotFound, detail: "task not found"}
	// errPreconditionFailed: the task exists, but not at a version If-Match named.
	errPreconditionFailed = &apiError{code: codePreconditionFailed, detail: "the task has changed: If-Match does not name its current ETag"}
	// errKeyReused: an Idempotency-Key came back with a different body.
	errKeyReused = validationError(fieldError{"Idempotency-Key", "Idempotency-Key was already used with a different request body"})
)

const getTaskSQL = `SELECT ` + taskColumns + ` FROM tasks
WHERE user_id = $1 AND id = $2`

// Every write that can grow a user's usage carries this instance's quotas
// (quotaLimits); createTaskSQL's are $5 and $6.
var createTaskSQL = `INSERT INTO tasks (user_id, title, description, completed)
SELECT $1::text, $2::text, $3::text, $4::boolean
FROM ` + quotaLimits(5) + `
RETURNING ` + taskColumns

// The conditional writes take the user id and task id as $1 and $2, and
// If-Match as $3 and $4: true and the versions it names, or false and an
// empty array. The check is part of the write's own WHERE clause, so of
// two racing writers with the same ETag exactly one wins.
const ifMatchClause = `user_id = $1 AND id = $2 AND (NOT $3::boolean OR version = ANY($4::bigint[]))`

// updated_at must move forward on every write even when the clock does not.
const nextUpdatedAt = `GREATEST(clock_timestamp(), updated_at + interval '1 microsecond')`

// A NULL $5 (a PATCH without title) keeps the title; $6 says whether the
// request set description at all: left out keeps the stored value, null
// clears it. $9 and $10 are the quotas (quotaLimits).
var updateTaskSQL = `UPDATE tasks SET
    title = COALESCE($5, title),
    description = CASE WHEN $6::boolean THEN $7::text ELSE description END,
    completed = COALESCE($8::boolean, completed),
    updated_at = ` + nextUpdatedAt + `,
    version = version + 1
FROM ` + quotaLimits(9) + `
WHERE ` + ifMatchClause + `
RETURNING ` + taskColumns

const setCompletedSQL = `UPDATE tasks SET
    completed = $5,
    updated_at = ` + nextUpdatedAt + `,
    version = version + 1
WHERE ` + ifMatchClause + `
RETURNING ` + taskColumns

// toggleCompletedSQL flips completed in the one statement, so concurrent
// toggles never read a stale value.
const toggleCompletedSQL = `UPDATE tasks SET
    completed = NOT completed,
    updated_at = ` + nextUpdatedAt + `,
    version = version + 1
WHERE ` + ifMatchClause + `
RETURNING ` + taskColumns

const deleteTaskSQL = `DELETE FROM tasks
WHERE ` + ifMatchClause

// Store holds one prepared statement per operation, and one per batched
// operation. Every statement that reads or writes a user's rows takes the
// user id as $1 and filters on it (a batch statement: an array of user
// ids as $1, each row joined on its own), so isolation between users is a
// property of the SQL, not of each caller remembering it; the key sweep
// alone spans users, and touches only expired keys.
type Store struct {
	db     *sql.DB
	opts   storeOptions
	queue  *connQueue
	closed chan struct{} // closed by Close: parked batch leaders exit
	// poolerWarning logs, once, that the pooler loses prepared statements.
	poolerWarning sync.Once
	closeOnce     sync.Once
	// The batchers, where requests that find every connection busy wait
	// to share a statement (batch.go).
	gets    *batcher[getRequest, Task]
	creates *batcher[createRequest, Task]
	changes *batcher[changeRequest, Task]
	lists   *batcher[*listPage, struct{}]
	// listStatements holds a statement for every listShape, at its index.
	listStatements   [listShapeCount]*statement
	getTask          *statement
	createTask       *statement
	updateTask       *statement
	setCompleted     *statement
	toggleCompleted  *statement
	deleteTask       *statement
	dropExpiredKey   *statement
	claimKey         *statement
	saveKey          *statement
	getKey           *statement
	sweepExpiredKeys *statement
	getTasks         *statement
	createTasks      *statement
	changeTasks      *statement
	listTaskBatch    *statement
}

// storeOptions are what openStore is told.
type storeOptions struct {
	// prepared: statements are prepared once per connection; without,
	// each goes unnamed (openDB's probe, or DB_PREPARED_STATEMENTS=false).
	prepared bool
	// batchMax is DB_BATCH_MAX: the most requests one coalesced statement
	// takes; 1 turns coalescing off.
	batchMax int
	// quotaTasks and quotaBytes are QUOTA_TASKS and QUOTA_BYTES (0: none),
	// which every write that can grow a user's usage carries.
	quotaTasks, quotaBytes int64
	logger                 *slog.Logger
}

// storeStatement is one Store field and the SQL it is made from.
type storeStatement struct {
	stmt  **statement
	query string
}

// statements pairs every statement field with its SQL, for prepare and Close.
func (s *Store) statements() []storeStatement {
	var all []storeStatement
	for i := range s.listStatements {
		all = append(all, storeStatement{&s.listStatements[i], shapeAt(i).sql()})
	}
	return append(all, []storeStatement{
		{&s.getTask, getTaskSQL},
		{&s.createTask, createTaskSQL},
		{&s.updateTask, updateTaskSQL},
		{&s.setCompleted, setCompletedSQL},
		{&s.toggleCompleted, toggleCompletedSQL},
		{&s.deleteTask, deleteTaskSQL},
		{&s.dropExpiredKey, dropExpiredKeySQL},
		{&s.claimKey, claimKeySQL},
		{&s.saveKey, saveKeySQL},
		{&s.getKey, getKeySQL},
		{&s.sweepExpiredKeys, sweepKeysSQL},
		{&s.getTasks, getTasksSQL},
		{&s.createTasks, createTasksSQL},
		{&s.changeTasks, changeTasksSQL},
		{&s.listTaskBatch, listTaskBatchSQL},
	}...)
}

// readStatements are the statements that only read: they run without
// their context's cancellation (statement.read).
func (s *Store) readStatements() []**statement {
	reads := []**statement{&s.getTask, &s.getTasks, &s.listTaskBatch}
	for i := range s.listStatements {
		reads = append(reads, &s.listStatements[i])
	}
	return reads
}

// openStore makes the store over db. With opts.prepared, every statement
// is prepared once here, and database/sql re-prepares them on each new
// pooled connection as needed; without, nothing is prepared.
func openStore(ctx context.Context, db *sql.DB, opts storeOptions) (*Store, error) {
	s := &Store{db: db, opts: opts, queue: newConnQueue(db.Stats().MaxOpenConnections), closed: make(chan struct{})}
	s.gets = newBatcher(s, "get", s.runGets, func(ctx context.Context, r getRequest) (Task, error) {
		return s.getTaskEntered(ctx, r.userID, r.id)
	})
	s.creates = newBatcher(s, "create", s.runCreates, func(ctx context.Context, r createRequest) (Task, error) {
		return s.createTaskEntered(ctx, r.userID, r.input)
	})
	s.changes = newBatcher(s, "change", s.runChanges, func(ctx context.Context, r changeRequest) (Task, error) {
		return s.changeAlone(ctx, r.userID, r.id, r.change, false, versionArray(nil))
	})
	s.changes.conflict = func(a, b changeRequest) bool { return a.id == b.id && a.userID == b.userID }
	s.lists = newBatcher(s, "list", s.runLists, func(ctx context.Context, p *listPage) (struct{}, error) {
		return struct{}{}, s.readPage(ctx, p)
	})
	reads := s.readStatements()
	for _, st := range s.statements() {
		*st.stmt = &statement{query: st.query, conn: db, read: slices.Contains(reads, st.stmt)}
		if !opts.prepared {
			continue
		}
		stmt, err := db.PrepareContext(ctx, st.query)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare %q: %w", firstLine(st.query), err), s.Close())
		}
		(*st.stmt).stmt = stmt
	}
	return s, nil
}

// newBatcher is a batcher of one kind for s's queue.
func newBatcher[Req, Res any](s *Store, op string, run func(context.Context, []*waiter[Req, Res]) error,
	alone func(context.Context, Req) (Res, error)) *batcher[Req, Res] {
	return &batcher[Req, Res]{op: op, queue: s.queue, max: s.opts.batchMax, closed: s.closed,
		run: run, alone: alone, answer: s.answer, idle: make(chan struct{})}
}

// kinds is every batcher, for metrics.
func (s *Store) kinds() []kind { return []kind{s.gets, s.creates, s.changes, s.lists} }

// BatchStats reports the statements run for waiting requests, by kind.
func (s *Store) BatchStats() []batchStats {
	var out []batchStats
	for _, k := range s.kinds() {
		out = append(out, k.stats())
	}
	return out
}

// Close releases the prepared statements; the pool belongs to the caller.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	var errs []error
	for _, st := range s.statements() {
		if *st.stmt != nil && (*st.stmt).stmt != nil {
			errs = append(errs, (*st.stmt).stmt.Close())
		}
	}
	return errors.Join(errs...)
}

// entered runs work holding one place in the connection queue: the one
// way an exported method reaches the database but through a batcher.
func (s *Store) entered(ctx context.Context, work func() error) error {
	if err := s.queue.enter(ctx); err != nil {
		return err
	}
	defer s.queue.leave()
	return s.answer(work())
}

// answer is what a caller hears of its database work's error: the
// contract's answer for a quota refusal, a lost prepared statement or a
// database out of reach (a 503), else the error as it is.
func (s *Store) answer(err error) error {
	err = s.checkPooler(quotaError(err))
	var apiErr *apiError
	if err != nil && !errors.As(err, &apiErr) && isUnavailable(err) {
		return errUnavailable(err)
	}
	return err
}

// errUnavailable is the 503 of a database out of reach or too slow.
func errUnavailable(cause error) error {
	return &apiError{code: codeUnavailable, detail: "database unavailable, try again shortly", cause: cause}
}

// PoolStats is database/sql's figures for the pool, with the waits in the
// store's queue counted in WaitCount and WaitDuration: that is where
// requests wait for a connection now.
func (s *Store) PoolStats() sql.DBStats {
	stats := s.db.Stats()
	stats.WaitCount += s.queue.waits.Load()
	stats.WaitDuration += time.Duration(s.queue.waitNanos.Load())
	return stats
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.entered(ctx, func() error { return s.db.PingContext(ctx) })
}

// GetTask returns the user's task id, or errNotFound.
func (s *Store) GetTask(ctx context.Context, userID string, id int64) (Task, error) {
	return s.gets.submit(ctx, getRequest{userID, id})
}

func (s *Store) getTaskEntered(ctx context.Context, userID string, id int64) (Task, error) {
	return scanOne(s.getTask.QueryRowContext(ctx, userID, id), userID, "get task")
}

// CreateTask stores a new task for the user.
func (s *Store) CreateTask(ctx context.Context, userID string, in taskInput) (Task, error) {
	return s.creates.submit(ctx, createRequest{userID, in})
}

func (s *Store) createTaskEntered(ctx context.Context, userID string, in taskInput) (Task, error) {
	return scanOne(s.createTask.QueryRowContext(ctx, userID, in.title, in.description, in.completed, s.opts.quotaTasks, s.opts.quotaBytes), userID, "create task")
}

// UpdateTask sets the fields a PUT or a PATCH (a partial update) gives
// and keeps the others; see writeIfMatch for ifMatch.
func (s *Store) UpdateTask(ctx context.Context, userID string, id int64, in taskUpdate, ifMatch []int64) (Task, error) {
	return s.changeTask(ctx, userID, id, ifMatch, changeFields{
		title: in.title, descriptionSet: in.descriptionSet, description: in.description, completed: in.completed,
	})
}

// SetCompleted sets the task's completed flag; see writeIfMatch for ifMatch.
func (s *Store) SetCompleted(ctx context.Context, userID string, id int64, completed bool, ifMatch []int64) (Task, error) {
	return s.changeTask(ctx, userID, id, ifMatch, changeFields{completed: &completed})
}

// ToggleCompleted flips the task's completed flag; see writeIfMatch for ifMatch.
func (s *Store) ToggleCompleted(ctx context.Context, userID string, id int64, ifMatch []int64) (Task, error) {
	return s.changeTask(ctx, userID, id, ifMatch, changeFields{toggle: true})
}

// changeTask runs an UPDATE ... RETURNING of one task: through the
// change batcher when unconditional, else through writeIfMatch, alone.
func (s *Store) changeTask(ctx context.Context, userID string, id int64, ifMatch []int64, c changeFields) (t Task, err error) {
	if ifMatch == nil {
		return s.changes.submit(ctx, changeRequest{userID, id, c})
	}
	err = s.writeIfMatch(ctx, userID, id, ifMatch, func(conditional bool, versions any) error {
		t, err = s.changeAlone(ctx, userID, id, c, conditional, versions)
		return err
	})
	return t, err
}

// changeAlone runs c as its own statement (updateTaskSQL, setCompletedSQL
// or toggleCompletedSQL), with ifMatchClause's $3 and $4.
func (s *Store) changeAlone(ctx context.Context, userID string, id int64, c changeFields, conditional bool, versions any) (Task, error) {
	args := []any{userID, id, conditional, versions}
	stmt, op := s.toggleCompleted, "toggle task"
	switch {
	case c.title != nil || c.descriptionSet:
		stmt, op = s.updateTask, "update task"
		args = append(args, nullable(c.title), c.descriptionSet, c.description, nullable(c.completed), s.opts.quotaTasks, s.opts.quotaBytes)
	case !c.toggle:
		stmt, op = s.setCompleted, "complete task"
		args = append(args, *c.completed)
	}
	return scanOne(stmt.QueryRowContext(ctx, args...), userID, op)
}

// DeleteTask removes the task; see writeIfMatch for ifMatch.
func (s *Store) DeleteTask(ctx context.Context, userID string, id int64, ifMatch []int64) error {
	return s.writeIfMatch(ctx, userID, id, ifMatch, func(conditional bool, versions any) error {
		res, err := s.deleteTask.ExecContext(ctx, userID, id, conditional, versions)
		if err != nil {
			return fmt.Errorf("delete task: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("delete task: %w", err)
		}
		if n == 0 {
			return errNotFound
		}
		return nil
	})
}

// writeIfMatch is the one path of every conditional write. A nil ifMatch
// makes the write unconditional; otherwise the task must be at one of the
// versions it lists. write runs the statement with ifMatchClause's $3 and
// $4 and returns errNotFound when it touched no row; then, and only then,
// a read tells a missing task (404) from one at another version (412). The
// check that decides the write is the write itself.
func (s *Store) writeIfMatch(ctx context.Context, userID string, id int64, ifMatch []int64, write func(conditional bool, versions any) error) error {
	return s.entered(ctx, func() error {
		err := write(ifMatch != nil, versionArray(ifMatch))
		if ifMatch == nil || !errors.Is(err, errNotFound) {
			return err
		}
		if _, getErr := s.getTaskEntered(ctx, userID, id); getErr != nil {
			return getErr
		}
		return errPreconditionFailed
	})
}

// versionArray is never NULL: an unconditional write sends an empty array.
func versionArray(versions []int64) any {
	if versions == nil {
		versions = []int64{}
	}
	return pq.Array(versions)
}

// nullable passes a nil pointer to the driver as SQL NULL.
func nullable[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
