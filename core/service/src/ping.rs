//! "Ping your systems": checks a connection's real credentials and references before go-live,
//! each failure with what to fix. Secrets are never in a check (only counts and modes). The
//! CLI's `ml-connector ping` prints these checks; the GraphQL `connectionTest` returns them.
//!
//! Without `--tenant`/`--connection` it checks the configured default connection (the
//! configuration, plus the sealed credentials when a master key is given); with them, the named
//! connection's stored settings and sealed credentials. Either way the outcome is recorded on
//! the connection (`connections show` prints it), except that a ping of the default connection
//! never creates a database only to record it.

use anyhow::Context as _;
use mlc_core::NetSuiteInternalId;
use mlc_netsuite::{AuthError, NetSuiteClient, NetSuiteError};
use mlc_store::sealed::MasterKey;
use mlc_store::{ConnectionScope, ConnectionStore, Store};
use mlc_stripe::StripeError;
use mlc_stripe::client::KeyMode;
use secrecy::ExposeSecret;

use crate::config::{Config, CustomerMatch, ItemMatch, NetSuiteAuthKind};
use crate::{connections, credentials};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Does not work; the line says what to fix.
    Fail,
    /// Not checked (not configured, or an earlier check failed).
    Skip,
}

/// One check's outcome: a line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short name, e.g. `stripe key`.
    pub name: String,
    pub status: Status,
    /// What was found (never a secret).
    pub detail: String,
    /// What to change when it failed.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }

    /// The line printed for this check.
    pub fn line(&self) -> String {
        let tag = match self.status {
            Status::Ok => "ok  ",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        match &self.fix {
            Some(fix) => format!("{tag} {}: {} -> fix: {fix}", self.name, self.detail),
            None => format!("{tag} {}: {}", self.name, self.detail),
        }
    }
}

/// Where the checked settings come from, which decides what a fix tells the operator to change.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The configuration file and `MLC__…` variables (the default connection).
    Configuration,
    /// A connection's stored settings and sealed credentials.
    Connection(&'a ConnectionScope),
}

impl Source<'_> {
    /// `--tenant T --connection C` for a connection's commands; empty for the configuration.
    fn flags(&self) -> String {
        match self {
            Source::Configuration => String::new(),
            Source::Connection(scope) => format!(
                " --tenant {} --connection {}",
                scope.tenant_id(),
                scope.connection_id()
            ),
        }
    }
}

/// The outcome in one line for the connection's record: which checks failed and why (check
/// lines never hold a secret), bounded so a long error does not bloat the row.
pub fn outcome_message(results: &[Check]) -> (bool, String) {
    let failed: Vec<&Check> = results
        .iter()
        .filter(|c| c.status == Status::Fail)
        .collect();
    if failed.is_empty() {
        return (true, format!("all {} checks passed", results.len()));
    }
    let which = failed
        .iter()
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ");
    (
        false,
        bounded(&format!(
            "{} of {} checks failed: {which}",
            failed.len(),
            results.len()
        )),
    )
}

/// At most 500 characters, cut on a character boundary.
pub fn bounded(s: &str) -> String {
    const MAX: usize = 500;
    if s.chars().count() <= MAX {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX - 1).collect();
    out.push('…');
    out
}

/// Records the outcome on the connection (its last test). A failure to record does not change
/// the verdict: it is returned for the caller to mention.
pub async fn record(
    store: &Store,
    scope: &ConnectionScope,
    ok: bool,
    message: &str,
) -> Result<(), mlc_store::StoreError> {
    store
        .tenant(&scope.tenant())
        .record_connection_test(scope.connection_id(), ok, message)
        .await
        .map(|_| ())
}

