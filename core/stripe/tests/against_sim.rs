//! The API client and the webhook verifier against the Stripe simulator (in-process, 127.0.0.1:0):
//! one request per object where `expand[]` allows, exact amounts in every currency exponent,
//! retries on injected faults, and the simulator's signatures accepted by our verifier.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use mlc_core::{Currency, Money};
use mlc_stripe::models::Expandable;
use mlc_stripe::webhook::WebhookVerifier;
use mlc_stripe::{ChargeFacts, InvoiceFacts, ListEventsParams, StripeClient, StripeClientConfig};
use mlc_stripe_sim::{ApiFaults, RunningSim, SimConfig, StripeSim, form};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::{Value, json};

/// A form-encoding helper that creates objects through the simulator's public API (independent
/// of the client under test, which is read-only).
struct Setup {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Setup {
    fn new(sim: &RunningSim) -> Self {
        Setup {
            http: reqwest::Client::new(),
            base: sim.base_url.clone(),
            key: sim.api_key_str().to_string(),
        }
    }

    async fn post(&self, path: &str, params: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form::encode(&params))
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.expect("JSON body");
        assert_eq!(status, 200, "POST {path}: {v}");
        v
    }

    async fn customer(&self) -> String {
        let c = self
            .post("/v1/customers", json!({"name": "Jenny Rosen", "email": "jenny@example.com", "payment_method": "pm_card_visa", "invoice_settings": {"default_payment_method": "pm_card_visa"}}))
            .await;
        id(&c)
    }

    /// A completed Checkout sale of 2 × 450.00 EUR "Onboarding": the product and the intent.
    async fn checkout_sale(&self) -> (Value, String) {
        let prod = self
            .post("/v1/products", json!({"name": "Onboarding"}))
            .await;
        let price = self
            .post(
                "/v1/prices",
                json!({"product": id(&prod), "currency": "eur", "unit_amount": "45000"}),
            )
            .await;
        let sess = self
            .post("/v1/checkout/sessions", json!({"mode": "payment", "line_items": [{"price": id(&price), "quantity": "2"}], "success_url": "https://example.com/ok"}))
            .await;
        let done = self
            .post(
                &format!("/_sim/checkout/sessions/{}/complete", id(&sess)),
                json!({}),
            )
            .await;
        let pi = done["payment_intent"].as_str().expect("pi").to_string();
        (prod, pi)
    }

