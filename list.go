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

// A list statement for each filter, order and page rather than one with
// optional parts: each has a plan of its own on its index, and none binds
// NULL (so pgbench can replay them). Both orders read in either direction
// on one index (a backward scan), with ties by id in the same direction.
// ORDER BY names tasks.created_at: a bare name binds to an output column
// first, which sorts by the wrong thing.

// listOrder is a list's sort key and direction. The zero value is the
// default order, newest first.
type listOrder struct {
	byTitle   bool // case-insensitive title, on tasks_user_title_idx; else created_at
	ascending bool
}

// listShape names one list statement: its filter, its order, and whether
// it reads a first page (LIMIT, OFFSET) or the page after a cursor.
type listShape struct {
	byCompleted bool
	order       listOrder
	after       bool
}

// listShapeCount is how many shapes there are: four flags, one bit each.
const listShapeCount = 16

// shapeAt is the shape of index i, the inverse of index.
func shapeAt(i int) listShape {
	return listShape{byCompleted: i&8 != 0, order: listOrder{byTitle: i&4 != 0, ascending: i&2 != 0}, after: i&1 != 0}
}

// index is the shape's place in Store.listStatements.
func (sh listShape) index() int {
	return bit(sh.byCompleted)<<3 | bit(sh.order.byTitle)<<2 | bit(sh.order.ascending)<<1 | bit(sh.after)
}

func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// key is the order's sort key as ORDER BY and a cursor compare it.
func (o listOrder) key() string {
	if o.byTitle {
		return `lower(tasks.title)`
	}
	return `tasks.created_at`
}

// clause is the order's ORDER BY: ties by id in the same direction.
func (o listOrder) clause() string {
	direction := ` DESC`
	if o.ascending {
		direction = ``
	}
	return fmt.Sprintf("ORDER BY %s%s, tasks.id%s", o.key(), direction, direction)
}

// sql is the shape's statement: $1 the user; with byCompleted, $2 the
// completed flag; then LIMIT and OFFSET, or the cursor (created_at or
// title, and id) and LIMIT.
func (sh listShape) sql() string {
	where, next := `user_id = $1`, 2
	if sh.byCompleted {
		where, next = `user_id = $1 AND completed = $2`, 3
	}
	if !sh.after {
		return fmt.Sprintf("SELECT %s FROM tasks\nWHERE %s\n%s\nLIMIT $%d OFFSET $%d", taskColumns, where, sh.order.clause(), next, next+1)
	}
	keyParam, beyond := fmt.Sprintf(`$%d::timestamptz`, next), `<`
	if sh.order.byTitle {
		keyParam = fmt.Sprintf(`lower($%d::text)`, next)
	}
	if sh.order.ascending {
		beyond = `>`
	}
	cursor := fmt.Sprintf("(%s, tasks.id) %s (%s, $%d::bigint)", sh.order.key(), beyond, keyParam, next+1)
	return fmt.Sprintf("SELECT %s FROM tasks\nWHERE %s AND %s\n%s\nLIMIT $%d", taskColumns, where, cursor, sh.order.clause(), next+2)
}

// The first pages of the two orders that pgbench and make load replay.
var (
	listTasksSQL            = listShape{}.sql()
	listTasksByCompletedSQL = listShape{byCompleted: true}.sql()
	listTasksByTitleSQL     = listShape{order: listOrder{byTitle: true, ascending: true}}.sql()
)

