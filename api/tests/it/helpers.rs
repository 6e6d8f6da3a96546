//! The test harness: an `App` built through the same `startup` as `serve`, on a fresh store.

use std::net::SocketAddr;
use std::time::Duration;

use ml_connector::startup::App;
use mlc_service::config::{self, Config, Sources};
use mlc_store::ConnectionStore;
use mlc_store::testing::TestDb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "whsec_test_secret";
pub const OLD_SECRET: &str = "whsec_test_secret_rolled_key";

pub fn config_for(url: &str, extra: &[(&str, &str)]) -> Config {
    let mut env = vec![
        ("MLC__DATABASE__URL".to_string(), url.to_string()),
        (
            "MLC__STRIPE__WEBHOOK_SECRETS".to_string(),
            format!("{SECRET},{OLD_SECRET}"),
        ),
        (
            "MLC__WORKER__POLL_INTERVAL_MS".to_string(),
            "50".to_string(),
        ),
        (
            "MLC__SERVER__SHUTDOWN_GRACE_SECS".to_string(),
            "5".to_string(),
        ),
    ];
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    config::load(&Sources { file: None, env })
        .expect("test config")
        .0
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub store: ConnectionStore,
    pub client: reqwest::Client,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn start(db: &TestDb) -> TestApp {
        TestApp::start_with(db, &[]).await
    }

    pub async fn start_with(db: &TestDb, extra: &[(&str, &str)]) -> TestApp {
        TestApp::start_keyed(db, extra, None).await
    }

    /// [`TestApp::start_with`] with this master key (none: credentials cannot be sealed).
    pub async fn start_keyed(
        db: &TestDb,
        extra: &[(&str, &str)],
        master_key: Option<mlc_store::sealed::MasterKey>,
    ) -> TestApp {
        let config = config_for(db.url(), extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = App::build_keyed(config, listener, master_key)
            .await
            .expect("app builds");
        let addr = app.addr();
        let store = app.store().clone();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        TestApp {
            addr,
            store,
            client: reqwest::Client::new(),
            stop,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs `body` to the webhook endpoint with the given signature header (None: no header).
    pub async fn post_webhook(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .post(self.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("stripe-signature", sig);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Signs `body` now with `secret` and POSTs it.
    pub async fn send_signed(&self, body: &str, secret: &str) -> (u16, serde_json::Value) {
        let header = sign_now(secret, body);
        self.post_webhook(body.as_bytes(), Some(&header)).await
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stopped cleanly");
        }
    }
}

pub fn sign_now(secret: &str, body: &str) -> String {
    let t = mlc_core::now_millis() / 1000;
    mlc_stripe::webhook::signature_header(&[secret], t, body.as_bytes())
}

pub fn event_json(id: &str, event_type: &str) -> String {
    serde_json::json!({
        "id": id,
        "object": "event",
        "api_version": "2026-07-29.dahlia",
        "created": 1_764_201_600,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
        "data": {"object": {"id": "ch_3TestCharge", "object": "charge", "amount": 2000, "currency": "usd"}}
    })
    .to_string()
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs the real `ml-connector` binary against `db_url`; returns (success, stdout, stderr).
pub fn cli(db_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(args)
        .env("MLC__DATABASE__URL", db_url)
        .env("MLC__STRIPE__WEBHOOK_SECRETS", "whsec_x")
        .env_remove("MLC_CONFIG")
        .output()
        .expect("ml-connector runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Python with the pinned independent clients (`MLC_TEST_PYTHON`, set by scripts/test.sh);
/// `None` (the test skips) outside CI, a failure in CI where it must be set.
pub fn test_python() -> Option<std::ffi::OsString> {
    let python = std::env::var_os("MLC_TEST_PYTHON");
    if python.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "MLC_TEST_PYTHON is unset but CI is set: run scripts/test.sh (it creates the venv \
                 with the pinned clients and exports MLC_TEST_PYTHON)"
            );
        }
        println!("skipped: MLC_TEST_PYTHON unset");
    }
    python
}

/// A GraphQL request to a running connector with an API key (or session) bearer; the JSON
/// answer, errors included.
pub async fn gql(
    addr: SocketAddr,
    key: &str,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An amount as NetSuite (or its simulator) writes it: a JSON number or a string.
pub fn dec(v: &serde_json::Value) -> rust_decimal::Decimal {
    match v {
        serde_json::Value::Number(n) => n.to_string().parse().unwrap(),
        serde_json::Value::String(s) => s.parse().unwrap(),
        other => panic!("not an amount: {other}"),
    }
}

/// The internal ID of a NetSuite reference (`{"id": "12"}` or `{"id": 12}`).
pub fn ref_id(v: &serde_json::Value) -> String {
    match &v["id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET` of the Stripe simulator's API with its key: the JSON answer.
pub async fn stripe_get(stripe: &mlc_stripe_sim::RunningSim, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}{path}", stripe.base_url))
        .bearer_auth(stripe.api_key_str())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The reconciliation of yesterday to tomorrow (the simulators' month is today) of the
/// configured default connection, as `ml-connector reconcile` runs it.
pub async fn reconcile_today(
    config: &Config,
    key: Option<&mlc_store::sealed::MasterKey>,
) -> mlc_service::pipeline::ReconciliationReport {
    let (store, pipeline) =
        mlc_service::connections::open_pipeline(config, &Default::default(), key)
            .await
            .unwrap();
    let now = jiff::Timestamp::now().as_second();
    let report = pipeline
        .reconcile(now - 86_400, now + 86_400, None)
        .await
        .unwrap();
    store.close().await;
    report
}

/// Sends SIGTERM to a child process, as an orchestrator stopping it does.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the process is running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {pid}");
}

/// SIGTERM, then the process's exit status, which must come within 30 s (its drain).
pub async fn sigterm_and_wait(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    sigterm(child);
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within its drain after SIGTERM")
        .expect("exit status")
}

/// Asserts NetSuite holds exactly one invoice per paid Stripe invoice or one-time charge of
/// `report`, none missing and none extra; returns how many.
pub fn assert_one_invoice_per_sale(
    netsuite: &mlc_netsuite_sim::SimHandle,
    fee_item: u64,
    report: &mlc_stripe_sim::ScenarioReport,
    label: &str,
) -> usize {
    let eids: Vec<String> = ml_connector::stack::netsuite_invoices(netsuite, fee_item)
        .iter()
        .map(|i| i.external_id.to_lowercase())
        .collect();
    let unique: std::collections::BTreeSet<&String> = eids.iter().collect();
    assert_eq!(
        unique.len(),
        eids.len(),
        "{label}: a Stripe object was posted twice"
    );
    let expected: std::collections::BTreeSet<String> = report
        .paid_invoices
        .iter()
        .chain(report.standalone_charges.iter())
        .map(|id| format!("stripe_{id}").to_lowercase())
        .collect();
    assert!(!expected.is_empty(), "{label}: the scenario sells");
    assert_eq!(
        eids.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected,
        "{label}: missing or extra invoices"
    );
    eids.len()
}

/// The scope of `tenant`'s connection `connection`, which the test made.
pub async fn connection_scope(
    store: &mlc_store::Store,
    tenant: &str,
    connection: &str,
) -> mlc_store::ConnectionScope {
    store
        .connection_scope(
            &mlc_core::TenantId::parse(tenant).unwrap(),
            &mlc_core::ConnectionId::parse(connection).unwrap(),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no connection {tenant}/{connection}"))
}

/// A stack on `opts` that played `scenario` (its catalog mapped to NetSuite items first) and
/// settled: where the money-flow tests start.
pub async fn settled_month(
    opts: ml_connector::stack::StackOptions,
    mut scenario: mlc_stripe_sim::ScenarioConfig,
) -> (ml_connector::stack::Stack, mlc_stripe_sim::ScenarioReport) {
    let stack = ml_connector::stack::Stack::start(opts)
        .await
        .expect("stack starts");
    scenario.on_catalog = Some(ml_connector::stack::catalog_hook(
        stack.netsuite.handle().clone(),
        true,
    ));
    let report =
        mlc_stripe_sim::run_scenario(&stack.stripe.base_url, stack.stripe.api_key_str(), scenario)
            .await
            .expect("scenario runs");
    assert!(
        stack.wait_idle(Duration::from_secs(120)).await,
        "the month did not settle"
    );
    (stack, report)
}