    /// A confirmed card payment; returns the PaymentIntent.
    async fn pay(&self, amount: &str, currency: &str, customer: Option<&str>) -> Value {
        let mut p = json!({"amount": amount, "currency": currency, "payment_method": "pm_card_visa", "payment_method_types": ["card"], "confirm": "true"});
        if let Some(c) = customer {
            p["customer"] = json!(c);
        }
        let pi = self.post("/v1/payment_intents", p).await;
        assert_eq!(pi["status"], "succeeded", "{pi}");
        pi
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("object has an id").to_string()
}

async fn sim() -> RunningSim {
    StripeSim::start(SimConfig::default())
        .await
        .expect("simulator starts")
}

fn client(sim: &RunningSim) -> StripeClient {
    let mut cfg = StripeClientConfig::new(SecretString::from(sim.api_key_str().to_string()));
    cfg.base_url = sim.base_url.parse().expect("sim URL parses");
    // Tests are not rate limited by the sim; keep retries fast.
    cfg.rate_limit_per_sec = std::num::NonZeroU32::new(1000);
    cfg.retry_base_delay = Duration::from_millis(5);
    cfg.retry_max_delay = Duration::from_millis(20);
    StripeClient::new(cfg).expect("client builds")
}

fn money(minor: i64, c: Currency) -> Money {
    Money::new(minor, c)
}

#[tokio::test]
async fn invoice_with_many_lines_is_complete_and_expanded() {
    let sim = sim().await;
    let s = Setup::new(&sim);
    let cus = s.customer().await;
    let coupon = s
        .post(
            "/v1/coupons",
            json!({"percent_off": "10", "duration": "once"}),
        )
        .await;
    let inv = s
        .post(
            "/v1/invoices",
            json!({"customer": cus, "currency": "jpy", "discounts": [{"coupon": id(&coupon)}]}),
        )
        .await;
    let inv_id = id(&inv);
    // 12 lines: more than the 10 Stripe embeds, so the client must page the rest.
    for i in 1..=12 {
        s.post("/v1/invoiceitems", json!({"customer": cus, "invoice": inv_id, "amount": (i * 1000).to_string(), "currency": "jpy", "description": format!("Item {i}")})).await;
    }
    s.post(&format!("/v1/invoices/{inv_id}/finalize"), json!({}))
        .await;
    s.post(&format!("/v1/invoices/{inv_id}/pay"), json!({}))
        .await;

    let c = client(&sim);
    let before = c.requests_made();
    let invoice = c.retrieve_invoice(&inv_id).await.expect("invoice");
    // The invoice itself plus one page of the remaining lines.
    assert_eq!(c.requests_made() - before, 2);
    assert_eq!(invoice.lines.data.len(), 12);
    assert!(!invoice.lines.has_more);
    assert!(matches!(invoice.customer, Some(Expandable::Object(_))));
    assert!(
        invoice
            .discounts
            .iter()
            .all(|d| matches!(d, Expandable::Object(_)))
    );
    assert_eq!(invoice.discounts.len(), 1);

    let facts = InvoiceFacts::from_invoice(&invoice).expect("facts");
    assert!(facts.lines_complete);
    assert_eq!(facts.lines.len(), 12);
    // 1000 + ... + 12000 yen = 78000; 10% off = 7800; zero-decimal: minor units are yen.
    assert_eq!(facts.subtotal, money(78_000, Currency::JPY));
    assert_eq!(facts.discount, money(7_800, Currency::JPY));
    assert_eq!(facts.total, money(70_200, Currency::JPY));
    assert_eq!(facts.amount_paid, Some(money(70_200, Currency::JPY)));
    assert_eq!(facts.total.to_decimal(), Decimal::from(70_200));
    assert_eq!(
        facts.customer_id.as_ref().map(|c| c.as_str()),
        Some(cus.as_str())
    );
    // Basil+: the payment is found through the expanded InvoicePayments.
    assert_eq!(facts.payment_intent_ids.len(), 1);

    // A small invoice is one request.
    let inv2 = s
        .post("/v1/invoices", json!({"customer": cus, "currency": "kwd"}))
        .await;
    let inv2_id = id(&inv2);
    s.post(
        "/v1/invoiceitems",
        json!({"customer": cus, "invoice": inv2_id, "amount": "12340", "currency": "kwd"}),
    )
    .await;
    s.post(&format!("/v1/invoices/{inv2_id}/finalize"), json!({}))
        .await;
    let before = c.requests_made();
    let invoice = c.retrieve_invoice(&inv2_id).await.expect("invoice");
    assert_eq!(c.requests_made() - before, 1);
    let facts = InvoiceFacts::from_invoice(&invoice).expect("facts");
    // Three-decimal KWD: 12340 minor units = 12.340 KWD.
    assert_eq!(facts.total, money(12_340, Currency::KWD));
    assert_eq!(facts.total.to_decimal(), Decimal::new(12_340, 3));
    assert_eq!(facts.status.as_deref(), Some("open"));
    sim.shutdown().await;
}

#[tokio::test]
async fn charge_and_payment_intent_carry_fees_and_fx_in_one_request() {
    let sim = sim().await;
    let s = Setup::new(&sim);
    let cus = s.customer().await;
    let pi = s.pay("1000", "eur", Some(&cus)).await;
    let ch_id = pi["latest_charge"].as_str().expect("charge id").to_string();

    let c = client(&sim);
    let before = c.requests_made();
    let charge = c.retrieve_charge(&ch_id).await.expect("charge");
    assert_eq!(c.requests_made() - before, 1);
    assert!(matches!(charge.customer, Some(Expandable::Object(_))));
    let facts = ChargeFacts::from_charge(&charge).expect("facts");
    assert_eq!(facts.amount, money(1000, Currency::EUR));
    // 10.00 EUR settles as 10.80 USD at 1.08; fee = round(1080 * 2.9%) + 30 = 61.
    assert_eq!(facts.settlement_amount, Some(money(1080, Currency::USD)));
    assert_eq!(facts.fee, Some(money(61, Currency::USD)));
    assert_eq!(facts.net, Some(money(1019, Currency::USD)));
    assert_eq!(facts.exchange_rate, Some(Decimal::new(108, 2)));
    assert_eq!(
        facts.customer_id.as_ref().map(|c| c.as_str()),
        Some(cus.as_str())
    );

    let before = c.requests_made();
    let intent = c.retrieve_payment_intent(&id(&pi)).await.expect("pi");
    assert_eq!(c.requests_made() - before, 1);
    let latest = intent
        .latest_charge
        .as_ref()
        .and_then(Expandable::as_object)
        .expect("latest_charge expanded");
    assert!(matches!(
        latest.balance_transaction,
        Some(Expandable::Object(_))
    ));
    let facts = ChargeFacts::from_charge(latest).expect("facts");
    assert_eq!(facts.fee, Some(money(61, Currency::USD)));

    // Zero-decimal JPY and three-decimal KWD charges.
    let jpy = s.pay("5000", "jpy", None).await;
    let charge = c
        .retrieve_charge(jpy["latest_charge"].as_str().expect("charge"))
        .await
        .expect("charge");
    let facts = ChargeFacts::from_charge(&charge).expect("facts");
    assert_eq!(facts.amount, money(5000, Currency::JPY));
    assert_eq!(facts.amount.to_decimal(), Decimal::from(5000));
    assert_eq!(facts.settlement_amount, Some(money(3350, Currency::USD)));
    assert_eq!(facts.fee, Some(money(127, Currency::USD)));

    let kwd = s.pay("12340", "kwd", None).await;
    let charge = c
        .retrieve_charge(kwd["latest_charge"].as_str().expect("charge"))
        .await
        .expect("charge");
    let facts = ChargeFacts::from_charge(&charge).expect("facts");
    assert_eq!(facts.amount.to_decimal(), Decimal::new(12_340, 3));
    assert_eq!(facts.settlement_amount, Some(money(4011, Currency::USD)));
    sim.shutdown().await;
}

#[tokio::test]
async fn checkout_sessions_and_invoice_payments_from_a_payment_intent() {
    let sim = sim().await;
    let s = Setup::new(&sim);
    let (prod, pi) = s.checkout_sale().await;

    let c = client(&sim);
    let before = c.requests_made();
    let sessions = c
        .list_checkout_sessions_for_payment_intent(&pi)
        .await
        .expect("sessions");
    assert_eq!(c.requests_made() - before, 1);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].amount_total, Some(90_000));
    let items = sessions[0]
        .line_items
        .as_ref()
        .expect("line items expanded");
    assert_eq!(items.data.len(), 1);
    assert_eq!(items.data[0].quantity, Some(2));
    assert_eq!(items.data[0].amount_total, 90_000);
    let item_price = items.data[0]
        .price
        .as_ref()
        .and_then(Expandable::as_object)
        .expect("price is embedded");
    assert_eq!(
        item_price.product.as_ref().map(|p| p.id()),
        Some(id(&prod).as_str())
    );

    // A subscription invoice's payment leads back to its invoice.
    let cus = s.customer().await;
    let rec = s.post("/v1/prices", json!({"product": id(&prod), "currency": "usd", "unit_amount": "2000", "recurring": {"interval": "month"}})).await;
    let sub = s
        .post(
            "/v1/subscriptions",
            json!({"customer": cus, "items": [{"price": id(&rec)}]}),
        )
        .await;
    let inv_id = sub["latest_invoice"].as_str().expect("invoice").to_string();
    let invoice = c.retrieve_invoice(&inv_id).await.expect("invoice");
    let facts = InvoiceFacts::from_invoice(&invoice).expect("facts");
    assert_eq!(facts.amount_paid, Some(money(2000, Currency::USD)));
    assert_eq!(facts.subscription_id.as_deref(), Some(id(&sub).as_str()));
    let pi = facts.payment_intent_ids[0].as_str().to_string();
    let before = c.requests_made();
    let pays = c
        .list_invoice_payments_for_payment_intent(&pi)
        .await
        .expect("payments")
        .expect("the simulator has InvoicePayments");
    assert_eq!(c.requests_made() - before, 1);
    assert_eq!(pays.len(), 1);
    assert_eq!(
        pays[0].invoice.as_ref().map(|i| i.id()),
        Some(inv_id.as_str())
    );
    assert_eq!(pays[0].status, "paid");
    sim.shutdown().await;
}

