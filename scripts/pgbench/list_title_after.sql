-- A later page of GET /api/tasks?sort=title: listShape{order: byTitle, ascending, after: true} in list.go, parameters named.
\set user random(1, :users)
SELECT id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version FROM tasks
WHERE user_id = :user AND (lower(tasks.title), tasks.id) > (lower(:title::text), :id::bigint)
ORDER BY lower(tasks.title), tasks.id
LIMIT :limit;
