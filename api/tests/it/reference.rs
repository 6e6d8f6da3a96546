//! Reference data, Stripe → NetSuite: products become (or rename) NetSuite items, customers edited
//! in Stripe are updated in NetSuite, deletions in Stripe leave NetSuite alone.

use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions};
use mlc_netsuite_sim::RecordType;
use mlc_service::mappings;
use mlc_store::testing::backends;
use mlc_store::{ConnectionStore, EventFilter, JobState};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use serde_json::Value;

use crate::helpers::eventually;

async fn stripe_post(stack: &Stack, path: &str, form: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", stack.stripe.base_url))
        .bearer_auth(stack.stripe.api_key_str())
        .form(form)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stripe_delete(stack: &Stack, path: &str) -> Value {
    reqwest::Client::new()
        .delete(format!("{}{path}", stack.stripe.base_url))
        .bearer_auth(stack.stripe.api_key_str())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn waiting_count(store: &ConnectionStore) -> i64 {
    store
        .job_counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == JobState::Waiting)
        .map(|(_, n)| n)
        .unwrap_or(0)
}

/// Audit entries with `step` for the events of `event_type`.
async fn audit_steps(store: &ConnectionStore, event_type: &str, step: &str) -> Vec<String> {
    let events = store
        .list_events(&EventFilter {
            event_type: Some(event_type.into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for e in events {
        for a in store.audit_for_event(&e.event_id).await.unwrap() {
            if a.step == step {
                out.push(a.message);
            }
        }
    }
    out
}

/// A NetSuite record's internal ID as text.
fn rid(v: &Value) -> String {
    v["id"].to_string().trim_matches('"').to_string()
}

fn ns_customer(stack: &Stack, customer: &str) -> Option<Value> {
    stack
        .netsuite
        .handle()
        .get(RecordType::Customer, &format!("eid:stripe_{customer}"))
}

#[tokio::test]
async fn a_product_created_in_stripe_becomes_an_item_and_its_sales_post_without_a_mapping() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        // An invoice that lost the race with its product's item is checked again soon.
        opts.unmapped_retry_secs = 1;
        opts.extra_env
            .push(("MLC__REFERENCE__AUTO_CREATE_ITEMS".into(), "true".into()));
        let stack = Stack::start(opts).await.expect("stack starts");
        // No catalog hook: nobody creates NetSuite items; the connector does, from product.created.
        let report = run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            ScenarioConfig {
                customers: 6,
                seed: 5,
                checkout_percent: 100,
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        assert!(stack.wait_idle(Duration::from_secs(120)).await);
        let settled = eventually(Duration::from_secs(90), || async {
            waiting_count(&stack.store).await == 0
        })
        .await;
        assert!(settled, "events still wait for an item");

        // The unmapped product got an item carrying its Stripe ID, and is linked to it.
        let h = stack.netsuite.handle();
        let item = h
            .get(
                RecordType::ServiceSaleItem,
                &format!("eid:stripe_{}", report.unmapped_product),
            )
            .expect("item created for the unmapped product");
        assert_eq!(
            item["custitem_stripe_product_id"].as_str(),
            Some(report.unmapped_product.as_str())
        );
        let links = stack
            .store
            .get_item_links(std::slice::from_ref(&report.unmapped_product))
            .await
            .unwrap();
        assert_eq!(
            links.get(&report.unmapped_product).cloned(),
            Some(rid(&item))
        );
        // One item per product, however many events each product had.
        for id in report.products.values() {
            let eid = format!("stripe_{id}").to_lowercase();
            let n = h
                .ids(RecordType::ServiceSaleItem)
                .into_iter()
                .filter_map(|i| h.get(RecordType::ServiceSaleItem, &i.to_string()))
                .filter(|r| r["externalId"].as_str().map(str::to_lowercase) == Some(eid.clone()))
                .count();
            assert_eq!(n, 1, "{id}");
        }
        assert!(
            !audit_steps(&stack.store, "product.created", "item_created")
                .await
                .is_empty()
        );

        // Every paid invoice and standalone charge posted, without `mappings set`.
        let invoices = stack.netsuite_invoices();
        assert_eq!(
            invoices.len(),
            report.paid_invoices.len() + report.standalone_charges.len()
        );
        assert!(!report.standalone_charges.is_empty());
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
            "{counts:?}"
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn without_auto_create_a_product_waits_and_mappings_import_releases_it() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.unmapped_retry_secs = 3600; // only the import releases them
        let stack = Stack::start(opts).await.expect("stack starts");
        let report = run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            ScenarioConfig {
                customers: 6,
                seed: 5,
                checkout_percent: 100,
                on_catalog: Some(stack.catalog_hook()),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        assert!(stack.wait_idle(Duration::from_secs(120)).await);
        let unmapped = report.unmapped_product.clone();
        assert!(waiting_count(&stack.store).await > 0, "nothing waits");
        // product.created said what it waits for; nothing was created in NetSuite.
        let missing = audit_steps(&stack.store, "product.created", "item_missing").await;
        assert!(
            missing
                .iter()
                .any(|m| m.contains(&unmapped) && m.contains("waiting for a NetSuite item")),
            "{missing:?}"
        );
        assert!(
            stack
                .netsuite
                .handle()
                .get(
                    RecordType::ServiceSaleItem,
                    &format!("eid:stripe_{unmapped}")
                )
                .is_none()
        );

        // `mappings unmapped` shows the waiting events and their amount per currency.
        let listed = mappings::unmapped_with_waiting(&stack.store).await.unwrap();
        let (_, events) = listed
            .iter()
            .find(|(p, _)| p.stripe_product_id == unmapped)
            .expect("unmapped product listed");
        assert!(!events.is_empty());
        let totals = mappings::waiting_totals(&stack.store, events)
            .await
            .unwrap();
        assert!(!totals.is_empty(), "no waiting amount");
        assert!(totals.values().all(|v| *v > 0), "{totals:?}");

        // The finance team creates the item and imports a CSV with one good and one bad row.
        let item = ml_connector::stack::create_product_item(
            stack.netsuite.handle(),
            "Legacy Add-on",
            &unmapped,
        )
        .unwrap();
        let csv = format!(
            "stripe_product_id,netsuite_item_id\n{unmapped},{item}\nprod_Broken,not-an-id\n"
        );
        let imported = mappings::import_csv(&stack.store, &csv).await.unwrap();
        assert_eq!(imported.applied, vec![(unmapped.clone(), item.to_string())]);
        assert_eq!(imported.bad.len(), 1, "{imported:?}");
        assert_eq!(imported.bad[0].line, 3);
        assert!(imported.bad[0].reason.contains("not-an-id"), "{imported:?}");
        assert!(imported.released > 0);
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        assert_eq!(waiting_count(&stack.store).await, 0);
        assert_eq!(
            stack.netsuite_invoices().len(),
            report.paid_invoices.len() + report.standalone_charges.len()
        );

        // Export prints what import reads; importing it again changes nothing.
        let exported = mappings::export_csv(&stack.store).await.unwrap();
        assert!(exported.starts_with("stripe_product_id,netsuite_item_id\n"));
        assert!(
            exported.contains(&format!("\n{unmapped},{item}\n")),
            "{exported}"
        );
        let before = stack.store.list_item_links().await.unwrap();
        let again = mappings::import_csv(&stack.store, &exported).await.unwrap();
        assert!(again.bad.is_empty(), "{again:?}");
        assert_eq!(again.applied.len(), before.len());
        assert_eq!(mappings::export_csv(&stack.store).await.unwrap(), exported);
        stack.stop().await.unwrap();
    }
}

/// Creates a customer, then edits its name and email in Stripe; returns the NetSuite record
/// before and after the edit.
async fn edit_customer(stack: &Stack) -> (String, Value, Value) {
    let seeded = stack.netsuite_count(RecordType::Customer);
    let c = stripe_post(
        stack,
        "/v1/customers",
        &[("name", "Old Name Ltd"), ("email", "old@example.test")],
    )
    .await;
    let id = c["id"].as_str().unwrap().to_string();
    assert!(stack.wait_idle(Duration::from_secs(60)).await);
    let before = ns_customer(stack, &id).expect("customer created in NetSuite");
    stripe_post(
        stack,
        &format!("/v1/customers/{id}"),
        &[("name", "New Name GmbH"), ("email", "new@example.test")],
    )
    .await;
    assert!(stack.wait_idle(Duration::from_secs(60)).await);
    let after = ns_customer(stack, &id).expect("customer still in NetSuite");
    // One NetSuite customer for the Stripe customer, however often it was edited.
    assert_eq!(stack.netsuite_count(RecordType::Customer), seeded + 1);
    (id, before, after)
}

#[tokio::test]
async fn a_customer_edited_in_stripe_is_updated_in_netsuite() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let stack = Stack::start(StackOptions::new(db.url(), keys.path()))
            .await
            .expect("stack starts");
        let (id, before, after) = edit_customer(&stack).await;
        assert_eq!(before["companyName"], "Old Name Ltd");
        assert_eq!(before["email"], "old@example.test");
        assert_eq!(
            before["custentity_stripe_customer_id"].as_str(),
            Some(id.as_str())
        );
        assert_eq!(after["id"], before["id"], "same NetSuite customer");
        assert_eq!(after["companyName"], "New Name GmbH");
        assert_eq!(after["email"], "new@example.test");
        let updated = audit_steps(&stack.store, "customer.updated", "customer_updated").await;
        assert!(
            updated
                .iter()
                .any(|m| m.contains("companyName") && m.contains("email")),
            "{updated:?}"
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn with_netsuite_owning_customers_an_edit_in_stripe_keeps_the_netsuite_name() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.extra_env
            .push(("MLC__REFERENCE__CUSTOMER_OWNER".into(), "netsuite".into()));
        let stack = Stack::start(opts).await.expect("stack starts");
        let (_, before, after) = edit_customer(&stack).await;
        // Created from Stripe, so it got Stripe's name; the later edit does not overwrite it.
        assert_eq!(before["companyName"], "Old Name Ltd");
        assert_eq!(after["id"], before["id"]);
        assert_eq!(after["companyName"], "Old Name Ltd");
        assert_eq!(after["email"], "old@example.test");
        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn deleting_in_stripe_keeps_the_netsuite_records_and_is_audited() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.extra_env
            .push(("MLC__REFERENCE__AUTO_CREATE_ITEMS".into(), "true".into()));
        let stack = Stack::start(opts).await.expect("stack starts");
        let seeded = stack.netsuite_count(RecordType::Customer);
        let c = stripe_post(&stack, "/v1/customers", &[("name", "Leaving Co")]).await;
        let p = stripe_post(&stack, "/v1/products", &[("name", "Retired plan")]).await;
        let (cus, prod) = (c["id"].as_str().unwrap(), p["id"].as_str().unwrap());
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        let customer = ns_customer(&stack, cus).expect("customer in NetSuite");
        let item = stack
            .netsuite
            .handle()
            .get(RecordType::ServiceSaleItem, &format!("eid:stripe_{prod}"))
            .expect("item in NetSuite");
        let items_before = stack.netsuite_count(RecordType::ServiceSaleItem);

        stripe_delete(&stack, &format!("/v1/customers/{cus}")).await;
        stripe_delete(&stack, &format!("/v1/products/{prod}")).await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);

        assert_eq!(ns_customer(&stack, cus), Some(customer.clone()));
        assert_eq!(
            stack
                .netsuite
                .handle()
                .get(RecordType::ServiceSaleItem, &format!("eid:stripe_{prod}")),
            Some(item.clone())
        );
        assert_eq!(
            stack.netsuite_count(RecordType::ServiceSaleItem),
            items_before
        );
        assert_eq!(stack.netsuite_count(RecordType::Customer), seeded + 1);
        let deleted = [
            audit_steps(&stack.store, "customer.deleted", "deleted_in_stripe").await,
            audit_steps(&stack.store, "product.deleted", "deleted_in_stripe").await,
        ];
        let (cid, iid) = (rid(&customer), rid(&item));
        assert!(
            deleted[0].iter().any(|m| m.contains(cus)
                && m.contains("deleted in Stripe")
                && m.contains(&format!("NetSuite customer {cid} kept"))),
            "{deleted:?}"
        );
        assert!(
            deleted[1]
                .iter()
                .any(|m| m.contains(prod) && m.contains(&format!("NetSuite item {iid} kept"))),
            "{deleted:?}"
        );
        // Links stay: a late invoice of the deleted customer still finds its NetSuite record.
        assert_eq!(
            stack.store.get_customer_link(cus).await.unwrap().as_deref(),
            Some(cid.as_str())
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_product_renamed_in_stripe_renames_its_netsuite_item_once() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.extra_env
            .push(("MLC__REFERENCE__UPDATE_ITEM_NAMES".into(), "true".into()));
        let stack = Stack::start(opts).await.expect("stack starts");
        let p = stripe_post(&stack, "/v1/products", &[("name", "Starter")]).await;
        let prod = p["id"].as_str().unwrap().to_string();
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        // Auto-create is off: nothing is created, the product waits for an item.
        assert!(
            stack
                .netsuite
                .handle()
                .get(RecordType::ServiceSaleItem, &format!("eid:stripe_{prod}"))
                .is_none()
        );
        let item =
            ml_connector::stack::create_product_item(stack.netsuite.handle(), "Starter", &prod)
                .unwrap()
                .to_string();

        stripe_post(
            &stack,
            &format!("/v1/products/{prod}"),
            &[
                ("name", "Starter (2027)"),
                ("description", "Monthly starter plan"),
            ],
        )
        .await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        let renamed = stack
            .netsuite
            .handle()
            .get(RecordType::ServiceSaleItem, &item)
            .unwrap();
        assert_eq!(renamed["displayName"], "Starter (2027)");
        assert_eq!(renamed["description"], "Monthly starter plan");
        // The item's name (itemId) is NetSuite's own and stays.
        assert_eq!(renamed["itemId"], "Starter");

        // A change Stripe makes elsewhere (metadata) writes nothing to NetSuite.
        stripe_post(
            &stack,
            &format!("/v1/products/{prod}"),
            &[("metadata[tier]", "1")],
        )
        .await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        assert_eq!(
            stack
                .netsuite
                .handle()
                .get(RecordType::ServiceSaleItem, &item)
                .unwrap(),
            renamed
        );
        let updated = audit_steps(&stack.store, "product.updated", "item_updated").await;
        assert_eq!(updated.len(), 1, "{updated:?}");
        let unchanged = audit_steps(&stack.store, "product.updated", "item_unchanged").await;
        assert_eq!(unchanged.len(), 1, "{unchanged:?}");
        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_stripe_customer_matching_an_existing_netsuite_customer_updates_it_instead_of_adding_one()
{
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let stack = Stack::start(StackOptions::new(db.url(), keys.path()))
            .await
            .expect("stack starts");
        // The finance team's customer, made in NetSuite long before Stripe.
        let existing = stack
            .netsuite
            .handle()
            .create(
                RecordType::Customer,
                serde_json::json!({
                    "companyName": "Match Corp (NetSuite)",
                    "email": "ap@match.test",
                    "subsidiary": {"id": "1"},
                }),
            )
            .unwrap();
        let count = stack.netsuite_count(RecordType::Customer);
        let c = stripe_post(
            &stack,
            "/v1/customers",
            &[("name", "Match Corp"), ("email", "ap@match.test")],
        )
        .await;
        let cus = c["id"].as_str().unwrap();
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        assert_eq!(
            stack.netsuite_count(RecordType::Customer),
            count,
            "a second customer"
        );
        let record = stack
            .netsuite
            .handle()
            .get(RecordType::Customer, &existing.to_string())
            .unwrap();
        assert_eq!(record["companyName"], "Match Corp");
        assert_eq!(record["custentity_stripe_customer_id"].as_str(), Some(cus));
        assert!(
            record.get("externalId").is_none_or(Value::is_null),
            "{record}"
        );
        assert_eq!(
            stack.store.get_customer_link(cus).await.unwrap(),
            Some(existing.to_string())
        );
        stack.stop().await.unwrap();
    }
}

/// NetSuite's request count and the connector's writes, to take differences of.
fn ns_counts(stack: &Stack) -> (u64, u64) {
    let s = stack.netsuite.handle().stats();
    (s.rest_requests, s.writes_committed)
}

/// A `customer.updated` is compared with what the connector last wrote (a fingerprint stored
/// with the link), not with NetSuite read back: one that changes nothing NetSuite holds costs no
/// request; one that changes a field costs one PATCH of that field.
#[tokio::test]
async fn a_customer_update_costs_a_netsuite_request_only_when_a_synced_field_changed() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let stack = Stack::start(StackOptions::new(db.url(), keys.path()))
            .await
            .expect("stack starts");
        let c = stripe_post(
            &stack,
            "/v1/customers",
            &[("name", "Quiet Ltd"), ("email", "billing@quiet.test")],
        )
        .await;
        let cus = c["id"].as_str().unwrap().to_string();
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        let created = ns_customer(&stack, &cus).expect("customer created in NetSuite");
        let link = stack.store.get_customer_link_state(&cus).await.unwrap();
        assert!(
            link.as_ref().is_some_and(|l| l.fingerprint.is_some()),
            "{link:?}"
        );

        // Stripe changes something NetSuite does not hold: nothing is asked of NetSuite.
        let before = ns_counts(&stack);
        stripe_post(
            &stack,
            &format!("/v1/customers/{cus}"),
            &[("metadata[tier]", "gold")],
        )
        .await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        assert_eq!(ns_counts(&stack), before, "no NetSuite request");
        assert_eq!(ns_customer(&stack, &cus), Some(created.clone()));
        let unchanged = audit_steps(&stack.store, "customer.updated", "customer_unchanged").await;
        assert!(
            unchanged.iter().any(|m| m.contains("NetSuite not read")),
            "{unchanged:?}"
        );

        // One synced field changes: it is written once, alone.
        let before = ns_counts(&stack);
        stripe_post(
            &stack,
            &format!("/v1/customers/{cus}"),
            &[("email", "ap@quiet.test")],
        )
        .await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        let after = ns_counts(&stack);
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (1, 1),
            "one request, one write"
        );
        let record = ns_customer(&stack, &cus).unwrap();
        assert_eq!(record["id"], created["id"]);
        assert_eq!(record["email"], "ap@quiet.test");
        assert_eq!(record["companyName"], "Quiet Ltd");
        let updated = audit_steps(&stack.store, "customer.updated", "customer_updated").await;
        assert_eq!(updated.len(), 1, "{updated:?}");
        assert!(
            updated[0].ends_with(": email"),
            "only the email: {updated:?}"
        );

        // The same values delivered again (a replayed or late event) cost nothing.
        let before = ns_counts(&stack);
        stripe_post(
            &stack,
            &format!("/v1/customers/{cus}"),
            &[("metadata[tier]", "platinum")],
        )
        .await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        assert_eq!(ns_counts(&stack), before);
        assert_eq!(stack.netsuite_count(RecordType::Customer), {
            // The seeded customers plus this one.
            let seeded = mlc_netsuite_sim::SimConfig::example()
                .unwrap()
                .seed
                .customers
                .len();
            seeded + 1
        });
        stack.stop().await.unwrap();
    }
}

/// A link without a fingerprint (made before migration 0008, or moved by a person) behaves as
/// before: the NetSuite customer is read once and compared; then the fingerprint is stored and
/// the next unchanged update costs nothing.
#[tokio::test]
async fn a_link_without_a_fingerprint_reads_netsuite_once_then_stores_one() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let stack = Stack::start(StackOptions::new(db.url(), keys.path()))
            .await
            .expect("stack starts");
        let c = stripe_post(&stack, "/v1/customers", &[("name", "Legacy Link Co")]).await;
        let cus = c["id"].as_str().unwrap().to_string();
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        let record = ns_customer(&stack, &cus).expect("customer in NetSuite");
        let ns_id = rid(&record);
        // Moving the link away and back forgets the fingerprint, as an old link has none.
        stack
            .store
            .set_customer_link(&cus, "999999", "manual")
            .await
            .unwrap();
        stack
            .store
            .set_customer_link(&cus, &ns_id, "manual")
            .await
            .unwrap();
        let link = stack.store.get_customer_link_state(&cus).await.unwrap();
        assert_eq!(link.and_then(|l| l.fingerprint), None);

        let before = ns_counts(&stack);
        stripe_post(
            &stack,
            &format!("/v1/customers/{cus}"),
            &[("metadata[a]", "1")],
        )
        .await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        let after = ns_counts(&stack);
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (1, 0),
            "read once, nothing written"
        );
        let link = stack.store.get_customer_link_state(&cus).await.unwrap();
        assert!(
            link.and_then(|l| l.fingerprint).is_some(),
            "stored after the read"
        );

        let before = ns_counts(&stack);
        stripe_post(
            &stack,
            &format!("/v1/customers/{cus}"),
            &[("metadata[a]", "2")],
        )
        .await;
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        assert_eq!(ns_counts(&stack), before, "compared with the fingerprint");
        assert_eq!(ns_customer(&stack, &cus), Some(record));
        stack.stop().await.unwrap();
    }
}

