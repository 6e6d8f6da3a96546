//! The intake writes apalis' task rows itself, inside its own transaction (see
//! `core/store/src/tasks.rs`: the store's hot paths run on sqlx's `Any` driver, which
//! `apalis_*::queries::push_tasks` cannot take). This pins the contract: the row the store writes
//! is the row apalis' own `push_tasks` writes for the same task, column for column, on both
//! backends. (The worker tests in `jobs/tests/runner.rs` run every job through apalis from these
//! rows.)

mod common;

use apalis::prelude::TaskBuilder;
use common::{event, job_for};
use mlc_store::testing::backends;
use mlc_store::{
    BACKLOG_COUNTED, Backend, ConnectionStore, JobTicket, PRIORITY_BASE, Store, TASK_MAX_ATTEMPTS,
};

/// The columns that describe a task (not its ID), read back as text so both backends compare
/// alike: payload, queue, status, attempts, max attempts, `run_at` in Unix seconds, priority,
/// metadata, idempotency key, lock, result, done time.
async fn task_row(store: &Store, id: &str) -> Vec<Option<String>> {
    use sqlx::Row as _;
    match store.backend() {
        Backend::Sqlite => {
            let row = sqlx::query(
                "SELECT hex(job) AS job, job_type, status, CAST(attempts AS TEXT) AS attempts, \
                 CAST(max_attempts AS TEXT) AS max_attempts, CAST(run_at AS TEXT) AS run_at, \
                 CAST(priority AS TEXT) AS priority, metadata, idempotency_key, lock_by, \
                 last_result, CAST(done_at AS TEXT) AS done_at FROM Jobs WHERE id = ?1",
            )
            .bind(id)
            .fetch_one(store.orm().get_sqlite_connection_pool())
            .await
            .unwrap();
            (0..12).map(|i| row.get::<Option<String>, _>(i)).collect()
        }
        Backend::Postgres => {
            let row = sqlx::query(
                "SELECT upper(encode(job, 'hex')) AS job, job_type, status, attempts::text, \
                 max_attempts::text, floor(extract(epoch FROM run_at))::bigint::text AS run_at, \
                 priority::text, metadata::text, idempotency_key, lock_by, last_result::text, \
                 done_at::text FROM apalis.jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(store.orm().get_postgres_connection_pool())
            .await
            .unwrap();
            (0..12).map(|i| row.get::<Option<String>, _>(i)).collect()
        }
    }
}

/// Pushes `body` as a task with apalis' own `push_tasks`; returns its ID.
async fn push_with_apalis(store: &Store, body: Vec<u8>, run_at: u64, priority: usize) -> String {
    let ulid = ulid::Ulid::generate();
    let task = TaskBuilder::new(body)
        .task_id(apalis::prelude::TaskId::Ulid(ulid))
        .run_at_timestamp(run_at)
        .max_attempts(TASK_MAX_ATTEMPTS as usize)
        .priority(priority)
        .build();
    match store.backend() {
        Backend::Sqlite => {
            let mut conn = store
                .orm()
                .get_sqlite_connection_pool()
                .acquire()
                .await
                .unwrap();
            apalis_sqlite::queries::push_tasks(&mut *conn, store.queue(), &[task])
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let mut conn = store
                .orm()
                .get_postgres_connection_pool()
                .acquire()
                .await
                .unwrap();
            apalis_postgres::queries::push_tasks(&mut *conn, store.queue(), vec![task])
                .await
                .unwrap();
        }
    }
    ulid.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_writes_the_row_apalis_push_tasks_writes() {
    for db in backends().await {
        let connection = db.scoped().await;
        let store = connection.store().clone();
        connection
            .record_event(&event("evt_row", true), Some(job_for("evt_row")))
            .await
            .unwrap();
        let job = connection
            .get_job_for_event("evt_row")
            .await
            .unwrap()
            .unwrap();
        let ours = task_row(&store, job.task_id.as_deref().unwrap()).await;

        // The same task, pushed by apalis: the ticket the store wrote, due now, same priority.
        let ticket = JobTicket {
            job: job.id.clone(),
            tenant: job.scope.tenant_id().as_str().to_string(),
            connection: job.scope.connection_id().as_str().to_string(),
        };
        let body = serde_json::to_vec(&ticket).unwrap();
        let priority: usize = ours[6].as_deref().unwrap().parse().unwrap();
        assert!(priority <= PRIORITY_BASE as usize, "{priority}");
        let run_at: u64 = ours[5].as_deref().unwrap().parse().unwrap();
        let id = push_with_apalis(&store, body, run_at, priority).await;
        let theirs = task_row(&store, &id).await;
        assert_eq!(ours, theirs, "{:?}", db.backend());
        assert_eq!(ours[1].as_deref(), Some(store.queue()));
        assert_eq!(ours[2].as_deref(), Some("Pending"));
    }
}

/// Records `event_id` with its job, as the intake does.
async fn record(connection: &ConnectionStore, event_id: &str) {
    connection
        .record_event(&event(event_id, true), Some(job_for(event_id)))
        .await
        .unwrap();
}

/// The priority of the apalis task of `event_id`'s job.
async fn task_priority(connection: &ConnectionStore, event_id: &str) -> i64 {
    let job = connection
        .get_job_for_event(event_id)
        .await
        .unwrap()
        .unwrap();
    let row = task_row(connection.store(), job.task_id.as_deref().unwrap()).await;
    row[6].as_deref().unwrap().parse().unwrap()
}

/// The fair-share priority: a connection's new task ranks behind its queued backlog, so another
/// connection's first task goes ahead of a flood. The backlog is counted up to
/// `BACKLOG_COUNTED` (counting walks the queued jobs inside the intake's commit); a connection
/// further behind ranks as that far behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_ranks_behind_its_connections_backlog_counted_up_to_the_cap() {
    for db in backends().await {
        let flood = db.scoped().await;
        let store = flood.store().clone();
        let other = mlc_store::testing::connection(&store, "other", "main").await;
        record(&flood, "evt_first").await;
        // The count includes the job being queued.
        assert_eq!(task_priority(&flood, "evt_first").await, PRIORITY_BASE - 1);
        record(&flood, "evt_second").await;
        assert_eq!(task_priority(&flood, "evt_second").await, PRIORITY_BASE - 2);

        // Past the cap: BACKLOG_COUNTED + 10 queued in all.
        let ids: Vec<String> = (0..BACKLOG_COUNTED as usize + 8)
            .map(|i| format!("evt_flood_{i}"))
            .collect();
        for chunk in ids.chunks(100) {
            futures::future::join_all(chunk.iter().map(|id| record(&flood, id))).await;
        }
        record(&flood, "evt_late").await;
        assert_eq!(
            task_priority(&flood, "evt_late").await,
            PRIORITY_BASE - BACKLOG_COUNTED,
            "{:?}",
            db.backend()
        );
        record(&other, "evt_other").await;
        assert_eq!(
            task_priority(&other, "evt_other").await,
            PRIORITY_BASE - 1,
            "{:?}: another connection's first task goes ahead of the flood",
            db.backend()
        );
    }
}

/// Finished tasks older than the retention go; pending ones and recent ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_past_their_retention_are_vacuumed() {
    for db in backends().await {
        let connection = db.scoped().await;
        let store = connection.store().clone();
        for id in ["evt_old", "evt_recent", "evt_pending"] {
            connection
                .record_event(&event(id, true), Some(job_for(id)))
                .await
                .unwrap();
        }
        let task = |id: &'static str| {
            let connection = connection.clone();
            async move {
                connection
                    .get_job_for_event(id)
                    .await
                    .unwrap()
                    .unwrap()
                    .task_id
                    .unwrap()
            }
        };
        let (old, recent, pending) = (
            task("evt_old").await,
            task("evt_recent").await,
            task("evt_pending").await,
        );
        // As apalis' ack leaves them: done eight days ago, and a minute ago.
        let done = |id: String, secs_ago: i64| {
            let store = store.clone();
            async move {
                match store.backend() {
                    Backend::Sqlite => {
                        sqlx::query(
                            "UPDATE Jobs SET status = 'Done', done_at = strftime('%s', 'now') - ?2 \
                             WHERE id = ?1",
                        )
                        .bind(id)
                        .bind(secs_ago)
                        .execute(store.orm().get_sqlite_connection_pool())
                        .await
                        .unwrap();
                    }
                    Backend::Postgres => {
                        sqlx::query(
                            "UPDATE apalis.jobs SET status = 'Done', \
                             done_at = now() - make_interval(secs => $2) WHERE id = $1",
                        )
                        .bind(id)
                        .bind(secs_ago as f64)
                        .execute(store.orm().get_postgres_connection_pool())
                        .await
                        .unwrap();
                    }
                }
            }
        };
        done(old.clone(), 8 * 24 * 3600).await;
        done(recent.clone(), 60).await;
        assert_eq!(store.vacuum_tasks(7 * 24 * 3600).await.unwrap(), 1);
        let exists = |id: String| {
            let store = store.clone();
            async move {
                match store.backend() {
                    Backend::Sqlite => sqlx::query("SELECT 1 FROM Jobs WHERE id = ?1")
                        .bind(id)
                        .fetch_optional(store.orm().get_sqlite_connection_pool())
                        .await
                        .unwrap()
                        .is_some(),
                    Backend::Postgres => sqlx::query("SELECT 1 FROM apalis.jobs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(store.orm().get_postgres_connection_pool())
                        .await
                        .unwrap()
                        .is_some(),
                }
            }
        };
        assert!(!exists(old).await);
        assert!(exists(recent).await);
        assert!(exists(pending).await);
    }
}

