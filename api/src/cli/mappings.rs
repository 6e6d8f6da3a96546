//! `ml-connector mappings`: the links from Stripe products to NetSuite items the connector uses,
//! and the products it has seen without one. Parsing and printing only: the operations are
//! [`mlc_service::mappings`], shared with the console.

use clap::Subcommand;
use std::collections::BTreeMap;

use mlc_core::{Currency, Money};
use mlc_service::mappings;
use mlc_store::ConnectionStore;

use super::events::format_time;

#[derive(Debug, Subcommand)]
pub enum MappingsCommand {
    /// Product → item links in use (found in NetSuite or set by hand).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Map a Stripe product to a NetSuite item; invoices waiting for it post at once.
    Set {
        /// prod_…
        product: String,
        /// The NetSuite item's internal ID.
        item: String,
    },
    /// Forget a product's link (it is looked up in NetSuite again on next use).
    Remove { product: String },
    /// Stripe products seen without a NetSuite item, with the events waiting for them.
    Unmapped {
        #[arg(long)]
        json: bool,
    },
    /// Apply mappings from a CSV file with the header `stripe_product_id,netsuite_item_id`.
    Import {
        #[arg(long)]
        csv: std::path::PathBuf,
    },
    /// Print the mappings in use as CSV (the format `import` reads).
    Export {
        /// CSV is the only format; the flag is accepted for symmetry with `import --csv`.
        #[arg(long)]
        csv: bool,
    },
}

/// What `mappings unmapped` prints: each product without an item, its waiting events and their
/// amounts, and the fix.
pub async fn print_unmapped(store: &ConnectionStore, json: bool) -> anyhow::Result<()> {
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut texts = Vec::new();
    for (p, events) in mappings::unmapped_with_waiting(store).await? {
        let totals = mappings::waiting_totals(store, &events).await?;
        texts.push(format_totals(&totals));
        rows.push(serde_json::json!({
            "product": p.stripe_product_id,
            "name": p.name,
            "waiting_events": events,
            "waiting_total_minor": totals,
            "last_seen_on": p.last_object_id,
            "first_seen": format_time(p.first_seen),
        }));
    }
    if json {
        println!(
            "{}",
            super::text::safe_json(serde_json::to_string_pretty(&rows)?)
        );
    } else if rows.is_empty() {
        println!("every Stripe product seen so far has a NetSuite item");
    } else {
        println!(
            "Waiting amounts are the whole invoice or charge as it was when the event was sent."
        );
        for (r, total) in rows.iter().zip(texts) {
            println!(
                "{} ({}): {} event(s) waiting ({total}), last on {}; fix: `ml-connector mappings set {} <item id>`",
                super::text::safe(r["product"].as_str().unwrap_or_default()),
                super::text::safe(r["name"].as_str().unwrap_or("name unknown")),
                r["waiting_events"].as_array().map(Vec::len).unwrap_or(0),
                super::text::safe(r["last_seen_on"].as_str().unwrap_or_default()),
                super::text::safe(r["product"].as_str().unwrap_or_default()),
            );
        }
    }
    Ok(())
}

/// `12.34 USD + 500 JPY`.
fn format_totals(totals: &BTreeMap<String, i64>) -> String {
    if totals.is_empty() {
        return "no amount".into();
    }
    totals
        .iter()
        .map(|(code, minor)| match Currency::parse(code) {
            Ok(c) => Money::new(*minor, c).to_string(),
            Err(_) => format!("{minor} (minor units) {code}"),
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

pub async fn run(cmd: &MappingsCommand, store: &ConnectionStore) -> anyhow::Result<()> {
    match cmd {
        MappingsCommand::List { json } => {
            let links = store.list_item_links().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&links)?);
            } else if links.is_empty() {
                println!("no product mappings yet (they are found in NetSuite on first use)");
            } else {
                println!(
                    "{:<32} {:<12} {:<14} UPDATED",
                    "STRIPE PRODUCT", "NS ITEM", "SOURCE"
                );
                for l in links {
                    println!(
                        "{:<32} {:<12} {:<14} {}",
                        super::text::safe(&l.stripe_id),
                        l.netsuite_internal_id,
                        l.source,
                        format_time(l.updated_at)
                    );
                }
            }
        }
        MappingsCommand::Set { product, item } => {
            let released = mappings::set_mapping(store, product, item).await?;
            println!("{product} → NetSuite item {item}; {released} waiting event(s) released");
        }
        MappingsCommand::Remove { product } => {
            let removed = mappings::remove_mapping(store, product).await?;
            println!(
                "{product}: {}",
                if removed {
                    "mapping removed"
                } else {
                    "had no mapping"
                }
            );
        }
        MappingsCommand::Unmapped { json } => print_unmapped(store, *json).await?,
        MappingsCommand::Import { csv } => {
            let text = std::fs::read_to_string(csv)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", csv.display()))?;
            let report = mappings::import_csv(store, &text).await?;
            for (product, item) in &report.applied {
                println!("{product} → NetSuite item {item}");
            }
            for bad in &report.bad {
                eprintln!("{}:{}: {}", csv.display(), bad.line, bad.reason);
            }
            println!(
                "{} mapping(s) applied, {} waiting event(s) released, {} bad row(s)",
                report.applied.len(),
                report.released,
                report.bad.len()
            );
            if !report.bad.is_empty() {
                anyhow::bail!(
                    "{} row(s) of {} were not applied",
                    report.bad.len(),
                    csv.display()
                );
            }
        }
        MappingsCommand::Export { csv: _ } => {
            print!("{}", mappings::export_csv(store).await?);
        }
    }
    Ok(())
}
