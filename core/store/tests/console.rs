//! Read models of the operator console: search by NetSuite ID, activity buckets, the latest error
//! of each kind, postings of one object. Every test runs on every configured backend.

mod common;

use common::{event, job_for};
use mlc_core::now_millis;
use mlc_store::testing::backends;
use mlc_store::{EventFilter, NewAudit, NewPosting};

fn posting(object: &str, kind: &str, ns_id: &str) -> NewPosting {
    NewPosting {
        stripe_object_id: object.into(),
        kind: kind.into(),
        netsuite_record_type: "invoice".into(),
        netsuite_internal_id: ns_id.into(),
        external_id: format!("stripe_{object}"),
        event_id: None,
        amount_minor: 1250,
        currency: "usd".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_found_by_the_netsuite_record_they_produced() {
    for db in backends().await {
        let store = db.scoped().await;
        for id in ["evt_a", "evt_b"] {
            store
                .record_event(&event(id, true), Some(job_for(id)))
                .await
                .unwrap();
        }
        // `event()` names its object `in_<event id>`.
        store
            .record_posting(posting("in_evt_a", "invoice", "901"))
            .await
            .unwrap();
        store
            .record_posting(posting("in_evt_a", "payment", "902"))
            .await
            .unwrap();
        let find = |ns: &str| EventFilter {
            netsuite_id: Some(ns.into()),
            ..EventFilter::default()
        };
        for key in ["901", "902", "stripe_in_evt_a"] {
            let found = store.list_events(&find(key)).await.unwrap();
            let ids: Vec<_> = found.iter().map(|e| e.event_id.as_str()).collect();
            assert_eq!(ids, ["evt_a"], "{key} on {:?}", db.backend());
        }
        assert!(store.list_events(&find("903")).await.unwrap().is_empty());
        let postings = store.postings_for_object("in_evt_a").await.unwrap();
        let kinds: Vec<_> = postings.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds.len(), 2);
        assert!(kinds.contains(&"invoice") && kinds.contains(&"payment"));
        assert!(
            store
                .postings_for_object("in_evt_b")
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_counts_received_events_and_postings_per_bucket() {
    for db in backends().await {
        let store = db.scoped().await;
        let now = now_millis();
        for i in 0..3 {
            let id = format!("evt_act{i}");
            store
                .record_event(&event(&id, true), Some(job_for(&id)))
                .await
                .unwrap();
        }
        store
            .record_posting(posting("in_x", "invoice", "1"))
            .await
            .unwrap();
        let hour = 3_600_000;
        let buckets = store
            .activity(now - 24 * hour, now_millis(), hour)
            .await
            .unwrap();
        assert!(
            buckets.len() == 25 || buckets.len() == 26,
            "{}",
            buckets.len()
        );
        assert!(buckets.windows(2).all(|w| w[1].start - w[0].start == hour));
        let received: i64 = buckets.iter().map(|b| b.received).sum();
        let posted: i64 = buckets.iter().map(|b| b.posted).sum();
        assert_eq!((received, posted), (3, 1), "{:?}", db.backend());
        // Everything happened in the current bucket.
        let last = buckets.last().unwrap();
        assert_eq!((last.received, last.posted), (3, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_error_of_each_kind_is_found() {
    for db in backends().await {
        let store = db.scoped().await;
        assert!(
            store
                .last_error_containing("NetSuite: ")
                .await
                .unwrap()
                .is_none()
        );
        let add = |step: &str, message: &str| NewAudit {
            event_id: Some("evt_e".into()),
            step: step.into(),
            message: message.into(),
            ..NewAudit::default()
        };
        for (step, message) in [
            (
                "retried",
                "Attempt 1 of 12 failed (transient): NetSuite: 503 busy",
            ),
            (
                "retried",
                "Attempt 1 of 12 failed (transient): Stripe: 500 oops",
            ),
            ("posted", "NetSuite: invoice 5 created"),
            (
                "failed",
                "Failed permanently on attempt 1: NetSuite: 400 period closed",
            ),
            ("succeeded", "Job finished on attempt 2"),
        ] {
            store.append_audit(add(step, message)).await.unwrap();
        }
        let ns = store
            .last_error_containing("NetSuite: ")
            .await
            .unwrap()
            .unwrap();
        assert!(ns.message.contains("period closed"), "{}", ns.message);
        assert_eq!(ns.step, "failed");
        let stripe = store
            .last_error_containing("Stripe: ")
            .await
            .unwrap()
            .unwrap();
        assert!(stripe.message.contains("500 oops"));
    }
}
