//! `ml-connector bench pipeline`: the scenario through a NetSuite simulator governed like a
//! Standard account (5 concurrent requests, 200 ms each: at most 25 requests/s), with the
//! connector as a separate process so its memory is its own.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use mlc_netsuite_sim::RecordType;
use mlc_store::{JobState, Store};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};

use mlc_service::connections;

use crate::stack::{
    Sims, StackOptions, catalog_hook, netsuite_invoices, scratch_dir, sqlite_url, wait_idle,
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
    /// Worker concurrency of the connector.
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Client-side Stripe request rate (a live account's default).
    #[arg(long, default_value_t = 80)]
    pub stripe_rate: u32,
    /// Print NetSuite's request count second by second.
    #[arg(long)]
    pub timeline: bool,
}

/// A counter's value from Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Peak resident memory of a process, in MiB (Linux `VmHWM`).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn run(args: &PipelineArgs) -> anyhow::Result<()> {
    let dir = scratch_dir("ml-connector-bench-")?;
    let url = sqlite_url(dir.path(), "bench.db");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let mut opts = StackOptions::new(url.clone(), dir.path());
    opts.netsuite_latency = Duration::from_millis(args.latency_ms);
    opts.netsuite_concurrency_limit = args.limit;
    opts.netsuite_concurrency = args.limit;
    opts.worker_concurrency = args.workers;
    // The simulator's key is a test key (20 requests/s by default); a production account
    // allows 100/s, which the client's live default (80/s) stays under.
    opts.extra_env.push((
        "MLC__STRIPE__RATE_LIMIT_PER_SEC".into(),
        args.stripe_rate.to_string(),
    ));
    let sims = Sims::start(&opts, addr).await?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .envs(sims.env.iter().cloned())
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
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = connections::default_scoped(Store::connect(&url).await?).await?;

    println!(
        "pipeline benchmark: {} customers, NetSuite limit {} × {} ms/request = {:.1} requests/s at most",
        args.customers,
        args.limit,
        args.latency_ms,
        args.limit as f64 * 1000.0 / args.latency_ms as f64
    );
    let customers_before = sims.netsuite.handle().count(RecordType::Customer);
    let started = Instant::now();
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
    // Sample NetSuite's request count to find the busy window (first to last request).
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, u64)>::new()));
    let sampler = {
        let handle = sims.netsuite.handle().clone();
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                let point = (
                    started.elapsed().as_secs_f64(),
                    handle.stats().rest_requests,
                );
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(point);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
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
    let stripe_requests = metric(&metrics_text, "mlc_stripe_api_requests_total");
    let ns_requests = metric(&metrics_text, "mlc_netsuite_api_requests_total");
    let limit_rps = args.limit as f64 * 1000.0 / args.latency_ms as f64;
    let samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let last = samples.last().map(|s| s.1).unwrap_or(0);
    let first_at = samples.iter().find(|s| s.1 > 0).map(|s| s.0).unwrap_or(0.0);
    let done_at = samples
        .iter()
        .find(|s| s.1 >= last)
        .map(|s| s.0)
        .unwrap_or(elapsed);
    let busy = (done_at - first_at).max(0.1);
    let ns_rps = stats.rest_requests as f64 / busy;
    if args.timeline {
        for w in samples.chunks(10) {
            if let (Some(a), Some(b)) = (w.first(), w.last()) {
                println!(
                    "    t={:>5.1}s  NetSuite requests {:>5}  (+{})",
                    b.0,
                    b.1,
                    b.1 - a.1
                );
            }
        }
    }
    // Warm: what an invoice costs once its customer and items are linked: its own create; the
    // rest is one-off customer and item resolution (and one create per payment).
    let by = |k: &str| stats.by_endpoint.get(k).copied().unwrap_or(0);
    let warm = by("invoice") as f64 / invoices.max(1) as f64;
    println!(
        "  scenario played in            {scenario_secs:.1} s; everything posted after {elapsed:.1} s"
    );
    println!(
        "  events acted on               {handled} ({failed} failed, {} needed a retry)",
        retried.len()
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
        "  NetSuite requests/s           {ns_rps:.1} of {limit_rps:.1} possible = {:.0}% (target ≥ 90%; 429s {})",
        100.0 * ns_rps / limit_rps,
        stats.rejected_concurrency
    );
    // The floor: the invoice and payment creates, and one request per new customer and item.
    let new_customers = customers.saturating_sub(customers_before);
    let items_linked = store.list_item_links().await?.len();
    let floor = by("invoice") + by("customerPayment") + (new_customers + items_linked) as u64;
    println!(
        "  NetSuite requests per invoice {:.2} overall: {} invoice + {} payment creates, {} customer requests, {} SuiteQL lookups (customer and item lookups made together share one)",
        ns_requests / invoices.max(1) as f64,
        by("invoice"),
        by("customerPayment"),
        by("customer"),
        by("suiteql")
    );
    println!(
        "  …floor                        {:.2} per invoice ({floor}: invoices, payments, {new_customers} new customers, {items_linked} items); overall is {:+.0}% (target ≤ +10%)",
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
