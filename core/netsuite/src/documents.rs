//! The NetSuite records the connector writes, as typed documents rendered to REST JSON.
//!
//! Pure code: the posting pipeline builds these from Stripe facts, and this module alone knows
//! NetSuite's field names and shapes (`{"id": …}` references, `{"items": [{"id": …}]}`
//! multiselects, `{"item": {"items": [...]}}` sublists, `YYYY-MM-DD` dates, amounts as exact JSON
//! numbers).
//!
//! Multiselects: an item's `subsidiary` is one (an item can be shared by several subsidiaries),
//! and is sent in the form NetSuite documents ("Format of Multiselects" in the REST web services
//! guide): `{"subsidiary": {"items": [{"id": "1"}]}}`. Whether NetSuite also takes the
//! single-select form there is unconfirmed, so the client never relies on it. A customer's
//! `subsidiary` is its primary subsidiary, a single select: `{"id": "1"}`.

use mlc_core::{ExternalId, NetSuiteInternalId};
use rust_decimal::Decimal;
use serde_json::Value;

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

/// A JSON tree whose numbers are exact decimals. `serde_json::Value` would hold amounts as
/// `f64`; this renders `12.30` as the JSON number `12.30`, digit for digit.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Str(String),
    Num(Decimal),
    Bool(bool),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    /// A value given by the caller (custom field values).
    Value(Value),
}

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        match self {
            Json::Str(v) => s.serialize_str(v),
            Json::Num(d) => serde_json::value::RawValue::from_string(d.to_string())
                .map_err(S::Error::custom)?
                .serialize(s),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Json::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Json::Value(v) => v.serialize(s),
        }
    }
}

impl Json {
    /// The request body text.
    pub fn to_body(&self) -> String {
        // Serialising this tree cannot fail: keys are strings and decimals print as numbers.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// As a `serde_json::Value` (amounts become binary floats: for display and tests only).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.to_body()).unwrap_or(Value::Null)
    }
}

/// Builds a JSON object field by field.
#[derive(Default)]
struct Obj(Vec<(String, Json)>);

impl Obj {
    fn put(&mut self, k: &str, v: Json) {
        self.0.push((k.to_string(), v));
    }
    fn str(&mut self, k: &str, v: &str) {
        self.put(k, Json::Str(v.to_string()));
    }
    fn num(&mut self, k: &str, v: Decimal) {
        self.put(k, Json::Num(v));
    }
    fn reference(&mut self, k: &str, id: &NetSuiteInternalId) {
        self.put(k, reference(id));
    }
    fn opt_reference(&mut self, k: &str, id: &Option<NetSuiteInternalId>) {
        if let Some(id) = id {
            self.reference(k, id);
        }
    }
    fn custom(&mut self, fields: &CustomFields) {
        for (k, v) in fields {
            self.put(k, Json::Value(v.clone()));
        }
    }
    /// A multiselect field: `{"items": [{"id": …}, …]}`; nothing when empty (not "clear it").
    fn multiselect(&mut self, k: &str, ids: &[NetSuiteInternalId]) {
        if !ids.is_empty() {
            self.put(k, multiselect(ids));
        }
    }
    fn sublist(&mut self, k: &str, items: Vec<Json>) {
        self.put(k, Json::Obj(vec![("items".to_string(), Json::Arr(items))]));
    }
    fn done(self) -> Json {
        Json::Obj(self.0)
    }
}

fn reference(id: &NetSuiteInternalId) -> Json {
    Json::Obj(vec![("id".to_string(), Json::Str(id.as_str().to_string()))])
}

/// NetSuite's multiselect value: `{"items": [{"id": "1"}, {"id": "2"}]}`.
pub fn multiselect(ids: &[NetSuiteInternalId]) -> Json {
    Json::Obj(vec![(
        "items".to_string(),
        Json::Arr(ids.iter().map(reference).collect()),
    )])
}

/// Custom body/entity fields (`custbody_…`, `custentity_…`) and their values.
pub type CustomFields = Vec<(String, Value)>;

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

