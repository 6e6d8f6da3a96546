//! The governed NetSuite REST client: records, SuiteQL, safe create.
//!
//! Every request goes through one loop ([`NetSuiteClient`]'s `send`) that
//! 1. waits for a slot of the [`ConcurrencyBudget`],
//! 2. authenticates (cached M2M bearer token or a fresh TBA signature),
//! 3. on 401 invalidates the token and re-authenticates **once**, then gives up as needs-a-person,
//! 4. on 429 `CONCURRENCY_LIMIT_EXCEEDED` lowers the budget and backs off (exponential + jitter),
//! 5. retries 5xx and network failures only when repeating the request cannot duplicate anything:
//!    reads, SuiteQL, and writes whose connection was never established. A write that may have
//!    been applied (timeout, 5xx, connection lost after sending) comes back as an *ambiguous*
//!    error ([`NetSuiteError::is_ambiguous`]) for [`NetSuiteClient::create_once`] (or the caller)
//!    to resolve by external ID.
//!
//! Synchronous requests + external IDs, not NetSuite's idempotency key: `X-NetSuite-Idempotency-Key`
//! is only honoured together with `Prefer: respond-async` (it is ignored on synchronous requests),
//! and the async path needs job polling for every write. External IDs give the same guarantee
//! synchronously: every record the connector makes carries one, and an ambiguous create is
//! resolved by looking the external ID up before any retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mlc_core::{Classify as _, ExternalId, IdempotencyKey, NetSuiteInternalId};
use rand::Rng as _;
use reqwest::header::{AUTHORIZATION, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::auth::{AccountId, AuthError, Credentials, M2mAuth, M2mOptions, TbaSigner, TokenStatus};
use crate::error::NetSuiteError;
use crate::governor::{AdaptiveLimit, ConcurrencyBudget};

/// Largest `limit` NetSuite accepts for one SuiteQL page.
pub const SUITEQL_MAX_LIMIT: u32 = 1000;
/// NetSuite returns at most this many rows for one SuiteQL query, however it is paged.
pub const SUITEQL_MAX_ROWS: u64 = 100_000;

/// Everything the client needs. Build with [`NetSuiteConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct NetSuiteConfig {
    /// The account, e.g. `1234567_SB1`.
    pub account: AccountId,
    /// Overrides `https://<account host form>.suitetalk.api.netsuite.com` (simulator, or the
    /// account-specific domain copied from Company URLs).
    pub base_url: Option<Url>,
    /// M2M or TBA credentials.
    pub credentials: Credentials,
    /// M2M tuning (scopes, assertion lifetime, renewal margin); ignored for TBA.
    pub m2m: M2mOptions,
    /// Concurrent requests this client may have in flight (its share of the account's limit).
    /// Default 5, the smallest account limit.
    pub concurrency: usize,
    /// Retries after the first attempt for retryable failures. Default 4 (5 attempts, as Oracle's
    /// sample).
    pub max_retries: u32,
    /// Whole-request timeout. Default 120 s (NetSuite itself cuts requests at 15 minutes).
    pub timeout: Duration,
    /// TCP/TLS connect timeout. Default 10 s.
    pub connect_timeout: Duration,
    /// First back-off delay; doubles per retry, with jitter. Default 500 ms.
    pub retry_base_delay: Duration,
    /// Longest back-off delay. Default 30 s.
    pub retry_max_delay: Duration,
    /// A shared budget (e.g. across instances); `None` = an in-process [`AdaptiveLimit`] sized
    /// from `concurrency`.
    pub budget: Option<Arc<dyn ConcurrencyBudget>>,
}

impl std::fmt::Debug for NetSuiteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSuiteConfig")
            .field("account", &self.account)
            .field("base_url", &self.base_url.as_ref().map(Url::as_str))
            .field("credentials", &self.credentials)
            .field("m2m", &self.m2m)
            .field("concurrency", &self.concurrency)
            .field("max_retries", &self.max_retries)
            .field("timeout", &self.timeout)
            .field("shared_budget", &self.budget.is_some())
            .finish()
    }
}

impl NetSuiteConfig {
    /// A configuration with production defaults.
    pub fn new(account: AccountId, credentials: Credentials) -> Self {
        NetSuiteConfig {
            account,
            base_url: None,
            credentials,
            m2m: M2mOptions::default(),
            concurrency: 5,
            max_retries: 4,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            budget: None,
        }
    }
}

/// A request body: JSON text sent byte for byte. Built from a `serde_json::Value`, or from a
/// [`crate::documents::Json`] document whose amounts are exact decimals (a `Value` would turn
/// them into binary floats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBody {
    text: String,
}

impl RecordBody {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Sets `externalId` (or checks it matches), keeping every other value's exact text.
    fn with_external_id(self, external_id: &ExternalId) -> Result<RecordBody, NetSuiteError> {
        let mut fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&self.text).map_err(|_| {
                NetSuiteError::InvalidArgument("a record body must be a JSON object".into())
            })?;
        match fields.get("externalId") {
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(s) if s.eq_ignore_ascii_case(external_id.as_str()) => return Ok(self),
                _ => {
                    return Err(NetSuiteError::InvalidArgument(format!(
                        "body externalId {} differs from `{external_id}`",
                        raw.get()
                    )));
                }
            },
            None => {
                let value = serde_json::value::to_raw_value(external_id.as_str())
                    .map_err(|e| NetSuiteError::InvalidArgument(format!("external ID: {e}")))?;
                fields.insert("externalId".into(), value);
            }
        }
        let text = serde_json::to_string(&fields)
            .map_err(|e| NetSuiteError::InvalidArgument(format!("record body: {e}")))?;
        Ok(RecordBody { text })
    }
}

