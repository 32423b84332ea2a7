-- GET /api/tasks?sort=title:desc: the first page, listShape{order: byTitle} in list.go, parameters named.
\set user random(1, :users)
SELECT id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version FROM tasks
WHERE user_id = :user
ORDER BY lower(tasks.title) DESC, tasks.id DESC
LIMIT :limit OFFSET :offset;
