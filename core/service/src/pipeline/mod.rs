//! The posting pipeline: which events the connector acts on, and the job handler the worker runs.
//!
//! The handler is the seam between the queue and the posting logic: it receives a claimed job
//! and answers with a `JobOutcome` (succeeded, retry, wait for a person, failed). For each event
//! it re-fetches the object from Stripe (never trusting the webhook body), resolves the NetSuite
//! customer and items, builds the documents with the pure [`mapping`], and writes them with a
//! safe create keyed by external ID, so no delivery order or count posts anything twice.

mod credit_notes;
mod disputes;
mod history;
mod locks;
pub mod mapping;
pub use history::{Amounts, CustomerReport, DryRunReport, UnmappedProductReport, WouldPost};
mod payouts;
mod post;
mod reconcile;
pub use reconcile::{
    CurrencyReconciliation, Difference, NotReconciled, PayoutReconciliation, ReconciliationReport,
    Term, period_of, window_of,
};
mod reference;
mod refunds;
mod resolve;
mod reversals;

use std::sync::Arc;

use mlc_core::{Classify, ErrorClass};
use mlc_netsuite::{NetSuiteClient, NetSuiteError};
use mlc_store::{ConnectionStore, Job, JobOutcome, NewAudit, StoreError};
use mlc_stripe::{FactsError, StripeClient, StripeError};

use crate::config::{InvoiceTrigger, PostingConfig, ReferenceConfig};
use mapping::{MappingError, PostingSettings};

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
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "product.created",
    "product.updated",
    "product.deleted",
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
    "payout.paid",
    "payout.reconciliation_completed",
    "payout.failed",
];

/// Every item of a Stripe list, page by page: `page` fetches the page after the given ID (the
/// last of the previous page), until Stripe says there is no more.
pub(super) async fn all_pages<T, F, Fut>(
    mut page: F,
    id: fn(&T) -> &str,
) -> Result<Vec<T>, PipelineError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<mlc_stripe::models::List<T>, StripeError>>,
{
    let mut all: Vec<T> = Vec::new();
    loop {
        let after = all.last().map(|t| id(t).to_string());
        let list = page(after).await?;
        let more = list.has_more && !list.data.is_empty();
        all.extend(list.data);
        if !more {
            return Ok(all);
        }
    }
}

pub fn handles(event_type: &str) -> bool {
    HANDLED_EVENT_TYPES.contains(&event_type)
}

/// The one JSON rule for event bodies: intake accepts only what parses as a JSON value, which
/// is exactly what the console parses to show it (`events show`, the dashboard). A body that
/// serde could skip over but not hold (nesting past its depth limit, invalid UTF-8 or lone
/// surrogates in fields the envelope does not read) is refused, not stored unshowable.
pub fn parse_event_body(raw: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_slice(raw)
}

/// [`parse_event_body`]'s verdict without building the value, for the intake: the same parser
/// walks the body the same way (`deserialize_any` all the way down, so the same depth limit,
/// UTF-8, escape and number checks, and the same error), but keeps nothing: a 4 KB event's
/// `Value` is hundreds of allocations, about a tenth of `serve`'s CPU per webhook.
pub fn check_event_body(raw: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    serde::Deserialize::deserialize(&mut de).map(|JsonChecked| ())?;
    de.end()
}

/// Any JSON value, read as [`serde_json::Value`] reads it and then forgotten.
struct JsonChecked;

impl<'de> serde::Deserialize<'de> for JsonChecked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonChecked)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonChecked {
    type Value = JsonChecked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<JsonChecked>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_key::<JsonChecked>()?.is_some() {
            map.next_value::<JsonChecked>()?;
        }
        Ok(self)
    }
}

