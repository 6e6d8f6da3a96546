//! The reconciliation (docs/ACCOUNTING.md, "Reconciliation"): for a period, what Stripe's
//! balance says moved, against what NetSuite holds, per currency and to the minor unit, with
//! every difference named by its Stripe object.
//!
//! - **Stripe's side** is its balance transactions created in the period: each charge (its
//!   captured amount and fee, in the charge's currency), each refund, and each dispute's
//!   withdrawal or reinstatement (with its fee).
//! - **NetSuite's side** is the records those objects should have made, read by external ID: the
//!   sale's invoice (its lines, fee lines apart), the fee journal in gross mode, each refund's
//!   credit memo and customer refund, and each dispute movement's journal entry.
//!
//! It only reads, from both systems. Balance transactions of kinds the connector does not post
//! (payouts, Stripe's own fees, failed refunds) are listed apart with their sums, so nothing is
//! silently left out.

use std::collections::{BTreeMap, HashMap};

use mlc_core::{Currency, ExternalId, Money, StripeId, StripeIdKind};
use mlc_store::HistoryRun;
use mlc_stripe::ChargeFacts;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::mapping;
use super::post::{ChargeInvoice, INVOICE};
use super::{Pipeline, PipelineError};
use crate::config::FeeMode;

/// How many external IDs one SuiteQL lookup names.
const LOOKUP_BATCH: usize = 100;

/// One term of a currency's reconciliation, in minor units.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Term {
    pub stripe_minor: i64,
    pub netsuite_minor: i64,
}

impl Term {
    /// NetSuite less Stripe: zero when they agree.
    pub fn difference(&self) -> i64 {
        self.netsuite_minor - self.stripe_minor
    }

    fn add(&mut self, stripe: i64, netsuite: i64) {
        self.stripe_minor += stripe;
        self.netsuite_minor += netsuite;
    }
}

/// One currency: `sales − fees − refunds − credit notes − disputes = net`, on both sides.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CurrencyReconciliation {
    /// What customers paid for sales (captured amounts), against the invoices' sale lines.
    pub sales: Term,
    /// Stripe's processing fees, in the charge currency, against the invoices' fee lines (net
    /// mode) or the fee journals (gross mode).
    pub fees: Term,
    /// Refunds, against the credit memos.
    pub refunds: Term,
    /// Credit notes (what they credit, refunded or not), against their credit memos.
    pub credit_notes: Term,
    /// What disputes withdrew less what was reinstated, against the dispute journal entries'
    /// lines on `posting.dispute_account` (their fees are in `fees`).
    pub disputes: Term,
    /// Revenue net of fees, refunds and disputes.
    pub net: Term,
}

/// A Stripe object whose NetSuite record is missing or says something else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Difference {
    /// `ch_…`, `re_…`, or `in_…` for an invoice paid by several charges.
    pub stripe_object: String,
    /// `sales`, `fees`, `refunds`, `credit_notes`, `disputes` or `payouts`.
    pub term: String,
    pub currency: Currency,
    pub stripe_minor: i64,
    pub netsuite_minor: i64,
    /// The external ID the NetSuite record has, or would have.
    pub netsuite_record: String,
    /// What is wrong and what to do, for a person.
    pub reason: String,
}

/// Balance transactions of a kind the connector does not post (yet).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotReconciled {
    pub count: i64,
    /// Sums in the settlement currency.
    pub amounts: BTreeMap<Currency, i64>,
}

/// A period's reconciliation (stored as JSON on its run).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconciliationReport {
    /// `[since, until)`, Unix seconds.
    pub since: i64,
    pub until: i64,
    pub currencies: BTreeMap<Currency, CurrencyReconciliation>,
    pub differences: Vec<Difference>,
    /// By balance transaction type (`payout` without `posting.payout_bank_account`, …).
    pub not_reconciled: BTreeMap<String, NotReconciled>,
    /// Each payout of the period against its deposit (with `posting.payout_bank_account`).
    #[serde(default)]
    pub payouts: Vec<PayoutReconciliation>,
    /// Balance transactions read.
    pub scanned: i64,
}

