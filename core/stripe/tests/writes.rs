//! Product and customer writes against the Stripe simulator: bracket-encoded metadata, one
//! object per write however often it is retried or repeated (Idempotency-Key), and retries on
//! injected faults.

use std::time::Duration;

use mlc_stripe::client::{CustomerParams, ProductParams, Query};
use mlc_stripe::models::{List, Product};
use mlc_stripe::{StripeClient, StripeClientConfig};
use mlc_stripe_sim::{ApiFaults, RunningSim, SimConfig, StripeSim};
use secrecy::SecretString;

async fn sim() -> RunningSim {
    StripeSim::start(SimConfig::default())
        .await
        .expect("simulator starts")
}

fn client(sim: &RunningSim, max_retries: u32) -> StripeClient {
    let mut cfg = StripeClientConfig::new(SecretString::from(sim.api_key_str().to_string()));
    cfg.base_url = sim.base_url.parse().expect("sim URL parses");
    cfg.rate_limit_per_sec = std::num::NonZeroU32::new(1000);
    cfg.retry_base_delay = Duration::from_millis(1);
    cfg.retry_max_delay = Duration::from_millis(5);
    cfg.max_retries = max_retries;
    StripeClient::new(cfg).expect("client builds")
}

async fn products(c: &StripeClient) -> Vec<Product> {
    let mut q = Query::new();
    q.push("limit", "100");
    let list: List<Product> = c.get_list("/v1/products", &q).await.expect("list");
    list.data
}

fn product(name: &str, item: &str) -> ProductParams {
    let mut p = ProductParams {
        name: Some(name.into()),
        ..ProductParams::default()
    };
    p.metadata.insert("netsuite_item_id".into(), item.into());
    p
}

#[tokio::test]
async fn product_is_created_once_and_updated() {
    let sim = sim().await;
    let c = client(&sim, 3);
    let p = product("Pro plan", "201");
    let created = c.create_product(&p).await.expect("created");
    assert!(created.id.starts_with("prod_"), "{}", created.id);
    assert_eq!(created.name.as_deref(), Some("Pro plan"));
    assert_eq!(
        created.metadata.get("netsuite_item_id").map(String::as_str),
        Some("201")
    );
    // The same write again (a retried sync) is Stripe's saved answer, not a second product.
    let again = c.create_product(&p).await.expect("replayed");
    assert_eq!(again.id, created.id);
    assert_eq!(products(&c).await.len(), 1);

    // Another item is another product.
    let other = c
        .create_product(&product("Seat", "202"))
        .await
        .expect("created");
    assert_ne!(other.id, created.id);

    let mut rename = ProductParams {
        name: Some("Pro plan (annual)".into()),
        idempotency_scope: Some("2026-11-27T10:00:00Z".into()),
        ..ProductParams::default()
    };
    rename.metadata.insert("owner".into(), "finance".into());
    let updated = c
        .update_product(&created.id, &rename)
        .await
        .expect("updated");
    assert_eq!(updated.name.as_deref(), Some("Pro plan (annual)"));
    let read = c.retrieve_product(&created.id).await.expect("read");
    assert_eq!(read.name.as_deref(), Some("Pro plan (annual)"));
    // Metadata keys are merged: the item link stays.
    assert_eq!(
        read.metadata.get("netsuite_item_id").map(String::as_str),
        Some("201")
    );
    assert_eq!(
        read.metadata.get("owner").map(String::as_str),
        Some("finance")
    );

    // Renamed back, then forward again: a new scope makes it a new request, not a replay of
    // the first rename (which would leave the old name in place).
    let back = ProductParams {
        name: Some("Pro plan".into()),
        idempotency_scope: Some("2026-11-27T10:01:00Z".into()),
        ..ProductParams::default()
    };
    c.update_product(&created.id, &back).await.expect("back");
    let forward = ProductParams {
        idempotency_scope: Some("2026-11-27T10:02:00Z".into()),
        ..rename.clone()
    };
    c.update_product(&created.id, &forward)
        .await
        .expect("forward");
    let read = c.retrieve_product(&created.id).await.expect("read");
    assert_eq!(read.name.as_deref(), Some("Pro plan (annual)"));

    let missing = c
        .update_product("prod_missing", &back)
        .await
        .expect_err("no such product");
    assert_eq!(missing.status(), Some(404));
    let empty = c
        .create_product(&ProductParams::default())
        .await
        .expect_err("a name is required");
    assert!(empty.to_string().contains("name"), "{empty}");
    sim.shutdown().await;
}

#[tokio::test]
async fn customer_is_created_once_and_updated() {
    let sim = sim().await;
    let c = client(&sim, 3);
    let mut p = CustomerParams {
        name: Some("Acme & Co".into()),
        email: Some("ap+stripe@acme.example".into()),
        ..CustomerParams::default()
    };
    p.metadata
        .insert("netsuite_customer_id".into(), "105".into());
    let created = c.create_customer(&p).await.expect("created");
    assert!(created.id.starts_with("cus_"));
    assert_eq!(created.name.as_deref(), Some("Acme & Co"));
    assert_eq!(created.email.as_deref(), Some("ap+stripe@acme.example"));
    assert_eq!(
        created
            .metadata
            .get("netsuite_customer_id")
            .map(String::as_str),
        Some("105")
    );
    let again = c.create_customer(&p).await.expect("replayed");
    assert_eq!(again.id, created.id);

    let update = CustomerParams {
        email: Some("billing@acme.example".into()),
        idempotency_scope: Some("v2".into()),
        ..CustomerParams::default()
    };
    let updated = c
        .update_customer(&created.id, &update)
        .await
        .expect("updated");
    assert_eq!(updated.email.as_deref(), Some("billing@acme.example"));
    assert_eq!(updated.name.as_deref(), Some("Acme & Co"));
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_are_retried_through_faults_and_still_create_once() {
    let sim = sim().await;
    let c = client(&sim, 60);
    sim.handle.set_api_faults(ApiFaults {
        error_500_probability: 0.4,
        rate_limit_probability: 0.3,
        latency_ms: 0,
    });
    let p = product("Flaky", "301");
    let first = c.create_product(&p).await.expect("retried to success");
    let second = c.create_product(&p).await.expect("retried to success");
    assert_eq!(first.id, second.id);
    sim.handle.set_api_faults(ApiFaults::default());
    assert_eq!(products(&c).await.len(), 1);

    // Every attempt failing: a transient error after the retries, nothing created.
    sim.handle.set_api_faults(ApiFaults {
        error_500_probability: 1.0,
        ..Default::default()
    });
    let c2 = client(&sim, 2);
    let err = c2
        .create_product(&product("Never", "302"))
        .await
        .expect_err("all attempts fail");
    assert_eq!(c2.requests_made(), 3);
    assert_eq!(
        mlc_core::Classify::class(&err),
        mlc_core::ErrorClass::Transient
    );
    sim.handle.set_api_faults(ApiFaults::default());
    assert_eq!(products(&c).await.len(), 1);
    sim.shutdown().await;
}
