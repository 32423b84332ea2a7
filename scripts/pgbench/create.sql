-- POST /api/tasks: createTaskSQL.
\set user random(1, :users)
INSERT INTO tasks (user_id, title, description, completed)
VALUES (:user, :title, :description, :completed)
RETURNING id, title, description, completed, created_at::text, updated_at::text, version;
