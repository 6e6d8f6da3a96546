//! The job queue: start/finish transitions under apalis task IDs, retries, re-runs after a crash,
//! stale tasks, replay, waking waiting jobs, and the apalis task rows each change pushes. Every
//! test runs on every configured backend. (apalis itself owns liveness: claiming a task for one
//! worker, heartbeats, re-running a dead worker's task; the jobs crate tests that.)

mod common;

use std::collections::HashMap;

use common::{apalis_task_count, apalis_tasks, event, job_for, plain_job, steps, unknown_task};
use mlc_core::{ErrorClass, now_millis};
use mlc_store::testing::{self, backends, start_next};
use mlc_store::{
    Jitter, JobOutcome, JobState, RecordOutcome, RetryPolicy, Start, Store, StoreError,
    StoreOptions,
};

/// The one `Pending` apalis row of `task_id`, as `run_at` in unix ms.
async fn pending_task(store: &Store, task_id: &str) -> i64 {
    let rows = apalis_tasks(store, task_id).await;
    assert_eq!(
        rows.len(),
        1,
        "{:?}: rows of task {task_id}: {rows:?}",
        store.backend()
    );
    assert_eq!(rows[0].0, "Pending", "{:?}", store.backend());
    rows[0].1
}

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
        // One apalis task carries it; the duplicate pushed none.
        let task = job.task_id.expect("an enqueued job has its task");
        assert!(pending_task(store.store(), &task).await <= now_millis());
        assert_eq!(apalis_task_count(store.store()).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_and_finish_transitions() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_q1", true), Some(job_for("evt_q1")))
            .await
            .unwrap();
        let (job, task) = start_next(store.store(), "w1")
            .await
            .expect("a job to start");
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.locked_by.as_deref(), Some("w1"));
        assert_eq!(job.task_id.as_deref(), Some(task.as_str()));
        assert_eq!(job.event_id.as_deref(), Some("evt_q1"));
        // Nothing else is due.
        assert!(start_next(store.store(), "w2").await.is_none());
        // Another task cannot finish it.
        assert!(matches!(
            store
                .store()
                .finish(&job.id, &unknown_task(), JobOutcome::Succeeded)
                .await,
            Err(StoreError::NotRunning(_))
        ));
        let state = store
            .store()
            .finish(&job.id, &task, JobOutcome::Succeeded)
            .await
            .unwrap();
        assert_eq!(state, JobState::Succeeded);
        let done = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.locked_by, None);
        // Finishing twice is refused: the job is no longer running.
        assert!(matches!(
            store
                .store()
                .finish(&job.id, &task, JobOutcome::Succeeded)
                .await,
            Err(StoreError::NotRunning(_))
        ));
        // A re-run of the finished task (apalis re-ran it) does nothing.
        assert!(matches!(
            store.store().start(&job.id, &task, "w1").await.unwrap(),
            Start::Stale
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
async fn failed_attempt_is_rescheduled_by_the_default_policy_on_a_new_task() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store
            .enqueue(plain_job("retry-later", 3))
            .await
            .unwrap()
            .unwrap();
        let (job, task) = start_next(store.store(), "w").await.unwrap();
        let tasks_before = apalis_task_count(store.store()).await;
        let before = now_millis();
        let state = store
            .store()
            .finish(
                &job.id,
                &task,
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
        assert_eq!(queued.locked_by, None);
        assert_eq!(queued.last_error.as_deref(), Some("NetSuite answered 503"));
        // First retry: 5 s ± 20%.
        assert!(
            queued.run_at >= before + 4_000 && queued.run_at <= after + 6_000,
            "run_at {} is not 5 s ± 20% after {before}",
            queued.run_at
        );
        // The next attempt rides a new apalis task: exactly one new row, pending, in this
        // store's queue, due when the job is (not at once).
        let next = queued.task_id.clone().expect("a retried job has its task");
        assert_ne!(next, task);
        assert_eq!(apalis_task_count(store.store()).await, tasks_before + 1);
        let due = pending_task(store.store(), &next).await;
        assert!(
            due > now_millis(),
            "{:?}: the retry is due at once",
            db.backend()
        );
        // SQLite keeps whole seconds, rounded up: never earlier than the job's run_at.
        assert!(
            due >= queued.run_at - 1 && due < queued.run_at + 1_000,
            "{:?}: task due {due}, job due {}",
            db.backend(),
            queued.run_at
        );
        // Not runnable before its time, and the finished attempt's task is spent.
        assert!(start_next(store.store(), "w").await.is_none());
        assert!(matches!(
            store.store().start(&id, &task, "w").await.unwrap(),
            Start::Stale
        ));
        let audit = store.audit_for_job(&id).await.unwrap();
        assert_eq!(steps(&audit), vec!["retried"]);
        assert!(
            audit[0]
                .message
                .contains("Attempt 1 of 3 failed (transient): NetSuite answered 503"),
            "{}",
            audit[0].message
        );
        // Its own task starts it (once due; `start` itself does not look at the time).
        let Start::Run(again) = store.store().start(&id, &next, "w").await.unwrap() else {
            panic!("the new task starts the job")
        };
        assert_eq!(again.attempts, 2);
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
            let mut started = None;
            for _ in 0..200 {
                if let Some(j) = start_next(store.store(), "w").await {
                    started = Some(j);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let (job, task) =
                started.unwrap_or_else(|| panic!("attempt {attempt} never became due"));
            assert_eq!(job.attempts, attempt);
            let outcome = JobOutcome::Retry {
                error: format!("still down ({attempt})"),
                class: ErrorClass::Transient,
                after_ms: None,
            };
            states.push(store.store().finish(&job.id, &task, outcome).await.unwrap());
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
        assert!(start_next(store.store(), "w").await.is_none());
        // The enqueue's task and one per retry; giving up pushes none.
        assert_eq!(apalis_task_count(store.store()).await, 3);

        let audit = store.audit_for_job(&id).await.unwrap();
        assert_eq!(steps(&audit), vec!["retried", "retried", "failed"]);
        assert_eq!(
            audit[2].message,
            "Gave up after 3 of 3 attempts: still down (3)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_rerun_after_a_crash_failed_and_replay() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_w", true), Some(job_for("evt_w")))
            .await
            .unwrap();

        // Wait: the job sleeps on a new task, the attempt is given back, and it can be woken early.
        let (job, task) = start_next(store.store(), "w").await.unwrap();
        let state = store
            .store()
            .finish(
                &job.id,
                &task,
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
        assert_eq!(waiting.locked_by, None);
        let wait_task = waiting.task_id.clone().unwrap();
        assert_ne!(wait_task, task);
        assert!(pending_task(store.store(), &wait_task).await > now_millis() + 3_000_000);
        assert!(start_next(store.store(), "w").await.is_none());
        assert_eq!(store.wake_waiting_jobs("prod_Y").await.unwrap(), 0);
        assert_eq!(store.wake_waiting_jobs("prod_X").await.unwrap(), 1);

        // A re-run after a crash: the worker running the woken job dies without finishing it, and
        // apalis runs the same task again. Attempts remain, so it runs again, one attempt more.
        let (job, task) = start_next(store.store(), "w").await.expect("woken job");
        assert_eq!(task, wait_task);
        assert_eq!(job.attempts, 1);
        let Start::Run(rerun) = store.store().start(&job.id, &task, "w2").await.unwrap() else {
            panic!("a crashed attempt is run again while attempts remain")
        };
        assert_eq!(rerun.id, job.id);
        assert_eq!(rerun.state, JobState::Running);
        assert_eq!(rerun.attempts, 2);
        assert_eq!(rerun.locked_by.as_deref(), Some("w2"));
        assert_eq!(rerun.task_id.as_deref(), Some(task.as_str()));

        // Failed permanently, then replayed.
        let state = store
            .store()
            .finish(
                &job.id,
                &task,
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
        assert_eq!(listed[0].attempts, 2);

        assert!(store.requeue_event("evt_w").await.unwrap());
        let replayed = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!((replayed.state, replayed.attempts), (JobState::Queued, 0));
        assert!(!store.requeue_event("evt_unknown").await.unwrap());

        let audit = store.audit_for_event("evt_w").await.unwrap();
        assert_eq!(
            steps(&audit),
            vec!["received", "waiting", "failed", "replayed"]
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
            let (job, task) = start_next(store.store(), "w").await.unwrap();
            store
                .store()
                .finish(&job.id, &task, JobOutcome::Failed { error: "x".into() })
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
        assert_eq!(apalis_task_count(store.store()).await, 2);
        assert_eq!(
            store.requeue_where(JobState::Failed, None).await.unwrap(),
            2
        );
        let counts: HashMap<_, _> = store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts[&JobState::Queued], 2);
        assert_eq!(counts[&JobState::Failed], 0);
        // Each replayed job has a fresh task, due now.
        assert_eq!(apalis_task_count(store.store()).await, 4);
        for _ in 0..2 {
            let (job, task) = start_next(store.store(), "w").await.unwrap();
            assert!(pending_task(store.store(), &task).await <= now_millis());
            assert_eq!(job.attempts, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_on_the_last_attempt_gives_up_instead_of_rerunning() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store
            .enqueue(plain_job("poison", 1))
            .await
            .unwrap()
            .unwrap();
        // The worker starts it and dies (the job may be what crashes it): no outcome.
        let (job, task) = start_next(store.store(), "crashing-worker").await.unwrap();
        assert_eq!((job.id.as_str(), job.attempts), (id.as_str(), 1));
        // apalis runs the task again: no attempt left, so the job fails instead of running.
        assert!(matches!(
            store.store().start(&id, &task, "w").await.unwrap(),
            Start::GaveUp
        ));
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.locked_by, None);
        assert!(job.last_error.is_some());
        let audit = store.audit_for_job(&id).await.unwrap();
        assert_eq!(steps(&audit), vec!["failed"]);
        assert!(
            audit[0].message.starts_with("Gave up after 1 attempts"),
            "{}",
            audit[0].message
        );
        // Once given up, the task is spent, and the dead worker's late outcome is refused.
        assert!(matches!(
            store.store().start(&id, &task, "w").await.unwrap(),
            Start::Stale
        ));
        assert!(matches!(
            store
                .store()
                .finish(&id, &task, JobOutcome::Succeeded)
                .await,
            Err(StoreError::NotRunning(_))
        ));
        assert_eq!(steps(&store.audit_for_job(&id).await.unwrap()), ["failed"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_that_does_not_carry_the_job_is_stale() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store.enqueue(plain_job("stale", 3)).await.unwrap().unwrap();
        let task = store.get_job(&id).await.unwrap().unwrap().task_id.unwrap();
        // Some other task (e.g. one left over from before a replay) does not start the job.
        let other = unknown_task();
        assert!(matches!(
            store.store().start(&id, &other, "w").await.unwrap(),
            Start::Stale
        ));
        assert!(matches!(
            store
                .store()
                .finish(&id, &other, JobOutcome::Succeeded)
                .await,
            Err(StoreError::NotRunning(_))
        ));
        // Nor does a task name a job that does not exist.
        assert!(matches!(
            store
                .store()
                .start("no-such-job", &task, "w")
                .await
                .unwrap(),
            Start::Stale
        ));
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Queued, 0));

        // While it runs under its task, a stale task still neither starts nor finishes it.
        let Start::Run(running) = store.store().start(&id, &task, "w").await.unwrap() else {
            panic!("its own task starts it")
        };
        assert_eq!(running.attempts, 1);
        assert!(matches!(
            store.store().start(&id, &other, "w").await.unwrap(),
            Start::Stale
        ));
        assert!(matches!(
            store
                .store()
                .finish(&id, &other, JobOutcome::Succeeded)
                .await,
            Err(StoreError::NotRunning(_))
        ));
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Running, 1));
        assert!(store.audit_for_job(&id).await.unwrap().is_empty());
        assert_eq!(
            store
                .store()
                .finish(&id, &task, JobOutcome::Succeeded)
                .await
                .unwrap(),
            JobState::Succeeded
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recording_an_event_pushes_one_task_and_a_duplicate_delivery_none() {
    for db in backends().await {
        let store = db.scoped().await;
        assert_eq!(apalis_task_count(store.store()).await, 0);
        let first = store
            .record_event(&event("evt_t", true), Some(job_for("evt_t")))
            .await
            .unwrap();
        assert!(matches!(first, RecordOutcome::Stored));
        let job = store.get_job_for_event("evt_t").await.unwrap().unwrap();
        let task = job.task_id.clone().expect("the event's job has its task");
        assert!(pending_task(store.store(), &task).await <= now_millis());
        assert_eq!(apalis_task_count(store.store()).await, 1);

        let again = store
            .record_event(&event("evt_t", true), Some(job_for("evt_t")))
            .await
            .unwrap();
        assert!(matches!(again, RecordOutcome::Duplicate));
        assert_eq!(apalis_task_count(store.store()).await, 1);
        let same = store.get_job_for_event("evt_t").await.unwrap().unwrap();
        assert_eq!(same.task_id, job.task_id);

        // An event with no job (not handled) pushes no task.
        store
            .record_event(&event("evt_unhandled", false), None)
            .await
            .unwrap();
        assert_eq!(apalis_task_count(store.store()).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waking_waiting_jobs_pulls_their_tasks_forward() {
    for db in backends().await {
        let store = db.scoped().await;
        let mut waiting = HashMap::new();
        for (key, product) in [("wake-x", "prod_X"), ("wake-y", "prod_Y")] {
            store.enqueue(plain_job(key, 3)).await.unwrap();
            let (job, task) = start_next(store.store(), "w").await.unwrap();
            store
                .store()
                .finish(
                    &job.id,
                    &task,
                    JobOutcome::Wait {
                        reason: format!("product {product} has no NetSuite item mapping"),
                        after_ms: 3_600_000,
                    },
                )
                .await
                .unwrap();
            waiting.insert(product, job.id);
        }
        let task_of = async |id: &str| store.get_job(id).await.unwrap().unwrap().task_id.unwrap();
        let task_x = task_of(&waiting["prod_X"]).await;
        let task_y = task_of(&waiting["prod_Y"]).await;
        let hour_ahead = now_millis() + 3_000_000;
        assert!(pending_task(store.store(), &task_x).await > hour_ahead);
        assert!(pending_task(store.store(), &task_y).await > hour_ahead);

        assert_eq!(store.wake_waiting_jobs("prod_X").await.unwrap(), 1);
        let now = now_millis();
        let due_x = pending_task(store.store(), &task_x).await;
        assert!(
            due_x <= now + 1_000,
            "{:?}: woken task due {due_x}, now {now}",
            db.backend()
        );
        assert!(pending_task(store.store(), &task_y).await > hour_ahead);
        // The job keeps its task (no new row), and is due now too.
        assert_eq!(task_of(&waiting["prod_X"]).await, task_x);
        let woken = store.get_job(&waiting["prod_X"]).await.unwrap().unwrap();
        assert!(woken.run_at <= now_millis());
        let (job, task) = start_next(store.store(), "w").await.unwrap();
        assert_eq!(
            (job.id.as_str(), task.as_str()),
            (waiting["prod_X"].as_str(), task_x.as_str())
        );
        assert!(start_next(store.store(), "w").await.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_pushes_a_fresh_task_and_the_old_one_goes_stale() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_r", true), Some(job_for("evt_r")))
            .await
            .unwrap();
        let (job, task) = start_next(store.store(), "w").await.unwrap();
        // A running job is not replayed.
        assert!(!store.requeue_event("evt_r").await.unwrap());
        store
            .store()
            .finish(
                &job.id,
                &task,
                JobOutcome::Failed {
                    error: "bad".into(),
                },
            )
            .await
            .unwrap();
        let tasks_before = apalis_task_count(store.store()).await;

        assert!(store.requeue_event("evt_r").await.unwrap());
        let replayed = store.get_job(&job.id).await.unwrap().unwrap();
        let fresh = replayed.task_id.clone().unwrap();
        assert_ne!(fresh, task);
        assert_eq!(apalis_task_count(store.store()).await, tasks_before + 1);
        assert!(pending_task(store.store(), &fresh).await <= now_millis());
        // The old task (apalis may still hold it, e.g. re-running it) does nothing.
        assert!(matches!(
            store.store().start(&job.id, &task, "w").await.unwrap(),
            Start::Stale
        ));
        assert!(matches!(
            store
                .store()
                .finish(&job.id, &task, JobOutcome::Succeeded)
                .await,
            Err(StoreError::NotRunning(_))
        ));
        // The fresh one runs it, from its first attempt.
        let Start::Run(run) = store.store().start(&job.id, &fresh, "w").await.unwrap() else {
            panic!("the fresh task starts the replayed job")
        };
        assert_eq!(run.attempts, 1);
        // A second replay while it runs changes nothing; once finished, the task is spent.
        assert!(!store.requeue_event("evt_r").await.unwrap());
        store
            .store()
            .finish(&job.id, &fresh, JobOutcome::Succeeded)
            .await
            .unwrap();
        assert!(matches!(
            store.store().start(&job.id, &fresh, "w").await.unwrap(),
            Start::Stale
        ));
        assert_eq!(
            steps(&store.audit_for_event("evt_r").await.unwrap()),
            ["received", "failed", "replayed", "succeeded"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn defer_moves_an_unstarted_job_to_a_later_task() {
    for db in backends().await {
        let store = db.scoped().await;
        let id = store.enqueue(plain_job("defer", 3)).await.unwrap().unwrap();
        let task = store.get_job(&id).await.unwrap().unwrap().task_id.unwrap();
        assert_eq!(
            store
                .store()
                .defer(&id, &unknown_task(), 60_000)
                .await
                .unwrap(),
            None
        );
        let before = now_millis();
        let moved_to = store.store().defer(&id, &task, 60_000).await.unwrap();
        let job = store.get_job(&id).await.unwrap().unwrap();
        let later = job.task_id.clone().unwrap();
        assert_eq!(moved_to.as_deref(), Some(later.as_str()));
        assert_ne!(later, task);
        assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
        assert!(store.audit_for_job(&id).await.unwrap().is_empty());
        assert!(pending_task(store.store(), &later).await >= before + 59_000);
        assert!(matches!(
            store.store().start(&id, &task, "w").await.unwrap(),
            Start::Stale
        ));
        // Brought forward (its connection has a slot again): due now. A task that is not
        // waiting (here: none by that ID) is left alone.
        assert!(!store.store().pull_forward(&unknown_task()).await.unwrap());
        assert!(store.store().pull_forward(&later).await.unwrap());
        assert!(pending_task(store.store(), &later).await <= now_millis());
        // A job left running by a worker that died is deferred too when apalis re-runs its task
        // (or nothing would run it again): back to queued, on a new task, the attempt kept.
        let Start::Run(_) = store.store().start(&id, &later, "w").await.unwrap() else {
            panic!("the later task starts it")
        };
        assert!(store.store().defer(&id, &later, 0).await.unwrap().is_some());
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (JobState::Queued, 1));
        assert_ne!(job.task_id.as_deref(), Some(later.as_str()));
        let Start::Run(job) = store
            .store()
            .start(&id, job.task_id.as_deref().unwrap(), "w2")
            .await
            .unwrap()
        else {
            panic!("the new task starts it")
        };
        assert_eq!(job.attempts, 2);
        // A finished job is not.
        store
            .store()
            .finish(&id, job.task_id.as_deref().unwrap(), JobOutcome::Succeeded)
            .await
            .unwrap();
        assert_eq!(
            store
                .store()
                .defer(&id, job.task_id.as_deref().unwrap(), 0)
                .await
                .unwrap(),
            None
        );
    }
}
