//! NetSuite's error envelope and the client's typed errors.
//!
//! REST errors come as `{"type","title","status","o:errorDetails":[{"detail","o:errorCode",
//! "o:errorPath"?,"o:errorQueryParam"?}]}`. 429 `CONCURRENCY_LIMIT_EXCEEDED` carries the top-level
//! code `USER_ERROR` too, so the detail codes decide.

use mlc_core::{Classify, ErrorClass};
use serde::{Deserialize, Serialize};

use crate::auth::AuthError;

/// One entry of `o:errorDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorDetail {
    /// Human text, e.g. "Invalid Field Value 9999 for the following field: item".
    #[serde(default)]
    pub detail: String,
    /// `o:errorCode`, e.g. `INVALID_CONTENT`.
    #[serde(
        rename = "o:errorCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_code: Option<String>,
    /// `o:errorPath`, e.g. `item.items[0].item`.
    #[serde(
        rename = "o:errorPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_path: Option<String>,
    /// `o:errorQueryParam`, e.g. `q`.
    #[serde(
        rename = "o:errorQueryParam",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_query_param: Option<String>,
}

/// NetSuite's REST error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ErrorEnvelope {
    /// A URI naming the HTTP status class.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_uri: Option<String>,
    /// e.g. "Bad Request".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// HTTP status as NetSuite states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Top-level `o:errorCode` (e.g. `USER_ERROR`), when present.
    #[serde(
        rename = "o:errorCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_code: Option<String>,
    /// The details; usually one.
    #[serde(rename = "o:errorDetails", default)]
    pub details: Vec<ErrorDetail>,
}

impl ErrorEnvelope {
    /// Parses a body; `None` if it is not a NetSuite error envelope.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let env: ErrorEnvelope = serde_json::from_slice(body).ok()?;
        if env.details.is_empty() && env.title.is_none() && env.error_code.is_none() {
            return None;
        }
        Some(env)
    }

    /// The most specific code: the first detail's code, else the top-level one.
    pub fn code(&self) -> Option<&str> {
        self.details
            .iter()
            .find_map(|d| d.error_code.as_deref())
            .or(self.error_code.as_deref())
    }

    /// True if any detail (or the top level) carries `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.details
            .iter()
            .any(|d| d.error_code.as_deref() == Some(code))
            || self.error_code.as_deref() == Some(code)
    }

    /// All detail texts joined, each with its error path if any.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .details
            .iter()
            .map(|d| match &d.error_path {
                Some(p) => format!("{} (at {p})", d.detail),
                None => d.detail.clone(),
            })
            .collect();
        if parts.is_empty() {
            self.title.clone().unwrap_or_default()
        } else {
            parts.join("; ")
        }
    }

    /// The first error path, if any.
    pub fn error_path(&self) -> Option<&str> {
        self.details.iter().find_map(|d| d.error_path.as_deref())
    }
}

/// Everything that can go wrong talking to NetSuite.
#[derive(Debug, thiserror::Error)]
pub enum NetSuiteError {
    /// Authentication failed (token endpoint, key, or INVALID_LOGIN after a re-auth).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 429 `CONCURRENCY_LIMIT_EXCEEDED` on every attempt.
    #[error(
        "NetSuite's concurrency limit was exceeded on all {attempts} attempts; lower \
         `netsuite.concurrency` or raise this integration's share in Integration Governance"
    )]
    ConcurrencyLimit {
        /// How many attempts were made.
        attempts: u32,
    },
    /// 5xx from NetSuite. `ambiguous` when the request was a write that may have been applied.
    #[error("NetSuite server error (HTTP {status}{}): {detail}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Server {
        /// HTTP status.
        status: u16,
        /// `o:errorCode`, if the body had one.
        code: Option<String>,
        /// Detail text.
        detail: String,
        /// The request may have been applied.
        ambiguous: bool,
    },
    /// No (complete) response: connection refused/reset, timeout.
    #[error("network error talking to NetSuite: {message}")]
    Network {
        /// What happened (no URL query, no secret).
        message: String,
        /// The request may have reached NetSuite and been applied.
        ambiguous: bool,
    },
    /// NetSuite refused the request (4xx). Retrying the same request fails the same way.
    #[error("NetSuite refused the request (HTTP {status}, {code}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// `o:errorCode`, e.g. `INVALID_CONTENT`, `USER_ERROR`, `INSUFFICIENT_PERMISSION`.
        code: String,
        /// Detail text(s) with error paths.
        detail: String,
        /// The first `o:errorPath`, e.g. `item.items[0].item`.
        error_path: Option<String>,
        /// The whole envelope, if there was one.
        envelope: Option<Box<ErrorEnvelope>>,
    },
    /// 404 `NONEXISTENT_ID`.
    #[error("NetSuite record not found: {detail}")]
    NotFound {
        /// Detail text.
        detail: String,
    },
    /// The caller asked for something the client refuses before sending (bad limit, bad type).
    #[error("invalid NetSuite request: {0}")]
    InvalidArgument(String),
    /// A success status with a body or headers we cannot use.
    #[error("unexpected NetSuite response: {message}")]
    UnexpectedResponse {
        /// What was wrong.
        message: String,
        /// The request may have been applied (e.g. a create answered 204 without `Location`).
        ambiguous: bool,
    },
}

