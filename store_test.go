package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
)

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

// waitForWaiters waits until n goroutines are blocked inside function.
func waitForWaiters(t *testing.T, function string, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if got := strings.Count(stacks, function+"("); got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines never all waited in %s", n, function)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStoreErrorMapping(t *testing.T) {
	t.Parallel()
	unavailable := []error{
		&pq.Error{Code: "08006"}, &pq.Error{Code: "57P01"}, &pq.Error{Code: "53300"},
		context.DeadlineExceeded, io.ErrUnexpectedEOF, fmt.Errorf("wrapped: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}),
	}
	for _, err := range unavailable {
		if !isUnavailable(err) {
			t.Errorf("isUnavailable(%v) = false; want true", err)
		}
	}
	for _, err := range []error{&pq.Error{Code: "23505"}, errors.New("sql: something else"), errNotFound} {
		if isUnavailable(err) {
			t.Errorf("isUnavailable(%v) = true; want false", err)
		}
	}

	// Anything unexpected is a 500 whose body carries no SQL or driver text.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/tasks", nil)
	writeError(rec, req, fmt.Errorf("list tasks: %w", &pq.Error{Code: "42P01", Message: `relation "tasks" does not exist`}))
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	wantError(t, res, http.StatusInternalServerError, codeInternal)
	if strings.Contains(string(res.body), "relation") || strings.Contains(string(res.body), "pq") {
		t.Errorf("500 body leaks the driver error: %s", res.body)
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

func TestTimestamps(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 1, 18, 10, 0, 0, 123456000, time.UTC), "2026-01-18T10:00:00.123456Z"},
		{time.Date(2026, 1, 18, 10, 0, 0, 0, time.UTC), "2026-01-18T10:00:00.000000Z"},
		{time.Date(2026, 1, 18, 12, 30, 0, 500000000, time.FixedZone("", 9000)), "2026-01-18T10:00:00.500000Z"},
		{time.Date(2024, 2, 29, 23, 59, 59, 999999000, time.UTC), "2024-02-29T23:59:59.999999Z"},
		{time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), "1999-12-31T23:59:59.000000Z"},
	} {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(tt.in.UnixMicro()-postgresEpochMicros))
		var got time.Time
		if err := (pgTimestamp{&got}).Scan(b[:]); err != nil || !got.Equal(tt.in) {
			t.Errorf("Scan(timestamptz_send(%v)) = %v, %v", tt.in, got, err)
		}
		if s := string(appendTimestamp(nil, got)); s != tt.want || s != got.UTC().Format(timeLayout) {
			t.Errorf("appendTimestamp(%v) = %s; want %s", got, s, tt.want)
		}
	}
	var scanned time.Time
	for _, bad := range []any{42, "2026-01-18 10:00:00+00", []byte("2026-01-18 10:00:00+00"), []byte{1, 2, 3}, nil} {
		if err := (pgTimestamp{&scanned}).Scan(bad); err == nil {
			t.Errorf("Scan(%v) succeeded", bad)
		}
	}
	// Years outside 0..9999 fall back to the standard formatter.
	far := time.Date(12026, 1, 2, 3, 4, 5, 6000, time.UTC)
	if got := string(appendTimestamp(nil, far)); got != far.Format(timeLayout) {
		t.Errorf("appendTimestamp(year 12026) = %s", got)
	}
}

func TestExpiredKeysAreSwept(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	stale := newUser(t)
	if _, err := testDB.Exec(`INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at) VALUES ($1, 'old', '\x00', now() - interval '2 days')`, stale); err != nil {
		t.Fatal(err)
	}
	srv.request(t, "POST", "/api/tasks", mustToken(t, newUser(t)), map[string]any{"title": "x"}, "Idempotency-Key", "sweeper")
	var n int
	if err := testDB.QueryRow(`SELECT count(*) FROM idempotency_keys WHERE user_id = $1`, stale).Scan(&n); err != nil || n != 0 {
		t.Fatalf("stale user's expired keys = %d, %v; want swept on another user's insert", n, err)
	}
}

// schemaV1 is the schema as the first release shipped it.
const schemaV1 = `CREATE TABLE IF NOT EXISTS tasks (
    user_id     text        NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 255),
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    title       varchar(255) NOT NULL CHECK (title <> ''),
    description text,
    completed   boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);
CREATE INDEX IF NOT EXISTS tasks_user_created_idx ON tasks (user_id, created_at DESC, id DESC);`

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

