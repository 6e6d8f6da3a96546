//! Event sequences and signed webhook delivery, checked by an independent receiver.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Client, receiver, sim, sim_with, verify};
use mlc_stripe_sim::{DeliveryFaults, SimConfig};
use serde_json::{Value, json};

async fn endpoint(c: &Client, url: &str, extra: Value) -> (String, String) {
    let mut p = json!({"url": url, "enabled_events": ["*"]});
    if let (Some(m), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    let ep = c.post("/v1/webhook_endpoints", p).await;
    let secret = ep["secret"]
        .as_str()
        .expect("secret shown at creation")
        .to_string();
    assert!(secret.starts_with("whsec_"));
    // The secret is only returned once.
    let again = c
        .get(
            &format!("/v1/webhook_endpoints/{}", ep["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert!(again.get("secret").is_none());
    (ep["id"].as_str().unwrap().to_string(), secret)
}

/// All events, oldest first, via the Events API (paging).
async fn all_events(c: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = json!({"limit": "100"});
        if let Some(a) = &after {
            q["starting_after"] = json!(a);
        }
        let page = c.get("/v1/events", q).await;
        let data = page["data"].as_array().unwrap().clone();
        after = data.last().map(|e| e["id"].as_str().unwrap().to_string());
        out.extend(data);
        if page["has_more"] != json!(true) {
            break;
        }
    }
    out.reverse();
    out
}

async fn paying_customer(c: &Client, card: &str) -> String {
    let cus = c
        .post("/v1/customers", json!({"email": "jenny@example.com", "name": "Jenny Rosen", "payment_method": card, "invoice_settings": {"default_payment_method": card}}))
        .await;
    cus["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn paid_subscription_invoice_emits_stripes_sequence_and_signed_deliveries() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (url, rx) = receiver().await;
    let (_ep, secret) = endpoint(&c, &url, json!({})).await;

    let cus = paying_customer(&c, "pm_card_visa").await;
    let prod = c.post("/v1/products", json!({"name": "Pro Plan"})).await;
    let price = c.post("/v1/prices", json!({"product": prod["id"], "currency": "usd", "unit_amount": "2000", "recurring": {"interval": "month"}})).await;
    let sub = c
        .post(
            "/v1/subscriptions",
            json!({"customer": cus, "items": [{"price": price["id"]}]}),
        )
        .await;
    assert_eq!(sub["status"], "active");
    let inv_id = sub["latest_invoice"].as_str().unwrap().to_string();
    sim.handle.wait_for_deliveries_idle().await;

    let events = all_events(&c).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let billing: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| {
            t.starts_with("invoice.")
                || t.starts_with("payment_intent.")
                || t.starts_with("charge.")
        })
        .collect();
    assert_eq!(
        billing,
        [
            "invoice.created",
            "invoice.finalized",
            "payment_intent.created",
            "payment_intent.succeeded",
            "charge.succeeded",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );
    assert_eq!(types[0], "customer.created");
    assert!(types.contains(&"customer.subscription.created"));
    assert!(types.contains(&"invoice_payment.paid"));

    // Every event was delivered, each verified with our own HMAC check.
    let got = rx.got.lock().unwrap().clone();
    let mut delivered = BTreeSet::new();
    for r in &got {
        let sig = r.headers["stripe-signature"].to_str().unwrap();
        verify(&secret, sig, &r.body).expect("signature verifies");
        assert!(sig.contains(",v0="), "test mode adds a fake v0: {sig}");
        assert_eq!(
            r.headers["user-agent"],
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
        );
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let ev = r.json();
        assert_eq!(ev["object"], "event");
        assert_eq!(ev["api_version"], "2026-07-29.dahlia");
        delivered.insert(ev["id"].as_str().unwrap().to_string());
    }
    let all: BTreeSet<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, all);

    // The invoice.paid payload has basil+ shapes.
    let paid = got
        .iter()
        .map(|r| r.json())
        .find(|e| e["type"] == "invoice.paid")
        .unwrap();
    let inv = &paid["data"]["object"];
    assert_eq!(inv["id"], json!(inv_id));
    assert_eq!(inv["status"], "paid");
    assert_eq!(inv["amount_paid"], 2000);
    assert_eq!(
        inv["parent"]["subscription_details"]["subscription"],
        sub["id"]
    );
    assert!(inv.get("charge").is_none() && inv.get("subscription").is_none());
    let line = &inv["lines"]["data"][0];
    assert_eq!(line["pricing"]["price_details"]["price"], price["id"]);
    assert!(line["period"]["end"].as_i64().unwrap() > line["period"]["start"].as_i64().unwrap());
    assert!(inv["number"].as_str().unwrap().ends_with("-0001"));
    sim.shutdown().await;
}

#[tokio::test]
async fn one_time_checkout_charge_and_decline_events() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (url, rx) = receiver().await;
    let (_ep, secret) = endpoint(&c, &url, json!({})).await;
    let prod = c.post("/v1/products", json!({"name": "Onboarding"})).await;
    let price = c
        .post(
            "/v1/prices",
            json!({"product": prod["id"], "currency": "eur", "unit_amount": "45000"}),
        )
        .await;
    let sess = c
        .post("/v1/checkout/sessions", json!({"mode": "payment", "line_items": [{"price": price["id"], "quantity": "2"}], "success_url": "https://example.com/ok"}))
        .await;
    assert_eq!(sess["status"], "open");
    assert_eq!(sess["amount_total"], 90000);
    assert!(sess["payment_intent"].is_null());
    let done = c
        .post(
            &format!(
                "/_sim/checkout/sessions/{}/complete",
                sess["id"].as_str().unwrap()
            ),
            json!({"email": "buyer@example.com"}),
        )
        .await;
    assert_eq!(done["status"], "complete");
    assert_eq!(done["payment_status"], "paid");
    let pi = done["payment_intent"].as_str().unwrap();

    let found = c
        .get("/v1/checkout/sessions", json!({"payment_intent": pi}))
        .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    let items = c
        .get(
            &format!(
                "/v1/checkout/sessions/{}/line_items",
                sess["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(items["data"][0]["quantity"], 2);
    assert_eq!(items["data"][0]["price"]["id"], price["id"]);
    assert_eq!(items["data"][0]["amount_total"], 90000);

    // A declined card on a direct PaymentIntent.
    let (status, err, _) = c
        .send(reqwest::Method::POST, "/v1/payment_intents", json!({"amount": "1000", "currency": "usd", "payment_method": "pm_card_chargeDeclined", "payment_method_types": ["card"], "confirm": "true"}), None)
        .await;
    assert_eq!(status, 402);
    assert_eq!(err["error"]["type"], "card_error");
    assert_eq!(err["error"]["code"], "card_declined");
    assert_eq!(err["error"]["decline_code"], "generic_decline");
    assert_eq!(
        err["error"]["payment_intent"]["status"],
        "requires_payment_method"
    );
    let failed_charge = c
        .get(
            &format!("/v1/charges/{}", err["error"]["charge"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(failed_charge["status"], "failed");
    assert!(failed_charge["balance_transaction"].is_null());

    sim.handle.wait_for_deliveries_idle().await;
    let types: Vec<String> = all_events(&c)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "product.created",
            "price.created",
            "payment_intent.created",
            "payment_intent.succeeded",
            "charge.succeeded",
            "checkout.session.completed",
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed"
        ]
    );
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), types.len());
    for r in &got {
        verify(
            &secret,
            r.headers["stripe-signature"].to_str().unwrap(),
            &r.body,
        )
        .expect("signature verifies");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn refund_events_carry_previous_attributes() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let pi = c
        .post("/v1/payment_intents", json!({"amount": "5000", "currency": "usd", "payment_method": "pm_card_visa", "payment_method_types": ["card"], "confirm": "true"}))
        .await;
    let ch = pi["latest_charge"].as_str().unwrap();
    let re = c
        .post("/v1/refunds", json!({"charge": ch, "amount": "2000"}))
        .await;
    assert_eq!(re["status"], "succeeded");
    let events = all_events(&c).await;
    let tail: Vec<&str> = events
        .iter()
        .rev()
        .take(2)
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(tail, ["refund.created", "charge.refunded"]);
    let refunded = events
        .iter()
        .find(|e| e["type"] == "charge.refunded")
        .unwrap();
    assert_eq!(refunded["data"]["object"]["amount_refunded"], 2000);
    assert_eq!(
        refunded["data"]["previous_attributes"]["amount_refunded"],
        0
    );
    assert_eq!(refunded["data"]["object"]["refunded"], false);
    let (status, err, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/refunds",
            json!({"charge": ch, "amount": "4000"}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "amount_too_large");
    sim.shutdown().await;
}

#[tokio::test]
async fn adversarial_delivery_duplicates_reorders_and_retries() {
    let mut cfg = SimConfig::default();
    cfg.delivery.base_delay_ms = 10;
    cfg.delivery_faults = DeliveryFaults {
        duplicate_probability: 1.0,
        max_extra_copies: 3,
        reorder_window: 4,
        max_delay_ms: 20,
        drop_probability: 0.0,
    };
    let sim = sim_with(cfg).await;
    let c = Client::new(&sim);
    let (url, rx) = receiver().await;
    *rx.fail_first.lock().unwrap() = 3;
    let (_ep, secret) = endpoint(&c, &url, json!({})).await;
    for i in 0..5 {
        c.post(
            "/v1/customers",
            json!({"email": format!("c{i}@example.com")}),
        )
        .await;
    }
    sim.handle.wait_for_deliveries_idle().await;
    let got = rx.got.lock().unwrap().clone();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        verify(
            &secret,
            r.headers["stripe-signature"].to_str().unwrap(),
            &r.body,
        )
        .expect("every copy is signed");
        *counts
            .entry(r.json()["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 5, "every event arrives");
    assert!(
        counts.values().all(|n| (2..=4).contains(n)),
        "each event 2-4 times: {counts:?}"
    );
    let stats = sim.handle.delivery_stats();
    assert_eq!(stats.gave_up, 0);
    assert!(stats.failed_attempts >= 3);
    assert_eq!(stats.succeeded as usize, got.len());
    assert_eq!(stats.duplicates as usize, got.len() - 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn endpoint_api_version_controls_the_payload_shape() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (url, rx) = receiver().await;
    let (_ep, secret) = endpoint(
        &c,
        &url,
        json!({"api_version": "2024-06-20", "enabled_events": ["invoice.paid"]}),
    )
    .await;
    let cus = paying_customer(&c, "pm_card_visa").await;
    let prod = c.post("/v1/products", json!({"name": "Pro"})).await;
    let price = c.post("/v1/prices", json!({"product": prod["id"], "currency": "usd", "unit_amount": "2000", "recurring": {"interval": "month"}})).await;
    let sub = c
        .post(
            "/v1/subscriptions",
            json!({"customer": cus, "items": [{"price": price["id"]}]}),
        )
        .await;
    sim.handle.wait_for_deliveries_idle().await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "only the subscribed type is delivered");
    verify(
        &secret,
        got[0].headers["stripe-signature"].to_str().unwrap(),
        &got[0].body,
    )
    .unwrap();
    let ev = got[0].json();
    assert_eq!(ev["type"], "invoice.paid");
    assert_eq!(ev["api_version"], "2024-06-20");
    let inv = &ev["data"]["object"];
    assert!(inv["charge"].as_str().unwrap().starts_with("ch_"));
    assert!(inv["payment_intent"].as_str().unwrap().starts_with("pi_"));
    assert_eq!(inv["subscription"], sub["id"]);
    assert_eq!(inv["paid"], true);
    assert!(inv.get("parent").is_none());
    assert_eq!(inv["lines"]["data"][0]["price"]["id"], price["id"]);
    assert_eq!(inv["lines"]["data"][0]["type"], "subscription");
    // The same charge on an old API version carries `invoice`.
    let old = Client::new(&sim).with_version("2024-06-20");
    let ch = old
        .get(
            &format!("/v1/charges/{}", inv["charge"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(ch["invoice"], inv["id"]);
    let new_ch = c
        .get(
            &format!("/v1/charges/{}", inv["charge"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert!(new_ch.get("invoice").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn rolled_secret_signs_with_both_until_expired() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (url, rx) = receiver().await;
    let (ep, old_secret) = endpoint(&c, &url, json!({})).await;
    let rolled = c
        .post(&format!("/_sim/webhook_endpoints/{ep}/roll"), json!({}))
        .await;
    let new_secret = rolled["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, old_secret);
    c.post("/v1/customers", json!({"email": "r@example.com"}))
        .await;
    sim.handle.wait_for_deliveries_idle().await;
    {
        let got = rx.got.lock().unwrap();
        let r = &got[0];
        let sig = r.headers["stripe-signature"].to_str().unwrap();
        assert_eq!(sig.matches("v1=").count(), 2, "{sig}");
        verify(&old_secret, sig, &r.body).expect("old secret still verifies");
        verify(&new_secret, sig, &r.body).expect("new secret verifies");
    }
    let rolled2 = c
        .post(
            &format!("/_sim/webhook_endpoints/{ep}/roll"),
            json!({"expire_previous": "true"}),
        )
        .await;
    let newest = rolled2["secret"].as_str().unwrap().to_string();
    c.post("/v1/customers", json!({"email": "r2@example.com"}))
        .await;
    sim.handle.wait_for_deliveries_idle().await;
    let got = rx.got.lock().unwrap().clone();
    let r = got.last().unwrap();
    let sig = r.headers["stripe-signature"].to_str().unwrap();
    verify(&newest, sig, &r.body).expect("newest verifies");
    assert!(
        verify(&new_secret, sig, &r.body).is_err(),
        "an expired secret no longer verifies"
    );
    // Events made through the API carry the request id.
    let ev = c.get("/v1/events", json!({"limit": "1"})).await;
    assert!(
        ev["data"][0]["request"]["id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
}

#[tokio::test]
async fn undeliverable_events_are_listed_with_delivery_success_false() {
    let mut cfg = SimConfig::default();
    cfg.delivery.max_attempts = 2;
    cfg.delivery.base_delay_ms = 5;
    let sim = sim_with(cfg).await;
    let c = Client::new(&sim);
    let (url, rx) = receiver().await;
    *rx.fail_first.lock().unwrap() = 2; // both attempts of the first event fail
    endpoint(&c, &url, json!({})).await;
    let first = c
        .post("/v1/customers", json!({"email": "lost@example.com"}))
        .await;
    sim.handle.wait_for_deliveries_idle().await;
    let second = c
        .post("/v1/customers", json!({"email": "ok@example.com"}))
        .await;
    sim.handle.wait_for_deliveries_idle().await;

    let failed = c
        .get("/v1/events", json!({"delivery_success": "false"}))
        .await;
    let failed: Vec<&Value> = failed["data"].as_array().unwrap().iter().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["object"]["id"], first["id"]);
    assert_eq!(failed[0]["pending_webhooks"], 1);
    let ok = c
        .get("/v1/events", json!({"delivery_success": "true"}))
        .await;
    assert_eq!(ok["data"][0]["data"]["object"]["id"], second["id"]);
    assert_eq!(ok["data"][0]["pending_webhooks"], 0);
    let stats = sim.handle.delivery_stats();
    assert_eq!((stats.gave_up, stats.succeeded), (1, 1));
    let http = reqwest::Client::new();
    let d: Value = http
        .get(format!("{}/_sim/deliveries", sim.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["stats"]["gave_up"], 1);
    assert_eq!(d["in_flight"], 0);
    sim.shutdown().await;
}
