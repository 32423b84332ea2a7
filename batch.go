package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// Coalescing. When every connection is busy, gets, creates, unconditional
// changes and the first pages of lists in the default order wait here by
// kind rather than one by one in the connection queue (queue.go). The
// connection that frees up next takes every request of that kind waiting
// for it and runs them as one statement over unnest()ed arrays
// (batchsql.go): one round trip, one plan and one commit for many.
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

// A waiter is one request in a batcher: what it asks, and its outcome.
type waiter[Req, Res any] struct {
	req   Req
	since time.Time       // when it began to wait, for the queue's metrics
	ctx   context.Context // the request's, for its deadline
	done  chan struct{}   // closed when res and err hold its outcome
	res   Res
	err   error
}

// changeFields is what one write of a task (a PUT or PATCH, a PATCH
// complete or a toggle) sets. A nil title or completed keeps the stored
// value; see changeAlone for the statement each runs alone.
type changeFields struct {
	title          *string
	descriptionSet bool
	description    *string
	completed      *bool
	toggle         bool
}

// batcher holds the waiting requests of one kind, Req, each answered with
// a Res, and runs them as one statement when a connection frees up.
type batcher[Req, Res any] struct {
	op     string // get, create, change or list: the metrics' label
	queue  *connQueue
	max    int             // DB_BATCH_MAX
	closed <-chan struct{} // closed with the store: parked leaders exit
	// conflict: two requests that may not share a statement (two changes
	// of one task: an UPDATE ... FROM would apply only one of them).
	conflict func(a, b Req) bool
	// run answers every waiter of a batch from one statement.
	run func(ctx context.Context, batch []*waiter[Req, Res]) error
	// alone runs one request's own statement.
	alone func(ctx context.Context, req Req) (Res, error)
	// answer is what a caller hears of an error (Store.answer).
	answer func(error) error

	mu      sync.Mutex
	waiting []*waiter[Req, Res]
	leading bool          // a goroutine is waiting for a connection for them
	idle    chan struct{} // wakes a parked leader (startLeader)

	sizes     [len(batchSizeBounds) + 1]atomic.Uint64 // not cumulative
	sizeSum   atomic.Uint64
	fallbacks atomic.Uint64
}

// batchSizeBounds are the upper bounds of the batch-size histogram.
var batchSizeBounds = [...]int{1, 2, 4, 8, 16, 32}

// submit runs req: alone at once when a connection is free (or batching
// is off: then after waiting its turn), else in the next statement of its
// kind.
func (b *batcher[Req, Res]) submit(ctx context.Context, req Req) (Res, error) {
	if b.max > 1 && b.queue.bounded() {
		if !b.queue.tryEnter() {
			return b.join(ctx, req)
		}
	} else if err := b.queue.enter(ctx); err != nil {
		var none Res
		return none, err
	}
	defer b.queue.leave()
	res, err := b.alone(ctx, req)
	return res, b.answer(err)
}

// join adds req to the waiting requests and returns its outcome.
func (b *batcher[Req, Res]) join(ctx context.Context, req Req) (Res, error) {
	w := &waiter[Req, Res]{req: req, ctx: ctx, since: time.Now(), done: make(chan struct{})}
	b.mu.Lock()
	b.waiting = append(b.waiting, w)
	if !b.leading {
		b.leading = true
		b.startLeader()
	}
	b.mu.Unlock()
	select {
	case <-w.done:
		return w.res, w.err
	case <-ctx.Done():
	}
	if b.withdraw(w) {
		b.queue.waited(w.since)
		var none Res
		return none, waitAbandoned(ctx)
	}
	// Already in a statement: its outcome is on the way, and may be a
	// created row the caller must hear of.
	<-w.done
	return w.res, w.err
}

// startLeader hands the waiting requests to a parked leader, or starts
// one. Leaders park between batches rather than exit, so a batch pays
// neither for a new goroutine nor for the stack it grows in the driver.
// At most one leader per connection, and one waiting, is ever busy.
func (b *batcher[Req, Res]) startLeader() {
	select {
	case b.idle <- struct{}{}:
	default:
		go b.leader()
	}
}

// leader leads batches until the store closes.
func (b *batcher[Req, Res]) leader() {
	for {
		b.lead()
		select {
		case <-b.idle:
		case <-b.closed:
			return
		}
	}
}

// lead waits for a connection on behalf of the kind's waiters, then runs
// those it can take as one statement. Requests that arrive meanwhile join
// the same statement; whoever is left gets a leader of its own.
func (b *batcher[Req, Res]) lead() {
	b.queue.enterAlways()
	b.mu.Lock()
	batch := b.take()
	b.leading = len(b.waiting) > 0
	if b.leading {
		b.startLeader()
	}
	b.mu.Unlock()
	if len(batch) > 0 {
		for _, w := range batch {
			b.queue.waited(w.since)
		}
		b.execute(batch)
	}
	b.queue.leave()
	for _, w := range batch {
		close(w.done)
	}
}

// take removes up to max waiters, in arrival order, skipping those that
// conflict with one already taken.
func (b *batcher[Req, Res]) take() []*waiter[Req, Res] {
	batch := make([]*waiter[Req, Res], 0, min(len(b.waiting), b.max))
	rest := b.waiting[:0]
	for _, w := range b.waiting {
		if len(batch) < b.max && !b.conflictsWith(batch, w) {
			batch = append(batch, w)
		} else {
			rest = append(rest, w)
		}
	}
	clear(b.waiting[len(rest):])
	b.waiting = rest
	return batch
}

func (b *batcher[Req, Res]) conflictsWith(batch []*waiter[Req, Res], w *waiter[Req, Res]) bool {
	if b.conflict == nil {
		return false
	}
	for _, other := range batch {
		if b.conflict(other.req, w.req) {
			return true
		}
	}
	return false
}

// withdraw takes w out of the waiting list; false if a statement has it.
func (b *batcher[Req, Res]) withdraw(w *waiter[Req, Res]) bool {
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

// waitingCount is how many requests wait now.
func (b *batcher[Req, Res]) waitingCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting)
}

// execute gives every waiter in batch its outcome.
func (b *batcher[Req, Res]) execute(batch []*waiter[Req, Res]) {
	ctx, cancel := batchContext(batch)
	defer cancel()
	b.observe(len(batch))
	var err error
	if len(batch) == 1 {
		batch[0].res, batch[0].err = b.alone(ctx, batch[0].req)
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
			w.res, w.err = b.alone(ctx, w.req)
		}
	default:
		var none Res
		for _, w := range batch {
			w.res, w.err = none, err
		}
	}
	for _, w := range batch {
		w.err = b.answer(w.err)
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
func batchContext[Req, Res any](batch []*waiter[Req, Res]) (context.Context, context.CancelFunc) {
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

func (b *batcher[Req, Res]) observe(size int) {
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

// stats is the kind's batch-size histogram.
func (b *batcher[Req, Res]) stats() batchStats {
	st := batchStats{op: b.op, sum: b.sizeSum.Load(), fallbacks: b.fallbacks.Load()}
	var cumulative uint64
	for i := range b.sizes {
		cumulative += b.sizes[i].Load()
		st.buckets = append(st.buckets, cumulative)
	}
	return st
}

// kind is what the store and metrics see of a batcher of any kind.
type kind interface {
	stats() batchStats
	waitingCount() int
}
