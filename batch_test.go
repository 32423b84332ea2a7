package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBatchMixingUsersGivesEachItsOwnRows: while the only connection is
// held, many users' gets, creates and changes (own tasks, other users'
// tasks, the same task twice, equal inputs) queue up and then run as a few
// statements. Each request must get exactly what it would have got alone.
func TestBatchMixingUsersGivesEachItsOwnRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openPool(t)
	const users = 8
	ids := make([]string, users)
	owned := make([][]Task, users)
	for u := range ids {
		ids[u] = newUser(t)
		for i := range 3 {
			desc := fmt.Sprintf("d%d", i)
			task, err := testStore.CreateTask(ctx, ids[u], taskInput{title: fmt.Sprintf("%s-%d", ids[u], i), description: &desc})
			if err != nil {
				t.Fatal(err)
			}
			owned[u] = append(owned[u], task)
		}
	}
	store, release := heldStore(t, db)

	type outcome struct {
		what string
		user int
		task Task
		err  error
	}
	var wg sync.WaitGroup
	outcomes := make(chan outcome, 64*users)
	run := func(what string, u int, op func() (Task, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task, err := op()
			outcomes <- outcome{what, u, task, err}
		}()
	}
	requests := 0
	for u := range users {
		mine, theirs := owned[u], owned[(u+1)%users]
		userID := ids[u]
		for _, task := range mine {
			run("get own", u, func() (Task, error) { return store.GetTask(ctx, userID, task.ID) })
		}
		run("get own again", u, func() (Task, error) { return store.GetTask(ctx, userID, mine[0].ID) })
		run("get theirs", u, func() (Task, error) { return store.GetTask(ctx, userID, theirs[0].ID) })
		for range 2 { // equal inputs
			run("create", u, func() (Task, error) { return store.CreateTask(ctx, userID, taskInput{title: "same " + userID}) })
		}
		run("update own", u, func() (Task, error) {
			return store.UpdateTask(ctx, userID, mine[1].ID, taskUpdate{title: ptr("new " + userID), descriptionSet: true}, nil)
		})
		run("toggle own", u, func() (Task, error) { return store.ToggleCompleted(ctx, userID, mine[1].ID, nil) })
		run("complete own", u, func() (Task, error) { return store.SetCompleted(ctx, userID, mine[2].ID, true, nil) })
		run("update theirs", u, func() (Task, error) {
			return store.UpdateTask(ctx, userID, theirs[2].ID, taskUpdate{title: ptr("stolen")}, nil)
		})
		requests += 11
	}
	waitingInBatchers(t, store, requests)
	release()
	wg.Wait()
	close(outcomes)

	createdIDs := map[int64]bool{}
	for o := range outcomes {
		userID := ids[o.user]
		mine := owned[o.user]
		switch o.what {
		case "get theirs", "update theirs":
			if !errors.Is(o.err, errNotFound) {
				t.Errorf("user %d: %s = %+v, %v; want errNotFound", o.user, o.what, o.task, o.err)
			}
			continue
		}
		if o.err != nil {
			t.Errorf("user %d: %s: %v", o.user, o.what, o.err)
			continue
		}
		if o.task.UserID != userID {
			t.Errorf("user %d: %s returned a task of %q", o.user, o.what, o.task.UserID)
		}
		switch o.what {
		case "get own", "get own again":
			var want *Task
			for i := range mine {
				if mine[i].ID == o.task.ID {
					want = &mine[i]
				}
			}
			// The changes' statement may run first: task 1 may be updated.
			unchanged := want != nil && o.task.Title == want.Title && o.task.Description != nil && *o.task.Description == *want.Description
			updated := want != nil && want.ID == mine[1].ID && o.task.Title == "new "+userID
			if !unchanged && !updated {
				t.Errorf("user %d: %s = %+v; not one of its tasks", o.user, o.what, o.task)
			}
		case "create":
			if o.task.Title != "same "+userID || o.task.Description != nil || o.task.Version != 1 || createdIDs[o.task.ID] {
				t.Errorf("user %d: create = %+v (ids so far %v)", o.user, o.task, createdIDs)
			}
			createdIDs[o.task.ID] = true
		case "update own", "toggle own":
			if o.task.ID != mine[1].ID {
				t.Errorf("user %d: %s changed task %d; want %d", o.user, o.what, o.task.ID, mine[1].ID)
			}
		case "complete own":
			if o.task.ID != mine[2].ID || !o.task.Completed || o.task.Version != 2 {
				t.Errorf("user %d: complete = %+v", o.user, o.task)
			}
		}
	}
	if len(createdIDs) != 2*users {
		t.Errorf("%d distinct tasks created; want %d", len(createdIDs), 2*users)
	}
	// The database holds what each request did to its own user's tasks.
	for u, userID := range ids {
		task, err := testStore.GetTask(ctx, userID, owned[u][1].ID)
		if err != nil || task.Title != "new "+userID || task.Description != nil || !task.Completed || task.Version != 3 {
			t.Errorf("user %d: updated and toggled task = %+v, %v; want the new title, no description, completed, v3", u, task, err)
		}
		task, err = testStore.GetTask(ctx, userID, owned[u][2].ID)
		if err != nil || task.Title != owned[u][2].Title || !task.Completed {
			t.Errorf("user %d: completed task = %+v, %v (another user's PUT must not reach it)", u, task, err)
		}
		if n := countTasks(t, userID); n != 5 {
			t.Errorf("user %d owns %d tasks; want 5", u, n)
		}
	}
	for _, op := range []string{"get", "create", "change"} {
		if statements, shared := batchesOf(store, op); shared == 0 {
			t.Errorf("%s: %d statements, none shared by several requests", op, statements)
		}
	}
}

