//! Measures `record_event` throughput and latency at a fixed concurrency, durably.
//!
//! `cargo run -p mlc-store --example intake_bench [--release] -- [URL] [EVENTS] [CONCURRENCY]`
//! With no URL, a fresh SQLite file in a temporary directory (on the same disk as /tmp).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mlc_core::now_millis;
use mlc_store::{NewEvent, NewJob, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir()?;
    let url = match args.first() {
        Some(u) if u != "-" => u.clone(),
        _ => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let total: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let store = mlc_store::testing::connection(&Store::connect(&url).await?, "bench", "main").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    // A realistic ~3 KB Stripe event body.
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(3_000)).into_bytes();

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (store, next, body, run) = (store.clone(), next.clone(), body.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let id = format!("evt_{run}_{i}");
                let ev = NewEvent {
                    event_id: id.clone(),
                    event_type: "invoice.paid".into(),
                    object_id: Some(format!("in_{i}")),
                    livemode: false,
                    api_version: Some("2025-03-31.basil".into()),
                    stripe_created: 1_700_000_000,
                    raw_body: body.clone(),
                    signature_header: "t=1,v1=00".into(),
                    received_at: now_millis(),
                    handled: true,
                };
                let job = NewJob {
                    kind: "process_event".into(),
                    event_id: Some(id.clone()),
                    payload: serde_json::json!({ "event_id": id }),
                    dedupe_key: format!("process_event:{id}"),
                    max_attempts: 10,
                    run_at: now_millis(),
                };
                let t = Instant::now();
                store.record_event(&ev, Some(job)).await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "{:?}: {total} events at concurrency {concurrency}: {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        store.store().backend(),
        total as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    store.store().close().await;
    Ok(())
}
