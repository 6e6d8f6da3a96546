//! Posting a Stripe dispute (docs/ACCOUNTING.md, "Disputes"): each of its balance transactions
//! (funds withdrawn, then perhaps reinstated) becomes one NetSuite journal entry
//! `stripe_<txn_…>`, from the dispute as Stripe has it now, whichever of its events came.

use mlc_core::{Money, StripeId, StripeIdKind};
use mlc_store::{Job, NewPosting};
use mlc_stripe::models::{Dispute, Expandable};
use serde_json::json;

use super::mapping::{self, DisputeAccounts};
use super::{Pipeline, PipelineError};

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
            self.post_dispute_movement(job, &dispute, &movement).await?;
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
