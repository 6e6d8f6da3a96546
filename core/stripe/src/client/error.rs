//! Typed errors of the Stripe API client, parsed from Stripe's error envelope.

use mlc_core::{Classify, ErrorClass};
use serde::Deserialize;

use crate::models::ModelError;

/// A failed Stripe API call. Messages never contain the API key: Stripe's own messages are
/// scrubbed of anything that looks like a key before they are kept.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// HTTP 401: the key is invalid, expired, revoked or rolled.
    #[error(
        "Stripe rejected the API key (HTTP 401{}): put a current secret (sk_...) or restricted \
         (rk_...) key for this account in the connector's Stripe configuration",
        request_suffix(request_id)
    )]
    Authentication { request_id: Option<String> },

    /// HTTP 403: a restricted key lacks a permission.
    #[error(
        "the Stripe API key lacks a permission for {path} (HTTP 403{}): give the restricted key \
         the permission Stripe names, in the Stripe Dashboard (Developers > API keys); Stripe \
         said: {message}",
        request_suffix(request_id)
    )]
    Permission {
        path: String,
        message: String,
        request_id: Option<String>,
    },

    /// HTTP 404 whose message says the object exists in the other mode: a test key is reading
    /// live objects or the reverse.
    #[error(
        "Stripe has the object at {path} only in the other mode (HTTP 404{}): use a {expected} key \
         for these events; Stripe said: {message}",
        request_suffix(request_id)
    )]
    WrongMode {
        path: String,
        /// `live` or `test`: the mode of key the object needs.
        expected: &'static str,
        message: String,
        request_id: Option<String>,
    },

    /// HTTP 404 (`resource_missing`): the object does not exist in this account and mode.
    #[error(
        "Stripe has no object at {path} (HTTP 404{}): {message}",
        request_suffix(request_id)
    )]
    NotFound {
        path: String,
        code: Option<String>,
        message: String,
        request_id: Option<String>,
    },

    /// HTTP 400/402 and other 4xx Stripe will refuse again for the same request.
    #[error(transparent)]
    InvalidRequest(Box<InvalidRequest>),

    /// HTTP 429 (or a `rate_limit`/`lock_timeout` code), still failing after the retries.
    #[error(
        "Stripe rate limit on {path} after {attempts} attempt(s){}",
        request_suffix(request_id)
    )]
    RateLimited {
        path: String,
        attempts: u32,
        request_id: Option<String>,
        /// Stripe's `Retry-After`, when it sent one: the job waits at least this long.
        retry_after: Option<std::time::Duration>,
    },

    /// HTTP 409 (e.g. a concurrent request with the same idempotency key), after the retries.
    #[error(
        "Stripe reported a conflict on {path} (HTTP 409) after {attempts} attempt(s): {message}"
    )]
    Conflict {
        path: String,
        attempts: u32,
        message: String,
    },

    /// HTTP 5xx (or 424), after the retries.
    #[error(
        "Stripe server error on {path} (HTTP {status}) after {attempts} attempt(s){}: {message}",
        request_suffix(request_id)
    )]
    Server {
        status: u16,
        path: String,
        attempts: u32,
        message: String,
        request_id: Option<String>,
    },

    /// Connection refused/reset, DNS, TLS or timeout, after the retries.
    #[error("could not reach Stripe for {path} after {attempts} attempt(s): {message}")]
    Network {
        path: String,
        attempts: u32,
        message: String,
    },

    /// A 2xx response whose body is not the expected object.
    #[error("Stripe's response to {path} could not be read: {source}")]
    Decode {
        path: String,
        #[source]
        source: ModelError,
    },

    /// The client was given an argument Stripe would refuse (e.g. more than 20 event types).
    #[error("invalid Stripe request: {0}")]
    InvalidArgument(String),

    /// The client configuration is unusable (key format, base URL).
    #[error("Stripe client configuration: {0}")]
    Config(String),
}

