//! Configuration, seed, registrations, fault state, counters and the in-process handle.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::SimError;
use crate::model::{Db, MandatoryFields, NameValidation, RecordType, WriteMode};
use crate::render::render_record;

/// Everything the simulator is started with. `Default` gives a OneWorld sandbox `1234567_SB1`
/// with a concurrency limit of 5, 3600 s tokens and no latency or faults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// NetSuite account ID, e.g. `1234567_SB1` (realm form: uppercase, `_`).
    pub account_id: String,
    /// Address to bind; `None` = `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Base URL to report (Location headers, token audience) instead of `http://<Host header>`.
    pub public_base_url: Option<String>,
    /// Lifetime of issued access tokens (`expires_in` reflects it).
    pub token_ttl: Duration,
    /// Account concurrency limit; a request arriving while this many are in flight gets 429.
    pub concurrency_limit: usize,
    /// Added to every REST request while it counts as in flight.
    pub latency: Duration,
    /// SuiteQL result cap (NetSuite: 100,000 rows); lower it in tests.
    pub suiteql_max_rows: usize,
    /// Allowed clock skew for `iat` in the future and for TBA timestamps.
    pub clock_skew: Duration,
    /// Mandatory-field policy.
    pub mandatory: MandatoryFields,
    /// Random fault probabilities from the start.
    pub faults: FaultProbabilities,
    /// Initial data and credentials.
    pub seed: Seed,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            account_id: "1234567_SB1".into(),
            listen: None,
            public_base_url: None,
            token_ttl: Duration::from_secs(3600),
            concurrency_limit: 5,
            latency: Duration::ZERO,
            suiteql_max_rows: 100_000,
            clock_skew: Duration::from_secs(300),
            mandatory: MandatoryFields::default(),
            faults: FaultProbabilities::default(),
            seed: Seed::default(),
        }
    }
}

impl SimConfig {
    /// Default configuration with the seed read from a JSON file (see `seed.example.json`).
    /// A `public_key_file` in an M2M entry is resolved relative to the seed file.
    pub fn from_seed_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::SeedRead {
            path: path.display().to_string(),
            source,
        })?;
        let mut seed: Seed =
            serde_json::from_str(&text).map_err(|e| SimError::Seed(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for m in &mut seed.m2m {
            if m.public_key_pem.is_empty()
                && let Some(f) = &m.public_key_file
            {
                m.public_key_pem =
                    std::fs::read_to_string(dir.join(f)).map_err(|source| SimError::SeedRead {
                        path: dir.join(f).display().to_string(),
                        source,
                    })?;
            }
        }
        let mut cfg = SimConfig::default();
        if let Some(a) = &seed.account_id {
            cfg.account_id.clone_from(a);
        }
        cfg.seed = seed;
        Ok(cfg)
    }

    /// The example seed shipped with the crate (subsidiaries, currencies, accounts, customers,
    /// items, a TBA token).
    pub fn example() -> Result<Self, SimError> {
        let seed: Seed = serde_json::from_str(include_str!("../seed.example.json"))
            .map_err(|e| SimError::Seed(e.to_string()))?;
        let mut cfg = SimConfig::default();
        if let Some(a) = &seed.account_id {
            cfg.account_id.clone_from(a);
        }
        cfg.seed = seed;
        Ok(cfg)
    }
}

/// Initial state, as JSON: records use REST body shapes (`{"id":"1"}` references).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Seed {
    /// Overrides the account ID when read from a file.
    pub account_id: Option<String>,
    /// Subsidiaries: objects with a numeric `id` and `name`, `currency`, `country`.
    pub subsidiaries: Vec<Map<String, Value>>,
    /// Currencies: `id`, `name`, `symbol` (ISO code), `currencyPrecision`.
    pub currencies: Vec<Map<String, Value>>,
    /// Accounts: `id`, `acctNumber`, `acctName`, `acctType`.
    pub accounts: Vec<Map<String, Value>>,
    /// Customers, created through the same validation as a REST POST.
    pub customers: Vec<Map<String, Value>>,
    /// Items: a REST body plus `"type"` (`serviceSaleItem`, `nonInventorySaleItem`, `discountItem`).
    pub items: Vec<Map<String, Value>>,
    /// When present, the only custom field script IDs that exist in the account.
    pub custom_fields: Option<Vec<String>>,
    /// Registered OAuth 2.0 M2M certificates.
    pub m2m: Vec<M2mRegistration>,
    /// Registered TBA credentials.
    pub tba: Vec<TbaRegistration>,
}

