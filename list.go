package main

import (
	"context"
	"fmt"
	"time"
)

// Task lists. A list is read in pages, each page its own short statement
// that holds a connection only while it runs: the handler writes a page to
// its client with no connection checked out, then asks for the next one,
// which starts after the last task handed out (a keyset on the sort key,
// never an OFFSET). So a client that reads slowly, or not at all, holds no
// connection, and a long list is never cut by DB_TIMEOUT, which bounds
// each page's database work alone.
//
// What a list guarantees while others write (docs/API.md): a task that
// exists, unchanged, for the whole request is listed exactly once; no task
// is listed twice; a task created, changed or deleted meanwhile may or may
// not be listed, and is listed as its page read it.

// A list statement for each filter and order rather than one with optional
// parts: each has a plan of its own on its index, and none binds NULL (so
// pgbench can replay them). ORDER BY names tasks.created_at: a bare name
// binds to an output column first, which sorts by the wrong thing.
const (
	orderNewestFirst = `ORDER BY tasks.created_at DESC, tasks.id DESC`
	// orderByTitle is case-insensitive A to Z, then id, on tasks_user_title_idx.
	orderByTitle = `ORDER BY lower(tasks.title), tasks.id`
	// The keysets: the rows after a cursor, in each order.
	afterNewestFirst = `(tasks.created_at, tasks.id) < ($%d::timestamptz, $%d::bigint)`
	afterByTitle     = `(lower(tasks.title), tasks.id) > (lower($%d::text), $%d::bigint)`
)

// listSQL is a list's first page: $1 the user; with byCompleted, $2 the
// completed flag; then LIMIT and OFFSET.
func listSQL(byCompleted bool, order string) string {
	where, next := listWhere(byCompleted)
	return fmt.Sprintf("SELECT %s FROM tasks\nWHERE %s\n%s\nLIMIT $%d OFFSET $%d", taskColumns, where, order, next, next+1)
}

// listAfterSQL is every later page: the user and filter as in listSQL,
// then the cursor (created_at or title, and id), then LIMIT.
func listAfterSQL(byCompleted bool, order, after string) string {
	where, next := listWhere(byCompleted)
	return fmt.Sprintf("SELECT %s FROM tasks\nWHERE %s AND %s\n%s\nLIMIT $%d",
		taskColumns, where, fmt.Sprintf(after, next, next+1), order, next+2)
}

func listWhere(byCompleted bool) (where string, next int) {
	if byCompleted {
		return `user_id = $1 AND completed = $2`, 3
	}
	return `user_id = $1`, 2
}

