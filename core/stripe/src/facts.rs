//! Domain views of Stripe objects, independent of the API version they were rendered in.
//!
//! Mapping code reads [`InvoiceFacts`] and [`ChargeFacts`] only: a pre-basil invoice
//! (`invoice.charge`, `line.price`, `invoice.tax`) and a basil+ invoice (`invoice.payments`,
//! `line.pricing.price_details`, `total_taxes`) of the same sale give equal values.

use mlc_core::{Currency, IdError, Money, StripeId, StripeIdKind};
use rust_decimal::Decimal;

use crate::models::{
    BalanceTransaction, Charge, Expandable, FeeDetail, Invoice, InvoiceLineItem, Metadata,
    StripeModel,
};

/// Why a Stripe object cannot be turned into domain facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("Stripe {object} {id} has an unusable currency: {source}")]
    Currency {
        object: &'static str,
        id: String,
        #[source]
        source: mlc_core::CurrencyError,
    },
    #[error("Stripe {object} {id}: {source}")]
    Id {
        object: &'static str,
        id: String,
        #[source]
        source: IdError,
    },
    #[error("Stripe {object} {id} is deleted")]
    Deleted { object: &'static str, id: String },
    #[error("Stripe {object} {id}: amounts overflow")]
    Overflow { object: &'static str, id: String },
    /// A money field the facts cannot do without is absent (an API dialect that omits it):
    /// nothing is posted rather than a guessed amount.
    #[error(
        "Stripe {object} {id} has no `{field}`: it cannot be posted without it; check the API \
         version the connector is pinned to (stripe.api_version)"
    )]
    MissingAmount {
        object: &'static str,
        id: String,
        field: &'static str,
    },
}

fn required(
    object: &'static str,
    id: &str,
    field: &'static str,
    value: Option<i64>,
) -> Result<i64, FactsError> {
    value.ok_or_else(|| FactsError::MissingAmount {
        object,
        id: id.to_string(),
        field,
    })
}

impl mlc_core::Classify for FactsError {
    /// The same object gives the same error every time.
    fn class(&self) -> mlc_core::ErrorClass {
        mlc_core::ErrorClass::Permanent
    }
}

/// An invoice as posting sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceFacts {
    pub id: StripeId,
    /// Null on drafts.
    pub number: Option<String>,
    pub customer_id: Option<StripeId>,
    pub currency: Currency,
    /// `draft`, `open`, `paid`, `uncollectible`, `void`.
    pub status: Option<String>,
    pub lines: Vec<LineFacts>,
    /// False when `lines.has_more` was true: more lines exist than were read (the client pages
    /// them; an event payload may not carry them all).
    pub lines_complete: bool,
    pub subtotal: Money,
    pub total: Money,
    /// All tax, exclusive and inclusive.
    pub tax: Money,
    /// The part of `tax` already included in line amounts.
    pub tax_inclusive: Money,
    /// Sum of `total_discount_amounts`.
    pub discount: Money,
    /// `None` where the API left them out and Stripe's definitions do not fix them.
    pub amount_due: Option<Money>,
    pub amount_paid: Option<Money>,
    pub amount_remaining: Option<Money>,
    pub subscription_id: Option<String>,
    /// Pre-basil: `invoice.charge`. Basil+: `payment.charge` of paid InvoicePayments, or the
    /// `latest_charge` of their PaymentIntent when that is expanded; otherwise empty, so on basil+
    /// go from `payment_intent_ids` through `StripeClient::retrieve_payment_intent`.
    pub charge_ids: Vec<StripeId>,
    /// Pre-basil: `invoice.payment_intent`. Basil+: PaymentIntents of paid InvoicePayments (needs
    /// `expand[]=payments`, which `StripeClient::retrieve_invoice` asks for).
    pub payment_intent_ids: Vec<StripeId>,
    pub paid_at: Option<i64>,
    pub finalized_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub period: Option<(i64, i64)>,
    pub created: i64,
    pub due_date: Option<i64>,
    pub billing_reason: Option<String>,
    pub metadata: Metadata,
    pub livemode: bool,
}

