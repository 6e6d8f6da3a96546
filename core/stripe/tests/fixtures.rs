//! Every real Stripe fixture parses into the model its `object` (or its event's `type`) names.

use std::path::PathBuf;

use mlc_stripe::models::{
    BalanceTransaction, Charge, Customer, Event, Invoice, InvoicePayment, StripeModel,
    StripeObject, object_for_event_type,
};

fn fixtures_dir() -> PathBuf {
    let shared = std::env::var_os("MLC_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    shared.join("fixtures/stripe")
}

fn json_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Kinds the crate parses into a typed model (the rest are `Other` on purpose).
const MODELLED: &[&str] = &[
    "charge",
    "invoice",
    "line_item",
    "invoice_payment",
    "payment_intent",
    "balance_transaction",
    "customer",
    "product",
    "price",
    "refund",
    "checkout.session",
    "credit_note",
    "dispute",
    "payout",
    "discount",
];

fn check_object(name: &str, text: &str, expected_kind: &str) -> StripeObject {
    let object = StripeObject::from_json(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(object.object(), expected_kind, "{name}");
    if MODELLED.contains(&expected_kind) {
        assert!(
            !matches!(object, StripeObject::Other { .. }),
            "{name}: {expected_kind} should have a typed model"
        );
    }
    assert!(
        object.id().is_some_and(|id| !id.is_empty()),
        "{name}: no id"
    );
    assert_eq!(
        object.raw().get("object").and_then(|o| o.as_str()),
        Some(expected_kind)
    );
    object
}

#[test]
fn every_top_level_fixture_parses_into_its_model() {
    let dir = fixtures_dir();
    let files = json_files(&dir);
    assert!(
        files.len() >= 25,
        "expected the fixture set, found {} files",
        files.len()
    );
    let mut typed = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        if name == "webhook_signature_vectors.json" {
            // Test vectors for webhook.rs, not a Stripe object.
            continue;
        }
        if name == "event.json" {
            let event = Event::from_json(&text).unwrap();
            assert_eq!(event.event_type, "plan.created");
            assert_eq!(event.api_version, None);
            assert_eq!(event.object_kind(), Some("plan"));
            assert!(
                matches!(event.object().unwrap(), StripeObject::Other { ref object, .. } if object == "plan")
            );
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let kind = value["object"].as_str().unwrap().to_string();
        let object = check_object(&name, &text, &kind);
        if !matches!(object, StripeObject::Other { .. }) {
            typed += 1;
        }
    }
    assert!(
        typed >= 18,
        "only {typed} fixtures parsed into typed models"
    );
}

#[test]
fn every_sync_engine_event_parses_envelope_and_object() {
    let dir = fixtures_dir().join("events_sync_engine");
    let files = json_files(&dir);
    assert_eq!(files.len(), 19);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let event = Event::from_slice(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(event.id.starts_with("evt_"), "{name}");
        assert!(!event.livemode, "{name}");
        assert!(event.api_version.is_some(), "{name}");
        let request = event.request.as_ref().unwrap();
        assert_eq!(
            request.id.as_deref(),
            event.raw["request"]["id"].as_str(),
            "{name}"
        );
        assert!(
            request.id.as_ref().is_none_or(|id| id.starts_with("req_")),
            "{name}"
        );
        let expected = object_for_event_type(&event.event_type)
            .unwrap_or_else(|| panic!("{name}: unexpected type {}", event.event_type));
        let object = check_object(&name, event.data.object.get(), expected);
        assert_eq!(Some(object.id().unwrap()), event.object_id(), "{name}");
        assert!(
            !matches!(object, StripeObject::Other { .. }),
            "{name}: {} should have a typed model",
            event.event_type
        );
    }
}

#[test]
fn deleted_stubs_parse_as_deleted() {
    let dir = fixtures_dir();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let customer = Customer::from_json(&read("deleted_customer.json")).unwrap();
    assert!(customer.deleted);
    let invoice = Invoice::from_json(&read("deleted_invoice.json")).unwrap();
    assert!(invoice.deleted);
    assert!(invoice.lines.data.is_empty());
    assert!(matches!(
        StripeObject::from_json(&read("deleted_product.json")).unwrap(),
        StripeObject::Product(p) if p.deleted
    ));
    assert!(matches!(
        StripeObject::from_json(&read("deleted_price.json")).unwrap(),
        StripeObject::Price(p) if p.deleted
    ));
}

#[test]
fn fixture_fields_land_where_posting_reads_them() {
    let dir = fixtures_dir();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();

    let charge = Charge::from_json(&read("charge.json")).unwrap();
    assert_eq!(charge.id, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
    assert_eq!(charge.amount, 100);
    assert_eq!(
        charge.balance_transaction.as_ref().map(|b| b.id()),
        Some("txn_1PgaxNB7WZ01zgkWEV3TLf40")
    );
    assert!(charge.customer.is_none());
    assert_eq!(charge.raw["billing_details"]["name"], "Jenny Rosen");

    let txn = BalanceTransaction::from_json(&read("balance_transaction.json")).unwrap();
    assert_eq!(
        (txn.amount, txn.fee, txn.net),
        (Some(100), Some(0), Some(100))
    );
    assert_eq!(txn.exchange_rate, None);
    assert_eq!(txn.source.as_deref(), Some("ch_1PgafuB7WZ01zgkWXYmPNZs8"));

    let invoice = Invoice::from_json(&read("invoice.json")).unwrap();
    assert_eq!(invoice.number, None);
    assert_eq!(invoice.status.as_deref(), Some("draft"));
    assert_eq!(
        invoice.customer.as_ref().map(|c| c.id()),
        Some("cus_QXg1o8vcGmoR32")
    );
    let line = &invoice.lines.data[0];
    assert_eq!(line.amount, Some(1000));
    assert!(
        line.parent
            .as_ref()
            .and_then(|p| p.details())
            .is_some_and(|d| d.proration)
    );
    assert_eq!(line.raw["subtotal"], 2060319484_i64);

    // The placeholder currency "currency" still parses: the raw model is tolerant, the facts are not.
    let payment = InvoicePayment::from_json(&read("invoice_payment.json")).unwrap();
    assert_eq!(payment.amount_paid, None);
    assert_eq!(payment.payment.kind.as_deref(), Some("payment_intent"));
}

#[test]
fn wrong_kind_and_missing_id_are_refused() {
    let err = Charge::from_json(r#"{"id":"in_1","object":"invoice"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a Stripe charge object, got `invoice`"
    );
    let err = Charge::from_json(r#"{"object":"charge","amount":1}"#).unwrap_err();
    assert!(err.to_string().contains("missing field `id`"), "{err}");
    let err = Charge::from_json(r#"{"id":"ch_1","amount":"ten"}"#).unwrap_err();
    assert!(
        err.to_string().starts_with("malformed Stripe charge"),
        "{err}"
    );
}

#[test]
fn exchange_rate_is_read_exactly_from_the_number_text() {
    // 0.1 + 0.2 style values and more digits than f64 holds must survive.
    let txn = BalanceTransaction::from_json(
        r#"{"id":"txn_1","object":"balance_transaction","amount":1234,"currency":"usd",
            "fee":66,"net":1168,"exchange_rate":1.23456789012345678901,"fee_details":[
            {"amount":66,"currency":"usd","description":"Stripe processing fees","type":"stripe_fee"}]}"#,
    )
    .unwrap();
    assert_eq!(
        txn.exchange_rate.unwrap().to_string(),
        "1.23456789012345678901"
    );
    let sci = BalanceTransaction::from_json(
        r#"{"id":"txn_2","object":"balance_transaction","exchange_rate":1.5e-3}"#,
    )
    .unwrap();
    assert_eq!(sci.exchange_rate.unwrap().to_string(), "0.0015");
}