/// A customer invoice. A credit memo has the same fields (`creditMemo` takes this body too):
/// it is an invoice's mirror.
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

    pub fn to_json(&self) -> Json {
        let mut m = Obj::default();
        m.str("externalId", self.external_id.as_str());
        m.reference("entity", &self.customer);
        m.opt_reference("subsidiary", &self.subsidiary);
        m.opt_reference("currency", &self.currency);
        m.str("tranDate", self.tran_date.as_str());
        m.str("memo", &self.memo);
        if let Some(n) = &self.other_ref_num {
            m.str("otherRefNum", n);
        }
        m.custom(&self.custom_fields);
        let items = self
            .lines
            .iter()
            .map(|l| {
                let mut line = Obj::default();
                line.reference("item", &l.item);
                line.num("quantity", l.quantity);
                line.num("rate", l.rate);
                line.num("amount", l.amount);
                if let Some(d) = &l.description {
                    line.str("description", d);
                }
                if let Some((start, end)) = &l.period {
                    line.str("revRecStartDate", start.as_str());
                    line.str("revRecEndDate", end.as_str());
                }
                line.done()
            })
            .collect();
        m.sublist("item", items);
        m.done()
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

/// One line of an `apply` sublist: `amount` of document `doc`.
fn apply_line(doc: &NetSuiteInternalId, amount: Decimal) -> Json {
    let mut apply = Obj::default();
    apply.reference("doc", doc);
    apply.put("apply", Json::Bool(true));
    apply.num("amount", amount);
    apply.done()
}

/// What a customer payment and a customer refund both hold: money between a customer and an
/// account, applied to one document.
struct CashMovement<'a> {
    external_id: &'a ExternalId,
    customer: &'a NetSuiteInternalId,
    subsidiary: &'a Option<NetSuiteInternalId>,
    currency: &'a Option<NetSuiteInternalId>,
    account: &'a Option<NetSuiteInternalId>,
    tran_date: &'a TranDate,
    memo: &'a str,
    custom_fields: &'a CustomFields,
    apply_to: &'a NetSuiteInternalId,
    amount: Decimal,
}

impl CashMovement<'_> {
    /// The body; `amount_field` names the header's amount (`payment`), if the record has one.
    fn to_json(&self, amount_field: Option<&str>) -> Json {
        let mut m = Obj::default();
        m.str("externalId", self.external_id.as_str());
        m.reference("customer", self.customer);
        m.opt_reference("subsidiary", self.subsidiary);
        m.opt_reference("currency", self.currency);
        m.opt_reference("account", self.account);
        m.str("tranDate", self.tran_date.as_str());
        m.str("memo", self.memo);
        if let Some(field) = amount_field {
            m.num(field, self.amount);
        }
        m.custom(self.custom_fields);
        m.sublist("apply", vec![apply_line(self.apply_to, self.amount)]);
        m.done()
    }
}

impl CustomerPaymentDoc {
    pub fn to_json(&self) -> Json {
        CashMovement {
            external_id: &self.external_id,
            customer: &self.customer,
            subsidiary: &self.subsidiary,
            currency: &self.currency,
            account: &self.account,
            tran_date: &self.tran_date,
            memo: &self.memo,
            custom_fields: &self.custom_fields,
            apply_to: &self.apply_to,
            amount: self.payment,
        }
        .to_json(Some("payment"))
    }
}

/// A credit memo (an invoice's fields), applied to an open invoice when `apply_to` says so: the
/// memo then closes that much of the invoice rather than standing as the customer's credit.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditMemoDoc {
    pub memo: InvoiceDoc,
    /// The invoice and the amount applied to it.
    pub apply_to: Option<(NetSuiteInternalId, Decimal)>,
}

impl CreditMemoDoc {
    pub fn to_json(&self) -> Json {
        let mut json = self.memo.to_json();
        if let (Json::Obj(fields), Some((invoice, amount))) = (&mut json, &self.apply_to) {
            fields.push((
                "apply".to_string(),
                Json::Obj(vec![(
                    "items".to_string(),
                    Json::Arr(vec![apply_line(invoice, *amount)]),
                )]),
            ));
        }
        json
    }
}

/// A customer refund: cash paid back from an account, applied to the credit memo it pays out,
/// so the customer's balance returns to zero.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRefundDoc {
    pub external_id: ExternalId,
    pub customer: NetSuiteInternalId,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    /// The bank or clearing account the money leaves.
    pub account: Option<NetSuiteInternalId>,
    pub tran_date: TranDate,
    pub memo: String,
    pub amount: Decimal,
    pub apply_to: NetSuiteInternalId,
    pub custom_fields: CustomFields,
}

impl CustomerRefundDoc {
    pub fn to_json(&self) -> Json {
        CashMovement {
            external_id: &self.external_id,
            customer: &self.customer,
            subsidiary: &self.subsidiary,
            currency: &self.currency,
            account: &self.account,
            tran_date: &self.tran_date,
            memo: &self.memo,
            custom_fields: &self.custom_fields,
            apply_to: &self.apply_to,
            amount: self.amount,
        }
        .to_json(None)
    }
}

