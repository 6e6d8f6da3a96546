//! NetSuite side of ml-connector: OAuth 2.0 client credentials (JWT) and TBA authentication, a
//! governed REST records + SuiteQL client, a create that happens at most once per external ID,
//! and the typed documents the connector writes ([`documents`]).
//!
//! Architecture invariant: only this crate builds NetSuite JSON; it knows nothing of Stripe.
//!
//! Entry point: [`NetSuiteClient::new`] with a [`NetSuiteConfig`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), mlc_netsuite::NetSuiteError> {
//! use mlc_netsuite::*;
//! use mlc_core::ExternalId;
//! # let pem = String::new();
//! let account = AccountId::parse("1234567_SB1").expect("valid account");
//! let creds = Credentials::M2m {
//!     client_id: "…".into(),
//!     certificate_id: "…".into(),
//!     private_key_pem: secrecy::SecretString::from(pem),
//!     algorithm: SigningAlgorithm::Ps256,
//! };
//! let client = NetSuiteClient::new(NetSuiteConfig::new(account, creds))?;
//! let eid = ExternalId::parse("stripe_in_1Abc").expect("valid external ID");
//! let body = serde_json::json!({"entity": {"id": "107"}, "item": {"items": []}});
//! let (id, outcome) = client.create_once("invoice", &eid, body).await?;
//! let rows = client
//!     .suiteql_all("SELECT id FROM transaction WHERE externalid = ?", vec![eid.to_string()])
//!     .await?;
//! # let _ = (id, outcome, rows); Ok(()) }
//! ```
//!
//! Rules the client enforces:
//! - RS256 cannot be configured (NetSuite refuses it since March 2025); PS256 is the default.
//! - Reads and SuiteQL are retried on 429, 5xx and network errors; writes only when they surely
//!   were not applied (429, connect failure, 401 + re-auth). Anything else is an *ambiguous*
//!   error that [`NetSuiteClient::create_once`] resolves by external ID before any retry.
//! - SuiteQL: `limit` ≤ 1000, `offset` a multiple of `limit`, and at most 100,000 rows per
//!   query; larger result sets must be read with [`NetSuiteClient::suiteql_keyset`].
#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod documents;
pub mod error;
pub mod governor;

pub use auth::{
    AccessToken, AccountId, AccountIdError, AlgorithmError, AuthError, Credentials, M2mAuth,
    M2mOptions, SigningAlgorithm, TbaSigner, TokenStatus,
};
pub use client::{
    AsyncJob, CreateOutcome, NetSuiteClient, NetSuiteConfig, RecordBody, RequestCounts,
    SUITEQL_MAX_LIMIT, SUITEQL_MAX_ROWS, SuiteQlPage, SuiteQlRow, netsuite_idempotency_uuid,
};
pub use error::{ErrorDetail, ErrorEnvelope, NetSuiteError};
pub use governor::{AdaptiveLimit, BoxFuture, BudgetPermit, ConcurrencyBudget};
