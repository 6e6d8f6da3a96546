//! The job runner: runs every job exactly once across workers, survives panicking handlers,
//! can be nudged awake, and releases in-flight jobs at shutdown so nothing is lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlc_core::now_millis;
use mlc_jobs::{JobHandler, Worker, WorkerConfig};
use mlc_store::testing::backends;
use mlc_store::{ConnectionStore, Job, JobOutcome, JobState, NewJob};
use tokio_util::sync::CancellationToken;

/// A job with no event behind it.
fn plain_job(key: &str, max_attempts: i32) -> NewJob {
    NewJob {
        kind: "test".into(),
        event_id: None,
        payload: serde_json::json!({ "key": key }),
        dedupe_key: key.to_string(),
        max_attempts,
        run_at: now_millis(),
    }
}

fn steps(entries: &[mlc_store::AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.step.clone()).collect()
}

fn config(id: &str) -> WorkerConfig {
    WorkerConfig {
        worker_id: id.into(),
        concurrency: 4,
        lease_ms: 30_000,
        poll_interval_ms: 10,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_releases_in_flight_jobs_and_nothing_is_lost() {
    for db in backends().await {
        let store = db.scoped().await;
        for i in 0..6 {
            store
                .enqueue(plain_job(&format!("s-{i}"), 3))
                .await
                .unwrap();
        }
        let stuck = Stuck::default();
        let mut cfg = config("stopping");
        cfg.shutdown_grace_ms = 100;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), stuck.clone(), cfg).run(shutdown.clone()),
        );
        wait_for(&store, JobState::Running, 4).await; // concurrency 4: four in flight
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        assert_eq!(*stuck.started.lock().unwrap(), 4);

        // All back in the queue, attempts given back, each release audited.
        let counts: HashMap<_, _> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts[&JobState::Queued], 6);
        assert_eq!(counts[&JobState::Running], 0);
        let mut released = 0;
        for i in 0..6 {
            let job = store
                .store()
                .claim("inspector", 1)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("job {i} missing"));
            assert_eq!(job.attempts, 1, "attempt given back on release");
            let audit = store.audit_for_job(&job.id).await.unwrap();
            released += audit.iter().filter(|a| a.step == "released").count();
            store.store().release(&job.id, "inspector").await.unwrap();
        }
        assert_eq!(released, 4);

        // A fresh worker finishes everything.
        let recorder = Recorder::default();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(
            Worker::new(store.store().clone(), recorder.clone(), config("next"))
                .run(shutdown.clone()),
        );
        wait_for(&store, JobState::Succeeded, 6).await;
        shutdown.cancel();
        handle.await.unwrap().unwrap();
        assert_eq!(recorder.runs.lock().unwrap().len(), 6);
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
        handle.await.unwrap().unwrap();
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Waiting);
        assert_eq!(job.last_error.as_deref(), Some("needs a mapping"));
    }
}
