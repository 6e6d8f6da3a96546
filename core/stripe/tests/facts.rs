//! Both API shapes of the same invoice (and charge) give the same domain values.

use std::path::PathBuf;

use mlc_core::{Classify, Currency, ErrorClass, Money};
use mlc_stripe::facts::{ChargeFacts, FactsError, InvoiceFacts};
use mlc_stripe::models::{Charge, Event, Invoice, StripeModel};
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn fixtures_dir() -> PathBuf {
    let shared = std::env::var_os("MLC_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")));
    shared.join("fixtures/stripe")
}

fn event_object(file: &str) -> Value {
    let text =
        std::fs::read_to_string(fixtures_dir().join("events_sync_engine").join(file)).unwrap();
    let event = Event::from_json(&text).unwrap();
    serde_json::from_str(event.data.object.get()).unwrap()
}

/// `invoice_paid.json` (API 2020-03-02) made into a non-trivial paid invoice: two lines, one a
/// proration, with tax, a discount and a charge. Still strictly pre-basil in shape.
fn pre_basil_invoice() -> Value {
    let mut inv = event_object("invoice_paid.json");
    let line0 = inv["lines"]["data"][0].clone();
    let mut line1 = line0.clone();
    inv["lines"]["data"][0]["amount"] = json!(2000);
    inv["lines"]["data"][0]["quantity"] = json!(2);
    inv["lines"]["data"][0]["price"]["unit_amount"] = json!(1000);
    inv["lines"]["data"][0]["price"]["unit_amount_decimal"] = json!("1000");
    inv["lines"]["data"][0]["discount_amounts"] = json!([{"amount": 200, "discount": "di_1"}]);
    inv["lines"]["data"][0]["tax_amounts"] =
        json!([{"amount": 180, "inclusive": false, "tax_rate": "txr_1", "taxable_amount": 1800}]);
    line1["id"] = json!("il_1KJqKBJDPojXS6LNproration");
    line1["amount"] = json!(-333);
    line1["quantity"] = json!(1);
    line1["proration"] = json!(true);
    line1["description"] = json!("Unused time on Free tier");
    line1["price"]["id"] = json!("price_1IDQm5JDPojXS6LNother");
    line1["price"]["product"] = json!("prod_Ip4vqwv3EJ7Mi1");
    line1["price"]["unit_amount"] = json!(333);
    line1["price"]["unit_amount_decimal"] = json!("333.3333");
    line1["period"] = json!({"start": 1642000000, "end": 1642645280});
    inv["lines"]["data"].as_array_mut().unwrap().push(line1);
    inv["subtotal"] = json!(1667);
    inv["total_discount_amounts"] = json!([{"amount": 200, "discount": "di_1"}]);
    inv["tax"] = json!(180);
    inv["total_tax_amounts"] =
        json!([{"amount": 180, "inclusive": false, "tax_rate": "txr_1", "taxable_amount": 1800}]);
    inv["total"] = json!(1647);
    inv["amount_due"] = json!(1647);
    inv["amount_paid"] = json!(1647);
    inv["charge"] = json!("ch_3KtQThJDPojXS6LN0YmgbxGj");
    inv["payment_intent"] = json!("pi_3KtQThJDPojXS6LN0H9EfsjV");
    inv
}