/// Why processing an event stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("Stripe: {0}")]
    Stripe(#[from] StripeError),
    #[error("NetSuite: {0}")]
    NetSuite(#[from] NetSuiteError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Facts(#[from] FactsError),
    #[error("{0}")]
    Mapping(#[from] MappingError),
    /// Products without a NetSuite item; the message names them and says what to do.
    #[error("{0}")]
    Unmapped(String),
    #[error("{0}")]
    NeedsPerson(String),
    #[error("{0}")]
    Permanent(String),
    /// Worth running again soon (a mapping arrived while this run looked for it).
    #[error("{0}")]
    Again(String),
}

impl PipelineError {
    /// The least wait before the next attempt that Stripe or NetSuite asked for (a 429's
    /// `Retry-After`; NetSuite's concurrency limit), if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            PipelineError::Stripe(e) => e.retry_after(),
            PipelineError::NetSuite(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl Classify for PipelineError {
    fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Stripe(e) => e.class(),
            PipelineError::NetSuite(e) => e.class(),
            PipelineError::Store(e) => e.class(),
            PipelineError::Facts(e) => e.class(),
            PipelineError::Mapping(MappingError::UnmappedProducts(_)) => ErrorClass::NeedsPerson,
            PipelineError::Mapping(e) => e.class(),
            PipelineError::Unmapped(_) | PipelineError::NeedsPerson(_) => ErrorClass::NeedsPerson,
            PipelineError::Permanent(_) => ErrorClass::Permanent,
            PipelineError::Again(_) => ErrorClass::Transient,
        }
    }
}

/// The job handler that posts Stripe events into NetSuite.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    store: ConnectionStore,
    stripe: StripeClient,
    netsuite: NetSuiteClient,
    posting: PostingConfig,
    /// `None`: reference-data events are acknowledged and not synced.
    reference: Option<ReferenceConfig>,
    settings: PostingSettings,
    locks: locks::KeyedLocks,
    /// Customer and item lookups sharing SuiteQL queries (see `resolve::Shared`).
    lookups: resolve::Lookups,
}

impl Pipeline {
    pub fn new(
        store: ConnectionStore,
        stripe: StripeClient,
        netsuite: NetSuiteClient,
        posting: PostingConfig,
    ) -> Self {
        let settings = PostingSettings {
            fee_mode: posting.fees,
            time_zone: posting.time_zone.clone(),
            subsidiary: posting.subsidiary.clone(),
            discount_item: posting.discount_item.clone(),
            tax_item: posting.tax_item.clone(),
            fee_item: posting.fee_item.clone(),
            payment_account: posting.payment_account.clone(),
            fee_expense_account: posting.fee_expense_account.clone(),
            fee_clearing_account: posting.fee_clearing_account.clone(),
            stripe_id_field: posting.stripe_id_field.clone(),
            stripe_customer_field: posting.stripe_customer_field.clone(),
        };
        Pipeline {
            inner: Arc::new(Inner {
                store,
                stripe,
                netsuite,
                posting,
                reference: None,
                settings,
                locks: locks::KeyedLocks::default(),
                lookups: resolve::Lookups::default(),
            }),
        }
    }

    /// Syncs customers and products into NetSuite as `reference` says. Call it on a new
    /// pipeline, before it is cloned (a shared pipeline keeps its settings).
    pub fn with_reference(mut self, reference: ReferenceConfig) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.reference = Some(reference);
        }
        self
    }

    pub fn stripe(&self) -> &StripeClient {
        &self.inner.stripe
    }

    pub fn netsuite(&self) -> &NetSuiteClient {
        &self.inner.netsuite
    }

    /// What the connection posts with: accounts, items, fee mode, time zone.
    pub fn posting(&self) -> &PostingConfig {
        &self.inner.posting
    }

    /// Appends an audit entry for the job's event. An audit failure must not turn a posted
    /// document into a retried job (the external ID would catch the retry, but the audit would
    /// then show a failure that did not happen), so it is logged and swallowed.
    async fn audit(
        &self,
        job: &Job,
        step: &str,
        object: Option<&str>,
        message: String,
        data: Option<serde_json::Value>,
    ) {
        let entry = NewAudit {
            event_id: job.event_id.clone(),
            job_id: Some(job.id.clone()),
            stripe_object_id: object.map(str::to_string),
            step: step.to_string(),
            message,
            data,
        };
        if let Err(e) = self.inner.store.append_audit(entry).await {
            tracing::error!(job.id = %job.id, "cannot append audit entry: {e}");
        }
    }

    async fn process(&self, job: &Job) -> Result<(), PipelineError> {
        let event_id = job
            .event_id
            .as_deref()
            .ok_or_else(|| PipelineError::Permanent("job has no event".into()))?;
        let event =
            self.inner.store.get_event(event_id).await?.ok_or_else(|| {
                PipelineError::Permanent(format!("event {event_id} is not stored"))
            })?;
        let object_id = event
            .object_id
            .clone()
            .ok_or_else(|| PipelineError::Permanent(format!("event {event_id} names no object")))?;
        let trigger = self.inner.posting.invoice_trigger;
        match event.event_type.as_str() {
            // With trigger = finalized the invoice is already posted by now; this applies payment.
            "invoice.paid" | "invoice.payment_succeeded" => {
                self.post_invoice(job, &object_id).await
            }
            "invoice.finalized" if trigger == InvoiceTrigger::Finalized => {
                self.post_invoice(job, &object_id).await
            }
            "invoice.finalized" => {
                self.audit(
                    job,
                    "skipped",
                    Some(&object_id),
                    "Invoice finalized; it is posted when paid (posting.invoice_trigger = paid)"
                        .into(),
                    None,
                )
                .await;
                Ok(())
            }
            "charge.succeeded" | "charge.captured" => self.post_charge_by_id(job, &object_id).await,
            "payment_intent.succeeded" => self.post_payment_intent(job, &object_id).await,
            "customer.created" | "customer.updated" => self.sync_customer(job, &object_id).await,
            "product.created" | "product.updated" => self.sync_product(job, &object_id).await,
            "customer.deleted" | "product.deleted" => {
                self.record_deleted(job, &event.event_type, &object_id)
                    .await
            }
            "invoice.voided" => {
                self.post_unpaid_invoice(job, &object_id, reversals::Unpaid::Voided)
                    .await
            }
            "invoice.marked_uncollectible" => {
                self.post_unpaid_invoice(job, &object_id, reversals::Unpaid::Uncollectible)
                    .await
            }
            "charge.refunded" => self.post_charge_refunds(job, &object_id).await,
            "refund.created" | "refund.updated" | "refund.failed" => {
                self.post_refund(job, &object_id).await
            }
            "credit_note.created" | "credit_note.updated" | "credit_note.voided" => {
                self.post_credit_note(job, &object_id).await
            }
            "charge.dispute.created"
            | "charge.dispute.updated"
            | "charge.dispute.funds_withdrawn"
            | "charge.dispute.funds_reinstated"
            | "charge.dispute.closed" => self.post_dispute(job, &object_id).await,
            "payout.paid" | "payout.reconciliation_completed" | "payout.failed" => {
                self.post_payout(job, &object_id).await
            }
            "charge.failed" | "payment_intent.payment_failed" => {
                self.record_failed_payment(job, &event.event_type, &object_id)
                    .await
            }
            other => {
                self.audit(
                    job,
                    "skipped",
                    Some(&object_id),
                    format!("Event type {other} is not posted"),
                    None,
                )
                .await;
                Ok(())
            }
        }
    }

    /// Creates a NetSuite record at most once. A first attempt is almost always a new record, so
    /// it POSTs straight away (one request); a retried job may follow a create that committed
    /// before the process died, so it looks the external ID up first.
    async fn create_record(
        &self,
        job: &Job,
        record_type: &str,
        external_id: &mlc_core::ExternalId,
        body: mlc_netsuite::documents::Json,
    ) -> Result<(mlc_core::NetSuiteInternalId, mlc_netsuite::CreateOutcome), PipelineError> {
        let ns = &self.inner.netsuite;
        // NetSuite honours `X-NetSuite-Idempotency-Key` only on asynchronous requests; these are
        // synchronous, so the external ID is the idempotency guard. The key derived from the
        // event is still traced, to tie the write to the delivery that caused it.
        if let Some(event) = job
            .event_id
            .as_deref()
            .and_then(|e| mlc_core::StripeId::parse(mlc_core::StripeIdKind::Event, e).ok())
        {
            let key = mlc_core::IdempotencyKey::derive(&event, &format!("create:{external_id}"));
            tracing::debug!(
                netsuite.record_type = record_type,
                idempotency_key = key.as_str(),
                "creating NetSuite record"
            );
        }
        let created = if job.attempts <= 1 {
            ns.create_new_once(record_type, external_id, body).await?
        } else {
            ns.create_once(record_type, external_id, body).await?
        };
        Ok(created)
    }

    /// How long a job waiting for a person sleeps: the configured first delay, doubling with the
    /// time already waited, capped; `None` once it has waited longer than the give-up limit.
    fn waiting_delay_ms(&self, job: &Job) -> Option<i64> {
        let p = &self.inner.posting;
        let age_ms = mlc_core::now_millis().saturating_sub(job.created_at).max(0);
        if age_ms > (p.unmapped_give_up_secs as i64).saturating_mul(1000) {
            return None;
        }
        let first = (p.unmapped_retry_secs as i64).saturating_mul(1000);
        let max = (p.unmapped_retry_max_secs as i64).saturating_mul(1000);
        Some(age_ms.max(first).min(max))
    }
}

