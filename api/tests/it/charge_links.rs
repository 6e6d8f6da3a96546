//! A charge that paid an invoice is never posted as its own NetSuite invoice, whichever field
//! of whichever API dialect carries the link, and in either event order: the charge's events
//! before the invoice's, and after.
//!
//! Deliveries are made by hand here (the simulator's own are dropped), so the order is exact.

use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions};
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_store::{EventFilter, JobState};
use mlc_stripe_sim::{DeliveryConfig, DeliveryFaults, Dialect, form};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::sign_now;

const PRE_BASIL: &str = "2024-06-20";

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> Value {
        let resp = req
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.expect("JSON");
        assert_eq!(status, 200, "{what}: {v}");
        v
    }
    async fn post(&self, path: &str, params: Value) -> Value {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form::encode(&params));
        self.call(req, path).await
    }
    async fn get(&self, path: &str, params: Value) -> Value {
        let url = format!("{}{path}?{}", self.base, form::encode(&params));
        self.call(self.http.get(url), path).await
    }
}

/// One paid manual invoice: its ID, its charge and payment intent.
struct Sale {
    invoice: String,
    charge: String,
}

async fn paid_invoice(api: &Api, customer: &str, amount: i64) -> Sale {
    let inv = api
        .post(
            "/v1/invoices",
            json!({"customer": customer, "currency": "usd", "description": "Services"}),
        )
        .await;
    let id = inv["id"].as_str().expect("id").to_string();
    api.post("/v1/invoiceitems", json!({"customer": customer, "invoice": id, "currency": "usd", "unit_amount_decimal": amount.to_string(), "quantity": "1", "description": "Implementation work"})).await;
    api.post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    api.post(&format!("/v1/invoices/{id}/pay"), json!({})).await;
    let pays = api
        .get("/v1/invoice_payments", json!({"invoice": id}))
        .await;
    let pi = pays["data"][0]["payment"]["payment_intent"]
        .as_str()
        .expect("paid by a payment intent")
        .to_string();
    let intent = api
        .get(&format!("/v1/payment_intents/{pi}"), json!({}))
        .await;
    Sale {
        invoice: id,
        charge: intent["latest_charge"]
            .as_str()
            .expect("charge")
            .to_string(),
    }
}

