//! NetSuite side of ml-connector: OAuth 2.0 client credentials (JWT) and TBA authentication, a
//! governed REST records + SuiteQL client, and a create that happens at most once per external ID.
//!
//! Entry point: [`NetSuiteClient::new`] with a [`NetSuiteConfig`].
#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod error;
pub mod governor;

pub use auth::{
    AccessToken, AccountId, AccountIdError, AlgorithmError, AuthError, Credentials, M2mAuth,
    M2mOptions, SigningAlgorithm, TbaSigner, TokenStatus,
};
pub use client::{
    AsyncJob, CreateOutcome, NetSuiteClient, NetSuiteConfig, RequestCounts, SUITEQL_MAX_LIMIT,
    SUITEQL_MAX_ROWS, SuiteQlPage, SuiteQlRow, netsuite_idempotency_uuid,
};
pub use error::{ErrorDetail, ErrorEnvelope, NetSuiteError};
pub use governor::{AdaptiveLimit, BoxFuture, BudgetPermit, ConcurrencyBudget};
