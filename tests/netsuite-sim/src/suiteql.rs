//! A small, strict SuiteQL subset: a tokenizer, a recursive-descent parser and an evaluator over
//! the simulator's records. Anything outside the subset is refused with NetSuite's error shape.
//!
//! Grammar (keywords case-insensitive):
//! ```text
//! query   := SELECT sel FROM table [WHERE expr] [ORDER BY key (',' key)*]
//! sel     := '*' | COUNT '(' '*' ')' [AS ident] | col (',' col)*
//! table   := customer | item | transaction
//! expr    := conj (OR conj)*
//! conj    := atom (AND atom)*
//! atom    := '(' expr ')' | col op value | col [NOT] IN '(' value (',' value)* ')'
//!          | col IS [NOT] NULL | LOWER '(' col ')' op value
//! op      := = | != | <> | < | <= | > | >=
//! value   := ? | 'string' | number
//! key     := col [ASC | DESC]
//! ```

use std::cmp::Ordering;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use crate::error::NsError;
use crate::model::{Db, ITEM_TYPES, Record, RecordType, TRANSACTION_TYPES, ref_id};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    Param,
    LParen,
    RParen,
    Comma,
    Star,
    Op(&'static str),
}

fn bad(msg: impl std::fmt::Display) -> NsError {
    NsError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "INVALID_PARAMETER",
        format!("Invalid search query. Detailed unprocessed description follows. {msg}"),
    )
}

fn unknown_identifier(name: &str) -> NsError {
    bad(format!(
        "Search error occurred: Unknown identifier '{name}'. Check that the field exists and is exposed to SuiteQL."
    ))
}

fn tokenize(q: &str) -> Result<Vec<Tok>, NsError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '*' => {
                out.push(Tok::Star);
                i += 1;
            }
            '?' => {
                out.push(Tok::Param);
                i += 1;
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1;
            }
            '<' | '>' | '!' => {
                let next = chars.get(i + 1).copied();
                let op = match (c, next) {
                    ('<', Some('=')) => "<=",
                    ('<', Some('>')) => "<>",
                    ('>', Some('=')) => ">=",
                    ('!', Some('=')) => "!=",
                    ('<', _) => "<",
                    ('>', _) => ">",
                    _ => {
                        return Err(bad(format!(
                            "Search error occurred: Unexpected character '{c}'."
                        )));
                    }
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(bad("Search error occurred: Unterminated string literal."));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_ascii_digit() || *d == '.')
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => {
                return Err(bad(format!(
                    "Search error occurred: Unexpected character '{other}'."
                )));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Table {
    Customer,
    Item,
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ColType {
    Num,
    Text,
    TextCi,
    Bool,
    Date,
    DateTime,
}

const CUSTOMER_COLS: &[(&str, ColType)] = &[
    ("id", ColType::Num),
    ("entityid", ColType::Text),
    ("companyname", ColType::Text),
    ("firstname", ColType::Text),
    ("lastname", ColType::Text),
    ("email", ColType::Text),
    ("phone", ColType::Text),
    ("externalid", ColType::TextCi),
    ("isperson", ColType::Bool),
    ("subsidiary", ColType::Num),
    ("currency", ColType::Num),
    ("isinactive", ColType::Bool),
    ("datecreated", ColType::DateTime),
    ("lastmodifieddate", ColType::DateTime),
];
const ITEM_COLS: &[(&str, ColType)] = &[
    ("id", ColType::Num),
    ("itemid", ColType::Text),
    ("displayname", ColType::Text),
    ("description", ColType::Text),
    ("externalid", ColType::TextCi),
    ("itemtype", ColType::Text),
    ("subtype", ColType::Text),
    ("isinactive", ColType::Bool),
    ("createddate", ColType::DateTime),
    ("lastmodifieddate", ColType::DateTime),
];
const TRANSACTION_COLS: &[(&str, ColType)] = &[
    ("id", ColType::Num),
    ("tranid", ColType::Text),
    ("type", ColType::Text),
    ("recordtype", ColType::Text),
    ("trandate", ColType::Date),
    ("duedate", ColType::Date),
    ("entity", ColType::Num),
    ("externalid", ColType::TextCi),
    ("status", ColType::Text),
    ("foreigntotal", ColType::Num),
    ("total", ColType::Num),
    ("foreignamountremaining", ColType::Num),
    ("currency", ColType::Num),
    ("exchangerate", ColType::Num),
    ("memo", ColType::Text),
    ("otherrefnum", ColType::Text),
    ("createddate", ColType::DateTime),
    ("lastmodifieddate", ColType::DateTime),
];

impl Table {
    fn cols(self) -> &'static [(&'static str, ColType)] {
        match self {
            Table::Customer => CUSTOMER_COLS,
            Table::Item => ITEM_COLS,
            Table::Transaction => TRANSACTION_COLS,
        }
    }
    fn custom_prefix(self) -> &'static str {
        match self {
            Table::Customer => "custentity_",
            Table::Item => "custitem_",
            Table::Transaction => "custbody_",
        }
    }
}

