package main

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lib/pq"
)

//go:embed schema.sql
var schemaSQL string

// schemaLockKey names the advisory lock that serialises schema application
// when several instances start at once on an empty database.
const schemaLockKey int64 = 0x746f646f5f736368 // "todo_sch"

// errNotFound covers a task that never existed, was deleted, or belongs to
// another user: callers must not be able to tell these apart.
var errNotFound = errors.New("task not found")

// errPreconditionFailed: the task exists, but not at a version If-Match named.
var errPreconditionFailed = errors.New("task version does not match If-Match")

// errKeyReused: an Idempotency-Key came back with a different body.
var errKeyReused = errors.New("idempotency key reused with a different body")

// applySchema makes the database match schema.sql. CREATE ... IF NOT EXISTS
// alone races when two instances start together, hence the lock.
func applySchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
		return fmt.Errorf("apply schema: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, schemaSQL); err != nil {
		return fmt.Errorf("apply schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply schema: commit: %w", err)
	}
	return nil
}

// The columns every statement returns, in the order scanTask reads them.
const taskColumns = `id, title, description, completed, created_at::text, updated_at::text, version`

// A write with If-Match passes true and the versions it names; without
// If-Match, false and an empty array. The check is part of the write's own
// WHERE clause, so of two racing writers with the same ETag exactly one wins.

// updated_at must move forward on every write even when the clock does not.
const nextUpdatedAt = `GREATEST(clock_timestamp(), updated_at + interval '1 microsecond')`

// Two list statements rather than one with an optional filter: each has
// a plan of its own, and neither binds NULL (so pgbench can replay them).
// ORDER BY names tasks.created_at: a bare created_at would mean the
// created_at::text output column, sorted as text without the index.
const listTasksSQL = `SELECT ` + taskColumns + ` FROM tasks
WHERE user_id = $1
ORDER BY tasks.created_at DESC, tasks.id DESC
LIMIT $2 OFFSET $3`

const listTasksByCompletedSQL = `SELECT ` + taskColumns + ` FROM tasks
WHERE user_id = $1 AND completed = $2
ORDER BY tasks.created_at DESC, tasks.id DESC
LIMIT $3 OFFSET $4`

const getTaskSQL = `SELECT ` + taskColumns + ` FROM tasks
WHERE user_id = $1 AND id = $2`

const createTaskSQL = `INSERT INTO tasks (user_id, title, description, completed)
VALUES ($1, $2, $3, $4)
RETURNING ` + taskColumns

// $4 says whether the request set description at all: left out keeps the
// stored value, null clears it.
const updateTaskSQL = `UPDATE tasks SET
    title = $3,
    description = CASE WHEN $4::boolean THEN $5::text ELSE description END,
    completed = COALESCE($6::boolean, completed),
    updated_at = ` + nextUpdatedAt + `,
    version = version + 1
WHERE user_id = $1 AND id = $2 AND (NOT $7::boolean OR version = ANY($8::bigint[]))
RETURNING ` + taskColumns

const setCompletedSQL = `UPDATE tasks SET
    completed = $3,
    updated_at = ` + nextUpdatedAt + `,
    version = version + 1
WHERE user_id = $1 AND id = $2 AND (NOT $4::boolean OR version = ANY($5::bigint[]))
RETURNING ` + taskColumns

const deleteTaskSQL = `DELETE FROM tasks
WHERE user_id = $1 AND id = $2 AND (NOT $3::boolean OR version = ANY($4::bigint[]))`

// idempotencyTTL is how long an Idempotency-Key is remembered.
const idempotencyTTL = `interval '24 hours'`

const dropExpiredKeySQL = `DELETE FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND created_at < now() - ` + idempotencyTTL

const claimKeySQL = `INSERT INTO idempotency_keys (user_id, key, fingerprint)
VALUES ($1, $2, $3)
ON CONFLICT (user_id, key) DO NOTHING`

const saveKeyResponseSQL = `UPDATE idempotency_keys SET task_id = $3, response = $4
WHERE user_id = $1 AND key = $2`

const getKeySQL = `SELECT fingerprint, task_id, response FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND created_at >= now() - ` + idempotencyTTL

// sweepKeysSQL is the one statement not scoped by user: housekeeping that
// removes a bounded batch of any user's expired keys, skipping rows another
// sweeper holds so sweepers never wait on or deadlock with each other.
const sweepKeysSQL = `DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys
    WHERE created_at < now() - ` + idempotencyTTL + `
    LIMIT 100 FOR UPDATE SKIP LOCKED))`

