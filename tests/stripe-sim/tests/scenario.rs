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
