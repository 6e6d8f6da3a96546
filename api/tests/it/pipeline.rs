//! The product, end to end: a simulated SaaS month in Stripe ends as NetSuite invoices and
//! payments, one per Stripe invoice or standalone charge, at the right amounts.

use std::collections::BTreeMap;
use std::time::Duration;

use ml_connector::stack::{
    Stack, StackOptions, create_product_item, gross_by_currency, stripe_gross_by_currency,
};
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_store::{EventFilter, JobState};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use rust_decimal::Decimal;

#[tokio::test]
async fn a_month_of_sales_posts_exactly_once_with_exact_amounts() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.unmapped_retry_secs = 3600; // only `mappings set` releases them in this test
        let stack = Stack::start(opts).await.expect("stack starts");
        let report = run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            ScenarioConfig {
                customers: 16,
                seed: 11,
                checkout_percent: 90,
                on_catalog: Some(stack.catalog_hook()),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        assert!(
            stack.wait_idle(Duration::from_secs(120)).await,
            "pipeline did not settle"
        );

        // Every paid Stripe invoice is exactly one NetSuite invoice.
        let invoices = stack.netsuite_invoices();
        let by_eid: BTreeMap<String, _> = invoices
            .iter()
            .map(|i| (i.external_id.to_lowercase(), i))
            .collect();
        assert_eq!(by_eid.len(), invoices.len(), "duplicate external IDs");
        for inv in &report.paid_invoices {
            assert!(
                by_eid.contains_key(&format!("stripe_{inv}").to_lowercase()),
                "{inv} not posted"
            );
        }
        for inv in &report.open_invoices {
            assert!(
                !by_eid.contains_key(&format!("stripe_{inv}").to_lowercase()),
                "unpaid {inv} posted"
            );
        }

        // Charges of the unmapped product wait, with the product named in the audit.
        let waiting = stack
            .store
            .list_events(&EventFilter {
                status: Some("waiting".into()),
                limit: 1000,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        eprintln!(
            "{:?}: {} paid invoices, {} open, {} standalone charges, {} waiting, {} NetSuite invoices before mapping",
            db.backend(),
            report.paid_invoices.len(),
            report.open_invoices.len(),
            report.standalone_charges.len(),
            waiting.len(),
            invoices.len()
        );
        // The scenario sells the unmapped add-on through Checkout, so some charges must wait.
        assert!(
            !waiting.is_empty(),
            "no charge waits for the unmapped product"
        );
        assert!(invoices.len() < report.paid_invoices.len() + report.standalone_charges.len());
        {
            let audit = stack
                .store
                .audit_for_event(&waiting[0].event_id)
                .await
                .unwrap();
            let wait = audit
                .iter()
                .find(|a| a.step == "waiting")
                .expect("waiting audited");
            assert!(
                wait.message.contains(&report.unmapped_product),
                "{}",
                wait.message
            );
            assert!(
                wait.message.contains("deliberately unmapped"),
                "product name missing: {}",
                wait.message
            );
            assert!(
                wait.message.contains("mappings set"),
                "no instruction: {}",
                wait.message
            );
        }

        // A person maps the product; the waiting charges post without waiting for the delay.
        let item = create_product_item(
            stack.netsuite.handle(),
            "Legacy Add-on",
            &report.unmapped_product,
        )
        .unwrap();
        stack
            .store
            .set_item_link(&report.unmapped_product, &item.to_string(), "manual")
            .await
            .unwrap();
        stack
            .store
            .wake_waiting_jobs(&report.unmapped_product)
            .await
            .unwrap();
        assert!(stack.wait_idle(Duration::from_secs(60)).await);
        let counts: std::collections::HashMap<_, _> = stack
            .store
            .job_counts()
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(counts[&JobState::Waiting], 0, "{counts:?}");
        assert_eq!(counts[&JobState::Failed], 0, "{counts:?}");

        let invoices = stack.netsuite_invoices();
        let charges_posted = invoices
            .iter()
            .filter(|i| i.external_id.starts_with("stripe_ch_"))
            .count();
        let invoices_posted = invoices
            .iter()
            .filter(|i| i.external_id.starts_with("stripe_in_"))
            .count();
        assert_eq!(invoices_posted, report.paid_invoices.len());
        assert_eq!(charges_posted, report.standalone_charges.len());
        assert_eq!(
            invoices.len(),
            invoices_posted + charges_posted,
            "nothing else is posted"
        );

        // One payment per invoice, and every invoice shows paid.
        assert_eq!(
            stack.netsuite_count(RecordType::CustomerPayment),
            invoices.len()
        );
        for inv in &invoices {
            assert_eq!(
                inv.amount_remaining,
                Some(Decimal::ZERO),
                "{} not paid",
                inv.external_id
            );
            assert!(
                inv.fees < Decimal::ZERO,
                "{} has no fee line (net mode)",
                inv.external_id
            );
        }

        // Reconciliation per currency: NetSuite gross (all lines but fees) equals Stripe to the
        // minor unit, in USD, EUR, JPY (zero-decimal) and KWD (three-decimal).
        let ns = gross_by_currency(&invoices);
        for (code, stripe) in stripe_gross_by_currency(&report) {
            assert_eq!(ns.get(&code).copied().unwrap_or_default(), stripe, "{code}");
        }
        assert!(
            report.totals.keys().any(|c| c == "jpy") && report.totals.keys().any(|c| c == "kwd")
        );
        stack.stop().await.unwrap();
    }
}
