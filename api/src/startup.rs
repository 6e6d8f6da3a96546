//! The one place the application is wired. `serve` and the tests both go through [`App::build`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use mlc_core::{ConnectionId, ConnectionStatus, TenantId};
use mlc_store::runner::{JobHandler, Worker, WorkerConfig};
use mlc_store::sealed::MasterKey;
use mlc_store::{ConnectionStore, NewConnection, Store};
use mlc_stripe::webhook::WebhookVerifier;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, NetSuiteAuthKind};
use crate::http::{AppState, router};
use crate::netsuite_budget::Budgets;
use crate::pipeline::{AcceptOnly, Pipeline};
use crate::telemetry;
use mlc_netsuite::{AccountId, Credentials, NetSuiteClient, NetSuiteConfig, SigningAlgorithm};
use mlc_stripe::{StripeClient, StripeClientConfig};

/// A built application: listening, store migrated, not yet serving.
pub struct App<H: JobHandler> {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    worker: Worker<H>,
    run_worker: bool,
    /// The NetSuite → Stripe sync and its interval, when configured (see [`crate::sync`]).
    sync: Option<(crate::sync::SyncContext, std::time::Duration)>,
    /// Connection timeouts and cap (`[server]`).
    limits: crate::http::serve::ServeLimits,
}

pub use crate::registry::{ConnectionHandler, Handler};

impl App<Handler> {
    /// Connects the store (applying migrations), makes sure the configured default tenant and
    /// connection exist, and builds the worker's handler: the default connection runs with this
    /// configuration, every other connection with its stored settings and credentials (see
    /// [`crate::registry`]). The listener is given, so tests can pass `127.0.0.1:0`.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let master_key = mlc_store::sealed::MasterKey::from_env()?;
        App::build_keyed(config, listener, master_key).await
    }

    /// [`App::build`] with the master key given rather than read from the environment (the
    /// demo and tests make one).
    pub async fn build_keyed(
        config: Config,
        listener: TcpListener,
        master_key: Option<MasterKey>,
    ) -> anyhow::Result<Self> {
        let store = connect_store(&config).await?;
        let default = ensure_default_connection(&config, &store).await?;
        let config = load_stored_credentials(config, &default, master_key.as_ref()).await?;
        let budgets = Budgets::new(store.clone());
        let default_handler = connection_handler(&config, &default, &budgets).await?;
        // The sync shares the pipeline's clients, so one NetSuite budget governs both.
        let sync = match (
            &default_handler,
            config.reference.netsuite_sync_interval_secs,
        ) {
            (ConnectionHandler::Pipeline(p), Some(secs))
                if secs > 0
                    && (config.reference.item_filter.is_some()
                        || config.reference.customer_filter.is_some()) =>
            {
                Some((
                    crate::sync::SyncContext::new(
                        &config,
                        default.clone(),
                        p.stripe().clone(),
                        p.netsuite().clone(),
                    ),
                    std::time::Duration::from_secs(secs),
                ))
            }
            _ => None,
        };
        let netsuite = default_handler.pipeline().map(|p| p.netsuite().clone());
        let handler = Handler::new(
            store,
            budgets,
            master_key.clone(),
            default.scope().clone(),
            default_handler,
        );
        let mut app = App::build_with(config, listener, default, handler, master_key)?;
        app.state.console.netsuite = netsuite;
        app.sync = sync;
        Ok(app)
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
            settings: serde_json::json!({ "source": "configuration" }),
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
    let store = connect_store(config).await?;
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

/// Fills the secrets the configuration leaves empty from the credentials store (configuration
/// and environment win when set). Stored credentials without a master key, or with a wrong one,
/// are an error that names `MLC_MASTER_KEY`; no stored credentials leave `config` unchanged.
pub async fn load_stored_credentials(
    mut config: Config,
    store: &ConnectionStore,
    key: Option<&MasterKey>,
) -> anyhow::Result<Config> {
    use crate::cli::credentials::names;
    let mut stored = store.load_secrets(key).await?;
    if stored.is_empty() {
        return Ok(config);
    }
    let (stripe, ns) = (&mut config.stripe, &mut config.netsuite);
    if stripe.api_key.is_none() {
        stripe.api_key = stored.remove(names::STRIPE_API_KEY);
    }
    if stripe.webhook_secrets.is_empty()
        && let Some(all) = stored.remove(names::STRIPE_WEBHOOK_SECRETS)
    {
        use secrecy::ExposeSecret;
        stripe.webhook_secrets = all
            .expose_secret()
            .lines()
            .map(|l| secrecy::SecretString::from(l.to_string()))
            .collect();
    }
    if ns.private_key_path.is_none() && ns.private_key_pem.is_none() {
        ns.private_key_pem = stored.remove(names::NETSUITE_PRIVATE_KEY);
    }
    if ns.consumer_secret.is_none() {
        ns.consumer_secret = stored.remove(names::NETSUITE_CONSUMER_SECRET);
    }
    if ns.token_secret.is_none() {
        ns.token_secret = stored.remove(names::NETSUITE_TOKEN_SECRET);
    }
    if config.admin.token.is_none() {
        config.admin.token = stored.remove(names::ADMIN_TOKEN);
    }
    Ok(config)
}

/// Opens the configured store, with an error that says what to check.
pub async fn connect_store(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.database.url).await.with_context(|| {
        format!(
            "cannot open the store at {} (database.url)",
            crate::config::redact_url(&config.database.url)
        )
    })
}