/// Tests a tenant's connection with its stored settings and sealed credentials, and records
/// the outcome as its last test. `Err` when it cannot even be set up for the checks (unusable
/// settings, credentials that do not open under `key`): that is recorded as a failed test too.
pub async fn test_connection(
    store: &Store,
    scoped: &ConnectionStore,
    key: Option<&MasterKey>,
    process: Option<&Config>,
) -> anyhow::Result<Vec<Check>> {
    let scope = scoped.scope();
    let connection = store
        .tenant(&scope.tenant())
        .get_connection(scope.connection_id())
        .await?
        .with_context(|| format!("connection {scope} no longer exists"))?;
    // The configured default connection runs with the process configuration (its stored
    // settings only say so): test what it runs with.
    if let Some(config) = process.filter(|_| crate::connections::is_configured_default(&connection))
    {
        let results = checks_for(config, Source::Connection(scope)).await;
        let (ok, message) = outcome_message(&results);
        if let Err(r) = record(store, scope, ok, &message).await {
            tracing::warn!("cannot record the test of connection {scope}: {r}");
        }
        return Ok(results);
    }
    let prepared = async {
        let config = crate::config::connection_config(&connection.settings)
            .with_context(|| format!("connection {scope} has unusable settings"))?;
        credentials::load_stored_credentials(config, scoped, key)
            .await
            .with_context(|| format!("connection {scope}: cannot open its stored credentials"))
    }
    .await;
    let config = match prepared {
        Ok(c) => c,
        Err(e) => {
            if let Err(r) = record(store, scope, false, &bounded(&format!("{e:#}"))).await {
                tracing::warn!("cannot record the test of connection {scope}: {r}");
            }
            return Err(e);
        }
    };
    let results = checks_for(&config, Source::Connection(scope)).await;
    let (ok, message) = outcome_message(&results);
    if let Err(r) = record(store, scope, ok, &message).await {
        tracing::warn!("cannot record the test of connection {scope}: {r}");
    }
    Ok(results)
}

/// Runs every check against the configured Stripe account and NetSuite account.
pub async fn checks(config: &Config) -> Vec<Check> {
    checks_for(config, Source::Configuration).await
}

/// [`checks`] with fixes worded for where the settings come from.
pub async fn checks_for(config: &Config, source: Source<'_>) -> Vec<Check> {
    let mut out = vec![
        stripe_key(config, source).await,
        webhook_secrets(config, source),
    ];
    out.extend(netsuite(config, source).await);
    out
}

/// Prints one line per check; fails (non-zero exit) when any check failed.
const STRIPE_KEY_FIX: &str = "set stripe.api_key (better: MLC__STRIPE__API_KEY) to a current secret \
    (sk_...) or restricted (rk_...) key from the Stripe Dashboard, Developers > API keys";

fn stripe_key_fix(source: Source<'_>) -> String {
    match source {
        Source::Configuration => STRIPE_KEY_FIX.into(),
        Source::Connection(_) => format!(
            "store a current secret (sk_...) or restricted (rk_...) key from the Stripe \
             Dashboard, Developers > API keys: `ml-connector credentials set stripe{}` with the \
             key on standard input",
            source.flags()
        ),
    }
}

/// What the connector lists or reads in Stripe, by the name of the restricted key's permission.
const STRIPE_READS: &[(&str, &str)] = &[
    ("/v1/charges", "Charges"),
    ("/v1/invoices", "Invoices"),
    ("/v1/customers", "Customers"),
    ("/v1/products", "Products"),
    ("/v1/prices", "Prices"),
    ("/v1/refunds", "Refunds"),
    ("/v1/balance_transactions", "Balance transactions"),
    ("/v1/checkout/sessions", "Checkout Sessions"),
    ("/v1/events", "Events"),
];

