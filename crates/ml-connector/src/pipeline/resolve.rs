//! Finding the NetSuite customer, items and currency of a Stripe sale: the connector's cached
//! links first, then NetSuite (by external ID, custom field or email), then creating the customer
//! when configured. An item is never created here: an unmapped product waits for a person.

use std::collections::{BTreeMap, BTreeSet};

use mlc_core::{Currency, ExternalId, NetSuiteInternalId, StripeId};
use mlc_netsuite::documents::CustomerDoc;
use mlc_store::Job;
use mlc_stripe::models::Customer;
use serde_json::json;

use super::{Pipeline, PipelineError};
use crate::config::{CustomerMatch, ItemMatch};

fn internal_id(value: &serde_json::Value) -> Option<NetSuiteInternalId> {
    match value {
        serde_json::Value::String(s) => NetSuiteInternalId::parse(s).ok(),
        serde_json::Value::Number(n) => NetSuiteInternalId::parse(&n.to_string()).ok(),
        _ => None,
    }
}

impl Pipeline {
    /// The NetSuite currency of a Stripe currency, from `posting.currencies`.
    pub(super) fn currency_id(
        &self,
        currency: Currency,
    ) -> Result<Option<NetSuiteInternalId>, PipelineError> {
        let map = &self.inner.posting.currencies;
        if map.is_empty() {
            // Single-currency accounts: NetSuite uses the customer's currency.
            return Ok(None);
        }
        map.get(&currency).cloned().map(Some).ok_or_else(|| {
            PipelineError::NeedsPerson(format!(
                "no NetSuite currency is configured for {currency}: add \"{}=<internal id>\" to posting.currencies",
                currency.iso_code()
            ))
        })
    }

