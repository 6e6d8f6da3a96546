//! Credit notes: pre-payment on open invoices, post-payment split into refund / customer credit /
//! out of band on paid ones, line shares of discounts and taxes, limits, void, versions.

mod common;

use common::{Client, sim};
use serde_json::{Value, json};

fn err_msg(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// A customer with a card, an EUR invoice with a 10% coupon and 20% exclusive VAT:
/// Setup 100.00 + 2 × 25.00 = 150.00, discount 15.00 (10.00 + 5.00), VAT 27.00 → 162.00.
async fn eur_invoice(c: &Client, pay: bool) -> (Value, Value) {
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
    let id = inv["id"].as_str().unwrap();
    c.post("/v1/invoiceitems", json!({"customer": cus["id"], "invoice": id, "amount": "10000", "currency": "eur", "description": "Setup"})).await;
    c.post("/v1/invoiceitems", json!({"customer": cus["id"], "invoice": id, "unit_amount_decimal": "2500", "quantity": "2", "currency": "eur", "description": "Seats"})).await;
    let mut inv = c
        .post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!(inv["total"], 16200);
    if pay {
        inv = c.post(&format!("/v1/invoices/{id}/pay"), json!({})).await;
        assert_eq!(inv["status"], "paid");
    }
    (cus, inv)
}

fn fixture_keys(name: &str) -> std::collections::BTreeSet<String> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

fn keys(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn line_id(inv: &Value, i: usize) -> String {
    inv["lines"]["data"][i]["id"].as_str().unwrap().to_string()
}

async fn post_err(c: &Client, path: &str, params: Value) -> (u16, Value) {
    let (s, v, _) = c.send(reqwest::Method::POST, path, params, None).await;
    (s, v)
}

#[tokio::test]
async fn post_payment_credit_note_splits_refund_and_customer_credit() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (cus, inv) = eur_invoice(&c, true).await;
    let inv_id = inv["id"].as_str().unwrap();
    let cus_id = cus["id"].as_str().unwrap();
    let seats = line_id(&inv, 1);
    let before = sim.handle.event_types().len();

    // One of the two seats: 25.00, its discount share 2.50, its VAT 4.50 → 27.00.
    let cn = c
        .post(
            "/v1/credit_notes",
            json!({
                "invoice": inv_id, "reason": "order_change", "memo": "One seat fewer",
                "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}],
                "refund_amount": "2000", "credit_amount": "700", "metadata": {"ticket": "T-1"},
                "expand": ["refunds.refund"],
            }),
        )
        .await;
    assert!(cn["id"].as_str().unwrap().starts_with("cn_"));
    assert_eq!(cn["object"], "credit_note");
    assert_eq!(cn["type"], "post_payment");
    assert_eq!(cn["status"], "issued");
    assert_eq!(
        (
            cn["subtotal"].as_i64(),
            cn["discount_amount"].as_i64(),
            cn["total_excluding_tax"].as_i64(),
            cn["total"].as_i64(),
            cn["amount"].as_i64()
        ),
        (Some(2500), Some(250), Some(2250), Some(2700), Some(2700))
    );
    assert_eq!(cn["subtotal_excluding_tax"], 2500);
    assert_eq!(
        (
            cn["post_payment_amount"].as_i64(),
            cn["pre_payment_amount"].as_i64()
        ),
        (Some(2700), Some(0))
    );
    assert_eq!(cn["total_taxes"][0]["amount"], 450);
    assert_eq!(cn["total_taxes"][0]["taxable_amount"], 2250);
    assert_eq!(cn["total_taxes"][0]["tax_behavior"], "exclusive");
    assert_eq!(cn["discount_amounts"][0]["amount"], 250);
    assert_eq!(
        cn["number"],
        format!("{}-CN-01", inv["number"].as_str().unwrap())
    );
    assert_eq!(cn["currency"], "eur");
    assert_eq!(cn["customer"], cus["id"]);
    assert_eq!(cn["invoice"], inv["id"]);
    assert_eq!(cn["reason"], "order_change");
    assert_eq!(cn["memo"], "One seat fewer");
    assert_eq!(cn["metadata"]["ticket"], "T-1");
    assert!(cn["out_of_band_amount"].is_null());
    assert!(cn["voided_at"].is_null());
    assert!(cn["shipping_cost"].is_null());
    assert_eq!(cn["amount_shipping"], 0);
    assert_eq!(cn["pretax_credit_amounts"], json!([]));
    assert!(
        cn["pdf"]
            .as_str()
            .unwrap()
            .starts_with("https://pay.stripe.com/credit_notes/")
    );
    assert!(
        cn["customer_balance_transaction"]
            .as_str()
            .unwrap()
            .starts_with("cbtxn_")
    );
    assert!(
        cn.get("refund").is_none(),
        "basil+ has refunds[], not refund"
    );
    let refund = &cn["refunds"][0];
    assert_eq!(refund["amount_refunded"], 2000);
    assert_eq!(refund["type"], "refund");
    assert_eq!(refund["refund"]["object"], "refund");
    assert_eq!(refund["refund"]["amount"], 2000);
    let re_id = refund["refund"]["id"].as_str().unwrap().to_string();
    assert_eq!(cn["lines"]["object"], "list");
    assert_eq!(cn["lines"]["has_more"], false);
    assert_eq!(
        cn["lines"]["url"],
        format!("/v1/credit_notes/{}/lines", cn["id"].as_str().unwrap())
    );
    let line = &cn["lines"]["data"][0];
    assert!(line["id"].as_str().unwrap().starts_with("cnli_"));
    assert_eq!(line["object"], "credit_note_line_item");
    assert_eq!(line["type"], "invoice_line_item");
    assert_eq!(line["invoice_line_item"], json!(seats));
    assert_eq!(
        (
            line["amount"].as_i64(),
            line["quantity"].as_i64(),
            line["unit_amount"].as_i64(),
            line["discount_amount"].as_i64()
        ),
        (Some(2500), Some(1), Some(2500), Some(250))
    );
    assert_eq!(line["unit_amount_decimal"], "2500");
    assert_eq!(line["description"], "Seats");
    assert_eq!(line["taxes"][0]["amount"], 450);
    assert_eq!(line["tax_rates"][0]["object"], "tax_rate");
    assert!(line["tax_rates"][0].get("_pct_e4").is_none());
    assert_eq!(line["discount_amounts"][0]["amount"], 250);
    assert_eq!(line["pretax_credit_amounts"], json!([]));

    // The refund went out exactly as POST /v1/refunds makes one.
    let charge = c
        .get(
            &format!("/v1/refunds/{re_id}"),
            json!({"expand": ["charge", "balance_transaction"]}),
        )
        .await;
    assert_eq!(charge["charge"]["amount_refunded"], 2000);
    // 162.00 EUR settled as 174.96 USD; 20.00 EUR of it back at the same rate.
    assert_eq!(charge["balance_transaction"]["amount"], -2160);
    assert_eq!(charge["balance_transaction"]["currency"], "usd");
    assert_eq!(charge["balance_transaction"]["type"], "refund");
    // The rest is a customer balance credit.
    let customer = c.get(&format!("/v1/customers/{cus_id}"), json!({})).await;
    assert_eq!(customer["balance"], -700);
    let txns = c
        .get(
            &format!("/v1/customers/{cus_id}/balance_transactions"),
            json!({}),
        )
        .await;
    assert_eq!(txns["data"][0]["id"], cn["customer_balance_transaction"]);
    assert_eq!(txns["data"][0]["amount"], -700);
    assert_eq!(txns["data"][0]["ending_balance"], -700);
    assert_eq!(txns["data"][0]["type"], "credit_note");
    assert_eq!(txns["data"][0]["credit_note"], cn["id"]);
    let inv_now = c.get(&format!("/v1/invoices/{inv_id}"), json!({})).await;
    assert_eq!(inv_now["post_payment_credit_notes_amount"], 2700);
    assert_eq!(inv_now["pre_payment_credit_notes_amount"], 0);
    assert_eq!(inv_now["amount_paid"], 16200);
    assert_eq!(inv_now["status"], "paid");
    assert_eq!(
        sim.handle.event_types()[before..],
        [
            "charge.refunded",
            "refund.created",
            "credit_note.created",
            "customer.updated",
            "invoice.updated"
        ]
    );

    // The other seat, with nothing said about where it goes: the customer's balance.
    let cn2 = c
        .post(
            "/v1/credit_notes",
            json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}]}),
        )
        .await;
    assert_eq!(cn2["total"], 2700);
    assert_eq!(
        cn2["number"],
        format!("{}-CN-02", inv["number"].as_str().unwrap())
    );
    assert_eq!(cn2["refunds"], json!([]));
    let customer = c.get(&format!("/v1/customers/{cus_id}"), json!({})).await;
    assert_eq!(customer["balance"], -3400);

    // Nothing of the seats line is left, and it was credited by quantity.
    let (s, e) = post_err(&c, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}]})).await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("lines[0][quantity]"))
    );
    assert!(err_msg(&e).contains("(0)"), "{e}");
    let (s, e) = post_err(&c, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "amount": "100"}]})).await;
    assert_eq!(s, 400);
    assert!(err_msg(&e).contains("credited by quantity"), "{e}");

    // The sum of the allocations must be the total: 10.00 of Setup is 10.80 with its shares.
    let setup = line_id(&inv, 0);
    let (s, e) = post_err(&c, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": setup, "amount": "1000"}], "refund_amount": "100"})).await;
    assert_eq!(s, 400);
    assert_eq!(
        err_msg(&e),
        "The sum of credit amount, refund amount and out of band amount (€1.00) must equal the credit note amount (€10.80)."
    );
    let (s, e) = post_err(&c, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": setup, "amount": "1000"}], "refund_amount": "500", "out_of_band_amount": "1000"})).await;
    assert_eq!(s, 400, "{e}");
    let oob = c.post("/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": setup, "amount": "1000"}], "out_of_band_amount": "1080"})).await;
    assert_eq!(oob["out_of_band_amount"], 1080);
    assert!(oob["customer_balance_transaction"].is_null());
    assert_eq!(oob["lines"]["data"][0]["discount_amount"], 100);
    assert_eq!(oob["lines"]["data"][0]["taxes"][0]["amount"], 180);
    assert!(oob["lines"]["data"][0]["unit_amount"].is_null());

    // Never more than the invoice: 162.00 - 27.00 - 27.00 - 10.80 = 97.20 left.
    let (s, e) = post_err(&c, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "custom_line_item", "unit_amount": "9721", "description": "Goodwill"}]})).await;
    assert_eq!(s, 400);
    assert!(err_msg(&e).contains("(€97.20)"), "{e}");
    // Nor more than the charge still holds for a refund (162.00 - 20.00 = 142.00 ≥ 97.20: fine).
    let goodwill = c.post("/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "custom_line_item", "unit_amount": "1000", "quantity": "2", "description": "Goodwill", "metadata": {"k": "v"}}], "refund_amount": "2000"})).await;
    let gl = &goodwill["lines"]["data"][0];
    assert_eq!(gl["type"], "custom_line_item");
    assert!(gl.get("invoice_line_item").is_none());
    assert_eq!(
        (
            gl["unit_amount"].as_i64(),
            gl["quantity"].as_i64(),
            gl["amount"].as_i64()
        ),
        (Some(1000), Some(2), Some(2000))
    );
    assert_eq!(gl["metadata"]["k"], "v");
    assert_eq!(gl["description"], "Goodwill");

    // Lists.
    let list = c.get("/v1/credit_notes", json!({"invoice": inv_id})).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["url"], "/v1/credit_notes");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            goodwill["id"].as_str().unwrap(),
            oob["id"].as_str().unwrap(),
            cn2["id"].as_str().unwrap(),
            cn["id"].as_str().unwrap()
        ]
    );
    let page = c
        .get(
            "/v1/credit_notes",
            json!({"customer": cus_id, "limit": "1"}),
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["has_more"], true);
    let other = c
        .get("/v1/credit_notes", json!({"customer": "cus_other"}))
        .await;
    assert_eq!(other["data"], json!([]));
    let lines = c
        .get(
            &format!("/v1/credit_notes/{}/lines", cn["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(lines["data"][0]["id"], line["id"]);
    assert_eq!(
        lines["url"],
        format!("/v1/credit_notes/{}/lines", cn["id"].as_str().unwrap())
    );
    let (s, e, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/credit_notes/cn_nope",
            json!({}),
            None,
        )
        .await;
    assert_eq!((s, err_msg(&e)), (404, "No such credit note: 'cn_nope'"));

    // Update: memo and metadata only.
    let before = sim.handle.event_types().len();
    let cn_id = cn["id"].as_str().unwrap();
    let upd = c
        .post(
            &format!("/v1/credit_notes/{cn_id}"),
            json!({"memo": "Seat removed", "metadata": {"ticket": ""}}),
        )
        .await;
    assert_eq!(upd["memo"], "Seat removed");
    assert_eq!(upd["metadata"], json!({}));
    assert_eq!(sim.handle.event_types()[before..], ["credit_note.updated"]);
    let ev = c
        .get("/v1/events", json!({"type": "credit_note.updated"}))
        .await;
    assert_eq!(
        ev["data"][0]["data"]["previous_attributes"]["memo"],
        "One seat fewer"
    );
    let (s, e) = post_err(
        &c,
        &format!("/v1/credit_notes/{cn_id}"),
        json!({"reason": "duplicate"}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );

    // Void: refunded money cannot come back, a balance credit can.
    let (s, e) = post_err(&c, &format!("/v1/credit_notes/{cn_id}/void"), json!({})).await;
    assert_eq!(s, 400);
    assert_eq!(
        err_msg(&e),
        "You cannot void a credit note that has been refunded."
    );
    let before = sim.handle.event_types().len();
    let cn2_id = cn2["id"].as_str().unwrap();
    let voided = c
        .post(&format!("/v1/credit_notes/{cn2_id}/void"), json!({}))
        .await;
    assert_eq!(voided["status"], "void");
    assert!(voided["voided_at"].is_i64());
    assert_eq!(
        sim.handle.event_types()[before..],
        ["credit_note.voided", "customer.updated", "invoice.updated"]
    );
    let customer = c.get(&format!("/v1/customers/{cus_id}"), json!({})).await;
    assert_eq!(customer["balance"], -700);
    let inv_now = c.get(&format!("/v1/invoices/{inv_id}"), json!({})).await;
    assert_eq!(
        inv_now["post_payment_credit_notes_amount"],
        2700 + 1080 + 2000
    );
    let (s, e) = post_err(&c, &format!("/v1/credit_notes/{cn2_id}/void"), json!({})).await;
    assert_eq!(s, 400);
    assert!(err_msg(&e).contains("already been voided"), "{e}");
    // A voided credit note frees its line: the seat can be credited again.
    c.post(
        "/v1/credit_notes",
        json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}], "out_of_band_amount": "2700"}),
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn pre_payment_credit_note_lowers_what_is_due_and_can_settle_the_invoice() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cus = c.post("/v1/customers", json!({"payment_method": "pm_card_visa", "invoice_settings": {"default_payment_method": "pm_card_visa"}})).await;
    let inv = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "usd"}),
        )
        .await;
    let id = inv["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": id, "amount": "5000", "currency": "usd"}),
    )
    .await;
    let inv = c
        .post(
            &format!("/v1/invoices/{id}/finalize"),
            json!({"expand": ["payments"]}),
        )
        .await;
    let pi = inv["payments"]["data"][0]["payment"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_string();

    for (k, v) in [
        ("refund_amount", "1000"),
        ("credit_amount", "1000"),
        ("out_of_band_amount", "1000"),
    ] {
        let (s, e) = post_err(
            &c,
            "/v1/credit_notes",
            json!({"invoice": id, "amount": "1000", k: v}),
        )
        .await;
        assert_eq!((s, e["error"]["param"].as_str()), (400, Some(k)), "{e}");
    }
    let before = sim.handle.event_types().len();
    let cn = c
        .post("/v1/credit_notes", json!({"invoice": id, "amount": "2000"}))
        .await;
    assert_eq!(cn["type"], "pre_payment");
    assert_eq!(
        (
            cn["pre_payment_amount"].as_i64(),
            cn["post_payment_amount"].as_i64()
        ),
        (Some(2000), Some(0))
    );
    assert!(cn["customer_balance_transaction"].is_null());
    assert_eq!(cn["refunds"], json!([]));
    let l = &cn["lines"]["data"][0];
    assert_eq!(
        (
            l["type"].as_str(),
            l["amount"].as_i64(),
            l["unit_amount"].as_i64()
        ),
        (Some("custom_line_item"), Some(2000), Some(2000))
    );
    assert_eq!(
        sim.handle.event_types()[before..],
        ["credit_note.created", "invoice.updated"]
    );
    let ev = c
        .get("/v1/events", json!({"type": "invoice.updated"}))
        .await;
    let prev = &ev["data"][0]["data"]["previous_attributes"];
    assert_eq!(prev["amount_due"], 5000);
    assert_eq!(prev["pre_payment_credit_notes_amount"], 0);
    let now = c.get(&format!("/v1/invoices/{id}"), json!({})).await;
    assert_eq!(
        (
            now["status"].as_str(),
            now["amount_due"].as_i64(),
            now["amount_remaining"].as_i64(),
            now["pre_payment_credit_notes_amount"].as_i64(),
            now["total"].as_i64()
        ),
        (Some("open"), Some(3000), Some(3000), Some(2000), Some(5000))
    );
    let p = c.get(&format!("/v1/payment_intents/{pi}"), json!({})).await;
    assert_eq!(p["amount"], 3000);
    // Editing the invoice's metadata does not forget the credit.
    let now = c
        .post(
            &format!("/v1/invoices/{id}"),
            json!({"metadata": {"a": "b"}}),
        )
        .await;
    assert_eq!(now["amount_due"], 3000);

    // Voiding it puts the amount back due.
    let v = c
        .post(
            &format!("/v1/credit_notes/{}/void", cn["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(v["status"], "void");
    let now = c.get(&format!("/v1/invoices/{id}"), json!({})).await;
    assert_eq!(
        (
            now["amount_due"].as_i64(),
            now["amount_remaining"].as_i64(),
            now["pre_payment_credit_notes_amount"].as_i64()
        ),
        (Some(5000), Some(5000), Some(0))
    );
    let p = c.get(&format!("/v1/payment_intents/{pi}"), json!({})).await;
    assert_eq!(p["amount"], 5000);

    // A partial credit, then the customer pays the rest.
    c.post("/v1/credit_notes", json!({"invoice": id, "amount": "1500"}))
        .await;
    let paid = c.post(&format!("/v1/invoices/{id}/pay"), json!({})).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["amount_paid"], 3500);
    let p = c
        .get(
            &format!("/v1/payment_intents/{pi}"),
            json!({"expand": ["latest_charge"]}),
        )
        .await;
    assert_eq!(p["latest_charge"]["amount"], 3500);
    // Now paid: what is left (35.00) is post-payment; the invoice cannot be over-credited.
    let (s, e) = post_err(
        &c,
        "/v1/credit_notes",
        json!({"invoice": id, "amount": "3510"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(err_msg(&e).contains("($35.00)"), "{e}");
    let post = c
        .post(
            "/v1/credit_notes",
            json!({"invoice": id, "amount": "3500", "refund_amount": "3500"}),
        )
        .await;
    assert_eq!(post["type"], "post_payment");

    // A credit note covering everything still due settles the invoice.
    let inv2 = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "usd"}),
        )
        .await;
    let id2 = inv2["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": id2, "amount": "800", "currency": "usd"}),
    )
    .await;
    let inv2 = c
        .post(
            &format!("/v1/invoices/{id2}/finalize"),
            json!({"expand": ["payments"]}),
        )
        .await;
    let pi2 = inv2["payments"]["data"][0]["payment"]["payment_intent"]
        .as_str()
        .unwrap()
        .to_string();
    let before = sim.handle.event_types().len();
    let full = c
        .post(
            "/v1/credit_notes",
            json!({"invoice": id2, "lines": [{"type": "invoice_line_item", "invoice_line_item": line_id(&inv2, 0), "quantity": "1"}]}),
        )
        .await;
    assert_eq!(full["total"], 800);
    assert_eq!(
        sim.handle.event_types()[before..],
        ["credit_note.created", "invoice.updated", "invoice.paid"]
    );
    let now = c
        .get(
            &format!("/v1/invoices/{id2}"),
            json!({"expand": ["payments"]}),
        )
        .await;
    assert_eq!(
        (
            now["status"].as_str(),
            now["amount_due"].as_i64(),
            now["amount_paid"].as_i64(),
            now["amount_remaining"].as_i64()
        ),
        (Some("paid"), Some(0), Some(0), Some(0))
    );
    assert!(now["status_transitions"]["paid_at"].is_i64());
    assert_eq!(now["payments"]["data"][0]["status"], "canceled");
    let p = c
        .get(&format!("/v1/payment_intents/{pi2}"), json!({}))
        .await;
    assert_eq!(p["status"], "canceled");
    // Its invoice is no longer open: the credit note cannot be voided.
    let (s, e) = post_err(
        &c,
        &format!("/v1/credit_notes/{}/void", full["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(err_msg(&e).contains("is paid"), "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn credit_note_refusals() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cus = c.post("/v1/customers", json!({"payment_method": "pm_card_visa", "invoice_settings": {"default_payment_method": "pm_card_visa"}})).await;
    let draft = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "usd"}),
        )
        .await;
    let d = draft["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": d, "amount": "900", "currency": "usd"}),
    )
    .await;
    let (s, e) = post_err(
        &c,
        "/v1/credit_notes",
        json!({"invoice": d, "amount": "100"}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["param"], "invoice");
    assert_eq!(
        err_msg(&e),
        "You can only issue credit notes for open or paid invoices. This invoice is draft."
    );
    let opened = c
        .post(&format!("/v1/invoices/{d}/finalize"), json!({}))
        .await;
    c.post(&format!("/v1/invoices/{d}/void"), json!({})).await;
    let (s, e) = post_err(
        &c,
        "/v1/credit_notes",
        json!({"invoice": d, "amount": "100"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(err_msg(&e).ends_with("This invoice is void."), "{e}");
    let u = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "usd"}),
        )
        .await;
    let u = u["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": u, "amount": "900", "currency": "usd"}),
    )
    .await;
    c.post(&format!("/v1/invoices/{u}/finalize"), json!({}))
        .await;
    c.post(&format!("/v1/invoices/{u}/mark_uncollectible"), json!({}))
        .await;
    let (s, e) = post_err(
        &c,
        "/v1/credit_notes",
        json!({"invoice": u, "amount": "100"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        err_msg(&e).ends_with("This invoice is uncollectible."),
        "{e}"
    );

    let o = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "usd"}),
        )
        .await;
    let o = o["id"].as_str().unwrap();
    c.post("/v1/invoiceitems", json!({"customer": cus["id"], "invoice": o, "unit_amount_decimal": "300", "quantity": "3", "currency": "usd"})).await;
    let open = c
        .post(&format!("/v1/invoices/{o}/finalize"), json!({}))
        .await;
    let il = line_id(&open, 0);
    let other_line = line_id(&opened, 0);
    let cases: Vec<(Value, u16, Option<&str>, Option<&str>)> = vec![
        (
            json!({"amount": "100"}),
            400,
            Some("parameter_missing"),
            Some("invoice"),
        ),
        (
            json!({"invoice": "in_nope", "amount": "100"}),
            400,
            Some("resource_missing"),
            Some("invoice"),
        ),
        (json!({"invoice": o}), 400, None, None),
        (
            json!({"invoice": o, "amount": "100", "colour": "red"}),
            400,
            Some("parameter_unknown"),
            Some("colour"),
        ),
        // `refund` left the API at 2025-03-31.basil (refunds[] replaced it).
        (
            json!({"invoice": o, "amount": "100", "refund": "re_x"}),
            400,
            Some("parameter_unknown"),
            Some("refund"),
        ),
        (
            json!({"invoice": o, "amount": "100", "reason": "requested_by_customer"}),
            400,
            Some("parameter_invalid_string"),
            Some("reason"),
        ),
        (
            json!({"invoice": o, "amount": "0"}),
            400,
            Some("parameter_invalid_integer"),
            Some("amount"),
        ),
        (
            json!({"invoice": o, "amount": "901"}),
            400,
            None,
            Some("amount"),
        ),
        (
            json!({"invoice": o, "lines": [{"invoice_line_item": il, "quantity": "1"}]}),
            400,
            Some("parameter_missing"),
            Some("lines[0][type]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "discount", "amount": "1"}]}),
            400,
            Some("parameter_invalid_string"),
            Some("lines[0][type]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "quantity": "1", "colour": "red"}]}),
            400,
            Some("parameter_unknown"),
            Some("lines[0][colour]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "quantity": "1"}]}),
            400,
            Some("parameter_missing"),
            Some("lines[0][invoice_line_item]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": other_line, "quantity": "1"}]}),
            400,
            Some("resource_missing"),
            Some("lines[0][invoice_line_item]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": il}]}),
            400,
            None,
            Some("lines[0]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "quantity": "4"}]}),
            400,
            None,
            Some("lines[0][quantity]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "quantity": "0"}]}),
            400,
            Some("parameter_invalid_integer"),
            Some("lines[0][quantity]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "amount": "901"}]}),
            400,
            None,
            Some("lines[0][amount]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "unit_amount": "10", "quantity": "1"}]}),
            400,
            None,
            Some("lines[0][unit_amount]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "custom_line_item", "description": "x"}]}),
            400,
            Some("parameter_missing"),
            Some("lines[0][unit_amount]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "custom_line_item", "unit_amount": "10", "invoice_line_item": il}]}),
            400,
            None,
            Some("lines[0][invoice_line_item]"),
        ),
        (
            json!({"invoice": o, "lines": [{"type": "custom_line_item", "unit_amount": "10", "tax_rates": ["txr_nope"]}]}),
            400,
            Some("resource_missing"),
            Some("lines[0][tax_rates][0]"),
        ),
        // Two lines of one request count together: 2 + 2 of 3.
        (
            json!({"invoice": o, "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "quantity": "2"}, {"type": "invoice_line_item", "invoice_line_item": il, "quantity": "2"}]}),
            400,
            None,
            Some("lines[1][quantity]"),
        ),
        (
            json!({"invoice": o, "amount": "300", "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "quantity": "2"}]}),
            400,
            None,
            Some("amount"),
        ),
        (
            json!({"invoice": o, "amount": "100", "email_type": "sms"}),
            400,
            Some("parameter_invalid_string"),
            Some("email_type"),
        ),
    ];
    for (params, status, code, param) in cases {
        let (s, e) = post_err(&c, "/v1/credit_notes", params.clone()).await;
        assert_eq!(
            (s, e["error"]["code"].as_str(), e["error"]["param"].as_str()),
            (status, code, param),
            "{params} → {e}"
        );
    }
    let none = c.get("/v1/credit_notes", json!({})).await;
    assert_eq!(none["data"], json!([]), "a refused request leaves nothing");
    let (s, e) = post_err(&c, "/v1/credit_notes/cn_nope/void", json!({})).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("resource_missing"))
    );
    // Amount and lines together must agree.
    let both = c
        .post(
            "/v1/credit_notes",
            json!({"invoice": o, "amount": "600", "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "quantity": "2"}]}),
        )
        .await;
    assert_eq!(both["total"], 600);

    // Refund amounts: a charge to refund, no more than the charge holds, refunds on the charge
    // made directly count against what can be credited.
    let p = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "usd"}),
        )
        .await;
    let pid = p["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": pid, "amount": "1000", "currency": "usd"}),
    )
    .await;
    c.post(&format!("/v1/invoices/{pid}/finalize"), json!({}))
        .await;
    let paid = c
        .post(
            &format!("/v1/invoices/{pid}/pay"),
            json!({"expand": ["payments.data.payment.payment_intent"]}),
        )
        .await;
    let ch = paid["payments"]["data"][0]["payment"]["payment_intent"]["latest_charge"]
        .as_str()
        .unwrap()
        .to_string();
    c.post("/v1/refunds", json!({"charge": ch, "amount": "400"}))
        .await;
    let (s, e) = post_err(
        &c,
        "/v1/credit_notes",
        json!({"invoice": pid, "amount": "700", "credit_amount": "700"}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(err_msg(&e).contains("($6.00)"), "{e}");
    let oob = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "usd"}),
        )
        .await;
    let oid = oob["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": oid, "amount": "1000", "currency": "usd"}),
    )
    .await;
    c.post(&format!("/v1/invoices/{oid}/finalize"), json!({}))
        .await;
    c.post(
        &format!("/v1/invoices/{oid}/pay"),
        json!({"paid_out_of_band": "true"}),
    )
    .await;
    let (s, e) = post_err(
        &c,
        "/v1/credit_notes",
        json!({"invoice": oid, "amount": "500", "refund_amount": "500"}),
    )
    .await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("refund_amount"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn linked_refunds_and_older_versions() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (_, inv) = eur_invoice(&c, true).await;
    let inv_id = inv["id"].as_str().unwrap();
    let full = c
        .get(
            &format!("/v1/invoices/{inv_id}"),
            json!({"expand": ["payments.data.payment.payment_intent"]}),
        )
        .await;
    let ch = full["payments"]["data"][0]["payment"]["payment_intent"]["latest_charge"]
        .as_str()
        .unwrap()
        .to_string();
    let re = c
        .post("/v1/refunds", json!({"charge": ch, "amount": "2700"}))
        .await;
    let re_id = re["id"].as_str().unwrap();
    // basil+: link the refund with refunds[].
    let seats = line_id(&inv, 1);
    let cn = c
        .post(
            "/v1/credit_notes",
            json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}], "refunds": [{"refund": re_id}]}),
        )
        .await;
    assert_eq!(
        cn["refunds"],
        json!([{"amount_refunded": 2700, "payment_record_refund": null, "refund": re_id, "type": "refund"}])
    );
    let charge = c.get(&format!("/v1/charges/{ch}"), json!({})).await;
    assert_eq!(charge["amount_refunded"], 2700, "no second refund");
    // The same refund is used up.
    let (s, e) = post_err(&c, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}], "refunds": [{"refund": re_id}]})).await;
    assert_eq!(
        (s, e["error"]["param"].as_str()),
        (400, Some("refunds[0][refund]")),
        "{e}"
    );

    // 2024-06-20 (acacia): `refund` instead of refunds[], tax_amounts instead of taxes.
    let old = Client::new(&sim).with_version("2024-06-20");
    let re2 = c
        .post("/v1/refunds", json!({"charge": ch, "amount": "2700"}))
        .await;
    let (s, e) = post_err(&old, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}], "refunds": [{"refund": re2["id"]}]})).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    let cn2 = old
        .post(
            "/v1/credit_notes",
            json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": seats, "quantity": "1"}], "refund": re2["id"], "expand": ["refund"]}),
        )
        .await;
    assert_eq!(cn2["refund"]["id"], re2["id"]);
    assert!(cn2.get("refunds").is_none());
    assert!(cn2.get("total_taxes").is_none());
    assert_eq!(
        cn2["tax_amounts"],
        json!([{"amount": 450, "inclusive": false, "tax_rate": inv["total_taxes"][0]["tax_rate_details"]["tax_rate"], "taxability_reason": "not_available", "taxable_amount": 2250}])
    );
    let l = &cn2["lines"]["data"][0];
    assert!(l.get("taxes").is_none());
    assert_eq!(l["tax_amounts"][0]["amount"], 450);
    assert_eq!(l["amount_excluding_tax"], 2500);
    assert_eq!(l["unit_amount_excluding_tax"], "2500");
    let lines = old
        .get(
            &format!("/v1/credit_notes/{}/lines", cn2["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert!(lines["data"][0].get("tax_amounts").is_some());
    // The same credit note read in the current version.
    let now = c
        .get(
            &format!("/v1/credit_notes/{}", cn2["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(now["refunds"][0]["refund"], re2["id"]);
    assert!(now.get("refund").is_none());

    // Before 2019-12-03 what is not allocated goes out of band; since then it must be said.
    let setup = line_id(&inv, 0);
    let ancient = Client::new(&sim).with_version("2019-10-17");
    let cn3 = ancient
        .post(
            "/v1/credit_notes",
            json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": setup, "amount": "1000"}], "credit_amount": "80"}),
        )
        .await;
    assert_eq!(cn3["out_of_band_amount"], 1000);
    let (s, _) = post_err(&old, "/v1/credit_notes", json!({"invoice": inv_id, "lines": [{"type": "invoice_line_item", "invoice_line_item": setup, "amount": "1000"}], "credit_amount": "80"})).await;
    assert_eq!(s, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn shares_round_half_even_and_the_last_credit_takes_the_rest() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let cus = c.post("/v1/customers", json!({"payment_method": "pm_card_visa", "invoice_settings": {"default_payment_method": "pm_card_visa"}})).await;
    let vat = c
        .post(
            "/v1/tax_rates",
            json!({"display_name": "VAT", "percentage": "20", "inclusive": "false"}),
        )
        .await;
    // KWD moves in steps of 10: 3 × 0.410 = 1.230, VAT 0.246 → 0.250, total 1.480.
    let inv = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "kwd", "default_tax_rates": [vat["id"]]}),
        )
        .await;
    let id = inv["id"].as_str().unwrap();
    c.post("/v1/invoiceitems", json!({"customer": cus["id"], "invoice": id, "unit_amount_decimal": "410", "quantity": "3", "currency": "kwd"})).await;
    let inv = c
        .post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!(inv["total"], 1480);
    let il = line_id(&inv, 0);
    let mut taxes = Vec::new();
    let mut totals = 0;
    for _ in 0..3 {
        let cn = c
            .post(
                "/v1/credit_notes",
                json!({"invoice": id, "lines": [{"type": "invoice_line_item", "invoice_line_item": il, "quantity": "1"}]}),
            )
            .await;
        assert_eq!(cn["subtotal"], 410);
        taxes.push(cn["total_taxes"][0]["amount"].as_i64().unwrap());
        totals += cn["total"].as_i64().unwrap();
    }
    // 250 × 410 / 1230 = 83.3 → 80, twice; the last credit takes the 90 left.
    assert_eq!(taxes, [80, 80, 90]);
    assert_eq!(totals, 1480);
    let now = c.get(&format!("/v1/invoices/{id}"), json!({})).await;
    assert_eq!(
        (now["status"].as_str(), now["amount_due"].as_i64()),
        (Some("paid"), Some(0))
    );

    // A custom line taxed at its own (inclusive) rate; previews create nothing.
    let incl = c
        .post(
            "/v1/tax_rates",
            json!({"display_name": "GST", "percentage": "10", "inclusive": "true"}),
        )
        .await;
    let inv2 = c
        .post(
            "/v1/invoices",
            json!({"customer": cus["id"], "currency": "kwd"}),
        )
        .await;
    let id2 = inv2["id"].as_str().unwrap();
    c.post(
        "/v1/invoiceitems",
        json!({"customer": cus["id"], "invoice": id2, "amount": "5000", "currency": "kwd"}),
    )
    .await;
    c.post(&format!("/v1/invoices/{id2}/finalize"), json!({}))
        .await;
    let pv = c
        .get(
            "/v1/credit_notes/preview",
            json!({"invoice": id2, "lines": [{"type": "custom_line_item", "unit_amount": "1100", "description": "Goodwill", "tax_rates": [incl["id"]]}]}),
        )
        .await;
    assert_eq!(pv["object"], "credit_note");
    assert_eq!(pv["total"], 1100);
    assert_eq!(pv["total_taxes"][0]["amount"], 100);
    assert_eq!(pv["total_taxes"][0]["tax_behavior"], "inclusive");
    assert_eq!(pv["subtotal_excluding_tax"], 1000);
    assert_eq!(pv["total_excluding_tax"], 1000);
    let pl = c
        .get(
            "/v1/credit_notes/preview/lines",
            json!({"invoice": id2, "lines": [{"type": "custom_line_item", "unit_amount": "1100", "tax_rates": [incl["id"]]}], "limit": "1"}),
        )
        .await;
    assert_eq!(pl["data"][0]["amount"], 1100);
    assert_eq!(pl["url"], "/v1/credit_notes/preview/lines");
    let list = c.get("/v1/credit_notes", json!({"invoice": id2})).await;
    assert_eq!(list["data"], json!([]));
    let (s, _, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/credit_notes/preview",
            json!({"invoice": id2, "amount": "5010"}),
            None,
        )
        .await;
    assert_eq!(s, 400, "a preview refuses what a create would");
    sim.shutdown().await;
}

#[tokio::test]
async fn credit_notes_match_stripe_fixture_fields() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let (_, inv) = eur_invoice(&c, true).await;
    let cn = c
        .post(
            "/v1/credit_notes",
            json!({"invoice": inv["id"], "lines": [
                {"type": "invoice_line_item", "invoice_line_item": line_id(&inv, 0), "quantity": "1"},
                {"type": "custom_line_item", "unit_amount": "500", "description": "Service credit"},
            ], "refund_amount": "1000", "credit_amount": "10300"}),
        )
        .await;
    assert_eq!(cn["total"], 11300);
    assert_eq!(keys(&cn), fixture_keys("credit_note"));
    let lines = &cn["lines"]["data"];
    assert_eq!(keys(&lines[0]), fixture_keys("credit_note_line_item"));
    // A custom line has no `invoice_line_item` (as in the credit note fixture's second line).
    let mut custom = fixture_keys("credit_note_line_item");
    custom.remove("invoice_line_item");
    assert_eq!(keys(&lines[1]), custom);
    let txn = c
        .get(
            &format!("/v1/credit_notes/{}", cn["id"].as_str().unwrap()),
            json!({"expand": ["customer_balance_transaction"]}),
        )
        .await;
    let t = &txn["customer_balance_transaction"];
    assert_eq!(t["object"], "customer_balance_transaction");
    let want: std::collections::BTreeSet<String> = [
        "amount",
        "checkout_session",
        "created",
        "credit_note",
        "currency",
        "customer",
        "customer_account",
        "description",
        "ending_balance",
        "id",
        "invoice",
        "livemode",
        "metadata",
        "object",
        "type",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(keys(t), want);
    sim.shutdown().await;
}

#[tokio::test]
async fn previews_leave_the_id_sequence_alone() {
    let mut next = Vec::new();
    for preview in [false, true] {
        let sim = sim().await;
        let c = Client::new(&sim);
        let cus = c.post("/v1/customers", json!({})).await;
        let inv = c
            .post(
                "/v1/invoices",
                json!({"customer": cus["id"], "currency": "usd"}),
            )
            .await;
        let id = inv["id"].as_str().unwrap();
        c.post(
            "/v1/invoiceitems",
            json!({"customer": cus["id"], "invoice": id, "amount": "1000", "currency": "usd"}),
        )
        .await;
        c.post(&format!("/v1/invoices/{id}/finalize"), json!({}))
            .await;
        if preview {
            let pv = c
                .get(
                    "/v1/credit_notes/preview",
                    json!({"invoice": id, "amount": "100"}),
                )
                .await;
            assert!(pv["id"].as_str().unwrap().starts_with("cn_"));
        }
        let cn = c
            .post("/v1/credit_notes", json!({"invoice": id, "amount": "100"}))
            .await;
        next.push(cn["id"].as_str().unwrap().to_string());
        sim.shutdown().await;
    }
    assert_eq!(next[0], next[1]);
}
