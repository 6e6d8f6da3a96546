//! NetSuite → Stripe reference sync, end to end on both simulators and every store backend:
//! flagged items become Stripe products linked both ways, nothing loops, renames follow,
//! customers follow `reference.customer_owner`, and the watermark survives a restart.

use ml_connector::stack::{Stack, StackOptions};
use mlc_core::NetSuiteInternalId;
use mlc_netsuite_sim::RecordType;
use mlc_service::sync::{
    AUDIT_STEP, CUSTOMER_WATERMARK, ITEM_WATERMARK, SyncContext, SyncReport,
    netsuite_to_stripe_once,
};
use mlc_store::testing::backends;
use mlc_stripe::client::Query;
use mlc_stripe::models::{Customer, List, Product};
use serde_json::{Value, json};

const ITEM_FILTER: &str = "custitem_sell_on_stripe = 'T'";
const CUSTOMER_FILTER: &str = "custentity_sync_to_stripe = 'T'";

async fn start(db_url: &str, keys: &std::path::Path, owner: &str) -> (Stack, SyncContext) {
    let mut opts = StackOptions::new(db_url, keys);
    for (k, v) in [
        ("MLC__REFERENCE__ITEM_FILTER", ITEM_FILTER),
        ("MLC__REFERENCE__CUSTOMER_FILTER", CUSTOMER_FILTER),
        ("MLC__REFERENCE__NETSUITE_SYNC_INTERVAL_SECS", "0"),
        ("MLC__REFERENCE__CUSTOMER_OWNER", owner),
    ] {
        opts.extra_env.push((k.into(), v.into()));
    }
    let stack = Stack::start(opts).await.expect("stack starts");
    let ctx = SyncContext::from_config(&stack.config, stack.store.clone()).expect("sync context");
    (stack, ctx)
}

async fn sync(ctx: &SyncContext) -> SyncReport {
    let report = netsuite_to_stripe_once(ctx).await;
    assert!(report.errors.is_empty(), "sync errors: {report}");
    report
}

fn item(stack: &Stack, name: &str, flagged: bool) -> u64 {
    let mut body = json!({
        "itemId": name, "displayName": name, "subsidiary": {"id": "1"},
        "includeChildren": true, "incomeAccount": {"id": "4"},
    });
    if flagged {
        body["custitem_sell_on_stripe"] = json!(true);
    }
    stack
        .netsuite
        .handle()
        .create(RecordType::ServiceSaleItem, body)
        .expect("item created")
}

fn ns_field(stack: &Stack, t: RecordType, id: u64, field: &str) -> Option<String> {
    stack
        .netsuite
        .handle()
        .get(t, &id.to_string())
        .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_string))
}

fn ns_writes(stack: &Stack) -> u64 {
    stack.netsuite.handle().stats().writes_committed
}

/// Stripe writes that changed something: each emits one event.
fn stripe_events(stack: &Stack) -> usize {
    stack.stripe.handle.event_types().len()
}

async fn products(ctx: &SyncContext) -> Vec<Product> {
    let mut q = Query::new();
    q.push("limit", "100");
    let list: List<Product> = ctx.stripe.get_list("/v1/products", &q).await.expect("list");
    list.data
}

async fn customers(ctx: &SyncContext) -> Vec<Customer> {
    let mut q = Query::new();
    q.push("limit", "100");
    let list: List<Customer> = ctx
        .stripe
        .get_list("/v1/customers", &q)
        .await
        .expect("list");
    list.data
}

