//! Record service: create/get/patch/upsert/delete, external IDs, references, invoices, payments.

mod common;

use common::*;
use mlc_netsuite_sim::RecordType;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn create_answers_204_with_location_and_get_renders_references() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let r = api
        .post("customer", json!({"externalId": "stripe_cus_A1", "companyName": "Acme", "email": "a@acme.test",
                                 "subsidiary": {"id": "1"}, "custentity_stripe_customer_id": "cus_A1"}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, serde_json::Value::Null, "no body on 204");
    let loc = r.header("location").unwrap().to_owned();
    let id = r.location_id();
    assert_eq!(
        loc,
        format!("{}/services/rest/record/v1/customer/{id}", sim.base_url())
    );

    let got = api.get("customer", &id).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("content-type"),
        Some("application/vnd.oracle.resource+json; type=singular")
    );
    assert_eq!(got.body["id"], id);
    assert_eq!(got.body["links"][0]["href"], loc);
    assert_eq!(got.body["companyName"], "Acme");
    assert_eq!(got.body["entityId"], "Acme");
    assert_eq!(got.body["custentity_stripe_customer_id"], "cus_A1");
    assert_eq!(got.body["subsidiary"]["id"], "1");
    assert_eq!(got.body["subsidiary"]["refName"], "Parent Company");
    // Currency defaults from the subsidiary.
    assert_eq!(got.body["currency"]["refName"], "US Dollar");
    assert!(
        got.body["subsidiary"]["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/record/v1/subsidiary/1")
    );

    let by_eid = api.get("customer", "eid:STRIPE_CUS_a1").await;
    assert_eq!(by_eid.status, 200, "eid lookups are case-insensitive");
    assert_eq!(by_eid.body["id"], id);

    let missing = api.get("customer", "eid:nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "NONEXISTENT_ID");
    assert_eq!(missing.error_detail(), "Record does not exist.");
    assert_eq!(missing.body["title"], "Not Found");
}

#[tokio::test]
async fn record_type_in_the_path_is_case_insensitive() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let r = api.post("servicesaleitem", json!({"itemId": "Support", "externalId": "stripe_prod_X", "custitem_stripe_product_id": "prod_X"})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        r.header("location")
            .unwrap()
            .contains("/record/v1/servicesaleitem/")
    );
    let got = api.get("serviceSaleItem", &r.location_id()).await;
    assert_eq!(got.body["custitem_stripe_product_id"], "prod_X");
}

#[tokio::test]
async fn external_ids_are_unique_per_group_and_case_insensitive() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_G1").await;
    let item = api.seeded_item().await;
    api.invoice("stripe_in_G1", &cust, &item, "10.00").await;

    // Same external ID, other case, other transaction type: one namespace for all transactions.
    let dup = api
        .post(
            "creditMemo",
            json!({"externalId": "STRIPE_IN_G1", "entity": {"id": cust}, "subsidiary": {"id": "1"},
                                   "item": {"items": [{"item": {"id": item}, "amount": 1}]}}),
        )
        .await;
    assert_eq!(dup.status, 400, "{}", dup.body);
    assert_eq!(dup.error_code(), "USER_ERROR");
    assert_eq!(
        dup.error_detail(),
        "Error while accessing a resource. This entity already exists."
    );
    assert_eq!(sim.handle().count(RecordType::CreditMemo), 0);

    // Entities share a namespace too.
    let dup_cust = api.post("customer", json!({"externalId": "Stripe_Cus_G1", "companyName": "Other", "subsidiary": {"id": "1"}})).await;
    assert_eq!(dup_cust.status, 400);
    // But groups are separate: an item may carry the same external ID as a customer.
    let item_same = api
        .post(
            "discountItem",
            json!({"externalId": "stripe_cus_G1", "itemId": "D"}),
        )
        .await;
    assert_eq!(item_same.status, 204, "{}", item_same.body);
}

