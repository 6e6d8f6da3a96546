//! What the engineer running the service sees of it: `--version`, the container health probe,
//! per-tenant metrics only for the allow-list, logs and traces that carry the tenant and the
//! connection, and the OTLP export. The real binary each time.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ml_connector::stack::{
    Sims, StackOptions, catalog_hook, sqlite_url, tenants_for_child, wait_idle,
};
use mlc_store::Store;
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use tokio::process::{Child, Command};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_ml-connector");

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `serve` with `env`, its JSON log lines going to `log`.
fn serve(env: &[(String, String)], log: &std::path::Path) -> Child {
    Command::new(BIN)
        .arg("serve")
        .env("MLC__LOG__LEVEL", "info")
        .envs(env.iter().cloned())
        .env("MLC__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts")
}

async fn until_ready(listen: std::net::SocketAddr, log: &std::path::Path) {
    let http = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(20), || async {
        http.get(format!("http://{listen}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(
        ready,
        "serve on {listen} was not ready: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

async fn metrics_text(listen: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first sample line starting with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn version_names_the_git_revision_it_was_built_from() {
    let out = std::process::Command::new(BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected_version = format!("ml-connector {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_version), "{text}");
    // Built from a git checkout here (CI clones one): the revision is HEAD's.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert_eq!(text.trim(), format!("{expected_version}{head})")),
        None => assert!(!text.contains("()"), "{text}"),
    }
}

#[tokio::test]
async fn healthcheck_exits_zero_when_ready_and_one_with_the_reason_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let env = vec![
        (
            "MLC__DATABASE__URL".to_string(),
            sqlite_url(dir.path(), "h.db"),
        ),
        ("MLC__SERVER__LISTEN".to_string(), listen.to_string()),
        (
            "MLC__STRIPE__WEBHOOK_SECRETS".to_string(),
            SECRET.to_string(),
        ),
    ];
    let log = dir.path().join("serve.log");
    let mut child = serve(&env, &log);
    until_ready(listen, &log).await;

    // From the configuration, as the image's HEALTHCHECK runs it (no --url).
    let ready = std::process::Command::new(BIN)
        .arg("healthcheck")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(ready.status.success(), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).contains("/readyz: 200"));
    let live = std::process::Command::new(BIN)
        .args([
            "healthcheck",
            "--live",
            "--url",
            &format!("http://{listen}"),
        ])
        .output()
        .unwrap();
    assert!(live.status.success(), "{live:?}");
    assert!(String::from_utf8_lossy(&live.stdout).contains("/healthz: 200"));
    child.kill().await.ok();

    // Nobody listening: exit 1, and the reason.
    let down = std::process::Command::new(BIN)
        .args(["healthcheck", "--url", &format!("http://{listen}")])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("/readyz did not answer"), "{err}");
}

/// A tenant on `telemetry.tenant_metrics` gets its own series, and its log lines name it: the
/// webhook's and the job's.
#[tokio::test]
async fn allow_listed_tenant_metrics_and_logs_that_name_the_tenant_and_connection() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let url = sqlite_url(dir.path(), "t.db");
    let opts = StackOptions::new(&url, dir.path());
    let sims = Sims::start(&opts, listen).await.unwrap();
    let mut env = sims.env.clone();
    env.push(("MLC__TELEMETRY__TENANT_METRICS".into(), "default".into()));
    let log = dir.path().join("serve.log");
    // The worker's per-job line is at debug.
    env.push(("MLC__LOG__LEVEL".into(), "info,mlc_jobs=debug".into()));
    let mut child = serve(&env, &log);
    until_ready(listen, &log).await;
    run_scenario(
        &sims.stripe.base_url,
        sims.stripe.api_key_str(),
        ScenarioConfig {
            customers: 2,
            seed: 3,
            on_catalog: Some(catalog_hook(sims.netsuite.handle().clone(), true)),
            ..ScenarioConfig::default()
        },
    )
    .await
    .unwrap();
    let store = mlc_service::connections::default_scoped(Store::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert!(wait_idle(&sims.stripe.handle, &store, Duration::from_secs(60)).await);

    let metrics = metrics_text(listen).await;
    let stored = sample(
        &metrics,
        "mlc_tenant_webhook_events_total{tenant=\"default\",outcome=\"stored\"}",
    )
    .or_else(|| {
        sample(
            &metrics,
            "mlc_tenant_webhook_events_total{outcome=\"stored\",tenant=\"default\"}",
        )
    });
    assert!(stored.is_some_and(|n| n > 0.0), "{metrics}");
    let succeeded = metrics.lines().any(|l| {
        l.starts_with("mlc_tenant_jobs_total")
            && l.contains("tenant=\"default\"")
            && l.contains("outcome=\"succeeded\"")
    });
    assert!(succeeded, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mlc_tenant_job_latency_seconds_count{tenant=\"default\"}")),
        "{metrics}"
    );
    child.kill().await.ok();

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let accepted = lines
        .iter()
        .find(|l| l["message"] == "webhook accepted")
        .expect("a webhook was logged");
    assert_eq!(accepted["span"]["name"], "webhook", "{accepted}");
    assert_eq!(accepted["span"]["tenant"], "default", "{accepted}");
    assert_eq!(accepted["span"]["connection"], "default", "{accepted}");
    let finished = lines
        .iter()
        .find(|l| l["message"] == "job finished")
        .expect("the worker's debug line for a finished job");
    assert_eq!(finished["span"]["name"], "job", "{finished}");
    assert_eq!(finished["span"]["tenant"], "default", "{finished}");
    assert_eq!(finished["span"]["connection"], "default", "{finished}");
    assert!(finished["span"]["job.id"].is_string(), "{finished}");
}

/// With `telemetry.otlp_endpoint` set, the webhook's, the job's and a GraphQL request's spans
/// reach the collector (OTLP/HTTP protobuf), each with its tenant (and the first two their
/// connection); the last batch is sent on SIGTERM.
/// Without the allow-list, no per-tenant series exists.
#[tokio::test]
async fn traces_are_exported_over_otlp_with_tenant_and_connection() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message as _;

    // The collector: keeps every export it receives.
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let collector = {
        let received = received.clone();
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    received.lock().unwrap().push(request);
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let collector_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector_listener.local_addr().unwrap();
    let collector_task = tokio::spawn(async move {
        axum::serve(collector_listener, collector).await.ok();
    });

    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let env = vec![
        (
            "MLC__DATABASE__URL".to_string(),
            sqlite_url(dir.path(), "o.db"),
        ),
        ("MLC__SERVER__LISTEN".to_string(), listen.to_string()),
        (
            "MLC__STRIPE__WEBHOOK_SECRETS".to_string(),
            SECRET.to_string(),
        ),
        (
            "MLC__TELEMETRY__OTLP_ENDPOINT".to_string(),
            format!("http://{collector_addr}"),
        ),
        (
            "MLC__TELEMETRY__SERVICE_NAME".to_string(),
            "mlc-test".to_string(),
        ),
    ];
    // A tenant's API key, for a GraphQL request in its name.
    let made = std::process::Command::new(BIN)
        .args([
            "api-keys", "create", "--tenant", "default", "--name", "otlp",
        ])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let api_key = String::from_utf8(made.stdout)
        .unwrap()
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("mlck_"))
        .expect("the key is printed")
        .to_string();
    let log = dir.path().join("serve.log");
    let mut child = serve(&env, &log);
    until_ready(listen, &log).await;
    let asked = reqwest::Client::new()
        .post(format!("http://{listen}/graphql"))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({ "query": "{ viewer { tenantId } }" }))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(asked["data"]["viewer"]["tenantId"], "default", "{asked}");
    let body = event_json("evt_1Otlp", "invoice.paid");
    let answer = reqwest::Client::new()
        .post(format!("http://{listen}/webhooks/stripe"))
        .header("stripe-signature", sign_now(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let store = Store::connect(&sqlite_url(dir.path(), "o.db"))
        .await
        .unwrap();
    let store = mlc_service::connections::default_scoped(store)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            store
                .get_job_for_event("evt_1Otlp")
                .await
                .ok()
                .flatten()
                .is_some_and(|j| j.state == mlc_store::JobState::Succeeded)
        })
        .await,
        "the job ran"
    );
    // No allow-list: no per-tenant series.
    let metrics = metrics_text(listen).await;
    assert!(!metrics.contains("mlc_tenant_"), "{metrics}");

    let status = sigterm_and_wait(&mut child).await;
    assert!(status.success(), "{status:?}");

    let exports = received.lock().unwrap().clone();
    collector_task.abort();
    let attr = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.clone())
            .and_then(|v| match v {
                Value::StringValue(s) => Some(s),
                _ => None,
            })
    };
    let mut names = Vec::new();
    for export in &exports {
        for resource in &export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref()?.value.clone());
            assert_eq!(
                service,
                Some(Value::StringValue("mlc-test".into())),
                "service.name"
            );
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    if span.name == "graphql" {
                        assert_eq!(attr(span, "tenant").as_deref(), Some("default"), "{span:?}");
                        names.push(span.name.clone());
                    }
                    if span.name == "webhook" || span.name == "job" {
                        assert_eq!(attr(span, "tenant").as_deref(), Some("default"), "{span:?}");
                        assert_eq!(
                            attr(span, "connection").as_deref(),
                            Some("default"),
                            "{span:?}"
                        );
                        names.push(span.name.clone());
                    }
                }
            }
        }
    }
    assert!(names.iter().any(|n| n == "webhook"), "{names:?}");
    assert!(names.iter().any(|n| n == "job"), "{names:?}");
    assert!(names.iter().any(|n| n == "graphql"), "{names:?}");
}

