//! Configuration: embedded defaults ← optional file ← `MLC__SECTION__KEY` environment variables,
//! parsed once into strong types.
//!
//! The embedded `config.default.toml` is also the schema: a key that is not in it is refused, and
//! an environment value is parsed with the type of the default it overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use mlc_core::{Currency, NetSuiteInternalId};
use secrecy::SecretString;
use serde::Deserialize;
use toml::Value;

/// The embedded defaults, every key commented.
pub const DEFAULT_TOML: &str = include_str!("../config.default.toml");

/// Prefix of environment overrides: `MLC__DATABASE__URL`.
pub const ENV_PREFIX: &str = "MLC__";

/// Keys whose values are secrets: printed redacted, never logged.
const SECRET_KEYS: &[&str] = &[
    "stripe.api_key",
    "stripe.webhook_secrets",
    "netsuite.consumer_secret",
    "netsuite.token_secret",
    "admin.token",
];

/// A configuration problem, naming the key, what is wrong and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("configuration key `{key}` ({origin}): {problem}; expected {expected}")]
    Invalid {
        key: String,
        origin: String,
        problem: String,
        expected: String,
    },
    #[error("unknown configuration key `{key}` ({origin}); see config.default.toml for the keys")]
    UnknownKey { key: String, origin: String },
}

fn invalid(key: &str, origin: &str, problem: impl Into<String>, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        origin: origin.to_string(),
        problem: problem.into(),
        expected: expected.to_string(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub shutdown_grace_secs: u64,
    /// A request's headers must be complete this long after its first byte (for a new
    /// connection: after it was accepted).
    pub header_read_timeout_secs: u64,
    /// A request's body must be complete this long after its headers.
    pub body_read_timeout_secs: u64,
    /// A kept-alive connection is closed when no next request starts within this time.
    pub idle_timeout_secs: u64,
    /// Connections open at once (see `http::serve` for what happens at the cap).
    pub max_connections: usize,
    /// Webhook body bytes held in memory at once, across all deliveries in flight.
    pub max_inflight_body_bytes: usize,
}

#[derive(Clone)]
pub struct DatabaseConfig {
    /// May hold a password: see [`redact_url`].
    pub url: String,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// Per-tenant metrics and trace export (`[telemetry]`).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Tenant handles allowed a `tenant` label on the per-tenant metrics; empty: none. Bounded by
    /// design, so a deployment of thousands of tenants cannot explode the series count.
    pub tenant_metrics: Vec<String>,
    /// OTLP/HTTP collector (`http://collector:4318`); traces are exported only when set.
    pub otlp_endpoint: Option<url::Url>,
    /// `service.name` of the exported traces.
    pub service_name: String,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub api_key: Option<SecretString>,
    pub webhook_secrets: Vec<SecretString>,
    pub webhook_tolerance_secs: i64,
    pub api_base: String,
    pub api_version: String,
    /// `None`: the client's default for the key's mode.
    pub rate_limit_per_sec: Option<u32>,
}

/// How the connector authenticates to NetSuite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetSuiteAuthKind {
    M2m,
    Tba,
}

#[derive(Debug, Clone)]
pub struct NetSuiteConfig {
    pub account_id: String,
    pub base_url: Option<String>,
    pub auth: NetSuiteAuthKind,
    pub client_id: String,
    pub certificate_id: String,
    pub algorithm: String,
    pub private_key_path: Option<PathBuf>,
    /// The private key itself, when it comes from the credentials store rather than a file.
    pub private_key_pem: Option<SecretString>,
    pub consumer_key: String,
    pub consumer_secret: Option<SecretString>,
    pub token_id: String,
    pub token_secret: Option<SecretString>,
    pub concurrency: usize,
    pub token_refresh_before_secs: u64,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    /// Jobs of one connection in flight at once in this instance; 0: `concurrency - 1` (at
    /// least 1), so one slot stays open for the other connections.
    pub per_connection_cap: usize,
    pub heartbeat_secs: u64,
    pub poll_interval_ms: u64,
    pub max_attempts: i32,
}

/// When a Stripe invoice is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceTrigger {
    Paid,
    Finalized,
}

/// How Stripe's processing fees are booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeeMode {
    /// Revenue net of fees: the fee is a negative line on the fee item (the seed's rule).
    Net,
    /// Revenue at the amount charged; the fee is a journal entry.
    Gross,
}

/// How the money a dispute withdraws is booked (docs/ACCOUNTING.md, "Disputes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputePosting {
    /// A journal entry on `dispute_account` (the default): the invoice stays as it was.
    Journal,
    /// A credit memo on the sale's items, paid out by a customer refund, as a refund is; the
    /// fee is a journal entry.
    CreditMemo,
}

/// How a Stripe product finds its NetSuite item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemMatch {
    CustomField,
    ExternalId,
}

/// One way of finding the NetSuite customer of a Stripe customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerMatch {
    ExternalId,
    CustomField,
    Email,
}