/// An OAuth 2.0 client-credentials mapping: integration client ID + certificate (public key).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct M2mRegistration {
    /// Integration record client ID (the JWT `iss`).
    pub client_id: String,
    /// Certificate ID shown by NetSuite after upload (the JWT `kid`).
    pub certificate_id: String,
    /// Public key, PEM (`-----BEGIN PUBLIC KEY-----`), RSA or EC.
    #[serde(default)]
    pub public_key_pem: String,
    /// Alternative to `public_key_pem` in seed files: a path relative to the seed file.
    #[serde(default, skip_serializing)]
    pub public_key_file: Option<String>,
    /// Certificate expiry (`YYYY-MM-DD` or RFC 3339); default two years from registration.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// TBA (OAuth 1.0a) credentials: integration consumer key/secret + access token ID/secret.
#[derive(Debug, Clone, Deserialize)]
pub struct TbaRegistration {
    /// Consumer key of the integration record.
    pub consumer_key: String,
    /// Consumer secret.
    pub consumer_secret: SecretString,
    /// Token ID.
    pub token_id: String,
    /// Token secret.
    pub token_secret: SecretString,
}

/// Kinds of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 500 UNEXPECTED_ERROR before anything is processed.
    ServerError,
    /// The connection is closed before anything is processed.
    Drop,
    /// The write is applied, then the client gets 500 UNEXPECTED_ERROR.
    CommitThenError,
    /// The write is applied, then the connection is closed without a response.
    CommitThenDrop,
    /// 400 USER_ERROR refusing a record create because its posting period is closed. Like the
    /// real refusal it persists: every later create of the same external ID is refused too,
    /// until faults are cleared (the period is reopened).
    PeriodClosed,
}

impl FaultKind {
    pub(crate) fn after_commit(self) -> bool {
        matches!(self, FaultKind::CommitThenError | FaultKind::CommitThenDrop)
    }
}

/// A one-shot fault, consumed by the first matching request (for commit-then-* kinds: the
/// first matching write that succeeds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedFault {
    /// What happens.
    pub kind: FaultKind,
    /// Only requests with this HTTP method (case-insensitive), e.g. `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose path contains this (case-insensitive), e.g. `/record/v1/invoice`.
    #[serde(default)]
    pub path_contains: Option<String>,
}

impl QueuedFault {
    /// A fault matching every request.
    pub fn any(kind: FaultKind) -> Self {
        Self {
            kind,
            method: None,
            path_contains: None,
        }
    }
}

/// Per-request probabilities (0.0–1.0) of each fault kind.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FaultProbabilities {
    /// 500 before processing.
    pub server_error: f64,
    /// Dropped connection before processing.
    pub drop: f64,
    /// Write applied, then 500 (writes only).
    pub commit_then_error: f64,
    /// Write applied, then dropped connection (writes only).
    pub commit_then_drop: f64,
}

/// Counters exposed for tests and `GET /_sim/state`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    /// Requests to REST endpoints (records, SuiteQL), including refused ones.
    pub rest_requests: u64,
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Requests refused with 429.
    pub rejected_concurrency: u64,
    /// Requests refused with 401.
    pub rejected_auth: u64,
    /// Faults injected.
    pub faults_injected: u64,
    /// Writes applied (including those whose response was then lost).
    pub writes_committed: u64,
    /// Highest number of REST requests in flight at once.
    pub max_in_flight: usize,
    /// REST requests by record type / `suiteql`.
    pub by_endpoint: BTreeMap<String, u64>,
}

/// One Login Audit Trail row: why a login (token request or TBA call) succeeded or failed.
#[derive(Debug, Clone, Serialize)]
pub struct LoginAudit {
    /// `oauth2` or `tba`.
    pub method: &'static str,
    /// Client ID or consumer key presented (may be empty).
    pub client: String,
    /// `Success` or `Failure`.
    pub status: &'static str,
    /// NetSuite's reason code (`UnsupportedAlgo`, `MissingKey`, `SignatureValidation`,
    /// `TokenExpired`, `TokenNotAcceptable`, `TokenValidityTooBroad`, `ScopeMismatched`, …).
    pub detail: String,
}

