package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

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
const taskColumns = `id, title, description, completed, created_at, updated_at`

// updated_at must move forward on every write even when the clock does not.
const nextUpdatedAt = `GREATEST(clock_timestamp(), updated_at + interval '1 microsecond')`

const listTasksSQL = `SELECT ` + taskColumns + ` FROM tasks
WHERE user_id = $1 AND ($2::boolean IS NULL OR completed = $2::boolean)
ORDER BY created_at DESC, id DESC
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
    updated_at = ` + nextUpdatedAt + `
WHERE user_id = $1 AND id = $2
RETURNING ` + taskColumns

const setCompletedSQL = `UPDATE tasks SET
    completed = $3,
    updated_at = ` + nextUpdatedAt + `
WHERE user_id = $1 AND id = $2
RETURNING ` + taskColumns

const deleteTaskSQL = `DELETE FROM tasks WHERE user_id = $1 AND id = $2`

// Store holds one prepared statement per operation. Every statement takes
// the user id as $1 and filters on it, so isolation between users is a
// property of the SQL, not of each caller remembering it.
type Store struct {
	db           *sql.DB
	listTasks    *sql.Stmt
	getTask      *sql.Stmt
	createTask   *sql.Stmt
	updateTask   *sql.Stmt
	setCompleted *sql.Stmt
	deleteTask   *sql.Stmt
}

// prepareStore prepares every statement once; database/sql re-prepares them
// on each new pooled connection as needed.
func prepareStore(ctx context.Context, db *sql.DB) (*Store, error) {
	s := &Store{db: db}
	statements := []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.listTasks, listTasksSQL},
		{&s.getTask, getTaskSQL},
		{&s.createTask, createTaskSQL},
		{&s.updateTask, updateTaskSQL},
		{&s.setCompleted, setCompletedSQL},
		{&s.deleteTask, deleteTaskSQL},
	}
	for _, st := range statements {
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
	for _, stmt := range []*sql.Stmt{s.listTasks, s.getTask, s.createTask, s.updateTask, s.setCompleted, s.deleteTask} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	return errors.Join(errs...)
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.PingContext(ctx)
}

// listFilter narrows and pages a task list; nil means "not given".
type listFilter struct {
	completed *bool
	limit     *int64
	offset    int64
}

func (s *Store) ListTasks(ctx context.Context, userID string, f listFilter) ([]Task, error) {
	rows, err := s.listTasks.QueryContext(ctx, userID, nullable(f.completed), nullable(f.limit), f.offset)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rows.Close()
	tasks := []Task{}
	for rows.Next() {
		t, err := scanTask(rows, userID)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return tasks, nil
}

func (s *Store) GetTask(ctx context.Context, userID string, id int64) (Task, error) {
	return scanOne(s.getTask.QueryRowContext(ctx, userID, id), userID, "get task")
}

func (s *Store) CreateTask(ctx context.Context, userID string, in taskInput) (Task, error) {
	return scanOne(s.createTask.QueryRowContext(ctx, userID, in.title, in.description, in.completed), userID, "create task")
}

func (s *Store) UpdateTask(ctx context.Context, userID string, id int64, in taskUpdate) (Task, error) {
	return scanOne(s.updateTask.QueryRowContext(ctx, userID, id,
		in.title, in.descriptionSet, in.description, nullable(in.completed)), userID, "update task")
}

func (s *Store) SetCompleted(ctx context.Context, userID string, id int64, completed bool) (Task, error) {
	return scanOne(s.setCompleted.QueryRowContext(ctx, userID, id, completed), userID, "complete task")
}

func (s *Store) DeleteTask(ctx context.Context, userID string, id int64) error {
	res, err := s.deleteTask.ExecContext(ctx, userID, id)
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
}

type scanner interface {
	Scan(dest ...any) error
}

func scanTask(row scanner, userID string) (Task, error) {
	t := Task{UserID: userID}
	var description sql.NullString
	if err := row.Scan(&t.ID, &t.Title, &description, &t.Completed, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return Task{}, err
	}
	if description.Valid {
		t.Description = &description.String
	}
	return t, nil
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
