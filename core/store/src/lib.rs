//! Durable store for ml-connector.
//!
//! One [`Store`] over embedded SQLite (default) or PostgreSQL, chosen by the URL. It keeps each
//! Stripe event byte-exact as received, the job queue, and the append-only audit log. The same SQL
//! runs on both backends (runtime `sqlx::query` with `$n` placeholders on an `AnyPool`); where the
//! dialects must differ (claiming a job, substring search) the backend is matched explicitly.
//!
//! Beside that pool the store keeps a small sea-orm connection (`sea_orm::Database::connect`
//! picks SQLite or PostgreSQL from the same URL) that runs the migrations and the admin paths:
//! tenants, connections and API keys, through the entities in [`entity`] (one per table). The
//! hot paths (group-commit intake, claims, the queue, audit, links) stay on raw SQL.
//!
//! Event intake goes through a single writer task that commits every pending delivery in one
//! transaction (group commit), so SQLite with `synchronous=FULL` pays one fsync per batch rather
//! than per event. See [`Store::record_event`]. The worker's writes (claims, job outcomes, audit
//! entries) go through the same writer and share those transactions.
//!
//! Architecture invariant: this crate knows nothing about Stripe's or NetSuite's wire formats; an
//! event is bytes plus the few envelope fields the intake extracted.
#![forbid(unsafe_code)]

mod accounts;
mod audit;
mod console;
mod credentials;
mod db;
pub mod entity;
mod events;
mod history_runs;
mod idempotency;
mod links;
mod model;
mod queue;
mod retry;
mod scope;
pub mod sealed;
mod slots;
mod store;
mod sync_support;
pub mod synthetic;
mod tasks;
mod tenants;
pub mod testing;
mod watermarks;

pub use accounts::{Invitation, Member, SessionInfo, SignInLink, UserRecord, token_hash};
pub use console::ActivityBucket;
pub use credentials::CredentialInfo;
pub use db::WRITE_LOCK_HELD;
pub use history_runs::{HISTORY_RUN_JOB, HistoryRun, HistoryRunKind, HistoryRunState};
pub use idempotency::{IDEMPOTENCY_TTL_MS, IdempotencyClaim};
pub use links::{CustomerLink, Link, NewPosting, Posting, UnmappedProduct};
pub use model::*;
pub use queue::Start;
pub use retry::{Jitter, RetryPolicy};
pub use scope::{ConnectionScope, ConnectionStore, TenantScope, TenantStore};
pub use store::{Store, StoreOptions};
pub use tasks::{BACKLOG_COUNTED, DEFAULT_QUEUE, JobTicket, PRIORITY_BASE, TASK_MAX_ATTEMPTS};
pub use tenants::{
    API_KEY_PREFIX, ApiKeyInfo, ApiKeyRole, Connection, ConnectionHealth, DeleteConnection,
    NewApiKey, NewConnection, Tenant,
};