pub(crate) struct Cert {
    pub client_id: String,
    pub key: DecodingKey,
    pub rsa: bool,
    pub expires_ms: i64,
}

pub(crate) struct TbaCred {
    pub consumer_key: String,
    pub consumer_secret: SecretString,
    pub token_secret: SecretString,
}

pub(crate) struct Settings {
    pub token_ttl: Duration,
    pub concurrency_limit: usize,
    pub latency: Duration,
    pub suiteql_max_rows: usize,
    pub clock_skew: Duration,
}

pub(crate) struct Inner {
    pub db: Db,
    pub certs: HashMap<String, Cert>,
    pub tba: HashMap<String, TbaCred>,
    pub tokens: HashMap<String, i64>,
    pub nonces: HashSet<String>,
    pub nonce_order: VecDeque<String>,
    pub probabilities: FaultProbabilities,
    pub queue: VecDeque<QueuedFault>,
    /// External IDs refused by a `PeriodClosed` fault; refused again until faults are cleared.
    pub closed_period_refusals: std::collections::HashSet<String>,
    pub settings: Settings,
    pub stats: SimStats,
    pub audit: Vec<LoginAudit>,
}

pub(crate) struct Shared {
    pub account_id: String,
    pub public_base_url: Mutex<Option<String>>,
    /// `http://<bound address>` once the simulator listens.
    pub bound_base: Mutex<Option<String>>,
    pub in_flight: AtomicUsize,
    inner: Mutex<Inner>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn audit(&self, method: &'static str, client: &str, ok: bool, detail: &str) {
        let mut g = self.lock();
        if g.audit.len() >= 1000 {
            g.audit.remove(0);
        }
        g.audit.push(LoginAudit {
            method,
            client: client.to_owned(),
            status: if ok { "Success" } else { "Failure" },
            detail: detail.to_owned(),
        });
    }

    /// Lowercase host form of the account (`1234567_SB1` → `1234567-sb1`).
    pub fn host_form(&self) -> String {
        self.account_id.to_lowercase().replace('_', "-")
    }

    /// Realm form (`1234567-sb1` → `1234567_SB1`).
    pub fn realm(&self) -> String {
        self.account_id.to_uppercase().replace('-', "_")
    }
}

/// In-process handle to inspect and change a simulator's state. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("account_id", &self.shared.account_id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn parse_expiry(s: &str) -> Option<i64> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    let d: jiff::civil::Date = s.parse().ok()?;
    let ts = jiff::tz::TimeZone::UTC
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .ok()?;
    Some(ts.as_millisecond())
}

