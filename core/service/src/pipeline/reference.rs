//! Reference data, Stripe → NetSuite: customers and products edited in Stripe reach their
//! NetSuite customer and item. Like every posting, the object is re-fetched from Stripe (never
//! the webhook body); writes are keyed by external ID (`stripe_<cus_…>`, `stripe_<prod_…>`), and
//! nothing is ever deleted in NetSuite.

use std::collections::{BTreeMap, BTreeSet};

use mlc_core::{Currency, ExternalId, NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_netsuite::documents::{AddressDoc, CustomerDoc, ItemDoc};
use mlc_store::Job;
use mlc_stripe::models::{Customer, Product};
use serde_json::{Value, json};

use super::{Pipeline, PipelineError};
use crate::config::{Owner, PostingConfig, ReferenceConfig};

/// NetSuite's limit on an item's name (`itemId`).
const ITEM_ID_MAX_CHARS: usize = 60;

fn parse_id(kind: StripeIdKind, id: &str) -> Result<StripeId, PipelineError> {
    StripeId::parse(kind, id).map_err(|e| PipelineError::Permanent(e.to_string()))
}

fn internal_id(value: &Value) -> Option<NetSuiteInternalId> {
    match value {
        Value::String(s) => NetSuiteInternalId::parse(s).ok(),
        Value::Number(n) => NetSuiteInternalId::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The address as NetSuite's addressbook, only when it is simple: a first line, city, postal
/// code and a two-letter country. Anything less is left for a person to enter in NetSuite.
fn simple_address(customer: &Customer) -> Option<AddressDoc> {
    let a = customer.address.as_ref()?;
    let country = non_empty(&a.country).filter(|c| c.len() == 2)?;
    Some(AddressDoc {
        addr1: non_empty(&a.line1)?,
        addr2: non_empty(&a.line2),
        city: non_empty(&a.city)?,
        state: non_empty(&a.state),
        zip: non_empty(&a.postal_code)?,
        country: country.to_ascii_uppercase(),
    })
}

/// The one place a Stripe customer becomes NetSuite customer fields (name → companyName,
/// email, currency, subsidiary, the Stripe ID custom field, a simple address).
pub(super) fn customer_fields(
    customer: &Customer,
    customer_id: &StripeId,
    posting: &PostingConfig,
) -> CustomerDoc {
    let currency = customer
        .currency
        .as_deref()
        .and_then(|c| Currency::parse(c).ok())
        .and_then(|c| posting.currencies.get(&c).cloned());
    let company_name = non_empty(&customer.name)
        .or_else(|| non_empty(&customer.email))
        .unwrap_or_else(|| customer_id.to_string());
    CustomerDoc {
        external_id: ExternalId::for_stripe(customer_id),
        company_name,
        email: non_empty(&customer.email),
        subsidiary: posting.subsidiary.clone(),
        currency,
        custom_fields: vec![(posting.customer_field.clone(), json!(customer_id.as_str()))],
        address: simple_address(customer),
    }
}

/// The one place a Stripe product becomes a NetSuite item.
pub(super) fn item_fields(
    product: &Product,
    product_id: &StripeId,
    posting: &PostingConfig,
    reference: &ReferenceConfig,
) -> ItemDoc {
    let name = non_empty(&product.name).unwrap_or_else(|| product_id.to_string());
    ItemDoc {
        external_id: ExternalId::for_stripe(product_id),
        item_id: name.chars().take(ITEM_ID_MAX_CHARS).collect(),
        display_name: name,
        description: non_empty(&product.description),
        subsidiaries: posting.subsidiary.iter().cloned().collect(),
        income_account: reference.item_income_account.clone(),
        custom_fields: vec![(posting.item_field.clone(), json!(product_id.as_str()))],
    }
}

/// The fields of `body` whose value differs from `record` (references compare by `id`).
fn changed_fields(body: &Value, record: &Value) -> Vec<String> {
    let Some(fields) = body.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(k, v)| {
            let current = record.get(k.as_str()).unwrap_or(&Value::Null);
            match (v.get("id"), current) {
                (Some(id), Value::Object(_)) => current.get("id") != Some(id),
                (Some(_), _) => true,
                (None, _) => !same_scalar(v, current),
            }
        })
        .map(|(k, _)| k.clone())
        .collect()
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::String(x), Value::Null) | (Value::Null, Value::String(x)) => x.is_empty(),
        _ => a == b,
    }
}

