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
