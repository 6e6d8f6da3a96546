//! Logs (tracing) and metrics (Prometheus text format).
//!
//! Log rules (see docs/LOGGING.md): the message is plain text and the fields carry the queryable
//! values (`stripe.event_id`, `job.id`); a failure is logged once, where it is handled; secrets and
//! raw bodies are never logged.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global tracing subscriber. Safe to call more than once (later calls do nothing).
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide metrics recorder. Installed once; every `App` in the process (tests start
/// several) renders from the same handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0,
                ])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then our handle renders nothing,
            // which is visible on /metrics rather than silent.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Metric names, in one place so dashboards and tests agree.
pub mod names {
    /// Counter; labels `type`, `outcome` (stored, duplicate, ignored, rejected).
    pub const EVENTS_RECEIVED: &str = "mlc_webhook_events_received_total";
    /// Counter; label `reason` (the failed check).
    pub const SIGNATURE_FAILURES: &str = "mlc_webhook_signature_failures_total";
    /// Gauge; label `state`.
    pub const JOBS: &str = "mlc_jobs";
    /// Histogram, seconds from job creation to its outcome; labels `kind`, `outcome`.
    pub const JOB_LATENCY: &str = "mlc_job_latency_seconds";
    /// Counter: requests sent to the Stripe API (retries included).
    pub const STRIPE_REQUESTS: &str = "mlc_stripe_api_requests_total";
    /// Counter: requests sent to NetSuite REST and SuiteQL (retries included; not token requests).
    pub const NETSUITE_REQUESTS: &str = "mlc_netsuite_api_requests_total";
    /// Histogram, seconds spent in one handler run; label `kind`.
    pub const JOB_RUN: &str = "mlc_job_run_seconds";
    /// Counter: connections answered 503 and closed at `server.max_connections` (every open
    /// connection had a request in progress).
    pub const HTTP_CONNECTIONS_REFUSED: &str = "mlc_http_connections_refused_total";
    /// Counter: connections the server closed; label `reason` (header_timeout, idle_timeout,
    /// evicted: the longest-waiting connection, for a new one at `server.max_connections`).
    pub const HTTP_CONNECTIONS_CLOSED: &str = "mlc_http_connections_closed_total";
    /// Counter: webhook deliveries answered 503 before their body was read
    /// (`server.max_inflight_body_bytes` reached).
    pub const WEBHOOK_BODIES_REFUSED: &str = "mlc_webhook_bodies_refused_total";
}
