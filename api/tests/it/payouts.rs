//! Payouts end to end against both simulators, on every store backend: each Stripe payout is one
//! NetSuite deposit into the bank account of the customer payments it carried (charges in another
//! currency at their settlement amount out of the clearing account), with its refunds and
//! disputes as other lines, adding up to the payout; a payout that fails afterwards is moved back to the clearing
//! account; a replay deposits nothing twice.

use std::collections::BTreeSet;
use std::time::Duration;

use ml_connector::stack::{PAYOUT_BANK_ACCOUNT, Stack, StackOptions};
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::helpers::{dec, ref_id, settled_month, stripe_get};

const SETTLE: Duration = Duration::from_secs(120);
const CLEARING: &str = "2";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_payout_is_one_deposit_that_adds_up_and_a_failed_one_goes_back() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, report) = settled_month(
            StackOptions::new(db.url(), keys.path()),
            ScenarioConfig {
                customers: 8,
                seed: 71,
                checkout_percent: 50,
                refunds: 2,
                disputes: 1,
                payouts: true,
                ..ScenarioConfig::default()
            },
        )
        .await;
        let ns = stack.netsuite.handle().clone();
        let counts = stack.store.job_counts().await.unwrap();
        let waiting = stack
            .store
            .list_events(&mlc_store::EventFilter {
                status: Some("waiting".into()),
                limit: 10,
                ..mlc_store::EventFilter::default()
            })
            .await
            .unwrap();
        assert!(
            counts
                .iter()
                .all(|(s, n)| *n == 0 || s.as_str() == "succeeded"),
            "every job succeeded: {counts:?} {waiting:#?}"
        );
        assert!(!report.payouts.is_empty(), "the scenario pays out");
        assert_eq!(ns.count(RecordType::Deposit), report.payouts.len());

        for p in &report.payouts {
            let deposit = ns
                .get(RecordType::Deposit, &format!("eid:stripe_{}", p.id))
                .unwrap_or_else(|| panic!("no deposit for {p:?}"));
            let amount = mlc_core::Money::new(p.amount, mlc_core::Currency::USD).to_decimal();
            assert_eq!(dec(&deposit["total"]), amount, "{deposit}");
            assert_eq!(ref_id(&deposit["account"]), PAYOUT_BANK_ACCOUNT);
            // Every charge the payout carried is its customer payment, deposited.
            let carried = stripe_get(
                &stack.stripe,
                &format!("/v1/balance_transactions?payout={}&limit=100", p.id),
            )
            .await;
            let charge_txns: Vec<&Value> = carried["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["type"] == "charge" || t["type"] == "payment")
                .collect();
            // Charges made in the payout's currency are deposited as their payments; those made
            // in another currency come out of the clearing account at their settlement amount.
            let (foreign, own): (Vec<&Value>, Vec<&Value>) = charge_txns
                .into_iter()
                .partition(|t| !t["exchange_rate"].is_null());
            let charges: BTreeSet<String> = own
                .iter()
                .map(|t| t["source"].as_str().unwrap().to_string())
                .collect();
            assert!(!charges.is_empty());
            assert!(!foreign.is_empty(), "the month sells in four currencies");
            let foreign_net: i64 = foreign.iter().map(|t| t["net"].as_i64().unwrap()).sum();
            let foreign_line = deposit["other"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["memo"].as_str().unwrap().contains("other currencies"))
                .unwrap_or_else(|| panic!("{deposit}"))
                .clone();
            assert_eq!(ref_id(&foreign_line["account"]), CLEARING);
            assert_eq!(
                dec(&foreign_line["amount"]),
                mlc_core::Money::new(foreign_net, mlc_core::Currency::USD).to_decimal()
            );
            let deposited: BTreeSet<String> = deposit["payment"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let id = match &l["id"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let payment = ns
                        .get(RecordType::CustomerPayment, &id)
                        .unwrap_or_else(|| panic!("deposited payment {id}"));
                    payment["externalId"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("stripe_pay_")
                        .to_string()
                })
                .collect();
            assert_eq!(deposited, charges, "{deposit}");
            // Refunds and the dispute leave the clearing account in the same deposit.
            let other: Decimal = deposit["other"]["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|l| ref_id(&l["account"]) == CLEARING)
                        .filter(|l| !l["memo"].as_str().unwrap().contains("other currencies"))
                        .map(|l| dec(&l["amount"]))
                        .sum()
                })
                .unwrap_or_default();
            assert!(other < Decimal::ZERO, "refunds and disputes: {deposit}");
            let audit = stack.store.audit_for_object(&p.id).await.unwrap();
            assert!(
                audit.iter().any(|a| a.step == "deposit_posted"),
                "{audit:?}"
            );
        }
        // A payout that fails after it was deposited: its money back to the clearing account.
        let failed = &report.payouts[0];
        let answer: Value = reqwest::Client::new()
            .post(format!(
                "{}/_sim/payouts/{}/fail",
                stack.stripe.base_url, failed.id
            ))
            .bearer_auth(stack.stripe.api_key_str())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"], "failed", "{answer}");
        assert!(stack.wait_idle(SETTLE).await);
        let back = ns
            .get(
                RecordType::JournalEntry,
                &format!("eid:stripe_payout_failure_{}", failed.id),
            )
            .expect("the failed payout moved back");
        let amount = mlc_core::Money::new(failed.amount, mlc_core::Currency::USD).to_decimal();
        let lines = back["line"]["items"].as_array().unwrap();
        assert!(
            lines
                .iter()
                .any(|l| ref_id(&l["account"]) == CLEARING
                    && l.get("debit").map(dec) == Some(amount))
        );
        assert!(
            lines
                .iter()
                .any(|l| ref_id(&l["account"]) == PAYOUT_BANK_ACCOUNT
                    && l.get("credit").map(dec) == Some(amount))
        );

        // The money is back in Stripe's balance: paid out by hand, as a manual payout, it is one
        // deposit out of the clearing account (Stripe cannot say what it carried).
        let manual: Value = reqwest::Client::new()
            .post(format!("{}/v1/payouts", stack.stripe.base_url))
            .bearer_auth(stack.stripe.api_key_str())
            .form(&[
                ("amount", failed.amount.to_string()),
                ("currency", "usd".to_string()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let manual_id = manual["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{manual}"))
            .to_string();
        assert_eq!(manual["reconciliation_status"], "not_applicable");
        let paid: Value = reqwest::Client::new()
            .post(format!(
                "{}/_sim/payouts/{manual_id}/paid",
                stack.stripe.base_url
            ))
            .bearer_auth(stack.stripe.api_key_str())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(paid["status"], "paid", "{paid}");
        assert!(stack.wait_idle(SETTLE).await);
        let deposit = ns
            .get(RecordType::Deposit, &format!("eid:stripe_{manual_id}"))
            .expect("the manual payout deposited");
        assert_eq!(dec(&deposit["total"]), amount);
        let lines = deposit["other"]["items"].as_array().unwrap();
        assert_eq!(lines.len(), 1, "{deposit}");
        assert_eq!(ref_id(&lines[0]["account"]), CLEARING);
        assert!(
            lines[0]["memo"]
                .as_str()
                .unwrap()
                .contains("not reconcilable"),
            "{deposit}"
        );

        // The reconciliation pairs each payout with its deposit.
        let reconciled =
            crate::helpers::reconcile_today(&stack.config, Some(&stack.master_key)).await;
        assert!(reconciled.is_clean(), "{reconciled:#?}");
        let paired: BTreeSet<&str> = reconciled
            .payouts
            .iter()
            .filter(|p| p.deposit.is_some() && p.netsuite_minor == p.stripe_minor)
            .map(|p| p.payout.as_str())
            .collect();
        assert!(paired.contains(failed.id.as_str()), "{reconciled:#?}");
        assert!(paired.contains(manual_id.as_str()), "{reconciled:#?}");

        // Every event again: nothing deposited twice.
        let before = (
            ns.count(RecordType::Deposit),
            ns.count(RecordType::JournalEntry),
        );
        stack
            .store
            .requeue_where(mlc_store::JobState::Succeeded, None)
            .await
            .unwrap();
        assert!(stack.wait_idle(SETTLE).await);
        assert_eq!(
            (
                ns.count(RecordType::Deposit),
                ns.count(RecordType::JournalEntry)
            ),
            before
        );
        stack.stop().await.unwrap();
    }
}

/// A payout that comes before some of its payments (their product has no NetSuite item yet)
/// waits, and deposits by itself once the product is mapped and the payments post; a payout
/// with a refund and a lost dispute inside still adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_waits_for_its_payments_and_deposits_once_they_post() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let stack = Stack::start(StackOptions::new(db.url(), keys.path()))
            .await
            .expect("stack starts");
        let ns = stack.netsuite.handle().clone();
        let report = run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            ScenarioConfig {
                customers: 8,
                seed: 72,
                checkout_percent: 50,
                refunds: 1,
                disputes: 2,
                payouts: true,
                // One product stays without a NetSuite item: its sales wait.
                on_catalog: Some(stack.catalog_hook()),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        assert!(stack.wait_idle(SETTLE).await, "the month did not settle");
        assert!(report.disputes.iter().any(|d| d.outcome == "lost"));
        let payout = &report.payouts[0];
        let eid = format!("eid:stripe_{}", payout.id);
        assert!(
            ns.get(RecordType::Deposit, &eid).is_none(),
            "some of its payments are not in NetSuite yet"
        );
        let waiting = stack
            .store
            .list_events(&mlc_store::EventFilter {
                status: Some("waiting".into()),
                limit: 100,
                ..mlc_store::EventFilter::default()
            })
            .await
            .unwrap();
        assert!(
            waiting
                .iter()
                .any(|e| e.object_id.as_deref() == Some(payout.id.as_str())),
            "the payout waits: {waiting:#?}"
        );
        let audit = stack.store.audit_for_object(&payout.id).await.unwrap();
        assert!(
            audit.iter().any(|a| a.step == "waiting_for_payments"),
            "the audit says why it waits: {audit:?}"
        );
        // The product is mapped: its sales post, their payments wake the payout.
        let item = ml_connector::stack::create_product_item(
            &ns,
            "Legacy Add-on",
            &report.unmapped_product,
        )
        .unwrap();
        mlc_service::mappings::set_mapping(
            &stack.store,
            &report.unmapped_product,
            &item.to_string(),
        )
        .await
        .unwrap();
        assert!(stack.wait_idle(SETTLE).await);
        let deposit = ns
            .get(RecordType::Deposit, &eid)
            .expect("deposited once its payments posted");
        assert_eq!(
            dec(&deposit["total"]),
            mlc_core::Money::new(payout.amount, mlc_core::Currency::USD).to_decimal()
        );
        let counts = stack.store.job_counts().await.unwrap();
        assert!(
            counts
                .iter()
                .all(|(s, n)| *n == 0 || s.as_str() == "succeeded"),
            "every job succeeded: {counts:?}"
        );
        let reconciled =
            crate::helpers::reconcile_today(&stack.config, Some(&stack.master_key)).await;
        assert!(reconciled.is_clean(), "{reconciled:#?}");
        stack.stop().await.unwrap();
    }
}