/// One invoice line as posting sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFacts {
    pub id: String,
    pub product_id: Option<StripeId>,
    pub price_id: Option<StripeId>,
    pub description: Option<String>,
    /// Exact quantity (basil+ `quantity_decimal`, else `quantity`).
    pub quantity: Option<Decimal>,
    /// Unit price in minor units, possibly fractional (`unit_amount_decimal`).
    pub unit_amount_decimal: Option<Decimal>,
    /// `line.amount` as Stripe states it.
    pub amount: Money,
    pub discount: Money,
    /// All tax on the line, exclusive and inclusive.
    pub tax: Money,
    pub period: Option<(i64, i64)>,
    pub proration: bool,
    pub subscription_id: Option<String>,
    pub metadata: Metadata,
}

/// A charge as posting sees it, with fees and FX from its balance transaction when expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeFacts {
    pub id: StripeId,
    pub amount: Money,
    pub captured_amount: Money,
    /// True when the API left `amount_captured` out and `captured_amount` was worked out from
    /// `captured`, `amount` and `amount_refunded` (older API versions): refunds made before the
    /// fetch are then already netted off it.
    pub captured_amount_inferred: bool,
    pub refunded_amount: Money,
    /// Fully refunded.
    pub refunded: bool,
    pub currency: Currency,
    pub customer_id: Option<StripeId>,
    /// Pre-basil only; on basil+ find the invoice via InvoicePayments.
    pub invoice_id: Option<StripeId>,
    pub payment_intent_id: Option<StripeId>,
    pub balance_transaction_id: Option<StripeId>,
    /// From the balance transaction, in the settlement currency; `None` when not expanded.
    pub fee: Option<Money>,
    pub net: Option<Money>,
    /// Gross in the settlement currency.
    pub settlement_amount: Option<Money>,
    pub settlement_currency: Option<Currency>,
    /// Charge currency → settlement currency; `None` when both are the same.
    pub exchange_rate: Option<Decimal>,
    pub fee_details: Vec<FeeFacts>,
    /// `succeeded`, `pending`, `failed`.
    pub status: String,
    pub paid: bool,
    pub captured: bool,
    pub description: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
    pub livemode: bool,
}

/// One fee component of a balance transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeFacts {
    pub amount: Money,
    /// `stripe_fee`, `application_fee`, `tax`, ...
    pub kind: String,
    pub description: Option<String>,
}

fn currency(object: &'static str, id: &str, code: &str) -> Result<Currency, FactsError> {
    Currency::parse(code).map_err(|source| FactsError::Currency {
        object,
        id: id.to_string(),
        source,
    })
}

fn sid(
    object: &'static str,
    id: &str,
    kind: StripeIdKind,
    value: &str,
) -> Result<StripeId, FactsError> {
    StripeId::parse(kind, value).map_err(|source| FactsError::Id {
        object,
        id: id.to_string(),
        source,
    })
}

fn opt_sid(
    object: &'static str,
    id: &str,
    kind: StripeIdKind,
    value: Option<&str>,
) -> Result<Option<StripeId>, FactsError> {
    value.map(|v| sid(object, id, kind, v)).transpose()
}

fn sum(
    object: &'static str,
    id: &str,
    amounts: impl IntoIterator<Item = i64>,
) -> Result<i64, FactsError> {
    amounts.into_iter().try_fold(0_i64, |acc, a| {
        acc.checked_add(a).ok_or(FactsError::Overflow {
            object,
            id: id.to_string(),
        })
    })
}

fn push_unique(ids: &mut Vec<StripeId>, id: StripeId) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