/// A payout against its NetSuite deposit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PayoutReconciliation {
    /// `po_…`
    pub payout: String,
    /// The settlement currency.
    pub currency: Currency,
    /// What Stripe paid out.
    pub stripe_minor: i64,
    /// The deposit's total; 0 when there is none.
    pub netsuite_minor: i64,
    /// `stripe_<po_…>` when the deposit exists.
    pub deposit: Option<String>,
}

impl ReconciliationReport {
    /// No difference in any term of any currency.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
            && self.currencies.values().all(|c| {
                [
                    c.sales,
                    c.fees,
                    c.refunds,
                    c.credit_notes,
                    c.disputes,
                    c.net,
                ]
                .iter()
                .all(|t| t.difference() == 0)
            })
    }
}

/// The period of `from` to `to` (both included) in `tz`: its start (Unix milliseconds) and its
/// length in days, as a reconciliation run stores them.
pub fn period_of(
    from: jiff::civil::Date,
    to: jiff::civil::Date,
    tz: &jiff::tz::TimeZone,
) -> Result<(i64, i64), String> {
    if to < from {
        return Err(format!("the period ends ({to}) before it starts ({from})"));
    }
    let start = from
        .to_zoned_datetime(tz.clone())
        .map_err(|e| format!("{from}: {e}"))?;
    let days = i64::from(
        to.since(from)
            .map_err(|e| format!("{from} to {to}: {e}"))?
            .get_days(),
    ) + 1;
    Ok((start.timestamp().as_millisecond(), days))
}

/// `[since, until)` in Unix seconds for a run that starts at `since_ms` and lasts `days` days of
/// `tz` (a day of a clock change is 23 or 25 hours).
pub fn window_of(since_ms: i64, days: i64, tz: &jiff::tz::TimeZone) -> Result<(i64, i64), String> {
    let start = jiff::Timestamp::from_millisecond(since_ms)
        .map_err(|e| e.to_string())?
        .to_zoned_datetime(tz.clone());
    let end = start
        .date()
        .checked_add(jiff::Span::new().days(days))
        .map_err(|e| e.to_string())?
        .to_zoned_datetime(tz.clone())
        .map_err(|e| e.to_string())?;
    Ok((start.timestamp().as_second(), end.timestamp().as_second()))
}

/// What one NetSuite sale invoice should hold, from the charges of the period that paid it.
struct ExpectedSale {
    currency: Currency,
    gross: i64,
    fee: i64,
    /// The charges, for naming a difference.
    charges: Vec<String>,
}

/// A NetSuite transaction found by external ID.
pub(super) struct Found {
    pub id: String,
    pub total: Decimal,
}

