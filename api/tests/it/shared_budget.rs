//! Several instances on one store share one NetSuite concurrency budget: together they never
//! exceed the account limit, so NetSuite never answers 429.

use std::sync::Arc;
use std::time::Duration;

use mlc_netsuite::{
    AccountId, ConcurrencyBudget, Credentials, NetSuiteClient, NetSuiteConfig, SigningAlgorithm,
};
use mlc_netsuite_sim::{NetSuiteSim, RecordType};
use mlc_service::netsuite_budget::SharedBudget;
use mlc_store::testing::backends;
use serde_json::json;

async fn clients(
    sim: &mlc_netsuite_sim::RunningSim,
    key_dir: &std::path::Path,
    budgets: Vec<Option<Arc<dyn ConcurrencyBudget>>>,
) -> Vec<NetSuiteClient> {
    let (setup, _) = sim.provision_m2m("ES256", &key_dir.join("k.pem")).unwrap();
    budgets
        .into_iter()
        .map(|budget| {
            let mut c = NetSuiteConfig::new(
                AccountId::parse(sim.account_id()).unwrap(),
                Credentials::M2m {
                    client_id: setup.client_id.clone(),
                    certificate_id: setup.certificate_id.clone(),
                    private_key_pem: setup.private_key_pem.clone(),
                    algorithm: SigningAlgorithm::Es256,
                },
            );
            c.base_url = Some(url::Url::parse(sim.base_url()).unwrap());
            c.concurrency = 3;
            c.budget = budget;
            NetSuiteClient::new(c).unwrap()
        })
        .collect()
}

/// Two "instances" each create 15 customers at once; returns NetSuite's 429 count.
async fn run_two_instances(
    clients: Vec<NetSuiteClient>,
    sim: &mlc_netsuite_sim::RunningSim,
    tag: &str,
) -> u64 {
    let mut tasks = Vec::new();
    for (n, client) in clients.into_iter().enumerate() {
        for i in 0..15 {
            let client = client.clone();
            let tag = tag.to_string();
            tasks.push(tokio::spawn(async move {
                client
                    .create(
                        "customer",
                        json!({"companyName": format!("{tag} {n}-{i}"), "subsidiary": {"id": "1"}}),
                    )
                    .await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().expect("every create succeeds");
    }
    sim.handle().stats().rejected_concurrency
}

#[tokio::test]
async fn instances_sharing_a_store_stay_within_the_account_limit() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut cfg = mlc_netsuite_sim::SimConfig::example().unwrap();
        cfg.concurrency_limit = 3;
        cfg.latency = Duration::from_millis(60);
        let sim = NetSuiteSim::start(cfg).await.unwrap();

        // Control: each instance with its own budget of 3 sends up to 6 at once → 429s.
        let separate = clients(&sim, keys.path(), vec![None, None]).await;
        let throttled = run_two_instances(separate, &sim, "separate").await;
        assert!(throttled > 0, "the control should hit the account limit");

        // Shared through the store: never more than 3 in flight across both.
        let store_a = db.store().await;
        let store_b = db.store().await;
        let a: Arc<dyn ConcurrencyBudget> = SharedBudget::new(store_a, "TSTDRV1", 3).await.unwrap();
        let b: Arc<dyn ConcurrencyBudget> = SharedBudget::new(store_b.clone(), "TSTDRV1", 3)
            .await
            .unwrap();
        let shared = clients(&sim, keys.path(), vec![Some(a), Some(b)]).await;
        let before = sim.handle().stats().rejected_concurrency;
        let after = run_two_instances(shared, &sim, "shared").await;
        assert_eq!(
            after - before,
            0,
            "{:?}: NetSuite answered 429 with a shared budget",
            db.backend()
        );
        assert_eq!(sim.handle().count(RecordType::Customer), 1 + 30 + 30);
        // Every slot is given back.
        let mut free = false;
        for _ in 0..50 {
            if store_b.netsuite_slots_in_use("TSTDRV1").await.unwrap() == 0 {
                free = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(free, "slots left held");
    }
}
