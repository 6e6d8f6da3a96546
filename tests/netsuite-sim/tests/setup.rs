//! Seed files and one-step M2M provisioning, as a newcomer would use them.

mod common;

use common::*;
use mlc_netsuite_sim::{NetSuiteSim, RecordType, SimConfig, generate_m2m_setup};
use serde_json::json;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mlc-nssim-{name}-{}-{}", std::process::id(), now()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn seed_file_with_a_public_key_file_registers_the_certificate() {
    let dir = temp_dir("seed");
    let setup = generate_m2m_setup("ES256").unwrap();
    std::fs::write(dir.join("pub.pem"), &setup.public_key_pem).unwrap();
    let seed = json!({
        "account_id": "7654321",
        "currencies": [{"id": 1, "name": "US Dollar", "symbol": "USD", "currencyPrecision": 2}],
        "subsidiaries": [{"id": 1, "name": "HQ", "currency": {"id": "1"}}],
        "customers": [{"externalId": "c1", "companyName": "One", "subsidiary": {"id": "1"}}],
        "m2m": [{"client_id": setup.client_id, "certificate_id": setup.certificate_id, "public_key_file": "pub.pem"}]
    });
    std::fs::write(dir.join("seed.json"), seed.to_string()).unwrap();
    let cfg = SimConfig::from_seed_file(&dir.join("seed.json")).unwrap();
    let sim = NetSuiteSim::start(cfg).await.unwrap();
    assert_eq!(sim.account_id(), "7654321");
    assert_eq!(sim.handle().count(RecordType::Customer), 1);
    let (status, body) = token_request(&sim, &assertion(&sim, &setup)).await;
    assert_eq!(status, 200, "{body}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_seed_with_a_dangling_reference_is_refused() {
    let mut cfg = SimConfig::default();
    cfg.seed.customers.push(
        json!({"companyName": "X", "subsidiary": {"id": "42"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    let err = NetSuiteSim::start(cfg).await.unwrap_err();
    assert!(err.to_string().contains("subsidiary"), "{err}");
}

#[tokio::test]
async fn provision_m2m_writes_the_key_and_prints_the_config() {
    let sim = sim().await;
    let dir = temp_dir("prov");
    let key = dir.join("netsuite.pem");
    let (setup, toml) = sim.provision_m2m("PS256", &key).unwrap();
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(toml.contains("account_id = \"1234567_SB1\""));
    assert!(toml.contains(&format!("base_url = \"{}\"", sim.base_url())));
    assert!(toml.contains(&format!("client_id = \"{}\"", setup.client_id)));
    assert!(toml.contains(&key.display().to_string()));
    let (status, _) = token_request(&sim, &assertion(&sim, &setup)).await;
    assert_eq!(status, 200);

    let api = Api::new(&sim).await;
    let g = api
        .send(
            reqwest::Method::GET,
            "/services/rest/system/v1/governanceLimits",
            None,
            &[],
        )
        .await;
    assert_eq!(g.body["accountConcurrencyLimit"], 5);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_router_works_in_process() {
    use tower::ServiceExt;
    let cfg = SimConfig::example().unwrap();
    let handle = mlc_netsuite_sim::SimHandle::new(&cfg).unwrap();
    let app = mlc_netsuite_sim::router(handle.clone());
    let req = axum::http::Request::get("/services/rest/record/v1/customer/1")
        .header("host", "netsuite.test")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"1234567_SB1\"")
    );
    let id = handle
        .create(
            RecordType::Customer,
            json!({"companyName": "In-process", "subsidiary": {"id": "1"}}),
        )
        .unwrap();
    let got = handle.get(RecordType::Customer, &id.to_string()).unwrap();
    assert_eq!(got["companyName"], "In-process");
    let state = app
        .oneshot(
            axum::http::Request::get("/_sim/state")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(state.status(), 200);
}
