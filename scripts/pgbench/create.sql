-- POST /api/tasks: createTaskSQL.
\set user random(1, :users)
INSERT INTO tasks (user_id, title, description, completed)
SELECT :user::text, :title::text, :description::text, :completed::boolean
FROM (SELECT set_config('todo.quota_tasks', :quota_tasks::text, true), set_config('todo.quota_bytes', :quota_bytes::text, true)) AS quota
RETURNING id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version;
