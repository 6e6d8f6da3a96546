//! The worker on apalis: runs every job exactly once across workers, survives panicking
//! handlers, can be nudged awake, loses nothing at shutdown or when killed, and steps around
//! apalis 1.0's traps (a restart under an old name, a database error mid-run, retries that must
//! wait, waiting jobs released early), with fair sharing between connections.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlc_core::now_millis;
use mlc_jobs::{JobHandler, Worker, WorkerConfig};
use mlc_store::testing::{backends, plain_job};
use mlc_store::{ConnectionStore, Job, JobOutcome, JobState};
use tokio_util::sync::CancellationToken;

fn steps(entries: &[mlc_store::AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.step.clone()).collect()
}

fn config(id: &str) -> WorkerConfig {
    WorkerConfig {
        worker_id: id.into(),
        concurrency: 4,
        per_connection_cap: 4,
        poll_interval_ms: 50,
        heartbeat_ms: 1_000,
        shutdown_grace_ms: 5_000,
    }
}

/// Waits (bounded, so a bug fails the test instead of hanging it) until `n` jobs are in `state`.
async fn wait_for(store: &ConnectionStore, state: JobState, n: i64) {
    for _ in 0..6_000 {
        let counts: HashMap<_, _> = store.job_counts().await.unwrap().into_iter().collect();
        if counts[&state] == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "gave up waiting for {n} {state} jobs: {:?}",
        store.job_counts().await.unwrap()
    );
}