impl InvoiceFacts {
    /// The domain view of an invoice of either API shape.
    pub fn from_invoice(invoice: &Invoice) -> Result<Self, FactsError> {
        const OBJ: &str = "invoice";
        let id_str = invoice.id.as_str();
        if invoice.deleted {
            return Err(FactsError::Deleted {
                object: OBJ,
                id: id_str.to_string(),
            });
        }
        let id = sid(OBJ, id_str, StripeIdKind::Invoice, id_str)?;
        let cur = currency(OBJ, id_str, &invoice.currency)?;
        let money = |minor: i64| Money::new(minor, cur);

        // Taxes: basil+ `total_taxes`, else pre-basil `total_tax_amounts`, else the bare `tax`.
        let (tax, tax_inclusive) = if !invoice.total_taxes.is_empty() {
            (
                sum(OBJ, id_str, invoice.total_taxes.iter().map(|t| t.amount))?,
                sum(
                    OBJ,
                    id_str,
                    invoice
                        .total_taxes
                        .iter()
                        .filter(|t| t.tax_behavior.as_deref() == Some("inclusive"))
                        .map(|t| t.amount),
                )?,
            )
        } else if !invoice.total_tax_amounts.is_empty() {
            (
                sum(
                    OBJ,
                    id_str,
                    invoice.total_tax_amounts.iter().map(|t| t.amount),
                )?,
                sum(
                    OBJ,
                    id_str,
                    invoice
                        .total_tax_amounts
                        .iter()
                        .filter(|t| t.inclusive)
                        .map(|t| t.amount),
                )?,
            )
        } else {
            (invoice.tax.unwrap_or(0), 0)
        };
        let discount = sum(
            OBJ,
            id_str,
            invoice.total_discount_amounts.iter().map(|d| d.amount),
        )?;

        let subscription_id = invoice.subscription.clone().or_else(|| {
            invoice
                .parent
                .as_ref()
                .and_then(|p| p.subscription_details.as_ref())
                .and_then(|s| s.subscription.clone())
        });

        let mut charge_ids = Vec::new();
        let mut payment_intent_ids = Vec::new();
        if let Some(charge) = &invoice.charge {
            push_unique(
                &mut charge_ids,
                sid(OBJ, id_str, StripeIdKind::Charge, charge.id())?,
            );
        }
        if let Some(pi) = &invoice.payment_intent {
            push_unique(
                &mut payment_intent_ids,
                sid(OBJ, id_str, StripeIdKind::PaymentIntent, pi.id())?,
            );
        }
        for payment in invoice.payments.iter().flat_map(|l| &l.data) {
            // Only settled payments: an open InvoicePayment is a request, not money received.
            if payment.status != "paid" {
                continue;
            }
            if let Some(charge) = &payment.payment.charge {
                push_unique(
                    &mut charge_ids,
                    sid(OBJ, id_str, StripeIdKind::Charge, charge.id())?,
                );
            }
            if let Some(pi) = &payment.payment.payment_intent {
                push_unique(
                    &mut payment_intent_ids,
                    sid(OBJ, id_str, StripeIdKind::PaymentIntent, pi.id())?,
                );
                // An expanded PaymentIntent names its charge too.
                if let Some(Expandable::Object(pi)) = &payment.payment.payment_intent
                    && let Some(charge) = &pi.latest_charge
                {
                    push_unique(
                        &mut charge_ids,
                        sid(OBJ, id_str, StripeIdKind::Charge, charge.id())?,
                    );
                }
            }
        }

        let lines = invoice
            .lines
            .data
            .iter()
            .map(|l| LineFacts::from_line(l, cur))
            .collect::<Result<Vec<_>, _>>()?;

        // Absent money is never zero: the total is required; the others follow from it where
        // Stripe's own definitions allow (due = total less credit applied, remaining = due - paid).
        let total = required(OBJ, id_str, "total", invoice.total)?;
        let subtotal = match invoice.subtotal {
            Some(s) => s,
            None if !invoice.lines.has_more => {
                sum(OBJ, id_str, lines.iter().map(|l| l.amount.minor()))?
            }
            None => required(OBJ, id_str, "subtotal", None)?,
        };
        // Paid, due and remaining are not posted; they are known where Stripe states them or
        // where its definitions fix them (remaining = due - paid; a paid invoice has paid it all).
        let amount_due = invoice.amount_due;
        let amount_paid = invoice
            .amount_paid
            .or_else(|| match invoice.status.as_deref() {
                Some("paid") => amount_due,
                _ => amount_due
                    .zip(invoice.amount_remaining)
                    .and_then(|(d, r)| d.checked_sub(r)),
            });
        let amount_remaining = invoice.amount_remaining.or_else(|| {
            amount_due
                .zip(amount_paid)
                .and_then(|(d, p)| d.checked_sub(p))
        });
        Ok(InvoiceFacts {
            id,
            number: invoice.number.clone(),
            customer_id: opt_sid(
                OBJ,
                id_str,
                StripeIdKind::Customer,
                invoice.customer.as_ref().map(|c| c.id()),
            )?,
            currency: cur,
            status: invoice.status.clone(),
            lines,
            lines_complete: !invoice.lines.has_more,
            subtotal: money(subtotal),
            total: money(total),
            tax: money(tax),
            tax_inclusive: money(tax_inclusive),
            discount: money(discount),
            amount_due: amount_due.map(money),
            amount_paid: amount_paid.map(money),
            amount_remaining: amount_remaining.map(money),
            subscription_id,
            charge_ids,
            payment_intent_ids,
            paid_at: invoice.status_transitions.paid_at,
            finalized_at: invoice.status_transitions.finalized_at,
            voided_at: invoice.status_transitions.voided_at,
            period: invoice.period_start.zip(invoice.period_end),
            created: invoice.created,
            due_date: invoice.due_date,
            billing_reason: invoice.billing_reason.clone(),
            metadata: invoice.metadata.clone(),
            livemode: invoice.livemode,
        })
    }
}