/// The details of a refused request (boxed in [`StripeError::InvalidRequest`] to keep the error
/// small).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Stripe refused {path} (HTTP {status}{}{}): {message}",
    code.as_deref().map(|c| format!(", {c}")).unwrap_or_default(),
    request_suffix(request_id)
)]
pub struct InvalidRequest {
    pub status: u16,
    pub path: String,
    /// Stripe's `error.type`, e.g. `invalid_request_error`.
    pub kind: Option<String>,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

fn request_suffix(request_id: &Option<String>) -> String {
    request_id
        .as_deref()
        .map(|id| format!(", request {id}"))
        .unwrap_or_default()
}

impl Classify for StripeError {
    fn class(&self) -> ErrorClass {
        match self {
            StripeError::Authentication { .. }
            | StripeError::Permission { .. }
            | StripeError::WrongMode { .. }
            | StripeError::Config(_) => ErrorClass::NeedsPerson,
            StripeError::NotFound { .. }
            | StripeError::InvalidRequest(_)
            | StripeError::Decode { .. }
            | StripeError::InvalidArgument(_) => ErrorClass::Permanent,
            StripeError::RateLimited { .. }
            | StripeError::Conflict { .. }
            | StripeError::Server { .. }
            | StripeError::Network { .. } => ErrorClass::Transient,
        }
    }
}

impl StripeError {
    /// How long Stripe asked to wait (`Retry-After` on a 429), when it said: the job's next
    /// attempt waits at least this long.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            StripeError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status Stripe answered with, when the error came from a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            StripeError::Authentication { .. } => Some(401),
            StripeError::Permission { .. } => Some(403),
            StripeError::NotFound { .. } | StripeError::WrongMode { .. } => Some(404),
            StripeError::InvalidRequest(e) => Some(e.status),
            StripeError::Server { status, .. } => Some(*status),
            StripeError::RateLimited { .. } => Some(429),
            StripeError::Conflict { .. } => Some(409),
            _ => None,
        }
    }

    /// Stripe's `error.code` (`resource_missing`, `parameter_invalid_integer`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            StripeError::NotFound { code, .. } => code.as_deref(),
            StripeError::InvalidRequest(e) => e.code.as_deref(),
            _ => None,
        }
    }
}

/// Stripe's error envelope `{"error":{"type","code","message","param",...}}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub param: Option<String>,
}

impl ErrorBody {
    /// Reads the envelope; a body that is not one (a proxy's HTML page) gives an empty body.
    pub(crate) fn parse(body: &str) -> ErrorBody {
        #[derive(Deserialize)]
        struct Envelope {
            error: ErrorBody,
        }
        serde_json::from_str::<Envelope>(body)
            .map(|e| e.error)
            .unwrap_or_default()
    }
}

/// Removes anything that looks like a Stripe secret from text Stripe sent back (its 401 message
/// quotes a masked key; a masked key is still more than an error log needs).
pub(crate) fn scrub(text: &str) -> String {
    const PREFIXES: &[&str] = &["sk_", "rk_", "pk_", "whsec_"];
    text.split_inclusive(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '`')
        .map(|token| {
            let word = token
                .trim_end_matches(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '`');
            if PREFIXES.iter().any(|p| word.starts_with(p)) {
                format!("[redacted]{}", &token[word.len()..])
            } else {
                token.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_keys_and_keeps_the_rest() {
        assert_eq!(
            scrub("Invalid API Key provided: sk_test_****1234"),
            "Invalid API Key provided: [redacted]"
        );
        assert_eq!(
            scrub("The provided key 'rk_live_abc' does not have access"),
            "The provided key '[redacted]' does not have access"
        );
        assert_eq!(
            scrub("No such customer: 'cus_1'"),
            "No such customer: 'cus_1'"
        );
    }

    #[test]
    fn envelope_parses_and_non_json_is_empty() {
        let body = ErrorBody::parse(
            r#"{"error":{"code":"resource_missing","message":"No such customer: 'cus_x'","param":"id","type":"invalid_request_error"}}"#,
        );
        assert_eq!(body.code.as_deref(), Some("resource_missing"));
        assert_eq!(body.param.as_deref(), Some("id"));
        assert_eq!(body.kind.as_deref(), Some("invalid_request_error"));
        assert!(
            ErrorBody::parse("<html>bad gateway</html>")
                .message
                .is_none()
        );
    }
}
