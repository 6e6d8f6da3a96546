//! The NetSuite records the connector writes, as typed documents rendered to REST JSON.
//!
//! Pure code: the posting pipeline builds these from Stripe facts, and this module alone knows
//! NetSuite's field names and shapes (`{"id": …}` references, `{"item": {"items": [...]}}`
//! sublists, `YYYY-MM-DD` dates, amounts as exact JSON numbers).

use mlc_core::{ExternalId, NetSuiteInternalId};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// A NetSuite date (`tranDate`), `YYYY-MM-DD`, already in the account's time zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TranDate(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date in the form YYYY-MM-DD")]
pub struct DateError(String);

impl TranDate {
    pub fn parse(s: &str) -> Result<Self, DateError> {
        let b = s.as_bytes();
        let ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if ok {
            Ok(TranDate(s.to_string()))
        } else {
            Err(DateError(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An exact decimal as a JSON number (needs serde_json's `arbitrary_precision`, enabled in the
/// workspace): `12.30` stays `12.30`, never a binary float.
pub fn decimal_number(d: Decimal) -> Value {
    serde_json::from_str::<serde_json::Number>(&d.to_string())
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(d.to_string()))
}

fn reference(id: &NetSuiteInternalId) -> Value {
    json!({"id": id.as_str()})
}

/// Custom body/entity fields (`custbody_…`, `custentity_…`) and their values.
pub type CustomFields = Vec<(String, Value)>;

fn put_custom(map: &mut Map<String, Value>, fields: &CustomFields) {
    for (k, v) in fields {
        map.insert(k.clone(), v.clone());
    }
}

/// One line of a customer invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceLine {
    pub item: NetSuiteInternalId,
    pub quantity: Decimal,
    pub rate: Decimal,
    pub amount: Decimal,
    pub description: Option<String>,
    /// Service period (revenue recognition start/end) where Stripe gives one.
    pub period: Option<(TranDate, TranDate)>,
}

/// A customer invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceDoc {
    pub external_id: ExternalId,
    pub customer: NetSuiteInternalId,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    pub tran_date: TranDate,
    pub memo: String,
    /// The Stripe invoice number, shown as "PO/Check Number" (`otherRefNum`).
    pub other_ref_num: Option<String>,
    pub lines: Vec<InvoiceLine>,
    pub custom_fields: CustomFields,
}

impl InvoiceDoc {
    /// The invoice total NetSuite will compute: the sum of the line amounts.
    pub fn total(&self) -> Decimal {
        self.lines.iter().map(|l| l.amount).sum()
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("externalId".into(), json!(self.external_id.as_str()));
        m.insert("entity".into(), reference(&self.customer));
        if let Some(s) = &self.subsidiary {
            m.insert("subsidiary".into(), reference(s));
        }
        if let Some(c) = &self.currency {
            m.insert("currency".into(), reference(c));
        }
        m.insert("tranDate".into(), json!(self.tran_date.as_str()));
        m.insert("memo".into(), json!(self.memo));
        if let Some(n) = &self.other_ref_num {
            m.insert("otherRefNum".into(), json!(n));
        }
        put_custom(&mut m, &self.custom_fields);
        let items: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                let mut line = Map::new();
                line.insert("item".into(), reference(&l.item));
                line.insert("quantity".into(), decimal_number(l.quantity));
                line.insert("rate".into(), decimal_number(l.rate));
                line.insert("amount".into(), decimal_number(l.amount));
                if let Some(d) = &l.description {
                    line.insert("description".into(), json!(d));
                }
                if let Some((start, end)) = &l.period {
                    line.insert("revRecStartDate".into(), json!(start.as_str()));
                    line.insert("revRecEndDate".into(), json!(end.as_str()));
                }
                Value::Object(line)
            })
            .collect();
        m.insert("item".into(), json!({ "items": items }));
        Value::Object(m)
    }
}

/// A customer payment applied to one invoice, so NetSuite shows the invoice paid.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerPaymentDoc {
    pub external_id: ExternalId,
    pub customer: NetSuiteInternalId,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    /// The bank or clearing account the money lands in ("Deposit To").
    pub account: Option<NetSuiteInternalId>,
    pub tran_date: TranDate,
    pub memo: String,
    pub payment: Decimal,
    pub apply_to: NetSuiteInternalId,
    pub custom_fields: CustomFields,
}

impl CustomerPaymentDoc {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("externalId".into(), json!(self.external_id.as_str()));
        m.insert("customer".into(), reference(&self.customer));
        if let Some(s) = &self.subsidiary {
            m.insert("subsidiary".into(), reference(s));
        }
        if let Some(c) = &self.currency {
            m.insert("currency".into(), reference(c));
        }
        if let Some(a) = &self.account {
            m.insert("account".into(), reference(a));
        }
        m.insert("tranDate".into(), json!(self.tran_date.as_str()));
        m.insert("memo".into(), json!(self.memo));
        m.insert("payment".into(), decimal_number(self.payment));
        put_custom(&mut m, &self.custom_fields);
        m.insert(
            "apply".into(),
            json!({"items": [{
                "doc": reference(&self.apply_to),
                "apply": true,
                "amount": decimal_number(self.payment),
            }]}),
        );
        Value::Object(m)
    }
}

