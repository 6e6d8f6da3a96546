//! Domain types shared by every part of ml-connector.
//!
//! Architecture invariant: this crate does no I/O and knows neither Stripe's nor NetSuite's wire
//! formats. Its types cannot hold invalid values: construct them with `parse`/`new`, never by hand.
#![forbid(unsafe_code)]

pub mod currency;
pub mod error;
pub mod ids;
pub mod money;
pub mod tenancy;

pub use currency::{Currency, CurrencyError};
pub use error::{Classify, ErrorClass};
pub use ids::{ExternalId, IdError, IdempotencyKey, NetSuiteInternalId, StripeId, StripeIdKind};
pub use money::{Money, MoneyError};
pub use secrecy::{ExposeSecret, SecretString};
pub use tenancy::{ConnectionId, ConnectionStatus, TenantId, WebhookRouteId};

/// Milliseconds since the Unix epoch: the one timestamp representation stored and passed around,
/// so that both SQL backends and every log line agree without time-zone conversion.
pub type UnixMillis = i64;

/// Now, as [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
