//! Onboarding's runs over the last days of a connection's Stripe history, each one job of the
//! connection (it runs on a draft connection too):
//!
//! - **the dry run** ("see if we fit"): every invoice and standalone charge of the window goes
//!   through the posting steps that only read (the customer and item lookups, the pure
//!   mapping), and what would post is added up per currency, net of Stripe's fees, beside what
//!   stops it (a product without an item, a customer without a match, a missing currency).
//!   Nothing is written to NetSuite; the report is stored on the run.
//! - **the backfill** (going live): every invoice and charge of the window is queued as an event
//!   of its own (`evt_backfill_<object>`), posted as a live one is. The external IDs come from
//!   the Stripe objects, so a backfilled invoice and its late webhook are one NetSuite record.
//!
//! A run that fails on something transient (Stripe rate limit, an outage) is retried from the
//! start by the schedule; the counters start over with it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use mlc_core::{Classify as _, Currency, Money, StripeId};
use mlc_store::{HistoryRun, HistoryRunKind, Job, JobOutcome, NewEvent, NewJob, RecordOutcome};
use mlc_stripe::models::{Charge, Expandable, Invoice};

use mlc_stripe::{ChargeFacts, InvoiceFacts};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::mapping::{self, Resolved};
use super::post::ChargeInvoice;
use super::{PROCESS_EVENT, Pipeline, PipelineError};
use crate::config::{FeeMode, InvoiceTrigger};

/// Progress is written at most every this many objects.
const PROGRESS_EVERY: i64 = 10;

/// One currency's sales that would post.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WouldPost {
    pub count: i64,
    pub gross_minor: i64,
    pub fees_minor: i64,
    pub net_minor: i64,
}

/// Sales per currency (minor units).
pub type Amounts = BTreeMap<Currency, i64>;

/// A product without a NetSuite item, and the sales that wait for it.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnmappedProductReport {
    pub name: Option<String>,
    pub sales: i64,
    pub amounts: Amounts,
}

/// A Stripe customer without a NetSuite customer, and their sales.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CustomerReport {
    pub name: Option<String>,
    pub email: Option<String>,
    pub sales: i64,
    pub amounts: Amounts,
    /// `posting.create_customers` is on: the first posting creates them (they do not block).
    pub will_be_created: bool,
}

/// What a dry run found (stored as JSON on the run).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DryRunReport {
    pub would_post: BTreeMap<Currency, WouldPost>,
    pub unmapped_products: BTreeMap<String, UnmappedProductReport>,
    pub customers_without_match: BTreeMap<String, CustomerReport>,
    /// Other things a person must fix, by Stripe object.
    pub problems: BTreeMap<String, String>,
    /// Invoices and charges looked at, and those that post nothing (unpaid invoices, charges
    /// that paid an invoice, failed charges).
    pub scanned: i64,
    pub not_posted: i64,
}

/// One sale as the dry run sees it, before it is added to the report.
struct Sale<'a> {
    object_id: &'a str,
    currency: Currency,
    customer_id: Option<&'a StripeId>,
    customer: Option<&'a mlc_stripe::models::Customer>,
    /// Each product with what it sold.
    products: BTreeMap<String, i64>,
    gross: Money,
    fees: Money,
}