#[derive(Debug, Clone)]
enum Operand {
    Param(usize),
    Str(String),
    Num(String),
}

#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(String, &'static str, Operand),
    /// `LOWER(col) op value`: the column lowercased, the value as given.
    CmpLower(String, &'static str, Operand),
    In(String, bool, Vec<Operand>),
    IsNull(String, bool),
}

#[derive(Debug, Clone)]
enum Sel {
    Star,
    Count(String),
    Cols(Vec<String>),
}

#[derive(Debug)]
struct Query {
    sel: Sel,
    table: Table,
    filter: Option<Expr>,
    order: Vec<(String, bool)>,
    params: usize,
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    params: usize,
    table: Table,
    db: &'a Db,
}

fn kw(t: Option<&Tok>, k: &str) -> bool {
    matches!(t, Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(k))
}

const RESERVED: &[&str] = &[
    "select", "from", "where", "and", "or", "not", "in", "is", "null", "order", "by", "asc",
    "desc", "as", "count", "join", "group", "having", "like", "between", "union", "on",
];

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect_kw(&mut self, k: &str) -> Result<(), NsError> {
        if kw(self.peek(), k) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected {}", k.to_uppercase())))
        }
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), NsError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected {what}")))
        }
    }
    fn unexpected(&self, what: &str) -> NsError {
        let found = match self.peek() {
            None => "end of query".to_owned(),
            Some(Tok::Ident(s) | Tok::Num(s)) => format!("'{s}'"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(t) => format!("{t:?}"),
        };
        bad(format!(
            "Search error occurred: Invalid or unsupported search: {what}, found {found}."
        ))
    }
    fn column(&mut self) -> Result<String, NsError> {
        match self.next() {
            Some(Tok::Ident(s)) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&s)) => {
                let c = s.to_lowercase();
                if col_type(self.table, self.db, &c).is_none() {
                    return Err(unknown_identifier(&s));
                }
                Ok(c)
            }
            _ => {
                self.pos -= 1;
                Err(self.unexpected("expected a column name"))
            }
        }
    }
    fn operand(&mut self) -> Result<Operand, NsError> {
        match self.next() {
            Some(Tok::Param) => {
                self.params += 1;
                Ok(Operand::Param(self.params - 1))
            }
            Some(Tok::Str(s)) => Ok(Operand::Str(s)),
            Some(Tok::Num(n)) => Ok(Operand::Num(n)),
            _ => {
                self.pos -= 1;
                Err(self.unexpected("expected ?, a string literal or a number"))
            }
        }
    }
    fn expr(&mut self) -> Result<Expr, NsError> {
        let mut e = self.conj()?;
        while kw(self.peek(), "or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.conj()?));
        }
        Ok(e)
    }
    fn conj(&mut self) -> Result<Expr, NsError> {
        let mut e = self.atom()?;
        while kw(self.peek(), "and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.atom()?));
        }
        Ok(e)
    }
    fn atom(&mut self) -> Result<Expr, NsError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.expr()?;
            self.expect(Tok::RParen, ")")?;
            return Ok(e);
        }
        if kw(self.peek(), "lower") && self.toks.get(self.pos + 1) == Some(&Tok::LParen) {
            self.pos += 2;
            let col = self.column()?;
            self.expect(Tok::RParen, ")")?;
            return match self.next() {
                Some(Tok::Op(op)) => Ok(Expr::CmpLower(col, op, self.operand()?)),
                _ => {
                    self.pos -= 1;
                    Err(self.unexpected("expected a comparison after LOWER(...)"))
                }
            };
        }
        let col = self.column()?;
        match self.next() {
            Some(Tok::Op(op)) => Ok(Expr::Cmp(col, op, self.operand()?)),
            Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("is") => {
                let not = kw(self.peek(), "not");
                if not {
                    self.pos += 1;
                }
                self.expect_kw("null")?;
                Ok(Expr::IsNull(col, not))
            }
            Some(Tok::Ident(k))
                if k.eq_ignore_ascii_case("in") || k.eq_ignore_ascii_case("not") =>
            {
                let not = k.eq_ignore_ascii_case("not");
                if not {
                    self.expect_kw("in")?;
                }
                self.expect(Tok::LParen, "(")?;
                let mut list = vec![self.operand()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    list.push(self.operand()?);
                }
                self.expect(Tok::RParen, ")")?;
                Ok(Expr::In(col, not, list))
            }
            _ => {
                self.pos -= 1;
                Err(self.unexpected("expected a comparison, IN or IS NULL"))
            }
        }
    }
}

