//! The HTTP surface: Stripe webhook intake, health, readiness and metrics.

pub mod error;
pub mod health;
pub mod router;
pub mod webhooks;

pub use router::{AppState, router};
