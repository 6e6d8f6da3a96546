//! Stripe's error responses (`{"error":{...}}` with the right status) and the crate's own errors.

use axum::http::StatusCode;
use mlc_core::{Classify, ErrorClass};
use serde_json::{Map, Value, json};

/// An error response exactly as Stripe shapes it: HTTP status plus the `error` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status (400, 401, 402, 404, 429, 500 ...).
    pub status: StatusCode,
    /// The `error` object (`type`, `message`, and `code`, `param`, `doc_url` when Stripe sets them).
    pub body: Map<String, Value>,
    /// Whether to send `Stripe-Should-Retry` (Stripe sends it on 429 and some 5xx).
    pub should_retry: Option<bool>,
}

fn doc_url(code: &str) -> String {
    format!(
        "https://stripe.com/docs/error-codes/{}",
        code.replace('_', "-")
    )
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &str,
        code: Option<&str>,
        message: String,
        param: Option<&str>,
    ) -> Self {
        let mut body = Map::new();
        if let Some(code) = code {
            body.insert("code".into(), json!(code));
            body.insert("doc_url".into(), json!(doc_url(code)));
        }
        body.insert("message".into(), json!(message));
        if let Some(p) = param {
            body.insert("param".into(), json!(p));
        }
        body.insert("type".into(), json!(kind));
        ApiError {
            status,
            body,
            should_retry: None,
        }
    }

    /// 400 invalid_request_error with a code.
    pub fn invalid(code: &str, message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(code),
            message.into(),
            param,
        )
    }

    /// 400 invalid_request_error without a code (Stripe omits it for many state errors).
    pub fn invalid_nocode(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message.into(),
            param,
        )
    }

    /// 400 `parameter_missing`: "Missing required param: amount."
    pub fn missing(param: &str) -> Self {
        Self::invalid(
            "parameter_missing",
            format!("Missing required param: {param}."),
            Some(param),
        )
    }

    /// 400 `parameter_unknown`.
    pub fn unknown_param(param: &str) -> Self {
        Self::invalid(
            "parameter_unknown",
            format!("Received unknown parameter: {param}"),
            Some(param),
        )
    }

    /// 400 `parameter_invalid_integer`.
    pub fn invalid_integer(param: &str, value: &str) -> Self {
        Self::invalid(
            "parameter_invalid_integer",
            format!("Invalid integer: {value}"),
            Some(param),
        )
    }

    /// 400 `parameter_invalid_empty`.
    pub fn invalid_empty(param: &str) -> Self {
        Self::invalid(
            "parameter_invalid_empty",
            format!(
                "You passed an empty string for '{param}'. We assume empty values are an attempt to unset a parameter; however '{param}' cannot be unset. You should remove '{param}' from your request or supply a non-empty value."
            ),
            Some(param),
        )
    }

    /// 404 `resource_missing` for a path id: "No such customer: 'cus_x'".
    pub fn not_found(noun: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            format!("No such {noun}: '{id}'"),
            Some("id"),
        )
    }

    /// 400 `resource_missing` for an id passed as a parameter.
    pub fn missing_ref(noun: &str, id: &str, param: &str) -> Self {
        Self::invalid(
            "resource_missing",
            format!("No such {noun}: '{id}'"),
            Some(param),
        )
    }

    /// 404 for an unknown path, as Stripe words it.
    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            ),
            None,
        )
    }

    /// 401 without a key.
    pub fn no_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".into(),
            None,
        )
    }

    /// 401 with a wrong key; the key is shown redacted like Stripe does (last four only).
    pub fn bad_key(key: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("api_key_invalid"),
            format!("Invalid API Key provided: {}", redacted(key)),
            None,
        )
    }

    /// 403 for a restricted key without the permission a request needs, worded as Stripe words
    /// it (the key redacted to its last four).
    pub fn permission_denied(key: &str, account: &str, permission: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            None,
            format!(
                "The provided key '{}' does not have the required permissions for this endpoint \
                 on account '{account}'. Having the '{permission}' permission would allow this \
                 request to continue.",
                redacted(key)
            ),
            None,
        )
    }

    /// 402 card_error (decline). `extra` carries `charge`, `decline_code`, `payment_intent`...
    pub fn card_declined(decline_code: &str, message: &str, extra: Map<String, Value>) -> Self {
        let mut e = Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            Some("card_declined"),
            message.into(),
            None,
        );
        e.body.insert("decline_code".into(), json!(decline_code));
        e.body.extend(extra);
        e
    }

    /// 400 idempotency_error for a reused key with different parameters.
    pub fn idempotency_mismatch(key: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            Some("idempotency_key_in_use"),
            format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ),
            None,
        )
    }

    /// 429 rate limit, as returned under load (fault injection).
    pub fn rate_limited() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.".into(),
            None,
        );
        e.should_retry = Some(true);
        e
    }

    /// 500 api_error (fault injection).
    pub fn internal() -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unknown error occurred".into(),
            None,
        );
        e.should_retry = Some(true);
        e
    }

    /// The full JSON body `{"error": {...}}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": Value::Object(self.body.clone()) })
    }
}

/// Errors of the simulator's own Rust API (starting, scenario driving).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listener could not be bound.
    #[error("cannot bind the simulator to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client for webhook delivery or the scenario could not be built.
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
    /// A scenario request failed at the transport level.
    #[error("scenario request {method} {path} failed: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
    },
    /// The simulator answered a scenario request with an unexpected error.
    #[error("scenario request {method} {path} returned {status}: {body}")]
    Api {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    /// The simulator answered something that is not the JSON the scenario expected.
    #[error("scenario got an unexpected response to {path}: {message}")]
    Unexpected { path: String, message: String },
}

impl Classify for SimError {
    fn class(&self) -> ErrorClass {
        match self {
            SimError::Bind { .. } | SimError::Client(_) => ErrorClass::NeedsPerson,
            SimError::Transport { .. } => ErrorClass::Transient,
            SimError::Api { status, .. } if *status == 429 || *status >= 500 => {
                ErrorClass::Transient
            }
            SimError::Api { .. } | SimError::Unexpected { .. } => ErrorClass::Permanent,
        }
    }
}

/// A key as Stripe shows it in errors: its kind and mode, then only the last four characters.
fn redacted(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let prefix = ["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
        .into_iter()
        .find(|p| key.starts_with(p))
        .unwrap_or("");
    format!("{prefix}********{tail}")
}