// Store holds one prepared statement per operation. Every statement takes
// the user id as $1 and filters on it, so isolation between users is a
// property of the SQL, not of each caller remembering it.
type Store struct {
	db *sql.DB
	// queue admits callers to the pool first come, first served. It is
	// sized from the pool's MaxOpenConnections when the store is made, and
	// nil when the pool is unbounded. See enter.
	queue            chan struct{}
	queueWaits       atomic.Int64 // callers that found the queue full
	queueWaitNanos   atomic.Int64
	listTasks        *sql.Stmt
	listByCompleted  *sql.Stmt
	getTask          *sql.Stmt
	createTask       *sql.Stmt
	updateTask       *sql.Stmt
	setCompleted     *sql.Stmt
	deleteTask       *sql.Stmt
	dropExpiredKey   *sql.Stmt
	claimKey         *sql.Stmt
	saveKeyResponse  *sql.Stmt
	getKey           *sql.Stmt
	sweepExpiredKeys *sql.Stmt
}

// storeStatement is one Store field and the SQL it is prepared from.
type storeStatement struct {
	stmt  **sql.Stmt
	query string
}

// statements pairs every statement field with its SQL, for prepare and Close.
func (s *Store) statements() []storeStatement {
	return []storeStatement{
		{&s.listTasks, listTasksSQL},
		{&s.listByCompleted, listTasksByCompletedSQL},
		{&s.getTask, getTaskSQL},
		{&s.createTask, createTaskSQL},
		{&s.updateTask, updateTaskSQL},
		{&s.setCompleted, setCompletedSQL},
		{&s.deleteTask, deleteTaskSQL},
		{&s.dropExpiredKey, dropExpiredKeySQL},
		{&s.claimKey, claimKeySQL},
		{&s.saveKeyResponse, saveKeyResponseSQL},
		{&s.getKey, getKeySQL},
		{&s.sweepExpiredKeys, sweepKeysSQL},
	}
}

// prepareStore prepares every statement once; database/sql re-prepares them
// on each new pooled connection as needed.
func prepareStore(ctx context.Context, db *sql.DB) (*Store, error) {
	s := &Store{db: db}
	if n := db.Stats().MaxOpenConnections; n > 0 {
		s.queue = make(chan struct{}, n)
	}
	for _, st := range s.statements() {
		stmt, err := db.PrepareContext(ctx, st.query)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare %q: %w", firstLine(st.query), err), s.Close())
		}
		*st.stmt = stmt
	}
	return s, nil
}

// Close releases the prepared statements; the pool belongs to the caller.
func (s *Store) Close() error {
	var errs []error
	for _, st := range s.statements() {
		if *st.stmt != nil {
			errs = append(errs, (*st.stmt).Close())
		}
	}
	return errors.Join(errs...)
}

// enter waits for one of the pool's connections, in arrival order, and
// leave gives it back. database/sql hands a freed connection to a random
// waiter, so under load its own queue turned a 6 ms median into a 25 ms
// p99; waiting here instead, on a channel whose waiters are served in
// order, means the pool never has waiters of its own. Every exported
// method holds exactly one place for its whole database work and never
// enters twice, so callers cannot deadlock on the queue.
func (s *Store) enter(ctx context.Context) error {
	if s.queue == nil {
		return nil
	}
	select {
	case s.queue <- struct{}{}:
		return nil
	default:
	}
	start := time.Now()
	var err error
	select {
	case s.queue <- struct{}{}:
	case <-ctx.Done():
		err = fmt.Errorf("waiting for a database connection: %w", ctx.Err())
	}
	s.queueWaits.Add(1)
	s.queueWaitNanos.Add(int64(time.Since(start)))
	return err
}

func (s *Store) leave() {
	if s.queue != nil {
		<-s.queue
	}
}

// PoolStats is database/sql's figures for the pool, with the waits in the
// store's queue counted in WaitCount and WaitDuration: that is where
// requests wait for a connection now.
func (s *Store) PoolStats() sql.DBStats {
	stats := s.db.Stats()
	stats.WaitCount += s.queueWaits.Load()
	stats.WaitDuration += time.Duration(s.queueWaitNanos.Load())
	return stats
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	return s.db.PingContext(ctx)
}

