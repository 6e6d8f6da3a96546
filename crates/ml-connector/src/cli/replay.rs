//! `ml-connector replay`: run events through the whole pipeline again, once the cause of a
//! failure is fixed. Safe to repeat: an event that already posted changes nothing in NetSuite
//! (its documents carry external IDs and the store remembers what was posted).

use anyhow::Context;
use clap::Args;
use mlc_store::{JobState, Store};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Event IDs to replay (evt_…).
    pub event_ids: Vec<String>,
    /// Replay every event whose job is in this state: failed, waiting, or succeeded (safe: what
    /// already posted is not posted again).
    #[arg(long)]
    pub status: Option<String>,
    /// With --status: only jobs last updated at or after this date (YYYY-MM-DD, UTC) or
    /// RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
}

/// Unix milliseconds from `2026-11-01` or `2026-11-01T12:00:00Z`.
pub fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let date: jiff::civil::Date = s
        .parse()
        .with_context(|| format!("--since `{s}`: expected YYYY-MM-DD or an RFC 3339 time"))?;
    let zoned = date
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .with_context(|| format!("--since `{s}`"))?;
    Ok(zoned.timestamp().as_millisecond())
}

pub async fn run(args: &ReplayArgs, store: &Store) -> anyhow::Result<()> {
    if args.event_ids.is_empty() && args.status.is_none() {
        anyhow::bail!("name events to replay (evt_…) or give --status failed");
    }
    let mut replayed = 0u64;
    for id in &args.event_ids {
        if store.get_event(id).await?.is_none() {
            println!("{id}: no such event is stored");
            continue;
        }
        if store.requeue_event(id).await? {
            println!("{id}: queued for replay");
            replayed += 1;
        } else {
            let state = store
                .get_job_for_event(id)
                .await?
                .map(|j| j.state.to_string())
                .unwrap_or_else(|| "ignored (no job)".into());
            println!("{id}: not replayed ({state})");
        }
    }
    if let Some(status) = &args.status {
        let state = JobState::parse(status)
            .filter(|s| {
                matches!(
                    s,
                    JobState::Failed | JobState::Waiting | JobState::Succeeded
                )
            })
            .with_context(|| format!("--status `{status}`: use failed, waiting or succeeded"))?;
        let since = args.since.as_deref().map(parse_since).transpose()?;
        let n = store.requeue_where(state, since).await?;
        println!("{n} {status} event(s) queued for replay");
        replayed += n;
    }
    println!(
        "{replayed} replay(s) queued; a running `serve` picks them up within its poll interval"
    );
    Ok(())
}
