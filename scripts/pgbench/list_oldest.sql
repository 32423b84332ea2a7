-- GET /api/tasks?sort=created:asc: the first page, listShape{order: ascending}.sql() in list.go, parameters named.
\set user random(1, :users)
SELECT id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version FROM tasks
WHERE user_id = :user
ORDER BY tasks.created_at, tasks.id
LIMIT :limit OFFSET :offset;
