//! NetSuite side of ml-connector: OAuth 2.0 client credentials (JWT) and TBA auth, a governed
//! REST and SuiteQL client, and the typed documents the connector writes.
//!
//! Architecture invariant: only this crate builds NetSuite JSON; it knows nothing of Stripe.
#![forbid(unsafe_code)]

pub mod documents;