// listFilter narrows, orders and pages a task list; nil means "not given".
type listFilter struct {
	completed *bool
	order     listOrder
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

// newTaskList starts a list of the user's tasks as f says.
func newTaskList(userID string, f listFilter) *TaskList {
	left := noLimit
	if f.limit != nil {
		left = *f.limit
	}
	return &TaskList{userID: userID, filter: f, left: left, pageRows: firstPageRows}
}

// NextPage hands the next page of l's tasks to out and reports whether the
// list is finished. The first page of a list in the default order that
// finds every connection busy waits to share a statement with other lists
// (batch.go); every other page runs alone.
func (s *Store) NextPage(ctx context.Context, l *TaskList, out taskSink) (done bool, err error) {
	if l.left == 0 {
		return true, nil
	}
	p := &listPage{userID: l.userID, filter: l.filter, after: l.after, seen: l.seen, out: out, want: min(l.pageRows, l.left)}
	if l.after == nil && l.filter.order == (listOrder{}) {
		_, err = s.lists.submit(ctx, p)
	} else {
		err = s.entered(ctx, func() error { return s.readPage(ctx, p) })
	}
	if err != nil {
		return false, err
	}
	return l.advance(p), nil
}

// listPage is one page of a list as a statement reads it: what it reads
// (a copy of its list's position), and what it has read. Nothing of it
// reaches the list until advance, so a page can be read again.
type listPage struct {
	userID string
	filter listFilter
	after  *listCursor
	seen   map[int64]struct{} // read only
	out    taskSink
	want   int64 // tasks this page may hand out
	rows   int64 // rows the statement gave
	handed int64
	last   listCursor // the last row taken, handed out or skipped as seen
	moved  bool       // some row was taken: last holds it
	ids    []int64    // handed out, for a title-ordered list's seen
	ended  bool       // the page ended before the statement did: full, or want reached
}

// limit is the LIMIT the page's statement asks for: one row more than it
// may hand out, so that a list that ends exactly here is known to.
func (p *listPage) limit() int64 { return p.want + 1 }

// restart forgets what an earlier reading of the page handed out.
func (p *listPage) restart() {
	p.out.dropPage()
	p.rows, p.handed, p.moved, p.ids, p.ended = 0, 0, false, p.ids[:0], false
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
	p.last.id, p.last.createdAt, p.moved = t.ID, t.CreatedAt, true
	if p.filter.order.byTitle {
		p.last.title = t.Title
	}
	if _, seen := p.seen[t.ID]; seen {
		return
	}
	t.UserID = p.userID
	full := p.out.add(t)
	p.handed++
	if p.filter.order.byTitle {
		p.ids = append(p.ids, t.ID)
	}
	p.ended = full
}

// advance moves the list past page p and reports whether it is finished.
func (l *TaskList) advance(p *listPage) bool {
	l.left -= p.handed
	if p.moved {
		last := p.last
		l.after = &last
	}
	finished := l.left == 0 || (!p.ended && p.rows < p.limit())
	if finished {
		return true
	}
	if l.filter.order.byTitle {
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

// readPage runs page p's own statement.
func (s *Store) readPage(ctx context.Context, p *listPage) error {
	p.restart()
	args := []any{p.userID}
	if p.filter.completed != nil {
		args = append(args, *p.filter.completed)
	}
	shape := listShape{byCompleted: p.filter.completed != nil, order: p.filter.order, after: p.after != nil}
	if shape.after {
		var key any = p.after.createdAt
		if shape.order.byTitle {
			key = p.after.title
		}
		args = append(args, key, p.after.id, p.limit())
	} else {
		args = append(args, p.limit(), p.filter.offset)
	}
	rows, err := s.listStatements[shape.index()].QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	return readBatch(rows, "list tasks", nil, func(row *taskRow) error {
		p.take(&row.task)
		return nil
	})
}

// listTaskBatchSQL is the first page of listTasksSQL and
// listTasksByCompletedSQL for many lists at once: for each position, its
// user's tasks (of the completed flag, where one is given), newest first,
// from OFFSET, at most LIMIT. The
// LATERAL subquery runs once per position in the arrays' order, so each
// list's rows come together and in list order; runLists checks that they
// do rather than trusting it.
var listTaskBatchSQL = `SELECT q.n, t.*
FROM unnest((SELECT $1::text[]), (SELECT $2::boolean[]), (SELECT $3::bigint[]), (SELECT $4::bigint[]))
    WITH ORDINALITY AS q(q_user, q_completed, q_limit, q_offset, n)
CROSS JOIN LATERAL (
    SELECT ` + taskColumns + ` FROM tasks
    WHERE tasks.user_id = q.q_user AND (q.q_completed IS NULL OR tasks.completed = q.q_completed)
    ` + listOrder{}.clause() + `
    LIMIT q.q_limit OFFSET q.q_offset) AS t`

// runLists reads the first page of every list in batch in one statement.
func (s *Store) runLists(ctx context.Context, batch []*waiter[*listPage, struct{}]) error {
	var users, completed, limits, offsets arrayLiteral
	for _, w := range batch {
		p := w.req
		users.text(p.userID)
		completed.nullableBool(p.filter.completed)
		limits.int(p.limit())
		offsets.int(p.filter.offset)
		p.restart()
		w.err = nil
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
		batch[n-1].req.take(t)
		return nil
	})
}

// listedAfter reports whether t comes after previous newest first: older,
// or as old with a lower id (the default listOrder).
func listedAfter(t, previous *Task) bool {
	if c := t.CreatedAt.Compare(previous.CreatedAt); c != 0 {
		return c < 0
	}
	return t.ID < previous.ID
}
