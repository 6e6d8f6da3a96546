//! Webhook intake: what Stripe (or a forger) sees, and what ends up in the store.

use std::time::Duration;

use mlc_store::testing::backends;
use mlc_store::{EventFilter, JobState};

use crate::helpers::*;

async fn count(app: &TestApp) -> usize {
    app.store
        .list_events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_valid_event_is_stored_byte_exact_with_its_job_and_processed() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        // Pretty-printed on purpose: the stored body must be the bytes received, not re-serialised.
        let body = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&event_json("evt_1Valid", "invoice.paid"))
                .unwrap(),
        )
        .unwrap();
        let header = sign_now(SECRET, &body);
        let (status, json) = app.post_webhook(body.as_bytes(), Some(&header)).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["duplicate"], false);
        assert_eq!(json["ignored"], false);

        let stored = app
            .store
            .get_event("evt_1Valid")
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(stored.raw_body, body.as_bytes());
        assert_eq!(stored.signature_header, header);
        assert_eq!(stored.event_type, "invoice.paid");
        assert_eq!(stored.object_id.as_deref(), Some("ch_3TestCharge"));
        assert_eq!(stored.api_version.as_deref(), Some("2026-07-29.dahlia"));
        assert!(!stored.livemode);

        // The worker picks the job up and the audit trail shows each step.
        let done = eventually(Duration::from_secs(10), || async {
            matches!(
                app.store.get_job_for_event("evt_1Valid").await.unwrap(),
                Some(j) if j.state == JobState::Succeeded
            )
        })
        .await;
        assert!(done, "job did not succeed ({:?})", db.backend());
        let steps: Vec<String> = app
            .store
            .audit_for_event("evt_1Valid")
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.step)
            .collect();
        assert_eq!(
            steps.first().map(String::as_str),
            Some("received"),
            "{steps:?}"
        );
        assert!(steps.iter().any(|s| s == "processed"), "{steps:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn forged_stale_and_malformed_deliveries_are_refused_and_store_nothing() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let body = event_json("evt_1Refused", "invoice.paid");
        let now = mlc_core::now_millis() / 1000;

        type Case<'a> = (&'a str, Option<String>, &'a [u8], u16, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                "no header",
                None,
                body.as_bytes(),
                400,
                "missing_signature_header",
            ),
            (
                "malformed",
                Some("bad_header".into()),
                body.as_bytes(),
                400,
                "malformed_signature_header",
            ),
            (
                "v0 only",
                Some(format!("t={now},v0=abc")),
                body.as_bytes(),
                400,
                "no_v1_signature",
            ),
            (
                "wrong secret",
                Some(mlc_stripe::webhook::signature_header(
                    &["whsec_forger"],
                    now,
                    body.as_bytes(),
                )),
                body.as_bytes(),
                400,
                "no_valid_signature",
            ),
            (
                "too old",
                Some(mlc_stripe::webhook::signature_header(
                    &[SECRET],
                    now - 301,
                    body.as_bytes(),
                )),
                body.as_bytes(),
                400,
                "timestamp_too_old",
            ),
        ];
        for (name, header, payload, want_status, want_code) in cases {
            let (status, json) = app.post_webhook(payload, header.as_deref()).await;
            assert_eq!(status, want_status, "{name}: {json}");
            assert_eq!(json["error"]["code"], want_code, "{name}: {json}");
            let message = json["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.contains(SECRET) && !message.contains("whsec_"),
                "{name} leaks: {message}"
            );
        }

        // Signed but not JSON, and JSON but not an event.
        let (status, json) = app.send_signed("not json at all", SECRET).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (400, Some("invalid_json"))
        );
        let (status, json) = app.send_signed(r#"{"hello":"world"}"#, SECRET).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (400, Some("not_an_event"))
        );

        assert_eq!(count(&app).await, 0, "nothing stored ({:?})", db.backend());
        app.stop().await;
    }
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_is_not_stored() {
    for db in backends().await {
        let app = TestApp::start_with(&db, &[("MLC__SERVER__BODY_LIMIT_BYTES", "2048")]).await;
        let padding = "x".repeat(4096);
        let body = event_json("evt_1Huge", "invoice.paid").replace(
            "\"livemode\"",
            &format!("\"pad\":\"{padding}\",\"livemode\""),
        );
        let (status, json) = app.send_signed(&body, SECRET).await;
        assert_eq!(status, 413, "{json}");
        assert_eq!(json["error"]["code"], "body_too_large");
        assert_eq!(count(&app).await, 0);
        app.stop().await;
    }
}