impl Pipeline {
    /// Runs one `process_event` job: posts its event and answers the outcome the worker records
    /// (succeeded, retry, wait for a person, failed).
    pub async fn handle(&self, job: Job) -> JobOutcome {
        let started = std::time::Instant::now();
        let result = self.process(&job).await;
        metrics::histogram!(crate::telemetry::names::JOB_RUN, "kind" => PROCESS_EVENT)
            .record(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(()) => JobOutcome::Succeeded,
            Err(e) => {
                let class = e.class();
                let message = e.to_string();
                tracing::warn!(job.id = %job.id, stripe.event_id = ?job.event_id, class = %class, "event not posted: {message}");
                match class {
                    // The schedule's back-off, or longer when the API asked for longer.
                    ErrorClass::Transient => JobOutcome::Retry {
                        error: message,
                        class,
                        after_ms: e.retry_after().map(|d| {
                            let asked = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                            let scheduled = self
                                .inner
                                .store
                                .store()
                                .retry_policy()
                                .delay(job.attempts, &mut rand::rng());
                            asked.max(scheduled)
                        }),
                    },
                    ErrorClass::Permanent => JobOutcome::Failed { error: message },
                    ErrorClass::NeedsPerson => match self.waiting_delay_ms(&job) {
                        Some(after_ms) => JobOutcome::Wait {
                            reason: message,
                            after_ms,
                        },
                        None => JobOutcome::Failed {
                            error: format!(
                                "gave up after waiting {} days for a person: {message}",
                                self.inner.posting.unmapped_give_up_secs / 86_400
                            ),
                        },
                    },
                }
            }
        };
        let label = match &outcome {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Retry { .. } => "retry",
            JobOutcome::Wait { .. } => "waiting",
            JobOutcome::Failed { .. } => "failed",
        };
        // API request counts, for dashboards and `bench pipeline`: every connection's client adds
        // what it sent since it last reported (an absolute value would be one client's total).
        metrics::counter!(crate::telemetry::names::STRIPE_REQUESTS)
            .increment(self.inner.stripe.requests_unreported());
        metrics::counter!(crate::telemetry::names::NETSUITE_REQUESTS)
            .increment(self.inner.netsuite.requests_unreported());
        let latency = (mlc_core::now_millis() - job.created_at).max(0) as f64 / 1000.0;
        metrics::histogram!(crate::telemetry::names::JOB_LATENCY, "kind" => PROCESS_EVENT, "outcome" => label)
            .record(latency);
        if let Some(tenant) = crate::telemetry::tenant_label(job.scope.tenant_id()) {
            metrics::counter!(crate::telemetry::names::TENANT_JOBS, "tenant" => tenant.clone(), "outcome" => label)
                .increment(1);
            metrics::histogram!(crate::telemetry::names::TENANT_JOB_LATENCY, "tenant" => tenant)
                .record(latency);
        }
        outcome
    }
}

