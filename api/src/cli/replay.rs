//! `ml-connector replay`: run events through the whole pipeline again, once the cause of a
//! failure is fixed. Safe to repeat: an event that already posted changes nothing in NetSuite
//! (its documents carry external IDs and the store remembers what was posted).

use anyhow::Context;
use clap::Args;
use mlc_service::console::Console;

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

pub async fn run(args: &ReplayArgs, console: &Console) -> anyhow::Result<()> {
    if args.event_ids.is_empty() && args.status.is_none() {
        anyhow::bail!("name events to replay (evt_…) or give --status failed");
    }
    let mut replayed = 0u64;
    for r in console
        .replay(&args.event_ids)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        println!("{}: {}", r.event_id, r.detail);
        replayed += u64::from(r.outcome == "queued");
    }
    if let Some(status) = &args.status {
        let since = args.since.as_deref().map(parse_since).transpose()?;
        let n = console
            .replay_state(status, since)
            .await
            .map_err(|e| anyhow::anyhow!("--status: {e}"))?;
        println!("{n} {status} event(s) queued for replay");
        replayed += n;
    }
    println!(
        "{replayed} replay(s) queued; a running `serve` picks them up within its poll interval"
    );
    Ok(())
}
