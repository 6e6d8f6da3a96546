//! The HTTP surface: Stripe webhook intake, health, readiness and metrics, and the server loop
//! that serves them (timeouts, connection cap).

pub mod error;
pub mod health;
pub mod router;
pub mod serve;
pub mod webhook_routes;
pub mod webhooks;

pub use router::{AppState, router};
