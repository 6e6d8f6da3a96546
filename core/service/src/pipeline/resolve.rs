//! Finding the NetSuite customer, items and currency of a Stripe sale: the connector's cached
//! links first, then NetSuite (by external ID, custom field or email), then creating the customer
//! when configured. An item is never created here: an unmapped product waits for a person.

use std::collections::{BTreeMap, BTreeSet};

use mlc_core::{Currency, ExternalId, NetSuiteInternalId, StripeId};
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

/// At most this many customers per shared lookup query (three conditions each).
const LOOKUP_BATCH: usize = 20;
/// How long a shared lookup may wait for company while NetSuite is busy.
const LOOKUP_MAX_HOLD: std::time::Duration = std::time::Duration::from_secs(1);

/// One customer to look up.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    customer_id: StripeId,
    email: Option<String>,
}

/// Lookups waiting for a shared SuiteQL query, and whether a task is running them.
/// A lookup starts at once when none is running and NetSuite has a free slot; those arriving
/// while one is in flight (NetSuite's latency, a wait for a slot) go together in the next query.
/// While NetSuite is busy (at most one slot free), a query is held up to [`LOOKUP_MAX_HOLD`]
/// for more to join: it would wait for a slot anyway, and each request saved is throughput for
/// everyone.
pub(super) struct Shared<W, A> {
    queue: std::sync::Mutex<SharedQueue<W, A>>,
}

/// `Err(())`: the shared query failed; the waiter asks alone.
type Reply<A> = tokio::sync::oneshot::Sender<Result<A, ()>>;

struct SharedQueue<W, A> {
    pending: Vec<(W, Reply<A>)>,
    running: bool,
}

impl<W, A> Default for Shared<W, A> {
    fn default() -> Self {
        Shared {
            queue: std::sync::Mutex::new(SharedQueue {
                pending: Vec::new(),
                running: false,
            }),
        }
    }
}

impl<W, A> Shared<W, A> {
    fn lock(&self) -> std::sync::MutexGuard<'_, SharedQueue<W, A>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a lookup; `true` when no task runs them and the caller must start one.
    fn enqueue(&self, w: W) -> (tokio::sync::oneshot::Receiver<Result<A, ()>>, bool) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let mut q = self.lock();
        q.pending.push((w, reply));
        (answer, !std::mem::replace(&mut q.running, true))
    }

    fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// The next batch; `None` (and the runner marked stopped) when nothing is left.
    fn next_batch(&self) -> Option<Vec<(W, Reply<A>)>> {
        let mut q = self.lock();
        if q.pending.is_empty() {
            q.running = false;
            return None;
        }
        let n = q.pending.len().min(LOOKUP_BATCH);
        Some(q.pending.drain(..n).collect())
    }
}

/// NetSuite counts as busy with every slot but at most one in use (and at least one in use).
fn busy(in_flight: usize, limit: usize) -> bool {
    in_flight > 0 && in_flight + 1 >= limit
}

/// The pipeline's shared lookups: customers (by external ID, custom field, email) and items.
#[derive(Default)]
pub(super) struct Lookups {
    customers: Shared<Wanted, Option<(NetSuiteInternalId, CustomerMatch)>>,
    /// The products of one caller → the (product, item) pairs found for them.
    items: Shared<Vec<String>, Vec<(String, NetSuiteInternalId)>>,
}