// TestPgbenchScriptsAreTheServersSQL keeps scripts/pgbench, which measure
// the database's own ceiling in make load, identical to the statements the
// server prepares.
func TestPgbenchScriptsAreTheServersSQL(t *testing.T) {
	t.Parallel()
	scripts := []struct {
		file   string
		query  string
		params []string // the named variables for $1, $2, ...
	}{
		{"list.sql", listTasksSQL, []string{"user", "limit", "offset"}},
		{"get.sql", getTaskSQL, []string{"user", "id"}},
		{"create.sql", createTaskSQL, []string{"user", "title", "description", "completed"}},
		{"update.sql", updateTaskSQL, []string{"user", "id", "has_condition", "versions", "title", "description_set", "description", "completed"}},
		{"complete.sql", setCompletedSQL, []string{"user", "id", "has_condition", "versions", "completed"}},
		{"toggle.sql", toggleCompletedSQL, []string{"user", "id", "has_condition", "versions"}},
		{"list_title.sql", listTasksByTitleSQL, []string{"user", "limit", "offset"}},
		{"delete.sql", deleteTaskSQL, []string{"user", "id", "has_condition", "versions"}},
		{"list_completed.sql", listTasksByCompletedSQL, []string{"user", "completed", "limit", "offset"}},
		{"get_batch.sql", getTasksSQL, []string{"batch_users", "batch_ids"}},
		{"list_batch.sql", listTaskBatchSQL, []string{"batch_users", "batch_completed", "batch_limits", "batch_offsets"}},
		{"list_oldest.sql", listShape{order: listOrder{ascending: true}}.sql(), []string{"user", "limit", "offset"}},
		{"list_title_desc.sql", listShape{order: listOrder{byTitle: true}}.sql(), []string{"user", "limit", "offset"}},
		{"list_after.sql", listShape{after: true}.sql(), []string{"user", "created", "id", "limit"}},
		{"list_title_after.sql", listShape{order: listOrder{byTitle: true, ascending: true}, after: true}.sql(), []string{"user", "title", "id", "limit"}},
	}
	normalize := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, s := range scripts {
		data, err := os.ReadFile("scripts/pgbench/" + s.file)
		if err != nil {
			t.Fatal(err)
		}
		var sqlLines []string
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, `\`) || strings.HasPrefix(line, "--") {
				continue
			}
			sqlLines = append(sqlLines, line)
		}
		got := strings.TrimSuffix(strings.TrimSpace(strings.Join(sqlLines, "\n")), ";")
		// Longest names first, so :description_set is not read as :description.
		order := make([]int, len(s.params))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(a, b int) bool { return len(s.params[order[a]]) > len(s.params[order[b]]) })
		for _, i := range order {
			got = strings.ReplaceAll(got, ":"+s.params[i]+"::", fmt.Sprintf("$%d::", i+1))
			got = strings.ReplaceAll(got, ":"+s.params[i], fmt.Sprintf("$%d", i+1))
		}
		if normalize(got) != normalize(s.query) {
			t.Errorf("scripts/pgbench/%s is not the server's statement:\n got %s\nwant %s", s.file, normalize(got), normalize(s.query))
		}
	}
}

// TestStatementsUseTheirIndexes: the generic plan of every statement (as
// prepared statements run) reads through its index, and the list order
// comes from the index, never a Sort.
func TestStatementsUseTheirIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := loadSizedDatabase(t)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The plan a prepared statement keeps, whatever its arguments; and no
	// sequential scan, which would hide the index choice.
	for _, set := range []string{"SET enable_seqscan = off", "SET plan_cache_mode = force_generic_plan"} {
		if _, err := conn.ExecContext(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	// Lists must walk their order's index; point statements
	// must find the row by its whole key (which index the planner picks for
	// that depends on statistics: tasks_pkey at scale, see make load).
	statements := []struct {
		name, query, args, index, cond string
	}{
		{"get", getTaskSQL, "('u', 1)", "", "(id = $2)"},
		{"update", updateTaskSQL, "('u', 1, false, '{}', 't', false, NULL, NULL)", "", "(id = $2)"},
		{"complete", setCompletedSQL, "('u', 1, false, '{}', true)", "", "(id = $2)"},
		{"toggle", toggleCompletedSQL, "('u', 1, false, '{}')", "", "(id = $2)"},
		{"delete", deleteTaskSQL, "('u', 1, false, '{}')", "", "(id = $2)"},
		// The batch statements find each position's rows by its own user.
		{"list_batch", listTaskBatchSQL, "('{u,v}', '{NULL,true}', '{100,100}', '{0,0}')", "tasks_user_created_idx", "(user_id = q.q_user)"},
		{"get_batch", getTasksSQL, "('{u,v}', '{1,2}')", "", "(id = q.q_id)"},
		{"change_batch", changeTasksSQL, "('{u,v}', '{1,2}', '{a,NULL}', '{f,f}', '{NULL,NULL}', '{NULL,t}', '{f,f}')", "", "(id = q.q_id)"},
	}
	// Every list shape (filter, key, direction, first or later page) on
	// its key's index; a later page starts at its cursor in the index.
	for _, shape := range listShapes() {
		args, index, cond := "('u'", "tasks_user_created_idx", "(user_id = $1)"
		if shape.byCompleted {
			args += ", true"
		}
		key := "'2026-01-01'"
		if shape.order.byTitle {
			index, key = "tasks_user_title_idx", "'t'"
		}
		if shape.after {
			args, cond = args+", "+key+", 1, 100)", "ROW("
		} else {
			args += ", 100, 0)"
		}
		statements = append(statements, struct{ name, query, args, index, cond string }{
			fmt.Sprintf("list_%+v", shape), shape.sql(), args, index, cond})
	}
	for _, s := range statements {
		name := "plan_" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, s.name) + "_" + randomHex(3)
		if _, err := conn.ExecContext(ctx, "PREPARE "+name+" AS "+s.query); err != nil {
			t.Fatalf("%s: prepare: %v", s.name, err)
		}
		var plan string
		if err := conn.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) EXECUTE "+name+s.args).Scan(&plan); err != nil {
			t.Fatalf("%s: explain: %v", s.name, err)
		}
		conn.ExecContext(ctx, "DEALLOCATE "+name)
		var nodes []map[string]any
		var walk func(node map[string]any)
		walk = func(node map[string]any) {
			nodes = append(nodes, node)
			children, _ := node["Plans"].([]any)
			for _, c := range children {
				walk(c.(map[string]any))
			}
		}
		var root []struct {
			Plan map[string]any `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(plan), &root); err != nil || len(root) != 1 {
			t.Fatalf("%s: plan %s: %v", s.name, plan, err)
		}
		walk(root[0].Plan)
		usesIndex := false
		for _, n := range nodes {
			switch n["Node Type"] {
			case "Sort", "Incremental Sort", "Seq Scan":
				t.Errorf("%s: plan has a %v node:\n%s", s.name, n["Node Type"], plan)
			case "Index Scan", "Index Only Scan":
				cond, _ := n["Index Cond"].(string)
				if (s.index == "" || n["Index Name"] == s.index) && (strings.Contains(cond, "(user_id = $1)") || strings.Contains(cond, "(user_id = q.q_user)")) && strings.Contains(cond, s.cond) {
					usesIndex = true
				}
			}
		}
		if !usesIndex {
			t.Errorf("%s: plan does not look the rows up by %s %s:\n%s", s.name, s.index, s.cond, plan)
		}
	}
}

