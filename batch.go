package main

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// Coalescing. When every connection is busy, gets, creates, unconditional
// changes and lists in the default order wait here by kind rather than one
// by one in the store's queue. The connection that frees up next takes every request of
// that kind waiting for it and runs them as one statement over unnest()ed
// arrays: one round trip, one plan and one commit for many requests.
// There is no timer: a request that finds a connection free runs alone at
// once, exactly as without batching, and batches form only from requests
// that would have waited anyway.
//
// Every row stays scoped by its own request's user id inside the SQL, and
// each request gets back only the row that matched its own (user, id) or
// its own input, or, for a list, the rows of its own position in the
// arrays. A request is answered after its statement has committed.
// A statement the database refused (a quota, a deadlock, a bad value) is
// rerun one request at a time, so each gets what it would have got alone;
// an outage answers each with the outage.

// defaultBatchMax is DB_BATCH_MAX: the most requests one statement takes.
const defaultBatchMax = 32

// A waiter is one request in a batcher, with what its kind needs.
type waiter struct {
	userID string
	id     int64           // get and change
	input  taskInput       // create
	change changeFields    // change
	list   *listPage       // list
	since  time.Time       // when it began to wait, for the queue's metrics
	ctx    context.Context // the request's, for its deadline
	done   chan struct{}   // closed when task and err hold its outcome
	task   Task
	err    error
}

// changeFields is what one write of a task (a PUT, a PATCH complete or a
// toggle) sets. A nil title or completed keeps the stored value; see
// changeAlone for the statement each runs alone.
type changeFields struct {
	title          *string
	descriptionSet bool
	description    *string
	completed      *bool
	toggle         bool
}

// batcher holds the waiting requests of one kind.
type batcher struct {
	store *Store
	op    string // get, create or change: the metrics' label
	// distinct: two requests for the same task never share a statement
	// (an UPDATE ... FROM would apply only one of them).
	distinct bool
	run      func(ctx context.Context, batch []*waiter) error
	// alone runs one waiter's own statement.
	alone func(ctx context.Context, w *waiter) (Task, error)

	mu      sync.Mutex
	waiting []*waiter
	leading bool          // a goroutine is waiting for a connection for them
	idle    chan struct{} // wakes a parked leader (startLeader)

	sizes     [len(batchSizeBounds) + 1]atomic.Uint64 // not cumulative
	sizeSum   atomic.Uint64
	fallbacks atomic.Uint64
}

// batchSizeBounds are the upper bounds of the batch-size histogram.
var batchSizeBounds = [...]int{1, 2, 4, 8, 16, 32}

// submit runs w: alone at once when a connection is free, else in the
// next statement of its kind.
func (s *Store) submit(ctx context.Context, b *batcher, w *waiter) (t Task, err error) {
	alone := func() (err error) {
		t, err = b.alone(ctx, w)
		return err
	}
	switch {
	case s.batchMax <= 1 || s.queue == nil:
		err = s.entered(ctx, alone)
	case s.tryEnter():
		err = s.holding(alone)
	default:
		return b.join(ctx, w)
	}
	return t, err
}

// join adds w to the waiting requests and returns its outcome.
func (b *batcher) join(ctx context.Context, w *waiter) (Task, error) {
	w.ctx, w.since, w.done = ctx, time.Now(), make(chan struct{})
	b.mu.Lock()
	b.waiting = append(b.waiting, w)
	if !b.leading {
		b.leading = true
		b.startLeader()
	}
	b.mu.Unlock()
	select {
	case <-w.done:
		return w.task, w.err
	case <-ctx.Done():
	}
	if b.withdraw(w) {
		b.store.waited(w.since)
		return Task{}, waitAbandoned(ctx)
	}
	// Already in a statement: its outcome is on the way, and may be a
	// created row the caller must hear of.
	<-w.done
	return w.task, w.err
}

// startLeader hands the waiting requests to a parked leader, or starts
// one. Leaders park between batches rather than exit, so a batch pays
// neither for a new goroutine nor for the stack it grows in the driver.
// At most one leader per connection, and one waiting, is ever busy.
func (b *batcher) startLeader() {
	select {
	case b.idle <- struct{}{}:
	default:
		go b.leader()
	}
}

// leader leads batches until the store closes.
func (b *batcher) leader() {
	for {
		b.lead()
		select {
		case <-b.idle:
		case <-b.store.closed:
			return
		}
	}
}

// lead waits for a connection on behalf of the kind's waiters, then runs
// those it can take as one statement. Requests that arrive meanwhile join
// the same statement; whoever is left gets a leader of its own.
func (b *batcher) lead() {
	s := b.store
	s.queue <- struct{}{}
	b.mu.Lock()
	batch := b.take()
	b.leading = len(b.waiting) > 0
	if b.leading {
		b.startLeader()
	}
	b.mu.Unlock()
	if len(batch) > 0 {
		for _, w := range batch {
			s.waited(w.since)
		}
		b.execute(batch)
	}
	s.leave()
	for _, w := range batch {
		close(w.done)
	}
}

