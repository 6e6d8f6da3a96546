//! NetSuite → Stripe reference sync: NetSuite items selected by `reference.item_filter` become
//! Stripe products, and customers selected by `reference.customer_filter` become Stripe
//! customers, with the IDs written back into NetSuite and linked in the store.
//!
//! Each run reads only what changed since the stored watermark (`sync_watermarks`), keyset-paged
//! on `(lastmodifieddate, id)`. The watermark is inclusive (`lastmodifieddate >= watermark`):
//! NetSuite's dates have one-second resolution, so a record changed later in the same second as
//! the last one read is still seen; re-reading a record is harmless because nothing is written
//! unless a value differs.
//!
//! Dates are compared and stored as SuiteQL returns `lastmodifieddate` (ISO 8601 UTC, seconds, in
//! the simulator). An account whose SuiteQL answers dates in the user's display format would
//! need the column and parameter wrapped in `TO_CHAR`/`TO_TIMESTAMP`, which the simulator's
//! SuiteQL subset does not parse.
//!
//! No ping-pong: every write is preceded by a comparison (Stripe is read first; NetSuite's row
//! is what was just queried), so a record whose only change is the connector's own write-back
//! (which moves its `lastmodifieddate`) is read once more and left alone. Creates carry an
//! Idempotency-Key derived from what they write, and the store link is recorded before the
//! write-back, so a run that stopped half-way finishes the link instead of creating twice.

use mlc_core::{Classify, ErrorClass, NetSuiteInternalId};
use mlc_netsuite::{NetSuiteClient, NetSuiteError, RecordBody, SuiteQlRow};
use mlc_store::{ConnectionStore, NewAudit, StoreError};
use mlc_stripe::client::{CustomerParams, ProductParams};
use mlc_stripe::{StripeClient, StripeError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Config, ItemMatch, Owner, PostingConfig, ReferenceConfig};

/// Link source of the links this sync records.
pub const LINK_SOURCE: &str = "netsuite_sync";
/// Watermark names in `sync_watermarks`.
pub const ITEM_WATERMARK: &str = "netsuite_to_stripe.items";
pub const CUSTOMER_WATERMARK: &str = "netsuite_to_stripe.customers";
/// Stripe metadata keys naming the NetSuite record an object was made from.
pub const ITEM_METADATA_KEY: &str = "netsuite_item_id";
pub const CUSTOMER_METADATA_KEY: &str = "netsuite_customer_id";
/// Audit step of every write the sync makes.
pub const AUDIT_STEP: &str = "reference_synced";

/// What one sync needs: the store, both clients, and the configuration.
#[derive(Clone)]
pub struct SyncContext {
    pub store: ConnectionStore,
    pub stripe: StripeClient,
    pub netsuite: NetSuiteClient,
    pub reference: ReferenceConfig,
    pub posting: PostingConfig,
}

impl std::fmt::Debug for SyncContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncContext")
            .field("item_filter", &self.reference.item_filter)
            .field("customer_filter", &self.reference.customer_filter)
            .finish_non_exhaustive()
    }
}

impl SyncContext {
    /// A context over given clients (the service shares the pipeline's, so one NetSuite
    /// concurrency budget governs both).
    pub fn new(
        config: &Config,
        store: ConnectionStore,
        stripe: StripeClient,
        netsuite: NetSuiteClient,
    ) -> Self {
        SyncContext {
            store,
            stripe,
            netsuite,
            reference: config.reference.clone(),
            posting: config.posting.clone(),
        }
    }

    /// A context with its own clients (the CLI); an error when Stripe or NetSuite is not
    /// configured.
    pub fn from_config(config: &Config, store: ConnectionStore) -> anyhow::Result<Self> {
        let stripe = crate::connections::stripe_client(config)?.ok_or_else(|| {
            anyhow::anyhow!(
                "stripe.api_key is not set: the sync writes Stripe products and customers"
            )
        })?;
        let netsuite = crate::connections::netsuite_client(config)?.ok_or_else(|| {
            anyhow::anyhow!(
                "netsuite.account_id is not set: the sync reads NetSuite items and customers"
            )
        })?;
        Ok(SyncContext::new(config, store, stripe, netsuite))
    }