impl Pipeline {
    /// Runs one `history_run` job: the dry run or the backfill its payload names.
    pub async fn run_history(&self, job: &Job) -> JobOutcome {
        let store = &self.inner.store;
        let Some(run_id) = job.payload.get("run_id").and_then(|v| v.as_str()) else {
            return JobOutcome::Failed {
                error: "the history job names no run".into(),
            };
        };
        let run = match store.get_history_run(run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                return JobOutcome::Failed {
                    error: format!("history run {run_id} is not stored"),
                };
            }
            Err(e) => return retry(e.to_string()),
        };
        match store.begin_history_run(run_id).await {
            Ok(true) => {}
            Ok(false) => return JobOutcome::Succeeded,
            Err(e) => return retry(e.to_string()),
        }
        let result = match run.kind {
            HistoryRunKind::DryRun => self.dry_run(&run).await.and_then(|r| {
                serde_json::to_value(r).map_err(|e| PipelineError::Permanent(e.to_string()))
            }),
            HistoryRunKind::Backfill => self.backfill(&run, job.max_attempts).await,
            HistoryRunKind::Reconcile => {
                let tz = &self.inner.posting.time_zone;
                match super::reconcile::window_of(run.since, run.days, tz) {
                    Ok((since, until)) => {
                        self.reconcile(since, until, Some(&run))
                            .await
                            .and_then(|r| {
                                serde_json::to_value(r)
                                    .map_err(|e| PipelineError::Permanent(e.to_string()))
                            })
                    }
                    Err(e) => Err(PipelineError::Permanent(e)),
                }
            }
        };
        let outcome = match result {
            Ok(report) => store.finish_history_run(run_id, Ok(&report)).await,
            // Transient: the schedule runs it again (from the start), unless this was its last
            // attempt, which must end the run, or the page would wait on it for ever.
            Err(e)
                if e.class() == mlc_core::ErrorClass::Transient
                    && job.attempts < job.max_attempts =>
            {
                return JobOutcome::Retry {
                    error: e.to_string(),
                    class: mlc_core::ErrorClass::Transient,
                    after_ms: e.retry_after().map(|d| d.as_millis() as i64),
                };
            }
            // A permanent error or one for a person ends the run: its message says what to fix,
            // and the page starts a new run once it is fixed.
            Err(e) => store.finish_history_run(run_id, Err(&e.to_string())).await,
        };
        match outcome {
            Ok(()) => JobOutcome::Succeeded,
            Err(e) => retry(e.to_string()),
        }
    }

    /// Every invoice made since `since` (Unix seconds), page by page (Stripe's list API, through
    /// the connection's rate-limited client).
    async fn window_invoices(&self, since: i64) -> Result<Vec<Invoice>, PipelineError> {
        let stripe = &self.inner.stripe;
        super::all_pages(
            |after| async move {
                stripe
                    .list_invoices_created_since(since, after.as_deref())
                    .await
            },
            |i: &Invoice| i.id.as_str(),
        )
        .await
    }

    /// Every charge made since `since` (Unix seconds), page by page.
    async fn window_charges(&self, since: i64) -> Result<Vec<Charge>, PipelineError> {
        let stripe = &self.inner.stripe;
        super::all_pages(
            |after| async move {
                stripe
                    .list_charges_created_since(since, after.as_deref())
                    .await
            },
            |c: &Charge| c.id.as_str(),
        )
        .await
    }

    pub(super) async fn progress(&self, run: &HistoryRun, scanned: i64, queued: i64) {
        if scanned % PROGRESS_EVERY == 0
            && let Err(e) = self
                .inner
                .store
                .history_run_progress(&run.id, scanned, queued)
                .await
        {
            tracing::warn!(run = %run.id, "cannot record the run's progress: {e}");
        }
    }

    /// The dry run: what the window would post, and what stops the rest.
    async fn dry_run(&self, run: &HistoryRun) -> Result<DryRunReport, PipelineError> {
        let since = run.since / 1000;
        let mut report = DryRunReport::default();
        // Charges and payment intents that paid an invoice of the window: not posted alone.
        let mut paid_invoices: HashSet<String> = HashSet::new();
        let stripe = &self.inner.stripe;
        for listed in self.window_invoices(since).await? {
            report.scanned += 1;
            self.progress(run, report.scanned, 0).await;
            // The whole invoice as posting reads it: all lines, and the payments that carry the
            // fees (a listed invoice has neither on every API version). Only for those that can
            // post: an unpaid one costs no request.
            let postable = match self.inner.posting.invoice_trigger {
                InvoiceTrigger::Paid => listed.status.as_deref() == Some("paid"),
                InvoiceTrigger::Finalized => {
                    matches!(listed.status.as_deref(), Some("open" | "paid"))
                }
            };
            let invoice = if postable {
                stripe.retrieve_invoice(&listed.id).await?
            } else {
                listed
            };
            self.assess_invoice(&invoice, &mut report, &mut paid_invoices)
                .await?;
        }
        for charge in self.window_charges(since).await? {
            report.scanned += 1;
            self.progress(run, report.scanned, 0).await;
            self.assess_charge(&charge, &mut report, &paid_invoices)
                .await?;
        }
        // Names for people, one request per product.
        for (product, entry) in report.unmapped_products.iter_mut() {
            if let Ok(p) = self.inner.stripe.retrieve_product(product).await {
                entry.name = p.name;
            }
        }
        Ok(report)
    }

    async fn assess_invoice(
        &self,
        invoice: &Invoice,
        report: &mut DryRunReport,
        paid: &mut HashSet<String>,
    ) -> Result<(), PipelineError> {
        let facts = match InvoiceFacts::from_invoice(invoice) {
            Ok(f) => f,
            Err(e) => {
                report.problems.insert(invoice.id.clone(), e.to_string());
                return Ok(());
            }
        };
        let status = facts.status.clone().unwrap_or_default();
        let postable = match self.inner.posting.invoice_trigger {
            InvoiceTrigger::Paid => status == "paid",
            InvoiceTrigger::Finalized => matches!(status.as_str(), "open" | "paid"),
        };
        if !postable {
            report.not_posted += 1;
            return Ok(());
        }
        let charges = if status == "paid" {
            self.invoice_charges(&facts).await?
        } else {
            Vec::new()
        };
        for c in &charges {
            paid.insert(c.id.to_string());
            if let Some(pi) = &c.payment_intent_id {
                paid.insert(pi.to_string());
            }
        }
        for pi in &facts.payment_intent_ids {
            paid.insert(pi.to_string());
        }
        let mut products: BTreeMap<String, i64> = BTreeMap::new();
        for line in &facts.lines {
            if let Some(p) = &line.product_id {
                *products.entry(p.to_string()).or_default() += line.amount.minor();
            }
        }
        let fees = fees_of(&charges, facts.currency)?;
        let customer = match &invoice.customer {
            Some(Expandable::Object(c)) => Some(c.as_ref()),
            _ => None,
        };
        let sale = Sale {
            object_id: &invoice.id,
            currency: facts.currency,
            customer_id: facts.customer_id.as_ref(),
            customer,
            products,
            gross: facts.total,
            fees,
        };
        let invoice_charges: &[ChargeFacts] = if self.inner.posting.fees == FeeMode::Net {
            &charges
        } else {
            &[]
        };
        self.assess(sale, report, |resolved| {
            mapping::invoice_document(
                &facts,
                invoice_charges,
                resolved,
                &self.inner.settings,
                self.inner.posting.default_item.as_ref(),
            )
            .map(|_| ())
        })
        .await
    }

    async fn assess_charge(
        &self,
        charge: &Charge,
        report: &mut DryRunReport,
        paid: &HashSet<String>,
    ) -> Result<(), PipelineError> {
        let facts = match ChargeFacts::from_charge(charge) {
            Ok(f) => f,
            Err(e) => {
                report.problems.insert(charge.id.clone(), e.to_string());
                return Ok(());
            }
        };
        let covered = paid.contains(facts.id.as_str())
            || facts
                .payment_intent_id
                .as_ref()
                .is_some_and(|pi| paid.contains(pi.as_str()));
        if covered
            || facts.status != "succeeded"
            || !facts.captured
            || facts.captured_amount.minor() == 0
        {
            report.not_posted += 1;
            return Ok(());
        }
        // The charge as posting reads it (its balance transaction, for the fee).
        let charge = self.inner.stripe.retrieve_charge(&charge.id).await?;
        let facts = ChargeFacts::from_charge(&charge)?;
        let session = self.checkout_session(&facts).await?;
        let paid_an_invoice = match &session {
            Some(s) => s.invoice.is_some(),
            None => match self.invoice_of_charge(&charge, &facts).await? {
                ChargeInvoice::Paid(_) => true,
                ChargeInvoice::None => false,
                ChargeInvoice::Unknown(why) => {
                    report.problems.insert(charge.id.clone(), why);
                    return Ok(());
                }
            },
        };
        if paid_an_invoice {
            report.not_posted += 1;
            return Ok(());
        }
        let sold = self.what_the_charge_sold(&facts, session.as_ref());
        let mut products: BTreeMap<String, i64> = BTreeMap::new();
        for s in &sold {
            if let Some(p) = &s.product {
                *products.entry(p.clone()).or_default() += s.amount.minor();
            }
        }
        let fees = mapping::fee_in_charge_currency(&facts)?
            .unwrap_or_else(|| Money::new(0, facts.currency));
        let customer = match &charge.customer {
            Some(Expandable::Object(c)) => Some(c.as_ref()),
            _ => None,
        };
        if facts.customer_id.is_none() && self.inner.posting.guest_customer.is_none() {
            report.problems.insert(
                charge.id.clone(),
                "no Stripe customer: set posting.guest_customer to the NetSuite customer for guest payments".into(),
            );
            return Ok(());
        }
        let sale = Sale {
            object_id: &charge.id,
            currency: facts.currency,
            customer_id: facts.customer_id.as_ref(),
            customer,
            products,
            gross: facts.captured_amount,
            fees,
        };
        self.assess(sale, report, |resolved| {
            mapping::charge_invoice_document(
                &facts,
                &sold,
                resolved,
                &self.inner.settings,
                self.inner.posting.default_item.as_ref(),
            )
            .map(|_| ())
        })
        .await
    }

    /// The read-only half of posting one sale: its currency, customer and items, then the pure
    /// mapping; adds it to what would post or to what stops it.
    async fn assess(
        &self,
        sale: Sale<'_>,
        report: &mut DryRunReport,
        map: impl FnOnce(&Resolved) -> Result<(), mapping::MappingError>,
    ) -> Result<(), PipelineError> {
        let currency = match self.currency_id(sale.currency) {
            Ok(c) => c,
            Err(e) => {
                report
                    .problems
                    .insert(sale.object_id.to_string(), e.to_string());
                return Ok(());
            }
        };
        let mut blocked = false;
        let customer = match sale.customer_id {
            None => self.inner.posting.guest_customer.clone(),
            Some(id) => match self.find_customer_read_only(id, sale.customer).await? {
                Some(found) => Some(found),
                None => {
                    let create = self.inner.posting.create_customers;
                    blocked |= !create;
                    let entry = report
                        .customers_without_match
                        .entry(id.to_string())
                        .or_default();
                    entry.will_be_created = create;
                    entry.sales += 1;
                    *entry.amounts.entry(sale.currency).or_default() += sale.gross.minor();
                    if let Some(c) = sale.customer {
                        entry.name = c.name.clone();
                        entry.email = c.email.clone();
                    }
                    None
                }
            },
        };
        let wanted: BTreeSet<String> = sale.products.keys().cloned().collect();
        let (items, unmapped) = self.resolve_items(&wanted).await?;
        for product in &unmapped {
            let entry = report.unmapped_products.entry(product.clone()).or_default();
            entry.sales += 1;
            *entry.amounts.entry(sale.currency).or_default() +=
                sale.products.get(product).copied().unwrap_or_default();
        }
        if blocked || !unmapped.is_empty() {
            return Ok(());
        }
        // A customer to be created has no internal ID yet; the mapping needs one, and the
        // document's amounts do not depend on it.
        let placeholder = mlc_core::NetSuiteInternalId::parse("0")
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let resolved = Resolved {
            customer: Some(customer.unwrap_or(placeholder)),
            currency,
            items,
        };
        if let Err(e) = map(&resolved) {
            report
                .problems
                .insert(sale.object_id.to_string(), e.to_string());
            return Ok(());
        }
        let totals = report.would_post.entry(sale.currency).or_default();
        totals.count += 1;
        totals.gross_minor += sale.gross.minor();
        totals.fees_minor += sale.fees.minor();
        totals.net_minor += sale.gross.minor() - sale.fees.minor();
        Ok(())
    }

    /// The NetSuite customer of a Stripe customer, by the cached link or a lookup; never
    /// created, never linked (the dry run writes nothing).
    async fn find_customer_read_only(
        &self,
        customer_id: &StripeId,
        expanded: Option<&mlc_stripe::models::Customer>,
    ) -> Result<Option<mlc_core::NetSuiteInternalId>, PipelineError> {
        if let Some(id) = self
            .inner
            .store
            .get_customer_link(customer_id.as_str())
            .await?
        {
            return Ok(mlc_core::NetSuiteInternalId::parse(&id).ok());
        }
        let email = if self
            .inner
            .posting
            .customer_match
            .contains(&crate::config::CustomerMatch::Email)
        {
            match expanded {
                Some(c) => c.email.clone(),
                None => {
                    self.inner
                        .stripe
                        .retrieve_customer(customer_id.as_str())
                        .await?
                        .email
                }
            }
        } else {
            None
        };
        Ok(self
            .find_customer(customer_id, email.as_deref())
            .await?
            .map(|(id, _)| id))
    }

    /// The backfill: each invoice and charge of the window queued as an event of its own.
    async fn backfill(
        &self,
        run: &HistoryRun,
        max_attempts: i32,
    ) -> Result<serde_json::Value, PipelineError> {
        let since = run.since / 1000;
        let (mut scanned, mut queued) = (0_i64, 0_i64);
        for invoice in self.window_invoices(since).await? {
            scanned += 1;
            let event = ("invoice.paid", invoice.id.as_str(), invoice.created);
            queued += i64::from(self.queue_backfill(event, max_attempts).await?);
            self.progress(run, scanned, queued).await;
        }
        for charge in self.window_charges(since).await? {
            scanned += 1;
            let event = ("charge.succeeded", charge.id.as_str(), charge.created);
            queued += i64::from(self.queue_backfill(event, max_attempts).await?);
            self.progress(run, scanned, queued).await;
        }
        self.inner
            .store
            .history_run_progress(&run.id, scanned, queued)
            .await?;
        Ok(json!({"scanned": scanned, "queued": queued}))
    }

    /// Records one backfilled object as an event with its job, through the intake's store path
    /// (a second backfill of the same object adds nothing). The job re-fetches the object, as
    /// for a webhook; the body only names it.
    async fn queue_backfill(
        &self,
        (event_type, object_id, created): (&str, &str, i64),
        max_attempts: i32,
    ) -> Result<bool, PipelineError> {
        let event_id = format!("evt_backfill_{object_id}");
        // Listed objects carry no raw body here: the key's mode is the account's.
        let livemode = self.inner.stripe.mode() == mlc_stripe::client::KeyMode::Live;
        let body = json!({
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": created,
            "livemode": livemode,
            "data": {"object": {"id": object_id}},
            "ml_connector": {"backfill": true},
        });
        let now = mlc_core::now_millis();
        let event = NewEvent {
            event_id: event_id.clone(),
            event_type: event_type.to_string(),
            object_id: Some(object_id.to_string()),
            livemode,
            api_version: None,
            stripe_created: created,
            raw_body: body.to_string().into_bytes(),
            signature_header: String::new(),
            received_at: now,
            handled: true,
        };
        let job = NewJob {
            kind: PROCESS_EVENT.to_string(),
            event_id: Some(event_id.clone()),
            payload: json!({"event_id": event_id, "type": event_type, "backfill": true}),
            dedupe_key: format!("backfill:{object_id}"),
            max_attempts,
            run_at: now,
        };
        Ok(self.inner.store.record_event(&event, Some(job)).await? == RecordOutcome::Stored)
    }
}

/// The Stripe fees of an invoice's charges, in the invoice's currency (none known: zero).
fn fees_of(charges: &[ChargeFacts], currency: Currency) -> Result<Money, PipelineError> {
    let mut fees = 0_i64;
    for c in charges {
        if let Some(fee) = mapping::fee_in_charge_currency(c)?
            && fee.currency() == currency
        {
            fees += fee.minor();
        }
    }
    Ok(Money::new(fees, currency))
}

fn retry(error: String) -> JobOutcome {
    JobOutcome::Retry {
        error,
        class: mlc_core::ErrorClass::Transient,
        after_ms: None,
    }
}
