//! Disputes (chargebacks and inquiries) and refunds that fail or stay pending: balance
//! transactions, events, and the requests Stripe refuses.

mod common;

use common::{Client, sim, sim_with};
use mlc_core::Currency;
use mlc_stripe_sim::SimConfig;
use serde_json::{Value, json};

/// A succeeded card charge (the charge object).
async fn charge(c: &Client, amount: &str, cur: &str) -> Value {
    let pi = c
        .post("/v1/payment_intents", json!({"amount": amount, "currency": cur, "payment_method": "pm_card_visa", "payment_method_types": ["card"], "confirm": "true"}))
        .await;
    assert_eq!(pi["status"], "succeeded");
    c.get(
        &format!("/v1/charges/{}", pi["latest_charge"].as_str().unwrap()),
        json!({}),
    )
    .await
}

/// POSTs a JSON body to a sim-only endpoint.
async fn post_json(c: &Client, path: &str, body: Value) -> (u16, Value) {
    let resp = c
        .http
        .post(format!("{}{path}", c.base))
        .bearer_auth(&c.key)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

async fn post_err(c: &Client, path: &str, params: Value) -> (u16, Value) {
    let (status, v, _) = c.send(reqwest::Method::POST, path, params, None).await;
    assert_ne!(status, 200, "POST {path} should be refused: {v}");
    (status, v)
}

/// Types of the events created since `skip` events existed, oldest first.
async fn event_types_after(c: &Client, skip: usize) -> Vec<String> {
    let page = c.get("/v1/events", json!({"limit": "100"})).await;
    let mut all: Vec<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    all.reverse();
    all.split_off(skip)
}

async fn event_count(c: &Client) -> usize {
    c.get("/v1/events", json!({"limit": "100"})).await["data"]
        .as_array()
        .unwrap()
        .len()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn chargeback_withdraws_amount_and_fee_and_a_win_reinstates_them() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let ch = charge(&c, "10000", "usd").await;
    let ch_id = id(&ch);
    let before = event_count(&c).await;

    let (status, dp) = post_json(
        &c,
        &format!("/_sim/charges/{ch_id}/dispute"),
        json!({"reason": "fraudulent"}),
    )
    .await;
    assert_eq!(status, 200, "{dp}");
    let dp_id = id(&dp);
    assert!(dp_id.starts_with("dp_"));
    assert_eq!(dp["object"], "dispute");
    assert_eq!(dp["amount"], 10000);
    assert_eq!(dp["currency"], "usd");
    assert_eq!(dp["charge"], ch_id.as_str());
    assert_eq!(dp["payment_intent"], ch["payment_intent"]);
    assert_eq!(dp["reason"], "fraudulent");
    assert_eq!(dp["status"], "needs_response");
    assert_eq!(dp["livemode"], false);
    assert_eq!(dp["metadata"], json!({}));
    assert_eq!(dp["is_charge_refundable"], false);
    assert!(dp["evidence"]["customer_name"].is_null());
    assert_eq!(dp["evidence_details"]["submission_count"], 0);
    assert_eq!(dp["evidence_details"]["has_evidence"], false);
    assert_eq!(
        dp["payment_method_details"]["card"]["case_type"],
        "chargeback"
    );
    // Stripe embeds the whole withdrawal transaction.
    let txns = dp["balance_transactions"].as_array().unwrap();
    assert_eq!(txns.len(), 1);
    let w = &txns[0];
    assert!(w["id"].as_str().unwrap().starts_with("txn_"));
    assert_eq!(w["object"], "balance_transaction");
    assert_eq!(w["type"], "adjustment");
    assert_eq!(w["reporting_category"], "dispute");
    assert_eq!(w["source"], dp_id.as_str());
    assert_eq!(
        (w["amount"].as_i64(), w["fee"].as_i64(), w["net"].as_i64()),
        (Some(-10000), Some(1500), Some(-11500))
    );
    assert_eq!(w["currency"], "usd");
    assert!(w["exchange_rate"].is_null());
    assert_eq!(
        w["fee_details"],
        json!([{"amount": 1500, "application": null, "currency": "usd", "description": "Dispute fee", "type": "stripe_fee"}])
    );
    assert_eq!(
        event_types_after(&c, before).await,
        ["charge.dispute.created", "charge.dispute.funds_withdrawn"]
    );
    let events = c
        .get("/v1/events", json!({"type": "charge.dispute.*"}))
        .await;
    assert!(
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["data"]["object"]["object"] == "dispute")
    );

    // The charge shows it; older API versions also name the dispute.
    let ch2 = c.get(&format!("/v1/charges/{ch_id}"), json!({})).await;
    assert_eq!(ch2["disputed"], true);
    assert!(ch2.get("dispute").is_none());
    let old = Client::new(&sim).with_version("2020-08-27");
    let ch3 = old.get(&format!("/v1/charges/{ch_id}"), json!({})).await;
    assert_eq!(ch3["dispute"], dp_id.as_str());

    // The balance transactions list finds it by source and type.
    let by_source = c
        .get("/v1/balance_transactions", json!({"source": dp_id}))
        .await;
    assert_eq!(by_source["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_source["data"][0]["id"], w["id"]);
    let adjustments = c
        .get("/v1/balance_transactions", json!({"type": "adjustment"}))
        .await;
    assert_eq!(adjustments["data"].as_array().unwrap().len(), 1);

    // A charged-back charge cannot be refunded, nor disputed again.
    let (status, err) = post_err(&c, "/v1/refunds", json!({"charge": ch_id})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "charge_disputed");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(
        err["error"]["message"],
        format!("Charge {ch_id} has been charged back; cannot issue a refund.")
    );
    let (status, err) = post_err(&c, &format!("/_sim/charges/{ch_id}/dispute"), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");

    // Evidence: staged, then submitted.
    let before = event_count(&c).await;
    let staged = c
        .post(
            &format!("/v1/disputes/{dp_id}"),
            json!({"evidence": {"customer_name": "Jenny Rosen", "product_description": "Pro Plan"}, "submit": "false", "metadata": {"case": "42"}}),
        )
        .await;
    assert_eq!(staged["status"], "needs_response");
    assert_eq!(staged["evidence"]["customer_name"], "Jenny Rosen");
    assert_eq!(staged["evidence_details"]["has_evidence"], true);
    assert_eq!(staged["evidence_details"]["submission_count"], 0);
    assert_eq!(staged["metadata"]["case"], "42");
    let updated = c
        .get(
            "/v1/events",
            json!({"type": "charge.dispute.updated", "limit": "1"}),
        )
        .await["data"][0]
        .clone();
    assert_eq!(
        updated["data"]["previous_attributes"]["metadata"],
        json!({"case": null})
    );
    let (status, err) = post_err(
        &c,
        &format!("/v1/disputes/{dp_id}"),
        json!({"evidence": {"receipt": "file_nope"}}),
    )
    .await;
    assert_eq!(
        (
            status,
            err["error"]["code"].as_str(),
            err["error"]["param"].as_str()
        ),
        (400, Some("resource_missing"), Some("evidence[receipt]"))
    );
    let (status, err) = post_err(
        &c,
        &format!("/v1/disputes/{dp_id}"),
        json!({"evidence": {"favourite_colour": "blue"}}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    let (status, _) = post_err(
        &c,
        &format!("/v1/disputes/{dp_id}"),
        json!({"outcome": "won"}),
    )
    .await;
    assert_eq!(status, 400);
    let submitted = c
        .post(
            &format!("/v1/disputes/{dp_id}"),
            json!({"evidence": {"uncategorized_text": "Delivered and used."}}),
        )
        .await;
    assert_eq!(
        submitted["status"], "under_review",
        "evidence submits by default"
    );
    assert_eq!(submitted["evidence_details"]["submission_count"], 1);
    assert_eq!(submitted["evidence"]["customer_name"], "Jenny Rosen");
    let (status, _) = post_err(
        &c,
        &format!("/v1/disputes/{dp_id}"),
        json!({"evidence": {"customer_name": "Someone Else"}}),
    )
    .await;
    assert_eq!(status, 400, "submitted evidence cannot change");
    assert_eq!(
        event_types_after(&c, before).await,
        ["charge.dispute.updated", "charge.dispute.updated"]
    );

    // The bank decides for the merchant and returns the fee.
    let before = event_count(&c).await;
    let (status, won) = post_json(
        &c,
        &format!("/_sim/disputes/{dp_id}/resolve"),
        json!({"outcome": "won", "fee_returned": true}),
    )
    .await;
    assert_eq!(status, 200, "{won}");
    assert_eq!(won["status"], "won");
    let txns = won["balance_transactions"].as_array().unwrap();
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[0]["id"], w["id"]);
    let r = &txns[1];
    assert_eq!(r["type"], "adjustment");
    assert_eq!(r["reporting_category"], "dispute_reversal");
    assert_eq!(r["source"], dp_id.as_str());
    assert_eq!(
        (r["amount"].as_i64(), r["fee"].as_i64(), r["net"].as_i64()),
        (Some(10000), Some(-1500), Some(11500))
    );
    assert_eq!(r["fee_details"][0]["amount"], -1500);
    assert_eq!(
        event_types_after(&c, before).await,
        ["charge.dispute.funds_reinstated", "charge.dispute.closed"]
    );
    let all = c
        .get("/v1/balance_transactions", json!({"source": dp_id}))
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);

    // Closed is final.
    let (status, _) = post_err(
        &c,
        &format!("/_sim/disputes/{dp_id}/resolve"),
        json!({"outcome": "lost"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, err) = post_err(&c, &format!("/v1/disputes/{dp_id}/close"), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_win_without_the_fee_and_a_loss_move_the_right_money() {
    let sim = sim().await;
    let c = Client::new(&sim);
    // 10.00 EUR settles as 10.80 USD at 1.08.
    let eur = charge(&c, "1000", "eur").await;
    let dp = c
        .post(
            &format!("/_sim/charges/{}/dispute", id(&eur)),
            json!({"reason": "product_not_received"}),
        )
        .await;
    let w = &dp["balance_transactions"][0];
    assert_eq!(dp["currency"], "eur");
    assert_eq!(dp["amount"], 1000);
    assert_eq!(w["currency"], "usd");
    assert_eq!(w["exchange_rate"].as_f64(), Some(1.08));
    assert_eq!(
        (w["amount"].as_i64(), w["fee"].as_i64(), w["net"].as_i64()),
        (Some(-1080), Some(1500), Some(-2580))
    );
    let won = c
        .post(
            &format!("/_sim/disputes/{}/resolve", id(&dp)),
            json!({"outcome": "won"}),
        )
        .await;
    let r = &won["balance_transactions"][1];
    assert_eq!(
        (r["amount"].as_i64(), r["fee"].as_i64(), r["net"].as_i64()),
        (Some(1080), Some(0), Some(1080))
    );
    assert_eq!(r["fee_details"], json!([]));
    assert_eq!(r["exchange_rate"].as_f64(), Some(1.08));

    let usd = charge(&c, "5000", "usd").await;
    let dp = c
        .post(
            &format!("/_sim/charges/{}/dispute", id(&usd)),
            json!({"amount": "2000"}),
        )
        .await;
    assert_eq!(dp["amount"], 2000);
    assert_eq!(dp["reason"], "general");
    let before = event_count(&c).await;
    let lost = c
        .post(
            &format!("/_sim/disputes/{}/resolve", id(&dp)),
            json!({"outcome": "lost"}),
        )
        .await;
    assert_eq!(lost["status"], "lost");
    assert_eq!(lost["balance_transactions"].as_array().unwrap().len(), 1);
    assert_eq!(
        event_types_after(&c, before).await,
        ["charge.dispute.closed"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dispute_fee_converts_for_another_settlement_currency() {
    let sim = sim_with(SimConfig {
        account_currency: Currency::EUR,
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    let ch = charge(&c, "10000", "usd").await;
    let dp = c
        .post(&format!("/_sim/charges/{}/dispute", id(&ch)), json!({}))
        .await;
    let w = &dp["balance_transactions"][0];
    let charge_txn = c
        .get(
            &format!(
                "/v1/balance_transactions/{}",
                ch["balance_transaction"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(w["currency"], "eur");
    assert_eq!(w["amount"], -charge_txn["amount"].as_i64().unwrap());
    assert_eq!(w["exchange_rate"], charge_txn["exchange_rate"]);
    // 15.00 USD in EUR at the sim's fixed 1.08.
    assert_eq!(w["fee"], 1389);
    assert_eq!(w["fee_details"][0]["currency"], "eur");
    assert_eq!(
        w["net"].as_i64(),
        Some(w["amount"].as_i64().unwrap() - 1389)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn close_accepts_a_chargeback_and_an_inquiry_moves_no_money() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let ch = charge(&c, "3000", "usd").await;
    let dp = c
        .post(
            &format!("/_sim/charges/{}/dispute", id(&ch)),
            json!({"reason": "duplicate"}),
        )
        .await;
    let dp_id = id(&dp);
    let before = event_count(&c).await;
    let closed = c
        .post(&format!("/v1/disputes/{dp_id}/close"), json!({}))
        .await;
    assert_eq!(closed["status"], "lost");
    assert_eq!(closed["balance_transactions"].as_array().unwrap().len(), 1);
    assert_eq!(
        event_types_after(&c, before).await,
        ["charge.dispute.closed"]
    );
    let (status, err) = post_err(&c, &format!("/v1/disputes/{dp_id}/close"), json!({})).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already closed")
    );
    let (status, _) = post_err(
        &c,
        &format!("/v1/disputes/{dp_id}"),
        json!({"evidence": {"customer_name": "Late"}}),
    )
    .await;
    assert_eq!(status, 400, "a closed dispute takes no evidence");
    // Metadata can still change.
    let m = c
        .post(
            &format!("/v1/disputes/{dp_id}"),
            json!({"metadata": {"note": "accepted"}}),
        )
        .await;
    assert_eq!(m["metadata"]["note"], "accepted");

    // An inquiry: nothing withdrawn, the charge stays refundable, and it closes as a warning.
    let ch = charge(&c, "4000", "usd").await;
    let before = event_count(&c).await;
    let (status, inq) = post_json(
        &c,
        &format!("/_sim/charges/{}/dispute", id(&ch)),
        json!({"reason": "fraudulent", "inquiry": true}),
    )
    .await;
    assert_eq!(status, 200, "{inq}");
    assert_eq!(inq["status"], "warning_needs_response");
    assert_eq!(inq["balance_transactions"], json!([]));
    assert_eq!(inq["is_charge_refundable"], true);
    assert_eq!(
        inq["payment_method_details"]["card"]["case_type"],
        "inquiry"
    );
    assert_eq!(
        event_types_after(&c, before).await,
        ["charge.dispute.created"]
    );
    let re = c
        .post("/v1/refunds", json!({"charge": ch["id"], "amount": "1000"}))
        .await;
    assert_eq!(re["status"], "succeeded");
    let submitted = c
        .post(
            &format!("/v1/disputes/{}", id(&inq)),
            json!({"evidence": {"customer_name": "Jenny"}}),
        )
        .await;
    assert_eq!(submitted["status"], "warning_under_review");
    let before = event_count(&c).await;
    let done = c
        .post(
            &format!("/_sim/disputes/{}/resolve", id(&inq)),
            json!({"outcome": "won"}),
        )
        .await;
    assert_eq!(done["status"], "warning_closed");
    assert_eq!(done["balance_transactions"], json!([]));
    assert_eq!(
        event_types_after(&c, before).await,
        ["charge.dispute.closed"]
    );
    let adjustments = c
        .get("/v1/balance_transactions", json!({"type": "adjustment"}))
        .await;
    assert_eq!(
        adjustments["data"].as_array().unwrap().len(),
        1,
        "only the chargeback"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dispute_refusals_lists_and_paging() {
    let sim = sim().await;
    let c = Client::new(&sim);

    // A declined charge cannot be disputed.
    let (status, err, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/payment_intents",
            json!({"amount": "1000", "currency": "usd", "payment_method": "pm_card_chargeDeclined", "payment_method_types": ["card"], "confirm": "true"}),
            None,
        )
        .await;
    assert_eq!(status, 402);
    let failed = err["error"]["charge"].as_str().unwrap();
    let (status, err) = post_err(&c, &format!("/_sim/charges/{failed}/dispute"), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let (status, err) = post_err(&c, "/_sim/charges/ch_nope/dispute", json!({})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("resource_missing"))
    );

    // The default amount is what was captured and not refunded; more is refused.
    let a = charge(&c, "5000", "usd").await;
    c.post("/v1/refunds", json!({"charge": a["id"], "amount": "1500"}))
        .await;
    let path = format!("/_sim/charges/{}/dispute", id(&a));
    let (status, err) = post_err(&c, &path, json!({"amount": "3510"})).await;
    assert_eq!(
        (
            status,
            err["error"]["code"].as_str(),
            err["error"]["param"].as_str()
        ),
        (400, Some("amount_too_large"), Some("amount"))
    );
    let (status, err) = post_err(&c, &path, json!({"reason": "because"})).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("reason"))
    );
    let (status, err) = post_err(&c, &path, json!({"colour": "blue"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    let (status, _) = post_err(&c, &path, json!({"amount": "0"})).await;
    assert_eq!(status, 400);
    let (status, err) = post_json(&c, &path, json!({"inquiry": "maybe"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_invalid_boolean"))
    );
    let da = c.post(&path, json!({})).await;
    assert_eq!(da["amount"], 3500);
    assert_eq!(da["balance_transactions"][0]["amount"], -3500);

    // A fully refunded charge has nothing left to dispute.
    let b = charge(&c, "2000", "usd").await;
    c.post("/v1/refunds", json!({"charge": b["id"]})).await;
    let (status, _) = post_err(&c, &format!("/_sim/charges/{}/dispute", id(&b)), json!({})).await;
    assert_eq!(status, 400);

    let d = charge(&c, "2500", "usd").await;
    let db = c
        .post(&format!("/_sim/charges/{}/dispute", id(&d)), json!({}))
        .await;

    // Resolve needs a valid outcome.
    let (status, err) = post_err(
        &c,
        &format!("/_sim/disputes/{}/resolve", id(&db)),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_missing"))
    );
    let (status, _) = post_err(
        &c,
        &format!("/_sim/disputes/{}/resolve", id(&db)),
        json!({"outcome": "draw"}),
    )
    .await;
    assert_eq!(status, 400);

    // Retrieve, list, filters, paging.
    let (status, err, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/disputes/dp_nope",
            json!({}),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["message"], "No such dispute: 'dp_nope'");
    let got = c.get(&format!("/v1/disputes/{}", id(&da)), json!({})).await;
    assert_eq!(got["id"], da["id"]);
    assert_eq!(
        got["balance_transactions"][0]["object"],
        "balance_transaction"
    );
    let all = c.get("/v1/disputes", json!({})).await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [db["id"].as_str().unwrap(), da["id"].as_str().unwrap()]
    );
    let by_charge = c.get("/v1/disputes", json!({"charge": a["id"]})).await;
    assert_eq!(by_charge["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_charge["data"][0]["id"], da["id"]);
    let by_pi = c
        .get(
            "/v1/disputes",
            json!({"payment_intent": d["payment_intent"]}),
        )
        .await;
    assert_eq!(by_pi["data"][0]["id"], db["id"]);
    let first = c.get("/v1/disputes", json!({"limit": "1"})).await;
    assert_eq!(first["has_more"], true);
    assert_eq!(first["url"], "/v1/disputes");
    let second = c
        .get(
            "/v1/disputes",
            json!({"limit": "1", "starting_after": first["data"][0]["id"]}),
        )
        .await;
    assert_eq!(second["data"][0]["id"], da["id"]);
    assert_eq!(second["has_more"], false);
    let future = c
        .get(
            "/v1/disputes",
            json!({"created": {"gt": (da["created"].as_i64().unwrap() + 3600).to_string()}}),
        )
        .await;
    assert_eq!(future["data"], json!([]));
    let (status, err, _) = c
        .send(
            reqwest::Method::GET,
            "/v1/disputes",
            json!({"status": "lost"}),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    let (status, _, _) = c
        .send(
            reqwest::Method::POST,
            "/v1/disputes",
            json!({"charge": a["id"]}),
            None,
        )
        .await;
    assert_eq!(status, 404, "disputes are not created through the API");
    let expanded = c
        .get(
            &format!("/v1/disputes/{}", id(&da)),
            json!({"expand": ["charge"]}),
        )
        .await;
    assert_eq!(expanded["charge"]["disputed"], true);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_refund_returns_the_money_and_frees_the_charge() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let eur = charge(&c, "5000", "eur").await;
    let ch_id = id(&eur);
    let re = c
        .post(
            "/v1/refunds",
            json!({"charge": ch_id, "amount": "2000", "expand": ["balance_transaction"]}),
        )
        .await;
    let re_id = id(&re);
    // 20.00 EUR of a 50.00 EUR charge settled as 54.00 USD.
    assert_eq!(re["balance_transaction"]["amount"], -2160);
    let before = event_count(&c).await;
    let failed = c
        .post(
            &format!("/_sim/refunds/{re_id}/fail"),
            json!({"expand": ["failure_balance_transaction"]}),
        )
        .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure_reason"], "lost_or_stolen_card");
    assert_eq!(
        failed["balance_transaction"],
        re["balance_transaction"]["id"]
    );
    let f = &failed["failure_balance_transaction"];
    assert!(f["id"].as_str().unwrap().starts_with("txn_"));
    assert_eq!(f["type"], "refund_failure");
    assert_eq!(f["reporting_category"], "refund_failure");
    assert_eq!(f["source"], re_id.as_str());
    assert_eq!(
        (f["amount"].as_i64(), f["fee"].as_i64(), f["net"].as_i64()),
        (Some(2160), Some(0), Some(2160))
    );
    assert_eq!(f["currency"], "usd");
    assert_eq!(f["exchange_rate"].as_f64(), Some(1.08));
    assert_eq!(
        event_types_after(&c, before).await,
        ["refund.failed", "refund.updated", "charge.refund.updated"]
    );
    let updated = c
        .get(
            "/v1/events",
            json!({"type": "charge.refund.updated", "limit": "1"}),
        )
        .await["data"][0]
        .clone();
    assert_eq!(updated["data"]["object"]["object"], "refund");
    assert_eq!(
        updated["data"]["previous_attributes"]["status"],
        "succeeded"
    );
    let ch = c.get(&format!("/v1/charges/{ch_id}"), json!({})).await;
    assert_eq!(ch["amount_refunded"], 0);
    assert_eq!(ch["refunded"], false);
    let by_type = c
        .get(
            "/v1/balance_transactions",
            json!({"type": "refund_failure"}),
        )
        .await;
    assert_eq!(by_type["data"].as_array().unwrap().len(), 1);
    let by_source = c
        .get("/v1/balance_transactions", json!({"source": re_id}))
        .await;
    assert_eq!(by_source["data"].as_array().unwrap().len(), 2);

    // Only a succeeded or pending refund can fail.
    let (status, err) = post_err(&c, &format!("/_sim/refunds/{re_id}/fail"), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let (status, _) = post_err(&c, "/_sim/refunds/re_nope/fail", json!({})).await;
    assert_eq!(status, 404);

    // The whole charge is refundable again; a full refund that fails recomputes `refunded`.
    let full = c.post("/v1/refunds", json!({"charge": ch_id})).await;
    assert_eq!(full["amount"], 5000);
    let ch = c.get(&format!("/v1/charges/{ch_id}"), json!({})).await;
    assert_eq!(
        (ch["amount_refunded"].as_i64(), ch["refunded"].as_bool()),
        (Some(5000), Some(true))
    );
    c.post(&format!("/_sim/refunds/{}/fail", id(&full)), json!({}))
        .await;
    let ch = c.get(&format!("/v1/charges/{ch_id}"), json!({})).await;
    assert_eq!(
        (ch["amount_refunded"].as_i64(), ch["refunded"].as_bool()),
        (Some(0), Some(false))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn pending_refunds_succeed_or_fail_later() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let ch = charge(&c, "6000", "usd").await;
    let ch_id = id(&ch);
    let re = c
        .post(
            "/v1/refunds",
            json!({"charge": ch_id, "amount": "1000", "metadata": {"sim_status": "pending"}}),
        )
        .await;
    assert_eq!(re["status"], "pending");
    assert_eq!(re["pending_reason"], "processing");
    // Stripe moves the balance when a pending refund is made.
    let t = c
        .get(
            &format!(
                "/v1/balance_transactions/{}",
                re["balance_transaction"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(t["amount"], -1000);
    let ch2 = c.get(&format!("/v1/charges/{ch_id}"), json!({})).await;
    assert_eq!(ch2["amount_refunded"], 1000);

    let before = event_count(&c).await;
    let ok = c
        .post(&format!("/_sim/refunds/{}/succeed", id(&re)), json!({}))
        .await;
    assert_eq!(ok["status"], "succeeded");
    assert!(ok.get("pending_reason").is_none());
    assert_eq!(
        event_types_after(&c, before).await,
        ["refund.updated", "charge.refund.updated"]
    );
    let (status, err) =
        post_err(&c, &format!("/_sim/refunds/{}/succeed", id(&re)), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");

    let pending = c
        .post(
            "/v1/refunds",
            json!({"charge": ch_id, "amount": "2000", "metadata": {"sim_status": "pending"}}),
        )
        .await;
    let failed = c
        .post(&format!("/_sim/refunds/{}/fail", id(&pending)), json!({}))
        .await;
    assert_eq!(failed["status"], "failed");
    assert!(failed.get("pending_reason").is_none());
    let (status, _) = post_err(
        &c,
        &format!("/_sim/refunds/{}/succeed", id(&pending)),
        json!({}),
    )
    .await;
    assert_eq!(status, 400, "a failed refund cannot succeed");
    let ch3 = c.get(&format!("/v1/charges/{ch_id}"), json!({})).await;
    assert_eq!(ch3["amount_refunded"], 1000);
    sim.shutdown().await;
}
