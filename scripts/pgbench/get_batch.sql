-- Waiting gets in one statement: getTasksSQL in batchsql.go. Not part of
-- the ceiling (pgbench cannot draw arrays); give the arrays with -D, e.g.
-- -D batch_users='{1,2}' -D batch_ids='{1,51}'. make load's plan check
-- prepares it from here.
SELECT q.n, id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version
FROM unnest((SELECT :batch_users::text[]), (SELECT :batch_ids::bigint[])) WITH ORDINALITY AS q(q_user, q_id, n)
JOIN tasks ON tasks.user_id = q.q_user AND tasks.id = q.q_id;
