-- The one schema of the service. It is applied at every start, under an
-- advisory lock, so every statement here must be idempotent.

CREATE TABLE IF NOT EXISTS tasks (
    user_id     text        NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 255),
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    title       varchar(255) NOT NULL CHECK (title <> ''),
    description text,
    completed   boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- user_id leads the key: every lookup is scoped by user.
    PRIMARY KEY (user_id, id)
);

-- Serves the list order (newest first) for one user; the primary key
-- serves single-task lookups.
CREATE INDEX IF NOT EXISTS tasks_user_created_idx
    ON tasks (user_id, created_at DESC, id DESC);

-- Since the third version: serves sort=title (case-insensitive A to Z,
-- then id) for one user.
CREATE INDEX IF NOT EXISTS tasks_user_title_idx
    ON tasks (user_id, lower(title), id);

-- Since the second version: a row version for ETags and conditional writes.
-- Existing rows start at 1; adding a column with a constant default does
-- not rewrite the table.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 1;

-- Idempotency-Key: one row per user and key, written in the same
-- transaction as the task it created, with the id, version and creation
-- time of that task. A retry has the same fingerprint, so the same title,
-- description and completed: with these, its 201 is rebuilt as it was,
-- and the key keeps no copy of the user's text. Rows expire after 24 hours.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id      text        NOT NULL,
    key          text        NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    fingerprint  bytea       NOT NULL,
    task_id      bigint,
    task_version bigint,
    task_created timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Since the third version: the task's version and creation time (before
-- it, a key held the whole 201 body, in a column since dropped: see the
-- sixth version below).
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS task_version bigint;
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS task_created timestamptz;

-- Since the sixth version: task_created is a timestamptz (it was text),
-- and no key holds a body. A key saved with a body gets what a replay
-- needs instead: a created task is at version 1, and its created_at is
-- its transaction's now(), which is the key's own created_at. Its body's
-- bytes leave the user's usage (counted from here on without them).
DO $$
BEGIN
    IF (SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()
        AND table_name = 'idempotency_keys' AND column_name = 'task_created') = 'text' THEN
        ALTER TABLE idempotency_keys ALTER COLUMN task_created TYPE timestamptz USING task_created::timestamptz;
    END IF;
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
        AND table_name = 'idempotency_keys' AND column_name = 'response') THEN
        UPDATE idempotency_keys SET task_version = 1, task_created = created_at
        WHERE task_id IS NOT NULL AND task_created IS NULL;
        IF to_regclass('user_usage') IS NOT NULL THEN
            UPDATE user_usage u SET bytes = u.bytes - r.bytes
            FROM (SELECT user_id, sum(octet_length(response)) AS bytes FROM idempotency_keys
                  WHERE response IS NOT NULL GROUP BY user_id) AS r
            WHERE u.user_id = r.user_id;
        END IF;
        ALTER TABLE idempotency_keys DROP COLUMN response;
    END IF;
END $$;

-- Finds expired keys for the sweep that runs on insert.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx
    ON idempotency_keys (created_at);

-- Since the fourth version: per-user quotas. user_usage holds each user's
-- task count and stored bytes, kept by triggers in the same statement as
-- the write, and its row lock makes one user's writes take turns, so the
-- check below cannot be raced. The limits come with each write (see
-- apply_usage); quota_limits held them before the sixth version, written
-- by every instance at start, and is read now only by a write that brings
-- none.
CREATE TABLE IF NOT EXISTS quota_limits (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    max_tasks bigint  NOT NULL,
    max_bytes bigint  NOT NULL
);

DO $$
BEGIN
    IF to_regclass('user_usage') IS NULL THEN
        CREATE TABLE user_usage (
            user_id text   PRIMARY KEY,
            tasks   bigint NOT NULL,
            bytes   bigint NOT NULL
        );
        -- Rows from before the table: counted once, here.
        INSERT INTO user_usage (user_id, tasks, bytes)
        SELECT user_id, sum(n), sum(b) FROM (
            SELECT user_id, 1 AS n, octet_length(title) + coalesce(octet_length(description), 0) AS b FROM tasks
            UNION ALL
            SELECT user_id, 0, octet_length(key) + 64 FROM idempotency_keys
        ) AS stored GROUP BY user_id;
    END IF;
END $$;

-- apply_usage adds a change to a user's usage and refuses it, with
-- SQLSTATE TQ001, when it takes the user over a limit. Only growth is
-- checked: a write that frees space always passes. The limits are the
-- writing instance's own: its statement sets todo.quota_tasks and
-- todo.quota_bytes for its transaction (0: none). A write that sets
-- neither (an instance of an older version during a rolling upgrade, a
-- person with psql) gets quota_limits', or none.
CREATE OR REPLACE FUNCTION apply_usage(p_user text, d_tasks bigint, d_bytes bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    u user_usage;
    lim_tasks bigint := nullif(current_setting('todo.quota_tasks', true), '')::bigint;
    lim_bytes bigint := nullif(current_setting('todo.quota_bytes', true), '')::bigint;
BEGIN
    INSERT INTO user_usage AS x (user_id, tasks, bytes) VALUES (p_user, d_tasks, d_bytes)
    ON CONFLICT (user_id) DO UPDATE SET tasks = x.tasks + d_tasks, bytes = x.bytes + d_bytes
    RETURNING * INTO u;
    IF d_tasks <= 0 AND d_bytes <= 0 THEN
        RETURN;
    END IF;
    IF lim_tasks IS NULL AND lim_bytes IS NULL THEN
        SELECT l.max_tasks, l.max_bytes INTO lim_tasks, lim_bytes FROM quota_limits AS l;
    END IF;
    IF lim_tasks > 0 AND d_tasks > 0 AND u.tasks > lim_tasks THEN
        RAISE EXCEPTION 'quota exceeded: at most % tasks', lim_tasks USING ERRCODE = 'TQ001';
    END IF;
    IF lim_bytes > 0 AND d_bytes > 0 AND u.bytes > lim_bytes THEN
        RAISE EXCEPTION 'quota exceeded: at most % bytes', lim_bytes USING ERRCODE = 'TQ001';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION tasks_usage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM apply_usage(NEW.user_id, 1, octet_length(NEW.title) + coalesce(octet_length(NEW.description), 0));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM apply_usage(OLD.user_id, -1, -(octet_length(OLD.title) + coalesce(octet_length(OLD.description), 0)));
    ELSE -- UPDATE, of the text (see the trigger's WHEN)
        PERFORM apply_usage(NEW.user_id, 0,
            octet_length(NEW.title) + coalesce(octet_length(NEW.description), 0)
            - octet_length(OLD.title) - coalesce(octet_length(OLD.description), 0));
    END IF;
    RETURN NULL;
END $$;

-- A key costs its own bytes and 64 (it is only ever inserted and deleted).
CREATE OR REPLACE FUNCTION idempotency_keys_usage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM apply_usage(coalesce(NEW.user_id, OLD.user_id), 0,
        CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END * (octet_length(coalesce(NEW.key, OLD.key)) + 64));
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER tasks_usage AFTER INSERT OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_usage();
-- Fired only when the stored text changes: completing, toggling or an
-- unchanged PUT costs no trigger call.
CREATE OR REPLACE TRIGGER tasks_usage_update AFTER UPDATE OF title, description ON tasks
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.description IS DISTINCT FROM NEW.description)
    EXECUTE FUNCTION tasks_usage();
CREATE OR REPLACE TRIGGER idempotency_keys_usage AFTER INSERT OR DELETE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION idempotency_keys_usage();