fn col_type(t: Table, db: &Db, c: &str) -> Option<ColType> {
    if let Some((_, ty)) = t.cols().iter().find(|(n, _)| *n == c) {
        return Some(*ty);
    }
    let p = t.custom_prefix();
    let exists = c.starts_with(p)
        && c.len() > p.len()
        && db
            .custom_fields
            .as_ref()
            .is_none_or(|s| s.iter().any(|f| f.eq_ignore_ascii_case(c)));
    exists.then_some(ColType::Text)
}

fn parse(q: &str, db: &Db) -> Result<Query, NsError> {
    let toks = tokenize(q)?;
    let mut p = Parser {
        toks,
        pos: 0,
        params: 0,
        table: Table::Customer,
        db,
    };
    p.expect_kw("select")?;
    // The table comes after the select list, but columns are checked against it: find FROM first.
    let from_pos = p
        .toks
        .iter()
        .position(|t| matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case("from")))
        .ok_or_else(|| {
            bad("Search error occurred: Invalid or unsupported search: expected FROM.")
        })?;
    p.table = match p.toks.get(from_pos + 1) {
        Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("customer") => Table::Customer,
        Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("item") => Table::Item,
        Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("transaction") => Table::Transaction,
        Some(Tok::Ident(s)) => {
            return Err(bad(format!(
                "Search error occurred: Record '{s}' was not found or is not supported by this simulator (customer, item, transaction)."
            )));
        }
        _ => {
            return Err(bad(
                "Search error occurred: Invalid or unsupported search: expected a table after FROM.",
            ));
        }
    };
    let sel = if p.peek() == Some(&Tok::Star) {
        p.pos += 1;
        Sel::Star
    } else if kw(p.peek(), "count") {
        p.pos += 1;
        p.expect(Tok::LParen, "(")?;
        p.expect(Tok::Star, "*")?;
        p.expect(Tok::RParen, ")")?;
        let alias = if kw(p.peek(), "as") {
            p.pos += 1;
            match p.next() {
                Some(Tok::Ident(a)) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&a)) => {
                    a.to_lowercase()
                }
                _ => {
                    p.pos -= 1;
                    return Err(p.unexpected("expected an alias"));
                }
            }
        } else {
            "expr1".to_owned()
        };
        Sel::Count(alias)
    } else {
        let mut cols = vec![p.column()?];
        while p.peek() == Some(&Tok::Comma) {
            p.pos += 1;
            cols.push(p.column()?);
        }
        Sel::Cols(cols)
    };
    p.expect_kw("from")?;
    p.pos += 1; // the table, already read
    let filter = if kw(p.peek(), "where") {
        p.pos += 1;
        Some(p.expr()?)
    } else {
        None
    };
    let mut order = Vec::new();
    if kw(p.peek(), "order") {
        p.pos += 1;
        p.expect_kw("by")?;
        loop {
            let c = p.column()?;
            let desc = if kw(p.peek(), "desc") {
                p.pos += 1;
                true
            } else {
                if kw(p.peek(), "asc") {
                    p.pos += 1;
                }
                false
            };
            order.push((c, desc));
            if p.peek() == Some(&Tok::Comma) {
                p.pos += 1;
            } else {
                break;
            }
        }
    }
    if p.peek().is_some() {
        return Err(p.unexpected("expected end of query"));
    }
    Ok(Query {
        sel,
        table: p.table,
        filter,
        order,
        params: p.params,
    })
}

