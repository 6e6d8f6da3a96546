//! Exactly once under everything at the same time: every event delivered 1–4 times and
//! shuffled, deliveries lost, NetSuite answering 5xx, 429 and "committed but the response was
//! lost", and the connector process killed with SIGKILL several times and restarted; and a Stripe
//! dialect whose `/v1/invoice_payments` answers an empty list, so a charge's events that come
//! before its invoice's must find the invoice from the invoice's own payments.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use ml_connector::stack::{
    Sims, StackOptions, catalog_hook, gross_by_currency, netsuite_invoices,
    stripe_gross_by_currency, wait_idle,
};
use mlc_netsuite_sim::{FaultProbabilities, RecordType};
use mlc_store::testing::backends;
use mlc_store::{JobState, Store};
use mlc_stripe_sim::{DeliveryConfig, DeliveryFaults, ScenarioConfig, run_scenario};
use rust_decimal::Decimal;
use tokio::process::{Child, Command};

fn spawn(env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .arg("serve")
        .envs(env.iter().cloned())
        .env("MLC__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("connector starts")
}

/// The jobs still queued or running, with their apalis tasks, for a test that did not settle.
async fn unsettled(url: &str) -> String {
    use sqlx::{Connection as _, Row as _};
    sqlx::any::install_default_drivers();
    let Ok(mut conn) = sqlx::AnyConnection::connect(url).await else {
        return "no database".into();
    };
    let apalis = if url.starts_with("sqlite") {
        "Jobs"
    } else {
        "apalis.jobs"
    };
    let sql = format!(
        "SELECT j.id, j.state, j.attempts, j.run_at, j.locked_by, j.last_error, t.status, \
         t.attempts AS task_attempts, t.lock_by AS task_lock FROM sync_jobs j \
         LEFT JOIN {apalis} t ON t.id = j.task_id \
         WHERE j.state IN ('queued', 'running', 'waiting') LIMIT 20"
    );
    let rows = match sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut conn)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return format!("cannot read jobs: {e}"),
    };
    let now = mlc_core::now_millis();
    rows.iter()
        .map(|r| {
            format!(
                "\n  job {} {} attempts {} due in {} ms, worker {:?}, last error {:?}; task {:?} \
                 (attempts {:?}, lock {:?})",
                r.get::<String, _>("id"),
                r.get::<String, _>("state"),
                r.get::<i64, _>("attempts"),
                r.get::<i64, _>("run_at") - now,
                r.get::<Option<String>, _>("locked_by"),
                r.get::<Option<String>, _>("last_error"),
                r.get::<Option<String>, _>("status"),
                r.try_get::<Option<i32>, _>("task_attempts").ok().flatten(),
                r.get::<Option<String>, _>("task_lock"),
            )
        })
        .collect()
}

