//! Posting an invoice, a standalone charge, and the payment that marks it paid.

use std::collections::BTreeSet;

use mlc_core::{Money, NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_netsuite::CreateOutcome;
use mlc_netsuite::documents::InvoiceDoc;
use mlc_store::{Job, NewPosting};
use mlc_stripe::facts::{ChargeFacts, InvoiceFacts};
use mlc_stripe::models::{Charge, CheckoutSession, Expandable, Invoice};
use rust_decimal::Decimal;
use serde_json::json;

use super::mapping::{self, FeeMode, Resolved, SoldLine};
use super::{Pipeline, PipelineError};
use crate::config::InvoiceTrigger;

/// What Stripe says about the invoice a charge paid.
pub(super) enum ChargeInvoice {
    /// It paid this invoice.
    Paid(String),
    /// It paid none: every link was looked at.
    None,
    /// Stripe shows no link, but an invoice it may have paid hides its payments (why, for the
    /// audit and the operator).
    Unknown(String),
}

/// The payment links an invoice shows, whichever the API version.
struct PaymentLinks {
    charges: Vec<String>,
    payment_intents: Vec<String>,
    /// False when the invoice shows none of the fields that carry them.
    visible: bool,
}

impl PaymentLinks {
    fn names(&self, charge: &str, payment_intent: Option<&str>) -> bool {
        self.charges.iter().any(|c| c == charge)
            || payment_intent.is_some_and(|pi| self.payment_intents.iter().any(|p| p == pi))
    }
}

/// Pre-basil `invoice.charge` / `invoice.payment_intent`, basil+ `invoice.payments` (open ones
/// too: a payment in flight names the intent that is paying it).
fn invoice_payment_links(invoice: &Invoice) -> PaymentLinks {
    let mut links = PaymentLinks {
        charges: Vec::new(),
        payment_intents: Vec::new(),
        visible: invoice.charge.is_some()
            || invoice.payment_intent.is_some()
            || invoice
                .payments
                .as_ref()
                .is_some_and(|p| !p.data.is_empty()),
    };
    links
        .charges
        .extend(invoice.charge.as_ref().map(|c| c.id().to_string()));
    links
        .payment_intents
        .extend(invoice.payment_intent.as_ref().map(|p| p.id().to_string()));
    for payment in invoice.payments.iter().flat_map(|l| &l.data) {
        links
            .charges
            .extend(payment.payment.charge.as_ref().map(|c| c.id().to_string()));
        if let Some(pi) = &payment.payment.payment_intent {
            links.payment_intents.push(pi.id().to_string());
            if let Expandable::Object(intent) = pi
                && let Some(c) = &intent.latest_charge
            {
                links.charges.push(c.id().to_string());
            }
        }
    }
    links
}

/// Posting kinds recorded in the store, one NetSuite record each.
pub(super) const INVOICE: &str = "invoice";
const PAYMENT: &str = "payment";
const FEE_JOURNAL: &str = "fee_journal";

fn parse_id(kind: StripeIdKind, id: &str) -> Result<StripeId, PipelineError> {
    StripeId::parse(kind, id).map_err(|e| PipelineError::Permanent(e.to_string()))
}

impl Pipeline {
    pub(super) async fn post_invoice(
        &self,
        job: &Job,
        invoice_id: &str,
    ) -> Result<(), PipelineError> {
        let id = parse_id(StripeIdKind::Invoice, invoice_id)?;
        let _guard = self.inner.locks.lock(invoice_id).await;
        let store = &self.inner.store;
        let posted = store.get_posting(invoice_id, INVOICE).await?;
        if let Some(p) = &posted
            && store.get_posting(invoice_id, PAYMENT).await?.is_some()
        {
            self.audit(
                job,
                "already_posted",
                Some(invoice_id),
                format!(
                    "Invoice {invoice_id} is already NetSuite invoice {} with its payment; nothing to do",
                    p.netsuite_internal_id
                ),
                None,
            )
            .await;
            return Ok(());
        }

        // Never trust the webhook body: the invoice as Stripe has it now.
        let invoice = self.inner.stripe.retrieve_invoice(id.as_str()).await?;
        let facts = InvoiceFacts::from_invoice(&invoice)?;
        let status = facts.status.clone().unwrap_or_default();
        self.audit(
            job,
            "fetched",
            Some(invoice_id),
            format!(
                "Fetched invoice {invoice_id} from Stripe: {status}, total {}, {} line(s)",
                facts.total,
                facts.lines.len()
            ),
            // The object as fetched, for the event page: what was posted came from this.
            Some(json!({"status": status, "total_minor": facts.total.minor(), "currency": facts.currency.as_str(), "object": invoice.raw})),
        )
        .await;
        let postable = match self.inner.posting.invoice_trigger {
            InvoiceTrigger::Paid => status == "paid",
            InvoiceTrigger::Finalized => matches!(status.as_str(), "open" | "paid"),
        };
        if !postable {
            self.audit(
                job,
                "skipped",
                Some(invoice_id),
                format!("Invoice {invoice_id} is {status} in Stripe: nothing posted"),
                None,
            )
            .await;
            return Ok(());
        }

        // The charges that paid it, with their fees (net mode needs them on the invoice).
        let charges = if status == "paid" {
            self.invoice_charges(&facts).await?
        } else {
            Vec::new()
        };
        // Their own events (charge.succeeded, payment_intent.succeeded) then need no Stripe call.
        let covered: Vec<&str> = charges
            .iter()
            .flat_map(|c| {
                std::iter::once(c.id.as_str())
                    .chain(c.payment_intent_id.as_ref().map(|p| p.as_str()))
            })
            .chain(facts.payment_intent_ids.iter().map(|p| p.as_str()))
            .collect();
        store.record_covered_payments(&covered, invoice_id).await?;

        let currency = self.currency_id(facts.currency)?;
        let customer_id = facts.customer_id.clone().ok_or_else(|| {
            PipelineError::Permanent(format!("invoice {invoice_id} has no customer"))
        })?;
        let expanded_customer = match &invoice.customer {
            Some(Expandable::Object(c)) => Some(c.as_ref().clone()),
            _ => None,
        };
        let customer = self
            .resolve_customer(
                job,
                &customer_id,
                expanded_customer.as_ref(),
                currency.clone(),
            )
            .await?;
        let products: BTreeSet<String> = facts
            .lines
            .iter()
            .filter_map(|l| l.product_id.as_ref().map(|p| p.to_string()))
            .collect();
        let (items, unmapped) = self.resolve_items(&products).await?;
        if !unmapped.is_empty() {
            return Err(self.unmapped_error(job, invoice_id, &unmapped).await);
        }
        let resolved = Resolved {
            customer: Some(customer),
            currency,
            items,
        };
        let invoice_charges: &[ChargeFacts] = if self.inner.posting.fees == FeeMode::Net {
            &charges
        } else {
            &[]
        };
        let doc = mapping::invoice_document(
            &facts,
            invoice_charges,
            &resolved,
            &self.inner.settings,
            self.inner.posting.default_item.as_ref(),
        )?;
        let ns_invoice = match posted {
            Some(p) => NetSuiteInternalId::parse(&p.netsuite_internal_id)
                .map_err(|e| PipelineError::Permanent(e.to_string()))?,
            None => {
                self.audit(
                    job,
                    "mapped",
                    Some(invoice_id),
                    format!(
                        "Mapped to NetSuite customer {} with {} line(s) totalling {} {}",
                        doc.customer,
                        doc.lines.len(),
                        doc.total(),
                        facts.currency
                    ),
                    Some(json!({"request": doc.to_json().to_value()})),
                )
                .await;
                self.write_invoice(job, invoice_id, &doc, facts.currency)
                    .await?
            }
        };
        if status == "paid" {
            let total = Money::from_decimal(doc.total(), facts.currency)
                .map_err(|e| PipelineError::Permanent(e.to_string()))?;
            self.apply_payments(job, invoice_id, &ns_invoice, &charges, total, &resolved)
                .await?;
        }
        // So can a credit note of this invoice.
        let credited = [
            "pre_payment_credit_notes_amount",
            "post_payment_credit_notes_amount",
        ]
        .iter()
        .any(|k| invoice.raw.get(*k).and_then(|v| v.as_i64()).unwrap_or(0) > 0);
        if credited {
            self.post_credit_notes_of(job, invoice_id).await?;
        }
        Ok(())
    }

    /// The charges of a paid invoice, each with its balance transaction.
    pub(super) async fn invoice_charges(
        &self,
        facts: &InvoiceFacts,
    ) -> Result<Vec<ChargeFacts>, PipelineError> {
        let mut charges = Vec::new();
        if !facts.charge_ids.is_empty() {
            for ch in &facts.charge_ids {
                let charge = self.inner.stripe.retrieve_charge(ch.as_str()).await?;
                charges.push(ChargeFacts::from_charge(&charge)?);
            }
        } else {
            for pi in &facts.payment_intent_ids {
                let intent = self
                    .inner
                    .stripe
                    .retrieve_payment_intent(pi.as_str())
                    .await?;
                if let Some(Expandable::Object(charge)) = &intent.latest_charge {
                    charges.push(ChargeFacts::from_charge(charge)?);
                }
            }
        }
        Ok(charges)
    }

    /// Creates the NetSuite invoice at most once and records it.
    async fn write_invoice(
        &self,
        job: &Job,
        stripe_object: &str,
        doc: &InvoiceDoc,
        currency: mlc_core::Currency,
    ) -> Result<NetSuiteInternalId, PipelineError> {
        let (ns_id, outcome) = self
            .create_record(job, "invoice", &doc.external_id, doc.to_json())
            .await?;
        let total = Money::from_decimal(doc.total(), currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        self.inner
            .store
            .record_posting(NewPosting {
                stripe_object_id: stripe_object.to_string(),
                kind: INVOICE.into(),
                netsuite_record_type: "invoice".into(),
                netsuite_internal_id: ns_id.to_string(),
                external_id: doc.external_id.to_string(),
                event_id: job.event_id.clone(),
                amount_minor: total.minor(),
                currency: currency.as_str().to_string(),
            })
            .await?;
        let how = match outcome {
            CreateOutcome::Created => "created",
            CreateOutcome::AlreadyExisted => "already existed (not posted again)",
        };
        self.audit(
            job,
            "posted",
            Some(stripe_object),
            format!(
                "NetSuite invoice {ns_id} ({}) {how}: {} line(s), total {total}",
                doc.external_id,
                doc.lines.len()
            ),
            Some(json!({
                "netsuite_internal_id": ns_id.as_str(),
                "external_id": doc.external_id.as_str(),
                "outcome": outcome,
                "total": total.to_decimal().to_string(),
                "currency": currency.iso_code(),
            })),
        )
        .await;
        Ok(ns_id)
    }

    /// One customer payment per charge, applied to the NetSuite invoice; in gross mode, the fee
    /// journal entry too.
    async fn apply_payments(
        &self,
        job: &Job,
        stripe_object: &str,
        ns_invoice: &NetSuiteInternalId,
        charges: &[ChargeFacts],
        invoice_total: Money,
        resolved: &Resolved,
    ) -> Result<(), PipelineError> {
        let store = &self.inner.store;
        let ns = &self.inner.netsuite;
        for (i, charge) in charges.iter().enumerate() {
            // The fee journal goes first: once the payment is recorded the object counts as done
            // (`already_posted`), so a journal that failed after it would never be retried.
            if self.inner.posting.fees == FeeMode::Gross
                && store
                    .get_posting(charge.id.as_str(), FEE_JOURNAL)
                    .await?
                    .is_none()
                && let Some(je) =
                    mapping::fee_journal_document(charge, resolved, &self.inner.settings)?
            {
                let (je_id, _) = ns
                    .create_once("journalEntry", &je.external_id, je.to_json())
                    .await?;
                let fee = mapping::fee_in_charge_currency(charge)?
                    .unwrap_or(Money::zero(charge.currency));
                store
                    .record_posting(NewPosting {
                        stripe_object_id: charge.id.to_string(),
                        kind: FEE_JOURNAL.into(),
                        netsuite_record_type: "journalEntry".into(),
                        netsuite_internal_id: je_id.to_string(),
                        external_id: je.external_id.to_string(),
                        event_id: job.event_id.clone(),
                        amount_minor: fee.minor(),
                        currency: fee.currency().as_str().to_string(),
                    })
                    .await?;
                self.audit(
                    job,
                    "fee_posted",
                    Some(charge.id.as_str()),
                    format!(
                        "Stripe fee {fee} on {} posted as NetSuite journal entry {je_id}",
                        charge.id
                    ),
                    Some(json!({"netsuite_internal_id": je_id.as_str()})),
                )
                .await;
            }
            if store.get_posting(stripe_object, PAYMENT).await?.is_none() {
                // Each charge pays what it brought in (net of its fee in net mode): the whole
                // invoice for a single charge, less any part Stripe took from the customer's
                // credit balance, which NetSuite then shows as still open rather than as cash.
                let fee = match self.inner.posting.fees {
                    FeeMode::Net => mapping::fee_in_charge_currency(charge)?
                        .map(|f| f.minor())
                        .unwrap_or(0),
                    FeeMode::Gross => 0,
                };
                let amount = Money::new(
                    charge.captured_amount.minor() - fee,
                    invoice_total.currency(),
                );
                let doc = mapping::payment_document(
                    charge,
                    ns_invoice,
                    amount,
                    resolved,
                    &self.inner.settings,
                )?;
                let (pay_id, outcome) = self
                    .create_record(job, "customerPayment", &doc.external_id, doc.to_json())
                    .await?;
                if i + 1 == charges.len() {
                    store
                        .record_posting(NewPosting {
                            stripe_object_id: stripe_object.to_string(),
                            kind: PAYMENT.into(),
                            netsuite_record_type: "customerPayment".into(),
                            netsuite_internal_id: pay_id.to_string(),
                            external_id: doc.external_id.to_string(),
                            event_id: job.event_id.clone(),
                            amount_minor: amount.minor(),
                            currency: amount.currency().as_str().to_string(),
                        })
                        .await?;
                }
                self.audit(
                    job,
                    "payment_applied",
                    Some(stripe_object),
                    format!(
                        "NetSuite customer payment {pay_id} ({}) of {amount} applied to invoice {ns_invoice} ({outcome:?})",
                        doc.external_id
                    ),
                    Some(json!({
                        "netsuite_internal_id": pay_id.as_str(),
                        "external_id": doc.external_id.as_str(),
                        "charge": charge.id.as_str(),
                        "amount": amount.to_decimal().to_string(),
                    })),
                )
                .await;
                // What came before this sale and waits on its charge can go now.
                self.wake_waiting_on(charge.id.as_str()).await;
            }
        }
        Ok(())
    }

    pub(super) async fn post_payment_intent(
        &self,
        job: &Job,
        pi: &str,
    ) -> Result<(), PipelineError> {
        parse_id(StripeIdKind::PaymentIntent, pi)?;
        if let Some(invoice) = self.inner.store.invoice_covering(pi).await? {
            return self.audit_covered(job, pi, &invoice).await;
        }
        let intent = self.inner.stripe.retrieve_payment_intent(pi).await?;
        match intent.latest_charge {
            Some(Expandable::Object(charge)) => {
                let _guard = self.inner.locks.lock(&charge.id).await;
                if self.charge_done(job, &charge.id).await? {
                    return Ok(());
                }
                self.post_charge(job, &charge).await
            }
            Some(Expandable::Id(id)) => self.post_charge_by_id(job, &id).await,
            None => {
                self.audit(
                    job,
                    "skipped",
                    Some(pi),
                    format!("Payment intent {pi} has no charge yet: nothing posted"),
                    None,
                )
                .await;
                Ok(())
            }
        }
    }

    pub(super) async fn post_charge_by_id(
        &self,
        job: &Job,
        charge_id: &str,
    ) -> Result<(), PipelineError> {
        parse_id(StripeIdKind::Charge, charge_id)?;
        let _guard = self.inner.locks.lock(charge_id).await;
        if self.charge_done(job, charge_id).await? {
            return Ok(());
        }
        let charge = self.inner.stripe.retrieve_charge(charge_id).await?;
        self.post_charge(job, &charge).await
    }

    /// True (and audited) when the charge is already posted with its payment, or known to have
    /// paid an invoice: nothing to fetch, nothing to post.
    async fn charge_done(&self, job: &Job, charge_id: &str) -> Result<bool, PipelineError> {
        let store = &self.inner.store;
        if let Some(p) = store.get_posting(charge_id, INVOICE).await?
            && store.get_posting(charge_id, PAYMENT).await?.is_some()
        {
            self.audit(
                job,
                "already_posted",
                Some(charge_id),
                format!(
                    "Charge {charge_id} is already NetSuite invoice {} with its payment; nothing to do",
                    p.netsuite_internal_id
                ),
                None,
            )
            .await;
            return Ok(true);
        }
        if let Some(covered) = store.invoice_covering(charge_id).await? {
            self.audit_covered(job, charge_id, &covered).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// A charge that belongs to no invoice becomes a NetSuite invoice at the captured amount.
    /// The caller holds the charge's lock and checked it is not done yet.
    async fn post_charge(&self, job: &Job, charge: &Charge) -> Result<(), PipelineError> {
        let facts = ChargeFacts::from_charge(charge)?;
        let charge_id = facts.id.to_string();
        self.audit(
            job,
            "fetched",
            Some(&charge_id),
            format!(
                "Fetched charge {charge_id} from Stripe: {}, captured {}",
                facts.status, facts.captured_amount
            ),
            Some(json!({"status": facts.status, "captured_minor": facts.captured_amount.minor(), "currency": facts.currency.as_str(), "object": charge.raw})),
        )
        .await;
        if facts.status != "succeeded" || !facts.captured || facts.captured_amount.minor() == 0 {
            self.audit(
                job,
                "skipped",
                Some(&charge_id),
                format!(
                    "Charge {charge_id} is {} and not captured: nothing posted",
                    facts.status
                ),
                None,
            )
            .await;
            return Ok(());
        }
        // A Checkout payment names what it sold (and its invoice, if it made one); a charge
        // without one may have paid an invoice, which must be ruled out before posting it alone.
        let session = self.checkout_session(&facts).await?;
        let invoice = match &session {
            Some(s) => s.invoice.clone(),
            None => match self.invoice_of_charge(charge, &facts).await? {
                ChargeInvoice::Paid(invoice) => Some(invoice),
                ChargeInvoice::None => None,
                ChargeInvoice::Unknown(why) => {
                    self.audit(
                        job,
                        "waiting_for_invoice_link",
                        Some(&charge_id),
                        why.clone(),
                        None,
                    )
                    .await;
                    return Err(PipelineError::NeedsPerson(why));
                }
            },
        };
        // A charge that paid an invoice is posted with that invoice, never on its own.
        if let Some(invoice) = invoice {
            let store = &self.inner.store;
            let covered: Vec<&str> = std::iter::once(charge_id.as_str())
                .chain(facts.payment_intent_id.as_ref().map(|p| p.as_str()))
                .collect();
            store.record_covered_payments(&covered, &invoice).await?;
            return self.audit_covered(job, &charge_id, &invoice).await;
        }
        let sold = self.what_the_charge_sold(&facts, session.as_ref());
        let currency = self.currency_id(facts.currency)?;
        let customer = match (&facts.customer_id, &self.inner.posting.guest_customer) {
            (Some(c), _) => {
                let expanded = match &charge.customer {
                    Some(Expandable::Object(c)) => Some(c.as_ref().clone()),
                    _ => None,
                };
                self.resolve_customer(job, c, expanded.as_ref(), currency.clone())
                    .await?
            }
            (None, Some(guest)) => guest.clone(),
            (None, None) => {
                return Err(PipelineError::NeedsPerson(format!(
                    "charge {charge_id} has no Stripe customer: set posting.guest_customer to the NetSuite customer for guest payments"
                )));
            }
        };
        let products: BTreeSet<String> = sold.iter().filter_map(|s| s.product.clone()).collect();
        let (items, unmapped) = self.resolve_items(&products).await?;
        if !unmapped.is_empty() {
            return Err(self.unmapped_error(job, &charge_id, &unmapped).await);
        }
        let resolved = Resolved {
            customer: Some(customer),
            currency,
            items,
        };
        let doc = mapping::charge_invoice_document(
            &facts,
            &sold,
            &resolved,
            &self.inner.settings,
            self.inner.posting.default_item.as_ref(),
        )?;
        let ns_invoice = match self.inner.store.get_posting(&charge_id, INVOICE).await? {
            Some(p) => NetSuiteInternalId::parse(&p.netsuite_internal_id)
                .map_err(|e| PipelineError::Permanent(e.to_string()))?,
            None => {
                self.audit(
                    job,
                    "mapped",
                    Some(&charge_id),
                    format!(
                        "Mapped to NetSuite customer {} with {} line(s) totalling {} {}",
                        doc.customer,
                        doc.lines.len(),
                        doc.total(),
                        facts.currency
                    ),
                    Some(json!({"request": doc.to_json().to_value()})),
                )
                .await;
                self.write_invoice(job, &charge_id, &doc, facts.currency)
                    .await?
            }
        };
        let total = Money::from_decimal(doc.total(), facts.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        self.apply_payments(
            job,
            &charge_id,
            &ns_invoice,
            std::slice::from_ref(&facts),
            total,
            &resolved,
        )
        .await?;
        Ok(())
    }

    /// The Stripe invoice a charge paid, from every link Stripe gives in any API version:
    /// `charge.invoice`, `payment_intent.invoice` (both pre-basil), the InvoicePayments of its
    /// payment intent (basil+), and the customer's own invoices and their payments. Events come
    /// in any order, so "no link" only counts once the invoice side has been looked at too.
    pub(super) async fn invoice_of_charge(
        &self,
        charge: &Charge,
        facts: &ChargeFacts,
    ) -> Result<ChargeInvoice, PipelineError> {
        if let Some(inv) = &facts.invoice_id {
            return Ok(ChargeInvoice::Paid(inv.to_string()));
        }
        let stripe = &self.inner.stripe;
        let pi = facts.payment_intent_id.as_ref().map(|p| p.to_string());
        if let Some(pi) = &pi {
            let payments = stripe.list_invoice_payments_for_payment_intent(pi).await?;
            if let Some(inv) = payments
                .iter()
                .flatten()
                .find_map(|p| p.invoice.as_ref().map(|i| i.id().to_string()))
            {
                return Ok(ChargeInvoice::Paid(inv));
            }
            // Pre-basil shapes carry the link on the intent too. Worth a request only where the
            // charge lacks its own `invoice` key and the version could still have it there.
            let may_carry = charge.raw.get("invoice").is_none()
                && (payments.is_none()
                    || !mlc_stripe::client::is_basil_or_later(stripe.api_version()));
            let intent = match &charge.payment_intent {
                Some(Expandable::Object(intent)) => Some(intent.as_ref().clone()),
                _ if may_carry => Some(stripe.retrieve_payment_intent(pi).await?),
                _ => None,
            };
            if let Some(inv) = intent.as_ref().and_then(|i| i.invoice.as_ref()) {
                return Ok(ChargeInvoice::Paid(inv.id().to_string()));
            }
        }
        // Guest payments cannot have paid an invoice: Stripe invoices always have a customer.
        let Some(customer) = &facts.customer_id else {
            return Ok(ChargeInvoice::None);
        };
        // The invoice side: an invoice names the payments that paid it. A day's slack covers an
        // invoice created just after the charge's own timestamp (clock skew between Stripe's
        // objects); anything later cannot have been paid by it.
        let invoices = stripe
            .list_invoices_for_customer(customer.as_str(), facts.created.saturating_add(86_400))
            .await?;
        let mut unlinked = Vec::new();
        for invoice in &invoices {
            let links = invoice_payment_links(invoice);
            if links.names(facts.id.as_str(), pi.as_deref()) {
                return Ok(ChargeInvoice::Paid(invoice.id.clone()));
            }
            // An invoice this charge could have paid, whose payments Stripe does not show.
            let status = invoice.status.as_deref().unwrap_or_default();
            let could_be_it = matches!(status, "paid" | "open")
                && !links.visible
                && invoice.paid_out_of_band != Some(true)
                && invoice
                    .currency
                    .eq_ignore_ascii_case(facts.currency.as_str())
                && [
                    invoice.amount_due,
                    invoice.amount_paid,
                    invoice.amount_remaining,
                ]
                .contains(&Some(facts.amount.minor()));
            if could_be_it {
                unlinked.push(invoice.id.clone());
            }
        }
        if unlinked.is_empty() {
            return Ok(ChargeInvoice::None);
        }
        Ok(ChargeInvoice::Unknown(format!(
            "charge {} may have paid Stripe invoice {} of customer {customer} (same amount), but \
             this Stripe API version shows no link between them, so it is not posted on its own; \
             it is looked at again automatically and needs nothing once that invoice is posted \
             with this payment. If it is a separate sale, replay this event after checking in Stripe.",
            facts.id,
            unlinked.join(", ")
        )))
    }

    /// The Checkout Session that created a charge's payment intent, with its line items.
    pub(super) async fn checkout_session(
        &self,
        facts: &ChargeFacts,
    ) -> Result<Option<CheckoutSession>, PipelineError> {
        let Some(pi) = &facts.payment_intent_id else {
            return Ok(None);
        };
        let sessions = self
            .inner
            .stripe
            .list_checkout_sessions_for_payment_intent(pi.as_str())
            .await?;
        Ok(sessions.into_iter().next())
    }

    /// The lines a one-time charge sold: its Checkout Session's line items, else the product in
    /// its metadata, else nothing (the default item).
    pub(super) fn what_the_charge_sold(
        &self,
        facts: &ChargeFacts,
        session: Option<&CheckoutSession>,
    ) -> Vec<SoldLine> {
        if let Some(items) = session.and_then(|s| s.line_items.as_ref()) {
            let lines: Vec<SoldLine> = items
                .data
                .iter()
                .map(|li| SoldLine {
                    product: li.price.as_ref().and_then(|p| match p {
                        Expandable::Object(price) => {
                            price.product.as_ref().map(|pr| pr.id().to_string())
                        }
                        Expandable::Id(_) => None,
                    }),
                    quantity: Decimal::from(li.quantity.unwrap_or(1)),
                    amount: Money::new(li.amount_total, facts.currency),
                    description: li.description.clone(),
                })
                .collect();
            if !lines.is_empty() {
                return lines;
            }
        }
        if let Some(key) = &self.inner.posting.charge_product_metadata_key
            && let Some(product) = facts.metadata.get(key)
        {
            return vec![SoldLine {
                product: Some(product.clone()),
                quantity: Decimal::ONE,
                amount: facts.captured_amount,
                description: facts.description.clone(),
            }];
        }
        Vec::new()
    }

    async fn audit_covered(
        &self,
        job: &Job,
        payment: &str,
        invoice: &str,
    ) -> Result<(), PipelineError> {
        self.audit(
            job,
            "covered_by_invoice",
            Some(payment),
            format!("{payment} paid Stripe invoice {invoice}, which is posted on its own: not posted again"),
            Some(json!({"invoice": invoice})),
        )
        .await;
        Ok(())
    }

    pub(super) async fn record_failed_payment(
        &self,
        job: &Job,
        event_type: &str,
        object_id: &str,
    ) -> Result<(), PipelineError> {
        self.audit(
            job,
            "payment_failed",
            Some(object_id),
            format!("{event_type}: the payment failed in Stripe, nothing is posted to NetSuite"),
            None,
        )
        .await;
        Ok(())
    }
}
