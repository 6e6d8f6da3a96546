//! What remains of the operator console's HTTP face once the dashboard became the web app at
//! `/app` (`crate::app`, a GraphQL client): the admin token ([`auth`]), now only GraphQL's
//! operator token (`tenantCreate`), and reading the request cookies; [`filter`], an events filter
//! as people type it (`events list`). The server-rendered dashboard that lived at `/` is retired:
//! `/` and its old pages redirect to `/app/` (`crate::http::router`). The operator service,
//! [`mlc_service::console::Console`], is what the `status`, `events`, `replay` and `mappings`
//! commands and the GraphQL API act through.
//!
//! The REST admin API that used to live under `/api` is retired too: `/api/…` answers 410 with a
//! pointer to `/graphql` (`crate::http::router`).

pub mod auth;
pub mod filter;

pub use auth::AdminToken;
