//! `demo --dashboard` prints the admin token only when it made the token up itself: a token the
//! user supplied in `MLC__ADMIN__TOKEN` is a secret and is never echoed. It always prints the
//! owner API key it made for the default tenant, which opens the GraphQL API.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Runs the dashboard demo until it is ready; returns what it printed.
/// The child is returned so it keeps serving until the caller drops it.
async fn demo_output(token: Option<&str>) -> (String, std::net::SocketAddr, tokio::process::Child) {
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
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("MLC__ADMIN__TOKEN", t);
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
        .expect("the dashboard demo gets ready");
    drop(lines);
    (out, addr, child)
}

/// Whether `token` signs in to the dashboard (a session cookie is set).
async fn signs_in(addr: std::net::SocketAddr, token: &str) -> bool {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{addr}/login"))
        .form(&[("token", token), ("next", "/")])
        .send()
        .await
        .expect("answers");
    r.headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap_or_default().starts_with("mlc_session="))
}

/// The API key the demo printed, and what `viewer` answers with it.
async fn printed_api_key(out: &str, addr: std::net::SocketAddr) -> (String, serde_json::Value) {
    let key = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("API key (the default tenant's owner, made for this run): ")
        })
        .unwrap_or_else(|| panic!("the API key line:\n{out}"))
        .to_string();
    let viewer = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "query": "{ viewer { tenantId role } }" }))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    (key, viewer)
}

#[tokio::test]
async fn the_dashboard_demo_never_prints_a_token_the_user_supplied() {
    let mine = "a-token-the-operator-chose-0123456789abcdef";
    let (out, addr, _demo) = demo_output(Some(mine)).await;
    assert!(
        !out.contains(mine),
        "the supplied token was printed:\n{out}"
    );
    assert!(
        out.contains("Sign in with the admin token: the one you set in MLC__ADMIN__TOKEN"),
        "{out}"
    );
    // It is still the token that signs in.
    assert!(signs_in(addr, mine).await);
    assert!(!signs_in(addr, "not-the-token-0123456789abcdef0123456789").await);
}

#[tokio::test]
async fn the_dashboard_demo_prints_the_token_it_generated() {
    let (out, addr, _demo) = demo_output(None).await;
    let token = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Sign in with the admin token: "))
        .expect("the sign-in line")
        .to_string();
    assert_eq!(token.len(), 64, "{out}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert!(signs_in(addr, &token).await);
    // And the API key it made opens the default tenant's GraphQL API as its owner.
    let (key, viewer) = printed_api_key(&out, addr).await;
    assert!(key.starts_with("mlck_"), "{key}");
    assert_eq!(
        viewer["data"]["viewer"],
        serde_json::json!({ "tenantId": "default", "role": "OWNER" }),
        "{viewer}"
    );
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