#[tokio::test]
async fn events_page_newest_first_to_the_end() {
    let sim = sim().await;
    let s = Setup::new(&sim);
    for i in 0..7 {
        s.post("/v1/customers", json!({"name": format!("C{i}")}))
            .await;
    }
    let c = client(&sim);
    let params = ListEventsParams {
        types: vec!["customer.created".into()],
        limit: Some(3),
        ..Default::default()
    };
    let before = c.requests_made();
    let all = c.list_all_events(params).await.expect("events");
    // 7 events in pages of 3: 3 + 3 + 1.
    assert_eq!(c.requests_made() - before, 3);
    assert_eq!(all.len(), 7);
    assert!(all.iter().all(|e| e.event_type == "customer.created"));
    let ids: std::collections::BTreeSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 7, "no event twice");
    assert!(all.windows(2).all(|w| w[0].created >= w[1].created));
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_through_injected_500s_and_429s() {
    let sim = sim().await;
    let s = Setup::new(&sim);
    let pi = s.pay("2500", "usd", None).await;
    let ch = pi["latest_charge"].as_str().expect("charge").to_string();
    let mut cfg = StripeClientConfig::new(SecretString::from(sim.api_key_str().to_string()));
    cfg.base_url = sim.base_url.parse().expect("url");
    cfg.rate_limit_per_sec = std::num::NonZeroU32::new(1000);
    cfg.retry_base_delay = Duration::from_millis(1);
    cfg.retry_max_delay = Duration::from_millis(5);
    cfg.max_retries = 60;
    let c = StripeClient::new(cfg).expect("client");

    sim.handle.set_api_faults(ApiFaults {
        error_500_probability: 0.4,
        rate_limit_probability: 0.3,
        latency_ms: 0,
    });
    for _ in 0..5 {
        let charge = c.retrieve_charge(&ch).await.expect("retried to success");
        assert_eq!(charge.amount, 2500);
    }
    // With 70% of requests failing, five calls almost surely needed more than five requests.
    assert!(c.requests_made() > 5, "faults were injected and retried");

    // Every request failing: the client gives up with a transient error after its retries.
    sim.handle.set_api_faults(ApiFaults {
        error_500_probability: 1.0,
        ..Default::default()
    });
    let mut cfg = StripeClientConfig::new(SecretString::from(sim.api_key_str().to_string()));
    cfg.base_url = sim.base_url.parse().expect("url");
    cfg.retry_base_delay = Duration::from_millis(1);
    cfg.retry_max_delay = Duration::from_millis(2);
    cfg.max_retries = 2;
    let c = StripeClient::new(cfg).expect("client");
    let err = c.retrieve_charge(&ch).await.expect_err("all attempts fail");
    assert_eq!(c.requests_made(), 3);
    assert_eq!(
        mlc_core::Classify::class(&err),
        mlc_core::ErrorClass::Transient
    );
    sim.shutdown().await;
}