impl NetSuiteError {
    /// True when a write may have been applied although no success was seen: the caller must
    /// look the record up (by external ID) before sending it again.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            NetSuiteError::Server { ambiguous, .. }
            | NetSuiteError::Network { ambiguous, .. }
            | NetSuiteError::UnexpectedResponse { ambiguous, .. } => *ambiguous,
            _ => false,
        }
    }

    /// NetSuite's error code, when there is one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            NetSuiteError::Rejected { code, .. } => Some(code),
            NetSuiteError::Server { code, .. } => code.as_deref(),
            NetSuiteError::ConcurrencyLimit { .. } => Some("CONCURRENCY_LIMIT_EXCEEDED"),
            NetSuiteError::NotFound { .. } => Some("NONEXISTENT_ID"),
            _ => None,
        }
    }

    /// Builds the error for a non-success status and its body (not used for 401/429, which the
    /// request loop handles).
    pub fn from_response(status: u16, body: &[u8], ambiguous_write: bool) -> NetSuiteError {
        let env = ErrorEnvelope::parse(body);
        let code = env.as_ref().and_then(|e| e.code()).map(str::to_string);
        let detail = env
            .as_ref()
            .map(|e| e.summary())
            .unwrap_or_else(|| body_excerpt(body));
        if status >= 500 {
            return NetSuiteError::Server {
                status,
                code,
                detail,
                ambiguous: ambiguous_write,
            };
        }
        if status == 404 {
            return NetSuiteError::NotFound { detail };
        }
        if status == 429
            || env
                .as_ref()
                .is_some_and(|e| e.has_code("CONCURRENCY_LIMIT_EXCEEDED"))
        {
            return NetSuiteError::ConcurrencyLimit { attempts: 1 };
        }
        NetSuiteError::Rejected {
            status,
            code: code.unwrap_or_else(|| format!("HTTP_{status}")),
            detail,
            error_path: env
                .as_ref()
                .and_then(|e| e.error_path())
                .map(str::to_string),
            envelope: env.map(Box::new),
        }
    }

    /// True if NetSuite refused a create because the external ID is taken. The REST wording is
    /// undocumented; `USER_ERROR` "… already exists." has been observed, `DUP_RCRD` is SOAP's.
    pub fn is_duplicate_external_id(&self) -> bool {
        match self {
            NetSuiteError::Rejected { code, detail, .. } => {
                let d = detail.to_ascii_lowercase();
                code.contains("DUP")
                    || d.contains("already exist")
                    || d.contains("duplicate")
                    || (d.contains("external") && d.contains("unique"))
            }
            _ => false,
        }
    }
}

/// A reqwest error with its causes ("error sending request: connection closed before message
/// completed"), without the URL. NetSuite URLs carry no secrets, but they add nothing here.
pub(crate) fn describe_http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

fn body_excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.is_empty() {
        return "(empty body)".into();
    }
    s.chars().take(300).collect()
}

impl NetSuiteError {
    /// How long the job's next attempt should wait at least. NetSuite sends no `Retry-After`: a
    /// 429 on every attempt means the account's concurrency is saturated (other integrations,
    /// other instances), so the job steps back for half a minute rather than the seconds of the
    /// transient schedule's first steps.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            NetSuiteError::ConcurrencyLimit { .. } => Some(CONCURRENCY_LIMIT_PAUSE),
            _ => None,
        }
    }
}