/// The simulator's events about `objects`, of the types the connector posts from.
fn events_about(all: &[Value], objects: &[&str], types: &[&str]) -> Vec<Value> {
    all.iter()
        .filter(|e| {
            types.contains(&e["type"].as_str().unwrap_or(""))
                && objects.contains(&e["data"]["object"]["id"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect()
}

async fn deliver(stack: &Stack, secret: &str, events: &[Value]) {
    let http = reqwest::Client::new();
    for e in events {
        let body = e.to_string();
        let resp = http
            .post(format!("http://{}/webhooks/stripe", stack.addr))
            .header("Stripe-Signature", sign_now(secret, &body))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("delivered");
        assert_eq!(resp.status().as_u16(), 200);
    }
    // Nothing queued or running: each event posted, or waiting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts = stack.store.job_counts().await.expect("counts");
        let busy: i64 = counts
            .iter()
            .filter(|(s, _)| matches!(s, JobState::Queued | JobState::Running))
            .map(|(_, n)| *n)
            .sum();
        if busy == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "jobs never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const CHARGE_EVENTS: &[&str] = &["charge.succeeded", "payment_intent.succeeded"];
const INVOICE_EVENTS: &[&str] = &["invoice.paid", "invoice.payment_succeeded"];

struct Case {
    name: &'static str,
    api_version: &'static str,
    dialect: Dialect,
    /// The invoice side shows its payment, so the payment is applied in NetSuite too.
    invoice_shows_payment: bool,
    /// No field links the charge to its invoice: it must wait, never post alone.
    blind: bool,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "charge.invoice only",
            api_version: PRE_BASIL,
            dialect: Dialect {
                missing_endpoints: strings(&["/v1/invoice_payments"]),
                omitted_fields: strings(&[
                    "payment_intent.invoice",
                    "invoice.charge",
                    "invoice.payment_intent",
                ]),
                ..Dialect::default()
            },
            invoice_shows_payment: false,
            blind: false,
        },
        Case {
            name: "payment_intent.invoice only",
            api_version: PRE_BASIL,
            dialect: Dialect {
                missing_endpoints: strings(&["/v1/invoice_payments"]),
                omitted_fields: strings(&[
                    "charge.invoice",
                    "invoice.charge",
                    "invoice.payment_intent",
                ]),
                ..Dialect::default()
            },
            invoice_shows_payment: false,
            blind: false,
        },
        Case {
            name: "invoice_payments only (payments expand refused)",
            api_version: mlc_stripe::client::DEFAULT_API_VERSION,
            dialect: Dialect {
                refused_expands: strings(&["payments"]),
                ..Dialect::default()
            },
            invoice_shows_payment: true,
            blind: false,
        },
        Case {
            name: "the invoice's own payments (basil, no invoice_payments endpoint)",
            api_version: mlc_stripe::client::DEFAULT_API_VERSION,
            dialect: Dialect {
                missing_endpoints: strings(&["/v1/invoice_payments"]),
                ..Dialect::default()
            },
            invoice_shows_payment: true,
            blind: false,
        },
        Case {
            name: "the invoice's own payments (invoice_payments answers an empty list)",
            api_version: mlc_stripe::client::DEFAULT_API_VERSION,
            dialect: Dialect {
                empty_lists: strings(&["/v1/invoice_payments"]),
                ..Dialect::default()
            },
            invoice_shows_payment: true,
            blind: false,
        },
        Case {
            name: "the invoice's own payments (pre-basil invoice.charge, nothing on the charge)",
            api_version: PRE_BASIL,
            dialect: Dialect {
                missing_endpoints: strings(&["/v1/invoice_payments"]),
                omitted_fields: strings(&["charge.invoice", "payment_intent.invoice"]),
                ..Dialect::default()
            },
            invoice_shows_payment: true,
            blind: false,
        },
        Case {
            name: "no link anywhere",
            api_version: mlc_stripe::client::DEFAULT_API_VERSION,
            dialect: Dialect {
                missing_endpoints: strings(&["/v1/invoice_payments"]),
                refused_expands: strings(&["payments"]),
                ..Dialect::default()
            },
            invoice_shows_payment: false,
            blind: true,
        },
    ]
}

#[tokio::test]
async fn an_invoice_charge_is_never_posted_alone_whichever_field_links_them_and_in_either_order() {
    for case in cases() {
        // Fresh databases per case: each case has its own stack and store.
        for db in backends().await {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = StackOptions::new(db.url(), dir.path());
            // The simulator's own deliveries are all lost: this test delivers, in its order.
            opts.delivery_faults = DeliveryFaults {
                drop_probability: 1.0,
                ..DeliveryFaults::default()
            };
            opts.delivery = DeliveryConfig {
                max_attempts: 1,
                ..DeliveryConfig::default()
            };
            opts.extra_env
                .push(("MLC__STRIPE__API_VERSION".into(), case.api_version.into()));
            let stack = Stack::start(opts).await.expect("stack starts");
            let api = Api {
                http: reqwest::Client::new(),
                base: stack.stripe.base_url.clone(),
                key: stack.stripe.api_key_str().to_string(),
            };
            let cus = api.post("/v1/customers", json!({"name": "Ada Lovelace", "email": "ada@example.com", "payment_method": "pm_card_visa", "invoice_settings": {"default_payment_method": "pm_card_visa"}})).await;
            let cus = cus["id"].as_str().expect("customer").to_string();
            let first = paid_invoice(&api, &cus, 12_500).await;
            let second = paid_invoice(&api, &cus, 7_300).await;
            let all = api.get("/v1/events", json!({"limit": "100"})).await;
            let all: Vec<Value> = all["data"].as_array().expect("events").clone();
            let secret = stack.config.stripe.webhook_secrets[0]
                .expose_secret()
                .to_string();
            stack.stripe.handle.set_dialect(case.dialect.clone());

            let about = |sale: &Sale, types: &[&str]| {
                let pi_events: Vec<String> = all
                    .iter()
                    .filter(|e| {
                        e["type"] == "payment_intent.succeeded"
                            && e["data"]["object"]["latest_charge"] == json!(sale.charge)
                    })
                    .filter_map(|e| e["data"]["object"]["id"].as_str().map(str::to_string))
                    .collect();
                let mut ids: Vec<&str> = vec![sale.invoice.as_str(), sale.charge.as_str()];
                ids.extend(pi_events.iter().map(String::as_str));
                events_about(&all, &ids, types)
            };
            // The first sale: its charge's events before its invoice's. The second: after.
            let charge_first = about(&first, CHARGE_EVENTS);
            assert!(
                !charge_first.is_empty(),
                "{}: the charge has events",
                case.name
            );
            deliver(&stack, &secret, &charge_first).await;
            deliver(&stack, &secret, &about(&first, INVOICE_EVENTS)).await;
            deliver(&stack, &secret, &about(&second, INVOICE_EVENTS)).await;
            deliver(&stack, &secret, &about(&second, CHARGE_EVENTS)).await;

            let invoices = stack.netsuite_invoices();
            let mut external: Vec<String> =
                invoices.iter().map(|i| i.external_id.clone()).collect();
            external.sort();
            let mut want = vec![
                format!("stripe_{}", first.invoice),
                format!("stripe_{}", second.invoice),
            ];
            want.sort();
            assert_eq!(
                external,
                want,
                "{} ({}): one NetSuite invoice per Stripe invoice, none for a charge",
                case.name,
                db.url()
            );
            // Gross (fees are negative lines in net mode): each sale at its own amount.
            let mut gross: Vec<rust_decimal::Decimal> =
                invoices.iter().map(|i| i.total - i.fees).collect();
            gross.sort();
            assert_eq!(
                gross,
                vec![
                    rust_decimal::Decimal::new(7_300, 2),
                    rust_decimal::Decimal::new(12_500, 2)
                ],
                "{}",
                case.name
            );
            let payments = stack.netsuite_count(RecordType::CustomerPayment);
            if case.invoice_shows_payment {
                assert_eq!(payments, 2, "{}: each invoice paid once", case.name);
            } else {
                assert!(payments <= 2, "{}: never a second payment", case.name);
            }

            // The charge's events say what happened to it.
            let charge_events = stack
                .store
                .list_events(&EventFilter {
                    stripe_id: Some(first.charge.clone()),
                    limit: 50,
                    ..EventFilter::default()
                })
                .await
                .expect("events");
            let charge_event = charge_events
                .iter()
                .find(|e| e.event_type == "charge.succeeded")
                .expect("the charge event is stored");
            let audit = stack
                .store
                .audit_for_event(&charge_event.event_id)
                .await
                .expect("audit");
            let steps: Vec<&str> = audit.iter().map(|a| a.step.as_str()).collect();
            if case.blind {
                assert_eq!(charge_event.status, "waiting", "{}: {steps:?}", case.name);
                let why = charge_event.last_error.clone().unwrap_or_default();
                assert!(
                    why.contains(&first.invoice) && why.contains("not posted on its own"),
                    "{}: {why}",
                    case.name
                );
            } else {
                assert!(
                    steps.contains(&"covered_by_invoice"),
                    "{}: the charge is covered by its invoice: {steps:?}",
                    case.name
                );
            }
            stack.stop().await.expect("stack stops");
        }
    }
}

/// A dialect without Checkout Sessions (a 404 on `/v1/checkout/sessions`) and refusing the
/// balance transaction's expand: a paid one-time sale still posts once, at its amount, on the
/// default item, with its fee; it never fails for good.
#[tokio::test]
async fn a_checkout_sale_posts_where_the_dialect_lacks_checkout_sessions() {
    for db in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), dir.path());
        opts.stripe_dialect = Dialect {
            missing_endpoints: strings(&["/v1/checkout/sessions"]),
            refused_expands: strings(&["balance_transaction"]),
            ..Dialect::default()
        };
        let stack = Stack::start(opts).await.expect("stack starts");
        let api = Api {
            http: reqwest::Client::new(),
            base: stack.stripe.base_url.clone(),
            key: stack.stripe.api_key_str().to_string(),
        };
        let cus = api
            .post(
                "/v1/customers",
                json!({"name": "Grace Hopper", "email": "grace@example.com"}),
            )
            .await;
        let prod = api
            .post("/v1/products", json!({"name": "Onboarding"}))
            .await;
        let price = api
            .post(
                "/v1/prices",
                json!({"product": prod["id"], "currency": "eur", "unit_amount": "45000"}),
            )
            .await;
        // The simulator's own Checkout endpoints are what the dialect hides from reads; creating
        // the sale goes through the sim-only path.
        stack.stripe.handle.set_dialect(Dialect::default());
        let sess = api.post("/v1/checkout/sessions", json!({"mode": "payment", "customer": cus["id"], "line_items": [{"price": price["id"], "quantity": "2"}], "success_url": "https://example.com/ok"})).await;
        let sid = sess["id"].as_str().expect("session").to_string();
        stack.stripe.handle.set_dialect(Dialect {
            missing_endpoints: strings(&["/v1/checkout/sessions"]),
            refused_expands: strings(&["balance_transaction"]),
            ..Dialect::default()
        });
        let done = api
            .post(
                &format!("/_sim/checkout/sessions/{sid}/complete"),
                json!({}),
            )
            .await;
        let pi = done["payment_intent"].as_str().expect("pi").to_string();
        assert!(stack.wait_idle(Duration::from_secs(60)).await, "settles");

        let invoices = stack.netsuite_invoices();
        assert_eq!(invoices.len(), 1, "{invoices:?}");
        let inv = &invoices[0];
        assert!(
            inv.external_id.starts_with("stripe_ch_"),
            "{}",
            inv.external_id
        );
        assert_eq!(inv.total - inv.fees, rust_decimal::Decimal::new(90_000, 2));
        assert!(
            inv.fees < rust_decimal::Decimal::ZERO,
            "the fee is posted: {inv:?}"
        );
        assert!(
            inv.lines
                .iter()
                .any(|l| l.item == stack.items.default.to_string()),
            "no session, no product: the default item ({inv:?})"
        );
        assert_eq!(stack.netsuite_count(RecordType::CustomerPayment), 1);
        let counts: std::collections::HashMap<_, _> = stack
            .store
            .job_counts()
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            counts.get(&JobState::Failed).copied().unwrap_or(0),
            0,
            "{counts:?} ({pi})"
        );
        stack.stop().await.expect("stack stops");
    }
}