impl LineFacts {
    /// The domain view of a line of either API shape; `invoice_currency` is used when the line
    /// omits its own.
    pub fn from_line(
        line: &InvoiceLineItem,
        invoice_currency: Currency,
    ) -> Result<Self, FactsError> {
        const OBJ: &str = "invoice line item";
        let id_str = line.id.as_str();
        let cur = if line.currency.is_empty() {
            invoice_currency
        } else {
            currency(OBJ, id_str, &line.currency)?
        };
        let money = |minor: i64| Money::new(minor, cur);

        // Price and product: pre-basil `line.price{id, product}`, basil+ `line.pricing.price_details`.
        let details = line.pricing.as_ref().and_then(|p| p.price_details.as_ref());
        let price = line
            .price
            .as_ref()
            .or_else(|| details.and_then(|d| d.price.as_ref()));
        let price_obj = price.and_then(|p| p.as_object());
        let product_id = price_obj
            .and_then(|p| p.product.as_ref())
            .map(|p| p.id().to_string())
            .or_else(|| details.and_then(|d| d.product.clone()));
        let unit_amount_decimal = line
            .pricing
            .as_ref()
            .and_then(|p| p.unit_amount_decimal)
            .or_else(|| price_obj.and_then(|p| p.unit_amount_decimal))
            .or_else(|| price_obj.and_then(|p| p.unit_amount).map(Decimal::from));

        let proration = line.proration.unwrap_or(false)
            || line
                .parent
                .as_ref()
                .and_then(|p| p.details())
                .is_some_and(|d| d.proration);
        let subscription_id = line.subscription.clone().or_else(|| {
            line.parent
                .as_ref()
                .and_then(|p| p.details())
                .and_then(|d| d.subscription.clone())
        });

        let tax = if !line.taxes.is_empty() {
            sum(OBJ, id_str, line.taxes.iter().map(|t| t.amount))?
        } else {
            sum(OBJ, id_str, line.tax_amounts.iter().map(|t| t.amount))?
        };

        Ok(LineFacts {
            id: line.id.clone(),
            product_id: opt_sid(OBJ, id_str, StripeIdKind::Product, product_id.as_deref())?,
            price_id: opt_sid(OBJ, id_str, StripeIdKind::Price, price.map(|p| p.id()))?,
            description: line.description.clone(),
            quantity: line.quantity_decimal.or(line.quantity.map(Decimal::from)),
            unit_amount_decimal,
            amount: money(required(OBJ, id_str, "amount", line.amount)?),
            discount: money(sum(
                OBJ,
                id_str,
                line.discount_amounts.iter().map(|d| d.amount),
            )?),
            tax: money(tax),
            period: line.period.map(|p| (p.start, p.end)),
            proration,
            subscription_id,
            metadata: line.metadata.clone(),
        })
    }
}