/// Waits (bounded) until at least `n` jobs are in `state`.
async fn wait_at_least(store: &ConnectionStore, state: JobState, n: i64) {
    for _ in 0..6_000 {
        let counts: HashMap<_, _> = store.job_counts().await.unwrap().into_iter().collect();
        if counts[&state] >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {n} {state} jobs");
}

/// Records each run and flags any job run twice at the same time.
#[derive(Clone, Default)]
struct Recorder {
    running: Arc<Mutex<HashSet<String>>>,
    runs: Arc<Mutex<HashMap<String, u32>>>,
    overlaps: Arc<Mutex<Vec<String>>>,
}

impl JobHandler for Recorder {
    async fn handle(&self, job: Job) -> JobOutcome {
        if !self.running.lock().unwrap().insert(job.id.clone()) {
            self.overlaps.lock().unwrap().push(job.id.clone());
        }
        *self.runs.lock().unwrap().entry(job.id.clone()).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.running.lock().unwrap().remove(&job.id);
        JobOutcome::Succeeded
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_run_every_job_exactly_once() {
    const JOBS: usize = 300;
    for db in backends().await {
        let store = db.scoped().await;
        for i in 0..JOBS {
            store
                .enqueue(plain_job(&format!("r-{i}"), 3))
                .await
                .unwrap();
        }
        let recorder = Recorder::default();
        let shutdown = CancellationToken::new();
        let w1 = Worker::new(store.store().clone(), recorder.clone(), config("w1"));
        let w2 = Worker::new(store.store().clone(), recorder.clone(), config("w2"));
        let h1 = tokio::spawn(w1.run(shutdown.clone()));
        let h2 = tokio::spawn(w2.run(shutdown.clone()));
        wait_for(&store, JobState::Succeeded, JOBS as i64).await;
        shutdown.cancel();
        h1.await.unwrap().unwrap();
        h2.await.unwrap().unwrap();

        let overlaps = recorder.overlaps.lock().unwrap().clone();
        assert!(overlaps.is_empty(), "jobs run twice at once: {overlaps:?}");
        let runs = recorder.runs.lock().unwrap();
        assert_eq!(runs.len(), JOBS, "{:?}", db.backend());
        assert!(runs.values().all(|n| *n == 1), "a job ran twice");
    }
}

struct Panicky;

impl JobHandler for Panicky {
    async fn handle(&self, job: Job) -> JobOutcome {
        if job.dedupe_key == "boom" {
            panic!("boom in handler");
        }
        JobOutcome::Succeeded
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_handler_becomes_a_retry_and_the_worker_keeps_going() {
    for db in backends().await {
        let store = db.scoped().await;
        let boom = store.enqueue(plain_job("boom", 5)).await.unwrap().unwrap();
        let fine = store.enqueue(plain_job("fine", 5)).await.unwrap().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), Panicky, config("w")).run(shutdown.clone()),
        );
        wait_for(&store, JobState::Succeeded, 1).await;
        // The panicking job is rescheduled (default back-off, seconds away) rather than lost.
        for _ in 0..1000 {
            if store.get_job(&boom).await.unwrap().unwrap().state == JobState::Queued {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        let job = store.get_job(&boom).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.attempts, 1);
        let err = job.last_error.unwrap_or_default();
        assert!(
            err.contains("the job handler crashed: boom in handler"),
            "{err}"
        );
        assert_eq!(
            store.get_job(&fine).await.unwrap().unwrap().state,
            JobState::Succeeded
        );
        assert_eq!(
            steps(&store.audit_for_job(&boom).await.unwrap()),
            vec!["retried"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifier_wakes_an_idle_worker() {
    for db in backends().await {
        let store = db.scoped().await;
        let mut cfg = config("sleepy");
        cfg.poll_interval_ms = 3_600_000; // only a nudge can make it look again
        let worker = Worker::new(store.store().clone(), Recorder::default(), cfg);
        let nudge = worker.notifier();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(worker.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await; // let it go idle
        store.enqueue(plain_job("late", 3)).await.unwrap();
        nudge.notify_one();
        wait_for(&store, JobState::Succeeded, 1).await;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
    }
}

/// Never finishes on its own: simulates work still in flight at shutdown.
#[derive(Clone, Default)]
struct Stuck {
    started: Arc<Mutex<u32>>,
}

impl JobHandler for Stuck {
    async fn handle(&self, _job: Job) -> JobOutcome {
        *self.started.lock().unwrap() += 1;
        std::future::pending::<()>().await;
        JobOutcome::Succeeded
    }
}

/// Jobs still running when the grace period ends (or when the process is killed) are run again
/// by the next worker once the dead one has missed its heartbeats: nothing is lost, each runs to
/// completion once more. The next worker reuses the old `worker_id` on purpose: apalis strands a
/// dead worker's tasks when a new worker takes its name, and ours never does (each life gets a
/// fresh suffix).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_in_flight_at_shutdown_or_kill_run_again_under_the_same_worker_id() {
    for db in backends().await {
        let base = db.store().await;
        for kill in [false, true] {
            let tag = if kill { "k" } else { "s" };
            let store = mlc_store::testing::connection(&base, "test", &format!("conn-{tag}")).await;
            for i in 0..6 {
                store
                    .enqueue(plain_job(&format!("{tag}-{i}"), 3))
                    .await
                    .unwrap();
            }
            let stuck = Stuck::default();
            let mut cfg = config("same-name");
            cfg.shutdown_grace_ms = 100;
            let shutdown = CancellationToken::new();
            let handle = tokio::spawn(
                Worker::new(store.store().clone(), stuck.clone(), cfg).run(shutdown.clone()),
            );
            wait_for(&store, JobState::Running, 4).await; // concurrency 4: four in flight
            if kill {
                handle.abort(); // no goodbye: heartbeats just stop
                let _ = handle.await;
            } else {
                shutdown.cancel();
                handle.await.unwrap().unwrap();
            }
            assert_eq!(*stuck.started.lock().unwrap(), 4);

            // The same worker_id again: the four run again, the two never started run once. A
            // cap of two per connection, with a neighbour connection busy at the same time (its
            // jobs due over the next seconds), makes some of the re-run tasks wait their turn:
            // deferred while their job still reads `running`.
            let neighbour =
                mlc_store::testing::connection(&base, "test", &format!("next-{tag}")).await;
            for i in 0..12 {
                let mut job = plain_job(&format!("n-{tag}-{i}"), 3);
                job.run_at = now_millis() + 500 * i;
                neighbour.enqueue(job).await.unwrap();
            }
            let recorder = Recorder::default();
            let shutdown = CancellationToken::new();
            let mut cfg = config("same-name");
            cfg.per_connection_cap = 2;
            let handle = tokio::spawn(
                Worker::new(store.store().clone(), recorder.clone(), cfg).run(shutdown.clone()),
            );
            wait_for(&store, JobState::Succeeded, 6).await;
            wait_for(&neighbour, JobState::Succeeded, 12).await;
            shutdown.cancel();
            handle.await.unwrap().unwrap();
            let runs = recorder.runs.lock().unwrap().clone();
            assert_eq!(runs.len(), 18, "{tag}: {runs:?}");
            assert!(runs.values().all(|n| *n == 1), "{tag}: {runs:?}");
            let mut second_attempts = 0;
            for id in runs.keys() {
                if let Some(job) = store.get_job(id).await.unwrap() {
                    second_attempts += usize::from(job.attempts == 2);
                }
            }
            assert_eq!(
                second_attempts, 4,
                "{tag}: the interrupted four ran a second attempt"
            );
        }
    }
}

/// Fails transiently once with a delay it asks for, then succeeds; records when it ran.
#[derive(Clone, Default)]
struct RetryOnce {
    runs: Arc<Mutex<Vec<std::time::Instant>>>,
}

impl JobHandler for RetryOnce {
    async fn handle(&self, _job: Job) -> JobOutcome {
        let mut runs = self.runs.lock().unwrap();
        runs.push(std::time::Instant::now());
        if runs.len() == 1 {
            JobOutcome::Retry {
                error: "NetSuite answered 429: retry after 2 s".into(),
                class: mlc_core::ErrorClass::Transient,
                after_ms: Some(2_000),
            }
        } else {
            JobOutcome::Succeeded
        }
    }
}

/// apalis re-runs a failed task at once; a transient failure here waits as long as it asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_failure_waits_before_it_runs_again() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store.enqueue(plain_job("later", 5)).await.unwrap().unwrap();
        let handler = RetryOnce::default();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), handler.clone(), config("patient"))
                .run(shutdown.clone()),
        );
        wait_for(&store, JobState::Succeeded, 1).await;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        let runs = handler.runs.lock().unwrap().clone();
        assert_eq!(runs.len(), 2);
        let gap = runs[1] - runs[0];
        assert!(
            gap >= Duration::from_millis(1_900),
            "ran again after {gap:?}"
        );
        assert_eq!(
            steps(&store.audit_for_job(&id).await.unwrap()),
            vec!["retried", "succeeded"]
        );
    }
}

/// Waits for a person (a missing mapping) the first time, then succeeds.
#[derive(Clone, Default)]
struct NeedsMapping {
    runs: Arc<Mutex<u32>>,
}

impl JobHandler for NeedsMapping {
    async fn handle(&self, _job: Job) -> JobOutcome {
        let mut runs = self.runs.lock().unwrap();
        *runs += 1;
        if *runs == 1 {
            JobOutcome::Wait {
                reason: "Stripe product prod_X has no NetSuite item".into(),
                after_ms: 3_600_000,
            }
        } else {
            JobOutcome::Succeeded
        }
    }
}

/// A waiting job's next attempt is an hour away; setting the mapping pulls it forward at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mapping_releases_a_waiting_job_early() {
    for db in backends().await {
        let store = db.scoped().await;
        store.enqueue(plain_job("wait", 5)).await.unwrap().unwrap();
        let handler = NeedsMapping::default();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), handler.clone(), config("waiter"))
                .run(shutdown.clone()),
        );
        wait_for(&store, JobState::Waiting, 1).await;
        assert_eq!(store.wake_waiting_jobs("prod_Y").await.unwrap(), 0);
        assert_eq!(store.wake_waiting_jobs("prod_X").await.unwrap(), 1);
        wait_for(&store, JobState::Succeeded, 1).await;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        assert_eq!(*handler.runs.lock().unwrap(), 2);
    }
}