#[tokio::test]
async fn put_eid_upserts() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let path = "/services/rest/record/v1/customer/eid:stripe_cus_U1";
    let r = api
        .send(
            Method::PUT,
            path,
            Some(json!({"companyName": "First", "subsidiary": {"id": "1"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let id = r.location_id();
    let before = sim.handle().count(RecordType::Customer);
    let r2 = api
        .send(
            Method::PUT,
            path,
            Some(json!({"companyName": "Second", "subsidiary": {"id": "1"}})),
            &[],
        )
        .await;
    assert_eq!(r2.status, 204);
    assert_eq!(r2.location_id(), id, "the same record");
    assert_eq!(sim.handle().count(RecordType::Customer), before);
    let got = api.get("customer", "eid:stripe_cus_U1").await;
    assert_eq!(got.body["companyName"], "Second");
    assert_eq!(got.body["externalId"], "stripe_cus_U1");
    // PUT by internal ID is not an upsert.
    let r3 = api
        .send(
            Method::PUT,
            &format!("/services/rest/record/v1/customer/{id}"),
            Some(json!({"companyName": "X"})),
            &[],
        )
        .await;
    assert_eq!(r3.status, 400);
}

#[tokio::test]
async fn unknown_references_are_invalid_content_with_an_error_path() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_R1").await;
    let item = api.seeded_item().await;
    let r = api
        .post("invoice", json!({"entity": {"id": cust}, "subsidiary": {"id": "1"},
                                "item": {"items": [{"item": {"id": item}, "amount": 5}, {"item": {"id": "9999"}, "amount": 5}]}}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "INVALID_CONTENT");
    assert_eq!(
        r.error_detail(),
        "Error while accessing resource: You have entered an Invalid Field Value 9999 for the following field: item"
    );
    assert_eq!(r.error_path(), "item.items[1].item");
    assert_eq!(
        r.body["type"],
        "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1"
    );
    assert_eq!(r.body["title"], "Bad Request");
    assert_eq!(r.body["status"], 400);

    for (field, body) in [
        (
            "entity",
            json!({"entity": {"id": "424242"}, "subsidiary": {"id": "1"}, "item": {"items": [{"item": {"id": item}, "amount": 5}]}}),
        ),
        (
            "currency",
            json!({"entity": {"id": cust}, "subsidiary": {"id": "1"}, "currency": {"id": "77"}, "item": {"items": [{"item": {"id": item}, "amount": 5}]}}),
        ),
        (
            "subsidiary",
            json!({"entity": {"id": cust}, "subsidiary": {"id": "9"}, "item": {"items": [{"item": {"id": item}, "amount": 5}]}}),
        ),
        (
            "account",
            json!({"entity": {"id": cust}, "subsidiary": {"id": "1"}, "account": {"id": "99"}, "item": {"items": [{"item": {"id": item}, "amount": 5}]}}),
        ),
    ] {
        let r = api.post("invoice", body).await;
        assert_eq!(
            (r.status, r.error_code(), r.error_path()),
            (400, "INVALID_CONTENT", field),
            "{}",
            r.body
        );
    }
    // A customer ID used as an item is not an item.
    let r = api.post("invoice", json!({"entity": {"id": cust}, "subsidiary": {"id": "1"}, "item": {"items": [{"item": {"id": cust}, "amount": 5}]}})).await;
    assert_eq!(r.error_path(), "item.items[0].item");
    assert_eq!(sim.handle().count(RecordType::Invoice), 0);
}

#[tokio::test]
async fn mandatory_fields_are_enforced() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let r = api.post("customer", json!({"companyName": "No Sub"})).await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "USER_ERROR", "subsidiary")
    );
    let cust = api.customer("stripe_cus_M1").await;
    let r = api
        .post(
            "invoice",
            json!({"entity": {"id": cust}, "subsidiary": {"id": "1"}}),
        )
        .await;
    assert_eq!(r.status, 400, "an invoice needs a line");
    let r = api
        .post(
            "invoice",
            json!({"subsidiary": {"id": "1"}, "item": {"items": []}}),
        )
        .await;
    assert_eq!(r.error_path(), "entity");

    let strict = sim_with(|c| {
        c.mandatory
            .extra
            .insert("invoice".into(), vec!["department".into()]);
    })
    .await;
    let api2 = Api::new(&strict).await;
    let cust2 = api2.customer("stripe_cus_M2").await;
    let item2 = api2.seeded_item().await;
    let r = api2.post("invoice", json!({"entity": {"id": cust2}, "subsidiary": {"id": "1"}, "item": {"items": [{"item": {"id": item2}, "amount": 1}]}})).await;
    assert_eq!((r.status, r.error_path()), (400, "department"));
}

#[tokio::test]
async fn invoice_totals_are_exact_decimals_rounded_to_the_currency() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_D1").await;
    let item = api.seeded_item().await;
    let r = api
        .post(
            "invoice",
            json!({"externalId": "stripe_in_D1", "entity": {"id": cust}, "subsidiary": {"id": "1"},
            "tranDate": "2025-01-31", "memo": "Stripe in_D1", "custbody_stripe_invoice_id": "in_D1",
            "item": {"items": [
                {"item": {"id": item}, "amount": 0.1, "description": "a"},
                {"item": {"id": item}, "amount": "0.2"},
                {"item": {"id": item}, "quantity": 3, "rate": "33.333"}
            ]}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let inv = api.get("invoice", "eid:stripe_in_D1").await.body;
    // 0.1 + 0.2 + round(99.999, 2) = 100.30 exactly.
    assert_eq!(inv["total"], json!(100.3));
    assert_eq!(inv["amountRemaining"], json!(100.3));
    assert_eq!(inv["status"]["refName"], "Open");
    assert_eq!(inv["tranDate"], "2025-01-31");
    assert_eq!(inv["currency"]["refName"], "US Dollar");
    assert_eq!(inv["custbody_stripe_invoice_id"], "in_D1");
    let lines = inv["item"]["items"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["amount"], json!(100));
    assert_eq!(lines[0]["item"]["refName"], "Pro plan");
    assert_eq!(lines[0]["description"], "a");

    // Without expandSubResources the sublist is a link.
    let plain = api
        .send(
            Method::GET,
            &format!(
                "/services/rest/record/v1/invoice/{}",
                inv["id"].as_str().unwrap()
            ),
            None,
            &[],
        )
        .await;
    assert!(plain.body["item"].get("items").is_none());
    assert!(
        plain.body["item"]["links"][0]["href"]
            .as_str()
            .unwrap()
            .ends_with("/item")
    );

    // SuiteQL sees the exact total as a string.
    let q = api
        .suiteql(
            "SELECT foreigntotal, status FROM transaction WHERE externalid = ?",
            json!(["STRIPE_IN_d1"]),
            "",
        )
        .await;
    assert_eq!(q.body["items"][0]["foreigntotal"], "100.3");
    assert_eq!(q.body["items"][0]["status"], "A");
}

#[tokio::test]
async fn patch_updates_fields_and_appends_lines() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_P1").await;
    let item = api.seeded_item().await;
    let id = api.invoice("stripe_in_P1", &cust, &item, "10").await;
    let path = format!("/services/rest/record/v1/invoice/{id}");
    let r = api.send(Method::PATCH, &path, Some(json!({"memo": "patched", "item": {"items": [{"item": {"id": item}, "amount": 5}]}})), &[]).await;
    assert_eq!(r.status, 204);
    let inv = api.get("invoice", &id).await.body;
    assert_eq!(inv["memo"], "patched");
    assert_eq!(inv["total"], json!(15), "a line without `line` is appended");
    let r = api
        .send(
            Method::PATCH,
            &format!("{path}?replace=item"),
            Some(json!({"item": {"items": [{"item": {"id": item}, "amount": 7}]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(api.get("invoice", &id).await.body["total"], json!(7));
}

#[tokio::test]
async fn payments_apply_to_invoices_of_the_same_customer() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_Y1").await;
    let other = api.customer("stripe_cus_Y2").await;
    let item = api.seeded_item().await;
    let inv = api.invoice("stripe_in_Y1", &cust, &item, "100.00").await;

    let pay = |eid: &str, customer: &str, payment: &str, amount: &str| {
        json!({"externalId": eid, "customer": {"id": customer}, "subsidiary": {"id": "1"}, "payment": payment,
               "account": {"id": "2"}, "apply": {"items": [{"doc": {"id": inv}, "apply": true, "amount": amount}]}})
    };
    let r = api
        .post("customerPayment", pay("stripe_py_1", &cust, "40", "40"))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let got = api.get("invoice", &inv).await.body;
    assert_eq!(got["amountRemaining"], json!(40 + 20));
    assert_eq!(got["status"]["refName"], "Open");

    // More than what remains.
    let r = api
        .post("customerPayment", pay("stripe_py_2", &cust, "70", "70"))
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "USER_ERROR", "apply.items[0].amount"),
        "{}",
        r.body
    );
    // Another customer's invoice.
    let r = api
        .post("customerPayment", pay("stripe_py_3", &other, "60", "60"))
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "apply.items[0].doc")
    );
    // Not an invoice at all.
    let bad_doc = json!({"customer": {"id": cust}, "subsidiary": {"id": "1"}, "payment": 1, "apply": {"items": [{"doc": {"id": "424242"}, "apply": true, "amount": 1}]}});
    assert_eq!(
        api.post("customerPayment", bad_doc).await.error_path(),
        "apply.items[0].doc"
    );

    let r = api
        .post("customerPayment", pay("stripe_py_4", &cust, "60", "60"))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let got = api.get("invoice", &inv).await.body;
    assert_eq!(got["amountRemaining"], json!(0));
    assert_eq!(got["status"]["refName"], "Paid In Full");
    let q = api.suiteql("SELECT id, status, foreignamountremaining FROM transaction WHERE recordtype = 'invoice' AND entity = ?", json!([cust]), "").await;
    assert_eq!(q.body["items"][0]["status"], "B");
    assert_eq!(q.body["items"][0]["foreignamountremaining"], "0");
    // Payment without an amount.
    let r = api
        .post(
            "customerPayment",
            json!({"customer": {"id": cust}, "subsidiary": {"id": "1"}}),
        )
        .await;
    assert_eq!(r.error_path(), "payment");
}

/// A refund as NetSuite books it: a credit memo applied to the paid invoice's customer credit,
/// then a customer refund paying that credit out; neither can take more than is open, nor
/// another customer's documents, and a refund needs a credit to refund.
#[tokio::test]
async fn credit_memos_apply_to_invoices_and_customer_refunds_pay_them_out() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_R1").await;
    let other = api.customer("stripe_cus_R2").await;
    let item = api.seeded_item().await;
    let inv = api.invoice("stripe_in_R1", &cust, &item, "100.00").await;
    let memo = |eid: &str, customer: &str, amount: &str, apply: &str| {
        json!({"externalId": eid, "entity": {"id": customer}, "subsidiary": {"id": "1"},
               "item": {"items": [{"item": {"id": item}, "amount": amount}]},
               "apply": {"items": [{"doc": {"id": inv}, "apply": true, "amount": apply}]}})
    };
    // The invoice owes 100: a memo of 30 applied to it.
    let r = api
        .post("creditMemo", memo("stripe_re_1", &cust, "30", "30"))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let memo_id = r.location_id();
    let got = api.get("invoice", &inv).await.body;
    assert_eq!(got["amountRemaining"], json!(70));
    let m = api.get("creditMemo", &memo_id).await.body;
    assert_eq!(
        (m["applied"].clone(), m["unapplied"].clone()),
        (json!(30), json!(0))
    );
    assert_eq!(m["status"]["refName"], "Fully Applied");

    // A memo may not apply more than itself, nor to another customer's invoice.
    let r = api
        .post("creditMemo", memo("stripe_re_2", &cust, "10", "20"))
        .await;
    assert_eq!(
        (r.status, r.error_path()),
        (400, "apply.items[0].amount"),
        "{}",
        r.body
    );
    let r = api
        .post("creditMemo", memo("stripe_re_3", &other, "10", "10"))
        .await;
    assert_eq!(
        (r.status, r.error_path()),
        (400, "apply.items[0].doc"),
        "{}",
        r.body
    );

    // A memo left as credit (applied to nothing), then refunded in cash.
    let r = api
        .post(
            "creditMemo",
            json!({"externalId": "stripe_re_4", "entity": {"id": cust}, "subsidiary": {"id": "1"},
                   "item": {"items": [{"item": {"id": item}, "amount": "25"}]}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let credit = r.location_id();
    let refund = |eid: &str, customer: &str, doc: &str, amount: &str| {
        json!({"externalId": eid, "customer": {"id": customer}, "subsidiary": {"id": "1"},
               "account": {"id": "2"},
               "apply": {"items": [{"doc": {"id": doc}, "apply": true, "amount": amount}]}})
    };
    // Not more than the credit, not another customer's, not a memo already used up.
    let r = api
        .post(
            "customerRefund",
            refund("stripe_refund_x", &cust, &credit, "26"),
        )
        .await;
    assert_eq!(
        (r.status, r.error_path()),
        (400, "apply.items[0].amount"),
        "{}",
        r.body
    );
    let r = api
        .post(
            "customerRefund",
            refund("stripe_refund_y", &other, &credit, "25"),
        )
        .await;
    assert_eq!(
        (r.status, r.error_path()),
        (400, "apply.items[0].doc"),
        "{}",
        r.body
    );
    let r = api
        .post(
            "customerRefund",
            refund("stripe_refund_z", &cust, &memo_id, "1"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api
        .post(
            "customerRefund",
            json!({"customer": {"id": cust}, "subsidiary": {"id": "1"}, "account": {"id": "2"}}),
        )
        .await;
    assert_eq!((r.status, r.error_path()), (400, "apply"), "{}", r.body);

    let r = api
        .post(
            "customerRefund",
            refund("stripe_refund_re_4", &cust, &credit, "25"),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let got = api.get("customerRefund", &r.location_id()).await.body;
    assert_eq!(got["total"], json!(25));
    let m = api.get("creditMemo", &credit).await.body;
    assert_eq!(m["unapplied"], json!(0));
    // A refunded memo cannot be deleted before its refund.
    let r = api
        .send(
            reqwest::Method::DELETE,
            &format!("/services/rest/record/v1/creditMemo/{credit}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

/// `invoice/{id}/!transform/creditMemo` credits the invoice's customer with its lines and closes
/// it; a second one finds nothing open and stands as credit.
#[tokio::test]
async fn transform_invoice_to_credit_memo() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_TM").await;
    let item = api.seeded_item().await;
    let inv = api.invoice("stripe_in_TM", &cust, &item, "80.00").await;
    let path = format!("/services/rest/record/v1/invoice/{inv}/!transform/creditMemo");
    let r = api
        .send(
            Method::POST,
            &path,
            Some(json!({"externalId": "stripe_void_in_TM"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let memo = api.get("creditMemo", &r.location_id()).await.body;
    assert_eq!(memo["total"], json!(80));
    assert_eq!(memo["entity"]["id"], json!(cust));
    assert_eq!(memo["applied"], json!(80));
    assert_eq!(
        api.get("invoice", &inv).await.body["amountRemaining"],
        json!(0)
    );
    let r = api.send(Method::POST, &path, None, &[]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let again = api.get("creditMemo", &r.location_id()).await.body;
    assert_eq!(again["unapplied"], json!(80), "{again}");
    let r = api
        .send(
            Method::POST,
            &format!("/services/rest/record/v1/invoice/{inv}/!transform/cashSale"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn property_name_validation_header_is_honoured() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let body = json!({"companyName": "Typo", "subsidiary": {"id": "1"}, "compnyName": "x"});
    let r = api.post("customer", body.clone()).await;
    assert_eq!(r.status, 204);
    assert!(
        r.header("x-netsuite-warning")
            .unwrap()
            .contains("compnyName")
    );
    let r = api
        .send(
            Method::POST,
            "/services/rest/record/v1/customer",
            Some(body),
            &[("X-NetSuite-PropertyNameValidation", "error")],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "compnyName")
    );
}

#[tokio::test]
async fn journal_entries_must_balance_and_delete_respects_dependencies() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let je = |credit: &str| {
        json!({"externalId": format!("stripe_fee_{credit}"), "subsidiary": {"id": "1"}, "line": {"items": [
        {"account": {"id": "5"}, "debit": "2.90"}, {"account": {"id": "2"}, "credit": credit}]}})
    };
    assert_eq!(
        api.post("journalEntry", je("2.80")).await.error_code(),
        "USER_ERROR"
    );
    assert_eq!(api.post("journalEntry", je("2.90")).await.status, 204);
    // A line on Accounts Receivable (account 3) must name the customer, as NetSuite requires.
    let ar = |entity: Option<&str>| {
        let mut line = json!({"account": {"id": "3"}, "credit": "5.00"});
        if let Some(e) = entity {
            line["entity"] = json!({"id": e});
        }
        json!({"externalId": format!("stripe_refund_failure_{}", entity.unwrap_or("none")),
            "subsidiary": {"id": "1"},
            "line": {"items": [{"account": {"id": "2"}, "debit": "5.00"}, line]}})
    };
    let refused = api.post("journalEntry", ar(None)).await;
    assert_eq!(refused.error_code(), "USER_ERROR");
    let ar_customer = api.customer("stripe_cus_AR").await;
    assert_eq!(
        api.post("journalEntry", ar(Some(ar_customer.as_str())))
            .await
            .status,
        204
    );

    let cust = api.customer("stripe_cus_DEL").await;
    let item = api.seeded_item().await;
    let inv = api.invoice("stripe_in_DEL", &cust, &item, "1").await;
    assert_eq!(
        api.send(
            Method::DELETE,
            &format!("/services/rest/record/v1/customer/{cust}"),
            None,
            &[]
        )
        .await
        .status,
        400
    );
    assert_eq!(
        api.send(
            Method::DELETE,
            &format!("/services/rest/record/v1/invoice/{inv}"),
            None,
            &[]
        )
        .await
        .status,
        204
    );
    assert_eq!(
        api.send(
            Method::DELETE,
            &format!("/services/rest/record/v1/customer/{cust}"),
            None,
            &[]
        )
        .await
        .status,
        204
    );
    assert_eq!(api.get("customer", &cust).await.status, 404);
    // The external ID is free again.
    api.customer("stripe_cus_DEL").await;
    // Setup records are read-only.
    assert_eq!(api.post("currency", json!({"name": "X"})).await.status, 400);
}

#[tokio::test]
async fn amounts_round_to_the_currency_precision() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    // Subsidiary 3 is Japan KK (JPY, no decimals); the customer's currency follows it.
    let r = api.post("customer", json!({"externalId": "stripe_cus_JP", "companyName": "Tokyo", "subsidiary": {"id": "3"}})).await;
    let cust = r.location_id();
    assert_eq!(
        api.get("customer", &cust).await.body["currency"]["refName"],
        "Japanese Yen"
    );
    let item = api.seeded_item().await;
    let r = api.post("invoice", json!({"externalId": "stripe_in_JP", "entity": {"id": cust}, "subsidiary": {"id": "3"},
        "item": {"items": [{"item": {"id": item}, "amount": "100.5"}, {"item": {"id": item}, "amount": 1000}]}})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        api.get("invoice", "eid:stripe_in_JP").await.body["total"],
        json!(1101)
    );
    // KWD keeps three decimals.
    let r = api.post("invoice", json!({"externalId": "stripe_in_KW", "entity": {"id": cust}, "subsidiary": {"id": "3"}, "currency": {"id": "4"},
        "item": {"items": [{"item": {"id": item}, "amount": "1.2345"}]}})).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let q = api
        .suiteql(
            "SELECT foreigntotal, currency FROM transaction WHERE externalid = 'stripe_in_KW'",
            json!([]),
            "",
        )
        .await;
    assert_eq!(q.body["items"][0]["foreigntotal"], "1.235");
    assert_eq!(q.body["items"][0]["currency"], "4");
}

#[tokio::test]
async fn transform_invoice_to_customer_payment() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_TR").await;
    let item = api.seeded_item().await;
    let inv = api.invoice("stripe_in_TR", &cust, &item, "80").await;
    let path = format!("/services/rest/record/v1/invoice/{inv}/!transform/customerPayment");
    let r = api
        .send(
            Method::POST,
            &path,
            Some(json!({"externalId": "stripe_py_TR1", "payment": 30, "account": {"id": "2"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        r.header("location")
            .unwrap()
            .contains("/record/v1/customerpayment/")
    );
    assert_eq!(
        api.get("invoice", &inv).await.body["amountRemaining"],
        json!(50)
    );
    let pay = api.get("customerPayment", "eid:stripe_py_TR1").await.body;
    assert_eq!(pay["customer"]["id"], cust);
    assert_eq!(pay["apply"]["items"][0]["doc"]["id"], inv);
    // Without an amount, the rest is paid.
    assert_eq!(
        api.send(Method::POST, &path, Some(json!({})), &[])
            .await
            .status,
        204
    );
    assert_eq!(
        api.get("invoice", &inv).await.body["status"]["refName"],
        "Paid In Full"
    );
    // Nothing left to pay.
    assert_eq!(
        api.send(Method::POST, &path, Some(json!({"payment": 1})), &[])
            .await
            .status,
        400
    );
}

/// An item's `subsidiary` is a multiselect: NetSuite's `{"items": [{"id": …}]}` form is
/// accepted (it used to be refused with INVALID_CONTENT), as is the single form (unconfirmed).
#[tokio::test]
async fn item_subsidiary_is_a_multiselect() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let r = api
        .post(
            "serviceSaleItem",
            json!({"externalId": "stripe_prod_M1", "itemId": "Multi", "includeChildren": true,
                                        "subsidiary": {"items": [{"id": "1"}, {"id": "2"}]}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let id = r.location_id();
    let got = api.get("serviceSaleItem", &id).await;
    assert_eq!(got.status, 200);
    let subs = &got.body["subsidiary"]["items"];
    assert_eq!(subs.as_array().map(Vec::len), Some(2), "{}", got.body);
    assert_eq!(subs[0]["id"], "1");
    assert_eq!(subs[0]["refName"], "Parent Company");
    assert_eq!(subs[1]["id"], "2");
    assert_eq!(subs[1]["refName"], "Europe GmbH");

    // The single-select form is kept as one value.
    let r = api
        .post(
            "nonInventorySaleItem",
            json!({"itemId": "Single", "subsidiary": {"id": "3"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let single = api.get("nonInventorySaleItem", &r.location_id()).await;
    assert_eq!(single.body["subsidiary"]["items"][0]["refName"], "Japan KK");
    assert_eq!(
        single.body["subsidiary"]["items"].as_array().map(Vec::len),
        Some(1)
    );

    // A PATCH replaces the selection.
    let r = api
        .send(
            Method::PATCH,
            &format!("/services/rest/record/v1/serviceSaleItem/{id}"),
            Some(json!({"subsidiary": {"items": [{"id": "3"}]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let got = api.get("serviceSaleItem", &id).await;
    assert_eq!(
        got.body["subsidiary"]["items"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(got.body["subsidiary"]["items"][0]["id"], "3");

    // Each value must exist; other shapes are not a multiselect.
    for (body, path) in [
        (
            json!({"itemId": "Bad", "subsidiary": {"items": [{"id": "1"}, {"id": "9"}]}}),
            "subsidiary.items[1]",
        ),
        (
            json!({"itemId": "Bad", "subsidiary": {"items": [{"name": "HQ"}]}}),
            "subsidiary.items[0]",
        ),
        (
            json!({"itemId": "Bad", "subsidiary": {"items": {"id": "1"}}}),
            "subsidiary",
        ),
        (
            json!({"itemId": "Bad", "subsidiary": [{"id": "1"}]}),
            "subsidiary",
        ),
        (json!({"itemId": "Bad", "subsidiary": "1"}), "subsidiary"),
    ] {
        let r = api.post("serviceSaleItem", body.clone()).await;
        assert_eq!(
            (r.status, r.error_code(), r.error_path()),
            (400, "INVALID_CONTENT", path),
            "{body}: {}",
            r.body
        );
    }
    assert_eq!(
        sim.handle().count(RecordType::ServiceSaleItem),
        2,
        "1 seeded + Multi"
    );
}

/// A customer's `subsidiary` is its one primary subsidiary: the multiselect form is refused.
#[tokio::test]
async fn customer_subsidiary_stays_a_single_select() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let seeded = sim.handle().count(RecordType::Customer);
    let r = api
        .post(
            "customer",
            json!({"companyName": "Multi Co", "subsidiary": {"items": [{"id": "1"}]}}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code(), r.error_path()),
        (400, "INVALID_CONTENT", "subsidiary"),
        "{}",
        r.body
    );
    assert_eq!(sim.handle().count(RecordType::Customer), seeded);
}

/// Custom multiselect fields (`custitem_…`) take the same form and keep every value.
#[tokio::test]
async fn custom_multiselect_fields_keep_their_values() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let r = api
        .post(
            "serviceSaleItem",
            json!({"itemId": "Tagged", "subsidiary": {"items": [{"id": "1"}]},
                   "custitem_channels": {"items": [{"id": "4"}, {"id": 7}]}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let got = api.get("serviceSaleItem", &r.location_id()).await;
    assert_eq!(
        got.body["custitem_channels"],
        json!({"items": [{"id": "4"}, {"id": "7"}]})
    );
    let r = api
        .post(
            "serviceSaleItem",
            json!({"itemId": "Bad tags", "custitem_channels": {"items": ["4"]}}),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, "INVALID_CONTENT"));
}
