package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Task lists: their statements, alone and shared (batch.go), the filter,
// and how rows reach the answer (a listOutput, the handler's listAnswer).

// A list statement for each filter and order rather than one with optional
// parts: each has a plan of its own on its index, and none binds NULL (so
// pgbench can replay them). ORDER BY names tasks.created_at: a bare name
// binds to an output column first, and when the columns were
// created_at::text that sorted every list as text without the index.
const (
	orderNewestFirst = `ORDER BY tasks.created_at DESC, tasks.id DESC`
	// orderByTitle is case-insensitive A to Z, then id, on tasks_user_title_idx.
	orderByTitle = `ORDER BY lower(tasks.title), tasks.id`
)

// listSQL is a list statement: $1 the user; with byCompleted, $2 the
// completed flag; then LIMIT and OFFSET.
func listSQL(byCompleted bool, order string) string {
	where, next := `user_id = $1`, 2
	if byCompleted {
		where, next = `user_id = $1 AND completed = $2`, 3
	}
	return fmt.Sprintf("SELECT %s FROM tasks\nWHERE %s\n%s\nLIMIT $%d OFFSET $%d", taskColumns, where, order, next, next+1)
}

var (
	listTasksSQL                   = listSQL(false, orderNewestFirst)
	listTasksByCompletedSQL        = listSQL(true, orderNewestFirst)
	listTasksByTitleSQL            = listSQL(false, orderByTitle)
	listTasksByCompletedByTitleSQL = listSQL(true, orderByTitle)
)

// listFilter narrows, orders and pages a task list; nil means "not given".
type listFilter struct {
	completed *bool
	byTitle   bool // sort=title; else newest first
	limit     *int64
	offset    int64
}

// noLimit stands for "all rows" in LIMIT, which NULL would also say but
// pgbench cannot send.
const noLimit = int64(1<<63 - 1)

// listOutput takes a list's tasks, in list order, as the store reads them.
type listOutput interface {
	// add takes the next task; the *Task is reused, so add must not keep
	// it. With shared, the task comes from a statement shared with other
	// requests, read on another goroutine: add may then not write to the
	// client, and returns errListTooLong once the answer outgrows what it
	// may hold.
	add(t *Task, shared bool) error
	// reset drops every task taken, before the list is read again.
	reset()
}

// errListTooLong: a list too long to share a statement; the store reads
// it again alone, streamed. It never reaches a handler.
var errListTooLong = errors.New("list too long for a shared statement")

// ListTasks hands each of the user's tasks to out, in list order, as the
// driver reads them: a list never sits in memory as a slice of tasks. A
// list in the default order that finds every connection busy waits to
// share a statement with others (batch.go); one too long for that is read
// again alone. Title-ordered lists always run alone.
func (s *Store) ListTasks(ctx context.Context, userID string, f listFilter, out listOutput) error {
	alone := func() error { return s.listAlone(ctx, userID, f, out, false) }
	if f.byTitle {
		return s.entered(ctx, alone)
	}
	_, err := s.submit(ctx, s.lists, &waiter{userID: userID, list: listRequest{filter: f, out: out}})
	if errors.Is(err, errListTooLong) {
		return s.entered(ctx, alone)
	}
	return err
}

