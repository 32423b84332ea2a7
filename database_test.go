package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
)

// TestSchemaUpgradesFromTheFifthVersion: a database the previous schema
// made (testdata/schema-v5.sql), holding a key saved with its whole 201
// body (before the third version) and one with a text task_created, is
// brought to this schema at start: task_created becomes a timestamptz,
// the stored body goes with its bytes in the user's usage, and both keys
// still replay the very task they created.
func TestSchemaUpgradesFromTheFifthVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, db := openDatabase(t)
	old, err := os.ReadFile("testdata/schema-v5.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, string(old)); err != nil {
		t.Fatalf("the fifth version's schema: %v", err)
	}
	user := newUser(t)
	var legacyID, textID int64
	for _, step := range []struct {
		query string
		args  []any
		into  *int64
	}{
		{`INSERT INTO tasks (user_id, title) VALUES ($1, 'legacy') RETURNING id`, []any{user}, &legacyID},
		{`INSERT INTO tasks (user_id, title) VALUES ($1, 'text time') RETURNING id`, []any{user}, &textID},
	} {
		if err := db.QueryRowContext(ctx, step.query, step.args...).Scan(step.into); err != nil {
			t.Fatal(err)
		}
	}
	fingerprint := func(title string) []byte { return taskInput{title: title}.fingerprint() }
	if _, err := db.ExecContext(ctx, `INSERT INTO idempotency_keys (user_id, key, fingerprint, task_id, response, created_at)
		SELECT $1, 'legacy', $2, id, '{"a stored 201 body"}', created_at FROM tasks WHERE id = $3`, user, fingerprint("legacy"), legacyID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO idempotency_keys (user_id, key, fingerprint, task_id, task_version, task_created, created_at)
		SELECT $1, 'text', $2, id, 1, created_at::text, created_at FROM tasks WHERE id = $3`, user, fingerprint("text time"), textID); err != nil {
		t.Fatal(err)
	}

	if err := applySchema(ctx, db); err != nil {
		t.Fatalf("the upgrade: %v", err)
	}
	if err := applySchema(ctx, db); err != nil {
		t.Fatalf("the schema applied again: %v", err)
	}
	var createdType string
	db.QueryRowContext(ctx, `SELECT data_type FROM information_schema.columns WHERE table_name = 'idempotency_keys' AND column_name = 'task_created'`).Scan(&createdType)
	if createdType != "timestamp with time zone" {
		t.Errorf("task_created is %q; want a timestamptz", createdType)
	}
	var usage, real int64
	db.QueryRowContext(ctx, `SELECT bytes FROM user_usage WHERE user_id = $1`, user).Scan(&usage)
	db.QueryRowContext(ctx, `SELECT (SELECT sum(octet_length(title)) FROM tasks WHERE user_id = $1)
		+ (SELECT sum(octet_length(key) + 64) FROM idempotency_keys WHERE user_id = $1)`, user).Scan(&real)
	if usage != real {
		t.Errorf("the user's usage is %d bytes after the upgrade; what is stored is %d", usage, real)
	}

	srv := newTestServer(t, testConfig(), newStore(t, db, 0))
	token := mustToken(t, user)
	for key, c := range map[string]struct {
		title string
		id    int64
	}{"legacy": {"legacy", legacyID}, "text": {"text time", textID}} {
		stored := decodeTask(t, srv.request(t, "GET", taskPath(c.id), token, nil))
		res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": c.title}, "Idempotency-Key", key)
		if res.status != http.StatusCreated || res.header.Get("Idempotent-Replayed") != "true" || res.header.Get("ETag") != `"v1"` {
			t.Fatalf("key %s after the upgrade: %s %v", key, res, res.header)
		}
		if replayed := decodeTask(t, res); !sameTask(replayed, stored) {
			t.Errorf("key %s replays %+v; the task it made is %+v", key, replayed, stored)
		}
	}
}

func TestSchemaAppliesConcurrentlyAndIdempotently(t *testing.T) {
	t.Parallel()
	_, db := openDatabase(t)
	ctx := context.Background()
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errs <- applySchema(ctx, db) }()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent applySchema: %v", err)
		}
	}
	if _, err := db.Exec(`INSERT INTO tasks (user_id, title) VALUES ('u', 'kept')`); err != nil {
		t.Fatal(err)
	}
	if err := applySchema(ctx, db); err != nil {
		t.Fatalf("second applySchema: %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM tasks`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after re-applying the schema = %d, %v; want 1", n, err)
	}
	// Each list order has its index and nothing redundant sits beside them.
	var indexes []string
	rows, err := db.Query(`SELECT indexdef FROM pg_indexes WHERE tablename = 'tasks' ORDER BY indexname`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, def)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(indexes, "\n")
	if len(indexes) != 3 || !strings.Contains(all, "(user_id, id)") || !strings.Contains(all, "(user_id, created_at DESC, id DESC)") ||
		!strings.Contains(all, "(user_id, lower((title)::text), id)") {
		t.Errorf("indexes:\n%s\nwant the (user_id, id) key and the two list indexes only", all)
	}
}

