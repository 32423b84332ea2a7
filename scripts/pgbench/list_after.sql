-- A later page of GET /api/tasks: listShape{after: true} in list.go, parameters named (the cursor is the newest task).
\set user random(1, :users)
SELECT id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version FROM tasks
WHERE user_id = :user AND (tasks.created_at, tasks.id) < (:created::timestamptz, :id::bigint)
ORDER BY tasks.created_at DESC, tasks.id DESC
LIMIT :limit;