/// One delivery: the `Stripe-Signature` header and the raw body.
type Delivery = (Option<String>, Vec<u8>);

#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Delivery>>>);

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    inbox
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((sig, body.to_vec()));
    StatusCode::OK
}

#[tokio::test]
async fn scenario_style_subscription_events_verify_with_our_verifier() {
    let sim = sim().await;
    let s = Setup::new(&sim);
    let inbox = Inbox::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let ep = s
        .post(
            "/v1/webhook_endpoints",
            json!({"url": format!("http://{addr}/hook"), "enabled_events": ["*"]}),
        )
        .await;
    let secret = ep["secret"].as_str().expect("secret").to_string();

    let cus = s.customer().await;
    let prod = s.post("/v1/products", json!({"name": "Pro"})).await;
    let price = s.post("/v1/prices", json!({"product": id(&prod), "currency": "usd", "unit_amount": "2000", "recurring": {"interval": "month"}})).await;
    let sub = s
        .post(
            "/v1/subscriptions",
            json!({"customer": cus, "items": [{"price": id(&price)}]}),
        )
        .await;
    s.post(
        &format!("/_sim/subscriptions/{}/renew", id(&sub)),
        json!({}),
    )
    .await;
    sim.handle.wait_for_deliveries_idle().await;

    let verifier = WebhookVerifier::new(vec![SecretString::from(secret)], 300);
    let wrong = WebhookVerifier::new(vec![SecretString::from("whsec_wrong".to_string())], 300);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let got = inbox.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut types = Vec::new();
    for (sig, body) in &got {
        verifier
            .verify(body, sig.as_deref(), now)
            .expect("our verifier accepts the simulator's signature");
        assert!(wrong.verify(body, sig.as_deref(), now).is_err());
        let ev: Value = serde_json::from_slice(body).expect("JSON event");
        types.push(ev["type"].as_str().unwrap_or_default().to_string());
    }
    let paid = types.iter().filter(|t| *t == "invoice.paid").count();
    assert_eq!(paid, 2, "first invoice and the renewal: {types:?}");
    for t in [
        "invoice.created",
        "invoice.finalized",
        "payment_intent.succeeded",
        "charge.succeeded",
        "invoice.payment_succeeded",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing in {types:?}");
    }
    server.abort();
    sim.shutdown().await;
}

