//! OAuth 2.0 client credentials ("M2M"): a signed JWT client assertion is exchanged for a
//! 60-minute bearer token at `/services/rest/auth/oauth2/v1/token`. There is no refresh token, so
//! a new assertion is minted shortly before the cached token runs out, or after a 401.
//!
//! Only RSA-PSS (`PS256/384/512`) and ECDSA (`ES256/384`) are offered: NetSuite refuses RSA
//! PKCS#1 v1.5 (`RS256`) assertions since 1 March 2025, and the signing library has no ES512.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use mlc_core::{Classify, ErrorClass};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

/// The JWT algorithms NetSuite accepts for client assertions and that we can sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SigningAlgorithm {
    /// RSA-PSS with SHA-256 (RSA 3072/4096 certificate). The default.
    #[default]
    Ps256,
    /// RSA-PSS with SHA-384.
    Ps384,
    /// RSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256 (EC 256 certificate).
    Es256,
    /// ECDSA P-384 with SHA-384 (EC 384 certificate).
    Es384,
}

/// A configured algorithm that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    /// RSA PKCS#1 v1.5 algorithms.
    #[error(
        "`{0}` is not accepted by NetSuite for client assertions since 1 March 2025: use PS256 \
         (RSA-PSS works with the same RSA key and certificate) or ES256 with an EC key"
    )]
    RsaPkcs1(String),
    /// Anything else.
    #[error(
        "`{0}` is not a supported signing algorithm: use one of PS256, PS384, PS512, ES256, ES384"
    )]
    Unknown(String),
}

impl SigningAlgorithm {
    /// The JWT `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Ps256 => "PS256",
            SigningAlgorithm::Ps384 => "PS384",
            SigningAlgorithm::Ps512 => "PS512",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Es384 => "ES384",
        }
    }

    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::Ps256 => jsonwebtoken::Algorithm::PS256,
            SigningAlgorithm::Ps384 => jsonwebtoken::Algorithm::PS384,
            SigningAlgorithm::Ps512 => jsonwebtoken::Algorithm::PS512,
            SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::Es384 => jsonwebtoken::Algorithm::ES384,
        }
    }

    fn is_ec(self) -> bool {
        matches!(self, SigningAlgorithm::Es256 | SigningAlgorithm::Es384)
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = AlgorithmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PS256" => Ok(SigningAlgorithm::Ps256),
            "PS384" => Ok(SigningAlgorithm::Ps384),
            "PS512" => Ok(SigningAlgorithm::Ps512),
            "ES256" => Ok(SigningAlgorithm::Es256),
            "ES384" => Ok(SigningAlgorithm::Es384),
            "RS256" | "RS384" | "RS512" => Err(AlgorithmError::RsaPkcs1(s.trim().to_string())),
            _ => Err(AlgorithmError::Unknown(s.trim().to_string())),
        }
    }
}

impl Serialize for SigningAlgorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SigningAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Tuning for the M2M flow. The defaults suit production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct M2mOptions {
    /// JWT `scope`, sent as a JSON array as in Oracle's sample. Default `["rest_webservices"]`.
    pub scopes: Vec<String>,
    /// `exp - iat` of the assertion. Default 300 s; NetSuite requires < 3600 s.
    pub assertion_lifetime: Duration,
    /// Renew the cached token this long before it expires. Default 5 minutes (capped at half the
    /// token's lifetime, so a short-lived token is not renewed on every call).
    pub refresh_before: Duration,
}

impl Default for M2mOptions {
    fn default() -> Self {
        M2mOptions {
            scopes: vec!["rest_webservices".to_string()],
            assertion_lifetime: Duration::from_secs(300),
            refresh_before: Duration::from_secs(300),
        }
    }
}

/// Failures to obtain a NetSuite access token (or to sign a TBA request).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The configuration cannot work (bad key, wrong algorithm, bad lifetime). A person must fix it.
    #[error("NetSuite authentication is misconfigured: {0}")]
    Config(String),
    /// The token endpoint refused us. `hint` says what to fix.
    #[error("NetSuite refused the token request ({code}, HTTP {status}): {hint}")]
    Rejected {
        /// The OAuth `error` value, e.g. `invalid_grant`.
        code: String,
        /// HTTP status of the refusal.
        status: u16,
        /// What a person should check.
        hint: &'static str,
    },
    /// The token endpoint could not be reached or failed (network, 5xx, 429).
    #[error("NetSuite token endpoint unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint answered 200 with something we cannot use.
    #[error("NetSuite token endpoint sent an unusable response: {0}")]
    Malformed(String),
    /// NetSuite refused the login twice in a row even with a fresh token/signature.
    #[error(
        "NetSuite refused the login again after re-authenticating (INVALID_LOGIN): check the role \
         has 'REST Web Services' and 'Log in using OAuth 2.0 Access Tokens' (or 'Log in using Access \
         Tokens' for TBA), that the entity and role are active, and the Login Audit Trail; {detail}"
    )]
    InvalidLogin {
        /// NetSuite's own detail text.
        detail: String,
    },
}