impl From<Value> for RecordBody {
    fn from(v: Value) -> Self {
        RecordBody {
            text: v.to_string(),
        }
    }
}

impl From<&crate::documents::Json> for RecordBody {
    fn from(j: &crate::documents::Json) -> Self {
        RecordBody { text: j.to_body() }
    }
}

impl From<crate::documents::Json> for RecordBody {
    fn from(j: crate::documents::Json) -> Self {
        RecordBody::from(&j)
    }
}

/// Whether [`NetSuiteClient::create_once`] made the record or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateOutcome {
    /// This call created it (including a create whose response was lost but which committed).
    Created,
    /// A record with this external ID existed already (found first, or the create was refused
    /// because of it).
    AlreadyExisted,
}

/// A write accepted for asynchronous processing (`202` + `Location` of the job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncJob {
    /// The job URL from `Location` (`…/services/rest/async/v1/job/<id>`, absolute or relative).
    pub location: String,
    /// NetSuite had seen this idempotency key before (`IDEMPOTENCY_ERROR`); `location` is the
    /// original job, nothing new was submitted.
    pub reused: bool,
}

/// The `X-NetSuite-Idempotency-Key` value for a key. NetSuite asks for an RFC 4122 UUID, while
/// our keys are `<event id>:<operation>`; a version-8 UUID made from the key's SHA-256 is stable
/// across retries and restarts.
pub fn netsuite_idempotency_uuid(key: &IdempotencyKey) -> uuid::Uuid {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_str().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// One SuiteQL result row: lowercase column names to values (NetSuite sends numbers as strings,
/// booleans as `"T"`/`"F"`). The per-row `links` is removed.
pub type SuiteQlRow = serde_json::Map<String, Value>;

/// One page of SuiteQL results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteQlPage {
    /// The rows.
    pub items: Vec<SuiteQlRow>,
    /// More rows after this page.
    pub has_more: bool,
    /// Rows in this page.
    pub count: u64,
    /// Offset of this page.
    pub offset: u64,
    /// Total rows of the query, when NetSuite says.
    pub total_results: Option<u64>,
}

/// Request counters (all since the client was built).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// REST/SuiteQL requests sent (every attempt counts; token requests do not).
    pub total: u64,
    /// GETs of records.
    pub record_reads: u64,
    /// POST/PUT/PATCH of records.
    pub record_writes: u64,
    /// SuiteQL pages.
    pub suiteql: u64,
    /// Token endpoint requests (M2M).
    pub token: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Re-authentications after a 401.
    pub reauths: u64,
    /// Retries after a retryable failure (429, 5xx, network).
    pub retries: u64,
}

#[derive(Default)]
struct Counters {
    total: AtomicU64,
    /// The highest `total` reported by [`NetSuiteClient::requests_unreported`].
    reported: AtomicU64,
    record_reads: AtomicU64,
    record_writes: AtomicU64,
    suiteql: AtomicU64,
    throttled: AtomicU64,
    reauths: AtomicU64,
    retries: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RecordRead,
    RecordWrite,
    SuiteQl,
}

/// May the request loop repeat the request after a failure that may have been applied?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Reads and queries: repeat freely.
    Idempotent,
    /// Writes: repeat only when the request surely was not applied (429, 401, connect failure).
    Write,
}

enum Authenticator {
    M2m(Box<M2mAuth>),
    Tba(TbaSigner),
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Authenticator,
    budget: Arc<dyn ConcurrencyBudget>,
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    counters: Counters,
}

/// The NetSuite client. Cheap to clone; clones share the token cache, budget and counters.
#[derive(Clone)]
pub struct NetSuiteClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NetSuiteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSuiteClient")
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