func TestSchemaRejectsBadRows(t *testing.T) {
	t.Parallel()
	for _, q := range []string{
		`INSERT INTO tasks (user_id, title) VALUES ('', 'x')`,
		`INSERT INTO tasks (user_id, title) VALUES ('u', '')`,
		`INSERT INTO tasks (user_id, title) VALUES (repeat('u', 256), 'x')`,
		`INSERT INTO tasks (user_id, title) VALUES ('u', repeat('é', 256))`,
		`INSERT INTO tasks (user_id, id, title) VALUES ('u', 1, 'x')`,
	} {
		if _, err := testDB.Exec(q); err == nil {
			t.Errorf("%s succeeded; want the schema to refuse it", q)
		}
	}
}

// TestDatabaseOutage cuts the connection to PostgreSQL: requests that need
// it answer 503 with Retry-After, health stays up, readiness goes down, and
// the server recovers on its own when the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	proxy, store, _ := newProxiedStore(t)
	cfg := testConfig()
	cfg.dbTimeout = 2 * time.Second
	srv := newTestServer(t, cfg, store)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "before the outage"})

	proxy.stop()
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/tasks", nil},
		{"POST", "/api/tasks", map[string]any{"title": "during"}},
		{"GET", taskPath(task.ID), nil},
		{"PUT", taskPath(task.ID), map[string]any{"title": "during"}},
		{"PATCH", taskPath(task.ID) + "/complete", map[string]any{"completed": true}},
		{"DELETE", taskPath(task.ID), nil},
		{"GET", "/readyz", nil},
	} {
		start := time.Now()
		res := srv.request(t, r.method, r.path, token, r.body)
		wantError(t, res, http.StatusServiceUnavailable, codeUnavailable)
		if r.path != "/readyz" && res.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", r.method, r.path)
		}
		if d := time.Since(start); d > cfg.dbTimeout+time.Second {
			t.Errorf("%s %s took %v; want at most the database deadline", r.method, r.path, d)
		}
	}
	if res := srv.request(t, "GET", "/healthz", "", nil); res.status != http.StatusOK {
		t.Errorf("healthz during outage = %s; want 200", res)
	}

	proxy.restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := srv.request(t, "GET", taskPath(task.ID), token, nil)
		if res.status == http.StatusOK {
			if got := decodeTask(t, res); !sameTask(got, task) {
				t.Errorf("after recovery = %+v; want %+v", got, task)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 5 s after the database came back: %s", res)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustCreate(t, srv, token, map[string]any{"title": "after the outage"})
}

// TestPoolQueueIsFirstComeFirstServed holds the pool's only connection and
// queues ten callers one after another: they must get it in that order
// (database/sql alone would pick a random waiter each time). A caller whose
// deadline passes in the queue gets a 503-class error and takes no place.
func TestPoolQueueIsFirstComeFirstServed(t *testing.T) {
	t.Parallel()
	store := newStore(t, nil, 1)
	ctx := context.Background()
	if err := store.queue.enter(ctx); err != nil {
		t.Fatal(err)
	}

	shortCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := store.GetTask(shortCtx, "queue-user", 1)
	if !errors.Is(err, context.DeadlineExceeded) || !isUnavailable(err) {
		t.Fatalf("GetTask with the pool held past its deadline = %v; want a deadline error that maps to 503", err)
	}

	const callers = 10
	admitted := make(chan int, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := store.queue.enter(ctx); err != nil {
				t.Error(err)
				return
			}
			admitted <- i
			store.queue.leave()
		}()
		waitForWaiters(t, ".(*connQueue).enter", i+1)
	}
	store.queue.leave()
	wg.Wait()
	close(admitted)
	next := 0
	for i := range admitted {
		if i != next {
			t.Fatalf("caller %d got the connection when caller %d was first in the queue", i, next)
		}
		next++
	}
	if next != callers {
		t.Fatalf("%d of %d callers were admitted", next, callers)
	}
	// Waits in the queue are what the pool's wait metrics report.
	if stats := store.PoolStats(); stats.WaitCount != callers+1 || stats.WaitDuration <= 0 {
		t.Errorf("PoolStats wait count %d, duration %v; want %d waits and some time", stats.WaitCount, stats.WaitDuration, callers+1)
	}
	// The timed-out caller left no place taken: the one connection serves.
	if _, err := store.GetTask(ctx, "queue-user", 1); !errors.Is(err, errNotFound) {
		t.Fatalf("GetTask after the queue drained = %v; want errNotFound", err)
	}
}

