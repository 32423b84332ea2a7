-- Waiting lists in one statement: listTaskBatchSQL in list.go. Not part of
-- the ceiling (pgbench cannot draw arrays); give the arrays with -D, e.g.
-- -D batch_users='{1,2}' -D batch_completed='{NULL,true}'
-- -D batch_limits='{50,50}' -D batch_offsets='{0,0}'. make load's plan
-- check prepares it from here.
SELECT q.n, t.*
FROM unnest((SELECT :batch_users::text[]), (SELECT :batch_completed::boolean[]), (SELECT :batch_limits::bigint[]), (SELECT :batch_offsets::bigint[]))
    WITH ORDINALITY AS q(q_user, q_completed, q_limit, q_offset, n)
CROSS JOIN LATERAL (
    SELECT id, title, description, completed, timestamptz_send(created_at), timestamptz_send(updated_at), version FROM tasks
    WHERE tasks.user_id = q.q_user AND (q.q_completed IS NULL OR tasks.completed = q.q_completed)
    ORDER BY tasks.created_at DESC, tasks.id DESC
    LIMIT q.q_limit OFFSET q.q_offset) AS t;
