//! The operator console over HTTP, on both stores: the dashboard's sign-in, session and form
//! guard, replaying a failed invoice from its pages, and the console being off without a token.
//! The retired REST admin API's paths answer 410 with where to go instead; what it did is
//! tested through GraphQL in `graphql_console`.

use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions};
use mlc_netsuite_sim::{FaultKind, QueuedFault};
use mlc_store::testing::backends;
use mlc_stripe_sim::{ScenarioConfig, ScenarioReport, run_scenario};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::graphql_console::DefaultTenant;
use crate::helpers::TestApp;

const TOKEN: &str = "console-test-token-0123456789abcdef0123456789";
pub(crate) const SETTLE: Duration = Duration::from_secs(120);

/// A client that does not follow redirects (the dashboard answers sign-ins with them).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) async fn start(db_url: &str, dir: &std::path::Path, token: bool) -> Stack {
    let mut opts = StackOptions::new(db_url, dir);
    opts.unmapped_retry_secs = 3600; // only a mapping releases the waiting sales
    if token {
        opts.extra_env
            .push(("MLC__ADMIN__TOKEN".into(), TOKEN.into()));
    }
    opts.extra_env
        .push(("MLC__ADMIN__TIME_ZONE".into(), "Europe/Paris".into()));
    Stack::start(opts).await.expect("stack starts")
}

/// A small month in which NetSuite refuses the first invoice (a closed period).
pub(crate) async fn month_with_a_refusal(stack: &Stack) -> ScenarioReport {
    stack.netsuite.handle().push_fault(QueuedFault {
        kind: FaultKind::PeriodClosed,
        method: Some("POST".into()),
        path_contains: Some("/record/v1/invoice".into()),
    });
    let report = run_scenario(
        &stack.stripe.base_url,
        stack.stripe.api_key_str(),
        ScenarioConfig {
            customers: 6,
            seed: 5,
            checkout_percent: 100,
            on_catalog: Some(stack.catalog_hook()),
            ..ScenarioConfig::default()
        },
    )
    .await
    .expect("scenario runs");
    assert!(stack.wait_idle(SETTLE).await, "the month did not settle");
    // Someone reopens the period: the refused invoice can now be posted by a replay.
    stack.netsuite.handle().clear_faults();
    report
}

/// NetSuite invoices carrying this external ID.
pub(crate) fn invoices_with_external_id(stack: &Stack, external_id: &str) -> usize {
    stack
        .netsuite_invoices()
        .iter()
        .filter(|i| i.external_id == external_id)
        .count()
}

