//! Posting a Stripe dispute (docs/ACCOUNTING.md, "Disputes"): each of its balance transactions
//! (funds withdrawn, then perhaps reinstated) becomes one NetSuite journal entry
//! `stripe_<txn_…>`, from the dispute as Stripe has it now, whichever of its events came.

use mlc_core::{Money, NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_store::{Job, NewPosting};
use mlc_stripe::models::{Dispute, Expandable};
use serde_json::json;

use super::mapping::{self, DisputeAccounts};
use super::post::INVOICE;
use super::refunds::{Credit, waits_for_sale};
use super::{Pipeline, PipelineError};
use crate::config::DisputePosting;

/// The store's kinds for a dispute's journal entries, keyed by the dispute (`dp_…`), so its
/// event page shows them: Stripe withdraws a dispute's funds at most once and reinstates them
/// at most once.
const DISPUTE_WITHDRAWAL: &str = "dispute_withdrawal";
const DISPUTE_REINSTATEMENT: &str = "dispute_reinstatement";

fn kind_of(movement: &mapping::DisputeMovement) -> &'static str {
    if movement.disputed.minor() >= 0 {
        DISPUTE_WITHDRAWAL
    } else {
        DISPUTE_REINSTATEMENT
    }
}

impl Pipeline {
    /// `charge.dispute.*`: every money movement of the dispute not posted yet, then the audit of
    /// where it stands.
    pub(super) async fn post_dispute(
        &self,
        job: &Job,
        dispute_id: &str,
    ) -> Result<(), PipelineError> {
        StripeId::parse(StripeIdKind::Dispute, dispute_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let _guard = self.inner.locks.lock(dispute_id).await;
        let dispute = self.inner.stripe.retrieve_dispute(dispute_id).await?;
        let status = dispute.status.clone().unwrap_or_default();
        let charge_id = dispute
            .charge
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default();
        let currency = mlc_core::Currency::parse(&dispute.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let amount = Money::new(dispute.amount, currency);
        let mut posted = 0;
        for txn in &dispute.balance_transactions {
            let txn = match txn {
                Expandable::Object(t) => t.as_ref().clone(),
                Expandable::Id(id) => self.inner.stripe.retrieve_balance_transaction(id).await?,
            };
            let Some(movement) = mapping::dispute_movement(&dispute.id, &charge_id, amount, &txn)?
            else {
                continue;
            };
            if self
                .inner
                .store
                .get_posting(&dispute.id, kind_of(&movement))
                .await?
                .is_some()
            {
                continue;
            }
            match self.inner.posting.dispute_posting {
                DisputePosting::Journal => {
                    self.post_dispute_movement(job, &dispute, &movement).await?
                }
                DisputePosting::CreditMemo => {
                    self.post_dispute_as_credit(job, &dispute, &movement)
                        .await?
                }
            }
            posted += 1;
        }
        let (step, message) = match status.as_str() {
            "lost" => (
                "dispute_lost",
                format!(
                    "Dispute {dispute_id} on {charge_id} is lost: the withdrawal of {amount} stands (final)"
                ),
            ),
            "won" => (
                "dispute_won",
                format!("Dispute {dispute_id} on {charge_id} is won: its funds are reinstated"),
            ),
            "warning_closed" | "warning_needs_response" | "warning_under_review" => (
                "skipped",
                format!(
                    "Dispute {dispute_id} on {charge_id} is an inquiry ({status}): no money moved, nothing posted"
                ),
            ),
            _ if posted == 0 => (
                "already_posted",
                format!(
                    "Dispute {dispute_id} on {charge_id} is {status}: its money movements are already in NetSuite"
                ),
            ),
            _ => (
                "dispute_open",
                format!("Dispute {dispute_id} on {charge_id} is {status}"),
            ),
        };
        self.audit(job, step, Some(dispute_id), message, None).await;
        Ok(())
    }

    /// `dispute_posting = "credit_memo"`: withdrawn, a credit memo `stripe_<txn_…>` on the
    /// sale's items paid out by a customer refund `stripe_refund_<txn_…>` (the bank took the
    /// money back), as a refund is; reinstated, an invoice `stripe_<txn_…>` on the lines of that
    /// memo, paid into the clearing account (`stripe_pay_<txn_…>`). The fee is a journal entry
    /// `stripe_fee_<txn_…>` either way. Each needs the sale in NetSuite and waits for it.
    async fn post_dispute_as_credit(
        &self,
        job: &Job,
        dispute: &Dispute,
        movement: &mapping::DisputeMovement,
    ) -> Result<(), PipelineError> {
        let store = &self.inner.store;
        let posting = &self.inner.posting;
        let txn = StripeId::parse(StripeIdKind::BalanceTransaction, &movement.txn_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let charge = movement.charge_id.as_str();
        let sale = self
            .soon(|| async {
                Ok(match store.get_posting(charge, INVOICE).await? {
                    Some(p) => Some(p),
                    None => match store.invoice_covering(charge).await? {
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
                Some(dispute.id.as_str()),
                format!(
                    "Dispute {} {}: in credit memo mode it posts once that sale is in NetSuite",
                    dispute.id,
                    waits_for_sale(charge)
                ),
                None,
            )
            .await;
            return Err(PipelineError::NeedsPerson(format!(
                "dispute {} {}, which is not in NetSuite yet (it posts once the sale is)",
                dispute.id,
                waits_for_sale(charge)
            )));
        };
        let ns_invoice = NetSuiteInternalId::parse(&sale.netsuite_internal_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let tran_date = mapping::tran_date(movement.created, &posting.time_zone);
        let recorded = if movement.disputed.minor() > 0 {
            let invoice = self.read_posted_invoice(ns_invoice).await?;
            let amount = movement.disputed;
            self.post_credit(
                job,
                Credit {
                    object: &txn,
                    invoice: &invoice,
                    memo_amount: amount,
                    applied_to_invoice: None,
                    paid_out: Some(amount),
                    memo_text: format!(
                        "Stripe dispute {} on {charge}: funds withdrawn ({txn})",
                        dispute.id
                    ),
                    tran_date: tran_date.clone(),
                },
                || {
                    mapping::refund_lines(
                        txn.as_str(),
                        &invoice.lines,
                        posting.fee_item.as_ref(),
                        posting.refund_item.as_ref(),
                        amount,
                    )
                },
            )
            .await?;
            store
                .get_posting(txn.as_str(), super::refunds::CREDIT_MEMO)
                .await?
                .map(|p| p.netsuite_internal_id)
        } else if movement.disputed.minor() < 0 {
            Some(
                self.reinstate_as_invoice(job, dispute, movement, &txn, tran_date.clone())
                    .await?
                    .to_string(),
            )
        } else {
            None
        };
        if movement.fee.minor() != 0 {
            let fee_account = posting
                .dispute_fee_account
                .clone()
                .or(posting.fee_expense_account.clone())
                .ok_or(PipelineError::Mapping(
                    mapping::MappingError::NotConfigured {
                        what: "the account Stripe's dispute fee is debited to",
                        key: "posting.dispute_fee_account",
                    },
                ))?;
            let clearing = posting
                .payment_account
                .clone()
                .ok_or(PipelineError::Mapping(
                    mapping::MappingError::NotConfigured {
                        what: "the Stripe clearing account a dispute's money leaves",
                        key: "posting.payment_account",
                    },
                ))?;
            let fee_only = mapping::DisputeMovement {
                disputed: Money::zero(movement.fee.currency()),
                ..movement.clone()
            };
            let mut doc = mapping::dispute_journal_document(
                &fee_only,
                &DisputeAccounts {
                    disputed: fee_account.clone(),
                    fee: fee_account,
                    clearing,
                },
                self.currency_id(movement.fee.currency())?,
                None,
                &self.inner.settings,
            )?;
            doc.external_id = mlc_core::ExternalId::parse(&format!("stripe_fee_{txn}"))
                .map_err(|e| PipelineError::Permanent(e.to_string()))?;
            let (id, outcome) = self
                .create_record(job, "journalEntry", &doc.external_id, doc.to_json())
                .await?;
            self.audit(
                job,
                "dispute_fee_posted",
                Some(dispute.id.as_str()),
                format!(
                    "Dispute {} fee {} posted as NetSuite journal entry {id} ({}) {outcome:?}",
                    dispute.id, movement.fee, doc.external_id
                ),
                Some(json!({"request": doc.to_json().to_value(), "netsuite_internal_id": id.as_str()})),
            )
            .await;
        }
        if let Some(id) = recorded {
            let moved = movement.disputed;
            store
                .record_posting(NewPosting {
                    stripe_object_id: dispute.id.clone(),
                    kind: kind_of(movement).into(),
                    netsuite_record_type: if moved.minor() > 0 {
                        "creditMemo".into()
                    } else {
                        "invoice".into()
                    },
                    netsuite_internal_id: id.clone(),
                    external_id: format!("stripe_{txn}"),
                    event_id: job.event_id.clone(),
                    amount_minor: moved.minor(),
                    currency: moved.currency().as_str().to_string(),
                })
                .await?;
            self.audit(
                job,
                "dispute_posted",
                Some(dispute.id.as_str()),
                format!(
                    "Dispute {} funds {} ({txn}): {} posted as NetSuite {} {id}",
                    dispute.id,
                    if moved.minor() > 0 {
                        "withdrawn"
                    } else {
                        "reinstated"
                    },
                    moved,
                    if moved.minor() > 0 {
                        "credit memo, paid out"
                    } else {
                        "invoice, paid"
                    }
                ),
                None,
            )
            .await;
        }
        Ok(())
    }

    /// A won dispute's money back, in credit memo mode: an invoice on the withdrawal memo's
    /// lines, and a customer payment of it into the clearing account.
    async fn reinstate_as_invoice(
        &self,
        job: &Job,
        dispute: &Dispute,
        movement: &mapping::DisputeMovement,
        txn: &StripeId,
        tran_date: mlc_netsuite::documents::TranDate,
    ) -> Result<NetSuiteInternalId, PipelineError> {
        let store = &self.inner.store;
        let withdrawn = store
            .get_posting(&dispute.id, DISPUTE_WITHDRAWAL)
            .await?
            .ok_or_else(|| {
                PipelineError::Again(format!(
                    "dispute {} is reinstated before its withdrawal is posted",
                    dispute.id
                ))
            })?;
        let memo_id = NetSuiteInternalId::parse(&withdrawn.netsuite_internal_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let memo = self.read_posted("creditMemo", memo_id).await?;
        let doc = mlc_netsuite::documents::InvoiceDoc {
            external_id: mlc_core::ExternalId::for_stripe(txn),
            customer: memo.customer.clone(),
            subsidiary: memo.subsidiary.clone(),
            currency: memo.currency.clone(),
            tran_date: tran_date.clone(),
            memo: format!(
                "Stripe dispute {} on {}: funds reinstated ({txn})",
                dispute.id, movement.charge_id
            ),
            other_ref_num: None,
            lines: memo
                .lines
                .iter()
                .map(|l| mlc_netsuite::documents::InvoiceLine {
                    item: l.item.clone(),
                    quantity: rust_decimal::Decimal::ONE,
                    rate: l.amount,
                    amount: l.amount,
                    description: l.description.clone(),
                    period: None,
                })
                .collect(),
            custom_fields: mapping::memo_fields(&self.inner.settings, &dispute.id, None),
        };
        if doc.total() != movement.disputed.negate().to_decimal() {
            return Err(PipelineError::Permanent(format!(
                "dispute {}: the reinstated {} differs from the withdrawal's credit memo {} ({})",
                dispute.id,
                movement.disputed.negate(),
                withdrawn.netsuite_internal_id,
                doc.total()
            )));
        }
        let (invoice_id, _) = self
            .create_record(job, "invoice", &doc.external_id, doc.to_json())
            .await?;
        let payment = mlc_netsuite::documents::CustomerPaymentDoc {
            external_id: mlc_core::ExternalId::for_stripe_payment(txn),
            customer: memo.customer,
            subsidiary: memo.subsidiary,
            currency: memo.currency,
            account: self.inner.posting.payment_account.clone(),
            tran_date,
            memo: doc.memo.clone(),
            payment: doc.total(),
            apply_to: invoice_id.clone(),
            custom_fields: doc.custom_fields.clone(),
        };
        self.create_record(
            job,
            "customerPayment",
            &payment.external_id,
            payment.to_json(),
        )
        .await?;
        Ok(invoice_id)
    }

    async fn post_dispute_movement(
        &self,
        job: &Job,
        dispute: &Dispute,
        movement: &mapping::DisputeMovement,
    ) -> Result<(), PipelineError> {
        let posting = &self.inner.posting;
        let missing = |what: &'static str, key: &'static str| {
            PipelineError::Mapping(mapping::MappingError::NotConfigured { what, key })
        };
        let disputed = posting.dispute_account.clone().ok_or_else(|| {
            missing(
                "the account a dispute's withdrawn funds are debited to",
                "posting.dispute_account",
            )
        })?;
        let accounts = DisputeAccounts {
            fee: posting
                .dispute_fee_account
                .clone()
                .or_else(|| posting.fee_expense_account.clone())
                .unwrap_or_else(|| disputed.clone()),
            clearing: posting.payment_account.clone().ok_or_else(|| {
                missing(
                    "the Stripe clearing account a dispute's money leaves",
                    "posting.payment_account",
                )
            })?,
            disputed,
        };
        let currency = self.currency_id(movement.disputed.currency())?;
        let doc = mapping::dispute_journal_document(
            movement,
            &accounts,
            currency,
            None,
            &self.inner.settings,
        )?;
        let (id, outcome) = self
            .create_record(job, "journalEntry", &doc.external_id, doc.to_json())
            .await?;
        let moved = movement
            .disputed
            .checked_add(movement.fee)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        self.inner
            .store
            .record_posting(NewPosting {
                stripe_object_id: dispute.id.clone(),
                kind: kind_of(movement).into(),
                netsuite_record_type: "journalEntry".into(),
                netsuite_internal_id: id.to_string(),
                external_id: doc.external_id.to_string(),
                event_id: job.event_id.clone(),
                amount_minor: moved.minor(),
                currency: moved.currency().as_str().to_string(),
            })
            .await?;
        let what = if movement.disputed.minor() >= 0 {
            "withdrawn"
        } else {
            "reinstated"
        };
        self.audit(
            job,
            "dispute_posted",
            Some(dispute.id.as_str()),
            format!(
                "Dispute {} funds {what} ({}): {} disputed, {} fee, posted as NetSuite journal entry {id} ({}) {outcome:?}",
                dispute.id,
                movement.txn_id,
                movement.disputed,
                movement.fee,
                doc.external_id
            ),
            Some(json!({"request": doc.to_json().to_value(), "netsuite_internal_id": id.as_str()})),
        )
        .await;
        Ok(())
    }
}
