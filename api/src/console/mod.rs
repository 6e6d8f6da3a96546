//! The console's HTTP faces: the admin API under `/api` ([`api`], described by [`openapi`]), the
//! web dashboard at `/` ([`pages`]) and their access control ([`auth`]). All of them are thin
//! over the operator service, [`mlc_service::console::Console`], which the `status`, `events`,
//! `replay` and `mappings` commands use too.

pub mod api;
pub mod auth;
pub mod openapi;
pub mod pages;

pub use auth::AdminToken;
