package main

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The statements batches run (see batch.go; the lists' is in list.go).
// Each takes one array per column, all of one length, and joins every row
// on its own request's user id: a batch can hold many users, and the SQL
// still never lets one reach another's task.
//
// Each array comes in as a subquery, (SELECT $1::text[]), not as $1 itself.
// Given the bare parameter, PostgreSQL plans every execution anew: a
// custom plan sees the array's length (a batch of 5 rows), the generic
// plan cannot (it guesses 10), so while batches average fewer than that
// the generic one looks dearer and the plan cache never settles on it.
// Planning a get batch of 5 took three times as long as running it.
// Behind a subquery no plan sees the length, the
// two cost the same, and from the sixth execution on the prepared
// statement keeps its generic plan: the same nested loop over the same
// indexes. TestBatchStatementsKeepGenericPlans holds them to it.

// The requests each kind of batch takes.
type (
	getRequest struct {
		userID string
		id     int64
	}
	createRequest struct {
		userID string
		input  taskInput
	}
	changeRequest struct {
		userID string
		id     int64
		change changeFields
	}
)

// getTasksSQL returns, for each (user, id) pair, its position in the
// arrays and the task, when the user has it.
const getTasksSQL = `SELECT q.n, ` + taskColumns + `
FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[])) WITH ORDINALITY AS q(q_user, q_id, n)
JOIN tasks ON tasks.user_id = q.q_user AND tasks.id = q.q_id`

// createTasksSQL inserts one task per position. Sorting by user makes
// every batch take the users' usage rows (see schema.sql) in one order, so
// two batches cannot deadlock on them. $5 and $6 are the quotas
// (quotaLimits).
var createTasksSQL = `INSERT INTO tasks (user_id, title, description, completed)
SELECT q_user, q_title, q_description, q_completed
FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::text[]), (SELECT $4::boolean[]))
    AS q(q_user, q_title, q_description, q_completed),
    ` + quotaLimits(5) + `
ORDER BY q_user
RETURNING user_id, ` + taskColumns

// changeTasksSQL is updateTaskSQL, setCompletedSQL and toggleCompletedSQL
// in one, without If-Match: a NULL title or completed keeps the stored
// value. No two positions name the same task (changeRequest conflicts),
// and the positions come sorted by user and id. $8 and $9 are the quotas
// (quotaLimits).
var changeTasksSQL = `UPDATE tasks SET
    title = COALESCE(q.q_title, tasks.title),
    description = CASE WHEN q.q_description_set THEN q.q_description ELSE tasks.description END,
    completed = CASE WHEN q.q_toggle THEN NOT tasks.completed ELSE COALESCE(q.q_completed, tasks.completed) END,
    updated_at = ` + nextUpdatedAt + `,
    version = tasks.version + 1
FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[]), (SELECT $3::text[]), (SELECT $4::boolean[]),
        (SELECT $5::text[]), (SELECT $6::boolean[]), (SELECT $7::boolean[]))
    AS q(q_user, q_id, q_title, q_description_set, q_description, q_completed, q_toggle),
    ` + quotaLimits(8) + `
WHERE tasks.user_id = q.q_user AND tasks.id = q.q_id
RETURNING q.q_user, ` + taskColumns

// readBatch calls each with every row, the columns before taskColumns
// scanned into lead, then reports any error of the statement, including
// one that arrives after the last row. The row is reused: each keeps what
// it needs with row.kept().
func readBatch(rows *sql.Rows, op string, lead []any, each func(row *taskRow) error) error {
	defer rows.Close()
	row := newTaskRow(lead...)
	for rows.Next() {
		if err := row.scan(rows); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := each(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (s *Store) runGets(ctx context.Context, batch []*waiter[getRequest, Task]) error {
	var users, ids arrayLiteral
	for _, w := range batch {
		users.text(w.req.userID)
		ids.int(w.req.id)
		w.res, w.err = Task{}, errNotFound
	}
	rows, err := s.getTasks.QueryContext(ctx, users.String(), ids.String())
	if err != nil {
		return fmt.Errorf("get tasks: %w", err)
	}
	var n int
	return readBatch(rows, "get tasks", []any{&n}, func(row *taskRow) error {
		if n < 1 || n > len(batch) {
			return fmt.Errorf("get tasks: row for position %d of %d", n, len(batch))
		}
		w := batch[n-1]
		t := row.kept()
		t.UserID = w.req.userID
		w.res, w.err = t, nil
		return nil
	})
}

func (s *Store) runCreates(ctx context.Context, batch []*waiter[createRequest, Task]) error {
	var users, titles, descriptions, completed arrayLiteral
	for _, w := range batch {
		users.text(w.req.userID)
		titles.text(w.req.input.title)
		descriptions.nullableText(w.req.input.description)
		completed.bool(w.req.input.completed)
		w.res, w.err = Task{}, nil
	}
	rows, err := s.createTasks.QueryContext(ctx, users.String(), titles.String(), descriptions.String(), completed.String(),
		s.opts.quotaTasks, s.opts.quotaBytes)
	if err != nil {
		return fmt.Errorf("create tasks: %w", err)
	}
	// INSERT ... RETURNING promises no order, so each row goes to the
	// first unanswered request with its very input; requests with equal
	// input are interchangeable.
	answered := make([]bool, len(batch))
	var userID string
	err = readBatch(rows, "create tasks", []any{&userID}, func(row *taskRow) error {
		for i, w := range batch {
			if !answered[i] && w.req.userID == userID && w.req.input.matches(&row.task) {
				t := row.kept()
				t.UserID = userID
				w.res, answered[i] = t, true
				return nil
			}
		}
		return fmt.Errorf("create tasks: a returned row matches no request")
	})
	if err == nil && slices.Contains(answered, false) {
		err = fmt.Errorf("create tasks: fewer rows than the %d requests", len(batch))
	}
	return err
}

// matches reports whether t holds exactly this input.
func (in taskInput) matches(t *Task) bool {
	if in.title != t.Title || in.completed != t.Completed || (in.description == nil) != (t.Description == nil) {
		return false
	}
	return in.description == nil || *in.description == *t.Description
}

func (s *Store) runChanges(ctx context.Context, batch []*waiter[changeRequest, Task]) error {
	// Rows are locked in the order the arrays give them (a nested loop over
	// unnest): sorted, two batches wanting the same tasks queue for them
	// instead of deadlocking, which PostgreSQL breaks only after a second.
	slices.SortFunc(batch, func(a, b *waiter[changeRequest, Task]) int {
		return cmp.Or(strings.Compare(a.req.userID, b.req.userID), cmp.Compare(a.req.id, b.req.id))
	})
	var users, ids, titles, descriptionSet, descriptions, completed, toggle arrayLiteral
	for _, w := range batch {
		c := &w.req.change
		users.text(w.req.userID)
		ids.int(w.req.id)
		titles.nullableText(c.title)
		descriptionSet.bool(c.descriptionSet)
		descriptions.nullableText(c.description)
		completed.nullableBool(c.completed)
		toggle.bool(c.toggle)
		w.res, w.err = Task{}, errNotFound
	}
	rows, err := s.changeTasks.QueryContext(ctx, users.String(), ids.String(), titles.String(),
		descriptionSet.String(), descriptions.String(), completed.String(), toggle.String(), s.opts.quotaTasks, s.opts.quotaBytes)
	if err != nil {
		return fmt.Errorf("change tasks: %w", err)
	}
	var userID string
	return readBatch(rows, "change tasks", []any{&userID}, func(row *taskRow) error {
		for _, w := range batch {
			if w.req.id == row.task.ID && w.req.userID == userID {
				t := row.kept()
				t.UserID = userID
				w.res, w.err = t, nil
				return nil
			}
		}
		return fmt.Errorf("change tasks: a returned row matches no request")
	})
}

// arrayLiteral builds a PostgreSQL array's text input, {"a",NULL,"b"}:
// one string parameter for a whole column of a batch.
type arrayLiteral struct{ b []byte }

func (a *arrayLiteral) sep() {
	if len(a.b) == 0 {
		a.b = append(a.b, '{')
	} else {
		a.b = append(a.b, ',')
	}
}

func (a *arrayLiteral) text(s string) {
	a.sep()
	a.b = append(a.b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			a.b = append(a.b, '\\')
		}
		a.b = append(a.b, s[i])
	}
	a.b = append(a.b, '"')
}

func (a *arrayLiteral) nullableText(s *string) { addOrNull(a, s, a.text) }

func (a *arrayLiteral) int(n int64) { a.sep(); a.b = strconv.AppendInt(a.b, n, 10) }

func (a *arrayLiteral) bool(v bool) {
	a.sep()
	if v {
		a.b = append(a.b, 't')
	} else {
		a.b = append(a.b, 'f')
	}
}

func (a *arrayLiteral) nullableBool(v *bool) { addOrNull(a, v, a.bool) }

// addOrNull adds *v with add, or NULL when v is nil.
func addOrNull[T any](a *arrayLiteral, v *T, add func(T)) {
	if v == nil {
		a.null()
		return
	}
	add(*v)
}

func (a *arrayLiteral) null() { a.sep(); a.b = append(a.b, "NULL"...) }

func (a *arrayLiteral) String() string {
	if len(a.b) == 0 {
		return "{}"
	}
	return string(append(a.b, '}'))
}