    /// One run, logged: what changed, or the errors (retried at the next run). The worker runs
    /// it once per `reference.netsuite_sync_interval_secs` across every instance (an apalis
    /// schedule: `mlc_jobs::runner::Schedule`).
    pub async fn run_logged(&self) {
        let report = netsuite_to_stripe_once(self).await;
        let writes = report.items.writes() + report.customers.writes();
        if report.errors.is_empty() && writes == 0 {
            tracing::debug!(%report, "NetSuite → Stripe sync: nothing changed");
        } else if report.errors.is_empty() {
            tracing::info!(%report, "NetSuite → Stripe sync done");
        } else {
            tracing::warn!(%report, errors = ?report.errors, "NetSuite → Stripe sync had errors; retried next interval");
        }
    }
}

/// Counts for one kind of record in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindReport {
    /// Rows read from NetSuite (changed since the watermark and matching the filter).
    pub read: usize,
    /// Stripe objects created.
    pub created: usize,
    /// Stripe objects updated (only when a value differed).
    pub updated: usize,
    /// NetSuite records given their Stripe ID (PATCH).
    pub written_back: usize,
    /// Rows that needed no write.
    pub unchanged: usize,
    /// Rows that failed (retried next run: the watermark stays at the first of them).
    pub failed: usize,
}

impl KindReport {
    /// Writes to Stripe and NetSuite in this run.
    pub fn writes(&self) -> usize {
        self.created + self.updated + self.written_back
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub items: KindReport,
    pub customers: KindReport,
    /// One line per failure, naming the record and what to do.
    pub errors: Vec<String>,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, k) in [("items", &self.items), ("customers", &self.customers)] {
            writeln!(
                f,
                "{what}: {} read, {} created in Stripe, {} updated in Stripe, {} written back to NetSuite, {} unchanged, {} failed",
                k.read, k.created, k.updated, k.written_back, k.unchanged, k.failed
            )?;
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// Why one record (or one query) could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    NetSuite(#[from] NetSuiteError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data needs a person (a dangling Stripe ID, a record without a name).
    #[error("{0}")]
    NeedsPerson(String),
}

impl Classify for SyncError {
    fn class(&self) -> ErrorClass {
        match self {
            SyncError::Stripe(e) => e.class(),
            SyncError::NetSuite(e) => e.class(),
            SyncError::Store(e) => e.class(),
            SyncError::NeedsPerson(_) => ErrorClass::NeedsPerson,
        }
    }
}

/// One run: items, then customers (each only when its filter is set).
pub async fn netsuite_to_stripe_once(ctx: &SyncContext) -> SyncReport {
    let mut report = SyncReport::default();
    if let Some(filter) = ctx.reference.item_filter.clone() {
        sync_kind(ctx, Kind::Item, &filter, &mut report).await;
    }
    if let Some(filter) = ctx.reference.customer_filter.clone() {
        sync_kind(ctx, Kind::Customer, &filter, &mut report).await;
    }
    report
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Item,
    Customer,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Item => "item",
            Kind::Customer => "customer",
        }
    }
    fn watermark(self) -> &'static str {
        match self {
            Kind::Item => ITEM_WATERMARK,
            Kind::Customer => CUSTOMER_WATERMARK,
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Item => "NetSuite item",
            Kind::Customer => "NetSuite customer",
        }
    }
}

/// The stored watermark: the last `lastmodifieddate` fully handled, and the filter it was
/// reached with (another filter selects other records, which must be read from the start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Watermark {
    after: String,
    filter: String,
}

fn columns(ctx: &SyncContext, kind: Kind) -> Vec<String> {
    let mut cols: Vec<String> = match kind {
        Kind::Item => [
            "id",
            "itemid",
            "displayname",
            "itemtype",
            "subtype",
            "externalid",
        ]
        .map(String::from)
        .to_vec(),
        Kind::Customer => [
            "id",
            "entityid",
            "companyname",
            "firstname",
            "lastname",
            "isperson",
            "email",
            "externalid",
        ]
        .map(String::from)
        .to_vec(),
    };
    let field = match kind {
        Kind::Item if ctx.posting.item_match == ItemMatch::CustomField => {
            Some(ctx.posting.item_field.clone())
        }
        Kind::Item => None,
        Kind::Customer => Some(ctx.posting.customer_field.clone()),
    };
    cols.extend(field);
    cols.push("lastmodifieddate".into());
    cols
}

