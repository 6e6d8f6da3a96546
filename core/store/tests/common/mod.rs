//! Builders shared by the store's integration tests.
#![allow(dead_code)]

use mlc_core::now_millis;
use mlc_store::{NewEvent, NewJob};

/// A delivery as the intake would hand it over. The body contains bytes JSON re-serialisation
/// would change (spacing, key order, escaped unicode, a trailing newline) to prove byte-exactness.
pub fn event(id: &str, handled: bool) -> NewEvent {
    let body = format!(
        "{{\"id\":  \"{id}\", \"object\":\"event\",\"type\":\"invoice.paid\",\"data\":{{\"object\":{{\"id\":\"in_{id}\",\"name\":\"Caf\\u00e9 \u{2014} \u{1F600}\"}}}},\"created\":1700000000}}\n"
    );
    NewEvent {
        event_id: id.to_string(),
        event_type: if handled {
            "invoice.paid"
        } else {
            "customer.updated"
        }
        .to_string(),
        object_id: Some(format!("in_{id}")),
        livemode: false,
        api_version: Some("2025-03-31.basil".into()),
        stripe_created: 1_700_000_000,
        raw_body: body.into_bytes(),
        signature_header: format!("t=1700000000,v1=abc{id}"),
        received_at: now_millis(),
        handled,
    }
}

pub fn job_for(id: &str) -> NewJob {
    NewJob {
        kind: "process_event".into(),
        event_id: Some(id.to_string()),
        payload: serde_json::json!({ "event_id": id }),
        dedupe_key: format!("process_event:{id}"),
        max_attempts: 5,
        run_at: now_millis(),
    }
}

pub fn plain_job(key: &str, max_attempts: i32) -> NewJob {
    NewJob {
        kind: "test".into(),
        event_id: None,
        payload: serde_json::json!({ "key": key }),
        dedupe_key: key.to_string(),
        max_attempts,
        run_at: now_millis(),
    }
}

pub fn steps(entries: &[mlc_store::AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.step.clone()).collect()
}