func TestUpgradeFromFirstSchemaKeepsRows(t *testing.T) {
	t.Parallel()
	dsn, db := openDatabase(t)
	if _, err := db.Exec(schemaV1); err != nil {
		t.Fatal(err)
	}
	user := newUser(t)
	for i := 0; i < 50; i++ {
		if _, err := db.Exec(`INSERT INTO tasks (user_id, title, description, completed) VALUES ($1, $2, $3, $4)`, user, fmt.Sprintf("old %d", i), "kept", i%3 == 0); err != nil {
			t.Fatal(err)
		}
	}
	var before string
	if err := db.QueryRow(`SELECT string_agg(id || title || description || completed || created_at, ',' ORDER BY id) FROM tasks`).Scan(&before); err != nil {
		t.Fatal(err)
	}

	base, stop, done, _ := startProgram(t, baseEnv(map[string]string{"DATABASE_URL": dsn}))
	defer func() { stop(); <-done }()
	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, user)
	tasks := decodeTasks(t, srv.request(t, "GET", "/api/tasks", token, nil))
	if len(tasks) != 50 {
		t.Fatalf("after upgrade the user has %d tasks; want 50", len(tasks))
	}
	res := srv.request(t, "GET", taskPath(tasks[0].ID), token, nil)
	if res.status != http.StatusOK || res.header.Get("ETag") != `"v1"` {
		t.Fatalf("old row after upgrade = %s ETag %q; want 200 \"v1\"", res, res.header.Get("ETag"))
	}
	var after string
	if err := db.QueryRow(`SELECT string_agg(id || title || description || completed || created_at, ',' ORDER BY id) FROM tasks`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatal("rows changed across the upgrade")
	}
	if res := srv.request(t, "PUT", taskPath(tasks[0].ID), token, map[string]any{"title": "new"}, "If-Match", `"v1"`); res.status != http.StatusOK {
		t.Fatalf("conditional write on an upgraded row = %s", res)
	}
}

