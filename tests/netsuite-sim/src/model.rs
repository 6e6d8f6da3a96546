//! Record types, their field schemas, and the in-memory record store with its external-ID index.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use axum::http::StatusCode;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::NsError;

/// The record types the simulator serves under `/services/rest/record/v1/{type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordType {
    /// `customer`
    Customer,
    /// `serviceSaleItem`
    ServiceSaleItem,
    /// `nonInventorySaleItem`
    NonInventorySaleItem,
    /// `discountItem`
    DiscountItem,
    /// `invoice`
    Invoice,
    /// `customerPayment`
    CustomerPayment,
    /// `creditMemo`
    CreditMemo,
    /// `customerRefund`
    CustomerRefund,
    /// `journalEntry`
    JournalEntry,
    /// `deposit`: undeposited customer payments, other deposits and cash back, into a bank account
    Deposit,
    /// `subsidiary` (read-only, seeded)
    Subsidiary,
    /// `currency` (read-only, seeded)
    Currency,
    /// `account` (read-only, seeded)
    Account,
}

/// External-ID namespaces: NetSuite keeps one per record group, not per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Group {
    Entity,
    Item,
    Transaction,
    Subsidiary,
    Currency,
    Account,
}

pub(crate) const ITEM_TYPES: &[RecordType] = &[
    RecordType::ServiceSaleItem,
    RecordType::NonInventorySaleItem,
    RecordType::DiscountItem,
];
pub(crate) const TRANSACTION_TYPES: &[RecordType] = &[
    RecordType::Invoice,
    RecordType::CustomerPayment,
    RecordType::CreditMemo,
    RecordType::CustomerRefund,
    RecordType::JournalEntry,
    RecordType::Deposit,
];

impl RecordType {
    /// Every type, in a stable order.
    pub const ALL: [RecordType; 13] = [
        RecordType::Customer,
        RecordType::ServiceSaleItem,
        RecordType::NonInventorySaleItem,
        RecordType::DiscountItem,
        RecordType::Invoice,
        RecordType::CustomerPayment,
        RecordType::CreditMemo,
        RecordType::CustomerRefund,
        RecordType::JournalEntry,
        RecordType::Deposit,
        RecordType::Subsidiary,
        RecordType::Currency,
        RecordType::Account,
    ];

    /// The REST record ID as Oracle's REST API Browser spells it (e.g. `serviceSaleItem`).
    pub fn rest_name(self) -> &'static str {
        match self {
            RecordType::Customer => "customer",
            RecordType::ServiceSaleItem => "serviceSaleItem",
            RecordType::NonInventorySaleItem => "nonInventorySaleItem",
            RecordType::DiscountItem => "discountItem",
            RecordType::Invoice => "invoice",
            RecordType::CustomerPayment => "customerPayment",
            RecordType::CreditMemo => "creditMemo",
            RecordType::CustomerRefund => "customerRefund",
            RecordType::JournalEntry => "journalEntry",
            RecordType::Deposit => "deposit",
            RecordType::Subsidiary => "subsidiary",
            RecordType::Currency => "currency",
            RecordType::Account => "account",
        }
    }

    /// The lowercase form used in URLs and in SuiteQL's `recordtype` column.
    pub fn url_name(self) -> String {
        self.rest_name().to_ascii_lowercase()
    }

    /// Parses a path segment; record type names in REST paths are case-insensitive.
    pub fn from_path(s: &str) -> Option<RecordType> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.rest_name().eq_ignore_ascii_case(s))
    }

    pub(crate) fn group(self) -> Group {
        match self {
            RecordType::Customer => Group::Entity,
            RecordType::ServiceSaleItem
            | RecordType::NonInventorySaleItem
            | RecordType::DiscountItem => Group::Item,
            RecordType::Invoice
            | RecordType::CustomerPayment
            | RecordType::CreditMemo
            | RecordType::CustomerRefund
            | RecordType::JournalEntry
            | RecordType::Deposit => Group::Transaction,
            RecordType::Subsidiary => Group::Subsidiary,
            RecordType::Currency => Group::Currency,
            RecordType::Account => Group::Account,
        }
    }

    /// Seeded setup records cannot be written through REST in the simulator.
    pub fn read_only(self) -> bool {
        matches!(
            self,
            RecordType::Subsidiary | RecordType::Currency | RecordType::Account
        )
    }

    /// SuiteQL `transaction.type` code.
    pub(crate) fn tran_type_code(self) -> &'static str {
        match self {
            RecordType::Invoice => "CustInvc",
            RecordType::CustomerPayment => "CustPymt",
            RecordType::CreditMemo => "CustCred",
            RecordType::CustomerRefund => "CustRfnd",
            RecordType::JournalEntry => "Journal",
            RecordType::Deposit => "Deposit",
            _ => "",
        }
    }

    /// SuiteQL `item.itemtype` code.
    pub(crate) fn item_type_code(self) -> &'static str {
        match self {
            RecordType::ServiceSaleItem => "Service",
            RecordType::NonInventorySaleItem => "NonInvtPart",
            RecordType::DiscountItem => "Discount",
            _ => "",
        }
    }

    fn tran_prefix(self) -> &'static str {
        match self {
            RecordType::Invoice => "INV",
            RecordType::CustomerPayment => "PYMT",
            RecordType::CreditMemo => "CM",
            RecordType::CustomerRefund => "RFND",
            RecordType::JournalEntry => "JE",
            RecordType::Deposit => "DEP",
            _ => "",
        }
    }

    pub(crate) fn schema(self) -> &'static Schema {
        match self {
            RecordType::Customer => &CUSTOMER,
            RecordType::ServiceSaleItem
            | RecordType::NonInventorySaleItem
            | RecordType::DiscountItem => &ITEM,
            RecordType::Invoice => &INVOICE,
            RecordType::CreditMemo => &CREDIT_MEMO,
            RecordType::CustomerPayment => &PAYMENT,
            RecordType::CustomerRefund => &REFUND,
            RecordType::JournalEntry => &JOURNAL,
            RecordType::Deposit => &DEPOSIT,
            RecordType::Subsidiary => &SUBSIDIARY,
            RecordType::Currency => &CURRENCY,
            RecordType::Account => &ACCOUNT,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Str,
    Bool,
    Date,
    Dec,
    Int,
    /// A reference validated against existing records of these types.
    Ref(&'static [RecordType]),
    /// A reference accepted without validation (location, department, class, terms: not simulated).
    Opaque,
    /// A multiselect of references to these types: NetSuite's documented write form is
    /// `{"items": [{"id": …}, …]}` ("Format of Multiselects"); the single-select form `{"id": …}`
    /// is accepted too, as one value, because whether NetSuite refuses it is unconfirmed.
    /// Stored as `{"items": [{"id": "N"}, …]}`.
    Multi(&'static [RecordType]),
    /// A sublist `{"items":[…]}` with its line schema.
    Sub(&'static Schema),
    /// A read-only field NetSuite computes (a deposit's `total`): accepted in a request body and
    /// ignored silently, as NetSuite ignores read-only fields. Never stored.
    ReadOnly,
}

#[derive(Debug)]
pub(crate) struct Schema {
    pub fields: &'static [(&'static str, Kind)],
    /// Prefixes of custom fields allowed here (`custentity_`, `custitem_`, `custbody_`, `custcol_`).
    pub custom: &'static [&'static str],
}

impl Schema {
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
    }
    pub fn is_custom(&self, name: &str) -> bool {
        self.custom
            .iter()
            .any(|p| name.starts_with(p) && name.len() > p.len())
    }
}

