-- GET /api/tasks/{id}: getTaskSQL.
\set user random(1, :users)
\set id (:user - 1) * :per_user + random(1, :per_user)
SELECT id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version FROM tasks
WHERE user_id = :user AND id = :id;