/// What posts, when, and onto which NetSuite references.
#[derive(Debug, Clone)]
pub struct PostingConfig {
    pub invoice_trigger: InvoiceTrigger,
    pub fees: FeeMode,
    pub time_zone: jiff::tz::TimeZone,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub discount_item: Option<NetSuiteInternalId>,
    pub tax_item: Option<NetSuiteInternalId>,
    pub fee_item: Option<NetSuiteInternalId>,
    pub default_item: Option<NetSuiteInternalId>,
    pub charge_product_metadata_key: Option<String>,
    pub payment_account: Option<NetSuiteInternalId>,
    /// Where a refund's cash leaves from; `None`: `payment_account`.
    pub refund_account: Option<NetSuiteInternalId>,
    /// One item for every refund; `None`: spread over the sale's items.
    pub refund_item: Option<NetSuiteInternalId>,
    /// The item an uncollectible invoice is written off on.
    pub bad_debt_item: Option<NetSuiteInternalId>,
    /// Journal (default) or credit memo.
    pub dispute_posting: DisputePosting,
    /// Debited by what a dispute withdraws (a chargeback account); `None`: disputes wait for a
    /// person (journal mode).
    pub dispute_account: Option<NetSuiteInternalId>,
    /// Debited by Stripe's dispute fee; `None`: `fee_expense_account`, else `dispute_account`.
    pub dispute_fee_account: Option<NetSuiteInternalId>,
    /// The bank account Stripe pays out to: each payout is a deposit into it.
    pub payout_bank_account: Option<NetSuiteInternalId>,
    /// Where a payout's transactions of no other kind go (Stripe's own fees, other
    /// adjustments); `None`: `fee_expense_account`.
    pub payout_other_account: Option<NetSuiteInternalId>,
    /// The A/R account a failed refund gives back to the customer (a journal line with the
    /// customer); `None`: a refund that fails after it posted waits for a person.
    pub receivables_account: Option<NetSuiteInternalId>,
    pub fee_expense_account: Option<NetSuiteInternalId>,
    pub fee_clearing_account: Option<NetSuiteInternalId>,
    pub currencies: BTreeMap<Currency, NetSuiteInternalId>,
    pub stripe_id_field: Option<String>,
    pub stripe_customer_field: Option<String>,
    pub item_match: ItemMatch,
    pub item_field: String,
    pub customer_match: Vec<CustomerMatch>,
    pub customer_field: String,
    pub create_customers: bool,
    pub guest_customer: Option<NetSuiteInternalId>,
    pub unmapped_retry_secs: u64,
    pub unmapped_retry_max_secs: u64,
    pub unmapped_give_up_secs: u64,
}

/// Which side's value wins for a field both sides can edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Stripe,
    Netsuite,
}

/// The operator console: the web dashboard, and the GraphQL API's settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None`: the console is off.
    pub token: Option<SecretString>,
    /// The zone dashboard dates are shown in.
    pub time_zone: jiff::tz::TimeZone,
    /// This service's public address (no trailing `/`), for full webhook URLs.
    pub public_url: Option<String>,
    pub graphql_introspection: bool,
    pub graphql_graphiql: bool,
    /// Requests per API key per minute.
    pub graphql_requests_per_minute: u32,
    /// Who may sign up on the dashboard.
    pub signup: crate::accounts::SignupPolicy,
}

/// Shortest admin token accepted: guessing must be hopeless even without rate limiting.
pub const ADMIN_TOKEN_MIN_LEN: usize = 32;

/// Reference data (customers, products/items) kept aligned both ways.
#[derive(Debug, Clone)]
pub struct ReferenceConfig {
    pub customers_to_netsuite: bool,
    pub update_item_names: bool,
    pub auto_create_items: bool,
    /// `serviceSaleItem` or `nonInventorySaleItem`.
    pub item_type: String,
    pub item_income_account: Option<NetSuiteInternalId>,
    pub customer_owner: Owner,
    /// `None`: the NetSuite → Stripe sync is off.
    pub netsuite_sync_interval_secs: Option<u64>,
    pub item_filter: Option<String>,
    pub customer_filter: Option<String>,
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub stripe: StripeConfig,
    pub netsuite: NetSuiteConfig,
    pub worker: WorkerConfig,
    pub posting: PostingConfig,
    pub reference: ReferenceConfig,
    pub admin: AdminConfig,
}

/// Where configuration values come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Environment variables to consider (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
}

impl Sources {
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Sources {
            file,
            env: std::env::vars().collect(),
        }
    }
}

/// The merged layers, before conversion; kept for `check-config`.
#[derive(Debug, Clone)]
pub struct Merged {
    pub value: Value,
    /// Where each overridden key came from (for error messages).
    origins: Vec<(String, String)>,
}

impl Merged {
    fn origin(&self, key: &str) -> String {
        self.origins
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| "default".to_string())
    }

    /// The merged configuration as TOML with every secret replaced by `<redacted>`.
    pub fn redacted_toml(&self) -> String {
        let mut v = self.value.clone();
        if let Value::Table(sections) = &mut v {
            for (section, table) in sections.iter_mut() {
                let Value::Table(table) = table else { continue };
                for (key, value) in table.iter_mut() {
                    let path = format!("{section}.{key}");
                    if SECRET_KEYS.contains(&path.as_str()) {
                        *value = redact_value(value);
                    } else if path == "database.url"
                        && let Value::String(s) = value
                    {
                        *s = redact_url(s);
                    }
                }
            }
        }
        toml::to_string_pretty(&v).unwrap_or_default()
    }
}

