//! Several `serve` processes on one store share the jobs through apalis: every job runs, none
//! runs twice at once (with no fault injected, a job run twice would show two attempts), and
//! NetSuite has exactly one invoice per Stripe object. On PostgreSQL this is the multi-instance
//! deployment; on SQLite, several processes on one file in WAL mode.

use std::process::Stdio;
use std::time::Duration;

use ml_connector::stack::{Sims, StackOptions, catalog_hook, tenants_for_child, wait_idle};
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
        crate::helpers::assert_one_invoice_per_sale(
            sims.netsuite.handle(),
            sims.items.fee,
            &report,
            "default",
        );
    }
}

/// A load balancer in front of the instances: each request goes to the next backend in turn. A
/// backend that is down answers 502, and Stripe delivers again later. Counts, per backend, the
/// deliveries it answered 2xx.
fn round_robin(
    listener: tokio::net::TcpListener,
    backends: Vec<std::net::SocketAddr>,
) -> (
    std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;

    let accepted: Arc<Vec<AtomicUsize>> =
        Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let counts = accepted.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (backends, next, http, counts) =
            (backends.clone(), next.clone(), http.clone(), counts.clone());
        async move {
            let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
            let (parts, body) = request.into_parts();
            let Ok(body) = axum::body::to_bytes(body, 4 << 20).await else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut forward = http
                .request(
                    parts.method.clone(),
                    format!("http://{}{path}", backends[i]),
                )
                .body(body);
            for (name, value) in &parts.headers {
                if name != header::HOST && name != header::CONTENT_LENGTH {
                    forward = forward.header(name, value);
                }
            }
            match forward.send().await {
                Ok(answer) => {
                    let status = answer.status();
                    if status.is_success() {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    }
                    (status, answer.bytes().await.unwrap_or_default()).into_response()
                }
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (accepted, task)
}

/// Starts `serve` on `listen` and waits until it is ready.
async fn spawn_ready(env: &[(String, String)], listen: std::net::SocketAddr) -> Child {
    let mut child = spawn(env, Some(listen));
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http
            .get(format!("http://{listen}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve on {listen} exited at start: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("serve on {listen} was not ready within 15 s");
}

/// Jobs this process has run (every handler run is timed in `mlc_job_run_seconds`).
async fn jobs_run(listen: std::net::SocketAddr) -> u64 {
    let Ok(answer) = reqwest::get(format!("http://{listen}/metrics")).await else {
        return 0;
    };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("mlc_job_run_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the process on `listen` has run a job: a fault injected then lands mid-run.
async fn until_it_has_run_jobs(listen: std::net::SocketAddr) -> u64 {
    for _ in 0..600 {
        let n = jobs_run(listen).await;
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the process on {listen} ran no job within 30 s");
}

/// The deployment the issue describes: three `serve` processes (the real binary) on one PostgreSQL,
/// three companies each on its own Stripe and NetSuite account, Stripe's deliveries spread
/// round-robin across the three by a load balancer, each event delivered 1–3 times and shuffled;
/// one process SIGKILLed mid-run and restarted, another stopped by SIGTERM (it drains and exits
/// 0) and restarted. At the end every company has exactly one NetSuite record per Stripe object
/// and nothing missing, no NetSuite account ever saw more requests at once than its limit (the
/// simulator refuses, and counts, any request over it), and every process took deliveries and
/// ran jobs.
#[tokio::test]
async fn three_processes_share_round_robin_deliveries_through_a_sigkill_and_a_sigterm() {
    use mlc_netsuite_sim::RecordType;
    use mlc_stripe_sim::{DeliveryConfig, DeliveryFaults};

    const LIMIT: usize = 3;
    // Several instances share the work on PostgreSQL (on SQLite each process keeps its own
    // NetSuite budget: one instance per file is the supported deployment there).
    let postgres: Vec<_> = backends()
        .await
        .into_iter()
        .filter(|db| db.backend() == mlc_store::Backend::Postgres)
        .collect();
    if postgres.is_empty() {
        eprintln!("scale-out test skipped: TEST_DATABASE_URL (PostgreSQL) is not set");
    }
    for db in postgres {
        let dir = tempfile::tempdir().unwrap();
        let front = free_addr();
        let mut opts = StackOptions::new(db.url(), dir.path());
        opts.delivery_faults = DeliveryFaults {
            duplicate_probability: 1.0,
            max_extra_copies: 2,
            reorder_window: 8,
            max_delay_ms: 20,
            drop_probability: 0.0,
        };
        // Stripe retries a delivery that failed (a process down behind the balancer).
        opts.delivery = DeliveryConfig {
            max_attempts: 14,
            base_delay_ms: 100,
            ..DeliveryConfig::default()
        };
        opts.netsuite_concurrency_limit = LIMIT;
        opts.netsuite_concurrency = LIMIT;
        opts.netsuite_latency = Duration::from_millis(40);
        opts.worker_concurrency = 4;
        let sims = Sims::start(&opts, front).await.expect("simulators start");

        // Two more companies, connected as an operator would, on an in-process connector that
        // stops before the three processes start (it hands them its master key as a file).
        let (tenants, env) =
            tenants_for_child(&sims, &opts, dir.path(), front, &["acme", "globex"])
                .await
                .expect("tenants");

        let addrs = [free_addr(), free_addr(), free_addr()];
        let mut procs = Vec::new();
        for a in addrs {
            procs.push(spawn_ready(&env, a).await);
        }
        let (accepted, balancer) = round_robin(
            tokio::net::TcpListener::bind(front).await.unwrap(),
            addrs.to_vec(),
        );

        // Each company's month, at the same time.
        let store = Store::connect(db.url()).await.unwrap();
        let default_store = mlc_service::connections::default_scoped(store.clone())
            .await
            .unwrap();
        let mut companies = vec![(
            "default",
            sims.stripe.base_url.clone(),
            sims.stripe.api_key_str().to_string(),
            sims.stripe.handle.clone(),
            sims.netsuite.handle().clone(),
            sims.items.fee,
            default_store,
        )];
        for (t, name) in tenants.iter().zip(["acme", "globex"]) {
            let stripe = t.stripe.as_ref().expect("its own Stripe");
            companies.push((
                name,
                stripe.base_url.clone(),
                stripe.api_key_str().to_string(),
                t.stripe_handle.clone(),
                t.netsuite.handle().clone(),
                t.items.fee,
                store.scoped(t.store.scope()),
            ));
        }
        let scenarios: Vec<_> = companies
            .iter()
            .enumerate()
            .map(|(i, (_, base, key, _, netsuite, _, _))| {
                let (base, key) = (base.clone(), key.clone());
                let hook = catalog_hook(netsuite.clone(), true);
                tokio::spawn(async move {
                    run_scenario(
                        &base,
                        &key,
                        ScenarioConfig {
                            customers: 6,
                            seed: 40 + i as u64,
                            // One-time sales through Checkout, so each company refunds.
                            checkout_percent: 100,
                            refunds: 2,
                            on_catalog: Some(hook),
                            ..ScenarioConfig::default()
                        },
                    )
                    .await
                })
            })
            .collect();

        // Mid-run, once each has run jobs: SIGKILL the first and start it again; SIGTERM the
        // second, which drains and exits 0, and start it again.
        let mut ran = [0_u64; 3];
        ran[0] = until_it_has_run_jobs(addrs[0]).await;
        procs[0].kill().await.expect("SIGKILL");
        tokio::time::sleep(Duration::from_millis(300)).await;
        procs[0] = spawn_ready(&env, addrs[0]).await;
        ran[1] = until_it_has_run_jobs(addrs[1]).await;
        let status = crate::helpers::sigterm_and_wait(&mut procs[1]).await;
        assert!(status.success(), "SIGTERM exit status {status:?}");
        procs[1] = spawn_ready(&env, addrs[1]).await;

        let mut reports = Vec::new();
        for s in scenarios {
            reports.push(s.await.unwrap().expect("scenario runs"));
        }
        for (name, _, _, stripe, _, _, company_store) in &companies {
            if !wait_idle(stripe, company_store, Duration::from_secs(180)).await {
                panic!("{name} did not settle ({:?})", db.backend());
            }
        }
        ran[2] = jobs_run(addrs[2]).await;
        for p in &mut procs {
            p.kill().await.ok();
        }
        balancer.abort();

        for ((name, _, _, _, netsuite, fee_item, company_store), report) in
            companies.iter().zip(&reports)
        {
            let counts: std::collections::HashMap<_, _> = company_store
                .job_counts()
                .await
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(counts[&JobState::Failed], 0, "{name}: {counts:?}");
            assert_eq!(counts[&JobState::Waiting], 0, "{name}: {counts:?}");
            // Exactly one invoice per paid Stripe invoice or standalone charge, nothing missing.
            let label = format!("{name} ({:?})", db.backend());
            let posted =
                crate::helpers::assert_one_invoice_per_sale(netsuite, *fee_item, report, &label);
            assert_eq!(netsuite.count(RecordType::CustomerPayment), posted);
            // Each refund: one credit memo and one customer refund.
            assert!(!report.refunds.is_empty(), "{name}: the scenario refunds");
            assert_eq!(netsuite.count(RecordType::CreditMemo), report.refunds.len());
            assert_eq!(
                netsuite.count(RecordType::CustomerRefund),
                report.refunds.len()
            );
            // The account's concurrency limit held across the three processes: the simulator
            // refuses a request over it (as NetSuite does, with 429) and counts the refusals.
            let stats = netsuite.stats();
            assert_eq!(
                stats.rejected_concurrency,
                0,
                "{name} ({:?}): requests over the account's limit of {LIMIT}: {stats:?}",
                db.backend()
            );
            assert!(stats.max_in_flight <= LIMIT, "{name}: {stats:?}");
        }
        // Every process took deliveries and ran jobs.
        for (i, a) in addrs.iter().enumerate() {
            let took = accepted[i].load(std::sync::atomic::Ordering::Relaxed);
            assert!(took > 0, "process {i} on {a} took no delivery");
            assert!(ran[i] > 0, "process {i} on {a} ran no job");
        }
        eprintln!(
            "{:?}: deliveries taken per process {:?}, jobs run before the kill / the drain / the end {ran:?}",
            db.backend(),
            accepted
                .iter()
                .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
                .collect::<Vec<_>>()
        );
    }
}