/// The same invoice as 2026-07-29.dahlia renders it with `expand[]=payments` and the paid
/// payment's PaymentIntent expanded (basil+ names the charge only there).
fn basil_invoice(pre: &Value) -> Value {
    let mut inv = pre.clone();
    let obj = inv.as_object_mut().unwrap();
    for key in [
        "charge",
        "payment_intent",
        "subscription",
        "tax",
        "total_tax_amounts",
        "paid",
        "paid_out_of_band",
        "discount",
        "application_fee_amount",
        "transfer_data",
        "tax_percent",
        "quote",
    ] {
        obj.remove(key);
    }
    obj.insert(
        "total_taxes".into(),
        json!([{"amount": 180, "tax_behavior": "exclusive", "taxable_amount": 1800,
                "taxability_reason": "standard_rated", "type": "tax_rate_details"}]),
    );
    obj.insert(
        "parent".into(),
        json!({"type": "subscription_details", "quote_details": null,
               "subscription_details": {"metadata": {}, "subscription": "sub_JsuPyCPhXWfZar"}}),
    );
    obj.insert(
        "payments".into(),
        json!({"object": "list", "has_more": false, "url": "/v1/invoice_payments", "data": [
            {"id": "inpay_1", "object": "invoice_payment", "amount_paid": 1647,
             "amount_requested": 1647, "currency": "usd", "invoice": pre["id"], "is_default": true,
             "livemode": false, "created": 1642649110, "status": "paid",
             "payment": {"type": "payment_intent", "payment_intent": {
                 "id": "pi_3KtQThJDPojXS6LN0H9EfsjV", "object": "payment_intent", "amount": 1647,
                 "currency": "usd", "status": "succeeded",
                 "latest_charge": "ch_3KtQThJDPojXS6LN0YmgbxGj"}},
             "status_transitions": {"canceled_at": null, "paid_at": 1642649110}},
            {"id": "inpay_2", "object": "invoice_payment", "amount_paid": null,
             "amount_requested": 1647, "currency": "usd", "invoice": pre["id"], "is_default": false,
             "livemode": false, "created": 1642649000, "status": "canceled",
             "payment": {"type": "payment_intent", "payment_intent": "pi_canceled_attempt"},
             "status_transitions": {"canceled_at": 1642649100, "paid_at": null}}
        ]}),
    );
    for line in obj["lines"]["data"].as_array_mut().unwrap() {
        let l = line.as_object_mut().unwrap();
        let price = l.remove("price").unwrap();
        let proration = l.remove("proration").unwrap();
        let subscription_item = l.remove("subscription_item").unwrap();
        let tax_amounts = l.remove("tax_amounts").unwrap();
        for key in ["plan", "type", "tax_rates"] {
            l.remove(key);
        }
        l.insert(
            "pricing".into(),
            json!({"type": "price_details",
                   "price_details": {"price": price["id"], "product": price["product"]},
                   "unit_amount_decimal": price["unit_amount_decimal"]}),
        );
        l.insert(
            "parent".into(),
            json!({"type": "subscription_item_details", "invoice_item_details": null,
                   "subscription_item_details": {"invoice_item": null, "proration": proration,
                     "proration_details": {"credited_items": null},
                     "subscription": l["subscription"], "subscription_item": subscription_item}}),
        );
        let taxes: Vec<Value> = tax_amounts
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                json!({"amount": t["amount"], "tax_behavior": "exclusive",
                            "taxable_amount": t["taxable_amount"], "type": "tax_rate_details"})
            })
            .collect();
        l.insert("taxes".into(), Value::Array(taxes));
        l.insert("quantity_decimal".into(), json!(l["quantity"].to_string()));
    }
    inv
}

fn no_key_anywhere(value: &Value, key: &str) -> bool {
    match value {
        Value::Object(map) => {
            !map.contains_key(key) && map.values().all(|v| no_key_anywhere(v, key))
        }
        Value::Array(items) => items.iter().all(|v| no_key_anywhere(v, key)),
        _ => true,
    }
}