// TestBatchRefusedWholeIsRerunAlone: ten creates against room for five
// wait together; the statement holding them all breaks the quota, so each
// runs alone, and exactly five are created.
func TestBatchRefusedWholeIsRerunAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, db := openSchemaDatabase(t)
	store, release := heldStore(t, db, func(o *storeOptions) { o.quotaTasks = 5 })
	user := newUser(t)
	const creates = 10
	errs := make(chan error, creates)
	for i := range creates {
		go func() {
			_, err := store.CreateTask(ctx, user, taskInput{title: fmt.Sprint("q", i)})
			errs <- err
		}()
	}
	waitingInBatchers(t, store, creates)
	release()
	created, refused := 0, 0
	for range creates {
		var apiErr *apiError
		switch err := <-errs; {
		case err == nil:
			created++
		case errors.As(err, &apiErr) && apiErr.code == codeQuotaExceeded:
			refused++
		default:
			t.Errorf("create: %v; want success or QUOTA_EXCEEDED", err)
		}
	}
	if created != 5 || refused != 5 {
		t.Errorf("%d created, %d refused; want 5 and 5", created, refused)
	}
	for _, st := range store.BatchStats() {
		if st.op == "create" && (st.fallbacks != 1 || st.sum != creates) {
			t.Errorf("create batches: %+v; want one of %d, rerun once", st, creates)
		}
	}
}

// TestBatchOutageAnswersEachWithTheOutage: a batch whose database is gone
// answers every request it holds with an unavailable error (a 503), not
// with a fault or another request's answer.
func TestBatchOutageAnswersEachWithTheOutage(t *testing.T) {
	t.Parallel()
	proxy, connector := newTCPProxy(t, testDSN)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	store, release := heldStore(t, db)
	ctx := context.Background()
	const gets = 6
	errs := make(chan error, gets)
	for i := range gets {
		go func() {
			_, err := store.GetTask(ctx, fmt.Sprint("outage-user-", i), int64(i+1))
			errs <- err
		}()
	}
	waitingInBatchers(t, store, gets)
	proxy.stop()
	release()
	for range gets {
		if err := <-errs; !isUnavailable(err) || strings.Contains(fmt.Sprint(err), "not found") {
			t.Errorf("get during the outage: %v; want an unavailable error", err)
		}
	}
}

// TestBatchWaiterGivesUpAlone: a request whose deadline passes while it
// waits leaves the batcher with a 503-class error; the one waiting beside
// it still runs.
func TestBatchWaiterGivesUpAlone(t *testing.T) {
	t.Parallel()
	store, release := heldStore(t, openPool(t))
	ctx := context.Background()
	patient := make(chan error, 1)
	go func() {
		_, err := store.GetTask(ctx, "patient-user", 1)
		patient <- err
	}()
	waitingInBatchers(t, store, 1)
	shortCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := store.GetTask(shortCtx, "hasty-user", 1); !errors.Is(err, context.DeadlineExceeded) || !isUnavailable(err) {
		t.Fatalf("get past its deadline = %v; want a deadline error that maps to 503", err)
	}
	if store.gets.withdraw(&waiter[getRequest, Task]{}) || store.gets.waitingCount() != 1 {
		t.Fatalf("after the hasty request gave up, %d wait; want the patient one", store.gets.waitingCount())
	}
	release()
	if err := <-patient; !errors.Is(err, errNotFound) {
		t.Fatalf("the patient get = %v; want errNotFound", err)
	}
}

