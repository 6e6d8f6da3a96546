//! Identifiers that cannot be confused with one another or hold invalid values.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{value}` is not a Stripe {kind} ID: expected it to start with `{prefix}`")]
    WrongPrefix {
        value: String,
        kind: &'static str,
        prefix: &'static str,
    },
    #[error(
        "`{0}` is not a usable ID: only letters, digits, `_` and `-` are allowed (at most {1} characters)"
    )]
    BadCharacters(String, usize),
    #[error(
        "`{value}` is not a valid {what}: use lower-case letters, digits, `_` and `-` (at most 64 characters)"
    )]
    BadSlug { what: &'static str, value: String },
}

fn id_chars_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The kinds of Stripe object the connector names, with their ID prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StripeIdKind {
    Event,
    Customer,
    Product,
    Price,
    Invoice,
    Charge,
    PaymentIntent,
    BalanceTransaction,
    Refund,
    CheckoutSession,
    Dispute,
    CreditNote,
    Payout,
}

impl StripeIdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            StripeIdKind::Event => "evt_",
            StripeIdKind::Customer => "cus_",
            StripeIdKind::Product => "prod_",
            StripeIdKind::Price => "price_",
            StripeIdKind::Invoice => "in_",
            StripeIdKind::Charge => "ch_",
            StripeIdKind::PaymentIntent => "pi_",
            StripeIdKind::BalanceTransaction => "txn_",
            StripeIdKind::Refund => "re_",
            StripeIdKind::CheckoutSession => "cs_",
            StripeIdKind::Dispute => "dp_",
            StripeIdKind::CreditNote => "cn_",
            StripeIdKind::Payout => "po_",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StripeIdKind::Event => "event",
            StripeIdKind::Customer => "customer",
            StripeIdKind::Product => "product",
            StripeIdKind::Price => "price",
            StripeIdKind::Invoice => "invoice",
            StripeIdKind::Charge => "charge",
            StripeIdKind::PaymentIntent => "payment intent",
            StripeIdKind::BalanceTransaction => "balance transaction",
            StripeIdKind::Refund => "refund",
            StripeIdKind::CheckoutSession => "checkout session",
            StripeIdKind::Dispute => "dispute",
            StripeIdKind::CreditNote => "credit note",
            StripeIdKind::Payout => "payout",
        }
    }

    /// The kind of object an ID names, from its prefix.
    pub fn of(id: &str) -> Option<StripeIdKind> {
        use StripeIdKind::*;
        [
            Event,
            Customer,
            Product,
            Price,
            Invoice,
            Charge,
            PaymentIntent,
            BalanceTransaction,
            Refund,
            CheckoutSession,
        ]
        .into_iter()
        .find(|k| id.starts_with(k.prefix()))
    }
}

/// A Stripe object ID whose prefix matches its kind (`evt_…`, `in_…`, `ch_…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StripeId(String);

impl StripeId {
    pub fn parse(kind: StripeIdKind, value: &str) -> Result<Self, IdError> {
        if !value.starts_with(kind.prefix()) || value.len() == kind.prefix().len() {
            return Err(IdError::WrongPrefix {
                value: value.to_string(),
                kind: kind.name(),
                prefix: kind.prefix(),
            });
        }
        if !id_chars_ok(value, 255) {
            return Err(IdError::BadCharacters(value.to_string(), 255));
        }
        Ok(StripeId(value.to_string()))
    }

    /// Any Stripe ID of a known kind.
    pub fn parse_any(value: &str) -> Result<Self, IdError> {
        match StripeIdKind::of(value) {
            Some(kind) => StripeId::parse(kind, value),
            None => Err(IdError::WrongPrefix {
                value: value.to_string(),
                kind: "object",
                prefix: "evt_/cus_/prod_/in_/ch_/pi_/…",
            }),
        }
    }

    pub fn kind(&self) -> Option<StripeIdKind> {
        StripeIdKind::of(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StripeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StripeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StripeId::parse_any(&s).map_err(serde::de::Error::custom)
    }
}

/// A NetSuite external ID: letters, digits, `_` and `-` only (a `|` or `:` breaks `eid:` URLs).
/// The connector's own are `stripe_<stripe id>` and `stripe_pay_<charge id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ExternalId(String);

impl ExternalId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(value: &str) -> Result<Self, IdError> {
        if id_chars_ok(value, Self::MAX_LEN) {
            Ok(ExternalId(value.to_string()))
        } else {
            Err(IdError::BadCharacters(value.to_string(), Self::MAX_LEN))
        }
    }

    /// `stripe_<id>`: the external ID of the NetSuite record made from a Stripe object.
    pub fn for_stripe(id: &StripeId) -> Self {
        ExternalId(format!("stripe_{}", id.as_str()))
    }

    /// `stripe_pay_<charge id>`: the customer payment made from a Stripe charge.
    pub fn for_stripe_payment(charge: &StripeId) -> Self {
        ExternalId(format!("stripe_pay_{}", charge.as_str()))
    }

    /// `stripe_refund_<refund id>`: the customer refund paying a Stripe refund's cash out.
    pub fn for_stripe_refund(refund: &StripeId) -> Self {
        ExternalId(format!("stripe_refund_{}", refund.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExternalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ExternalId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A NetSuite internal ID (digits; NetSuite sends them as strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NetSuiteInternalId(String);

impl NetSuiteInternalId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        // Negative IDs exist for some system records (e.g. `-7`).
        let digits = value.strip_prefix('-').unwrap_or(value);
        if !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(NetSuiteInternalId(value.to_string()))
        } else {
            Err(IdError::BadCharacters(value.to_string(), 20))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NetSuiteInternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NetSuiteInternalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NetSuiteInternalId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Idempotency key for a NetSuite write, derived from the Stripe event ID and the operation so a
/// retried job sends the same key (`<evt id>:<operation>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn derive(event: &StripeId, operation: &str) -> Self {
        IdempotencyKey(format!("{}:{}", event.as_str(), operation))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_ids_check_their_prefix() {
        assert!(StripeId::parse(StripeIdKind::Event, "evt_123").is_ok());
        let err = StripeId::parse(StripeIdKind::Event, "ch_123").unwrap_err();
        assert!(err.to_string().contains("evt_"));
        assert!(StripeId::parse(StripeIdKind::Event, "evt_").is_err());
        assert!(StripeId::parse(StripeIdKind::Event, "evt_1|2").is_err());
        assert_eq!(
            StripeId::parse_any("in_1").unwrap().kind(),
            Some(StripeIdKind::Invoice)
        );
    }

    #[test]
    fn external_ids_for_stripe_objects() {
        let inv = StripeId::parse_any("in_1Abc").unwrap();
        assert_eq!(ExternalId::for_stripe(&inv).as_str(), "stripe_in_1Abc");
        let ch = StripeId::parse_any("ch_9").unwrap();
        assert_eq!(
            ExternalId::for_stripe_payment(&ch).as_str(),
            "stripe_pay_ch_9"
        );
        assert!(ExternalId::parse("a:b").is_err());
        assert!(ExternalId::parse("").is_err());
    }

    #[test]
    fn internal_ids_are_digits() {
        assert!(NetSuiteInternalId::parse("647").is_ok());
        assert!(NetSuiteInternalId::parse("-7").is_ok());
        assert!(NetSuiteInternalId::parse("abc").is_err());
    }
}