const SUBS: &[RecordType] = &[RecordType::Subsidiary];
const CURS: &[RecordType] = &[RecordType::Currency];
const ACCTS: &[RecordType] = &[RecordType::Account];
const CUSTS: &[RecordType] = &[RecordType::Customer];
const INVS: &[RecordType] = &[RecordType::Invoice];
const MEMOS: &[RecordType] = &[RecordType::CreditMemo];
const PAYMENTS: &[RecordType] = &[RecordType::CustomerPayment];

static CUSTOMER: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("entityId", Kind::Str),
        ("companyName", Kind::Str),
        ("isPerson", Kind::Bool),
        ("firstName", Kind::Str),
        ("lastName", Kind::Str),
        ("email", Kind::Str),
        ("phone", Kind::Str),
        ("comments", Kind::Str),
        ("isInactive", Kind::Bool),
        ("subsidiary", Kind::Ref(SUBS)),
        ("currency", Kind::Ref(CURS)),
        ("terms", Kind::Opaque),
    ],
    custom: &["custentity_"],
};

static ITEM: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("itemId", Kind::Str),
        ("displayName", Kind::Str),
        ("description", Kind::Str),
        ("salesDescription", Kind::Str),
        ("isInactive", Kind::Bool),
        // Items can be shared by several subsidiaries: a multiselect (customers' is single).
        ("subsidiary", Kind::Multi(SUBS)),
        ("includeChildren", Kind::Bool),
        ("incomeAccount", Kind::Ref(ACCTS)),
        ("rate", Kind::Dec),
    ],
    custom: &["custitem_"],
};

static INVOICE_LINE: Schema = Schema {
    fields: &[
        ("line", Kind::Int),
        ("item", Kind::Ref(ITEM_TYPES)),
        ("quantity", Kind::Dec),
        ("rate", Kind::Dec),
        ("amount", Kind::Dec),
        ("description", Kind::Str),
    ],
    custom: &["custcol_"],
};

static INVOICE: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("tranId", Kind::Str),
        ("entity", Kind::Ref(CUSTS)),
        ("subsidiary", Kind::Ref(SUBS)),
        ("currency", Kind::Ref(CURS)),
        ("account", Kind::Ref(ACCTS)),
        ("tranDate", Kind::Date),
        ("dueDate", Kind::Date),
        ("memo", Kind::Str),
        ("otherRefNum", Kind::Str),
        ("exchangeRate", Kind::Dec),
        ("terms", Kind::Opaque),
        ("location", Kind::Opaque),
        ("department", Kind::Opaque),
        ("class", Kind::Opaque),
        ("item", Kind::Sub(&INVOICE_LINE)),
    ],
    custom: &["custbody_"],
};

/// A credit memo: an invoice's fields, plus the invoices it is applied to.
static CREDIT_MEMO: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("tranId", Kind::Str),
        ("entity", Kind::Ref(CUSTS)),
        ("subsidiary", Kind::Ref(SUBS)),
        ("currency", Kind::Ref(CURS)),
        ("account", Kind::Ref(ACCTS)),
        ("tranDate", Kind::Date),
        ("memo", Kind::Str),
        ("otherRefNum", Kind::Str),
        ("exchangeRate", Kind::Dec),
        ("location", Kind::Opaque),
        ("department", Kind::Opaque),
        ("class", Kind::Opaque),
        ("item", Kind::Sub(&INVOICE_LINE)),
        ("apply", Kind::Sub(&APPLY_LINE)),
    ],
    custom: &["custbody_"],
};

static REFUND_APPLY_LINE: Schema = Schema {
    fields: &[
        ("line", Kind::Int),
        ("doc", Kind::Ref(MEMOS)),
        ("apply", Kind::Bool),
        ("amount", Kind::Dec),
    ],
    custom: &[],
};

/// A customer refund: cash paid back from an account, applied to the customer's credits.
static REFUND: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("tranId", Kind::Str),
        ("customer", Kind::Ref(CUSTS)),
        ("subsidiary", Kind::Ref(SUBS)),
        ("currency", Kind::Ref(CURS)),
        ("account", Kind::Ref(ACCTS)),
        ("tranDate", Kind::Date),
        ("memo", Kind::Str),
        ("exchangeRate", Kind::Dec),
        ("apply", Kind::Sub(&REFUND_APPLY_LINE)),
    ],
    custom: &["custbody_"],
};

static APPLY_LINE: Schema = Schema {
    fields: &[
        ("line", Kind::Int),
        ("doc", Kind::Ref(INVS)),
        ("apply", Kind::Bool),
        ("amount", Kind::Dec),
    ],
    custom: &[],
};

static PAYMENT: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("tranId", Kind::Str),
        ("customer", Kind::Ref(CUSTS)),
        ("subsidiary", Kind::Ref(SUBS)),
        ("currency", Kind::Ref(CURS)),
        ("account", Kind::Ref(ACCTS)),
        ("payment", Kind::Dec),
        ("tranDate", Kind::Date),
        ("memo", Kind::Str),
        ("exchangeRate", Kind::Dec),
        ("apply", Kind::Sub(&APPLY_LINE)),
    ],
    custom: &["custbody_"],
};

static JOURNAL_LINE: Schema = Schema {
    fields: &[
        ("line", Kind::Int),
        ("account", Kind::Ref(ACCTS)),
        ("debit", Kind::Dec),
        ("credit", Kind::Dec),
        ("memo", Kind::Str),
        ("entity", Kind::Ref(CUSTS)),
    ],
    custom: &["custcol_"],
};

static JOURNAL: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("tranId", Kind::Str),
        ("subsidiary", Kind::Ref(SUBS)),
        ("currency", Kind::Ref(CURS)),
        ("tranDate", Kind::Date),
        ("memo", Kind::Str),
        ("exchangeRate", Kind::Dec),
        ("line", Kind::Sub(&JOURNAL_LINE)),
    ],
    custom: &["custbody_"],
};

/// A line of a deposit's `payment` sublist, keyed by the payment's internal ID: `id` (a plain
/// number, as in Oracle's sample `{"id":379,"deposit":true}`) or a `doc` reference; only lines
/// with `"deposit": true` are deposited. `paymentAmount` is the payment's whole amount.
static DEPOSIT_PAYMENT_LINE: Schema = Schema {
    fields: &[
        ("line", Kind::Int),
        ("id", Kind::Int),
        ("doc", Kind::Ref(PAYMENTS)),
        ("deposit", Kind::Bool),
        ("paymentAmount", Kind::Dec),
        ("memo", Kind::Str),
    ],
    custom: &[],
};

/// A line of a deposit's `other` sublist: a signed amount posted against `account`.
static DEPOSIT_OTHER_LINE: Schema = Schema {
    fields: &[
        ("line", Kind::Int),
        ("account", Kind::Ref(ACCTS)),
        ("amount", Kind::Dec),
        ("memo", Kind::Str),
        ("entity", Kind::Ref(CUSTS)),
        ("paymentMethod", Kind::Opaque),
        ("refNum", Kind::Str),
        ("department", Kind::Opaque),
        ("class", Kind::Opaque),
        ("location", Kind::Opaque),
    ],
    custom: &["custcol_"],
};

/// A line of a deposit's `cashback` sublist: cash taken out of the deposit (a positive amount).
static DEPOSIT_CASHBACK_LINE: Schema = Schema {
    fields: &[
        ("line", Kind::Int),
        ("account", Kind::Ref(ACCTS)),
        ("amount", Kind::Dec),
        ("memo", Kind::Str),
        ("department", Kind::Opaque),
        ("class", Kind::Opaque),
        ("location", Kind::Opaque),
    ],
    custom: &["custcol_"],
};