/// One line of a deposit's `other` sublist: money into (positive) or out of (negative) the
/// deposit, against an account.
#[derive(Debug, Clone, PartialEq)]
pub struct DepositOtherLine {
    pub account: NetSuiteInternalId,
    pub amount: Decimal,
    pub memo: String,
}

/// A bank deposit: the customer payments a Stripe payout carried (`payment` sublist, each at its
/// own amount) and everything else it netted (`other`), into one bank account, so one bank line
/// matches one record.
#[derive(Debug, Clone, PartialEq)]
pub struct DepositDoc {
    pub external_id: ExternalId,
    pub subsidiary: Option<NetSuiteInternalId>,
    pub currency: Option<NetSuiteInternalId>,
    /// The bank account the money lands in.
    pub account: NetSuiteInternalId,
    pub tran_date: TranDate,
    pub memo: String,
    /// Customer payments deposited, with the amount each brings in.
    pub payments: Vec<(NetSuiteInternalId, Decimal)>,
    pub other: Vec<DepositOtherLine>,
    pub custom_fields: CustomFields,
}

impl DepositDoc {
    /// What the deposit adds up to.
    pub fn total(&self) -> Decimal {
        self.payments.iter().map(|(_, a)| *a).sum::<Decimal>()
            + self.other.iter().map(|l| l.amount).sum::<Decimal>()
    }

    pub fn to_json(&self) -> Json {
        let mut m = Obj::default();
        m.str("externalId", self.external_id.as_str());
        m.opt_reference("subsidiary", &self.subsidiary);
        m.opt_reference("currency", &self.currency);
        m.reference("account", &self.account);
        m.str("tranDate", self.tran_date.as_str());
        m.str("memo", &self.memo);
        m.custom(&self.custom_fields);
        let payments = self
            .payments
            .iter()
            .map(|(id, _)| {
                let mut line = Obj::default();
                line.str("id", id.as_str());
                line.put("deposit", Json::Bool(true));
                line.done()
            })
            .collect();
        m.sublist("payment", payments);
        if !self.other.is_empty() {
            let other = self
                .other
                .iter()
                .map(|l| {
                    let mut line = Obj::default();
                    line.reference("account", &l.account);
                    line.num("amount", l.amount);
                    line.str("memo", &l.memo);
                    line.done()
                })
                .collect();
            m.sublist("other", other);
        }
        m.done()
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
        self.lines
            .iter()
            .map(|l| l.debit_minus_credit)
            .sum::<Decimal>()
            == Decimal::ZERO
    }

    pub fn to_json(&self) -> Json {
        let mut m = Obj::default();
        m.str("externalId", self.external_id.as_str());
        m.opt_reference("subsidiary", &self.subsidiary);
        m.opt_reference("currency", &self.currency);
        m.str("tranDate", self.tran_date.as_str());
        m.str("memo", &self.memo);
        m.custom(&self.custom_fields);
        let items = self
            .lines
            .iter()
            .map(|l| {
                let mut line = Obj::default();
                line.reference("account", &l.account);
                if l.debit_minus_credit >= Decimal::ZERO {
                    line.num("debit", l.debit_minus_credit);
                } else {
                    line.num("credit", -l.debit_minus_credit);
                }
                if let Some(memo) = &l.memo {
                    line.str("memo", memo);
                }
                if let Some(e) = &l.entity {
                    line.reference("entity", e);
                }
                line.done()
            })
            .collect();
        m.sublist("line", items);
        m.done()
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
    /// Default billing address, sent as a one-line `addressbook` sublist.
    pub address: Option<AddressDoc>,
}

/// A postal address as NetSuite's `addressbookAddress` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressDoc {
    pub addr1: String,
    pub addr2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub zip: String,
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
}

impl AddressDoc {
    fn to_json(&self) -> Json {
        let mut a = Obj::default();
        a.str("addr1", &self.addr1);
        if let Some(v) = &self.addr2 {
            a.str("addr2", v);
        }
        a.str("city", &self.city);
        if let Some(v) = &self.state {
            a.str("state", v);
        }
        a.str("zip", &self.zip);
        a.str("country", &self.country);
        a.done()
    }
}

/// A sale item (`serviceSaleItem` / `nonInventorySaleItem`) created for a Stripe product.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemDoc {
    pub external_id: ExternalId,
    /// NetSuite's item name (at most 60 characters).
    pub item_id: String,
    pub display_name: String,
    pub description: Option<String>,
    /// The subsidiaries that may sell it (a multiselect; `includeChildren` adds their children).
    pub subsidiaries: Vec<NetSuiteInternalId>,
    pub income_account: Option<NetSuiteInternalId>,
    pub custom_fields: CustomFields,
}

