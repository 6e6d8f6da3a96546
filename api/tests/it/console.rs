//! The operator console over HTTP, on both stores: the admin API behind its token, the OpenAPI
//! document, replaying a failed invoice, finding events by Stripe and NetSuite IDs, mapping a
//! product so its waiting sales post, and the dashboard's sign-in, session and form guard.

use std::time::Duration;

use ml_connector::console::openapi;
use ml_connector::stack::{Stack, StackOptions};
use mlc_netsuite_sim::{FaultKind, QueuedFault};
use mlc_store::testing::backends;
use mlc_stripe_sim::{ScenarioConfig, ScenarioReport, run_scenario};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::cli;

const TOKEN: &str = "console-test-token-0123456789abcdef0123456789";
const SETTLE: Duration = Duration::from_secs(120);

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(stack: &Stack) -> Api {
        Api {
            base: format!("http://{}", stack.addr),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn start(db_url: &str, dir: &std::path::Path, token: bool) -> Stack {
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
async fn month_with_a_refusal(stack: &Stack) -> ScenarioReport {
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

/// The first failed event that tried to create a NetSuite record: (event ID, external ID).
async fn a_failed_event(api: &Api) -> (String, String) {
    let (_, failed) = api.get("/api/events?status=failed").await;
    for e in failed["events"].as_array().unwrap() {
        let id = e["event_id"].as_str().unwrap();
        let (_, detail) = api.get(&format!("/api/events/{id}")).await;
        if let Some(eid) = detail["netsuite_request"]["externalId"].as_str() {
            return (id.to_string(), eid.to_string());
        }
    }
    panic!("no failed event with a NetSuite request: {failed}");
}

/// NetSuite invoices carrying this external ID.
fn invoices_with_external_id(stack: &Stack, external_id: &str) -> usize {
    stack
        .netsuite_invoices()
        .iter()
        .filter(|i| i.external_id == external_id)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_api_replays_a_failed_invoice_and_a_mapping_releases_waiting_sales() {
    for db in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let stack = start(db.url(), dir.path(), true).await;
        let report = month_with_a_refusal(&stack).await;
        let api = Api::new(&stack);
        let backend = format!("{:?}", db.backend());

        // No token, a wrong token: 401 with a challenge, and nothing in the body but the error.
        for auth in [None, Some("Bearer wrong-token"), Some(TOKEN)] {
            let mut req = api.http.get(format!("{}/api/counts", api.base));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{auth:?} on {backend}"
            );
            assert!(r.headers().contains_key("www-authenticate"));
            let body = r.text().await.unwrap();
            assert!(
                body.contains("unauthorized") && !body.contains(TOKEN),
                "{body}"
            );
        }

        // Counts and health: one failed invoice, sales waiting for the unmapped product.
        let (s, counts) = api.get("/api/counts").await;
        assert_eq!(s, StatusCode::OK);
        // Every event of the refused sale failed (the period stayed closed for each of them).
        let failed_before = counts["failed"].as_i64().unwrap();
        assert!(failed_before >= 1, "{counts} on {backend}");
        let waiting = counts["waiting"].as_i64().unwrap();
        assert!(waiting > 0, "{counts}");
        let (_, health) = api.get("/api/health").await;
        assert_eq!(health["status"], "attention");
        assert_eq!(health["netsuite"]["auth"], "m2m");
        assert_eq!(health["netsuite"]["token_valid"], true, "{health}");
        assert!(health["netsuite"]["token_age_secs"].as_u64().unwrap() < 600);
        let ns_error = health["netsuite"]["last_error"]["message"]
            .as_str()
            .unwrap();
        assert!(ns_error.contains("posting period"), "{ns_error}");
        assert!(health["stripe"]["last_error"].is_null(), "{health}");
        assert_eq!(health["queue_depth"], 0);

        // A failed event: found by status, with its reason, amount and the NetSuite request.
        let (_, failed) = api.get("/api/events?status=failed").await;
        let failed = failed["events"].as_array().unwrap().clone();
        assert_eq!(failed.len() as i64, failed_before, "{failed:?}");
        assert!(
            failed.iter().all(|e| e["last_error"]
                .as_str()
                .is_some_and(|m| m.contains("posting period"))),
            "{failed:?}"
        );
        let (event_id, external_id) = a_failed_event(&api).await;
        let row = failed
            .iter()
            .find(|e| e["event_id"] == event_id.as_str())
            .unwrap();
        let object_id = row["object_id"].as_str().unwrap().to_string();
        assert!(row["amount"]["display"].as_str().is_some(), "{row}");
        let (_, detail) = api.get(&format!("/api/events/{event_id}")).await;
        assert_eq!(detail["status"], "failed");
        assert_eq!(detail["raw_event"]["id"], event_id.as_str());
        assert_eq!(
            detail["stripe_object"]["id"],
            object_id.as_str(),
            "{detail}"
        );
        assert!(external_id.starts_with("stripe_"), "{external_id}");
        assert!(detail["netsuite_response"].is_null());
        let steps: Vec<&str> = detail["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps.last(), Some(&"failed"), "{steps:?}");
        assert_eq!(invoices_with_external_id(&stack, &external_id), 0);

        // The CLI sees the same: `status` counts and `events list` finds the failed event.
        let (ok, out, err) = cli(db.url(), &["status", "--json"]);
        assert!(ok, "{err}");
        let status: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(status["counts"]["failed"], failed_before, "{out}");
        assert_eq!(status["counts"]["waiting"], waiting);
        assert!(
            status["health"]["netsuite"]["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("posting period")
        );
        let (ok, out, err) = cli(db.url(), &["status"]);
        assert!(ok, "{err}");
        assert!(
            out.contains("needs attention") && out.contains("Failed"),
            "{out}"
        );
        let (ok, out, _) = cli(db.url(), &["events", "list", "--status", "failed"]);
        assert!(ok && out.contains(&event_id), "{out}");

        // Replay it: it posts once; replaying again changes nothing in NetSuite.
        let (s, r) = api
            .post(&format!("/api/events/{event_id}/replay"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["outcome"], "queued");
        assert!(stack.wait_idle(SETTLE).await);
        let (_, detail) = api.get(&format!("/api/events/{event_id}")).await;
        assert_eq!(detail["status"], "succeeded", "{detail}");
        let ns_id = detail["netsuite_response"]["netsuite_internal_id"]
            .as_str()
            .expect("NetSuite's answer is recorded")
            .to_string();
        assert_eq!(
            detail["netsuite_response"]["external_id"],
            external_id.as_str()
        );
        assert_eq!(invoices_with_external_id(&stack, &external_id), 1);
        // The rest of the failed events, by state, and this one again by ID: nothing twice.
        let (s, r) = api
            .post(
                "/api/replay",
                json!({"event_ids": [event_id, "evt_NoSuchEvent"], "status": "failed"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(r["queued"], failed_before, "{r}");
        assert_eq!(r["results"][1]["outcome"], "not_found");
        assert!(stack.wait_idle(SETTLE).await);
        assert_eq!(invoices_with_external_id(&stack, &external_id), 1);

        // Found by the NetSuite internal ID and by the Stripe invoice ID.
        for q in [
            format!("netsuite_id={ns_id}"),
            format!("netsuite_id={external_id}"),
            format!("stripe_id={object_id}"),
        ] {
            let (_, found) = api.get(&format!("/api/events?{q}")).await;
            let ids: Vec<&str> = found["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_str().unwrap())
                .collect();
            assert!(ids.contains(&event_id.as_str()), "{q}: {ids:?}");
        }
        let (ok, out, err) = cli(db.url(), &["events", "list", "--netsuite-id", &ns_id]);
        assert!(ok && out.contains(&event_id), "{out}{err}");
        let (ok, out, err) = cli(db.url(), &["events", "show", &event_id, "--json"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            shown["netsuite_response"]["netsuite_internal_id"],
            ns_id.as_str()
        );

        // The unmapped product, with its waiting sales; mapping it posts them.
        let (_, unmapped) = api.get("/api/unmapped").await;
        let row = unmapped
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["stripe_product_id"] == report.unmapped_product.as_str())
            .expect("unmapped product listed")
            .clone();
        assert!(!row["waiting_events"].as_array().unwrap().is_empty());
        assert!(!row["waiting_amounts"].as_array().unwrap().is_empty());
        let item = ml_connector::stack::create_product_item(
            stack.netsuite.handle(),
            "Legacy Add-on",
            &report.unmapped_product,
        )
        .unwrap();
        let (s, bad) = api
            .post(
                "/api/mappings",
                json!({"stripe_product_id": report.unmapped_product, "netsuite_item_id": "abc"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(
            bad["error"]["message"]
                .as_str()
                .unwrap()
                .contains("internal ID")
        );
        let (s, mapped) = api
            .post(
                "/api/mappings",
                json!({"stripe_product_id": report.unmapped_product, "netsuite_item_id": item.to_string()}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{mapped}");
        assert_eq!(mapped["released"], waiting, "{mapped}");
        assert!(stack.wait_idle(SETTLE).await);
        let (_, counts) = api.get("/api/counts").await;
        assert_eq!(
            (counts["waiting"].as_i64(), counts["failed"].as_i64()),
            (Some(0), Some(0))
        );
        assert_eq!(
            stack.netsuite_invoices().len(),
            report.paid_invoices.len() + report.standalone_charges.len(),
            "every sale is one NetSuite invoice on {backend}"
        );
        let (_, links) = api.get("/api/mappings").await;
        assert!(
            links
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["stripe_id"] == report.unmapped_product.as_str()
                    && l["netsuite_internal_id"] == item.to_string().as_str()
                    && l["source"] == "manual"),
            "{links}"
        );
        let (_, overview) = api.get("/api/overview").await;
        let posted: i64 = overview["activity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["posted"].as_i64().unwrap())
            .sum();
        assert!(
            posted as usize >= stack.netsuite_invoices().len(),
            "{overview}"
        );

        // Bad requests say what is wrong.
        for (path, body, expect) in [
            ("/api/replay", json!({}), "event_ids"),
            (
                "/api/replay",
                json!({"status": "running"}),
                "cannot be replayed",
            ),
            ("/api/replay", json!({"evil": 1}), "unknown field"),
        ] {
            let (s, r) = api.post(path, body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
            assert!(
                r["error"]["message"].as_str().unwrap().contains(expect),
                "{r}"
            );
        }
        let (s, r) = api.get("/api/events?status=lost").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
        let (s, r) = api.get("/api/events?since=yesterday").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
        let (s, r) = api.get("/api/events?limit=many").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("limit"),
            "{r}"
        );
        let (s, _) = api.get("/api/events/evt_NoSuchEvent").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = api
            .post("/api/events/evt_NoSuchEvent/replay", json!({}))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        stack.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_describes_every_route_and_each_answers() {
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = start(db.url(), dir.path(), true).await;
    let api = Api::new(&stack);
    // Public: tools read it before they have a token.
    let doc: Value = api
        .http
        .get(format!("{}/api/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), openapi::PATHS.len());
    for (path, methods) in openapi::PATHS {
        let entry = paths.get(*path).unwrap_or_else(|| panic!("{path} missing"));
        for m in *methods {
            assert!(entry.get(*m).is_some(), "{m} {path} undocumented");
        }
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/").skip(1) {
        let target = part.split('"').next().unwrap();
        let (kind, name) = target.split_once('/').unwrap();
        assert!(
            doc["components"][kind][name].is_object(),
            "dangling $ref {target}"
        );
    }
    // Every documented GET without path parameters answers 200; an undocumented path is 404.
    for (path, methods) in openapi::PATHS {
        if methods.contains(&"get") && !path.contains('{') {
            let (s, body) = api.get(path).await;
            assert_eq!(s, StatusCode::OK, "{path}: {body}");
        }
    }
    let (s, _) = api.get("/api/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    stack.stop().await.unwrap();
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
        let api = Api::new(&stack);
        let url = |p: &str| format!("{}{p}", api.base);

        // Signed out: every page sends to the sign-in, remembering where to come back.
        let r = api.http.get(url("/failed")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/login?next=%2Ffailed");

        // A wrong token is refused; the right one sets an HttpOnly, SameSite=Strict session.
        let wrong = api
            .http
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
        let ok = api
            .http
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
        let page = api
            .http
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
        let (_, failed) = api.get("/api/events?status=failed").await;
        let event_id = failed["events"][0]["event_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(html.contains(&event_id));
        let failed_before = failed["events"].as_array().unwrap().len() as i64;
        // Dates are shown in the configured zone (Europe/Paris: CET or CEST).
        assert!(
            html.contains(" CET") || html.contains(" CEST"),
            "zone not shown"
        );

        // A replay form without its CSRF field is refused and changes nothing.
        let forged = api
            .http
            .post(url(&format!("/events/{event_id}/replay")))
            .header("cookie", &cookie)
            .form(&[("csrf", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let (_, counts) = api.get("/api/counts").await;
        assert_eq!(counts["failed"], failed_before);

        // The real form (its CSRF field read from the page) replays the event.
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_string();
        let replayed = api
            .http
            .post(url(&format!("/events/{event_id}/replay")))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
        assert!(stack.wait_idle(SETTLE).await);
        let (_, counts) = api.get("/api/counts").await;
        assert_eq!(counts["failed"], failed_before - 1, "{counts}");
        // A sibling event of the same Stripe record, still failed, says it is already posted.
        let object = failed["events"][0]["object_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, still) = api.get("/api/events?status=failed").await;
        let sibling = still["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["object_id"] == object.as_str());
        if let Some(sibling) = sibling {
            let html = api
                .http
                .get(url(&format!(
                    "/events/{}",
                    sibling["event_id"].as_str().unwrap()
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

        // The session cookie also opens the API (the dashboard's own calls); signing out ends it.
        let r = api
            .http
            .get(url("/api/counts"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let out = api
            .http
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
    let api = Api::new(&stack);
    let (s, body) = api.get("/api/health").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "console_off");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MLC__ADMIN__TOKEN")
    );
    let page = api.http.get(format!("{}/", api.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().await.unwrap().contains("MLC__ADMIN__TOKEN"));
    stack.stop().await.unwrap();
}

/// The admin API against its own OpenAPI document, checked by an independent client:
/// schemathesis (pinned in scripts/requirements-test.txt) generates valid and invalid requests
/// from the document and checks every answer: no server error, status codes, content types and
/// bodies as documented, valid requests accepted and invalid ones refused. Fixed seed: the same
/// requests every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_the_api_true_to_its_openapi_document() {
    let Some(python) = crate::helpers::test_python() else {
        return;
    };
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = start(db.url(), dir.path(), true).await;
    let _ = month_with_a_refusal(&stack).await;
    let out = tokio::process::Command::new(python)
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://{}/api/openapi.json", stack.addr))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all", "--max-examples", "40", "--seed", "1"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found the API untrue to its document\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
    // Its requests changed nothing they should not have: still no duplicate NetSuite invoice.
    let invoices = stack.netsuite_invoices();
    let mut ids: Vec<&str> = invoices.iter().map(|i| i.external_id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a NetSuite invoice was posted twice");
    stack.stop().await.unwrap();
}
