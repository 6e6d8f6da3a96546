//! The service layer of ml-connector: what the CLI, the dashboard, the GraphQL API and the
//! worker share. Nothing here knows about HTTP or the command line: callers parse and print,
//! these modules read the store, call Stripe and NetSuite, and act.
//!
//! - [`config`]: the configuration (embedded defaults ← file ← environment) and connection
//!   settings;
//! - [`connections`]: the clients, the default connection, opening the connection a command
//!   names, and each connection's job handler ([`connections::ConnectionHandler`]);
//! - [`credentials`]: the names of the sealed secrets and how they fill a configuration;
//! - [`pipeline`]: the posting pipeline (`mapping` pure; `post`, `resolve`, `reference` I/O);
//! - [`sync`]: NetSuite → Stripe reference sync;
//! - [`netsuite_budget`]: one NetSuite concurrency budget per account;
//! - [`console`]: the operator service behind the dashboard, the CLI and the GraphQL API;
//! - [`mappings`]: product → item mappings (set and wake, CSV import/export, unmapped);
//! - [`telemetry`]: logging and metrics.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod config;
pub mod connections;
pub mod console;
pub mod credentials;
pub mod mappings;
pub mod netsuite_budget;
pub mod onboarding;
pub mod ping;
pub mod pipeline;
pub mod sync;
pub mod telemetry;
