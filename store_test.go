package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"
)

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
		{"create.sql", createTaskSQL, []string{"user", "title", "description", "completed", "quota_tasks", "quota_bytes"}},
		{"update.sql", updateTaskSQL, []string{"user", "id", "has_condition", "versions", "title", "description_set", "description", "completed", "quota_tasks", "quota_bytes"}},
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
		{"update", updateTaskSQL, "('u', 1, false, '{}', 't', false, NULL, NULL, 0, 0)", "", "(id = $2)"},
		{"complete", setCompletedSQL, "('u', 1, false, '{}', true)", "", "(id = $2)"},
		{"toggle", toggleCompletedSQL, "('u', 1, false, '{}')", "", "(id = $2)"},
		{"delete", deleteTaskSQL, "('u', 1, false, '{}')", "", "(id = $2)"},
		// The batch statements find each position's rows by its own user.
		{"list_batch", listTaskBatchSQL, "('{u,v}', '{NULL,true}', '{100,100}', '{0,0}')", "tasks_user_created_idx", "(user_id = q.q_user)"},
		{"get_batch", getTasksSQL, "('{u,v}', '{1,2}')", "", "(id = q.q_id)"},
		{"change_batch", changeTasksSQL, "('{u,v}', '{1,2}', '{a,NULL}', '{f,f}', '{NULL,NULL}', '{NULL,t}', '{f,f}', 0, 0)", "", "(id = q.q_id)"},
	}
	// Every list shape (filter, key, direction, first or later page) on
	// its key's index; a later page starts at its cursor in the index.
	for i := range listShapeCount {
		shape := shapeAt(i)
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
	_, db := openSchemaDatabase(t)
	db.SetMaxOpenConns(8)
	const maxTasks, maxBytes = 5, 400
	store := newStore(t, db, 0, func(o *storeOptions) { o.quotaTasks, o.quotaBytes = maxTasks, maxBytes })
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

// TestQuotasAreEachInstancesOwn: two instances of the program on one
// database, the second a canary started with a lower QUOTA_TASKS. Each
// enforces the limit it was started with: the canary lowers nobody
// else's, and once it is gone nothing of its setting remains.
func TestQuotasAreEachInstancesOwn(t *testing.T) {
	t.Parallel()
	dsn := createDatabase(t)
	fleet := serveProgram(t, baseEnv(map[string]string{"DATABASE_URL": dsn, "QUOTA_TASKS": "50", "RATE_LIMIT_RPS": "0"}))
	canaryEnv := baseEnv(map[string]string{"DATABASE_URL": dsn, "QUOTA_TASKS": "5", "RATE_LIMIT_RPS": "0"})
	canaryBase, stopCanary, canaryDone, _ := startProgram(t, canaryEnv)
	canary := &testServer{Server: &httptest.Server{URL: canaryBase}}
	token := mustToken(t, newUser(t))
	for i := range 8 {
		if res := fleet.request(t, "POST", "/api/tasks", token, map[string]any{"title": fmt.Sprint("fleet ", i)}); res.status != http.StatusCreated {
			t.Fatalf("create %d through the instance started with QUOTA_TASKS=50 = %s", i+1, res)
		}
	}
	wantError(t, canary.request(t, "POST", "/api/tasks", token, map[string]any{"title": "canary"}), http.StatusConflict, codeQuotaExceeded)
	stopCanary()
	if err := <-canaryDone; err != nil {
		t.Fatal(err)
	}
	if res := fleet.request(t, "POST", "/api/tasks", token, map[string]any{"title": "after the canary"}); res.status != http.StatusCreated {
		t.Errorf("create after the canary stopped = %s", res)
	}
}
