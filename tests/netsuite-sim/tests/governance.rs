//! Concurrency limit (429), fault injection (before processing and "committed but lost"),
//! admin endpoints.

mod common;

use common::*;
use mlc_netsuite_sim::{FaultKind, QueuedFault, RecordType};
use serde_json::json;

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_get_429() {
    let sim = sim_with(|c| {
        c.concurrency_limit = 2;
        c.latency = std::time::Duration::from_millis(800);
    })
    .await;
    let api = Api::new(&sim).await;
    let calls = (0..6).map(|_| api.get("customer", "eid:stripe_cus_SEED0001"));
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    let limited: Vec<_> = results.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok + limited.len(), 6);
    assert!(ok >= 2, "the limit admits two at a time");
    assert!(!limited.is_empty(), "six at once exceed a limit of two");
    let e = &limited[0].body;
    assert_eq!(e["status"], 429);
    assert_eq!(e["o:errorCode"], "USER_ERROR");
    assert_eq!(
        e["o:errorDetails"][0]["o:errorCode"],
        "CONCURRENCY_LIMIT_EXCEEDED"
    );
    assert_eq!(
        e["o:errorDetails"][0]["detail"],
        "Concurrent request limit exceeded. Request blocked."
    );
    assert_eq!(sim.handle().max_in_flight(), 2);
    assert_eq!(
        sim.handle().stats().rejected_concurrency,
        limited.len() as u64
    );
}

/// The latency is the account's answer time, with the request's work inside it: a request is
/// never answered sooner, and the record exists once the answer comes (it is made within the
/// latency, not after it).
#[tokio::test]
async fn a_request_is_answered_after_the_latency_with_its_work_inside_it() {
    let sim = sim_with(|c| c.latency = std::time::Duration::from_millis(300)).await;
    let api = Api::new(&sim).await;
    let started = std::time::Instant::now();
    let cust = api.customer("stripe_cus_LAT1").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "answered before the latency"
    );
    let found = api.get("customer", "eid:stripe_cus_LAT1").await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body["id"].as_str(), Some(cust.as_str()));
}

fn invoice_body(eid: &str, cust: &str, item: &str) -> serde_json::Value {
    json!({"externalId": eid, "entity": {"id": cust}, "subsidiary": {"id": "1"},
           "item": {"items": [{"item": {"id": item}, "amount": "25.00"}]}})
}

#[tokio::test]
async fn committed_then_500_leaves_the_record_in_place() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_F1").await;
    let item = api.seeded_item().await;
    sim.handle().push_fault(QueuedFault {
        kind: FaultKind::CommitThenError,
        method: Some("POST".into()),
        path_contains: Some("/record/v1/invoice".into()),
    });
    let r = api
        .post("invoice", invoice_body("stripe_in_F1", &cust, &item))
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.error_code(), "UNEXPECTED_ERROR");
    assert!(
        r.error_detail()
            .starts_with("An unexpected error occurred. Error ID: ")
    );
    // The write happened: a careful client finds it by external ID instead of creating twice.
    let found = api.get("invoice", "eid:stripe_in_F1").await;
    assert_eq!(found.status, 200);
    let retry = api
        .post("invoice", invoice_body("stripe_in_F1", &cust, &item))
        .await;
    assert_eq!(
        retry.status, 400,
        "a blind retry hits the external-ID guard"
    );
    assert_eq!(sim.handle().count(RecordType::Invoice), 1);
}

#[tokio::test]
async fn a_closed_period_refuses_the_same_record_until_reopened() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_P1").await;
    let item = api.seeded_item().await;
    sim.handle().push_fault(QueuedFault {
        kind: FaultKind::PeriodClosed,
        method: Some("POST".into()),
        path_contains: Some("/record/v1/invoice".into()),
    });
    for _ in 0..2 {
        let r = api
            .post("invoice", invoice_body("stripe_in_P1", &cust, &item))
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error_code(), "USER_ERROR");
        assert!(r.error_detail().contains("posting period"), "{}", r.body);
    }
    // Other records are not affected.
    let other = api
        .post("invoice", invoice_body("stripe_in_P2", &cust, &item))
        .await;
    assert_eq!(other.status, 204);
    assert_eq!(sim.handle().count(RecordType::Invoice), 1);
    // Reopened: the refused record can be created.
    sim.handle().clear_faults();
    let again = api
        .post("invoice", invoice_body("stripe_in_P1", &cust, &item))
        .await;
    assert_eq!(again.status, 204);
    assert_eq!(sim.handle().count(RecordType::Invoice), 2);
}