async fn sync_kind(ctx: &SyncContext, kind: Kind, filter: &str, report: &mut SyncReport) {
    let stored = match ctx.store.get_watermark(kind.watermark()).await {
        Ok(v) => v
            .and_then(|v| serde_json::from_str::<Watermark>(&v).ok())
            .filter(|w| w.filter == filter),
        Err(e) => {
            report
                .errors
                .push(format!("reading the {} watermark: {e}", kind.table()));
            return;
        }
    };
    let rows = match fetch(ctx, kind, filter, stored.as_ref().map(|w| w.after.as_str())).await {
        Ok(rows) => rows,
        Err(e) => {
            report.errors.push(format!(
                "querying NetSuite {}s (filter `{filter}`): {e}",
                kind.table()
            ));
            return;
        }
    };
    let mut counts = KindReport {
        read: rows.len(),
        ..KindReport::default()
    };
    let mut newest: Option<String> = stored.as_ref().map(|w| w.after.clone());
    let mut first_failed: Option<String> = None;
    for row in &rows {
        let id = cell(row, "id").unwrap_or_default().to_string();
        let modified = cell(row, "lastmodifieddate").map(str::to_string);
        let result = match kind {
            Kind::Item => sync_item(ctx, row, &mut counts).await,
            Kind::Customer => sync_customer(ctx, row, &mut counts).await,
        };
        if let Err(e) = result {
            counts.failed += 1;
            tracing::warn!(id, error = %e, "{} not synced to Stripe", kind.noun());
            report.errors.push(format!("{} {id}: {e}", kind.noun()));
            if let Some(m) = &modified
                && first_failed.as_ref().is_none_or(|f| m < f)
            {
                first_failed = Some(m.clone());
            }
        }
        if let Some(m) = modified
            && newest.as_ref().is_none_or(|n| &m > n)
        {
            newest = Some(m);
        }
    }
    // A failed row keeps the watermark at its date so the next run reads it again.
    if let Some(after) = first_failed.or(newest) {
        let next = Watermark {
            after,
            filter: filter.to_string(),
        };
        if stored.as_ref() != Some(&next) {
            let text = serde_json::to_string(&next).unwrap_or_default();
            if let Err(e) = ctx.store.set_watermark(kind.watermark(), &text).await {
                report
                    .errors
                    .push(format!("saving the {} watermark: {e}", kind.table()));
            }
        }
    }
    match kind {
        Kind::Item => report.items = counts,
        Kind::Customer => report.customers = counts,
    }
}

/// The rows changed since `after` (inclusive), ordered by `(lastmodifieddate, id)` and paged on
/// that pair; without a watermark, every matching row, keyset-paged on `id`.
async fn fetch(
    ctx: &SyncContext,
    kind: Kind,
    filter: &str,
    after: Option<&str>,
) -> Result<Vec<SuiteQlRow>, NetSuiteError> {
    let cols = columns(ctx, kind).join(", ");
    let table = kind.table();
    let Some(after) = after else {
        let q = format!("SELECT {cols} FROM {table} WHERE ({filter}) AND id > ? ORDER BY id");
        return ctx.netsuite.suiteql_keyset(&q, Vec::new(), "id").await;
    };
    let q = format!(
        "SELECT {cols} FROM {table} WHERE ({filter}) AND (lastmodifieddate > ? OR \
         (lastmodifieddate = ? AND id > ?)) ORDER BY lastmodifieddate, id"
    );
    let mut rows: Vec<SuiteQlRow> = Vec::new();
    let mut cursor = (after.to_string(), -1_i64);
    loop {
        let params = vec![cursor.0.clone(), cursor.0.clone(), cursor.1.to_string()];
        let page = ctx
            .netsuite
            .suiteql(&q, params, mlc_netsuite::SUITEQL_MAX_LIMIT, 0)
            .await?;
        let has_more = page.has_more;
        if page.items.is_empty() {
            return Ok(rows);
        }
        for row in page.items {
            let modified = cell(&row, "lastmodifieddate")
                .unwrap_or_default()
                .to_string();
            let id = cell(&row, "id")
                .and_then(|i| i.parse::<i64>().ok())
                .unwrap_or(i64::MIN);
            let next = (modified, id);
            // Each page must move the cursor forward, or the query would loop.
            if next <= cursor {
                return Err(NetSuiteError::UnexpectedResponse {
                    message: format!(
                        "SuiteQL rows are not ordered by (lastmodifieddate, id): {next:?} after {cursor:?}"
                    ),
                    ambiguous: false,
                });
            }
            cursor = next;
            rows.push(row);
        }
        if !has_more {
            return Ok(rows);
        }
    }
}

fn cell<'a>(row: &'a SuiteQlRow, column: &str) -> Option<&'a str> {
    row.get(column)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn internal_id(row: &SuiteQlRow) -> Result<NetSuiteInternalId, SyncError> {
    let raw = cell(row, "id").unwrap_or_default();
    NetSuiteInternalId::parse(raw)
        .map_err(|e| SyncError::NeedsPerson(format!("a SuiteQL row has no usable id `{raw}`: {e}")))
}

