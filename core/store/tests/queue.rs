//! The job queue: claim/finish transitions, retries, leases, replay, and exclusive claiming under
//! concurrency. Every test runs on every configured backend.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::{event, job_for, plain_job, steps};
use mlc_core::{ErrorClass, now_millis};
use mlc_store::testing::{self, backends};
use mlc_store::{Jitter, JobOutcome, JobState, RetryPolicy, Store, StoreError, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enqueue_deduplicates_by_key() {
    for db in backends().await {
        let store = db.scoped().await;
        let first = store.enqueue(plain_job("k1", 3)).await.unwrap();
        let second = store.enqueue(plain_job("k1", 3)).await.unwrap();
        assert!(first.is_some());
        assert_eq!(second, None);
        let job = store
            .get_job(first.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.dedupe_key, "k1");
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.max_attempts, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_and_finish_transitions() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_q1", true), Some(job_for("evt_q1")))
            .await
            .unwrap();
        let job = store
            .store()
            .claim("w1", 30_000)
            .await
            .unwrap()
            .expect("a job to claim");
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.locked_by.as_deref(), Some("w1"));
        assert!(job.locked_until.unwrap() > now_millis());
        assert_eq!(job.event_id.as_deref(), Some("evt_q1"));
        // Nothing else is runnable, and a running job with a live lease is not claimable.
        assert!(store.store().claim("w2", 30_000).await.unwrap().is_none());
        // Another worker cannot heartbeat or finish it.
        assert!(matches!(
            store.store().heartbeat(&job.id, "w2", 30_000).await,
            Err(StoreError::LeaseLost(_))
        ));
        assert!(matches!(
            store
                .store()
                .finish(&job.id, "w2", JobOutcome::Succeeded)
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        store
            .store()
            .heartbeat(&job.id, "w1", 30_000)
            .await
            .unwrap();
        let state = store
            .store()
            .finish(&job.id, "w1", JobOutcome::Succeeded)
            .await
            .unwrap();
        assert_eq!(state, JobState::Succeeded);
        let done = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.locked_by, None);
        // Finishing twice is refused: the job is no longer held.
        assert!(matches!(
            store
                .store()
                .finish(&job.id, "w1", JobOutcome::Succeeded)
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        let audit = store.audit_for_event("evt_q1").await.unwrap();
        assert_eq!(steps(&audit), vec!["received", "succeeded"]);
        let counts = store.job_counts().await.unwrap();
        assert_eq!(
            counts,
            vec![
                (JobState::Queued, 0),
                (JobState::Running, 0),
                (JobState::Waiting, 0),
                (JobState::Succeeded, 1),
                (JobState::Failed, 0)
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_attempt_is_rescheduled_by_the_default_policy() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store
            .enqueue(plain_job("retry-later", 3))
            .await
            .unwrap()
            .unwrap();
        let job = store.store().claim("w", 30_000).await.unwrap().unwrap();
        let before = now_millis();
        let state = store
            .store()
            .finish(
                &job.id,
                "w",
                JobOutcome::Retry {
                    error: "NetSuite answered 503".into(),
                    class: ErrorClass::Transient,
                    after_ms: None,
                },
            )
            .await
            .unwrap();
        let after = now_millis();
        assert_eq!(state, JobState::Queued);
        let queued = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(queued.attempts, 1);
        assert_eq!(queued.last_error.as_deref(), Some("NetSuite answered 503"));
        // First retry: 5 s ± 20%.
        assert!(
            queued.run_at >= before + 4_000 && queued.run_at <= after + 6_000,
            "run_at {} is not 5 s ± 20% after {before}",
            queued.run_at
        );
        // Not runnable before its time.
        assert!(store.store().claim("w", 30_000).await.unwrap().is_none());
        let audit = store.audit_for_job(&id).await.unwrap();
        assert_eq!(steps(&audit), vec!["retried"]);
        assert!(
            audit[0]
                .message
                .contains("Attempt 1 of 3 failed (transient): NetSuite answered 503"),
            "{}",
            audit[0].message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_fails_when_attempts_are_exhausted() {
    for db in backends().await {
        // A 1 ms schedule so the test need not wait for real back-off.
        let options = StoreOptions {
            retry: RetryPolicy {
                base_ms: 1,
                max_ms: 1,
                factor: 2,
                jitter: Jitter::None,
            },
            ..StoreOptions::default()
        };
        let store = Store::connect_with(db.url(), options).await.unwrap();
        let store = testing::connection(&store, "test", "main").await;
        let id = store
            .enqueue(plain_job("retry-me", 3))
            .await
            .unwrap()
            .unwrap();
        let mut states = Vec::new();
        for attempt in 1..=3 {
            let mut claimed = None;
            for _ in 0..200 {
                if let Some(j) = store.store().claim("w", 30_000).await.unwrap() {
                    claimed = Some(j);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let job = claimed.unwrap_or_else(|| panic!("attempt {attempt} never became claimable"));
            assert_eq!(job.attempts, attempt);
            let outcome = JobOutcome::Retry {
                error: format!("still down ({attempt})"),
                class: ErrorClass::Transient,
                after_ms: None,
            };
            states.push(store.store().finish(&job.id, "w", outcome).await.unwrap());
        }
        assert_eq!(
            states,
            vec![JobState::Queued, JobState::Queued, JobState::Failed]
        );
        let failed = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.attempts, 3);
        assert_eq!(failed.last_error.as_deref(), Some("still down (3)"));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(store.store().claim("w", 30_000).await.unwrap().is_none());

        let audit = store.audit_for_job(&id).await.unwrap();
        assert_eq!(steps(&audit), vec!["retried", "retried", "failed"]);
        assert_eq!(
            audit[2].message,
            "Gave up after 3 of 3 attempts: still down (3)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_failed_release_and_replay() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_w", true), Some(job_for("evt_w")))
            .await
            .unwrap();

        // Wait: the job sleeps, the attempt is given back, and it can be woken early.
        let job = store.store().claim("w", 30_000).await.unwrap().unwrap();
        let state = store
            .store()
            .finish(
                &job.id,
                "w",
                JobOutcome::Wait {
                    reason: "product prod_X has no NetSuite item mapping".into(),
                    after_ms: 3_600_000,
                },
            )
            .await
            .unwrap();
        assert_eq!(state, JobState::Waiting);
        let waiting = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(waiting.attempts, 0);
        assert!(store.store().claim("w", 30_000).await.unwrap().is_none());
        assert_eq!(store.wake_waiting_jobs("prod_Y").await.unwrap(), 0);
        assert_eq!(store.wake_waiting_jobs("prod_X").await.unwrap(), 1);

        // Release at shutdown: back to queued now, attempt given back.
        let job = store
            .store()
            .claim("w", 30_000)
            .await
            .unwrap()
            .expect("woken job");
        assert_eq!(job.attempts, 1);
        assert!(!store.store().release(&job.id, "other").await.unwrap());
        assert!(store.store().release(&job.id, "w").await.unwrap());
        let released = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!((released.state, released.attempts), (JobState::Queued, 0));

        // Failed permanently, then replayed.
        let job = store.store().claim("w", 30_000).await.unwrap().unwrap();
        let state = store
            .store()
            .finish(
                &job.id,
                "w",
                JobOutcome::Failed {
                    error: "customer deleted".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(state, JobState::Failed);
        let listed = store
            .list_events(&mlc_store::EventFilter {
                status: Some("failed".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].last_error.as_deref(), Some("customer deleted"));
        assert_eq!(listed[0].attempts, 1);

        assert!(store.requeue_event("evt_w").await.unwrap());
        let replayed = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!((replayed.state, replayed.attempts), (JobState::Queued, 0));
        assert!(!store.requeue_event("evt_unknown").await.unwrap());

        let audit = store.audit_for_event("evt_w").await.unwrap();
        assert_eq!(
            steps(&audit),
            vec!["received", "waiting", "released", "failed", "replayed"]
        );
        assert!(audit[1].message.contains("prod_X"), "{}", audit[1].message);
        assert!(
            store
                .store()
                .oldest_queued_age_ms()
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requeue_where_replays_failed_jobs_since_a_time() {
    for db in backends().await {
        let store = db.scoped().await;
        for k in ["a", "b"] {
            store.enqueue(plain_job(k, 1)).await.unwrap();
            let job = store.store().claim("w", 30_000).await.unwrap().unwrap();
            store
                .store()
                .finish(&job.id, "w", JobOutcome::Failed { error: "x".into() })
                .await
                .unwrap();
        }
        let far_future = now_millis() + 3_600_000;
        assert_eq!(
            store
                .requeue_where(JobState::Failed, Some(far_future))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store.requeue_where(JobState::Running, None).await.unwrap(),
            0
        );
        assert_eq!(
            store.requeue_where(JobState::Failed, None).await.unwrap(),
            2
        );
        let counts: HashMap<_, _> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts[&JobState::Queued], 2);
        assert_eq!(counts[&JobState::Failed], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_lease_is_claimed_again_by_another_worker() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store.enqueue(plain_job("lease", 5)).await.unwrap().unwrap();
        // A worker claims with a 1 ms lease and "dies" (never heartbeats or finishes).
        let dead = store
            .store()
            .claim("dead-worker", 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dead.id, id);
        let mut taken = None;
        for _ in 0..200 {
            if let Some(j) = store.store().claim("live-worker", 30_000).await.unwrap() {
                taken = Some(j);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let job = taken.expect("the expired job is claimable");
        assert_eq!(job.id, id);
        assert_eq!(job.attempts, 2);
        assert_eq!(job.locked_by.as_deref(), Some("live-worker"));
        // The dead worker's late outcome is refused.
        assert!(matches!(
            store
                .store()
                .finish(&id, "dead-worker", JobOutcome::Succeeded)
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        assert!(matches!(
            store.store().heartbeat(&id, "dead-worker", 30_000).await,
            Err(StoreError::LeaseLost(_))
        ));
        assert_eq!(
            store
                .store()
                .finish(&id, "live-worker", JobOutcome::Succeeded)
                .await
                .unwrap(),
            JobState::Succeeded
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_job_on_its_last_attempt_is_failed_not_rerun() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store
            .enqueue(plain_job("poison", 1))
            .await
            .unwrap()
            .unwrap();
        store
            .store()
            .claim("crashing-worker", 1)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(store.store().claim("w", 30_000).await.unwrap().is_none());
        assert_eq!(store.store().fail_abandoned_jobs().await.unwrap(), 1);
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Failed);
        let audit = store.audit_for_job(&id).await.unwrap();
        assert_eq!(steps(&audit), vec!["failed"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_job_and_each_job_runs_once() {
    const JOBS: usize = 1600;
    const CLAIMERS: usize = 8;
    for db in backends().await {
        let store = db.scoped().await;
        for i in 0..JOBS {
            store
                .enqueue(plain_job(&format!("job-{i}"), 3))
                .await
                .unwrap();
        }
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let overlaps = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for w in 0..CLAIMERS {
            let (store, running, runs, overlaps) = (
                store.clone(),
                running.clone(),
                runs.clone(),
                overlaps.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let worker = format!("w{w}");
                while let Some(job) = store.store().claim(&worker, 30_000).await.unwrap() {
                    if !running.lock().unwrap().insert(job.id.clone()) {
                        overlaps.lock().unwrap().push(job.id.clone());
                    }
                    *runs.lock().unwrap().entry(job.id.clone()).or_default() += 1;
                    tokio::task::yield_now().await;
                    running.lock().unwrap().remove(&job.id);
                    store
                        .store()
                        .finish(&job.id, &worker, JobOutcome::Succeeded)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let overlaps = overlaps.lock().unwrap().clone();
        assert!(overlaps.is_empty(), "jobs run twice at once: {overlaps:?}");
        let runs = runs.lock().unwrap().clone();
        assert_eq!(runs.len(), JOBS, "{:?}", db.backend());
        assert!(runs.values().all(|n| *n == 1));
        let counts: HashMap<_, _> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts[&JobState::Succeeded], JOBS as i64);
    }
}
