//! The posting pipeline: which events the connector acts on, and the job handler the worker runs.
//!
//! The handler is the seam between the queue and the posting logic: it receives a claimed job
//! and answers with a `JobOutcome` (succeeded, retry, wait for a person, failed).

use mlc_store::{Job, JobOutcome, NewAudit, Store};

/// Job kind for "process this Stripe event".
pub const PROCESS_EVENT: &str = "process_event";

/// Event types the connector acts on. Everything else is acknowledged and recorded as ignored,
/// so Stripe stops retrying it.
pub const HANDLED_EVENT_TYPES: &[&str] = &[
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "charge.succeeded",
    "charge.captured",
    "charge.failed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
];

pub fn handles(event_type: &str) -> bool {
    HANDLED_EVENT_TYPES.contains(&event_type)
}

/// The handler `serve` runs until posting is configured: it records that the event was accepted
/// for processing and completes the job.
#[derive(Clone)]
pub struct AcceptOnly {
    pub store: Store,
}

impl mlc_store::runner::JobHandler for AcceptOnly {
    async fn handle(&self, job: Job) -> JobOutcome {
        let audit = NewAudit {
            event_id: job.event_id.clone(),
            job_id: Some(job.id.clone()),
            step: "processed".into(),
            message: "event accepted; NetSuite posting is not configured on this instance".into(),
            ..NewAudit::default()
        };
        match self.store.append_audit(audit).await {
            Ok(()) => JobOutcome::Succeeded,
            Err(e) => JobOutcome::Retry {
                error: e.to_string(),
                class: mlc_core::ErrorClass::Transient,
                after_ms: None,
            },
        }
    }
}
