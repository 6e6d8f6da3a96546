//! `demo --dashboard` opens the dashboard (`/app`) on a signed-in person: its ready file and its
//! output carry a one-time sign-in link, which signs the demo user in through GraphQL exactly
//! once. It leaves a second pair of simulators, connected to nothing, for the onboarding wizard
//! (a sign-up link with their settings, the keys and IDs to type). It prints the operator token
//! (GraphQL `tenantCreate`) only when it made the token up itself: a token the user supplied in
//! `MLC__ADMIN__TOKEN` is a secret and is never echoed. It always prints the owner API key it
//! made for the default tenant, which opens the GraphQL API.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use mlc_store::testing::backends;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How to run the dashboard demo.
#[derive(Default)]
struct DemoRun<'a> {
    /// `MLC__ADMIN__TOKEN`.
    token: Option<&'a str>,
    /// `--database-url` (default: the demo's own SQLite file).
    database_url: Option<&'a str>,
    /// `--ready-file`.
    ready_file: Option<&'a std::path::Path>,
}

/// Runs the dashboard demo until it is ready; returns what it printed.
/// The child is returned so it keeps serving until the caller drops it.
async fn demo_output(run: DemoRun<'_>) -> (String, std::net::SocketAddr, tokio::process::Child) {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
    cmd.args([
        "demo",
        "--dashboard",
        "--customers",
        "4",
        "--listen",
        &addr.to_string(),
    ])
    .env_remove("MLC__ADMIN__TOKEN")
    .env_remove("MLC__ADMIN__SIGNUP")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if let Some(t) = run.token {
        cmd.env("MLC__ADMIN__TOKEN", t);
    }
    if let Some(url) = run.database_url {
        cmd.args(["--database-url", url]);
    }
    if let Some(path) = run.ready_file {
        cmd.arg("--ready-file").arg(path);
    }
    let mut child = cmd.spawn().expect("demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut out = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("stdout readable") {
            out.push_str(&line);
            out.push('\n');
            if line.contains("Press Ctrl-C to stop") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), read)
        .await
        .unwrap_or_else(|_| panic!("the dashboard demo gets ready:\n{out}"));
    drop(lines);
    (out, addr, child)
}

/// A GraphQL request to the demo, with a bearer or none.
async fn graphql(
    addr: std::net::SocketAddr,
    bearer: Option<&str>,
    query: &str,
    variables: Value,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.expect("answers")
}

/// Whether `token` is the operator token: it may create a tenant.
async fn is_operator_token(addr: std::net::SocketAddr, token: &str, tenant: &str) -> bool {
    let body: Value = graphql(
        addr,
        Some(token),
        "mutation($id: String!) { tenantCreate(input: { id: $id }) { tenantId userErrors { message } } }",
        json!({ "id": tenant }),
    )
    .await
    .json()
    .await
    .expect("JSON");
    body["data"]["tenantCreate"]["tenantId"] == tenant
}

/// The API key the demo printed, and what `viewer` answers with it.
async fn printed_api_key(out: &str, addr: std::net::SocketAddr) -> (String, Value) {
    let key = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("API key (the default tenant's owner, made for this run): ")
        })
        .unwrap_or_else(|| panic!("the API key line:\n{out}"))
        .to_string();
    let viewer = graphql(addr, Some(&key), "{ viewer { tenantId role } }", json!({}))
        .await
        .json()
        .await
        .expect("JSON");
    (key, viewer)
}

const OPERATOR_LINE: &str = "Operator token (GraphQL tenantCreate, as the bearer): ";

#[tokio::test]
async fn the_dashboard_demo_never_prints_a_token_the_user_supplied() {
    let mine = "a-token-the-operator-chose-0123456789abcdef";
    let (out, addr, _demo) = demo_output(DemoRun {
        token: Some(mine),
        ..DemoRun::default()
    })
    .await;
    assert!(
        !out.contains(mine),
        "the supplied token was printed:\n{out}"
    );
    assert!(
        out.contains(&format!(
            "{OPERATOR_LINE}the one you set in MLC__ADMIN__TOKEN"
        )),
        "{out}"
    );
    // It is still the operator token.
    assert!(is_operator_token(addr, mine, "initech").await);
    assert!(!is_operator_token(addr, "not-the-token-0123456789abcdef0123456789", "hooli").await);
}

