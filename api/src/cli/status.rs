//! `ml-connector status`: the dashboard's overview in a terminal: counts by state, the last 24
//! hours, and the health of both sides as the store records it.

use clap::Args;

use super::text::{safe, safe_json};
use mlc_service::console::Console;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (the overview: counts, activity and health).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: &StatusArgs, console: &Console) -> anyhow::Result<()> {
    let o = console.overview().await?;
    if args.json {
        println!("{}", safe_json(serde_json::to_string_pretty(&o)?));
        return Ok(());
    }
    let c = &o.counts;
    let h = &o.health;
    println!(
        "Status: {}",
        if h.status == "ok" {
            "all good"
        } else {
            "needs attention"
        }
    );
    // Accept-only jobs succeeded without sending anything to NetSuite: not "posted".
    println!(
        "  Posted to NetSuite     {}",
        c.succeeded.saturating_sub(c.accepted_only)
    );
    if c.accepted_only > 0 {
        println!(
            "  Stored, not posted     {}   (posting was not configured: set stripe.api_key and netsuite.account_id)",
            c.accepted_only
        );
    }
    println!(
        "  Waiting for a person   {}   (ml-connector mappings unmapped)",
        c.waiting
    );
    println!(
        "  Failed                 {}   (ml-connector events list --status failed)",
        c.failed
    );
    println!("  In the queue           {}", c.queued + c.running);
    println!("  Stripe events stored   {}", c.events);
    let received: i64 = o.activity.iter().map(|b| b.received).sum();
    let posted: i64 = o.activity.iter().map(|b| b.posted).sum();
    println!("Last 24 hours: {received} events received, {posted} NetSuite records posted");
    let when = |t: Option<i64>| {
        t.map(|t| console.format_time(t))
            .unwrap_or_else(|| "never".into())
    };
    println!(
        "Stripe:   last event {}; last error: {}",
        when(h.stripe.last_event_received_at),
        h.stripe
            .last_error
            .as_ref()
            .map(|e| format!("{} ({})", safe(&e.message), console.format_time(e.at)))
            .unwrap_or_else(|| "none".into())
    );
    println!(
        "NetSuite: last error: {}",
        h.netsuite
            .last_error
            .as_ref()
            .map(|e| format!("{} ({})", safe(&e.message), console.format_time(e.at)))
            .unwrap_or_else(|| "none".into())
    );
    println!(
        "          the access token's age is known to the running service only: the dashboard or GraphQL `health` show it"
    );
    println!(
        "Queue:    {} due or running; oldest due job waiting {}",
        h.queue_depth,
        h.oldest_queued_age_ms
            .map(|ms| format!("{} s", ms / 1000))
            .unwrap_or_else(|| "—".into())
    );
    Ok(())
}