fn redact_value(v: &Value) -> Value {
    match v {
        Value::String(s) if s.is_empty() => Value::String(String::new()),
        Value::Array(a) => Value::Array(a.iter().map(redact_value).collect()),
        _ => Value::String("<redacted>".to_string()),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("<redacted>"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Merges the layers. Unknown keys and ill-typed environment values are refused here.
pub fn merge(sources: &Sources) -> Result<Merged, ConfigError> {
    let mut value: Value = toml::from_str(DEFAULT_TOML).map_err(|e| ConfigError::Syntax {
        path: PathBuf::from("<embedded config.default.toml>"),
        message: e.to_string(),
    })?;
    let mut origins = Vec::new();

    if let Some(path) = &sources.file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file: Value = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let origin = format!("file {}", path.display());
        let Value::Table(sections) = file else {
            return Ok(Merged { value, origins });
        };
        overlay(&mut value, &mut origins, sections, &origin, |_, _| true)?;
    }

    let mut env: Vec<&(String, String)> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (name, raw) in env {
        let rest = &name[ENV_PREFIX.len()..];
        let origin = format!("environment {name}");
        let Some((section, key)) = rest.split_once("__") else {
            return Err(ConfigError::UnknownKey {
                key: rest.to_ascii_lowercase(),
                origin,
            });
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let path = format!("{section}.{key}");
        let default = lookup(&value, &section, &key).ok_or_else(|| ConfigError::UnknownKey {
            key: path.clone(),
            origin: origin.clone(),
        })?;
        let parsed = match default {
            Value::String(_) => Value::String(raw.clone()),
            Value::Integer(_) => raw.trim().parse::<i64>().map(Value::Integer).map_err(|_| {
                invalid(
                    &path,
                    &origin,
                    format!("`{raw}` is not a whole number"),
                    "a whole number",
                )
            })?,
            Value::Boolean(_) => raw
                .trim()
                .parse::<bool>()
                .map(Value::Boolean)
                .map_err(|_| {
                    invalid(
                        &path,
                        &origin,
                        format!("`{raw}` is not true/false"),
                        "true or false",
                    )
                })?,
            Value::Array(_) => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
            other => {
                return Err(invalid(
                    &path,
                    &origin,
                    "cannot be set from the environment",
                    &format!("a {} in the configuration file", other.type_str()),
                ));
            }
        };
        set(&mut value, &section, &key, parsed);
        origins.push((path, origin));
    }
    Ok(Merged { value, origins })
}

/// Sets every `section.key` of `sections` over `value`, refusing unknown keys, keys `allowed`
/// refuses and values of another type than the default's.
fn overlay(
    value: &mut Value,
    origins: &mut Vec<(String, String)>,
    sections: toml::Table,
    origin: &str,
    allowed: impl Fn(&str, &str) -> bool,
) -> Result<(), ConfigError> {
    for (section, table) in sections {
        let Value::Table(table) = table else {
            return Err(ConfigError::UnknownKey {
                key: section,
                origin: origin.to_string(),
            });
        };
        for (key, v) in table {
            let path = format!("{section}.{key}");
            let default = lookup(value, &section, &key)
                .filter(|_| allowed(&section, &key))
                .ok_or_else(|| ConfigError::UnknownKey {
                    key: path.clone(),
                    origin: origin.to_string(),
                })?;
            if std::mem::discriminant(default) != std::mem::discriminant(&v) {
                return Err(invalid(
                    &path,
                    origin,
                    format!("has type {}", v.type_str()),
                    &format!("a {}", default.type_str()),
                ));
            }
            set(value, &section, &key, v);
            origins.push((path, origin.to_string()));
        }
    }
    Ok(())
}

/// The sections a connection's stored settings may set: how it reaches Stripe and NetSuite and
/// how it posts. The rest (server, database, worker, admin, log) belongs to the deployment.
pub const CONNECTION_SECTIONS: [&str; 4] = ["stripe", "netsuite", "posting", "reference"];

/// Keys that hold secrets or name files on the server: a connection's secrets are its sealed
/// credentials, never its settings, and a tenant must not point the service at a server file.
const NOT_CONNECTION_SETTINGS: [&str; 7] = [
    "stripe.api_key",
    "stripe.webhook_secrets",
    "netsuite.private_key_pem",
    "netsuite.private_key_path",
    "netsuite.consumer_secret",
    "netsuite.token_secret",
    "reference.netsuite_sync_interval_secs",
];

/// The configuration one connection runs with: the embedded defaults with the connection's
/// settings (`{"stripe": {…}, "netsuite": {…}, "posting": {…}, "reference": {…}}`) laid over
/// them. Errors name the key, as for the configuration file. Secrets are filled afterwards from
/// the connection's credentials.
pub fn connection_config(settings: &serde_json::Value) -> Result<Config, ConfigError> {
    let origin = "connection settings";
    let mut merged = merge(&Sources::default())?;
    let table: toml::Table = match settings {
        serde_json::Value::Object(m) if m.is_empty() => toml::Table::new(),
        serde_json::Value::Null => toml::Table::new(),
        other => toml::Table::try_from(other).map_err(|e| ConfigError::Syntax {
            path: PathBuf::from(origin),
            message: e.to_string(),
        })?,
    };
    // A secret or a server-side setting in a connection's settings is named as such, not as an
    // unknown key: it exists, it just does not belong there.
    for (section, t) in &table {
        if let Value::Table(t) = t {
            for key in t.keys() {
                let path = format!("{section}.{key}");
                if NOT_CONNECTION_SETTINGS.contains(&path.as_str()) {
                    return Err(invalid(
                        &path,
                        origin,
                        "is not a connection setting (a secret, a server file or a process-wide \
                         setting)",
                        "no such key: store secrets with `ml-connector credentials set … \
                         --tenant … --connection …`",
                    ));
                }
            }
        }
    }
    overlay(
        &mut merged.value,
        &mut merged.origins,
        table,
        origin,
        |section, key| {
            CONNECTION_SECTIONS.contains(&section)
                && !NOT_CONNECTION_SETTINGS.contains(&format!("{section}.{key}").as_str())
        },
    )?;
    Config::from_merged(&merged)
}

fn lookup<'a>(v: &'a Value, section: &str, key: &str) -> Option<&'a Value> {
    v.get(section)?.get(key)
}

fn set(v: &mut Value, section: &str, key: &str, new: Value) {
    if let Some(Value::Table(t)) = v.get_mut(section) {
        t.insert(key.to_string(), new);
    }
}

/// Loads and validates the configuration.
pub fn load(sources: &Sources) -> Result<(Config, Merged), ConfigError> {
    let merged = merge(sources)?;
    let config = Config::from_merged(&merged)?;
    Ok((config, merged))
}

/// Typed access to the merged table with errors that name the key.
struct Reader<'a> {
    merged: &'a Merged,
}

