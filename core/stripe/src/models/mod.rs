//! Thin, version-tolerant serde models of the Stripe objects the connector posts from.
//!
//! Each model keeps only the fields posting needs, ignores everything else, and carries the
//! object's full JSON in `raw` so nothing Stripe sent is lost. Fields that exist in only one API
//! shape (pre-basil `invoice.charge`, basil+ `invoice.payments`, ...) are all present and optional;
//! [`crate::facts`] turns either shape into the same domain values.
//!
//! Parse with [`StripeModel::from_json`] / [`StripeModel::from_slice`] (or [`StripeObject`] when the
//! kind is not known in advance): parsing from text keeps decimal numbers such as
//! `exchange_rate` exact, which a detour through `serde_json::Value` (an `f64`) would not.

mod objects;
mod support;

pub use objects::*;
pub use support::{Expandable, List, Metadata};

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why Stripe JSON could not be read as the expected model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The text is not JSON or lacks a required field (`id`, an amount, ...).
    #[error("malformed Stripe {what}: {source}")]
    Malformed {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The JSON is an object of another kind than the one asked for.
    #[error("expected a Stripe {expected} object, got `{found}`")]
    WrongObject {
        expected: &'static str,
        found: String,
    },
}

impl mlc_core::Classify for ModelError {
    /// Re-reading the same bytes fails the same way.
    fn class(&self) -> mlc_core::ErrorClass {
        mlc_core::ErrorClass::Permanent
    }
}

/// A Stripe object model that keeps its raw JSON.
pub trait StripeModel: DeserializeOwned + Sized {
    /// The value of the object's `object` field (`"charge"`, `"invoice"`, `"checkout.session"`).
    const OBJECT: &'static str;

    /// The object's `id`.
    fn id(&self) -> &str;

    /// The object exactly as Stripe sent it (numbers as `f64`; use the typed fields for money).
    fn raw(&self) -> &Value;

    /// Stores the raw JSON; called by the parsing helpers.
    fn set_raw(&mut self, raw: Value);

    /// Parses the model from JSON text and keeps the text's value in `raw`.
    fn from_json(text: &str) -> Result<Self, ModelError> {
        let malformed = |source| ModelError::Malformed {
            what: Self::OBJECT,
            source,
        };
        let raw: Value = serde_json::from_str(text).map_err(malformed)?;
        if let Some(found) = raw.get("object").and_then(Value::as_str)
            && found != Self::OBJECT
        {
            return Err(ModelError::WrongObject {
                expected: Self::OBJECT,
                found: found.to_string(),
            });
        }
        let mut model: Self = serde_json::from_str(text).map_err(malformed)?;
        if model.id().is_empty() {
            // Every object the connector handles has an ID; without one it cannot be tracked.
            return Err(malformed(serde::de::Error::missing_field("id")));
        }
        model.set_raw(raw);
        Ok(model)
    }

    /// [`StripeModel::from_json`] from bytes.
    fn from_slice(bytes: &[u8]) -> Result<Self, ModelError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ModelError::Malformed {
            what: Self::OBJECT,
            source: serde::de::Error::custom(format!("not UTF-8: {e}")),
        })?;
        Self::from_json(text)
    }

    /// Parses from an already-parsed value. Prefer the text forms: a `Value` has already rounded
    /// non-integer numbers through `f64`.
    fn from_value(value: &Value) -> Result<Self, ModelError> {
        Self::from_json(&value.to_string())
    }
}

macro_rules! impl_model {
    ($($ty:ty => $object:literal),* $(,)?) => {$(
        impl StripeModel for $ty {
            const OBJECT: &'static str = $object;
            fn id(&self) -> &str {
                &self.id
            }
            fn raw(&self) -> &Value {
                &self.raw
            }
            fn set_raw(&mut self, raw: Value) {
                self.raw = raw;
            }
        }
    )*};
}
pub(crate) use impl_model;

/// Any Stripe object, told apart by its `object` field. Kinds the connector does not model
/// (plans, subscriptions, tax ids, ...) come back as [`StripeObject::Other`] with their JSON.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum StripeObject {
    Charge(Charge),
    Invoice(Invoice),
    InvoiceLineItem(InvoiceLineItem),
    InvoicePayment(InvoicePayment),
    PaymentIntent(PaymentIntent),
    BalanceTransaction(BalanceTransaction),
    Customer(Customer),
    Product(Product),
    Price(Price),
    Refund(Refund),
    CheckoutSession(CheckoutSession),
    CreditNote(CreditNote),
    Dispute(Dispute),
    Payout(Payout),
    Discount(Discount),
    /// A kind this crate does not model; `object` is its `object` field.
    Other {
        object: String,
        raw: Value,
    },
}