/// `mlc_netsuite_api_requests_total` counts every connection's requests, not one client's.
#[tokio::test]
async fn api_request_counters_add_up_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let url = sqlite_url(dir.path(), "c.db");
    let opts = StackOptions::new(&url, dir.path());
    let sims = Sims::start(&opts, listen).await.unwrap();
    let (tenants, env) = tenants_for_child(&sims, &opts, dir.path(), listen, &["acme"])
        .await
        .unwrap();
    let acme = &tenants[0];
    let log = dir.path().join("serve.log");
    let mut child = serve(&env, &log);
    until_ready(listen, &log).await;
    let acme_stripe = acme.stripe.as_ref().unwrap();
    for (base, key, netsuite) in [
        (
            &sims.stripe.base_url,
            sims.stripe.api_key_str(),
            sims.netsuite.handle(),
        ),
        (
            &acme_stripe.base_url,
            acme_stripe.api_key_str(),
            acme.netsuite.handle(),
        ),
    ] {
        run_scenario(
            base,
            key,
            ScenarioConfig {
                customers: 2,
                seed: 8,
                on_catalog: Some(catalog_hook(netsuite.clone(), true)),
                ..ScenarioConfig::default()
            },
        )
        .await
        .unwrap();
    }
    let store = Store::connect(&url).await.unwrap();
    let default = mlc_service::connections::default_scoped(store.clone())
        .await
        .unwrap();
    assert!(wait_idle(&sims.stripe.handle, &default, Duration::from_secs(60)).await);
    assert!(acme.wait_idle(Duration::from_secs(60)).await);

    let metrics = metrics_text(listen).await;
    child.kill().await.ok();
    let reported = sample(&metrics, "mlc_netsuite_api_requests_total").expect("the counter") as u64;
    let (a, b) = (
        sims.netsuite.handle().stats().rest_requests,
        acme.netsuite.handle().stats().rest_requests,
    );
    assert!(a > 0 && b > 0, "{a} {b}");
    // Both connections' requests (the last ones may be reported with a later job).
    assert!(
        reported > a.max(b) && reported <= a + b,
        "reported {reported}, NetSuite saw {a} + {b}"
    );
}