impl<H: JobHandler + Clone> App<H> {
    /// Builds with a given store and job handler (the seam the pipeline and tests plug into).
    pub fn build_with(
        config: Config,
        listener: TcpListener,
        store: ConnectionStore,
        handler: H,
        master_key: Option<MasterKey>,
    ) -> anyhow::Result<Self> {
        if config.stripe.webhook_secrets.is_empty() {
            anyhow::bail!(
                "no Stripe webhook signing secret is configured: set stripe.webhook_secrets \
                 (MLC__STRIPE__WEBHOOK_SECRETS=whsec_…) to the endpoint's signing secret"
            );
        }
        let addr = listener.local_addr()?;
        let verifier = WebhookVerifier::new(
            config.stripe.webhook_secrets.clone(),
            config.stripe.webhook_tolerance_secs,
        );
        let worker = Worker::new(
            store.store().clone(),
            handler,
            WorkerConfig {
                worker_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
                concurrency: config.worker.concurrency,
                lease_ms: (config.worker.lease_secs * 1000) as i64,
                poll_interval_ms: config.worker.poll_interval_ms,
                heartbeat_ms: (config.worker.lease_secs * 1000 / 3).max(1000),
                shutdown_grace_ms: config.server.shutdown_grace_secs * 1000,
            },
        );
        let state = AppState {
            routes: Arc::new(crate::http::webhook_routes::WebhookRoutes::new(
                store.store().clone(),
                master_key,
                config.stripe.webhook_tolerance_secs,
                crate::http::webhook_routes::RouteTarget {
                    store: store.clone(),
                    verifier: Arc::new(verifier),
                },
            )),
            store: store.clone(),
            body_limit_bytes: config.server.body_limit_bytes,
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                config.server.max_inflight_body_bytes,
            )),
            max_attempts: config.worker.max_attempts,
            worker_wake: worker.notifier(),
            metrics: telemetry::metrics_handle(),
            admin_token: config
                .admin
                .token
                .clone()
                .map(crate::console::AdminToken::new),
            console: crate::console::Console::new(
                store.clone(),
                None,
                config.admin.time_zone.clone(),
            ),
        };
        let mut limits = crate::http::serve::ServeLimits::from_config(&config.server);
        limits.max_connections = within_open_files_limit(limits.max_connections);
        Ok(App {
            listener,
            addr,
            state,
            worker,
            run_worker: true,
            sync: None,
            limits,
        })
    }

    /// Serve intake only (benchmarks; an instance dedicated to intake).
    pub fn without_worker(mut self) -> Self {
        self.run_worker = false;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The default connection's view of the store.
    pub fn store(&self) -> &ConnectionStore {
        &self.state.store
    }

    /// Serves HTTP and runs the worker until `shutdown` is cancelled. Then intake stops first
    /// (no new events are accepted; in-flight requests finish), and the worker finishes or
    /// releases its in-flight jobs, so nothing is lost.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            listener,
            addr,
            state,
            worker,
            run_worker,
            sync,
            limits,
        } = self;
        let store = state.store.store().clone();
        let worker_stop = CancellationToken::new();
        let worker_task = run_worker.then(|| tokio::spawn(worker.run(worker_stop.clone())));
        let sync_task =
            sync.map(|(ctx, every)| tokio::spawn(ctx.run_every(every, shutdown.clone())));

        tracing::info!(%addr, store = ?store.backend(), "ml-connector serving");
        if state.admin_token.is_some() {
            tracing::info!(
                "dashboard at http://{addr}/ and admin API at http://{addr}/api (admin token required)"
            );
        } else {
            tracing::info!(
                "dashboard and admin API are off: set MLC__ADMIN__TOKEN (at least 32 characters) to turn them on"
            );
        }
        let app = router(state);
        crate::http::serve::serve(listener, app, limits, shutdown.clone()).await;
        tracing::info!("intake stopped; finishing in-flight jobs");
        worker_stop.cancel();
        if let Some(task) = sync_task {
            // It stops at the shutdown token; a panic in it must not hide the worker's outcome.
            if let Err(e) = task.await {
                tracing::error!("NetSuite → Stripe sync task panicked: {e}");
            }
        }
        if let Some(task) = worker_task {
            match task.await {
                Ok(result) => result.context("worker failed")?,
                Err(e) => anyhow::bail!("worker task panicked: {e}"),
            }
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Descriptors kept for the store's pool, the API clients and the listener, beside connections.
const RESERVED_DESCRIPTORS: usize = 64;

/// `configured`, lowered when the process's open-files limit could not hold that many
/// connections: past it, `accept` fails and every client (health checks, Stripe) waits, whereas
/// a cap answers the excess 503 at once.
fn within_open_files_limit(configured: usize) -> usize {
    let Some(limit) = open_files_limit() else {
        return configured;
    };
    let fits = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    if configured > fits {
        // Info, not warn: with the default 1024 and a default `ulimit -n` of 1024 this is the
        // expected, correct outcome, not a fault.
        tracing::info!(
            configured,
            open_files_limit = limit,
            effective = fits,
            "server.max_connections is above what the open-files limit allows: capping \
             connections at {fits} (raise the limit with ulimit -n for more)"
        );
        return fits;
    }
    configured
}

/// The soft open-files limit (Linux, from /proc); `None` when unknown or unlimited.
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mlc".to_string())
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("cannot listen for SIGTERM: {e}");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        token.cancel();
    });
}