async fn stripe_key(config: &Config, source: Source<'_>) -> Check {
    const NAME: &str = "stripe key";
    let client = match connections::stripe_client(config) {
        Ok(Some(c)) => c,
        Ok(None) => {
            let detail = match source {
                Source::Configuration => "stripe.api_key is not set",
                Source::Connection(_) => "no Stripe key is stored for this connection",
            };
            return Check::fail(NAME, detail, stripe_key_fix(source));
        }
        Err(e) => return Check::fail(NAME, format!("{e:#}"), stripe_key_fix(source)),
    };
    let mode = match client.mode() {
        KeyMode::Test => "test mode",
        KeyMode::Live => "live mode",
    };
    match client.retrieve_account().await {
        Ok(account) => {
            // A restricted key is refused resource by resource: find out now, not at the first
            // posting. A secret key may read everything and costs no more requests.
            let restricted = config
                .stripe
                .api_key
                .as_ref()
                .is_some_and(|k| k.expose_secret().starts_with("rk_"));
            let mut refused = Vec::new();
            if restricted {
                for (path, resource) in STRIPE_READS {
                    if let Err(StripeError::Permission { .. }) = client.probe_list(path).await {
                        refused.push(*resource);
                    }
                }
            }
            if refused.is_empty() {
                Check::ok(
                    NAME,
                    format!(
                        "{mode}, account {}, API version {}",
                        account.id,
                        client.api_version()
                    ),
                )
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "{mode} restricted key, account {}: it may not read {}",
                        account.id,
                        refused.join(", ")
                    ),
                    format!(
                        "in the Stripe Dashboard (Developers > API keys), give the restricted key \
                         Read on {} (and Write on Webhook Endpoints to have the webhook made for \
                         you), or use a secret key",
                        refused.join(", ")
                    ),
                )
            }
        }
        Err(e @ StripeError::Authentication { .. }) => Check::fail(
            NAME,
            format!("{mode} key refused by Stripe ({})", short(&e)),
            stripe_key_fix(source),
        ),
        Err(e @ StripeError::Permission { .. }) => Check::fail(
            NAME,
            format!("{mode} key may not read the account ({})", short(&e)),
            "give the restricted key read access to Account, Charges, Invoices, Customers, \
             Products, Checkout Sessions and Events, or use a secret key",
        ),
        Err(e) => Check::fail(
            NAME,
            format!("cannot reach Stripe: {e}"),
            "check stripe.api_base and this host's network access to it",
        ),
    }
}

/// The first sentence of an error, for one-line output (the fix is given separately).
fn short(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    match s.split_once(": ") {
        Some((head, _)) => head.to_string(),
        None => s,
    }
}

fn webhook_secrets(config: &Config, source: Source<'_>) -> Check {
    const NAME: &str = "webhook secrets";
    let fix = match source {
        Source::Configuration => "set stripe.webhook_secrets (better: \
            MLC__STRIPE__WEBHOOK_SECRETS=whsec_...) to the endpoint's signing secret from the \
            Stripe Dashboard, Developers > Webhooks"
            .to_string(),
        Source::Connection(_) => format!(
            "store the endpoint's signing secret (whsec_..., Stripe Dashboard, Developers > \
             Webhooks): `ml-connector credentials set stripe-webhook{}` with the secret on \
             standard input",
            source.flags()
        ),
    };
    let fix = fix.as_str();
    let secrets = &config.stripe.webhook_secrets;
    if secrets.is_empty() {
        return Check::fail(NAME, "none configured: every webhook would be refused", fix);
    }
    let bad = secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            let s = s.expose_secret();
            !s.starts_with("whsec_") || s.len() <= "whsec_".len()
        })
        .map(|(i, _)| (i + 1).to_string())
        .collect::<Vec<_>>();
    if !bad.is_empty() {
        return Check::fail(
            NAME,
            format!(
                "secret(s) #{} of {} not of the form whsec_... (values not shown)",
                bad.join(", #"),
                secrets.len()
            ),
            fix,
        );
    }
    Check::ok(
        NAME,
        format!(
            "{} well-formed (whsec_...), values not shown",
            secrets.len()
        ),
    )
}

/// [`netsuite_auth_fix`], plus where a connection's NetSuite secrets are stored (its settings
/// cannot hold them).
fn netsuite_auth_fix_for(config: &Config, e: &NetSuiteError, source: Source<'_>) -> String {
    let fix = netsuite_auth_fix(config, e);
    match (source, e) {
        (Source::Connection(_), NetSuiteError::Auth(_)) => format!(
            "{fix}; for this connection the private key (or the TBA secrets) is the one stored \
             with `ml-connector credentials set netsuite{}`",
            source.flags()
        ),
        _ => fix,
    }
}

