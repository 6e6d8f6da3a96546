//! `ml-connector events list|show`.

use anyhow::Context;
use clap::Subcommand;
use mlc_store::{EventFilter, Store};

use crate::config::Config;

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
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one event: envelope, raw body, job and audit trail.
    Show {
        event_id: String,
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

pub async fn run(cmd: &EventsCommand, store: &Store, _config: &Config) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::List {
            status,
            event_type,
            stripe_id,
            limit,
            json,
        } => {
            if let Some(s) = status
                && s != "ignored"
                && mlc_store::JobState::parse(s).is_none()
            {
                anyhow::bail!(
                    "unknown status `{s}`: use queued, running, waiting, succeeded, failed or ignored"
                );
            }
            let filter = EventFilter {
                status: status.clone(),
                event_type: event_type.clone(),
                stripe_id: stripe_id.clone(),
                limit: *limit,
                ..EventFilter::default()
            };
            let rows = store.list_events(&filter).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
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
                    r.event_id,
                    r.event_type,
                    format_time(r.received_at),
                    r.status,
                    r.attempts,
                    r.last_error.unwrap_or_default()
                );
            }
            Ok(())
        }
        EventsCommand::Show { event_id, json } => {
            let event = store
                .get_event(event_id)
                .await?
                .with_context(|| format!("no event {event_id} is stored"))?;
            let job = store.get_job_for_event(event_id).await?;
            let audit = store.audit_for_event(event_id).await?;
            let body: serde_json::Value =
                serde_json::from_slice(&event.raw_body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&event.raw_body).into())
                });
            if *json {
                let out =
                    serde_json::json!({"event": event, "body": body, "job": job, "audit": audit});
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            println!("Event     {}", event.event_id);
            println!("Type      {}", event.event_type);
            println!("Object    {}", event.object_id.as_deref().unwrap_or("-"));
            println!(
                "Received  {} ({} deliveries)",
                format_time(event.received_at),
                event.deliveries
            );
            println!("Livemode  {}", event.livemode);
            println!("API ver.  {}", event.api_version.as_deref().unwrap_or("-"));
            match &job {
                Some(j) => println!(
                    "Job       {} {} (attempt {}/{}){}",
                    j.id,
                    j.state,
                    j.attempts,
                    j.max_attempts,
                    j.last_error
                        .as_deref()
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                ),
                None => println!("Job       none (event type not handled: recorded as ignored)"),
            }
            println!("\nAudit trail:");
            for a in &audit {
                println!("  {}  {:<20} {}", format_time(a.at), a.step, a.message);
            }
            println!("\nRaw body:\n{}", serde_json::to_string_pretty(&body)?);
            Ok(())
        }
    }
}