/// apalis' worker stops on any database error; ours restarts it (new name, back-off) and the
/// work goes on. The error: apalis' table briefly renamed away under the running worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_keeps_going_after_a_database_error() {
    use sqlx::Connection as _;
    for db in backends().await {
        let store = db.scoped().await;
        let recorder = Recorder::default();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), recorder.clone(), config("sturdy"))
                .run(shutdown.clone()),
        );
        store.enqueue(plain_job("before", 3)).await.unwrap();
        wait_for(&store, JobState::Succeeded, 1).await;
        let (away, back) = match db.backend() {
            mlc_store::Backend::Sqlite => (
                "ALTER TABLE Jobs RENAME TO Jobs_away",
                "ALTER TABLE Jobs_away RENAME TO Jobs",
            ),
            mlc_store::Backend::Postgres => (
                "ALTER TABLE apalis.jobs RENAME TO jobs_away",
                "ALTER TABLE apalis.jobs_away RENAME TO jobs",
            ),
        };
        // As the connecting role (the table's owner), on a connection of its own.
        let mut admin = sqlx::AnyConnection::connect(db.url()).await.unwrap();
        sqlx::query(away).execute(&mut admin).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await; // polls fail meanwhile
        sqlx::query(back).execute(&mut admin).await.unwrap();
        store.enqueue(plain_job("after", 3)).await.unwrap();
        wait_for(&store, JobState::Succeeded, 2).await;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        assert_eq!(recorder.runs.lock().unwrap().len(), 2);
    }
}
/// Sleeps briefly and succeeds; used to show that a graceful stop lets work finish.
struct Quick;

