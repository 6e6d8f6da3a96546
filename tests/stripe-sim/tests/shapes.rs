//! The simulator's objects carry the same top-level fields as Stripe's own fixtures
//! (stripe/openapi fixtures3.json at v2349 = 2026-07-29.dahlia).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{Client, sim};
use serde_json::{Value, json};

fn fixture_keys(name: &str) -> BTreeSet<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Fields present in the fixture but not in the sim, and vice versa (minus known exceptions).
fn diff(name: &str, ours: &Value, fixture_only_ok: &[&str], ours_only_ok: &[&str]) -> Vec<String> {
    let f = fixture_keys(name);
    let o = keys(ours);
    let mut out = Vec::new();
    for k in f.difference(&o) {
        if !fixture_only_ok.contains(&k.as_str()) {
            out.push(format!("{name}: missing `{k}`"));
        }
    }
    for k in o.difference(&f) {
        if !ours_only_ok.contains(&k.as_str()) {
            out.push(format!("{name}: extra `{k}`"));
        }
    }
    out
}

#[tokio::test]
async fn objects_match_stripe_fixture_fields() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cus = c.post("/v1/customers", json!({"email": "s@example.com", "payment_method": "pm_card_visa", "invoice_settings": {"default_payment_method": "pm_card_visa"}})).await;
    let prod = c.post("/v1/products", json!({"name": "Shape"})).await;
    let price = c.post("/v1/prices", json!({"product": prod["id"], "currency": "usd", "unit_amount": "2000", "recurring": {"interval": "month"}})).await;
    let pi = c
        .post("/v1/payment_intents", json!({"amount": "2000", "currency": "usd", "customer": cus["id"], "payment_method": "pm_card_visa", "payment_method_types": ["card"], "confirm": "true"}))
        .await;
    let ch = c
        .get(
            &format!("/v1/charges/{}", pi["latest_charge"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let txn = c
        .get(
            &format!(
                "/v1/balance_transactions/{}",
                ch["balance_transaction"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let re = c
        .post("/v1/refunds", json!({"charge": ch["id"], "amount": "500"}))
        .await;
    let coupon = c.post("/v1/coupons", json!({"percent_off": "5"})).await;
    let sub = c.post("/v1/subscriptions", json!({"customer": cus["id"], "items": [{"price": price["id"]}], "discounts": [{"coupon": coupon["id"]}]})).await;
    let inv = c
        .get(
            &format!("/v1/invoices/{}", sub["latest_invoice"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let line = &inv["lines"]["data"][0];
    let pay = c
        .get("/v1/invoice_payments", json!({"invoice": inv["id"]}))
        .await;
    let di = c
        .get(
            &format!("/v1/invoices/{}", inv["id"].as_str().unwrap()),
            json!({"expand": ["discounts"]}),
        )
        .await["discounts"][0]
        .clone();
    let ii = c
        .post(
            "/v1/invoiceitems",
            json!({"customer": cus["id"], "amount": "100", "currency": "usd"}),
        )
        .await;
    let dp = c
        .post(
            &format!("/_sim/charges/{}/dispute", ch["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let failed = c
        .post(
            &format!("/_sim/refunds/{}/fail", re["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let ep = c
        .post(
            "/v1/webhook_endpoints",
            json!({"url": "https://example.com/h", "enabled_events": ["*"]}),
        )
        .await;

    let mut problems = Vec::new();
    problems.extend(diff("customer", &cus, &[], &["customer_account"]));
    problems.extend(diff("product", &prod, &[], &[]));
    // custom_unit_amount: null in the sim for plain prices (the fixture shows an object).
    problems.extend(diff("price", &price, &[], &[]));
    // refunds: not included by default since 2022-11-15; radar_options/presentment_details: only when set.
    problems.extend(diff("charge", &ch, &["refunds"], &["radar_options"]));
    problems.extend(diff("payment_intent", &pi, &[], &[]));
    // invoice.subscription: a fixture artifact (not in the 2026-07-29 model).
    problems.extend(diff("invoice", &inv, &["subscription"], &[]));
    problems.extend(diff("line_item", line, &[], &[]));
    problems.extend(diff("invoice_payment", &pay["data"][0], &[], &[]));
    problems.extend(diff("balance_transaction", &txn, &[], &[]));
    problems.extend(diff("refund", &re, &[], &[]));
    // A failed refund also carries why and the balance transaction that reversed it.
    problems.extend(diff(
        "refund",
        &failed,
        &[],
        &["failure_reason", "failure_balance_transaction"],
    ));
    problems.extend(diff("dispute", &dp, &[], &[]));
    problems.extend(diff(
        "balance_transaction",
        &dp["balance_transactions"][0],
        &[],
        &[],
    ));
    problems.extend(diff("webhook_endpoint", &ep, &[], &["secret"]));
    problems.extend(diff("discount", &di, &[], &[]));
    problems.extend(diff("invoiceitem", &ii, &[], &[]));
    problems.extend(diff("subscription", &sub, &[], &[]));
    assert!(
        problems.is_empty(),
        "shape differences:\n{}",
        problems.join("\n")
    );
    sim.shutdown().await;
}
