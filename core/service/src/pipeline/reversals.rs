//! Invoices that will not be paid (docs/ACCOUNTING.md, "Invoices that will not be paid"): a
//! posted invoice that Stripe voids is credited in full, and one it marks uncollectible is
//! written off on the bad-debt item, each by a credit memo applied to the NetSuite invoice, once
//! by its external ID. An invoice that never posted (the paid trigger posts only paid ones)
//! posts nothing.

use mlc_core::{ExternalId, Money, NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_netsuite::documents::{CreditMemoDoc, InvoiceDoc, InvoiceLine};
use mlc_store::Job;
use mlc_stripe::facts::InvoiceFacts;
use rust_decimal::Decimal;
use serde_json::json;

use super::mapping;
use super::post::INVOICE;
use super::{Pipeline, PipelineError};

/// What happened to the invoice in Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unpaid {
    Voided,
    Uncollectible,
}

impl Unpaid {
    fn status(self) -> &'static str {
        match self {
            Unpaid::Voided => "void",
            Unpaid::Uncollectible => "uncollectible",
        }
    }
    /// The posting kind and the external ID prefix of its credit memo.
    fn kind(self) -> &'static str {
        match self {
            Unpaid::Voided => "void",
            Unpaid::Uncollectible => "writeoff",
        }
    }
}

impl Pipeline {
    /// `invoice.voided`, `invoice.marked_uncollectible`.
    pub(super) async fn post_unpaid_invoice(
        &self,
        job: &Job,
        invoice_id: &str,
        what: Unpaid,
    ) -> Result<(), PipelineError> {
        let id = StripeId::parse(StripeIdKind::Invoice, invoice_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let _guard = self.inner.locks.lock(invoice_id).await;
        let store = &self.inner.store;
        if let Some(done) = store.get_posting(invoice_id, what.kind()).await? {
            self.audit(
                job,
                "already_posted",
                Some(invoice_id),
                format!(
                    "Invoice {invoice_id} is already credited by NetSuite credit memo {}; nothing to do",
                    done.netsuite_internal_id
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let Some(sale) = store.get_posting(invoice_id, INVOICE).await? else {
            self.audit(
                job,
                "skipped",
                Some(invoice_id),
                format!(
                    "Invoice {invoice_id} is {} in Stripe and was never posted: nothing to reverse",
                    what.status()
                ),
                None,
            )
            .await;
            return Ok(());
        };
        // The invoice as Stripe has it now: a voided invoice stays void, but one marked
        // uncollectible may be paid after all, and then nothing is written off.
        let invoice = self.inner.stripe.retrieve_invoice(id.as_str()).await?;
        let facts = InvoiceFacts::from_invoice(&invoice)?;
        let status = facts.status.clone().unwrap_or_default();
        if status != what.status() {
            self.audit(
                job,
                "skipped",
                Some(invoice_id),
                format!(
                    "Invoice {invoice_id} is {status} in Stripe now, not {}: nothing posted",
                    what.status()
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let ns_invoice = NetSuiteInternalId::parse(&sale.netsuite_internal_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let posted = self.read_posted_invoice(ns_invoice.clone()).await?;
        let total: Decimal = posted.lines.iter().map(|l| l.amount).sum();
        let open = posted.remaining.unwrap_or(total);
        if open <= Decimal::ZERO {
            self.audit(
                job,
                "skipped",
                Some(invoice_id),
                format!(
                    "NetSuite invoice {ns_invoice} has nothing open: nothing to credit for {invoice_id}"
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let amount = Money::from_decimal(open, facts.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let posting = &self.inner.posting;
        let lines: Vec<InvoiceLine> = match what {
            // Credited line for line, in proportion to what is still open (all of it, usually).
            Unpaid::Voided => mapping::refund_lines(invoice_id, &posted.lines, None, None, amount)?,
            Unpaid::Uncollectible => {
                let Some(item) = posting.bad_debt_item.as_ref() else {
                    return Err(PipelineError::NeedsPerson(format!(
                        "invoice {invoice_id} is uncollectible in Stripe: set posting.bad_debt_item to the NetSuite item to write it off on (its income account: bad debt)"
                    )));
                };
                mapping::refund_lines(invoice_id, &posted.lines, None, Some(item), amount)?
            }
        };
        let transitions = &invoice.status_transitions;
        let when = match what {
            Unpaid::Voided => transitions.voided_at,
            Unpaid::Uncollectible => transitions.marked_uncollectible_at,
        }
        .unwrap_or(invoice.created);
        let doc = CreditMemoDoc {
            memo: InvoiceDoc {
                external_id: ExternalId::parse(&format!("stripe_{}_{invoice_id}", what.kind()))
                    .map_err(|e| PipelineError::Permanent(e.to_string()))?,
                customer: posted.customer.clone(),
                subsidiary: posted.subsidiary.clone(),
                currency: posted.currency.clone(),
                tran_date: mapping::tran_date(when, &posting.time_zone),
                memo: format!(
                    "Stripe invoice {invoice_id} {} (NetSuite invoice {})",
                    match what {
                        Unpaid::Voided => "voided",
                        Unpaid::Uncollectible => "written off as uncollectible",
                    },
                    sale.external_id
                ),
                other_ref_num: facts.number.clone(),
                lines,
                custom_fields: mapping::memo_fields(&self.inner.settings, invoice_id, None),
            },
            apply_to: Some((posted.id.clone(), open)),
        };
        let (memo_id, outcome) = self
            .create_record(job, "creditMemo", &doc.memo.external_id, doc.to_json())
            .await?;
        self.record_credit_posting(
            job,
            &id,
            what.kind(),
            "creditMemo",
            &memo_id,
            &doc.memo.external_id,
            amount,
        )
        .await?;
        self.audit(
            job,
            match what {
                Unpaid::Voided => "void_posted",
                Unpaid::Uncollectible => "writeoff_posted",
            },
            Some(invoice_id),
            format!(
                "NetSuite credit memo {memo_id} ({}) {outcome:?}: {amount} applied to invoice {ns_invoice}, which is closed",
                doc.memo.external_id
            ),
            Some(json!({"request": doc.to_json().to_value(), "netsuite_internal_id": memo_id.as_str()})),
        )
        .await;
        Ok(())
    }
}
