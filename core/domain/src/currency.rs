//! ISO 4217 currencies with the exponent Stripe's API uses for them.

use serde::{Deserialize, Serialize};

/// Currencies whose Stripe amounts are whole units (https://stripe.com/docs/currencies).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Currencies whose Stripe amounts are thousandths; Stripe requires the last digit to be 0.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// Stripe's special cases: zero-decimal in practice, but amounts are still passed with two
/// decimals and must be divisible by 100 (ISK, and HUF/TWD for payouts).
const TWO_DECIMAL_WHOLE_UNITS: &[&str] = &["isk", "huf", "twd"];

/// A currency code: three ASCII letters, held lowercase as Stripe sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("`{0}` is not a currency code: expected three letters such as `usd`")]
    Invalid(String),
}

impl Currency {
    pub const USD: Currency = Currency(*b"usd");
    pub const EUR: Currency = Currency(*b"eur");
    pub const JPY: Currency = Currency(*b"jpy");
    pub const KWD: Currency = Currency(*b"kwd");
    pub const GBP: Currency = Currency(*b"gbp");

    /// Parses `usd`, `USD` or `Usd`.
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        let b = code.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(CurrencyError::Invalid(code.to_string()));
        }
        Ok(Currency([
            b[0].to_ascii_lowercase(),
            b[1].to_ascii_lowercase(),
            b[2].to_ascii_lowercase(),
        ]))
    }

    /// Lowercase, as Stripe writes it.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Uppercase ISO 4217 code, as NetSuite and people write it.
    pub fn iso_code(&self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    /// Number of decimal places in Stripe's integer amounts for this currency.
    pub fn exponent(&self) -> u32 {
        let c = self.as_str();
        if ZERO_DECIMAL.contains(&c) {
            0
        } else if THREE_DECIMAL.contains(&c) {
            3
        } else {
            2
        }
    }

    /// The step every Stripe amount in this currency must be a multiple of (10 for three-decimal
    /// currencies, 100 for ISK-like special cases, else 1).
    pub fn amount_step(&self) -> i64 {
        let c = self.as_str();
        if THREE_DECIMAL.contains(&c) {
            10
        } else if TWO_DECIMAL_WHOLE_UNITS.contains(&c) {
            100
        } else {
            1
        }
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.iso_code())
    }
}

impl std::str::FromStr for Currency {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_follow_stripe() {
        assert_eq!(Currency::parse("USD").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("jpy").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("krw").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("kwd").unwrap().exponent(), 3);
        assert_eq!(Currency::parse("bhd").unwrap().exponent(), 3);
        assert_eq!(Currency::parse("isk").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("isk").unwrap().amount_step(), 100);
        assert_eq!(Currency::parse("tnd").unwrap().amount_step(), 10);
    }

    #[test]
    fn rejects_non_codes() {
        assert!(Currency::parse("us").is_err());
        assert!(Currency::parse("usdd").is_err());
        assert!(Currency::parse("u$d").is_err());
        assert_eq!(Currency::parse("EuR").unwrap().to_string(), "EUR");
    }
}
