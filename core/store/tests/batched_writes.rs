//! The worker's writes (starts, job outcomes, audit entries) go through the same group-commit
//! writer as the intake. These tests check what that design promises, on every backend: nothing
//! is lost, nothing is written twice, one caller's writes keep their order, a completed job is
//! completed, and a restart (or a crash before a write was committed) loses no event.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{event, job_for, steps, unknown_task};
use mlc_store::testing::{backends, start_next};
use mlc_store::{JobOutcome, JobState, NewAudit, Start, StoreError};

fn note(event_id: &str, job_id: &str, step: &str) -> NewAudit {
    NewAudit {
        event_id: Some(event_id.to_string()),
        job_id: Some(job_id.to_string()),
        step: step.into(),
        message: format!("{step} for {event_id}"),
        ..NewAudit::default()
    }
}

/// Intake, starts, a handler's audit entries and job outcomes all at once, from many tasks:
/// every job ends succeeded, and each event's audit trail is complete, once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_intake_and_worker_writes_lose_nothing_and_keep_order() {
    for db in backends().await {
        let store = db.scoped().await;
        const EVENTS: usize = 120;
        const WORKERS: usize = 6;
        // Intake in the background, while the workers already start jobs.
        let intake = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for k in 0..8 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in (k..EVENTS).step_by(8) {
                            let id = format!("evt_bw{i:03}");
                            store
                                .record_event(&event(&id, true), Some(job_for(&id)))
                                .await
                                .unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        };
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let (store, done) = (store.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut idle = 0;
                while idle < 2_000 {
                    let Some((job, task)) = start_next(store.store(), &worker).await else {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        if done.lock().unwrap().len() >= EVENTS {
                            break;
                        }
                        continue;
                    };
                    idle = 0;
                    let ev = job.event_id.clone().unwrap();
                    for step in ["fetched", "mapped", "posted"] {
                        store.append_audit(note(&ev, &job.id, step)).await.unwrap();
                    }
                    let state = store
                        .store()
                        .finish(&job.id, &task, JobOutcome::Succeeded)
                        .await
                        .unwrap();
                    assert_eq!(state, JobState::Succeeded);
                    done.lock().unwrap().push(job.id.clone());
                }
            }));
        }
        intake.await.unwrap();
        for w in workers {
            w.await.unwrap();
        }
        let done = done.lock().unwrap().clone();
        assert_eq!(done.len(), EVENTS, "every job started and finished once");
        assert_eq!(
            done.iter().collect::<HashSet<_>>().len(),
            EVENTS,
            "no job was started twice"
        );
        let counts = store.job_counts().await.unwrap();
        assert!(
            counts.contains(&(JobState::Succeeded, EVENTS as i64)),
            "{counts:?}"
        );
        for i in 0..EVENTS {
            let id = format!("evt_bw{i:03}");
            let audit = store.audit_for_event(&id).await.unwrap();
            assert_eq!(
                steps(&audit),
                ["received", "fetched", "mapped", "posted", "succeeded"],
                "{id}"
            );
            let job = store.get_job_for_event(&id).await.unwrap().unwrap();
            assert_eq!((job.state, job.attempts), (JobState::Succeeded, 1), "{id}");
            assert!(
                audit[1..]
                    .iter()
                    .all(|a| a.job_id.as_deref() == Some(&job.id))
            );
        }
    }
}

/// A finish under a task that does not carry the job (a stale one) changes nothing (and says
/// so), even when it is committed in the same batch as the rightful task's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_finish_changes_nothing_beside_a_valid_finish() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_ll", true), Some(job_for("evt_ll")))
            .await
            .unwrap();
        let (job, task) = start_next(store.store(), "owner").await.unwrap();
        let stale = unknown_task();
        let (a, b) = tokio::join!(
            store.store().finish(&job.id, &stale, JobOutcome::Succeeded),
            store.store().finish(
                &job.id,
                &task,
                JobOutcome::Failed {
                    error: "bad".into()
                }
            ),
        );
        assert!(matches!(a, Err(StoreError::NotRunning(_))), "{a:?}");
        assert_eq!(b.unwrap(), JobState::Failed);
        let audit = store.audit_for_event("evt_ll").await.unwrap();
        assert_eq!(steps(&audit), ["received", "failed"]);
        let job = store.get_job(&job.id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.locked_by, None);
    }
}

