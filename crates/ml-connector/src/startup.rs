//! The one place the application is wired. `serve` and the tests both go through [`App::build`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mlc_store::Store;
use mlc_store::runner::{JobHandler, Worker, WorkerConfig};
use mlc_stripe::webhook::WebhookVerifier;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{AppState, router};
use crate::pipeline::AcceptOnly;
use crate::telemetry;

/// A built application: listening, store migrated, not yet serving.
pub struct App<H: JobHandler> {
    config: Config,
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    handler: H,
    run_worker: bool,
}

impl App<AcceptOnly> {
    /// Connects the store (applying migrations) and binds nothing new: the listener is given, so
    /// tests can pass `127.0.0.1:0`.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let store = connect_store(&config).await?;
        let handler = AcceptOnly {
            store: store.clone(),
        };
        App::build_with(config, listener, store, handler)
    }
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
        store: Store,
        handler: H,
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
        let state = AppState {
            store,
            verifier: Arc::new(verifier),
            body_limit_bytes: config.server.body_limit_bytes,
            max_attempts: config.worker.max_attempts,
            worker_wake: Arc::new(Notify::new()),
            metrics: telemetry::metrics_handle(),
        };
        Ok(App {
            config,
            listener,
            addr,
            state,
            handler,
            run_worker: true,
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

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves HTTP and runs the worker until `shutdown` is cancelled. Then intake stops first
    /// (no new events are accepted; in-flight requests finish), and the worker finishes or
    /// releases its in-flight jobs, so nothing is lost.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            config,
            listener,
            addr,
            state,
            handler,
            run_worker,
        } = self;
        let store = state.store.clone();
        let worker_stop = CancellationToken::new();
        let worker = Worker::new(
            store.clone(),
            handler,
            WorkerConfig {
                worker_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
                concurrency: config.worker.concurrency,
                lease_ms: (config.worker.lease_secs * 1000) as i64,
                poll_interval_ms: config.worker.poll_interval_ms,
                heartbeat_ms: (config.worker.lease_secs * 1000 / 3).max(1000),
                shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
            },
        )
        .with_notifier(state.worker_wake.clone());
        let worker_task = run_worker.then(|| tokio::spawn(worker.run(worker_stop.clone())));

        tracing::info!(%addr, store = ?store.backend(), "ml-connector serving");
        let app = router(state);
        let http_shutdown = shutdown.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
            .context("HTTP server failed")?;
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