fn is_valid_record_type(t: &str) -> bool {
    !t.is_empty() && t.len() <= 100 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The internal ID at the end of a `Location` header (absolute or relative URL).
fn id_from_location(location: &str) -> Option<NetSuiteInternalId> {
    let path = location.split(['?', '#']).next()?;
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    NetSuiteInternalId::parse(last).ok()
}

/// A record's `id` field, string or number.
fn id_of_record(v: &Value) -> Option<NetSuiteInternalId> {
    match v.get("id")? {
        Value::String(s) => NetSuiteInternalId::parse(s).ok(),
        Value::Number(n) => NetSuiteInternalId::parse(&n.to_string()).ok(),
        _ => None,
    }
}

impl NetSuiteClient {
    /// Builds the client. Fails (needs a person) if the credentials cannot work, e.g. a key that
    /// does not parse or sign.
    pub fn new(config: NetSuiteConfig) -> Result<Self, NetSuiteError> {
        let base = match &config.base_url {
            Some(u) => {
                if !matches!(u.scheme(), "http" | "https") || u.cannot_be_a_base() {
                    return Err(NetSuiteError::InvalidArgument(format!(
                        "base URL `{u}` must be an http(s) URL"
                    )));
                }
                u.clone()
            }
            None => config.account.default_base_url(),
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("ml-connector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NetSuiteError::InvalidArgument(format!("HTTP client setup: {e}")))?;
        let auth = match &config.credentials {
            Credentials::M2m {
                client_id,
                certificate_id,
                private_key_pem,
                algorithm,
            } => {
                let token_url = join_path(
                    &base,
                    &["services", "rest", "auth", "oauth2", "v1", "token"],
                )?;
                Authenticator::M2m(Box::new(M2mAuth::new(
                    http.clone(),
                    token_url,
                    client_id.clone(),
                    certificate_id.clone(),
                    private_key_pem,
                    *algorithm,
                    config.m2m.clone(),
                )?))
            }
            Credentials::Tba {
                consumer_key,
                consumer_secret,
                token_id,
                token_secret,
            } => Authenticator::Tba(TbaSigner::new(
                config.account.realm_form(),
                consumer_key.clone(),
                consumer_secret.clone(),
                token_id.clone(),
                token_secret.clone(),
            )),
        };
        let budget = config
            .budget
            .clone()
            .unwrap_or_else(|| Arc::new(AdaptiveLimit::new(config.concurrency)));
        Ok(NetSuiteClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                budget,
                max_retries: config.max_retries,
                base_delay: config.retry_base_delay,
                max_delay: config.retry_max_delay,
                counters: Counters::default(),
            }),
        })
    }

    /// The REST base URL in use.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// REST/SuiteQL requests sent so far (every attempt; token requests not included).
    pub fn requests_made(&self) -> u64 {
        self.inner.counters.total.load(Ordering::Relaxed)
    }

    /// Requests sent since the last call (across clones), for a process-wide counter that
    /// several connections' clients add to. `fetch_max`, so concurrent callers never count a
    /// request twice.
    pub fn requests_unreported(&self) -> u64 {
        let now = self.requests_made();
        let before = self
            .inner
            .counters
            .reported
            .fetch_max(now, Ordering::Relaxed);
        now.saturating_sub(before)
    }

    /// Request counters by kind.
    pub fn request_counts(&self) -> RequestCounts {
        let c = &self.inner.counters;
        RequestCounts {
            total: c.total.load(Ordering::Relaxed),
            record_reads: c.record_reads.load(Ordering::Relaxed),
            record_writes: c.record_writes.load(Ordering::Relaxed),
            suiteql: c.suiteql.load(Ordering::Relaxed),
            token: match &self.inner.auth {
                Authenticator::M2m(m) => m.token_requests(),
                Authenticator::Tba(_) => 0,
            },
            throttled: c.throttled.load(Ordering::Relaxed),
            reauths: c.reauths.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// The M2M token's state for `/health`; `None` under TBA.
    pub fn token_status(&self) -> Option<TokenStatus> {
        match &self.inner.auth {
            Authenticator::M2m(m) => Some(m.token_status()),
            Authenticator::Tba(_) => None,
        }
    }

    /// The concurrency budget (current limit, in-flight count).
    pub fn budget(&self) -> &Arc<dyn ConcurrencyBudget> {
        &self.inner.budget
    }

    /// Gets a token now (M2M) so a bad key or mapping shows at startup; no-op under TBA.
    pub async fn check_auth(&self) -> Result<(), NetSuiteError> {
        if let Authenticator::M2m(m) = &self.inner.auth {
            m.access_token().await?;
        }
        Ok(())
    }

    // ----- records -------------------------------------------------------------------------

    fn record_url(&self, record_type: &str, id: Option<&str>) -> Result<Url, NetSuiteError> {
        if !is_valid_record_type(record_type) {
            return Err(NetSuiteError::InvalidArgument(format!(
                "`{record_type}` is not a record type (letters, digits, `_`)"
            )));
        }
        let mut segs = vec!["services", "rest", "record", "v1", record_type];
        if let Some(id) = id {
            segs.push(id);
        }
        join_path(&self.inner.base, &segs)
    }

    /// `POST /record/v1/{type}`: creates a record and returns its internal ID (from `Location`).
    ///
    /// Not idempotent: a failure after the request may have been applied is returned as an
    /// ambiguous error, never retried here. Use [`Self::create_once`] for records with an
    /// external ID.
    pub async fn create(
        &self,
        record_type: &str,
        body: impl Into<RecordBody>,
    ) -> Result<NetSuiteInternalId, NetSuiteError> {
        let body = body.into();
        let url = self.record_url(record_type, None)?;
        let reply = self
            .send(
                Kind::RecordWrite,
                Method::POST,
                url,
                Some(&body),
                &[],
                Policy::Write,
            )
            .await?;
        if let Some(id) = reply.location.as_deref().and_then(id_from_location) {
            return Ok(id);
        }
        // A 200 with the record in the body is not documented, but cheap to accept.
        serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .as_ref()
            .and_then(id_of_record)
            .ok_or_else(|| NetSuiteError::UnexpectedResponse {
                message: format!(
                    "create answered {} without a usable Location header",
                    reply.status.as_u16()
                ),
                ambiguous: true,
            })
    }

    /// `PUT /record/v1/{type}/eid:{externalId}`: creates or updates by external ID. Returns the
    /// internal ID if NetSuite sent a `Location` (undocumented for PUT, so it may be `None`).
    /// Treated as a write: whether a repeated PUT appends sublist lines is undocumented.
    pub async fn upsert_by_external_id(
        &self,
        record_type: &str,
        external_id: &ExternalId,
        body: impl Into<RecordBody>,
    ) -> Result<Option<NetSuiteInternalId>, NetSuiteError> {
        let body = body.into();
        let url = self.record_url(record_type, Some(&format!("eid:{}", external_id.as_str())))?;
        let reply = self
            .send(
                Kind::RecordWrite,
                Method::PUT,
                url,
                Some(&body),
                &[],
                Policy::Write,
            )
            .await?;
        Ok(reply.location.as_deref().and_then(id_from_location))
    }

    /// `GET /record/v1/{type}/{id}`. A missing record is [`NetSuiteError::NotFound`].
    pub async fn get(
        &self,
        record_type: &str,
        id: &NetSuiteInternalId,
    ) -> Result<Value, NetSuiteError> {
        let url = self.record_url(record_type, Some(id.as_str()))?;
        self.get_json(url).await
    }

    /// `GET /record/v1/{type}/{id}?expandSubResources=true`: with its sublists' lines (an
    /// invoice's items, a payment's applications) rather than links to them.
    pub async fn get_expanded(
        &self,
        record_type: &str,
        id: &NetSuiteInternalId,
    ) -> Result<Value, NetSuiteError> {
        let mut url = self.record_url(record_type, Some(id.as_str()))?;
        url.query_pairs_mut()
            .append_pair("expandSubResources", "true");
        self.get_json(url).await
    }

    /// `GET /record/v1/{type}/eid:{externalId}`; `None` when NetSuite answers 404.
    pub async fn get_by_external_id(
        &self,
        record_type: &str,
        external_id: &ExternalId,
    ) -> Result<Option<Value>, NetSuiteError> {
        let url = self.record_url(record_type, Some(&format!("eid:{}", external_id.as_str())))?;
        match self.get_json(url).await {
            Ok(v) => Ok(Some(v)),
            Err(NetSuiteError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_json(&self, url: Url) -> Result<Value, NetSuiteError> {
        let reply = self
            .send(
                Kind::RecordRead,
                Method::GET,
                url,
                None,
                &[],
                Policy::Idempotent,
            )
            .await?;
        serde_json::from_slice(&reply.body).map_err(|e| NetSuiteError::UnexpectedResponse {
            message: format!("record body is not JSON: {e}"),
            ambiguous: false,
        })
    }

    /// `PATCH /record/v1/{type}/{id}`: partial update. Not idempotent (sublist lines without
    /// `line` are appended), so ambiguous failures are not retried here.
    pub async fn patch(
        &self,
        record_type: &str,
        id: &NetSuiteInternalId,
        body: impl Into<RecordBody>,
    ) -> Result<(), NetSuiteError> {
        let body = body.into();
        let url = self.record_url(record_type, Some(id.as_str()))?;
        self.send(
            Kind::RecordWrite,
            Method::PATCH,
            url,
            Some(&body),
            &[],
            Policy::Write,
        )
        .await?;
        Ok(())
    }

    /// `DELETE /record/v1/{type}/{id}`. Deleting twice is harmless: a record already gone
    /// (404, say after a lost answer to the first delete) counts as deleted. NetSuite refuses a
    /// record others depend on (a credit memo a customer refund pays out) and one in a closed
    /// period; those errors are returned.
    pub async fn delete(
        &self,
        record_type: &str,
        id: &NetSuiteInternalId,
    ) -> Result<(), NetSuiteError> {
        let url = self.record_url(record_type, Some(id.as_str()))?;
        match self
            .send(
                Kind::RecordWrite,
                Method::DELETE,
                url,
                None,
                &[],
                Policy::Idempotent,
            )
            .await
        {
            Ok(_) | Err(NetSuiteError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates a record keyed by `external_id` at most once.
    ///
    /// 1. `GET …/{type}/eid:{externalId}` (works for every record type; chosen over SuiteQL on
    ///    `transaction` because it needs no per-type table and returns the id directly). Found →
    ///    `(id, AlreadyExisted)`.
    /// 2. `POST` the body with `externalId` set. Success → `(id, Created)`.
    /// 3. Ambiguous failure (timeout, 5xx, connection lost after sending, 204 without
    ///    `Location`): look the external ID up again **before** any retry. Found → `Created`
    ///    (our request committed); absent → back off and POST again (up to `max_retries`).
    /// 4. Refused (4xx): look it up. Found → `AlreadyExisted` (the external ID was taken, or
    ///    NetSuite kept the record despite the error); absent → the refusal is returned.
    ///
    /// Transactions share one external-ID namespace: if another transaction type holds the ID,
    /// step 4 finds nothing under `record_type` and NetSuite's refusal is returned (permanent).
    /// No `X-NetSuite-Idempotency-Key` is sent: it only works with `Prefer: respond-async`, and
    /// this client uses synchronous requests + external IDs (see the module docs).
    pub async fn create_once(
        &self,
        record_type: &str,
        external_id: &ExternalId,
        body: impl Into<RecordBody>,
    ) -> Result<(NetSuiteInternalId, CreateOutcome), NetSuiteError> {
        self.create_once_with(record_type, external_id, body.into(), true)
            .await
    }

    /// [`Self::create_once`] for a record that is most likely new (a first attempt): it POSTs
    /// straight away and looks the external ID up only when NetSuite refuses the create or its
    /// outcome is ambiguous. One request in the usual case instead of two, and just as safe:
    /// NetSuite itself refuses a second record with the same external ID.
    pub async fn create_new_once(
        &self,
        record_type: &str,
        external_id: &ExternalId,
        body: impl Into<RecordBody>,
    ) -> Result<(NetSuiteInternalId, CreateOutcome), NetSuiteError> {
        self.create_once_with(record_type, external_id, body.into(), false)
            .await
    }

    async fn create_once_with(
        &self,
        record_type: &str,
        external_id: &ExternalId,
        body: RecordBody,
        lookup_first: bool,
    ) -> Result<(NetSuiteInternalId, CreateOutcome), NetSuiteError> {
        let body = body.with_external_id(external_id)?;
        if lookup_first && let Some(id) = self.find_by_external_id(record_type, external_id).await?
        {
            return Ok((id, CreateOutcome::AlreadyExisted));
        }
        let mut attempt = 0u32;
        loop {
            match self.create(record_type, body.clone()).await {
                Ok(id) => return Ok((id, CreateOutcome::Created)),
                Err(e) if e.is_ambiguous() => {
                    tracing::warn!(%external_id, error = %e, "create outcome unknown; looking it up before any retry");
                    if let Some(id) = self.find_by_external_id(record_type, external_id).await? {
                        return Ok((id, CreateOutcome::Created));
                    }
                    if attempt >= self.inner.max_retries {
                        return Err(e);
                    }
                    attempt += 1;
                    self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e @ NetSuiteError::Rejected { .. }) => {
                    return match self.find_by_external_id(record_type, external_id).await? {
                        Some(id) => Ok((id, CreateOutcome::AlreadyExisted)),
                        None => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn find_by_external_id(
        &self,
        record_type: &str,
        external_id: &ExternalId,
    ) -> Result<Option<NetSuiteInternalId>, NetSuiteError> {
        match self.get_by_external_id(record_type, external_id).await? {
            None => Ok(None),
            Some(v) => {
                id_of_record(&v)
                    .map(Some)
                    .ok_or_else(|| NetSuiteError::UnexpectedResponse {
                        message: format!("record `eid:{external_id}` has no usable `id`"),
                        ambiguous: false,
                    })
            }
        }
    }

    /// `POST /record/v1/{type}` with `Prefer: respond-async` and `X-NetSuite-Idempotency-Key`:
    /// the only way NetSuite honours an idempotency key (it ignores it on synchronous requests).
    /// Because the key makes the request idempotent, ambiguous failures are retried here; a
    /// resubmission NetSuite recognises comes back as the original job (`reused: true`).
    /// Polling the job is not implemented: the connector's main path is synchronous requests +
    /// external IDs ([`Self::create_once`]); this exists for bulk or slow writes.
    pub async fn create_async(
        &self,
        record_type: &str,
        body: impl Into<RecordBody>,
        key: &IdempotencyKey,
    ) -> Result<AsyncJob, NetSuiteError> {
        let body = body.into();
        let url = self.record_url(record_type, None)?;
        let key_header = netsuite_idempotency_uuid(key).to_string();
        let reply = self
            .send_with(
                Kind::RecordWrite,
                Method::POST,
                url,
                Some(&body),
                &[
                    ("prefer", "respond-async".to_string()),
                    ("x-netsuite-idempotency-key", key_header),
                ],
                Policy::Idempotent,
            )
            .await?;
        let location = reply
            .location
            .ok_or_else(|| NetSuiteError::UnexpectedResponse {
                message: format!(
                    "asynchronous create answered {} without a job Location",
                    reply.status.as_u16()
                ),
                ambiguous: false,
            })?;
        Ok(AsyncJob {
            location,
            reused: !reply.status.is_success(),
        })
    }

    // ----- SuiteQL ------------------------------------------------------------------------

    /// One SuiteQL page: `POST /query/v1/suiteql?limit=&offset=` with `Prefer: transient` and
    /// `{"q", "params"}` (anonymous `?` parameters). `limit` must be 1..=1000 and `offset` a
    /// multiple of `limit` below 100,000 — checked here before anything is sent.
    pub async fn suiteql(
        &self,
        query: &str,
        params: Vec<String>,
        limit: u32,
        offset: u64,
    ) -> Result<SuiteQlPage, NetSuiteError> {
        if limit == 0 || limit > SUITEQL_MAX_LIMIT {
            return Err(NetSuiteError::InvalidArgument(format!(
                "SuiteQL limit must be between 1 and {SUITEQL_MAX_LIMIT}, got {limit}"
            )));
        }
        if !offset.is_multiple_of(u64::from(limit)) {
            return Err(NetSuiteError::InvalidArgument(format!(
                "SuiteQL offset must be a multiple of the limit ({limit}), got {offset}"
            )));
        }
        if offset >= SUITEQL_MAX_ROWS {
            return Err(NetSuiteError::InvalidArgument(format!(
                "SuiteQL offset {offset} is past NetSuite's {SUITEQL_MAX_ROWS}-row cap; use suiteql_keyset"
            )));
        }
        let mut url = join_path(
            &self.inner.base,
            &["services", "rest", "query", "v1", "suiteql"],
        )?;
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string())
            .append_pair("offset", &offset.to_string());
        let mut query_body = serde_json::json!({ "q": query });
        if !params.is_empty() {
            query_body["params"] = Value::from(params);
        }
        let body = RecordBody::from(query_body);
        let reply = self
            .send(
                Kind::SuiteQl,
                Method::POST,
                url,
                Some(&body),
                &[("prefer", "transient")],
                Policy::Idempotent,
            )
            .await?;
        parse_suiteql_page(&reply.body)
    }

    /// All rows of a query, 1000 per page, until `hasMore` is false. Fails (permanent) if the
    /// query reaches 100,000 rows (NetSuite's cap: it cannot page past it and the result would
    /// be silently cut), judged from `totalResults` on the first page when present. Write such queries as
    /// `… WHERE id > ? ORDER BY id` and use [`Self::suiteql_keyset`].
    pub async fn suiteql_all(
        &self,
        query: &str,
        params: Vec<String>,
    ) -> Result<Vec<SuiteQlRow>, NetSuiteError> {
        let too_many = || {
            NetSuiteError::InvalidArgument(format!(
                "the query returns more rows than one SuiteQL query can page (NetSuite's cap is \
                 {SUITEQL_MAX_ROWS} rows; rows past it are silently dropped): write it as `… WHERE \
                 id > ? ORDER BY id` and use suiteql_keyset"
            ))
        };
        let mut rows = Vec::new();
        let mut offset = 0u64;
        loop {
            let page = self
                .suiteql(query, params.clone(), SUITEQL_MAX_LIMIT, offset)
                .await?;
            // Fail on the first page rather than after 100 requests when NetSuite says how many.
            if page.total_results.is_some_and(|t| t >= SUITEQL_MAX_ROWS) {
                return Err(too_many());
            }
            let n = page.items.len();
            rows.extend(page.items);
            if rows.len() as u64 >= SUITEQL_MAX_ROWS {
                return Err(too_many());
            }
            if !page.has_more {
                // NetSuite stops paging at its row cap (100,000; lower on some accounts and in
                // the simulator) while `totalResults` still counts every row: a cut result.
                if page.total_results.is_some_and(|t| t > rows.len() as u64) {
                    return Err(too_many());
                }
                return Ok(rows);
            }
            if n == 0 {
                return Err(NetSuiteError::UnexpectedResponse {
                    message: "SuiteQL page was empty but hasMore was true".into(),
                    ambiguous: false,
                });
            }
            offset += u64::from(SUITEQL_MAX_LIMIT);
        }
    }

    /// Keyset paging past the 100,000-row cap. `query` must end its bound parameters with the
    /// keyset one and order by it, e.g. `SELECT id, tranid FROM transaction WHERE type = ? AND
    /// id > ? ORDER BY id`; it is run with `params` followed by the last `id_column` value seen
    /// (starting below every ID), 1000 rows at a time, until NetSuite says there is no more.
    /// Row IDs must be integers and strictly increasing (otherwise the query lacks its
    /// `ORDER BY` and the call fails rather than loop).
    pub async fn suiteql_keyset(
        &self,
        query: &str,
        params: Vec<String>,
        id_column: &str,
    ) -> Result<Vec<SuiteQlRow>, NetSuiteError> {
        let wanted = params.len() + 1;
        if query.matches('?').count() != wanted {
            return Err(NetSuiteError::InvalidArgument(format!(
                "keyset query must have {wanted} `?` placeholders ({} params + the `{id_column} > ?` one)",
                params.len()
            )));
        }
        let mut rows: Vec<SuiteQlRow> = Vec::new();
        let mut last: i64 = i64::MIN;
        loop {
            let mut p = params.clone();
            p.push(last.to_string());
            let page = self.suiteql(query, p, SUITEQL_MAX_LIMIT, 0).await?;
            let has_more = page.has_more;
            if page.items.is_empty() {
                if has_more {
                    return Err(NetSuiteError::UnexpectedResponse {
                        message: "SuiteQL page was empty but hasMore was true".into(),
                        ambiguous: false,
                    });
                }
                return Ok(rows);
            }
            for row in page.items {
                let id = row_id(&row, id_column).ok_or_else(|| {
                    NetSuiteError::InvalidArgument(format!(
                        "keyset column `{id_column}` missing or not an integer in a SuiteQL row"
                    ))
                })?;
                if id <= last {
                    return Err(NetSuiteError::InvalidArgument(format!(
                        "keyset column `{id_column}` is not strictly increasing ({id} after {last}): \
                         the query needs `{id_column} > ?` and `ORDER BY {id_column}`"
                    )));
                }
                last = id;
                rows.push(row);
            }
            if !has_more {
                return Ok(rows);
            }
        }
    }

    // ----- the request loop ---------------------------------------------------------------

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .inner
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.inner.max_delay);
        // Jitter in [cap/2, cap] so parallel workers do not retry in lock step.
        let half = cap / 2;
        let extra = rand::rng().random_range(0..=half.as_millis().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_millis(extra)
    }

    async fn authorize(
        &self,
        method: &Method,
        url: &Url,
    ) -> Result<(HeaderValue, Option<u64>), NetSuiteError> {
        let (value, generation) = match &self.inner.auth {
            Authenticator::M2m(m) => {
                let t = m.access_token().await?;
                (format!("Bearer {}", t.secret()), Some(t.generation))
            }
            Authenticator::Tba(s) => (s.authorization_header(method.as_str(), url), None),
        };
        let mut hv = HeaderValue::from_str(&value).map_err(|_| {
            AuthError::Malformed("the access token has characters not allowed in a header".into())
        })?;
        hv.set_sensitive(true);
        Ok((hv, generation))
    }

    async fn send(
        &self,
        kind: Kind,
        method: Method,
        url: Url,
        body: Option<&RecordBody>,
        headers: &[(&'static str, &'static str)],
        policy: Policy,
    ) -> Result<Reply, NetSuiteError> {
        let owned: Vec<(&'static str, String)> = headers
            .iter()
            .map(|(k, v)| (*k, (*v).to_string()))
            .collect();
        self.send_with(kind, method, url, body, &owned, policy)
            .await
    }

    async fn send_with(
        &self,
        kind: Kind,
        method: Method,
        url: Url,
        body: Option<&RecordBody>,
        headers: &[(&'static str, String)],
        policy: Policy,
    ) -> Result<Reply, NetSuiteError> {
        let c = &self.inner.counters;
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let permit = self.inner.budget.acquire().await;
            let (auth, generation) = match self.authorize(&method, &url).await {
                Ok(a) => a,
                // The token endpoint was down: nothing was sent, so any request may wait and retry.
                Err(e)
                    if e.class() == mlc_core::ErrorClass::Transient
                        && attempt < self.inner.max_retries =>
                {
                    drop(permit);
                    attempt += 1;
                    c.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(attempt, error = %e, "NetSuite token request failed; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut rb = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, auth);
            for (k, v) in headers {
                rb = rb.header(*k, v.as_str());
            }
            if let Some(b) = body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.text.clone());
            }
            c.total.fetch_add(1, Ordering::Relaxed);
            match kind {
                Kind::RecordRead => &c.record_reads,
                Kind::RecordWrite => &c.record_writes,
                Kind::SuiteQl => &c.suiteql,
            }
            .fetch_add(1, Ordering::Relaxed);

            let outcome = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let location = resp
                        .headers()
                        .get(LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match resp.bytes().await {
                        Ok(b) => Ok(Reply {
                            status,
                            location,
                            body: b.to_vec(),
                        }),
                        // The status arrived, the body did not: the server acted on it.
                        Err(e) => Err((e, true)),
                    }
                }
                Err(e) => {
                    let sent = !e.is_connect();
                    Err((e, sent))
                }
            };

            let retryable;
            let error;
            match outcome {
                Ok(reply) if reply.status.is_success() => {
                    self.inner.budget.on_success();
                    return Ok(reply);
                }
                Ok(reply) if reply.status == StatusCode::UNAUTHORIZED => {
                    drop(permit);
                    let detail = crate::error::ErrorEnvelope::parse(&reply.body)
                        .map(|e| e.summary())
                        .unwrap_or_else(|| "Invalid login attempt.".into());
                    if reauthed {
                        return Err(AuthError::InvalidLogin { detail }.into());
                    }
                    reauthed = true;
                    c.reauths.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("NetSuite answered 401; re-authenticating once");
                    if let (Authenticator::M2m(m), Some(g)) = (&self.inner.auth, generation) {
                        m.invalidate(g);
                    }
                    continue;
                }
                Ok(reply)
                    if reply.location.is_some()
                        && crate::error::ErrorEnvelope::parse(&reply.body)
                            .is_some_and(|e| e.has_code("IDEMPOTENCY_ERROR")) =>
                {
                    // A resubmitted idempotency key: NetSuite points at the original job.
                    return Ok(reply);
                }
                Ok(reply) => {
                    let err = NetSuiteError::from_response(
                        reply.status.as_u16(),
                        &reply.body,
                        policy == Policy::Write,
                    );
                    if let NetSuiteError::ConcurrencyLimit { .. } = err {
                        c.throttled.fetch_add(1, Ordering::Relaxed);
                        self.inner.budget.on_throttled(&permit);
                        // Blocked before processing: always safe to repeat.
                        retryable = true;
                        error = NetSuiteError::ConcurrencyLimit {
                            attempts: attempt + 1,
                        };
                    } else if let NetSuiteError::Server { .. } = err {
                        retryable = policy == Policy::Idempotent;
                        error = err;
                    } else {
                        return Err(err);
                    }
                }
                Err((e, sent)) => {
                    let ambiguous = sent && policy == Policy::Write;
                    retryable = !ambiguous;
                    let what = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "could not connect"
                    } else {
                        "connection failed"
                    };
                    error = NetSuiteError::Network {
                        message: format!("{what}: {}", crate::error::describe_http_error(e)),
                        ambiguous,
                    };
                }
            }
            drop(permit);
            if !retryable || attempt >= self.inner.max_retries {
                return Err(error);
            }
            attempt += 1;
            c.retries.fetch_add(1, Ordering::Relaxed);
            let delay = self.backoff(attempt);
            tracing::debug!(attempt, ?delay, error = %error, "retrying NetSuite request");
            tokio::time::sleep(delay).await;
        }
    }
}

fn join_path(base: &Url, segments: &[&str]) -> Result<Url, NetSuiteError> {
    let mut u = base.clone();
    u.set_query(None);
    u.set_fragment(None);
    {
        let mut segs = u.path_segments_mut().map_err(|_| {
            NetSuiteError::InvalidArgument(format!("base URL `{base}` cannot carry a path"))
        })?;
        segs.pop_if_empty();
        segs.extend(segments);
    }
    Ok(u)
}

fn row_id(row: &SuiteQlRow, column: &str) -> Option<i64> {
    // Result keys are lowercase in practice, but Oracle warns casing may vary.
    let v = row.get(column).or_else(|| {
        row.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(column))
            .map(|(_, v)| v)
    })?;
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPage {
    #[serde(default)]
    items: Vec<SuiteQlRow>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    total_results: Option<u64>,
}

fn parse_suiteql_page(body: &[u8]) -> Result<SuiteQlPage, NetSuiteError> {
    let raw: RawPage =
        serde_json::from_slice(body).map_err(|e| NetSuiteError::UnexpectedResponse {
            message: format!("SuiteQL response is not a result page: {e}"),
            ambiguous: false,
        })?;
    let items: Vec<SuiteQlRow> = raw
        .items
        .into_iter()
        .map(|mut r| {
            r.remove("links");
            r
        })
        .collect();
    Ok(SuiteQlPage {
        count: raw.count.unwrap_or(items.len() as u64),
        offset: raw.offset.unwrap_or(0),
        has_more: raw.has_more,
        total_results: raw.total_results,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_ids() {
        assert_eq!(
            id_from_location(
                "https://demo123.suitetalk.api.netsuite.com/services/rest/record/v1/customer/647"
            )
            .unwrap()
            .as_str(),
            "647"
        );
        assert_eq!(
            id_from_location("/services/rest/record/v1/invoice/12/")
                .unwrap()
                .as_str(),
            "12"
        );
        assert!(id_from_location("/services/rest/async/v1/job/abc").is_none());
    }

    #[test]
    fn suiteql_page_strips_links() {
        let body = br#"{"links":[{"rel":"self","href":"x"}],"count":2,"hasMore":true,"offset":10,"totalResults":53,
            "items":[{"links":[],"email":"test@netsuite.com","count":"143"},{"links":[],"id":"7"}]}"#;
        let p = parse_suiteql_page(body).unwrap();
        assert_eq!(p.count, 2);
        assert!(p.has_more);
        assert_eq!(p.offset, 10);
        assert_eq!(p.total_results, Some(53));
        assert!(p.items.iter().all(|r| !r.contains_key("links")));
        assert_eq!(p.items[0]["count"], "143");
    }

    #[test]
    fn record_types_are_checked() {
        assert!(is_valid_record_type("customerpayment"));
        assert!(is_valid_record_type("customrecord_x1"));
        assert!(!is_valid_record_type("invoice/1"));
        assert!(!is_valid_record_type(""));
    }

    #[test]
    fn paths_join_under_the_base() {
        let b = Url::parse("http://127.0.0.1:9/").unwrap();
        assert_eq!(
            join_path(
                &b,
                &[
                    "services",
                    "rest",
                    "record",
                    "v1",
                    "invoice",
                    "eid:stripe_in_1"
                ]
            )
            .unwrap()
            .as_str(),
            "http://127.0.0.1:9/services/rest/record/v1/invoice/eid:stripe_in_1"
        );
        let b = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            join_path(&b, &["a"]).unwrap().as_str(),
            "http://127.0.0.1:9/prefix/a"
        );
    }
}

#[cfg(test)]
mod record_body_tests {
    use super::*;

    #[test]
    fn external_id_is_added_without_touching_exact_amounts() {
        let doc = crate::documents::Json::Obj(vec![(
            "amount".into(),
            crate::documents::Json::Num("1234567890123.450".parse().unwrap()),
        )]);
        let eid = ExternalId::parse("stripe_in_1").unwrap();
        let body = RecordBody::from(doc).with_external_id(&eid).unwrap();
        assert!(
            body.as_str().contains(r#""amount":1234567890123.450"#),
            "{}",
            body.as_str()
        );
        assert!(body.as_str().contains(r#""externalId":"stripe_in_1""#));
        // A matching externalId (any case) is kept; a different one is refused.
        let same = RecordBody::from(serde_json::json!({"externalId": "STRIPE_IN_1"}));
        assert!(same.with_external_id(&eid).is_ok());
        let other = RecordBody::from(serde_json::json!({"externalId": "stripe_in_2"}));
        assert!(other.with_external_id(&eid).is_err());
    }
}
