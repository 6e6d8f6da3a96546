//! Sync watermarks: absent until set, overwritten, and kept across a reopen.

use mlc_store::testing::backends;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_is_set_overwritten_and_survives_reopen() {
    for db in backends().await {
        let store = db.scoped().await;
        assert_eq!(store.get_watermark("ns_items").await.unwrap(), None);
        store.set_watermark("ns_items", "first").await.unwrap();
        store.set_watermark("ns_items", "second").await.unwrap();
        store.set_watermark("ns_customers", "other").await.unwrap();
        drop(store);
        let reopened = db.scoped().await;
        assert_eq!(
            reopened.get_watermark("ns_items").await.unwrap().as_deref(),
            Some("second"),
            "{:?}",
            db.backend()
        );
        assert_eq!(
            reopened
                .get_watermark("ns_customers")
                .await
                .unwrap()
                .as_deref(),
            Some("other")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_found_from_the_netsuite_side_by_source() {
    for db in backends().await {
        let store = db.scoped().await;
        store
            .set_item_link("prod_manual", "201", "manual")
            .await
            .unwrap();
        assert_eq!(
            store
                .item_link_by_netsuite("201", "netsuite_sync")
                .await
                .unwrap(),
            None
        );
        store
            .set_item_link("prod_sync", "201", "netsuite_sync")
            .await
            .unwrap();
        assert_eq!(
            store
                .item_link_by_netsuite("201", "netsuite_sync")
                .await
                .unwrap()
                .as_deref(),
            Some("prod_sync"),
            "{:?}",
            db.backend()
        );
        store
            .set_customer_link("cus_1", "105", "netsuite_sync")
            .await
            .unwrap();
        assert_eq!(
            store
                .customer_link_by_netsuite("105", "netsuite_sync")
                .await
                .unwrap()
                .as_deref(),
            Some("cus_1")
        );
        assert_eq!(
            store
                .customer_link_by_netsuite("106", "netsuite_sync")
                .await
                .unwrap(),
            None
        );
    }
}
