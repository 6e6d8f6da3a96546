//! Bank deposits: undeposited customer payments, other deposits (fees as negative amounts) and
//! cash back into a bank account, with NetSuite's refusals.

mod common;

use common::*;
use mlc_netsuite_sim::RecordType;
use reqwest::Method;
use serde_json::{Value, json};

/// A customer payment of `amount` in subsidiary 1, posted to `account` (2, Stripe Clearing,
/// stands for undeposited funds) and applied to a fresh invoice of the same amount.
async fn payment(api: &Api, eid: &str, cust: &str, amount: &str, account: &str) -> String {
    let item = api.seeded_item().await;
    let inv = api
        .invoice(&format!("inv_{eid}"), cust, &item, amount)
        .await;
    let r = api
        .post(
            "customerPayment",
            json!({"externalId": eid, "customer": {"id": cust}, "subsidiary": {"id": "1"},
                   "payment": amount, "account": {"id": account},
                   "apply": {"items": [{"doc": {"id": inv}, "apply": true, "amount": amount}]}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    r.location_id()
}

fn deposit(eid: &str, payments: &[&str], other: Value, cashback: Value) -> Value {
    let lines: Vec<Value> = payments
        .iter()
        .map(|p| json!({"id": p.parse::<u64>().unwrap(), "deposit": true}))
        .collect();
    json!({"externalId": eid, "subsidiary": {"id": "1"}, "account": {"id": "1"},
           "tranDate": "2026-03-02", "memo": "Stripe payout po_1",
           "custbody_stripe_payout_id": "po_1",
           "payment": {"items": lines}, "other": {"items": other}, "cashback": {"items": cashback}})
}

async fn delete(api: &Api, rtype: &str, id: &str) -> Resp {
    api.send(
        Method::DELETE,
        &format!("/services/rest/record/v1/{rtype}/{id}"),
        None,
        &[],
    )
    .await
}

#[tokio::test]
async fn a_payout_deposits_payments_less_fees_and_cash_back() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_D1").await;
    let p1 = payment(&api, "stripe_py_D1", &cust, "100.00", "2").await;
    let p2 = payment(&api, "stripe_py_D2", &cust, "50.10", "2").await;

    let body = deposit(
        "stripe_po_1",
        &[&p1, &p2],
        json!([{"account": {"id": "5"}, "amount": "-4.35", "memo": "Stripe fees"},
               {"account": {"id": "6"}, "amount": -20, "memo": "Refund re_1", "entity": {"id": cust}}]),
        json!([{"account": {"id": "5"}, "amount": 10, "memo": "Reserve"}]),
    );
    // `total` is read-only: ignored silently, even when unknown names are errors.
    let mut with_total = body.clone();
    with_total["total"] = json!(1);
    let r = api
        .send(
            Method::POST,
            "/services/rest/record/v1/deposit",
            Some(with_total),
            &[("X-NetSuite-PropertyNameValidation", "error")],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.header("x-netsuite-warning").is_none());
    let id = r.location_id();
    assert!(
        r.header("location")
            .unwrap()
            .ends_with(&format!("/record/v1/deposit/{id}"))
    );

    let got = api.get("deposit", "eid:STRIPE_PO_1").await;
    assert_eq!(got.status, 200, "{}", got.body);
    let d = &got.body;
    assert_eq!(d["id"], id);
    // 100.00 + 50.10 − 4.35 − 20 − 10
    assert_eq!(d["total"], json!(115.75));
    assert_eq!(d["account"]["refName"], "1000 Checking");
    assert_eq!(d["currency"]["refName"], "US Dollar");
    assert_eq!(d["custbody_stripe_payout_id"], "po_1");
    assert!(d["tranId"].as_str().unwrap().starts_with("DEP"));
    let lines = d["payment"]["items"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], json!(p1.parse::<u64>().unwrap()));
    assert_eq!(lines[0]["deposit"], json!(true));
    assert_eq!(lines[0]["paymentAmount"], json!(100));
    assert_eq!(lines[1]["paymentAmount"], json!(50.1));
    assert_eq!(d["other"]["items"][0]["amount"], json!(-4.35));
    assert_eq!(d["other"]["items"][1]["entity"]["id"], cust);
    assert_eq!(d["cashback"]["items"][0]["amount"], json!(10));

    // The payments are deposited now.
    let pay = api.get("customerPayment", &p1).await.body;
    assert_eq!(pay["status"]["refName"], "Deposited");

    // In-process handle and state dump.
    assert_eq!(sim.handle().count(RecordType::Deposit), 1);
    let h = sim.handle().get(RecordType::Deposit, &id).unwrap();
    assert_eq!(h["total"], json!(115.75));
    let state = sim.handle().state_json();
    assert_eq!(state["counts"]["deposit"], 1);
    assert_eq!(state["records"]["deposit"][0]["id"], id);
    // And the record listing.
    let list = api
        .send(Method::GET, "/services/rest/record/v1/deposit", None, &[])
        .await;
    assert_eq!(list.body["totalResults"], 1);

    // SuiteQL: one transaction row; deposited payments have status C.
    let q = api
        .suiteql(
            "SELECT id, type, recordtype, foreigntotal, currency, externalid, custbody_stripe_payout_id FROM transaction WHERE recordtype = 'deposit'",
            json!([]),
            "",
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let row = &q.body["items"][0];
    assert_eq!(row["id"], id);
    assert_eq!(row["type"], "Deposit");
    assert_eq!(row["recordtype"], "deposit");
    assert_eq!(row["foreigntotal"], "115.75");
    assert_eq!(row["currency"], "1");
    assert_eq!(row["externalid"], "stripe_po_1");
    assert_eq!(row["custbody_stripe_payout_id"], "po_1");
    let q = api
        .suiteql(
            "SELECT id, status FROM transaction WHERE type = 'CustPymt' AND id = ?",
            json!([p2]),
            "",
        )
        .await;
    assert_eq!(q.body["items"][0]["status"], "C");

    // The `doc` form of a payment line works as well, and `deposit: false` lines are ignored.
    let p3 = payment(&api, "stripe_py_D3", &cust, "7", "2").await;
    let p4 = payment(&api, "stripe_py_D4", &cust, "8", "2").await;
    let r = api
        .post(
            "deposit",
            json!({"subsidiary": {"id": "1"}, "account": {"id": "1"}, "payment": {"items": [
                {"doc": {"id": p3}, "deposit": true, "paymentAmount": 7},
                {"id": p4, "deposit": false}]}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let d2 = api.get("deposit", &r.location_id()).await.body;
    assert_eq!(d2["total"], json!(7));
    assert_eq!(d2["payment"]["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("customerPayment", &p4).await.body["status"]["refName"],
        "Not Deposited"
    );
}

#[tokio::test]
async fn deposits_refuse_what_netsuite_refuses() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_D2").await;
    let p1 = payment(&api, "stripe_py_R1", &cust, "30", "2").await;
    let none: Value = json!([]);

    let first = api
        .post(
            "deposit",
            deposit("stripe_po_R1", &[&p1], none.clone(), none.clone()),
        )
        .await;
    assert_eq!(first.status, 204, "{}", first.body);

    // The same payment in a second deposit.
    let r = api
        .post(
            "deposit",
            deposit("stripe_po_R2", &[&p1], none.clone(), none.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "payment.items[0].id"),
        "{}",
        r.body
    );
    assert!(
        r.error_detail()
            .contains("This payment has already been deposited"),
        "{}",
        r.body
    );

    // An unknown payment, by `id` and by `doc`.
    let r = api
        .post(
            "deposit",
            deposit("stripe_po_R3", &["424242"], none.clone(), none.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "payment.items[0].id")
    );
    assert!(r.error_detail().contains("Invalid id reference key 424242"));
    let r = api
        .post(
            "deposit",
            json!({"subsidiary": {"id": "1"}, "account": {"id": "1"},
                   "payment": {"items": [{"doc": {"id": "424242"}, "deposit": true}]}}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "payment.items[0].doc")
    );
    // Not a customer payment (an invoice's ID).
    let inv = api
        .get("invoice", "eid:inv_stripe_py_R1")
        .await
        .body
        .get("id")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    let r = api
        .post(
            "deposit",
            deposit("stripe_po_R3b", &[&inv], none.clone(), none.clone()),
        )
        .await;
    assert_eq!(r.error_path(), "payment.items[0].id", "{}", r.body);

    // A payment in euros into a dollar deposit.
    let eur = api
        .post(
            "customerPayment",
            json!({"customer": {"id": cust}, "subsidiary": {"id": "1"}, "currency": {"id": "2"},
                   "payment": 10, "account": {"id": "2"}}),
        )
        .await;
    assert_eq!(eur.status, 204, "{}", eur.body);
    let eur = eur.location_id();
    let r = api
        .post(
            "deposit",
            deposit("stripe_po_R4", &[&eur], none.clone(), none.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "payment.items[0].id")
    );
    assert!(r.error_detail().contains("currency"), "{}", r.body);

    // A payment that posted straight to the deposit's bank account, or to a non-bank account,
    // was never in undeposited funds.
    for account in ["1", "3"] {
        let p = payment(
            &api,
            &format!("stripe_py_acct{account}"),
            &cust,
            "5",
            account,
        )
        .await;
        let r = api
            .post(
                "deposit",
                deposit(
                    &format!("stripe_po_acct{account}"),
                    &[&p],
                    none.clone(),
                    none.clone(),
                ),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code(), r.error_path()),
            (400, "INVALID_CONTENT", "payment.items[0].id"),
            "{}",
            r.body
        );
    }

    // Part of a payment.
    let p2 = payment(&api, "stripe_py_R2", &cust, "40", "2").await;
    let r = api
        .post(
            "deposit",
            json!({"subsidiary": {"id": "1"}, "account": {"id": "1"},
                   "payment": {"items": [{"id": p2, "deposit": true, "paymentAmount": "39.99"}]}}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "USER_ERROR", "payment.items[0].paymentAmount")
    );

    // The deposit account must be a bank account, and is mandatory; so is the subsidiary.
    let mut body = deposit("stripe_po_R5", &[&p2], none.clone(), none.clone());
    body["account"] = json!({"id": "5"});
    let r = api.post("deposit", body.clone()).await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "account")
    );
    body.as_object_mut().unwrap().remove("account");
    let r = api.post("deposit", body.clone()).await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "USER_ERROR", "account")
    );
    let mut body = deposit("stripe_po_R5", &[&p2], none.clone(), none.clone());
    body.as_object_mut().unwrap().remove("subsidiary");
    assert_eq!(api.post("deposit", body).await.error_path(), "subsidiary");

    // Totals of zero or less.
    let r = api
        .post(
            "deposit",
            deposit(
                "stripe_po_R6",
                &[],
                json!([{"account": {"id": "5"}, "amount": "-5.00"}]),
                none.clone(),
            ),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, "USER_ERROR"));
    assert!(r.error_detail().contains("The total can not be negative"));
    let r = api
        .post(
            "deposit",
            deposit(
                "stripe_po_R7",
                &[&p2],
                none.clone(),
                json!([{"account": {"id": "5"}, "amount": "40"}]),
            ),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "USER_ERROR"),
        "{}",
        r.body
    );

    // No lines at all, or only lines not marked for deposit.
    let r = api
        .post(
            "deposit",
            deposit("stripe_po_R8", &[], none.clone(), none.clone()),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, "USER_ERROR"));
    let r = api
        .post(
            "deposit",
            json!({"subsidiary": {"id": "1"}, "account": {"id": "1"},
                   "payment": {"items": [{"id": p2}, {"id": p2, "deposit": false}]}}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "USER_ERROR"),
        "{}",
        r.body
    );

    // Line rules: more decimals than the currency, no account, negative cash back.
    let r = api
        .post(
            "deposit",
            deposit(
                "stripe_po_R9",
                &[&p2],
                json!([{"account": {"id": "5"}, "amount": "-1.234"}]),
                none.clone(),
            ),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "other.items[0].amount")
    );
    let r = api
        .post(
            "deposit",
            deposit(
                "stripe_po_R9",
                &[&p2],
                json!([{"amount": "-1"}]),
                none.clone(),
            ),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "USER_ERROR", "other.items[0].account")
    );
    let r = api
        .post(
            "deposit",
            deposit(
                "stripe_po_R9",
                &[&p2],
                none.clone(),
                json!([{"account": {"id": "5"}, "amount": "-1"}]),
            ),
        )
        .await;
    assert_eq!(r.error_path(), "cashback.items[0].amount");
    // An A/R line must name the customer.
    let r = api
        .post(
            "deposit",
            deposit(
                "stripe_po_R9",
                &[&p2],
                json!([{"account": {"id": "3"}, "amount": "-1"}]),
                none.clone(),
            ),
        )
        .await;
    assert_eq!(r.error_path(), "other.items[0].entity");

    // None of the refused deposits exists.
    assert_eq!(sim.handle().count(RecordType::Deposit), 1);
}

