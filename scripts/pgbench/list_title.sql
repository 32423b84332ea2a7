-- GET /api/tasks?sort=title: listTasksByTitleSQL in store.go, parameters named.
\set user random(1, :users)
SELECT id, title, description, completed, created_at::text, updated_at::text, version FROM tasks
WHERE user_id = :user
ORDER BY lower(tasks.title), tasks.id
LIMIT :limit OFFSET :offset;