#[tokio::test]
async fn sigkill_faults_and_adversarial_delivery_leave_exactly_one_record_per_stripe_object() {
    for db in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut opts = StackOptions::new(db.url(), dir.path());
        opts.delivery_faults = DeliveryFaults {
            duplicate_probability: 1.0,
            max_extra_copies: 3,
            reorder_window: 12,
            max_delay_ms: 30,
            drop_probability: 0.1,
        };
        // Stripe retries failed deliveries for days; compressed, but long enough to outlast the
        // connector's restarts.
        opts.delivery = DeliveryConfig {
            max_attempts: 14,
            base_delay_ms: 100,
            ..DeliveryConfig::default()
        };
        opts.stripe_dialect = mlc_stripe_sim::Dialect {
            empty_lists: vec!["/v1/invoice_payments".into()],
            ..mlc_stripe_sim::Dialect::default()
        };
        opts.netsuite_concurrency_limit = 3;
        opts.netsuite_concurrency = 6;
        let sims = Sims::start(&opts, addr).await.expect("simulators start");
        sims.netsuite
            .handle()
            .set_fault_probabilities(FaultProbabilities {
                server_error: 0.05,
                drop: 0.02,
                commit_then_error: 0.05,
                commit_then_drop: 0.03,
            });

        let mut child = spawn(&sims.env);
        let scenario = tokio::spawn({
            let base = sims.stripe.base_url.clone();
            let key = sims.stripe.api_key_str().to_string();
            let hook = catalog_hook(sims.netsuite.handle().clone(), true);
            async move {
                run_scenario(
                    &base,
                    &key,
                    ScenarioConfig {
                        customers: 10,
                        seed: 5,
                        checkout_percent: 60,
                        credit_notes: 4,
                        disputes: 2,
                        payouts: true,
                        on_catalog: Some(hook),
                        ..ScenarioConfig::default()
                    },
                )
                .await
            }
        });
        for round in 0..3u64 {
            tokio::time::sleep(Duration::from_millis(900 + 400 * round)).await;
            child.kill().await.expect("SIGKILL");
            tokio::time::sleep(Duration::from_millis(150)).await;
            child = spawn(&sims.env);
        }
        let report = scenario.await.unwrap().expect("scenario runs");
        let store =
            mlc_service::connections::default_scoped(Store::connect(db.url()).await.unwrap())
                .await
                .unwrap();
        if !wait_idle(&sims.stripe.handle, &store, Duration::from_secs(240)).await {
            panic!(
                "did not settle ({:?}): {}",
                db.backend(),
                unsettled(db.url()).await
            );
        }
        child.kill().await.ok();

        let counts: std::collections::HashMap<_, _> =
            store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts[&JobState::Failed], 0, "{counts:?}");
        assert_eq!(
            counts[&JobState::Waiting],
            0,
            "{counts:?}: {}",
            unsettled(db.url()).await
        );
        let stats = sims.stripe.handle.delivery_stats();
        eprintln!("{:?}: deliveries {stats:?}", db.backend());

        // Exactly one NetSuite invoice per Stripe invoice or standalone charge, nothing missing.
        let invoices = netsuite_invoices(sims.netsuite.handle(), sims.items.fee);
        crate::helpers::assert_one_invoice_per_sale(
            sims.netsuite.handle(),
            sims.items.fee,
            &report,
            &format!("{:?}", db.backend()),
        );
        // One payment per invoice, every invoice paid.
        assert_eq!(
            sims.netsuite.handle().count(RecordType::CustomerPayment),
            invoices.len()
        );
        assert!(
            invoices
                .iter()
                .all(|i| i.amount_remaining == Some(Decimal::ZERO))
        );
        // Each refund: one credit memo and one customer refund, whatever the deliveries did;
        // each posted credit note one memo (and one customer refund when it refunded).
        let handle = sims.netsuite.handle();
        assert!(!report.refunds.is_empty(), "the scenario refunds");
        let notes: Vec<_> = report
            .credit_notes
            .iter()
            .filter(|n| !n.voided && n.kind == "post_payment")
            .collect();
        assert!(!notes.is_empty(), "the scenario credits");
        assert_eq!(
            handle.count(RecordType::CreditMemo),
            report.refunds.len() + notes.len()
        );
        assert_eq!(
            handle.count(RecordType::CustomerRefund),
            report.refunds.len() + notes.iter().filter(|n| n.refund_amount > 0).count()
        );
        for n in &notes {
            let eid = format!("eid:stripe_{}", n.id);
            assert!(handle.get(RecordType::CreditMemo, &eid).is_some(), "{eid}");
        }
        // Each movement of a dispute's money: one journal entry.
        assert_eq!(report.disputes.len(), 2);
        let movements: usize = report
            .disputes
            .iter()
            .map(|d| if d.outcome == "won" { 2 } else { 1 })
            .sum();
        let journals = handle
            .ids(RecordType::JournalEntry)
            .into_iter()
            .filter_map(|id| handle.get(RecordType::JournalEntry, &id.to_string()))
            .filter(|je| {
                je["externalId"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("stripe_txn_"))
            })
            .count();
        assert_eq!(journals, movements);
        // Each payout: one deposit, however often its events came.
        assert!(!report.payouts.is_empty(), "the scenario pays out");
        assert_eq!(handle.count(RecordType::Deposit), report.payouts.len());
        for p in &report.payouts {
            let eid = format!("eid:stripe_{}", p.id);
            assert!(handle.get(RecordType::Deposit, &eid).is_some(), "{eid}");
        }
        for refund in &report.refunds {
            let eid = format!("eid:stripe_{}", refund.id);
            assert!(handle.get(RecordType::CreditMemo, &eid).is_some(), "{eid}");
            let eid = format!("eid:stripe_refund_{}", refund.id);
            assert!(
                handle.get(RecordType::CustomerRefund, &eid).is_some(),
                "{eid}"
            );
        }
        // Customers: one per Stripe customer that bought something.
        let customers: BTreeSet<&String> = invoices.iter().map(|i| &i.customer).collect();
        assert!(customers.len() <= report.customers.len());

        // Amounts still reconcile to the minor unit per currency.
        let ns = gross_by_currency(&invoices);
        for (code, stripe) in stripe_gross_by_currency(&report) {
            assert_eq!(ns.get(&code).copied().unwrap_or_default(), stripe, "{code}");
        }
        // And so does everything that went back: the reconciliation finds no difference.
        handle.set_fault_probabilities(FaultProbabilities::default());
        let reconciled = crate::helpers::reconcile_today(&sims.config().unwrap(), None).await;
        assert!(reconciled.is_clean(), "{reconciled:#?}");
    }
}
