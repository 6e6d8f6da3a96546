//! `ml-connector events list|show`.

use clap::Subcommand;

use super::text::{safe, safe_json};
use crate::console::filter::EventsQuery;
use mlc_service::console::Console;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List events, newest first.
    List {
        /// Job state: queued, running, waiting, succeeded, failed, or ignored.
        #[arg(long)]
        status: Option<String>,
        /// Event type, e.g. invoice.paid.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Event or object ID (evt_…, in_…, ch_…).
        #[arg(long)]
        stripe_id: Option<String>,
        /// Internal or external ID of a NetSuite record the connector posted.
        #[arg(long)]
        netsuite_id: Option<String>,
        /// Received at or after: YYYY-MM-DD (in admin.time_zone) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Received before: YYYY-MM-DD or an RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one event: envelope, job, the Stripe object fetched, what was sent to NetSuite and
    /// its answer, the records posted, the audit trail and the raw body.
    Show {
        event_id: String,
        /// Print JSON (the event page's document).
        #[arg(long)]
        json: bool,
    },
}

/// `2026-11-27 09:04:53 UTC` from unix milliseconds.
pub fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

pub async fn run(cmd: &EventsCommand, console: &Console) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::List {
            status,
            event_type,
            stripe_id,
            netsuite_id,
            since,
            until,
            limit,
            json,
        } => {
            let query = EventsQuery {
                status: status.clone(),
                event_type: event_type.clone(),
                stripe_id: stripe_id.clone(),
                netsuite_id: netsuite_id.clone(),
                since: since.clone(),
                until: until.clone(),
                limit: Some(*limit),
                offset: None,
            };
            let filter = query
                .to_filter(&console.time_zone)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let rows = console
                .events(&filter)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if *json {
                println!("{}", safe_json(serde_json::to_string_pretty(&rows)?));
                return Ok(());
            }
            if rows.is_empty() {
                println!("no events match");
                return Ok(());
            }
            println!(
                "{:<32} {:<30} {:<24} {:<10} {:>8}  LAST ERROR",
                "EVENT", "TYPE", "RECEIVED", "STATUS", "ATTEMPTS"
            );
            for r in rows {
                println!(
                    "{:<32} {:<30} {:<24} {:<10} {:>8}  {}",
                    safe(&r.event_id),
                    safe(&r.event_type),
                    console.format_time(r.received_at),
                    r.status,
                    r.attempts,
                    safe(r.last_error.as_deref().unwrap_or_default())
                );
            }
            Ok(())
        }
        EventsCommand::Show { event_id, json } => {
            let d = console
                .event(event_id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if *json {
                println!("{}", safe_json(serde_json::to_string_pretty(&d)?));
                return Ok(());
            }
            println!("Event     {}", safe(&d.event_id));
            println!("Type      {}", safe(&d.event_type));
            println!("Object    {}", safe(d.object_id.as_deref().unwrap_or("-")));
            if let Some(a) = &d.amount {
                println!("Amount    {} (as sent)", a.display);
            }
            println!(
                "Received  {} ({} deliveries)",
                console.format_time(d.received_at),
                d.deliveries
            );
            println!("Livemode  {}", d.livemode);
            match &d.job {
                Some(j) => println!(
                    "Job       {} {} (attempt {}/{}){}",
                    j.id,
                    j.state,
                    j.attempts,
                    j.max_attempts,
                    j.last_error
                        .as_deref()
                        .map(|e| format!(", last error: {}", safe(e)))
                        .unwrap_or_default()
                ),
                None => println!("Job       none (event type not handled: recorded as ignored)"),
            }
            if !d.postings.is_empty() {
                println!("\nNetSuite records:");
                for p in &d.postings {
                    println!(
                        "  {:<12} {} {} ({}) {}",
                        safe(&p.posting.kind),
                        safe(&p.posting.netsuite_record_type),
                        safe(&p.posting.netsuite_internal_id),
                        safe(&p.posting.external_id),
                        p.amount.as_ref().map(|a| a.display.as_str()).unwrap_or("")
                    );
                }
            }
            println!("\nAudit trail:");
            for a in &d.audit {
                println!(
                    "  {}  {:<20} {}",
                    console.format_time(a.at),
                    safe(&a.step),
                    safe(&a.message)
                );
            }
            let sections = [
                ("Stripe object as fetched", &d.stripe_object),
                ("Sent to NetSuite", &d.netsuite_request),
                ("NetSuite's answer", &d.netsuite_response),
            ];
            for (title, value) in sections {
                if let Some(v) = value {
                    println!(
                        "\n{title}:\n{}",
                        safe_json(serde_json::to_string_pretty(v)?)
                    );
                }
            }
            if d.raw_event.is_null() {
                // Stored before intake refused what the console cannot parse: the bytes as
                // received (lossy where not UTF-8), escaped, rather than `null`.
                let raw = console
                    .store
                    .get_event(event_id)
                    .await?
                    .map(|e| e.raw_body)
                    .unwrap_or_default();
                println!(
                    "\nRaw body (not parseable as JSON, {} bytes, shown as received):\n{}",
                    raw.len(),
                    safe(&String::from_utf8_lossy(&raw))
                );
            } else {
                println!(
                    "\nRaw body:\n{}",
                    safe_json(serde_json::to_string_pretty(&d.raw_event)?)
                );
            }
            Ok(())
        }
    }
}