/// The customer fields the connector keeps in step with Stripe on an existing NetSuite record:
/// the document minus its external ID, subsidiary and currency (NetSuite refuses to change them
/// once the customer has transactions) and addressbook (a second line would be appended, not
/// replaced); minus name and email when NetSuite owns them.
pub(super) fn managed_customer_fields(
    doc: &CustomerDoc,
    owner_is_netsuite: bool,
) -> serde_json::Map<String, Value> {
    let mut fields = match doc.to_json().to_value() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    for kept in ["externalId", "subsidiary", "currency", "addressbook"] {
        fields.remove(kept);
    }
    if owner_is_netsuite {
        fields.remove("companyName");
        fields.remove("email");
    }
    fields
}

/// Version tag of the stored fingerprint format; anything else reads as "unknown".
const FINGERPRINT_V1: &str = "v1:";

/// JSON with object keys sorted, so equal values print equally whatever the map order.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Per field, the SHA-256 of its canonical JSON: what the connector wrote, without keeping the
/// values themselves (names and emails) a second time.
pub(super) fn field_prints(fields: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    use sha2::Digest;
    fields
        .iter()
        .map(|(k, v)| {
            let digest = sha2::Sha256::digest(canonical(v).as_bytes());
            (k.clone(), hex::encode(digest))
        })
        .collect()
}

/// The stored form of [`field_prints`].
pub(super) fn fingerprint_text(prints: &BTreeMap<String, String>) -> String {
    format!(
        "{FINGERPRINT_V1}{}",
        serde_json::to_string(prints).unwrap_or_default()
    )
}

fn parse_fingerprint(text: &str) -> Option<BTreeMap<String, String>> {
    serde_json::from_str(text.strip_prefix(FINGERPRINT_V1)?).ok()
}

/// The fields whose print differs from (or is missing in) the stored fingerprint, in order.
fn changed_since(
    prints: &BTreeMap<String, String>,
    stored: &BTreeMap<String, String>,
) -> Vec<String> {
    prints
        .iter()
        .filter(|(k, p)| stored.get(*k) != Some(*p))
        .map(|(k, _)| k.clone())
        .collect()
}

impl Pipeline {
    fn reference_config(&self) -> Option<&ReferenceConfig> {
        self.inner.reference.as_ref()
    }

