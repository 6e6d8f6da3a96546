//! `ml-connector bench queue`: jobs per second through the job queue alone (apalis 1.0 and the
//! store's start/finish writes), with a handler that does nothing, on SQLite and PostgreSQL.
//!
//! N jobs are queued first (concurrently, through the intake's group-commit path), then the real
//! [`mlc_jobs::Worker`] starts and the clock runs until every job has succeeded. What is left is
//! the queue's own cost per job: apalis fetching and acknowledging the task, our `start` (running,
//! one more attempt) and `finish` (succeeded, an audit entry), each a write through the store's
//! group-commit writer. It prints figures, never asserts them (BENCHMARKS.md).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt as _;
use mlc_core::now_millis;
use mlc_jobs::{JobHandler, Worker, WorkerConfig};
use mlc_store::testing::TestDb;
use mlc_store::{ConnectionStore, Job, JobOutcome, JobState, NewEvent, NewJob, Store};
use tokio_util::sync::CancellationToken;

use crate::cli::bench::BenchStore;

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Jobs run on each store.
    #[arg(long, default_value_t = 5_000)]
    pub jobs: usize,
    #[arg(long, value_enum, default_value_t = BenchStore::Both)]
    pub store: BenchStore,
    /// Worker concurrency (the service's default is 4).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Connections (tenants) the jobs are spread over, round-robin. With one, the per-connection
    /// cap leaves slots idle by design (see `--per-connection-cap`).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Jobs of one connection in flight at once; 0: concurrency − 1, the service's default.
    #[arg(long, default_value_t = 0)]
    pub per_connection_cap: usize,
    /// The worker's idle poll interval (the service's default is 500 ms).
    #[arg(long, default_value_t = 500)]
    pub poll_interval_ms: u64,
    /// PostgreSQL server; a fresh database is created on it and dropped afterwards (default:
    /// TEST_DATABASE_URL, else postgres://root@127.0.0.1:5432/test).
    #[arg(long)]
    pub database_url: Option<String>,
}

/// The PostgreSQL server a benchmark creates its fresh databases on.
pub(crate) fn postgres_base(arg: &Option<String>) -> String {
    arg.clone()
        .or_else(|| std::env::var("TEST_DATABASE_URL").ok())
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_string())
}

/// The fresh databases of a run, in order: SQLite (a temporary file), then PostgreSQL.
pub(crate) async fn fresh_databases(
    which: BenchStore,
    postgres: &Option<String>,
) -> anyhow::Result<Vec<TestDb>> {
    let mut dbs = Vec::new();
    if matches!(which, BenchStore::Sqlite | BenchStore::Both) {
        dbs.push(TestDb::sqlite()?);
    }
    if matches!(which, BenchStore::Postgres | BenchStore::Both) {
        let base = postgres_base(postgres);
        dbs.push(
            TestDb::postgres(&base)
                .await
                .with_context(|| format!("cannot create a PostgreSQL database on {base}"))?,
        );
    }
    Ok(dbs)
}

/// A handler that succeeds at once, or after a fixed latency (a model of a NetSuite request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedHandler {
    pub(crate) latency: Duration,
}

impl JobHandler for FixedHandler {
    fn handle(&self, _job: Job) -> impl Future<Output = JobOutcome> + Send {
        let latency = self.latency;
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            JobOutcome::Succeeded
        }
    }
}

/// The worker configuration of a benchmark: the service's, with the given knobs.
pub(crate) fn worker_config(
    concurrency: usize,
    per_connection_cap: usize,
    poll_interval_ms: u64,
) -> WorkerConfig {
    WorkerConfig {
        concurrency: concurrency.max(1),
        per_connection_cap: match per_connection_cap {
            0 => concurrency.saturating_sub(1).max(1),
            n => n,
        },
        poll_interval_ms,
        heartbeat_ms: 5_000,
        shutdown_grace_ms: 10_000,
        ..WorkerConfig::default()
    }
}