impl JobHandler for Quick {
    async fn handle(&self, _job: Job) -> JobOutcome {
        tokio::time::sleep(Duration::from_millis(200)).await;
        JobOutcome::Wait {
            reason: "needs a mapping".into(),
            after_ms: 60_000,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_lets_in_flight_jobs_finish_and_applies_their_outcome() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store.enqueue(plain_job("q", 3)).await.unwrap().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), Quick, config("graceful")).run(shutdown.clone()),
        );
        wait_for(&store, JobState::Running, 1).await;
        shutdown.cancel();
        let stopping = std::time::Instant::now();
        handle.await.unwrap().unwrap();
        assert_stopped_before_the_grace_period_ended(stopping.elapsed());
        assert_waiting_for_a_mapping(&store, &id).await;
    }
}

/// A worker whose jobs are done stops at once. One that waits out the grace period (5 s here)
/// was waiting on something else: apalis' closing acknowledgements behind SQLite's write lock did.
fn assert_stopped_before_the_grace_period_ended(took: Duration) {
    assert!(
        took < Duration::from_millis(4_500),
        "the worker took {took:?} to stop"
    );
}

/// The in-flight job's outcome (it waits for a mapping) was recorded as the worker stopped.
async fn assert_waiting_for_a_mapping(store: &ConnectionStore, id: &str) {
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Waiting,
        "{:?}: {job:?}",
        store.store().backend()
    );
    assert_eq!(job.last_error.as_deref(), Some("needs a mapping"));
}

/// Holds each job until the test lets it go, then waits for a mapping.
#[derive(Clone, Default)]
struct Gated {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl JobHandler for Gated {
    async fn handle(&self, _job: Job) -> JobOutcome {
        self.started.notify_one();
        self.release.notified().await;
        JobOutcome::Wait {
            reason: "needs a mapping".into(),
            after_ms: 60_000,
        }
    }
}

/// A fetch apalis began before the stop and then stopped polling (it waits for in-flight jobs
/// before closing) kept SQLite's write lock, so the jobs it waited for could not record their
/// outcome and were left `running` (seen under CI's load). Here another connection holds the
/// write lock, so the worker's next fetch is under way when the stop comes; the lock is then
/// given up, and the in-flight job finishes: its outcome must be recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_under_way_at_shutdown_does_not_keep_in_flight_jobs_from_recording_their_outcome() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store.enqueue(plain_job("q", 3)).await.unwrap().unwrap();
        let handler = Gated::default();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), handler.clone(), config("fetching"))
                .run(shutdown.clone()),
        );
        tokio::time::timeout(Duration::from_secs(30), handler.started.notified())
            .await
            .expect("the job starts");
        // Another writer (on SQLite, another connection; as a CLI command would be).
        let mut other = match store.store().backend() {
            mlc_store::Backend::Sqlite => Some(
                store
                    .store()
                    .orm()
                    .get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .unwrap(),
            ),
            mlc_store::Backend::Postgres => None,
        };
        if let Some(other) = other.as_mut() {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut **other)
                .await
                .unwrap();
        }
        // The worker polls every 50 ms: its next fetch is now waiting for the lock.
        tokio::time::sleep(Duration::from_millis(400)).await;
        shutdown.cancel();
        let stopping = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(mut other) = other {
            sqlx::query("COMMIT").execute(&mut *other).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        handler.release.notify_one();
        handle.await.unwrap().unwrap();
        assert_stopped_before_the_grace_period_ended(stopping.elapsed());
        assert_waiting_for_a_mapping(&store, &id).await;
    }
}

