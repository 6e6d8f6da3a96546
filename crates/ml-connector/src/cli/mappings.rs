//! `ml-connector mappings`: the links from Stripe products to NetSuite items the connector uses,
//! and the products it has seen without one.

use clap::Subcommand;
use mlc_core::{NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_store::{EventFilter, NewAudit, Store, UnmappedProduct};

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
}

/// The products seen without a NetSuite item, each with the events waiting for it.
pub async fn unmapped_with_waiting(
    store: &Store,
) -> anyhow::Result<Vec<(UnmappedProduct, Vec<String>)>> {
    let products = store.list_unmapped_products().await?;
    let waiting = store
        .list_events(&EventFilter {
            status: Some("waiting".into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .await?;
    Ok(products
        .into_iter()
        .map(|p| {
            let events = waiting
                .iter()
                .filter(|e| {
                    e.last_error
                        .as_deref()
                        .is_some_and(|m| m.contains(&p.stripe_product_id))
                })
                .map(|e| e.event_id.clone())
                .collect();
            (p, events)
        })
        .collect())
}

/// Links `product` to `item`, records it in the audit log and releases waiting jobs; returns
/// how many were released.
pub async fn set_mapping(store: &Store, product: &str, item: &str) -> anyhow::Result<u64> {
    let product = StripeId::parse(StripeIdKind::Product, product.trim())?;
    let item = NetSuiteInternalId::parse(item.trim())
        .map_err(|_| anyhow::anyhow!("`{item}` is not a NetSuite internal ID (digits)"))?;
    store
        .set_item_link(product.as_str(), item.as_str(), "manual")
        .await?;
    let released = store.wake_waiting_jobs(product.as_str()).await?;
    store
        .append_audit(NewAudit {
            stripe_object_id: Some(product.to_string()),
            step: "mapping_set".into(),
            message: format!(
                "Stripe product {product} mapped to NetSuite item {item}; {released} waiting job(s) released"
            ),
            ..NewAudit::default()
        })
        .await?;
    Ok(released)
}

pub async fn run(cmd: &MappingsCommand, store: &Store) -> anyhow::Result<()> {
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
                        l.stripe_id,
                        l.netsuite_internal_id,
                        l.source,
                        format_time(l.updated_at)
                    );
                }
            }
        }
        MappingsCommand::Set { product, item } => {
            let released = set_mapping(store, product, item).await?;
            println!("{product} → NetSuite item {item}; {released} waiting event(s) released");
        }
        MappingsCommand::Remove { product } => {
            let removed = store.remove_item_link(product).await?;
            store
                .append_audit(NewAudit {
                    stripe_object_id: Some(product.clone()),
                    step: "mapping_removed".into(),
                    message: format!("Mapping of Stripe product {product} removed"),
                    ..NewAudit::default()
                })
                .await?;
            println!(
                "{product}: {}",
                if removed {
                    "mapping removed"
                } else {
                    "had no mapping"
                }
            );
        }
        MappingsCommand::Unmapped { json } => {
            let rows: Vec<serde_json::Value> = unmapped_with_waiting(store)
                .await?
                .into_iter()
                .map(|(p, events)| {
                    serde_json::json!({
                        "product": p.stripe_product_id,
                        "name": p.name,
                        "waiting_events": events,
                        "last_seen_on": p.last_object_id,
                        "first_seen": format_time(p.first_seen),
                    })
                })
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("every Stripe product seen so far has a NetSuite item");
            } else {
                for r in rows {
                    println!(
                        "{} ({}): {} event(s) waiting, last on {}; fix: `ml-connector mappings set {} <item id>`",
                        r["product"].as_str().unwrap_or_default(),
                        r["name"].as_str().unwrap_or("name unknown"),
                        r["waiting_events"].as_array().map(Vec::len).unwrap_or(0),
                        r["last_seen_on"].as_str().unwrap_or_default(),
                        r["product"].as_str().unwrap_or_default(),
                    );
                }
            }
        }
    }
    Ok(())
}