// listFilter narrows and pages a task list; nil means "not given".
type listFilter struct {
	completed *bool
	limit     *int64
	offset    int64
}

// noLimit stands for "all rows" in LIMIT, which NULL would also say but
// pgbench cannot send.
const noLimit = int64(1<<63 - 1)

// AppendTaskList appends the user's tasks as the contract's JSON array to
// dst. Rows go straight from the driver into the buffer through one reused
// Task, with no slice of tasks in between: a list is the hottest path.
func (s *Store) AppendTaskList(ctx context.Context, dst []byte, userID string, f listFilter) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, err
	}
	defer s.leave()
	rows, err := s.queryList(ctx, userID, f)
	if err != nil {
		return dst, err
	}
	defer rows.Close()
	dst = append(dst, '[')
	t := Task{UserID: userID}
	for n := 0; rows.Next(); n++ {
		if err := scanTaskInto(rows, &t); err != nil {
			return dst, fmt.Errorf("list tasks: %w", err)
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = t.appendJSON(dst)
	}
	if err := rows.Err(); err != nil {
		return dst, fmt.Errorf("list tasks: %w", err)
	}
	return append(dst, ']'), nil
}

func (s *Store) queryList(ctx context.Context, userID string, f listFilter) (*sql.Rows, error) {
	limit := noLimit
	if f.limit != nil {
		limit = *f.limit
	}
	var rows *sql.Rows
	var err error
	if f.completed != nil {
		rows, err = s.listByCompleted.QueryContext(ctx, userID, *f.completed, limit, f.offset)
	} else {
		rows, err = s.listTasks.QueryContext(ctx, userID, limit, f.offset)
	}
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return rows, nil
}

func (s *Store) GetTask(ctx context.Context, userID string, id int64) (Task, error) {
	if err := s.enter(ctx); err != nil {
		return Task{}, err
	}
	defer s.leave()
	return s.getTaskEntered(ctx, userID, id)
}

func (s *Store) getTaskEntered(ctx context.Context, userID string, id int64) (Task, error) {
	return scanOne(s.getTask.QueryRowContext(ctx, userID, id), userID, "get task")
}

func (s *Store) CreateTask(ctx context.Context, userID string, in taskInput) (Task, error) {
	if err := s.enter(ctx); err != nil {
		return Task{}, err
	}
	defer s.leave()
	return scanOne(s.createTask.QueryRowContext(ctx, userID, in.title, in.description, in.completed), userID, "create task")
}

// A nil ifMatch makes a write unconditional; otherwise the task must be at
// one of the versions it lists, else the write is errPreconditionFailed.

func (s *Store) UpdateTask(ctx context.Context, userID string, id int64, in taskUpdate, ifMatch []int64) (Task, error) {
	if err := s.enter(ctx); err != nil {
		return Task{}, err
	}
	defer s.leave()
	t, err := scanOne(s.updateTask.QueryRowContext(ctx, userID, id,
		in.title, in.descriptionSet, in.description, nullable(in.completed), ifMatch != nil, versionArray(ifMatch)), userID, "update task")
	return t, s.explainMiss(ctx, userID, id, ifMatch, err)
}

func (s *Store) SetCompleted(ctx context.Context, userID string, id int64, completed bool, ifMatch []int64) (Task, error) {
	if err := s.enter(ctx); err != nil {
		return Task{}, err
	}
	defer s.leave()
	t, err := scanOne(s.setCompleted.QueryRowContext(ctx, userID, id, completed, ifMatch != nil, versionArray(ifMatch)), userID, "complete task")
	return t, s.explainMiss(ctx, userID, id, ifMatch, err)
}

func (s *Store) DeleteTask(ctx context.Context, userID string, id int64, ifMatch []int64) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	res, err := s.deleteTask.ExecContext(ctx, userID, id, ifMatch != nil, versionArray(ifMatch))
	if err != nil {
		return fmt.Errorf("delete task: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete task: %w", err)
	}
	if n == 0 {
		return s.explainMiss(ctx, userID, id, ifMatch, errNotFound)
	}
	return nil
}

// explainMiss tells, after a conditional write touched no row, whether the
// task is missing (404) or at another version (412). It reads only on that
// failure path; the check that decides the write is the write itself.
func (s *Store) explainMiss(ctx context.Context, userID string, id int64, ifMatch []int64, err error) error {
	if ifMatch == nil || !errors.Is(err, errNotFound) {
		return err
	}
	if _, getErr := s.getTaskEntered(ctx, userID, id); getErr != nil {
		return getErr
	}
	return errPreconditionFailed
}

