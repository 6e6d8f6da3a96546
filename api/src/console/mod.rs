//! The console's HTTP face: the web dashboard at `/` ([`pages`]), signed in with the admin token
//! ([`auth`]), on the default connection. It is thin over the operator service,
//! [`mlc_service::console::Console`], which the `status`, `events`, `replay` and `mappings`
//! commands use too; the GraphQL API (`crate::graphql`) acts through the same service calls.
//! [`filter`] reads an events filter as people type it (the dashboard's search, `events list`).
//!
//! The REST admin API that used to live under `/api` is retired: `/api/…` answers 410 with a
//! pointer to `/graphql` (`crate::http::router`).

pub mod auth;
pub mod filter;
pub mod pages;

pub use auth::AdminToken;
