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
}

impl mlc_core::Classify for MappingError {
    fn class(&self) -> mlc_core::ErrorClass {
        match self {
            MappingError::Overflow => mlc_core::ErrorClass::Permanent,
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

fn memo_fields(
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
            doc_line.period = Some((
                tran_date(start, &settings.time_zone),
                tran_date(end, &settings.time_zone),
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
