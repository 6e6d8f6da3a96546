//! Several `serve` processes on one store share the jobs through apalis: every job runs, none
//! runs twice at once (with no fault injected, a job run twice would show two attempts), and
//! NetSuite has exactly one invoice per Stripe object. On PostgreSQL this is the multi-instance
//! deployment; on SQLite, several processes on one file in WAL mode.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use ml_connector::stack::{Sims, StackOptions, catalog_hook, netsuite_invoices, wait_idle};
use mlc_store::testing::backends;
use mlc_store::{JobState, Store};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use tokio::process::{Child, Command};

fn spawn(env: &[(String, String)], listen: Option<std::net::SocketAddr>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
    cmd.arg("serve")
        .envs(env.iter().cloned())
        .env("MLC__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(addr) = listen {
        cmd.env("MLC__SERVER__LISTEN", addr.to_string());
    }
    cmd.spawn().expect("connector starts")
}

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn three_instances_share_the_jobs_and_post_each_object_once() {
    for db in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let opts = StackOptions::new(db.url(), dir.path());
        let sims = Sims::start(&opts, addr).await.expect("simulators start");
        // Webhooks reach the first instance; all three take jobs from the shared store.
        let mut children = vec![
            spawn(&sims.env, None),
            spawn(&sims.env, Some(free_addr())),
            spawn(&sims.env, Some(free_addr())),
        ];
        let report = run_scenario(
            &sims.stripe.base_url,
            sims.stripe.api_key_str(),
            ScenarioConfig {
                customers: 8,
                seed: 21,
                checkout_percent: 50,
                on_catalog: Some(catalog_hook(sims.netsuite.handle().clone(), true)),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        let store =
            mlc_service::connections::default_scoped(Store::connect(db.url()).await.unwrap())
                .await
                .unwrap();
        assert!(
            wait_idle(&sims.stripe.handle, &store, Duration::from_secs(120)).await,
            "did not settle ({:?})",
            db.backend()
        );
        for child in &mut children {
            child.kill().await.ok();
        }

        let counts: std::collections::HashMap<_, _> =
            store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts[&JobState::Failed], 0, "{counts:?}");
        assert!(counts[&JobState::Succeeded] > 0, "{counts:?}");
        // No job started twice at once: every start is an attempt, and every attempt but the
        // last ended in a recorded retry (waiting gives its attempt back), so a start by a
        // second worker shows as an attempt with no retry behind it.
        let events = store
            .list_events(&mlc_store::EventFilter {
                limit: 1000,
                ..mlc_store::EventFilter::default()
            })
            .await
            .unwrap();
        let mut jobs = 0;
        for e in &events {
            if let Some(job) = store.get_job_for_event(&e.event_id).await.unwrap() {
                jobs += 1;
                let audit = store.audit_for_job(&job.id).await.unwrap();
                let retried = audit.iter().filter(|a| a.step == "retried").count();
                assert_eq!(
                    (job.state, job.attempts),
                    (JobState::Succeeded, 1 + retried as i32),
                    "{:?}: job {} of {}: {audit:?}",
                    db.backend(),
                    job.id,
                    e.event_id
                );
            }
        }
        assert!(jobs > 0);

        // Exactly one NetSuite invoice per paid Stripe invoice or standalone charge.
        let invoices = netsuite_invoices(sims.netsuite.handle(), sims.items.fee);
        let eids: Vec<String> = invoices
            .iter()
            .map(|i| i.external_id.to_lowercase())
            .collect();
        let unique: BTreeSet<&String> = eids.iter().collect();
        assert_eq!(unique.len(), eids.len(), "a Stripe object was posted twice");
        let expected: BTreeSet<String> = report
            .paid_invoices
            .iter()
            .chain(report.standalone_charges.iter())
            .map(|id| format!("stripe_{id}").to_lowercase())
            .collect();
        assert_eq!(
            eids.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "missing or extra invoices"
        );
    }
}