/// A bank deposit. `total` is read-only: NetSuite ignores it in a request body, so a client
/// must verify the total by reading the record back (`GET …/deposit/{id}`), never by sending it.
static DEPOSIT: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("tranId", Kind::Str),
        ("subsidiary", Kind::Ref(SUBS)),
        ("currency", Kind::Ref(CURS)),
        ("exchangeRate", Kind::Dec),
        ("account", Kind::Ref(ACCTS)),
        ("tranDate", Kind::Date),
        ("memo", Kind::Str),
        ("department", Kind::Opaque),
        ("class", Kind::Opaque),
        ("location", Kind::Opaque),
        ("total", Kind::ReadOnly),
        ("payment", Kind::Sub(&DEPOSIT_PAYMENT_LINE)),
        ("other", Kind::Sub(&DEPOSIT_OTHER_LINE)),
        ("cashback", Kind::Sub(&DEPOSIT_CASHBACK_LINE)),
    ],
    custom: &["custbody_"],
};

static SUBSIDIARY: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("name", Kind::Str),
        ("currency", Kind::Ref(CURS)),
        ("country", Kind::Str),
        ("isInactive", Kind::Bool),
    ],
    custom: &[],
};

static CURRENCY: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("name", Kind::Str),
        ("symbol", Kind::Str),
        ("currencyPrecision", Kind::Int),
        ("exchangeRate", Kind::Dec),
        ("isInactive", Kind::Bool),
    ],
    custom: &[],
};

static ACCOUNT: Schema = Schema {
    fields: &[
        ("externalId", Kind::Str),
        ("acctNumber", Kind::Str),
        ("acctName", Kind::Str),
        ("acctType", Kind::Str),
        ("isInactive", Kind::Bool),
    ],
    custom: &[],
};

/// How unknown body field names are treated (`X-NetSuite-PropertyNameValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameValidation {
    Error,
    Warning,
    Ignore,
}

/// Mandatory-field policy of the simulated account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MandatoryFields {
    /// OneWorld: `subsidiary` is mandatory on customers and transactions (default true).
    pub one_world: bool,
    /// Extra mandatory top-level fields per record type (REST name, case-insensitive),
    /// e.g. `{"invoice": ["department"]}` to mimic the DEPTMANDATORY accounting preference.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Default for MandatoryFields {
    fn default() -> Self {
        Self {
            one_world: true,
            extra: BTreeMap::new(),
        }
    }
}

/// One stored record; `fields` holds normalised REST body fields (references as `{"id":"N"}`,
/// decimals as exact decimal strings, sublists as `{"items":[…]}`).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub id: u64,
    pub rtype: RecordType,
    pub fields: Map<String, Value>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