#[test]
fn pre_basil_and_basil_invoices_give_the_same_facts() {
    let pre = pre_basil_invoice();
    let basil = basil_invoice(&pre);
    // The two inputs really are different shapes.
    for key in [
        "charge",
        "payment_intent",
        "subscription",
        "tax",
        "total_tax_amounts",
    ] {
        assert!(basil.get(key).is_none(), "basil JSON still has `{key}`");
    }
    for line in basil["lines"]["data"].as_array().unwrap() {
        for key in ["price", "proration", "tax_amounts", "plan"] {
            assert!(line.get(key).is_none(), "basil line still has `{key}`");
        }
    }
    for key in ["pricing", "payments", "total_taxes", "parent"] {
        assert!(
            no_key_anywhere(&pre, key),
            "pre-basil JSON already has `{key}`"
        );
    }

    let pre_facts =
        InvoiceFacts::from_invoice(&Invoice::from_json(&pre.to_string()).unwrap()).unwrap();
    let basil_facts =
        InvoiceFacts::from_invoice(&Invoice::from_json(&basil.to_string()).unwrap()).unwrap();
    assert_eq!(pre_facts, basil_facts);

    // And the values are the ones a person reading the invoice would expect.
    let usd = |minor| Money::new(minor, Currency::USD);
    let f = &basil_facts;
    assert_eq!(f.id.as_str(), "in_1KJqKBJDPojXS6LNJbvLUgEy");
    assert_eq!(f.number.as_deref(), Some("60229DE7-0007"));
    assert_eq!(
        f.customer_id.as_ref().unwrap().as_str(),
        "cus_JsuO3bmrj0QlAw"
    );
    assert_eq!(f.status.as_deref(), Some("paid"));
    assert_eq!(
        (
            f.subtotal,
            f.discount,
            f.tax,
            f.tax_inclusive,
            f.total,
            f.amount_paid
        ),
        (
            usd(1667),
            usd(200),
            usd(180),
            usd(0),
            usd(1647),
            Some(usd(1647))
        )
    );
    assert_eq!(f.subscription_id.as_deref(), Some("sub_JsuPyCPhXWfZar"));
    // The canceled InvoicePayment is not a payment.
    let ids =
        |v: &[mlc_core::StripeId]| v.iter().map(|i| i.as_str().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&f.payment_intent_ids), ["pi_3KtQThJDPojXS6LN0H9EfsjV"]);
    assert_eq!(
        (f.paid_at, f.finalized_at),
        (Some(1642649110), Some(1642649110))
    );
    assert_eq!(f.period, Some((1639966880, 1642645280)));
    assert!(f.lines_complete);
    assert_eq!(f.lines.len(), 2);
    let (a, b) = (&f.lines[0], &f.lines[1]);
    assert_eq!(
        a.product_id.as_ref().unwrap().as_str(),
        "prod_Ip4vqwv3EJ7Mi0"
    );
    assert_eq!(
        a.price_id.as_ref().unwrap().as_str(),
        "price_1IDQm5JDPojXS6LNM31hxKzp"
    );
    assert_eq!(a.quantity, Some(Decimal::from(2)));
    assert_eq!(a.unit_amount_decimal, Some(Decimal::from(1000)));
    assert_eq!(
        (a.amount, a.discount, a.tax),
        (usd(2000), usd(200), usd(180))
    );
    assert!(!a.proration);
    assert_eq!(
        a.metadata.get("project_id").map(String::as_str),
        Some("295")
    );
    assert_eq!(
        b.product_id.as_ref().unwrap().as_str(),
        "prod_Ip4vqwv3EJ7Mi1"
    );
    assert_eq!(b.unit_amount_decimal, Some("333.3333".parse().unwrap()));
    assert_eq!(b.amount, usd(-333));
    assert!(b.proration);
    assert_eq!(b.period, Some((1642000000, 1642645280)));
}

#[test]
fn basil_without_expanded_payment_intent_still_names_the_payment_intent() {
    let mut basil = basil_invoice(&pre_basil_invoice());
    basil["payments"]["data"][0]["payment"]["payment_intent"] =
        json!("pi_3KtQThJDPojXS6LN0H9EfsjV");
    let facts =
        InvoiceFacts::from_invoice(&Invoice::from_json(&basil.to_string()).unwrap()).unwrap();
    assert!(facts.charge_ids.is_empty());
    assert_eq!(
        facts.payment_intent_ids[0].as_str(),
        "pi_3KtQThJDPojXS6LN0H9EfsjV"
    );
    // Without `expand[]=payments` a basil invoice names no payment at all.
    basil.as_object_mut().unwrap().remove("payments");
    let facts =
        InvoiceFacts::from_invoice(&Invoice::from_json(&basil.to_string()).unwrap()).unwrap();
    assert!(facts.payment_intent_ids.is_empty());
}

#[test]
fn pre_basil_charge_id_comes_from_invoice_charge() {
    let facts =
        InvoiceFacts::from_invoice(&Invoice::from_json(&pre_basil_invoice().to_string()).unwrap())
            .unwrap();
    assert_eq!(facts.charge_ids[0].as_str(), "ch_3KtQThJDPojXS6LN0YmgbxGj");
}

#[test]
fn every_sync_engine_invoice_gives_facts() {
    for file in [
        "invoice_finalized.json",
        "invoice_paid.json",
        "invoice_voided.json",
    ] {
        let text =
            std::fs::read_to_string(fixtures_dir().join("events_sync_engine").join(file)).unwrap();
        let invoice: Invoice = Event::from_json(&text).unwrap().object_as().unwrap();
        let facts = InvoiceFacts::from_invoice(&invoice).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(facts.currency, Currency::USD, "{file}");
        assert!(!facts.lines.is_empty(), "{file}");
        assert!(facts.lines.iter().all(|l| l.product_id.is_some()), "{file}");
    }
}

