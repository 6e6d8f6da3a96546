//! Stripe facts → NetSuite documents. Pure: no I/O, no clock, no randomness.
//!
//! The caller resolves the NetSuite customer, items and currency first (that needs I/O and may
//! wait for a person); this module only decides lines, amounts, dates and references, and checks
//! that the NetSuite total equals Stripe's to the minor unit before anything is sent.

use std::collections::BTreeMap;

use mlc_core::{Currency, ExternalId, Money, NetSuiteInternalId, StripeId};
use mlc_netsuite::documents::{
    CustomFields, CustomerPaymentDoc, InvoiceDoc, InvoiceLine, JournalEntryDoc, JournalLine,
    TranDate,
};
use mlc_stripe::facts::{ChargeFacts, InvoiceFacts};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::json;

pub use crate::config::FeeMode;

/// Configured NetSuite references and choices the mapping needs.
#[derive(Debug, Clone)]
pub struct PostingSettings {
    pub fee_mode: FeeMode,
    pub time_zone: jiff::tz::TimeZone,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub discount_item: Option<NetSuiteInternalId>,
    pub tax_item: Option<NetSuiteInternalId>,
    pub fee_item: Option<NetSuiteInternalId>,
    /// Deposit account of customer payments (Stripe clearing or bank).
    pub payment_account: Option<NetSuiteInternalId>,
    /// Gross mode: the fee expense account debited and the clearing account credited.
    pub fee_expense_account: Option<NetSuiteInternalId>,
    pub fee_clearing_account: Option<NetSuiteInternalId>,
    /// Custom body field receiving the Stripe object ID (invoice or charge); empty = none.
    pub stripe_id_field: Option<String>,
    /// Custom body field receiving the Stripe customer ID; empty = none.
    pub stripe_customer_field: Option<String>,
}

/// NetSuite references resolved for one posting.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub customer: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    /// Stripe product ID → NetSuite item.
    pub items: BTreeMap<String, NetSuiteInternalId>,
}

/// Why a document cannot be built. Every variant says what a person can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("no NetSuite item is mapped to Stripe product(s) {}", .0.join(", "))]
    UnmappedProducts(Vec<String>),
    #[error("{what} is needed but not configured: set {key}")]
    NotConfigured {
        what: &'static str,
        key: &'static str,
    },
    #[error(
        "Stripe line {line} of {object} names no product and no default item is configured (posting.default_item)"
    )]
    LineWithoutProduct { object: String, line: String },
    #[error("the NetSuite document would total {netsuite} but Stripe says {stripe}: not posted")]
    DoesNotAddUp { netsuite: String, stripe: String },
    #[error(
        "the fee of {charge} is in {fee_currency} but the charge is in {currency} and Stripe gave no exchange rate"
    )]
    NoExchangeRate {
        charge: String,
        fee_currency: Currency,
        currency: Currency,
    },
    #[error("NetSuite customer not resolved")]
    NoCustomer,
    #[error("amount overflow")]
    Overflow,
    /// An amount Stripe left out is never read as zero.
    #[error("Stripe {object} has no {field}: not posted")]
    MissingAmount { object: String, field: &'static str },
    #[error("Stripe {object} is in currency `{currency}`, which is not an ISO 4217 code")]
    UnknownCurrency { object: String, currency: String },
    /// A refund bigger than what the posted sale credits (or a sale with nothing to credit).
    #[error("refund {refund} of {object} is more than the {sale} its NetSuite invoice credits")]
    RefundExceedsSale {
        object: String,
        refund: String,
        sale: String,
    },
}

impl mlc_core::Classify for MappingError {
    fn class(&self) -> mlc_core::ErrorClass {
        match self {
            MappingError::Overflow
            | MappingError::MissingAmount { .. }
            | MappingError::UnknownCurrency { .. } => mlc_core::ErrorClass::Permanent,
            _ => mlc_core::ErrorClass::NeedsPerson,
        }
    }
}

/// The date of a unix time in the NetSuite account's time zone.
pub fn tran_date(unix_secs: i64, tz: &jiff::tz::TimeZone) -> TranDate {
    let date = jiff::Timestamp::from_second(unix_secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(tz.clone())
        .date();
    // jiff renders civil dates as YYYY-MM-DD, which is what TranDate accepts.
    TranDate::parse(&date.to_string()).unwrap_or_else(|_| unreachable!("jiff dates are ISO"))
}

/// The fee of a charge in the charge's own currency: Stripe states fees in the settlement
/// currency, and `settlement = charge × exchange_rate`, so `fee / rate`, rounded half-even to the
/// charge currency's exponent. `None` when the balance transaction was not read.
pub fn fee_in_charge_currency(charge: &ChargeFacts) -> Result<Option<Money>, MappingError> {
    let Some(fee) = charge.fee else {
        return Ok(None);
    };
    if fee.currency() == charge.currency {
        return Ok(Some(fee));
    }
    let rate = charge
        .exchange_rate
        .filter(|r| !r.is_zero())
        .ok_or_else(|| MappingError::NoExchangeRate {
            charge: charge.id.to_string(),
            fee_currency: fee.currency(),
            currency: charge.currency,
        })?;
    let converted = fee
        .to_decimal()
        .checked_div(rate)
        .ok_or(MappingError::Overflow)?
        .round_dp_with_strategy(
            charge.currency.exponent(),
            RoundingStrategy::MidpointNearestEven,
        );
    Money::from_decimal(converted, charge.currency)
        .map(Some)
        .map_err(|_| MappingError::Overflow)
}

pub(super) fn memo_fields(
    settings: &PostingSettings,
    object_id: &str,
    customer: Option<&StripeId>,
) -> CustomFields {
    let mut fields = Vec::new();
    if let Some(f) = &settings.stripe_id_field {
        fields.push((f.clone(), json!(object_id)));
    }
    if let (Some(f), Some(c)) = (&settings.stripe_customer_field, customer) {
        fields.push((f.clone(), json!(c.as_str())));
    }
    fields
}

fn line(
    item: &NetSuiteInternalId,
    quantity: Decimal,
    amount: Money,
    description: Option<String>,
) -> InvoiceLine {
    let amount = amount.to_decimal();
    // NetSuite computes amount = quantity × rate; state both so they agree exactly when they can,
    // and fall back to one unit at the full amount when the division is not exact.
    let (quantity, rate) = if quantity > Decimal::ZERO {
        match amount.checked_div(quantity) {
            Some(rate) if rate.checked_mul(quantity) == Some(amount) && rate.scale() <= 10 => {
                (quantity, rate.normalize())
            }
            _ => (Decimal::ONE, amount),
        }
    } else {
        (Decimal::ONE, amount)
    };
    InvoiceLine {
        item: item.clone(),
        quantity,
        rate,
        amount,
        description,
        period: None,
    }
}

fn adjustment_line(item: &NetSuiteInternalId, amount: Money, description: &str) -> InvoiceLine {
    InvoiceLine {
        item: item.clone(),
        quantity: Decimal::ONE,
        rate: amount.to_decimal(),
        amount: amount.to_decimal(),
        description: Some(description.to_string()),
        period: None,
    }
}

/// The NetSuite invoice for a Stripe invoice. `charges` are the charges that paid it (their
/// fees become a negative line in net mode).
pub fn invoice_document(
    invoice: &InvoiceFacts,
    charges: &[ChargeFacts],
    resolved: &Resolved,
    settings: &PostingSettings,
    default_item: Option<&NetSuiteInternalId>,
) -> Result<InvoiceDoc, MappingError> {
    let customer = resolved.customer.clone().ok_or(MappingError::NoCustomer)?;
    let mut unmapped = Vec::new();
    let mut lines = Vec::new();
    for l in &invoice.lines {
        let item = match &l.product_id {
            Some(p) => match resolved.items.get(p.as_str()) {
                Some(item) => item.clone(),
                None => {
                    if !unmapped.contains(&p.to_string()) {
                        unmapped.push(p.to_string());
                    }
                    continue;
                }
            },
            None => default_item
                .cloned()
                .ok_or_else(|| MappingError::LineWithoutProduct {
                    object: invoice.id.to_string(),
                    line: l.id.clone(),
                })?,
        };
        let mut doc_line = line(
            &item,
            l.quantity.unwrap_or(Decimal::ONE),
            l.amount,
            l.description.clone(),
        );
        if let Some((start, end)) = l.period
            && end > start
        {
            // Stripe's period end is exclusive (the next period's start); NetSuite's rev. rec.
            // end date is the last day served.
            doc_line.period = Some((
                tran_date(start, &settings.time_zone),
                tran_date(end - 1, &settings.time_zone),
            ));
        }
        lines.push(doc_line);
    }
    if !unmapped.is_empty() {
        return Err(MappingError::UnmappedProducts(unmapped));
    }
    if !invoice.discount.minor().eq(&0) {
        let item = settings
            .discount_item
            .as_ref()
            .ok_or(MappingError::NotConfigured {
                what: "a NetSuite discount item for Stripe discounts",
                key: "posting.discount_item",
            })?;
        lines.push(adjustment_line(
            item,
            invoice.discount.negate(),
            "Stripe discounts",
        ));
    }
    // Inclusive tax is already inside the line amounts; only exclusive tax adds a line.
    let exclusive_tax = invoice
        .tax
        .checked_sub(invoice.tax_inclusive)
        .map_err(|_| MappingError::Overflow)?;
    if exclusive_tax.minor() != 0 {
        let item = settings
            .tax_item
            .as_ref()
            .ok_or(MappingError::NotConfigured {
                what: "a NetSuite item for Stripe tax",
                key: "posting.tax_item",
            })?;
        lines.push(adjustment_line(
            item,
            exclusive_tax,
            "Tax collected by Stripe",
        ));
    }
    // The document must equal Stripe's total before fees, and after them in net mode.
    check_total(&lines, invoice.total)?;
    if settings.fee_mode == FeeMode::Net {
        let expected = add_fee_lines(&mut lines, charges, invoice.total, settings)?;
        check_total(&lines, expected)?;
    }
    let date_source = invoice
        .paid_at
        .or(invoice.finalized_at)
        .unwrap_or(invoice.created);
    let charges_text: Vec<&str> = charges.iter().map(|c| c.id.as_str()).collect();
    Ok(InvoiceDoc {
        external_id: ExternalId::for_stripe(&invoice.id),
        customer,
        subsidiary: settings.subsidiary.clone(),
        currency: resolved.currency.clone(),
        tran_date: tran_date(date_source, &settings.time_zone),
        memo: format!(
            "Stripe invoice {}{}{}",
            invoice.id,
            invoice
                .number
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            if charges_text.is_empty() {
                String::new()
            } else {
                format!(", paid by {}", charges_text.join(", "))
            }
        ),
        other_ref_num: invoice.number.clone(),
        lines,
        custom_fields: memo_fields(settings, invoice.id.as_str(), invoice.customer_id.as_ref()),
    })
}

/// What a one-time charge sold, when known (from its Checkout Session's line items, or from the
/// product named in its metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldLine {
    /// Stripe product ID; `None` posts on the default item.
    pub product: Option<String>,
    pub quantity: Decimal,
    /// What the customer paid for this line (after its discounts and tax).
    pub amount: Money,
    pub description: Option<String>,
}

