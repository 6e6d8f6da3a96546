//! `ml-connector bench pipeline`: the scenario through a NetSuite simulator governed like a
//! Standard account (5 concurrent requests, 200 ms each: at most 25 requests/s), with the
//! connector as a separate process so its memory is its own.
//!
//! With `--connections N` (N > 1), N companies play the scenario at once through that one
//! `serve`, each with its own Stripe account and its own NetSuite account (a simulator each,
//! governed alike): the configured default connection, and N − 1 tenants connected the way an
//! operator connects them ([`Stack::add_tenant`]). It prints the aggregate NetSuite requests/s
//! against the sum of the accounts' limits.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use mlc_netsuite_sim::RecordType;
use mlc_store::{ConnectionStore, JobState, Store};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};

use mlc_service::{connections, telemetry};

use super::bench::BenchStore;
use super::bench_queue::fresh_databases;
use crate::stack::{
    Sims, StackOptions, catalog_hook, catalog_hook_for, netsuite_invoices, scratch_dir,
    tenants_for_child, wait_idle,
};

#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[arg(long, default_value_t = 50)]
    pub customers: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// NetSuite simulator latency per request, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u64,
    /// NetSuite account concurrency limit (also the connector's share).
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
    /// Worker concurrency of the connector (default: 64; with `--connections N`, 4 × limit per
    /// connection, at most 256).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Jobs of one connection in flight at once (`worker.per_connection_cap`; 0: the service's
    /// default, worker concurrency − 1).
    #[arg(long, default_value_t = 0)]
    pub per_connection_cap: usize,
    /// Companies playing the scenario at once, each with its own Stripe and NetSuite account.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub connections: u32,
    /// Client-side Stripe request rate (a live account's default).
    #[arg(long, default_value_t = 80)]
    pub stripe_rate: u32,
    /// Print NetSuite's request count second by second.
    #[arg(long)]
    pub timeline: bool,
    /// The store `serve` runs on: SQLite (a temporary file), or a fresh PostgreSQL database
    /// (the store for many companies), dropped afterwards. `both` runs one after the other.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: BenchStore,
    /// PostgreSQL server for `--store postgres` (default: TEST_DATABASE_URL, else
    /// postgres://root@127.0.0.1:5432/test).
    #[arg(long)]
    pub database_url: Option<String>,
}

/// The worker's put-off attempts for `reason`, from Prometheus text.
fn deferred(text: &str, reason: &str) -> u64 {
    let series = format!("{}{{reason=\"{reason}\"", telemetry::names::JOBS_DEFERRED);
    telemetry::metric_sum(text, &series) as u64
}

/// Peak resident memory of a process, in MiB (Linux `VmHWM`).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The connector's options for this run: the simulators governed as asked.
fn stack_options(args: &PipelineArgs, url: &str, dir: &std::path::Path) -> StackOptions {
    let mut opts = StackOptions::new(url.to_string(), dir);
    opts.netsuite_latency = Duration::from_millis(args.latency_ms);
    opts.netsuite_concurrency_limit = args.limit;
    opts.netsuite_concurrency = args.limit;
    // Many companies: 4 × each account's limit. Half of a job's time there is spent waiting
    // on Stripe and on the job before it for the same invoice or customer, not on NetSuite
    // (BENCHMARKS.md, fifth pass): 2 × the limit left the accounts' slots idle. One company:
    // 64 (about 13 × its limit), which keeps its account at the limit through the lulls where
    // most jobs wait on a customer or invoice (32 gave 93–94%, 64 gives 97–98%: eighth pass).
    opts.worker_concurrency = args.workers.unwrap_or(if args.connections > 1 {
        (4 * args.limit * args.connections as usize).clamp(32, 256)
    } else {
        64
    });
    // The simulator's key is a test key (20 requests/s by default); a production account
    // allows 100/s, which the client's live default (80/s) stays under. Every company's
    // connection gets it (the tenants' through their settings: until 2026-12-06 they ran at the
    // test default, which capped each at about 20 events/s).
    opts.stripe_rate_limit_per_sec = Some(args.stripe_rate);
    opts.extra_env.push((
        "MLC__WORKER__PER_CONNECTION_CAP".into(),
        args.per_connection_cap.to_string(),
    ));
    opts
}

