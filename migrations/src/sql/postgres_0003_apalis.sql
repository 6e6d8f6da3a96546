-- The queue moves to apalis (schema `apalis`, migrated right after this list): our job table keeps
-- the business state and the schedule, and names the apalis task that carries its next attempt.
-- apalis owns liveness (worker heartbeats, re-running a dead worker's task), so the hand-written
-- lease goes. Renamed `sync_jobs` as on SQLite (whose table names are case-insensitive, and
-- apalis' is `Jobs`). The service role's grants on apalis' schema follow apalis' migrations
-- (`mlc_store`'s `migrate_apalis`).
ALTER TABLE jobs RENAME TO sync_jobs;
DROP INDEX jobs_lease;
ALTER TABLE sync_jobs DROP COLUMN locked_until;
ALTER TABLE sync_jobs ADD COLUMN task_id TEXT;