impl ChargeFacts {
    /// The domain view of a charge; fees and FX are filled when `balance_transaction` is expanded
    /// (or passed separately with [`ChargeFacts::with_balance_transaction`]).
    pub fn from_charge(charge: &Charge) -> Result<Self, FactsError> {
        const OBJ: &str = "charge";
        let id_str = charge.id.as_str();
        let id = sid(OBJ, id_str, StripeIdKind::Charge, id_str)?;
        let cur = currency(OBJ, id_str, &charge.currency)?;
        let money = |minor: i64| Money::new(minor, cur);
        // `amount_refunded` left out: a fully refunded charge gave back all of it; otherwise no
        // refund is known (partial refunds came with the field in every API version).
        let refunded_minor = match charge.amount_refunded {
            Some(r) => r,
            None if charge.refunded => charge.amount,
            None => 0,
        };
        // `amount_captured` left out (older API versions): a captured charge brought in its
        // amount, less what was released at capture, which those versions count as refunded.
        let captured_inferred = charge.amount_captured.is_none();
        let captured_minor = match charge.amount_captured {
            Some(c) => c,
            None if charge.captured => {
                charge
                    .amount
                    .checked_sub(refunded_minor)
                    .ok_or_else(|| FactsError::Overflow {
                        object: OBJ,
                        id: id_str.to_string(),
                    })?
            }
            None => 0,
        };
        let mut facts = ChargeFacts {
            id,
            amount: money(charge.amount),
            captured_amount: money(captured_minor),
            captured_amount_inferred: captured_inferred,
            refunded_amount: money(refunded_minor),
            refunded: charge.refunded,
            currency: cur,
            customer_id: opt_sid(
                OBJ,
                id_str,
                StripeIdKind::Customer,
                charge.customer.as_ref().map(|c| c.id()),
            )?,
            invoice_id: opt_sid(
                OBJ,
                id_str,
                StripeIdKind::Invoice,
                charge.invoice.as_ref().map(|i| i.id()),
            )?,
            payment_intent_id: opt_sid(
                OBJ,
                id_str,
                StripeIdKind::PaymentIntent,
                charge.payment_intent.as_ref().map(|p| p.id()),
            )?,
            balance_transaction_id: opt_sid(
                OBJ,
                id_str,
                StripeIdKind::BalanceTransaction,
                charge.balance_transaction.as_ref().map(|b| b.id()),
            )?,
            fee: None,
            net: None,
            settlement_amount: None,
            settlement_currency: None,
            exchange_rate: None,
            fee_details: Vec::new(),
            status: charge.status.clone(),
            paid: charge.paid,
            captured: charge.captured,
            description: charge.description.clone(),
            failure_code: charge.failure_code.clone(),
            failure_message: charge.failure_message.clone(),
            metadata: charge.metadata.clone(),
            created: charge.created,
            livemode: charge.livemode,
        };
        if let Some(Expandable::Object(txn)) = &charge.balance_transaction {
            facts = facts.with_balance_transaction(txn)?;
        }
        Ok(facts)
    }

    /// Fills fee, net, settlement amount and exchange rate from the charge's balance transaction.
    pub fn with_balance_transaction(
        mut self,
        txn: &BalanceTransaction,
    ) -> Result<Self, FactsError> {
        const OBJ: &str = "balance transaction";
        let id_str = txn.id.as_str();
        let cur = currency(OBJ, id_str, &txn.currency)?;
        let fee_details = txn
            .fee_details
            .iter()
            .map(|f: &FeeDetail| {
                let c = if f.currency.is_empty() {
                    cur
                } else {
                    currency(OBJ, id_str, &f.currency)?
                };
                Ok(FeeFacts {
                    amount: Money::new(f.amount, c),
                    kind: f.kind.clone(),
                    description: f.description.clone(),
                })
            })
            .collect::<Result<Vec<_>, FactsError>>()?;
        self.balance_transaction_id = Some(sid(
            OBJ,
            id_str,
            StripeIdKind::BalanceTransaction,
            txn.id(),
        )?);
        // Absent money is not zero: the fee is the sum of its parts when only those are given,
        // net is gross less fee; without a gross there is nothing to settle.
        let amount = required(OBJ, id_str, "amount", txn.amount)?;
        let fee = match txn.fee {
            Some(f) => f,
            None if !txn.fee_details.is_empty() => {
                sum(OBJ, id_str, txn.fee_details.iter().map(|f| f.amount))?
            }
            None => required(OBJ, id_str, "fee", None)?,
        };
        let net = match txn.net {
            Some(n) => n,
            None => amount
                .checked_sub(fee)
                .ok_or_else(|| FactsError::Overflow {
                    object: OBJ,
                    id: id_str.to_string(),
                })?,
        };
        self.fee = Some(Money::new(fee, cur));
        self.net = Some(Money::new(net, cur));
        self.settlement_amount = Some(Money::new(amount, cur));
        self.settlement_currency = Some(cur);
        self.exchange_rate = txn.exchange_rate;
        self.fee_details = fee_details;
        Ok(self)
    }
}
