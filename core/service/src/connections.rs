//! Connections: the Stripe and NetSuite clients built from a configuration, the handler that
//! runs one connection's jobs (the pipeline, or accept-only when nothing is configured), the
//! configured `default` tenant and connection, and opening the connection a command names.
//!
//! The worker's registry (`mlc-jobs`) builds every connection through [`connection_handler`];
//! `serve`, the CLI and the console open the store and the connection through this module.

use std::sync::Arc;

use anyhow::Context;
use mlc_core::{ConnectionId, ConnectionStatus, TenantId};
use mlc_netsuite::{AccountId, Credentials, NetSuiteClient, NetSuiteConfig, SigningAlgorithm};
use mlc_store::sealed::MasterKey;
use mlc_store::{Connection, ConnectionStore, Job, JobOutcome, NewConnection, Store, StoreOptions};
use mlc_stripe::{StripeClient, StripeClientConfig};

use crate::config::{Config, NetSuiteAuthKind};
use crate::netsuite_budget::Budgets;
use crate::pipeline::{AcceptOnly, Pipeline};

/// The words every "paused" wait reason holds (the worker writes them when a connection is not
/// active), so resuming the connection can find and wake those jobs.
pub const PAUSED_MARKER: &str = "is not active";

/// Pauses or resumes one of a tenant's connections (the CLI and the GraphQL API both come here):
/// `None` when the tenant has no such connection, else how many of its waiting jobs a resume
/// released to run now (0 for a pause: its events are stored and post when it is resumed).
pub async fn set_status(
    store: &Store,
    tenant: &mlc_store::TenantStore,
    id: &ConnectionId,
    status: ConnectionStatus,
) -> Result<Option<u64>, mlc_store::StoreError> {
    if !tenant.set_connection_status(id, status).await? {
        return Ok(None);
    }
    let Some(scope) = store
        .connection_scope(tenant.scope().tenant_id(), id)
        .await?
    else {
        return Ok(Some(0));
    };
    let connection = store.scoped(&scope);
    let woken = if status == ConnectionStatus::Active {
        connection.wake_waiting_jobs(PAUSED_MARKER).await?
    } else {
        0
    };
    connection
        .append_audit(mlc_store::NewAudit {
            step: format!("connection_{status}"),
            message: match status {
                ConnectionStatus::Active => {
                    format!("Connection set active: posting; {woken} waiting job(s) released")
                }
                _ => format!(
                    "Connection set {status}: events are stored and post when it is resumed"
                ),
            },
            ..mlc_store::NewAudit::default()
        })
        .await?;
    Ok(Some(woken))
}

/// Checks a connection's settings (`{"stripe": {…}, "netsuite": {…}, …}`, no secrets) the way
/// the connection will run them, so a typo is an error now rather than a failed posting later.
/// Returns the NetSuite account they post to (its budget is shared by every connection there).
pub fn check_settings(
    settings: &serde_json::Value,
) -> Result<Option<String>, crate::config::ConfigError> {
    crate::config::connection_config(settings)?;
    Ok(settings
        .pointer("/netsuite/account_id")
        .and_then(|v| v.as_str())
        .map(|a| a.trim().to_ascii_uppercase())
        .filter(|a| !a.is_empty()))
}

/// Why a connection was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The settings would not run (permanent: fix them).
    #[error("settings not usable: {0}")]
    Settings(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] mlc_store::StoreError),
}

/// Creates one of a tenant's connections (the CLI and the GraphQL API both come here), with a
/// new, unguessable webhook route; a draft unless `active`. Audited `connection_created`.
/// [`mlc_store::StoreError::AlreadyExists`] when the tenant has one with that ID.
pub async fn create_connection(
    store: &Store,
    tenant: &mlc_store::TenantStore,
    id: ConnectionId,
    name: Option<String>,
    settings: serde_json::Value,
    active: bool,
) -> Result<Connection, CreateError> {
    let netsuite_account = check_settings(&settings)?;
    let created = tenant
        .create_connection(&NewConnection {
            name: name.unwrap_or_else(|| id.to_string()),
            id,
            status: if active {
                ConnectionStatus::Active
            } else {
                ConnectionStatus::Draft
            },
            settings,
            netsuite_account,
        })
        .await?;
    store
        .scoped(&created.scope)
        .append_audit(mlc_store::NewAudit {
            step: "connection_created".into(),
            message: format!("Connection created ({})", created.status),
            ..mlc_store::NewAudit::default()
        })
        .await?;
    Ok(created)
}

