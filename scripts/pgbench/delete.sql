-- DELETE /api/tasks/{id}: deleteTaskSQL. The ids lie above the seeded ones,
-- where the run's creates land; many miss, which flatters the ceiling.
\set user random(1, :users)
\set id :seeded + random(1, 100000)
DELETE FROM tasks
WHERE user_id = :user AND id = :id AND (NOT :has_condition::boolean OR version = ANY(:versions::bigint[]));
