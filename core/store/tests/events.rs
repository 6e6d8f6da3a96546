//! Event intake: byte-exact storage, duplicates, one transaction with the job, durability across
//! reopen, concurrency and group commit. Every test runs on every configured backend.

mod common;

use std::collections::HashMap;

use common::{event, job_for, steps};
use mlc_store::testing::backends;
use mlc_store::{EventFilter, JobState, NewAudit, RecordOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_is_stored_byte_exact_and_read_back() {
    for db in backends().await {
        let store = db.scoped().await;
        let mut ev = event("evt_bytes", true);
        // Invalid UTF-8 too: the store keeps bytes, not text.
        ev.raw_body
            .extend_from_slice(&[0xff, 0x00, 0xfe, b'\r', b'\n']);
        let out = store
            .record_event(&ev, Some(job_for("evt_bytes")))
            .await
            .unwrap();
        assert_eq!(out, RecordOutcome::Stored, "{:?}", db.backend());
        let got = store.get_event("evt_bytes").await.unwrap().unwrap();
        assert_eq!(got.raw_body, ev.raw_body, "{:?}", db.backend());
        assert_eq!(got.signature_header, ev.signature_header);
        assert_eq!(got.event_type, "invoice.paid");
        assert_eq!(got.object_id.as_deref(), Some("in_evt_bytes"));
        assert_eq!(got.api_version.as_deref(), Some("2025-03-31.basil"));
        assert_eq!(got.received_at, ev.received_at);
        assert_eq!(got.stripe_created, 1_700_000_000);
        assert!(!got.livemode);
        assert!(got.handled);
        assert_eq!(got.deliveries, 1);
        assert!(store.get_event("evt_missing").await.unwrap().is_none());
        assert_eq!(store.count_events().await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_delivery_is_stored_once_and_audited() {
    for db in backends().await {
        let store = db.scoped().await;
        let ev = event("evt_dup", true);
        let first = store
            .record_event(&ev, Some(job_for("evt_dup")))
            .await
            .unwrap();
        let mut again = ev.clone();
        again.raw_body = b"{\"different\":true}".to_vec();
        let second = store
            .record_event(&again, Some(job_for("evt_dup")))
            .await
            .unwrap();
        assert_eq!(
            (first, second),
            (RecordOutcome::Stored, RecordOutcome::Duplicate)
        );
        let got = store.get_event("evt_dup").await.unwrap().unwrap();
        assert_eq!(got.deliveries, 2);
        assert_eq!(got.raw_body, ev.raw_body, "the first body is kept");
        assert_eq!(store.count_events().await.unwrap(), 1);
        let counts = store.job_counts().await.unwrap();
        assert!(counts.contains(&(JobState::Queued, 1)), "{counts:?}");
        let audit = store.audit_for_event("evt_dup").await.unwrap();
        assert_eq!(steps(&audit), vec!["received", "duplicate_delivery"]);
        assert!(
            audit[1].message.contains("delivery 2"),
            "{}",
            audit[1].message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_and_job_are_recorded_together_and_ignored_events_get_no_job() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_handled", true), Some(job_for("evt_handled")))
            .await
            .unwrap();
        store
            .record_event(&event("evt_ignored", false), None)
            .await
            .unwrap();

        let job = store
            .get_job_for_event("evt_handled")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.kind, "process_event");
        assert_eq!(job.attempts, 0);
        assert_eq!(
            job.payload,
            serde_json::json!({ "event_id": "evt_handled" })
        );
        let audit = store.audit_for_event("evt_handled").await.unwrap();
        assert_eq!(steps(&audit), vec!["received"]);
        assert_eq!(audit[0].job_id.as_deref(), Some(job.id.as_str()));

        assert!(
            store
                .get_job_for_event("evt_ignored")
                .await
                .unwrap()
                .is_none()
        );
        let audit = store.audit_for_event("evt_ignored").await.unwrap();
        assert_eq!(steps(&audit), vec!["received", "ignored"]);
        assert!(audit[1].message.contains("customer.updated"));

        // The listing shows the job state, or `ignored`.
        let all = store.list_events(&EventFilter::default()).await.unwrap();
        let status: HashMap<_, _> = all
            .iter()
            .map(|s| (s.event_id.as_str(), s.status.as_str()))
            .collect();
        assert_eq!(status["evt_handled"], "queued");
        assert_eq!(status["evt_ignored"], "ignored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_survives_reopening() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .record_event(&event("evt_persist", true), Some(job_for("evt_persist")))
            .await
            .unwrap();
        store.store().close().await;
        drop(store);

        let reopened = db.scoped().await;
        let ev = reopened.get_event("evt_persist").await.unwrap().unwrap();
        assert_eq!(ev.raw_body, event("evt_persist", true).raw_body);
        let job = reopened
            .get_job_for_event("evt_persist")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.state, JobState::Queued);
        // And the reopened store is writable and still deduplicates.
        let again = reopened
            .record_event(&event("evt_persist", true), Some(job_for("evt_persist")))
            .await
            .unwrap();
        assert_eq!(again, RecordOutcome::Duplicate);
        reopened.store().ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_of_one_event_store_it_once() {
    for db in backends().await {
        let store = db.scoped().await;
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .record_event(&event("evt_race", true), Some(job_for("evt_race")))
                    .await
            }));
        }
        let mut stored = 0;
        let mut dup = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                RecordOutcome::Stored => stored += 1,
                RecordOutcome::Duplicate => dup += 1,
            }
        }
        assert_eq!((stored, dup), (1, 39), "{:?}", db.backend());
        assert_eq!(store.count_events().await.unwrap(), 1);
        assert_eq!(
            store
                .get_event("evt_race")
                .await
                .unwrap()
                .unwrap()
                .deliveries,
            40
        );
        let audit = store.audit_for_event("evt_race").await.unwrap();
        assert_eq!(audit.iter().filter(|a| a.step == "received").count(), 1);
        assert_eq!(
            audit
                .iter()
                .filter(|a| a.step == "duplicate_delivery")
                .count(),
            39
        );
        let total_jobs: i64 = store.job_counts().await.unwrap().iter().map(|c| c.1).sum();
        assert_eq!(total_jobs, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_answers_every_caller_with_its_own_outcome() {
    for db in backends().await {
        let store = db.scoped().await;
        // 300 distinct events, each delivered twice (handled ones with a job, every 3rd ignored),
        // all at once from separate tasks.
        let mut tasks = Vec::new();
        for i in 0..300 {
            for copy in 0..2 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let id = format!("evt_gc_{i:04}");
                    let handled = i % 3 != 0;
                    let job = handled.then(|| job_for(&id));
                    let out = store.record_event(&event(&id, handled), job).await;
                    (id, copy, out)
                }));
            }
        }
        let mut per_event: HashMap<String, Vec<RecordOutcome>> = HashMap::new();
        for t in tasks {
            let (id, _copy, out) = t.await.unwrap();
            per_event.entry(id).or_default().push(out.unwrap());
        }
        assert_eq!(per_event.len(), 300);
        for (id, outs) in &per_event {
            let stored = outs.iter().filter(|o| **o == RecordOutcome::Stored).count();
            assert_eq!(stored, 1, "{id}: {outs:?}");
            assert_eq!(outs.len(), 2);
        }
        assert_eq!(store.count_events().await.unwrap(), 300);
        let counts = store.job_counts().await.unwrap();
        assert!(counts.contains(&(JobState::Queued, 200)), "{counts:?}");
        let ignored = store
            .list_events(&EventFilter {
                status: Some("ignored".into()),
                limit: 1000,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ignored.len(), 100);
        let ev = store.get_event("evt_gc_0007").await.unwrap().unwrap();
        assert_eq!(ev.deliveries, 2);
        assert_eq!(ev.raw_body, event("evt_gc_0007", true).raw_body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_events_filters_and_orders_newest_first() {
    for db in backends().await {
        let store = db.scoped().await;
        for (i, (id, handled)) in [("evt_a", true), ("evt_b", false), ("evt_c", true)]
            .into_iter()
            .enumerate()
        {
            let mut ev = event(id, handled);
            ev.received_at = 1_000_000 + i as i64 * 1000;
            store
                .record_event(&ev, handled.then(|| job_for(id)))
                .await
                .unwrap();
        }
        let ids =
            |v: Vec<mlc_store::EventSummary>| v.into_iter().map(|s| s.event_id).collect::<Vec<_>>();
        let all = store.list_events(&EventFilter::default()).await.unwrap();
        assert_eq!(ids(all), vec!["evt_c", "evt_b", "evt_a"]);

        let by_object = store
            .list_events(&EventFilter {
                stripe_id: Some("in_evt_b".into()),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(by_object), vec!["evt_b"]);
        let by_id = store
            .list_events(&EventFilter {
                stripe_id: Some("evt_c".into()),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(by_id), vec!["evt_c"]);

        let queued_of_type = store
            .list_events(&EventFilter {
                status: Some("queued".into()),
                event_type: Some("invoice.paid".into()),
                received_after: Some(1_000_500),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(queued_of_type), vec!["evt_c"]);

        let page = store
            .list_events(&EventFilter {
                received_before: Some(1_002_000),
                limit: 1,
                offset: 1,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(page), vec!["evt_a"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_is_append_only_and_ordered() {
    for db in backends().await {
        let store = db.scoped().await;
        for step in ["fetched", "mapped", "posted"] {
            store
                .append_audit(NewAudit {
                    event_id: Some("evt_audit".into()),
                    stripe_object_id: Some("in_1".into()),
                    step: step.into(),
                    message: format!("{step} ok"),
                    data: Some(serde_json::json!({ "netsuite_id": "123" })),
                    ..NewAudit::default()
                })
                .await
                .unwrap();
        }
        let audit = store.audit_for_event("evt_audit").await.unwrap();
        assert_eq!(steps(&audit), vec!["fetched", "mapped", "posted"]);
        assert!(audit.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(
            audit[2].data,
            Some(serde_json::json!({ "netsuite_id": "123" }))
        );
        assert_eq!(audit[0].message, "fetched ok");

        // No API edits the log, and the database itself refuses edits made behind its back.
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(db.url()).await.unwrap();
        let update = sqlx::query("UPDATE audit SET message = 'forged'")
            .execute(&mut conn)
            .await;
        let err = update.expect_err("update must be refused").to_string();
        assert!(err.contains("append-only"), "{err}");
        let delete = sqlx::query("DELETE FROM audit").execute(&mut conn).await;
        assert!(delete.is_err());
        let audit = store.audit_for_event("evt_audit").await.unwrap();
        assert_eq!(audit.len(), 3);
        assert_eq!(audit[0].message, "fetched ok");
    }
}