// TestBinaryTimestampsAreWhatPostgreSQLStores reads timestamptz_send's
// bytes, as taskColumns does, prepared (binary results) and unnamed (text
// results, DB_PREPARED_STATEMENTS=false), and checks each against the
// same value as lib/pq reads PostgreSQL's own text, to the microsecond.
func TestBinaryTimestampsAreWhatPostgreSQLStores(t *testing.T) {
	t.Parallel()
	const query = `SELECT timestamptz_send(v), v FROM unnest($1::timestamptz[]) AS v`
	values := pq.Array([]string{
		"2026-01-18 10:00:00.123456+00", "2000-01-01 00:00:00+00", "1999-12-31 23:59:59.999999+00",
		"1970-01-01 00:00:00.000001+00", "2262-04-12 00:00:00+00", "9999-12-31 23:59:59.999999+00",
	})
	dsn := createDatabase(t)
	for _, mode := range []string{"prepared", "unnamed"} {
		db, err := sql.Open("postgres", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var rows *sql.Rows
		if mode == "prepared" {
			stmt, err := db.Prepare(query)
			if err != nil {
				t.Fatal(err)
			}
			defer stmt.Close()
			rows, err = stmt.Query(values)
		} else {
			unnamed, err := sql.Open("postgres", dsn+" binary_parameters=yes")
			if err != nil {
				t.Fatal(err)
			}
			defer unnamed.Close()
			rows, err = unnamed.Query(query, values)
		}
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		n := 0
		for rows.Next() {
			var fromBytes, fromText time.Time
			if err := rows.Scan(pgTimestamp{&fromBytes}, &fromText); err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
			if !fromBytes.Equal(fromText) || fromBytes.Location() != time.UTC {
				t.Errorf("%s: timestamptz_send gave %s; PostgreSQL's text is %s", mode, fromBytes, fromText)
			}
			n++
		}
		if err := rows.Err(); err != nil || n != 6 {
			t.Fatalf("%s: %d rows, %v", mode, n, err)
		}
	}
}

// TestReadEndsAtTheConnectionDeadline: gets and lists run without a
// cancellable context (statement.read), so what ends a read that cannot
// finish is the connection's own deadline (deadlineConn). With the table
// locked by DDL in another transaction, a get and a list must each answer
// 503 at about DB_TIMEOUT, never hang; once the lock is gone, the same
// server answers them again on fresh connections.
func TestReadEndsAtTheConnectionDeadline(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.databaseURL, cfg.dbTimeout = createDatabase(t), time.Second
	schemaDB, err := sql.Open("postgres", cfg.databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	err = applySchema(context.Background(), schemaDB)
	schemaDB.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, cfg, openServerStore(t, cfg))
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "behind a lock"})

	locker, err := sql.Open("postgres", cfg.databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	tx, err := locker.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{taskPath(task.ID), "/api/tasks"} {
		start := time.Now()
		res := srv.request(t, "GET", path, token, nil)
		if took := time.Since(start); res.status != http.StatusServiceUnavailable || took > 5*time.Second {
			t.Errorf("GET %s behind the lock = %s after %s; want a 503 at about DB_TIMEOUT (1s)", path, res, took)
		}
	}
	tx.Rollback()
	for _, path := range []string{taskPath(task.ID), "/api/tasks"} {
		if res := srv.request(t, "GET", path, token, nil); res.status != http.StatusOK {
			t.Errorf("GET %s after the lock = %s; want 200", path, res)
		}
	}
}