impl Record {
    pub fn external_id(&self) -> Option<&str> {
        self.fields.get("externalId").and_then(Value::as_str)
    }
    pub fn ref_id(&self, field: &str) -> Option<u64> {
        ref_id(self.fields.get(field)?)
    }
    pub fn str_field(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }
    pub fn dec(&self, field: &str) -> Option<Decimal> {
        self.fields.get(field).and_then(dec_of)
    }
    pub fn lines(&self, sub: &str) -> &[Value] {
        self.fields
            .get(sub)
            .and_then(|s| s.get("items"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

pub(crate) fn ref_id(v: &Value) -> Option<u64> {
    match v.get("id")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

pub(crate) fn dec_of(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str_exact(s).ok(),
        // serde_json prints a parsed number in its shortest exact form, so this recovers the
        // text the client sent for every amount that fits an f64's 15 significant digits.
        Value::Number(n) => Decimal::from_str_exact(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .ok(),
        _ => None,
    }
}

/// The in-memory account: records and the external-ID index.
#[derive(Debug, Default)]
pub(crate) struct Db {
    pub records: BTreeMap<RecordType, BTreeMap<u64, Record>>,
    next_id: BTreeMap<Group, u64>,
    eids: HashMap<(Group, String), (RecordType, u64)>,
    tran_seq: BTreeMap<RecordType, u64>,
    /// When set, only these custom field script IDs exist in the account.
    pub custom_fields: Option<HashSet<String>>,
    pub mandatory: MandatoryFields,
}

/// What a write does with the existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    Create,
    /// PATCH; `replace` names sublists to replace instead of merging.
    Patch,
    /// PUT eid: upsert on an existing record: the body replaces the record.
    Replace,
}

impl Db {
    pub fn get(&self, t: RecordType, id: u64) -> Option<&Record> {
        self.records.get(&t)?.get(&id)
    }

    pub fn count(&self, t: RecordType) -> usize {
        self.records.get(&t).map_or(0, BTreeMap::len)
    }

    pub fn iter(&self, t: RecordType) -> impl Iterator<Item = &Record> {
        self.records.get(&t).into_iter().flat_map(|m| m.values())
    }

    /// Finds the record of any of `types` with this internal ID.
    pub fn find_any(&self, types: &[RecordType], id: u64) -> Option<&Record> {
        types.iter().find_map(|t| self.get(*t, id))
    }

    pub fn find_eid(&self, t: RecordType, eid: &str) -> Option<u64> {
        match self.eids.get(&(t.group(), eid.to_lowercase())) {
            Some((rt, id)) if *rt == t => Some(*id),
            _ => None,
        }
    }

    /// Resolves a URL key: an internal ID or `eid:<externalId>`.
    pub fn resolve(&self, t: RecordType, key: &str) -> Option<u64> {
        if let Some(eid) = key.strip_prefix("eid:") {
            self.find_eid(t, eid)
        } else {
            let id: u64 = key.parse().ok()?;
            self.get(t, id).map(|r| r.id)
        }
    }

    fn alloc_id(&mut self, g: Group) -> u64 {
        let n = self.next_id.entry(g).or_insert(match g {
            Group::Entity => 100,
            Group::Item => 200,
            Group::Transaction => 1000,
            _ => 1,
        });
        let id = *n;
        *n += 1;
        id
    }

    /// Sets the last-modified time of these records.
    pub fn touch(&mut self, t: RecordType, ids: &[u64], now: i64) {
        if let Some(m) = self.records.get_mut(&t) {
            for id in ids {
                if let Some(r) = m.get_mut(id) {
                    r.modified_ms = now;
                }
            }
        }
    }

    pub fn delete(&mut self, t: RecordType, id: u64) -> Option<Record> {
        let rec = self.records.get_mut(&t)?.remove(&id)?;
        if let Some(e) = rec.external_id() {
            self.eids.remove(&(t.group(), e.to_lowercase()));
        }
        Some(rec)
    }

    /// Inserts a seeded setup record (subsidiary, currency, account) with a fixed ID.
    pub fn insert_setup(&mut self, t: RecordType, id: u64, fields: Map<String, Value>, now: i64) {
        let g = t.group();
        let next = self.next_id.entry(g).or_insert(1);
        if *next <= id {
            *next = id + 1;
        }
        if let Some(e) = fields.get("externalId").and_then(Value::as_str) {
            self.eids.insert((g, e.to_lowercase()), (t, id));
        }
        self.records.entry(t).or_default().insert(
            id,
            Record {
                id,
                rtype: t,
                fields,
                created_ms: now,
                modified_ms: now,
            },
        );
    }

    /// Validates and applies a write. `existing` is the internal ID for PATCH/replace.
    /// Returns the internal ID of the record written.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per HTTP verb; a parameter struct would only rename them"
    )]
    pub fn write(
        &mut self,
        t: RecordType,
        existing: Option<u64>,
        body: &Map<String, Value>,
        mode: WriteMode,
        replace: &[String],
        names: NameValidation,
        warnings: &mut Vec<String>,
        now: i64,
    ) -> Result<u64, NsError> {
        let schema = t.schema();
        let incoming = self.normalize(schema, body, "", names, warnings)?;
        let old = existing.and_then(|id| self.get(t, id)).cloned();
        let mut fields = match (&old, mode) {
            (Some(o), WriteMode::Patch) => o.fields.clone(),
            _ => Map::new(),
        };
        for (k, v) in incoming {
            if v.is_null() {
                fields.remove(&k);
                continue;
            }
            let is_sub = matches!(schema.kind(&k), Some(Kind::Sub(_)));
            if is_sub && mode == WriteMode::Patch && !replace.iter().any(|r| r == &k) {
                merge_sublist(&mut fields, &k, v)?;
            } else {
                fields.insert(k, v);
            }
        }
        for (k, kind) in schema.fields {
            if matches!(kind, Kind::Sub(_)) {
                number_lines(&mut fields, k);
            }
        }
        // External ID uniqueness across the record group, case-insensitively.
        let new_eid = fields
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(e) = &new_eid {
            if e.is_empty() {
                fields.remove("externalId");
            } else if let Some((_, owner)) = self.eids.get(&(t.group(), e.to_lowercase()))
                && Some(*owner) != existing
            {
                return Err(NsError::user_error("This entity already exists."));
            }
        }
        self.finalize(t, existing, &mut fields, now)?;

        let id = match existing {
            Some(id) => id,
            None => self.alloc_id(t.group()),
        };
        // A replacing upsert keeps the document number NetSuite assigned.
        if let Some(o) = &old
            && !fields.contains_key("tranId")
            && let Some(n) = o.fields.get("tranId")
        {
            fields.insert("tranId".into(), n.clone());
        }
        if t.group() == Group::Transaction && !fields.contains_key("tranId") {
            let seq = self.tran_seq.entry(t).or_insert(1000);
            *seq += 1;
            fields.insert(
                "tranId".into(),
                json!(format!("{}{}", t.tran_prefix(), seq)),
            );
        }
        if let Some(o) = &old
            && let Some(e) = o.external_id()
        {
            self.eids.remove(&(t.group(), e.to_lowercase()));
        }
        if let Some(e) = fields.get("externalId").and_then(Value::as_str) {
            self.eids.insert((t.group(), e.to_lowercase()), (t, id));
        }
        // Applying a payment changes the invoice (amount remaining, status): bump its date.
        if t == RecordType::CustomerPayment {
            let docs: Vec<u64> = fields
                .get("apply")
                .and_then(|s| s.get("items"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.get("doc").and_then(ref_id))
                        .collect()
                })
                .unwrap_or_default();
            for d in docs {
                if let Some(inv) = self
                    .records
                    .get_mut(&RecordType::Invoice)
                    .and_then(|m| m.get_mut(&d))
                {
                    inv.modified_ms = now;
                }
            }
        }
        // Depositing a payment (or taking it out) changes its status: bump its date.
        if t == RecordType::Deposit {
            let ids = |sub: Option<&Value>| -> Vec<u64> {
                sub.and_then(|s| s.get("items"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|l| l.get("id").and_then(Value::as_u64))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let mut touched = ids(fields.get("payment"));
            touched.extend(ids(old.as_ref().and_then(|o| o.fields.get("payment"))));
            self.touch(RecordType::CustomerPayment, &touched, now);
        }
        let created_ms = old.as_ref().map_or(now, |o| o.created_ms);
        self.records.entry(t).or_default().insert(
            id,
            Record {
                id,
                rtype: t,
                fields,
                created_ms,
                modified_ms: now,
            },
        );
        Ok(id)
    }

    fn normalize(
        &self,
        schema: &Schema,
        input: &Map<String, Value>,
        path: &str,
        names: NameValidation,
        warnings: &mut Vec<String>,
    ) -> Result<Map<String, Value>, NsError> {
        let mut out = Map::new();
        for (k, v) in input {
            let p = format!("{path}{k}");
            let kind = match schema.kind(k) {
                Some(kind) => kind,
                None if schema.is_custom(k)
                    && self.custom_fields.as_ref().is_none_or(|s| s.contains(k)) =>
                {
                    out.insert(k.clone(), custom_value(k, v, &p)?);
                    continue;
                }
                None => {
                    match names {
                        NameValidation::Error => {
                            return Err(NsError::new(
                                StatusCode::BAD_REQUEST,
                                "INVALID_CONTENT",
                                format!(
                                    "Error while accessing a resource. Invalid field name: {k}. The field does not exist on this record."
                                ),
                            )
                            .at(p));
                        }
                        NameValidation::Warning => {
                            warnings.push(format!("Unknown field name '{p}' was ignored."))
                        }
                        NameValidation::Ignore => {}
                    }
                    continue;
                }
            };
            if matches!(kind, Kind::ReadOnly) {
                continue;
            }
            if v.is_null() {
                out.insert(k.clone(), Value::Null);
                continue;
            }
            let bad = || NsError::invalid_value(&display(v), k, p.clone());
            let norm = match kind {
                Kind::Str => match v {
                    Value::String(s) => json!(s),
                    Value::Number(n) => json!(n.to_string()),
                    _ => return Err(bad()),
                },
                Kind::Bool => match v {
                    Value::Bool(b) => json!(b),
                    _ => return Err(bad()),
                },
                Kind::Date => match v {
                    Value::String(s) if jiff::civil::Date::from_str(s).is_ok() && s.len() == 10 => {
                        json!(s)
                    }
                    _ => return Err(bad()),
                },
                Kind::Dec => match dec_of(v) {
                    Some(d) => json!(d.normalize().to_string()),
                    None => return Err(bad()),
                },
                Kind::Int => match v {
                    Value::Number(n) if n.as_u64().is_some() => json!(n.as_u64()),
                    Value::String(s) if s.parse::<u64>().is_ok() => json!(s.parse::<u64>().ok()),
                    _ => return Err(bad()),
                },
                Kind::Opaque => match v.get("id") {
                    Some(Value::String(s)) => json!({"id": s}),
                    Some(Value::Number(n)) => json!({"id": n.to_string()}),
                    _ => return Err(bad()),
                },
                Kind::Ref(targets) => self.reference(targets, v, k, &p)?,
                Kind::Multi(targets) => {
                    let values: Vec<&Value> = match v.get("items") {
                        Some(Value::Array(items)) => items.iter().collect(),
                        Some(_) => return Err(bad()),
                        // The single-select form, as one value (see `Kind::Multi`).
                        None if v.get("id").is_some() => vec![v],
                        None => return Err(bad()),
                    };
                    let mut ids = Vec::with_capacity(values.len());
                    for (i, one) in values.into_iter().enumerate() {
                        let r = self.reference(targets, one, k, &format!("{p}.items[{i}]"))?;
                        // A value listed twice is one selection.
                        if !ids.contains(&r) {
                            ids.push(r);
                        }
                    }
                    json!({"items": ids})
                }
                Kind::ReadOnly => continue,
                Kind::Sub(line_schema) => {
                    let items = v.get("items").and_then(Value::as_array).ok_or_else(bad)?;
                    let mut lines = Vec::with_capacity(items.len());
                    for (i, line) in items.iter().enumerate() {
                        let obj = line.as_object().ok_or_else(|| {
                            NsError::invalid_value(&display(line), k, format!("{p}.items[{i}]"))
                        })?;
                        let n = self.normalize(
                            line_schema,
                            obj,
                            &format!("{p}.items[{i}]."),
                            names,
                            warnings,
                        )?;
                        lines.push(Value::Object(n));
                    }
                    json!({"items": lines})
                }
            };
            out.insert(k.clone(), norm);
        }
        Ok(out)
    }

    /// A `{"id": …}` reference to an existing record of one of `targets`, normalised.
    fn reference(
        &self,
        targets: &[RecordType],
        v: &Value,
        k: &str,
        p: &str,
    ) -> Result<Value, NsError> {
        let raw = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(NsError::invalid_value(&display(v), k, p.to_owned())),
        };
        match raw
            .parse::<u64>()
            .ok()
            .and_then(|id| self.find_any(targets, id))
        {
            Some(r) => Ok(json!({"id": r.id.to_string()})),
            None => Err(NsError::invalid_value(&raw, k, p.to_owned())),
        }
    }

    fn precision_of(&self, fields: &Map<String, Value>) -> u32 {
        fields
            .get("currency")
            .and_then(ref_id)
            .and_then(|c| self.get(RecordType::Currency, c))
            .and_then(|c| c.fields.get("currencyPrecision"))
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(2)
    }

    /// Record-type rules: mandatory fields, defaults, derived line amounts, payment application.
    fn finalize(
        &self,
        t: RecordType,
        self_id: Option<u64>,
        f: &mut Map<String, Value>,
        now: i64,
    ) -> Result<(), NsError> {
        let has = |f: &Map<String, Value>, k: &str| f.get(k).is_some_and(|v| !v.is_null());
        let ow = self.mandatory.one_world;
        for (ty, extra) in &self.mandatory.extra {
            if ty.eq_ignore_ascii_case(t.rest_name()) {
                for k in extra {
                    if !has(f, k) {
                        return Err(NsError::missing(k, k.clone()));
                    }
                }
            }
        }
        let today = || {
            jiff::Timestamp::from_millisecond(now)
                .map(|ts| ts.strftime("%Y-%m-%d").to_string())
                .unwrap_or_else(|_| "1970-01-01".into())
        };
        match t {
            RecordType::Customer => {
                if ow && !has(f, "subsidiary") {
                    return Err(NsError::missing("subsidiary", "subsidiary"));
                }
                let person = f.get("isPerson").and_then(Value::as_bool).unwrap_or(false);
                if !person && !has(f, "companyName") {
                    return Err(NsError::missing("companyName", "companyName"));
                }
                if person && !has(f, "lastName") {
                    return Err(NsError::missing("lastName", "lastName"));
                }
                if !has(f, "currency")
                    && let Some(c) = self.subsidiary_currency(f)
                {
                    f.insert("currency".into(), json!({"id": c.to_string()}));
                }
                if !has(f, "entityId") {
                    let name = if person {
                        format!(
                            "{} {}",
                            f.get("firstName").and_then(Value::as_str).unwrap_or(""),
                            f.get("lastName").and_then(Value::as_str).unwrap_or("")
                        )
                        .trim()
                        .to_owned()
                    } else {
                        f.get("companyName")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    f.insert("entityId".into(), json!(name));
                }
            }
            RecordType::ServiceSaleItem
            | RecordType::NonInventorySaleItem
            | RecordType::DiscountItem => {
                if !has(f, "itemId") {
                    return Err(NsError::missing("itemId", "itemId"));
                }
            }
            RecordType::Invoice | RecordType::CreditMemo => {
                let Some(cust) = f.get("entity").and_then(ref_id) else {
                    return Err(NsError::missing("entity", "entity"));
                };
                if ow && !has(f, "subsidiary") {
                    return Err(NsError::missing("subsidiary", "subsidiary"));
                }
                self.default_currency(f, cust);
                if !has(f, "tranDate") {
                    f.insert("tranDate".into(), json!(today()));
                }
                let scale = self.precision_of(f);
                let mut lines = take_lines(f, "item");
                if lines.is_empty() {
                    return Err(NsError::user_error(
                        "You must enter at least one line item for this transaction.",
                    )
                    .at("item"));
                }
                for (i, line) in lines.iter_mut().enumerate() {
                    let Some(l) = line.as_object_mut() else {
                        continue;
                    };
                    if !l.contains_key("item") {
                        return Err(NsError::missing("item", format!("item.items[{i}].item")));
                    }
                    let amount = match l.get("amount").and_then(dec_of) {
                        Some(a) => a,
                        None => {
                            let q = l.get("quantity").and_then(dec_of).unwrap_or(Decimal::ONE);
                            match l.get("rate").and_then(dec_of) {
                                Some(r) => q * r,
                                None => {
                                    return Err(NsError::missing(
                                        "amount",
                                        format!("item.items[{i}].amount"),
                                    ));
                                }
                            }
                        }
                    };
                    let amount = amount
                        .round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
                    l.insert("amount".into(), json!(amount.normalize().to_string()));
                }
                let total: Decimal = lines
                    .iter()
                    .filter_map(|l| l.get("amount").and_then(dec_of))
                    .sum();
                put_lines(f, "item", lines);
                if t == RecordType::CreditMemo {
                    // A credit memo applied to the customer's invoices: never more than an
                    // invoice still owes, nor more than the memo's own total.
                    let currency = f.get("currency").and_then(ref_id);
                    let lines = take_lines(f, "apply");
                    let kept = self.apply_lines(
                        &lines,
                        RecordType::Invoice,
                        cust,
                        currency,
                        total,
                        self_id,
                        "credit memo",
                    )?;
                    put_lines(f, "apply", kept);
                }
            }
            RecordType::CustomerRefund => {
                let Some(cust) = f.get("customer").and_then(ref_id) else {
                    return Err(NsError::missing("customer", "customer"));
                };
                if ow && !has(f, "subsidiary") {
                    return Err(NsError::missing("subsidiary", "subsidiary"));
                }
                if !has(f, "account") {
                    return Err(NsError::missing("account", "account"));
                }
                self.default_currency(f, cust);
                if !has(f, "tranDate") {
                    f.insert("tranDate".into(), json!(today()));
                }
                let currency = f.get("currency").and_then(ref_id);
                let lines = take_lines(f, "apply");
                let kept = self.apply_lines(
                    &lines,
                    RecordType::CreditMemo,
                    cust,
                    currency,
                    Decimal::MAX,
                    self_id,
                    "refund",
                )?;
                if kept.is_empty() {
                    // NetSuite refunds only what the customer has as credit.
                    return Err(NsError::user_error(
                        "You must apply the refund to at least one credit memo or deposit.",
                    )
                    .at("apply"));
                }
                put_lines(f, "apply", kept);
            }
            RecordType::CustomerPayment => {
                let Some(cust) = f.get("customer").and_then(ref_id) else {
                    return Err(NsError::missing("customer", "customer"));
                };
                if ow && !has(f, "subsidiary") {
                    return Err(NsError::missing("subsidiary", "subsidiary"));
                }
                let Some(payment) = f.get("payment").and_then(dec_of) else {
                    return Err(NsError::missing("payment", "payment"));
                };
                if payment <= Decimal::ZERO {
                    return Err(NsError::invalid_value(
                        &payment.to_string(),
                        "payment",
                        "payment",
                    ));
                }
                self.default_currency(f, cust);
                if !has(f, "tranDate") {
                    f.insert("tranDate".into(), json!(today()));
                }
                let currency = f.get("currency").and_then(ref_id);
                // A deposited payment's amount and currency are what the deposit booked.
                if let Some(id) = self_id
                    && let Some(dep) = self.deposit_of(id, None)
                {
                    let booked = dep
                        .lines("payment")
                        .iter()
                        .find(|l| l.get("id").and_then(Value::as_u64) == Some(id))
                        .and_then(|l| l.get("paymentAmount").and_then(dec_of));
                    let was = self
                        .get(RecordType::CustomerPayment, id)
                        .and_then(|p| p.ref_id("currency"));
                    if booked != Some(payment) || currency != was {
                        return Err(NsError::user_error(format!(
                            "This payment has been deposited ({}). Remove it from the deposit before changing its amount or currency.",
                            self.ref_name(dep)
                        )));
                    }
                }
                let lines = take_lines(f, "apply");
                let kept = self.apply_lines(
                    &lines,
                    RecordType::Invoice,
                    cust,
                    currency,
                    payment,
                    self_id,
                    "payment",
                )?;
                put_lines(f, "apply", kept);
            }
            RecordType::JournalEntry => {
                if ow && !has(f, "subsidiary") {
                    return Err(NsError::missing("subsidiary", "subsidiary"));
                }
                if !has(f, "currency")
                    && let Some(c) = self.subsidiary_currency(f)
                {
                    f.insert("currency".into(), json!({"id": c.to_string()}));
                }
                if !has(f, "tranDate") {
                    f.insert("tranDate".into(), json!(today()));
                }
                let lines = take_lines(f, "line");
                if lines.len() < 2 {
                    return Err(NsError::user_error(
                        "You must enter at least two lines for a journal entry.",
                    )
                    .at("line"));
                }
                let (mut dr, mut cr) = (Decimal::ZERO, Decimal::ZERO);
                for (i, line) in lines.iter().enumerate() {
                    let Some(account) = line.get("account").and_then(ref_id) else {
                        return Err(NsError::missing(
                            "account",
                            format!("line.items[{i}].account"),
                        ));
                    };
                    // NetSuite posts A/R by customer: a receivables line must name one.
                    let receivable = self
                        .get(RecordType::Account, account)
                        .and_then(|a| a.str_field("acctType"))
                        .is_some_and(|t| t == "AcctRec");
                    if receivable && line.get("entity").and_then(ref_id).is_none() {
                        return Err(NsError::user_error(
                            "You must enter a customer (Name) on journal lines that post to an Accounts Receivable account.",
                        )
                        .at(format!("line.items[{i}].entity")));
                    }
                    let d = line.get("debit").and_then(dec_of);
                    let c = line.get("credit").and_then(dec_of);
                    match (d, c) {
                        (Some(d), None) => dr += d,
                        (None, Some(c)) => cr += c,
                        _ => {
                            return Err(NsError::user_error(
                                "Each journal line needs either a debit or a credit amount.",
                            )
                            .at(format!("line.items[{i}]")));
                        }
                    }
                }
                if dr != cr {
                    return Err(NsError::user_error("The transaction is not in balance."));
                }
                put_lines(f, "line", lines);
            }
            RecordType::Deposit => {
                if ow && !has(f, "subsidiary") {
                    return Err(NsError::missing("subsidiary", "subsidiary"));
                }
                let Some(account) = f.get("account").and_then(ref_id) else {
                    return Err(NsError::missing("account", "account"));
                };
                // The account select lists bank accounts only.
                if !self.is_bank(account) {
                    return Err(NsError::invalid_value(
                        &account.to_string(),
                        "account",
                        "account",
                    ));
                }
                if !has(f, "currency")
                    && let Some(c) = self.subsidiary_currency(f)
                {
                    f.insert("currency".into(), json!({"id": c.to_string()}));
                }
                if !has(f, "tranDate") {
                    f.insert("tranDate".into(), json!(today()));
                }
                let lines = take_lines(f, "payment");
                let payments = self.deposit_payments(f, account, &lines, self_id)?;
                let scale = self.precision_of(f);
                let mut total: Decimal = payments
                    .iter()
                    .filter_map(|l| l.get("paymentAmount").and_then(dec_of))
                    .sum();
                let others = take_lines(f, "other");
                for (i, line) in others.iter().enumerate() {
                    let path = format!("other.items[{i}]");
                    let Some(account) = line.get("account").and_then(ref_id) else {
                        return Err(NsError::missing("account", format!("{path}.account")));
                    };
                    // NetSuite posts A/R by customer: a receivables line must name one.
                    let receivable = self
                        .get(RecordType::Account, account)
                        .and_then(|a| a.str_field("acctType"))
                        .is_some_and(|t| t == "AcctRec");
                    if receivable && line.get("entity").and_then(ref_id).is_none() {
                        return Err(NsError::user_error(
                            "You must enter a customer (Name) on lines that post to an Accounts Receivable account.",
                        )
                        .at(format!("{path}.entity")));
                    }
                    let amount = line_amount(line, &path, scale)?;
                    total += amount;
                }
                let cashback = take_lines(f, "cashback");
                for (i, line) in cashback.iter().enumerate() {
                    let path = format!("cashback.items[{i}]");
                    if line.get("account").and_then(ref_id).is_none() {
                        return Err(NsError::missing("account", format!("{path}.account")));
                    }
                    let amount = line_amount(line, &path, scale)?;
                    // Cash back is taken out of the deposit: a positive amount.
                    if amount <= Decimal::ZERO {
                        return Err(NsError::invalid_value(
                            &amount.to_string(),
                            "amount",
                            format!("{path}.amount"),
                        ));
                    }
                    total -= amount;
                }
                if payments.is_empty() && others.is_empty() && cashback.is_empty() {
                    return Err(NsError::user_error(
                        "You must enter at least one line item for this transaction.",
                    )
                    .at("payment"));
                }
                // NetSuite: "The total can not be negative" (SOAP's Common Errors With Deposit
                // Records); a deposit of nothing is refused too.
                if total <= Decimal::ZERO {
                    return Err(NsError::user_error(format!(
                        "The total can not be negative. The total of this deposit must be greater than zero (it is {total})."
                    )));
                }
                put_lines(f, "payment", payments);
                put_lines(f, "other", others);
                put_lines(f, "cashback", cashback);
            }
            RecordType::Subsidiary | RecordType::Currency | RecordType::Account => {}
        }
        Ok(())
    }

    fn is_bank(&self, account: u64) -> bool {
        self.get(RecordType::Account, account)
            .and_then(|a| a.str_field("acctType"))
            .is_some_and(|t| t == "Bank")
    }

    /// The deposit holding this customer payment, other than `except`.
    pub fn deposit_of(&self, payment: u64, except: Option<u64>) -> Option<&Record> {
        self.iter(RecordType::Deposit)
            .filter(|d| Some(d.id) != except)
            .find(|d| {
                d.lines("payment")
                    .iter()
                    .any(|l| l.get("id").and_then(Value::as_u64) == Some(payment))
            })
    }

    /// Checks a deposit's `payment` lines. The sublist is keyed by the payment's internal ID
    /// (`id`, or `doc.id`): a later line for the same payment updates the earlier one (so a PATCH
    /// line `{"id": N, "deposit": false}` takes the payment out). Lines without `"deposit": true`
    /// are dropped. Each deposited payment must exist, be in no other deposit, have the deposit's
    /// currency and subsidiary, and have been recorded to an undeposited-funds account (no
    /// account, or a bank account other than the deposit's). Returns the lines kept, each with
    /// `paymentAmount` set to the payment's amount.
    fn deposit_payments(
        &self,
        f: &Map<String, Value>,
        account: u64,
        lines: &[Value],
        self_id: Option<u64>,
    ) -> Result<Vec<Value>, NsError> {
        let currency = f.get("currency").and_then(ref_id);
        let subsidiary = f.get("subsidiary").and_then(ref_id);
        // (request index, payment ID, line)
        let mut merged: Vec<(usize, u64, Map<String, Value>)> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(l) = line.as_object() else { continue };
            let path = format!("payment.items[{i}]");
            let by_id = l.get("id").and_then(Value::as_u64);
            let by_doc = l.get("doc").and_then(ref_id);
            let id = match (by_id, by_doc) {
                (Some(a), Some(b)) if a != b => {
                    return Err(NsError::invalid_value(
                        &b.to_string(),
                        "doc",
                        format!("{path}.doc"),
                    ));
                }
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => return Err(NsError::missing("id", format!("{path}.id"))),
            };
            if self.get(RecordType::CustomerPayment, id).is_none() {
                return Err(
                    invalid_key(id, "there is no customer payment with this internal ID.")
                        .at(format!("{path}.id")),
                );
            }
            let mut nl = l.clone();
            nl.remove("doc");
            nl.insert("id".into(), json!(id));
            match merged.iter_mut().find(|(_, pid, _)| *pid == id) {
                Some((at, _, old)) => {
                    let line_no = old.get("line").cloned();
                    old.extend(nl);
                    if let Some(n) = line_no {
                        old.insert("line".into(), n);
                    }
                    *at = i;
                }
                None => merged.push((i, id, nl)),
            }
        }
        let mut kept = Vec::new();
        for (i, id, mut l) in merged {
            if l.get("deposit").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let path = format!("payment.items[{i}]");
            let Some(p) = self.get(RecordType::CustomerPayment, id) else {
                continue;
            };
            if let Some(other) = self.deposit_of(id, self_id) {
                return Err(invalid_key(
                    id,
                    &format!(
                        "This payment has already been deposited ({}).",
                        self.ref_name(other)
                    ),
                )
                .at(format!("{path}.id")));
            }
            if currency.is_some() && p.ref_id("currency") != currency {
                return Err(invalid_key(
                    id,
                    "the payment is in another currency than the deposit.",
                )
                .at(format!("{path}.id")));
            }
            if subsidiary.is_some() && p.ref_id("subsidiary") != subsidiary {
                return Err(invalid_key(
                    id,
                    "the payment belongs to another subsidiary than the deposit.",
                )
                .at(format!("{path}.id")));
            }
            if let Some(a) = p.ref_id("account")
                && (a == account || !self.is_bank(a))
            {
                return Err(invalid_key(
                    id,
                    "the payment did not post to an undeposited-funds account, so it cannot be deposited.",
                )
                .at(format!("{path}.id")));
            }
            let amount = self.total(p);
            if let Some(given) = l.get("paymentAmount").and_then(dec_of)
                && given != amount
            {
                return Err(NsError::user_error(format!(
                    "A payment is deposited whole: the payment amount is {amount}, not {given}."
                ))
                .at(format!("{path}.paymentAmount")));
            }
            l.insert("deposit".into(), json!(true));
            l.insert(
                "paymentAmount".into(),
                json!(amount.normalize().to_string()),
            );
            kept.push(Value::Object(l));
        }
        Ok(kept)
    }

    fn subsidiary_currency(&self, f: &Map<String, Value>) -> Option<u64> {
        let sub = f.get("subsidiary").and_then(ref_id)?;
        self.get(RecordType::Subsidiary, sub)?.ref_id("currency")
    }

    fn default_currency(&self, f: &mut Map<String, Value>, customer: u64) {
        if f.get("currency").is_some() {
            return;
        }
        let c = self
            .get(RecordType::Customer, customer)
            .and_then(|c| c.ref_id("currency"))
            .or_else(|| self.subsidiary_currency(f));
        if let Some(c) = c {
            f.insert("currency".into(), json!({"id": c.to_string()}));
        }
    }

    /// Sum of line amounts (invoice, credit memo), the payment amount, or total debits (journal).
    pub fn total(&self, r: &Record) -> Decimal {
        match r.rtype {
            RecordType::Invoice | RecordType::CreditMemo => r
                .lines("item")
                .iter()
                .filter_map(|l| l.get("amount").and_then(dec_of))
                .sum(),
            RecordType::CustomerPayment => r.dec("payment").unwrap_or_default(),
            RecordType::CustomerRefund => r
                .lines("apply")
                .iter()
                .filter_map(|l| l.get("amount").and_then(dec_of))
                .sum(),
            RecordType::JournalEntry => r
                .lines("line")
                .iter()
                .filter_map(|l| l.get("debit").and_then(dec_of))
                .sum(),
            RecordType::Deposit => {
                let sum = |sub: &str, k: &str| -> Decimal {
                    r.lines(sub)
                        .iter()
                        .filter_map(|l| l.get(k).and_then(dec_of))
                        .sum()
                };
                sum("payment", "paymentAmount") + sum("other", "amount") - sum("cashback", "amount")
            }
            _ => Decimal::ZERO,
        }
    }

    /// What payments and credit memos have applied to this invoice, optionally ignoring one of
    /// them (being rewritten).
    pub fn applied(&self, invoice: u64, except_payment: Option<u64>) -> Decimal {
        self.applied_by(
            &[RecordType::CustomerPayment, RecordType::CreditMemo],
            invoice,
            except_payment,
        )
    }

    /// What records of `by` apply to `doc` (by their `apply` lines), ignoring `except`.
    fn applied_by(&self, by: &[RecordType], doc: u64, except: Option<u64>) -> Decimal {
        by.iter()
            .flat_map(|t| self.iter(*t))
            .filter(|p| Some(p.id) != except)
            .flat_map(|p| p.lines("apply").iter())
            .filter(|l| l.get("doc").and_then(ref_id) == Some(doc))
            .filter_map(|l| l.get("amount").and_then(dec_of))
            .sum()
    }

    pub fn amount_remaining(&self, inv: &Record, except_payment: Option<u64>) -> Decimal {
        match inv.rtype {
            // A credit memo's credit not yet used: its total, less what it applies to invoices
            // and what was refunded from it.
            RecordType::CreditMemo => {
                let own: Decimal = if Some(inv.id) == except_payment {
                    Decimal::ZERO
                } else {
                    inv.lines("apply")
                        .iter()
                        .filter_map(|l| l.get("amount").and_then(dec_of))
                        .sum()
                };
                self.total(inv)
                    - own
                    - self.applied_by(&[RecordType::CustomerRefund], inv.id, except_payment)
            }
            _ => self.total(inv) - self.applied(inv.id, except_payment),
        }
    }

    /// Checks the `apply` lines of a payment, credit memo or refund against the open documents
    /// of type `doc_type` of the same customer and currency: each at most what the document still
    /// has open, all together at most `limit`. Returns the lines kept (zero amounts dropped).
    #[allow(clippy::too_many_arguments)]
    fn apply_lines(
        &self,
        lines: &[Value],
        doc_type: RecordType,
        customer: u64,
        currency: Option<u64>,
        limit: Decimal,
        self_id: Option<u64>,
        what: &str,
    ) -> Result<Vec<Value>, NsError> {
        let mut left = limit;
        let mut kept = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(l) = line.as_object() else { continue };
            if l.get("apply").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let path = format!("apply.items[{i}]");
            let Some(doc) = l.get("doc").and_then(ref_id) else {
                return Err(NsError::missing("doc", format!("{path}.doc")));
            };
            let Some(target) = self.get(doc_type, doc).filter(|d| {
                d.ref_id("entity") == Some(customer)
                    && (currency.is_none() || d.ref_id("currency") == currency)
            }) else {
                return Err(NsError::invalid_value(
                    &doc.to_string(),
                    "doc",
                    format!("{path}.doc"),
                ));
            };
            let remaining = self.amount_remaining(target, self_id);
            let amount = l
                .get("amount")
                .and_then(dec_of)
                .unwrap_or_else(|| remaining.min(left));
            if amount.is_zero() {
                continue;
            }
            if amount < Decimal::ZERO || amount > remaining {
                return Err(NsError::user_error(format!(
                    "The amount applied ({amount}) exceeds the amount remaining ({remaining}) on {}.",
                    self.ref_name(target)
                ))
                .at(format!("{path}.amount")));
            }
            if amount > left {
                return Err(NsError::user_error(format!(
                    "The total amount applied exceeds the {what} amount."
                ))
                .at(format!("{path}.amount")));
            }
            left -= amount;
            let mut nl = l.clone();
            nl.insert("apply".into(), json!(true));
            nl.insert("amount".into(), json!(amount.normalize().to_string()));
            kept.push(Value::Object(nl));
        }
        Ok(kept)
    }

    /// (REST status name, SuiteQL status code).
    pub fn status(&self, r: &Record) -> Option<(&'static str, &'static str)> {
        match r.rtype {
            RecordType::Invoice => Some(if self.amount_remaining(r, None) <= Decimal::ZERO {
                ("Paid In Full", "B")
            } else {
                ("Open", "A")
            }),
            RecordType::CreditMemo => Some(if self.amount_remaining(r, None) <= Decimal::ZERO {
                ("Fully Applied", "B")
            } else {
                ("Open", "A")
            }),
            RecordType::CustomerRefund => Some(("Not Deposited", "B")),
            // CustPymt:B Not Deposited, CustPymt:C Deposited.
            RecordType::CustomerPayment => Some(if self.deposit_of(r.id, None).is_some() {
                ("Deposited", "C")
            } else {
                ("Not Deposited", "B")
            }),
            RecordType::JournalEntry => Some(("Approved for Posting", "B")),
            _ => None,
        }
    }

    /// The `refName` NetSuite shows for a reference to this record.
    pub fn ref_name(&self, r: &Record) -> String {
        let s = |k: &str| r.str_field(k).unwrap_or("").to_owned();
        match r.rtype {
            RecordType::Customer => s("entityId"),
            RecordType::ServiceSaleItem
            | RecordType::NonInventorySaleItem
            | RecordType::DiscountItem => s("itemId"),
            RecordType::Invoice => format!("Invoice #{}", s("tranId")),
            RecordType::CustomerPayment => format!("Payment #{}", s("tranId")),
            RecordType::CreditMemo => format!("Credit Memo #{}", s("tranId")),
            RecordType::CustomerRefund => format!("Customer Refund #{}", s("tranId")),
            RecordType::JournalEntry => format!("Journal #{}", s("tranId")),
            RecordType::Deposit => format!("Deposit #{}", s("tranId")),
            RecordType::Subsidiary | RecordType::Currency => s("name"),
            RecordType::Account => format!("{} {}", s("acctNumber"), s("acctName"))
                .trim()
                .to_owned(),
        }
    }
}

/// NetSuite's refusal of a keyed sublist line whose key is not among the lines it offers (for a
/// deposit: the undeposited payments of its currency and subsidiary), with the reason.
fn invalid_key(id: u64, why: &str) -> NsError {
    NsError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_CONTENT",
        format!("Error while accessing a resource. Invalid id reference key {id}: {why}"),
    )
}

