//! The store's public types: the contract between the store and its callers.

use mlc_core::{ErrorClass, UnixMillis};
use serde::{Deserialize, Serialize};

/// Which database a [`crate::Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A verified Stripe delivery, as the intake hands it to the store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `evt_…`
    pub event_id: String,
    pub event_type: String,
    /// `data.object.id`, when the event has one.
    pub object_id: Option<String>,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The event's `created` (unix seconds, Stripe's clock).
    pub stripe_created: i64,
    /// The request body exactly as received.
    pub raw_body: Vec<u8>,
    /// The `Stripe-Signature` header exactly as received.
    pub signature_header: String,
    pub received_at: UnixMillis,
    /// Whether the connector acts on this event type. Ignored events are stored and audited but
    /// get no job, so Stripe stops retrying and nothing runs.
    pub handled: bool,
}

/// What `record_event` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordOutcome {
    /// First delivery: event stored (and its job enqueued when handled) in one transaction.
    Stored,
    /// The event ID was already stored: nothing changed except a `duplicate_delivery` audit entry.
    Duplicate,
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub event_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    pub livemode: bool,
    pub api_version: Option<String>,
    pub stripe_created: i64,
    #[serde(skip)]
    pub raw_body: Vec<u8>,
    pub signature_header: String,
    pub received_at: UnixMillis,
    pub handled: bool,
    /// Number of deliveries received (1 + duplicates).
    pub deliveries: i64,
}

/// Filters for listing events. `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// The state of the event's job; `ignored` selects events without a job.
    pub status: Option<String>,
    pub event_type: Option<String>,
    /// Matches the event ID or the object ID.
    pub stripe_id: Option<String>,
    /// Matches the internal ID or external ID of a NetSuite record posted for the event's object.
    pub netsuite_id: Option<String>,
    pub received_after: Option<UnixMillis>,
    pub received_before: Option<UnixMillis>,
    pub limit: i64,
    pub offset: i64,
    /// Keyset paging: only events listed after this one (newest first, so those with an older
    /// `(received_at, event_id)`). Taken before `offset`, which still counts from there.
    pub after: Option<EventPosition>,
}

/// Where an event sits in a listing: its sort key, newest first by `received_at`, then by
/// `event_id` (descending) among events received in the same millisecond. A position, not a
/// record: it holds no tenant or connection, and lists of any scope can be started after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventPosition {
    pub received_at: UnixMillis,
    pub event_id: String,
}

/// One row of an event listing: the event and the state of its job.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub event_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    pub received_at: UnixMillis,
    /// Job state, or `ignored` when the event has no job.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl EventSummary {
    /// Its place in a listing, to list what comes after it ([`EventFilter::after`]).
    pub fn position(&self) -> EventPosition {
        EventPosition {
            received_at: self.received_at,
            event_id: self.event_id.clone(),
        }
    }
}

/// States of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Ready to run at `run_at`.
    Queued,
    /// Claimed by a worker holding a lease until `locked_until`.
    Running,
    /// Waiting for a person (an unmapped product, a bad key); retried at `run_at`.
    Waiting,
    Succeeded,
    /// Gave up; replayable.
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Waiting,
        JobState::Succeeded,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Waiting => "waiting",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What the handler does, e.g. `process_event`.
    pub kind: String,
    /// The Stripe event the job works on, if any.
    pub event_id: Option<String>,
    pub payload: serde_json::Value,
    /// Enqueueing twice with the same key creates one job.
    pub dedupe_key: String,
    pub max_attempts: i32,
    pub run_at: UnixMillis,
}

/// A job as claimed by a worker or listed.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    /// The connection the job belongs to: the handler runs it with that connection's pipeline.
    pub scope: crate::scope::ConnectionScope,
    pub kind: String,
    pub event_id: Option<String>,
    pub payload: serde_json::Value,
    pub dedupe_key: String,
    pub state: JobState,
    /// Attempts started so far, including the current one when running.
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: UnixMillis,
    /// The apalis worker running it (while running).
    pub locked_by: Option<String>,
    /// The apalis task that carries its next (or current) attempt.
    pub task_id: Option<String>,
    pub last_error: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// What a handler decided about a claimed job.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Succeeded,
    /// Try again later (per the retry schedule unless `after_ms` is given); fails when attempts are
    /// exhausted.
    Retry {
        error: String,
        class: ErrorClass,
        after_ms: Option<i64>,
    },
    /// A person must act; check again at `after_ms` from now. Does not consume attempts budget
    /// beyond the configured waiting deadline (the store gives the attempt back; the handler
    /// returns `Failed` once its waiting deadline has passed).
    Wait {
        reason: String,
        after_ms: i64,
    },
    /// Give up now (a permanent error).
    Failed {
        error: String,
    },
}

/// An audit entry to append.
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub event_id: Option<String>,
    pub job_id: Option<String>,
    /// The Stripe object (invoice, charge, product…) the step concerns.
    pub stripe_object_id: Option<String>,
    /// `received`, `verified`, `duplicate_delivery`, `ignored`, `fetched`, `mapped`, `posted`,
    /// `payment_applied`, `waiting`, `retried`, `failed`, `replayed`, `released`…
    pub step: String,
    /// Plain words for a person.
    pub message: String,
    /// Structured detail (NetSuite internal ID, request/response, amounts). Never secrets.
    pub data: Option<serde_json::Value>,
}

/// A stored audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: UnixMillis,
    pub event_id: Option<String>,
    pub job_id: Option<String>,
    pub stripe_object_id: Option<String>,
    pub step: String,
    pub message: String,
    pub data: Option<serde_json::Value>,
}

/// Errors from the store. All database errors are transient from the caller's view except
/// migrations and configuration, which need a person.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error(
        "job {0} is no longer running under this task (it was replayed, or a re-run of the task \
         already finished it)"
    )]
    NotRunning(String),
}

impl mlc_core::Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::UnsupportedUrl(_) | StoreError::Migration(_) => ErrorClass::NeedsPerson,
            StoreError::NotFound(_) | StoreError::AlreadyExists(_) => ErrorClass::Permanent,
            StoreError::Database(_) | StoreError::NotRunning(_) => ErrorClass::Transient,
        }
    }
}
