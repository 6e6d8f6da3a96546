//! Logs (tracing) and metrics (Prometheus text format).
//!
//! Log rules (see docs/LOGGING.md): the message is plain text and the fields carry the queryable
//! values (`stripe.event_id`, `job.id`); a failure is logged once, where it is handled; secrets and
//! raw bodies are never logged.

use std::io::IsTerminal;
use std::sync::{OnceLock, RwLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// Installs the global tracing subscriber. Safe to call more than once (later calls do nothing).
pub fn init_logging(config: &LogConfig) {
    let _ = install(config, None);
}

/// What a trace export needs at shutdown: the batch of spans not yet sent.
#[must_use = "call shutdown() before the process exits, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still batched and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "the last traces could not be exported");
        }
    }
}

/// `serve`'s telemetry: logs as [`init_logging`], the per-tenant metrics allow-list, and, when
/// `telemetry.otlp_endpoint` is set, trace export over OTLP/HTTP.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    set_tenant_metrics(&telemetry.tenant_metrics);
    let provider = match &telemetry.otlp_endpoint {
        None => None,
        Some(endpoint) => Some(otlp_provider(endpoint, &telemetry.service_name)?),
    };
    install(log, provider.as_ref());
    Ok(Telemetry { provider })
}

/// Trace export could not start (a bad collector address or HTTP client).
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: the OTLP exporter could not start: {0}")]
pub struct TelemetryError(String);

fn otlp_provider(
    endpoint: &url::Url,
    service_name: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    // The configured address is the collector's base, as OTEL_EXPORTER_OTLP_ENDPOINT is; the
    // exporter takes the signal's full URL.
    let traces_url = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url)
        .with_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

fn install(
    config: &LogConfig,
    traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> bool {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // JSON lines carry the event's fields at the top level and the current span's (`tenant`,
    // `connection`, `job.id`) under `span`.
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    let otel = traces.map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("ml-connector")));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok()
}

/// The span a job runs in: its tenant and connection, for logs and traces.
pub fn job_span(scope: &mlc_store::ConnectionScope, job_id: &str, kind: &str) -> tracing::Span {
    tracing::info_span!(
        "job",
        tenant = %scope.tenant_id(),
        connection = %scope.connection_id(),
        job.id = %job_id,
        job.kind = %kind,
    )
}

/// The span a webhook delivery is handled in, once its connection is known.
pub fn webhook_span(scope: &mlc_store::ConnectionScope) -> tracing::Span {
    tracing::info_span!(
        "webhook",
        tenant = %scope.tenant_id(),
        connection = %scope.connection_id(),
    )
}

/// Tenants allowed a `tenant` label (`telemetry.tenant_metrics`); process-wide, as the metrics
/// recorder is.
static TENANT_METRICS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Replaces the per-tenant metrics allow-list.
pub fn set_tenant_metrics(tenants: &[String]) {
    *TENANT_METRICS.write().unwrap_or_else(|p| p.into_inner()) = tenants.to_vec();
}

/// The `tenant` label value for `tenant`, when it is on the allow-list. Off the list, nothing is
/// recorded per tenant: the series count stays bounded by the list, not the tenant count.
pub fn tenant_label(tenant: &mlc_core::TenantId) -> Option<String> {
    let allowed = TENANT_METRICS.read().unwrap_or_else(|p| p.into_inner());
    allowed
        .iter()
        .any(|t| t == tenant.as_str())
        .then(|| tenant.as_str().to_string())
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

/// The sum of the samples in Prometheus text (`/metrics`) whose series starts with `series`:
/// a metric's name for all its labels, or e.g. `name{reason="x"` for one label's value.
pub fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // Not `sum()`: its empty sum is -0.0, printed "-0" for a series not yet counted.
        .fold(0.0, |total, v| total + v)
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
    /// Counter: job attempts the worker put off unstarted; label `reason` (connection_cap: the
    /// connection had its share of the worker; account_busy: its NetSuite account was
    /// saturated). Many of these mean the worker has more slots than its accounts can use.
    pub const JOBS_DEFERRED: &str = "mlc_jobs_deferred_total";
    /// Counter: connections answered 503 and closed at `server.max_connections` (every open
    /// connection had a request in progress).
    pub const HTTP_CONNECTIONS_REFUSED: &str = "mlc_http_connections_refused_total";
    /// Counter: connections the server closed; label `reason` (header_timeout, idle_timeout,
    /// evicted: the longest-waiting connection, for a new one at `server.max_connections`).
    pub const HTTP_CONNECTIONS_CLOSED: &str = "mlc_http_connections_closed_total";
    /// Counter: webhook deliveries answered 503 before their body was read
    /// (`server.max_inflight_body_bytes` reached).
    pub const WEBHOOK_BODIES_REFUSED: &str = "mlc_webhook_bodies_refused_total";
    /// Counter, only for tenants on `telemetry.tenant_metrics`; labels `tenant`, `outcome`
    /// (stored, duplicate, ignored).
    pub const TENANT_WEBHOOK_EVENTS: &str = "mlc_tenant_webhook_events_total";
    /// Counter, only for tenants on `telemetry.tenant_metrics`; labels `tenant`, `outcome`
    /// (succeeded, retry, waiting, failed).
    pub const TENANT_JOBS: &str = "mlc_tenant_jobs_total";
    /// Histogram, seconds from a job's creation to its outcome, only for tenants on
    /// `telemetry.tenant_metrics`; label `tenant`.
    pub const TENANT_JOB_LATENCY: &str = "mlc_tenant_job_latency_seconds";
    /// Counter (SQLite): microseconds the store's write lock was held; label `holder` (writer:
    /// the group commit of deliveries and jobs' writes; worker: apalis; other). A rate near
    /// 1,000,000 per second is a write lock that is never free.
    pub const STORE_WRITE_LOCK_HELD: &str = mlc_store::WRITE_LOCK_HELD;
}