/// The REST record type of an item from SuiteQL's `itemtype` and `subtype`.
fn item_record_type(row: &SuiteQlRow) -> Result<&'static str, SyncError> {
    let itemtype = cell(row, "itemtype").unwrap_or_default();
    let subtype = cell(row, "subtype").unwrap_or("Sale");
    let t = match (itemtype, subtype) {
        ("Service", "Resale") => "serviceResaleItem",
        ("Service", "Purchase") => "servicePurchaseItem",
        ("Service", _) => "serviceSaleItem",
        ("NonInvtPart", "Resale") => "nonInventoryResaleItem",
        ("NonInvtPart", "Purchase") => "nonInventoryPurchaseItem",
        ("NonInvtPart", _) => "nonInventorySaleItem",
        ("OthCharge", "Resale") => "otherChargeResaleItem",
        ("OthCharge", "Purchase") => "otherChargePurchaseItem",
        ("OthCharge", _) => "otherChargeSaleItem",
        ("InvtPart", _) => "inventoryItem",
        ("Discount", _) => "discountItem",
        ("Kit", _) => "kitItem",
        ("Assembly", _) => "assemblyItem",
        (other, _) => {
            return Err(SyncError::NeedsPerson(format!(
                "item type `{other}` cannot be synced to Stripe: narrow reference.item_filter to sale items"
            )));
        }
    };
    Ok(t)
}

async fn audit(
    ctx: &SyncContext,
    stripe_id: &str,
    message: String,
    data: Value,
) -> Result<(), StoreError> {
    ctx.store
        .append_audit(NewAudit {
            event_id: None,
            job_id: None,
            stripe_object_id: Some(stripe_id.to_string()),
            step: AUDIT_STEP.to_string(),
            message,
            data: Some(data),
        })
        .await
        .map(|_| ())
}

/// Where an item keeps its Stripe product ID: (SuiteQL column, REST field).
fn item_link_field(ctx: &SyncContext) -> (String, String) {
    match ctx.posting.item_match {
        ItemMatch::CustomField => (
            ctx.posting.item_field.clone(),
            ctx.posting.item_field.clone(),
        ),
        ItemMatch::ExternalId => ("externalid".into(), "externalId".into()),
    }
}