impl ItemDoc {
    pub fn to_json(&self) -> Json {
        let mut m = Obj::default();
        m.str("externalId", self.external_id.as_str());
        m.str("itemId", &self.item_id);
        m.str("displayName", &self.display_name);
        if let Some(d) = &self.description {
            m.str("description", d);
        }
        m.multiselect("subsidiary", &self.subsidiaries);
        m.put("includeChildren", Json::Bool(true));
        m.opt_reference("incomeAccount", &self.income_account);
        m.custom(&self.custom_fields);
        m.done()
    }
}

impl CustomerDoc {
    pub fn to_json(&self) -> Json {
        let mut m = Obj::default();
        m.str("externalId", self.external_id.as_str());
        m.str("companyName", &self.company_name);
        if let Some(e) = &self.email {
            m.str("email", e);
        }
        m.opt_reference("subsidiary", &self.subsidiary);
        m.opt_reference("currency", &self.currency);
        m.custom(&self.custom_fields);
        if let Some(a) = &self.address {
            let line = Json::Obj(vec![
                ("defaultBilling".to_string(), Json::Bool(true)),
                ("addressbookAddress".to_string(), a.to_json()),
            ]);
            m.put(
                "addressbook",
                Json::Obj(vec![("items".to_string(), Json::Arr(vec![line]))]),
            );
        }
        m.done()
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
            custom_fields: vec![("custbody_stripe_id".into(), Value::from("in_1Abc"))],
        };
        let text = doc.to_json().to_body();
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
        let text = je.to_json().to_body();
        assert!(
            text.contains(r#""debit":0.88"#) && text.contains(r#""credit":0.88"#),
            "{text}"
        );
    }

    #[test]
    fn dates_are_checked() {
        assert!(TranDate::parse("2026-11-27").is_ok());
        assert!(TranDate::parse("27/11/2026").is_err());
        assert!(TranDate::parse("2026-1-27").is_err());
    }

    #[test]
    fn customer_address_is_one_default_billing_addressbook_line() {
        let doc = CustomerDoc {
            external_id: ExternalId::parse("stripe_cus_1Abc").unwrap(),
            company_name: "Acme".into(),
            email: None,
            subsidiary: Some(id("1")),
            currency: None,
            custom_fields: vec![],
            address: Some(AddressDoc {
                addr1: "1 Main St".into(),
                addr2: None,
                city: "Springfield".into(),
                state: None,
                zip: "12345".into(),
                country: "US".into(),
            }),
        };
        assert_eq!(
            doc.to_json().to_body(),
            r#"{"externalId":"stripe_cus_1Abc","companyName":"Acme","subsidiary":{"id":"1"},"addressbook":{"items":[{"defaultBilling":true,"addressbookAddress":{"addr1":"1 Main St","city":"Springfield","zip":"12345","country":"US"}}]}}"#
        );
    }

    #[test]
    fn an_item_without_subsidiaries_sends_no_subsidiary() {
        let doc = ItemDoc {
            external_id: ExternalId::parse("stripe_prod_2").unwrap(),
            item_id: "Seat".into(),
            display_name: "Seat".into(),
            description: None,
            subsidiaries: vec![],
            income_account: None,
            custom_fields: vec![],
        };
        assert!(!doc.to_json().to_body().contains("subsidiary"));
        assert_eq!(
            multiselect(&[id("1"), id("3")]).to_body(),
            r#"{"items":[{"id":"1"},{"id":"3"}]}"#
        );
    }

    #[test]
    fn item_json_carries_the_product_id_and_includes_children() {
        let doc = ItemDoc {
            external_id: ExternalId::parse("stripe_prod_1Abc").unwrap(),
            item_id: "Pro plan".into(),
            display_name: "Pro plan".into(),
            description: None,
            subsidiaries: vec![id("1")],
            income_account: Some(id("4")),
            custom_fields: vec![(
                "custitem_stripe_product_id".into(),
                Value::from("prod_1Abc"),
            )],
        };
        assert_eq!(
            doc.to_json().to_body(),
            r#"{"externalId":"stripe_prod_1Abc","itemId":"Pro plan","displayName":"Pro plan","subsidiary":{"items":[{"id":"1"}]},"includeChildren":true,"incomeAccount":{"id":"4"},"custitem_stripe_product_id":"prod_1Abc"}"#
        );
    }
}
