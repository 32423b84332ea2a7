-- GET /api/tasks?completed=...: listTasksByCompletedSQL in list.go,
-- parameters named.
\set user random(1, :users)
SELECT id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version FROM tasks
WHERE user_id = :user AND completed = :completed
ORDER BY tasks.created_at DESC, tasks.id DESC
LIMIT :limit OFFSET :offset;
