//! Stripe side of ml-connector: webhook signature verification, thin version-tolerant models and
//! the API client.
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
