//! Integration tests: one binary, the app driven over HTTP as Stripe and operators drive it.

mod accounts;
mod adversarial;
mod bench;
mod charge_links;
mod connections;
mod console;
mod credentials;
mod demo;
mod graphql;
mod graphql_admin;
mod graphql_console;
mod graphql_events;
mod graphql_schemathesis;
mod helpers;
mod intake;
mod lifecycle;
mod ping;
mod pipeline;
mod posting;
mod reference;
mod reference_sync;
mod scale_out;
mod secrets;
mod shared_budget;
mod tenancy;
mod tenancy_cli;
