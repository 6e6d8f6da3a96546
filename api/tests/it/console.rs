//! What is left of the operator console's HTTP face: the server-rendered dashboard at `/` is
//! retired (`/` and its old pages redirect to the web app at `/app`), and the retired REST admin
//! API's paths answer 410 with where to go instead. What both did is tested through GraphQL in
//! `graphql_console` (with this file's stack helpers) and, in a browser, in
//! `tests/browser/app.test.mjs`.

use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions};
use mlc_netsuite_sim::{FaultKind, QueuedFault};
use mlc_stripe_sim::{ScenarioConfig, ScenarioReport, run_scenario};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

/// The dashboard is the web app at `/app`: the server-rendered one that lived at `/` is retired,
/// and `/` and its pages' old addresses lead to the app (its same page when it has one), with or
/// without an admin token, and nothing there asks for the token any more.
#[tokio::test]
async fn the_old_dashboard_leads_to_the_app() {
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    for extra in [vec![], vec![("MLC__ADMIN__TOKEN", TOKEN)]] {
        let app = TestApp::start_with(&db, &extra).await;
        for (path, to) in [
            ("/", "/app/"),
            ("/login", "/app/#/signin"),
            ("/events", "/app/#/events"),
            ("/failed", "/app/#/failed"),
            ("/waiting", "/app/#/waiting"),
            ("/mappings", "/app/#/mappings"),
        ] {
            let r = browser().get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "{path}");
            assert_eq!(r.headers()["location"], to, "{path}");
        }
        // Followed, `/` is the app's page.
        let page = app.client.get(app.url("/")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.url().path().starts_with("/app/"), "{}", page.url());
        let html = page.text().await.unwrap();
        assert!(html.contains("app.js"), "{html}");
        // The old forms are gone (nothing signs in with the admin token there).
        for path in [
            "/login",
            "/logout",
            "/replay",
            "/mappings",
            "/events/evt_1/replay",
        ] {
            let r = browser()
                .post(app.url(path))
                .form(&[("token", TOKEN)])
                .send()
                .await
                .unwrap();
            assert!(
                r.status() == StatusCode::METHOD_NOT_ALLOWED || r.status() == StatusCode::NOT_FOUND,
                "POST {path}: {}",
                r.status()
            );
            assert!(r.headers().get("set-cookie").is_none(), "POST {path}");
        }
        app.stop().await;
    }
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
