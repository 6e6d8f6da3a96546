//! SuiteQL subset, Prefer header, paging rules and refused queries.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn prefer_transient_is_required() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let r = api
        .send(
            Method::POST,
            "/services/rest/query/v1/suiteql",
            Some(json!({"q": "SELECT id FROM customer"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error_detail().contains("Prefer: transient"));
}

#[tokio::test]
async fn lookups_by_external_id_custom_field_in_and_null() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_Q1").await;
    let r = api.suiteql("SELECT id, entityid, externalid, subsidiary, isperson FROM customer WHERE externalid IN (?, ?)", json!(["STRIPE_CUS_q1", "nope"]), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(r.body["hasMore"], false);
    assert_eq!(r.body["offset"], 0);
    let row = &r.body["items"][0];
    assert_eq!(row["links"], json!([]));
    assert_eq!(row["id"], cust);
    assert_eq!(row["externalid"], "stripe_cus_Q1");
    assert_eq!(row["subsidiary"], "1");
    assert_eq!(row["isperson"], "F");

    let r = api
        .suiteql(
            "SELECT id, itemid, itemtype FROM item WHERE custitem_stripe_product_id = ?",
            json!(["prod_SEEDPRO"]),
            "",
        )
        .await;
    assert_eq!(r.body["items"][0]["itemid"], "Pro plan");
    assert_eq!(r.body["items"][0]["itemtype"], "Service");

    let r = api.suiteql("SELECT COUNT(*) AS n FROM item WHERE custitem_stripe_product_id IS NOT NULL AND (itemtype = 'Service' OR itemtype = 'NonInvtPart')", json!([]), "").await;
    assert_eq!(r.body["items"][0]["n"], "2");
    let r = api
        .suiteql(
            "select count(*) from item where custitem_stripe_product_id is null",
            json!([]),
            "",
        )
        .await;
    assert_eq!(
        r.body["items"][0]["expr1"], "1",
        "only the discount item has no product ID"
    );
}

#[tokio::test]
async fn transactions_by_externalid_and_recordtype() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    let cust = api.customer("stripe_cus_T1").await;
    let item = api.seeded_item().await;
    let inv = api.invoice("stripe_in_T1", &cust, &item, "12.34").await;
    let r = api.suiteql("SELECT id, tranid, type, recordtype, entity, foreigntotal, currency FROM transaction WHERE externalid = ? AND recordtype = 'invoice'", json!(["stripe_in_t1"]), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let row = &r.body["items"][0];
    assert_eq!(row["id"], inv);
    assert_eq!(row["type"], "CustInvc");
    assert_eq!(row["entity"], cust);
    assert_eq!(row["foreigntotal"], "12.34");
    assert_eq!(row["currency"], "1");
    assert!(row["tranid"].as_str().unwrap().starts_with("INV"));
}

#[tokio::test]
async fn paging_rules_and_keyset_paging() {
    let sim = sim_with(|c| c.suiteql_max_rows = 6).await;
    let api = Api::new(&sim).await;
    for i in 0..9 {
        api.customer(&format!("stripe_cus_PG{i}")).await;
    }
    let q = "SELECT id FROM customer ORDER BY id";
    let r = api.suiteql(q, json!([]), "?limit=4&offset=0").await;
    assert_eq!(
        (
            r.body["count"].clone(),
            r.body["hasMore"].clone(),
            r.body["totalResults"].clone()
        ),
        (json!(4), json!(true), json!(10))
    );
    let rels: Vec<&str> = r.body["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert!(rels.contains(&"next") && rels.contains(&"self"));
    // Second page stops at the row cap (6), not the 10 rows that exist.
    let r = api.suiteql(q, json!([]), "?limit=2&offset=4").await;
    assert_eq!(
        (r.body["count"].clone(), r.body["hasMore"].clone()),
        (json!(2), json!(false))
    );
    // Past the cap → refused: page by key instead.
    let r = api.suiteql(q, json!([]), "?limit=2&offset=6").await;
    assert_eq!((r.status, r.error_code()), (400, "INVALID_PARAMETER"));
    let last = r.body.clone();
    assert_eq!(last["o:errorDetails"][0]["o:errorQueryParam"], "offset");
    let r = api
        .suiteql(
            "SELECT id FROM customer WHERE id > ? ORDER BY id",
            json!([api.suiteql(q, json!([]), "?limit=2&offset=4").await.body["items"][1]["id"]]),
            "",
        )
        .await;
    assert_eq!(
        r.body["count"], 4,
        "keyset paging reaches the rows beyond the cap"
    );

    let r = api.suiteql(q, json!([]), "?limit=3&offset=4").await;
    assert_eq!(
        (r.status, r.error_code()),
        (400, "INVALID_PARAMETER"),
        "offset must be a multiple of limit"
    );
    let r = api.suiteql(q, json!([]), "?limit=1001").await;
    assert_eq!((r.status, r.error_code()), (400, "INVALID_PARAMETER"));
    let r = api
        .suiteql(
            "SELECT id FROM customer ORDER BY id DESC",
            json!([]),
            "?limit=1",
        )
        .await;
    let top = r.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(top >= 109);
}

#[tokio::test]
async fn lastmodifieddate_watermarks_compare_as_datetimes() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    api.customer("stripe_cus_W1").await;
    let r = api
        .suiteql(
            "SELECT id, lastmodifieddate FROM customer WHERE lastmodifieddate >= ?",
            json!(["2020-01-01T00:00:00Z"]),
            "",
        )
        .await;
    assert_eq!(r.body["count"], 2, "{}", r.body);
    let r = api
        .suiteql(
            "SELECT id FROM customer WHERE lastmodifieddate >= ?",
            json!(["2999-01-01"]),
            "",
        )
        .await;
    assert_eq!(r.body["count"], 0);
    let r = api
        .suiteql(
            "SELECT id FROM customer WHERE lastmodifieddate >= ?",
            json!(["yesterday"]),
            "",
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn queries_outside_the_subset_are_refused_not_misread() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    for (q, needle) in [
        (
            "SELECT balance FROM customer",
            "Unknown identifier 'balance'",
        ),
        ("SELECT c.id FROM customer c", "Invalid search query"),
        (
            "SELECT id FROM customer JOIN transaction ON transaction.entity = customer.id",
            "Invalid search query",
        ),
        ("SELECT id FROM vendor", "vendor"),
        (
            "SELECT id FROM customer WHERE companyname LIKE 'A%'",
            "Invalid search query",
        ),
        (
            "SELECT id FROM customer WHERE id = ? AND email = ?",
            "bound parameter",
        ),
        ("DELETE FROM customer", "Invalid search query"),
        ("SELECT TOP 5 id FROM customer", "Invalid search query"),
    ] {
        let r = api.suiteql(q, json!([1]), "").await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "INVALID_PARAMETER"),
            "{q}: {}",
            r.body
        );
        assert!(
            r.error_detail().contains(needle),
            "{q}: {}",
            r.error_detail()
        );
    }
}

#[tokio::test]
async fn lower_compares_a_column_without_case() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    // The seeded customer's email is billing@seeded.example.
    let r = api
        .suiteql(
            "SELECT id FROM customer WHERE LOWER(email) = ?",
            json!(["billing@seeded.example"]),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["count"], 1);
    // Without LOWER the comparison is exact, as in Oracle.
    let r = api
        .suiteql(
            "SELECT id FROM customer WHERE email = ?",
            json!(["BILLING@SEEDED.EXAMPLE"]),
            "",
        )
        .await;
    assert_eq!(r.body["count"], 0);
    let r = api
        .suiteql(
            "SELECT id FROM customer WHERE LOWER(email) IN (?)",
            json!(["x"]),
            "",
        )
        .await;
    assert_eq!(r.status, 400, "LOWER only before a comparison");
}