// TestClientGoneCancelsQuery: a PUT blocks on a row another transaction
// holds; when its client goes away, the UPDATE must vanish from PostgreSQL
// while the lock is still held (cancelled, not finished), and change nothing.
func TestClientGoneCancelsQuery(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.dbTimeout = time.Minute // so only the client can end the wait
	srv := newTestServer(t, cfg, testStore)
	user := newUser(t)
	token := mustToken(t, user)
	task := mustCreate(t, srv, token, map[string]any{"title": "locked"})

	blocker, err := testDB.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback()
	if _, err := blocker.Exec(`SELECT 1 FROM tasks WHERE user_id = $1 AND id = $2 FOR UPDATE`, user, task.ID); err != nil {
		t.Fatal(err)
	}
	waiting := func() int {
		var n int
		err := testDB.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE tasks SET%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for waiting() != want {
			if time.Now().After(deadline) {
				t.Fatalf("blocked UPDATEs = %d; want %d", waiting(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "PUT", srv.URL+taskPath(task.ID), strings.NewReader(`{"title":"never"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	clientErr := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		clientErr <- err
	}()
	waitFor(1)
	cancel()
	if err := <-clientErr; err == nil {
		t.Fatal("the request finished although its row was locked")
	}
	waitFor(0) // cancelled in PostgreSQL while the lock is still held
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(srv.logs.String(), `"status":499`); {
		if time.Now().After(deadline) {
			t.Fatalf("no 499 logged for the abandoned request:\n%s", srv.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	blocker.Rollback()
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); got.Title != "locked" {
		t.Fatalf("title = %q after a cancelled PUT; want it unchanged", got.Title)
	}
}

// TestConnectionBudgetWarning: at start, one warning line when PostgreSQL
// has fewer free slots than DB_MAX_CONNS; none when it has enough.
func TestConnectionBudgetWarning(t *testing.T) {
	t.Parallel()
	const warning = "fewer free connection slots than DB_MAX_CONNS"
	for conns, want := range map[string]int{"4": 0, "1000": 1} {
		srv := serveProgram(t, baseEnv(map[string]string{"DB_MAX_CONNS": conns}))
		if n := strings.Count(srv.logs.String(), warning); n != want {
			t.Errorf("DB_MAX_CONNS=%s: %d warnings; want %d:\n%s", conns, n, want, srv.logs)
		}
	}
}

// TestLostPreparedStatementIsA503: should the path to PostgreSQL stop
// keeping prepared statements after start (here, DEALLOCATE ALL on the
// store's one connection), a request that meets a lost statement is a
// 503, never a 500, and one log line says what to do.
func TestLostPreparedStatementIsA503(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	db := openPool(t)
	store := newStore(t, db, 1, func(o *storeOptions) { o.logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	ctx := context.Background()
	if _, err := store.GetTask(ctx, "lost-statements", 1); !errors.Is(err, errNotFound) {
		t.Fatalf("get before = %v; want errNotFound", err)
	}
	if _, err := db.ExecContext(ctx, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := store.GetTask(ctx, "lost-statements", 1)
		var apiErr *apiError
		if !errors.As(err, &apiErr) || apiErr.code != codeUnavailable || !isPreparedStatementLost(err) {
			t.Fatalf("get after the statements were lost = %v; want a 503 for a lost prepared statement", err)
		}
	}
	if n := strings.Count(logs.String(), "lost a prepared statement"); n != 1 {
		t.Errorf("%d log lines about the lost statement; want 1:\n%s", n, logs)
	}
}

// TestOpenStoreNamesTheStatementItCannotPrepare: on a database without
// the schema, openStore fails with the first line of the statement.
func TestOpenStoreNamesTheStatementItCannotPrepare(t *testing.T) {
	t.Parallel()
	_, db := openDatabase(t)
	_, err := openStore(context.Background(), db, testStoreOptions())
	if err == nil || !strings.Contains(err.Error(), `prepare "SELECT`) {
		t.Fatalf("openStore without the schema = %v; want the statement it could not prepare", err)
	}
}

// TestWaitGivenUpByTheClient: a request whose client leaves while it waits
// for a connection gets its context's error, not a 503: nobody reads it.
func TestWaitGivenUpByTheClient(t *testing.T) {
	t.Parallel()
	for _, batchMax := range []int{1, 32} {
		store, release := heldStore(t, openPool(t), func(o *storeOptions) { o.batchMax = batchMax })
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := store.GetTask(ctx, "gone-user", 1)
		var apiErr *apiError
		if !errors.Is(err, context.Canceled) || errors.As(err, &apiErr) {
			t.Errorf("DB_BATCH_MAX=%d: a wait given up by its client = %v; want context.Canceled, no apiError", batchMax, err)
		}
		release()
	}
}