/// What runs one connection's jobs.
#[derive(Clone)]
pub enum ConnectionHandler {
    Pipeline(Pipeline),
    /// Neither Stripe nor NetSuite is configured: events are recorded as accepted.
    AcceptOnly(AcceptOnly),
}

impl ConnectionHandler {
    /// Runs one job of this connection.
    pub async fn handle(&self, job: Job) -> JobOutcome {
        match self {
            ConnectionHandler::Pipeline(p) => p.handle(job).await,
            ConnectionHandler::AcceptOnly(a) => a.handle(job).await,
        }
    }

    /// Runs one onboarding run over the connection's Stripe history (the dry run or the
    /// backfill), whatever the connection's status: a draft is where the dry run is wanted.
    pub async fn run_history(&self, job: Job) -> JobOutcome {
        match self {
            ConnectionHandler::Pipeline(p) => p.run_history(&job).await,
            ConnectionHandler::AcceptOnly(a) => {
                fail_history_run(
                    &a.store,
                    &job,
                    "connect Stripe and NetSuite first: this connection has neither configured",
                )
                .await
            }
        }
    }

    pub fn pipeline(&self) -> Option<&Pipeline> {
        match self {
            ConnectionHandler::Pipeline(p) => Some(p),
            ConnectionHandler::AcceptOnly(_) => None,
        }
    }
}

/// The configured company as the `default` tenant with its `default` connection, created at the
/// first start and kept in step with the configuration at every start (its status is left as
/// it is: a paused default connection stays paused). `POST /webhooks/stripe` routes to it.
pub async fn ensure_default_connection(
    config: &Config,
    store: &Store,
) -> anyhow::Result<ConnectionStore> {
    let tenant = store
        .ensure_tenant(&TenantId::default_id(), "Default company")
        .await
        .context("cannot create the default tenant")?;
    let account = config.netsuite.account_id.trim();
    let connection = store
        .tenant(&tenant)
        .upsert_connection(&NewConnection {
            id: ConnectionId::default_id(),
            name: "Default (from the configuration)".into(),
            status: ConnectionStatus::Active,
            // Its settings are the configuration's own; nothing to store but where they live.
            settings: configured_default_settings(),
            netsuite_account: (!account.is_empty()).then(|| account.to_ascii_uppercase()),
        })
        .await
        .context("cannot create the default connection")?;
    Ok(store.scoped(&connection.scope))
}

/// The default connection of a store that `serve` (or the demo) already set up.
pub async fn default_scoped(store: Store) -> anyhow::Result<ConnectionStore> {
    let scope = store
        .connection_scope(&TenantId::default_id(), &ConnectionId::default_id())
        .await?
        .context("the store has no default connection yet: start `ml-connector serve` once")?;
    Ok(store.scoped(&scope))
}

/// Which connection a command acts on (`--tenant`, `--connection`); the configured default when
/// neither is given.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub tenant: Option<String>,
    pub connection: Option<String>,
}

/// Opens the store and the connection a command names, with errors that say what to do.
pub async fn open_connection(
    config: &Config,
    target: &Target,
) -> anyhow::Result<(Store, ConnectionStore)> {
    let store = connect_store_for_command(config).await?;
    if target.tenant.is_none() && target.connection.is_none() {
        // Commands read and act on the default connection; only a store that never ran
        // `serve` needs it made (a command writes nothing it does not need to).
        let existing = store
            .connection_scope(&TenantId::default_id(), &ConnectionId::default_id())
            .await?;
        let default = match existing {
            Some(scope) => store.scoped(&scope),
            None => ensure_default_connection(config, &store).await?,
        };
        return Ok((store, default));
    }
    let tenant = TenantId::parse(target.tenant.as_deref().unwrap_or("default"))
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let connection = ConnectionId::parse(target.connection.as_deref().unwrap_or("default"))
        .map_err(|e| anyhow::anyhow!("--connection: {e}"))?;
    let scope = store
        .connection_scope(&tenant, &connection)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "tenant `{tenant}` has no connection `{connection}`: list them with \
                 `ml-connector connections list --tenant {tenant}`"
            )
        })?;
    let scoped = store.scoped(&scope);
    Ok((store, scoped))
}

/// The Stripe API client, if an API key is configured.
pub fn stripe_client(config: &Config) -> anyhow::Result<Option<StripeClient>> {
    let Some(key) = config.stripe.api_key.clone() else {
        return Ok(None);
    };
    let mut c = StripeClientConfig::new(key);
    c.base_url = url::Url::parse(&config.stripe.api_base)
        .with_context(|| format!("stripe.api_base `{}` is not a URL", config.stripe.api_base))?;
    c.api_version = config.stripe.api_version.clone();
    c.rate_limit_per_sec = config
        .stripe
        .rate_limit_per_sec
        .and_then(std::num::NonZeroU32::new);
    Ok(Some(
        StripeClient::new(c).context("cannot build the Stripe client")?,
    ))
}