// TestQuotas: a user's task count and stored bytes are capped; going over
// is a 409 QUOTA_EXCEEDED that writes nothing, concurrent creates cannot
// race past the cap, freeing space makes room again, and idempotency keys
// count toward the bytes.
func TestQuotas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, db := openDatabase(t)
	db.SetMaxOpenConns(8)
	if err := applySchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	const maxTasks, maxBytes = 5, 400
	if err := setQuotaLimits(ctx, db, maxTasks, maxBytes); err != nil {
		t.Fatal(err)
	}
	store := newStore(t, db, 0)
	srv := newTestServer(t, testConfig(), store)
	user := newUser(t)
	token := mustToken(t, user)
	count := func() (n int) {
		t.Helper()
		if err := db.QueryRow("SELECT count(*) FROM tasks WHERE user_id = $1", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Ten at once against room for five: exactly five are created.
	got := countStatuses(t, srv, 10, func(int) (string, string, string, any) {
		return "POST", "/api/tasks", token, map[string]any{"title": "q"}
	})
	if got[http.StatusCreated] != maxTasks || got[http.StatusConflict] != 10-maxTasks || count() != maxTasks {
		t.Fatalf("10 concurrent creates with room for %d: %v, %d stored", maxTasks, got, count())
	}
	res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "one too many"})
	wantError(t, res, http.StatusConflict, codeQuotaExceeded)
	// Another user is not affected.
	mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "someone else"})

	// Bytes: a PUT that would go over changes nothing.
	list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", token, nil))
	big := strings.Repeat("b", maxBytes)
	wantError(t, srv.request(t, "PUT", taskPath(list[0].ID), token, map[string]any{"title": "q", "description": big}), http.StatusConflict, codeQuotaExceeded)
	if task := decodeTask(t, srv.request(t, "GET", taskPath(list[0].ID), token, nil)); task.Description != nil {
		t.Errorf("a refused PUT stored %q", *task.Description)
	}
	// Deleting frees a place; an idempotent create counts its key's bytes.
	if res := srv.request(t, "DELETE", taskPath(list[0].ID), token, nil); res.status != http.StatusNoContent {
		t.Fatalf("delete = %s", res)
	}
	var before int64
	db.QueryRow("SELECT bytes FROM user_usage WHERE user_id = $1", user).Scan(&before)
	if res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "keyed"}, "Idempotency-Key", "k"); res.status != http.StatusCreated {
		t.Fatalf("keyed create in the freed place = %s", res)
	}
	var after int64
	db.QueryRow("SELECT bytes FROM user_usage WHERE user_id = $1", user).Scan(&after)
	if want := before + int64(len("keyed")) + int64(len("k")) + 64; after != want {
		t.Errorf("usage after a keyed create = %d bytes; want %d (task and key)", after, want)
	}
	var columns []string
	rows, _ := db.Query("SELECT column_name FROM information_schema.columns WHERE table_name = 'idempotency_keys' ORDER BY column_name")
	for rows.Next() {
		var c string
		rows.Scan(&c)
		columns = append(columns, c)
	}
	rows.Close()
	if got := strings.Join(columns, " "); got != "created_at fingerprint key task_created task_id task_version user_id" {
		t.Errorf("idempotency_keys has the columns %s; a key keeps no copy of the answer", got)
	}
	// Over the count again, a keyed create is refused and claims no key.
	wantError(t, srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "no room"}, "Idempotency-Key", "k2"), http.StatusConflict, codeQuotaExceeded)
	var keys int
	db.QueryRow("SELECT count(*) FROM idempotency_keys WHERE user_id = $1", user).Scan(&keys)
	if keys != 1 || count() != maxTasks {
		t.Errorf("after a refused keyed create: %d keys, %d tasks; want 1 and %d", keys, count(), maxTasks)
	}
	// The usage always equals what is stored.
	var usageTasks, usageBytes, realBytes int64
	db.QueryRow("SELECT tasks, bytes FROM user_usage WHERE user_id = $1", user).Scan(&usageTasks, &usageBytes)
	db.QueryRow(`SELECT coalesce(sum(octet_length(title) + coalesce(octet_length(description), 0)), 0)
		+ (SELECT coalesce(sum(octet_length(key) + 64), 0) FROM idempotency_keys WHERE user_id = $1)
		FROM tasks WHERE user_id = $1`, user).Scan(&realBytes)
	if usageTasks != int64(count()) || usageBytes != realBytes {
		t.Errorf("user_usage says %d tasks, %d bytes; stored are %d tasks, %d bytes", usageTasks, usageBytes, count(), realBytes)
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

// openServerStore opens the pool as the server does (openDB: its dialer
// and its deadlines, DB_TIMEOUT from cfg) on a database that has the
// schema, and makes a store on it; both close with the test.
func openServerStore(t *testing.T, cfg config) *Store {
	t.Helper()
	ctx := context.Background()
	cfg.dbWait, cfg.dbMaxConns, cfg.dbPreparedStatements = 5*time.Second, 2, true
	db, _, err := openDB(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newStore(t, db, 0)
}