async fn patch(ctx: &SyncContext, record_type: &str, id: u64, body: Value) {
    let id = NetSuiteInternalId::parse(&id.to_string()).expect("id");
    ctx.netsuite
        .patch(record_type, &id, body)
        .await
        .expect("NetSuite edit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flagged_item_becomes_a_linked_stripe_product_once_and_follows_renames() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, ctx) = start(db.url(), keys.path(), "stripe").await;
        let flagged = item(&stack, "Pro plan", true);
        let unflagged = item(&stack, "Internal consulting", false);

        let first = sync(&ctx).await;
        assert_eq!(first.items.created, 1, "{:?}: {first}", db.backend());
        assert_eq!(first.items.written_back, 1, "{first}");

        // Stripe has the product, named after the item and pointing back at it.
        let all = products(&ctx).await;
        assert_eq!(all.len(), 1, "only the flagged item: {all:?}");
        let product = &all[0];
        assert_eq!(product.name.as_deref(), Some("Pro plan"));
        assert_eq!(
            product.metadata.get("netsuite_item_id"),
            Some(&flagged.to_string())
        );
        // NetSuite's item holds the product ID; the unflagged item was left alone.
        assert_eq!(
            ns_field(
                &stack,
                RecordType::ServiceSaleItem,
                flagged,
                "custitem_stripe_product_id"
            )
            .as_deref(),
            Some(product.id.as_str())
        );
        assert_eq!(
            ns_field(
                &stack,
                RecordType::ServiceSaleItem,
                unflagged,
                "custitem_stripe_product_id"
            ),
            None
        );
        // The store links them, so posting an invoice for the product finds the item.
        let links = stack
            .store
            .get_item_links(std::slice::from_ref(&product.id))
            .await
            .unwrap();
        assert_eq!(links.get(&product.id), Some(&flagged.to_string()));
        let audit = stack
            .store
            .audit_for_stripe_object(&product.id)
            .await
            .unwrap();
        // (The webhook intake audits the product.created event too; those entries have an event.)
        let synced: Vec<_> = audit.iter().filter(|a| a.step == AUDIT_STEP).collect();
        assert_eq!(synced.len(), 2, "create + write-back: {audit:?}");
        assert!(synced.iter().all(|a| a.event_id.is_none()));
        assert!(
            synced[1].message.contains("custitem_stripe_product_id"),
            "{synced:?}"
        );

        // Again: our own write-back moved the item's lastmodifieddate, so it is read once more,
        // and left alone. No second product, no write anywhere.
        let (ns_before, stripe_before) = (ns_writes(&stack), stripe_events(&stack));
        for _ in 0..2 {
            let again = sync(&ctx).await;
            assert_eq!(again.items.writes(), 0, "no loop: {again}");
        }
        assert_eq!(ns_writes(&stack), ns_before, "no NetSuite write");
        assert_eq!(stripe_events(&stack), stripe_before, "no Stripe write");
        assert_eq!(products(&ctx).await.len(), 1);

        // Renamed in NetSuite → renamed in Stripe, once.
        patch(
            &ctx,
            "serviceSaleItem",
            flagged,
            json!({"displayName": "Pro plan (annual)"}),
        )
        .await;
        let renamed = sync(&ctx).await;
        assert_eq!(renamed.items.updated, 1, "{renamed}");
        assert_eq!(renamed.items.written_back, 0, "{renamed}");
        let read = ctx.stripe.retrieve_product(&product.id).await.unwrap();
        assert_eq!(read.name.as_deref(), Some("Pro plan (annual)"));
        let (ns_before, stripe_before) = (ns_writes(&stack), stripe_events(&stack));
        assert_eq!(sync(&ctx).await.items.writes(), 0);
        assert_eq!(ns_writes(&stack), ns_before);
        assert_eq!(stripe_events(&stack), stripe_before);

        // Flagging an item later brings it over on the next run.
        let late = item(&stack, "Extra seat", true);
        let more = sync(&ctx).await;
        assert_eq!(more.items.created, 1, "{more}");
        assert_eq!(products(&ctx).await.len(), 2);
        assert!(
            ns_field(
                &stack,
                RecordType::ServiceSaleItem,
                late,
                "custitem_stripe_product_id"
            )
            .is_some_and(|p| p.starts_with("prod_"))
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watermark_survives_a_restart() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, ctx) = start(db.url(), keys.path(), "stripe").await;
        let flagged = item(&stack, "Pro plan", true);
        sync(&ctx).await;
        let watermark = stack.store.get_watermark(ITEM_WATERMARK).await.unwrap();
        let stored: Value =
            serde_json::from_str(watermark.as_deref().expect("watermark saved")).unwrap();
        assert_eq!(stored["filter"], ITEM_FILTER);
        assert!(
            stored["after"]
                .as_str()
                .is_some_and(|a| a.starts_with("20")),
            "{stored}"
        );

        // A restart: a new store handle on the same database and new clients.
        let reopened = mlc_service::connections::default_scoped(db.store().await)
            .await
            .unwrap();
        assert_eq!(
            reopened.get_watermark(ITEM_WATERMARK).await.unwrap(),
            watermark,
            "{:?}",
            db.backend()
        );
        let restarted =
            SyncContext::from_config(&stack.config, reopened.clone()).expect("sync context");
        let (ns_before, stripe_before) = (ns_writes(&stack), stripe_events(&stack));
        let after = sync(&restarted).await;
        assert_eq!(after.items.writes(), 0, "{after}");
        assert_eq!(ns_writes(&stack), ns_before);
        assert_eq!(stripe_events(&stack), stripe_before);
        assert_eq!(products(&restarted).await.len(), 1);

        // A change after the restart is still picked up from the stored watermark.
        patch(
            &ctx,
            "serviceSaleItem",
            flagged,
            json!({"displayName": "Pro"}),
        )
        .await;
        let renamed = sync(&restarted).await;
        assert_eq!(renamed.items.updated, 1, "{renamed}");
        let product = ns_field(
            &stack,
            RecordType::ServiceSaleItem,
            flagged,
            "custitem_stripe_product_id",
        )
        .expect("linked");
        let read = restarted.stripe.retrieve_product(&product).await.unwrap();
        assert_eq!(read.name.as_deref(), Some("Pro"));

        // A different filter selects other records: the sync starts that kind over.
        reopened
            .set_watermark(
                ITEM_WATERMARK,
                &json!({"after": "2999-01-01T00:00:00Z", "filter": "isinactive = 'F'"}).to_string(),
            )
            .await
            .unwrap();
        let rescanned = sync(&restarted).await;
        assert_eq!(
            rescanned.items.read, 1,
            "full read under the new filter: {rescanned}"
        );
        stack.stop().await.unwrap();
    }
}