impl Pipeline {
    /// Reconciles `[since, until)` (Unix seconds). `run`, when given, gets the progress.
    pub async fn reconcile(
        &self,
        since: i64,
        until: i64,
        run: Option<&HistoryRun>,
    ) -> Result<ReconciliationReport, PipelineError> {
        let mut report = ReconciliationReport {
            since,
            until,
            ..ReconciliationReport::default()
        };
        let mut sales: BTreeMap<String, ExpectedSale> = BTreeMap::new();
        // Gross mode: `stripe_fee_<ch>` → (currency, fee, charge).
        let mut fee_journals: BTreeMap<String, (Currency, i64, String)> = BTreeMap::new();
        // `re_…` → refunded amount.
        let mut refunds: BTreeMap<String, Money> = BTreeMap::new();
        // Refunds that failed or were cancelled: they should have no credit memo.
        let mut failed_refunds: BTreeMap<String, Money> = BTreeMap::new();
        // Payouts of the period (`po_…`, amount), when they are posted as deposits.
        let mut payouts: Vec<(String, Money)> = Vec::new();
        // Dispute money movements, and the disputes read for them.
        let mut movements: Vec<mapping::DisputeMovement> = Vec::new();
        let mut disputes: HashMap<String, mlc_stripe::models::Dispute> = HashMap::new();
        let gross_mode = self.inner.posting.fees == FeeMode::Gross;

        let stripe = &self.inner.stripe;
        let txns = super::all_pages(
            |after| async move {
                stripe
                    .list_balance_transactions_between(since, until, after.as_deref())
                    .await
            },
            |t: &mlc_stripe::models::BalanceTransaction| t.id.as_str(),
        )
        .await?;
        for txn in txns {
            report.scanned += 1;
            if let Some(run) = run {
                self.progress(run, report.scanned, 0).await;
            }
            let kind = txn.kind.clone().unwrap_or_default();
            let source = txn.source.clone().unwrap_or_default();
            match kind.as_str() {
                "charge" | "payment" if StripeId::parse(StripeIdKind::Charge, &source).is_ok() => {
                    let charge = stripe.retrieve_charge(&source).await?;
                    let facts = ChargeFacts::from_charge(&charge)?;
                    if facts.captured_amount.minor() == 0 {
                        continue;
                    }
                    let fee = mapping::fee_in_charge_currency(&facts)?.map_or(0, |f| f.minor());
                    let key = self.sale_record_of(&charge, &facts).await?;
                    let sale = sales.entry(key).or_insert_with(|| ExpectedSale {
                        currency: facts.currency,
                        gross: 0,
                        fee: 0,
                        charges: Vec::new(),
                    });
                    sale.gross += facts.captured_amount.minor();
                    sale.fee += fee;
                    sale.charges.push(facts.id.to_string());
                    if gross_mode && fee != 0 {
                        fee_journals.insert(
                            format!("stripe_fee_{}", facts.id),
                            (facts.currency, fee, facts.id.to_string()),
                        );
                    }
                }
                "refund" | "payment_refund"
                    if StripeId::parse(StripeIdKind::Refund, &source).is_ok() =>
                {
                    let refund = stripe.retrieve_refund(&source).await?;
                    if refund.status.as_deref() != Some("succeeded") {
                        // A refund that failed or was cancelled gives the money back to the
                        // balance by a `refund_failure` transaction, listed below; the pair
                        // nets to nothing. If it had posted, its credit memo is looked at.
                        not_reconciled(&mut report, "refund (not succeeded)", &txn);
                        if let Ok(currency) = Currency::parse(&refund.currency) {
                            failed_refunds
                                .insert(refund.id.clone(), Money::new(refund.amount, currency));
                        }
                        continue;
                    }
                    let currency = Currency::parse(&refund.currency)
                        .map_err(|e| PipelineError::Permanent(e.to_string()))?;
                    refunds.insert(refund.id.clone(), Money::new(refund.amount, currency));
                }
                "adjustment" if StripeId::parse(StripeIdKind::Dispute, &source).is_ok() => {
                    if !disputes.contains_key(&source) {
                        let dispute = stripe.retrieve_dispute(&source).await?;
                        disputes.insert(source.clone(), dispute);
                    }
                    let dispute = &disputes[&source];
                    let currency = Currency::parse(&dispute.currency)
                        .map_err(|e| PipelineError::Permanent(e.to_string()))?;
                    let charge = dispute
                        .charge
                        .as_ref()
                        .map(|c| c.id().to_string())
                        .unwrap_or_default();
                    if let Some(movement) = mapping::dispute_movement(
                        &dispute.id,
                        &charge,
                        Money::new(dispute.amount, currency),
                        &txn,
                    )? {
                        movements.push(movement);
                    }
                }
                "payout"
                    if self.inner.posting.payout_bank_account.is_some()
                        && StripeId::parse(StripeIdKind::Payout, &source).is_ok() =>
                {
                    let currency = Currency::parse(&txn.currency)
                        .map_err(|e| PipelineError::Permanent(e.to_string()))?;
                    payouts.push((
                        source.clone(),
                        Money::new(-txn.amount.unwrap_or(0), currency),
                    ));
                }
                _ => not_reconciled(&mut report, &kind, &txn),
            }
        }

        // The credit notes of the period. Their refunds are theirs (posted with them), and a
        // pre-payment one lowered what its invoice's charges brought in.
        let notes = super::all_pages(
            |after| async move {
                stripe
                    .list_credit_notes_between(since, until, after.as_deref())
                    .await
            },
            |n: &mlc_stripe::models::CreditNote| n.id.as_str(),
        )
        .await?;
        for note in &notes {
            for (refund_id, _) in super::credit_notes::refunds_of(note) {
                refunds.remove(&refund_id);
            }
            let pre = note.pre_payment_amount.unwrap_or(0);
            if note.status.as_deref() == Some("issued")
                && pre > 0
                && let Some(invoice) = note.invoice.as_ref()
                && let Some(sale) = sales.get_mut(&format!("stripe_{}", invoice.id()))
            {
                sale.gross += pre;
            }
        }

        // NetSuite's records, by the external IDs the Stripe objects give them.
        let mut wanted: Vec<String> = sales.keys().cloned().collect();
        for note in &notes {
            wanted.push(format!("stripe_{}", note.id));
            wanted.push(format!("stripe_refund_{}", note.id));
            if let Some(invoice) = note.invoice.as_ref() {
                wanted.push(format!("stripe_{}", invoice.id()));
            }
        }
        wanted.extend(fee_journals.keys().cloned());
        for id in refunds.keys() {
            wanted.push(format!("stripe_{id}"));
            wanted.push(format!("stripe_refund_{id}"));
        }
        wanted.extend(payouts.iter().map(|(po, _)| format!("stripe_{po}")));
        for m in &movements {
            wanted.push(format!("stripe_{}", m.txn_id));
            wanted.push(format!("stripe_fee_{}", m.txn_id));
        }
        wanted.extend(failed_refunds.keys().map(|id| format!("stripe_{id}")));
        let found = self.transactions_by_external_id(&wanted).await?;
        let fee_item = self.inner.posting.fee_item.clone();

        for (external_id, sale) in &sales {
            let named = if sale.charges.len() == 1 {
                sale.charges[0].clone()
            } else {
                external_id.trim_start_matches("stripe_").to_string()
            };
            let totals = report.currencies.entry(sale.currency).or_default();
            let Some(record) = found.get(external_id) else {
                totals.sales.add(sale.gross, 0);
                if !gross_mode {
                    totals.fees.add(sale.fee, 0);
                }
                report.differences.push(Difference {
                    stripe_object: named,
                    term: "sales".into(),
                    currency: sale.currency,
                    stripe_minor: sale.gross,
                    netsuite_minor: 0,
                    netsuite_record: external_id.clone(),
                    reason: format!(
                        "no NetSuite invoice {external_id}: the sale has not posted (look at its events: `ml-connector events list`, or replay them)"
                    ),
                });
                continue;
            };
            // The sale lines and the fee lines apart (net mode: the fee is a negative line).
            let (ns_gross, ns_fee) = if gross_mode {
                (minor(record.total, sale.currency), 0)
            } else {
                let id = mlc_core::NetSuiteInternalId::parse(&record.id)
                    .map_err(|e| PipelineError::Permanent(e.to_string()))?;
                let invoice = self.read_posted_invoice(id).await?;
                let (mut gross, mut fee) = (Decimal::ZERO, Decimal::ZERO);
                for line in &invoice.lines {
                    if Some(&line.item) == fee_item.as_ref() {
                        fee -= line.amount;
                    } else {
                        gross += line.amount;
                    }
                }
                (minor(gross, sale.currency), minor(fee, sale.currency))
            };
            totals.sales.add(sale.gross, ns_gross);
            if ns_gross != sale.gross {
                report.differences.push(Difference {
                    stripe_object: named.clone(),
                    term: "sales".into(),
                    currency: sale.currency,
                    stripe_minor: sale.gross,
                    netsuite_minor: ns_gross,
                    netsuite_record: external_id.clone(),
                    reason: format!(
                        "NetSuite invoice {external_id} (internal ID {}) holds another amount than Stripe collected",
                        record.id
                    ),
                });
            }
            if !gross_mode {
                totals.fees.add(sale.fee, ns_fee);
                if ns_fee != sale.fee {
                    report.differences.push(Difference {
                        stripe_object: named,
                        term: "fees".into(),
                        currency: sale.currency,
                        stripe_minor: sale.fee,
                        netsuite_minor: ns_fee,
                        netsuite_record: external_id.clone(),
                        reason: format!(
                            "the fee lines of NetSuite invoice {external_id} differ from Stripe's fee"
                        ),
                    });
                }
            }
        }
        for (external_id, (currency, fee, charge)) in &fee_journals {
            let ns_fee = found
                .get(external_id)
                .map_or(0, |r| minor(r.total, *currency));
            report
                .currencies
                .entry(*currency)
                .or_default()
                .fees
                .add(*fee, ns_fee);
            if ns_fee != *fee {
                report.differences.push(Difference {
                    stripe_object: charge.clone(),
                    term: "fees".into(),
                    currency: *currency,
                    stripe_minor: *fee,
                    netsuite_minor: ns_fee,
                    netsuite_record: external_id.clone(),
                    reason: match found.get(external_id) {
                        None => format!("no NetSuite fee journal {external_id}"),
                        Some(r) => format!(
                            "NetSuite journal {external_id} (internal ID {}) holds another fee than Stripe's",
                            r.id
                        ),
                    },
                });
            }
        }
        for (refund_id, amount) in &refunds {
            let currency = amount.currency();
            let memo_id = format!("stripe_{refund_id}");
            let cash_id = format!("stripe_refund_{refund_id}");
            let memo = found.get(&memo_id).map(|r| minor(r.total, currency));
            let cash = found.get(&cash_id).map(|r| minor(r.total, currency));
            report
                .currencies
                .entry(currency)
                .or_default()
                .refunds
                .add(amount.minor(), memo.unwrap_or(0));
            let problem = match (memo, cash) {
                (None, _) => Some((
                    memo_id.clone(),
                    0,
                    format!(
                        "no NetSuite credit memo {memo_id}: the refund has not posted (look at its events, or replay them)"
                    ),
                )),
                (Some(m), _) if m != amount.minor() => Some((
                    memo_id.clone(),
                    m,
                    format!(
                        "NetSuite credit memo {memo_id} holds another amount than Stripe refunded"
                    ),
                )),
                (Some(m), None) => Some((
                    cash_id.clone(),
                    m,
                    format!(
                        "no NetSuite customer refund {cash_id}: the credit memo is posted but the cash has not left the clearing account"
                    ),
                )),
                (Some(m), Some(c)) if c != amount.minor() => Some((
                    cash_id.clone(),
                    m,
                    format!(
                        "NetSuite customer refund {cash_id} pays out another amount than Stripe refunded"
                    ),
                )),
                _ => None,
            };
            if let Some((record, netsuite_minor, reason)) = problem {
                report.differences.push(Difference {
                    stripe_object: refund_id.clone(),
                    term: "refunds".into(),
                    currency,
                    stripe_minor: amount.minor(),
                    netsuite_minor,
                    netsuite_record: record,
                    reason,
                });
            }
        }
        for (refund_id, amount) in &failed_refunds {
            let memo_id = format!("stripe_{refund_id}");
            let Some(memo) = found.get(&memo_id) else {
                continue;
            };
            let currency = amount.currency();
            let memo_minor = minor(memo.total, currency);
            report
                .currencies
                .entry(currency)
                .or_default()
                .refunds
                .add(0, memo_minor);
            report.differences.push(Difference {
                stripe_object: refund_id.clone(),
                term: "refunds".into(),
                currency,
                stripe_minor: 0,
                netsuite_minor: memo_minor,
                netsuite_record: memo_id.clone(),
                reason: format!(
                    "the refund failed in Stripe after it posted: the money is back in Stripe, and NetSuite credit memo {memo_id} is still the customer's credit; refund the customer another way, or credit the memo back"
                ),
            });
        }
        for note in &notes {
            self.reconcile_credit_note(note, &found, &mut report)
                .await?;
        }
        for (payout, amount) in &payouts {
            let currency = amount.currency();
            let deposit_id = format!("stripe_{payout}");
            let deposit = found.get(&deposit_id);
            let ns = deposit.map_or(0, |d| minor(d.total, currency));
            if ns != amount.minor() {
                report.differences.push(Difference {
                    stripe_object: payout.clone(),
                    term: "payouts".into(),
                    currency,
                    stripe_minor: amount.minor(),
                    netsuite_minor: ns,
                    netsuite_record: deposit_id.clone(),
                    reason: match deposit {
                        None => format!(
                            "no NetSuite deposit {deposit_id}: the payout has not posted (it posts once paid and reconciled by Stripe; look at its events)"
                        ),
                        Some(d) => format!(
                            "NetSuite deposit {deposit_id} (internal ID {}) holds another amount than the payout",
                            d.id
                        ),
                    },
                });
            }
            report.payouts.push(PayoutReconciliation {
                payout: payout.clone(),
                currency,
                stripe_minor: amount.minor(),
                netsuite_minor: ns,
                deposit: deposit.map(|_| deposit_id),
            });
        }
        for movement in &movements {
            self.reconcile_dispute_movement(movement, &found, &mut report)
                .await?;
        }
        for totals in report.currencies.values_mut() {
            totals.net = Term {
                stripe_minor: totals.sales.stripe_minor
                    - totals.fees.stripe_minor
                    - totals.refunds.stripe_minor
                    - totals.credit_notes.stripe_minor
                    - totals.disputes.stripe_minor,
                netsuite_minor: totals.sales.netsuite_minor
                    - totals.fees.netsuite_minor
                    - totals.refunds.netsuite_minor
                    - totals.credit_notes.netsuite_minor
                    - totals.disputes.netsuite_minor,
            };
        }
        Ok(report)
    }