async fn sync_item(
    ctx: &SyncContext,
    row: &SuiteQlRow,
    counts: &mut KindReport,
) -> Result<(), SyncError> {
    let id = internal_id(row)?;
    let name = cell(row, "displayname")
        .or_else(|| cell(row, "itemid"))
        .ok_or_else(|| {
            SyncError::NeedsPerson("the item has neither a display name nor an item name".into())
        })?
        .to_string();
    let modified = cell(row, "lastmodifieddate").unwrap_or_default();
    let (column, field) = item_link_field(ctx);
    let current = match cell(row, &column) {
        Some(p) if p.starts_with("prod_") => Some(p.to_string()),
        Some(other) if ctx.posting.item_match == ItemMatch::ExternalId => {
            return Err(SyncError::NeedsPerson(format!(
                "its external ID `{other}` is not a Stripe product ID and posting.item_match = \
                 external_id: clear it or match items by custom field"
            )));
        }
        Some(other) => {
            return Err(SyncError::NeedsPerson(format!(
                "{field} holds `{other}`, which is not a Stripe product ID: correct or clear it"
            )));
        }
        None => None,
    };

    let mut wrote = false;
    let (product_id, product) = match current {
        Some(p) => {
            let product = existing_product(ctx, &p).await?.ok_or_else(|| {
                SyncError::NeedsPerson(format!(
                    "{field} names Stripe product {p}, which this Stripe account does not have \
                     (deleted, or the other mode): clear the field to create a new product"
                ))
            })?;
            (p, Some(product))
        }
        None => {
            // A previous run may have created the product and stopped before writing it back.
            let earlier = match ctx
                .store
                .item_link_by_netsuite(id.as_str(), LINK_SOURCE)
                .await?
            {
                Some(p) => existing_product(ctx, &p).await?.map(|prod| (p, prod)),
                None => None,
            };
            match earlier {
                Some((p, prod)) => (p, Some(prod)),
                None => {
                    let mut params = ProductParams {
                        name: Some(name.clone()),
                        ..ProductParams::default()
                    };
                    params
                        .metadata
                        .insert(ITEM_METADATA_KEY.into(), id.as_str().to_string());
                    let created = ctx.stripe.create_product(&params).await?;
                    ctx.store
                        .set_item_link(&created.id, id.as_str(), LINK_SOURCE)
                        .await?;
                    audit(
                        ctx,
                        &created.id,
                        format!(
                            "created Stripe product {} \"{name}\" for NetSuite item {id}",
                            created.id
                        ),
                        json!({"netsuite_item_id": id.as_str(), "stripe_product_id": created.id, "name": name, "direction": "netsuite_to_stripe"}),
                    )
                    .await?;
                    counts.created += 1;
                    wrote = true;
                    (created.id, None)
                }
            }
        }
    };

    if let Some(product) = product {
        let mut params = ProductParams::default();
        if product.name.as_deref() != Some(name.as_str()) {
            params.name = Some(name.clone());
        }
        if product.metadata.get(ITEM_METADATA_KEY).map(String::as_str) != Some(id.as_str()) {
            params
                .metadata
                .insert(ITEM_METADATA_KEY.into(), id.as_str().to_string());
        }
        if params != ProductParams::default() {
            // The item's version is part of the key: a later change back to an earlier name
            // must be a new request, not a replay of the earlier one.
            params.idempotency_scope = Some(format!("netsuite item {id} {modified}"));
            ctx.stripe.update_product(&product_id, &params).await?;
            audit(
                ctx,
                &product_id,
                format!("updated Stripe product {product_id} from NetSuite item {id}"),
                json!({"netsuite_item_id": id.as_str(), "stripe_product_id": product_id,
                       "old_name": product.name, "name": params.name, "direction": "netsuite_to_stripe"}),
            )
            .await?;
            counts.updated += 1;
            wrote = true;
        }
        let linked = ctx
            .store
            .get_item_links(std::slice::from_ref(&product_id))
            .await?;
        if linked.get(&product_id).map(String::as_str) != Some(id.as_str()) {
            ctx.store
                .set_item_link(&product_id, id.as_str(), LINK_SOURCE)
                .await?;
        }
    }

    if cell(row, &column) != Some(product_id.as_str()) {
        let record_type = item_record_type(row)?;
        ctx.netsuite
            .patch(
                record_type,
                &id,
                RecordBody::from(json!({ field.as_str(): product_id })),
            )
            .await?;
        audit(
            ctx,
            &product_id,
            format!("wrote Stripe product {product_id} into NetSuite item {id} ({field})"),
            json!({"netsuite_item_id": id.as_str(), "record_type": record_type, "field": field,
                   "stripe_product_id": product_id, "direction": "netsuite_to_stripe"}),
        )
        .await?;
        counts.written_back += 1;
        wrote = true;
    }
    if !wrote {
        counts.unchanged += 1;
    }
    Ok(())
}

