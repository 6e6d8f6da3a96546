-- The queue moves to apalis (its `Jobs` table, migrated right after this list): our job table keeps
-- the business state and the schedule, and names the apalis task that carries its next attempt.
-- apalis owns liveness (worker heartbeats, re-running a dead worker's task), so the hand-written
-- lease goes. SQLite's table names are case-insensitive, so `jobs` becomes `sync_jobs` to leave
-- apalis its `Jobs` (same name on PostgreSQL, for one SQL on both).
ALTER TABLE jobs RENAME TO sync_jobs;
DROP INDEX jobs_lease;
ALTER TABLE sync_jobs DROP COLUMN locked_until;
ALTER TABLE sync_jobs ADD COLUMN task_id TEXT;
