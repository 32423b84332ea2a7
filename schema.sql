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
-- serves single-task lookups, so no other index is needed.
CREATE INDEX IF NOT EXISTS tasks_user_created_idx
    ON tasks (user_id, created_at DESC, id DESC);