/// One debit or credit line of a journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalLine {
    pub account: NetSuiteInternalId,
    /// Positive: debit; negative: credit.
    pub debit_minus_credit: Decimal,
    pub memo: Option<String>,
    pub entity: Option<NetSuiteInternalId>,
}

/// A journal entry (Stripe fees when revenue is posted gross).
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntryDoc {
    pub external_id: ExternalId,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    pub tran_date: TranDate,
    pub memo: String,
    pub lines: Vec<JournalLine>,
    pub custom_fields: CustomFields,
}

impl JournalEntryDoc {
    /// Debits equal credits: NetSuite refuses an unbalanced entry.
    pub fn is_balanced(&self) -> bool {
        self.lines.iter().map(|l| l.debit_minus_credit).sum::<Decimal>() == Decimal::ZERO
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("externalId".into(), json!(self.external_id.as_str()));
        if let Some(s) = &self.subsidiary {
            m.insert("subsidiary".into(), reference(s));
        }
        if let Some(c) = &self.currency {
            m.insert("currency".into(), reference(c));
        }
        m.insert("tranDate".into(), json!(self.tran_date.as_str()));
        m.insert("memo".into(), json!(self.memo));
        put_custom(&mut m, &self.custom_fields);
        let items: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                let mut line = Map::new();
                line.insert("account".into(), reference(&l.account));
                if l.debit_minus_credit >= Decimal::ZERO {
                    line.insert("debit".into(), decimal_number(l.debit_minus_credit));
                } else {
                    line.insert("credit".into(), decimal_number(-l.debit_minus_credit));
                }
                if let Some(memo) = &l.memo {
                    line.insert("memo".into(), json!(memo));
                }
                if let Some(e) = &l.entity {
                    line.insert("entity".into(), reference(e));
                }
                Value::Object(line)
            })
            .collect();
        m.insert("line".into(), json!({ "items": items }));
        Value::Object(m)
    }
}

/// A customer record created from a Stripe customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerDoc {
    pub external_id: ExternalId,
    pub company_name: String,
    pub email: Option<String>,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    pub custom_fields: CustomFields,
}

impl CustomerDoc {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("externalId".into(), json!(self.external_id.as_str()));
        m.insert("companyName".into(), json!(self.company_name));
        if let Some(e) = &self.email {
            m.insert("email".into(), json!(e));
        }
        if let Some(s) = &self.subsidiary {
            m.insert("subsidiary".into(), reference(s));
        }
        if let Some(c) = &self.currency {
            m.insert("currency".into(), reference(c));
        }
        put_custom(&mut m, &self.custom_fields);
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NetSuiteInternalId {
        NetSuiteInternalId::parse(s).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn invoice_json_has_exact_amounts_and_netsuite_shapes() {
        let doc = InvoiceDoc {
            external_id: ExternalId::parse("stripe_in_1Abc").unwrap(),
            customer: id("107"),
            subsidiary: Some(id("1")),
            currency: Some(id("4")),
            tran_date: TranDate::parse("2026-11-27").unwrap(),
            memo: "Stripe invoice in_1Abc".into(),
            other_ref_num: Some("INV-0042".into()),
            lines: vec![
                InvoiceLine {
                    item: id("55"),
                    quantity: dec("3"),
                    rate: dec("0.1"),
                    amount: dec("0.30"),
                    description: Some("Pro plan".into()),
                    period: Some((
                        TranDate::parse("2026-11-01").unwrap(),
                        TranDate::parse("2026-11-30").unwrap(),
                    )),
                },
                InvoiceLine {
                    item: id("9"),
                    quantity: dec("1"),
                    rate: dec("-1.230"),
                    amount: dec("-1.230"),
                    description: None,
                    period: None,
                },
            ],
            custom_fields: vec![("custbody_stripe_id".into(), json!("in_1Abc"))],
        };
        let text = doc.to_json().to_string();
        assert!(text.contains(r#""amount":0.30"#), "{text}");
        assert!(text.contains(r#""amount":-1.230"#), "{text}");
        assert!(text.contains(r#""entity":{"id":"107"}"#), "{text}");
        assert!(text.contains(r#""custbody_stripe_id":"in_1Abc""#), "{text}");
        assert!(text.contains(r#""revRecStartDate":"2026-11-01""#), "{text}");
        assert_eq!(doc.total(), dec("-0.930"));
    }

    #[test]
    fn journal_entries_balance_and_split_debits_from_credits() {
        let je = JournalEntryDoc {
            external_id: ExternalId::parse("stripe_fee_txn_1").unwrap(),
            subsidiary: None,
            currency: None,
            tran_date: TranDate::parse("2026-01-02").unwrap(),
            memo: "fee".into(),
            lines: vec![
                JournalLine {
                    account: id("58"),
                    debit_minus_credit: dec("0.88"),
                    memo: None,
                    entity: None,
                },
                JournalLine {
                    account: id("4"),
                    debit_minus_credit: dec("-0.88"),
                    memo: None,
                    entity: None,
                },
            ],
            custom_fields: vec![],
        };
        assert!(je.is_balanced());
        let text = je.to_json().to_string();
        assert!(text.contains(r#""debit":0.88"#) && text.contains(r#""credit":0.88"#), "{text}");
    }

    #[test]
    fn dates_are_checked() {
        assert!(TranDate::parse("2026-11-27").is_ok());
        assert!(TranDate::parse("27/11/2026").is_err());
        assert!(TranDate::parse("2026-1-27").is_err());
    }
}