/// A handled event with its job, as the intake records it (a small body; the handler never
/// reads it).
pub(crate) fn event_and_job(id: &str) -> (NewEvent, NewJob) {
    let now = now_millis();
    let event = NewEvent {
        event_id: id.to_string(),
        event_type: "invoice.paid".into(),
        object_id: Some(format!("in_{id}")),
        livemode: false,
        api_version: None,
        stripe_created: now / 1000,
        raw_body: format!(r#"{{"id":"{id}","type":"invoice.paid"}}"#).into_bytes(),
        signature_header: "t=0,v1=bench".into(),
        received_at: now,
        handled: true,
    };
    let job = NewJob {
        kind: "bench".into(),
        event_id: Some(id.to_string()),
        payload: serde_json::json!({}),
        dedupe_key: id.to_string(),
        max_attempts: 3,
        run_at: now,
    };
    (event, job)
}

/// Records `n` events with their jobs on `store` concurrently (group-committed, as webhooks
/// arriving together are), `prefix` making their IDs unique.
pub(crate) async fn record_many(
    store: &ConnectionStore,
    prefix: &str,
    n: usize,
    on_each: impl Fn() + Clone,
) -> anyhow::Result<()> {
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            let on_each = on_each.clone();
            async move {
                let (event, job) = event_and_job(&format!("evt_{prefix}_{i:06}"));
                let r = store.record_event(&event, Some(job)).await;
                on_each();
                r
            }
        })
        .buffer_unordered(256);
    while let Some(r) = results.next().await {
        r.context("recording an event")?;
    }
    Ok(())
}

/// Jobs in `state` across every tenant.
pub(crate) async fn count_all(store: &Store, state: JobState) -> anyhow::Result<i64> {
    Ok(store
        .job_counts_all()
        .await?
        .into_iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, n)| n))
}

pub async fn run(args: &QueueArgs) -> anyhow::Result<()> {
    let cfg = worker_config(
        args.concurrency,
        args.per_connection_cap,
        args.poll_interval_ms,
    );
    let connections = args.connections.max(1);
    println!(
        "queue benchmark: {} jobs over {connections} connection(s), a handler that succeeds at once, worker concurrency {}, per-connection cap {}, poll {} ms, {} cores",
        args.jobs,
        cfg.concurrency,
        cfg.per_connection_cap,
        cfg.poll_interval_ms,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for db in fresh_databases(args.store, &args.database_url).await? {
        let store = db.store().await;
        let label = format!("{:?}", db.backend()).to_lowercase();
        let mut scoped = Vec::new();
        for i in 0..connections {
            scoped.push(
                mlc_store::testing::connection(&store, &format!("bench-{i:03}"), "main").await,
            );
        }
        // Queue everything first: the figure is the worker's, not the intake's.
        let started = Instant::now();
        let per = args.jobs.div_ceil(connections);
        let mut remaining = args.jobs;
        let prefixes: Vec<String> = (0..scoped.len()).map(|i| format!("q{i}")).collect();
        let mut intake = Vec::new();
        for (s, prefix) in scoped.iter().zip(&prefixes) {
            let n = per.min(remaining);
            remaining -= n;
            intake.push(record_many(s, prefix, n, || {}));
        }
        for r in futures::future::join_all(intake).await {
            r?;
        }
        let queued = count_all(&store, JobState::Queued).await?;
        println!(
            "  {label}: {queued} jobs queued in {:.1} s (group-committed intake; not counted)",
            started.elapsed().as_secs_f64()
        );

        let shutdown = CancellationToken::new();
        let worker = Worker::new(
            store.clone(),
            FixedHandler {
                latency: Duration::ZERO,
            },
            cfg.clone(),
        );
        let started = Instant::now();
        let handle = tokio::spawn(worker.run(shutdown.clone()));
        let deadline = Duration::from_secs(600);
        let mut first_done: Option<Duration> = None;
        let mut done = 0;
        while started.elapsed() < deadline {
            done = count_all(&store, JobState::Succeeded).await?;
            if done > 0 && first_done.is_none() {
                first_done = Some(started.elapsed());
            }
            if done >= args.jobs as i64 {
                break;
            }
            // The count reads the whole queue: polled every 20 ms, it was in a third of
            // PostgreSQL's active samples with 20,000 queued. After the first job, poll every 1%
            // of the time so far (20–500 ms), which bounds both its cost and the clock's error.
            let pause = (started.elapsed() / 100)
                .clamp(Duration::from_millis(20), Duration::from_millis(500));
            tokio::time::sleep(if first_done.is_some() {
                pause
            } else {
                Duration::from_millis(20)
            })
            .await;
        }
        let elapsed = started.elapsed();
        shutdown.cancel();
        handle.await.context("the worker panicked")??;
        if done < args.jobs as i64 {
            println!(
                "  {label}: only {done} of {} jobs succeeded within {} s",
                args.jobs,
                deadline.as_secs()
            );
        } else {
            println!(
                "  {label}: {done} jobs succeeded in {:.2} s = {:.0} jobs/s (first after {:.0} ms)",
                elapsed.as_secs_f64(),
                done as f64 / elapsed.as_secs_f64().max(1e-9),
                first_done.unwrap_or_default().as_secs_f64() * 1000.0
            );
        }
        store.close().await;
    }
    Ok(())
}