/// The NetSuite client, if an account is configured, governing its own concurrency.
pub fn netsuite_client(config: &Config) -> anyhow::Result<Option<NetSuiteClient>> {
    netsuite_client_with(config, None)
}

/// The NetSuite client with a given concurrency budget (shared across instances).
pub fn netsuite_client_with(
    config: &Config,
    budget: Option<Arc<dyn mlc_netsuite::ConcurrencyBudget>>,
) -> anyhow::Result<Option<NetSuiteClient>> {
    let ns = &config.netsuite;
    if ns.account_id.trim().is_empty() {
        return Ok(None);
    }
    let account = AccountId::parse(ns.account_id.trim())
        .map_err(|e| anyhow::anyhow!("netsuite.account_id: {e}"))?;
    let missing = |key: &str| {
        anyhow::anyhow!(
            "netsuite.{key} is required for netsuite.auth = {:?}",
            ns.auth
        )
    };
    let credentials = match ns.auth {
        NetSuiteAuthKind::M2m => {
            if ns.client_id.is_empty() {
                return Err(missing("client_id"));
            }
            if ns.certificate_id.is_empty() {
                return Err(missing("certificate_id"));
            }
            let pem = match (&ns.private_key_path, &ns.private_key_pem) {
                (Some(path), _) => crate::config::read_secret_file(path)
                    .context("netsuite.private_key_path: cannot read the private key")?,
                (None, Some(pem)) => pem.clone(),
                (None, None) => return Err(missing("private_key_path")),
            };
            Credentials::M2m {
                client_id: ns.client_id.clone(),
                certificate_id: ns.certificate_id.clone(),
                private_key_pem: pem,
                algorithm: ns
                    .algorithm
                    .parse::<SigningAlgorithm>()
                    .map_err(|e| anyhow::anyhow!("netsuite.algorithm: {e}"))?,
            }
        }
        NetSuiteAuthKind::Tba => Credentials::Tba {
            consumer_key: ns.consumer_key.clone(),
            consumer_secret: ns
                .consumer_secret
                .clone()
                .ok_or_else(|| missing("consumer_secret"))?,
            token_id: ns.token_id.clone(),
            token_secret: ns
                .token_secret
                .clone()
                .ok_or_else(|| missing("token_secret"))?,
        },
    };
    let mut c = NetSuiteConfig::new(account, credentials);
    if let Some(base) = &ns.base_url {
        c.base_url = Some(
            url::Url::parse(base)
                .with_context(|| format!("netsuite.base_url `{base}` is not a URL"))?,
        );
    }
    c.concurrency = ns.concurrency;
    c.budget = budget;
    c.m2m.refresh_before = std::time::Duration::from_secs(ns.token_refresh_before_secs);
    Ok(Some(
        NetSuiteClient::new(c).context("cannot build the NetSuite client")?,
    ))
}

/// The pipeline when both sides are configured; the accept-only handler when neither is. The
/// NetSuite client takes its account's concurrency budget from `budgets`, shared by every
/// connection posting to that account (and, on PostgreSQL, by every instance).
pub async fn connection_handler(
    config: &Config,
    store: &ConnectionStore,
    budgets: &Budgets,
) -> anyhow::Result<ConnectionHandler> {
    let account = config.netsuite.account_id.trim();
    let budget = if account.is_empty() {
        None
    } else {
        Some(
            budgets
                .for_account(account, config.netsuite.concurrency)
                .await
                .context("cannot set up the NetSuite concurrency budget")?,
        )
    };
    match (
        stripe_client(config)?,
        netsuite_client_with(config, budget)?,
    ) {
        (Some(stripe), Some(netsuite)) => Ok(ConnectionHandler::Pipeline(
            Pipeline::new(store.clone(), stripe, netsuite, config.posting.clone())
                .with_reference(config.reference.clone()),
        )),
        (None, None) => {
            tracing::warn!(
                connection = %store.scope(),
                "stripe.api_key and netsuite.account_id are not set: events are stored but not posted"
            );
            Ok(ConnectionHandler::AcceptOnly(AcceptOnly {
                store: store.clone(),
            }))
        }
        (Some(_), None) => anyhow::bail!(
            "stripe.api_key is set but netsuite.account_id is not: set both to post into NetSuite"
        ),
        (None, Some(_)) => anyhow::bail!(
            "netsuite.account_id is set but stripe.api_key is not: the connector re-fetches every \
             event from the Stripe API, so it needs the key (MLC__STRIPE__API_KEY)"
        ),
    }
}

