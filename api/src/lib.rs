//! ml-connector: Stripe charges and subscription invoices into NetSuite customer invoices,
//! exactly once. `main.rs` is a thin shim over [`cli::run`]; [`startup::App`] is the one place the
//! service is wired, shared by `serve` and the tests.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod console;
pub mod graphql;
pub mod http;
pub mod stack;
pub mod startup;