var (
	listTasksSQL                   = listSQL(false, orderNewestFirst)
	listTasksByCompletedSQL        = listSQL(true, orderNewestFirst)
	listTasksByTitleSQL            = listSQL(false, orderByTitle)
	listTasksByCompletedByTitleSQL = listSQL(true, orderByTitle)

	listTasksAfterSQL                   = listAfterSQL(false, orderNewestFirst, afterNewestFirst)
	listTasksByCompletedAfterSQL        = listAfterSQL(true, orderNewestFirst, afterNewestFirst)
	listTasksByTitleAfterSQL            = listAfterSQL(false, orderByTitle, afterByTitle)
	listTasksByCompletedByTitleAfterSQL = listAfterSQL(true, orderByTitle, afterByTitle)
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

// Rows a page asks for: the first page enough for most whole lists, later
// pages as many as the sink took last time when it filled up, else twice
// as many, up to maxPageRows.
const (
	firstPageRows = 100
	maxPageRows   = 1000
)

// taskSink takes a list's tasks, in list order, as a page is read.
type taskSink interface {
	// add takes the next task; the *Task is reused, so add must not keep
	// it. It reports that the page is full: the page ends with this task.
	add(t *Task) (full bool)
	// dropPage forgets every task the current page added, before the page
	// is read again.
	dropPage()
}

// TaskList is one request's list, read page by page with NextPage.
type TaskList struct {
	store    *Store
	userID   string
	filter   listFilter
	after    *listCursor // nil: the first page
	left     int64       // tasks still to hand out (the request's limit)
	pageRows int64
	// seen holds the ids handed out of a title-ordered list: a task
	// renamed past the cursor is found again, and must not be listed twice.
	seen map[int64]struct{}
}

// listCursor is the sort key of the last task handed out.
type listCursor struct {
	id        int64
	createdAt time.Time
	title     string
}

// List starts reading the user's tasks as f says.
func (s *Store) List(userID string, f listFilter) *TaskList {
	left := noLimit
	if f.limit != nil {
		left = *f.limit
	}
	return &TaskList{store: s, userID: userID, filter: f, left: left, pageRows: firstPageRows}
}

// NextPage hands the next page's tasks to out and reports whether the list
// is finished. The first page of a list in the default order that finds
// every connection busy waits to share a statement with other lists
// (batch.go); every other page runs alone.
func (l *TaskList) NextPage(ctx context.Context, out taskSink) (done bool, err error) {
	if l.left == 0 {
		return true, nil
	}
	p := l.newPage(out)
	if l.after == nil && !l.filter.byTitle {
		_, err = l.store.submit(ctx, l.store.lists, &waiter{userID: l.userID, list: p})
	} else {
		err = l.store.entered(ctx, func() error { return p.readAlone(ctx) })
	}
	if err != nil {
		return false, err
	}
	return p.commit(), nil
}

// listPage is one page of a list as a statement reads it. Nothing of it
// reaches its TaskList until commit, so a page can be read again.
type listPage struct {
	list   *TaskList
	out    taskSink
	want   int64 // tasks this page may hand out
	rows   int64 // rows the statement gave
	handed int64
	last   *listCursor // the last row taken, handed out or skipped as seen
	ids    []int64     // handed out, for a title-ordered list's seen
	ended  bool        // the page ended before the statement did: full, or want reached
}

func (l *TaskList) newPage(out taskSink) *listPage {
	return &listPage{list: l, out: out, want: min(l.pageRows, l.left)}
}

// limit is the LIMIT the page's statement asks for: one row more than it
// may hand out, so that a list that ends exactly here is known to.
func (p *listPage) limit() int64 { return p.want + 1 }

// restart forgets what an earlier reading of the page handed out.
func (p *listPage) restart() {
	p.out.dropPage()
	p.rows, p.handed, p.last, p.ids, p.ended = 0, 0, nil, p.ids[:0], false
}

// take is one row of the page's statement.
func (p *listPage) take(t *Task) {
	p.rows++
	if p.ended {
		return
	}
	if p.handed == p.want {
		p.ended = true // the extra row: there is more
		return
	}
	p.last = &listCursor{id: t.ID, createdAt: t.CreatedAt}
	if p.list.filter.byTitle {
		p.last.title = t.Title
	}
	if _, seen := p.list.seen[t.ID]; seen {
		return
	}
	t.UserID = p.list.userID
	full := p.out.add(t)
	p.handed++
	if p.list.filter.byTitle {
		p.ids = append(p.ids, t.ID)
	}
	p.ended = full
}

// commit moves the list past the page and reports whether it is finished.
func (p *listPage) commit() bool {
	l := p.list
	l.left -= p.handed
	if p.last != nil {
		l.after = p.last
	}
	finished := l.left == 0 || (!p.ended && p.rows < p.limit())
	if finished {
		return true
	}
	if l.filter.byTitle {
		if l.seen == nil {
			l.seen = make(map[int64]struct{}, len(p.ids))
		}
		for _, id := range p.ids {
			l.seen[id] = struct{}{}
		}
	}
	if p.ended && p.handed < p.want { // the sink filled up first
		l.pageRows = max(p.handed, 1)
	} else {
		l.pageRows = min(l.pageRows*2, maxPageRows)
	}
	return false
}

// readAlone runs the page's own statement.
func (p *listPage) readAlone(ctx context.Context) error {
	p.restart()
	l, s := p.list, p.list.store
	args := []any{l.userID}
	if l.filter.completed != nil {
		args = append(args, *l.filter.completed)
	}
	var st *statement
	switch byDone := l.filter.completed != nil; {
	case l.after == nil:
		st = pick(byDone, l.filter.byTitle, s.listTasks, s.listByCompleted, s.listByTitle, s.listByDoneTitle)
		args = append(args, p.limit(), l.filter.offset)
	default:
		st = pick(byDone, l.filter.byTitle, s.listAfter, s.listByCompletedAfter, s.listByTitleAfter, s.listByDoneTitleAfter)
		var key any = l.after.createdAt
		if l.filter.byTitle {
			key = l.after.title
		}
		args = append(args, key, l.after.id, p.limit())
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	return readBatch(rows, "list tasks", nil, func(row *taskRow) error {
		p.take(&row.task)
		return nil
	})
}

// pick is the statement for a filter (byDone) and an order (byTitle).
func pick(byDone, byTitle bool, all, done, title, doneTitle *statement) *statement {
	switch {
	case byDone && byTitle:
		return doneTitle
	case byTitle:
		return title
	case byDone:
		return done
	}
	return all
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

// runLists reads the first page of every list in batch in one statement.
func (s *Store) runLists(ctx context.Context, batch []*waiter) error {
	var users, completed, limits, offsets arrayLiteral
	for _, w := range batch {
		p := w.list
		users.text(w.userID)
		completed.nullableBool(p.list.filter.completed)
		limits.int(p.limit())
		offsets.int(p.list.filter.offset)
		p.restart()
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
		batch[n-1].list.take(t)
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
