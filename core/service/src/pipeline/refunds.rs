//! Posting a Stripe refund (docs/ACCOUNTING.md, "Refunds"): a credit memo on the sale's items
//! for the customer of the sale's NetSuite invoice, and a customer refund paying it out of the
//! refund account, each once by its external ID (`stripe_<re_…>`, `stripe_refund_<re_…>`).

use mlc_core::{ExternalId, Money, NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_netsuite::documents::{CreditMemoDoc, CustomerRefundDoc, InvoiceDoc};
use mlc_store::{Job, NewPosting};
use mlc_stripe::models::Refund;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::mapping::{self, PostedLine};
use super::post::INVOICE;
use super::{Pipeline, PipelineError};

pub(super) const CREDIT_MEMO: &str = "credit_memo";
pub(super) const CUSTOMER_REFUND: &str = "customer_refund";
/// The journal entry that gives back a refund that failed after it posted.
const REFUND_REVERSAL: &str = "refund_reversal";

/// The words a refund's wait for its sale holds: posting the sale wakes it (see
/// [`Pipeline::wake_waiting_on`]).
pub(super) fn waits_for_sale(charge: &str) -> String {
    format!("waits for the sale of charge {charge}")
}

fn id_of(value: &Value, key: &str) -> Option<NetSuiteInternalId> {
    match value.get(key)?.get("id")? {
        Value::String(s) => NetSuiteInternalId::parse(s).ok(),
        Value::Number(n) => NetSuiteInternalId::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// One credit to write into NetSuite (see [`Pipeline::post_credit`]).
pub(super) struct Credit<'a> {
    /// The Stripe refund or credit note: the records' external IDs come from it.
    pub object: &'a StripeId,
    /// The sale it credits, as NetSuite holds it.
    pub invoice: &'a PostedInvoice,
    pub memo_amount: Money,
    /// How much of the memo closes what is open on the invoice (a pre-payment credit note).
    pub applied_to_invoice: Option<Money>,
    /// How much of the memo is paid out to the customer (a refund).
    pub paid_out: Option<Money>,
    pub memo_text: String,
    pub tran_date: mlc_netsuite::documents::TranDate,
}

/// A posted NetSuite invoice as the records that reverse it need it.
pub(super) struct PostedInvoice {
    pub id: NetSuiteInternalId,
    pub customer: NetSuiteInternalId,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    pub lines: Vec<PostedLine>,
    /// What is still open on it (`amountRemaining`), when NetSuite says.
    pub remaining: Option<Decimal>,
}

impl Pipeline {
    /// The NetSuite invoice `id` as NetSuite holds it: its customer, currency and lines.
    pub(super) async fn read_posted_invoice(
        &self,
        id: NetSuiteInternalId,
    ) -> Result<PostedInvoice, PipelineError> {
        self.read_posted("invoice", id).await
    }

    /// A posted NetSuite invoice or credit memo (`record_type`), as [`Self::read_posted_invoice`].
    pub(super) async fn read_posted(
        &self,
        record_type: &str,
        id: NetSuiteInternalId,
    ) -> Result<PostedInvoice, PipelineError> {
        let invoice = self.inner.netsuite.get_expanded(record_type, &id).await?;
        let customer = id_of(&invoice, "entity").ok_or_else(|| {
            PipelineError::Permanent(format!("NetSuite {record_type} {id} has no customer"))
        })?;
        let lines = invoice
            .pointer("/item/items")
            .and_then(Value::as_array)
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| {
                        Some(PostedLine {
                            item: id_of(l, "item")?,
                            amount: decimal(l.get("amount")?)?,
                            description: l
                                .get("description")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(PostedInvoice {
            customer,
            subsidiary: id_of(&invoice, "subsidiary").or(self.inner.posting.subsidiary.clone()),
            currency: id_of(&invoice, "currency"),
            lines,
            remaining: invoice.get("amountRemaining").and_then(decimal),
            id,
        })
    }

    /// `charge.refunded`: every refund of the charge (one event may stand for several).
    pub(super) async fn post_charge_refunds(
        &self,
        job: &Job,
        charge_id: &str,
    ) -> Result<(), PipelineError> {
        let refunds = self.inner.stripe.list_refunds_for_charge(charge_id).await?;
        for refund in &refunds {
            self.post_one_refund(job, refund).await?;
        }
        Ok(())
    }

    /// `refund.created`, `refund.updated`, `refund.failed`: the refund as Stripe has it now.
    pub(super) async fn post_refund(
        &self,
        job: &Job,
        refund_id: &str,
    ) -> Result<(), PipelineError> {
        StripeId::parse(StripeIdKind::Refund, refund_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let refund = self.inner.stripe.retrieve_refund(refund_id).await?;
        self.post_one_refund(job, &refund).await
    }

    /// `found`, looked at again for a few seconds while it is `None`. A refund or credit note
    /// often arrives while its sale is being posted by another job: waiting here a moment
    /// posts it now, rather than after its wait (the sale's job wakes the waiting ones, but
    /// only those already recorded as waiting).
    pub(super) async fn soon<T, F, Fut>(&self, mut found: F) -> Result<Option<T>, PipelineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, PipelineError>>,
    {
        const TRIES: u32 = 12;
        for attempt in 0..TRIES {
            if let Some(t) = found().await? {
                return Ok(Some(t));
            }
            if attempt + 1 < TRIES {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
        Ok(None)
    }

    /// After a charge's payment posts: what waits on that charge runs now (a refund or a
    /// dispute that came before its sale, a payout that carried it). One indexed read when
    /// nothing waits, which is the usual case.
    pub(super) async fn wake_waiting_on(&self, charge_id: &str) {
        let store = &self.inner.store;
        let woken = match store.has_waiting_jobs().await {
            Ok(false) => Ok(0),
            Ok(true) => store.wake_waiting_jobs(charge_id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = woken {
            tracing::warn!(
                stripe.charge = charge_id,
                "cannot wake what waits for this charge's sale: {e}"
            );
        }
    }

    async fn post_one_refund(&self, job: &Job, refund: &Refund) -> Result<(), PipelineError> {
        let refund_id = StripeId::parse(StripeIdKind::Refund, &refund.id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let _guard = self.inner.locks.lock(refund_id.as_str()).await;
        let store = &self.inner.store;
        let memo_posted = store.get_posting(refund_id.as_str(), CREDIT_MEMO).await?;
        let cash_posted = store
            .get_posting(refund_id.as_str(), CUSTOMER_REFUND)
            .await?;
        let status = refund.status.clone().unwrap_or_default();
        if let (Some(memo), Some(cash)) = (&memo_posted, &cash_posted) {
            if matches!(status.as_str(), "failed" | "canceled") {
                return self
                    .reverse_failed_refund(job, refund, &refund_id, memo, cash)
                    .await;
            }
            self.audit(
                job,
                "already_posted",
                Some(refund_id.as_str()),
                format!(
                    "Refund {refund_id} is already NetSuite credit memo {} with customer refund {}; nothing to do",
                    memo.netsuite_internal_id, cash.netsuite_internal_id
                ),
                None,
            )
            .await;
            return Ok(());
        }
        if status != "succeeded" {
            // Pending refunds post when Stripe says they succeeded (`refund.updated`); failed or
            // cancelled ones that never posted post nothing.
            self.audit(
                job,
                "skipped",
                Some(refund_id.as_str()),
                format!("Refund {refund_id} is {status} in Stripe: nothing posted"),
                None,
            )
            .await;
            return Ok(());
        }
        let currency = mlc_core::Currency::parse(&refund.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let amount = Money::new(refund.amount, currency);
        let charge_id = match &refund.charge {
            Some(c) => c.id().to_string(),
            None => {
                return Err(PipelineError::Permanent(format!(
                    "refund {refund_id} names no charge: nothing to credit"
                )));
            }
        };
        // The sale it refunds: the charge's own invoice, or the Stripe invoice the charge paid.
        let sale = self
            .soon(|| async {
                Ok(match store.get_posting(&charge_id, INVOICE).await? {
                    Some(p) => Some(p),
                    None => match store.invoice_covering(&charge_id).await? {
                        Some(invoice) => store.get_posting(&invoice, INVOICE).await?,
                        None => None,
                    },
                })
            })
            .await?;
        let Some(sale) = sale else {
            self.audit(
                job,
                "waiting_for_sale",
                Some(refund_id.as_str()),
                format!(
                    "Refund {refund_id} {}: it posts once that sale is in NetSuite",
                    waits_for_sale(&charge_id)
                ),
                None,
            )
            .await;
            return Err(PipelineError::NeedsPerson(format!(
                "refund {refund_id} {}, which is not in NetSuite yet (it posts by itself once the sale is; if the sale never posts, look at its event)",
                waits_for_sale(&charge_id)
            )));
        };
        // A refund made by a credit note is posted with the credit note (`stripe_<cn_…>`).
        if let Some(invoice_id) = sale.external_id.strip_prefix("stripe_in_") {
            let invoice_id = format!("in_{invoice_id}");
            if let Some(note) = self
                .credit_note_of_refund(&invoice_id, refund_id.as_str())
                .await?
            {
                self.audit(
                    job,
                    "covered_by_credit_note",
                    Some(refund_id.as_str()),
                    format!(
                        "Refund {refund_id} was made by credit note {note}: it posts with the credit note, not on its own"
                    ),
                    None,
                )
                .await;
                return Ok(());
            }
        }
        let ns_invoice = NetSuiteInternalId::parse(&sale.netsuite_internal_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        // What the sale posted, as NetSuite holds it: its customer, currency and lines.
        let invoice = self.read_posted_invoice(ns_invoice.clone()).await?;
        let posting = &self.inner.posting;
        let tran_date = mapping::tran_date(refund.created, &posting.time_zone);
        let memo_text = format!(
            "Stripe refund {refund_id} of {charge_id} (NetSuite invoice {})",
            sale.external_id
        );
        let lines = || {
            mapping::refund_lines(
                refund_id.as_str(),
                &invoice.lines,
                posting.fee_item.as_ref(),
                posting.refund_item.as_ref(),
                amount,
            )
        };
        self.post_credit(
            job,
            Credit {
                object: &refund_id,
                invoice: &invoice,
                memo_amount: amount,
                applied_to_invoice: None,
                paid_out: Some(amount),
                memo_text,
                tran_date,
            },
            lines,
        )
        .await
    }

    /// Writes one credit into NetSuite, each record once: the credit memo `stripe_<id>` (for
    /// the sale's customer, subsidiary and currency; applied to the sale's invoice for
    /// `applied_to_invoice`), then, for `paid_out`, the customer refund `stripe_refund_<id>`
    /// paying that much of it out of the refund account. A refund and a credit note both come
    /// here.
    pub(super) async fn post_credit(
        &self,
        job: &Job,
        credit: Credit<'_>,
        lines: impl FnOnce() -> Result<Vec<mlc_netsuite::documents::InvoiceLine>, mapping::MappingError>,
    ) -> Result<(), PipelineError> {
        let store = &self.inner.store;
        let posting = &self.inner.posting;
        let object = credit.object;
        let invoice = credit.invoice;
        let custom = mapping::memo_fields(&self.inner.settings, object.as_str(), None);
        let amount = credit.memo_amount;
        let ns_memo = match store.get_posting(object.as_str(), CREDIT_MEMO).await? {
            Some(p) => NetSuiteInternalId::parse(&p.netsuite_internal_id)
                .map_err(|e| PipelineError::Permanent(e.to_string()))?,
            None => {
                let doc = CreditMemoDoc {
                    memo: InvoiceDoc {
                        external_id: ExternalId::for_stripe(object),
                        customer: invoice.customer.clone(),
                        subsidiary: invoice.subsidiary.clone(),
                        currency: invoice.currency.clone(),
                        tran_date: credit.tran_date.clone(),
                        memo: credit.memo_text.clone(),
                        other_ref_num: None,
                        lines: lines()?,
                        custom_fields: custom.clone(),
                    },
                    apply_to: credit
                        .applied_to_invoice
                        .filter(|a| a.minor() != 0)
                        .map(|a| (invoice.id.clone(), a.to_decimal())),
                };
                let (id, outcome) = self
                    .create_record(job, "creditMemo", &doc.memo.external_id, doc.to_json())
                    .await?;
                self.record_credit_posting(
                    job,
                    object,
                    CREDIT_MEMO,
                    "creditMemo",
                    &id,
                    &doc.memo.external_id,
                    amount,
                )
                .await?;
                let applied = match &doc.apply_to {
                    Some((_, a)) => format!(", {a} applied to invoice {}", invoice.id),
                    None => String::new(),
                };
                self.audit(
                    job,
                    "credit_memo_posted",
                    Some(object.as_str()),
                    format!(
                        "NetSuite credit memo {id} ({}) {outcome:?}: {amount} credited on {} line(s) to the customer of invoice {}{applied}",
                        doc.memo.external_id,
                        doc.memo.lines.len(),
                        invoice.id
                    ),
                    Some(json!({"request": doc.to_json().to_value(), "netsuite_internal_id": id.as_str()})),
                )
                .await;
                id
            }
        };
        let Some(cash) = credit.paid_out.filter(|c| c.minor() != 0) else {
            return Ok(());
        };
        if store
            .get_posting(object.as_str(), CUSTOMER_REFUND)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let doc = CustomerRefundDoc {
            external_id: ExternalId::for_stripe_refund(object),
            customer: invoice.customer.clone(),
            subsidiary: invoice.subsidiary.clone(),
            currency: invoice.currency.clone(),
            account: posting
                .refund_account
                .clone()
                .or(posting.payment_account.clone()),
            tran_date: credit.tran_date,
            memo: credit.memo_text,
            amount: cash.to_decimal(),
            apply_to: ns_memo.clone(),
            custom_fields: custom,
        };
        let (id, outcome) = self
            .create_record(job, "customerRefund", &doc.external_id, doc.to_json())
            .await?;
        self.record_credit_posting(
            job,
            object,
            CUSTOMER_REFUND,
            "customerRefund",
            &id,
            &doc.external_id,
            cash,
        )
        .await?;
        self.audit(
            job,
            "refund_posted",
            Some(object.as_str()),
            format!(
                "NetSuite customer refund {id} ({}) {outcome:?}: {cash} paid out, applied to credit memo {ns_memo}",
                doc.external_id
            ),
            Some(json!({"request": doc.to_json().to_value(), "netsuite_internal_id": id.as_str()})),
        )
        .await;
        Ok(())
    }

    /// A refund that failed (or was cancelled) after it posted: the cash came back to Stripe
    /// and the customer is owed again. A journal entry `stripe_refund_failure_<re_…>` debits the
    /// refund account and credits the customer's receivable (`posting.receivables_account`),
    /// so the credit memo is open credit again and the clearing account matches Stripe's
    /// balance. Without that account it waits for a person, naming it.
    async fn reverse_failed_refund(
        &self,
        job: &Job,
        refund: &Refund,
        refund_id: &StripeId,
        memo: &mlc_store::Posting,
        cash: &mlc_store::Posting,
    ) -> Result<(), PipelineError> {
        let store = &self.inner.store;
        let status = refund.status.clone().unwrap_or_default();
        if let Some(done) = store
            .get_posting(refund_id.as_str(), REFUND_REVERSAL)
            .await?
        {
            self.audit(
                job,
                "already_posted",
                Some(refund_id.as_str()),
                format!(
                    "Refund {refund_id} is {status}; its reversal is already NetSuite journal entry {}",
                    done.netsuite_internal_id
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let posting = &self.inner.posting;
        let Some(receivables) = posting.receivables_account.clone() else {
            return Err(PipelineError::NeedsPerson(format!(
                "refund {refund_id} is {status} in Stripe after it was posted: set posting.receivables_account (the A/R account) and replay this event to reverse NetSuite customer refund {} by a journal entry, or void it in NetSuite (credit memo {} then stays as the customer's credit)",
                cash.netsuite_internal_id, memo.netsuite_internal_id
            )));
        };
        let cash_account = posting
            .refund_account
            .clone()
            .or(posting.payment_account.clone())
            .ok_or(PipelineError::Mapping(
                mapping::MappingError::NotConfigured {
                    what: "the account a refund's cash left, which a failed refund gives back",
                    key: "posting.payment_account",
                },
            ))?;
        let memo_id = NetSuiteInternalId::parse(&memo.netsuite_internal_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let memo_record = self.inner.netsuite.get("creditMemo", &memo_id).await?;
        let customer = id_of(&memo_record, "entity").ok_or_else(|| {
            PipelineError::Permanent(format!("NetSuite credit memo {memo_id} has no customer"))
        })?;
        let currency = mlc_core::Currency::parse(&cash.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let amount = Money::new(cash.amount_minor, currency);
        // Dated when the money came back: the failure's balance transaction (else now).
        let failed_at = match refund
            .raw
            .get("failure_balance_transaction")
            .and_then(|t| t.as_str().or_else(|| t.get("id").and_then(|i| i.as_str())))
        {
            Some(txn) => {
                self.inner
                    .stripe
                    .retrieve_balance_transaction(txn)
                    .await?
                    .created
            }
            None => mlc_core::now_millis() / 1000,
        };
        let doc = mapping::refund_reversal_document(
            refund_id,
            amount,
            &cash_account,
            &receivables,
            &customer,
            id_of(&memo_record, "currency"),
            failed_at,
            &self.inner.settings,
        )?;
        let (id, outcome) = self
            .create_record(job, "journalEntry", &doc.external_id, doc.to_json())
            .await?;
        self.record_credit_posting(
            job,
            refund_id,
            REFUND_REVERSAL,
            "journalEntry",
            &id,
            &doc.external_id,
            amount,
        )
        .await?;
        self.audit(
            job,
            "refund_reversed",
            Some(refund_id.as_str()),
            format!(
                "Refund {refund_id} is {status} in Stripe: customer refund {} reversed by NetSuite journal entry {id} ({}) {outcome:?}; credit memo {} is the customer's credit again",
                cash.netsuite_internal_id, doc.external_id, memo.netsuite_internal_id
            ),
            Some(json!({"request": doc.to_json().to_value(), "netsuite_internal_id": id.as_str()})),
        )
        .await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_credit_posting(
        &self,
        job: &Job,
        refund_id: &StripeId,
        kind: &str,
        record_type: &str,
        id: &NetSuiteInternalId,
        external_id: &ExternalId,
        amount: Money,
    ) -> Result<(), PipelineError> {
        self.inner
            .store
            .record_posting(NewPosting {
                stripe_object_id: refund_id.to_string(),
                kind: kind.into(),
                netsuite_record_type: record_type.into(),
                netsuite_internal_id: id.to_string(),
                external_id: external_id.to_string(),
                event_id: job.event_id.clone(),
                amount_minor: amount.minor(),
                currency: amount.currency().as_str().to_string(),
            })
            .await?;
        Ok(())
    }
}