    /// `customer.created` / `customer.updated`: the NetSuite customer gets the Stripe
    /// customer's current name, email, currency and address.
    pub(super) async fn sync_customer(
        &self,
        job: &Job,
        customer_id: &str,
    ) -> Result<(), PipelineError> {
        let Some(reference) = self.reference_config().filter(|r| r.customers_to_netsuite) else {
            self.audit(
                job,
                "skipped",
                Some(customer_id),
                "Customers are not synced to NetSuite (reference.customers_to_netsuite = false)"
                    .into(),
                None,
            )
            .await;
            return Ok(());
        };
        let id = parse_id(StripeIdKind::Customer, customer_id)?;
        // One writer per customer: an invoice resolving it at the same time finds the link.
        let _guard = self.inner.locks.lock(customer_id).await;
        let customer = self.inner.stripe.retrieve_customer(id.as_str()).await?;
        if customer.deleted {
            return self
                .record_deleted(job, "customer.deleted", customer_id)
                .await;
        }
        let posting = &self.inner.posting;
        let ns = &self.inner.netsuite;
        let store = &self.inner.store;
        let doc = customer_fields(&customer, &id, posting);
        let external_id = doc.external_id.clone();
        self.audit(
            job,
            "fetched",
            Some(customer_id),
            format!(
                "Fetched customer {customer_id} from Stripe: \"{}\" <{}>",
                doc.company_name,
                doc.email.as_deref().unwrap_or("no email")
            ),
            None,
        )
        .await;

        // A customer the NetSuite → Stripe sync made names its NetSuite customer: link it first,
        // so its webhook never creates a second one.
        if let Some(ns_customer) = customer
            .metadata
            .get("netsuite_customer_id")
            .and_then(|v| NetSuiteInternalId::parse(v).ok())
            && store.get_customer_link(customer_id).await?.is_none()
        {
            store
                .set_customer_link(customer_id, ns_customer.as_str(), "metadata")
                .await?;
        }
        let owner_is_netsuite = reference.customer_owner == Owner::Netsuite;
        let managed = managed_customer_fields(&doc, owner_is_netsuite);
        let prints = field_prints(&managed);
        let fingerprint = fingerprint_text(&prints);
        let kept = if owner_is_netsuite {
            " (name and email kept: reference.customer_owner = netsuite)"
        } else {
            ""
        };

        // Linked, and the connector knows what it last wrote there: compare with that instead of
        // reading NetSuite back. An unchanged customer costs no request; edits made directly in
        // NetSuite are not seen until the Stripe side changes (ARCHITECTURE.md).
        let link = store.get_customer_link_state(customer_id).await?;
        if let Some(link) = &link
            && let Some(stored) = link.fingerprint.as_deref().and_then(parse_fingerprint)
        {
            let ns_id = NetSuiteInternalId::parse(&link.netsuite_internal_id)
                .map_err(|e| PipelineError::Permanent(format!("stored customer link: {e}")))?;
            let changed = changed_since(&prints, &stored);
            if changed.is_empty() {
                self.audit(
                    job,
                    "customer_unchanged",
                    Some(customer_id),
                    format!(
                        "NetSuite customer {ns_id} already has what the connector last wrote for Stripe customer {customer_id} (NetSuite not read)"
                    ),
                    None,
                )
                .await;
                return Ok(());
            }
            let patch: serde_json::Map<String, Value> = managed
                .iter()
                .filter(|(k, _)| changed.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            match ns.patch("customer", &ns_id, Value::Object(patch)).await {
                Ok(()) => {
                    store
                        .set_customer_fingerprint(customer_id, ns_id.as_str(), &fingerprint)
                        .await?;
                    self.audit(
                        job,
                        "customer_updated",
                        Some(customer_id),
                        format!(
                            "NetSuite customer {ns_id} (linked by {}) updated from Stripe customer {customer_id}: {}{kept}",
                            link.source,
                            changed.join(", ")
                        ),
                        Some(json!({"netsuite_internal_id": ns_id.as_str(), "fields": changed})),
                    )
                    .await;
                    return Ok(());
                }
                // The linked record is gone: make ours again (below).
                Err(mlc_netsuite::NetSuiteError::NotFound { .. }) => {
                    return self
                        .create_customer_record(job, customer_id, &doc, &fingerprint)
                        .await;
                }
                Err(e) => return Err(e.into()),
            }
        }

        // Linked without a fingerprint (a link from before it was kept, or matched and never
        // written), or not linked: read the record once, compare, then store the fingerprint.
        let existing = match link {
            Some(link) => {
                let ns_id = NetSuiteInternalId::parse(&link.netsuite_internal_id)
                    .map_err(|e| PipelineError::Permanent(format!("stored customer link: {e}")))?;
                match ns.get("customer", &ns_id).await {
                    Ok(record) => Some((ns_id, record)),
                    // The linked record is gone: make ours again.
                    Err(mlc_netsuite::NetSuiteError::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            None => self.match_customer(&id, &doc).await?,
        };
        let Some((ns_id, record)) = existing else {
            return self
                .create_customer_record(job, customer_id, &doc, &fingerprint)
                .await;
        };

        // An existing record: only what changed (see `managed_customer_fields`).
        let ours = record
            .get("externalId")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case(external_id.as_str()));
        let body = Value::Object(managed.clone());
        let changed = changed_fields(&body, &record);
        if !changed.is_empty() {
            let patch: serde_json::Map<String, Value> = managed
                .iter()
                .filter(|(k, _)| changed.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ns.patch("customer", &ns_id, Value::Object(patch)).await?;
        }
        // Read (and now written where it differed): NetSuite holds these values.
        store
            .set_customer_fingerprint(customer_id, ns_id.as_str(), &fingerprint)
            .await?;
        if changed.is_empty() {
            self.audit(
                job,
                "customer_unchanged",
                Some(customer_id),
                format!("NetSuite customer {ns_id} already matches Stripe customer {customer_id}"),
                None,
            )
            .await;
            return Ok(());
        }
        self.audit(
            job,
            "customer_updated",
            Some(customer_id),
            format!(
                "NetSuite customer {ns_id} ({}) updated from Stripe customer {customer_id}: {}{kept}",
                if ours { "ours" } else { "matched" },
                changed.join(", ")
            ),
            Some(json!({"netsuite_internal_id": ns_id.as_str(), "fields": changed})),
        )
        .await;
        Ok(())
    }

    /// New in NetSuite: every field, address included, upserted by external ID; linked with
    /// the fingerprint of what was written.
    async fn create_customer_record(
        &self,
        job: &Job,
        customer_id: &str,
        doc: &CustomerDoc,
        fingerprint: &str,
    ) -> Result<(), PipelineError> {
        let ns = &self.inner.netsuite;
        let external_id = &doc.external_id;
        let returned = ns
            .upsert_by_external_id("customer", external_id, doc.to_json())
            .await?;
        let ns_id = match returned {
            Some(i) => i,
            None => ns
                .get_by_external_id("customer", external_id)
                .await?
                .as_ref()
                .and_then(|r| r.get("id"))
                .and_then(internal_id)
                .ok_or_else(|| {
                    PipelineError::NetSuite(mlc_netsuite::NetSuiteError::UnexpectedResponse {
                        message: format!("customer {external_id} not found after its upsert"),
                        ambiguous: true,
                    })
                })?,
        };
        self.inner
            .store
            .set_customer_link_written(customer_id, ns_id.as_str(), "created", fingerprint)
            .await?;
        self.audit(
            job,
            "customer_upserted",
            Some(customer_id),
            format!("NetSuite customer {ns_id} created for Stripe customer {customer_id}"),
            Some(json!({"netsuite_internal_id": ns_id.as_str(), "external_id": external_id.as_str()})),
        )
        .await;
        Ok(())
    }

    /// A NetSuite customer matching the Stripe customer by external ID, custom field, or (when
    /// configured and unambiguous) email; linked when found.
    async fn match_customer(
        &self,
        id: &StripeId,
        doc: &CustomerDoc,
    ) -> Result<Option<(NetSuiteInternalId, Value)>, PipelineError> {
        let Some((ns_id, method)) = self.find_customer(id, doc.email.as_deref()).await? else {
            return Ok(None);
        };
        let source = format!("{method:?}");
        let record = self.inner.netsuite.get("customer", &ns_id).await?;
        self.inner
            .store
            .set_customer_link(id.as_str(), ns_id.as_str(), &source)
            .await?;
        Ok(Some((ns_id, record)))
    }

    /// `product.created` / `product.updated`: the matched item gets the product's name and
    /// description; a product without one gets an item when `auto_create_items`, and the events
    /// waiting for it are released.
    pub(super) async fn sync_product(
        &self,
        job: &Job,
        product_id: &str,
    ) -> Result<(), PipelineError> {
        let Some(reference) = self.reference_config() else {
            self.audit(
                job,
                "skipped",
                Some(product_id),
                "Products are not synced to NetSuite on this instance".into(),
                None,
            )
            .await;
            return Ok(());
        };
        let id = parse_id(StripeIdKind::Product, product_id)?;
        // One writer per product: two events of one product must not create two items.
        let _guard = self.inner.locks.lock(product_id).await;
        let product = self.inner.stripe.retrieve_product(id.as_str()).await?;
        if product.deleted {
            return self
                .record_deleted(job, "product.deleted", product_id)
                .await;
        }
        let posting = &self.inner.posting;
        let doc = item_fields(&product, &id, posting, reference);
        // A product the NetSuite → Stripe sync made names its item: link it, never create a twin
        // (its webhook can arrive before the sync wrote the product ID back into the item).
        if let Some(item) = product
            .metadata
            .get("netsuite_item_id")
            .and_then(|v| NetSuiteInternalId::parse(v).ok())
            && self
                .inner
                .store
                .get_item_links(&[product_id.to_string()])
                .await?
                .is_empty()
        {
            self.inner
                .store
                .set_item_link(product_id, item.as_str(), "metadata")
                .await?;
        }
        let wanted: BTreeSet<String> = [product_id.to_string()].into();
        let (found, _) = self.resolve_items(&wanted).await?;
        if let Some(item) = found.get(product_id) {
            if !reference.update_item_names {
                self.audit(
                    job,
                    "item_found",
                    Some(product_id),
                    format!(
                        "Stripe product {product_id} is NetSuite item {item}; names are not synced (reference.update_item_names = false)"
                    ),
                    None,
                )
                .await;
                return Ok(());
            }
            return self.update_item_names(job, product_id, item, &doc).await;
        }

        if !reference.auto_create_items {
            if let Err(e) = self
                .inner
                .store
                .note_unmapped_product(
                    product_id,
                    product.name.as_deref(),
                    product_id,
                    job.event_id.as_deref(),
                )
                .await
            {
                tracing::error!("cannot record unmapped product {product_id}: {e}");
            }
            self.audit(
                job,
                "item_missing",
                Some(product_id),
                format!(
                    "Stripe product {product_id} (\"{}\") has no NetSuite item: waiting for a NetSuite item \
                     (`ml-connector mappings set {product_id} <item id>`, or reference.auto_create_items)",
                    doc.display_name
                ),
                None,
            )
            .await;
            return Ok(());
        }

        let (item, outcome) = self
            .create_record(job, &reference.item_type, &doc.external_id, doc.to_json())
            .await?;
        self.inner
            .store
            .set_item_link(product_id, item.as_str(), "created")
            .await?;
        let released = self.inner.store.wake_waiting_jobs(product_id).await?;
        self.audit(
            job,
            "item_created",
            Some(product_id),
            format!(
                "NetSuite {} {item} (\"{}\") created for Stripe product {product_id} ({outcome:?}); \
                 {released} waiting job(s) released",
                reference.item_type, doc.item_id
            ),
            Some(json!({
                "netsuite_internal_id": item.as_str(),
                "external_id": doc.external_id.as_str(),
                "released": released,
            })),
        )
        .await;
        Ok(())
    }

    /// PATCHes the item's `displayName` and `description` when they differ from the product's.
    async fn update_item_names(
        &self,
        job: &Job,
        product_id: &str,
        item: &NetSuiteInternalId,
        doc: &ItemDoc,
    ) -> Result<(), PipelineError> {
        let ns = &self.inner.netsuite;
        let rows = ns
            .suiteql(
                "SELECT id, itemtype, displayname, description FROM item WHERE id = ?",
                vec![item.to_string()],
                1,
                0,
            )
            .await?
            .items;
        let Some(row) = rows.first() else {
            return Err(PipelineError::NeedsPerson(format!(
                "NetSuite item {item} linked to Stripe product {product_id} does not exist: \
                 run `ml-connector mappings set {product_id} <item id>`"
            )));
        };
        let record_type = match row.get("itemtype").and_then(Value::as_str) {
            Some("Service") => "serviceSaleItem",
            Some("NonInvtPart") => "nonInventorySaleItem",
            other => {
                self.audit(
                    job,
                    "skipped",
                    Some(product_id),
                    format!(
                        "NetSuite item {item} is of type {}: its names are not updated",
                        other.unwrap_or("unknown")
                    ),
                    None,
                )
                .await;
                return Ok(());
            }
        };
        let current = json!({
            "displayName": row.get("displayname").cloned().unwrap_or(Value::Null),
            "description": row.get("description").cloned().unwrap_or(Value::Null),
        });
        let wanted = json!({
            "displayName": doc.display_name,
            "description": doc.description.clone().unwrap_or_default(),
        });
        let changed = changed_fields(&wanted, &current);
        if changed.is_empty() {
            self.audit(
                job,
                "item_unchanged",
                Some(product_id),
                format!(
                    "NetSuite item {item} already has the name and description of {product_id}"
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let patch: serde_json::Map<String, Value> = wanted
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| changed.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        ns.patch(record_type, item, Value::Object(patch)).await?;
        self.audit(
            job,
            "item_updated",
            Some(product_id),
            format!(
                "NetSuite item {item} updated from Stripe product {product_id}: {}",
                changed.join(", ")
            ),
            Some(json!({"netsuite_internal_id": item.as_str(), "fields": changed})),
        )
        .await;
        Ok(())
    }

    /// `customer.deleted` / `product.deleted`: NetSuite keeps its record (invoices refer to it);
    /// the deletion is only audited.
    pub(super) async fn record_deleted(
        &self,
        job: &Job,
        event_type: &str,
        object_id: &str,
    ) -> Result<(), PipelineError> {
        let (link, what) = if event_type.starts_with("customer") {
            (
                self.inner.store.get_customer_link(object_id).await?,
                "customer",
            )
        } else {
            let links = self
                .inner
                .store
                .get_item_links(&[object_id.to_string()])
                .await?;
            (links.into_iter().next().map(|(_, i)| i), "item")
        };
        let kept = match &link {
            Some(id) => format!("NetSuite {what} {id} kept"),
            None => "NetSuite record kept".to_string(),
        };
        self.audit(
            job,
            "deleted_in_stripe",
            Some(object_id),
            format!("{object_id} deleted in Stripe; {kept}"),
            Some(json!({"netsuite_internal_id": link})),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_fields_compares_references_by_id_and_ignores_equal_values() {
        let body = json!({"companyName": "Acme", "email": "a@x.test", "subsidiary": {"id": "1"}, "currency": {"id": "2"}});
        let record = json!({"companyName": "Acme", "email": "old@x.test", "subsidiary": {"id": "1", "refName": "HQ"}});
        assert_eq!(changed_fields(&body, &record), vec!["currency", "email"]);
    }

    #[test]
    fn fingerprints_name_the_fields_that_changed_since_the_last_write() {
        let fields = |v: Value| v.as_object().cloned().unwrap();
        let written = field_prints(&fields(
            json!({"companyName": "Acme", "email": "a@x.test", "custentity_x": {"b": 1, "a": [2]}}),
        ));
        let stored = parse_fingerprint(&fingerprint_text(&written)).expect("round trip");
        assert_eq!(stored, written);
        // Same values (keys in another order): nothing changed.
        let same = field_prints(&fields(
            json!({"custentity_x": {"a": [2], "b": 1}, "email": "a@x.test", "companyName": "Acme"}),
        ));
        assert!(changed_since(&same, &stored).is_empty());
        // A changed value and a field never written are both to write.
        let now = field_prints(&fields(
            json!({"companyName": "Acme", "email": "b@x.test", "custentity_x": {"a": [2], "b": 1}, "phone": "1"}),
        ));
        assert_eq!(changed_since(&now, &stored), vec!["email", "phone"]);
        // Values are not kept, only their digests.
        assert!(!fingerprint_text(&written).contains("a@x.test"));
        // Another format version reads as unknown (the record is then read once).
        assert_eq!(parse_fingerprint("v0:{}"), None);
        assert_eq!(parse_fingerprint("garbage"), None);
    }

    #[test]
    fn managed_customer_fields_leave_out_what_is_never_updated() {
        let doc = CustomerDoc {
            external_id: ExternalId::parse("stripe_cus_1").unwrap(),
            company_name: "Acme".into(),
            email: Some("a@x.test".into()),
            subsidiary: NetSuiteInternalId::parse("1").ok(),
            currency: NetSuiteInternalId::parse("2").ok(),
            custom_fields: vec![("custentity_stripe_customer_id".into(), json!("cus_1"))],
            address: Some(AddressDoc {
                addr1: "1 Main St".into(),
                city: "Springfield".into(),
                zip: "12345".into(),
                country: "US".into(),
                ..Default::default()
            }),
        };
        let keys = |owner_is_netsuite| {
            let mut k: Vec<String> = managed_customer_fields(&doc, owner_is_netsuite)
                .keys()
                .cloned()
                .collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(false),
            ["companyName", "custentity_stripe_customer_id", "email"]
        );
        assert_eq!(keys(true), ["custentity_stripe_customer_id"]);
    }

    #[test]
    fn an_empty_description_equals_a_missing_one() {
        let body = json!({"description": ""});
        assert!(changed_fields(&body, &json!({})).is_empty());
    }

    #[test]
    fn only_a_simple_address_is_sent() {
        let full = mlc_stripe::models::Address {
            line1: Some("1 Main St".into()),
            city: Some("Springfield".into()),
            postal_code: Some("12345".into()),
            country: Some("us".into()),
            ..Default::default()
        };
        let mut c = Customer {
            address: Some(full.clone()),
            ..Default::default()
        };
        let a = simple_address(&c).expect("simple address");
        assert_eq!((a.addr1.as_str(), a.country.as_str()), ("1 Main St", "US"));
        c.address = Some(mlc_stripe::models::Address {
            postal_code: None,
            ..full
        });
        assert_eq!(simple_address(&c), None);
    }
}
