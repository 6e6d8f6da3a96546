//! Posting a Stripe payout (docs/ACCOUNTING.md, "Payouts"): one NetSuite deposit
//! `stripe_<po_…>` into `posting.payout_bank_account` of the customer payments the payout
//! carried and everything else it netted, its total checked against the payout to the minor unit.

use mlc_core::{Currency, Money, NetSuiteInternalId, StripeId, StripeIdKind};
use mlc_store::{Job, NewPosting};
use serde_json::json;

use super::mapping::{self, PayoutLine};
use super::{Pipeline, PipelineError};
use crate::config::FeeMode;

/// The store's kind for a payout's deposit.
const DEPOSIT: &str = "deposit";

impl Pipeline {
    /// `payout.paid`, `payout.reconciliation_completed`, `payout.failed`: the payout as Stripe
    /// has it now.
    pub(super) async fn post_payout(
        &self,
        job: &Job,
        payout_id: &str,
    ) -> Result<(), PipelineError> {
        StripeId::parse(StripeIdKind::Payout, payout_id)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let posting = &self.inner.posting;
        let Some(bank) = posting.payout_bank_account.clone() else {
            self.audit(
                job,
                "skipped",
                Some(payout_id),
                format!(
                    "Payout {payout_id} is not posted: set posting.payout_bank_account to post each payout as a NetSuite deposit"
                ),
                None,
            )
            .await;
            return Ok(());
        };
        let _guard = self.inner.locks.lock(payout_id).await;
        let store = &self.inner.store;
        if let Some(done) = store.get_posting(payout_id, DEPOSIT).await? {
            let payout = self.inner.stripe.retrieve_payout(payout_id).await?;
            if payout.status.as_deref() == Some("failed") {
                return self.reverse_failed_payout(job, &payout, &done, &bank).await;
            }
            self.audit(
                job,
                "already_posted",
                Some(payout_id),
                format!(
                    "Payout {payout_id} is already NetSuite deposit {}",
                    done.netsuite_internal_id
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let payout = self.inner.stripe.retrieve_payout(payout_id).await?;
        let status = payout.status.clone().unwrap_or_default();
        let reconciled = payout.reconciliation_status.as_deref() == Some("completed");
        // Manual and instant payouts: Stripe cannot say which transactions they carried.
        let manual = payout.reconciliation_status.as_deref() == Some("not_applicable");
        if status != "paid" || !(reconciled || manual) {
            self.audit(
                job,
                "skipped",
                Some(payout_id),
                format!(
                    "Payout {payout_id} is {status}, its reconciliation {}: it posts once it is paid and Stripe has reconciled it",
                    payout.reconciliation_status.as_deref().unwrap_or("unknown")
                ),
                None,
            )
            .await;
            return Ok(());
        }
        let currency = Currency::parse(&payout.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let stripe = &self.inner.stripe;
        let txns = if manual {
            Vec::new()
        } else {
            super::all_pages(
                |after| async move {
                    stripe
                        .list_balance_transactions_for_payout(payout_id, after.as_deref())
                        .await
                },
                |t: &mlc_stripe::models::BalanceTransaction| t.id.as_str(),
            )
            .await?
        };
        let clearing = posting
            .payment_account
            .clone()
            .ok_or(PipelineError::Mapping(
                mapping::MappingError::NotConfigured {
                    what: "the Stripe clearing account a payout empties",
                    key: "posting.payment_account",
                },
            ))?;
        let refunds = posting.refund_account.clone().unwrap_or(clearing.clone());
        let other = posting
            .payout_other_account
            .clone()
            .or(posting.fee_expense_account.clone())
            .unwrap_or(clearing.clone());
        let accounts = (clearing.clone(), refunds, other);
        let (mut lines, mut missing) = if manual {
            // The whole amount out of the clearing account, and listed as not reconcilable.
            let line = PayoutLine::Other {
                account: clearing.clone(),
                what: "manual payout, not reconcilable (Stripe cannot say what it carried)".into(),
                source: payout_id.to_string(),
                amount: payout.amount,
            };
            (vec![line], Vec::new())
        } else {
            self.payout_lines(currency, &txns, &accounts).await?
        };
        // A payout right behind its sales (a test, a backfill) may find a payment still being
        // posted: look again for a few seconds before waiting.
        if !missing.is_empty() {
            // Look again for a few seconds (one NetSuite query each time) before waiting.
            let again = self
                .soon(|| async {
                    let (l, m) = self.payout_lines(currency, &txns, &accounts).await?;
                    Ok(m.is_empty().then_some(l))
                })
                .await?;
            if let Some(l) = again {
                (lines, missing) = (l, Vec::new());
            }
        }
        if !missing.is_empty() {
            self.audit(
                job,
                "waiting_for_payments",
                Some(payout_id),
                format!(
                    "Payout {payout_id} carries {} charge(s) whose payments are not in NetSuite yet: it is deposited once they post",
                    missing.len()
                ),
                None,
            )
            .await;
            return Err(PipelineError::NeedsPerson(format!(
                "payout {payout_id} carries charges whose payments are not in NetSuite yet ({}): it posts once they are",
                missing.join(", ")
            )));
        }
        let amount = Money::new(payout.amount, currency);
        let doc = mapping::deposit_document(
            payout_id,
            amount,
            payout.arrival_date.unwrap_or(payout.created),
            &lines,
            &bank,
            self.currency_id(currency)?,
            &self.inner.settings,
        )?;
        let (id, outcome) = self
            .create_record(job, "deposit", &doc.external_id, doc.to_json())
            .await?;
        store
            .record_posting(NewPosting {
                stripe_object_id: payout_id.to_string(),
                kind: DEPOSIT.into(),
                netsuite_record_type: "deposit".into(),
                netsuite_internal_id: id.to_string(),
                external_id: doc.external_id.to_string(),
                event_id: job.event_id.clone(),
                amount_minor: amount.minor(),
                currency: currency.as_str().to_string(),
            })
            .await?;
        self.audit(
            job,
            "deposit_posted",
            Some(payout_id),
            format!(
                "Payout {payout_id} of {amount} posted as NetSuite deposit {id} ({}) {outcome:?}: {} payments, {} other lines, from {} Stripe transactions",
                doc.external_id,
                doc.payments.len(),
                doc.other.len(),
                txns.len()
            ),
            Some(json!({"request": doc.to_json().to_value(), "netsuite_internal_id": id.as_str()})),
        )
        .await;
        Ok(())
    }

    /// The deposit lines of a payout's transactions, and the charges whose payments are not in
    /// NetSuite yet. `accounts`: clearing, refunds, everything else.
    async fn payout_lines(
        &self,
        currency: Currency,
        txns: &[mlc_stripe::models::BalanceTransaction],
        accounts: &(NetSuiteInternalId, NetSuiteInternalId, NetSuiteInternalId),
    ) -> Result<(Vec<PayoutLine>, Vec<String>), PipelineError> {
        let (clearing, refunds, other) = accounts;
        let posting = &self.inner.posting;
        let is_charge = |t: &&mlc_stripe::models::BalanceTransaction| {
            matches!(t.kind.as_deref(), Some("charge" | "payment"))
        };
        // The customer payments, looked up in NetSuite by their external IDs (one SuiteQL query
        // per 100): NetSuite says what each brought in.
        // A charge made in another currency than the payout's has its NetSuite payment in that
        // currency, which this deposit cannot hold: its settlement amount comes out of the
        // clearing account on an `other` line instead (the payment stays undeposited there;
        // the exchange difference stays in the clearing account).
        let foreign = |t: &mlc_stripe::models::BalanceTransaction| {
            t.exchange_rate
                .is_some_and(|r| r != rust_decimal::Decimal::ONE)
        };
        let wanted: Vec<String> = txns
            .iter()
            .filter(is_charge)
            .filter(|t| !foreign(t))
            .filter_map(|t| t.source.as_ref().map(|s| format!("stripe_pay_{s}")))
            .collect();
        let found = self.transactions_by_external_id(&wanted).await?;
        let mut lines = Vec::new();
        let mut missing = Vec::new();
        for txn in txns {
            let kind = txn.kind.clone().unwrap_or_default();
            let source = txn.source.clone().unwrap_or_default();
            let net = txn.net.unwrap_or(0);
            let other_line = |account: &NetSuiteInternalId, what: &str| PayoutLine::Other {
                account: account.clone(),
                what: what.to_string(),
                source: source.clone(),
                amount: net,
            };
            match kind.as_str() {
                // The payout's own transaction.
                "payout" => {}
                "charge" | "payment" if foreign(txn) => lines.push(other_line(
                    clearing,
                    "charges in other currencies (their payments stay in the clearing account)",
                )),
                "charge" | "payment" => {
                    let Some(payment) = found.get(&format!("stripe_pay_{source}")) else {
                        missing.push(source.clone());
                        continue;
                    };
                    let id = NetSuiteInternalId::parse(&payment.id)
                        .map_err(|e| PipelineError::Permanent(e.to_string()))?;
                    let amount = Money::from_decimal(payment.total, currency)
                        .map_err(|e| PipelineError::Permanent(e.to_string()))?;
                    // Net mode: the payment is net of the fee already; gross: the fee leaves
                    // on its own line.
                    lines.push(PayoutLine::Payment {
                        payment: id,
                        amount: amount.minor(),
                    });
                    if posting.fees == FeeMode::Gross && txn.fee.unwrap_or(0) != 0 {
                        lines.push(PayoutLine::Other {
                            account: posting
                                .fee_clearing_account
                                .clone()
                                .unwrap_or(clearing.clone()),
                            what: "Stripe fees".into(),
                            source: source.clone(),
                            amount: -txn.fee.unwrap_or(0),
                        });
                    }
                }
                "refund" | "payment_refund" => lines.push(other_line(refunds, "refunds")),
                "adjustment" | "refund_failure" => lines.push(other_line(clearing, &kind)),
                _ => lines.push(other_line(other, &kind)),
            }
        }
        Ok((lines, missing))
    }

    /// A payout that failed after it was deposited: the bank gave the money back to Stripe. A
    /// journal entry `stripe_payout_failure_<po_…>` moves it from the bank account back to the
    /// clearing account, where the next payout takes it from.
    async fn reverse_failed_payout(
        &self,
        job: &Job,
        payout: &mlc_stripe::models::Payout,
        deposit: &mlc_store::Posting,
        bank: &NetSuiteInternalId,
    ) -> Result<(), PipelineError> {
        const REVERSAL: &str = "payout_failure";
        let store = &self.inner.store;
        if store.get_posting(&payout.id, REVERSAL).await?.is_some() {
            return Ok(());
        }
        let posting = &self.inner.posting;
        let clearing = posting
            .payment_account
            .clone()
            .ok_or(PipelineError::Mapping(
                mapping::MappingError::NotConfigured {
                    what: "the Stripe clearing account a failed payout returns to",
                    key: "posting.payment_account",
                },
            ))?;
        let currency = Currency::parse(&payout.currency)
            .map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let amount = Money::new(payout.amount, currency);
        let memo = format!(
            "Stripe payout {} failed: the money is back in Stripe (deposit {})",
            payout.id, deposit.netsuite_internal_id
        );
        let doc = mlc_netsuite::documents::JournalEntryDoc {
            external_id: mlc_core::ExternalId::parse(&format!(
                "stripe_payout_failure_{}",
                payout.id
            ))
            .map_err(|e| PipelineError::Permanent(e.to_string()))?,
            subsidiary: posting.subsidiary.clone(),
            currency: self.currency_id(currency)?,
            tran_date: mapping::tran_date(mlc_core::now_millis() / 1000, &posting.time_zone),
            memo: memo.clone(),
            lines: vec![
                mlc_netsuite::documents::JournalLine {
                    account: clearing,
                    debit_minus_credit: amount.to_decimal(),
                    memo: Some(memo.clone()),
                    entity: None,
                },
                mlc_netsuite::documents::JournalLine {
                    account: bank.clone(),
                    debit_minus_credit: -amount.to_decimal(),
                    memo: Some(memo),
                    entity: None,
                },
            ],
            custom_fields: mapping::memo_fields(&self.inner.settings, &payout.id, None),
        };
        let (id, outcome) = self
            .create_record(job, "journalEntry", &doc.external_id, doc.to_json())
            .await?;
        store
            .record_posting(NewPosting {
                stripe_object_id: payout.id.clone(),
                kind: REVERSAL.into(),
                netsuite_record_type: "journalEntry".into(),
                netsuite_internal_id: id.to_string(),
                external_id: doc.external_id.to_string(),
                event_id: job.event_id.clone(),
                amount_minor: amount.minor(),
                currency: currency.as_str().to_string(),
            })
            .await?;
        self.audit(
            job,
            "payout_failure_posted",
            Some(payout.id.as_str()),
            format!(
                "Payout {} failed after its deposit {}: {amount} moved back to the clearing account by NetSuite journal entry {id} ({}) {outcome:?}",
                payout.id, deposit.netsuite_internal_id, doc.external_id
            ),
            None,
        )
        .await;
        Ok(())
    }
}
