//! Money as Stripe holds it (integer minor units) and as NetSuite takes it (exact decimals).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Currency;

/// An amount in integer minor units of its currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot combine {0} and {1}: different currencies")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflow")]
    Overflow,
    #[error("{amount} has more decimal places than {currency} allows ({exponent})")]
    TooPrecise {
        amount: Decimal,
        currency: Currency,
        exponent: u32,
    },
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The exact decimal amount, with exactly the currency's number of decimal places
    /// (1234 USD → 12.34; 500 JPY → 500; 1230 KWD → 1.230).
    pub fn to_decimal(&self) -> Decimal {
        Decimal::new(self.minor, self.currency.exponent())
    }

    /// The inverse of [`Money::to_decimal`]; refuses amounts that do not fit the currency.
    pub fn from_decimal(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let exponent = currency.exponent();
        let scaled = amount
            .checked_mul(Decimal::from(10_i64.pow(exponent)))
            .ok_or(MoneyError::Overflow)?;
        if scaled.fract() != Decimal::ZERO {
            return Err(MoneyError::TooPrecise {
                amount,
                currency,
                exponent,
            });
        }
        let minor = i64::try_from(scaled.trunc()).map_err(|_| MoneyError::Overflow)?;
        Ok(Money { minor, currency })
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_sub(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    pub fn negate(self) -> Money {
        Money::new(self.minor.saturating_neg(), self.currency)
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl std::fmt::Display for Money {
    /// `12.34 USD`, `500 JPY`, `1.230 KWD`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn decimals_have_the_currency_exponent() {
        assert_eq!(
            Money::new(1234, cur("usd")).to_decimal().to_string(),
            "12.34"
        );
        assert_eq!(Money::new(500, cur("jpy")).to_decimal().to_string(), "500");
        assert_eq!(
            Money::new(1230, cur("kwd")).to_decimal().to_string(),
            "1.230"
        );
        assert_eq!(Money::new(-5, cur("eur")).to_decimal().to_string(), "-0.05");
        assert_eq!(Money::new(1230, cur("kwd")).to_string(), "1.230 KWD");
    }

    #[test]
    fn from_decimal_refuses_extra_precision() {
        let d: Decimal = "1.005".parse().unwrap();
        assert!(matches!(
            Money::from_decimal(d, cur("usd")),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert_eq!(Money::from_decimal(d, cur("kwd")).unwrap().minor(), 1005);
        let jpy: Decimal = "12.5".parse().unwrap();
        assert!(Money::from_decimal(jpy, cur("jpy")).is_err());
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies() {
        let a = Money::new(1, cur("usd"));
        let b = Money::new(1, cur("eur"));
        assert!(matches!(
            a.checked_add(b),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(a.checked_sub(a).unwrap().minor(), 0);
    }

    proptest! {
        #[test]
        fn decimal_round_trip_is_exact(minor in -1_000_000_000_000i64..1_000_000_000_000i64,
                                       code in prop::sample::select(vec!["usd", "jpy", "kwd", "eur", "bhd", "krw", "isk"])) {
            let c = cur(code);
            let m = Money::new(minor, c);
            let d = m.to_decimal();
            prop_assert_eq!(d.scale(), c.exponent());
            prop_assert_eq!(Money::from_decimal(d, c).unwrap(), m);
            // The decimal string parses back to the same value: what NetSuite receives is exact.
            let reparsed: Decimal = d.to_string().parse().unwrap();
            prop_assert_eq!(Money::from_decimal(reparsed, c).unwrap(), m);
        }

        #[test]
        fn sums_of_decimals_equal_decimal_of_sums(parts in prop::collection::vec(-10_000_000i64..10_000_000, 0..20)) {
            let c = cur("kwd");
            let total: i64 = parts.iter().sum();
            let dec_total: Decimal = parts.iter().map(|p| Money::new(*p, c).to_decimal()).sum();
            prop_assert_eq!(Money::from_decimal(dec_total, c).unwrap().minor(), total);
        }
    }
}
