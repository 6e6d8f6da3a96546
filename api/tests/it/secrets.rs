//! No secret leaks: the whole pipeline runs with known secrets (the Stripe API key, the webhook
//! signing secret, the NetSuite private key, the admin token) and none of them appears in any log
//! line (debug level, JSON), any HTTP response of the connector (webhooks, health, metrics, the
//! GraphQL API, the retired REST API's paths, the dashboard's files at /app and the old pages'
//! addresses), `check-config`, a debug print of the configuration (what a panic message would
//! show), or the database file.

use std::process::Stdio;
use std::time::Duration;

use ml_connector::stack::{Sims, StackOptions, catalog_hook, netsuite_invoices, wait_idle};
use mlc_store::Store;
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use tokio::io::AsyncReadExt;

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn no_secret_appears_in_logs_responses_or_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("leak.db");
    let url = format!("sqlite://{}", db_path.display());
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sims = Sims::start(&StackOptions::new(url.clone(), dir.path()), addr)
        .await
        .unwrap();
    let stripe_key = env_value(&sims.env, "MLC__STRIPE__API_KEY").to_string();
    let webhook_secret = env_value(&sims.env, "MLC__STRIPE__WEBHOOK_SECRETS").to_string();
    let pem =
        std::fs::read_to_string(env_value(&sims.env, "MLC__NETSUITE__PRIVATE_KEY_PATH")).unwrap();
    // The longest base64 line of the private key stands for the key.
    let pem_line = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .max_by_key(|l| l.len())
        .unwrap()
        .to_string();
    let admin_token = "admin-token-that-must-never-leak-0123456789";
    let secrets = [
        stripe_key.as_str(),
        webhook_secret.as_str(),
        pem_line.as_str(),
        admin_token,
    ];
    assert!(secrets.iter().all(|s| s.len() > 16));

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .arg("serve")
        .envs(sims.env.iter().cloned())
        .env("MLC__ADMIN__TOKEN", admin_token)
        // Credentials set through GraphQL are sealed under it.
        .env(
            "MLC_MASTER_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        )
        .env("MLC__LOG__FORMAT", "json")
        .env("MLC__LOG__LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out).await;
        buf.extend(out);
        buf
    });

    let report = run_scenario(
        &sims.stripe.base_url,
        sims.stripe.api_key_str(),
        ScenarioConfig {
            customers: 6,
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
    assert!(wait_idle(&sims.stripe.handle, &store, Duration::from_secs(120)).await);
    assert!(!netsuite_invoices(sims.netsuite.handle(), sims.items.fee).is_empty());
    assert!(!report.paid_invoices.is_empty());

    // Every HTTP answer of the connector, including refusals.
    let http = reqwest::Client::new();
    let mut responses = String::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        responses += &http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    for sig in [None, Some("t=1,v1=00"), Some("garbage")] {
        let mut req = http
            .post(format!("http://{addr}/webhooks/stripe"))
            .body("{}");
        if let Some(s) = sig {
            req = req.header("stripe-signature", s);
        }
        responses += &req.send().await.unwrap().text().await.unwrap();
    }

    // The GraphQL API with a tenant key (itself a secret: never echoed), a wrong one and none:
    // connections with their health, events, one event in full (the raw body, the fetched
    // object, the NetSuite request and answer, the audit trail), and the connection test.
    let tenant_scope = store
        .store()
        .tenant_scope(&mlc_core::TenantId::default_id())
        .await
        .unwrap()
        .unwrap();
    let api_key = store
        .store()
        .tenant(&tenant_scope)
        .create_api_key("leak check", mlc_store::ApiKeyRole::Owner)
        .await
        .unwrap()
        .secret;
    let api_key = mlc_core::ExposeSecret::expose_secret(&api_key).to_string();
    let gql = |key: Option<String>, query: String| {
        let http = http.clone();
        async move {
            let mut req = http
                .post(format!("http://{addr}/graphql"))
                .json(&serde_json::json!({ "query": query }));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            req.send().await.unwrap().text().await.unwrap()
        }
    };
    let listed = gql(
        Some(api_key.clone()),
        "{ viewer { tenantId role apiKeyName } apiKeys { id name prefix last4 } \
         connections { nodes { id handle name webhookPath netsuiteAccount \
         health { lastTestMessage lastError netsuiteTokenIssuedAt } \
         events(first: 5) { nodes { id eventId status lastError } } } } }"
            .into(),
    )
    .await;
    let parsed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let connection = parsed["data"]["connections"]["nodes"][0].clone();
    let event_gid = connection["events"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let connection_gid = connection["id"].as_str().unwrap().to_string();
    responses += &listed;
    responses += &gql(
        Some(api_key.clone()),
        format!(
            "{{ event(id: \"{event_gid}\") {{ rawEvent stripeObject netsuiteRequest \
             netsuiteResponse job {{ lastError }} auditTrail {{ step message }} }} }}"
        ),
    )
    .await;
    responses += &gql(
        Some(api_key.clone()),
        format!(
            "mutation {{ connectionTest(input: {{ connectionId: \"{connection_gid}\" }}) \
             {{ result {{ ok checks {{ code message fix }} }} }} }}"
        ),
    )
    .await;
    // Credentials through GraphQL (a new connection's, so the running one keeps its own): set,
    // refused when malformed (with the secret inside the bad value), rolled, and read back.
    let created = gql(
        Some(api_key.clone()),
        "mutation { connectionCreate(input: { handle: \"leak-check\" }) { connection { id } } }"
            .into(),
    )
    .await;
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let spare = created["data"]["connectionCreate"]["connection"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pem_json = serde_json::to_string(&pem).unwrap();
    for mutation in [
        format!(
            "mutation {{ stripeCredentialsSet(input: {{ connectionId: \"{spare}\", apiKey: \"{stripe_key}\", \
             webhookSecrets: [\"{webhook_secret}\"] }}) {{ credentials {{ name fingerprint last4 }} \
             userErrors {{ message }} }} }}"
        ),
        format!(
            "mutation {{ stripeCredentialsSet(input: {{ connectionId: \"{spare}\", apiKey: \"pk_{stripe_key}\" }}) \
             {{ userErrors {{ field code message }} }} }}"
        ),
        format!(
            "mutation {{ webhookSecretRotate(input: {{ connectionId: \"{spare}\", newSecret: \"x{webhook_secret}\" }}) \
             {{ userErrors {{ message }} }} }}"
        ),
        format!(
            "mutation {{ netsuiteCredentialsSet(input: {{ connectionId: \"{spare}\", privateKeyPem: {pem_json} }}) \
             {{ credentials {{ name fingerprint }} userErrors {{ message }} }} }}"
        ),
        format!(
            "mutation {{ netsuiteCredentialsSet(input: {{ connectionId: \"{spare}\", privateKeyPem: \"{pem_line}\" }}) \
             {{ userErrors {{ message }} }} }}"
        ),
        format!(
            "{{ connection(id: \"{spare}\") {{ credentials {{ name fingerprint last4 values setAt }} }} }}"
        ),
    ] {
        responses += &gql(Some(api_key.clone()), mutation).await;
    }
    assert!(
        responses.contains("netsuite/private_key_pem") && responses.contains("sha256:"),
        "the credentials were stored and described: {responses}"
    );
    // The admin token is GraphQL's operator token (tenantCreate only): refused here, not echoed.
    for key in [
        Some("mlck_wrongwrongwrongwrongwrongwrongwrong".to_string()),
        Some(admin_token.to_string()),
        None,
    ] {
        responses += &gql(key, "{ viewer { tenantId } }".into()).await;
    }
    assert!(
        responses.contains("rawEvent"),
        "the GraphQL answers were read"
    );
    assert!(!responses.contains(&api_key), "an API key was echoed");

    // The retired REST admin API's paths, with the admin token, a wrong one and none.
    for path in ["/api/overview", "/api/events", "/api/openapi.json"] {
        for auth in [Some(admin_token), Some("wrong-token"), None] {
            let mut req = http.get(format!("http://{addr}{path}"));
            if let Some(a) = auth {
                req = req.bearer_auth(a);
            }
            responses += &req.send().await.unwrap().text().await.unwrap();
        }
    }
    assert!(responses.contains("the REST admin API was retired"));

    // The dashboard (the web app at /app, and the old pages' addresses that lead there), with
    // the admin token as a cookie and a bearer, and without.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/",
        "/login",
        "/events",
        "/failed",
        "/waiting",
        "/mappings",
        "/app/",
        "/app/app.js",
        "/app/pages.js",
        "/app/operations.graphql",
    ] {
        for auth in [Some(admin_token), None] {
            let mut req = browser.get(format!("http://{addr}{path}"));
            if let Some(a) = auth {
                req = req
                    .bearer_auth(a)
                    .header("cookie", format!("mlc_sid={a}; mlc_session={a}"));
            }
            let r = req.send().await.unwrap();
            responses += &format!("{:?}", r.headers());
            responses += &r.text().await.unwrap();
        }
    }
    assert!(responses.contains("Sign out"), "the app's pages were read");

    // check-config, and the configuration as a panic message would print it.
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .arg("check-config")
        .envs(sims.env.iter().cloned())
        .env("MLC__ADMIN__TOKEN", admin_token)
        .output()
        .unwrap();
    assert!(checked.status.success());
    responses += &String::from_utf8_lossy(&checked.stdout);
    responses += &String::from_utf8_lossy(&checked.stderr);
    let mut env = sims.env.clone();
    env.push(("MLC__ADMIN__TOKEN".into(), admin_token.into()));
    let (config, _) =
        mlc_service::config::load(&mlc_service::config::Sources { file: None, env }).unwrap();
    let config = mlc_service::config::Config {
        netsuite: mlc_service::config::NetSuiteConfig {
            private_key_pem: Some(pem.clone().into()),
            ..config.netsuite.clone()
        },
        ..config
    };
    responses += &format!("{config:?} {:#?}", config);

    // Stop the connector (SIGTERM) so its logs are complete.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.await.unwrap()).to_string();
    assert!(logs.lines().count() > 10, "expected debug logs, got {logs}");
    store.store().close().await;

    let mut database = std::fs::read(&db_path).unwrap();
    for suffix in ["-wal", "-shm"] {
        if let Ok(more) = std::fs::read(format!("{}{suffix}", db_path.display())) {
            database.extend(more);
        }
    }
    let database = String::from_utf8_lossy(&database);
    for secret in secrets {
        let shown = &secret[..8];
        assert!(
            !logs.contains(secret),
            "a secret starting {shown}… is in the logs"
        );
        assert!(
            !responses.contains(secret),
            "a secret starting {shown}… is in an HTTP response"
        );
        assert!(
            !database.contains(secret),
            "a secret starting {shown}… is in the database file"
        );
    }
}