/// CPU seconds process `pid` has used so far (user and system, every thread), from
/// `/proc/<pid>/stat`; its clock ticks are USER_HZ, 100 on the Linux targets we run on.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime 14 and stime 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A free port on loopback for the connector.
fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// Starts `ml-connector serve` with `env` and waits until it answers its health check.
async fn spawn_serve(
    env: &[(String, String)],
    addr: SocketAddr,
) -> anyhow::Result<(tokio::process::Child, u32)> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .envs(env.iter().cloned())
        .env("MLC__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the connector")?;
    let pid = child.id().context("connector has no pid")?;
    let http = reqwest::Client::new();
    let health = format!("http://{addr}/healthz");
    for _ in 0..200 {
        if http.get(&health).send().await.is_ok() {
            return Ok((child, pid));
        }
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("the connector exited at start ({status})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the connector did not answer {health} within 10 s")
}

/// NetSuite's request counts (and, with `--timeline`, the connector's jobs) sampled every 100 ms.
#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the start.
    at: f64,
    /// Requests so far, per simulator.
    requests: Vec<u64>,
    /// Jobs queued, running and waiting across every connection.
    jobs: Option<[i64; 3]>,
    /// From `serve`'s `/metrics`: webhook events received and Stripe API requests made so far
    /// (where a slow start waits: the deliveries, or the re-fetches), and the microseconds
    /// SQLite's write lock was held (whether the store is the wait).
    served: Option<[f64; 3]>,
    /// CPU seconds used so far by `serve` and by this benchmark (the simulators and scenarios),
    /// to tell which of the two a busy second went to.
    cpu: Option<[f64; 2]>,
}

impl Sample {
    fn total(&self) -> u64 {
        self.requests.iter().sum()
    }
}

type Samples = Arc<Mutex<Vec<Sample>>>;

/// With `timeline`, also the jobs in `store` and what `serve` at `addr` counts.
fn sample_requests(
    handles: Vec<mlc_netsuite_sim::SimHandle>,
    timeline: Option<(Store, SocketAddr, u32)>,
    started: Instant,
) -> (Samples, tokio::task::JoinHandle<()>) {
    let samples: Samples = Arc::default();
    let (jobs_of, metrics_url, serve_pid) = match timeline {
        Some((store, addr, pid)) => (
            Some(store),
            Some(format!("http://{addr}/metrics")),
            Some(pid.to_string()),
        ),
        None => (None, None, None),
    };
    let http = reqwest::Client::new();
    let task = {
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                let at = started.elapsed().as_secs_f64();
                // Read with the timestamp: the scrape below can take 0.4 s during a burst.
                let cpu = serve_pid
                    .as_deref()
                    .and_then(|pid| Some([cpu_secs(pid)?, cpu_secs("self")?]));
                let requests = handles.iter().map(|h| h.stats().rest_requests).collect();
                let jobs = match &jobs_of {
                    Some(store) => store.job_counts_all().await.ok().map(|counts| {
                        let n = |s: JobState| {
                            counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n)
                        };
                        [
                            n(JobState::Queued),
                            n(JobState::Running),
                            n(JobState::Waiting),
                        ]
                    }),
                    None => None,
                };
                let served = match &metrics_url {
                    // A refused or failed scrape (`serve` at its connection limit) is no sample.
                    Some(url) => match http.get(url).send().await {
                        Ok(r) if r.status().is_success() => r.text().await.ok().map(|text| {
                            [
                                telemetry::metric_sum(&text, telemetry::names::EVENTS_RECEIVED),
                                telemetry::metric_sum(&text, telemetry::names::STRIPE_REQUESTS),
                                telemetry::metric_sum(
                                    &text,
                                    telemetry::names::STORE_WRITE_LOCK_HELD,
                                ),
                            ]
                        }),
                        _ => None,
                    },
                    None => None,
                };
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Sample {
                        at,
                        requests,
                        jobs,
                        served,
                        cpu,
                    });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    (samples, task)
}

/// The busy window of simulator `which` (`None`: all of them together): from the first sample
/// with a request to the first with the final count, in seconds since the start, and that count.
fn busy_window(samples: &[Sample], which: Option<usize>, elapsed: f64) -> (f64, f64, u64) {
    let count = |s: &Sample| match which {
        Some(i) => s.requests.get(i).copied().unwrap_or(0),
        None => s.total(),
    };
    let last = samples.last().map(count).unwrap_or(0);
    let first_at = samples
        .iter()
        .find(|s| count(s) > 0)
        .map(|s| s.at)
        .unwrap_or(0.0);
    let done_at = samples
        .iter()
        .find(|s| count(s) >= last)
        .map(|s| s.at)
        .unwrap_or(elapsed);
    (first_at, done_at, last)
}