fn netsuite_auth_fix(config: &Config, e: &NetSuiteError) -> String {
    match (config.netsuite.auth, e) {
        (NetSuiteAuthKind::M2m, NetSuiteError::Auth(AuthError::Rejected { code, .. }))
            if code == "invalid_client" =>
        {
            "check netsuite.client_id is the integration record's Client ID and the record is \
             enabled for the client credentials (M2M) grant"
                .into()
        }
        (NetSuiteAuthKind::M2m, NetSuiteError::Auth(AuthError::Rejected { .. })) => {
            "check netsuite.certificate_id against Setup > Integration > Manage Authentication > \
             OAuth 2.0 Client Credentials (M2M) Setup, that netsuite.private_key_path holds the key \
             of that certificate, and that the certificate is neither expired nor revoked (upload a \
             new one if so); NetSuite's Login Audit Trail names the exact reason"
                .into()
        }
        (NetSuiteAuthKind::M2m, NetSuiteError::Auth(AuthError::Config(_))) => {
            "check netsuite.algorithm (PS256 for an RSA key, ES256 for an EC key) and the key file \
             at netsuite.private_key_path (PKCS#8 PEM)"
                .into()
        }
        (NetSuiteAuthKind::Tba, NetSuiteError::Auth(_)) => {
            "check netsuite.consumer_key/consumer_secret (integration record) and \
             netsuite.token_id/token_secret (access token), and that the token is not revoked; \
             NetSuite's Login Audit Trail names the exact reason"
                .into()
        }
        (_, NetSuiteError::Rejected { .. }) => {
            "give the role 'REST Web Services' and 'SuiteAnalytics Workbook' (SuiteQL) permissions"
                .into()
        }
        _ => "check netsuite.account_id, netsuite.base_url and this host's network access to \
              NetSuite"
            .into(),
    }
}

async fn netsuite(config: &Config, source: Source<'_>) -> Vec<Check> {
    const NAME: &str = "netsuite token";
    let kind = match config.netsuite.auth {
        NetSuiteAuthKind::M2m => "M2M",
        NetSuiteAuthKind::Tba => "TBA",
    };
    let client = match connections::netsuite_client(config) {
        Ok(Some(c)) => c,
        Ok(None) => {
            let fix = match source {
                Source::Configuration => "set netsuite.account_id (Setup > Company > Company \
                    Information, e.g. 1234567 or 1234567_SB1) and the credentials for \
                    netsuite.auth"
                    .to_string(),
                Source::Connection(_) => "give the connection's settings [netsuite] account_id \
                    (Setup > Company > Company Information, e.g. 1234567 or 1234567_SB1) and the \
                    other keys for netsuite.auth"
                    .to_string(),
            };
            return vec![Check::fail(NAME, "netsuite.account_id is not set", fix)];
        }
        Err(e) => {
            let fix = match source {
                Source::Configuration => {
                    "complete the [netsuite] section (see config.default.toml)".to_string()
                }
                Source::Connection(_) => format!(
                    "complete the connection's [netsuite] settings and store its key with \
                     `ml-connector credentials set netsuite{} --from-file key.pem` (or --tba)",
                    source.flags()
                ),
            };
            return vec![Check::fail(NAME, format!("{e:#}"), fix)];
        }
    };
    // M2M gets a token first so a refusal is reported as such; then one trivial query proves the
    // token (or the TBA signature) and the role's REST/SuiteQL access.
    let probe = async {
        client.check_auth().await?;
        client
            .suiteql(
                "SELECT id FROM customer WHERE id = ?",
                vec!["-1".into()],
                1,
                0,
            )
            .await
    };
    let mut out = Vec::new();
    match probe.await {
        Ok(_) => out.push(Check::ok(
            NAME,
            format!(
                "{kind} login to account {} works (SuiteQL answered)",
                config.netsuite.account_id.trim()
            ),
        )),
        Err(e) => {
            let detail = match &e {
                NetSuiteError::Auth(AuthError::Rejected { code, status, .. }) => {
                    format!("{kind}: NetSuite refused the token request ({code}, HTTP {status})")
                }
                other => format!("{kind}: {}", short(other)),
            };
            out.push(Check::fail(
                NAME,
                detail,
                netsuite_auth_fix_for(config, &e, source),
            ));
            out.push(Check::skip(
                "netsuite references",
                "not checked: no NetSuite login",
            ));
            return out;
        }
    }
    let posting = &config.posting;
    match posting.item_match {
        ItemMatch::CustomField => {
            out.push(custom_field(&client, "item", "posting.item_field", &posting.item_field).await)
        }
        ItemMatch::ExternalId => out.push(Check::skip(
            "item field",
            "posting.item_match = external_id: no custom field needed",
        )),
    }
    if posting.customer_match.contains(&CustomerMatch::CustomField) {
        out.push(
            custom_field(
                &client,
                "customer",
                "posting.customer_field",
                &posting.customer_field,
            )
            .await,
        );
    }
    match &posting.subsidiary {
        Some(id) => {
            out.push(reference(&client, "subsidiary", "posting.subsidiary", id, None).await)
        }
        None => out.push(Check::skip(
            "subsidiary",
            "posting.subsidiary not set (required on OneWorld accounts)",
        )),
    }
    for (currency, id) in &posting.currencies {
        let key = format!("posting.currencies {}", currency.iso_code());
        out.push(reference(&client, "currency", &key, id, Some(&currency.iso_code())).await);
    }
    out
}