impl Reader<'_> {
    fn value(&self, path: &str) -> &Value {
        let (section, key) = path.split_once('.').unwrap_or((path, ""));
        // Every path read here exists in the embedded defaults, which are merged first.
        lookup(&self.merged.value, section, key).unwrap_or(&Value::Boolean(false))
    }

    fn string(&self, path: &str) -> String {
        self.value(path).as_str().unwrap_or_default().to_string()
    }

    fn opt_string(&self, path: &str) -> Option<String> {
        Some(self.string(path)).filter(|s| !s.trim().is_empty())
    }

    fn secret(&self, path: &str) -> Option<SecretString> {
        self.opt_string(path).map(SecretString::from)
    }

    fn int(&self, path: &str, min: i64, max: i64, expected: &str) -> Result<i64, ConfigError> {
        let n = self.value(path).as_integer().unwrap_or(i64::MIN);
        if n < min || n > max {
            return Err(invalid(
                path,
                &self.merged.origin(path),
                format!("{n} is out of range"),
                expected,
            ));
        }
        Ok(n)
    }

    fn parse<T: std::str::FromStr>(&self, path: &str, expected: &str) -> Result<T, ConfigError> {
        let s = self.string(path);
        s.trim().parse::<T>().map_err(|_| {
            invalid(
                path,
                &self.merged.origin(path),
                format!("`{s}` is not valid"),
                expected,
            )
        })
    }

    fn internal_id(&self, path: &str) -> Result<Option<NetSuiteInternalId>, ConfigError> {
        match self.opt_string(path) {
            None => Ok(None),
            Some(s) => NetSuiteInternalId::parse(s.trim()).map(Some).map_err(|_| {
                invalid(
                    path,
                    &self.merged.origin(path),
                    format!("`{s}` is not a NetSuite internal ID"),
                    "the record's internal ID (digits), or empty",
                )
            }),
        }
    }

    fn strings(&self, path: &str) -> Vec<String> {
        match self.value(path) {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    fn bool(&self, path: &str) -> bool {
        self.value(path).as_bool().unwrap_or(false)
    }

    fn custom_field(&self, path: &str, prefixes: &[&str]) -> Result<Option<String>, ConfigError> {
        let Some(name) = self.opt_string(path) else {
            return Ok(None);
        };
        let name = name.trim().to_ascii_lowercase();
        let ok = prefixes.iter().any(|p| name.starts_with(p))
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(invalid(
                path,
                &self.merged.origin(path),
                format!("`{name}` is not a NetSuite custom field ID"),
                &format!("a script ID starting with {}", prefixes.join(" or ")),
            ));
        }
        Ok(Some(name))
    }

    fn time_zone(&self, path: &str) -> Result<jiff::tz::TimeZone, ConfigError> {
        let tz_name = self.string(path);
        jiff::tz::TimeZone::get(tz_name.trim()).map_err(|_| {
            invalid(
                path,
                &self.merged.origin(path),
                format!("`{tz_name}` is not a known time zone"),
                "an IANA name such as America/New_York or Europe/Paris",
            )
        })
    }

    fn telemetry(&self) -> Result<TelemetryConfig, ConfigError> {
        let otlp_endpoint = match self.opt_string("telemetry.otlp_endpoint") {
            None => None,
            Some(s) => Some(
                url::Url::parse(s.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        invalid(
                            "telemetry.otlp_endpoint",
                            &self.merged.origin("telemetry.otlp_endpoint"),
                            format!("`{s}` is not an http(s) URL"),
                            "the collector's OTLP/HTTP address such as http://otel-collector:4318, or empty",
                        )
                    })?,
            ),
        };
        let tenant_metrics = self.strings("telemetry.tenant_metrics");
        if let Some(bad) = tenant_metrics
            .iter()
            .find(|t| mlc_core::TenantId::parse(t).is_err())
        {
            return Err(invalid(
                "telemetry.tenant_metrics",
                &self.merged.origin("telemetry.tenant_metrics"),
                format!("`{bad}` is not a tenant handle"),
                "tenant handles as `tenants list` prints them",
            ));
        }
        Ok(TelemetryConfig {
            tenant_metrics,
            otlp_endpoint,
            service_name: self.string("telemetry.service_name"),
        })
    }

    fn admin(&self, posting: &PostingConfig) -> Result<AdminConfig, ConfigError> {
        use secrecy::ExposeSecret;
        let token = self.secret("admin.token");
        if let Some(t) = &token
            && t.expose_secret().trim().len() < ADMIN_TOKEN_MIN_LEN
        {
            return Err(invalid(
                "admin.token",
                &self.merged.origin("admin.token"),
                "the token is too short (its value is not shown)",
                "at least 32 characters, e.g. from `openssl rand -hex 32`",
            ));
        }
        let time_zone = match self.opt_string("admin.time_zone") {
            None => posting.time_zone.clone(),
            Some(_) => self.time_zone("admin.time_zone")?,
        };
        let public_url = match self.opt_string("admin.public_url") {
            None => None,
            Some(u) => {
                let parsed = url::Url::parse(u.trim()).ok().filter(|p| {
                    matches!(p.scheme(), "http" | "https")
                        && p.host().is_some()
                        && p.query().is_none()
                });
                if parsed.is_none() {
                    return Err(invalid(
                        "admin.public_url",
                        &self.merged.origin("admin.public_url"),
                        format!("`{u}` is not an http(s) address"),
                        "this service's address as Stripe reaches it, e.g. https://connector.example.com",
                    ));
                }
                Some(u.trim().trim_end_matches('/').to_string())
            }
        };
        let per_minute = self.int(
            "admin.graphql_requests_per_minute",
            1,
            1_000_000,
            "requests per API key per minute, 1 to 1000000",
        )?;
        let signup_text = self.string("admin.signup");
        let signup = crate::accounts::SignupPolicy::parse(&signup_text).ok_or_else(|| {
            invalid(
                "admin.signup",
                &self.merged.origin("admin.signup"),
                format!("`{signup_text}` is not a sign-up policy"),
                "open, invite or closed",
            )
        })?;
        Ok(AdminConfig {
            signup,
            token,
            time_zone,
            public_url,
            graphql_introspection: self.bool("admin.graphql_introspection"),
            graphql_graphiql: self.bool("admin.graphql_graphiql"),
            graphql_requests_per_minute: u32::try_from(per_minute).unwrap_or(u32::MAX),
        })
    }

    fn posting(&self) -> Result<PostingConfig, ConfigError> {
        let time_zone = self.time_zone("posting.time_zone")?;
        let mut currencies = BTreeMap::new();
        for entry in self.strings("posting.currencies") {
            let parsed = entry.split_once('=').and_then(|(code, id)| {
                Some((
                    Currency::parse(code.trim()).ok()?,
                    NetSuiteInternalId::parse(id.trim()).ok()?,
                ))
            });
            let Some((currency, id)) = parsed else {
                return Err(invalid(
                    "posting.currencies",
                    &self.merged.origin("posting.currencies"),
                    format!("`{entry}` is not CODE=ID"),
                    "entries such as \"USD=1\" (ISO code = NetSuite currency internal ID)",
                ));
            };
            currencies.insert(currency, id);
        }
        let mut customer_match = Vec::new();
        for m in self.strings("posting.customer_match") {
            let parsed = CustomerMatch::deserialize(toml::Value::String(m.to_ascii_lowercase()))
                .map_err(|_| {
                    invalid(
                        "posting.customer_match",
                        &self.merged.origin("posting.customer_match"),
                        format!("`{m}` is not a matching method"),
                        "a list of external_id, custom_field, email",
                    )
                })?;
            customer_match.push(parsed);
        }
        let posting = PostingConfig {
            invoice_trigger: self.choice("posting.invoice_trigger", "paid or finalized")?,
            fees: self.choice("posting.fees", "net or gross")?,
            time_zone,
            subsidiary: self.internal_id("posting.subsidiary")?,
            discount_item: self.internal_id("posting.discount_item")?,
            tax_item: self.internal_id("posting.tax_item")?,
            fee_item: self.internal_id("posting.fee_item")?,
            default_item: self.internal_id("posting.default_item")?,
            charge_product_metadata_key: self.opt_string("posting.charge_product_metadata_key"),
            payment_account: self.internal_id("posting.payment_account")?,
            refund_account: self.internal_id("posting.refund_account")?,
            refund_item: self.internal_id("posting.refund_item")?,
            bad_debt_item: self.internal_id("posting.bad_debt_item")?,
            dispute_posting: self.choice("posting.dispute_posting", "journal or credit_memo")?,
            dispute_account: self.internal_id("posting.dispute_account")?,
            dispute_fee_account: self.internal_id("posting.dispute_fee_account")?,
            receivables_account: self.internal_id("posting.receivables_account")?,
            payout_bank_account: self.internal_id("posting.payout_bank_account")?,
            payout_other_account: self.internal_id("posting.payout_other_account")?,
            fee_expense_account: self.internal_id("posting.fee_expense_account")?,
            fee_clearing_account: self.internal_id("posting.fee_clearing_account")?,
            currencies,
            stripe_id_field: self.custom_field("posting.stripe_id_field", &["custbody"])?,
            stripe_customer_field: self
                .custom_field("posting.stripe_customer_field", &["custbody"])?,
            item_match: self.choice("posting.item_match", "custom_field or external_id")?,
            item_field: self
                .custom_field("posting.item_field", &["custitem"])?
                .unwrap_or_else(|| "custitem_stripe_product_id".into()),
            customer_match,
            customer_field: self
                .custom_field("posting.customer_field", &["custentity"])?
                .unwrap_or_else(|| "custentity_stripe_customer_id".into()),
            create_customers: self.bool("posting.create_customers"),
            guest_customer: self.internal_id("posting.guest_customer")?,
            unmapped_retry_secs: self.int(
                "posting.unmapped_retry_secs",
                1,
                86_400,
                "1 to 86400 seconds",
            )? as u64,
            unmapped_retry_max_secs: self.int(
                "posting.unmapped_retry_max_secs",
                1,
                604_800,
                "1 to 604800 seconds",
            )? as u64,
            unmapped_give_up_secs: self.int(
                "posting.unmapped_give_up_secs",
                60,
                31_536_000,
                "60 seconds to a year",
            )? as u64,
        };
        if posting.fees == FeeMode::Net && posting.invoice_trigger == InvoiceTrigger::Finalized {
            return Err(invalid(
                "posting.invoice_trigger",
                &self.merged.origin("posting.invoice_trigger"),
                "`finalized` cannot work with posting.fees = \"net\": Stripe's fee is only known once the invoice is paid",
                "invoice_trigger = \"paid\", or fees = \"gross\" to post invoices at finalization",
            ));
        }
        Ok(posting)
    }

    fn reference(&self) -> Result<ReferenceConfig, ConfigError> {
        let item_type = self.string("reference.item_type");
        if !["serviceSaleItem", "nonInventorySaleItem"].contains(&item_type.as_str()) {
            return Err(invalid(
                "reference.item_type",
                &self.merged.origin("reference.item_type"),
                format!("`{item_type}` is not an item type the connector creates"),
                "serviceSaleItem or nonInventorySaleItem",
            ));
        }
        Ok(ReferenceConfig {
            customers_to_netsuite: self.bool("reference.customers_to_netsuite"),
            update_item_names: self.bool("reference.update_item_names"),
            auto_create_items: self.bool("reference.auto_create_items"),
            item_type,
            item_income_account: self.internal_id("reference.item_income_account")?,
            customer_owner: self.choice("reference.customer_owner", "stripe or netsuite")?,
            netsuite_sync_interval_secs: match self.int(
                "reference.netsuite_sync_interval_secs",
                0,
                86_400,
                "0 (off) to 86400 seconds",
            )? {
                0 => None,
                n => Some(n as u64),
            },
            item_filter: self.opt_string("reference.item_filter"),
            customer_filter: self.opt_string("reference.customer_filter"),
        })
    }

    fn choice<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        expected: &str,
    ) -> Result<T, ConfigError> {
        let s = self.string(path).to_ascii_lowercase();
        T::deserialize(toml::Value::String(s.clone())).map_err(|_| {
            invalid(
                path,
                &self.merged.origin(path),
                format!("`{s}` is not one of the choices"),
                expected,
            )
        })
    }
}

