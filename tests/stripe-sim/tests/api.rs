//! REST behaviour: amounts and fees, errors, pagination, expand, idempotency, faults, invoices.

mod common;

use common::{Client, sim};
use serde_json::json;

async fn charge(c: &Client, amount: &str, cur: &str) -> serde_json::Value {
    let pi = c
        .post("/v1/payment_intents", json!({"amount": amount, "currency": cur, "payment_method": "pm_card_visa", "payment_method_types": ["card"], "confirm": "true"}))
        .await;
    assert_eq!(pi["status"], "succeeded");
    c.get(
        &format!("/v1/charges/{}", pi["latest_charge"].as_str().unwrap()),
        json!({"expand": ["balance_transaction"]}),
    )
    .await
}

#[tokio::test]
async fn fees_net_and_exchange_rates() {
    let sim = sim().await;
    let c = Client::new(&sim);

    let usd = charge(&c, "10000", "usd").await;
    let t = &usd["balance_transaction"];
    assert_eq!(
        (t["amount"].as_i64(), t["fee"].as_i64(), t["net"].as_i64()),
        (Some(10000), Some(320), Some(9680))
    );
    assert_eq!(t["currency"], "usd");
    assert!(t["exchange_rate"].is_null());
    assert_eq!(t["fee_details"][0]["type"], "stripe_fee");
    assert_eq!(t["fee_details"][0]["amount"], 320);
    assert_eq!(t["source"], usd["id"]);
    assert_eq!(t["reporting_category"], "charge");

    // 10.00 EUR settles as 10.80 USD at 1.08; fee = round(1080 * 2.9%) + 30 = 61.
    let eur = charge(&c, "1000", "eur").await;
    let t = &eur["balance_transaction"];
    assert_eq!(eur["currency"], "eur");
    assert_eq!(
        (t["amount"].as_i64(), t["currency"].as_str()),
        (Some(1080), Some("usd"))
    );
    assert_eq!(t["exchange_rate"].as_f64(), Some(1.08));
    assert_eq!(t["fee"], 61);
    assert_eq!(t["net"], 1080 - 61);

    // Zero-decimal JPY: 5000 yen = 33.50 USD.
    let jpy = charge(&c, "5000", "jpy").await;
    assert_eq!(jpy["amount"], 5000);
    assert_eq!(jpy["balance_transaction"]["amount"], 3350);
    assert_eq!(jpy["balance_transaction"]["fee"], 97 + 30);

    // Three-decimal KWD: amounts must end in 0.
    let (status, err, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/payment_intents",
            json!({"amount": "12345", "currency": "kwd", "payment_method_types": ["card"]}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["param"], "amount");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must have 0 as the last digit"),
        "{err}"
    );
    let kwd = charge(&c, "12340", "kwd").await;
    assert_eq!(kwd["balance_transaction"]["amount"], 4011);
    let (status, _, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/prices",
            json!({"product_data": {"name": "x"}, "currency": "kwd", "unit_amount": "1005"}),
            None,
        )
        .await;
    assert_eq!(status, 400);

    // Refund balance transaction: negative, same rate, no fee.
    let re = c
        .post(
            "/v1/refunds",
            json!({"charge": eur["id"], "expand": ["balance_transaction"]}),
        )
        .await;
    let rt = &re["balance_transaction"];
    assert_eq!(
        (
            rt["amount"].as_i64(),
            rt["fee"].as_i64(),
            rt["type"].as_str()
        ),
        (Some(-1080), Some(0), Some("refund"))
    );
    let refunded = c
        .get(
            &format!("/v1/charges/{}", eur["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(refunded["refunded"], true);
    assert_eq!(refunded["amount_refunded"], 1000);
    sim.shutdown().await;
}

#[tokio::test]
async fn error_shapes_and_auth() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (status, err, headers) = c
        .send(
            reqwest::Method::GET,
            "/v1/customers/cus_nope",
            json!({}),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["code"], "resource_missing");
    assert_eq!(err["error"]["message"], "No such customer: 'cus_nope'");
    assert_eq!(err["error"]["param"], "id");
    assert_eq!(
        err["error"]["doc_url"],
        "https://stripe.com/docs/error-codes/resource-missing"
    );
    assert!(headers["request-id"].to_str().unwrap().starts_with("req_"));

    let (status, err, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/products",
            json!({"description": "no name"}),
            None,
        )
        .await;
    assert_eq!(
        (
            status,
            err["error"]["code"].as_str(),
            err["error"]["param"].as_str()
        ),
        (400, Some("parameter_missing"), Some("name"))
    );
    assert_eq!(err["error"]["message"], "Missing required param: name.");
    let (status, err, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/customers",
            json!({"colour": "blue"}),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    let (status, err, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/invoices",
            json!({"customer": "cus_missing"}),
            None,
        )
        .await;
    assert_eq!(
        (
            status,
            err["error"]["code"].as_str(),
            err["error"]["param"].as_str()
        ),
        (400, Some("resource_missing"), Some("customer"))
    );
    let (status, err, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/customers",
            json!({"limit": "101"}),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("limit"))
    );
    let (status, _, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/customers",
            json!({"limit": "abc"}),
            None,
        )
        .await;
    assert_eq!(status, 400);

    let anon = reqwest::Client::new();
    let r = anon
        .get(format!("{}/v1/customers", sim.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You did not provide an API key")
    );
    let r = anon
        .get(format!("{}/v1/customers", sim.base_url))
        .bearer_auth("sk_test_wrong1234")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Invalid API Key provided: sk_test_********1234"
    );
    // Basic auth with the key as username works.
    let r = anon
        .get(format!("{}/v1/customers", sim.base_url))
        .basic_auth(sim.api_key_str(), Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = anon
        .get(format!("{}/v1/customers", sim.base_url))
        .bearer_auth(sim.api_key_str())
        .header("Stripe-Version", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn pagination_is_newest_first_with_cursors() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let mut created = Vec::new();
    for i in 0..25 {
        let cus = c
            .post(
                "/v1/customers",
                json!({"email": format!("p{i}@example.com")}),
            )
            .await;
        created.push(cus["id"].as_str().unwrap().to_string());
    }
    let first = c.get("/v1/customers", json!({})).await;
    assert_eq!(first["object"], "list");
    assert_eq!(first["url"], "/v1/customers");
    assert_eq!(
        first["data"].as_array().unwrap().len(),
        10,
        "default limit is 10"
    );
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut q = json!({"limit": "10"});
        if let Some(a) = &after {
            q["starting_after"] = json!(a);
        }
        let page = c.get("/v1/customers", q).await;
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect();
        pages.push((ids.len(), page["has_more"].as_bool().unwrap()));
        after = ids.last().cloned();
        seen.extend(ids);
        if page["has_more"] == json!(false) {
            break;
        }
    }
    assert_eq!(pages, [(10, true), (10, true), (5, false)]);
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // ending_before walks back towards newer items.
    let back = c
        .get(
            "/v1/customers",
            json!({"limit": "3", "ending_before": created[20]}),
        )
        .await;
    let ids: Vec<&str> = back["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            created[23].as_str(),
            created[22].as_str(),
            created[21].as_str()
        ]
    );
    assert_eq!(back["has_more"], true);
    let email = c
        .get("/v1/customers", json!({"email": "p3@example.com"}))
        .await;
    assert_eq!(email["data"][0]["id"], json!(created[3]));

    // Events filter by type and created.
    let ev = c
        .get(
            "/v1/events",
            json!({"type": "customer.*", "limit": "100", "created": {"gte": "0"}}),
        )
        .await;
    assert_eq!(ev["data"].as_array().unwrap().len(), 25);
    let (status, _, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/events",
            json!({"type": "customer.created", "types": ["customer.created"]}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn expand_paths_and_limits() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cus = c
        .post("/v1/customers", json!({"email": "e@example.com"}))
        .await;
    let pi = c
        .post("/v1/payment_intents", json!({"amount": "2500", "currency": "usd", "customer": cus["id"], "payment_method": "pm_card_visa", "payment_method_types": ["card"], "confirm": "true"}))
        .await;
    let pi2 = c
        .get(
            &format!("/v1/payment_intents/{}", pi["id"].as_str().unwrap()),
            json!({"expand": ["latest_charge.balance_transaction", "customer"]}),
        )
        .await;
    assert_eq!(pi2["latest_charge"]["object"], "charge");
    assert_eq!(
        pi2["latest_charge"]["balance_transaction"]["object"],
        "balance_transaction"
    );
    assert_eq!(pi2["customer"]["email"], "e@example.com");
    let list = c
        .get(
            "/v1/charges",
            json!({"expand": ["data.customer", "data.balance_transaction"]}),
        )
        .await;
    assert_eq!(list["data"][0]["customer"]["id"], cus["id"]);
    assert_eq!(list["data"][0]["balance_transaction"]["fee"], 103);
    let (status, err, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/charges",
            json!({"expand": ["data.payment_intent.latest_charge.customer.default_source"]}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 4 levels"),
        "{err}"
    );
    let (status, err, _) = c
        .send(
            reqwest::Method::GET,
            &format!("/v1/customers/{}", cus["id"].as_str().unwrap()),
            json!({"expand": ["email"]}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "This property cannot be expanded (email)."
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn idempotency_replays_and_rejects_mismatch() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (s1, a, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/customers",
            json!({"email": "i@example.com"}),
            Some("key-1"),
        )
        .await;
    let (s2, b, h2) = c
        .send(
            reqwest::Method::POST,
            "/v1/customers",
            json!({"email": "i@example.com"}),
            Some("key-1"),
        )
        .await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(h2["idempotent-replayed"], "true");
    let (s3, err, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/customers",
            json!({"email": "other@example.com"}),
            Some("key-1"),
        )
        .await;
    assert_eq!(s3, 400);
    assert_eq!(err["error"]["type"], "idempotency_error");
    let list = c.get("/v1/customers", json!({})).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let events = c.get("/v1/events", json!({})).await;
    assert_eq!(events["data"][0]["request"]["idempotency_key"], "key-1");
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_injection_via_admin_endpoint() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_sim/faults", sim.base_url))
        .json(&json!({"api": {"rate_limit_probability": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, err, headers) = c
        .send(reqwest::Method::GET, "/v1/customers", json!({}), None)
        .await;
    assert_eq!(status, 429);
    assert_eq!(err["error"]["code"], "rate_limit");
    assert_eq!(headers["stripe-should-retry"], "true");
    sim.handle.set_api_faults(mlc_stripe_sim::ApiFaults {
        error_500_probability: 1.0,
        ..Default::default()
    });
    let (status, err, _) = c
        .send(reqwest::Method::POST, "/v1/customers", json!({}), None)
        .await;
    assert_eq!(
        (status, err["error"]["type"].as_str()),
        (500, Some("api_error"))
    );
    sim.handle.set_api_faults(Default::default());
    c.get("/v1/customers", json!({})).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn invoice_with_items_discount_and_tax() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cus = c.post("/v1/customers", json!({"payment_method": "pm_card_visa", "invoice_settings": {"default_payment_method": "pm_card_visa"}})).await;
    let vat = c
        .post(
            "/v1/tax_rates",
            json!({"display_name": "VAT", "percentage": "20", "inclusive": "false"}),
        )
        .await;
    let coupon = c
        .post(
            "/v1/coupons",
            json!({"percent_off": "10", "duration": "once"}),
        )
        .await;
    let inv = c
        .post("/v1/invoices", json!({"customer": cus["id"], "currency": "eur", "default_tax_rates": [vat["id"]], "discounts": [{"coupon": coupon["id"]}]}))
        .await;
    assert_eq!(inv["status"], "draft");
    assert!(inv["number"].is_null());
    let id = inv["id"].as_str().unwrap();
    c.post("/v1/invoiceitems", json!({"customer": cus["id"], "invoice": id, "amount": "10000", "currency": "eur", "description": "Setup"})).await;
    c.post("/v1/invoiceitems", json!({"customer": cus["id"], "invoice": id, "unit_amount_decimal": "2500", "quantity": "2", "currency": "eur"})).await;
    let (status, _, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/invoiceitems",
            json!({"customer": cus["id"], "invoice": id, "amount": "100", "currency": "usd"}),
            None,
        )
        .await;
    assert_eq!(status, 400, "currency must match the invoice");
    let inv = c
        .post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!(inv["status"], "open");
    assert_eq!(inv["subtotal"], 15000);
    assert_eq!(inv["total_discount_amounts"][0]["amount"], 1500);
    assert_eq!(inv["total_taxes"][0]["amount"], 2700);
    assert_eq!(inv["total_taxes"][0]["taxable_amount"], 13500);
    assert_eq!(inv["total_excluding_tax"], 13500);
    assert_eq!(inv["total"], 16200);
    assert_eq!(inv["amount_due"], 16200);
    let lines = c
        .get(&format!("/v1/invoices/{id}/lines"), json!({"limit": "1"}))
        .await;
    assert_eq!(lines["data"].as_array().unwrap().len(), 1);
    assert_eq!(lines["has_more"], true);
    assert_eq!(lines["data"][0]["taxes"][0]["amount"], 1800);
    let paid = c
        .post(
            &format!("/v1/invoices/{id}/pay"),
            json!({"expand": ["payments"]}),
        )
        .await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["amount_paid"], 16200);
    let payment = &paid["payments"]["data"][0];
    assert_eq!(payment["status"], "paid");
    let pays = c.get("/v1/invoice_payments", json!({"invoice": id})).await;
    assert_eq!(
        pays["data"][0]["payment"]["payment_intent"],
        payment["payment"]["payment_intent"]
    );
    let pi = c
        .get(
            &format!(
                "/v1/payment_intents/{}",
                payment["payment"]["payment_intent"].as_str().unwrap()
            ),
            json!({"expand": ["latest_charge"]}),
        )
        .await;
    assert_eq!(pi["latest_charge"]["amount"], 16200);
    let (status, _, _) = c
        .send(
            reqwest::Method::POST,
            &format!("/v1/invoices/{id}/void"),
            json!({}),
            None,
        )
        .await;
    assert_eq!(status, 400, "a paid invoice cannot be voided");

    // Void an open invoice.
    let inv2 = c.post("/v1/invoices", json!({"customer": cus["id"]})).await;
    assert_eq!(
        inv2["currency"], "eur",
        "a new invoice defaults to the customer's currency"
    );
    let id2 = inv2["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": id2, "amount": "700", "currency": "eur"}),
    )
    .await;
    c.post(&format!("/v1/invoices/{id2}/finalize"), json!({}))
        .await;
    let void = c.post(&format!("/v1/invoices/{id2}/void"), json!({})).await;
    assert_eq!(void["status"], "void");
    assert!(void["status_transitions"]["voided_at"].is_i64());
    sim.shutdown().await;
}