/// Checks that a custom field exists and is exposed to SuiteQL on `table`.
async fn custom_field(client: &NetSuiteClient, table: &str, key: &str, field: &str) -> Check {
    let name = format!("{table} field {field}");
    // Only a plain identifier may go into the query text.
    if field.is_empty()
        || !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Check::fail(
            name,
            format!("{key} is not a field ID"),
            format!("set {key} to the field's ID, e.g. custitem_stripe_product_id"),
        );
    }
    let q = format!("SELECT id, {field} FROM {table} WHERE id = ?");
    match client.suiteql(&q, vec!["-1".into()], 1, 0).await {
        Ok(_) => Check::ok(name, "exists and is visible to SuiteQL"),
        Err(e) if e.to_string().contains("Unknown identifier") => Check::fail(
            name,
            format!("NetSuite does not know {field} on {table} records"),
            format!(
                "create the custom {table} field {field} (Customization > Lists, Records & Fields), \
                 apply it to the {table} types you use, or set {key} to the existing field's ID"
            ),
        ),
        Err(e) => Check::fail(
            name,
            format!("query failed: {}", short(&e)),
            "give the role SuiteQL (SuiteAnalytics Workbook) access",
        ),
    }
}

/// Checks that a configured internal ID resolves to a record (and, for currencies, the right one).
async fn reference(
    client: &NetSuiteClient,
    record_type: &str,
    key: &str,
    id: &NetSuiteInternalId,
    iso: Option<&str>,
) -> Check {
    let name = format!("{record_type} {}", id.as_str());
    match client.get(record_type, id).await {
        Ok(v) => {
            let label = v["name"].as_str().unwrap_or_default().to_string();
            let symbol = v["symbol"].as_str();
            match (iso, symbol) {
                (Some(want), Some(got)) if !got.eq_ignore_ascii_case(want) => Check::fail(
                    name,
                    format!("{key} points at {got} ({label}), not {want}"),
                    format!(
                        "set {key} to the internal ID of the {want} currency (Lists > Accounting > Currencies)"
                    ),
                ),
                _ => Check::ok(name, format!("{key} resolves to {label}")),
            }
        }
        Err(NetSuiteError::NotFound { .. }) => Check::fail(
            name,
            format!("{key} does not exist in NetSuite"),
            format!("set {key} to an existing {record_type}'s internal ID"),
        ),
        Err(e) => Check::fail(
            name,
            format!("cannot read it: {}", short(&e)),
            format!("give the role view access to {record_type} records"),
        ),
    }
}
