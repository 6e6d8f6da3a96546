//! NetSuite's REST error envelope, and the crate's own (setup) error type.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mlc_core::{Classify, ErrorClass};
use serde_json::{Map, Value, json};

/// An error answered to a REST client in NetSuite's shape:
/// `{"type","title","status","o:errorDetails":[{"detail","o:errorCode","o:errorPath"?}]}`.
#[derive(Debug, Clone)]
pub(crate) struct NsErrorBody {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub path: Option<String>,
    pub query_param: Option<String>,
    /// Set on 429 only: NetSuite repeats `USER_ERROR` at the top level there.
    pub top_code: Option<&'static str>,
    pub www_authenticate: Option<String>,
}

/// Boxed so that `Result<_, NsError>` stays small on the happy path.
#[derive(Debug, Clone)]
pub(crate) struct NsError(Box<NsErrorBody>);

impl std::ops::Deref for NsError {
    type Target = NsErrorBody;
    fn deref(&self) -> &NsErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for NsError {
    fn deref_mut(&mut self) -> &mut NsErrorBody {
        &mut self.0
    }
}

impl NsError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(NsErrorBody {
            status,
            code,
            detail: detail.into(),
            path: None,
            query_param: None,
            top_code: None,
            www_authenticate: None,
        }))
    }

    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn query_param(mut self, p: &str) -> Self {
        self.query_param = Some(p.to_owned());
        self
    }

    /// 400 INVALID_CONTENT "Invalid Field Value" for a reference or a badly typed value.
    pub fn invalid_value(value: &str, field: &str, path: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONTENT",
            format!(
                "Error while accessing resource: You have entered an Invalid Field Value {value} for the following field: {field}"
            ),
        )
        .at(path)
    }

    /// 400 USER_ERROR, the code NetSuite uses for business-rule refusals.
    pub fn user_error(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "USER_ERROR",
            format!("Error while accessing a resource. {}", detail.into()),
        )
    }

    pub fn missing(field: &str, path: impl Into<String>) -> Self {
        Self::user_error(format!("You must enter a value for {field}.")).at(path)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NONEXISTENT_ID",
            "Record does not exist.",
        )
    }

    pub fn invalid_request() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "The request could not be understood by the server due to malformed syntax.",
        )
    }

    pub fn invalid_login(account: &str, bearer: bool) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_LOGIN",
            "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.",
        );
        e.www_authenticate = Some(if bearer {
            format!(
                "Bearer realm=\"{account}\", error=\"invalid_token\", error_description=\"Invalid login attempt.\""
            )
        } else {
            format!("OAuth realm=\"{account}\"")
        });
        e
    }

    pub fn concurrency() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "CONCURRENCY_LIMIT_EXCEEDED",
            "Concurrent request limit exceeded. Request blocked.",
        );
        e.top_code = Some("USER_ERROR");
        e
    }

    pub fn unexpected() -> Self {
        let id: String = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..20)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect()
        };
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            format!("An unexpected error occurred. Error ID: {id}"),
        )
    }

    pub fn invalid_parameter(detail: impl Into<String>, param: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", detail).query_param(param)
    }

    pub fn body(&self) -> Value {
        let (ty, title) = match self.status.as_u16() {
            401 => (
                "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2",
                "Unauthorized",
            ),
            404 => (
                "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5",
                "Not Found",
            ),
            // Oracle's documented 429 sample carries this type and the title "Bad Request".
            429 => (
                "https://www.rfc-editor.org/rfc/rfc6585.html#section-4",
                "Bad Request",
            ),
            500 => (
                "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.1",
                "Internal Server Error",
            ),
            _ => (
                "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
                "Bad Request",
            ),
        };
        let mut d = Map::new();
        d.insert("detail".into(), json!(self.detail));
        d.insert("o:errorCode".into(), json!(self.code));
        if let Some(p) = &self.path {
            d.insert("o:errorPath".into(), json!(p));
        }
        if let Some(q) = &self.query_param {
            d.insert("o:errorQueryParam".into(), json!(q));
        }
        let mut top = Map::new();
        top.insert("type".into(), json!(ty));
        top.insert("title".into(), json!(title));
        top.insert("status".into(), json!(self.status.as_u16()));
        if let Some(c) = self.top_code {
            top.insert("o:errorCode".into(), json!(c));
        }
        top.insert(
            "o:errorDetails".into(),
            Value::Array(vec![Value::Object(d)]),
        );
        Value::Object(top)
    }
}

impl IntoResponse for NsError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.oracle.resource+json; type=error"),
        );
        if let Some(w) = &self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(w)
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Errors from setting the simulator up (binding, seed files, key generation).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot bind the NetSuite simulator to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The seed file could not be read.
    #[error("cannot read the seed file {path}: {source}")]
    SeedRead {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The seed is not valid JSON of the expected shape, or a seeded record was refused.
    #[error("invalid seed: {0}")]
    Seed(String),
    /// A public key or certificate registration was refused.
    #[error("invalid M2M registration: {0}")]
    Registration(String),
    /// Key generation failed in aws-lc-rs.
    #[error("key generation failed: {0}")]
    KeyGen(String),
    /// The private key file could not be written.
    #[error("cannot write the private key to {path}: {source}")]
    KeyWrite {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the NetSuite simulator stopped: {0}")]
    Serve(std::io::Error),
}

impl Classify for SimError {
    fn class(&self) -> ErrorClass {
        match self {
            SimError::Bind { .. } | SimError::Serve(_) => ErrorClass::Transient,
            SimError::SeedRead { .. }
            | SimError::KeyWrite { .. }
            | SimError::Seed(_)
            | SimError::Registration(_)
            | SimError::KeyGen(_) => ErrorClass::NeedsPerson,
        }
    }
}
