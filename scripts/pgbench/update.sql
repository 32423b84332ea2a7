-- PUT /api/tasks/{id}: updateTaskSQL.
\set user random(1, :users)
\set id (:user - 1) * :per_user + random(1, :per_user)
UPDATE tasks SET
    title = COALESCE(:title, title),
    description = CASE WHEN :description_set::boolean THEN :description::text ELSE description END,
    completed = COALESCE(:completed::boolean, completed),
    updated_at = GREATEST(clock_timestamp(), updated_at + interval '1 microsecond'),
    version = version + 1
FROM (SELECT set_config('todo.quota_tasks', :quota_tasks::text, true), set_config('todo.quota_bytes', :quota_bytes::text, true)) AS quota
WHERE user_id = :user AND id = :id AND (NOT :has_condition::boolean OR version = ANY(:versions::bigint[]))
RETURNING id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version;
