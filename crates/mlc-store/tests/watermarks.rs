//! Sync watermarks: absent until set, overwritten, and kept across a reopen.

use mlc_store::testing::backends;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_is_set_overwritten_and_survives_reopen() {
    for db in backends().await {
        let store = db.store().await;
        assert_eq!(store.get_watermark("ns_items").await.unwrap(), None);
        store.set_watermark("ns_items", "first").await.unwrap();
        store.set_watermark("ns_items", "second").await.unwrap();
        store.set_watermark("ns_customers", "other").await.unwrap();
        drop(store);
        let reopened = db.store().await;
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