/// NetSuite's requests second by second, with the jobs queued, running and waiting.
fn print_timeline(samples: &[Sample]) {
    for w in samples.chunks(10) {
        if let (Some(a), Some(b)) = (w.first(), w.last()) {
            let jobs = b.jobs.map_or(String::new(), |[q, r, wt]| {
                format!("  jobs queued {q:>5}, running {r:>3}, waiting {wt:>3}")
            });
            let mut scraped = w.iter().filter_map(|s| Some((s.at, s.served?)));
            let served = match (scraped.next(), scraped.next_back()) {
                (Some((ta, [wa, sa, la])), Some((tb, [wb, sb, lb]))) => format!(
                    "  webhooks {wb:>5} (+{:>4}), Stripe requests {sb:>5} (+{:>4}){}",
                    wb - wa,
                    sb - sa,
                    // Microseconds held per second of the interval, as a share of it.
                    if lb > 0.0 && tb > ta {
                        format!(", write lock {:>3.0}% held", (lb - la) / (tb - ta) / 1e4)
                    } else {
                        String::new()
                    }
                ),
                _ => String::new(),
            };
            // Of the two cores, in percent of one: how busy each process kept them.
            let cpu = match (a.cpu, b.cpu) {
                (Some([sa, ba]), Some([sb, bb])) if b.at > a.at => format!(
                    "  CPU serve {:>3.0}%, bench {:>3.0}%",
                    100.0 * (sb - sa) / (b.at - a.at),
                    100.0 * (bb - ba) / (b.at - a.at)
                ),
                _ => String::new(),
            };
            println!(
                "    t={:>5.1}s  NetSuite requests {:>6}  (+{:>3}){jobs}{served}{cpu}",
                b.at,
                b.total(),
                b.total() - a.total()
            );
        }
    }
}

pub async fn run(args: &PipelineArgs) -> anyhow::Result<()> {
    for db in fresh_databases(args.store, &args.database_url).await? {
        println!("store: {:?}", db.backend());
        run_on(args, db.url()).await?;
    }
    Ok(())
}

