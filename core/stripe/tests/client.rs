//! The API client against a tiny scripted fake of Stripe (axum on 127.0.0.1:0).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mlc_core::{Classify, ErrorClass};
use mlc_stripe::client::KeyMode;
use mlc_stripe::models::Expandable;
use mlc_stripe::{
    ChargeFacts, InvoiceFacts, ListEventsParams, StripeClient, StripeClientConfig, StripeError,
};
use secrecy::SecretString;
use serde_json::json;

const KEY: &str = "sk_test_51FakeKeyThatMustNeverBeEchoed";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    path: String,
    query: String,
    auth: Option<String>,
    version: Option<String>,
}

/// One scripted answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn ok(body: serde_json::Value) -> Reply {
    Reply {
        status: 200,
        headers: vec![("request-id", "req_ok".into())],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn err(status: u16, kind: &str, code: &str, message: &str) -> Reply {
    Reply {
        status,
        headers: vec![("request-id", format!("req_{status}"))],
        body: json!({"error": {"type": kind, "code": code, "message": message}}).to_string(),
        delay: Duration::ZERO,
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Route = Box<dyn Fn(&Seen) -> Option<Reply> + Send + Sync>;

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers used in order; when empty, `route` decides; else 404.
    script: Arc<Mutex<VecDeque<Reply>>>,
    route: Arc<Route>,
}

async fn handle(State(fake): State<Fake>, uri: Uri, headers: HeaderMap) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = Seen {
        at: Instant::now(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        auth: h("authorization"),
        version: h("stripe-version"),
    };
    fake.seen.lock().unwrap().push(seen.clone());
    let scripted = fake.script.lock().unwrap().pop_front();
    let reply = scripted.or_else(|| (fake.route)(&seen)).unwrap_or_else(|| {
        err(
            404,
            "invalid_request_error",
            "resource_missing",
            "No such route",
        )
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Fake {
    async fn start(
        script: Vec<Reply>,
        route: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
    ) -> (Fake, String) {
        let fake = Fake {
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            route: Arc::new(Box::new(route)),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, format!("http://{addr}"))
    }

    async fn scripted(script: Vec<Reply>) -> (Fake, String) {
        Fake::start(script, |_| None).await
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn config(base: &str) -> StripeClientConfig {
    let mut c = StripeClientConfig::new(SecretString::from(KEY));
    c.base_url = base.parse().unwrap();
    c.max_retries = 3;
    c.rate_limit_per_sec = NonZeroU32::new(10_000);
    c.retry_base_delay = Duration::from_millis(2);
    c.retry_max_delay = Duration::from_millis(10);
    c.timeout = Duration::from_secs(10);
    c
}

fn client(base: &str) -> StripeClient {
    StripeClient::new(config(base)).unwrap()
}

fn charge_json() -> serde_json::Value {
    json!({
        "id": "ch_1", "object": "charge", "amount": 1000, "amount_captured": 1000,
        "amount_refunded": 0, "currency": "eur", "status": "succeeded", "paid": true,
        "captured": true, "refunded": false, "created": 1700000000, "metadata": {"order": "42"},
        "payment_intent": "pi_1",
        "customer": {"id": "cus_1", "object": "customer", "name": "Ada", "email": "ada@example.com"},
        "balance_transaction": {"id": "txn_1", "object": "balance_transaction", "amount": 1234,
            "currency": "usd", "fee": 66, "net": 1168, "exchange_rate": 1.234,
            "fee_details": [{"amount": 66, "currency": "usd", "type": "stripe_fee"}]}
    })
}

#[tokio::test]
async fn retrieve_charge_is_one_authenticated_versioned_request_with_expands() {
    let (fake, base) = Fake::scripted(vec![ok(charge_json())]).await;
    let stripe = client(&base);
    let charge = stripe.retrieve_charge("ch_1").await.unwrap();
    assert_eq!(stripe.requests_made(), 1);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/charges/ch_1");
    assert_eq!(
        seen[0].query,
        "expand[]=balance_transaction&expand[]=customer"
    );
    assert_eq!(
        seen[0].auth.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(seen[0].version.as_deref(), Some("2026-07-29.dahlia"));

    assert!(
        matches!(&charge.customer, Some(Expandable::Object(c)) if c.name.as_deref() == Some("Ada"))
    );
    let facts = ChargeFacts::from_charge(&charge).unwrap();
    assert_eq!(facts.fee.unwrap().to_string(), "0.66 USD");
    assert_eq!(facts.net.unwrap().to_string(), "11.68 USD");
    assert_eq!(facts.exchange_rate.unwrap().to_string(), "1.234");
    assert_eq!(facts.customer_id.unwrap().as_str(), "cus_1");
}

#[tokio::test]
async fn retrieve_payment_intent_and_checkout_sessions_use_their_expands() {
    let (fake, base) = Fake::start(vec![], |seen| match seen.path.as_str() {
        "/v1/payment_intents/pi_1" => Some(ok(json!({"id": "pi_1", "object": "payment_intent",
            "amount": 1000, "currency": "eur", "status": "succeeded", "latest_charge": charge_json()}))),
        "/v1/checkout/sessions" => Some(ok(json!({"object": "list", "has_more": false,
            "url": "/v1/checkout/sessions", "data": [{"id": "cs_test_1", "object": "checkout.session",
            "payment_intent": "pi_1", "line_items": {"object": "list", "has_more": false, "data": [
                {"id": "li_1", "object": "item", "amount_total": 1000, "amount_subtotal": 1000,
                 "currency": "eur", "quantity": 2,
                 "price": {"id": "price_1", "object": "price", "product": "prod_1",
                           "unit_amount": 500, "currency": "eur"}}]}}]}))),
        _ => None,
    })
    .await;
    let stripe = client(&base);
    let pi = stripe.retrieve_payment_intent("pi_1").await.unwrap();
    let charge = pi
        .latest_charge
        .as_ref()
        .and_then(|c| c.as_object())
        .unwrap();
    assert!(matches!(
        charge.balance_transaction,
        Some(Expandable::Object(_))
    ));
    let sessions = stripe
        .list_checkout_sessions_for_payment_intent("pi_1")
        .await
        .unwrap();
    let item = &sessions[0].line_items.as_ref().unwrap().data[0];
    assert_eq!(item.quantity, Some(2));
    assert_eq!(
        item.price
            .as_ref()
            .and_then(|p| p.as_object())
            .and_then(|p| p.product.as_ref())
            .map(|p| p.id()),
        Some("prod_1")
    );
    let seen = fake.seen();
    assert_eq!(seen[0].query, "expand[]=latest_charge.balance_transaction");
    assert_eq!(
        seen[1].query,
        "payment_intent=pi_1&expand[]=data.line_items"
    );
    assert_eq!(stripe.requests_made(), 2);
}

fn line(n: usize) -> serde_json::Value {
    json!({"id": format!("il_{n}"), "object": "line_item", "amount": 100, "currency": "usd",
           "quantity": 1, "pricing": {"type": "price_details",
             "price_details": {"price": "price_1", "product": "prod_1"}, "unit_amount_decimal": "100"}})
}

#[tokio::test]
async fn retrieve_invoice_pages_remaining_lines_only_when_has_more() {
    let invoice = json!({"id": "in_1", "object": "invoice", "currency": "usd", "status": "open",
        "number": "INV-1", "customer": {"id": "cus_1", "object": "customer"}, "subtotal": 500, "total": 500,
        "lines": {"object": "list", "has_more": true, "url": "/v1/invoices/in_1/lines",
                  "data": [line(1), line(2)]}});
    let (fake, base) = Fake::start(vec![], move |seen| {
        match (seen.path.as_str(), seen.query.as_str()) {
            ("/v1/invoices/in_1", _) => Some(ok(invoice.clone())),
            ("/v1/invoices/in_1/lines", "limit=100&starting_after=il_2") => {
                Some(ok(json!({"object": "list",
            "has_more": true, "data": [line(3), line(4)]})))
            }
            ("/v1/invoices/in_1/lines", "limit=100&starting_after=il_4") => {
                Some(ok(json!({"object": "list",
            "has_more": false, "data": [line(5)]})))
            }
            _ => None,
        }
    })
    .await;
    let stripe = client(&base);
    let invoice = stripe.retrieve_invoice("in_1").await.unwrap();
    let seen = fake.seen();
    assert_eq!(
        seen[0].query,
        "expand[]=payments&expand[]=customer&expand[]=discounts"
    );
    assert_eq!(stripe.requests_made(), 3);
    let ids: Vec<&str> = invoice.lines.data.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["il_1", "il_2", "il_3", "il_4", "il_5"]);
    assert!(!invoice.lines.has_more);
    assert_eq!(invoice.raw["lines"]["data"].as_array().unwrap().len(), 5);
    let facts = InvoiceFacts::from_invoice(&invoice).unwrap();
    assert!(facts.lines_complete);
    assert_eq!(facts.lines.len(), 5);

    // A complete invoice costs one request.
    let (_, base) = Fake::scripted(vec![ok(
        json!({"id": "in_2", "object": "invoice", "currency": "usd",
        "lines": {"object": "list", "has_more": false, "data": [line(1)]}}),
    )])
    .await;
    let stripe = client(&base);
    stripe.retrieve_invoice("in_2").await.unwrap();
    assert_eq!(stripe.requests_made(), 1);
}

#[tokio::test]
async fn pre_basil_version_does_not_ask_for_basil_only_expands() {
    let (fake, base) = Fake::scripted(vec![ok(
        json!({"id": "in_1", "object": "invoice", "currency": "usd"}),
    )])
    .await;
    let mut c = config(&base);
    c.api_version = "2024-09-30.acacia".into();
    let stripe = StripeClient::new(c).unwrap();
    stripe.retrieve_invoice("in_1").await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen[0].query, "expand[]=customer&expand[]=discounts");
    assert_eq!(seen[0].version.as_deref(), Some("2024-09-30.acacia"));
}

#[tokio::test]
async fn list_all_events_follows_cursors_with_form_encoded_filters() {
    let event = |id: &str| {
        json!({"id": id, "object": "event", "type": "invoice.paid", "created": 1,
        "livemode": false, "api_version": "2026-07-29.dahlia",
        "data": {"object": {"id": "in_1", "object": "invoice", "currency": "usd"}}})
    };
    let (fake, base) = Fake::scripted(vec![
        ok(json!({"object": "list", "has_more": true, "data": [event("evt_3"), event("evt_2")]})),
        ok(json!({"object": "list", "has_more": false, "data": [event("evt_1")]})),
    ])
    .await;
    let stripe = client(&base);
    let events = stripe
        .list_all_events(ListEventsParams {
            types: vec!["invoice.finalized".into(), "invoice.paid".into()],
            created_gte: Some(1764201600),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_3", "evt_2", "evt_1"]);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v1/events");
    assert_eq!(
        seen[0].query,
        "types[]=invoice.finalized&types[]=invoice.paid&created[gte]=1764201600&limit=2"
    );
    assert_eq!(
        seen[1].query,
        "types[]=invoice.finalized&types[]=invoice.paid&created[gte]=1764201600&starting_after=evt_2&limit=2"
    );
    assert_eq!(events[0].object_id(), Some("in_1"));

    let too_many = ListEventsParams {
        types: (0..21).map(|i| format!("t{i}")).collect(),
        ..Default::default()
    };
    let e = stripe.list_events(&too_many).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert_eq!(
        stripe.requests_made(),
        2,
        "a refused argument costs no request"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let (fake, base) = Fake::scripted(vec![
        err(500, "api_error", "", "Something went wrong"),
        err(
            429,
            "invalid_request_error",
            "rate_limit",
            "Too many requests",
        ),
        err(409, "invalid_request_error", "", "conflict"),
        ok(charge_json()),
    ])
    .await;
    let stripe = client(&base);
    let charge = stripe.retrieve_charge("ch_1").await.unwrap();
    assert_eq!(charge.id, "ch_1");
    assert_eq!(fake.seen().len(), 4);
    assert_eq!(stripe.requests_made(), 4);
}

#[tokio::test]
async fn retries_stop_after_max_retries_with_a_transient_error() {
    let (fake, base) =
        Fake::start(vec![], |_| Some(err(503, "api_error", "", "unavailable"))).await;
    let stripe = client(&base);
    let e = stripe.retrieve_customer("cus_1").await.unwrap_err();
    assert_eq!(fake.seen().len(), 4, "1 attempt + 3 retries");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(
        e.to_string(),
        "Stripe server error on /v1/customers/cus_1 (HTTP 503) after 4 attempt(s), request req_503: unavailable"
    );
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let (fake, base) = Fake::scripted(vec![
        err(429, "invalid_request_error", "rate_limit", "slow down").header("retry-after", "1"),
        ok(json!({"id": "prod_1", "object": "product", "name": "Widget"})),
    ])
    .await;
    let stripe = client(&base);
    let product = stripe.retrieve_product("prod_1").await.unwrap();
    assert_eq!(product.name.as_deref(), Some("Widget"));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    // The backoff alone is at most 10 ms here; the gap proves the header was honoured.
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_fast_as_transient() {
    let (fake, base) = Fake::scripted(vec![
        err(429, "invalid_request_error", "rate_limit", "slow down").header("retry-after", "3600"),
        ok(json!({"id": "prod_1", "object": "product"})),
    ])
    .await;
    let stripe = client(&base);
    let e = stripe.retrieve_product("prod_1").await.unwrap_err();
    assert!(matches!(e, StripeError::RateLimited { attempts: 1, .. }));
    assert_eq!(e.class(), ErrorClass::Transient);
    // The job's next attempt is told to wait as long as Stripe asked.
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn stripe_should_retry_overrides_the_status() {
    // `false` on a 500: Stripe says a retry cannot help.
    let (fake, base) = Fake::scripted(vec![
        err(500, "api_error", "", "boom").header("stripe-should-retry", "false"),
        ok(json!({"id": "price_1", "object": "price", "currency": "usd"})),
    ])
    .await;
    let stripe = client(&base);
    let e = stripe.retrieve_price("price_1").await.unwrap_err();
    assert_eq!(fake.seen().len(), 1);
    assert!(matches!(
        e,
        StripeError::Server {
            status: 500,
            attempts: 1,
            ..
        }
    ));

    // `true` on a 400: Stripe says it is worth another go.
    let (fake, base) = Fake::scripted(vec![
        err(400, "invalid_request_error", "", "try again").header("stripe-should-retry", "true"),
        ok(json!({"id": "price_1", "object": "price", "currency": "usd"})),
    ])
    .await;
    let stripe = client(&base);
    stripe.retrieve_price("price_1").await.unwrap();
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn error_classes_and_messages() {
    let cases = vec![
        (
            err(
                401,
                "invalid_request_error",
                "",
                &format!("Invalid API Key provided: {KEY}"),
            ),
            ErrorClass::NeedsPerson,
        ),
        (
            err(
                403,
                "invalid_request_error",
                "",
                "The provided key 'rk_test_***abc' does not have the required permissions for this endpoint (rak_charge_read).",
            ),
            ErrorClass::NeedsPerson,
        ),
        (
            err(
                404,
                "invalid_request_error",
                "resource_missing",
                "No such charge: 'ch_404'",
            ),
            ErrorClass::Permanent,
        ),
        (
            err(
                400,
                "invalid_request_error",
                "parameter_unknown",
                "Received unknown parameter: foo",
            ),
            ErrorClass::Permanent,
        ),
    ];
    for (reply, class) in cases {
        let status = reply.status;
        let (fake, base) = Fake::scripted(vec![reply]).await;
        let stripe = client(&base);
        let e = stripe.retrieve_charge("ch_404").await.unwrap_err();
        assert_eq!(e.class(), class, "HTTP {status}: {e}");
        assert_eq!(fake.seen().len(), 1, "HTTP {status} must not be retried");
        assert_eq!(e.status(), Some(status));
        let msg = e.to_string();
        assert!(
            !msg.contains(KEY) && !msg.contains("sk_test_") && !msg.contains("rk_test_"),
            "{msg}"
        );
        match status {
            401 => assert!(
                msg.contains("Stripe rejected the API key") && msg.contains("configuration"),
                "{msg}"
            ),
            403 => assert!(
                msg.contains("give the restricted key the permission Stripe names")
                    && msg.contains("rak_charge_read"),
                "{msg}"
            ),
            404 => {
                assert_eq!(e.code(), Some("resource_missing"));
                assert_eq!(
                    msg,
                    "Stripe has no object at /v1/charges/ch_404 (HTTP 404, request req_404): No such charge: 'ch_404'"
                );
            }
            _ => assert_eq!(
                msg,
                "Stripe refused /v1/charges/ch_404 (HTTP 400, parameter_unknown, request req_400): Received unknown parameter: foo"
            ),
        }
    }
}

#[tokio::test]
async fn an_object_of_the_other_mode_needs_a_person() {
    let (_, base) = Fake::scripted(vec![err(404, "invalid_request_error", "resource_missing",
        "No such charge: 'ch_1'; a similar object exists in live mode, but a test mode key was used to make this request.")])
    .await;
    let e = client(&base).retrieve_charge("ch_1").await.unwrap_err();
    assert!(
        matches!(
            e,
            StripeError::WrongMode {
                expected: "live",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::NeedsPerson);
    assert!(e.to_string().contains("use a live key"), "{e}");
}

#[tokio::test]
async fn non_json_errors_and_bad_bodies_are_classified() {
    let (_, base) = Fake::scripted(vec![Reply {
        status: 502,
        headers: vec![],
        body: "<html>Bad Gateway</html>".into(),
        delay: Duration::ZERO,
    }])
    .await;
    let mut c = config(&base);
    c.max_retries = 0;
    let e = StripeClient::new(c)
        .unwrap()
        .retrieve_product("prod_1")
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(
        e.to_string()
            .ends_with("HTTP 502 without a Stripe error body"),
        "{e}"
    );

    let (_, base) = Fake::scripted(vec![ok(json!({"id": "prod_1", "object": "price"}))]).await;
    let e = client(&base).retrieve_product("prod_1").await.unwrap_err();
    assert!(matches!(e, StripeError::Decode { .. }));
    assert_eq!(e.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn network_errors_are_retried_then_transient() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let stripe = client(&format!("http://127.0.0.1:{port}"));
    let e = stripe.retrieve_account().await.unwrap_err();
    assert!(matches!(e, StripeError::Network { attempts: 4, .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(stripe.requests_made(), 4);
    assert!(!e.to_string().contains(KEY));
}

#[tokio::test]
async fn timeouts_are_transient() {
    let mut slow = ok(json!({"id": "acct_1", "object": "account"}));
    slow.delay = Duration::from_secs(5);
    let (_, base) = Fake::scripted(vec![slow]).await;
    let mut c = config(&base);
    c.max_retries = 0;
    c.timeout = Duration::from_millis(200);
    let e = StripeClient::new(c)
        .unwrap()
        .retrieve_account()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(e.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn requests_never_exceed_the_rate_limit() {
    const RATE: u32 = 10;
    const N: usize = 25;
    let (fake, base) = Fake::start(vec![], |_| {
        Some(ok(json!({"id": "cus_1", "object": "customer"})))
    })
    .await;
    let mut c = config(&base);
    c.rate_limit_per_sec = NonZeroU32::new(RATE);
    let stripe = client_with(c);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N {
        let s = stripe.clone();
        tasks.spawn(async move { s.retrieve_customer("cus_1").await.map(|_| ()) });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let mut at: Vec<Instant> = fake.seen().iter().map(|s| s.at).collect();
    at.sort();
    assert_eq!(at.len(), N);
    // No one-second window holds more than RATE requests (one more allowed for the window's
    // closed edge). Without the limiter all 25 would land within milliseconds.
    for (i, start) in at.iter().enumerate() {
        let in_window = at[i..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= RATE as usize + 1,
            "{in_window} requests within 1 s of request {i}"
        );
    }
}

fn client_with(c: StripeClientConfig) -> StripeClient {
    StripeClient::new(c).unwrap()
}

#[tokio::test]
async fn retrieve_account_checks_credentials() {
    let (fake, base) = Fake::scripted(vec![ok(json!({"id": "acct_1", "object": "account",
        "country": "US", "default_currency": "usd", "charges_enabled": true,
        "business_profile": {"name": "Acme"}}))])
    .await;
    let stripe = client(&base);
    let account = stripe.retrieve_account().await.unwrap();
    assert_eq!(account.display_name(), "Acme");
    assert_eq!(fake.seen()[0].path, "/v1/account");
}

#[test]
fn keys_are_checked_and_never_shown() {
    let mut c = StripeClientConfig::new(SecretString::from("pk_test_publishable"));
    let e = StripeClient::new(c.clone()).unwrap_err();
    assert_eq!(e.class(), ErrorClass::NeedsPerson);
    assert!(!e.to_string().contains("pk_test_publishable"));
    assert!(!format!("{c:?}").contains("pk_test_publishable"));

    c.api_key = SecretString::from(KEY);
    let stripe = StripeClient::new(c.clone()).unwrap();
    assert_eq!(stripe.mode(), KeyMode::Test);
    assert!(!format!("{stripe:?}").contains(KEY));
    assert!(!format!("{c:?}").contains(KEY));
    c.api_key = SecretString::from("rk_live_abc");
    assert_eq!(StripeClient::new(c).unwrap().mode(), KeyMode::Live);
}