impl Classify for AuthError {
    fn class(&self) -> ErrorClass {
        match self {
            AuthError::Config(_) | AuthError::Rejected { .. } | AuthError::InvalidLogin { .. } => {
                ErrorClass::NeedsPerson
            }
            AuthError::Unavailable(_) | AuthError::Malformed(_) => ErrorClass::Transient,
        }
    }
}

fn hint_for(code: &str) -> &'static str {
    match code {
        "invalid_grant" => {
            "the client assertion was not accepted. Check, in order: the certificate ID (JWT kid) \
             is the one shown under Setup > Integration > Manage Authentication > OAuth 2.0 Client \
             Credentials (M2M) Setup for this integration, role and entity; the private key is the \
             one belonging to the certificate uploaded there; the certificate has not expired or \
             been revoked (a sandbox refresh also clears the mapping); this server's clock is \
             correct (iat/exp are checked); the algorithm suits the key (PS* for RSA, ES* for EC). \
             The Login Audit Trail in NetSuite names the exact reason"
        }
        "invalid_client" => {
            "NetSuite does not accept this client: check the Client ID (JWT iss) of the integration \
             record, that the integration record is enabled and that the certificate ID belongs to it"
        }
        "unauthorized_client" => {
            "the integration record may not use this grant: tick 'Client Credentials (Machine to \
             Machine) Grant' on the integration record"
        }
        "invalid_scope" => {
            "the requested scope was refused: tick 'REST Web Services' on the integration record \
             or correct the configured scopes"
        }
        "unsupported_grant_type" | "invalid_request" => {
            "NetSuite did not understand the token request; check the account's base URL points \
             at the account's SuiteTalk host, and report this as a bug if it does"
        }
        _ => "check the integration record and the OAuth 2.0 Client Credentials (M2M) mapping",
    }
}

/// A bearer token handed to a request, with the generation that identifies it for
/// [`M2mAuth::invalidate`]. Debug redacts the token.
#[derive(Clone)]
pub struct AccessToken {
    value: SecretString,
    /// Which token this is; pass it to [`M2mAuth::invalidate`] after a 401.
    pub generation: u64,
}

impl AccessToken {
    /// The token itself, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        self.value.expose_secret()
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessToken(generation {}, [REDACTED])", self.generation)
    }
}

/// What `/health` may say about the current token. No secret in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenStatus {
    /// A token is cached and has not expired.
    pub valid: bool,
    /// Time since the cached token was obtained.
    pub age: Option<Duration>,
    /// Time left before the cached token expires (zero if expired).
    pub expires_in: Option<Duration>,
    /// When the cached token was obtained, Unix milliseconds.
    pub obtained_at: Option<mlc_core::UnixMillis>,
    /// Token requests made so far (successful or not).
    pub token_requests: u64,
    /// The last token failure, if the last attempt failed.
    pub last_error: Option<String>,
}

struct CachedToken {
    token: AccessToken,
    obtained: Instant,
    obtained_at: mlc_core::UnixMillis,
    expires: Instant,
    lifetime: Duration,
}

