//! Payouts: automatic payouts of everything not yet paid out and the `?payout=` balance
//! transaction list, paid / failed payouts, manual (standard and instant) payouts drawn on the
//! available balance, the balance, and the requests Stripe refuses.

mod common;

use common::{Client, sim, sim_with};
use mlc_core::Currency;
use mlc_stripe_sim::{ScenarioConfig, SimConfig, StripeSim, run_scenario};
use serde_json::{Value, json};

/// A succeeded card charge (the charge object, its balance transaction expanded).
async fn charge(c: &Client, amount: &str, cur: &str) -> Value {
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

async fn get_err(c: &Client, path: &str, params: Value) -> (u16, Value) {
    let (status, v, _) = c.send(reqwest::Method::GET, path, params, None).await;
    assert_ne!(status, 200, "GET {path} should be refused: {v}");
    (status, v)
}

/// Runs automatic payouts; returns the payouts made (newest first).
async fn run_payouts(c: &Client, body: Value) -> Vec<Value> {
    let (status, v) = post_json(c, "/_sim/payouts/run", body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "list");
    v["data"].as_array().unwrap().clone()
}

/// Types of the events created since `skip` events existed, oldest first.
async fn event_types_after(c: &Client, skip: usize) -> Vec<String> {
    let mut all = events(c).await;
    all.reverse();
    all.split_off(skip)
        .into_iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

async fn events(c: &Client) -> Vec<Value> {
    c.get("/v1/events", json!({"limit": "100"})).await["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn event_count(c: &Client) -> usize {
    events(c).await.len()
}

/// Every balance transaction of `GET /v1/balance_transactions?payout=…`, paged 2 at a time.
async fn payout_txns(c: &Client, po: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = json!({"payout": po, "limit": "2"});
        if let Some(a) = &after {
            q["starting_after"] = json!(a);
        }
        let page = c.get("/v1/balance_transactions", q).await;
        let data = page["data"].as_array().unwrap().clone();
        after = data.last().map(id);
        out.extend(data);
        if page["has_more"] != json!(true) {
            break;
        }
    }
    out
}

/// (available, pending) of the balance in a currency.
async fn balance(c: &Client, cur: &str) -> (i64, i64) {
    let b = c.get("/v1/balance", json!({})).await;
    assert_eq!(b["object"], "balance");
    let pick = |side: &str| {
        b[side]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["currency"] == cur)
            .map(|x| x["amount"].as_i64().unwrap())
            .unwrap_or(0)
    };
    (pick("available"), pick("pending"))
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn net(t: &Value) -> i64 {
    t["net"].as_i64().unwrap()
}

#[tokio::test]
async fn an_automatic_payout_covers_everything_not_yet_paid_out() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let a = charge(&c, "10000", "usd").await;
    let b = charge(&c, "5000", "usd").await;
    let d = charge(&c, "3000", "usd").await;
    // A refund of part of one charge and a chargeback on another lower what is paid out.
    let re = c
        .post("/v1/refunds", json!({"charge": id(&b), "amount": "2000"}))
        .await;
    let (status, dp) = post_json(&c, &format!("/_sim/charges/{}/dispute", id(&d)), json!({})).await;
    assert_eq!(status, 200, "{dp}");
    let expected: i64 = net(&a["balance_transaction"])
        + net(&b["balance_transaction"])
        + net(&d["balance_transaction"])
        - 2000
        + net(&dp["balance_transactions"][0]);
    assert_eq!(expected, 9680 + 4825 + 2883 - 2000 - 4500);
    // Nothing is available yet (funds are pending for two days); nothing has been paid out.
    assert_eq!(balance(&c, "usd").await, (0, expected));

    let before = event_count(&c).await;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let made = run_payouts(&c, json!({"arrival_in_days": 3})).await;
    assert_eq!(made.len(), 1, "one payout per settlement currency");
    let po = &made[0];
    let po_id = id(po);
    assert!(po_id.starts_with("po_"));
    assert_eq!(po["object"], "payout");
    assert_eq!(po["amount"], expected);
    assert_eq!(po["currency"], "usd");
    assert_eq!(po["automatic"], true);
    assert_eq!(po["method"], "standard");
    assert_eq!(po["type"], "bank_account");
    assert_eq!(po["source_type"], "card");
    assert_eq!(po["status"], "pending");
    assert_eq!(po["reconciliation_status"], "in_progress");
    assert_eq!(po["description"], "STRIPE PAYOUT");
    assert_eq!(po["livemode"], false);
    assert_eq!(po["metadata"], json!({}));
    let dest = po["destination"].as_str().unwrap();
    assert!(dest.starts_with("ba_"), "{dest}");
    for k in [
        "application_fee",
        "application_fee_amount",
        "failure_balance_transaction",
        "failure_code",
        "failure_message",
        "original_payout",
        "reversed_by",
        "statement_descriptor",
        "payout_method",
    ] {
        assert!(po[k].is_null(), "{k} is null: {}", po[k]);
    }
    assert_eq!(po["trace_id"], json!({"status": "pending", "value": null}));
    let created = po["created"].as_i64().unwrap();
    assert!((created - t0).abs() < 5);
    assert_eq!(po["arrival_date"].as_i64().unwrap(), created + 3 * 86_400);
    assert_eq!(event_types_after(&c, before).await, ["payout.created"]);
    let ev = &events(&c).await[0];
    assert_eq!(ev["data"]["object"]["id"], po_id.as_str());
    assert!(
        ev["request"]["id"].is_null(),
        "Stripe made it: {}",
        ev["request"]
    );

    // Its own balance transaction.
    let own_id = po["balance_transaction"].as_str().unwrap().to_string();
    let own = c
        .get(&format!("/v1/balance_transactions/{own_id}"), json!({}))
        .await;
    assert_eq!(own["type"], "payout");
    assert_eq!(own["reporting_category"], "payout");
    assert_eq!(own["amount"], -expected);
    assert_eq!((own["fee"].as_i64(), net(&own)), (Some(0), -expected));
    assert_eq!(own["source"], po_id.as_str());
    assert_eq!(own["currency"], "usd");
    assert!(own.get("payout").is_none(), "Stripe shows no payout field");

    // `?payout=` lists what it covered plus its own transaction; the covered nets add up to the
    // payout's amount.
    let listed = payout_txns(&c, &po_id).await;
    let ids: Vec<String> = listed.iter().map(id).collect();
    assert_eq!(listed.len(), 6, "{ids:?}");
    assert_eq!(ids[0], own_id, "newest first: the payout's own transaction");
    let covered: Vec<&Value> = listed.iter().filter(|t| id(t) != own_id).collect();
    assert_eq!(covered.iter().map(|t| net(t)).sum::<i64>(), expected);
    assert_eq!(listed.iter().map(net).sum::<i64>(), 0);
    for t in [
        &a["balance_transaction"],
        &b["balance_transaction"],
        &d["balance_transaction"],
    ] {
        assert!(ids.contains(&id(t)));
    }
    assert!(ids.contains(&re["balance_transaction"].as_str().unwrap().to_string()));
    assert!(ids.contains(&id(&dp["balance_transactions"][0])));
    for t in &covered {
        assert_eq!(t["status"], "available", "paid out funds were available");
        assert!(t.get("payout").is_none());
    }
    // The filter combines with the others.
    let charges_only = c
        .get(
            "/v1/balance_transactions",
            json!({"payout": po_id, "type": "charge", "limit": "100"}),
        )
        .await;
    assert_eq!(charges_only["data"].as_array().unwrap().len(), 3);
    let by_source = c
        .get("/v1/balance_transactions", json!({"source": po_id}))
        .await;
    assert_eq!(by_source["data"][0]["id"], own_id.as_str());
    // Everything is paid out: the balance is empty.
    assert_eq!(balance(&c, "usd").await, (0, 0));

    // The payout expands to its transaction and its bank account.
    let full = c
        .get(
            &format!("/v1/payouts/{po_id}"),
            json!({"expand": ["balance_transaction", "destination"]}),
        )
        .await;
    assert_eq!(full["balance_transaction"]["id"], own_id.as_str());
    assert_eq!(full["destination"]["object"], "bank_account");
    assert_eq!(full["destination"]["currency"], "usd");

    // A second run has nothing to pay; a new charge is paid out alone by the next.
    assert!(run_payouts(&c, json!({})).await.is_empty());
    let e = charge(&c, "2000", "usd").await;
    let made = run_payouts(&c, json!({"currency": "usd"})).await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["amount"], net(&e["balance_transaction"]));
    assert_eq!(
        made[0]["arrival_date"].as_i64().unwrap(),
        made[0]["created"].as_i64().unwrap() + 2 * 86_400,
        "two days by default"
    );
    let second = payout_txns(&c, &id(&made[0])).await;
    assert_eq!(second.len(), 2);
    assert_eq!(second[1]["id"], e["balance_transaction"]["id"]);
    // The first payout's list did not change.
    assert_eq!(payout_txns(&c, &po_id).await.len(), 6);
    // Another currency has nothing to pay out.
    assert!(run_payouts(&c, json!({"currency": "eur"})).await.is_empty());
}