/// Instances starting together on a fresh database take turns migrating (ours and apalis'),
/// instead of racing to create the same tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_migrate_once() {
    for db in backends().await {
        let opening = (0..4).map(|_| Store::connect(db.url()));
        for opened in futures::future::join_all(opening).await {
            let store = opened.unwrap_or_else(|e| panic!("{:?}: {e}", db.backend()));
            store.ping().await.unwrap();
        }
    }
}

/// apalis 1.0.0's statements (`apalis-sqlite`, `queries/`), copied here: the acknowledgement,
/// the claim of fetched tasks, the orphan check.
const ACK: &str = "EXPLAIN QUERY PLAN WITH j AS (SELECT value ->> 'task_id' AS task_id, \
    value ->> 'attempt' AS attempt, value ->> 'result' AS result, value ->> 'status' AS status \
    FROM json_each(?1)) UPDATE Jobs SET status = j.status, attempts = j.attempt, \
    last_result = j.result, done_at = strftime('%s', 'now') FROM j \
    WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2";
const LOCK: &str = "EXPLAIN QUERY PLAN UPDATE Jobs SET status = 'Running', \
    lock_at = strftime('%s', 'now'), lock_by = ?2 WHERE id IN (SELECT value FROM json_each(?1)) \
    AND (status = 'Queued' OR status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))";
