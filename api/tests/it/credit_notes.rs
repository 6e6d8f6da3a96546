//! Credit notes end to end against both simulators, on every store backend: a post-payment
//! credit note is one NetSuite credit memo on the invoice's customer and items, its refunded
//! part paid out by one customer refund and the rest left as the customer's credit; the Stripe
//! refund it made is not posted again on its own; one voided before it posted, or on an
//! invoice not yet paid, posts nothing; and the reconciliation agrees with Stripe.

use std::time::Duration;

use ml_connector::stack::StackOptions;
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_stripe_sim::ScenarioConfig;

use crate::helpers::{dec, ref_id, settled_month};

const SETTLE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_credit_note_is_one_credit_memo_with_its_refund_and_the_month_reconciles() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let (stack, report) = settled_month(
            StackOptions::new(db.url(), keys.path()),
            ScenarioConfig {
                customers: 12,
                seed: 63,
                checkout_percent: 50,
                // Some invoices stay open (declined), for a pre-payment credit note.
                failed_payment_percent: 30,
                refunds: 2,
                credit_notes: 8,
                ..ScenarioConfig::default()
            },
        )
        .await;
        let ns = stack.netsuite.handle().clone();
        let notes = &report.credit_notes;
        assert!(
            notes
                .iter()
                .any(|n| n.kind == "post_payment" && n.refund_amount > 0),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.kind == "post_payment" && n.credit_amount > 0),
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n.voided), "{notes:?}");
        let counts = stack.store.job_counts().await.unwrap();
        assert!(
            counts
                .iter()
                .all(|(s, n)| *n == 0 || s.as_str() == "succeeded"),
            "every job succeeded: {counts:?}"
        );

        let mut memos = 0;
        for n in notes {
            let currency = mlc_core::Currency::parse(&n.currency).unwrap();
            let amount = |minor: i64| mlc_core::Money::new(minor, currency).to_decimal();
            let memo = ns.get(RecordType::CreditMemo, &format!("eid:stripe_{}", n.id));
            let cash = ns.get(
                RecordType::CustomerRefund,
                &format!("eid:stripe_refund_{}", n.id),
            );
            if n.voided {
                assert!(memo.is_none(), "voided before it posted: {n:?}");
                continue;
            }
            if n.kind == "pre_payment" {
                // The invoice is not paid, so not in NetSuite: nothing posts for it yet.
                assert!(
                    ns.get(RecordType::Invoice, &format!("eid:stripe_{}", n.invoice))
                        .is_none()
                );
                assert!(memo.is_none(), "{n:?}");
                let audit = stack.store.audit_for_object(&n.id).await.unwrap();
                assert!(
                    audit
                        .iter()
                        .any(|a| a.step == "skipped" && a.message.contains("not paid")),
                    "{audit:?}"
                );
                continue;
            }
            let memo = memo.unwrap_or_else(|| panic!("no credit memo for {n:?}"));
            memos += 1;
            assert_eq!(dec(&memo["total"]), amount(n.total), "{memo}");
            // On the customer and the items of the invoice it credits.
            let sale = ns
                .get(RecordType::Invoice, &format!("eid:stripe_{}", n.invoice))
                .expect("the credited invoice is in NetSuite");
            assert_eq!(ref_id(&memo["entity"]), ref_id(&sale["entity"]));
            let sold: Vec<String> = sale["item"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| ref_id(&l["item"]))
                .collect();
            let extra = [
                stack.items.tax.to_string(),
                stack.items.discount.to_string(),
                stack.items.default.to_string(),
            ];
            for l in memo["item"]["items"].as_array().unwrap() {
                let item = ref_id(&l["item"]);
                assert!(
                    sold.contains(&item) || extra.contains(&item),
                    "{memo} vs {sale}"
                );
            }
            // The refunded part is paid out; the rest stays the customer's credit.
            match &cash {
                Some(cash) => {
                    assert_eq!(dec(&cash["total"]), amount(n.refund_amount), "{cash}");
                    assert_eq!(ref_id(&cash["apply"]["items"][0]["doc"]), ref_id(&memo));
                }
                None => assert_eq!(n.refund_amount, 0, "{n:?}"),
            }
            assert_eq!(
                dec(&memo["unapplied"]),
                amount(n.total - n.refund_amount),
                "{memo}"
            );
            // Its Stripe refund is the credit note's: not posted again on its own.
            if let Some(refund) = &n.refund {
                assert!(
                    ns.get(RecordType::CreditMemo, &format!("eid:stripe_{refund}"))
                        .is_none(),
                    "{refund} posted twice"
                );
                let audit = stack.store.audit_for_object(refund).await.unwrap();
                assert!(
                    audit.iter().any(|a| a.step == "covered_by_credit_note"),
                    "{audit:?}"
                );
            }
        }
        assert!(memos >= 3, "{notes:?}");
        // The scenario's own refunds each have their memo too: memos = refunds + credit notes.
        assert_eq!(
            ns.count(RecordType::CreditMemo),
            memos + report.refunds.len()
        );

        // The invoice of a pre-payment credit note is paid: it posts at its full total, and the
        // credit note with it, applied, so nothing is left open on it.
        let pre = notes
            .iter()
            .find(|n| n.kind == "pre_payment" && !n.voided)
            .expect("a pre-payment credit note");
        let paid: serde_json::Value = reqwest::Client::new()
            .post(format!(
                "{}/v1/invoices/{}/pay",
                stack.stripe.base_url, pre.invoice
            ))
            .bearer_auth(stack.stripe.api_key_str())
            .form(&[("payment_method", "pm_card_visa")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(paid["status"], "paid", "{paid}");
        assert!(stack.wait_idle(SETTLE).await);
        let sale = ns
            .get(RecordType::Invoice, &format!("eid:stripe_{}", pre.invoice))
            .expect("the paid invoice is posted");
        let memo = ns
            .get(RecordType::CreditMemo, &format!("eid:stripe_{}", pre.id))
            .expect("its pre-payment credit note with it");
        let currency = mlc_core::Currency::parse(&pre.currency).unwrap();
        assert_eq!(
            dec(&memo["total"]),
            mlc_core::Money::new(pre.total, currency).to_decimal()
        );
        assert_eq!(ref_id(&memo["apply"]["items"][0]["doc"]), ref_id(&sale));
        assert_eq!(
            dec(&sale["amountRemaining"]),
            rust_decimal::Decimal::ZERO,
            "{sale}"
        );

        // A credit note voided after it posted: its memo is deleted, with its application.
        let credited: Vec<&String> = notes.iter().map(|n| &n.invoice).collect();
        let invoice = report
            .paid_invoices
            .iter()
            .find(|i| !credited.contains(i))
            .expect("an invoice without a credit note");
        let stripe = |path: String, form: Vec<(&'static str, String)>| {
            let url = format!("{}{path}", stack.stripe.base_url);
            let key = stack.stripe.api_key_str().to_string();
            async move {
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(key)
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap()
            }
        };
        let goodwill = stripe(
            "/v1/credit_notes".into(),
            vec![
                ("invoice", invoice.clone()),
                ("amount", "100".into()),
                ("credit_amount", "100".into()),
            ],
        )
        .await;
        let goodwill_id = goodwill["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{goodwill}"))
            .to_string();
        assert!(stack.wait_idle(SETTLE).await);
        let eid = format!("eid:stripe_{goodwill_id}");
        assert!(
            ns.get(RecordType::CreditMemo, &eid).is_some(),
            "posted first"
        );
        let voided = stripe(format!("/v1/credit_notes/{goodwill_id}/void"), vec![]).await;
        assert_eq!(voided["status"], "void", "{voided}");
        assert!(stack.wait_idle(SETTLE).await);
        assert!(ns.get(RecordType::CreditMemo, &eid).is_none(), "deleted");
        let audit = stack.store.audit_for_object(&goodwill_id).await.unwrap();
        assert!(
            audit.iter().any(|a| a.step == "credit_memo_deleted"),
            "{audit:?}"
        );

        // The reconciliation agrees, credit notes included.
        let reconciled =
            crate::helpers::reconcile_today(&stack.config, Some(&stack.master_key)).await;
        assert!(reconciled.is_clean(), "{reconciled:#?}");
        let credited_minor: i64 = reconciled
            .currencies
            .values()
            .map(|c| c.credit_notes.netsuite_minor)
            .sum();
        assert!(credited_minor > 0, "{reconciled:#?}");

        // Every event again: nothing new in NetSuite.
        let counted = || [RecordType::CreditMemo, RecordType::CustomerRefund].map(|t| ns.count(t));
        let before = counted();
        stack
            .store
            .requeue_where(mlc_store::JobState::Succeeded, None)
            .await
            .unwrap();
        assert!(stack.wait_idle(SETTLE).await);
        assert_eq!(counted(), before, "a replay posts nothing twice");
        stack.stop().await.unwrap();
    }
}