#[test]
fn charge_facts_take_fees_and_fx_from_the_expanded_balance_transaction() {
    let mut charge = event_object("charge_succeeded.json");
    charge["currency"] = json!("eur");
    charge["amount"] = json!(1000);
    charge["balance_transaction"] = json!({
        "id": "txn_3KtQThJDPojXS6LN0ClROjTy", "object": "balance_transaction",
        "amount": 1234, "currency": "usd", "fee": 66, "net": 1168, "exchange_rate": 1.234,
        "fee_details": [{"amount": 66, "currency": "usd", "description": "Stripe processing fees",
                         "type": "stripe_fee", "application": null}],
        "source": "ch_3KtQThJDPojXS6LN0YmgbxGj", "status": "pending", "type": "charge",
        "reporting_category": "charge", "created": 1651125926, "available_on": 1651708800
    });
    // Serialise by hand so the exchange rate's text reaches the parser unrounded.
    let text = charge.to_string();
    let facts = ChargeFacts::from_charge(&Charge::from_json(&text).unwrap()).unwrap();
    let eur = Currency::EUR;
    assert_eq!(facts.amount, Money::new(1000, eur));
    assert_eq!(facts.captured_amount.minor(), 3000);
    assert_eq!(facts.customer_id.unwrap().as_str(), "cus_J7Mkgr8mvbl1eK");
    assert_eq!(
        facts.invoice_id.unwrap().as_str(),
        "in_1KJdKkJDPojXS6LNSwSWkZSN"
    );
    assert_eq!(
        facts.payment_intent_id.unwrap().as_str(),
        "pi_3KtQThJDPojXS6LN0H9EfsjV"
    );
    assert_eq!(facts.fee, Some(Money::new(66, Currency::USD)));
    assert_eq!(facts.net, Some(Money::new(1168, Currency::USD)));
    assert_eq!(
        facts.settlement_amount,
        Some(Money::new(1234, Currency::USD))
    );
    assert_eq!(facts.settlement_currency, Some(Currency::USD));
    assert_eq!(facts.exchange_rate.unwrap().to_string(), "1.234");
    assert_eq!(facts.fee_details[0].kind, "stripe_fee");
    assert_eq!(facts.status, "succeeded");
}

#[test]
fn unexpanded_balance_transaction_leaves_fees_unknown() {
    let charge = event_object("charge_succeeded.json");
    let facts = ChargeFacts::from_charge(&Charge::from_json(&charge.to_string()).unwrap()).unwrap();
    assert_eq!(
        facts.balance_transaction_id.unwrap().as_str(),
        "txn_3KtQThJDPojXS6LN0ClROjTy"
    );
    assert_eq!(
        (facts.fee, facts.net, facts.exchange_rate),
        (None, None, None)
    );
}