impl SimHandle {
    /// Builds the state from a configuration (seed applied). Used by [`crate::router`] callers.
    pub fn new(cfg: &SimConfig) -> Result<SimHandle, SimError> {
        let now = mlc_core::now_millis();
        let mut db = Db::default();
        db.mandatory = cfg.mandatory.clone();
        db.custom_fields = cfg
            .seed
            .custom_fields
            .as_ref()
            .map(|v| v.iter().cloned().collect());
        for (t, list) in [
            (RecordType::Currency, &cfg.seed.currencies),
            (RecordType::Subsidiary, &cfg.seed.subsidiaries),
            (RecordType::Account, &cfg.seed.accounts),
        ] {
            for m in list {
                let mut fields = m.clone();
                let id = fields
                    .remove("id")
                    .and_then(|v| match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        SimError::Seed(format!("a seeded {} needs a numeric id", t.rest_name()))
                    })?;
                if let Some(c) = fields.get("currency").and_then(crate::model::ref_id) {
                    fields.insert("currency".into(), json!({"id": c.to_string()}));
                }
                db.insert_setup(t, id, fields, now);
            }
        }
        let mut warnings = Vec::new();
        for c in &cfg.seed.customers {
            db.write(
                RecordType::Customer,
                None,
                c,
                WriteMode::Create,
                &[],
                NameValidation::Error,
                &mut warnings,
                now,
            )
            .map_err(|e| SimError::Seed(format!("customer refused: {}", e.detail)))?;
        }
        for i in &cfg.seed.items {
            let mut body = i.clone();
            let t = body
                .remove("type")
                .and_then(|v| v.as_str().and_then(RecordType::from_path))
                .filter(|t| crate::model::ITEM_TYPES.contains(t))
                .ok_or_else(|| SimError::Seed("a seeded item needs a valid \"type\"".into()))?;
            db.write(
                t,
                None,
                &body,
                WriteMode::Create,
                &[],
                NameValidation::Error,
                &mut warnings,
                now,
            )
            .map_err(|e| SimError::Seed(format!("item refused: {}", e.detail)))?;
        }
        let handle = SimHandle {
            shared: Arc::new(Shared {
                account_id: cfg.account_id.clone(),
                public_base_url: Mutex::new(cfg.public_base_url.clone()),
                bound_base: Mutex::new(None),
                in_flight: AtomicUsize::new(0),
                inner: Mutex::new(Inner {
                    db,
                    certs: HashMap::new(),
                    tba: HashMap::new(),
                    tokens: HashMap::new(),
                    nonces: HashSet::new(),
                    nonce_order: VecDeque::new(),
                    probabilities: cfg.faults,
                    queue: VecDeque::new(),
                    closed_period_refusals: Default::default(),
                    settings: Settings {
                        token_ttl: cfg.token_ttl,
                        concurrency_limit: cfg.concurrency_limit,
                        latency: cfg.latency,
                        suiteql_max_rows: cfg.suiteql_max_rows,
                        clock_skew: cfg.clock_skew,
                    },
                    stats: SimStats::default(),
                    audit: Vec::new(),
                }),
            }),
        };
        for m in &cfg.seed.m2m {
            handle.register_m2m(m)?;
        }
        for t in &cfg.seed.tba {
            handle.register_tba(t.clone());
        }
        Ok(handle)
    }

    /// The account ID as configured (e.g. `1234567_SB1`).
    pub fn account_id(&self) -> &str {
        &self.shared.account_id
    }

    /// Registers (or replaces) an M2M certificate mapping.
    pub fn register_m2m(&self, reg: &M2mRegistration) -> Result<(), SimError> {
        let pem = reg.public_key_pem.as_bytes();
        let (key, rsa) = match DecodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, true),
            Err(_) => (
                DecodingKey::from_ec_pem(pem).map_err(|_| {
                    SimError::Registration(format!(
                        "certificate {}: not an RSA or EC public key PEM",
                        reg.certificate_id
                    ))
                })?,
                false,
            ),
        };
        let expires_ms = match &reg.expires_at {
            Some(s) => parse_expiry(s).ok_or_else(|| {
                SimError::Registration(format!(
                    "certificate {}: bad expires_at",
                    reg.certificate_id
                ))
            })?,
            None => mlc_core::now_millis() + 2 * 365 * 24 * 3600 * 1000,
        };
        self.shared.lock().certs.insert(
            reg.certificate_id.clone(),
            Cert {
                client_id: reg.client_id.clone(),
                key,
                rsa,
                expires_ms,
            },
        );
        Ok(())
    }

    /// Removes a certificate mapping (as revoking it in NetSuite would).
    pub fn revoke_certificate(&self, certificate_id: &str) -> bool {
        self.shared.lock().certs.remove(certificate_id).is_some()
    }

    /// Registers TBA credentials.
    pub fn register_tba(&self, reg: TbaRegistration) {
        self.shared.lock().tba.insert(
            reg.token_id.clone(),
            TbaCred {
                consumer_key: reg.consumer_key,
                consumer_secret: reg.consumer_secret,
                token_secret: reg.token_secret,
            },
        );
    }

    /// Sets random fault probabilities.
    pub fn set_fault_probabilities(&self, p: FaultProbabilities) {
        self.shared.lock().probabilities = p;
    }

    /// Queues a one-shot fault.
    pub fn push_fault(&self, f: QueuedFault) {
        self.shared.lock().queue.push_back(f);
    }

    /// Clears queued faults and probabilities.
    pub fn clear_faults(&self) {
        let mut g = self.shared.lock();
        g.queue.clear();
        g.probabilities = FaultProbabilities::default();
        g.closed_period_refusals.clear();
    }

    /// One-shot faults not yet consumed.
    pub fn queued_faults(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Sets the per-request latency.
    pub fn set_latency(&self, d: Duration) {
        self.shared.lock().settings.latency = d;
    }

    /// Sets the account concurrency limit.
    pub fn set_concurrency_limit(&self, n: usize) {
        self.shared.lock().settings.concurrency_limit = n;
    }

    /// Sets the lifetime of access tokens issued from now on.
    pub fn set_token_ttl(&self, d: Duration) {
        self.shared.lock().settings.token_ttl = d;
    }

    /// Makes every access token issued so far expired (the next REST call gets 401).
    pub fn expire_access_tokens(&self) {
        for exp in self.shared.lock().tokens.values_mut() {
            *exp = 0;
        }
    }

    /// Highest number of REST requests observed in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().stats.max_in_flight
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    /// The Login Audit Trail (most recent last).
    pub fn login_audit(&self) -> Vec<LoginAudit> {
        self.shared.lock().audit.clone()
    }

    /// Number of records of a type.
    pub fn count(&self, t: RecordType) -> usize {
        self.shared.lock().db.count(t)
    }

    /// A record rendered as `GET` with `expandSubResources=true` would show it, by internal ID
    /// or `eid:<externalId>`.
    pub fn get(&self, t: RecordType, key: &str) -> Option<Value> {
        let base = self.base_url_or_default();
        let g = self.shared.lock();
        let id = g.db.resolve(t, key)?;
        let r = g.db.get(t, id)?;
        Some(render_record(&g.db, &base, r, true))
    }

    /// Internal IDs of all records of a type.
    pub fn ids(&self, t: RecordType) -> Vec<u64> {
        self.shared.lock().db.iter(t).map(|r| r.id).collect()
    }

    /// Creates a record in-process through the same validation as a REST POST; returns its ID.
    pub fn create(&self, t: RecordType, body: Value) -> Result<u64, String> {
        let Value::Object(m) = body else {
            return Err("body must be an object".into());
        };
        let mut w = Vec::new();
        let mut g = self.shared.lock();
        let r = g.db.write(
            t,
            None,
            &m,
            WriteMode::Create,
            &[],
            NameValidation::Error,
            &mut w,
            mlc_core::now_millis(),
        );
        r.map_err(|e| e.detail.clone())
    }

    fn base_url_or_default(&self) -> String {
        let public = self
            .shared
            .public_base_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        public
            .or_else(|| {
                self.shared
                    .bound_base
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
            .unwrap_or_default()
    }

    /// A JSON dump for debugging (`GET /_sim/state`): settings, counts, counters, records,
    /// registrations (secrets and keys redacted), the login audit trail.
    pub fn state_json(&self) -> Value {
        let base = self.base_url_or_default();
        let in_flight = self.shared.in_flight.load(Ordering::SeqCst);
        let g = self.shared.lock();
        let mut counts = Map::new();
        let mut records = Map::new();
        for t in RecordType::ALL {
            counts.insert(t.rest_name().into(), json!(g.db.count(t)));
            let list: Vec<Value> =
                g.db.iter(t)
                    .map(|r| render_record(&g.db, &base, r, true))
                    .collect();
            records.insert(t.rest_name().into(), Value::Array(list));
        }
        let certs: Vec<Value> = g
            .certs
            .iter()
            .map(|(id, c)| {
                json!({"certificate_id": id, "client_id": c.client_id,
                       "key_type": if c.rsa {"RSA"} else {"EC"},
                       "expires_at": crate::render::iso_ms(c.expires_ms)})
            })
            .collect();
        let tba: Vec<Value> = g
            .tba
            .iter()
            .map(|(id, c)| {
                json!({"token_id": id, "consumer_key": c.consumer_key,
                       "consumer_secret": redact(&c.consumer_secret),
                       "token_secret": redact(&c.token_secret)})
            })
            .collect();
        json!({
            "account_id": self.shared.account_id,
            "settings": {
                "token_ttl_seconds": g.settings.token_ttl.as_secs(),
                "concurrency_limit": g.settings.concurrency_limit,
                "latency_ms": u64::try_from(g.settings.latency.as_millis()).unwrap_or(u64::MAX),
                "suiteql_max_rows": g.settings.suiteql_max_rows,
                "one_world": g.db.mandatory.one_world,
            },
            "in_flight": in_flight,
            "stats": g.stats,
            "fault_probabilities": g.probabilities,
            "queued_faults": g.queue,
            "counts": counts,
            "m2m_certificates": certs,
            "tba_tokens": tba,
            "active_access_tokens": g.tokens.values().filter(|e| **e > mlc_core::now_millis()).count(),
            "login_audit": g.audit,
            "records": records,
        })
    }
}

fn redact(s: &SecretString) -> String {
    let n = s.expose_secret().len();
    format!("<redacted, {n} chars>")
}