// TestBatchingOff: with DB_BATCH_MAX=1 a waiting request queues alone, as
// before coalescing, and no batch statement runs.
func TestBatchingOff(t *testing.T) {
	t.Parallel()
	store, release := heldStore(t, openPool(t), func(o *storeOptions) { o.batchMax = 1 })
	got := make(chan error, 1)
	go func() {
		_, err := store.GetTask(context.Background(), "unbatched-user", 1)
		got <- err
	}()
	waitForWaiters(t, ".(*connQueue).enter", 1)
	time.Sleep(10 * time.Millisecond) // other tests' stores wait in enter too
	release()
	if err := <-got; !errors.Is(err, errNotFound) {
		t.Fatalf("get = %v; want errNotFound", err)
	}
	if statements, _ := batchesOf(store, "get"); statements != 0 || store.PoolStats().WaitCount != 1 {
		t.Errorf("%d batch statements, %d waits; want the get to wait once, alone", statements, store.PoolStats().WaitCount)
	}
}

// TestListBatchGivesEachItsOwnList: while the only connection is held,
// lists of many users (filters, limits, offsets, the same user twice, a
// user with no tasks, one list too long by rows and one too long by bytes
// for its first page) queue up and run as shared statements. Each must
// be byte for byte what the same list gives alone.
func TestListBatchGivesEachItsOwnList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const users = 6
	ids := make([]string, users)
	for u := range ids {
		ids[u] = newUser(t)
		for i := range 5 + u {
			desc := fmt.Sprintf("d%d", i)
			if _, err := testStore.CreateTask(ctx, ids[u], taskInput{title: fmt.Sprintf("%s-%d", ids[u], i), description: &desc, completed: i%2 == 0}); err != nil {
				t.Fatal(err)
			}
		}
	}
	manyRows, bigRows := newUser(t), newUser(t)
	for i := range firstPageRows + 4 {
		if _, err := testStore.CreateTask(ctx, manyRows, taskInput{title: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("x", 9000)
	for range 9 { // about 81 KB: more than a page
		if _, err := testStore.CreateTask(ctx, bigRows, taskInput{title: "big", description: &big}); err != nil {
			t.Fatal(err)
		}
	}
	done, notDone, two, one := true, false, int64(2), int64(1)
	type listCase struct {
		userID string
		filter listFilter
	}
	var cases []listCase
	for _, userID := range ids {
		cases = append(cases,
			listCase{userID, listFilter{}},
			listCase{userID, listFilter{}}, // the same list twice in one statement
			listCase{userID, listFilter{completed: &done}},
			listCase{userID, listFilter{completed: &notDone, limit: &two}},
			listCase{userID, listFilter{limit: &two, offset: 1}},
			listCase{userID, listFilter{offset: 3}},
		)
	}
	cases = append(cases,
		listCase{newUser(t), listFilter{}},
		listCase{manyRows, listFilter{}},
		listCase{manyRows, listFilter{limit: &one, offset: firstPageRows}},
		listCase{bigRows, listFilter{}},
	)
	want := make([]string, len(cases))
	for i, c := range cases {
		var err error
		if want[i], err = listThrough(ctx, testStore, c.userID, c.filter); err != nil {
			t.Fatal(err)
		}
	}

	store, release := heldStore(t, openPool(t))
	got := make([]string, len(cases))
	errs := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = listThrough(ctx, store, c.userID, c.filter)
		}()
	}
	waitingInBatchers(t, store, len(cases))
	release()
	wg.Wait()
	for i, c := range cases {
		if errs[i] != nil || got[i] != want[i] {
			t.Errorf("list %d (%+v): %v\n got %.300s\nwant %.300s", i, c.filter, errs[i], got[i], want[i])
		}
	}
	if !strings.Contains(want[len(cases)-1], big) || strings.Count(want[len(cases)-3], `"id":`) != firstPageRows+4 {
		t.Error("the too-long lists are not what the test meant them to be")
	}
	if statements, shared := batchesOf(store, "list"); shared == 0 {
		t.Errorf("list: %d statements, none shared by several requests", statements)
	}
}

// TestBatchStatementsKeepGenericPlans runs each of loadRuns a dozen times
// on one connection over the load test's table, and asks PostgreSQL how it
// planned them: after its five trial custom plans each must settle on the
// generic one, or every execution pays the planner again (see batchsql.go).
func TestBatchStatementsKeepGenericPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := loadSizedDatabase(t)
	store := newStore(t, db, 1) // one connection: the plan cache asked about is the one used
	const executions = 12
	for k := range executions {
		for _, r := range loadRuns(store, k, 0) {
			if err := r.exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows, err := db.QueryContext(ctx, "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	plans := map[string][2]int64{}
	for rows.Next() {
		var query string
		var generic, custom int64
		if err := rows.Scan(&query, &generic, &custom); err != nil {
			t.Fatal(err)
		}
		plans[query] = [2]int64{generic, custom}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range loadRuns(store, 0, 0) {
		p, ok := plans[r.st.query]
		if !ok {
			t.Errorf("%s: not among the connection's prepared statements", r.name)
		} else if p[0]+p[1] != executions || p[1] > 5 {
			t.Errorf("%s: %d generic and %d custom plans in %d executions; want at most 5 custom", r.name, p[0], p[1], executions)
		}
	}
}