#[tokio::test]
async fn the_dashboard_demo_prints_the_token_it_generated() {
    let (out, addr, _demo) = demo_output(DemoRun::default()).await;
    let token = out
        .lines()
        .find_map(|l| l.trim().strip_prefix(OPERATOR_LINE))
        .expect("the operator token line")
        .to_string();
    assert_eq!(token.len(), 64, "{out}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert!(is_operator_token(addr, &token, "initech").await);
    // And the API key it made opens the default tenant's GraphQL API as its owner.
    let (key, viewer) = printed_api_key(&out, addr).await;
    assert!(key.starts_with("mlck_"), "{key}");
    assert_eq!(
        viewer["data"]["viewer"],
        json!({ "tenantId": "default", "role": "OWNER" }),
        "{viewer}"
    );
}

const SIGN_IN_WITH_LINK: &str = "mutation($t: String!) { signInWithLink(input: { token: $t }) { \
    tenantId role email csrfToken userErrors { field code message } } }";

/// Uses a sign-in link's token through GraphQL: the payload and the session cookie set, if any.
async fn use_link(addr: std::net::SocketAddr, token: &str) -> (Value, Option<String>) {
    let r = graphql(addr, None, SIGN_IN_WITH_LINK, json!({ "t": token })).await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("mlc_sid="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string());
    let body: Value = r.json().await.expect("JSON");
    (body["data"]["signInWithLink"].clone(), cookie)
}

/// The demo's ready file and output open the dashboard on its signed-in person (once), and give
/// what the wizard needs; on each store, as the sign-in link lives in the store.
#[tokio::test]
async fn the_dashboard_demo_signs_its_person_in_once_and_leaves_a_wizard_to_try() {
    for db in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let ready_file = dir.path().join("ready.json");
        let (out, addr, _demo) = demo_output(DemoRun {
            database_url: Some(db.url()),
            ready_file: Some(&ready_file),
            ..DemoRun::default()
        })
        .await;
        let ready: Value =
            serde_json::from_slice(&std::fs::read(&ready_file).expect("the ready file")).unwrap();
        let app_url = format!("http://{addr}/app/");
        assert_eq!(ready["app_url"], app_url.as_str());
        assert!(
            out.contains(&format!("The dashboard is ready: {app_url}")),
            "{out}"
        );

        // The sign-in link: printed, in the ready file, on the /app page that uses it.
        let signin_url = ready["signin_url"]
            .as_str()
            .expect("signin_url")
            .to_string();
        assert!(out.contains(&signin_url), "the link is printed:\n{out}");
        let token = signin_url
            .strip_prefix(&format!("{app_url}#/link?token="))
            .unwrap_or_else(|| panic!("{signin_url}"));
        assert!(token.starts_with("mll_") && token.len() > 60, "{token}");

        // It signs the demo user in, with a session cookie that opens the dashboard's API.
        let (session, cookie) = use_link(addr, token).await;
        assert_eq!(session["userErrors"], json!([]), "{session}");
        assert_eq!(session["email"], "demo@example.com");
        assert_eq!(session["tenantId"], "default");
        assert_eq!(session["role"], "OWNER");
        let cookie = cookie.expect("a session cookie");
        let viewer: Value = reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .header("cookie", &cookie)
            .json(&json!({ "query": "{ viewer { tenantId role } }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            viewer["data"]["viewer"],
            json!({ "tenantId": "default", "role": "OWNER" }),
            "{viewer}"
        );

        // The demo knows its own address (admin.public_url): the wizard's stripeConnect
        // registers the webhook there.
        let hooks: Value = graphql(
            addr,
            Some(ready["api_key"].as_str().unwrap()),
            "{ connections(first: 5) { nodes { webhookUrl webhookPath } } }",
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
        let hook = &hooks["data"]["connections"]["nodes"][0];
        assert_eq!(
            hook["webhookUrl"],
            format!("http://{addr}{}", hook["webhookPath"].as_str().unwrap()).as_str(),
            "{hooks}"
        );

        // Once: a second use is refused, saying so, and starts no session.
        let (again, cookie) = use_link(addr, token).await;
        assert!(cookie.is_none(), "{again}");
        assert_eq!(again["csrfToken"], Value::Null);
        assert_eq!(
            again["userErrors"][0]["field"],
            json!(["input", "token"]),
            "{again}"
        );
        let message = again["userErrors"][0]["message"].as_str().unwrap();
        assert!(message.contains("used already"), "{message}");
        assert!(message.contains("signs in once"), "{message}");

        // The wizard: a sign-up link carrying its simulators' settings, but no NetSuite IDs.
        let signup_url = ready["signup_url"].as_str().expect("signup_url");
        assert!(out.contains(signup_url), "{out}");
        let preset = signup_url
            .strip_prefix(&format!("{app_url}#/signup?preset="))
            .unwrap_or_else(|| panic!("{signup_url}"));
        let preset: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(preset)
                .expect("base64url"),
        )
        .expect("JSON settings");
        let wizard = &ready["wizard"];
        let stripe = wizard["stripe_simulator"].as_str().unwrap();
        let netsuite = wizard["netsuite_simulator"].as_str().unwrap();
        assert_eq!(preset["stripe"]["api_base"], stripe, "{preset}");
        assert_eq!(preset["netsuite"]["base_url"], netsuite, "{preset}");
        assert_ne!(stripe, ready["stripe_simulator"], "a second pair");
        assert_ne!(netsuite, ready["netsuite_simulator"], "a second pair");
        for key in ["account_id", "client_id", "certificate_id"] {
            assert!(preset["netsuite"].get(key).is_none(), "{key} in {preset}");
        }
        for key in [
            "subsidiary",
            "fee_item",
            "discount_item",
            "tax_item",
            "payment_account",
            "fee_expense_account",
            "fee_clearing_account",
            "currencies",
        ] {
            assert!(preset["posting"].get(key).is_some(), "{key} in {preset}");
        }
        let client_id = wizard["netsuite_client_id"].as_str().unwrap();
        assert!(
            client_id.len() == 64 && client_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{client_id}"
        );
        assert_eq!(
            wizard["netsuite_upload_url"],
            format!("{netsuite}/_sim/m2m/certificates").as_str()
        );
        assert!(
            wizard["netsuite_account_id"]
                .as_str()
                .is_some_and(|a| !a.is_empty())
        );
        // A month of sales in its Stripe, whose secret key is given.
        let key = wizard["stripe_api_key"].as_str().unwrap();
        assert!(out.contains(key), "{out}");
        let invoices: Value = reqwest::Client::new()
            .get(format!("{stripe}/v1/invoices?limit=3"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            invoices["data"].as_array().is_some_and(|d| !d.is_empty()),
            "{invoices}"
        );
        // The item to map the unmapped product to is in its NetSuite.
        let item = wizard["unmapped_item_id"].as_str().unwrap();
        let found = reqwest::Client::new()
            .get(format!("{netsuite}/_sim/state"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(found.contains("Legacy Add-on"), "item {item}: {found}");
        // Sign-up is open for it.
        let signed_up: Value = graphql(
            addr,
            None,
            "mutation { signUp(input: { email: \"ana@acme.example\", password: \
             \"lighthouse-marmalade-quarry-7\", companyId: \"acme\", companyName: \"Acme\" }) \
             { tenantId userErrors { message } } }",
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            signed_up["data"]["signUp"]["tenantId"], "acme",
            "{signed_up}"
        );
    }
}

/// The README's first command: two companies side by side, each reconciled on its own, neither
/// company's records in the other's NetSuite.
#[tokio::test]
async fn the_demo_posts_two_companies_each_into_its_own_netsuite() {
    let out = Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(["demo", "--customers", "6", "--seed", "3"])
        .env_remove("MLC__ADMIN__TOKEN")
        .env_remove("MLC_MASTER_KEY")
        .env_remove("MLC_MASTER_KEY_FILE")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), out)
        .await
        .expect("the demo finishes")
        .expect("the demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Summary: default (default/default)"),
        "{text}"
    );
    assert!(
        text.contains("Summary: globex (globex/production)"),
        "{text}"
    );
    assert!(text.contains("webhooks /webhooks/stripe/whc_"), "{text}");
    assert!(
        text.contains("default's NetSuite holds 0 record(s) of the other company"),
        "{text}"
    );
    assert!(
        text.contains("globex's NetSuite holds 0 record(s) of the other company"),
        "{text}"
    );
    // Each company's invoices are posted, and none waits or fails.
    for line in text
        .lines()
        .filter(|l| l.contains("NetSuite invoices posted"))
    {
        let n: usize = line
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(n > 0, "{line}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("Failed") && l.trim_end().ends_with(" 0"))
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(
            "No difference: every Stripe sale of each company is in its own NetSuite exactly once."
        ),
        "{text}"
    );
}

/// The sign-in links behind the demo's, on each store: a link works once, not after its 15
/// minutes, and is never taken for an invitation (nor an invitation for a link), though both
/// live in the invitations table.
#[tokio::test]
async fn a_sign_in_link_works_once_in_time_and_is_no_invitation() {
    use mlc_service::accounts;
    use secrecy::{ExposeSecret as _, SecretString};
    for db in backends().await {
        let app = crate::helpers::TestApp::start(&db).await;
        let store = app.store.store();
        let tenant = app.store.scope().tenant();
        let password = SecretString::from("lighthouse-marmalade-quarry-7".to_string());
        accounts::create_member(
            store,
            &tenant,
            "ana@example.com",
            &password,
            mlc_store::ApiKeyRole::Operator,
        )
        .await
        .unwrap();
        let addr = app.addr;
        let message = |v: &Value| {
            v["userErrors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };

        // Only for a member of the tenant.
        assert!(
            accounts::sign_in_link(store, &tenant, "nobody@example.com")
                .await
                .is_err()
        );
        let link = accounts::sign_in_link(store, &tenant, "Ana@Example.com")
            .await
            .unwrap();
        let ttl = link.expires_at - mlc_core::now_millis();
        assert!((14 * 60_000..=15 * 60_000).contains(&ttl), "{ttl}");
        let token = link.token.expose_secret().to_string();
        let (first, cookie) = use_link(addr, &token).await;
        assert_eq!(first["email"], "ana@example.com", "{first}");
        assert_eq!(first["role"], "OPERATOR", "the member's role");
        assert!(cookie.is_some());
        let (second, cookie) = use_link(addr, &token).await;
        assert!(cookie.is_none());
        assert!(message(&second).contains("used already"), "{second}");

        // Expired, and unknown.
        let expired = "mll_0000000000000000000000000000000000000000000000000000000000000000";
        store
            .tenant(&tenant)
            .create_invitation(
                "ana@example.com",
                mlc_store::ApiKeyRole::Operator,
                &mlc_store::token_hash(expired),
                mlc_core::now_millis() - 1,
            )
            .await
            .unwrap();
        let (late, cookie) = use_link(addr, expired).await;
        assert!(cookie.is_none());
        assert!(message(&late).contains("expired"), "{late}");
        let (unknown, _) = use_link(addr, "mll_not-a-link").await;
        assert!(message(&unknown).contains("not valid"), "{unknown}");

        // An invitation is not a sign-in link: refused as one, and still open after.
        let invitation = accounts::invite(
            store,
            &tenant,
            "bo@example.com",
            mlc_store::ApiKeyRole::Viewer,
        )
        .await
        .unwrap();
        let invitation = invitation.token.expose_secret().to_string();
        let (as_link, cookie) = use_link(addr, &invitation).await;
        assert!(cookie.is_none());
        assert!(message(&as_link).contains("not valid"), "{as_link}");
        // Nor is a sign-in link an invitation.
        let link = accounts::sign_in_link(store, &tenant, "ana@example.com")
            .await
            .unwrap();
        assert!(
            accounts::accept_invitation(store, &link.token, &password)
                .await
                .is_err()
        );
        let (still, _) = use_link(addr, link.token.expose_secret()).await;
        assert_eq!(
            still["email"], "ana@example.com",
            "the link is unspent: {still}"
        );
        let joined = accounts::accept_invitation(
            store,
            &SecretString::from(invitation),
            &SecretString::from("quarry-lighthouse-marmalade-9".to_string()),
        )
        .await
        .unwrap();
        assert_eq!(joined.email, "bo@example.com");
        app.stop().await;
    }
}
