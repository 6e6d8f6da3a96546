//! Posting a Stripe credit note (docs/ACCOUNTING.md, "Credit notes"): a credit memo
//! `stripe_<cn_…>` on the credited invoice's customer and the credited lines' items; the
//! pre-payment part applied to the NetSuite invoice, the refunded part paid out by a customer
//! refund `stripe_refund_<cn_…>`, the rest left as the customer's credit. The refunds a credit
//! note makes are posted with it, never again on their own.

use std::collections::{BTreeMap, BTreeSet};

use mlc_core::{Money, NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_store::Job;
use mlc_stripe::InvoiceFacts;
use mlc_stripe::models::{CreditNote, Expandable};

use super::mapping::{self, CreditNoteLine};
use super::post::INVOICE;
use super::refunds::{CREDIT_MEMO, CUSTOMER_REFUND, Credit};
use super::{Pipeline, PipelineError};

/// The store's kind marking a credit note's memo deleted after Stripe voided it.
const CREDIT_MEMO_DELETED: &str = "credit_memo_deleted";

/// The words a credit note's wait for its invoice holds: posting the invoice wakes it.
pub(super) fn waits_for_invoice(invoice: &str) -> String {
    format!("waits for the sale of invoice {invoice}")
}

/// The refunds a credit note made: their IDs, with their amounts where the credit note states
/// them (newer API versions list `refunds[]`; older ones name one `refund`).
pub(super) fn refunds_of(note: &CreditNote) -> Vec<(String, Option<i64>)> {
    let mut out: Vec<(String, Option<i64>)> = note
        .refunds
        .iter()
        .filter_map(|r| Some((r.refund.as_ref()?.id().to_string(), Some(r.amount_refunded))))
        .collect();
    if out.is_empty() {
        match &note.refund {
            Some(Expandable::Object(r)) => out.push((r.id.clone(), Some(r.amount))),
            Some(Expandable::Id(id)) => out.push((id.clone(), None)),
            None => {}
        }
    }
    out
}

impl Pipeline {
    /// `credit_note.created`, `.updated`, `.voided`: the credit note as Stripe has it now.
    pub(super) async fn post_credit_note(
        &self,
        job: &Job,
        note_id: &str,
    ) -> Result<(), PipelineError> {
        let note_sid = StripeId::parse(StripeIdKind::CreditNote, note_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let _guard = self.inner.locks.lock(note_id).await;
        let store = &self.inner.store;
        let note = self.inner.stripe.retrieve_credit_note(note_id).await?;
        let memo_posted = store.get_posting(note_id, CREDIT_MEMO).await?;
        if note.status.as_deref() == Some("void") {
            return match memo_posted {
                None => {
                    self.audit(
                        job,
                        "skipped",
                        Some(note_id),
                        format!("Credit note {note_id} was voided before it posted: nothing posts"),
                        None,
                    )
                    .await;
                    Ok(())
                }
                Some(memo) => self.reverse_voided_credit_note(job, &note_sid, &memo).await,
            };
        }
        let invoice_id = note
            .invoice
            .as_ref()
            .map(|i| i.id().to_string())
            .ok_or_else(|| {
                PipelineError::Permanent(format!("credit note {note_id} names no invoice"))
            })?;
        let posted = store.get_posting(&invoice_id, INVOICE).await?;
        // Not in NetSuite: with the paid trigger, an invoice Stripe has not been paid for never
        // is until it is paid (its pre-payment credit notes post with it then); a paid one's
        // job may be posting it right now.
        let stripe_paid = match &posted {
            Some(_) => true,
            None => {
                self.inner
                    .stripe
                    .retrieve_invoice(&invoice_id)
                    .await?
                    .status
                    .as_deref()
                    == Some("paid")
            }
        };
        if posted.is_none()
            && !stripe_paid
            && self.inner.posting.invoice_trigger == crate::config::InvoiceTrigger::Paid
        {
            self.audit(
                job,
                "skipped",
                Some(note_id),
                format!(
                    "Credit note {note_id} lowers what invoice {invoice_id} asks for; that invoice is not paid, so it is not in NetSuite yet: the credit note posts with it when it is paid"
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let sale = match posted {
            Some(p) => Some(p),
            None => {
                self.soon(|| async { Ok(store.get_posting(&invoice_id, INVOICE).await?) })
                    .await?
            }
        };
        let Some(sale) = sale else {
            self.audit(
                job,
                "waiting_for_sale",
                Some(note_id),
                format!(
                    "Credit note {note_id} {}: it posts once that invoice is in NetSuite",
                    waits_for_invoice(&invoice_id)
                ),
                None,
            )
            .await;
            return Err(PipelineError::NeedsPerson(format!(
                "credit note {note_id} {}, which is not in NetSuite yet (it posts by itself once the invoice is; an invoice that is never paid never posts with posting.invoice_trigger = \"paid\")",
                waits_for_invoice(&invoice_id)
            )));
        };
        let ns_invoice = NetSuiteInternalId::parse(&sale.netsuite_internal_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let invoice = self.read_posted_invoice(ns_invoice).await?;
        let currency = mlc_core::Currency::parse(&note.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let total = Money::new(note.total, currency);
        let mut refunded = 0_i64;
        for (refund_id, amount) in refunds_of(&note) {
            refunded += match amount {
                Some(a) => a,
                None => self.inner.stripe.retrieve_refund(&refund_id).await?.amount,
            };
        }
        // The pre-payment part closes what is open on the invoice; NetSuite refuses more.
        let pre =
            note.pre_payment_amount
                .unwrap_or(if note.kind.as_deref() == Some("pre_payment") {
                    note.total
                } else {
                    0
                });
        let open = invoice
            .remaining
            .and_then(|r| Money::from_decimal(r, currency).ok())
            .map_or(0, |m| m.minor());
        let applied = pre.min(open).max(0);
        let lines = self.credit_note_lines(&note, &invoice_id).await?;
        let posting = &self.inner.posting;
        let out_of_band = note.out_of_band_amount.unwrap_or(0);
        let left = note.total - refunded - applied - out_of_band;
        self.post_credit(
            job,
            Credit {
                object: &note_sid,
                invoice: &invoice,
                memo_amount: total,
                applied_to_invoice: Some(Money::new(applied, currency)),
                paid_out: Some(Money::new(refunded, currency)),
                memo_text: format!(
                    "Stripe credit note {}{note_id} on {invoice_id} (NetSuite invoice {})",
                    note.number
                        .as_deref()
                        .map(|n| format!("{n}, "))
                        .unwrap_or_default(),
                    sale.external_id
                ),
                tran_date: mapping::tran_date(
                    note.effective_at.unwrap_or(note.created),
                    &posting.time_zone,
                ),
            },
            || {
                mapping::credit_note_lines(
                    note_id,
                    &lines,
                    total,
                    posting.refund_item.as_ref(),
                    posting.default_item.as_ref(),
                    posting.discount_item.as_ref(),
                    posting.tax_item.as_ref(),
                )
            },
        )
        .await?;
        self.audit(
            job,
            "credit_note_posted",
            Some(note_id),
            format!(
                "Credit note {note_id} of {total}: {} applied to the invoice, {} refunded, {} out of band, {} left as the customer's credit",
                Money::new(applied, currency),
                Money::new(refunded, currency),
                Money::new(out_of_band, currency),
                Money::new(left.max(0), currency)
            ),
            None,
        )
        .await;
        Ok(())
    }

    /// A credit note voided in Stripe after it posted: its credit memo is deleted in NetSuite
    /// (REST has no void; a delete takes its application to the invoice with it, which is what
    /// Stripe's void does to the invoice). Stripe voids only a credit note that refunded
    /// nothing, so no customer refund depends on the memo; if one does, a person decides.
    async fn reverse_voided_credit_note(
        &self,
        job: &Job,
        note: &StripeId,
        memo: &mlc_store::Posting,
    ) -> Result<(), PipelineError> {
        let store = &self.inner.store;
        if store
            .get_posting(note.as_str(), CREDIT_MEMO_DELETED)
            .await?
            .is_some()
        {
            self.audit(
                job,
                "already_posted",
                Some(note.as_str()),
                format!(
                    "Credit note {note} is void; its credit memo {} is already deleted",
                    memo.netsuite_internal_id
                ),
                None,
            )
            .await;
            return Ok(());
        }
        if let Some(cash) = store.get_posting(note.as_str(), CUSTOMER_REFUND).await? {
            return Err(PipelineError::NeedsPerson(format!(
                "credit note {note} was voided in Stripe after its refund was posted: void NetSuite customer refund {} and credit memo {} in NetSuite",
                cash.netsuite_internal_id, memo.netsuite_internal_id
            )));
        }
        let id = NetSuiteInternalId::parse(&memo.netsuite_internal_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        self.inner.netsuite.delete("creditMemo", &id).await?;
        let currency = mlc_core::Currency::parse(&memo.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        self.record_credit_posting(
            job,
            note,
            CREDIT_MEMO_DELETED,
            "creditMemo",
            &id,
            &mlc_core::ExternalId::parse(&memo.external_id)
                .map_err(|e| PipelineError::Permanent(e.to_string()))?,
            Money::new(memo.amount_minor, currency),
        )
        .await?;
        self.audit(
            job,
            "credit_memo_deleted",
            Some(note.as_str()),
            format!(
                "Credit note {note} was voided in Stripe: NetSuite credit memo {id} ({}) deleted, and its application to the invoice with it",
                memo.external_id
            ),
            None,
        )
        .await;
        Ok(())
    }

    /// Each credit note line with the item of the invoice line it credits (by the line's
    /// product); a custom line has none. A product without an item waits as a sale would.
    async fn credit_note_lines(
        &self,
        note: &CreditNote,
        invoice_id: &str,
    ) -> Result<Vec<CreditNoteLine>, PipelineError> {
        let stripe_lines = note
            .lines
            .as_ref()
            .map(|l| l.data.clone())
            .unwrap_or_default();
        let credits_invoice_lines = stripe_lines.iter().any(|l| l.invoice_line_item.is_some());
        let products: BTreeMap<String, String> = if credits_invoice_lines {
            let invoice = self.inner.stripe.retrieve_invoice(invoice_id).await?;
            InvoiceFacts::from_invoice(&invoice)?
                .lines
                .iter()
                .filter_map(|l| Some((l.id.clone(), l.product_id.as_ref()?.to_string())))
                .collect()
        } else {
            BTreeMap::new()
        };
        let wanted: BTreeSet<String> = stripe_lines
            .iter()
            .filter_map(|l| products.get(l.invoice_line_item.as_deref()?).cloned())
            .collect();
        let (items, unmapped) = self.resolve_items(&wanted).await?;
        if !unmapped.is_empty() {
            return Err(PipelineError::Mapping(
                mapping::MappingError::UnmappedProducts(unmapped),
            ));
        }
        Ok(stripe_lines
            .iter()
            .map(|l| CreditNoteLine {
                item: l
                    .invoice_line_item
                    .as_deref()
                    .and_then(|il| products.get(il))
                    .and_then(|p| items.get(p))
                    .cloned(),
                amount: l.amount,
                discount: l.discount_amount.unwrap_or(0),
                description: l.description.clone(),
            })
            .collect())
    }

    /// After an invoice posts: its credit notes post now (a pre-payment one was waiting for it
    /// to be paid; a post-payment one that came first may be waiting too).
    pub(super) async fn post_credit_notes_of(
        &self,
        job: &Job,
        invoice_id: &str,
    ) -> Result<(), PipelineError> {
        for note in self
            .inner
            .stripe
            .list_credit_notes_for_invoice(invoice_id)
            .await?
        {
            if note.status.as_deref() == Some("issued") {
                self.post_credit_note(job, &note.id).await?;
            }
        }
        self.wake_credit_notes_of(invoice_id).await;
        Ok(())
    }

    /// After an invoice posts: a credit note that came first and waits for it runs now.
    pub(super) async fn wake_credit_notes_of(&self, invoice_id: &str) {
        if let Err(e) = self
            .inner
            .store
            .wake_waiting_jobs(&waits_for_invoice(invoice_id))
            .await
        {
            tracing::warn!(
                stripe.invoice = invoice_id,
                "cannot wake the credit notes waiting for this invoice: {e}"
            );
        }
    }

    /// The credit note of `invoice_id` that made refund `refund_id`, if one did: that refund is
    /// posted with the credit note, not on its own.
    pub(super) async fn credit_note_of_refund(
        &self,
        invoice_id: &str,
        refund_id: &str,
    ) -> Result<Option<String>, PipelineError> {
        let notes = self
            .inner
            .stripe
            .list_credit_notes_for_invoice(invoice_id)
            .await?;
        Ok(notes
            .iter()
            .find(|n| refunds_of(n).iter().any(|(r, _)| r == refund_id))
            .map(|n| n.id.clone()))
    }
}