/// The NetSuite invoice for a charge that belongs to no Stripe invoice, at the captured amount.
/// Without `sold` lines the whole amount goes on the default item.
pub fn charge_invoice_document(
    charge: &ChargeFacts,
    sold: &[SoldLine],
    resolved: &Resolved,
    settings: &PostingSettings,
    default_item: Option<&NetSuiteInternalId>,
) -> Result<InvoiceDoc, MappingError> {
    let customer = resolved.customer.clone().ok_or(MappingError::NoCustomer)?;
    let default = || {
        default_item
            .cloned()
            .ok_or_else(|| MappingError::LineWithoutProduct {
                object: charge.id.to_string(),
                line: "the charge".into(),
            })
    };
    let mut lines = Vec::new();
    let mut unmapped = Vec::new();
    if sold.is_empty() {
        lines.push(line(
            &default()?,
            Decimal::ONE,
            charge.captured_amount,
            charge.description.clone(),
        ));
    }
    for s in sold {
        let item = match &s.product {
            Some(p) => match resolved.items.get(p) {
                Some(item) => item.clone(),
                None => {
                    unmapped.push(p.clone());
                    continue;
                }
            },
            None => default()?,
        };
        let amount = Money::new(s.amount.minor(), charge.currency);
        lines.push(line(&item, s.quantity, amount, s.description.clone()));
    }
    if !unmapped.is_empty() {
        return Err(MappingError::UnmappedProducts(unmapped));
    }
    check_total(&lines, charge.captured_amount)?;
    if settings.fee_mode == FeeMode::Net {
        let expected = add_fee_lines(
            &mut lines,
            std::slice::from_ref(charge),
            charge.captured_amount,
            settings,
        )?;
        check_total(&lines, expected)?;
    }
    Ok(InvoiceDoc {
        external_id: ExternalId::for_stripe(&charge.id),
        customer,
        subsidiary: settings.subsidiary.clone(),
        currency: resolved.currency.clone(),
        tran_date: tran_date(charge.created, &settings.time_zone),
        memo: format!(
            "Stripe charge {}{}",
            charge.id,
            charge
                .payment_intent_id
                .as_ref()
                .map(|p| format!(" (payment intent {p})"))
                .unwrap_or_default()
        ),
        other_ref_num: None,
        lines,
        custom_fields: memo_fields(settings, charge.id.as_str(), charge.customer_id.as_ref()),
    })
}

/// The customer payment that marks a posted invoice paid: the amount Stripe keeps for the
/// merchant against this invoice (the invoice total as posted).
pub fn payment_document(
    charge: &ChargeFacts,
    invoice_internal_id: &NetSuiteInternalId,
    amount: Money,
    resolved: &Resolved,
    settings: &PostingSettings,
) -> Result<CustomerPaymentDoc, MappingError> {
    Ok(CustomerPaymentDoc {
        external_id: ExternalId::for_stripe_payment(&charge.id),
        customer: resolved.customer.clone().ok_or(MappingError::NoCustomer)?,
        subsidiary: settings.subsidiary.clone(),
        currency: resolved.currency.clone(),
        account: settings.payment_account.clone(),
        tran_date: tran_date(charge.created, &settings.time_zone),
        memo: format!("Stripe payment {}", charge.id),
        payment: amount.to_decimal(),
        apply_to: invoice_internal_id.clone(),
        custom_fields: memo_fields(settings, charge.id.as_str(), charge.customer_id.as_ref()),
    })
}

/// Gross mode: the fee as a journal entry (debit fee expense, credit the Stripe clearing
/// account), in the charge currency. `None` when there is no fee.
pub fn fee_journal_document(
    charge: &ChargeFacts,
    resolved: &Resolved,
    settings: &PostingSettings,
) -> Result<Option<JournalEntryDoc>, MappingError> {
    let Some(fee) = fee_in_charge_currency(charge)? else {
        return Ok(None);
    };
    if fee.minor() == 0 {
        return Ok(None);
    }
    let expense = settings
        .fee_expense_account
        .clone()
        .ok_or(MappingError::NotConfigured {
            what: "the fee expense account (fees are posted as journal entries in gross mode)",
            key: "posting.fee_expense_account",
        })?;
    let clearing = settings
        .fee_clearing_account
        .clone()
        .ok_or(MappingError::NotConfigured {
            what: "the Stripe clearing account credited by fee journal entries",
            key: "posting.fee_clearing_account",
        })?;
    let external_id = ExternalId::parse(&format!("stripe_fee_{}", charge.id))
        .map_err(|_| MappingError::Overflow)?;
    Ok(Some(JournalEntryDoc {
        external_id,
        subsidiary: settings.subsidiary.clone(),
        currency: resolved.currency.clone(),
        tran_date: tran_date(charge.created, &settings.time_zone),
        memo: format!("Stripe fee on {}", charge.id),
        lines: vec![
            JournalLine {
                account: expense,
                debit_minus_credit: fee.to_decimal(),
                memo: Some(format!("Stripe fee on {}", charge.id)),
                entity: resolved.customer.clone(),
            },
            JournalLine {
                account: clearing,
                debit_minus_credit: -fee.to_decimal(),
                memo: Some(format!("Stripe fee on {}", charge.id)),
                entity: None,
            },
        ],
        custom_fields: memo_fields(settings, charge.id.as_str(), None),
    }))
}

/// Net mode: one negative line per charge fee (in the document's currency, `total`'s), on the
/// fee item. Returns the total the document must then have.
fn add_fee_lines(
    lines: &mut Vec<InvoiceLine>,
    charges: &[ChargeFacts],
    total: Money,
    settings: &PostingSettings,
) -> Result<Money, MappingError> {
    let mut expected = total;
    for charge in charges {
        let Some(fee) = fee_in_charge_currency(charge)?.filter(|f| f.minor() != 0) else {
            continue;
        };
        let fee = Money::new(fee.minor(), total.currency());
        let item = settings
            .fee_item
            .as_ref()
            .ok_or(MappingError::NotConfigured {
                what: "a NetSuite item for Stripe fees (revenue is posted net of fees)",
                key: "posting.fee_item",
            })?;
        lines.push(adjustment_line(
            item,
            fee.negate(),
            &format!("Stripe fee on {}", charge.id),
        ));
        expected = expected
            .checked_sub(fee)
            .map_err(|_| MappingError::Overflow)?;
    }
    Ok(expected)
}

fn check_total(lines: &[InvoiceLine], expected: Money) -> Result<(), MappingError> {
    let sum: Decimal = lines.iter().map(|l| l.amount).sum();
    if sum != expected.to_decimal() {
        return Err(MappingError::DoesNotAddUp {
            netsuite: format!("{sum} {}", expected.currency()),
            stripe: expected.to_string(),
        });
    }
    Ok(())
}

/// A line of a posted NetSuite invoice, read back to credit it.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedLine {
    pub item: NetSuiteInternalId,
    pub amount: Decimal,
    pub description: Option<String>,
}