/// Closing the store commits every write already handed over (intake, audit, outcomes), and a
/// worker that died before its outcome was committed leaves its job `running`, started again when
/// apalis re-runs its task: after a restart nothing is lost and nothing is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_loses_no_write_and_no_event() {
    for db in backends().await {
        let store = db.scoped().await;
        for i in 0..10 {
            let id = format!("evt_rs{i}");
            store
                .record_event(&event(&id, true), Some(job_for(&id)))
                .await
                .unwrap();
        }
        // One worker starts them all, then dies.
        let mut jobs = Vec::new();
        while let Some(started) = start_next(store.store(), "w-dead").await {
            jobs.push(started);
        }
        assert_eq!(jobs.len(), 10);
        // Half finish; their writes are handed over without waiting, then the store closes.
        let mut pending = Vec::new();
        for (job, task) in &jobs[..5] {
            let (store, job, task) = (store.clone(), job.clone(), task.clone());
            pending.push(tokio::spawn(async move {
                let ev = job.event_id.clone().unwrap();
                store
                    .append_audit(note(&ev, &job.id, "posted"))
                    .await
                    .unwrap();
                store
                    .store()
                    .finish(&job.id, &task, JobOutcome::Succeeded)
                    .await
                    .unwrap()
            }));
        }
        for p in pending {
            assert_eq!(p.await.unwrap(), JobState::Succeeded);
        }
        store.store().close().await;
        // The other half crashed before any outcome was written. Restart:
        let store = db.scoped().await;
        assert_eq!(store.count_events().await.unwrap(), 10);
        // Their jobs are still `running` under the dead worker; nothing is due on its own.
        for (job, _) in &jobs[5..] {
            let job = store.get_job(&job.id).await.unwrap().unwrap();
            assert_eq!(job.state, JobState::Running);
            assert_eq!(job.locked_by.as_deref(), Some("w-dead"));
        }
        assert!(start_next(store.store(), "w-new").await.is_none());
        // apalis re-runs every task the dead worker held: the finished ones are stale, the
        // crashed ones run again, one attempt more.
        let mut again = Vec::new();
        for (job, task) in &jobs {
            match store.store().start(&job.id, task, "w-new").await.unwrap() {
                Start::Run(job) => again.push((job, task.clone())),
                Start::Stale => {}
                Start::GaveUp => panic!("{}: attempts remain", job.id),
            }
        }
        let again_ids: HashSet<_> = again.iter().map(|(j, _)| j.id.clone()).collect();
        let crashed: HashSet<_> = jobs[5..].iter().map(|(j, _)| j.id.clone()).collect();
        assert_eq!(
            again_ids, crashed,
            "only the unfinished jobs are started again"
        );
        for (job, task) in &again {
            assert_eq!(job.attempts, 2);
            assert_eq!(job.locked_by.as_deref(), Some("w-new"));
            store
                .store()
                .finish(&job.id, task, JobOutcome::Succeeded)
                .await
                .unwrap();
        }
        for (i, (job, _)) in jobs.iter().enumerate() {
            let ev = job.event_id.clone().unwrap();
            let audit = store.audit_for_event(&ev).await.unwrap();
            let want: &[&str] = if i < 5 {
                &["received", "posted", "succeeded"]
            } else {
                &["received", "succeeded"]
            };
            assert_eq!(steps(&audit), want, "{ev}");
            let job = store.get_job(&job.id).await.unwrap().unwrap();
            assert_eq!(job.state, JobState::Succeeded);
        }
        store.store().close().await;
    }
}