impl Config {
    pub fn from_merged(merged: &Merged) -> Result<Self, ConfigError> {
        let r = Reader { merged };
        let posting = r.posting()?;
        let url = r.string("database.url");
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                &merged.origin("database.url"),
                format!("`{}` is not a supported database URL", redact_url(&url)),
                "sqlite://PATH or postgres://USER@HOST:PORT/DB",
            ));
        }
        let webhook_secrets: Vec<SecretString> = match r.value("stripe.webhook_secrets") {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .map(SecretString::from)
                .collect(),
            _ => Vec::new(),
        };
        for s in &webhook_secrets {
            use secrecy::ExposeSecret;
            if !s.expose_secret().starts_with("whsec_") {
                return Err(invalid(
                    "stripe.webhook_secrets",
                    &merged.origin("stripe.webhook_secrets"),
                    "a value does not start with `whsec_` (value not shown)",
                    "the endpoint's signing secret from the Stripe Dashboard, whsec_…",
                ));
            }
        }
        let api_key = r.secret("stripe.api_key");
        if let Some(k) = &api_key {
            use secrecy::ExposeSecret;
            let k = k.expose_secret();
            if !(k.starts_with("sk_") || k.starts_with("rk_")) {
                return Err(invalid(
                    "stripe.api_key",
                    &merged.origin("stripe.api_key"),
                    "the key does not start with `sk_` or `rk_` (value not shown)",
                    "a secret key sk_live_…/sk_test_… or a restricted key rk_…",
                ));
            }
        }
        let algorithm = r.string("netsuite.algorithm").to_ascii_uppercase();
        if !["PS256", "PS384", "PS512", "ES256", "ES384"].contains(&algorithm.as_str()) {
            return Err(invalid(
                "netsuite.algorithm",
                &merged.origin("netsuite.algorithm"),
                format!("`{algorithm}` is not accepted by NetSuite for client credentials"),
                "PS256 (default), PS384, PS512, ES256 or ES384; RS256 is refused by NetSuite since 2025",
            ));
        }
        Ok(Config {
            server: ServerConfig {
                listen: r.parse("server.listen", "host:port such as 127.0.0.1:8080")?,
                body_limit_bytes: r.int(
                    "server.body_limit_bytes",
                    1024,
                    64 * 1024 * 1024,
                    "between 1024 and 67108864 bytes",
                )? as usize,
                shutdown_grace_secs: r.int(
                    "server.shutdown_grace_secs",
                    0,
                    3600,
                    "0 to 3600 seconds",
                )? as u64,
                header_read_timeout_secs: r.int(
                    "server.header_read_timeout_secs",
                    1,
                    600,
                    "1 to 600 seconds",
                )? as u64,
                body_read_timeout_secs: r.int(
                    "server.body_read_timeout_secs",
                    1,
                    3600,
                    "1 to 3600 seconds",
                )? as u64,
                idle_timeout_secs: r.int(
                    "server.idle_timeout_secs",
                    1,
                    3600,
                    "1 to 3600 seconds",
                )? as u64,
                max_connections: r.int(
                    "server.max_connections",
                    1,
                    1_000_000,
                    "1 to 1000000 connections",
                )? as usize,
                max_inflight_body_bytes: {
                    let limit = r.int(
                        "server.body_limit_bytes",
                        1024,
                        64 * 1024 * 1024,
                        "between 1024 and 67108864 bytes",
                    )?;
                    // At least one largest body must fit, or every large delivery would be refused.
                    r.int(
                        "server.max_inflight_body_bytes",
                        limit,
                        4 * 1024 * 1024 * 1024 - 1,
                        "at least server.body_limit_bytes and below 4294967296 bytes",
                    )? as usize
                },
            },
            database: DatabaseConfig { url },
            log: LogConfig {
                format: r.choice("log.format", "auto, pretty or json")?,
                level: r.string("log.level"),
            },
            telemetry: r.telemetry()?,
            stripe: StripeConfig {
                api_key,
                webhook_secrets,
                webhook_tolerance_secs: r.int(
                    "stripe.webhook_tolerance_secs",
                    1,
                    86_400,
                    "1 to 86400 seconds (Stripe's SDKs use 300)",
                )?,
                api_base: r.string("stripe.api_base"),
                api_version: r.string("stripe.api_version"),
                rate_limit_per_sec: match r.int(
                    "stripe.rate_limit_per_sec",
                    0,
                    10_000,
                    "0 (automatic) to 10000 requests per second",
                )? {
                    0 => None,
                    n => Some(n as u32),
                },
            },
            netsuite: NetSuiteConfig {
                account_id: r.string("netsuite.account_id"),
                base_url: r.opt_string("netsuite.base_url"),
                auth: r.choice("netsuite.auth", "m2m or tba")?,
                client_id: r.string("netsuite.client_id"),
                certificate_id: r.string("netsuite.certificate_id"),
                algorithm,
                private_key_path: r.opt_string("netsuite.private_key_path").map(PathBuf::from),
                private_key_pem: None,
                consumer_key: r.string("netsuite.consumer_key"),
                consumer_secret: r.secret("netsuite.consumer_secret"),
                token_id: r.string("netsuite.token_id"),
                token_secret: r.secret("netsuite.token_secret"),
                concurrency: r.int("netsuite.concurrency", 1, 100, "1 to 100 requests")? as usize,
                token_refresh_before_secs: r.int(
                    "netsuite.token_refresh_before_secs",
                    0,
                    3000,
                    "0 to 3000 seconds (tokens last 3600 s)",
                )? as u64,
            },
            worker: WorkerConfig {
                concurrency: r.int("worker.concurrency", 1, 256, "1 to 256 jobs")? as usize,
                per_connection_cap: r.int("worker.per_connection_cap", 0, 256, "0 to 256 jobs")?
                    as usize,
                heartbeat_secs: r.int("worker.heartbeat_secs", 1, 60, "1 to 60 seconds")? as u64,
                poll_interval_ms: r.int("worker.poll_interval_ms", 10, 60_000, "10 to 60000 ms")?
                    as u64,
                max_attempts: r.int("worker.max_attempts", 1, 1000, "1 to 1000 attempts")? as i32,
            },
            admin: r.admin(&posting)?,
            posting,
            reference: r.reference()?,
        })
    }

    /// The defaults alone (for tests and tools).
    pub fn defaults() -> Config {
        match load(&Sources::default()) {
            Ok((c, _)) => c,
            Err(e) => unreachable!("embedded defaults are valid: {e}"),
        }
    }
}