/// The session cookie of a sign-in response.
fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("mlc_session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_needs_a_sign_in_and_its_forms_need_their_guard() {
    for db in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let stack = start(db.url(), dir.path(), true).await;
        let _ = month_with_a_refusal(&stack).await;
        let gql = DefaultTenant::new(&stack).await;
        let http = browser();
        let base = format!("http://{}", stack.addr);
        let url = |p: &str| format!("{base}{p}");

        // Signed out: every page sends to the sign-in, remembering where to come back.
        let r = http.get(url("/failed")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/login?next=%2Ffailed");

        // A wrong token is refused; the right one sets an HttpOnly, SameSite=Strict session.
        let wrong = http
            .post(url("/login"))
            .form(&[("token", "not-the-token"), ("next", "/failed")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::SEE_OTHER);
        assert!(session_cookie(&wrong).is_none());
        assert!(
            wrong.headers()["location"]
                .to_str()
                .unwrap()
                .contains("failed=1")
        );
        let ok = http
            .post(url("/login"))
            .form(&[("token", TOKEN), ("next", "https://evil.example/")])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.headers()["location"], "/", "an off-site next is ignored");
        let raw_cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(raw_cookie.contains("HttpOnly") && raw_cookie.contains("SameSite=Strict"));
        let cookie = session_cookie(&ok).unwrap();
        assert!(
            !cookie.contains(TOKEN),
            "the cookie must not hold the token"
        );

        // Signed in: the failed page shows the event in plain words, with its amount.
        let page = http
            .get(url("/failed"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["cache-control"], "no-store");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("Invoice paid") || html.contains("Payment"),
            "{html}"
        );
        assert!(html.contains("posting period"), "the reason is shown");
        assert!(html.contains("Failed"));
        assert!(!html.contains(TOKEN), "the page must not hold the token");
        let failed = gql.events(json!({ "status": "FAILED" })).await;
        let event_id = failed[0]["eventId"].as_str().unwrap().to_string();
        assert!(html.contains(&event_id));
        let failed_before = failed.len() as i64;
        // Dates are shown in the configured zone (Europe/Paris: CET or CEST).
        assert!(
            html.contains(" CET") || html.contains(" CEST"),
            "zone not shown"
        );

        // A replay form without its CSRF field is refused and changes nothing.
        let forged = http
            .post(url(&format!("/events/{event_id}/replay")))
            .header("cookie", &cookie)
            .form(&[("csrf", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        assert_eq!(gql.counts().await["failed"], failed_before);

        // The real form (its CSRF field read from the page) replays the event.
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_string();
        let replayed = http
            .post(url(&format!("/events/{event_id}/replay")))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
        assert!(stack.wait_idle(SETTLE).await);
        let counts = gql.counts().await;
        assert_eq!(counts["failed"], failed_before - 1, "{counts}");
        // Audited as a replay from the CLI or GraphQL is.
        let replayed = gql.event(&event_id).await;
        assert!(
            replayed["auditTrail"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["step"] == "replayed"
                    && a["message"]
                        == "Replay requested: job queued again with its attempts reset"),
            "{replayed}"
        );
        // A sibling event of the same Stripe record, still failed, says it is already posted.
        let object = failed[0]["objectId"].as_str().unwrap().to_string();
        let still = gql.events(json!({ "status": "FAILED" })).await;
        let sibling = still.iter().find(|e| e["objectId"] == object.as_str());
        if let Some(sibling) = sibling {
            let html = http
                .get(url(&format!(
                    "/events/{}",
                    sibling["eventId"].as_str().unwrap()
                )))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(html.contains("already in NetSuite"), "{html}");
        }

        // The session cookie opens the dashboard only: GraphQL takes API keys. Signing out ends
        // the session.
        let r = http
            .post(url("/graphql"))
            .header("cookie", &cookie)
            .json(&json!({ "query": "{ viewer { tenantId } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let out = http
            .post(url("/logout"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert!(
            out.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_token_the_console_is_off_and_says_how_to_turn_it_on() {
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = start(db.url(), dir.path(), false).await;
    for path in ["/", "/login", "/failed"] {
        let page = browser()
            .get(format!("http://{}{path}", stack.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(page.text().await.unwrap().contains("MLC__ADMIN__TOKEN"));
    }
    stack.stop().await.unwrap();
}

/// The REST admin API is retired: whatever a script asks under `/api`, with or without the
/// admin token, it is told where its features went, as JSON in the old error shape.
#[tokio::test]
async fn the_retired_rest_api_says_to_use_graphql() {
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    let app = TestApp::start_with(&db, &[("MLC__ADMIN__TOKEN", TOKEN)]).await;
    let expected = json!({ "error": {
        "code": "gone",
        "message": "the REST admin API was retired: use the GraphQL API at /graphql \
                    (see frontend-schema/schema.graphql)",
    } });
    for (method, path) in [
        ("GET", "/api"),
        ("GET", "/api/anything"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/overview"),
        ("GET", "/api/events?status=failed"),
        ("GET", "/api/events/evt_1"),
        ("POST", "/api/events/evt_1/replay"),
        ("POST", "/api/replay"),
        ("POST", "/api/mappings"),
        ("DELETE", "/api/a/b/c"),
    ] {
        for token in [None, Some(TOKEN)] {
            let mut req = app
                .client
                .request(method.parse().unwrap(), app.url(path))
                .json(&json!({ "status": "failed" }));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::GONE, "{method} {path}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body, expected, "{method} {path}");
        }
    }
    app.stop().await;
}