    /// The NetSuite customer of a Stripe customer, creating it when allowed.
    pub(super) async fn resolve_customer(
        &self,
        job: &Job,
        customer_id: &StripeId,
        expanded: Option<&Customer>,
        currency: Option<NetSuiteInternalId>,
    ) -> Result<NetSuiteInternalId, PipelineError> {
        let store = &self.inner.store;
        if let Some(id) = store.get_customer_link(customer_id.as_str()).await? {
            return NetSuiteInternalId::parse(&id)
                .map_err(|e| PipelineError::Permanent(format!("stored customer link: {e}")));
        }
        // One resolution per customer at a time; the second job then finds the link.
        let _guard = self.inner.locks.lock(customer_id.as_str()).await;
        if let Some(id) = store.get_customer_link(customer_id.as_str()).await? {
            return NetSuiteInternalId::parse(&id)
                .map_err(|e| PipelineError::Permanent(format!("stored customer link: {e}")));
        }
        let posting = &self.inner.posting;
        let external_id = ExternalId::for_stripe(customer_id);
        let mut fetched: Option<Customer> = None;
        let email = if posting.customer_match.contains(&CustomerMatch::Email) {
            let known = match expanded {
                Some(c) => c.clone(),
                None => {
                    let c = self
                        .inner
                        .stripe
                        .retrieve_customer(customer_id.as_str())
                        .await?;
                    fetched = Some(c.clone());
                    c
                }
            };
            known.email.filter(|e| !e.trim().is_empty())
        } else {
            None
        };
        if let Some((id, method)) = self.find_customer(customer_id, email.as_deref()).await? {
            store
                .set_customer_link(customer_id.as_str(), id.as_str(), &format!("{method:?}"))
                .await?;
            return Ok(id);
        }
        if !posting.create_customers {
            return Err(PipelineError::NeedsPerson(format!(
                "no NetSuite customer matches Stripe customer {customer_id}: create one with external ID {external_id} \
                 (or set {} = {customer_id}), or enable posting.create_customers",
                posting.customer_field
            )));
        }
        let customer = match (expanded, fetched) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) => c,
            (None, None) => {
                self.inner
                    .stripe
                    .retrieve_customer(customer_id.as_str())
                    .await?
            }
        };
        let name = customer
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| customer.email.clone())
            .unwrap_or_else(|| customer_id.to_string());
        let doc = CustomerDoc {
            external_id: external_id.clone(),
            company_name: name,
            email: customer.email.clone(),
            subsidiary: posting.subsidiary.clone(),
            currency,
            custom_fields: vec![(posting.customer_field.clone(), json!(customer_id.as_str()))],
            address: None,
        };
        let (id, outcome) = self
            .create_record(job, "customer", &external_id, doc.to_json())
            .await?;
        store
            .set_customer_link(customer_id.as_str(), id.as_str(), "created")
            .await?;
        self.audit(
            job,
            "customer_created",
            Some(customer_id.as_str()),
            format!("NetSuite customer {id} for Stripe customer {customer_id} ({outcome:?})"),
            Some(json!({"netsuite_internal_id": id.as_str(), "external_id": external_id.as_str()})),
        )
        .await;
        Ok(id)
    }

    /// The NetSuite customer matching a Stripe customer by every configured way
    /// (`posting.customer_match`: external ID `stripe_<cus_…>`, custom field, email without
    /// case), in one SuiteQL query; the configured order decides between the rows. Two NetSuite
    /// customers with one email are ambiguous and match nothing.
    pub(super) async fn find_customer(
        &self,
        customer_id: &StripeId,
        email: Option<&str>,
    ) -> Result<Option<(NetSuiteInternalId, CustomerMatch)>, PipelineError> {
        let posting = &self.inner.posting;
        let external_id = ExternalId::for_stripe(customer_id);
        let email = email.map(str::trim).filter(|e| !e.is_empty());
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        for method in &posting.customer_match {
            match method {
                CustomerMatch::ExternalId => {
                    conditions.push("externalid = ?".to_string());
                    params.push(external_id.to_string());
                }
                CustomerMatch::CustomField => {
                    conditions.push(format!("{} = ?", posting.customer_field));
                    params.push(customer_id.to_string());
                }
                CustomerMatch::Email => {
                    if let Some(e) = email {
                        // Emails are compared without case, as people type them differently.
                        conditions.push("LOWER(email) = ?".to_string());
                        params.push(e.to_lowercase());
                    }
                }
            }
        }
        if conditions.is_empty() {
            return Ok(None);
        }
        let q = format!(
            "SELECT id, externalid, {field}, email FROM customer WHERE {} ORDER BY id",
            conditions.join(" OR "),
            field = posting.customer_field
        );
        let rows = self.inner.netsuite.suiteql(&q, params, 50, 0).await?.items;
        let text = |row: &mlc_netsuite::SuiteQlRow, col: &str| {
            row.get(col)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        for method in &posting.customer_match {
            let matching: Vec<&mlc_netsuite::SuiteQlRow> = rows
                .iter()
                .filter(|r| match method {
                    CustomerMatch::ExternalId => {
                        text(r, "externalid").eq_ignore_ascii_case(external_id.as_str())
                    }
                    CustomerMatch::CustomField => {
                        text(r, &posting.customer_field) == customer_id.as_str()
                    }
                    CustomerMatch::Email => {
                        email.is_some_and(|e| text(r, "email").eq_ignore_ascii_case(e))
                    }
                })
                .collect();
            let unambiguous =
                matching.len() == 1 || (matching.len() > 1 && *method != CustomerMatch::Email);
            if unambiguous && let Some(id) = matching[0].get("id").and_then(internal_id) {
                return Ok(Some((id, *method)));
            }
        }
        Ok(None)
    }

    /// NetSuite items for Stripe products: cached links, then one SuiteQL query for the rest.
    /// Returns the found map and the products without an item.
    pub(super) async fn resolve_items(
        &self,
        products: &BTreeSet<String>,
    ) -> Result<(BTreeMap<String, NetSuiteInternalId>, Vec<String>), PipelineError> {
        let store = &self.inner.store;
        let mut found = BTreeMap::new();
        let wanted: Vec<String> = products.iter().cloned().collect();
        for (product, item) in store.get_item_links(&wanted).await? {
            if let Ok(id) = NetSuiteInternalId::parse(&item) {
                found.insert(product, id);
            }
        }
        let missing: Vec<String> = wanted
            .iter()
            .filter(|p| !found.contains_key(*p))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let posting = &self.inner.posting;
            let column = match posting.item_match {
                ItemMatch::CustomField => posting.item_field.as_str(),
                ItemMatch::ExternalId => "externalid",
            };
            let placeholders = vec!["?"; missing.len()].join(", ");
            let q = format!("SELECT id, {column} FROM item WHERE {column} IN ({placeholders})");
            let rows = self.inner.netsuite.suiteql_all(&q, missing.clone()).await?;
            for row in rows {
                let (Some(id), Some(product)) = (
                    row.get("id").and_then(internal_id),
                    row.get(column).and_then(|v| v.as_str()),
                ) else {
                    continue;
                };
                // External IDs compare case-insensitively in NetSuite; map back to Stripe's case.
                if let Some(p) = missing.iter().find(|m| m.eq_ignore_ascii_case(product)) {
                    store.set_item_link(p, id.as_str(), column).await?;
                    found.insert(p.clone(), id);
                }
            }
        }
        let unmapped = wanted
            .into_iter()
            .filter(|p| !found.contains_key(p))
            .collect();
        Ok((found, unmapped))
    }

    /// Turns unmapped products into a message that names them and says what to do, and records
    /// them so `mappings unmapped` can list them.
    pub(super) async fn unmapped_error(
        &self,
        job: &Job,
        object_id: &str,
        unmapped: &[String],
    ) -> PipelineError {
        // A mapping set (or an item created) while this run looked: the wake-up it sent has
        // already passed, so run again soon rather than wait for the unmapped-retry delay.
        if let Ok(links) = self.inner.store.get_item_links(unmapped).await
            && links.len() == unmapped.len()
        {
            return PipelineError::Again(format!(
                "the NetSuite item of {} was mapped while this event was processed",
                unmapped.join(", ")
            ));
        }
        let mut named = Vec::new();
        for product in unmapped {
            let known = self
                .inner
                .store
                .unmapped_product_name(product)
                .await
                .ok()
                .flatten();
            let name = match known {
                Some(n) => Some(n),
                None => self
                    .inner
                    .stripe
                    .retrieve_product(product)
                    .await
                    .ok()
                    .and_then(|p| p.name),
            };
            if let Err(e) = self
                .inner
                .store
                .note_unmapped_product(product, name.as_deref(), object_id, job.event_id.as_deref())
                .await
            {
                tracing::error!("cannot record unmapped product {product}: {e}");
            }
            named.push(match name {
                Some(n) => format!("{product} (\"{n}\")"),
                None => product.clone(),
            });
        }
        let field = match self.inner.posting.item_match {
            ItemMatch::CustomField => format!("{} = <product ID>", self.inner.posting.item_field),
            ItemMatch::ExternalId => "external ID = <product ID>".to_string(),
        };
        PipelineError::Unmapped(format!(
            "unmapped Stripe product {}: {object_id} waits until a NetSuite item has {field}, or run \
             `ml-connector mappings set <product ID> <item internal ID>`; it then posts by itself",
            named.join(", ")
        ))
    }
}
