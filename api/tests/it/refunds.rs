//! Refunds end to end against both simulators, on every store backend: each Stripe refund (full
//! or partial, several on one charge, of a one-time charge or of a charge that paid an invoice)
//! becomes one NetSuite credit memo on the sale's customer and items, paid out by one customer
//! refund applied to it, exactly once however often its events arrive.

use std::time::Duration;

use ml_connector::stack::StackOptions;
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_stripe_sim::ScenarioConfig;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::helpers::{dec, ref_id, settled_month};

const SETTLE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_refund_is_one_credit_memo_paid_out_by_one_customer_refund() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, report) = settled_month(
            StackOptions::new(db.url(), keys.path()),
            ScenarioConfig {
                customers: 8,
                seed: 31,
                checkout_percent: 100,
                refunds: 3,
                ..ScenarioConfig::default()
            },
        )
        .await;
        let ns = stack.netsuite.handle().clone();
        assert!(!report.refunds.is_empty(), "the scenario refunded nothing");
        let counts: Vec<_> = stack.store.job_counts().await.unwrap();
        assert!(
            counts
                .iter()
                .all(|(s, n)| *n == 0 || matches!(s.as_str(), "succeeded")),
            "every job succeeded: {counts:?}"
        );

        assert_eq!(ns.count(RecordType::CreditMemo), report.refunds.len());
        assert_eq!(ns.count(RecordType::CustomerRefund), report.refunds.len());
        let fee_item = stack.items.fee.to_string();
        for refund in &report.refunds {
            let exponent = match refund.currency.as_str() {
                "jpy" => 0,
                "kwd" => 3,
                _ => 2,
            };
            let amount = Decimal::new(refund.amount, exponent);
            let memo = ns
                .get(RecordType::CreditMemo, &format!("eid:stripe_{}", refund.id))
                .unwrap_or_else(|| panic!("no credit memo for {}", refund.id));
            assert_eq!(dec(&memo["total"]), amount, "{memo}");
            let lines = memo["item"]["items"].as_array().unwrap();
            assert!(
                lines.iter().all(|l| ref_id(&l["item"]) != fee_item),
                "Stripe keeps its fee: no fee line on the memo {memo}"
            );
            // On the customer and the items of the sale it refunds.
            let sale = ns
                .get(
                    RecordType::Invoice,
                    &format!("eid:stripe_{}", refund.charge),
                )
                .or_else(|| {
                    // A charge that paid a Stripe invoice: that invoice's record.
                    let payment = ns.get(
                        RecordType::CustomerPayment,
                        &format!("eid:stripe_pay_{}", refund.charge),
                    )?;
                    let doc = ref_id(&payment["apply"]["items"][0]["doc"]);
                    ns.get(RecordType::Invoice, &doc)
                })
                .unwrap_or_else(|| panic!("no sale for {}", refund.charge));
            assert_eq!(ref_id(&memo["entity"]), ref_id(&sale["entity"]));
            let sold: Vec<String> = sale["item"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| ref_id(&l["item"]))
                .collect();
            for l in lines {
                assert!(sold.contains(&ref_id(&l["item"])), "{memo} vs {sale}");
            }
            // Paid out: the customer refund carries the amount and uses the memo up.
            let cash = ns
                .get(
                    RecordType::CustomerRefund,
                    &format!("eid:stripe_refund_{}", refund.id),
                )
                .unwrap_or_else(|| panic!("no customer refund for {}", refund.id));
            assert_eq!(dec(&cash["total"]), amount, "{cash}");
            assert_eq!(ref_id(&cash["customer"]), ref_id(&memo["entity"]));
            assert_eq!(
                ref_id(&cash["apply"]["items"][0]["doc"]),
                memo["id"].as_str().unwrap()
            );
            assert_eq!(dec(&memo["unapplied"]), Decimal::ZERO, "{memo}");
            // The audit trail names both steps.
            let audit = stack.store.audit_for_object(&refund.id).await.unwrap();
            let steps: Vec<&str> = audit.iter().map(|a| a.step.as_str()).collect();
            assert!(steps.contains(&"credit_memo_posted"), "{steps:?}");
            assert!(steps.contains(&"refund_posted"), "{steps:?}");
        }

        // The event page of a refund shows what went to NetSuite and the records made.
        let refund_event = stack
            .store
            .list_events(&mlc_store::EventFilter {
                event_type: Some("refund.created".into()),
                limit: 1,
                ..mlc_store::EventFilter::default()
            })
            .await
            .unwrap()
            .pop()
            .expect("a refund.created event");
        let (ok, out, err) = crate::helpers::cli(
            db.url(),
            &["events", "show", &refund_event.event_id, "--json"],
        );
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(&out).unwrap();
        // Whichever of its events posted it, the refund's records are on each one's page.
        let kinds: Vec<&str> = shown["postings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["credit_memo", "customer_refund"], "{shown}");
        // The event that posted it shows what went to NetSuite.
        let poster = shown["postings"][1]["event_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (ok, out, err) = crate::helpers::cli(db.url(), &["events", "show", &poster, "--json"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(&out).unwrap();
        assert!(
            shown["netsuite_response"]["netsuite_internal_id"].is_string(),
            "{shown}"
        );
        assert!(
            shown["netsuite_request"]
                .to_string()
                .contains("stripe_refund_"),
            "the customer refund sent: {shown}"
        );

        // Every event again (a replay of all that succeeded): nothing new in NetSuite.
        let counted = || {
            [
                RecordType::Invoice,
                RecordType::CustomerPayment,
                RecordType::CreditMemo,
                RecordType::CustomerRefund,
            ]
            .map(|t| ns.count(t))
        };
        let before = counted();
        let replayed = stack
            .store
            .requeue_where(mlc_store::JobState::Succeeded, None)
            .await
            .unwrap();
        assert!(replayed > 0);
        assert!(stack.wait_idle(SETTLE).await);
        assert_eq!(counted(), before, "a replay posts nothing twice");
        stack.stop().await.unwrap();
    }
}