#[test]
fn unusable_objects_are_permanent_errors_with_clear_messages() {
    let deleted = Invoice::from_json(r#"{"id":"in_1","object":"invoice","deleted":true}"#).unwrap();
    let err = InvoiceFacts::from_invoice(&deleted).unwrap_err();
    assert_eq!(err.to_string(), "Stripe invoice in_1 is deleted");
    assert_eq!(err.class(), ErrorClass::Permanent);

    let bad =
        Invoice::from_json(r#"{"id":"in_1","object":"invoice","currency":"currency"}"#).unwrap();
    let err = InvoiceFacts::from_invoice(&bad).unwrap_err();
    assert!(matches!(err, FactsError::Currency { .. }));
    assert!(
        err.to_string()
            .starts_with("Stripe invoice in_1 has an unusable currency"),
        "{err}"
    );
}

/// A captured charge as an older API version renders it: no `amount_captured` key at all.
fn charge_without_amount_captured(amount: i64, refunded: i64, fully: bool) -> Charge {
    let mut charge = event_object("charge_succeeded.json");
    let m = charge.as_object_mut().unwrap();
    m.remove("amount_captured");
    m.insert("amount".into(), json!(amount));
    m.insert("amount_refunded".into(), json!(refunded));
    m.insert("refunded".into(), json!(fully));
    m.insert("captured".into(), json!(true));
    m.insert("paid".into(), json!(true));
    m.insert("status".into(), json!("succeeded"));
    Charge::from_json(&charge.to_string()).unwrap()
}

#[test]
fn a_captured_charge_without_amount_captured_brought_in_its_amount() {
    let facts = ChargeFacts::from_charge(&charge_without_amount_captured(4200, 0, false)).unwrap();
    assert!(facts.captured);
    assert_eq!(facts.captured_amount, Money::new(4200, Currency::USD));
    assert!(facts.captured_amount_inferred);

    // Older versions count the part released at a partial capture as refunded.
    let partial =
        ChargeFacts::from_charge(&charge_without_amount_captured(4200, 1200, false)).unwrap();
    assert_eq!(partial.captured_amount, Money::new(3000, Currency::USD));

    // With the field present it is taken as Stripe states it.
    let mut charge = event_object("charge_succeeded.json");
    charge["amount_captured"] = json!(1500);
    let stated =
        ChargeFacts::from_charge(&Charge::from_json(&charge.to_string()).unwrap()).unwrap();
    assert_eq!(stated.captured_amount.minor(), 1500);
    assert!(!stated.captured_amount_inferred);
}

#[test]
fn an_uncaptured_charge_without_amount_captured_brought_in_nothing() {
    let mut charge = event_object("charge_succeeded.json");
    let m = charge.as_object_mut().unwrap();
    m.remove("amount_captured");
    m.insert("captured".into(), json!(false));
    let facts = ChargeFacts::from_charge(&Charge::from_json(&charge.to_string()).unwrap()).unwrap();
    assert_eq!(facts.captured_amount.minor(), 0);
}

#[test]
fn absent_money_fields_are_never_read_as_zero() {
    // An invoice without `total` cannot be posted: a clear, permanent error naming the field.
    let mut inv = pre_basil_invoice();
    inv.as_object_mut().unwrap().remove("total");
    let err =
        InvoiceFacts::from_invoice(&Invoice::from_json(&inv.to_string()).unwrap()).unwrap_err();
    assert!(
        matches!(err, FactsError::MissingAmount { field: "total", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`total`"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);

    // A line without `amount` likewise.
    let mut inv = pre_basil_invoice();
    inv["lines"]["data"][0]
        .as_object_mut()
        .unwrap()
        .remove("amount");
    let err =
        InvoiceFacts::from_invoice(&Invoice::from_json(&inv.to_string()).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            FactsError::MissingAmount {
                field: "amount",
                ..
            }
        ),
        "{err}"
    );

    // The derivable ones follow Stripe's definitions: paid invoice, no amount fields but total.
    let mut inv = pre_basil_invoice();
    let total = inv["total"].as_i64().unwrap();
    let subtotal = inv["subtotal"].as_i64().unwrap();
    for k in ["amount_due", "amount_paid", "amount_remaining"] {
        inv.as_object_mut().unwrap().remove(k);
    }
    let facts = InvoiceFacts::from_invoice(&Invoice::from_json(&inv.to_string()).unwrap()).unwrap();
    assert_eq!(facts.status.as_deref(), Some("paid"));
    // Due is not invented; paid and remaining only follow from what is stated.
    assert_eq!(facts.amount_due, None);
    assert_eq!(facts.amount_paid, None);
    assert_eq!(facts.amount_remaining, None);
    let mut inv = pre_basil_invoice();
    inv.as_object_mut().unwrap().remove("amount_paid");
    inv.as_object_mut().unwrap().remove("amount_remaining");
    inv["amount_due"] = json!(total);
    let facts = InvoiceFacts::from_invoice(&Invoice::from_json(&inv.to_string()).unwrap()).unwrap();
    assert_eq!(facts.amount_paid.map(|m| m.minor()), Some(total));
    assert_eq!(facts.amount_remaining.map(|m| m.minor()), Some(0));
    assert_eq!(facts.subtotal.minor(), subtotal);

    // A balance transaction without `fee` but with its parts; without `net`.
    let mut charge = event_object("charge_succeeded.json");
    charge["balance_transaction"] = json!({
        "id": "txn_3KtQThJDPojXS6LN0ClROjTy", "object": "balance_transaction",
        "amount": 3000, "currency": "usd",
        "fee_details": [{"amount": 117, "currency": "usd", "type": "stripe_fee"}],
        "created": 1651125926
    });
    let facts = ChargeFacts::from_charge(&Charge::from_json(&charge.to_string()).unwrap()).unwrap();
    assert_eq!(facts.fee, Some(Money::new(117, Currency::USD)));
    assert_eq!(facts.net, Some(Money::new(2883, Currency::USD)));

    // …and without either: the fee is unknown, so no fee is invented.
    charge["balance_transaction"] = json!({
        "id": "txn_3KtQThJDPojXS6LN0ClROjTy", "object": "balance_transaction",
        "amount": 3000, "currency": "usd", "created": 1651125926
    });
    let err =
        ChargeFacts::from_charge(&Charge::from_json(&charge.to_string()).unwrap()).unwrap_err();
    assert!(
        matches!(err, FactsError::MissingAmount { field: "fee", .. }),
        "{err}"
    );
}