/// Reads a file given by path, for keys that name files (private keys).
pub fn read_secret_file(path: &Path) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn defaults_load() {
        let c = Config::defaults();
        assert_eq!(c.database.url, "sqlite://ml-connector.db");
        assert_eq!(c.stripe.webhook_tolerance_secs, 300);
        assert_eq!(c.server.body_limit_bytes, 1024 * 1024);
        assert!(c.stripe.webhook_secrets.is_empty());
    }

    #[test]
    fn server_limits_default_and_check_each_other() {
        let c = Config::defaults();
        assert_eq!(c.server.header_read_timeout_secs, 10);
        assert_eq!(c.server.body_read_timeout_secs, 30);
        assert_eq!(c.server.idle_timeout_secs, 60);
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.server.max_inflight_body_bytes, 64 * 1024 * 1024);
        // A budget smaller than one largest body would refuse every large delivery.
        let e = load(&env(&[
            ("MLC__SERVER__BODY_LIMIT_BYTES", "65536"),
            ("MLC__SERVER__MAX_INFLIGHT_BODY_BYTES", "4096"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.max_inflight_body_bytes"), "{e}");
        assert!(e.contains("at least server.body_limit_bytes"), "{e}");
        let e = load(&env(&[("MLC__SERVER__HEADER_READ_TIMEOUT_SECS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.header_read_timeout_secs"), "{e}");
    }

    #[test]
    fn env_overrides_with_types() {
        let (c, _) = load(&env(&[
            ("MLC__SERVER__LISTEN", "0.0.0.0:9000"),
            ("MLC__STRIPE__WEBHOOK_SECRETS", "whsec_a, whsec_b"),
            ("MLC__WORKER__CONCURRENCY", "8"),
            ("UNRELATED", "x"),
        ]))
        .unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.stripe.webhook_secrets.len(), 2);
        assert_eq!(c.worker.concurrency, 8);
    }

    #[test]
    fn file_then_env_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[worker]\nconcurrency = 3\nheartbeat_secs = 7\n").unwrap();
        let mut s = env(&[("MLC__WORKER__CONCURRENCY", "5")]);
        s.file = Some(path);
        let (c, _) = load(&s).unwrap();
        assert_eq!(c.worker.concurrency, 5, "env beats file");
        assert_eq!(c.worker.heartbeat_secs, 7, "file beats default");
    }

    #[test]
    fn errors_name_the_key_and_what_is_expected() {
        let e = load(&env(&[("MLC__SERVER__LISTEN", "nonsense")])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("server.listen"), "{msg}");
        assert!(msg.contains("MLC__SERVER__LISTEN"), "{msg}");
        assert!(msg.contains("expected host:port"), "{msg}");

        let e = load(&env(&[("MLC__WORKER__CONCURRENCY", "lots")])).unwrap_err();
        assert!(e.to_string().contains("worker.concurrency"), "{e}");

        let e = load(&env(&[("MLC__WORKER__NOPE", "1")])).unwrap_err();
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");

        let e = load(&env(&[("MLC__NETSUITE__ALGORITHM", "RS256")])).unwrap_err();
        assert!(e.to_string().contains("RS256 is refused"), "{e}");

        let e = load(&env(&[(
            "MLC__STRIPE__WEBHOOK_SECRETS",
            "not_a_secret_xyz",
        )]))
        .unwrap_err();
        assert!(!e.to_string().contains("not_a_secret_xyz"), "{e}");
    }

    #[test]
    fn file_type_mismatch_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[worker]\nconcurrency = \"four\"\n").unwrap();
        let e = load(&Sources {
            file: Some(path.clone()),
            env: vec![],
        })
        .unwrap_err();
        assert!(e.to_string().contains("worker.concurrency"), "{e}");
        std::fs::write(&path, "[wrker]\nconcurrency = 4\n").unwrap();
        let e = load(&Sources {
            file: Some(path),
            env: vec![],
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
    }

    #[test]
    fn posting_settings_are_typed_and_checked() {
        let (c, _) = load(&env(&[
            ("MLC__POSTING__CURRENCIES", "USD=1, eur=2"),
            ("MLC__POSTING__FEE_ITEM", "77"),
            ("MLC__POSTING__TIME_ZONE", "Europe/Paris"),
        ]))
        .unwrap();
        assert_eq!(c.posting.currencies.len(), 2);
        assert_eq!(c.posting.currencies[&Currency::EUR].as_str(), "2");
        assert_eq!(c.posting.fee_item.as_ref().unwrap().as_str(), "77");
        assert_eq!(c.posting.fees, FeeMode::Net);

        let e = load(&env(&[("MLC__POSTING__INVOICE_TRIGGER", "finalized")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("fee is only known once the invoice is paid"),
            "{e}"
        );
        assert!(
            load(&env(&[
                ("MLC__POSTING__INVOICE_TRIGGER", "finalized"),
                ("MLC__POSTING__FEES", "gross"),
            ]))
            .is_ok()
        );

        let e = load(&env(&[("MLC__POSTING__FEE_ITEM", "fees")])).unwrap_err();
        assert!(e.to_string().contains("posting.fee_item"), "{e}");
        let e = load(&env(&[("MLC__POSTING__TIME_ZONE", "Mars/Olympus")])).unwrap_err();
        assert!(e.to_string().contains("posting.time_zone"), "{e}");
        let e = load(&env(&[("MLC__POSTING__CURRENCIES", "USD:1")])).unwrap_err();
        assert!(e.to_string().contains("CODE=ID"), "{e}");
        let e = load(&env(&[("MLC__POSTING__ITEM_FIELD", "stripe id")])).unwrap_err();
        assert!(e.to_string().contains("posting.item_field"), "{e}");
    }

    #[test]
    fn redacted_output_hides_every_secret() {
        let (_, merged) = load(&env(&[
            ("MLC__STRIPE__API_KEY", "sk_test_supersecret123"),
            (
                "MLC__STRIPE__WEBHOOK_SECRETS",
                "whsec_hidden1,whsec_hidden2",
            ),
            ("MLC__NETSUITE__TOKEN_SECRET", "tok_secret_value"),
            ("MLC__DATABASE__URL", "postgres://u:pgpass@localhost/db"),
        ]))
        .unwrap();
        let out = merged.redacted_toml();
        for s in [
            "supersecret",
            "hidden1",
            "hidden2",
            "tok_secret_value",
            "pgpass",
        ] {
            assert!(!out.contains(s), "{s} leaked:\n{out}");
        }
        assert!(out.contains("<redacted>"));
    }
}
