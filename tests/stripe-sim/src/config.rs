//! Simulator configuration: keys, API version, account currency, delivery and fault knobs.

use std::net::SocketAddr;
use std::time::Duration;

use mlc_core::Currency;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How the simulator is started.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; `None` binds 127.0.0.1:0.
    pub listen: Option<SocketAddr>,
    /// Accepted secret keys; when empty one `sk_test_…` key is generated.
    pub api_keys: Vec<SecretString>,
    /// The account's default API version (used when a request has no `Stripe-Version`, for
    /// stored events, and for webhook endpoints created without `api_version`).
    pub default_api_version: String,
    /// Settlement currency of the account: balance transactions are in this currency.
    pub account_currency: Currency,
    /// Seed for ids and adversarial choices (same seed + same requests ⇒ same ids).
    pub seed: u64,
    /// Webhook retry policy.
    pub delivery: DeliveryConfig,
    /// Adversarial webhook delivery knobs.
    pub delivery_faults: DeliveryFaults,
    /// API fault injection knobs.
    pub api_faults: ApiFaults,
    /// Fixes the generated API key and webhook secrets (tests); `None`: random per start.
    pub secret_seed: Option<u64>,
    /// Deviations from Stripe's current dialect, as older API versions and other emulators show.
    pub dialect: Dialect,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: None,
            api_keys: Vec::new(),
            default_api_version: crate::ApiVersion::DEFAULT.to_string(),
            account_currency: Currency::USD,
            seed: 42,
            delivery: DeliveryConfig::default(),
            delivery_faults: DeliveryFaults::default(),
            api_faults: ApiFaults::default(),
            secret_seed: None,
            dialect: Dialect::default(),
        }
    }
}

/// Webhook retry policy: Stripe retries for days; the simulator compresses the schedule.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Attempts per (event, endpoint, copy), including the first.
    pub max_attempts: u32,
    /// Delay before retry n is `base_delay_ms * 2^n`.
    pub base_delay_ms: u64,
    /// Per-attempt HTTP timeout.
    pub timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: 5,
            base_delay_ms: 100,
            timeout_ms: 10_000,
        }
    }
}

impl DeliveryConfig {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Adversarial delivery: at-least-once and unordered, like Stripe, but on purpose and often.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryFaults {
    /// Probability that an event is delivered more than once to an endpoint.
    pub duplicate_probability: f64,
    /// Extra copies for a duplicated event: uniformly 1..=max_extra_copies (at least 1).
    pub max_extra_copies: u32,
    /// Deliveries are buffered up to this many and sent in shuffled order (0 or 1 = in order).
    pub reorder_window: usize,
    /// Each delivery waits a random 0..=max_delay_ms before its first attempt.
    pub max_delay_ms: u64,
    /// Probability that a delivery attempt is "lost" (not sent, counted as failed, retried).
    pub drop_probability: f64,
}

/// API fault injection, applied to `/v1` requests before they execute (so nothing is stored,
/// and an `Idempotency-Key` retry executes normally).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiFaults {
    /// Probability of a 500 `api_error`.
    pub error_500_probability: f64,
    /// Probability of a 429 `rate_limit` (with `Stripe-Should-Retry: true`).
    pub rate_limit_probability: f64,
    /// Latency added to every request.
    pub latency_ms: u64,
}

/// Both fault sets, as `POST /_sim/faults` takes and returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// API faults.
    pub api: ApiFaults,
    /// Delivery faults.
    pub delivery: DeliveryFaults,
}

/// How the simulator departs from the dialect it otherwise renders: what older API versions and
/// other Stripe emulators do, so the connector is tested against them. Empty: plain Stripe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dialect {
    /// `expand[]` paths answered `400 invalid_request_error` (`param: expand`), matched on the
    /// path without a leading `data.`: `"discounts"`, `"payments"`, `"balance_transaction"`.
    pub refused_expands: Vec<String>,
    /// Path prefixes answered `404` as an unknown URL, as a version without them would:
    /// `"/v1/invoice_payments"`, `"/v1/checkout/sessions"`.
    pub missing_endpoints: Vec<String>,
    /// List paths that answer an empty list: `"/v1/invoice_payments"`.
    pub empty_lists: Vec<String>,
    /// `kind.field` left out of every rendered object: `"charge.amount_captured"`,
    /// `"charge.invoice"`, `"payment_intent.invoice"`.
    pub omitted_fields: Vec<String>,
}

impl Dialect {
    /// The refused entry an expand path hits, if any.
    pub(crate) fn refuses_expand(&self, path: &[String]) -> Option<&str> {
        let joined = path.join(".");
        let bare = joined.strip_prefix("data.").unwrap_or(&joined);
        self.refused_expands
            .iter()
            .find(|r| bare == r.as_str() || bare.starts_with(&format!("{r}.")))
            .map(String::as_str)
    }

    pub(crate) fn endpoint_missing(&self, path: &str) -> bool {
        self.missing_endpoints
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }

    pub(crate) fn list_empty(&self, url: &str) -> bool {
        self.empty_lists.iter().any(|p| url == p)
    }

    pub(crate) fn omits(&self, kind: &str, field: &str) -> bool {
        self.omitted_fields
            .iter()
            .any(|f| f.split_once('.') == Some((kind, field)))
    }
}