    /// One credit note against its credit memo (and the customer refund of its refunded
    /// part). One voided before it posted, or on an invoice not in NetSuite (not paid, with
    /// `invoice_trigger = "paid"`), expects nothing.
    async fn reconcile_credit_note(
        &self,
        note: &mlc_stripe::models::CreditNote,
        found: &HashMap<String, Found>,
        report: &mut ReconciliationReport,
    ) -> Result<(), PipelineError> {
        let currency =
            Currency::parse(&note.currency).map_err(|e| PipelineError::Permanent(e.to_string()))?;
        let memo_id = format!("stripe_{}", note.id);
        let memo = found.get(&memo_id).map(|r| minor(r.total, currency));
        let invoice_posted = note
            .invoice
            .as_ref()
            .is_some_and(|i| found.contains_key(&format!("stripe_{}", i.id())));
        let mut differ =
            |stripe_minor: i64, netsuite_minor: i64, record: String, reason: String| {
                report.differences.push(Difference {
                    stripe_object: note.id.clone(),
                    term: "credit_notes".into(),
                    currency,
                    stripe_minor,
                    netsuite_minor,
                    netsuite_record: record,
                    reason,
                });
            };
        if note.status.as_deref() == Some("void") {
            if let Some(m) = memo {
                report
                    .currencies
                    .entry(currency)
                    .or_default()
                    .credit_notes
                    .add(0, m);
                differ(
                    0,
                    m,
                    memo_id.clone(),
                    format!(
                        "credit note {} was voided in Stripe after it posted: void NetSuite credit memo {memo_id}",
                        note.id
                    ),
                );
            }
            return Ok(());
        }
        if memo.is_none() && !invoice_posted {
            let entry = report
                .not_reconciled
                .entry("credit note on an invoice not in NetSuite".into())
                .or_default();
            entry.count += 1;
            *entry.amounts.entry(currency).or_default() += note.total;
            return Ok(());
        }
        let ns = memo.unwrap_or(0);
        report
            .currencies
            .entry(currency)
            .or_default()
            .credit_notes
            .add(note.total, ns);
        if memo.is_none() {
            differ(
                note.total,
                0,
                memo_id.clone(),
                format!(
                    "no NetSuite credit memo {memo_id}: the credit note has not posted (look at its events, or replay them)"
                ),
            );
        } else if ns != note.total {
            differ(
                note.total,
                ns,
                memo_id.clone(),
                format!("NetSuite credit memo {memo_id} holds another amount than the credit note"),
            );
        }
        let mut refunded = 0_i64;
        for (refund_id, amount) in super::credit_notes::refunds_of(note) {
            refunded += match amount {
                Some(a) => a,
                None => self.inner.stripe.retrieve_refund(&refund_id).await?.amount,
            };
        }
        let cash_id = format!("stripe_refund_{}", note.id);
        let cash = found.get(&cash_id).map_or(0, |r| minor(r.total, currency));
        if memo.is_some() && cash != refunded {
            differ(
                refunded,
                cash,
                cash_id.clone(),
                format!(
                    "the credit note refunded {} but NetSuite customer refund {cash_id} pays out {}",
                    Money::new(refunded, currency),
                    Money::new(cash, currency)
                ),
            );
        }
        Ok(())
    }

