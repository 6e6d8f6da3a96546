//! The one place the application is wired. `serve` and the tests both go through [`App::build`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use mlc_jobs::{JobHandler, Schedule, Worker, WorkerConfig};
use mlc_service::config::Config;
use mlc_service::connections::{
    ConnectionHandler, connect_store, connection_handler, ensure_default_connection,
};
use mlc_service::credentials::load_stored_credentials;
use mlc_service::netsuite_budget::Budgets;
use mlc_service::sync::SyncContext;
use mlc_service::telemetry;
use mlc_store::ConnectionStore;
use mlc_store::sealed::MasterKey;
use mlc_stripe::webhook::WebhookVerifier;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{AppState, router};

/// A built application: listening, store migrated, not yet serving.
pub struct App<H: JobHandler> {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    worker: Worker<H>,
    run_worker: bool,
    /// Connection timeouts and cap (`[server]`).
    limits: crate::http::serve::ServeLimits,
}

pub use mlc_jobs::Handler;

impl App<Handler> {
    /// Connects the store (applying migrations), makes sure the configured default tenant and
    /// connection exist, and builds the worker's handler: the default connection runs with this
    /// configuration, every other connection with its stored settings and credentials (see
    /// [`mlc_jobs::registry`]). The listener is given, so tests can pass `127.0.0.1:0`.
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
                    SyncContext::new(
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
        let handler = Handler::new(
            store,
            budgets,
            master_key.clone(),
            default.scope().clone(),
            default_handler,
        );
        let mut app = App::build_with(config, listener, default, handler, master_key)?;
        if let Some((ctx, every)) = sync {
            // Once per interval across every instance sharing the database (an apalis task per
            // slot is the lock), on whichever worker takes it.
            let name = format!("reference_sync:{}", ctx.store.scope());
            app.worker = app.worker.schedule(Schedule {
                name,
                every,
                run: Arc::new(move || {
                    let ctx = ctx.clone();
                    Box::pin(async move { ctx.run_logged().await })
                }),
            });
        }
        Ok(app)
    }
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
                // Unique per process start: apalis strands a dead worker's tasks when a new one
                // takes its name.
                worker_id: format!(
                    "{}-{}-{}",
                    hostname(),
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                ),
                concurrency: config.worker.concurrency,
                per_connection_cap: match config.worker.per_connection_cap {
                    0 => config.worker.concurrency.saturating_sub(1).max(1),
                    n => n,
                },
                poll_interval_ms: config.worker.poll_interval_ms,
                heartbeat_ms: config.worker.heartbeat_secs * 1000,
                shutdown_grace_ms: config.server.shutdown_grace_secs * 1000,
            },
        );
        let state = AppState {
            routes: Arc::new(crate::http::webhook_routes::WebhookRoutes::new(
                store.store().clone(),
                master_key.clone(),
                config.stripe.webhook_tolerance_secs,
                crate::http::webhook_routes::RouteTarget {
                    store: store.clone(),
                    verifier: Arc::new(verifier),
                },
            )),
            store: store.clone(),
            master_key,
            body_limit_bytes: config.server.body_limit_bytes,
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                config.server.max_inflight_body_bytes,
            )),
            max_attempts: config.worker.max_attempts,
            worker_wake: worker.notifier(),
            metrics: telemetry::metrics_handle(),
            graphql: crate::graphql::GraphqlOptions::from_config(&config),
        };
        let mut limits = crate::http::serve::ServeLimits::from_config(&config.server);
        limits.max_connections = within_open_files_limit(limits.max_connections);
        Ok(App {
            listener,
            addr,
            state,
            worker,
            run_worker: true,
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
            limits,
        } = self;
        let store = state.store.store().clone();
        let worker_stop = CancellationToken::new();
        let worker_task = run_worker.then(|| tokio::spawn(worker.run(worker_stop.clone())));

        tracing::info!(%addr, store = ?store.backend(), "ml-connector serving");
        tracing::info!("dashboard at http://{addr}/app/ (people sign in with their accounts)");
        let app = router(state);
        crate::http::serve::serve(listener, app, limits, shutdown.clone()).await;
        tracing::info!("intake stopped; finishing in-flight jobs");
        worker_stop.cancel();
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