/// Takes a few milliseconds per job and records the order jobs finished in, by connection.
#[derive(Clone, Default)]
struct Ordered {
    done: Arc<Mutex<Vec<String>>>,
}

impl Ordered {
    fn done_for(&self, connection: &str) -> usize {
        self.done
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.as_str() == connection)
            .count()
    }
}

impl JobHandler for Ordered {
    async fn handle(&self, job: Job) -> JobOutcome {
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.done
            .lock()
            .unwrap()
            .push(job.scope.connection_id().as_str().to_string());
        JobOutcome::Succeeded
    }
}

/// Fair sharing: connection A floods 2,000 jobs, then B sends a burst of 50. B's jobs are not
/// queued behind A's backlog, and B's burst, over its cap of jobs in flight, gets its share of
/// the worker as each of its jobs finishes: while B's burst is worked through, A gets no more
/// jobs done than B. (Put off at B's cap for a fixed second, B's burst ran a few jobs a second
/// while A's flood took the slots B left: on SQLite, 1,000 of A's jobs ran meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_connections_flood_does_not_queue_another_behind_it() {
    const FLOOD: usize = 2_000;
    const SMALL: usize = 50;
    for db in backends().await {
        let store = db.store().await;
        let a = mlc_store::testing::connection(&store, "acme", "flood").await;
        let b = mlc_store::testing::connection(&store, "globex", "small").await;
        // Each burst arrives at once (concurrently, so the intake group-commits it).
        let burst = |to: &ConnectionStore, prefix: &str, n: usize| {
            let mut intake = tokio::task::JoinSet::new();
            for i in 0..n {
                let to = to.clone();
                let key = format!("{prefix}-{i}");
                intake.spawn(async move { to.enqueue(plain_job(&key, 3)).await });
            }
            intake.join_all()
        };
        for queued in burst(&a, "a", FLOOD).await {
            queued.unwrap();
        }
        let handler = Ordered::default();
        let mut cfg = config("fair");
        cfg.per_connection_cap = 3;
        let shutdown = CancellationToken::new();
        let handle =
            tokio::spawn(Worker::new(store.clone(), handler.clone(), cfg).run(shutdown.clone()));
        wait_at_least(&a, JobState::Succeeded, 20).await; // the flood is being worked on
        for queued in burst(&b, "b", SMALL).await {
            queued.unwrap();
        }
        let a_done_before = handler.done_for("flood");
        wait_for(&b, JobState::Succeeded, SMALL as i64).await;
        let a_done_meanwhile = handler.done_for("flood") - a_done_before;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        assert!(
            a_done_meanwhile <= SMALL,
            "{:?}: {a_done_meanwhile} of A's jobs ran while B's {SMALL} waited",
            db.backend()
        );
        assert!(a_done_before + a_done_meanwhile < FLOOD / 2);
    }
}

/// Held by each test whose handler says "busy": the deferral counter it reads is the process's.
static ACCOUNT_BUSY_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Says "busy" the first two times it is asked about a connection, then runs the job.
#[derive(Clone, Default)]
struct BusyAccount {
    asked: Arc<Mutex<u32>>,
    runs: Arc<Mutex<u32>>,
}

impl JobHandler for BusyAccount {
    async fn handle(&self, _job: Job) -> JobOutcome {
        *self.runs.lock().unwrap() += 1;
        JobOutcome::Succeeded
    }

    async fn defer_for(
        &self,
        _scope: &mlc_store::ConnectionScope,
        _worker_slots: usize,
    ) -> Option<Duration> {
        let mut asked = self.asked.lock().unwrap();
        *asked += 1;
        (*asked <= 2).then_some(Duration::from_millis(300))
    }
}

