//! `ml-connector bench fairness`: how long a small connection's jobs take while another
//! connection floods the queue, against the same small load alone.
//!
//! Connection A records a flood of events at once (group-committed, as a burst of webhooks is);
//! once they are queued, connection B enqueues its jobs one at a time, spread over the run. The
//! real [`mlc_jobs::Worker`] runs them all with a handler that sleeps a fixed latency (a model of
//! a NetSuite request). B's latency is each job's `updated_at − created_at` in the store: from
//! its enqueue to its success being written. The same B load then runs on a fresh store with no
//! flood, and the benchmark prints both and their ratio. Each intake nudges the worker as `serve`'s
//! does. It prints figures, never asserts them (BENCHMARKS.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use mlc_core::now_millis;
use mlc_jobs::{JobHandler, Worker};
use mlc_store::testing::TestDb;
use mlc_store::{Job, JobOutcome, JobState, NewJob};
use tokio_util::sync::CancellationToken;

use crate::cli::bench::BenchStore;
use crate::cli::bench_queue::{
    FixedHandler, count_all, fresh_databases, record_many, worker_config,
};

#[derive(Debug, Args)]
pub struct FairnessArgs {
    /// Jobs connection A floods the queue with.
    #[arg(long, default_value_t = 5_000)]
    pub flood: usize,
    /// Jobs connection B sends, one at a time.
    #[arg(long, default_value_t = 50)]
    pub small: usize,
    /// B sends one job every this many milliseconds.
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
    /// What each job takes in the handler (a model of one NetSuite request).
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Worker concurrency.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Jobs of one connection in flight at once (the service's default: concurrency − 1).
    #[arg(long, default_value_t = 3)]
    pub per_connection_cap: usize,
    /// The worker's idle poll interval (the service's default is 500 ms).
    #[arg(long, default_value_t = 500)]
    pub poll_interval_ms: u64,
    #[arg(long, value_enum, default_value_t = BenchStore::Sqlite)]
    pub store: BenchStore,
    /// PostgreSQL server; a fresh database is created on it and dropped afterwards (default:
    /// TEST_DATABASE_URL, else postgres://root@127.0.0.1:5432/test).
    #[arg(long)]
    pub database_url: Option<String>,
}

/// Target: B's latency under A's flood within twice its latency alone.
const TARGET_RATIO: f64 = 2.0;

/// B's latencies and what A did meanwhile.
struct RunFigures {
    /// B's enqueue-to-succeeded times, in milliseconds, sorted.
    b_ms: Vec<i64>,
    /// Which of B's jobs (0-based, in sending order) took longest, and how long of that it
    /// waited before its handler started.
    slowest: usize,
    slowest_wait_ms: i64,
    /// A's jobs succeeded while B ran, and how many were still waiting when B's last finished.
    a_done: i64,
    a_left: i64,
    b_window: Duration,
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

pub async fn run(args: &FairnessArgs) -> anyhow::Result<()> {
    let cfg = worker_config(
        args.concurrency,
        args.per_connection_cap,
        args.poll_interval_ms,
    );
    println!(
        "fairness benchmark: A floods {} jobs, then B sends {} (one every {} ms) while A's backlog drains; handler {} ms per job; worker concurrency {}, per-connection cap {}, poll {} ms",
        args.flood,
        args.small,
        args.interval_ms,
        args.latency_ms,
        cfg.concurrency,
        cfg.per_connection_cap,
        cfg.poll_interval_ms
    );
    // One fresh database per run: B alone, then B under A's flood.
    let alone_dbs = fresh_databases(args.store, &args.database_url).await?;
    let flood_dbs = fresh_databases(args.store, &args.database_url).await?;
    for (alone_db, flood_db) in alone_dbs.iter().zip(&flood_dbs) {
        let label = format!("{:?}", alone_db.backend()).to_lowercase();
        let alone = run_once(alone_db, args, 0).await?;
        let flood = run_once(flood_db, args, args.flood).await?;
        let line = |name: &str, f: &RunFigures| {
            println!(
                "  {label}, {name:<15} B: p50 {:>4.0} ms  p90 {:>4.0} ms  p99 {:>4.0} ms  max {:>4.0} ms (job #{}, {} ms of it before its handler started)  ({} jobs over {:.1} s; A: {} done meanwhile, {} still queued at B's end)",
                percentile(&f.b_ms, 50.0),
                percentile(&f.b_ms, 90.0),
                percentile(&f.b_ms, 99.0),
                f.b_ms.last().copied().unwrap_or_default() as f64,
                f.slowest,
                f.slowest_wait_ms,
                f.b_ms.len(),
                f.b_window.as_secs_f64(),
                f.a_done,
                f.a_left
            );
        };
        line("alone", &alone);
        line("under A's flood", &flood);
        let r50 = percentile(&flood.b_ms, 50.0) / percentile(&alone.b_ms, 50.0).max(1.0);
        let r99 = percentile(&flood.b_ms, 99.0) / percentile(&alone.b_ms, 99.0).max(1.0);
        let verdict = |r: f64| if r <= TARGET_RATIO { "met" } else { "NOT met" };
        println!(
            "  {label}: under the flood / alone: p50 {r50:.2}x ({}), p99 {r99:.2}x ({}); target ≤ {TARGET_RATIO}x",
            verdict(r50),
            verdict(r99)
        );
        if flood.a_left == 0 {
            println!(
                "  {label}: note: A's backlog was gone before B finished; raise --flood for a flood that lasts"
            );
        }
    }
    Ok(())
}

/// One run on a fresh database: A floods `flood` jobs (none: B alone), then B sends its jobs.
async fn run_once(db: &TestDb, args: &FairnessArgs, flood: usize) -> anyhow::Result<RunFigures> {
    let store = db.store().await;
    let a = mlc_store::testing::connection(&store, "acme", "flood").await;
    let b = mlc_store::testing::connection(&store, "globex", "small").await;
    let started = Arc::new(Mutex::new(HashMap::new()));
    let worker = Worker::new(
        store.clone(),
        StartLog {
            inner: FixedHandler {
                latency: Duration::from_millis(args.latency_ms),
            },
            started: started.clone(),
        },
        worker_config(
            args.concurrency,
            args.per_connection_cap,
            args.poll_interval_ms,
        ),
    );
    let wake = worker.notifier();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    // The worker registers with apalis and takes its first look; B's first job should not pay
    // for the start in one run and not in the other.
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    // A's burst, with the worker running and woken by each delivery as `serve`'s intake does.
    if flood > 0 {
        let started = Instant::now();
        let w = wake.clone();
        record_many(&a, "flood", flood, move || w.notify_one()).await?;
        println!(
            "    A's {flood} events recorded in {:.1} s; {} queued when B starts",
            started.elapsed().as_secs_f64(),
            count_all(&store, JobState::Queued).await?
        );
    }
    let a_before = a_succeeded(&a).await?;

    // B: one job every interval, each enqueued on its own and the worker woken.
    let b_started = Instant::now();
    let mut ids = Vec::with_capacity(args.small);
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    for i in 0..args.small {
        tick.tick().await;
        let id = b
            .enqueue(NewJob {
                kind: "bench".into(),
                event_id: None,
                payload: serde_json::json!({}),
                dedupe_key: format!("b-{i}"),
                max_attempts: 3,
                run_at: now_millis(),
            })
            .await?
            .context("B's job was a duplicate")?;
        wake.notify_one();
        ids.push(id);
    }
    // Wait for B's last job (bounded).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = b
            .job_counts()
            .await?
            .into_iter()
            .find(|(s, _)| *s == JobState::Succeeded)
            .map_or(0, |(_, n)| n);
        if done >= args.small as i64 {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "B's jobs did not finish within 300 s ({done} of {})",
                args.small
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b_window = b_started.elapsed();
    let a_done = a_succeeded(&a).await? - a_before;
    let a_left = a
        .job_counts()
        .await?
        .into_iter()
        .filter(|(s, _)| matches!(s, JobState::Queued | JobState::Running))
        .map(|(_, n)| n)
        .sum();
    shutdown.cancel();
    handle.await.context("the worker panicked")??;

    let mut b_ms = Vec::with_capacity(ids.len());
    let mut b_wait_ms = Vec::with_capacity(ids.len());
    for id in &ids {
        let job = b.get_job(id).await?.context("B's job is gone")?;
        b_ms.push(job.updated_at - job.created_at);
        let handler_started = started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
            .unwrap_or(job.updated_at);
        b_wait_ms.push(handler_started - job.created_at);
    }
    let slowest = b_ms
        .iter()
        .enumerate()
        .max_by_key(|(_, ms)| **ms)
        .map_or(0, |(i, _)| i);
    let slowest_wait_ms = b_wait_ms.get(slowest).copied().unwrap_or_default();
    b_ms.sort_unstable();
    store.close().await;
    Ok(RunFigures {
        b_ms,
        slowest,
        slowest_wait_ms,
        a_done,
        a_left,
        b_window,
    })
}

async fn a_succeeded(a: &mlc_store::ConnectionStore) -> anyhow::Result<i64> {
    Ok(a.job_counts()
        .await?
        .into_iter()
        .find(|(s, _)| *s == JobState::Succeeded)
        .map_or(0, |(_, n)| n))
}

/// The benchmark's handler, noting when each job's handler started (its first attempt), so the
/// slowest job's time splits into waiting for the worker and running.
struct StartLog {
    inner: FixedHandler,
    started: Arc<Mutex<HashMap<String, i64>>>,
}

impl JobHandler for StartLog {
    fn handle(&self, job: Job) -> impl Future<Output = JobOutcome> + Send {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job.id.clone())
            .or_insert_with(now_millis);
        self.inner.handle(job)
    }
}