// take removes up to batchMax waiters, in arrival order, skipping those
// that may not share the statement.
func (b *batcher) take() []*waiter {
	batch := make([]*waiter, 0, min(len(b.waiting), b.store.batchMax))
	rest := b.waiting[:0]
	for _, w := range b.waiting {
		if len(batch) < b.store.batchMax && !(b.distinct && sameTaskIn(batch, w)) {
			batch = append(batch, w)
		} else {
			rest = append(rest, w)
		}
	}
	clear(b.waiting[len(rest):])
	b.waiting = rest
	return batch
}

func sameTaskIn(batch []*waiter, w *waiter) bool {
	for _, other := range batch {
		if other.id == w.id && other.userID == w.userID {
			return true
		}
	}
	return false
}

// withdraw takes w out of the waiting list; false if a statement has it.
func (b *batcher) withdraw(w *waiter) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, other := range b.waiting {
		if other == w {
			b.waiting = append(b.waiting[:i], b.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// execute gives every waiter in batch its outcome.
func (b *batcher) execute(batch []*waiter) {
	s := b.store
	ctx, cancel := batchContext(batch)
	defer cancel()
	b.observe(len(batch))
	var err error
	if len(batch) == 1 {
		batch[0].task, batch[0].err = b.alone(ctx, batch[0])
	} else {
		err = b.run(ctx, batch)
	}
	switch {
	case err == nil:
	case refusedWhole(err) || errors.Is(err, errRerunAlone):
		// Nothing of the statement was written: each request alone gets
		// its own answer (one over quota no longer fails the others).
		b.fallbacks.Add(1)
		for _, w := range batch {
			w.task, w.err = b.alone(ctx, w)
		}
	default:
		for _, w := range batch {
			w.task, w.err = Task{}, err
		}
	}
	for _, w := range batch {
		w.err = s.answer(w.err)
	}
}

// errRerunAlone: a batch's rows did not come as the statement was written
// to give them, so none is answered from it; each request is run alone.
var errRerunAlone = errors.New("batch rows out of order")

// refusedWhole reports whether the database refused the statement, so it
// rolled back whole and may be rerun: an error from the server that is not
// an outage or a lost prepared statement. Anything else (an outage, or a
// fault reading rows that were committed) is every request's answer.
func refusedWhole(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && !isUnavailable(err) && !isPreparedStatementLost(err)
}

// batchContext lasts until the latest of the waiters' deadlines, so no
// request's statement is cut short before its own deadline, and no
// request's cancellation cancels the others'.
func batchContext(batch []*waiter) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, w := range batch {
		d, ok := w.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

func (b *batcher) observe(size int) {
	i := 0
	for i < len(batchSizeBounds) && size > batchSizeBounds[i] {
		i++
	}
	b.sizes[i].Add(1)
	b.sizeSum.Add(uint64(size))
}

// batchStats is one kind's batch-size histogram, for metrics.
type batchStats struct {
	op        string
	buckets   []uint64 // cumulative, one per batchSizeBounds, then +Inf
	sum       uint64
	fallbacks uint64
}

// BatchStats reports the statements run for waiting requests, by kind.
func (s *Store) BatchStats() []batchStats {
	var out []batchStats
	for _, b := range s.batchers() {
		st := batchStats{op: b.op, sum: b.sizeSum.Load(), fallbacks: b.fallbacks.Load()}
		var cumulative uint64
		for i := range b.sizes {
			cumulative += b.sizes[i].Load()
			st.buckets = append(st.buckets, cumulative)
		}
		out = append(out, st)
	}
	return out
}

func (s *Store) batchers() []*batcher { return []*batcher{s.gets, s.creates, s.changes, s.lists} }

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

func (a *arrayLiteral) nullableText(s *string) {
	if s == nil {
		a.null()
		return
	}
	a.text(*s)
}

func (a *arrayLiteral) int(n int64) { a.sep(); a.b = strconv.AppendInt(a.b, n, 10) }

func (a *arrayLiteral) bool(v bool) {
	a.sep()
	if v {
		a.b = append(a.b, 't')
	} else {
		a.b = append(a.b, 'f')
	}
}

func (a *arrayLiteral) nullableBool(v *bool) {
	if v == nil {
		a.null()
		return
	}
	a.bool(*v)
}

func (a *arrayLiteral) null() { a.sep(); a.b = append(a.b, "NULL"...) }

func (a *arrayLiteral) String() string {
	if len(a.b) == 0 {
		return "{}"
	}
	return string(append(a.b, '}'))
}