/// How long a command (`replay`, `mappings set`, …) waits for SQLite's write lock, held by a
/// `serve` beside it: an operator would rather wait than type the command again, and a loaded
/// machine's fsyncs can hold the lock longer than the server's own 5 s.
const COMMAND_SQLITE_BUSY_TIMEOUT_MS: u64 = 30_000;

/// Opens the configured store, with an error that says what to check.
pub async fn connect_store(config: &Config) -> anyhow::Result<Store> {
    connect_store_with(config, StoreOptions::default()).await
}

/// [`connect_store`] for a command run beside `serve`: it waits longer for SQLite's write lock
/// (see [`COMMAND_SQLITE_BUSY_TIMEOUT_MS`]).
pub async fn connect_store_for_command(config: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        sqlite_busy_timeout_ms: COMMAND_SQLITE_BUSY_TIMEOUT_MS,
        ..StoreOptions::default()
    };
    connect_store_with(config, options).await
}

async fn connect_store_with(config: &Config, options: StoreOptions) -> anyhow::Result<Store> {
    Store::connect_with(&config.database.url, options)
        .await
        .with_context(|| {
            format!(
                "cannot open the store at {} (database.url)",
                crate::config::redact_url(&config.database.url)
            )
        })
}

/// Whether `connection` is the configured default, which runs with the process configuration
/// rather than stored settings.
pub fn is_configured_default(connection: &Connection) -> bool {
    connection.settings == configured_default_settings()
}

fn configured_default_settings() -> serde_json::Value {
    serde_json::json!({ "source": "configuration" })
}

/// Builds a connection's handler from its stored settings and sealed credentials (every
/// connection but the configured default, which runs with the process configuration); `Err`
/// says why it cannot post, in words for its operator.
pub async fn stored_connection_handler(
    connection: &Connection,
    store: ConnectionStore,
    budgets: &Budgets,
    master_key: Option<&MasterKey>,
) -> Result<ConnectionHandler, String> {
    let scope = &connection.scope;
    let config = crate::config::connection_config(&connection.settings)
        .map_err(|e| format!("connection {scope} has unusable settings: {e}"))?;
    let config = crate::credentials::load_stored_credentials(config, &store, master_key)
        .await
        .map_err(|e| format!("connection {scope}: {e:#}"))?;
    connection_handler(&config, &store, budgets)
        .await
        .map_err(|e| format!("connection {scope} cannot post: {e:#}"))
}

/// Ends a history run that cannot start (its connection cannot be built), with the reason for
/// the page; the job itself is done.
pub async fn fail_history_run(store: &ConnectionStore, job: &Job, reason: &str) -> JobOutcome {
    let Some(run_id) = job.payload.get("run_id").and_then(|v| v.as_str()) else {
        return JobOutcome::Failed {
            error: "the history job names no run".into(),
        };
    };
    match store.finish_history_run(run_id, Err(reason)).await {
        Ok(()) => JobOutcome::Succeeded,
        Err(e) => JobOutcome::Retry {
            error: e.to_string(),
            class: mlc_core::ErrorClass::Transient,
            after_ms: None,
        },
    }
}

/// The pipeline of the connection a command names (`--tenant`/`--connection`, else the
/// configured default), built as the worker builds it: the default from the configuration plus
/// its sealed credentials, any other from its stored settings. `Err` says what to set.
pub async fn open_pipeline(
    config: &Config,
    target: &Target,
    master_key: Option<&MasterKey>,
) -> anyhow::Result<(Store, Pipeline)> {
    let (store, scoped) = open_connection(config, target).await?;
    let budgets = Budgets::new(store.clone());
    let scope = scoped.scope().clone();
    let connection = store
        .tenant(&scope.tenant())
        .get_connection(scope.connection_id())
        .await?
        .ok_or_else(|| anyhow::anyhow!("connection {scope} no longer exists"))?;
    let handler = if is_configured_default(&connection) {
        let config =
            crate::credentials::load_stored_credentials(config.clone(), &scoped, master_key)
                .await?;
        connection_handler(&config, &scoped, &budgets).await?
    } else {
        stored_connection_handler(&connection, scoped, &budgets, master_key)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
    };
    match handler {
        ConnectionHandler::Pipeline(p) => Ok((store, p)),
        ConnectionHandler::AcceptOnly(_) => anyhow::bail!(
            "connection {scope} has no Stripe key and NetSuite account: set both (`ml-connector ping` says what is missing)"
        ),
    }
}