#[tokio::test]
async fn duplicate_deliveries_are_stored_once_and_audited() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let body = event_json("evt_1Dup", "charge.succeeded");
        let mut duplicates = 0;
        for _ in 0..3 {
            let (status, json) = app.send_signed(&body, SECRET).await;
            assert_eq!(status, 200, "{json}");
            if json["duplicate"] == true {
                duplicates += 1;
            }
        }
        assert_eq!(duplicates, 2);
        // Concurrent duplicates too.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (client, url, body) = (
                app.client.clone(),
                app.url("/webhooks/stripe"),
                body.clone(),
            );
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .header("stripe-signature", sign_now(SECRET, &body))
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        let stored = app.store.get_event("evt_1Dup").await.unwrap().unwrap();
        assert_eq!(stored.deliveries, 11);
        assert_eq!(count(&app).await, 1);
        let audit = app.store.audit_for_event("evt_1Dup").await.unwrap();
        assert_eq!(
            audit
                .iter()
                .filter(|a| a.step == "duplicate_delivery")
                .count(),
            10
        );
        assert_eq!(audit.iter().filter(|a| a.step == "received").count(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_event_types_are_acknowledged_and_recorded_as_ignored() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let (status, json) = app
            .send_signed(&event_json("evt_1Plan", "plan.created"), SECRET)
            .await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["ignored"], true);
        assert!(app.store.get_event("evt_1Plan").await.unwrap().is_some());
        assert!(
            app.store
                .get_job_for_event("evt_1Plan")
                .await
                .unwrap()
                .is_none()
        );
        let ignored = app
            .store
            .list_events(&EventFilter {
                status: Some("ignored".into()),
                limit: 10,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].event_id, "evt_1Plan");
        let audit = app.store.audit_for_event("evt_1Plan").await.unwrap();
        assert!(audit.iter().any(|a| a.step == "ignored"), "{audit:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn either_secret_verifies_while_rotating() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let (s1, _) = app
            .send_signed(&event_json("evt_1New", "invoice.paid"), SECRET)
            .await;
        let (s2, _) = app
            .send_signed(&event_json("evt_1Old", "invoice.paid"), OLD_SECRET)
            .await;
        // Stripe sends one v1 per active secret during a roll.
        let body = event_json("evt_1Both", "invoice.paid");
        let t = mlc_core::now_millis() / 1000;
        let both = mlc_stripe::webhook::signature_header(
            &["whsec_unknown", OLD_SECRET],
            t,
            body.as_bytes(),
        );
        let (s3, _) = app.post_webhook(body.as_bytes(), Some(&both)).await;
        assert_eq!((s1, s2, s3), (200, 200, 200));
        assert_eq!(count(&app).await, 3);
        app.stop().await;
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let db = backends().await.remove(0);
    let app = TestApp::start(&db).await;
    let get = |p: &str| app.client.get(app.url(p)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    app.send_signed(&event_json("evt_1Metric", "invoice.paid"), SECRET)
        .await;
    app.post_webhook(b"{}", Some("t=1,v1=00")).await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("mlc_webhook_events_received_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlc_webhook_signature_failures_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mlc_jobs{state=\"queued\"}")
            || metrics.contains("mlc_jobs{state=\"succeeded\"}"),
        "{metrics}"
    );
    // SQLite's one write lock: the delivery was committed by the group-commit writer, which
    // held it for some microseconds (OPERATIONS.md: how busy the store is).
    if db.backend() == mlc_store::Backend::Sqlite {
        let held = mlc_service::telemetry::metric_sum(
            &metrics,
            &format!(
                "{}{{holder=\"writer\"}}",
                mlc_service::telemetry::names::STORE_WRITE_LOCK_HELD
            ),
        );
        assert!(held > 0.0, "{metrics}");
    }
    assert!(!metrics.contains("whsec_"));
    app.stop().await;
}

#[tokio::test]
async fn a_signature_header_that_is_not_text_is_refused_as_malformed() {
    let db = backends().await.remove(0);
    let app = TestApp::start(&db).await;
    let value = reqwest::header::HeaderValue::from_bytes(b"t=1,v1=\xff\xfe").unwrap();
    let resp = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", value)
        .body(event_json("evt_1Bytes", "invoice.paid"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["code"], "malformed_signature_header");
    assert_eq!(count(&app).await, 0);
    app.stop().await;
}

/// Signs raw bytes (not necessarily UTF-8) now with the test secret.
fn sign_bytes(body: &[u8]) -> String {
    mlc_stripe::webhook::signature_header(&[SECRET], mlc_core::now_millis() / 1000, body)
}

#[tokio::test]
async fn bodies_the_console_could_not_show_are_refused_as_invalid_json() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let envelope = |id: &str, extra: &[u8]| {
            let mut body = format!(
                r#"{{"id":"{id}","object":"event","type":"invoice.paid","created":1764201600,"data":{{"object":{{"id":"in_1X"}}}},"extra":"#
            )
            .into_bytes();
            body.extend_from_slice(extra);
            body.push(b'}');
            body
        };
        let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        let cases: [(&str, Vec<u8>); 3] = [
            ("evt_1Deep", envelope("evt_1Deep", deep.as_bytes())),
            ("evt_1Surrogate", envelope("evt_1Surrogate", br#""\ud800""#)),
            ("evt_1NotUtf8", envelope("evt_1NotUtf8", b"\"\xff\xfe\"")),
        ];
        for (id, body) in cases {
            let (status, json) = app.post_webhook(&body, Some(&sign_bytes(&body))).await;
            assert_eq!(status, 400, "{id}: {json}");
            assert_eq!(json["error"]["code"], "invalid_json", "{id}: {json}");
            assert!(app.store.get_event(id).await.unwrap().is_none(), "{id}");
        }
        assert_eq!(count(&app).await, 0, "{:?}", db.backend());
        app.stop().await;
    }
}

/// The intake reads the envelope straight from the bytes; a body that reading refuses (a repeated
/// key, a field of the wrong type) gets the answer it always got, when the whole body was parsed
/// first: the last of a repeated key counts, and a wrong type is a 400 that names it.
#[tokio::test]
async fn an_envelope_with_a_repeated_or_mistyped_field_is_answered_as_before() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let repeated = br#"{"id":"evt_1First","object":"event","type":"invoice.paid","created":1764201600,"data":{"object":{"id":"in_1X"}},"id":"evt_1Second"}"#;
        let (status, json) = app
            .post_webhook(repeated, Some(&sign_bytes(repeated)))
            .await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["event_id"], "evt_1Second", "{json}");
        assert!(app.store.get_event("evt_1Second").await.unwrap().is_some());
        assert!(app.store.get_event("evt_1First").await.unwrap().is_none());

        let mistyped =
            br#"{"id":"evt_1Mistyped","object":"event","type":"invoice.paid","created":"soon"}"#;
        let (status, json) = app
            .post_webhook(mistyped, Some(&sign_bytes(mistyped)))
            .await;
        assert_eq!(status, 400, "{json}");
        assert_eq!(json["error"]["code"], "invalid_json", "{json}");
        assert_eq!(
            json["error"]["message"],
            "the body is not valid JSON: invalid type: string \"soon\", expected i64",
            "{json}"
        );
        assert_eq!(count(&app).await, 1, "{:?}", db.backend());
        app.stop().await;
    }
}