    /// One dispute movement against its journal entry: the lines on the dispute account are
    /// the disputed amount, those on the fee account the fee.
    async fn reconcile_dispute_movement(
        &self,
        movement: &mapping::DisputeMovement,
        found: &HashMap<String, Found>,
        report: &mut ReconciliationReport,
    ) -> Result<(), PipelineError> {
        let currency = movement.disputed.currency();
        let external_id = format!("stripe_{}", movement.txn_id);
        let posting = &self.inner.posting;
        let (mut disputed, mut fee) = (Decimal::ZERO, Decimal::ZERO);
        if posting.dispute_posting == crate::config::DisputePosting::CreditMemo {
            // Withdrawn: the credit memo; reinstated: the invoice. The fee: its own journal.
            let sign = Decimal::from(movement.disputed.minor().signum());
            if let Some(record) = found.get(&external_id) {
                disputed = record.total * sign;
            }
            if let Some(record) = found.get(&format!("stripe_fee_{}", movement.txn_id)) {
                fee = record.total * Decimal::from(movement.fee.minor().signum());
            }
        } else if let Some(record) = found.get(&external_id) {
            let id = mlc_core::NetSuiteInternalId::parse(&record.id)
                .map_err(|e| PipelineError::Permanent(e.to_string()))?;
            let journal = self
                .inner
                .netsuite
                .get_expanded("journalEntry", &id)
                .await?;
            let fee_account = posting
                .dispute_fee_account
                .as_ref()
                .or(posting.fee_expense_account.as_ref())
                .or(posting.dispute_account.as_ref());
            let lines = journal
                .pointer("/line/items")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for line in &lines {
                let account = line
                    .pointer("/account/id")
                    .and_then(|v| match v {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let amount = |key: &str| {
                    line.get(key)
                        .and_then(|v| v.to_string().trim_matches('"').parse::<Decimal>().ok())
                        .unwrap_or_default()
                };
                let signed = amount("debit") - amount("credit");
                if posting.dispute_account.as_ref().map(|a| a.as_str()) == Some(account.as_str()) {
                    disputed += signed;
                } else if fee_account.map(|a| a.as_str()) == Some(account.as_str()) {
                    fee += signed;
                }
            }
        }
        let (ns_disputed, ns_fee) = (minor(disputed, currency), minor(fee, currency));
        let totals = report.currencies.entry(currency).or_default();
        totals.disputes.add(movement.disputed.minor(), ns_disputed);
        totals.fees.add(movement.fee.minor(), ns_fee);
        if ns_disputed != movement.disputed.minor() || ns_fee != movement.fee.minor() {
            let missing = !found.contains_key(&external_id);
            report.differences.push(Difference {
                stripe_object: movement.dispute_id.clone(),
                term: "disputes".into(),
                currency,
                stripe_minor: movement.disputed.minor() + movement.fee.minor(),
                netsuite_minor: ns_disputed + ns_fee,
                netsuite_record: external_id.clone(),
                reason: if missing {
                    format!(
                        "no NetSuite journal entry {external_id} for the dispute's {}: it has not posted (look at its events, or replay them)",
                        movement.txn_id
                    )
                } else {
                    format!(
                        "NetSuite journal entry {external_id} moves another amount than Stripe's {}",
                        movement.txn_id
                    )
                },
            });
        }
        Ok(())
    }

    /// The external ID of the NetSuite invoice a charge's money belongs to: the Stripe invoice it
    /// paid (`stripe_<in_…>`), else its own (`stripe_<ch_…>`). What was posted says so first;
    /// for a sale not posted, Stripe's links do, as when posting.
    async fn sale_record_of(
        &self,
        charge: &mlc_stripe::models::Charge,
        facts: &ChargeFacts,
    ) -> Result<String, PipelineError> {
        let store = &self.inner.store;
        if let Some(posted) = store.get_posting(&charge.id, INVOICE).await? {
            return Ok(posted.external_id);
        }
        if let Some(invoice) = store.invoice_covering(&charge.id).await? {
            return Ok(format!("stripe_{invoice}"));
        }
        let session_invoice = self.checkout_session(facts).await?.and_then(|s| s.invoice);
        let invoice = match session_invoice {
            Some(invoice) => Some(invoice),
            None => match self.invoice_of_charge(charge, facts).await? {
                ChargeInvoice::Paid(invoice) => Some(invoice),
                ChargeInvoice::None | ChargeInvoice::Unknown(_) => None,
            },
        };
        Ok(match invoice {
            Some(invoice) => format!("stripe_{invoice}"),
            None => ExternalId::for_stripe(&facts.id).to_string(),
        })
    }

    /// NetSuite transactions by external ID, a batch per SuiteQL query.
    pub(super) async fn transactions_by_external_id(
        &self,
        external_ids: &[String],
    ) -> Result<HashMap<String, Found>, PipelineError> {
        let mut found = HashMap::new();
        for batch in external_ids.chunks(LOOKUP_BATCH) {
            let marks = vec!["?"; batch.len()].join(", ");
            let query = format!(
                "SELECT id, externalid, foreigntotal FROM transaction WHERE externalid IN ({marks})"
            );
            for row in self
                .inner
                .netsuite
                .suiteql_all(&query, batch.to_vec())
                .await?
            {
                let text = |key: &str| match row.get(key) {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                let (Some(id), Some(external_id)) = (text("id"), text("externalid")) else {
                    continue;
                };
                // Credit memos and refunds may read negative (the direction they post in).
                let total = text("foreigntotal")
                    .and_then(|t| t.parse::<Decimal>().ok())
                    .unwrap_or_default()
                    .abs();
                found.insert(external_id, Found { id, total });
            }
        }
        Ok(found)
    }
}

/// A NetSuite amount in the currency's minor units. An amount with more decimals than the
/// currency has cannot be Stripe's; it is kept to the unit so the difference shows.
fn minor(amount: Decimal, currency: Currency) -> i64 {
    match Money::from_decimal(amount, currency) {
        Ok(m) => m.minor(),
        Err(_) => {
            let scaled = amount * Decimal::from(10_i64.pow(currency.exponent()));
            scaled.trunc().try_into().unwrap_or(i64::MAX)
        }
    }
}

fn not_reconciled(
    report: &mut ReconciliationReport,
    kind: &str,
    txn: &mlc_stripe::models::BalanceTransaction,
) {
    let entry = report.not_reconciled.entry(kind.to_string()).or_default();
    entry.count += 1;
    if let (Ok(currency), Some(amount)) = (Currency::parse(&txn.currency), txn.amount) {
        *entry.amounts.entry(currency).or_default() += amount;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_whole_days_of_the_zone() {
        let tz = jiff::tz::TimeZone::get("America/Los_Angeles").expect("zone");
        let from: jiff::civil::Date = "2026-11-01".parse().expect("date");
        let to: jiff::civil::Date = "2026-11-30".parse().expect("date");
        let (since_ms, days) = period_of(from, to, &tz).expect("period");
        assert_eq!(days, 30);
        let (since, until) = window_of(since_ms, days, &tz).expect("window");
        // Midnight in Los Angeles: 07:00 UTC in summer time, 08:00 after it ends on 1 November.
        assert_eq!(since, 1_793_516_400);
        assert_eq!(until, 1_796_112_000);
        // The clock change makes the month an hour longer than 30 × 24 hours.
        assert_eq!(until - since, 30 * 86_400 + 3_600);
        assert!(period_of(to, from, &tz).is_err());
    }

    #[test]
    fn netsuite_amounts_become_minor_units_of_the_currency() {
        let jpy = Currency::parse("jpy").expect("jpy");
        let kwd = Currency::parse("kwd").expect("kwd");
        assert_eq!(minor("680".parse().expect("dec"), jpy), 680);
        assert_eq!(minor("12.345".parse().expect("dec"), kwd), 12_345);
        assert_eq!(minor("12.3".parse().expect("dec"), kwd), 12_300);
    }
}