type Row = Map<String, Value>;

fn tf(b: bool) -> Value {
    json!(if b { "T" } else { "F" })
}

fn dstr(d: Decimal) -> Value {
    json!(d.normalize().to_string())
}

/// The cells customers and items share: inactive flag, creation and change times (NetSuite names
/// the creation column differently per table), and the custom fields with `prefix`.
fn master_data_cells(r: &Record, created_col: &str, prefix: &str, row: &mut Row) {
    row.insert(
        "isinactive".into(),
        tf(r.fields
            .get("isInactive")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
    );
    row.insert(
        created_col.into(),
        json!(crate::render::iso_ms(r.created_ms)),
    );
    row.insert(
        "lastmodifieddate".into(),
        json!(crate::render::iso_ms(r.modified_ms)),
    );
    custom_cells(r, prefix, row);
}

fn custom_cells(r: &Record, prefix: &str, row: &mut Row) {
    for (k, v) in &r.fields {
        if k.starts_with(prefix) {
            let cell = match v {
                Value::String(s) => json!(s),
                Value::Bool(b) => tf(*b),
                Value::Number(n) => json!(n.to_string()),
                Value::Object(_) => match ref_id(v) {
                    Some(id) => json!(id.to_string()),
                    None => continue,
                },
                _ => continue,
            };
            row.insert(k.to_lowercase(), cell);
        }
    }
}

fn rows(db: &Db, t: Table) -> Vec<Row> {
    let mut out = Vec::new();
    let s = |r: &Record, k: &str| r.str_field(k).map(|v| json!(v));
    let put = |row: &mut Row, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            row.insert(k.to_owned(), v);
        }
    };
    match t {
        Table::Customer => {
            for r in db.iter(RecordType::Customer) {
                let mut row = Row::new();
                row.insert("id".into(), json!(r.id.to_string()));
                put(&mut row, "entityid", s(r, "entityId"));
                put(&mut row, "companyname", s(r, "companyName"));
                put(&mut row, "firstname", s(r, "firstName"));
                put(&mut row, "lastname", s(r, "lastName"));
                put(&mut row, "email", s(r, "email"));
                put(&mut row, "phone", s(r, "phone"));
                put(&mut row, "externalid", s(r, "externalId"));
                row.insert(
                    "isperson".into(),
                    tf(r.fields
                        .get("isPerson")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)),
                );
                put(
                    &mut row,
                    "subsidiary",
                    r.ref_id("subsidiary").map(|i| json!(i.to_string())),
                );
                put(
                    &mut row,
                    "currency",
                    r.ref_id("currency").map(|i| json!(i.to_string())),
                );
                master_data_cells(r, "datecreated", "custentity_", &mut row);
                out.push(row);
            }
        }
        Table::Item => {
            for t in ITEM_TYPES {
                for r in db.iter(*t) {
                    let mut row = Row::new();
                    row.insert("id".into(), json!(r.id.to_string()));
                    put(&mut row, "itemid", s(r, "itemId"));
                    put(&mut row, "displayname", s(r, "displayName"));
                    put(
                        &mut row,
                        "description",
                        s(r, "salesDescription").or_else(|| s(r, "description")),
                    );
                    put(&mut row, "externalid", s(r, "externalId"));
                    row.insert("itemtype".into(), json!(t.item_type_code()));
                    row.insert("subtype".into(), json!("Sale"));
                    master_data_cells(r, "createddate", "custitem_", &mut row);
                    out.push(row);
                }
            }
        }
        Table::Transaction => {
            for t in TRANSACTION_TYPES {
                for r in db.iter(*t) {
                    let mut row = Row::new();
                    row.insert("id".into(), json!(r.id.to_string()));
                    put(&mut row, "tranid", s(r, "tranId"));
                    row.insert("type".into(), json!(t.tran_type_code()));
                    row.insert("recordtype".into(), json!(t.url_name()));
                    put(&mut row, "trandate", s(r, "tranDate"));
                    put(&mut row, "duedate", s(r, "dueDate"));
                    let entity = r.ref_id("entity").or_else(|| r.ref_id("customer"));
                    put(&mut row, "entity", entity.map(|i| json!(i.to_string())));
                    put(&mut row, "externalid", s(r, "externalId"));
                    put(
                        &mut row,
                        "status",
                        db.status(r).map(|(_, code)| json!(code)),
                    );
                    let total = db.total(r);
                    row.insert("foreigntotal".into(), dstr(total));
                    let rate = r.dec("exchangeRate").unwrap_or(Decimal::ONE);
                    row.insert("exchangerate".into(), dstr(rate));
                    row.insert("total".into(), dstr((total * rate).round_dp(2)));
                    if *t == RecordType::Invoice {
                        row.insert(
                            "foreignamountremaining".into(),
                            dstr(db.amount_remaining(r, None)),
                        );
                    }
                    put(
                        &mut row,
                        "currency",
                        r.ref_id("currency").map(|i| json!(i.to_string())),
                    );
                    put(&mut row, "memo", s(r, "memo"));
                    put(&mut row, "otherrefnum", s(r, "otherRefNum"));
                    row.insert(
                        "createddate".into(),
                        json!(crate::render::iso_ms(r.created_ms)),
                    );
                    row.insert(
                        "lastmodifieddate".into(),
                        json!(crate::render::iso_ms(r.modified_ms)),
                    );
                    custom_cells(r, "custbody_", &mut row);
                    out.push(row);
                }
            }
        }
    }
    out.sort_by_key(|r| {
        r.get("id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
    });
    out
}

