//! Durable store for ml-connector.
//!
//! One [`Store`] over embedded SQLite (default) or PostgreSQL, chosen by the URL. It keeps each
//! Stripe event byte-exact as received, the job queue, and the append-only audit log. The same SQL
//! runs on both backends (runtime `sqlx::query` with `$n` placeholders on an `AnyPool`); where the
//! dialects must differ (claiming a job) the backend is matched explicitly.
//!
//! Architecture invariant: this crate knows nothing about Stripe's or NetSuite's wire formats; an
//! event is bytes plus the few envelope fields the intake extracted.
#![forbid(unsafe_code)]

mod model;
pub use model::*;

// IMPLEMENTATION NOTE (for the store helper): everything below `model` is yours to build.
// The types in model.rs are the contract the HTTP intake and CLI code against.