/// The handler `serve` runs when NetSuite or Stripe API credentials are not configured: it
/// records that the event was accepted and completes the job, so intake can be tried alone.
#[derive(Clone)]
pub struct AcceptOnly {
    pub store: ConnectionStore,
}

impl AcceptOnly {
    /// Records that the job's event was accepted, and completes the job.
    pub async fn handle(&self, job: Job) -> JobOutcome {
        let audit = NewAudit {
            event_id: job.event_id.clone(),
            job_id: Some(job.id.clone()),
            step: "processed".into(),
            message: "event accepted; NetSuite posting is not configured on this instance".into(),
            ..NewAudit::default()
        };
        match self.store.append_audit(audit).await {
            Ok(_) => JobOutcome::Succeeded,
            Err(e) => JobOutcome::Retry {
                error: e.to_string(),
                class: ErrorClass::Transient,
                after_ms: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The intake's check and the console's parse must agree on every body, hostile ones most of
    /// all: a body the intake stores must be one the console can show, and a refusal must say
    /// the same thing either way.
    #[test]
    fn the_intakes_check_accepts_and_refuses_what_the_parse_does() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
        let mut bodies: Vec<Vec<u8>> = [
            r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1","amount":-12}}}"#,
            r#"{"a":1.5e3,"b":[true,false,null],"c":"\u00e9\n","d":{},"e":[]}"#,
            r#"{"id":"evt_1","id":"evt_2"}"#,
            r#"{"big":18446744073709551615,"neg":-9223372036854775808,"huge":1e400}"#,
            r#"{"lone":"\ud800"}"#,
            r#"{"pair":"\ud83d\ude00"}"#,
            r#"{"bad escape":"\x"}"#,
            r#"{"trailing":1},"#,
            r#"{"a":1} {"b":2}"#,
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{1:2}"#,
            "",
            "   ",
            "null",
            r#""just a string""#,
            "[1,2",
            r#"{"a":"unterminated}"#,
            "{\"ctl\":\"a\u{1}b\"}",
        ]
        .iter()
        .map(|b| b.as_bytes().to_vec())
        .collect();
        bodies.push(b"{\"bytes\":\"\xff\xfe\"}".to_vec());
        bodies.push(b"\xef\xbb\xbf{}".to_vec());
        bodies.push(deep(127));
        bodies.push(deep(128));
        bodies.push(deep(129));
        bodies.push(deep(10_000));
        let fixture = include_bytes!("../../../../tests/stripe-sim/tests/fixtures/invoice.json");
        bodies.push(fixture.to_vec());
        for body in &bodies {
            let parsed = parse_event_body(body).map(drop).map_err(|e| e.to_string());
            let checked = check_event_body(body).map_err(|e| e.to_string());
            assert_eq!(checked, parsed, "{:?}", String::from_utf8_lossy(body));
        }
        assert!(check_event_body(&deep(127)).is_ok());
        assert!(
            check_event_body(&deep(129)).is_err(),
            "past serde_json's depth limit"
        );
        assert!(check_event_body(br#"{"lone":"\ud800"}"#).is_err());
        assert!(check_event_body(fixture).is_ok());
    }

    #[test]
    fn a_rate_limit_tells_the_job_how_long_to_wait_at_least() {
        let stripe = PipelineError::Stripe(StripeError::RateLimited {
            path: "/v1/invoices/in_1".into(),
            attempts: 1,
            request_id: None,
            retry_after: Some(std::time::Duration::from_secs(120)),
        });
        assert_eq!(
            stripe.retry_after(),
            Some(std::time::Duration::from_secs(120))
        );
        let netsuite = PipelineError::NetSuite(NetSuiteError::ConcurrencyLimit { attempts: 3 });
        assert_eq!(
            netsuite.retry_after(),
            Some(mlc_netsuite::error::CONCURRENCY_LIMIT_PAUSE)
        );
        assert_eq!(PipelineError::Again("x".into()).retry_after(), None);
    }
}