/// The credit memo lines for a refund of `refund` out of a sale posted with `posted` lines
/// (docs/ACCOUNTING.md, "Refunds"). With a `refund_item`, one line on it. Otherwise the refund is
/// spread over the sale lines in proportion to their amounts, on the same items, so revenue per
/// item stays right. Discount and tax lines take their share by the same rule. The fee line
/// (`fee_item`) is left out: Stripe keeps its fee. Shares are cut to the minor unit, and the
/// remainder goes to the largest line, so the lines add up to the refund exactly.
pub fn refund_lines(
    object: &str,
    posted: &[PostedLine],
    fee_item: Option<&NetSuiteInternalId>,
    refund_item: Option<&NetSuiteInternalId>,
    refund: Money,
) -> Result<Vec<InvoiceLine>, MappingError> {
    let currency = refund.currency();
    let line = |item: &NetSuiteInternalId, minor: i64, description: Option<String>| InvoiceLine {
        item: item.clone(),
        quantity: Decimal::ONE,
        rate: Money::new(minor, currency).to_decimal(),
        amount: Money::new(minor, currency).to_decimal(),
        description,
        period: None,
    };
    if let Some(item) = refund_item {
        return Ok(vec![line(
            item,
            refund.minor(),
            Some(format!("Refund {object}")),
        )]);
    }
    let sale: Vec<(&PostedLine, i64)> = posted
        .iter()
        .filter(|l| Some(&l.item) != fee_item)
        .map(|l| {
            Money::from_decimal(l.amount, currency)
                .map(|m| (l, m.minor()))
                .map_err(|_| MappingError::Overflow)
        })
        .collect::<Result<_, _>>()?;
    let gross: i128 = sale.iter().map(|(_, w)| i128::from(*w)).sum();
    let wanted = i128::from(refund.minor());
    if gross <= 0 || wanted > gross || wanted < 0 {
        return Err(MappingError::RefundExceedsSale {
            object: object.to_string(),
            refund: refund.to_string(),
            sale: Money::new(i64::try_from(gross).unwrap_or(i64::MAX), currency).to_string(),
        });
    }
    // Each line's share, cut toward zero; what is left over goes to the largest line.
    let mut shares: Vec<i128> = sale
        .iter()
        .map(|(_, w)| wanted * i128::from(*w) / gross)
        .collect();
    let left = wanted - shares.iter().sum::<i128>();
    if let Some(largest) = (0..sale.len()).max_by_key(|i| (sale[*i].1, std::cmp::Reverse(*i))) {
        shares[largest] += left;
    }
    let lines: Vec<InvoiceLine> = sale
        .iter()
        .zip(shares)
        .filter(|(_, share)| *share != 0)
        .map(|((posted, _), share)| {
            let minor = i64::try_from(share).map_err(|_| MappingError::Overflow)?;
            Ok(line(&posted.item, minor, posted.description.clone()))
        })
        .collect::<Result<_, MappingError>>()?;
    check_total(&lines, refund)?;
    Ok(lines)
}

/// One movement of a dispute's money (one of its balance transactions), in the charge currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeMovement {
    /// `txn_…`: the journal entry is `stripe_<txn_…>`.
    pub txn_id: String,
    pub dispute_id: String,
    pub charge_id: String,
    /// Unix seconds.
    pub created: i64,
    /// The disputed amount: positive when withdrawn, negative when reinstated.
    pub disputed: Money,
    /// The dispute fee: positive when charged, negative when given back.
    pub fee: Money,
}

/// Reads one dispute balance transaction as a movement in the dispute's (the charge's)
/// currency. The disputed amount is the dispute's own `amount`, exact in the charge currency;
/// the fee is Stripe's, in the settlement currency, converted as a processing fee is (`fee /
/// exchange_rate`, half-even). A transaction that moves neither is `None`.
pub fn dispute_movement(
    dispute_id: &str,
    charge_id: &str,
    dispute_amount: Money,
    txn: &mlc_stripe::models::BalanceTransaction,
) -> Result<Option<DisputeMovement>, MappingError> {
    let currency = dispute_amount.currency();
    let settled = txn.amount.ok_or_else(|| MappingError::MissingAmount {
        object: txn.id.clone(),
        field: "amount",
    })?;
    let fee_settled = txn.fee.unwrap_or(0);
    let settlement = Currency::parse(&txn.currency).map_err(|_| MappingError::UnknownCurrency {
        object: txn.id.clone(),
        currency: txn.currency.clone(),
    })?;
    let fee = if settlement == currency {
        Money::new(fee_settled, currency)
    } else if fee_settled == 0 {
        Money::zero(currency)
    } else {
        let rate = txn.exchange_rate.filter(|r| !r.is_zero()).ok_or_else(|| {
            MappingError::NoExchangeRate {
                charge: charge_id.to_string(),
                fee_currency: settlement,
                currency,
            }
        })?;
        let converted = Money::new(fee_settled, settlement)
            .to_decimal()
            .checked_div(rate)
            .ok_or(MappingError::Overflow)?
            .round_dp_with_strategy(currency.exponent(), RoundingStrategy::MidpointNearestEven);
        Money::from_decimal(converted, currency).map_err(|_| MappingError::Overflow)?
    };
    // Withdrawn funds leave the balance (negative); reinstated ones come back.
    let disputed = match settled.signum() {
        -1 => dispute_amount,
        1 => dispute_amount.negate(),
        _ => Money::zero(currency),
    };
    if disputed.minor() == 0 && fee.minor() == 0 {
        return Ok(None);
    }
    Ok(Some(DisputeMovement {
        txn_id: txn.id.clone(),
        dispute_id: dispute_id.to_string(),
        charge_id: charge_id.to_string(),
        created: txn.created,
        disputed,
        fee,
    }))
}

/// The accounts a dispute's journal entries post to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeAccounts {
    /// Debited by what a dispute withdrew (a chargeback or contra-revenue account).
    pub disputed: NetSuiteInternalId,
    /// Debited by the dispute fee.
    pub fee: NetSuiteInternalId,
    /// The Stripe clearing account the money leaves (`posting.payment_account`).
    pub clearing: NetSuiteInternalId,
}

/// The journal entry `stripe_<txn_…>` for one dispute movement (docs/ACCOUNTING.md,
/// "Disputes"): withdrawn, debit the dispute account and the fee account, credit the clearing
/// account by both; reinstated, the same lines the other way. Balanced by construction.
pub fn dispute_journal_document(
    movement: &DisputeMovement,
    accounts: &DisputeAccounts,
    currency_id: Option<NetSuiteInternalId>,
    customer: Option<NetSuiteInternalId>,
    settings: &PostingSettings,
) -> Result<JournalEntryDoc, MappingError> {
    let external_id = ExternalId::parse(&format!("stripe_{}", movement.txn_id))
        .map_err(|_| MappingError::Overflow)?;
    let what = if movement.disputed.minor() >= 0 {
        "withdrawn"
    } else {
        "reinstated"
    };
    let memo = format!(
        "Stripe dispute {} on {}: funds {what} ({})",
        movement.dispute_id, movement.charge_id, movement.txn_id
    );
    let mut lines = Vec::new();
    if movement.disputed.minor() != 0 {
        lines.push(JournalLine {
            account: accounts.disputed.clone(),
            debit_minus_credit: movement.disputed.to_decimal(),
            memo: Some(memo.clone()),
            entity: customer.clone(),
        });
    }
    if movement.fee.minor() != 0 {
        lines.push(JournalLine {
            account: accounts.fee.clone(),
            debit_minus_credit: movement.fee.to_decimal(),
            memo: Some(format!("Stripe dispute fee, {}", movement.dispute_id)),
            entity: None,
        });
    }
    let moved = movement
        .disputed
        .checked_add(movement.fee)
        .map_err(|_| MappingError::Overflow)?;
    lines.push(JournalLine {
        account: accounts.clearing.clone(),
        debit_minus_credit: -moved.to_decimal(),
        memo: Some(memo.clone()),
        entity: None,
    });
    let doc = JournalEntryDoc {
        external_id,
        subsidiary: settings.subsidiary.clone(),
        currency: currency_id,
        tran_date: tran_date(movement.created, &settings.time_zone),
        memo,
        lines,
        custom_fields: memo_fields(settings, &movement.dispute_id, None),
    };
    debug_assert!(doc.is_balanced());
    Ok(doc)
}

/// The journal entry `stripe_refund_failure_<re_…>` for a refund that failed after it posted:
/// the cash is back in the refund account (debit) and the customer is owed it again (credit
/// the receivables account, with the customer).
#[allow(clippy::too_many_arguments)]
pub fn refund_reversal_document(
    refund: &StripeId,
    amount: Money,
    cash_account: &NetSuiteInternalId,
    receivables_account: &NetSuiteInternalId,
    customer: &NetSuiteInternalId,
    currency_id: Option<NetSuiteInternalId>,
    when: i64,
    settings: &PostingSettings,
) -> Result<JournalEntryDoc, MappingError> {
    let external_id = ExternalId::parse(&format!("stripe_refund_failure_{refund}"))
        .map_err(|_| MappingError::Overflow)?;
    let memo = format!("Stripe refund {refund} failed: the money is back, the customer is owed it");
    Ok(JournalEntryDoc {
        external_id,
        subsidiary: settings.subsidiary.clone(),
        currency: currency_id,
        tran_date: tran_date(when, &settings.time_zone),
        memo: memo.clone(),
        lines: vec![
            JournalLine {
                account: cash_account.clone(),
                debit_minus_credit: amount.to_decimal(),
                memo: Some(memo.clone()),
                entity: None,
            },
            JournalLine {
                account: receivables_account.clone(),
                debit_minus_credit: -amount.to_decimal(),
                memo: Some(memo),
                entity: Some(customer.clone()),
            },
        ],
        custom_fields: memo_fields(settings, refund.as_str(), None),
    })
}

/// One line of a Stripe credit note, its item resolved by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditNoteLine {
    /// The item of the credited invoice line's product; `None`: no product (a custom line).
    pub item: Option<NetSuiteInternalId>,
    /// Credited, excluding tax and before discounts, in minor units.
    pub amount: i64,
    pub discount: i64,
    pub description: Option<String>,
}