#[tokio::test]
async fn committed_then_dropped_connection() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_F2").await;
    let item = api.seeded_item().await;
    sim.handle()
        .push_fault(QueuedFault::any(FaultKind::CommitThenDrop));
    let err = api
        .http
        .post(format!("{}/services/rest/record/v1/invoice", api.base))
        .bearer_auth(&api.token)
        .json(&invoice_body("stripe_in_F2", &cust, &item))
        .send()
        .await;
    assert!(err.is_err(), "the connection is closed without a response");
    assert_eq!(api.get("invoice", "eid:stripe_in_F2").await.status, 200);
    assert_eq!(sim.handle().queued_faults(), 0);
}

#[tokio::test]
async fn faults_before_processing_write_nothing() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_F3").await;
    let item = api.seeded_item().await;
    // Queue through the admin endpoint, as an out-of-process test would.
    let resp = reqwest::Client::new()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({"queue": [{"kind": "server_error", "method": "POST"}, {"kind": "drop", "method": "POST"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let r = api
        .post("invoice", invoice_body("stripe_in_F3", &cust, &item))
        .await;
    assert_eq!(r.status, 500);
    let dropped = api
        .http
        .post(format!("{}/services/rest/record/v1/invoice", api.base))
        .bearer_auth(&api.token)
        .json(&invoice_body("stripe_in_F3", &cust, &item))
        .send()
        .await;
    assert!(dropped.is_err());
    assert_eq!(api.get("invoice", "eid:stripe_in_F3").await.status, 404);
    assert_eq!(sim.handle().count(RecordType::Invoice), 0);
    // Faults exhausted: the next call goes through.
    assert_eq!(
        api.post("invoice", invoice_body("stripe_in_F3", &cust, &item))
            .await
            .status,
        204
    );
    assert_eq!(sim.handle().stats().faults_injected, 2);
}

#[tokio::test]
async fn certain_random_faults_and_the_state_dump() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    sim.handle()
        .set_fault_probabilities(mlc_netsuite_sim::FaultProbabilities {
            server_error: 1.0,
            ..Default::default()
        });
    assert_eq!(
        api.get("customer", "eid:stripe_cus_SEED0001").await.status,
        500
    );
    sim.handle().clear_faults();
    assert_eq!(
        api.get("customer", "eid:stripe_cus_SEED0001").await.status,
        200
    );

    let state: serde_json::Value = reqwest::get(format!("{}/_sim/state", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["account_id"], "1234567_SB1");
    assert_eq!(state["counts"]["customer"], 1);
    assert_eq!(state["counts"]["currency"], 5);
    assert_eq!(state["stats"]["rest_requests"], 2);
    assert!(
        state["tba_tokens"][0]["token_secret"]
            .as_str()
            .unwrap()
            .starts_with("<redacted")
    );
    assert!(!state.to_string().contains("sim-token-secret"));
    assert!(
        !state.to_string().contains(&api.token),
        "access tokens are not dumped"
    );
}

#[tokio::test]
async fn admin_generate_registers_a_usable_key() {
    let sim = sim().await;
    let g: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_sim/m2m/generate", sim.base_url()))
        .json(&json!({"algorithm": "ES256"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let setup = mlc_netsuite_sim::M2mSetup {
        client_id: g["client_id"].as_str().unwrap().into(),
        certificate_id: g["certificate_id"].as_str().unwrap().into(),
        algorithm: "ES256".into(),
        private_key_pem: g["private_key_pem"].as_str().unwrap().to_owned().into(),
        public_key_pem: g["public_key_pem"].as_str().unwrap().into(),
    };
    let (status, _) = token_request(&sim, &assertion(&sim, &setup)).await;
    assert_eq!(status, 200);
    let toml = setup.connector_toml(
        sim.account_id(),
        sim.base_url(),
        std::path::Path::new("/etc/mlc/netsuite.pem"),
    );
    assert!(toml.contains(&format!("certificate_id = \"{}\"", setup.certificate_id)));
    assert!(!toml.contains("PRIVATE KEY"));
}
