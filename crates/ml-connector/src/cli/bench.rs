//! `ml-connector bench intake`: signed webhooks over loopback against an in-process server.
//!
//! It prints figures, never asserts them: timing depends on the machine (see BENCHMARKS.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Sources};
use crate::startup::App;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchStore {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Args)]
pub struct IntakeArgs {
    /// Number of webhooks to send.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, value_enum, default_value_t = BenchStore::Both)]
    pub store: BenchStore,
    /// PostgreSQL URL for the postgres run (default: TEST_DATABASE_URL, else the local server).
    #[arg(long)]
    pub postgres_url: Option<String>,
}

/// One run's figures.
#[derive(Debug)]
pub struct IntakeFigures {
    pub store: &'static str,
    pub events: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl IntakeFigures {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

const SECRET: &str = "whsec_bench_secret";

pub async fn intake(args: &IntakeArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut runs: Vec<(&'static str, String)> = Vec::new();
    if matches!(args.store, BenchStore::Sqlite | BenchStore::Both) {
        runs.push((
            "sqlite",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ));
    }
    if matches!(args.store, BenchStore::Postgres | BenchStore::Both) {
        let url = args
            .postgres_url
            .clone()
            .or_else(|| std::env::var("TEST_DATABASE_URL").ok())
            .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_string());
        runs.push(("postgres", url));
    }
    println!(
        "intake benchmark: {} signed webhooks, {} connections, {} cores",
        args.events,
        args.concurrency,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for (name, url) in runs {
        let f = run_intake(name, &url, args.events, args.concurrency).await?;
        println!(
            "{:<9} {:>7} events in {:>6.2} s = {:>7.0} events/s (target 2000: {:.2}x)  p50 {:>6.2} ms  p99 {:>6.2} ms (target 25: {:.2}x)  max {:>7.2} ms  errors {}",
            f.store,
            f.events,
            f.elapsed.as_secs_f64(),
            f.per_second(),
            f.per_second() / 2000.0,
            ms(f.p50),
            ms(f.p99),
            ms(f.p99) / 25.0,
            ms(f.max),
            f.errors
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts an app on `database_url`, sends `events` signed webhooks with `concurrency` connections.
pub async fn run_intake(
    store: &'static str,
    database_url: &str,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<IntakeFigures> {
    let env = vec![
        ("MLC__DATABASE__URL".to_string(), database_url.to_string()),
        (
            "MLC__STRIPE__WEBHOOK_SECRETS".to_string(),
            SECRET.to_string(),
        ),
    ];
    let (config, _) = crate::config::load(&Sources { file: None, env })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = App::build(config_without_worker(config), listener)
        .await?
        .without_worker();
    let url = format!("http://{}/webhooks/stripe", app.addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url, run_id) =
            (client.clone(), next.clone(), url.clone(), run_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    break;
                }
                let body = serde_json::json!({
                    "id": format!("evt_bench_{run_id}_{i}"),
                    "object": "event",
                    "api_version": "2026-07-29.dahlia",
                    "created": 1_764_000_000 + i as i64,
                    "livemode": false,
                    "type": "charge.succeeded",
                    "data": {"object": {"id": format!("ch_bench_{i}"), "object": "charge", "amount": 2000, "currency": "usd"}}
                })
                .to_string();
                let t = mlc_core::now_millis() / 1000;
                let header = mlc_stripe::webhook::signature_header(&[SECRET], t, body.as_bytes());
                let sent = Instant::now();
                let ok = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("stripe-signature", header)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                latencies.push(sent.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::with_capacity(events);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    server.await??;
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Ok(IntakeFigures {
        store,
        events,
        errors,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        max: all.last().copied().unwrap_or_default(),
    })
}

fn config_without_worker(mut config: Config) -> Config {
    config.log.level = "warn".into();
    config
}