#[tokio::test]
async fn paid_then_reconciled_and_failed_payouts_return_the_money() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let ch = charge(&c, "10000", "usd").await;
    let amount = net(&ch["balance_transaction"]);
    let po = run_payouts(&c, json!({})).await.remove(0);
    let po_id = id(&po);

    let before = event_count(&c).await;
    let (status, paid) = post_json(&c, &format!("/_sim/payouts/{po_id}/paid"), json!({})).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["reconciliation_status"], "completed");
    assert_eq!(paid["trace_id"]["status"], "supported");
    assert_eq!(
        event_types_after(&c, before).await,
        ["payout.paid", "payout.reconciliation_completed"]
    );
    let evs = events(&c).await;
    assert_eq!(evs[1]["data"]["object"]["status"], "paid");
    assert_eq!(
        evs[1]["data"]["object"]["reconciliation_status"],
        "in_progress"
    );
    assert_eq!(
        evs[0]["data"]["object"]["reconciliation_status"],
        "completed"
    );
    // Only a pending or in-transit payout can be paid.
    let (status, err) = post_err(&c, &format!("/_sim/payouts/{po_id}/paid"), json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");

    // The bank returns it.
    let (status, err) = post_err(
        &c,
        &format!("/_sim/payouts/{po_id}/fail"),
        json!({"failure_code": "not_a_code"}),
    )
    .await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("failure_code"))
    );
    let before = event_count(&c).await;
    let (status, failed) = post_json(
        &c,
        &format!("/_sim/payouts/{po_id}/fail"),
        json!({"expand": ["failure_balance_transaction"]}),
    )
    .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure_code"], "account_closed");
    assert_eq!(
        failed["failure_message"],
        "The bank account has been closed."
    );
    assert_eq!(failed["reconciliation_status"], "completed");
    let back = &failed["failure_balance_transaction"];
    assert_eq!(back["type"], "payout_failure");
    assert_eq!(back["reporting_category"], "payout_reversal");
    assert_eq!((back["amount"].as_i64(), net(back)), (Some(amount), amount));
    assert_eq!(back["source"], po_id.as_str());
    assert_eq!(
        event_types_after(&c, before).await,
        ["payout.failed", "payout.updated"]
    );
    let updated = &events(&c).await[0];
    assert_eq!(updated["data"]["previous_attributes"]["status"], "paid");
    // The money is back and available; the failed payout's list is unchanged.
    assert_eq!(balance(&c, "usd").await, (amount, 0));
    assert_eq!(payout_txns(&c, &po_id).await.len(), 2);
    let (status, _) = post_err(&c, &format!("/_sim/payouts/{po_id}/fail"), json!({})).await;
    assert_eq!(status, 400, "a failed payout cannot fail again");
    let (status, _) = post_err(&c, &format!("/_sim/payouts/{po_id}/paid"), json!({})).await;
    assert_eq!(status, 400, "nor be paid");

    // The next run pays the returned amount again, covering the failure transaction.
    let again = run_payouts(&c, json!({})).await.remove(0);
    assert_eq!(again["amount"], amount);
    let listed = payout_txns(&c, &id(&again)).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], back["id"]);

    // A pending payout can fail too (with another code).
    let (status, failed) = post_json(
        &c,
        &format!("/_sim/payouts/{}/fail", id(&again)),
        json!({"failure_code": "no_account"}),
    )
    .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["failure_code"], "no_account");
    assert_eq!(failed["reconciliation_status"], "in_progress");

    let (status, err) = post_err(&c, "/_sim/payouts/po_nope/paid", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["message"], "No such payout: 'po_nope'");
}

