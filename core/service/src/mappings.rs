//! Product → item mappings: the links from Stripe products to NetSuite items the connector uses,
//! and the products it has seen without one. The `mappings` command, the console and (next)
//! GraphQL all act through these functions, so a mapping is audited and releases the jobs
//! waiting for it wherever it is set.

use std::collections::BTreeMap;

use mlc_core::{NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_store::{ConnectionStore, EventFilter, NewAudit, UnmappedProduct};

/// The header of the mappings CSV.
pub const CSV_HEADER: &str = "stripe_product_id,netsuite_item_id";

/// A CSV row that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: usize,
    pub reason: String,
}

/// What `mappings import` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Rows applied, as (product, item).
    pub applied: Vec<(String, String)>,
    /// Waiting jobs released by the applied rows.
    pub released: u64,
    pub bad: Vec<BadRow>,
}

/// One CSV cell, unquoted (`"a"` → `a`; the IDs never contain commas or quotes).
fn cell(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t)
        .trim()
}

/// Why a mappings CSV was not imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not a mappings CSV (permanent: fix the file).
    #[error("the first line must be the header `{CSV_HEADER}` (found `{0}`)")]
    BadHeader(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Validates every row of a mappings CSV, then applies the good ones through [`set_mapping`]
/// (so each is audited and releases the jobs waiting for its product). Bad rows are reported
/// with their line numbers and change nothing.
pub async fn import_csv(store: &ConnectionStore, text: &str) -> Result<ImportReport, ImportError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header = lines
        .next()
        .map(|(_, l)| l.trim().trim_start_matches('\u{feff}').to_string());
    if header.as_deref().map(|h| h.replace(' ', "")) != Some(CSV_HEADER.to_string()) {
        return Err(ImportError::BadHeader(header.unwrap_or_default()));
    }
    let mut report = ImportReport::default();
    let mut good = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let cells: Vec<&str> = line.split(',').map(cell).collect();
        let [product, item] = cells.as_slice() else {
            report.bad.push(BadRow {
                line: n,
                reason: format!("expected 2 values, found {}", cells.len()),
            });
            continue;
        };
        if let Err(e) = StripeId::parse(StripeIdKind::Product, product) {
            report.bad.push(BadRow {
                line: n,
                reason: format!("`{product}` is not a Stripe product ID: {e}"),
            });
            continue;
        }
        if NetSuiteInternalId::parse(item).is_err() {
            report.bad.push(BadRow {
                line: n,
                reason: format!("`{item}` is not a NetSuite internal ID (digits)"),
            });
            continue;
        }
        good.push((product.to_string(), item.to_string()));
    }
    for (product, item) in good {
        report.released += set_mapping(store, &product, &item).await?;
        report.applied.push((product, item));
    }
    Ok(report)
}

/// The mappings in use as CSV, header first.
pub async fn export_csv(store: &ConnectionStore) -> anyhow::Result<String> {
    let mut out = format!("{CSV_HEADER}\n");
    for l in store.list_item_links().await? {
        out.push_str(&format!("{},{}\n", l.stripe_id, l.netsuite_internal_id));
    }
    Ok(out)
}

/// The amount of each waiting event as it was when the event was sent (from its stored body:
/// an invoice's `amount_due` or `total`, a charge's or payment intent's `amount`), summed per
/// lowercase currency code, in minor units.
pub async fn waiting_totals(
    store: &ConnectionStore,
    events: &[String],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    // A charge and its payment intent are two events for one sale: count the sale once.
    let mut seen = std::collections::BTreeSet::new();
    for id in events {
        let Some(event) = store.get_event(id).await? else {
            continue;
        };
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&event.raw_body) else {
            continue;
        };
        let Some((sale, amount)) = crate::console::event_sale(&body) else {
            continue;
        };
        if !seen.insert(sale) {
            continue;
        }
        let total = totals
            .entry(amount.currency().as_str().to_ascii_lowercase())
            .or_default();
        *total = total.saturating_add(amount.minor());
    }
    Ok(totals)
}

/// The products seen without a NetSuite item, each with the events waiting for it.
pub async fn unmapped_with_waiting(
    store: &ConnectionStore,
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
pub async fn set_mapping(
    store: &ConnectionStore,
    product: &str,
    item: &str,
) -> anyhow::Result<u64> {
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

/// Forgets a product's link (it is looked up in NetSuite again on next use), audited; `false`
/// when it had none.
pub async fn remove_mapping(store: &ConnectionStore, product: &str) -> anyhow::Result<bool> {
    let removed = store.remove_item_link(product).await?;
    store
        .append_audit(NewAudit {
            stripe_object_id: Some(product.to_string()),
            step: "mapping_removed".into(),
            message: format!("Mapping of Stripe product {product} removed"),
            ..NewAudit::default()
        })
        .await?;
    Ok(removed)
}

/// Links a Stripe customer to an existing NetSuite customer (instead of the one the connector
/// would find or create), records it in the audit log and releases the jobs waiting on that
/// customer; returns how many were released.
pub async fn set_customer_mapping(
    store: &ConnectionStore,
    customer: &str,
    netsuite_customer: &str,
) -> anyhow::Result<u64> {
    let customer = StripeId::parse(StripeIdKind::Customer, customer.trim())?;
    let ns = NetSuiteInternalId::parse(netsuite_customer.trim()).map_err(|_| {
        anyhow::anyhow!("`{netsuite_customer}` is not a NetSuite internal ID (digits)")
    })?;
    store
        .set_customer_link(customer.as_str(), ns.as_str(), "manual")
        .await?;
    let released = store.wake_waiting_jobs(customer.as_str()).await?;
    store
        .append_audit(NewAudit {
            stripe_object_id: Some(customer.to_string()),
            step: "customer_mapping_set".into(),
            message: format!(
                "Stripe customer {customer} mapped to NetSuite customer {ns}; {released} waiting job(s) released"
            ),
            ..NewAudit::default()
        })
        .await?;
    Ok(released)
}
