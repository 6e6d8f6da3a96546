//! The scenario driver is deterministic for a seed and its totals reconcile with the API.

mod common;

use mlc_stripe_sim::{ScenarioConfig, SimConfig, StripeSim, run_scenario};
use serde_json::json;

fn small(seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        seed,
        customers: 16,
        failed_payment_percent: 20,
        checkout_percent: 60,
        ..Default::default()
    }
}

#[tokio::test]
async fn scenario_is_deterministic_for_a_seed() {
    let a_sim = StripeSim::start(SimConfig {
        seed: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let b_sim = StripeSim::start(SimConfig {
        seed: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let a = run_scenario(&a_sim.base_url, a_sim.api_key_str(), small(99))
        .await
        .unwrap();
    let b = run_scenario(&b_sim.base_url, b_sim.api_key_str(), small(99))
        .await
        .unwrap();
    assert_eq!(a, b);

    let c_sim = StripeSim::start(SimConfig {
        seed: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = run_scenario(&c_sim.base_url, c_sim.api_key_str(), small(100))
        .await
        .unwrap();
    assert_ne!(a.totals, c.totals, "another seed plays another month");

    assert_eq!(a.customers.len(), 16);
    assert_eq!(a.subscriptions.len(), 16);
    assert!(
        a.products
            .contains_key("Legacy Add-on (deliberately unmapped)")
    );
    assert!(!a.unmapped_product.is_empty());
    for cur in ["usd", "eur", "jpy", "kwd"] {
        assert!(
            a.prices
                .iter()
                .any(|p| p.currency == cur && p.interval.as_deref() == Some("year")),
            "annual price in {cur}"
        );
    }
    assert!(
        a.prices
            .iter()
            .filter(|p| p.currency == "kwd")
            .all(|p| p.unit_amount % 10 == 0)
    );
    assert!(!a.paid_invoices.is_empty());
    assert!(!a.refunds.is_empty());
    assert!(a.settlement.gross > 0 && a.settlement.fees > 0);
    assert_eq!(
        a.settlement.net,
        a.settlement.gross - a.settlement.fees + a.settlement.refunds
    );

    // Reconcile: the report's paid-invoice totals match the API's paid invoices.
    let client = common::Client::new(&a_sim);
    let mut sum = std::collections::BTreeMap::<String, i64>::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = json!({"status": "paid", "limit": "100"});
        if let Some(x) = &after {
            q["starting_after"] = json!(x);
        }
        let page = client.get("/v1/invoices", q).await;
        for inv in page["data"].as_array().unwrap() {
            *sum.entry(inv["currency"].as_str().unwrap().to_string())
                .or_default() += inv["total"].as_i64().unwrap();
        }
        after = page["data"]
            .as_array()
            .unwrap()
            .last()
            .map(|x| x["id"].as_str().unwrap().to_string());
        if page["has_more"] != json!(true) {
            break;
        }
    }
    for (cur, t) in &a.totals {
        assert_eq!(
            sum.get(cur).copied().unwrap_or(0),
            t.paid_invoice_total,
            "paid invoice total in {cur}"
        );
    }
    for s in [a_sim, b_sim, c_sim] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn scenario_survives_injected_api_faults_with_the_same_outcome() {
    let clean_sim = StripeSim::start(SimConfig {
        seed: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let clean = run_scenario(&clean_sim.base_url, clean_sim.api_key_str(), small(5))
        .await
        .unwrap();
    let faulty_sim = StripeSim::start(SimConfig {
        seed: 3,
        api_faults: mlc_stripe_sim::ApiFaults {
            error_500_probability: 0.1,
            rate_limit_probability: 0.1,
            latency_ms: 0,
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let faulty = run_scenario(&faulty_sim.base_url, faulty_sim.api_key_str(), small(5))
        .await
        .unwrap();
    assert_eq!(
        clean, faulty,
        "retries with idempotency keys make faults invisible in the outcome"
    );
    clean_sim.shutdown().await;
    faulty_sim.shutdown().await;
}

#[tokio::test]
async fn scenario_disputes_and_failed_refunds() {
    let start = || async {
        StripeSim::start(SimConfig {
            seed: 1,
            ..Default::default()
        })
        .await
        .unwrap()
    };
    let (base_sim, a_sim, b_sim) = (start().await, start().await, start().await);
    let base = run_scenario(&base_sim.base_url, base_sim.api_key_str(), small(99))
        .await
        .unwrap();
    assert!(base.disputes.is_empty() && base.failed_refunds.is_empty());
    assert_eq!(
        (base.settlement.disputes, base.settlement.refund_failures),
        (0, 0)
    );
    let cfg = ScenarioConfig {
        // More than the unrefunded one-time charges: the rest are invoice charges.
        disputes: 8,
        failed_refunds: 1,
        ..small(99)
    };
    let a = run_scenario(&a_sim.base_url, a_sim.api_key_str(), cfg.clone())
        .await
        .unwrap();
    let b = run_scenario(&b_sim.base_url, b_sim.api_key_str(), cfg)
        .await
        .unwrap();
    assert_eq!(a, b, "deterministic for a seed");
    // Everything before the new steps is the month the defaults play.
    assert_eq!(a.customers, base.customers);
    assert_eq!(a.paid_invoices, base.paid_invoices);
    assert_eq!(a.standalone_charges, base.standalone_charges);
    assert_eq!(a.refunds, base.refunds);

    let last = a.refunds.last().unwrap();
    assert_eq!(a.failed_refunds, vec![last.id.clone()]);
    let client = common::Client::new(&a_sim);
    let re = client
        .get(
            &format!("/v1/refunds/{}", last.id),
            json!({"expand": ["balance_transaction", "failure_balance_transaction"]}),
        )
        .await;
    assert_eq!(re["status"], "failed");
    let back = re["failure_balance_transaction"]["amount"]
        .as_i64()
        .unwrap();
    assert_eq!(back, -re["balance_transaction"]["amount"].as_i64().unwrap());
    assert_eq!(a.settlement.refund_failures, back);
    let t = &a.totals[&last.currency];
    assert_eq!(t.failed_refund_total, last.amount);
    assert_eq!(t.settled_refund_failures, back);

    assert_eq!(a.disputes.len(), 8);
    assert!(
        a.disputes
            .iter()
            .any(|d| !a.standalone_charges.contains(&d.charge)),
        "some disputes are on invoice charges"
    );
    for (k, d) in a.disputes.iter().enumerate() {
        assert_eq!(d.outcome, if k % 2 == 0 { "won" } else { "lost" });
    }
    for d in &a.disputes {
        assert!(!a.refunds.iter().any(|r| r.charge == d.charge));
        assert!(d.withdrawn_amount < 0);
        assert_eq!(d.withdrawn_fee, 1500);
        let dp = client
            .get(&format!("/v1/disputes/{}", d.id), json!({}))
            .await;
        assert_eq!(dp["status"], d.outcome.as_str());
        assert_eq!(dp["charge"], d.charge.as_str());
        assert_eq!(dp["amount"], d.amount);
        if d.outcome == "won" {
            assert_eq!(
                (d.reinstated_amount, d.reinstated_fee),
                (-d.withdrawn_amount, 0)
            );
        } else {
            assert_eq!((d.reinstated_amount, d.reinstated_fee), (0, 0));
        }
    }
    let settled: i64 = a
        .disputes
        .iter()
        .map(|d| d.withdrawn_amount + d.reinstated_amount)
        .sum();
    assert_eq!(a.settlement.disputes, settled);
    assert_eq!(a.settlement.dispute_fees, 8 * 1500);
    assert_eq!(
        a.totals.values().map(|t| t.settled_disputes).sum::<i64>(),
        settled
    );
    assert_eq!(
        a.settlement.net,
        a.settlement.gross - a.settlement.fees
            + a.settlement.refunds
            + a.settlement.refund_failures
            + a.settlement.disputes
            - a.settlement.dispute_fees
    );
    assert_eq!(
        a.settlement.net - base.settlement.net,
        back + settled - 8 * 1500
    );
    for s in [base_sim, a_sim, b_sim] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn scenario_issues_credit_notes_of_each_kind() {
    let cfg = || ScenarioConfig {
        credit_notes: 5,
        ..small(41)
    };
    let a_sim = StripeSim::start(SimConfig {
        seed: 9,
        ..Default::default()
    })
    .await
    .unwrap();
    let b_sim = StripeSim::start(SimConfig {
        seed: 9,
        ..Default::default()
    })
    .await
    .unwrap();
    let a = run_scenario(&a_sim.base_url, a_sim.api_key_str(), cfg())
        .await
        .unwrap();
    let b = run_scenario(&b_sim.base_url, b_sim.api_key_str(), cfg())
        .await
        .unwrap();
    assert_eq!(a, b, "credit notes are deterministic too");
    assert_eq!(a.credit_notes.len(), 5);
    let client = common::Client::new(&a_sim);
    for (k, cn) in a.credit_notes.iter().enumerate() {
        let api = client
            .get(&format!("/v1/credit_notes/{}", cn.id), json!({}))
            .await;
        assert_eq!(api["total"], cn.total);
        assert_eq!(api["invoice"], json!(cn.invoice));
        assert_eq!(api["currency"], json!(cn.currency));
        assert_eq!(api["type"], json!(cn.kind));
        assert_eq!(api["status"], if cn.voided { "void" } else { "issued" });
        assert_eq!(
            cn.refund_amount + cn.credit_amount + cn.out_of_band_amount,
            if cn.kind == "post_payment" {
                cn.total
            } else {
                0
            },
            "{cn:?}"
        );
        match k % 4 {
            0 => {
                assert_eq!(cn.kind, "post_payment");
                assert_eq!(cn.refund_amount, cn.total, "refunded in full");
                let inv = client
                    .get(&format!("/v1/invoices/{}", cn.invoice), json!({}))
                    .await;
                assert_eq!(inv["total"], cn.total, "the whole invoice");
                let re = client
                    .get(
                        &format!("/v1/refunds/{}", cn.refund.as_deref().unwrap()),
                        json!({}),
                    )
                    .await;
                assert_eq!(re["amount"], cn.total);
            }
            1 => {
                assert!(cn.refund_amount > 0 && cn.credit_amount > 0, "{cn:?}");
                assert!(api["customer_balance_transaction"].is_string());
            }
            2 => {
                assert_eq!(cn.kind, "pre_payment", "the scenario has open invoices");
                let inv = client
                    .get(&format!("/v1/invoices/{}", cn.invoice), json!({}))
                    .await;
                assert_eq!(inv["status"], "open");
                assert_eq!(inv["pre_payment_credit_notes_amount"], cn.total);
                assert_eq!(
                    inv["amount_due"].as_i64().unwrap(),
                    inv["total"].as_i64().unwrap() - cn.total
                );
                assert!(a.open_invoices.contains(&cn.invoice));
            }
            _ => {
                assert!(cn.voided);
                assert!(cn.credit_amount > 0 && cn.refund.is_none());
            }
        }
    }
    // Credit note refunds are refunds: they count in the currency's refunded total and in the
    // settled refunds read back from the balance transactions.
    let cn_refunds: i64 = a.credit_notes.iter().map(|c| c.refund_amount).sum();
    let plain: i64 = a.refunds.iter().map(|r| r.amount).sum();
    let counted: i64 = a.totals.values().map(|t| t.refunded_total).sum();
    assert_eq!(counted, plain + cn_refunds);
    assert!(cn_refunds > 0);
    // Same seeds without credit notes: the same month up to the credit notes.
    let c_sim = StripeSim::start(SimConfig {
        seed: 9,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = run_scenario(&c_sim.base_url, c_sim.api_key_str(), small(41))
        .await
        .unwrap();
    assert!(c.credit_notes.is_empty());
    assert_eq!(
        (&c.customers, &c.paid_invoices, &c.refunds),
        (&a.customers, &a.paid_invoices, &a.refunds)
    );
    for s in [a_sim, b_sim, c_sim] {
        s.shutdown().await;
    }
}