#[tokio::test]
async fn a_negative_balance_is_not_paid_out() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let ch = charge(&c, "10000", "usd").await;
    let first = run_payouts(&c, json!({})).await.remove(0);
    post_json(&c, &format!("/_sim/payouts/{}/paid", id(&first)), json!({})).await;
    // Refunded after it was paid out: the balance is negative, and nothing is paid.
    c.post("/v1/refunds", json!({"charge": id(&ch)})).await;
    assert_eq!(balance(&c, "usd").await, (0, -10000));
    assert!(run_payouts(&c, json!({})).await.is_empty());
    // A later sale makes it positive again: one payout covers both.
    let next = charge(&c, "20000", "usd").await;
    let po = run_payouts(&c, json!({})).await.remove(0);
    assert_eq!(po["amount"], net(&next["balance_transaction"]) - 10000);
    let listed = payout_txns(&c, &id(&po)).await;
    assert_eq!(listed.len(), 3);
    let covered: i64 = listed
        .iter()
        .filter(|t| t["type"] != "payout")
        .map(net)
        .sum();
    assert_eq!(po["amount"].as_i64(), Some(covered));

    // Refusals of the run itself.
    let (status, err) = post_json(&c, "/_sim/payouts/run", json!({"currency": "xyz"})).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("currency"))
    );
    let (status, err) = post_json(&c, "/_sim/payouts/run", json!({"arrival_in_days": -1})).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("arrival_in_days"))
    );
    let (status, err) = post_json(&c, "/_sim/payouts/run", json!({"amount": 1})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
}