/// The product, or `None` when Stripe does not have it (or it was deleted).
async fn existing_product(
    ctx: &SyncContext,
    id: &str,
) -> Result<Option<mlc_stripe::models::Product>, SyncError> {
    match ctx.stripe.retrieve_product(id).await {
        Ok(p) if p.deleted => Ok(None),
        Ok(p) => Ok(Some(p)),
        Err(StripeError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn existing_customer(
    ctx: &SyncContext,
    id: &str,
) -> Result<Option<mlc_stripe::models::Customer>, SyncError> {
    match ctx.stripe.retrieve_customer(id).await {
        Ok(c) if c.deleted => Ok(None),
        Ok(c) => Ok(Some(c)),
        Err(StripeError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A customer's name as Stripe should show it: the person's name, else the company's, else the
/// entity ID.
fn customer_name(row: &SuiteQlRow) -> Option<String> {
    let person = cell(row, "isperson") == Some("T");
    let full = [cell(row, "firstname"), cell(row, "lastname")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let company = cell(row, "companyname").map(str::to_string);
    let entity = cell(row, "entityid").map(str::to_string);
    if person && !full.is_empty() {
        Some(full)
    } else {
        company
            .or_else(|| (!full.is_empty()).then_some(full))
            .or(entity)
    }
}

async fn sync_customer(
    ctx: &SyncContext,
    row: &SuiteQlRow,
    counts: &mut KindReport,
) -> Result<(), SyncError> {
    let id = internal_id(row)?;
    let name = customer_name(row);
    let email = cell(row, "email").map(str::to_string);
    let modified = cell(row, "lastmodifieddate").unwrap_or_default();
    let field = ctx.posting.customer_field.clone();
    let in_field = cell(row, &field);
    let current = match in_field {
        Some(c) if c.starts_with("cus_") => Some(c.to_string()),
        Some(other) => {
            return Err(SyncError::NeedsPerson(format!(
                "{field} holds `{other}`, which is not a Stripe customer ID: correct or clear it"
            )));
        }
        // A customer the connector created from Stripe carries stripe_<cus_…> as external ID.
        None => cell(row, "externalid")
            .and_then(|e| e.strip_prefix("stripe_"))
            .filter(|c| c.starts_with("cus_"))
            .map(str::to_string),
    };
    let mut wrote = false;

    let (customer_id, customer) = match current {
        Some(c) => {
            let customer = existing_customer(ctx, &c).await?.ok_or_else(|| {
                SyncError::NeedsPerson(format!(
                    "it names Stripe customer {c}, which this Stripe account does not have \
                     (deleted, or the other mode): clear {field} to create a new customer"
                ))
            })?;
            (c, Some(customer))
        }
        None => {
            let earlier = match ctx
                .store
                .customer_link_by_netsuite(id.as_str(), LINK_SOURCE)
                .await?
            {
                Some(c) => existing_customer(ctx, &c).await?.map(|cus| (c, cus)),
                None => None,
            };
            match earlier {
                Some((c, cus)) => (c, Some(cus)),
                None => {
                    let mut params = CustomerParams {
                        name: name.clone(),
                        email: email.clone(),
                        ..CustomerParams::default()
                    };
                    params
                        .metadata
                        .insert(CUSTOMER_METADATA_KEY.into(), id.as_str().to_string());
                    let created = ctx.stripe.create_customer(&params).await?;
                    ctx.store
                        .set_customer_link(&created.id, id.as_str(), LINK_SOURCE)
                        .await?;
                    audit(
                        ctx,
                        &created.id,
                        format!("created Stripe customer {} for NetSuite customer {id}", created.id),
                        json!({"netsuite_customer_id": id.as_str(), "stripe_customer_id": created.id,
                               "name": name, "email": email, "direction": "netsuite_to_stripe"}),
                    )
                    .await?;
                    counts.created += 1;
                    wrote = true;
                    (created.id, None)
                }
            }
        }
    };

    if let Some(customer) = customer {
        let mut params = CustomerParams::default();
        // Name and email follow NetSuite only when NetSuite owns them; with the default owner
        // (Stripe) an existing Stripe customer keeps its own.
        if ctx.reference.customer_owner == Owner::Netsuite {
            if name.is_some() && customer.name != name {
                params.name = name.clone();
            }
            if email.is_some() && customer.email != email {
                params.email = email.clone();
            }
        }
        if customer
            .metadata
            .get(CUSTOMER_METADATA_KEY)
            .map(String::as_str)
            != Some(id.as_str())
        {
            params
                .metadata
                .insert(CUSTOMER_METADATA_KEY.into(), id.as_str().to_string());
        }
        if params != CustomerParams::default() {
            params.idempotency_scope = Some(format!("netsuite customer {id} {modified}"));
            ctx.stripe.update_customer(&customer_id, &params).await?;
            audit(
                ctx,
                &customer_id,
                format!("updated Stripe customer {customer_id} from NetSuite customer {id}"),
                json!({"netsuite_customer_id": id.as_str(), "stripe_customer_id": customer_id,
                       "old_name": customer.name, "old_email": customer.email,
                       "name": params.name, "email": params.email, "direction": "netsuite_to_stripe"}),
            )
            .await?;
            counts.updated += 1;
            wrote = true;
        }
        if ctx.store.get_customer_link(&customer_id).await?.as_deref() != Some(id.as_str()) {
            ctx.store
                .set_customer_link(&customer_id, id.as_str(), LINK_SOURCE)
                .await?;
        }
    }

    if in_field != Some(customer_id.as_str()) {
        ctx.netsuite
            .patch(
                "customer",
                &id,
                RecordBody::from(json!({ field.as_str(): customer_id })),
            )
            .await?;
        audit(
            ctx,
            &customer_id,
            format!("wrote Stripe customer {customer_id} into NetSuite customer {id} ({field})"),
            json!({"netsuite_customer_id": id.as_str(), "field": field,
                   "stripe_customer_id": customer_id, "direction": "netsuite_to_stripe"}),
        )
        .await?;
        counts.written_back += 1;
        wrote = true;
    }
    if !wrote {
        counts.unchanged += 1;
    }
    Ok(())
}