/// A comparable form of an operand for a column of the given type.
fn operand_value(op: &Operand, params: &[Value]) -> Result<String, NsError> {
    Ok(match op {
        Operand::Str(s) | Operand::Num(s) => s.clone(),
        Operand::Param(i) => match params.get(*i) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => if *b { "T" } else { "F" }.to_owned(),
            _ => return Err(bad("Search error occurred: Invalid bound parameter value.")),
        },
    })
}

fn normalize_datetime(s: &str) -> Option<String> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if let Ok(dt) = s.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        return Some(dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    let d: jiff::civil::Date = s.parse().ok()?;
    Some(d.strftime("%Y-%m-%dT00:00:00Z").to_string())
}

fn compare(ty: ColType, cell: &str, operand: &str) -> Result<Ordering, NsError> {
    Ok(match ty {
        ColType::Num => {
            let a = Decimal::from_str_exact(cell).ok();
            let b = Decimal::from_str_exact(operand.trim()).map_err(|_| {
                bad(format!(
                    "Search error occurred: Invalid number '{operand}'."
                ))
            })?;
            a.map_or(Ordering::Less, |a| a.cmp(&b))
        }
        ColType::TextCi => cell.to_lowercase().cmp(&operand.to_lowercase()),
        ColType::DateTime => {
            let b = normalize_datetime(operand).ok_or_else(|| {
                bad(format!(
                    "Search error occurred: Invalid date/time value '{operand}'."
                ))
            })?;
            cell.cmp(b.as_str())
        }
        ColType::Date => {
            let b: jiff::civil::Date = operand.parse().map_err(|_| {
                bad(format!(
                    "Search error occurred: Invalid date value '{operand}'."
                ))
            })?;
            cell.cmp(b.to_string().as_str())
        }
        ColType::Text | ColType::Bool => cell.cmp(operand),
    })
}

/// Whether `cell op value` holds, given how the cell compares to the value.
fn op_holds(op: &str, o: Ordering) -> bool {
    match op {
        "=" => o == Ordering::Equal,
        "!=" | "<>" => o != Ordering::Equal,
        "<" => o == Ordering::Less,
        "<=" => o != Ordering::Greater,
        ">" => o == Ordering::Greater,
        _ => o != Ordering::Less,
    }
}

fn eval(e: &Expr, row: &Row, q: &Query, db: &Db, params: &[Value]) -> Result<bool, NsError> {
    let cell = |c: &str| row.get(c).and_then(Value::as_str);
    let ty = |c: &str| col_type(q.table, db, c).unwrap_or(ColType::Text);
    Ok(match e {
        Expr::And(a, b) => eval(a, row, q, db, params)? && eval(b, row, q, db, params)?,
        Expr::Or(a, b) => eval(a, row, q, db, params)? || eval(b, row, q, db, params)?,
        Expr::IsNull(c, not) => cell(c).is_none() != *not,
        Expr::Cmp(c, op, operand) => {
            let v = operand_value(operand, params)?;
            let Some(x) = cell(c) else {
                // Validate the operand even when the cell is NULL, so bad input always fails.
                compare(ty(c), "", &v).ok();
                return Ok(false);
            };
            let o = compare(ty(c), x, &v)?;
            op_holds(op, o)
        }
        Expr::CmpLower(c, op, operand) => {
            let v = operand_value(operand, params)?;
            let Some(x) = cell(c) else {
                return Ok(false);
            };
            let o = compare(ColType::Text, &x.to_lowercase(), &v)?;
            op_holds(op, o)
        }
        Expr::In(c, not, list) => {
            let Some(x) = cell(c) else { return Ok(false) };
            let mut found = false;
            for operand in list {
                let v = operand_value(operand, params)?;
                if compare(ty(c), x, &v)? == Ordering::Equal {
                    found = true;
                }
            }
            found != *not
        }
    })
}