/// See [`NetSuiteError::retry_after`].
pub const CONCURRENCY_LIMIT_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

impl Classify for NetSuiteError {
    fn class(&self) -> ErrorClass {
        match self {
            NetSuiteError::Auth(e) => e.class(),
            NetSuiteError::ConcurrencyLimit { .. }
            | NetSuiteError::Server { .. }
            | NetSuiteError::Network { .. }
            | NetSuiteError::UnexpectedResponse { .. } => ErrorClass::Transient,
            NetSuiteError::Rejected { status, code, .. } => {
                // Permissions, disabled features and locked periods need someone in NetSuite.
                if *status == 403
                    || matches!(
                        code.as_str(),
                        "INSUFFICIENT_PERMISSION" | "FEATURE_DISABLED" | "INVALID_LOGIN"
                    )
                {
                    ErrorClass::NeedsPerson
                } else {
                    ErrorClass::Permanent
                }
            }
            NetSuiteError::NotFound { .. } | NetSuiteError::InvalidArgument(_) => {
                ErrorClass::Permanent
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_invalid_content_with_path() {
        let body = br#"{"type":"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1","title":"Bad Request","status":400,
          "o:errorDetails":[{"detail":"Error while accessing resource: You have entered an Invalid Field Value 9999 for the following field: item","o:errorPath":"item.items[0].item","o:errorCode":"INVALID_CONTENT"}]}"#;
        let e = NetSuiteError::from_response(400, body, false);
        match &e {
            NetSuiteError::Rejected {
                code,
                error_path,
                detail,
                ..
            } => {
                assert_eq!(code, "INVALID_CONTENT");
                assert_eq!(error_path.as_deref(), Some("item.items[0].item"));
                assert!(detail.contains("Invalid Field Value 9999"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("INVALID_CONTENT"));
    }

    #[test]
    fn classifies_the_documented_codes() {
        let env = |status: u16, code: &str| {
            format!(
                r#"{{"type":"x","title":"t","status":{status},"o:errorCode":"USER_ERROR","o:errorDetails":[{{"detail":"d","o:errorCode":"{code}"}}]}}"#
            )
        };
        let e = NetSuiteError::from_response(
            429,
            env(429, "CONCURRENCY_LIMIT_EXCEEDED").as_bytes(),
            false,
        );
        assert!(matches!(e, NetSuiteError::ConcurrencyLimit { .. }));
        assert_eq!(e.class(), ErrorClass::Transient);
        let e = NetSuiteError::from_response(404, env(404, "NONEXISTENT_ID").as_bytes(), false);
        assert!(matches!(e, NetSuiteError::NotFound { .. }));
        let e = NetSuiteError::from_response(500, env(500, "UNEXPECTED_ERROR").as_bytes(), true);
        assert_eq!(e.class(), ErrorClass::Transient);
        assert!(e.is_ambiguous());
        assert_eq!(e.error_code(), Some("UNEXPECTED_ERROR"));
        let e = NetSuiteError::from_response(
            400,
            env(400, "INSUFFICIENT_PERMISSION").as_bytes(),
            false,
        );
        assert_eq!(e.class(), ErrorClass::NeedsPerson);
        let e = NetSuiteError::from_response(400, env(400, "USER_ERROR").as_bytes(), false);
        assert_eq!(e.class(), ErrorClass::Permanent);
        // Not an envelope at all.
        let e = NetSuiteError::from_response(502, b"<html>bad gateway</html>", false);
        assert!(e.to_string().contains("bad gateway"));
        assert!(!e.is_ambiguous());
    }

    #[test]
    fn duplicate_detection() {
        let body = br#"{"title":"Bad Request","status":400,"o:errorDetails":[{"detail":"Error while accessing a resource. This entity already exists.","o:errorCode":"USER_ERROR"}]}"#;
        assert!(NetSuiteError::from_response(400, body, false).is_duplicate_external_id());
        let body = br#"{"title":"Bad Request","status":400,"o:errorDetails":[{"detail":"Invalid Field Value","o:errorCode":"USER_ERROR"}]}"#;
        assert!(!NetSuiteError::from_response(400, body, false).is_duplicate_external_id());
    }
}
