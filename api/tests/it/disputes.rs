//! Disputes and refunds that fail, end to end against both simulators, on every store backend:
//! each movement of a dispute's funds is one NetSuite journal entry (withdrawn: the disputed
//! amount and the fee out of the clearing account; won: the amount back), a refund that fails
//! after it posted is given back to the customer, and the reconciliation agrees with Stripe.

use std::collections::BTreeMap;
use std::time::Duration;

use ml_connector::stack::StackOptions;
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_stripe_sim::ScenarioConfig;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::helpers::{dec, ref_id, settled_month};

const SETTLE: Duration = Duration::from_secs(120);
const DISPUTES: &str = ml_connector::stack::DISPUTE_ACCOUNT;
const FEES: &str = "5";
const CLEARING: &str = "2";
const RECEIVABLES: &str = ml_connector::stack::RECEIVABLES_ACCOUNT;

/// Debit less credit per account of a journal entry.
fn by_account(je: &Value) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for l in je["line"]["items"].as_array().unwrap() {
        let debit = l.get("debit").map(dec).unwrap_or_default();
        let credit = l.get("credit").map(dec).unwrap_or_default();
        *out.entry(ref_id(&l["account"])).or_default() += debit - credit;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dispute_money_is_journaled_once_and_a_failed_refund_is_given_back() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.extra_env.extend([
            ("MLC__POSTING__DISPUTE_ACCOUNT".into(), DISPUTES.into()),
            (
                "MLC__POSTING__RECEIVABLES_ACCOUNT".into(),
                RECEIVABLES.into(),
            ),
        ]);
        let (stack, report) = settled_month(
            opts,
            ScenarioConfig {
                customers: 10,
                seed: 57,
                checkout_percent: 60,
                refunds: 3,
                failed_refunds: 1,
                disputes: 3,
                ..ScenarioConfig::default()
            },
        )
        .await;
        let ns = stack.netsuite.handle().clone();
        assert_eq!(report.disputes.len(), 3, "{:?}", report.disputes);
        let counts = stack.store.job_counts().await.unwrap();
        assert!(
            counts
                .iter()
                .all(|(s, n)| *n == 0 || s.as_str() == "succeeded"),
            "every job succeeded: {counts:?}"
        );

        // Each movement of each dispute's money: one balanced journal entry on the accounts.
        let mut journals = 0;
        for d in &report.disputes {
            let dispute =
                crate::helpers::stripe_get(&stack.stripe, &format!("/v1/disputes/{}", d.id)).await;
            let currency = mlc_core::Currency::parse(&d.currency).unwrap();
            let amount = mlc_core::Money::new(d.amount, currency).to_decimal();
            let txns = dispute["balance_transactions"].as_array().unwrap();
            assert_eq!(
                txns.len(),
                if d.outcome == "won" { 2 } else { 1 },
                "{dispute}"
            );
            for txn in txns {
                let je = ns
                    .get(
                        RecordType::JournalEntry,
                        &format!("eid:stripe_{}", txn["id"].as_str().unwrap()),
                    )
                    .unwrap_or_else(|| panic!("no journal entry for {txn}"));
                journals += 1;
                let lines = by_account(&je);
                assert_eq!(lines.values().copied().sum::<Decimal>(), Decimal::ZERO);
                let withdrawn = txn["amount"].as_i64().unwrap() < 0;
                let disputed = if withdrawn { amount } else { -amount };
                assert_eq!(lines[DISPUTES], disputed, "{je}");
                if withdrawn {
                    // Stripe's 15.00 USD fee, in the charge's currency.
                    let fee = lines[FEES];
                    assert!(fee > Decimal::ZERO, "{je}");
                    assert_eq!(lines[CLEARING], -(amount + fee), "{je}");
                } else {
                    assert!(!lines.contains_key(FEES), "the fee was kept: {je}");
                    assert_eq!(lines[CLEARING], amount, "{je}");
                }
            }
            let audit = stack.store.audit_for_object(&d.id).await.unwrap();
            let steps: Vec<&str> = audit.iter().map(|a| a.step.as_str()).collect();
            assert!(steps.contains(&"dispute_posted"), "{steps:?}");
            let closing = if d.outcome == "won" {
                "dispute_won"
            } else {
                "dispute_lost"
            };
            assert!(steps.contains(&closing), "{steps:?}");
        }
        let fee_journals = ns
            .ids(RecordType::JournalEntry)
            .into_iter()
            .filter_map(|i| ns.get(RecordType::JournalEntry, &i.to_string()))
            .filter(|je| {
                je["externalId"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("stripe_txn_"))
            })
            .count();
        assert_eq!(fee_journals, journals, "one journal entry per movement");

        // A dispute's event page shows the journal entries it made.
        let event = stack
            .store
            .list_events(&mlc_store::EventFilter {
                event_type: Some("charge.dispute.closed".into()),
                limit: 1,
                ..mlc_store::EventFilter::default()
            })
            .await
            .unwrap()
            .pop()
            .expect("a charge.dispute.closed event");
        let (ok, out, err) =
            crate::helpers::cli(db.url(), &["events", "show", &event.event_id, "--json"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(&out).unwrap();
        let kinds: Vec<&str> = shown["postings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"dispute_withdrawal"), "{shown}");

        // The refund that failed: either it failed before it posted (nothing in NetSuite), or
        // its customer refund was given back to the customer's receivable.
        assert_eq!(report.failed_refunds.len(), 1);
        let failed = &report.failed_refunds[0];
        match ns.get(RecordType::CreditMemo, &format!("eid:stripe_{failed}")) {
            None => assert!(
                ns.get(
                    RecordType::CustomerRefund,
                    &format!("eid:stripe_refund_{failed}")
                )
                .is_none()
            ),
            Some(memo) => {
                let back = ns
                    .get(
                        RecordType::JournalEntry,
                        &format!("eid:stripe_refund_failure_{failed}"),
                    )
                    .expect("the failed refund is given back");
                let lines = by_account(&back);
                assert_eq!(lines[CLEARING], dec(&memo["total"]), "{back}");
                assert_eq!(lines[RECEIVABLES], -dec(&memo["total"]), "{back}");
                let ar_line = back["line"]["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| ref_id(&l["account"]) == RECEIVABLES)
                    .unwrap()
                    .clone();
                assert_eq!(ref_id(&ar_line["entity"]), ref_id(&memo["entity"]));
            }
        }

        // The reconciliation counts the disputes, Stripe's side against NetSuite's.
        let reconciled =
            crate::helpers::reconcile_today(&stack.config, Some(&stack.master_key)).await;
        let mut expected: BTreeMap<String, i64> = BTreeMap::new();
        for d in &report.disputes {
            let kept = if d.outcome == "won" { 0 } else { d.amount };
            *expected.entry(d.currency.to_uppercase()).or_default() += kept;
        }
        for (currency, totals) in &reconciled.currencies {
            assert_eq!(
                totals.disputes.stripe_minor,
                expected.get(&currency.iso_code()).copied().unwrap_or(0),
                "{currency}: {totals:?}"
            );
            assert_eq!(
                totals.disputes.stripe_minor, totals.disputes.netsuite_minor,
                "{currency}"
            );
            assert_eq!(totals.fees.difference(), 0, "{currency}: {totals:?}");
            assert_eq!(totals.sales.difference(), 0, "{currency}: {totals:?}");
        }
        // Only a refund that failed after it posted may differ: named, by its ID.
        for d in &reconciled.differences {
            assert_eq!(&d.stripe_object, failed, "{d:?}");
            assert!(d.reason.contains("failed"), "{d:?}");
        }

        // Every event again: nothing new in NetSuite.
        let before = ns.count(RecordType::JournalEntry);
        let replayed = stack
            .store
            .requeue_where(mlc_store::JobState::Succeeded, None)
            .await
            .unwrap();
        assert!(replayed > 0);
        assert!(stack.wait_idle(SETTLE).await);
        assert_eq!(ns.count(RecordType::JournalEntry), before);
        stack.stop().await.unwrap();
    }
}

/// `posting.dispute_posting = "credit_memo"`: the withdrawn amount is a credit memo on the
/// sale's items paid out by a customer refund, a won dispute's money back an invoice paid into
/// the clearing account, the fee a journal entry; and the month still reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_credit_memo_mode_a_dispute_is_credited_and_a_won_one_invoiced_back() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.extra_env
            .push(("MLC__POSTING__DISPUTE_POSTING".into(), "credit_memo".into()));
        let (stack, report) = settled_month(
            opts,
            ScenarioConfig {
                customers: 8,
                seed: 58,
                checkout_percent: 60,
                disputes: 2,
                ..ScenarioConfig::default()
            },
        )
        .await;
        let ns = stack.netsuite.handle().clone();
        let counts = stack.store.job_counts().await.unwrap();
        assert!(
            counts
                .iter()
                .all(|(s, n)| *n == 0 || s.as_str() == "succeeded"),
            "every job succeeded: {counts:?}"
        );
        assert_eq!(report.disputes.len(), 2);
        for d in &report.disputes {
            let dispute =
                crate::helpers::stripe_get(&stack.stripe, &format!("/v1/disputes/{}", d.id)).await;
            let currency = mlc_core::Currency::parse(&d.currency).unwrap();
            let amount = mlc_core::Money::new(d.amount, currency).to_decimal();
            let txns = dispute["balance_transactions"].as_array().unwrap();
            let withdrawal = txns[0]["id"].as_str().unwrap();
            let memo = ns
                .get(RecordType::CreditMemo, &format!("eid:stripe_{withdrawal}"))
                .unwrap_or_else(|| panic!("no credit memo for {dispute}"));
            assert_eq!(dec(&memo["total"]), amount, "{memo}");
            let cash = ns
                .get(
                    RecordType::CustomerRefund,
                    &format!("eid:stripe_refund_{withdrawal}"),
                )
                .expect("paid out: the bank took the money back");
            assert_eq!(dec(&cash["total"]), amount, "{cash}");
            let fee = ns
                .get(
                    RecordType::JournalEntry,
                    &format!("eid:stripe_fee_{withdrawal}"),
                )
                .expect("the dispute fee's journal entry");
            assert!(by_account(&fee)[FEES] > Decimal::ZERO, "{fee}");
            assert!(
                !by_account(&fee).contains_key(DISPUTES),
                "no chargeback account line in credit memo mode: {fee}"
            );
            if d.outcome == "won" {
                let back = txns[1]["id"].as_str().unwrap();
                let invoice = ns
                    .get(RecordType::Invoice, &format!("eid:stripe_{back}"))
                    .expect("the reinstated money invoiced back");
                assert_eq!(ref_id(&invoice["entity"]), ref_id(&memo["entity"]));
                let paid = ns
                    .get(
                        RecordType::CustomerPayment,
                        &format!("eid:stripe_pay_{back}"),
                    )
                    .expect("and paid into the clearing account");
                assert_eq!(dec(&paid["payment"]), amount, "{paid}");
                assert_eq!(dec(&invoice["amountRemaining"]), Decimal::ZERO, "{invoice}");
            } else {
                assert_eq!(txns.len(), 1, "lost: nothing comes back");
            }
        }
        let reconciled =
            crate::helpers::reconcile_today(&stack.config, Some(&stack.master_key)).await;
        assert!(reconciled.is_clean(), "{reconciled:#?}");
        let kept: i64 = report
            .disputes
            .iter()
            .filter(|d| d.outcome == "lost")
            .map(|d| d.amount)
            .sum();
        let posted: i64 = reconciled
            .currencies
            .values()
            .map(|c| c.disputes.netsuite_minor)
            .sum();
        // One currency or several: the lost amounts are what stays withdrawn.
        if report
            .disputes
            .iter()
            .all(|d| d.currency == report.disputes[0].currency)
        {
            assert_eq!(posted, kept);
        }
        stack.stop().await.unwrap();
    }
}