const ORPHANS: &str = "EXPLAIN QUERY PLAN UPDATE Jobs SET status = 'Pending', done_at = NULL, \
    lock_by = NULL, lock_at = NULL, attempts = attempts + 1, \
    last_result = '{\"Err\": \"Re-enqueued due to worker heartbeat timeout.\"}' \
    WHERE id IN (SELECT Jobs.id FROM Jobs INNER JOIN Workers ON lock_by = Workers.id \
    WHERE (status = 'Running' OR status = 'Queued') \
    AND strftime('%s', 'now') - Workers.last_seen >= ?1 AND Workers.worker_type = ?2 \
    AND (?3 IS NULL OR Workers.id != ?3) AND (?4 IS NULL OR Workers.id = ?4))";

/// The `detail` column of `sql`'s query plan (`sql` is an `EXPLAIN QUERY PLAN`).
async fn explain(
    pool: &sqlx::SqlitePool,
    sql: &'static str,
    binds: &[Option<&str>],
) -> Vec<String> {
    use sqlx::Row as _;
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(b.map(str::to_string));
    }
    q.fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect()
}

/// apalis acknowledges a task with `UPDATE Jobs … FROM json_each(?1) … WHERE Jobs.id = … AND
/// Jobs.lock_by = ?2` (`apalis-sqlite` 1.0.0, `queries/task/ack.sql`, copied here). Unsteered,
/// SQLite walked every task the worker had ever locked for each acknowledgement (index `LIdx`),
/// and every pending task (three times) to claim each fetched task (`queries/task/lock.sql`),
/// so the queue slowed as it grew. The store's planner statistics make both look the task up by
/// ID, on a database just made and on one of the release before opened again, and leave the
/// orphan check (`queries/backend/reenqueue_orphaned.sql`) finding running tasks by status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apalis_acknowledges_and_claims_each_task_by_id_on_sqlite() {
    for db in backends().await {
        if db.backend() != Backend::Sqlite {
            continue;
        }
        for opening in ["made", "reopened, from the release before"] {
            let store = Store::connect(db.url()).await.unwrap();
            let pool = store.orm().get_sqlite_connection_pool();
            let plan = explain(
                pool,
                ACK,
                &[
                    Some(r#"[{"task_id":"t1","attempt":1,"result":"{}","status":"Done"}]"#),
                    Some("worker-1"),
                ],
            )
            .await;
            assert!(
                plan.iter().any(|d| d.starts_with("SCAN json_each")),
                "{opening}: {plan:?}"
            );
            assert!(
                plan.iter().any(
                    |d| d.starts_with("SEARCH Jobs USING INDEX sqlite_autoindex_Jobs")
                        && d.contains("(id=?)")
                ),
                "{opening}: the acknowledgement must find the task by its ID: {plan:?}"
            );
            assert!(
                !plan.iter().any(|d| d.contains("LIdx")),
                "{opening}: {plan:?}"
            );
            let lock = explain(pool, LOCK, &[Some(r#"["t1","t2"]"#), Some("worker-1")]).await;
            assert!(
                lock.iter().any(
                    |d| d.starts_with("SEARCH Jobs USING INDEX sqlite_autoindex_Jobs")
                        && d.contains("(id=?)")
                ) && !lock.iter().any(|d| d.contains("MULTI-INDEX OR")),
                "{opening}: claiming fetched tasks must find each by its ID, not walk every \
                 pending task: {lock:?}"
            );
            let orphans = explain(
                pool,
                ORPHANS,
                &[Some("15"), Some("mlc.jobs"), Some("worker-1"), None],
            )
            .await;
            assert!(
                orphans
                    .iter()
                    .any(|d| d.contains("idx_jobs_status_run_at (status=?)"))
                    && !orphans.iter().any(|d| d.contains("LIdx")),
                "{opening}: the orphan check must find running tasks by status, not walk every \
                 task a worker ever locked: {orphans:?}"
            );
            // As a database of the release before: only the acknowledgement's statistics.
            sqlx::query("DELETE FROM sqlite_stat1 WHERE idx = 'idx_jobs_status_run_at'")
                .execute(pool)
                .await
                .unwrap();
            store.close().await;
        }
    }
}