async fn run_on(args: &PipelineArgs, url: &str) -> anyhow::Result<()> {
    if args.connections > 1 {
        return run_many(args, url).await;
    }
    let dir = scratch_dir("ml-connector-bench-")?;
    let addr = free_addr()?;
    let opts = stack_options(args, url, dir.path());
    let sims = Sims::start(&opts, addr).await?;
    let (mut child, pid) = spawn_serve(&sims.env, addr).await?;
    let http = reqwest::Client::new();
    let store = connections::default_scoped(Store::connect(url).await?).await?;

    println!(
        "pipeline benchmark: {} customers, NetSuite limit {} × {} ms/request = {:.1} requests/s at most; worker concurrency {}, per-connection cap {}",
        args.customers,
        args.limit,
        args.latency_ms,
        args.limit as f64 * 1000.0 / args.latency_ms as f64,
        opts.worker_concurrency,
        match args.per_connection_cap {
            0 => "concurrency − 1".to_string(),
            n => n.to_string(),
        }
    );
    let customers_before = sims.netsuite.handle().count(RecordType::Customer);
    let started = Instant::now();
    // Sample NetSuite's request count to find the busy window (first to last request), from the
    // start: the connector posts while the scenario is still playing.
    let (samples, sampler) = sample_requests(
        vec![sims.netsuite.handle().clone()],
        args.timeline.then(|| (store.store().clone(), addr, pid)),
        started,
    );
    let report = run_scenario(
        &sims.stripe.base_url,
        sims.stripe.api_key_str(),
        ScenarioConfig {
            customers: args.customers,
            seed: args.seed,
            on_catalog: Some(catalog_hook(sims.netsuite.handle().clone(), true)),
            ..ScenarioConfig::default()
        },
    )
    .await?;
    let scenario_secs = started.elapsed().as_secs_f64();
    if !wait_idle(&sims.stripe.handle, &store, Duration::from_secs(1800)).await {
        anyhow::bail!("the connector did not settle within 30 minutes");
    }
    sampler.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let metrics_text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let peak = peak_rss_mib(pid);
    child.kill().await.ok();

    let stats = sims.netsuite.handle().stats();
    let invoices = netsuite_invoices(sims.netsuite.handle(), sims.items.fee).len();
    let payments = sims.netsuite.handle().count(RecordType::CustomerPayment);
    let customers = sims.netsuite.handle().count(RecordType::Customer);
    let counts = store.job_counts().await?;
    let handled: i64 = counts.iter().map(|(_, n)| n).sum();
    let failed = counts
        .iter()
        .find(|(s, _)| *s == JobState::Failed)
        .map(|(_, n)| *n)
        .unwrap_or(0);
    let retried: Vec<mlc_store::EventSummary> = store
        .list_events(&mlc_store::EventFilter {
            limit: 1000,
            ..mlc_store::EventFilter::default()
        })
        .await?
        .into_iter()
        .filter(|e| e.attempts > 1)
        .collect();
    let all_events = store
        .list_events(&mlc_store::EventFilter {
            limit: 1000,
            ..mlc_store::EventFilter::default()
        })
        .await?;
    let received_span = match (
        all_events.iter().map(|e| e.received_at).min(),
        all_events.iter().map(|e| e.received_at).max(),
    ) {
        (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
        _ => 0.0,
    };
    let stripe_requests = telemetry::metric_sum(&metrics_text, "mlc_stripe_api_requests_total");
    let ns_requests = telemetry::metric_sum(&metrics_text, "mlc_netsuite_api_requests_total");
    let limit_rps = args.limit as f64 * 1000.0 / args.latency_ms as f64;
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (first_at, done_at, _) = busy_window(&samples, None, elapsed);
    let busy = (done_at - first_at).max(0.1);
    let ns_rps = stats.rest_requests as f64 / busy;
    if args.timeline {
        print_timeline(&samples);
    }
    // Warm: what an invoice costs once its customer and items are linked: its own create; the
    // rest is one-off customer and item resolution (and one create per payment).
    let by = |k: &str| stats.by_endpoint.get(k).copied().unwrap_or(0);
    // Refunds: a credit memo and a customer refund each, after one read of the sale's invoice
    // (counted under `invoice` by the simulator, which does not tell reads from creates).
    let (memos, cash_refunds) = (by("creditMemo"), by("customerRefund"));
    let invoice_creates = by("invoice").saturating_sub(memos);
    let warm = invoice_creates as f64 / invoices.max(1) as f64;
    println!(
        "  scenario played in            {scenario_secs:.1} s; everything posted after {elapsed:.1} s"
    );
    println!(
        "  events acted on               {handled} ({failed} failed, {} needed a retry); attempts put off unstarted: {} (connection at its cap), {} (NetSuite account busy)",
        retried.len(),
        deferred(&metrics_text, "connection_cap"),
        deferred(&metrics_text, "account_busy")
    );
    println!(
        "  webhooks received over        {received_span:.1} s ({} events)",
        all_events.len()
    );
    if args.timeline {
        for e in retried.iter().take(10) {
            let audit = store.audit_for_event(&e.event_id).await?;
            for a in audit.iter().filter(|a| a.step == "retried") {
                println!("    retried {}: {}", e.event_id, a.message);
            }
        }
    }
    println!(
        "  NetSuite invoices / payments  {invoices} / {payments} ({customers} customers); Stripe had {} paid invoices + {} one-time charges",
        report.paid_invoices.len(),
        report.standalone_charges.len()
    );
    println!(
        "  invoices/s                    {:.2} ({:.2} over NetSuite's busy window of {busy:.1} s)",
        invoices as f64 / elapsed,
        invoices as f64 / busy
    );
    println!(
        "  NetSuite requests/s           {ns_rps:.1} of {limit_rps:.1} possible = {:.0}% (target ≥ 95%; 429s {})",
        100.0 * ns_rps / limit_rps,
        stats.rejected_concurrency
    );
    // The floor: the invoice and payment creates, and one request per new customer and item.
    let new_customers = customers.saturating_sub(customers_before);
    let items_linked = store.list_item_links().await?.len();
    let floor = by("invoice")
        + by("customerPayment")
        + memos
        + cash_refunds
        + (new_customers + items_linked) as u64;
    println!(
        "  NetSuite requests per invoice {:.2} overall: {invoice_creates} invoice + {} payment creates, {} customer requests, {} SuiteQL lookups (customer and item lookups made together share one); refunds: {memos} credit memos + {cash_refunds} customer refunds + {memos} reads of their sale",
        ns_requests / invoices.max(1) as f64,
        by("customerPayment"),
        by("customer"),
        by("suiteql")
    );
    println!(
        "  …floor                        {:.2} per invoice ({floor}: invoices, payments, refunds, {new_customers} new customers, {items_linked} items); overall is {:+.0}% (target ≤ +10%)",
        floor as f64 / invoices.max(1) as f64,
        100.0 * (ns_requests / floor.max(1) as f64 - 1.0)
    );
    println!(
        "  …once warm                    {warm:.2} per invoice + 1 per payment (target ≤ 1.2 + 1)"
    );
    println!(
        "  Stripe requests per event     {:.2} ({stripe_requests} requests, {handled} events; target 1)",
        stripe_requests / handled.max(1) as f64
    );
    match peak {
        Some(mib) => println!("  connector peak memory         {mib:.1} MiB (target < 100 MiB)"),
        None => println!("  connector peak memory         unknown (no /proc)"),
    }
    Ok(())
}

/// One company in a many-connection run: its Stripe and NetSuite simulators and its connection's
/// view of the store.
struct Company {
    name: String,
    stripe_base: String,
    stripe_key: String,
    stripe: mlc_stripe_sim::SimHandle,
    netsuite: mlc_netsuite_sim::SimHandle,
    fee_item: u64,
    store: ConnectionStore,
}

/// `--connections N`: N companies through one `serve`. Connection 1 is the configured default
/// (as in the single run); connections 2..N are tenants made by [`Stack::add_tenant`] on an
/// in-process connector that shares the database and the address, stopped before `serve` starts
/// (it seals their credentials under its master key, handed to `serve` as a key file).
async fn run_many(args: &PipelineArgs, url: &str) -> anyhow::Result<()> {
    let n = args.connections as usize;
    let dir = scratch_dir("ml-connector-bench-")?;
    let addr = free_addr()?;
    let opts = stack_options(args, url, dir.path());
    let setup = Instant::now();
    let sims = Sims::start(&opts, addr).await?;
    let names: Vec<String> = (1..n).map(|i| format!("bench-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (tenants, env) = tenants_for_child(&sims, &opts, dir.path(), addr, &names).await?;
    let (mut child, pid) = spawn_serve(&env, addr).await?;
    let store = Store::connect(url).await?;
    let mut companies = vec![Company {
        name: "default".into(),
        stripe_base: sims.stripe.base_url.clone(),
        stripe_key: sims.stripe.api_key_str().to_string(),
        stripe: sims.stripe.handle.clone(),
        netsuite: sims.netsuite.handle().clone(),
        fee_item: sims.items.fee,
        store: connections::default_scoped(store.clone()).await?,
    }];
    for (i, t) in tenants.iter().enumerate() {
        let stripe = t.stripe.as_ref().context("the tenant's own Stripe")?;
        companies.push(Company {
            name: format!("bench-{:02}", i + 1),
            stripe_base: stripe.base_url.clone(),
            stripe_key: stripe.api_key_str().to_string(),
            stripe: t.stripe_handle.clone(),
            netsuite: t.netsuite.handle().clone(),
            fee_item: t.items.fee,
            store: store.scoped(t.store.scope()),
        });
    }
    let limit_rps = args.limit as f64 * 1000.0 / args.latency_ms as f64;
    let ideal = n as f64 * limit_rps;
    println!(
        "pipeline benchmark, {n} connections through one serve (worker concurrency {}, per-connection cap {}): {} customers each, each its own Stripe account and NetSuite account limited to {} × {} ms/request = {limit_rps:.1} requests/s, {ideal:.1} requests/s at most in all; set up in {:.1} s (not counted)",
        opts.worker_concurrency,
        match args.per_connection_cap {
            0 => "concurrency − 1".to_string(),
            n => n.to_string(),
        },
        args.customers,
        args.limit,
        args.latency_ms,
        setup.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let (samples, sampler) = sample_requests(
        companies.iter().map(|c| c.netsuite.clone()).collect(),
        args.timeline.then(|| (store.clone(), addr, pid)),
        started,
    );
    let reports = futures::future::try_join_all(companies.iter().enumerate().map(|(i, c)| {
        run_scenario(
            &c.stripe_base,
            &c.stripe_key,
            ScenarioConfig {
                customers: args.customers,
                seed: args.seed + i as u64,
                on_catalog: Some(catalog_hook_for(vec![c.netsuite.clone()], true)),
                ..ScenarioConfig::default()
            },
        )
    }))
    .await?;
    let scenario_secs = started.elapsed().as_secs_f64();
    for c in &companies {
        if !wait_idle(&c.stripe, &c.store, Duration::from_secs(1800)).await {
            anyhow::bail!("connection {} did not settle within 30 minutes", c.name);
        }
    }
    sampler.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib(pid);
    let metrics_text = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    child.kill().await.ok();

    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if args.timeline {
        print_timeline(&samples);
    }
    let (mut invoices, mut expected, mut warm_creates, mut rejected) = (0, 0, 0, 0);
    let (mut failed, mut handled) = (0, 0);
    let mut per_rps: Vec<f64> = Vec::new();
    for (i, (c, report)) in companies.iter().zip(&reports).enumerate() {
        let stats = c.netsuite.stats();
        let posted = netsuite_invoices(&c.netsuite, c.fee_item).len();
        invoices += posted;
        expected += report.paid_invoices.len() + report.standalone_charges.len();
        warm_creates += stats.by_endpoint.get("invoice").copied().unwrap_or(0);
        rejected += stats.rejected_concurrency;
        let counts = c.store.job_counts().await?;
        handled += counts.iter().map(|(_, n)| n).sum::<i64>();
        failed += counts
            .iter()
            .find(|(s, _)| *s == JobState::Failed)
            .map_or(0, |(_, n)| *n);
        let (first, done, count) = busy_window(&samples, Some(i), elapsed);
        let rps = count as f64 / (done - first).max(0.1);
        per_rps.push(rps);
        if args.timeline {
            println!(
                "    {:<10} {posted:>4} invoices, {count:>5} NetSuite requests over {:>5.1} s ({:.1}–{:.1} s) = {rps:.1}/s",
                c.name,
                done - first,
                first,
                done
            );
        }
    }
    let (first_at, done_at, total) = busy_window(&samples, None, elapsed);
    let busy = (done_at - first_at).max(0.1);
    let rps = total as f64 / busy;
    // The companies' scenarios differ in size, so even accounts kept at their limit from the
    // first request finish apart: the busiest sets the window, and the others idle in it.
    let best_busy = (0..companies.len())
        .map(|i| busy_window(&samples, Some(i), elapsed).2 as f64 / limit_rps)
        .fold(0.1, f64::max);
    let best_rps = total as f64 / best_busy;
    per_rps.sort_by(f64::total_cmp);
    println!(
        "  scenarios played in           {scenario_secs:.1} s; everything posted after {elapsed:.1} s"
    );
    println!(
        "  events acted on               {handled} ({failed} failed); attempts put off unstarted: {} (connection at its cap), {} (NetSuite account busy)",
        deferred(&metrics_text, "connection_cap"),
        deferred(&metrics_text, "account_busy")
    );
    println!(
        "  NetSuite invoices             {invoices} of {expected} Stripe paid invoices + one-time charges"
    );
    println!(
        "  NetSuite requests/s, all      {rps:.1} of {ideal:.1} possible ({n} × {}×1000/{}) = {:.0}% (target ≥ 95%; {total} requests over the busy window {first_at:.1}–{done_at:.1} s; 429s {rejected})",
        args.limit,
        args.latency_ms,
        100.0 * rps / ideal
    );
    println!(
        "  …the most this work allows    {:.0}% (every account at its limit from the first request: the largest scenario, {best_busy:.1} s, sets the window); reached {:.0}% of that",
        100.0 * best_rps / ideal,
        100.0 * rps / best_rps
    );
    println!(
        "  …per connection              {:.1} to {:.1} requests/s (median {:.1}) of {limit_rps:.1}, each over its own busy window",
        per_rps.first().copied().unwrap_or_default(),
        per_rps.last().copied().unwrap_or_default(),
        per_rps.get(per_rps.len() / 2).copied().unwrap_or_default()
    );
    println!(
        "  NetSuite requests per invoice {:.2} overall; once warm {:.2} per invoice + 1 per payment",
        total as f64 / invoices.max(1) as f64,
        warm_creates as f64 / invoices.max(1) as f64
    );
    match peak {
        Some(mib) => println!("  connector peak memory         {mib:.1} MiB"),
        None => println!("  connector peak memory         unknown (no /proc)"),
    }
    Ok(())
}