fn sort_cmp(ty: ColType, a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        // Oracle sorts NULLs last in ascending order.
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => match ty {
            ColType::Num => match (Decimal::from_str_exact(a), Decimal::from_str_exact(b)) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(b),
            },
            ColType::TextCi => a.to_lowercase().cmp(&b.to_lowercase()),
            _ => a.cmp(b),
        },
    }
}

/// Runs a query; returns all matching rows (before paging), each with `"links": []`.
pub(crate) fn run(db: &Db, q: &str, params: &[Value]) -> Result<Vec<Value>, NsError> {
    let query = parse(q, db)?;
    if query.params != params.len() {
        return Err(bad(format!(
            "Search error occurred: The query has {} bound parameter(s) but {} value(s) were given.",
            query.params,
            params.len()
        )));
    }
    let mut matched = Vec::new();
    for row in rows(db, query.table) {
        let keep = match &query.filter {
            Some(f) => eval(f, &row, &query, db, params)?,
            None => true,
        };
        if keep {
            matched.push(row);
        }
    }
    for (c, desc) in query.order.iter().rev() {
        let ty = col_type(query.table, db, c).unwrap_or(ColType::Text);
        matched.sort_by(|a, b| {
            let o = sort_cmp(
                ty,
                a.get(c).and_then(Value::as_str),
                b.get(c).and_then(Value::as_str),
            );
            if *desc { o.reverse() } else { o }
        });
    }
    let out = match &query.sel {
        Sel::Count(alias) => {
            let mut m = Row::new();
            m.insert("links".into(), json!([]));
            m.insert(alias.clone(), json!(matched.len().to_string()));
            vec![Value::Object(m)]
        }
        Sel::Star => matched
            .into_iter()
            .map(|mut r| {
                r.insert("links".into(), json!([]));
                Value::Object(r)
            })
            .collect(),
        Sel::Cols(cols) => matched
            .into_iter()
            .map(|r| {
                let mut m = Row::new();
                m.insert("links".into(), json!([]));
                // NULL columns are left out of the row.
                for c in cols {
                    if let Some(v) = r.get(c) {
                        m.insert(c.clone(), v.clone());
                    }
                }
                Value::Object(m)
            })
            .collect(),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset_and_refuses_the_rest() {
        let db = Db::default();
        assert!(parse("SELECT id, externalid FROM transaction WHERE externalid = ? AND recordtype = 'invoice'", &db).is_ok());
        assert!(parse("select count(*) as n from item where (itemtype = 'Service' or itemtype in ('Discount', ?)) and isinactive = 'F'", &db).is_ok());
        assert!(
            parse(
                "SELECT id FROM customer WHERE id > ? ORDER BY id ASC, entityid DESC",
                &db
            )
            .is_ok()
        );
        assert!(parse("SELECT * FROM customer WHERE custentity_x IS NOT NULL", &db).is_ok());
        for q in [
            "SELECT id FROM customer c JOIN transaction t ON t.entity = c.id",
            "SELECT balance FROM customer",
            "SELECT id FROM vendor",
            "SELECT id FROM customer WHERE id BETWEEN 1 AND 2",
            "SELECT id FROM customer WHERE companyname LIKE 'A%'",
            "SELECT id FROM customer GROUP BY id",
            "SELECT id, FROM customer",
            "SELECT id FROM customer WHERE",
            "SELECT id FROM customer WHERE email = 'x",
            "SELECT custitem_x FROM customer",
        ] {
            assert!(parse(q, &db).is_err(), "{q} should be refused");
        }
    }
}