/// The credit memo lines of a credit note (docs/ACCOUNTING.md, "Credit notes"): each line on
/// its product's item (`posting.default_item` for a custom line), its discounts on the discount
/// item, and what remains of the total (exclusive tax) on the tax item, so the memo totals
/// Stripe's `total` to the minor unit. With `posting.refund_item`, the whole total is one line
/// on that item.
pub fn credit_note_lines(
    object: &str,
    lines: &[CreditNoteLine],
    total: Money,
    refund_item: Option<&NetSuiteInternalId>,
    default_item: Option<&NetSuiteInternalId>,
    discount_item: Option<&NetSuiteInternalId>,
    tax_item: Option<&NetSuiteInternalId>,
) -> Result<Vec<InvoiceLine>, MappingError> {
    let currency = total.currency();
    let line = |item: &NetSuiteInternalId, minor: i64, description: Option<String>| InvoiceLine {
        item: item.clone(),
        quantity: Decimal::ONE,
        rate: Money::new(minor, currency).to_decimal(),
        amount: Money::new(minor, currency).to_decimal(),
        description,
        period: None,
    };
    if let Some(item) = refund_item {
        let out = vec![line(
            item,
            total.minor(),
            Some(format!("Stripe credit note {object}")),
        )];
        check_total(&out, total)?;
        return Ok(out);
    }
    let mut out = Vec::new();
    let (mut credited, mut discounts) = (0_i64, 0_i64);
    for (i, l) in lines.iter().enumerate() {
        let item =
            l.item
                .as_ref()
                .or(default_item)
                .ok_or_else(|| MappingError::LineWithoutProduct {
                    object: object.to_string(),
                    line: format!("{}", i + 1),
                })?;
        out.push(line(item, l.amount, l.description.clone()));
        credited = credited
            .checked_add(l.amount)
            .ok_or(MappingError::Overflow)?;
        discounts = discounts
            .checked_add(l.discount)
            .ok_or(MappingError::Overflow)?;
    }
    if discounts != 0 {
        let item = discount_item.ok_or(MappingError::NotConfigured {
            what: "the discount item (a credit note credits a discounted line)",
            key: "posting.discount_item",
        })?;
        out.push(line(item, -discounts, Some("Discount".into())));
    }
    let tax = total.minor() - (credited - discounts);
    if tax > 0 {
        let item = tax_item.ok_or(MappingError::NotConfigured {
            what: "the tax item (a credit note gives tax back)",
            key: "posting.tax_item",
        })?;
        out.push(line(item, tax, Some("Tax".into())));
    }
    check_total(&out, total)?;
    Ok(out)
}

/// One thing a Stripe payout carried, as its deposit needs it (settlement currency, minor units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutLine {
    /// A customer payment in NetSuite, and what it brings into the deposit.
    Payment {
        payment: NetSuiteInternalId,
        amount: i64,
    },
    /// Money in (positive) or out (negative) on an account: `what` names the kind (the memo
    /// groups by it), `source` the Stripe object.
    Other {
        account: NetSuiteInternalId,
        what: String,
        source: String,
        amount: i64,
    },
}

