package main

import (
	"context"
	"net/http"
	"os"
	"testing"
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