/// The match of one customer among the rows of a (shared) lookup, by the configured order.
fn pick_customer(
    posting: &crate::config::PostingConfig,
    rows: &[mlc_netsuite::SuiteQlRow],
    w: &Wanted,
) -> Option<(NetSuiteInternalId, CustomerMatch)> {
    let external_id = ExternalId::for_stripe(&w.customer_id);
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
                    text(r, &posting.customer_field) == w.customer_id.as_str()
                }
                CustomerMatch::Email => w
                    .email
                    .as_deref()
                    .is_some_and(|e| text(r, "email").eq_ignore_ascii_case(e)),
            })
            .collect();
        let unambiguous =
            matching.len() == 1 || (matching.len() > 1 && *method != CustomerMatch::Email);
        if unambiguous && let Some(id) = matching[0].get("id").and_then(internal_id) {
            return Some((id, *method));
        }
    }
    None
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
        // The same fields `customer.created` writes, so its fingerprint matches and that event
        // costs nothing; the invoice's currency, and no address (left to customer events).
        let mut doc = super::reference::customer_fields(&customer, customer_id, posting);
        doc.currency = currency;
        doc.address = None;
        let owner_is_netsuite = self
            .inner
            .reference
            .as_ref()
            .is_some_and(|r| r.customer_owner == crate::config::Owner::Netsuite);
        let fingerprint = super::reference::fingerprint_text(&super::reference::field_prints(
            &super::reference::managed_customer_fields(&doc, owner_is_netsuite),
        ));
        let (id, outcome) = self
            .create_record(job, "customer", &external_id, doc.to_json())
            .await?;
        if outcome == mlc_netsuite::CreateOutcome::Created {
            store
                .set_customer_link_written(
                    customer_id.as_str(),
                    id.as_str(),
                    "created",
                    &fingerprint,
                )
                .await?;
        } else {
            // Someone else's write (an earlier attempt, another instance): what it holds is not
            // known, so a later customer event reads it once.
            store
                .set_customer_link(customer_id.as_str(), id.as_str(), "created")
                .await?;
        }
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
    /// case); the configured order decides between the rows. Two NetSuite customers with one
    /// email are ambiguous and match nothing.
    ///
    /// Lookups made at the same time share one SuiteQL query ([`Shared`]): when
    /// NetSuite is busy, the customers of a burst cost one request between them, not one each.
    pub(super) async fn find_customer(
        &self,
        customer_id: &StripeId,
        email: Option<&str>,
    ) -> Result<Option<(NetSuiteInternalId, CustomerMatch)>, PipelineError> {
        let wanted = Wanted {
            customer_id: customer_id.clone(),
            email: email
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
        };
        let (answer, lead) = self.inner.lookups.customers.enqueue(wanted.clone());
        if lead {
            // A task of its own, so a cancelled job never strands the lookups queued behind it.
            let pipeline = self.clone();
            tokio::spawn(async move { pipeline.run_customer_lookups().await });
        }
        match answer.await {
            Ok(Ok(found)) => Ok(found),
            // The shared query failed (or its task died): this lookup asks alone, so its error
            // is its own and classified as usual.
            Ok(Err(())) | Err(_) => self
                .find_customers(std::slice::from_ref(&wanted))
                .await
                .map(|mut found| found.pop().flatten()),
        }
    }

    /// NetSuite busy (at most one slot free, which the other requests are about to take): a
    /// query would wait for a slot anyway, so it is held a little for more lookups to join (at
    /// most LOOKUP_MAX_HOLD, or a full batch).
    async fn hold_while_saturated(&self, pending: impl Fn() -> usize) {
        let budget = self.inner.netsuite.budget();
        let held = tokio::time::Instant::now();
        while held.elapsed() < LOOKUP_MAX_HOLD
            && busy(budget.in_flight(), budget.current_limit())
            && pending() < LOOKUP_BATCH
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Runs the queued customer lookups, a batch per query, until none is left.
    async fn run_customer_lookups(&self) {
        let shared = &self.inner.lookups.customers;
        loop {
            self.hold_while_saturated(|| shared.pending()).await;
            let Some(batch) = shared.next_batch() else {
                return;
            };
            let wanted: Vec<Wanted> = batch.iter().map(|(w, _)| w.clone()).collect();
            match self.find_customers(&wanted).await {
                Ok(found) => {
                    for ((_, reply), one) in batch.into_iter().zip(found) {
                        // A waiter that went away no longer needs its answer.
                        let _ = reply.send(Ok(one));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, customers = batch.len(), "shared customer lookup failed; each asks alone");
                    for (_, reply) in batch {
                        let _ = reply.send(Err(()));
                    }
                }
            }
        }
    }

    /// Runs the queued item lookups, a batch per query, until none is left.
    async fn run_item_lookups(&self) {
        let shared = &self.inner.lookups.items;
        loop {
            self.hold_while_saturated(|| shared.pending()).await;
            let Some(batch) = shared.next_batch() else {
                return;
            };
            let all: BTreeSet<String> = batch.iter().flat_map(|(w, _)| w.iter().cloned()).collect();
            match self.find_items(&all.into_iter().collect::<Vec<_>>()).await {
                Ok(found) => {
                    for (wanted, reply) in batch {
                        let mine = found
                            .iter()
                            .filter(|(p, _)| wanted.contains(p))
                            .cloned()
                            .collect();
                        let _ = reply.send(Ok(mine));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, callers = batch.len(), "shared item lookup failed; each asks alone");
                    for (_, reply) in batch {
                        let _ = reply.send(Err(()));
                    }
                }
            }
        }
    }

    /// One SuiteQL query for these products' items (`posting.item_match`): (product, item).
    async fn find_items(
        &self,
        products: &[String],
    ) -> Result<Vec<(String, NetSuiteInternalId)>, PipelineError> {
        let posting = &self.inner.posting;
        let column = match posting.item_match {
            ItemMatch::CustomField => posting.item_field.as_str(),
            ItemMatch::ExternalId => "externalid",
        };
        let placeholders = vec!["?"; products.len()].join(", ");
        let q = format!("SELECT id, {column} FROM item WHERE {column} IN ({placeholders})");
        let rows = self
            .inner
            .netsuite
            .suiteql_all(&q, products.to_vec())
            .await?;
        let mut found = Vec::new();
        for row in rows {
            let (Some(id), Some(product)) = (
                row.get("id").and_then(internal_id),
                row.get(column).and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            // External IDs compare case-insensitively in NetSuite; map back to Stripe's case.
            if let Some(p) = products.iter().find(|m| m.eq_ignore_ascii_case(product)) {
                found.push((p.clone(), id));
            }
        }
        Ok(found)
    }

    /// One SuiteQL query for these customers; the match of each, in order.
    async fn find_customers(
        &self,
        wanted: &[Wanted],
    ) -> Result<Vec<Option<(NetSuiteInternalId, CustomerMatch)>>, PipelineError> {
        let posting = &self.inner.posting;
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let list = |n: usize| vec!["?"; n].join(", ");
        for method in &posting.customer_match {
            match method {
                CustomerMatch::ExternalId => {
                    conditions.push(format!("externalid IN ({})", list(wanted.len())));
                    params.extend(
                        wanted
                            .iter()
                            .map(|w| ExternalId::for_stripe(&w.customer_id).to_string()),
                    );
                }
                CustomerMatch::CustomField => {
                    conditions.push(format!(
                        "{} IN ({})",
                        posting.customer_field,
                        list(wanted.len())
                    ));
                    params.extend(wanted.iter().map(|w| w.customer_id.to_string()));
                }
                CustomerMatch::Email => {
                    // Emails are compared without case, as people type them differently.
                    let emails: BTreeSet<String> = wanted
                        .iter()
                        .filter_map(|w| w.email.as_deref())
                        .map(str::to_lowercase)
                        .collect();
                    for e in emails {
                        conditions.push("LOWER(email) = ?".to_string());
                        params.push(e);
                    }
                }
            }
        }
        if conditions.is_empty() {
            return Ok(vec![None; wanted.len()]);
        }
        let q = format!(
            "SELECT id, externalid, {field}, email FROM customer WHERE {} ORDER BY id",
            conditions.join(" OR "),
            field = posting.customer_field
        );
        let rows = self.inner.netsuite.suiteql_all(&q, params).await?;
        Ok(wanted
            .iter()
            .map(|w| pick_customer(posting, &rows, w))
            .collect())
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
            // Shared with the other lookups made at the same time (see `Shared`).
            let (answer, lead) = self.inner.lookups.items.enqueue(missing.clone());
            if lead {
                let pipeline = self.clone();
                tokio::spawn(async move { pipeline.run_item_lookups().await });
            }
            let items = match answer.await {
                Ok(Ok(items)) => items,
                Ok(Err(())) | Err(_) => self.find_items(&missing).await?,
            };
            let column = match self.inner.posting.item_match {
                ItemMatch::CustomField => self.inner.posting.item_field.as_str(),
                ItemMatch::ExternalId => "externalid",
            };
            for (p, id) in items {
                store.set_item_link(&p, id.as_str(), column).await?;
                found.insert(p, id);
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

#[cfg(test)]
mod tests {
    use super::busy;

    #[test]
    fn netsuite_is_busy_with_at_most_one_slot_free_and_something_in_flight() {
        assert!(!busy(0, 5), "idle: a lookup goes at once");
        assert!(!busy(3, 5));
        assert!(busy(4, 5) && busy(5, 5));
        assert!(!busy(0, 1), "a one-slot account at rest is not busy");
        assert!(busy(1, 1));
    }
}