/// The deposit `stripe_<po_…>` of a payout (docs/ACCOUNTING.md, "Payouts"): each payment at its
/// amount, the other lines summed per account and kind (their memo names the Stripe objects, the
/// first few), the total checked against the payout's amount to the minor unit.
pub fn deposit_document(
    payout: &str,
    amount: Money,
    paid_at: i64,
    lines: &[PayoutLine],
    bank: &NetSuiteInternalId,
    currency_id: Option<NetSuiteInternalId>,
    settings: &PostingSettings,
) -> Result<mlc_netsuite::documents::DepositDoc, MappingError> {
    use mlc_netsuite::documents::{DepositDoc, DepositOtherLine};
    let currency = amount.currency();
    let external_id =
        ExternalId::parse(&format!("stripe_{payout}")).map_err(|_| MappingError::Overflow)?;
    let mut payments = Vec::new();
    // (account, kind) → (sum, sources), in first-seen order.
    type Group = ((NetSuiteInternalId, String), (i64, Vec<String>));
    let mut groups: Vec<Group> = Vec::new();
    for line in lines {
        match line {
            PayoutLine::Payment { payment, amount } => {
                payments.push((payment.clone(), Money::new(*amount, currency).to_decimal()));
            }
            PayoutLine::Other {
                account,
                what,
                source,
                amount,
            } => {
                let key = (account.clone(), what.clone());
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, (sum, sources))) => {
                        *sum = sum.checked_add(*amount).ok_or(MappingError::Overflow)?;
                        sources.push(source.clone());
                    }
                    None => groups.push((key, (*amount, vec![source.clone()]))),
                }
            }
        }
    }
    let other = groups
        .into_iter()
        .filter(|(_, (sum, _))| *sum != 0)
        .map(|((account, what), (sum, sources))| {
            const NAMED: usize = 5;
            let more = sources.len().saturating_sub(NAMED);
            let named: Vec<&str> = sources.iter().take(NAMED).map(String::as_str).collect();
            DepositOtherLine {
                account,
                amount: Money::new(sum, currency).to_decimal(),
                memo: format!(
                    "{what}: {}{}",
                    named.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
            }
        })
        .collect();
    let doc = DepositDoc {
        external_id,
        subsidiary: settings.subsidiary.clone(),
        currency: currency_id,
        account: bank.clone(),
        tran_date: tran_date(paid_at, &settings.time_zone),
        memo: format!("Stripe payout {payout}"),
        payments,
        other,
        custom_fields: memo_fields(settings, payout, None),
    };
    if doc.total() != amount.to_decimal() {
        return Err(MappingError::DoesNotAddUp {
            netsuite: doc.total().to_string(),
            stripe: amount.to_decimal().to_string(),
        });
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    //! What a finance user finds in NetSuite for hand-built Stripe facts: lines, items, amounts
    //! (checked in the exact request text), dates in the account's time zone, and the refusals.

    use super::*;
    use mlc_core::StripeIdKind;
    use mlc_stripe::facts::LineFacts;

    // 2026-11-01T03:00:00Z: still 31 October in New York (EDT, UTC-4).
    const NOV_1_03_UTC: i64 = 1_793_502_000;
    // 2026-12-01T03:00:00Z: still 30 November in New York (EST, UTC-5).
    const DEC_1_03_UTC: i64 = 1_796_094_000;
    // 2026-11-27T02:30:00Z: 26 November 21:30 in New York.
    const NOV_27_0230_UTC: i64 = 1_795_746_600;
    const NOV_20_NOON_UTC: i64 = 1_795_176_000;

    const CUSTOMER: &str = "100";
    const ITEM_A: &str = "21";
    const ITEM_B: &str = "22";
    const DEFAULT_ITEM: &str = "30";
    const DISCOUNT_ITEM: &str = "11";
    const TAX_ITEM: &str = "12";
    const FEE_ITEM: &str = "13";

    fn ns(id: &str) -> NetSuiteInternalId {
        NetSuiteInternalId::parse(id).unwrap()
    }

    fn sid(kind: StripeIdKind, id: &str) -> StripeId {
        StripeId::parse(kind, id).unwrap()
    }

    fn tz(name: &str) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(name).unwrap()
    }

    fn settings(fee_mode: FeeMode, zone: &str) -> PostingSettings {
        PostingSettings {
            fee_mode,
            time_zone: tz(zone),
            subsidiary: Some(ns("1")),
            discount_item: Some(ns(DISCOUNT_ITEM)),
            tax_item: Some(ns(TAX_ITEM)),
            fee_item: Some(ns(FEE_ITEM)),
            payment_account: Some(ns("2")),
            fee_expense_account: Some(ns("5")),
            fee_clearing_account: Some(ns("7")),
            stripe_id_field: Some("custbody_stripe_id".into()),
            stripe_customer_field: None,
        }
    }

    fn resolved() -> Resolved {
        Resolved {
            customer: Some(ns(CUSTOMER)),
            currency: Some(ns("1")),
            items: [
                ("prod_A".to_string(), ns(ITEM_A)),
                ("prod_B".to_string(), ns(ITEM_B)),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn stripe_line(
        id: &str,
        product: Option<&str>,
        quantity: i64,
        minor: i64,
        currency: Currency,
        period: Option<(i64, i64)>,
    ) -> LineFacts {
        LineFacts {
            id: id.into(),
            product_id: product.map(|p| sid(StripeIdKind::Product, p)),
            price_id: None,
            description: Some(format!("{id} description")),
            quantity: Some(Decimal::from(quantity)),
            unit_amount_decimal: None,
            amount: Money::new(minor, currency),
            discount: Money::zero(currency),
            tax: Money::zero(currency),
            period,
            proration: false,
            subscription_id: None,
            metadata: Default::default(),
        }
    }

    /// A paid invoice whose total is the sum of its lines (no discount, no tax).
    fn invoice(currency: Currency, lines: Vec<LineFacts>) -> InvoiceFacts {
        let sum: i64 = lines.iter().map(|l| l.amount.minor()).sum();
        let m = |minor| Money::new(minor, currency);
        InvoiceFacts {
            id: sid(StripeIdKind::Invoice, "in_Test1"),
            number: Some("INV-0042".into()),
            customer_id: Some(sid(StripeIdKind::Customer, "cus_Test1")),
            currency,
            status: Some("paid".into()),
            lines,
            lines_complete: true,
            subtotal: m(sum),
            total: m(sum),
            tax: m(0),
            tax_inclusive: m(0),
            discount: m(0),
            amount_due: Some(m(sum)),
            amount_paid: Some(m(sum)),
            amount_remaining: Some(m(0)),
            subscription_id: None,
            charge_ids: vec![sid(StripeIdKind::Charge, "ch_Test1")],
            payment_intent_ids: vec![],
            paid_at: Some(NOV_27_0230_UTC),
            finalized_at: Some(NOV_20_NOON_UTC),
            voided_at: None,
            period: None,
            created: NOV_20_NOON_UTC,
            due_date: None,
            billing_reason: Some("subscription_create".into()),
            metadata: Default::default(),
            livemode: false,
        }
    }

    /// A captured charge with its fee in `fee_currency` (and the rate charge → settlement).
    fn charge(
        id: &str,
        currency: Currency,
        minor: i64,
        fee: Option<Money>,
        exchange_rate: Option<&str>,
    ) -> ChargeFacts {
        let m = |minor| Money::new(minor, currency);
        ChargeFacts {
            id: sid(StripeIdKind::Charge, id),
            amount: m(minor),
            captured_amount: m(minor),
            captured_amount_inferred: false,
            refunded_amount: m(0),
            refunded: false,
            currency,
            customer_id: Some(sid(StripeIdKind::Customer, "cus_Test1")),
            invoice_id: None,
            payment_intent_id: Some(sid(StripeIdKind::PaymentIntent, "pi_Test1")),
            balance_transaction_id: Some(sid(StripeIdKind::BalanceTransaction, "txn_Test1")),
            fee,
            net: None,
            settlement_amount: None,
            settlement_currency: fee.map(|f| f.currency()),
            exchange_rate: exchange_rate.map(|r| r.parse().unwrap()),
            fee_details: vec![],
            status: "succeeded".into(),
            paid: true,
            captured: true,
            description: Some("One-time purchase".into()),
            failure_code: None,
            failure_message: None,
            metadata: Default::default(),
            created: NOV_27_0230_UTC,
            livemode: false,
        }
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    /// The lines as (item, quantity, rate, amount) text, as NetSuite receives them.
    fn lines_of(doc: &InvoiceDoc) -> Vec<(String, String, String, String)> {
        doc.lines
            .iter()
            .map(|l| {
                (
                    l.item.to_string(),
                    l.quantity.to_string(),
                    l.rate.to_string(),
                    l.amount.to_string(),
                )
            })
            .collect()
    }

    fn row(item: &str, q: &str, rate: &str, amount: &str) -> (String, String, String, String) {
        (item.into(), q.into(), rate.into(), amount.into())
    }

    /// A USD subscription invoice with a 10% discount and 20% exclusive tax:
    /// 3 × 30.00 + 1 × 10.00 − 9.00 + 18.20 = 109.20.
    fn discounted_taxed_invoice() -> InvoiceFacts {
        let mut inv = invoice(
            Currency::USD,
            vec![
                stripe_line(
                    "il_1",
                    Some("prod_A"),
                    3,
                    9_000,
                    Currency::USD,
                    Some((NOV_1_03_UTC, DEC_1_03_UTC)),
                ),
                stripe_line("il_2", Some("prod_B"), 1, 1_000, Currency::USD, None),
            ],
        );
        inv.discount = usd(900);
        inv.tax = usd(1_820);
        inv.total = usd(10_920);
        inv
    }

    #[test]
    fn invoice_lines_follow_stripe_with_discount_tax_and_net_fee() {
        let inv = discounted_taxed_invoice();
        let ch = charge("ch_Test1", Currency::USD, 10_920, Some(usd(347)), None);
        let doc = invoice_document(
            &inv,
            std::slice::from_ref(&ch),
            &resolved(),
            &settings(FeeMode::Net, "UTC"),
            None,
        )
        .unwrap();
        assert_eq!(
            lines_of(&doc),
            vec![
                row(ITEM_A, "3", "30", "90.00"),
                row(ITEM_B, "1", "10", "10.00"),
                row(DISCOUNT_ITEM, "1", "-9.00", "-9.00"),
                row(TAX_ITEM, "1", "18.20", "18.20"),
                row(FEE_ITEM, "1", "-3.47", "-3.47"),
            ]
        );
        assert_eq!(
            doc.total().to_string(),
            "105.73",
            "Stripe total minus the fee"
        );
        assert_eq!(doc.external_id.as_str(), "stripe_in_Test1");
        assert_eq!(doc.customer.as_str(), CUSTOMER);
        assert_eq!(doc.other_ref_num.as_deref(), Some("INV-0042"));
        assert_eq!(
            doc.memo,
            "Stripe invoice in_Test1 (INV-0042), paid by ch_Test1"
        );
        assert_eq!(
            doc.lines[4].description.as_deref(),
            Some("Stripe fee on ch_Test1")
        );
        // Paid 2026-11-27 02:30 UTC.
        assert_eq!(doc.tran_date.as_str(), "2026-11-27");
        assert_eq!(
            doc.lines[0]
                .period
                .as_ref()
                .map(|(s, e)| (s.as_str(), e.as_str())),
            Some(("2026-11-01", "2026-12-01"))
        );
        assert_eq!(doc.lines[1].period, None, "no period, no rev. rec. dates");

        let body = doc.to_json().to_body();
        for part in [
            r#""externalId":"stripe_in_Test1""#,
            r#""entity":{"id":"100"}"#,
            r#""currency":{"id":"1"}"#,
            r#""tranDate":"2026-11-27""#,
            r#""otherRefNum":"INV-0042""#,
            r#""custbody_stripe_id":"in_Test1""#,
            r#"{"item":{"id":"21"},"quantity":3,"rate":30,"amount":90.00,"description":"il_1 description","revRecStartDate":"2026-11-01","revRecEndDate":"2026-12-01"}"#,
            r#"{"item":{"id":"11"},"quantity":1,"rate":-9.00,"amount":-9.00,"description":"Stripe discounts"}"#,
            r#"{"item":{"id":"12"},"quantity":1,"rate":18.20,"amount":18.20,"description":"Tax collected by Stripe"}"#,
            r#"{"item":{"id":"13"},"quantity":1,"rate":-3.47,"amount":-3.47,"description":"Stripe fee on ch_Test1"}"#,
        ] {
            assert!(body.contains(part), "{part} missing from {body}");
        }
    }

    #[test]
    fn a_service_period_ending_at_midnight_ends_the_day_before() {
        let mut inv = discounted_taxed_invoice();
        // 2026-11-01T00:00:00Z → 2026-12-01T00:00:00Z: November, in UTC.
        inv.lines[0].period = Some((1_793_491_200, 1_796_083_200));
        let ch = charge("ch_Test1", Currency::USD, 10_920, Some(usd(347)), None);
        let doc = invoice_document(
            &inv,
            &[ch],
            &resolved(),
            &settings(FeeMode::Net, "UTC"),
            None,
        )
        .unwrap();
        assert_eq!(
            doc.lines[0]
                .period
                .as_ref()
                .map(|(s, e)| (s.as_str(), e.as_str())),
            Some(("2026-11-01", "2026-11-30"))
        );
    }

    #[test]
    fn service_period_and_tran_date_are_dates_in_the_configured_zone() {
        let inv = discounted_taxed_invoice();
        let ch = charge("ch_Test1", Currency::USD, 10_920, Some(usd(347)), None);
        let doc = invoice_document(
            &inv,
            &[ch],
            &resolved(),
            &settings(FeeMode::Net, "America/New_York"),
            None,
        )
        .unwrap();
        // 2026-11-01 03:00 UTC is 31 October 23:00 in New York; 1 December 03:00 UTC is
        // 30 November 22:00; paid 27 November 02:30 UTC is the 26th there.
        let body = doc.to_json().to_body();
        assert!(
            body.contains(r#""revRecStartDate":"2026-10-31","revRecEndDate":"2026-11-30""#),
            "{body}"
        );
        assert!(body.contains(r#""tranDate":"2026-11-26""#), "{body}");

        assert_eq!(
            tran_date(NOV_27_0230_UTC, &tz("UTC")).as_str(),
            "2026-11-27"
        );
        assert_eq!(
            tran_date(NOV_27_0230_UTC, &tz("America/New_York")).as_str(),
            "2026-11-26"
        );
        // East of UTC the date moves forward: 2026-11-20 12:00 UTC is the 21st in Auckland.
        assert_eq!(
            tran_date(NOV_20_NOON_UTC + 12 * 3600, &tz("Pacific/Auckland")).as_str(),
            "2026-11-21"
        );
        assert_eq!(
            tran_date(NOV_20_NOON_UTC, &tz("Asia/Tokyo")).as_str(),
            "2026-11-20"
        );
    }

    #[test]
    fn the_transaction_date_falls_back_from_paid_to_finalized_to_created() {
        let mut inv = invoice(
            Currency::USD,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                1,
                500,
                Currency::USD,
                None,
            )],
        );
        inv.paid_at = None;
        inv.finalized_at = Some(NOV_20_NOON_UTC + 86_400);
        inv.created = NOV_20_NOON_UTC - 3 * 86_400;
        let s = settings(FeeMode::Gross, "UTC");
        let doc = invoice_document(&inv, &[], &resolved(), &s, None).unwrap();
        assert_eq!(doc.tran_date.as_str(), "2026-11-21");
        inv.finalized_at = None;
        let doc = invoice_document(&inv, &[], &resolved(), &s, None).unwrap();
        assert_eq!(doc.tran_date.as_str(), "2026-11-17");
    }

    #[test]
    fn inclusive_tax_adds_no_line_and_only_the_exclusive_part_does() {
        // 12.00 with 2.00 VAT included: the line already carries the tax.
        let mut inv = invoice(
            Currency::EUR,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                1,
                1_200,
                Currency::EUR,
                None,
            )],
        );
        inv.tax = Money::new(200, Currency::EUR);
        inv.tax_inclusive = Money::new(200, Currency::EUR);
        let mut s = settings(FeeMode::Gross, "UTC");
        s.tax_item = None; // not needed: nothing exclusive
        let doc = invoice_document(&inv, &[], &resolved(), &s, None).unwrap();
        assert_eq!(lines_of(&doc), vec![row(ITEM_A, "1", "12", "12.00")]);

        // Mixed: 1.00 inclusive inside the line, 0.50 exclusive on top.
        inv.tax = Money::new(150, Currency::EUR);
        inv.tax_inclusive = Money::new(100, Currency::EUR);
        inv.total = Money::new(1_250, Currency::EUR);
        let doc = invoice_document(
            &inv,
            &[],
            &resolved(),
            &settings(FeeMode::Gross, "UTC"),
            None,
        )
        .unwrap();
        assert_eq!(
            lines_of(&doc),
            vec![
                row(ITEM_A, "1", "12", "12.00"),
                row(TAX_ITEM, "1", "0.50", "0.50")
            ]
        );
    }

    #[test]
    fn gross_mode_invoices_have_no_fee_line_and_total_stripes_gross() {
        let inv = discounted_taxed_invoice();
        let ch = charge("ch_Test1", Currency::USD, 10_920, Some(usd(347)), None);
        let doc = invoice_document(
            &inv,
            &[ch],
            &resolved(),
            &settings(FeeMode::Gross, "UTC"),
            None,
        )
        .unwrap();
        assert!(doc.lines.iter().all(|l| l.item.as_str() != FEE_ITEM));
        assert_eq!(doc.total().to_string(), "109.20");
    }

    #[test]
    fn a_fee_in_another_currency_is_converted_with_the_rate_rounded_half_even() {
        // EUR charge settled in USD: fee 0.61 USD at 1.08 USD per EUR = 0.5648… → 0.56 EUR.
        let eur = |m| Money::new(m, Currency::EUR);
        let ch = charge("ch_Eur", Currency::EUR, 5_000, Some(usd(61)), Some("1.08"));
        assert_eq!(fee_in_charge_currency(&ch).unwrap(), Some(eur(56)));
        let inv = invoice(
            Currency::EUR,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                2,
                5_000,
                Currency::EUR,
                None,
            )],
        );
        let doc = invoice_document(
            &inv,
            &[ch],
            &resolved(),
            &settings(FeeMode::Net, "UTC"),
            None,
        )
        .unwrap();
        assert_eq!(
            lines_of(&doc),
            vec![
                row(ITEM_A, "2", "25", "50.00"),
                row(FEE_ITEM, "1", "-0.56", "-0.56")
            ]
        );
        assert_eq!(doc.total().to_string(), "49.44");

        // Exactly half a cent: half-even goes to the even cent (0.125 → 0.12, 0.375 → 0.38),
        // where half-up would give 0.13.
        let ch = charge("ch_Half", Currency::EUR, 5_000, Some(usd(25)), Some("2"));
        assert_eq!(fee_in_charge_currency(&ch).unwrap(), Some(eur(12)));
        let ch = charge("ch_Half", Currency::EUR, 5_000, Some(usd(75)), Some("2"));
        assert_eq!(fee_in_charge_currency(&ch).unwrap(), Some(eur(38)));

        // Same currency: the fee as Stripe states it, no rate needed.
        let ch = charge("ch_Usd", Currency::USD, 5_000, Some(usd(175)), None);
        assert_eq!(fee_in_charge_currency(&ch).unwrap(), Some(usd(175)));
        // No balance transaction read: no fee.
        let ch = charge("ch_Usd", Currency::USD, 5_000, None, None);
        assert_eq!(fee_in_charge_currency(&ch).unwrap(), None);
    }

    #[test]
    fn a_foreign_fee_without_an_exchange_rate_is_refused_not_guessed() {
        let ch = charge("ch_Eur", Currency::EUR, 5_000, Some(usd(61)), None);
        let err = fee_in_charge_currency(&ch).unwrap_err();
        assert_eq!(
            err,
            MappingError::NoExchangeRate {
                charge: "ch_Eur".into(),
                fee_currency: Currency::USD,
                currency: Currency::EUR,
            }
        );
        assert!(err.to_string().contains("ch_Eur"), "{err}");
    }

    #[test]
    fn jpy_amounts_have_no_decimals() {
        // ¥4,350 × 2 seats; fee 1.00 USD at 0.0066 USD per yen = 151.5… → ¥152.
        let jpy = |m| Money::new(m, Currency::JPY);
        let ch = charge(
            "ch_Jpy",
            Currency::JPY,
            8_700,
            Some(usd(100)),
            Some("0.0066"),
        );
        assert_eq!(fee_in_charge_currency(&ch).unwrap(), Some(jpy(152)));
        let inv = invoice(
            Currency::JPY,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                2,
                8_700,
                Currency::JPY,
                None,
            )],
        );
        let doc = invoice_document(
            &inv,
            &[ch],
            &resolved(),
            &settings(FeeMode::Net, "Asia/Tokyo"),
            None,
        )
        .unwrap();
        let body = doc.to_json().to_body();
        assert!(
            body.contains(r#""quantity":2,"rate":4350,"amount":8700,"#),
            "{body}"
        );
        assert!(body.contains(r#""rate":-152,"amount":-152,"#), "{body}");
        assert_eq!(doc.total().to_string(), "8548");
    }

    #[test]
    fn kwd_amounts_have_three_decimals() {
        // 9.130 KWD × 3; fee 0.61 USD at 3.25 USD per dinar = 0.18769… → 0.188 KWD.
        let kwd = |m| Money::new(m, Currency::KWD);
        let ch = charge("ch_Kwd", Currency::KWD, 27_390, Some(usd(61)), Some("3.25"));
        assert_eq!(fee_in_charge_currency(&ch).unwrap(), Some(kwd(188)));
        let inv = invoice(
            Currency::KWD,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                3,
                27_390,
                Currency::KWD,
                None,
            )],
        );
        let doc = invoice_document(
            &inv,
            &[ch],
            &resolved(),
            &settings(FeeMode::Net, "UTC"),
            None,
        )
        .unwrap();
        let body = doc.to_json().to_body();
        assert!(
            body.contains(r#""quantity":3,"rate":9.13,"amount":27.390,"#),
            "{body}"
        );
        assert!(body.contains(r#""rate":-0.188,"amount":-0.188,"#), "{body}");
        assert_eq!(doc.total().to_string(), "27.202");
    }

    #[test]
    fn a_rate_that_does_not_divide_exactly_falls_back_to_one_unit() {
        // 10.00 for 3 units: 3.333… is not a NetSuite rate that multiplies back to 10.00.
        let inv = invoice(
            Currency::USD,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                3,
                1_000,
                Currency::USD,
                None,
            )],
        );
        let doc = invoice_document(
            &inv,
            &[],
            &resolved(),
            &settings(FeeMode::Gross, "UTC"),
            None,
        )
        .unwrap();
        assert_eq!(lines_of(&doc), vec![row(ITEM_A, "1", "10.00", "10.00")]);
    }

    #[test]
    fn every_unmapped_product_is_named_once() {
        let inv = invoice(
            Currency::USD,
            vec![
                stripe_line("il_1", Some("prod_X"), 1, 100, Currency::USD, None),
                stripe_line("il_2", Some("prod_A"), 1, 100, Currency::USD, None),
                stripe_line("il_3", Some("prod_Y"), 1, 100, Currency::USD, None),
                stripe_line("il_4", Some("prod_X"), 1, 100, Currency::USD, None),
            ],
        );
        let err = invoice_document(&inv, &[], &resolved(), &settings(FeeMode::Net, "UTC"), None)
            .unwrap_err();
        assert_eq!(
            err,
            MappingError::UnmappedProducts(vec!["prod_X".into(), "prod_Y".into()])
        );
        assert_eq!(
            err.to_string(),
            "no NetSuite item is mapped to Stripe product(s) prod_X, prod_Y"
        );
        assert_eq!(
            mlc_core::Classify::class(&err),
            mlc_core::ErrorClass::NeedsPerson
        );
    }

    #[test]
    fn a_line_without_product_goes_on_the_default_item_or_is_refused() {
        let inv = invoice(
            Currency::USD,
            vec![stripe_line("il_free", None, 2, 3_000, Currency::USD, None)],
        );
        let s = settings(FeeMode::Gross, "UTC");
        let doc = invoice_document(&inv, &[], &resolved(), &s, Some(&ns(DEFAULT_ITEM))).unwrap();
        assert_eq!(lines_of(&doc), vec![row(DEFAULT_ITEM, "2", "15", "30.00")]);
        let err = invoice_document(&inv, &[], &resolved(), &s, None).unwrap_err();
        assert_eq!(
            err,
            MappingError::LineWithoutProduct {
                object: "in_Test1".into(),
                line: "il_free".into()
            }
        );
        assert!(err.to_string().contains("posting.default_item"), "{err}");
    }

    #[test]
    fn a_missing_discount_tax_or_fee_item_names_its_setting() {
        let inv = discounted_taxed_invoice();
        let ch = charge("ch_Test1", Currency::USD, 10_920, Some(usd(347)), None);
        type Unset = fn(&mut PostingSettings);
        let cases: [(&str, Unset); 3] = [
            ("posting.discount_item", |s| s.discount_item = None),
            ("posting.tax_item", |s| s.tax_item = None),
            ("posting.fee_item", |s| s.fee_item = None),
        ];
        for (key, unset) in cases {
            let mut s = settings(FeeMode::Net, "UTC");
            unset(&mut s);
            let err = invoice_document(&inv, std::slice::from_ref(&ch), &resolved(), &s, None)
                .unwrap_err();
            assert!(
                matches!(err, MappingError::NotConfigured { key: k, .. } if k == key),
                "{key}: {err:?}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
        // The fee item is not needed in gross mode.
        let mut s = settings(FeeMode::Gross, "UTC");
        s.fee_item = None;
        assert!(invoice_document(&inv, &[ch], &resolved(), &s, None).is_ok());
    }

    #[test]
    fn a_total_that_does_not_add_up_is_refused_with_both_figures() {
        let mut inv = invoice(
            Currency::USD,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                1,
                10_000,
                Currency::USD,
                None,
            )],
        );
        inv.total = usd(9_999);
        let err = invoice_document(&inv, &[], &resolved(), &settings(FeeMode::Net, "UTC"), None)
            .unwrap_err();
        assert_eq!(
            err,
            MappingError::DoesNotAddUp {
                netsuite: "100.00 USD".into(),
                stripe: "99.99 USD".into()
            }
        );
        assert!(err.to_string().contains("100.00"), "{err}");
        assert!(err.to_string().contains("99.99"), "{err}");

        // A charge whose sold lines do not make up the captured amount is refused too.
        let ch = charge("ch_Short", Currency::USD, 5_000, None, None);
        let sold = [SoldLine {
            product: Some("prod_A".into()),
            quantity: Decimal::ONE,
            amount: usd(4_000),
            description: None,
        }];
        let err = charge_invoice_document(
            &ch,
            &sold,
            &resolved(),
            &settings(FeeMode::Net, "UTC"),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::DoesNotAddUp { .. }), "{err:?}");
    }

    #[test]
    fn no_customer_no_document() {
        let inv = invoice(
            Currency::USD,
            vec![stripe_line(
                "il_1",
                Some("prod_A"),
                1,
                100,
                Currency::USD,
                None,
            )],
        );
        let r = Resolved {
            customer: None,
            ..resolved()
        };
        assert_eq!(
            invoice_document(&inv, &[], &r, &settings(FeeMode::Net, "UTC"), None).unwrap_err(),
            MappingError::NoCustomer
        );
    }

    #[test]
    fn a_checkout_charge_is_invoiced_from_what_was_sold() {
        let ch = charge("ch_Checkout", Currency::USD, 74_000, Some(usd(2_176)), None);
        let sold = [
            SoldLine {
                product: Some("prod_A".into()),
                quantity: Decimal::ONE,
                amount: usd(50_000),
                description: Some("Onboarding Package".into()),
            },
            SoldLine {
                product: Some("prod_B".into()),
                quantity: Decimal::from(2),
                amount: usd(24_000),
                description: Some("Priority Support".into()),
            },
        ];
        let doc = charge_invoice_document(
            &ch,
            &sold,
            &resolved(),
            &settings(FeeMode::Net, "America/New_York"),
            Some(&ns(DEFAULT_ITEM)),
        )
        .unwrap();
        assert_eq!(
            lines_of(&doc),
            vec![
                row(ITEM_A, "1", "500", "500.00"),
                row(ITEM_B, "2", "120", "240.00"),
                row(FEE_ITEM, "1", "-21.76", "-21.76"),
            ]
        );
        assert_eq!(doc.total().to_string(), "718.24");
        assert_eq!(doc.external_id.as_str(), "stripe_ch_Checkout");
        assert_eq!(
            doc.memo,
            "Stripe charge ch_Checkout (payment intent pi_Test1)"
        );
        assert_eq!(doc.other_ref_num, None);
        assert_eq!(
            doc.tran_date.as_str(),
            "2026-11-26",
            "created, New York date"
        );

        // Unmapped sold products are named.
        let mut r = resolved();
        r.items.clear();
        let err = charge_invoice_document(
            &ch,
            &sold,
            &r,
            &settings(FeeMode::Net, "UTC"),
            Some(&ns(DEFAULT_ITEM)),
        )
        .unwrap_err();
        assert_eq!(
            err,
            MappingError::UnmappedProducts(vec!["prod_A".into(), "prod_B".into()])
        );
    }

    #[test]
    fn a_charge_without_sold_lines_goes_on_the_default_item() {
        let ch = charge("ch_Plain", Currency::USD, 2_500, Some(usd(103)), None);
        let doc = charge_invoice_document(
            &ch,
            &[],
            &resolved(),
            &settings(FeeMode::Net, "UTC"),
            Some(&ns(DEFAULT_ITEM)),
        )
        .unwrap();
        assert_eq!(
            lines_of(&doc),
            vec![
                row(DEFAULT_ITEM, "1", "25", "25.00"),
                row(FEE_ITEM, "1", "-1.03", "-1.03"),
            ]
        );
        assert_eq!(
            doc.lines[0].description.as_deref(),
            Some("One-time purchase")
        );
        // Gross: the captured amount alone.
        let doc = charge_invoice_document(
            &ch,
            &[],
            &resolved(),
            &settings(FeeMode::Gross, "UTC"),
            Some(&ns(DEFAULT_ITEM)),
        )
        .unwrap();
        assert_eq!(lines_of(&doc), vec![row(DEFAULT_ITEM, "1", "25", "25.00")]);
        // No default item: refused, naming the charge.
        let err =
            charge_invoice_document(&ch, &[], &resolved(), &settings(FeeMode::Net, "UTC"), None)
                .unwrap_err();
        assert!(
            matches!(&err, MappingError::LineWithoutProduct { object, .. } if object == "ch_Plain"),
            "{err:?}"
        );
    }

    #[test]
    fn the_payment_applies_the_posted_total_to_the_invoice() {
        let ch = charge("ch_Test1", Currency::USD, 10_920, Some(usd(347)), None);
        let doc = payment_document(
            &ch,
            &ns("555"),
            usd(10_573),
            &resolved(),
            &settings(FeeMode::Net, "America/New_York"),
        )
        .unwrap();
        assert_eq!(doc.external_id.as_str(), "stripe_pay_ch_Test1");
        assert_eq!(doc.payment.to_string(), "105.73");
        assert_eq!(doc.tran_date.as_str(), "2026-11-26");
        let body = doc.to_json().to_body();
        for part in [
            r#""externalId":"stripe_pay_ch_Test1""#,
            r#""customer":{"id":"100"}"#,
            r#""account":{"id":"2"}"#,
            r#""payment":105.73"#,
            r#""apply":{"items":[{"doc":{"id":"555"},"apply":true,"amount":105.73}]}"#,
            r#""memo":"Stripe payment ch_Test1""#,
        ] {
            assert!(body.contains(part), "{part} missing from {body}");
        }
    }

    #[test]
    fn the_gross_fee_journal_is_balanced_in_the_charge_currency() {
        let ch = charge("ch_Eur", Currency::EUR, 5_000, Some(usd(61)), Some("1.08"));
        let je = fee_journal_document(&ch, &resolved(), &settings(FeeMode::Gross, "UTC"))
            .unwrap()
            .expect("a fee, so a journal entry");
        assert_eq!(je.external_id.as_str(), "stripe_fee_ch_Eur");
        assert!(je.is_balanced());
        assert_eq!(je.tran_date.as_str(), "2026-11-27");
        let body = je.to_json().to_body();
        for part in [
            r#""externalId":"stripe_fee_ch_Eur""#,
            r#"{"account":{"id":"5"},"debit":0.56,"memo":"Stripe fee on ch_Eur","entity":{"id":"100"}}"#,
            r#"{"account":{"id":"7"},"credit":0.56,"memo":"Stripe fee on ch_Eur"}"#,
        ] {
            assert!(body.contains(part), "{part} missing from {body}");
        }

        // No fee (or none read): no journal entry.
        let free = charge("ch_Free", Currency::USD, 5_000, Some(usd(0)), None);
        assert_eq!(
            fee_journal_document(&free, &resolved(), &settings(FeeMode::Gross, "UTC")).unwrap(),
            None
        );
        // Missing accounts are named.
        let mut s = settings(FeeMode::Gross, "UTC");
        s.fee_expense_account = None;
        let err = fee_journal_document(&ch, &resolved(), &s).unwrap_err();
        assert!(
            err.to_string().contains("posting.fee_expense_account"),
            "{err}"
        );
        let mut s = settings(FeeMode::Gross, "UTC");
        s.fee_clearing_account = None;
        let err = fee_journal_document(&ch, &resolved(), &s).unwrap_err();
        assert!(
            err.to_string().contains("posting.fee_clearing_account"),
            "{err}"
        );
    }

    fn posted(item: &str, amount: &str) -> PostedLine {
        PostedLine {
            item: NetSuiteInternalId::parse(item).unwrap(),
            amount: amount.parse().unwrap(),
            description: None,
        }
    }

    #[test]
    fn a_refund_is_spread_over_the_sale_lines_and_adds_up_to_the_minor_unit() {
        let fee = NetSuiteInternalId::parse("9").unwrap();
        // 100.00 + 50.00 − 15.00 discount + 10.00 tax, and the fee line (left out): 145.00 sold.
        let sale = [
            posted("1", "100.00"),
            posted("2", "50.00"),
            posted("3", "-15.00"),
            posted("4", "10.00"),
            posted("9", "-4.35"),
        ];
        let usd = Currency::parse("usd").unwrap();
        let lines = refund_lines("re_1", &sale, Some(&fee), None, Money::new(1000, usd)).unwrap();
        let amounts: Vec<String> = lines.iter().map(|l| l.amount.to_string()).collect();
        // 10.00 × 100/145 = 6.896… → 6.89 (+ the remainder 0.01), 3.44, −1.03, 0.68.
        assert_eq!(amounts, ["6.91", "3.44", "-1.03", "0.68"]);
        assert!(lines.iter().all(|l| l.item != fee));
        // The whole sale, exactly.
        let lines = refund_lines("re_2", &sale, Some(&fee), None, Money::new(14500, usd)).unwrap();
        let amounts: Vec<String> = lines.iter().map(|l| l.amount.to_string()).collect();
        assert_eq!(amounts, ["100.00", "50.00", "-15.00", "10.00"]);
        // More than was sold.
        assert!(matches!(
            refund_lines("re_3", &sale, Some(&fee), None, Money::new(14501, usd)),
            Err(MappingError::RefundExceedsSale { .. })
        ));
    }

    #[test]
    fn zero_and_three_decimal_currencies_credit_whole_minor_units() {
        let jpy = Currency::parse("jpy").unwrap();
        let sale = [posted("1", "1000"), posted("2", "2000"), posted("3", "333")];
        let lines = refund_lines("re_j", &sale, None, None, Money::new(1001, jpy)).unwrap();
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        assert_eq!(total, Decimal::from(1001));
        assert!(lines.iter().all(|l| l.amount.fract().is_zero()));
        let kwd = Currency::parse("kwd").unwrap();
        let sale = [posted("1", "12.345"), posted("2", "0.001")];
        let lines = refund_lines("re_k", &sale, None, None, Money::new(7, kwd)).unwrap();
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        assert_eq!(total.to_string(), "0.007");
    }

    #[test]
    fn a_configured_refund_item_takes_the_whole_refund() {
        let item = NetSuiteInternalId::parse("77").unwrap();
        let eur = Currency::parse("eur").unwrap();
        let lines = refund_lines(
            "re_e",
            &[posted("1", "50")],
            None,
            Some(&item),
            Money::new(1234, eur),
        )
        .unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].item.as_str(), lines[0].amount.to_string()),
            ("77", "12.34".into())
        );
    }

    proptest::proptest! {
        /// Whatever the lines and the refund, the credit adds up to the refund exactly and no
        /// line credits more than it sold (in size).
        #[test]
        fn refund_lines_always_add_up(
            amounts in proptest::collection::vec(1_i64..10_000_000, 1..8),
            permille in 0_i64..=1000,
        ) {
            let usd = Currency::parse("usd").unwrap();
            let sale: Vec<PostedLine> = amounts
                .iter()
                .enumerate()
                .map(|(i, a)| PostedLine {
                    item: NetSuiteInternalId::parse(&(i + 1).to_string()).unwrap(),
                    amount: Money::new(*a, usd).to_decimal(),
                    description: None,
                })
                .collect();
            let gross: i64 = amounts.iter().sum();
            let refund = gross * permille / 1000;
            let lines = refund_lines("re_p", &sale, None, None, Money::new(refund, usd)).unwrap();
            let total: Decimal = lines.iter().map(|l| l.amount).sum();
            proptest::prop_assert_eq!(total, Money::new(refund, usd).to_decimal());
            for l in &lines {
                let sold = sale.iter().find(|s| s.item == l.item).unwrap().amount;
                proptest::prop_assert!(l.amount <= sold + Decimal::new(1, 2));
            }
        }
    }

    fn dispute_txn(
        id: &str,
        amount: i64,
        fee: i64,
        currency: &str,
        rate: Option<&str>,
    ) -> mlc_stripe::models::BalanceTransaction {
        mlc_stripe::models::BalanceTransaction {
            id: id.into(),
            amount: Some(amount),
            currency: currency.into(),
            fee: Some(fee),
            net: Some(amount - fee),
            exchange_rate: rate.map(|r| r.parse().unwrap()),
            kind: Some("adjustment".into()),
            created: NOV_20_NOON_UTC,
            ..Default::default()
        }
    }

    #[test]
    fn a_dispute_withdrawal_and_its_reinstatement_are_two_balanced_journals() {
        let eur = Currency::parse("eur").unwrap();
        let accounts = DisputeAccounts {
            disputed: ns("40"),
            fee: ns("41"),
            clearing: ns("2"),
        };
        // A 100.00 EUR charge disputed; settled in USD at 1.08; a 15.00 USD dispute fee.
        let withdrawn = dispute_movement(
            "dp_1",
            "ch_1",
            Money::new(10_000, eur),
            &dispute_txn("txn_w", -10_800, 1_500, "usd", Some("1.08")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(withdrawn.disputed, Money::new(10_000, eur));
        // 15.00 / 1.08 = 13.888… → 13.89 EUR.
        assert_eq!(withdrawn.fee, Money::new(1_389, eur));
        let doc = dispute_journal_document(
            &withdrawn,
            &accounts,
            Some(ns("2")),
            None,
            &settings(FeeMode::Net, "America/New_York"),
        )
        .unwrap();
        assert!(doc.is_balanced());
        assert_eq!(doc.external_id.as_str(), "stripe_txn_w");
        let body = doc.to_json().to_body();
        assert!(
            body.contains(r#"{"account":{"id":"40"},"debit":100.00"#),
            "{body}"
        );
        assert!(
            body.contains(r#"{"account":{"id":"41"},"debit":13.89"#),
            "{body}"
        );
        assert!(
            body.contains(r#"{"account":{"id":"2"},"credit":113.89"#),
            "{body}"
        );

        // Won: the amount comes back; the fee stays with Stripe.
        let reinstated = dispute_movement(
            "dp_1",
            "ch_1",
            Money::new(10_000, eur),
            &dispute_txn("txn_r", 10_800, 0, "usd", Some("1.08")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(reinstated.disputed, Money::new(-10_000, eur));
        assert_eq!(reinstated.fee, Money::zero(eur));
        let doc = dispute_journal_document(
            &reinstated,
            &accounts,
            None,
            None,
            &settings(FeeMode::Net, "America/New_York"),
        )
        .unwrap();
        assert!(doc.is_balanced());
        assert_eq!(doc.lines.len(), 2, "no fee line when no fee moved");
        let body = doc.to_json().to_body();
        assert!(
            body.contains(r#"{"account":{"id":"40"},"credit":100.00"#),
            "{body}"
        );
        assert!(
            body.contains(r#"{"account":{"id":"2"},"debit":100.00"#),
            "{body}"
        );

        // A fee in another currency without a rate is refused, not guessed.
        let err = dispute_movement(
            "dp_1",
            "ch_1",
            Money::new(10_000, eur),
            &dispute_txn("txn_x", -10_800, 1_500, "usd", None),
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::NoExchangeRate { .. }), "{err}");
    }

    #[test]
    fn a_failed_refund_is_given_back_to_the_customer_by_a_balanced_journal() {
        let kwd = Currency::parse("kwd").unwrap();
        let doc = refund_reversal_document(
            &sid(StripeIdKind::Refund, "re_1"),
            Money::new(12_345, kwd),
            &ns("2"),
            &ns("9"),
            &ns(CUSTOMER),
            Some(ns("4")),
            NOV_1_03_UTC,
            &settings(FeeMode::Net, "America/New_York"),
        )
        .unwrap();
        assert!(doc.is_balanced());
        assert_eq!(doc.external_id.as_str(), "stripe_refund_failure_re_1");
        assert_eq!(doc.tran_date.as_str(), "2026-10-31");
        let body = doc.to_json().to_body();
        assert!(
            body.contains(r#"{"account":{"id":"2"},"debit":12.345"#),
            "{body}"
        );
        assert!(
            body.contains(r#""credit":12.345"#) && body.contains(r#""entity":{"id":"100"}"#),
            "{body}"
        );
    }

    #[test]
    fn a_credit_note_credits_its_lines_items_with_their_discount_and_tax() {
        let usd = Currency::parse("usd").unwrap();
        let lines = [
            CreditNoteLine {
                item: Some(ns(ITEM_A)),
                amount: 2_000,
                discount: 200,
                description: Some("Pro plan".into()),
            },
            CreditNoteLine {
                item: None,
                amount: 500,
                discount: 0,
                description: Some("Service credit".into()),
            },
        ];
        // 25.00 credited, 2.00 off, 2.30 tax: 25.30.
        let out = credit_note_lines(
            "cn_1",
            &lines,
            Money::new(2_530, usd),
            None,
            Some(&ns(DEFAULT_ITEM)),
            Some(&ns(DISCOUNT_ITEM)),
            Some(&ns(TAX_ITEM)),
        )
        .unwrap();
        let got: Vec<(String, String)> = out
            .iter()
            .map(|l| (l.item.to_string(), l.amount.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (ITEM_A.to_string(), "20.00".to_string()),
                (DEFAULT_ITEM.to_string(), "5.00".to_string()),
                (DISCOUNT_ITEM.to_string(), "-2.00".to_string()),
                (TAX_ITEM.to_string(), "2.30".to_string()),
            ]
        );
        // One item for every credit, when configured.
        let one = credit_note_lines(
            "cn_1",
            &lines,
            Money::new(2_530, usd),
            Some(&ns("77")),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].amount.to_string(), "25.30");
        // A custom line with no default item names the setting.
        let err = credit_note_lines(
            "cn_1",
            &lines,
            Money::new(2_530, usd),
            None,
            None,
            Some(&ns(DISCOUNT_ITEM)),
            Some(&ns(TAX_ITEM)),
        )
        .unwrap_err();
        assert!(err.to_string().contains("posting.default_item"), "{err}");
        // Lines worth more than the total never post.
        let err = credit_note_lines(
            "cn_1",
            &lines,
            Money::new(1_000, usd),
            None,
            Some(&ns(DEFAULT_ITEM)),
            Some(&ns(DISCOUNT_ITEM)),
            Some(&ns(TAX_ITEM)),
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::DoesNotAddUp { .. }), "{err}");
    }

    #[test]
    fn a_payout_is_one_deposit_of_its_payments_and_its_other_lines_summed_per_kind() {
        let usd = Currency::parse("usd").unwrap();
        let lines = [
            PayoutLine::Payment {
                payment: ns("501"),
                amount: 9_680,
            },
            PayoutLine::Payment {
                payment: ns("502"),
                amount: 4_825,
            },
            PayoutLine::Other {
                account: ns("2"),
                what: "refunds".into(),
                source: "re_1".into(),
                amount: -2_000,
            },
            PayoutLine::Other {
                account: ns("2"),
                what: "refunds".into(),
                source: "re_2".into(),
                amount: -500,
            },
            PayoutLine::Other {
                account: ns("2"),
                what: "disputes".into(),
                source: "dp_1".into(),
                amount: 0,
            },
        ];
        let doc = deposit_document(
            "po_1",
            Money::new(12_005, usd),
            NOV_20_NOON_UTC,
            &lines,
            &ns("1"),
            Some(ns("1")),
            &settings(FeeMode::Net, "America/New_York"),
        )
        .unwrap();
        assert_eq!(doc.external_id.as_str(), "stripe_po_1");
        assert_eq!(doc.other.len(), 1, "zero sums are left out");
        let body = doc.to_json().to_body();
        assert!(body.contains(r#"{"id":"501","deposit":true}"#), "{body}");
        assert!(
            body.contains(r#"{"account":{"id":"2"},"amount":-25.00,"memo":"refunds: re_1, re_2"}"#),
            "{body}"
        );
        // A line missing is never papered over.
        let err = deposit_document(
            "po_1",
            Money::new(12_006, usd),
            NOV_20_NOON_UTC,
            &lines,
            &ns("1"),
            None,
            &settings(FeeMode::Net, "America/New_York"),
        )
        .unwrap_err();
        assert!(matches!(err, MappingError::DoesNotAddUp { .. }), "{err}");
    }
}