#[tokio::test]
async fn manual_payouts_draw_on_the_available_balance() {
    let sim = sim().await;
    let c = Client::new(&sim);
    // Nothing available: Stripe refuses.
    let (status, err) = post_err(
        &c,
        "/v1/payouts",
        json!({"amount": "1000", "currency": "usd"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["code"], "balance_insufficient");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You have insufficient funds in your Stripe account for this transfer.")
    );
    let a = charge(&c, "10000", "usd").await;
    let b = charge(&c, "5000", "usd").await;
    let total = net(&a["balance_transaction"]) + net(&b["balance_transaction"]);
    // Pending funds cannot be paid out by hand either.
    let (_, err) = post_err(
        &c,
        "/v1/payouts",
        json!({"amount": "1000", "currency": "usd"}),
    )
    .await;
    assert_eq!(err["error"]["code"], "balance_insufficient");
    assert_eq!(balance(&c, "usd").await, (0, total));
    // Two days later they are available.
    let (status, _) = post_json(&c, "/_sim/clock/advance", json!({"seconds": 3 * 86_400})).await;
    assert_eq!(status, 200);
    assert_eq!(balance(&c, "usd").await, (total, 0));
    let txn = c
        .get(
            &format!("/v1/balance_transactions/{}", id(&a["balance_transaction"])),
            json!({}),
        )
        .await;
    assert_eq!(txn["status"], "available");

    let before = event_count(&c).await;
    let po = c
        .post(
            "/v1/payouts",
            json!({"amount": "4000", "currency": "usd", "description": "Owner draw", "statement_descriptor": "SIM DRAW", "metadata": {"ref": "Q1"}}),
        )
        .await;
    let po_id = id(&po);
    assert!(po_id.starts_with("po_"));
    assert_eq!(po["automatic"], false);
    assert_eq!(po["reconciliation_status"], "not_applicable");
    assert_eq!(po["status"], "pending");
    assert_eq!(po["method"], "standard");
    assert_eq!(po["type"], "bank_account");
    assert_eq!(po["description"], "Owner draw");
    assert_eq!(po["statement_descriptor"], "SIM DRAW");
    assert_eq!(po["metadata"], json!({"ref": "Q1"}));
    assert_eq!(event_types_after(&c, before).await, ["payout.created"]);
    assert!(
        !events(&c).await[0]["request"]["id"].is_null(),
        "made by an API request"
    );
    let own = c
        .get(
            &format!(
                "/v1/balance_transactions/{}",
                po["balance_transaction"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (own["type"].as_str(), own["amount"].as_i64()),
        (Some("payout"), Some(-4000))
    );
    assert_eq!(balance(&c, "usd").await, (total - 4000, 0));
    // Stripe cannot say what a manual payout carried.
    let (status, err) = get_err(&c, "/v1/balance_transactions", json!({"payout": po_id})).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "Balance transaction history can only be filtered on automatic transfers, not manual."
    );
    let (status, err) = get_err(&c, "/v1/balance_transactions", json!({"payout": "po_nope"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("resource_missing"))
    );
    // More than is available is refused.
    let (_, err) = post_err(
        &c,
        "/v1/payouts",
        json!({"amount": (total - 4000 + 1).to_string(), "currency": "usd"}),
    )
    .await;
    assert_eq!(err["error"]["code"], "balance_insufficient");

    // Metadata can change; nothing else.
    let before = event_count(&c).await;
    let upd = c
        .post(
            &format!("/v1/payouts/{po_id}"),
            json!({"metadata": {"ref": "Q2"}}),
        )
        .await;
    assert_eq!(upd["metadata"]["ref"], "Q2");
    assert_eq!(event_types_after(&c, before).await, ["payout.updated"]);
    let (_, err) = post_err(&c, &format!("/v1/payouts/{po_id}"), json!({"amount": "1"})).await;
    assert_eq!(err["error"]["code"], "parameter_unknown");

    // Cancel: the amount comes back.
    let before = event_count(&c).await;
    let canceled = c
        .post(
            &format!("/v1/payouts/{po_id}/cancel"),
            json!({"expand": ["failure_balance_transaction"]}),
        )
        .await;
    assert_eq!(canceled["status"], "canceled");
    let back = &canceled["failure_balance_transaction"];
    assert_eq!(back["type"], "payout_cancel");
    assert_eq!(back["reporting_category"], "payout_reversal");
    assert_eq!(back["amount"], 4000);
    assert_eq!(back["source"], po_id.as_str());
    assert_eq!(event_types_after(&c, before).await, ["payout.canceled"]);
    assert_eq!(balance(&c, "usd").await, (total, 0));
    let (status, _) = post_err(&c, &format!("/v1/payouts/{po_id}/cancel"), json!({})).await;
    assert_eq!(status, 400, "only a pending payout can be canceled");

    // Instant: the fee (1%, at least 0.50) is on the payout's transaction.
    let instant = c
        .post(
            "/v1/payouts",
            json!({"amount": "1000", "currency": "usd", "method": "instant", "expand": ["balance_transaction"]}),
        )
        .await;
    assert_eq!(instant["method"], "instant");
    assert_eq!(instant["type"], "bank_account");
    assert_eq!(instant["reconciliation_status"], "not_applicable");
    assert_eq!(instant["arrival_date"], instant["created"]);
    let t = &instant["balance_transaction"];
    assert_eq!(
        (t["amount"].as_i64(), t["fee"].as_i64(), t["net"].as_i64()),
        (Some(-1000), Some(50), Some(-1050))
    );
    assert_eq!(t["fee_details"][0]["type"], "stripe_fee");
    assert_eq!(balance(&c, "usd").await, (total - 1050, 0));
    // The fee counts against the available balance.
    let (_, err) = post_err(
        &c,
        "/v1/payouts",
        json!({"amount": (total - 1050).to_string(), "currency": "usd", "method": "instant"}),
    )
    .await;
    assert_eq!(err["error"]["code"], "balance_insufficient");

    // Parameter refusals.
    for (params, param) in [
        (json!({"currency": "usd"}), "amount"),
        (json!({"amount": "100"}), "currency"),
        (json!({"amount": "0", "currency": "usd"}), "amount"),
        (
            json!({"amount": "100", "currency": "usd", "method": "fast"}),
            "method",
        ),
        (
            json!({"amount": "100", "currency": "usd", "destination": "ba_nope"}),
            "destination",
        ),
        (
            json!({"amount": "100", "currency": "usd", "statement_descriptor": "X".repeat(23)}),
            "statement_descriptor",
        ),
        (
            json!({"amount": "100", "currency": "usd", "source_type": "cash"}),
            "source_type",
        ),
        (
            json!({"amount": "100", "currency": "usd", "automatic": "true"}),
            "automatic",
        ),
    ] {
        let (status, err) = post_err(&c, "/v1/payouts", params.clone()).await;
        assert_eq!(status, 400, "{params}");
        assert_eq!(err["error"]["param"], param, "{params}: {err}");
    }
    // The bank account of the currency is the one destination there is.
    let ok = c
        .post(
            "/v1/payouts",
            json!({"amount": "100", "currency": "usd", "destination": instant["destination"]}),
        )
        .await;
    assert_eq!(ok["destination"], instant["destination"]);

    // The next automatic payout sweeps what is left, manual payouts' transactions included.
    let (avail, pending) = balance(&c, "usd").await;
    let auto = run_payouts(&c, json!({})).await.remove(0);
    assert_eq!(auto["amount"].as_i64(), Some(avail + pending));
    let listed = payout_txns(&c, &id(&auto)).await;
    let covered: i64 = listed
        .iter()
        .filter(|t| t["source"] != auto["id"])
        .map(net)
        .sum();
    assert_eq!(Some(covered), auto["amount"].as_i64());
    assert_eq!(balance(&c, "usd").await, (0, 0));
    // Stripe does not cancel its automatic payouts.
    let (status, _) = post_err(&c, &format!("/v1/payouts/{}/cancel", id(&auto)), json!({})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn payout_lists_filter_and_page() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let mut ids = Vec::new();
    for amount in ["1000", "2000", "3000"] {
        charge(&c, amount, "usd").await;
        let po = run_payouts(&c, json!({"arrival_in_days": "1"}))
            .await
            .remove(0);
        ids.push(id(&po));
    }
    post_json(&c, &format!("/_sim/payouts/{}/paid", ids[0]), json!({})).await;
    let all = c.get("/v1/payouts", json!({})).await;
    assert_eq!(all["url"], "/v1/payouts");
    let listed: Vec<String> = all["data"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let paid = c.get("/v1/payouts", json!({"status": "paid"})).await;
    assert_eq!(paid["data"].as_array().unwrap().len(), 1);
    assert_eq!(paid["data"][0]["id"], ids[0].as_str());
    let pending = c.get("/v1/payouts", json!({"status": "pending"})).await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 2);
    let page = c.get("/v1/payouts", json!({"limit": "2"})).await;
    assert_eq!(page["has_more"], true);
    let rest = c
        .get(
            "/v1/payouts",
            json!({"limit": "2", "starting_after": ids[1]}),
        )
        .await;
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["has_more"], false);
    let dest = all["data"][0]["destination"].as_str().unwrap().to_string();
    let by_dest = c.get("/v1/payouts", json!({"destination": dest})).await;
    assert_eq!(by_dest["data"].as_array().unwrap().len(), 3);
    let none = c
        .get("/v1/payouts", json!({"destination": "ba_other"}))
        .await;
    assert!(none["data"].as_array().unwrap().is_empty());
    let arrival = all["data"][0]["arrival_date"].as_i64().unwrap();
    let later = c
        .get(
            "/v1/payouts",
            json!({"arrival_date": {"gt": (arrival + 10).to_string()}}),
        )
        .await;
    assert!(later["data"].as_array().unwrap().is_empty());
    let upto = c
        .get(
            "/v1/payouts",
            json!({"arrival_date": {"lte": arrival.to_string()}}),
        )
        .await;
    assert_eq!(upto["data"].as_array().unwrap().len(), 3);
    let created = c
        .get(
            "/v1/payouts",
            json!({"created": {"gte": all["data"][2]["created"].to_string()}}),
        )
        .await;
    assert_eq!(created["data"].as_array().unwrap().len(), 3);

    for (params, param) in [
        (json!({"status": "lost"}), "status"),
        (
            json!({"arrival_date": {"after": "1"}}),
            "arrival_date[after]",
        ),
        (json!({"arrival_date": "soon"}), "arrival_date"),
        (json!({"type": "card"}), "type"),
    ] {
        let (status, err) = get_err(&c, "/v1/payouts", params.clone()).await;
        assert_eq!(status, 400, "{params}");
        assert_eq!(err["error"]["param"], param, "{params}: {err}");
    }
    let (status, err) = get_err(&c, "/v1/payouts/po_nope", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "resource_missing");
    assert_eq!(err["error"]["message"], "No such payout: 'po_nope'");
}

#[tokio::test]
async fn the_balance_is_in_the_settlement_currency() {
    let sim = sim_with(SimConfig {
        account_currency: Currency::EUR,
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    // An empty balance still shows the account's currency.
    let b = c.get("/v1/balance", json!({})).await;
    assert_eq!(
        b,
        json!({"object": "balance", "livemode": false,
            "available": [{"amount": 0, "currency": "eur", "source_types": {"card": 0}}],
            "pending": [{"amount": 0, "currency": "eur", "source_types": {"card": 0}}]})
    );
    let (status, err) = get_err(&c, "/v1/balance", json!({"currency": "eur"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    // A USD charge settles in EUR and is paid out in EUR.
    let ch = charge(&c, "10800", "usd").await;
    assert_eq!(ch["balance_transaction"]["currency"], "eur");
    let expected = net(&ch["balance_transaction"]);
    assert_eq!(balance(&c, "eur").await, (0, expected));
    assert!(run_payouts(&c, json!({"currency": "usd"})).await.is_empty());
    let po = run_payouts(&c, json!({})).await.remove(0);
    assert_eq!(
        (po["currency"].as_str(), po["amount"].as_i64()),
        (Some("eur"), Some(expected))
    );
    assert_eq!(balance(&c, "eur").await, (0, 0));
    // No USD balance: a manual USD payout is refused.
    let (_, err) = post_err(
        &c,
        "/v1/payouts",
        json!({"amount": "100", "currency": "usd"}),
    )
    .await;
    assert_eq!(err["error"]["code"], "balance_insufficient");
}

#[tokio::test]
async fn scenario_pays_out_the_month_when_asked() {
    fn cfg(payouts: bool, failed: usize) -> ScenarioConfig {
        ScenarioConfig {
            seed: 5,
            customers: 8,
            refunds: 2,
            disputes: 1,
            payouts,
            failed_payouts: failed,
            ..Default::default()
        }
    }
    let start = || async {
        StripeSim::start(SimConfig {
            seed: 3,
            ..Default::default()
        })
        .await
        .unwrap()
    };
    let plain_sim = start().await;
    let plain = run_scenario(&plain_sim.base_url, plain_sim.api_key_str(), cfg(false, 0))
        .await
        .unwrap();
    assert!(plain.payouts.is_empty());

    let sim = start().await;
    let rep = run_scenario(&sim.base_url, sim.api_key_str(), cfg(true, 0))
        .await
        .unwrap();
    // Paying out comes last: everything else is the same month, with the same ids.
    let without_payouts = mlc_stripe_sim::ScenarioReport {
        payouts: Vec::new(),
        ..rep.clone()
    };
    assert_eq!(without_payouts, plain);
    assert_eq!(rep.payouts.len(), 1, "one settlement currency");
    let p = &rep.payouts[0];
    assert!(p.id.starts_with("po_"));
    assert_eq!(p.currency, "usd");
    assert!(p.automatic);
    assert_eq!(p.status, "paid");
    assert_eq!(p.reconciliation_status, "completed");
    assert!(p.failure_balance_transaction.is_none());
    assert!(p.amount > 0);
    // The payout carries the month's whole settlement.
    assert_eq!(p.amount, rep.settlement.net);
    let c = Client::new(&sim);
    let all = c
        .get("/v1/balance_transactions", json!({"limit": "100"}))
        .await;
    let total = all["data"].as_array().unwrap().len();
    assert_eq!(p.covered_transactions, total - 1, "all but its own");
    assert_eq!(balance(&c, "usd").await, (0, 0));

    let failing_sim = start().await;
    let failed = run_scenario(
        &failing_sim.base_url,
        failing_sim.api_key_str(),
        cfg(true, 3),
    )
    .await
    .unwrap();
    assert_eq!(failed.payouts.len(), 1);
    let f = &failed.payouts[0];
    assert_eq!(f.id, p.id, "the same payout, then returned");
    assert_eq!(f.status, "failed");
    assert!(f.failure_balance_transaction.is_some());
    let c = Client::new(&failing_sim);
    assert_eq!(balance(&c, "usd").await, (f.amount, 0));
}