/// A deposit line's `amount`: required, with no more decimals than the currency has.
fn line_amount(line: &Value, path: &str, scale: u32) -> Result<Decimal, NsError> {
    let Some(amount) = line.get("amount").and_then(dec_of) else {
        return Err(NsError::missing("amount", format!("{path}.amount")));
    };
    if amount.normalize().scale() > scale {
        return Err(NsError::invalid_value(
            &amount.to_string(),
            "amount",
            format!("{path}.amount"),
        ));
    }
    Ok(amount)
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("id").map(display).unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

fn custom_value(k: &str, v: &Value, p: &str) -> Result<Value, NsError> {
    match v {
        Value::Null | Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        Value::Object(o) if o.contains_key("id") => Ok(json!({"id": display(v)})),
        // A custom multiselect: NetSuite's multiselect form, each value a `{"id": …}`.
        Value::Object(o) if o.len() == 1 => match o.get("items") {
            Some(Value::Array(items)) if items.iter().all(|i| i.get("id").is_some()) => {
                let ids: Vec<Value> = items.iter().map(|i| json!({"id": display(i)})).collect();
                Ok(json!({"items": ids}))
            }
            _ => Err(NsError::invalid_value(&display(v), k, p.to_owned())),
        },
        _ => Err(NsError::invalid_value(&display(v), k, p.to_owned())),
    }
}

fn take_lines(f: &mut Map<String, Value>, k: &str) -> Vec<Value> {
    match f.remove(k) {
        Some(Value::Object(mut o)) => match o.remove("items") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn put_lines(f: &mut Map<String, Value>, k: &str, lines: Vec<Value>) {
    f.insert(k.to_owned(), json!({ "items": lines }));
}

/// PATCH semantics: a line with `line` updates that line, a line without is appended.
fn merge_sublist(fields: &mut Map<String, Value>, k: &str, incoming: Value) -> Result<(), NsError> {
    let new_lines = incoming
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut lines = take_lines(fields, k);
    for (i, nl) in new_lines.into_iter().enumerate() {
        match nl.get("line").and_then(Value::as_u64) {
            Some(n) => {
                let Some(target) = lines
                    .iter_mut()
                    .find(|l| l.get("line").and_then(Value::as_u64) == Some(n))
                else {
                    return Err(NsError::invalid_value(
                        &n.to_string(),
                        "line",
                        format!("{k}.items[{i}].line"),
                    ));
                };
                if let (Some(t), Some(src)) = (target.as_object_mut(), nl.as_object()) {
                    for (fk, fv) in src {
                        if fv.is_null() {
                            t.remove(fk);
                        } else {
                            t.insert(fk.clone(), fv.clone());
                        }
                    }
                    // A changed quantity or rate recomputes the amount unless one was sent.
                    if !src.contains_key("amount")
                        && (src.contains_key("quantity") || src.contains_key("rate"))
                    {
                        t.remove("amount");
                    }
                }
            }
            None => lines.push(nl),
        }
    }
    put_lines(fields, k, lines);
    Ok(())
}

fn number_lines(fields: &mut Map<String, Value>, k: &str) {
    let Some(Value::Array(lines)) = fields.get_mut(k).and_then(|s| s.get_mut("items")) else {
        return;
    };
    let mut next = lines
        .iter()
        .filter_map(|l| l.get("line").and_then(Value::as_u64))
        .max()
        .unwrap_or(0)
        + 1;
    for l in lines.iter_mut() {
        if let Some(o) = l.as_object_mut()
            && !o.contains_key("line")
        {
            o.insert("line".into(), json!(next));
            next += 1;
        }
    }
}