fn customer(stack: &Stack, company: &str, email: &str) -> u64 {
    stack
        .netsuite
        .handle()
        .create(
            RecordType::Customer,
            json!({
                "companyName": company, "email": email, "subsidiary": {"id": "1"},
                "currency": {"id": "1"}, "custentity_sync_to_stripe": true,
            }),
        )
        .expect("customer created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_edited_in_netsuite_updates_stripe_when_netsuite_owns_it() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, ctx) = start(db.url(), keys.path(), "netsuite").await;
        let acme = customer(&stack, "Acme Ltd", "ap@acme.example");

        let first = sync(&ctx).await;
        assert_eq!(first.customers.created, 1, "{:?}: {first}", db.backend());
        assert_eq!(first.customers.written_back, 1, "{first}");
        let cus = ns_field(
            &stack,
            RecordType::Customer,
            acme,
            "custentity_stripe_customer_id",
        )
        .expect("Stripe customer ID written back");
        assert!(cus.starts_with("cus_"), "{cus}");
        let created = ctx.stripe.retrieve_customer(&cus).await.unwrap();
        assert_eq!(created.name.as_deref(), Some("Acme Ltd"));
        assert_eq!(created.email.as_deref(), Some("ap@acme.example"));
        assert_eq!(
            created.metadata.get("netsuite_customer_id"),
            Some(&acme.to_string())
        );
        assert_eq!(
            stack.store.get_customer_link(&cus).await.unwrap(),
            Some(acme.to_string())
        );
        // Only the flagged customer (not the seeded one) went to Stripe.
        assert_eq!(customers(&ctx).await.len(), 1);

        patch(
            &ctx,
            "customer",
            acme,
            json!({"companyName": "Acme Holdings Ltd", "email": "billing@acme.example"}),
        )
        .await;
        let edited = sync(&ctx).await;
        assert_eq!(edited.customers.updated, 1, "{edited}");
        assert_eq!(edited.customers.created, 0, "{edited}");
        let read = ctx.stripe.retrieve_customer(&cus).await.unwrap();
        assert_eq!(read.name.as_deref(), Some("Acme Holdings Ltd"));
        assert_eq!(read.email.as_deref(), Some("billing@acme.example"));

        let (ns_before, stripe_before) = (ns_writes(&stack), stripe_events(&stack));
        assert_eq!(sync(&ctx).await.customers.writes(), 0);
        assert_eq!(ns_writes(&stack), ns_before);
        assert_eq!(stripe_events(&stack), stripe_before);
        assert!(
            stack
                .store
                .get_watermark(CUSTOMER_WATERMARK)
                .await
                .unwrap()
                .is_some()
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_edited_in_netsuite_keeps_stripes_name_when_stripe_owns_it() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, ctx) = start(db.url(), keys.path(), "stripe").await;
        let acme = customer(&stack, "Acme Ltd", "ap@acme.example");
        assert_eq!(sync(&ctx).await.customers.created, 1);
        let cus = ns_field(
            &stack,
            RecordType::Customer,
            acme,
            "custentity_stripe_customer_id",
        )
        .expect("linked");

        patch(
            &ctx,
            "customer",
            acme,
            json!({"companyName": "Acme Holdings Ltd", "email": "billing@acme.example"}),
        )
        .await;
        let stripe_before = stripe_events(&stack);
        let edited = sync(&ctx).await;
        assert_eq!(
            edited.customers.writes(),
            0,
            "Stripe owns name and email: {edited}"
        );
        assert_eq!(stripe_events(&stack), stripe_before);
        let read = ctx.stripe.retrieve_customer(&cus).await.unwrap();
        assert_eq!(read.name.as_deref(), Some("Acme Ltd"));
        assert_eq!(read.email.as_deref(), Some("ap@acme.example"));
        assert_eq!(customers(&ctx).await.len(), 1);
        stack.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_stopped_before_the_write_back_is_finished_without_a_second_product() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, ctx) = start(db.url(), keys.path(), "stripe").await;
        let flagged = item(&stack, "Pro plan", true);
        // NetSuite fails the write-back (a 500 on PATCH: its outcome unknown, so not retried).
        stack
            .netsuite
            .handle()
            .push_fault(mlc_netsuite_sim::QueuedFault {
                kind: mlc_netsuite_sim::FaultKind::ServerError,
                method: Some("PATCH".into()),
                path_contains: Some("/record/v1/servicesaleitem".into()),
            });
        let failed = netsuite_to_stripe_once(&ctx).await;
        assert_eq!(failed.items.failed, 1, "{:?}: {failed}", db.backend());
        assert_eq!(failed.items.created, 1, "{failed}");
        assert_eq!(failed.errors.len(), 1, "{failed}");
        assert!(
            failed.errors[0].contains(&format!("NetSuite item {flagged}")),
            "{failed}"
        );
        assert_eq!(
            ns_field(
                &stack,
                RecordType::ServiceSaleItem,
                flagged,
                "custitem_stripe_product_id"
            ),
            None
        );

        // The next run finds the product it made (store link) and only writes it back.
        let resumed = sync(&ctx).await;
        assert_eq!(resumed.items.created, 0, "{resumed}");
        assert_eq!(resumed.items.written_back, 1, "{resumed}");
        let all = products(&ctx).await;
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(
            ns_field(
                &stack,
                RecordType::ServiceSaleItem,
                flagged,
                "custitem_stripe_product_id"
            )
            .as_deref(),
            Some(all[0].id.as_str())
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_runs_the_sync_every_interval() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        for (k, v) in [
            ("MLC__REFERENCE__ITEM_FILTER", ITEM_FILTER),
            ("MLC__REFERENCE__NETSUITE_SYNC_INTERVAL_SECS", "1"),
        ] {
            opts.extra_env.push((k.into(), v.into()));
        }
        let stack = Stack::start(opts).await.expect("stack starts");
        // Flagged after the service started: a later scheduled run picks it up.
        let flagged = item(&stack, "Pro plan", true);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let linked = loop {
            if let Some(p) = ns_field(
                &stack,
                RecordType::ServiceSaleItem,
                flagged,
                "custitem_stripe_product_id",
            ) {
                break Some(p);
            }
            if tokio::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let linked = linked.expect("the scheduled sync linked the item");
        assert!(linked.starts_with("prod_"), "{linked}");
        // Shutdown stops the scheduler with the rest of the service.
        stack.stop().await.unwrap();
    }
}

/// Both directions on at once: the products and customers the sync creates in Stripe come back
/// as webhooks, and must link to the NetSuite records they came from, not create twins.
#[tokio::test]
async fn both_directions_on_make_no_twin_records() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        for (k, v) in [
            ("MLC__REFERENCE__ITEM_FILTER", ITEM_FILTER),
            ("MLC__REFERENCE__CUSTOMER_FILTER", CUSTOMER_FILTER),
            ("MLC__REFERENCE__NETSUITE_SYNC_INTERVAL_SECS", "0"),
            ("MLC__REFERENCE__AUTO_CREATE_ITEMS", "true"),
            ("MLC__REFERENCE__CUSTOMERS_TO_NETSUITE", "true"),
        ] {
            opts.extra_env.push((k.into(), v.into()));
        }
        let stack = Stack::start(opts).await.expect("stack starts");
        let ctx = SyncContext::from_config(&stack.config, stack.store.clone()).unwrap();
        let items_before = stack.netsuite.handle().count(RecordType::ServiceSaleItem);
        let customers_before = stack.netsuite.handle().count(RecordType::Customer);
        item(&stack, "Gold plan", true);
        customer(&stack, "Zeta Corp", "ap@zeta.example");
        sync(&ctx).await;
        assert!(stack.wait_idle(std::time::Duration::from_secs(60)).await);
        // The webhooks of what the sync created found their NetSuite records.
        assert_eq!(
            stack.netsuite.handle().count(RecordType::ServiceSaleItem),
            items_before + 1
        );
        assert_eq!(
            stack.netsuite.handle().count(RecordType::Customer),
            customers_before + 1
        );
        assert_eq!(products(&ctx).await.len(), 1);
        assert_eq!(customers(&ctx).await.len(), 1);
        // And a second sync changes nothing.
        sync(&ctx).await;
        assert!(stack.wait_idle(std::time::Duration::from_secs(60)).await);
        assert_eq!(
            stack.netsuite.handle().count(RecordType::ServiceSaleItem),
            items_before + 1
        );
        assert_eq!(
            stack.netsuite.handle().count(RecordType::Customer),
            customers_before + 1
        );
        stack.stop().await.unwrap();
    }
}