/// An API dialect that refuses expands and lacks list endpoints (older versions, other
/// emulators): the client asks again without the refused expand, fetches what it would have
/// brought separately, remembers the refusal, and reports a missing endpoint as unavailable.
#[tokio::test]
async fn refused_expands_and_missing_endpoints_fall_back_and_are_remembered() {
    let sim = sim().await;
    let s = Setup::new(&sim);
    let prod = s.post("/v1/products", json!({"name": "Seats"})).await;
    let rec = s.post("/v1/prices", json!({"product": id(&prod), "currency": "usd", "unit_amount": "2000", "recurring": {"interval": "month"}})).await;
    let cus = s.customer().await;
    let coupon = s
        .post(
            "/v1/coupons",
            json!({"percent_off": "10", "duration": "forever"}),
        )
        .await;
    let sub = s
        .post(
            "/v1/subscriptions",
            json!({"customer": cus, "items": [{"price": id(&rec)}], "discounts": [{"coupon": id(&coupon)}]}),
        )
        .await;
    let inv_id = sub["latest_invoice"].as_str().expect("invoice").to_string();
    let c = client(&sim);
    let plain = InvoiceFacts::from_invoice(&c.retrieve_invoice(&inv_id).await.expect("invoice"))
        .expect("facts");
    assert_eq!(plain.payment_intent_ids.len(), 1, "{plain:?}");

    // `discounts` and `payments` refused, as `400 Bad expand '…'`.
    sim.handle.set_dialect(mlc_stripe_sim::Dialect {
        refused_expands: vec!["discounts".into(), "payments".into()],
        ..Default::default()
    });
    let c = client(&sim);
    let before = c.requests_made();
    let invoice = c
        .retrieve_invoice(&inv_id)
        .await
        .expect("no permanent failure");
    // Asked with both, then without `payments`, then without `discounts` too, then the
    // payments on their own.
    assert_eq!(c.requests_made() - before, 4);
    let facts = InvoiceFacts::from_invoice(&invoice).expect("facts");
    assert_eq!(facts, plain, "the same facts as with the expands");
    let (refused, missing) = c.dialect_refusals();
    assert_eq!(refused, vec!["invoice discounts", "invoice payments"]);
    assert!(missing.is_empty());
    // The next fetch does not pay for the refusals again: one request and the payments list.
    let before = c.requests_made();
    let again = c.retrieve_invoice(&inv_id).await.expect("invoice");
    assert_eq!(c.requests_made() - before, 2);
    assert_eq!(InvoiceFacts::from_invoice(&again).expect("facts"), plain);

    // The payment intent's charge and the charge's balance transaction, fetched separately.
    sim.handle.set_dialect(mlc_stripe_sim::Dialect {
        refused_expands: vec!["balance_transaction".into(), "latest_charge".into()],
        ..Default::default()
    });
    let c = client(&sim);
    let pi = plain.payment_intent_ids[0].as_str();
    let intent = c.retrieve_payment_intent(pi).await.expect("intent");
    let charge = match &intent.latest_charge {
        Some(Expandable::Object(ch)) => ch.as_ref().clone(),
        other => panic!("the charge is fetched when its expand is refused: {other:?}"),
    };
    let facts = ChargeFacts::from_charge(&charge).expect("facts");
    assert_eq!(facts.captured_amount, money(1800, Currency::USD));
    assert!(
        facts.fee.is_some(),
        "the fee comes from the balance transaction"
    );

    // Endpoints the dialect lacks: InvoicePayments unavailable (not empty), Checkout empty.
    sim.handle.set_dialect(mlc_stripe_sim::Dialect {
        missing_endpoints: vec![
            "/v1/invoice_payments".into(),
            "/v1/checkout/sessions".into(),
        ],
        ..Default::default()
    });
    let c = client(&sim);
    assert!(
        c.list_invoice_payments_for_payment_intent(pi)
            .await
            .expect("a 404 is not an error here")
            .is_none()
    );
    assert!(
        c.list_checkout_sessions_for_payment_intent(pi)
            .await
            .expect("a 404 is not an error here")
            .is_empty()
    );
    let before = c.requests_made();
    assert!(
        c.list_invoice_payments_for_payment_intent(pi)
            .await
            .expect("remembered")
            .is_none()
    );
    assert_eq!(
        c.requests_made(),
        before,
        "a missing endpoint is not asked again"
    );
    assert_eq!(
        c.dialect_refusals().1,
        vec!["/v1/checkout/sessions", "/v1/invoice_payments"]
    );
    // The invoice still has its payment, from the pre-basil fields where the version has them;
    // on basil it keeps what the expand brings.
    let invoice = c.retrieve_invoice(&inv_id).await.expect("invoice");
    assert_eq!(
        InvoiceFacts::from_invoice(&invoice)
            .expect("facts")
            .payment_intent_ids,
        plain.payment_intent_ids
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn checkout_line_items_are_fetched_when_their_expand_is_refused() {
    let sim = StripeSim::start(SimConfig {
        dialect: mlc_stripe_sim::Dialect {
            refused_expands: vec!["line_items".into()],
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let s = Setup::new(&sim);
    let (_, pi) = s.checkout_sale().await;
    let c = client(&sim);
    let sessions = c
        .list_checkout_sessions_for_payment_intent(&pi)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 1);
    let items = sessions[0].line_items.as_ref().expect("line items fetched");
    assert_eq!(items.data.len(), 1);
    assert_eq!(items.data[0].amount_total, 90_000);
    assert_eq!(
        c.dialect_refusals().0,
        vec!["checkout session list data.line_items"]
    );
    sim.shutdown().await;
}

/// The simulator's key and webhook secrets are random per start unless fixed.
#[tokio::test]
async fn simulator_secrets_are_random_per_start_unless_fixed() {
    let a = sim().await;
    let b = sim().await;
    assert_ne!(a.api_key_str(), b.api_key_str());
    let fixed = |n| SimConfig {
        secret_seed: Some(n),
        ..SimConfig::default()
    };
    let c = StripeSim::start(fixed(7)).await.expect("starts");
    let d = StripeSim::start(fixed(7)).await.expect("starts");
    assert_eq!(c.api_key_str(), d.api_key_str());
    let secret = |sim: &RunningSim| {
        let s = Setup::new(sim);
        async move {
            let ep = s
                .post(
                    "/v1/webhook_endpoints",
                    json!({"url": "https://example.com/hook", "enabled_events": ["*"]}),
                )
                .await;
            ep["secret"].as_str().expect("secret").to_string()
        }
    };
    assert_ne!(secret(&a).await, secret(&b).await);
    assert_eq!(secret(&c).await, secret(&d).await);
    for s in [a, b, c, d] {
        s.shutdown().await;
    }
}