impl StripeObject {
    /// Parses any Stripe object from JSON text, choosing the model by its `object` field.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let raw: Value = serde_json::from_str(text).map_err(|source| ModelError::Malformed {
            what: "object",
            source,
        })?;
        let object = raw
            .get("object")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(match object.as_str() {
            Charge::OBJECT => StripeObject::Charge(Charge::from_json(text)?),
            Invoice::OBJECT => StripeObject::Invoice(Invoice::from_json(text)?),
            InvoiceLineItem::OBJECT => {
                StripeObject::InvoiceLineItem(InvoiceLineItem::from_json(text)?)
            }
            InvoicePayment::OBJECT => {
                StripeObject::InvoicePayment(InvoicePayment::from_json(text)?)
            }
            PaymentIntent::OBJECT => StripeObject::PaymentIntent(PaymentIntent::from_json(text)?),
            BalanceTransaction::OBJECT => {
                StripeObject::BalanceTransaction(BalanceTransaction::from_json(text)?)
            }
            Customer::OBJECT => StripeObject::Customer(Customer::from_json(text)?),
            Product::OBJECT => StripeObject::Product(Product::from_json(text)?),
            Price::OBJECT => StripeObject::Price(Price::from_json(text)?),
            Refund::OBJECT => StripeObject::Refund(Refund::from_json(text)?),
            CheckoutSession::OBJECT => {
                StripeObject::CheckoutSession(CheckoutSession::from_json(text)?)
            }
            CreditNote::OBJECT => StripeObject::CreditNote(CreditNote::from_json(text)?),
            Dispute::OBJECT => StripeObject::Dispute(Dispute::from_json(text)?),
            Payout::OBJECT => StripeObject::Payout(Payout::from_json(text)?),
            Discount::OBJECT => StripeObject::Discount(Discount::from_json(text)?),
            _ => StripeObject::Other { object, raw },
        })
    }

    /// The `object` field of the parsed object.
    pub fn object(&self) -> &str {
        match self {
            StripeObject::Charge(_) => Charge::OBJECT,
            StripeObject::Invoice(_) => Invoice::OBJECT,
            StripeObject::InvoiceLineItem(_) => InvoiceLineItem::OBJECT,
            StripeObject::InvoicePayment(_) => InvoicePayment::OBJECT,
            StripeObject::PaymentIntent(_) => PaymentIntent::OBJECT,
            StripeObject::BalanceTransaction(_) => BalanceTransaction::OBJECT,
            StripeObject::Customer(_) => Customer::OBJECT,
            StripeObject::Product(_) => Product::OBJECT,
            StripeObject::Price(_) => Price::OBJECT,
            StripeObject::Refund(_) => Refund::OBJECT,
            StripeObject::CheckoutSession(_) => CheckoutSession::OBJECT,
            StripeObject::CreditNote(_) => CreditNote::OBJECT,
            StripeObject::Dispute(_) => Dispute::OBJECT,
            StripeObject::Payout(_) => Payout::OBJECT,
            StripeObject::Discount(_) => Discount::OBJECT,
            StripeObject::Other { object, .. } => object,
        }
    }

    /// The object's `id`, when it has one.
    pub fn id(&self) -> Option<&str> {
        self.raw().get("id").and_then(Value::as_str)
    }

    /// The object's JSON.
    pub fn raw(&self) -> &Value {
        match self {
            StripeObject::Charge(o) => &o.raw,
            StripeObject::Invoice(o) => &o.raw,
            StripeObject::InvoiceLineItem(o) => &o.raw,
            StripeObject::InvoicePayment(o) => &o.raw,
            StripeObject::PaymentIntent(o) => &o.raw,
            StripeObject::BalanceTransaction(o) => &o.raw,
            StripeObject::Customer(o) => &o.raw,
            StripeObject::Product(o) => &o.raw,
            StripeObject::Price(o) => &o.raw,
            StripeObject::Refund(o) => &o.raw,
            StripeObject::CheckoutSession(o) => &o.raw,
            StripeObject::CreditNote(o) => &o.raw,
            StripeObject::Dispute(o) => &o.raw,
            StripeObject::Payout(o) => &o.raw,
            StripeObject::Discount(o) => &o.raw,
            StripeObject::Other { raw, .. } => raw,
        }
    }
}

/// The `object` kind Stripe puts in `data.object` for an event type, for the types the connector
/// cares about (note `charge.dispute.*` carries a Dispute and `charge.refund.updated` a Refund).
/// `None` for types not listed here.
pub fn object_for_event_type(event_type: &str) -> Option<&'static str> {
    let kind = match event_type {
        t if t.starts_with("charge.dispute.") => Dispute::OBJECT,
        t if t.starts_with("charge.refund.") => Refund::OBJECT,
        t if t.starts_with("charge.") => Charge::OBJECT,
        t if t.starts_with("invoice_payment.") => InvoicePayment::OBJECT,
        t if t.starts_with("invoiceitem.") => "invoiceitem",
        t if t.starts_with("invoice.") => Invoice::OBJECT,
        t if t.starts_with("payment_intent.") => PaymentIntent::OBJECT,
        t if t.starts_with("customer.discount.") => Discount::OBJECT,
        t if t.starts_with("customer.subscription.") => "subscription",
        t if t.starts_with("customer.tax_id.") => "tax_id",
        t if t.starts_with("customer.source.") => return None,
        t if t.starts_with("customer.") => Customer::OBJECT,
        t if t.starts_with("product.") => Product::OBJECT,
        t if t.starts_with("price.") => Price::OBJECT,
        t if t.starts_with("plan.") => "plan",
        t if t.starts_with("refund.") => Refund::OBJECT,
        t if t.starts_with("checkout.session.") => CheckoutSession::OBJECT,
        t if t.starts_with("credit_note.") => CreditNote::OBJECT,
        t if t.starts_with("payout.") => Payout::OBJECT,
        t if t.starts_with("balance_transaction.") => BalanceTransaction::OBJECT,
        _ => return None,
    };
    Some(kind)
}
