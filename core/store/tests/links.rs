//! Customer links and their fingerprints: stored with the link, kept while the link points at
//! the same NetSuite record, dropped when it moves, never written onto another record's link.

use mlc_store::CustomerLink;
use mlc_store::testing::backends;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_fingerprints_belong_to_one_netsuite_record() {
    for db in backends().await {
        let store = db.scoped().await;
        let b = db.backend();
        assert_eq!(store.get_customer_link_state("cus_1").await.unwrap(), None);

        // A link made without a write (matched, or before migration 0008) has no fingerprint.
        store
            .set_customer_link("cus_1", "105", "custom_field")
            .await
            .unwrap();
        assert_eq!(
            store.get_customer_link_state("cus_1").await.unwrap(),
            Some(CustomerLink {
                netsuite_internal_id: "105".into(),
                source: "custom_field".into(),
                fingerprint: None,
            }),
            "{b:?}"
        );
        // Only the record the link points at takes a fingerprint.
        assert!(
            !store
                .set_customer_fingerprint("cus_1", "999", "v1:other")
                .await
                .unwrap()
        );
        assert!(
            store
                .set_customer_fingerprint("cus_1", "105", "v1:a")
                .await
                .unwrap()
        );
        let fp = |l: Option<CustomerLink>| l.and_then(|l| l.fingerprint);
        assert_eq!(
            fp(store.get_customer_link_state("cus_1").await.unwrap()).as_deref(),
            Some("v1:a"),
            "{b:?}"
        );
        // Linking again to the same record keeps it; to another record drops it.
        store
            .set_customer_link("cus_1", "105", "manual")
            .await
            .unwrap();
        assert_eq!(
            fp(store.get_customer_link_state("cus_1").await.unwrap()).as_deref(),
            Some("v1:a"),
            "{b:?}"
        );
        store
            .set_customer_link("cus_1", "106", "manual")
            .await
            .unwrap();
        let moved = store.get_customer_link_state("cus_1").await.unwrap();
        assert_eq!(
            moved.as_ref().map(|l| l.netsuite_internal_id.as_str()),
            Some("106")
        );
        assert_eq!(fp(moved), None, "{b:?}");
        // The old accessor still answers the NetSuite ID.
        assert_eq!(
            store.get_customer_link("cus_1").await.unwrap().as_deref(),
            Some("106")
        );

        // A link made by a write carries its fingerprint from the start, and replaces both.
        store
            .set_customer_link_written("cus_2", "107", "created", "v1:b")
            .await
            .unwrap();
        store
            .set_customer_link_written("cus_1", "108", "created", "v1:c")
            .await
            .unwrap();
        for (cus, ns, print) in [("cus_2", "107", "v1:b"), ("cus_1", "108", "v1:c")] {
            let link = store.get_customer_link_state(cus).await.unwrap();
            assert_eq!(
                link.map(|l| (l.netsuite_internal_id, l.fingerprint)),
                Some((ns.to_string(), Some(print.to_string()))),
                "{b:?}"
            );
        }
        // Surviving a reopen: it is in the database, not a cache.
        drop(store);
        let reopened = db.scoped().await;
        assert_eq!(
            fp(reopened.get_customer_link_state("cus_2").await.unwrap()).as_deref(),
            Some("v1:b")
        );
    }
}

/// A posted invoice's payments are recorded in one write: every ID in the list (repeats
/// once), an ID already recorded keeps the invoice it paid first, and another tenant's
/// connection (with the same connection ID) sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoices_payments_are_recorded_together_and_stay_in_their_connection() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let acme = mlc_store::testing::connection(&store, "acme", "main").await;
        let globex = mlc_store::testing::connection(&store, "globex", "main").await;

        acme.record_covered_payments(&["ch_first"], "in_earlier")
            .await
            .unwrap();
        acme.record_covered_payments(&["ch_1", "pi_1", "pi_1", "ch_first"], "in_1")
            .await
            .unwrap();
        acme.record_covered_payments(&[], "in_nothing")
            .await
            .unwrap();

        for (payment, invoice) in [
            ("ch_1", "in_1"),
            ("pi_1", "in_1"),
            ("ch_first", "in_earlier"),
        ] {
            assert_eq!(
                acme.invoice_covering(payment).await.unwrap().as_deref(),
                Some(invoice),
                "{b:?}: {payment}"
            );
            assert_eq!(
                globex.invoice_covering(payment).await.unwrap(),
                None,
                "{b:?}: another connection sees {payment}"
            );
        }

        // The same write from the other connection is its own row, with its own invoice.
        globex
            .record_covered_payments(&["ch_1"], "in_globex")
            .await
            .unwrap();
        assert_eq!(
            globex.invoice_covering("ch_1").await.unwrap().as_deref(),
            Some("in_globex"),
            "{b:?}"
        );
        assert_eq!(
            acme.invoice_covering("ch_1").await.unwrap().as_deref(),
            Some("in_1"),
            "{b:?}"
        );
    }
}