/// Customers created in Stripe together are looked up in NetSuite together: fewer SuiteQL
/// queries than customers, and each still finds (or gets) its own NetSuite customer, the
/// email match included.
#[tokio::test]
async fn customers_created_together_share_their_netsuite_lookups() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        // A busy account: one request at a time, 300 ms each.
        opts.netsuite_latency = Duration::from_millis(300);
        opts.netsuite_concurrency_limit = 1;
        opts.netsuite_concurrency = 1;
        let stack = Stack::start(opts).await.expect("stack starts");
        let h = stack.netsuite.handle();
        let existing = h
            .create(
                RecordType::Customer,
                serde_json::json!({"companyName": "Batch Corp (NetSuite)", "email": "ap@batch.test",
                                   "subsidiary": {"id": "1"}}),
            )
            .unwrap();
        let count = stack.netsuite_count(RecordType::Customer);
        let suiteql_before = h.stats().by_endpoint.get("suiteql").copied().unwrap_or(0);
        let mut created = Vec::new();
        for i in 0..6 {
            let email = if i == 3 {
                "AP@Batch.test".to_string()
            } else {
                format!("buyer{i}@batch.test")
            };
            let name = format!("Batch buyer {i}");
            let c = stripe_post(
                &stack,
                "/v1/customers",
                &[("name", name.as_str()), ("email", email.as_str())],
            )
            .await;
            created.push((c["id"].as_str().unwrap().to_string(), email));
        }
        assert!(stack.wait_idle(Duration::from_secs(120)).await);

        let lookups = h.stats().by_endpoint.get("suiteql").copied().unwrap_or(0) - suiteql_before;
        assert!(
            (1..6).contains(&lookups),
            "6 customers looked up in {lookups} queries"
        );
        // Five new NetSuite customers, and the one matching by email (case aside) was linked.
        assert_eq!(stack.netsuite_count(RecordType::Customer), count + 5);
        for (i, (cus, email)) in created.iter().enumerate() {
            let link = stack.store.get_customer_link(cus).await.unwrap();
            if i == 3 {
                assert_eq!(link, Some(existing.to_string()), "{cus} matched by email");
                let record = h.get(RecordType::Customer, &existing.to_string()).unwrap();
                assert_eq!(
                    record["custentity_stripe_customer_id"].as_str(),
                    Some(cus.as_str())
                );
            } else {
                let record = ns_customer(&stack, cus).expect("created in NetSuite");
                assert_eq!(link, Some(rid(&record)));
                assert_eq!(record["email"].as_str(), Some(email.as_str()));
                assert_eq!(record["companyName"], format!("Batch buyer {i}"));
            }
        }
        stack.stop().await.unwrap();
    }
}
