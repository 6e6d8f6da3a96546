//! Tenants never meet, end to end: two companies on one connector, through their own webhook
//! routes, into their own NetSuite accounts, tested as an attacker would (another tenant's
//! route, signature, IDs).

use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions, catalog_hook_for};
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_store::{EventFilter, JobState};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};

use crate::helpers::sign_now;

fn eids(invoices: &[ml_connector::stack::NsInvoice]) -> Vec<String> {
    let mut v: Vec<String> = invoices
        .iter()
        .map(|i| i.external_id.to_lowercase())
        .collect();
    v.sort();
    v
}

/// Waits (at most `secs`) until the connection's job counts satisfy `done`; returns them.
async fn wait_for_jobs(
    store: &mlc_store::ConnectionStore,
    secs: u64,
    done: impl Fn(&dyn Fn(JobState) -> i64) -> bool,
) -> Vec<(JobState, i64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let counts = store.job_counts().await.unwrap();
        let n = |s: JobState| counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
        if done(&n) {
            return counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_tenants_connecting_the_same_stripe_account_each_post_once_into_their_own_netsuite() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.unmapped_retry_secs = 3600;
        let stack = Stack::start(opts.clone()).await.expect("stack starts");
        // globex connects the very Stripe account the default company connected.
        let globex = stack
            .add_tenant("globex", "production", &opts, Some(&stack.stripe))
            .await
            .expect("second tenant connects");
        let report = run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            ScenarioConfig {
                customers: 6,
                seed: 5,
                checkout_percent: 100,
                on_catalog: Some(catalog_hook_for(
                    vec![
                        stack.netsuite.handle().clone(),
                        globex.netsuite.handle().clone(),
                    ],
                    true,
                )),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        assert!(
            stack.wait_idle(Duration::from_secs(120)).await,
            "default settles"
        );
        assert!(
            globex.wait_idle(Duration::from_secs(120)).await,
            "globex settles"
        );
        assert!(!report.paid_invoices.is_empty());

        // Each NetSuite holds every paid invoice exactly once: the same Stripe invoices, posted
        // once per company, never into the other's account.
        let (a, b) = (stack.netsuite_invoices(), globex.netsuite_invoices());
        assert_eq!(eids(&a), eids(&b), "{:?}", db.backend());
        let mut unique = eids(&a);
        unique.dedup();
        assert_eq!(unique.len(), a.len(), "an invoice posted twice");
        for inv in &report.paid_invoices {
            assert!(
                unique.contains(&format!("stripe_{inv}").to_lowercase()),
                "{inv}"
            );
        }
        let total = |v: &[ml_connector::stack::NsInvoice]| {
            v.iter().map(|i| i.total).sum::<rust_decimal::Decimal>()
        };
        assert_eq!(total(&a), total(&b));
        assert_eq!(
            stack.netsuite_count(RecordType::Customer),
            globex.netsuite.handle().count(RecordType::Customer)
        );

        // The same event IDs, one copy each, with their own jobs and audit trails.
        let default_events = stack.store.count_events().await.unwrap();
        assert_eq!(default_events, globex.store.count_events().await.unwrap());
        let listed = globex
            .store
            .list_events(&EventFilter {
                limit: 1000,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        for e in listed.iter().take(10) {
            let mine = globex.store.get_job_for_event(&e.event_id).await.unwrap();
            let theirs = stack.store.get_job_for_event(&e.event_id).await.unwrap();
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                assert_ne!(mine.id, theirs.id);
                assert_eq!(mine.scope, *globex.store.scope());
                // Another tenant's job ID finds nothing through this scope.
                assert!(globex.store.get_job(&theirs.id).await.unwrap().is_none());
                assert!(
                    globex
                        .store
                        .audit_for_job(&theirs.id)
                        .await
                        .unwrap()
                        .is_empty()
                );
                assert!(
                    !globex
                        .store
                        .audit_for_event(&e.event_id)
                        .await
                        .unwrap()
                        .is_empty()
                );
            }
        }
        let counts = globex.store.job_counts().await.unwrap();
        let failed = counts
            .iter()
            .find(|(s, _)| *s == JobState::Failed)
            .unwrap()
            .1;
        assert_eq!(failed, 0, "{counts:?}");
        // Its health shows its own NetSuite token (M2M, issued for its account).
        let connection = stack
            .store
            .store()
            .tenant(&globex.store.scope().tenant())
            .get_connection(globex.store.scope().connection_id())
            .await
            .unwrap()
            .unwrap();
        assert!(
            connection.health.token_issued_at.is_some(),
            "{:?}",
            connection.health
        );

        // An attacker: a delivery signed for the default company sent to globex's route is
        // refused (its own secret verifies it), a made-up or malformed route is a plain 404.
        let http = reqwest::Client::new();
        let body = r#"{"id":"evt_1Forged","object":"event","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1Forged"}}}"#;
        let default_secret = stack.config.stripe.webhook_secrets[0].clone();
        let signed = sign_now(secrecy::ExposeSecret::expose_secret(&default_secret), body);
        let to = |path: String| {
            http.post(format!("http://{}{path}", stack.addr))
                .header("stripe-signature", signed.clone())
                .body(body)
                .send()
        };
        let r = to(format!("/webhooks/stripe/{}", globex.route))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert!(
            globex
                .store
                .get_event("evt_1Forged")
                .await
                .unwrap()
                .is_none()
        );
        let unknown = to("/webhooks/stripe/whc_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into())
            .await
            .unwrap();
        let malformed = to("/webhooks/stripe/globex".into()).await.unwrap();
        assert_eq!(unknown.status().as_u16(), 404);
        assert_eq!(malformed.status().as_u16(), 404);
        assert_eq!(
            unknown.text().await.unwrap(),
            malformed.text().await.unwrap()
        );

        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_paused_connection_stores_its_events_and_posts_them_when_resumed() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let opts = StackOptions::new(db.url(), keys.path());
        let stack = Stack::start(opts.clone()).await.expect("stack starts");
        let acme = stack
            .add_tenant("acme", "production", &opts, None)
            .await
            .expect("tenant connects");
        let tenant = stack.store.store().tenant(&acme.store.scope().tenant());
        let id = acme.store.scope().connection_id().clone();
        assert!(
            tenant
                .set_connection_status(&id, mlc_core::ConnectionStatus::Paused)
                .await
                .unwrap()
        );
        let stripe = acme.stripe.as_ref().expect("its own Stripe");
        let report = run_scenario(
            &stripe.base_url,
            stripe.api_key_str(),
            ScenarioConfig {
                customers: 3,
                seed: 9,
                checkout_percent: 100,
                on_catalog: Some(catalog_hook_for(vec![acme.netsuite.handle().clone()], true)),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        // Stored, nothing posted: the jobs wait for the connection.
        wait_for_jobs(&acme.store, 60, |n| {
            n(JobState::Queued) + n(JobState::Running) == 0 && n(JobState::Waiting) > 0
        })
        .await;
        assert!(
            acme.netsuite_invoices().is_empty(),
            "a paused connection posted"
        );
        assert!(acme.store.count_events().await.unwrap() > 0);
        let waiting = acme
            .store
            .list_events(&EventFilter {
                status: Some("waiting".into()),
                limit: 5,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert!(
            waiting[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("is not active") && e.contains("connections resume")),
            "{waiting:?}"
        );

        // Resumed (and its waiting jobs woken, as `connections resume` does): everything posts.
        assert!(
            tenant
                .set_connection_status(&id, mlc_core::ConnectionStatus::Active)
                .await
                .unwrap()
        );
        acme.store
            .wake_waiting_jobs(mlc_service::connections::PAUSED_MARKER)
            .await
            .unwrap();
        wait_for_jobs(&acme.store, 120, |n| {
            n(JobState::Queued) + n(JobState::Running) + n(JobState::Waiting) == 0
        })
        .await;
        let posted = eids(&acme.netsuite_invoices());
        for inv in &report.paid_invoices {
            assert!(
                posted.contains(&format!("stripe_{inv}").to_lowercase()),
                "{inv}"
            );
        }
        // Nothing of acme's reached the default company's NetSuite.
        assert!(stack.netsuite_invoices().is_empty());
        stack.stop().await.unwrap();
    }
}

/// A connection whose settings cannot be used waits (nothing lost, nothing posted) with an error
/// that says what is wrong, on the connection's health too; once its settings are fixed the
/// registry builds it again and what waited posts.
#[tokio::test]
async fn a_connection_is_rebuilt_when_its_settings_change() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let opts = StackOptions::new(db.url(), keys.path());
        let stack = Stack::start(opts.clone()).await.expect("stack starts");
        let acme = stack
            .add_tenant("acme", "production", &opts, None)
            .await
            .expect("tenant connects");
        let tenant = stack.store.store().tenant(&acme.store.scope().tenant());
        let id = acme.store.scope().connection_id().clone();
        let good = tenant.get_connection(&id).await.unwrap().unwrap();
        let mut broken = good.settings.clone();
        broken["posting"]["fees"] = serde_json::json!("sideways");
        let update = |settings: serde_json::Value| mlc_store::NewConnection {
            id: id.clone(),
            name: good.name.clone(),
            status: good.status,
            settings,
            netsuite_account: good.netsuite_account.clone(),
        };
        tenant.upsert_connection(&update(broken)).await.unwrap();

        let stripe = acme.stripe.as_ref().expect("its own Stripe");
        let report = run_scenario(
            &stripe.base_url,
            stripe.api_key_str(),
            ScenarioConfig {
                customers: 2,
                seed: 4,
                checkout_percent: 100,
                on_catalog: Some(catalog_hook_for(vec![acme.netsuite.handle().clone()], true)),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        let waiting = wait_for_jobs(&acme.store, 60, |n| {
            n(JobState::Queued) + n(JobState::Running) == 0 && n(JobState::Waiting) > 0
        })
        .await
        .iter()
        .find(|(s, _)| *s == JobState::Waiting)
        .map_or(0, |(_, n)| *n);
        assert!(acme.netsuite_invoices().is_empty());
        let health = tenant.get_connection(&id).await.unwrap().unwrap().health;
        let error = health.last_error.unwrap_or_default();
        assert!(
            error.contains("unusable settings") && error.contains("posting.fees"),
            "{error}"
        );

        // Fixed: rebuilt at the next job; what waited posts.
        tenant
            .upsert_connection(&update(good.settings.clone()))
            .await
            .unwrap();
        let woken = acme
            .store
            .wake_waiting_jobs("unusable settings")
            .await
            .unwrap();
        assert_eq!(woken as i64, waiting);
        wait_for_jobs(&acme.store, 120, |n| {
            n(JobState::Queued) + n(JobState::Running) + n(JobState::Waiting) == 0
        })
        .await;
        let posted = eids(&acme.netsuite_invoices());
        for inv in &report.paid_invoices {
            assert!(
                posted.contains(&format!("stripe_{inv}").to_lowercase()),
                "{inv}"
            );
        }
        stack.stop().await.unwrap();
    }
}
