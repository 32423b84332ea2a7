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
    -- user_id leads the key: every lookup is scoped by user, and the table
    -- can be distributed by user_id (Citus) without a change.
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
-- transaction as the task it created, holding the original 201 body so a
-- retry gets the very same answer. Rows expire after 24 hours.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id     text        NOT NULL,
    key         text        NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    fingerprint bytea       NOT NULL,
    task_id     bigint,
    response    bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Since the third version: the version of the task a key created, for the
-- ETag of a replayed 201 (NULL in rows saved before).
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS task_version bigint;

-- Finds expired keys for the sweep that runs on insert.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx
    ON idempotency_keys (created_at);
