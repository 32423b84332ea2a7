-- POST /api/tasks: createTaskSQL.
\set user random(1, :users)
INSERT INTO tasks (user_id, title, description, completed)
VALUES (:user, :title, :description, :completed)
RETURNING id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version;