/// A job whose NetSuite account is saturated is put off, unstarted (no attempt used, no worker
/// held while it waits), and runs once the account has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_of_a_saturated_account_is_put_off_unstarted() {
    let _alone = ACCOUNT_BUSY_TESTS.lock().await;
    let metrics = mlc_service::telemetry::metrics_handle();
    for db in backends().await {
        let put_off_before = account_busy_deferrals(&metrics.render());
        let store = db.scoped().await;
        let id = store.enqueue(plain_job("busy", 3)).await.unwrap().unwrap();
        let handler = BusyAccount::default();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), handler.clone(), config("budget"))
                .run(shutdown.clone()),
        );
        wait_for(&store, JobState::Succeeded, 1).await;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        assert_eq!(*handler.asked.lock().unwrap(), 3);
        assert_eq!(*handler.runs.lock().unwrap(), 1);
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(job.attempts, 1, "putting off used no attempt");
        assert_eq!(
            steps(&store.audit_for_job(&id).await.unwrap()),
            vec!["succeeded"]
        );
        // Operators see how often jobs were put off (only this test's handler says "busy").
        assert_eq!(
            account_busy_deferrals(&metrics.render()) - put_off_before,
            2,
            "{:?}",
            db.backend()
        );
    }
}

/// Runs jobs; the first it runs is held until the other job has been put off (its account
/// "busy", for two minutes), so that the put-off happens while a job of the connection runs.
#[derive(Clone)]
struct BusyWhileOneRuns {
    store: ConnectionStore,
    /// The two jobs and the task each had when enqueued.
    jobs: Arc<Vec<(String, String)>>,
    asked: Arc<Mutex<u32>>,
    runs: Arc<Mutex<u32>>,
}

impl JobHandler for BusyWhileOneRuns {
    async fn handle(&self, job: Job) -> JobOutcome {
        let first = {
            let mut runs = self.runs.lock().unwrap();
            *runs += 1;
            *runs == 1
        };
        if first {
            let (other, task) = self.jobs.iter().find(|(id, _)| *id != job.id).unwrap();
            // Put off: its next attempt is a new task.
            for _ in 0..1_000 {
                let now = self.store.get_job(other).await.unwrap().unwrap();
                if now.task_id.as_deref() != Some(task.as_str()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The worker parks it right after the put-off is written.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        JobOutcome::Succeeded
    }

    async fn defer_for(
        &self,
        _scope: &mlc_store::ConnectionScope,
        _worker_slots: usize,
    ) -> Option<Duration> {
        let mut asked = self.asked.lock().unwrap();
        *asked += 1;
        (*asked == 2).then_some(Duration::from_secs(120))
    }
}

/// A job put off because its NetSuite account was busy comes back as soon as a job of its
/// connection finishes (the account has room again), not when its put-off ends: on SQLite,
/// whose task times are whole seconds, waiting it out left the account idle at the end of a
/// backlog (BENCHMARKS.md, fourteenth pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_put_off_for_a_busy_account_comes_back_when_one_finishes() {
    let _alone = ACCOUNT_BUSY_TESTS.lock().await;
    for db in backends().await {
        let store = db.scoped().await;
        let mut jobs = Vec::new();
        for key in ["first", "second"] {
            let id = store.enqueue(plain_job(key, 3)).await.unwrap().unwrap();
            let task = store.get_job(&id).await.unwrap().unwrap().task_id.unwrap();
            jobs.push((id, task));
        }
        let handler = BusyWhileOneRuns {
            store: store.clone(),
            jobs: Arc::new(jobs),
            asked: Arc::default(),
            runs: Arc::default(),
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), handler.clone(), config("park-busy"))
                .run(shutdown.clone()),
        );
        let started = std::time::Instant::now();
        // Within `wait_for`'s minute, half the two minutes it was put off for.
        wait_for(&store, JobState::Succeeded, 2).await;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(*handler.asked.lock().unwrap(), 3, "{:?}", db.backend());
        assert_eq!(*handler.runs.lock().unwrap(), 2);
    }
}

/// `mlc_jobs_deferred_total{reason="account_busy"}` from Prometheus text (0 before the first).
fn account_busy_deferrals(text: &str) -> u64 {
    mlc_service::telemetry::metric_sum(text, "mlc_jobs_deferred_total{reason=\"account_busy\"")
        as u64
}