#[tokio::test]
async fn deposited_payments_are_locked_until_the_deposit_goes() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_D3").await;
    let p1 = payment(&api, "stripe_py_L1", &cust, "25", "2").await;
    let p2 = payment(&api, "stripe_py_L2", &cust, "15", "2").await;
    let none: Value = json!([]);
    let r = api
        .post(
            "deposit",
            deposit("stripe_po_L1", &[&p1, &p2], none.clone(), none.clone()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let dep = r.location_id();

    // A deposited payment cannot be deleted, nor its amount changed.
    let r = delete(&api, "customerPayment", &p1).await;
    assert_eq!((r.status, r.error_code()), (400, "USER_ERROR"));
    let r = api
        .send(
            Method::PATCH,
            &format!("/services/rest/record/v1/customerPayment/{p1}"),
            Some(json!({"payment": 20})),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "USER_ERROR"),
        "{}",
        r.body
    );
    // Its memo can change.
    let r = api
        .send(
            Method::PATCH,
            &format!("/services/rest/record/v1/customerPayment/{p1}"),
            Some(json!({"memo": "ok"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);

    // Upserting the deposit with its own payments is not a second deposit.
    let r = api
        .send(
            Method::PUT,
            "/services/rest/record/v1/deposit/eid:stripe_po_L1",
            Some(deposit("ignored", &[&p1, &p2], none.clone(), none.clone())),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.location_id(), dep);

    // A PATCH line keyed by the payment's ID takes it out of the deposit.
    let r = api
        .send(
            Method::PATCH,
            &format!("/services/rest/record/v1/deposit/{dep}"),
            Some(json!({"payment": {"items": [{"id": p2, "deposit": false}]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let d = api.get("deposit", &dep).await.body;
    assert_eq!(d["total"], json!(25));
    assert_eq!(
        api.get("customerPayment", &p2).await.body["status"]["refName"],
        "Not Deposited"
    );
    assert_eq!(delete(&api, "customerPayment", &p2).await.status, 204);

    // A customer named on a deposit line cannot be deleted while the deposit exists.
    let other = api.customer("stripe_cus_D4").await;
    let r = api
        .post(
            "deposit",
            deposit(
                "stripe_po_L2",
                &[],
                json!([{"account": {"id": "6"}, "amount": "3", "entity": {"id": other}}]),
                none.clone(),
            ),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let dep2 = r.location_id();
    assert_eq!(delete(&api, "customer", &other).await.status, 400);
    assert_eq!(delete(&api, "deposit", &dep2).await.status, 204);
    assert_eq!(delete(&api, "customer", &other).await.status, 204);

    // Deleting the deposit frees its payments: they can be deposited again, or deleted.
    assert_eq!(delete(&api, "deposit", &dep).await.status, 204);
    assert_eq!(api.get("deposit", &dep).await.status, 404);
    assert_eq!(
        api.get("customerPayment", &p1).await.body["status"]["refName"],
        "Not Deposited"
    );
    let r = api
        .post(
            "deposit",
            deposit("stripe_po_L1", &[&p1], none.clone(), none.clone()),
        )
        .await;
    assert_eq!(r.status, 204, "the external ID is free again: {}", r.body);
    let dep3 = r.location_id();
    assert_eq!(delete(&api, "deposit", &dep3).await.status, 204);
    assert_eq!(delete(&api, "customerPayment", &p1).await.status, 204);
}