#[derive(Default)]
struct TokenState {
    current: Option<CachedToken>,
    /// Bumped every time a token is stored, so waiters can tell a renewal happened.
    generation: u64,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a [String],
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: serde_json::Value,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorBody {
    error: String,
}

/// M2M token source: signs assertions, fetches tokens, caches one, renews it single-flight.
pub struct M2mAuth {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    certificate_id: String,
    key: EncodingKey,
    algorithm: SigningAlgorithm,
    options: M2mOptions,
    state: Mutex<TokenState>,
    /// Held while a renewal is in progress: one renewal at a time, however many tasks wait.
    flight: tokio::sync::Mutex<()>,
    token_requests: AtomicU64,
}

impl std::fmt::Debug for M2mAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M2mAuth")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("certificate_id", &self.certificate_id)
            .field("algorithm", &self.algorithm)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl M2mAuth {
    /// Checks the key and options and signs one throwaway assertion (jsonwebtoken panics or
    /// fails at the first signature if its backend or the key is wrong; better now than at 3 a.m.).
    pub fn new(
        http: reqwest::Client,
        token_url: Url,
        client_id: String,
        certificate_id: String,
        private_key_pem: &SecretString,
        algorithm: SigningAlgorithm,
        options: M2mOptions,
    ) -> Result<Self, AuthError> {
        if options.assertion_lifetime.is_zero()
            || options.assertion_lifetime >= Duration::from_secs(3600)
        {
            return Err(AuthError::Config(format!(
                "assertion lifetime must be between 1 s and 3599 s (NetSuite requires exp - iat < \
                 60 minutes), got {} s",
                options.assertion_lifetime.as_secs()
            )));
        }
        if options.scopes.is_empty() {
            return Err(AuthError::Config(
                "at least one scope is needed (usually `rest_webservices`)".into(),
            ));
        }
        if client_id.trim().is_empty() || certificate_id.trim().is_empty() {
            return Err(AuthError::Config(
                "client ID and certificate ID must both be set".into(),
            ));
        }
        let pem = private_key_pem.expose_secret().as_bytes();
        let key = if algorithm.is_ec() {
            if private_key_pem
                .expose_secret()
                .contains("BEGIN EC PRIVATE KEY")
            {
                return Err(AuthError::Config(
                    "the EC private key is in SEC1 form (`BEGIN EC PRIVATE KEY`); convert it to \
                     PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem`"
                        .into(),
                ));
            }
            EncodingKey::from_ec_pem(pem).map_err(|_| {
                AuthError::Config(format!(
                    "the private key is not a PKCS#8 PEM EC key (`BEGIN PRIVATE KEY`), which {algorithm} needs"
                ))
            })?
        } else {
            EncodingKey::from_rsa_pem(pem).map_err(|_| {
                AuthError::Config(format!(
                    "the private key is not a PEM RSA key, which {algorithm} needs (use an ES* \
                     algorithm for an EC key)"
                ))
            })?
        };
        let auth = M2mAuth {
            http,
            token_url,
            client_id,
            certificate_id,
            key,
            algorithm,
            options,
            state: Mutex::new(TokenState::default()),
            flight: tokio::sync::Mutex::new(()),
            token_requests: AtomicU64::new(0),
        };
        auth.client_assertion(unix_now())?;
        Ok(auth)
    }

    /// The token endpoint URL (also the assertion's `aud`).
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// Builds and signs a client assertion issued at `iat` (Unix seconds).
    pub fn client_assertion(&self, iat: u64) -> Result<String, AuthError> {
        let mut header = Header::new(self.algorithm.jwt());
        header.typ = Some("JWT".to_string());
        header.kid = Some(self.certificate_id.clone());
        let claims = AssertionClaims {
            iss: &self.client_id,
            scope: &self.options.scopes,
            aud: self.token_url.as_str(),
            iat,
            exp: iat + self.options.assertion_lifetime.as_secs(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            // The error kind names the problem (e.g. InvalidRsaKey) but never the key.
            AuthError::Config(format!(
                "signing the client assertion with {} failed ({:?}); check the key matches the algorithm",
                self.algorithm,
                e.kind()
            ))
        })
    }

    fn renew_margin(&self, lifetime: Duration) -> Duration {
        self.options.refresh_before.min(lifetime / 2)
    }

    /// A usable token: the cached one unless it is within `refresh_before` of expiry, otherwise a
    /// new one. Concurrent callers share one renewal.
    pub async fn access_token(&self) -> Result<AccessToken, AuthError> {
        let seen_generation = {
            let st = self.lock_state();
            if let Some(t) = &st.current {
                let now = Instant::now();
                if now + self.renew_margin(t.lifetime) < t.expires {
                    return Ok(t.token.clone());
                }
            }
            st.generation
        };
        let _flight = self.flight.lock().await;
        {
            // Double-check: another task may have renewed while we waited for the lock.
            let st = self.lock_state();
            if let Some(t) = &st.current
                && st.generation != seen_generation
                && Instant::now() < t.expires
            {
                return Ok(t.token.clone());
            }
        }
        match self.fetch().await {
            Ok((value, expires_in)) => {
                let mut st = self.lock_state();
                st.generation += 1;
                let token = AccessToken {
                    value,
                    generation: st.generation,
                };
                let now = Instant::now();
                st.current = Some(CachedToken {
                    token: token.clone(),
                    obtained: now,
                    obtained_at: mlc_core::now_millis(),
                    expires: now + expires_in,
                    lifetime: expires_in,
                });
                st.last_error = None;
                Ok(token)
            }
            Err(e) => {
                self.lock_state().last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Forgets the token of `generation` (after NetSuite answered 401 with it). A token renewed
    /// since is kept, so fifty tasks seeing the same 401 cause one renewal.
    pub fn invalidate(&self, generation: u64) {
        let mut st = self.lock_state();
        if st
            .current
            .as_ref()
            .is_some_and(|t| t.token.generation == generation)
        {
            st.current = None;
        }
    }

    /// Health view of the cached token.
    pub fn token_status(&self) -> TokenStatus {
        let st = self.lock_state();
        let now = Instant::now();
        let current = st.current.as_ref();
        TokenStatus {
            valid: current.is_some_and(|t| now < t.expires),
            age: current.map(|t| now.saturating_duration_since(t.obtained)),
            expires_in: current.map(|t| t.expires.saturating_duration_since(now)),
            obtained_at: current.map(|t| t.obtained_at),
            token_requests: self.token_requests.load(Ordering::Relaxed),
            last_error: st.last_error.clone(),
        }
    }

    /// Token requests made so far.
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, TokenState> {
        // A poisoned lock only means another thread panicked mid-update of plain data; the data
        // is still a valid cache (at worst stale), so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn fetch(&self) -> Result<(SecretString, Duration), AuthError> {
        let assertion = self.client_assertion(unix_now())?;
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .post(self.token_url.clone())
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(crate::error::describe_http_error(e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| AuthError::Unavailable(crate::error::describe_http_error(e)))?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| AuthError::Malformed(format!("not a token response: {e}")))?;
            if let Some(tt) = &parsed.token_type
                && !tt.eq_ignore_ascii_case("bearer")
            {
                return Err(AuthError::Malformed(format!(
                    "token_type `{tt}`, expected Bearer"
                )));
            }
            // NetSuite documents a number; accept a numeric string too.
            let secs = match &parsed.expires_in {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                AuthError::Malformed("expires_in missing or not a positive number".into())
            })?;
            if parsed.access_token.is_empty() {
                return Err(AuthError::Malformed("empty access_token".into()));
            }
            return Ok((
                SecretString::from(parsed.access_token),
                Duration::from_secs(secs),
            ));
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(AuthError::Unavailable(format!("HTTP {status}")));
        }
        // 4xx: an OAuth error body, or at least a status.
        let code = serde_json::from_slice::<TokenErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| {
                if status.as_u16() == 401 {
                    "invalid_client".to_string()
                } else {
                    "invalid_request".to_string()
                }
            });
        // Keep the code to a short safe token: it goes into logs.
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        Err(AuthError::Rejected {
            hint: hint_for(&code),
            code,
            status: status.as_u16(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs256_is_refused_with_a_reason() {
        let e = "RS256".parse::<SigningAlgorithm>().unwrap_err();
        assert!(e.to_string().contains("PS256"), "{e}");
        assert!(e.to_string().contains("1 March 2025"));
        let e: Result<SigningAlgorithm, _> = serde_json::from_str("\"RS256\"");
        assert!(e.is_err());
        assert_eq!(
            "es256".parse::<SigningAlgorithm>().unwrap(),
            SigningAlgorithm::Es256
        );
        assert!("ES512".parse::<SigningAlgorithm>().is_err());
        assert_eq!(SigningAlgorithm::default(), SigningAlgorithm::Ps256);
    }

    #[test]
    fn hints_name_what_to_fix() {
        let h = hint_for("invalid_grant");
        for word in ["certificate ID", "private key", "expired", "clock"] {
            assert!(h.contains(word), "{word}");
        }
    }

    #[test]
    fn garbage_key_is_a_config_error_without_the_key() {
        let pem = SecretString::from(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n",
        );
        let e = M2mAuth::new(
            reqwest::Client::new(),
            Url::parse("https://x.example/t").unwrap(),
            "cid".into(),
            "kid".into(),
            &pem,
            SigningAlgorithm::Ps256,
            M2mOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.class(), ErrorClass::NeedsPerson);
        assert!(!e.to_string().contains("c2VjcmV0"));
        let sec1 = SecretString::from(
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        );
        let e = M2mAuth::new(
            reqwest::Client::new(),
            Url::parse("https://x.example/t").unwrap(),
            "cid".into(),
            "kid".into(),
            &sec1,
            SigningAlgorithm::Es256,
            M2mOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("pkcs8"), "{e}");
    }

    #[test]
    fn lifetime_must_stay_under_an_hour() {
        let opts = M2mOptions {
            assertion_lifetime: Duration::from_secs(3600),
            ..M2mOptions::default()
        };
        let e = M2mAuth::new(
            reqwest::Client::new(),
            Url::parse("https://x.example/t").unwrap(),
            "cid".into(),
            "kid".into(),
            &SecretString::from("x"),
            SigningAlgorithm::Ps256,
            opts,
        )
        .unwrap_err();
        assert!(e.to_string().contains("3599"));
    }
}
