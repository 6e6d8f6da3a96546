//! Stripe side of ml-connector: webhook signature verification, thin version-tolerant models and
//! the API client.
//!
//! - [`webhook`]: `Stripe-Signature` verification.
//! - [`models`]: serde models of the objects posting reads, each keeping its raw JSON; both the
//!   pre-basil (≤ 2024-09-30.acacia) and basil+ (≥ 2025-03-31) shapes parse.
//! - [`facts`]: [`InvoiceFacts`] / [`ChargeFacts`], the same values whatever the API version, in
//!   `mlc_core` types (`Money`, `Currency`, `StripeId`).
//! - [`client`]: [`StripeClient`], read-only, rate-limited, retrying, with typed [`StripeError`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mlc_stripe::{InvoiceFacts, StripeClient, StripeClientConfig};
//! let stripe = StripeClient::new(StripeClientConfig::new("sk_test_...".into()))?;
//! let invoice = stripe.retrieve_invoice("in_123").await?; // one request unless lines overflow
//! let facts = InvoiceFacts::from_invoice(&invoice)?;
//! println!("{} {}", facts.id, facts.total);
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: only this crate parses Stripe JSON; it knows nothing of NetSuite.
#![forbid(unsafe_code)]

pub mod client;
pub mod facts;
pub mod models;
pub mod webhook;

pub use client::{ListEventsParams, StripeClient, StripeClientConfig, StripeError};
pub use facts::{ChargeFacts, FactsError, InvoiceFacts, LineFacts};
pub use models::{ModelError, StripeModel, StripeObject};