// listAlone runs one list's own statement into out, from its start.
func (s *Store) listAlone(ctx context.Context, userID string, f listFilter, out listOutput, shared bool) error {
	out.reset()
	rows, err := s.queryList(ctx, userID, f)
	if err != nil {
		return err
	}
	defer rows.Close()
	row := newTaskRow()
	row.task.UserID = userID
	for rows.Next() {
		if err := row.scan(rows); err != nil {
			return fmt.Errorf("list tasks: %w", err)
		}
		if err := out.add(&row.task, shared); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	return nil
}

func (s *Store) queryList(ctx context.Context, userID string, f listFilter) (*sql.Rows, error) {
	limit := noLimit
	if f.limit != nil {
		limit = *f.limit
	}
	var rows *sql.Rows
	var err error
	all, byCompleted := s.listTasks, s.listByCompleted
	if f.byTitle {
		all, byCompleted = s.listByTitle, s.listByDoneTitle
	}
	if f.completed != nil {
		rows, err = byCompleted.QueryContext(ctx, userID, *f.completed, limit, f.offset)
	} else {
		rows, err = all.QueryContext(ctx, userID, limit, f.offset)
	}
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return rows, nil
}

// listRequest is a list waiting in a batcher: which tasks, where they go,
// and how many rows its batch has read for it.
type listRequest struct {
	filter listFilter
	out    listOutput
	rows   int
}

// listTaskBatchSQL is listTasksSQL and listTasksByCompletedSQL for many
// lists at once: for each position, its user's tasks (of the completed
// flag, where one is given), newest first, from OFFSET, at most LIMIT. The
// LATERAL subquery runs once per position in the arrays' order, so each
// list's rows come together and in list order; runLists checks that they
// do rather than trusting it.
const listTaskBatchSQL = `SELECT q.n, t.*
FROM unnest((SELECT $1::text[]), (SELECT $2::boolean[]), (SELECT $3::bigint[]), (SELECT $4::bigint[]))
    WITH ORDINALITY AS q(q_user, q_completed, q_limit, q_offset, n)
CROSS JOIN LATERAL (
    SELECT ` + taskColumns + ` FROM tasks
    WHERE tasks.user_id = q.q_user AND (q.q_completed IS NULL OR tasks.completed = q.q_completed)
    ` + orderNewestFirst + `
    LIMIT q.q_limit OFFSET q.q_offset) AS t`

// sharedListRows is the most tasks a list may have and still be answered
// from a shared statement; each list's LIMIT there is at most one more,
// so a longer list is known by its extra row and read again alone. Each
// answer's buffer is bounded too (listOutput.add), whatever the rows hold.
const sharedListRows = 256

func (s *Store) runLists(ctx context.Context, batch []*waiter) error {
	var users, completed, limits, offsets arrayLiteral
	for _, w := range batch {
		f := &w.list.filter
		users.text(w.userID)
		completed.nullableBool(f.completed)
		limit := int64(sharedListRows + 1)
		if f.limit != nil {
			limit = min(limit, *f.limit)
		}
		limits.int(limit)
		offsets.int(f.offset)
		w.list.out.reset()
		w.list.rows = 0
		w.task, w.err = Task{}, nil
	}
	rows, err := s.listTaskBatch.QueryContext(ctx, users.String(), completed.String(), limits.String(), offsets.String())
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	var n int
	last, previous := 0, Task{} // the row before, and its list's position
	return readBatch(rows, "list tasks", []any{&n}, func(row *taskRow) error {
		t := &row.task
		if n < 1 || n > len(batch) {
			return fmt.Errorf("list tasks: row for position %d of %d", n, len(batch))
		}
		if n < last || (n == last && !listedAfter(t, &previous)) {
			return errRerunAlone
		}
		last, previous = n, Task{ID: t.ID, CreatedAt: t.CreatedAt}
		w := batch[n-1]
		if w.err != nil { // too long already: its other rows are skipped
			return nil
		}
		if w.list.rows++; w.list.rows > sharedListRows {
			w.err = errListTooLong
			return nil
		}
		t.UserID = w.userID
		if err := w.list.out.add(t, true); errors.Is(err, errListTooLong) {
			w.err = err
		} else if err != nil {
			return err
		}
		return nil
	})
}

// listedAfter reports whether t comes after previous newest first: older,
// or as old with a lower id (orderNewestFirst).
func listedAfter(t, previous *Task) bool {
	if c := t.CreatedAt.Compare(previous.CreatedAt); c != 0 {
		return c < 0
	}
	return t.ID < previous.ID
}