// versionArray is never NULL: an unconditional write sends an empty array.
func versionArray(versions []int64) any {
	if versions == nil {
		versions = []int64{}
	}
	return pq.Array(versions)
}

// CreateTaskOnce creates a task for an Idempotency-Key. The first request
// with the key creates the task and saves its 201 body in one transaction;
// a repeat with the same fingerprint gets that body back (replayed true),
// and one with another fingerprint gets errKeyReused. A concurrent repeat
// waits on the key's row until the first commits or rolls back.
func (s *Store) CreateTaskOnce(ctx context.Context, userID, key string, fingerprint []byte, in taskInput) (int64, []byte, bool, error) {
	if err := s.enter(ctx); err != nil {
		return 0, nil, false, err
	}
	defer s.leave()
	for attempt := 0; attempt < 3; attempt++ {
		taskID, body, err := s.claimKeyAndCreate(ctx, userID, key, fingerprint, in)
		if err != nil {
			return 0, nil, false, err
		}
		if body != nil {
			// Best effort: a failed sweep leaves work for the next insert.
			s.sweepExpiredKeys.ExecContext(ctx)
			return taskID, body, false, nil
		}
		var stored []byte
		err = s.getKey.QueryRowContext(ctx, userID, key).Scan(&stored, &taskID, &body)
		if errors.Is(err, sql.ErrNoRows) {
			continue // it expired and was swept in between: claim it afresh
		}
		if err != nil {
			return 0, nil, false, fmt.Errorf("read idempotency key: %w", err)
		}
		if !bytes.Equal(stored, fingerprint) {
			return 0, nil, false, errKeyReused
		}
		return taskID, body, true, nil
	}
	return 0, nil, false, errors.New("idempotency key: could not claim or read the key")
}

// claimKeyAndCreate returns a nil body when another request holds the key.
func (s *Store) claimKeyAndCreate(ctx context.Context, userID, key string, fingerprint []byte, in taskInput) (int64, []byte, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("create task once: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.StmtContext(ctx, s.dropExpiredKey).ExecContext(ctx, userID, key); err != nil {
		return 0, nil, fmt.Errorf("create task once: drop expired key: %w", err)
	}
	res, err := tx.StmtContext(ctx, s.claimKey).ExecContext(ctx, userID, key, fingerprint)
	if err != nil {
		return 0, nil, fmt.Errorf("create task once: claim key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, nil, err
	}
	task, err := scanOne(tx.StmtContext(ctx, s.createTask).QueryRowContext(ctx, userID, in.title, in.description, in.completed), userID, "create task once")
	if err != nil {
		return 0, nil, err
	}
	body := task.appendJSON(nil)
	if _, err := tx.StmtContext(ctx, s.saveKeyResponse).ExecContext(ctx, userID, key, task.ID, body); err != nil {
		return 0, nil, fmt.Errorf("create task once: save response: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, nil, fmt.Errorf("create task once: commit: %w", err)
	}
	return task.ID, body, nil
}

type scanner interface {
	Scan(dest ...any) error
}

func scanTask(row scanner, userID string) (Task, error) {
	t := Task{UserID: userID}
	if err := scanTaskInto(row, &t); err != nil {
		return Task{}, err
	}
	return t, nil
}

// scanTaskInto reads taskColumns into t, keeping its UserID.
func scanTaskInto(row scanner, t *Task) error {
	var description sql.NullString
	if err := row.Scan(&t.ID, &t.Title, &description, &t.Completed,
		pgTimestamp{&t.CreatedAt}, pgTimestamp{&t.UpdatedAt}, &t.Version); err != nil {
		return err
	}
	t.Description = nil
	if description.Valid {
		t.Description = &description.String
	}
	return nil
}

func scanOne(row *sql.Row, userID, op string) (Task, error) {
	t, err := scanTask(row, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return Task{}, errNotFound
	}
	if err != nil {
		return Task{}, fmt.Errorf("%s: %w", op, err)
	}
	return t, nil
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

// isUnavailable reports whether err means the database could not be reached
// or is not accepting work, as opposed to a fault in the request or the code.
func isUnavailable(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ENOENT) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		code := string(pqErr.Code)
		// 08: connection exception; 57P0x: shutdown or cannot connect now;
		// 53300: too many connections.
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57P0") || code == "53300"
	}
	return false
}