#[tokio::test]
async fn events_show_prints_a_stored_body_that_is_not_json_as_its_bytes() {
    for db in backends().await {
        // Stored before intake applied the console's JSON rule.
        let store = mlc_store::testing::connection(&db.store().await, "default", "default").await;
        let raw =
            b"{\"id\":\"evt_1Legacy\",\"type\":\"invoice.paid\",\"x\":\"\xff\x1b[2J\"}".to_vec();
        let event = mlc_store::NewEvent {
            event_id: "evt_1Legacy".into(),
            event_type: "invoice.paid".into(),
            object_id: None,
            livemode: false,
            api_version: None,
            stripe_created: 1_764_201_600,
            raw_body: raw,
            signature_header: "t=1,v1=00".into(),
            received_at: mlc_core::now_millis(),
            handled: false,
        };
        store.record_event(&event, None).await.unwrap();
        store.store().close().await;
        let (ok, out, err) = cli(db.url(), &["events", "show", "evt_1Legacy"]);
        assert!(ok, "{err}");
        assert!(!out.contains("null"), "{out}");
        assert!(out.contains("not parseable as JSON"), "{out}");
        assert!(out.contains(r#""id":"evt_1Legacy""#), "{out}");
        assert!(
            out.contains("\\u{1b}[2J") && !out.contains('\u{1b}'),
            "{out}"
        );
    }
}

#[tokio::test]
async fn cli_output_escapes_control_characters_a_signed_event_carries() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        // ESC sequences (retitle the window, clear the screen), BEL, DEL, a C1 CSI and a bidi
        // override, in the type (unknown, so stored as ignored) and the object ID.
        let event_type = "plan.\u{1b}]0;owned\u{7}created\u{1b}[2J\u{7f}\u{9b}31m\u{202e}";
        let body = serde_json::json!({
            "id": "evt_1Escapes",
            "object": "event",
            "type": event_type,
            "created": 1_764_201_600,
            "livemode": false,
            "data": {"object": {"id": "ch_\u{1b}[31mred", "object": "charge"}}
        })
        .to_string();
        let (status, json) = app.send_signed(&body, SECRET).await;
        assert_eq!(status, 200, "{json}");
        let stored = app.store.get_event("evt_1Escapes").await.unwrap().unwrap();
        assert_eq!(stored.event_type, event_type, "stored as received");

        let raw_controls = |s: &str| {
            s.chars()
                .any(|c| matches!(c, '\u{1b}' | '\u{7}' | '\u{7f}' | '\u{9b}' | '\u{202e}'))
        };
        for args in [
            &["events", "list"][..],
            &["events", "list", "--json"],
            &["events", "show", "evt_1Escapes"],
            &["events", "show", "evt_1Escapes", "--json"],
        ] {
            let (ok, out, err) = cli(db.url(), args);
            assert!(ok, "{args:?}: {err}");
            assert!(out.contains("evt_1Escapes"), "{args:?}: {out}");
            assert!(
                !raw_controls(&out),
                "{args:?} printed raw controls: {out:?}"
            );
        }
        let (_, shown, _) = cli(db.url(), &["events", "show", "evt_1Escapes"]);
        assert!(
            shown.contains("plan.\\u{1b}]0;owned\\u{7}created\\u{1b}[2J\\u{7f}\\u{9b}31m\\u{202e}"),
            "{shown}"
        );
        assert!(shown.contains("ch_\\u{1b}[31mred"), "{shown}");
        // The audit message quoting the type is escaped too.
        assert!(
            shown
                .lines()
                .any(|l| l.contains("ignored") && l.contains("\\u{1b}]0;owned")),
            "{shown}"
        );
        // JSON output stays valid JSON with the same values.
        let (_, listed, _) = cli(db.url(), &["events", "list", "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(rows[0]["event_type"], event_type);
        app.stop().await;
    }
}

#[tokio::test]
async fn status_does_not_count_accept_only_jobs_as_posted() {
    for db in backends().await {
        // No Stripe key, no NetSuite account: events are stored and their jobs only recorded.
        let app = TestApp::start(&db).await;
        for i in 0..3 {
            let (status, _) = app
                .send_signed(
                    &event_json(&format!("evt_1Only{i}"), "invoice.paid"),
                    SECRET,
                )
                .await;
            assert_eq!(status, 200);
        }
        let done = eventually(Duration::from_secs(15), || async {
            let mut all = true;
            for i in 0..3 {
                all &= matches!(
                    app.store.get_job_for_event(&format!("evt_1Only{i}")).await.unwrap(),
                    Some(j) if j.state == JobState::Succeeded
                );
            }
            all
        })
        .await;
        assert!(done, "accept-only jobs did not finish ({:?})", db.backend());

        let (ok, out, err) = cli(db.url(), &["status"]);
        assert!(ok, "{err}");
        let value_of = |label: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| {
                    l[l.find(label).unwrap_or(0) + label.len()..]
                        .split_whitespace()
                        .next()
                })
                .map(str::to_string)
        };
        assert_eq!(
            value_of("Posted to NetSuite").as_deref(),
            Some("0"),
            "{out}"
        );
        assert_eq!(
            value_of("Stored, not posted").as_deref(),
            Some("3"),
            "{out}"
        );
        let (ok, out, err) = cli(db.url(), &["status", "--json"]);
        assert!(ok, "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["counts"]["succeeded"], 3, "{out}");
        assert_eq!(json["counts"]["accepted_only"], 3, "{out}");
        app.stop().await;
    }
}

/// The real binary: deliveries whose client hangs up right after sending are stored, counted in
/// `mlc_webhook_events_received_total` and logged, like any other.
#[tokio::test]
async fn a_delivery_whose_client_leaves_after_sending_is_counted_and_logged() {
    use tokio::io::AsyncWriteExt;
    for db in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("serve.log");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
            .arg("serve")
            .env("MLC__DATABASE__URL", db.url())
            .env("MLC__STRIPE__WEBHOOK_SECRETS", SECRET)
            .env("MLC__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("MLC__LOG__FORMAT", "json")
            .env_remove("MLC_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        assert!(
            eventually(Duration::from_secs(20), || async {
                client.get(format!("{base}/healthz")).send().await.is_ok()
            })
            .await,
            "server did not come up"
        );

        let ids: Vec<String> = (0..5).map(|i| format!("evt_1Gone{i}")).collect();
        for id in &ids {
            let body = event_json(id, "invoice.paid");
            let request = format!(
                "POST /webhooks/stripe HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                 stripe-signature: {}\r\ncontent-length: {}\r\n\r\n{body}",
                sign_now(SECRET, &body),
                body.len()
            );
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            // Gone before the answer: the server sees the end of the stream at once.
            drop(s);
        }
        let store = mlc_service::connections::default_scoped(
            mlc_store::Store::connect(db.url()).await.unwrap(),
        )
        .await
        .unwrap();
        let stored = eventually(Duration::from_secs(15), || async {
            let mut all = true;
            for id in &ids {
                all &= store.get_event(id).await.unwrap().is_some();
            }
            all
        })
        .await;
        assert!(stored, "the deliveries were stored ({:?})", db.backend());
        let line = r#"mlc_webhook_events_received_total{type="invoice.paid",outcome="stored"} 5"#;
        let counted = eventually(Duration::from_secs(10), || async {
            let metrics = client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metrics.lines().any(|l| l == line)
        })
        .await;
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(counted, "expected `{line}` in:\n{metrics}");

        let exit = sigterm_and_wait(&mut child).await;
        assert!(exit.success(), "{exit:?}");
        let log = std::fs::read_to_string(&log_path).unwrap();
        for id in &ids {
            assert!(
                log.lines()
                    .any(|l| l.contains("webhook accepted") && l.contains(id.as_str())),
                "{id} not logged:\n{log}"
            );
        }
        store.store().close().await;
    }
}
