//! Credit notes (`cn_…`) on finalized invoices, their line items (`cnli_…`) and the customer
//! balance transactions (`cbtxn_…`) a customer-balance credit leaves.
//!
//! On an `open` invoice a credit note is `pre_payment`: it lowers `amount_due` and
//! `amount_remaining` (the invoice becomes `paid` when nothing remains). On a `paid` invoice it
//! is `post_payment`: its total is split between a refund on the invoice's charge
//! (`refund_amount`, or existing refunds linked with `refunds[]` — `refund` before 2025-03-31),
//! a customer balance credit (`credit_amount`, the default) and `out_of_band_amount`.
//! Invoice lines are credited by quantity or by amount, with their share of the line's
//! discounts and taxes (integer minor units, half-even, the remainder when a line is credited
//! to the end). Totals across credit notes, and refunds made directly on the invoice's charge,
//! never exceed the invoice total.

use std::collections::BTreeMap;

use mlc_core::Currency;
use serde_json::{Map, Value, json};

use crate::api::{Ctx, Out, R, list_kind, need_ref};
use crate::billing::format_amount;
use crate::error::ApiError;
use crate::events::emit;
use crate::params::{self, allow, s};
use crate::render::{self, page_params, paginate};
use crate::state::{ApiVersion, Db};

const REASONS: &[&str] = &[
    "duplicate",
    "fraudulent",
    "order_change",
    "product_unsatisfactory",
];

const LINE_KEYS: &[&str] = &[
    "type",
    "invoice_line_item",
    "quantity",
    "amount",
    "unit_amount",
    "unit_amount_decimal",
    "description",
    "tax_rates",
    "tax_amounts",
    "metadata",
];

fn cur_of(v: &Value) -> Currency {
    v["currency"]
        .as_str()
        .and_then(|c| Currency::parse(c).ok())
        .unwrap_or(Currency::USD)
}

/// n / d rounded half to even (d > 0).
fn half_even(n: i128, d: i128) -> i128 {
    let d = d.max(1);
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal if q % 2 == 0 => q,
        std::cmp::Ordering::Equal => q + 1,
    }
}

/// `v * part / whole`, in whole steps of the currency, rounded half-even.
fn share(v: i64, part: i64, whole: i64, step: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    half_even(
        i128::from(v) * i128::from(part),
        i128::from(whole) * i128::from(step),
    ) as i64
        * step
}

/// Half away from zero, as the invoice arithmetic rounds tax (so a custom line taxed at a rate
/// gets the tax an invoice line of the same amount would).
fn round_div(n: i128, d: i128) -> i64 {
    let d = d.max(1);
    (if n >= 0 {
        (n + d / 2) / d
    } else {
        (n - d / 2) / d
    }) as i64
}

fn round_step(x: i64, cur: Currency) -> i64 {
    let step = cur.amount_step();
    round_div(i128::from(x), i128::from(step)) * step
}

fn tax_entry(rate: &str, amount: i64, taxable: i64, inclusive: bool) -> Value {
    json!({
        "amount": amount, "tax_behavior": if inclusive { "inclusive" } else { "exclusive" },
        "tax_rate_details": {"tax_rate": rate}, "taxability_reason": "not_available",
        "taxable_amount": taxable, "type": "tax_rate_details",
    })
}

fn tax_rate_of(t: &Value) -> String {
    t["tax_rate_details"]["tax_rate"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn sum_i64<'a>(it: impl IntoIterator<Item = &'a Value>, key: &str) -> i64 {
    it.into_iter().filter_map(|x| x[key].as_i64()).sum()
}

/// Issued (not voided) credit notes of an invoice.
fn issued_notes(db: &Db, inv_id: &str) -> Vec<Value> {
    db.ids_of("credit_note")
        .iter()
        .filter_map(|id| db.get_kind("credit_note", id))
        .filter(|cn| cn["invoice"] == json!(inv_id) && cn["status"] == "issued")
        .cloned()
        .collect()
}

/// What issued credit notes already credited on one invoice line.
#[derive(Default)]
struct Credited {
    amount: i64,
    quantity: i64,
    /// `quantity` or `amount`: Stripe credits a line one way only.
    by: Option<String>,
    discounts: BTreeMap<String, i64>,
    /// rate → (tax, taxable amount)
    taxes: BTreeMap<String, (i64, i64)>,
}

fn credited_on_line(notes: &[Value], il: &str) -> Credited {
    let mut c = Credited::default();
    for cn in notes {
        for l in cn["_lines"].as_array().into_iter().flatten() {
            if l["invoice_line_item"] != json!(il) {
                continue;
            }
            c.amount += l["amount"].as_i64().unwrap_or(0);
            c.quantity += l["quantity"].as_i64().unwrap_or(0);
            c.by = l["_by"].as_str().map(str::to_string);
            for d in l["discount_amounts"].as_array().into_iter().flatten() {
                *c.discounts
                    .entry(d["discount"].as_str().unwrap_or_default().to_string())
                    .or_default() += d["amount"].as_i64().unwrap_or(0);
            }
            for t in l["taxes"].as_array().into_iter().flatten() {
                let e = c.taxes.entry(tax_rate_of(t)).or_default();
                e.0 += t["amount"].as_i64().unwrap_or(0);
                e.1 += t["taxable_amount"].as_i64().unwrap_or(0);
            }
        }
    }
    c
}

/// Everything a credit note will be, computed without changing anything.
struct Plan {
    invoice: Value,
    cur: Currency,
    kind: &'static str,
    /// Line values without `id` (assigned when issued or previewed).
    lines: Vec<Value>,
    subtotal: i64,
    discount: i64,
    incl_tax: i64,
    total: i64,
    discount_amounts: Vec<Value>,
    total_taxes: Vec<Value>,
    /// A new refund on the invoice's charge.
    refund_amount: i64,
    /// Existing refunds linked: (re_…, amount applied to this credit note).
    linked: Vec<(String, i64)>,
    credit_amount: i64,
    out_of_band: Option<i64>,
    reason: Value,
    memo: Value,
    metadata: Map<String, Value>,
    effective_at: Option<i64>,
}

fn only_custom(m: &Map<String, Value>, i: usize, keys: &[&str], ty: &str) -> Result<(), ApiError> {
    for k in keys {
        if m.contains_key(*k) {
            return Err(ApiError::invalid_nocode(
                format!("lines[{i}][{k}] can only be used when lines[{i}][type] is {ty}."),
                Some(&format!("lines[{i}][{k}]")),
            ));
        }
    }
    Ok(())
}

fn line_int(m: &Map<String, Value>, i: usize, k: &str) -> Result<Option<i64>, ApiError> {
    params::int_at(m.get(k), &format!("lines[{i}][{k}]"))
}

/// A line's own `metadata` (null unless given), with the top-level metadata rules.
fn line_metadata(m: &Map<String, Value>) -> Result<Value, ApiError> {
    match m.get("metadata") {
        None => Ok(Value::Null),
        Some(v) => Ok(json!(params::metadata(&json!({"metadata": v}))?)),
    }
}

fn tax_rate_objs(db: &Db, ids: &[String]) -> Vec<Value> {
    ids.iter()
        .filter_map(|t| db.get_kind("tax_rate", t))
        .cloned()
        .collect()
}

/// One `invoice_line_item` line: the invoice line's amount by quantity or by amount, with its
/// share of the line's discounts and taxes (the rest of them once the line is credited fully).
fn invoice_line(
    db: &Db,
    ctx: &Ctx,
    inv: &Value,
    notes: &[Value],
    taken: &mut BTreeMap<String, Credited>,
    m: &Map<String, Value>,
    i: usize,
) -> Result<Value, ApiError> {
    only_custom(
        m,
        i,
        &[
            "unit_amount",
            "unit_amount_decimal",
            "description",
            "tax_rates",
        ],
        "custom_line_item",
    )?;
    let param = format!("lines[{i}][invoice_line_item]");
    let il = m
        .get("invoice_line_item")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
        .ok_or_else(|| ApiError::missing(&param))?;
    let line = inv["_lines"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["id"] == json!(il))
        .cloned()
        .ok_or_else(|| ApiError::missing_ref("invoice line item", il, &param))?;
    let cur = cur_of(inv);
    let step = cur.amount_step();
    let full_amount = line["amount"].as_i64().unwrap_or(0);
    let full_qty = line["quantity"].as_i64().unwrap_or(1);
    // Lines of this request already planned count as credited, like earlier credit notes.
    let prev = taken
        .entry(il.to_string())
        .or_insert_with(|| credited_on_line(notes, il));
    let quantity = line_int(m, i, "quantity")?;
    let amount = line_int(m, i, "amount")?;
    let (credit, qty, by) = match (quantity, amount) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_nocode(
                format!(
                    "You may only specify one of these parameters: lines[{i}][amount], lines[{i}][quantity]."
                ),
                None,
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_nocode(
                format!(
                    "You must pass either lines[{i}][amount] or lines[{i}][quantity] for a line of type invoice_line_item."
                ),
                Some(&format!("lines[{i}]")),
            ));
        }
        (Some(q), None) => {
            let qp = format!("lines[{i}][quantity]");
            if q < 1 {
                return Err(ApiError::invalid(
                    "parameter_invalid_integer",
                    "This value must be greater than or equal to 1.",
                    Some(&qp),
                ));
            }
            if prev.by.as_deref() == Some("amount") {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "The invoice line item {il} was credited by amount, so it can only be credited by amount."
                    ),
                    Some(&qp),
                ));
            }
            let left = full_qty - prev.quantity;
            if q > left {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "The quantity to credit ({q}) cannot be greater than the quantity of invoice line item {il} that can still be credited ({left})."
                    ),
                    Some(&qp),
                ));
            }
            let credit = if q == left {
                full_amount - prev.amount
            } else {
                share(full_amount, q, full_qty, step)
            };
            (credit, q, "quantity")
        }
        (None, Some(a)) => {
            let ap = format!("lines[{i}][amount]");
            params::check_amount(a, cur, &ap, true)?;
            if prev.by.as_deref() == Some("quantity") {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "The invoice line item {il} was credited by quantity, so it can only be credited by quantity."
                    ),
                    Some(&ap),
                ));
            }
            let left = full_amount - prev.amount;
            if a > left {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "The amount to credit ({}) cannot be greater than the amount of invoice line item {il} that can still be credited ({}).",
                        format_amount(a, cur),
                        format_amount(left, cur)
                    ),
                    Some(&ap),
                ));
            }
            (a, 1, "amount")
        }
    };
    let to_the_end =
        prev.amount + credit == full_amount && (by == "amount" || prev.quantity + qty == full_qty);
    let mut discount_amounts = Vec::new();
    for d in line["discount_amounts"].as_array().into_iter().flatten() {
        let di = d["discount"].as_str().unwrap_or_default().to_string();
        let whole = d["amount"].as_i64().unwrap_or(0);
        let before = prev.discounts.get(&di).copied().unwrap_or(0);
        let part = if to_the_end {
            whole - before
        } else {
            share(whole, credit, full_amount, step)
        };
        *prev.discounts.entry(di.clone()).or_default() += part;
        discount_amounts.push(json!({"amount": part, "discount": di}));
    }
    let mut taxes = Vec::new();
    let mut rates = Vec::new();
    for t in line["taxes"].as_array().into_iter().flatten() {
        let rate = tax_rate_of(t);
        let (whole, whole_taxable) = (
            t["amount"].as_i64().unwrap_or(0),
            t["taxable_amount"].as_i64().unwrap_or(0),
        );
        let (before, before_taxable) = prev.taxes.get(&rate).copied().unwrap_or((0, 0));
        let (part, part_taxable) = if to_the_end {
            (whole - before, whole_taxable - before_taxable)
        } else {
            (
                share(whole, credit, full_amount, step),
                share(whole_taxable, credit, full_amount, step),
            )
        };
        let e = prev.taxes.entry(rate.clone()).or_default();
        e.0 += part;
        e.1 += part_taxable;
        taxes.push(tax_entry(
            &rate,
            part,
            part_taxable,
            t["tax_behavior"] == "inclusive",
        ));
        rates.push(rate);
    }
    prev.amount += credit;
    if by == "quantity" {
        prev.quantity += qty;
    }
    prev.by = Some(by.to_string());
    let unit = line["pricing"]["unit_amount_decimal"]
        .as_str()
        .and_then(|u| u.parse::<i64>().ok());
    let (unit_amount, unit_decimal) = match (by, unit) {
        ("quantity", Some(u)) => (json!(u), json!(u.to_string())),
        _ => (Value::Null, Value::Null),
    };
    Ok(json!({
        "object": "credit_note_line_item", "amount": credit, "description": line["description"],
        "discount_amount": sum_i64(&discount_amounts, "amount"), "discount_amounts": discount_amounts,
        "invoice_line_item": il, "livemode": ctx.livemode,
        "metadata": line_metadata(m)?,
        "pretax_credit_amounts": [], "quantity": qty, "tax_rates": tax_rate_objs(db, &rates),
        "taxes": taxes, "type": "invoice_line_item", "unit_amount": unit_amount,
        "unit_amount_decimal": unit_decimal, "_by": by,
    }))
}

/// One `custom_line_item` line: `unit_amount` × `quantity`, taxed at its own `tax_rates`.
fn custom_line(
    db: &Db,
    ctx: &Ctx,
    cur: Currency,
    m: &Map<String, Value>,
    i: usize,
) -> Result<Value, ApiError> {
    only_custom(m, i, &["invoice_line_item", "amount"], "invoice_line_item")?;
    if m.contains_key("tax_amounts") {
        return Err(ApiError::invalid_nocode(
            "The simulator does not support lines[][tax_amounts] (they need Stripe Tax rates); use lines[][tax_rates].",
            Some(&format!("lines[{i}][tax_amounts]")),
        ));
    }
    let up = format!("lines[{i}][unit_amount]");
    let unit = match (
        line_int(m, i, "unit_amount")?,
        m.get("unit_amount_decimal").and_then(Value::as_str),
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_nocode(
                format!(
                    "You may only specify one of these parameters: lines[{i}][unit_amount], lines[{i}][unit_amount_decimal]."
                ),
                None,
            ));
        }
        (Some(u), None) => u,
        (None, Some(d)) => d.parse::<i64>().map_err(|_| {
            ApiError::invalid_nocode(
                "The simulator only supports whole unit_amount_decimal values.",
                Some(&format!("lines[{i}][unit_amount_decimal]")),
            )
        })?,
        (None, None) => return Err(ApiError::missing(&up)),
    };
    params::check_amount(unit, cur, &up, true)?;
    let qty = line_int(m, i, "quantity")?.unwrap_or(1);
    if qty < 1 {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            "This value must be greater than or equal to 1.",
            Some(&format!("lines[{i}][quantity]")),
        ));
    }
    let amount = unit * qty;
    let rate_ids: Vec<String> = match m.get("tax_rates") {
        None => Vec::new(),
        Some(Value::String(x)) if x.is_empty() => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect(),
        Some(_) => {
            return Err(ApiError::invalid(
                "parameter_invalid_array",
                "Invalid array",
                Some(&format!("lines[{i}][tax_rates]")),
            ));
        }
    };
    let mut taxes = Vec::new();
    for (k, r) in rate_ids.iter().enumerate() {
        let tr = need_ref(db, "tax_rate", r, &format!("lines[{i}][tax_rates][{k}]"))?;
        let pct = tr["_pct_e4"].as_i64().unwrap_or(0);
        let inclusive = tr["inclusive"] == json!(true);
        let (tax, taxable) = if inclusive {
            let taxable = round_div(i128::from(amount) * 1_000_000, 1_000_000 + i128::from(pct));
            let tax = round_step(amount - taxable, cur);
            (tax, amount - tax)
        } else {
            (
                round_step(
                    round_div(i128::from(amount) * i128::from(pct), 1_000_000),
                    cur,
                ),
                amount,
            )
        };
        taxes.push(tax_entry(r, tax, taxable, inclusive));
    }
    let description = m
        .get("description")
        .and_then(Value::as_str)
        .map(|d| json!(d))
        .unwrap_or(Value::Null);
    Ok(json!({
        "object": "credit_note_line_item", "amount": amount, "description": description,
        "discount_amount": 0, "discount_amounts": [], "livemode": ctx.livemode,
        "metadata": line_metadata(m)?,
        "pretax_credit_amounts": [], "quantity": qty, "tax_rates": tax_rate_objs(db, &rate_ids),
        "taxes": taxes, "type": "custom_line_item", "unit_amount": unit,
        "unit_amount_decimal": unit.to_string(),
    }))
}

/// Checks a create (or preview) request against the invoice and computes the credit note.
fn plan(db: &Db, ctx: &Ctx, p: &Value) -> Result<Plan, ApiError> {
    let basil = ctx.version.is_basil_or_later();
    let refund_param = if basil { "refunds" } else { "refund" };
    allow(
        p,
        &[
            "invoice",
            "lines",
            "amount",
            "credit_amount",
            "refund_amount",
            "out_of_band_amount",
            refund_param,
            "reason",
            "memo",
            "metadata",
            "effective_at",
            "email_type",
            "shipping_cost",
        ],
    )?;
    let inv_id = params::req_s(p, "invoice")?;
    let inv = need_ref(db, "invoice", inv_id, "invoice")?.clone();
    let status = inv["status"].as_str().unwrap_or_default();
    let kind = match status {
        "open" => "pre_payment",
        "paid" => "post_payment",
        _ => {
            return Err(ApiError::invalid_nocode(
                format!(
                    "You can only issue credit notes for open or paid invoices. This invoice is {status}."
                ),
                Some("invoice"),
            ));
        }
    };
    let cur = cur_of(&inv);
    if let Some(r) = s(p, "reason")
        && !REASONS.contains(&r)
    {
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            "Invalid reason: must be one of duplicate, fraudulent, order_change, or product_unsatisfactory",
            Some("reason"),
        ));
    }
    if let Some(t) = s(p, "email_type")
        && t != "credit_note"
        && t != "none"
    {
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            "Invalid email_type: must be one of credit_note or none",
            Some("email_type"),
        ));
    }
    if let Some(sr) = params::path(p, &["shipping_cost", "shipping_rate"]).and_then(Value::as_str) {
        // The simulator has no shipping rates, so no invoice carries one.
        return Err(ApiError::missing_ref(
            "shipping_rate",
            sr,
            "shipping_cost[shipping_rate]",
        ));
    }
    let memo = match p.get("memo").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => json!(m),
        _ => Value::Null,
    };
    let notes = issued_notes(db, inv_id);

    // Lines.
    let raw_lines = params::hash_list(p, "lines")?;
    let amount_param = params::int(p, "amount")?;
    let mut lines = Vec::new();
    let mut taken: BTreeMap<String, Credited> = BTreeMap::new();
    for (i, m) in raw_lines.iter().enumerate() {
        if let Some(k) = m.keys().find(|k| !LINE_KEYS.contains(&k.as_str())) {
            return Err(ApiError::unknown_param(&format!("lines[{i}][{k}]")));
        }
        let ty = m
            .get("type")
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
            .ok_or_else(|| ApiError::missing(&format!("lines[{i}][type]")))?;
        let line = match ty {
            "invoice_line_item" => invoice_line(db, ctx, &inv, &notes, &mut taken, m, i)?,
            "custom_line_item" => custom_line(db, ctx, cur, m, i)?,
            _ => {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    format!(
                        "Invalid lines[{i}][type]: must be one of custom_line_item or invoice_line_item"
                    ),
                    Some(&format!("lines[{i}][type]")),
                ));
            }
        };
        lines.push(line);
    }
    match (amount_param, lines.is_empty()) {
        (None, true) => {
            return Err(ApiError::invalid_nocode(
                "One of `amount`, `lines`, or `shipping_cost` must be provided.",
                None,
            ));
        }
        (Some(a), true) => {
            params::check_amount(a, cur, "amount", false)?;
            lines.push(json!({
                "object": "credit_note_line_item", "amount": a, "description": null,
                "discount_amount": 0, "discount_amounts": [], "livemode": ctx.livemode, "metadata": null,
                "pretax_credit_amounts": [], "quantity": 1, "tax_rates": [], "taxes": [],
                "type": "custom_line_item", "unit_amount": a, "unit_amount_decimal": a.to_string(),
            }));
        }
        _ => {}
    }

    // Totals.
    let subtotal = sum_i64(&lines, "amount");
    let discount = sum_i64(&lines, "discount_amount");
    let mut by_discount: Vec<(String, i64)> = Vec::new();
    let mut by_rate: Vec<(String, i64, i64, bool)> = Vec::new();
    let (mut excl, mut incl) = (0i64, 0i64);
    for l in &lines {
        for d in l["discount_amounts"].as_array().into_iter().flatten() {
            let di = d["discount"].as_str().unwrap_or_default().to_string();
            let a = d["amount"].as_i64().unwrap_or(0);
            match by_discount.iter_mut().find(|x| x.0 == di) {
                Some(x) => x.1 += a,
                None => by_discount.push((di, a)),
            }
        }
        for t in l["taxes"].as_array().into_iter().flatten() {
            let rate = tax_rate_of(t);
            let (a, taxable) = (
                t["amount"].as_i64().unwrap_or(0),
                t["taxable_amount"].as_i64().unwrap_or(0),
            );
            let inclusive = t["tax_behavior"] == "inclusive";
            if inclusive {
                incl += a;
            } else {
                excl += a;
            }
            match by_rate.iter_mut().find(|x| x.0 == rate) {
                Some(x) => {
                    x.1 += a;
                    x.2 += taxable;
                }
                None => by_rate.push((rate, a, taxable, inclusive)),
            }
        }
    }
    let total = subtotal - discount + excl;
    if let (Some(a), false) = (amount_param, raw_lines.is_empty())
        && a != total
    {
        return Err(ApiError::invalid_nocode(
            format!(
                "The credit note amount ({}) must equal the total of its lines ({}).",
                format_amount(a, cur),
                format_amount(total, cur)
            ),
            Some("amount"),
        ));
    }
    if total <= 0 {
        return Err(ApiError::invalid_nocode(
            "The credit note total must be greater than zero.",
            Some(if raw_lines.is_empty() {
                "amount"
            } else {
                "lines"
            }),
        ));
    }

    // Where a post-payment credit goes.
    let charge_id = inv["_charge"].as_str().map(str::to_string);
    let alloc = |k: &str| -> Result<Option<i64>, ApiError> {
        let v = params::int(p, k)?;
        if let Some(x) = v {
            params::check_amount(x, cur, k, true)?;
        }
        Ok(v)
    };
    let refund_amount = alloc("refund_amount")?;
    let credit_amount = alloc("credit_amount")?;
    let out_of_band = alloc("out_of_band_amount")?;
    let mut linked: Vec<(String, i64)> = Vec::new();
    let requested_links: Vec<(String, Option<i64>, String)> = if basil {
        params::hash_list(p, "refunds")?
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if let Some(k) = m.keys().find(|k| {
                    !["refund", "amount_refunded", "type", "payment_record_refund"]
                        .contains(&k.as_str())
                }) {
                    return Err(ApiError::unknown_param(&format!("refunds[{i}][{k}]")));
                }
                if m.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t != "refund")
                {
                    return Err(ApiError::invalid_nocode(
                        "The simulator supports only refunds[][type]=refund.",
                        Some(&format!("refunds[{i}][type]")),
                    ));
                }
                let param = format!("refunds[{i}][refund]");
                let re = m
                    .get("refund")
                    .and_then(Value::as_str)
                    .filter(|x| !x.is_empty())
                    .ok_or_else(|| ApiError::missing(&param))?;
                let amt = params::int_at(
                    m.get("amount_refunded"),
                    &format!("refunds[{i}][amount_refunded]"),
                )?;
                Ok((re.to_string(), amt, param))
            })
            .collect::<Result<_, _>>()?
    } else {
        s(p, "refund")
            .map(|re| vec![(re.to_string(), None, "refund".to_string())])
            .unwrap_or_default()
    };
    if kind == "pre_payment" {
        let given = [
            ("refund_amount", refund_amount),
            ("credit_amount", credit_amount),
            ("out_of_band_amount", out_of_band),
        ]
        .into_iter()
        .find(|(_, v)| v.is_some_and(|x| x > 0))
        .map(|(k, _)| k.to_string())
        .or_else(|| (!requested_links.is_empty()).then(|| refund_param.to_string()));
        if let Some(k) = given {
            return Err(ApiError::invalid_nocode(
                format!(
                    "`{k}` can only be used when issuing a credit note on a paid invoice; on an open invoice the credit note reduces the amount due."
                ),
                Some(&k),
            ));
        }
    }
    if refund_amount.is_some_and(|r| r > 0) && !requested_links.is_empty() {
        return Err(ApiError::invalid_nocode(
            format!("You may only specify one of these parameters: {refund_param}, refund_amount."),
            None,
        ));
    }
    // Refunds of the invoice's charge, and how much of each credit notes already account for.
    let charge_refunds: Vec<Value> = match &charge_id {
        Some(ch) => db
            .ids_of("refund")
            .iter()
            .filter_map(|id| db.get_kind("refund", id))
            .filter(|r| {
                r["charge"] == json!(ch) && r["status"] != "failed" && r["status"] != "canceled"
            })
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let mut in_notes: BTreeMap<String, i64> = BTreeMap::new();
    for cn in &notes {
        for r in cn["refunds"].as_array().into_iter().flatten() {
            *in_notes
                .entry(r["refund"].as_str().unwrap_or_default().to_string())
                .or_default() += r["amount_refunded"].as_i64().unwrap_or(0);
        }
    }
    for (re, amt, param) in &requested_links {
        let r = need_ref(db, "refund", re, param)?;
        if charge_id.is_none() || r["charge"] != json!(charge_id) {
            return Err(ApiError::invalid_nocode(
                format!(
                    "The refund {re} is not a refund of the charge that paid invoice {inv_id}."
                ),
                Some(param),
            ));
        }
        let left = r["amount"].as_i64().unwrap_or(0)
            - in_notes.get(re).copied().unwrap_or(0)
            - linked
                .iter()
                .filter(|x| &x.0 == re)
                .map(|x| x.1)
                .sum::<i64>();
        let a = amt.unwrap_or(left);
        if a <= 0 || a > left {
            return Err(ApiError::invalid_nocode(
                format!(
                    "The refund {re} has {} left to link to credit notes, so {} cannot be linked.",
                    format_amount(left.max(0), cur),
                    format_amount(a, cur)
                ),
                Some(param),
            ));
        }
        linked.push((re.clone(), a));
    }
    let linked_total: i64 = linked.iter().map(|x| x.1).sum();
    let unlinked_refunds: i64 = charge_refunds
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap_or_default();
            (r["amount"].as_i64().unwrap_or(0) - in_notes.get(id).copied().unwrap_or(0)).max(0)
        })
        .sum::<i64>()
        - linked_total;
    let credited: i64 = notes
        .iter()
        .map(|cn| cn["total"].as_i64().unwrap_or(0))
        .sum();
    let creditable = inv["total"].as_i64().unwrap_or(0) - credited - unlinked_refunds.max(0);
    if total > creditable {
        return Err(ApiError::invalid_nocode(
            format!(
                "The credit note total ({}) cannot be greater than the amount of invoice {inv_id} that can still be credited ({}).",
                format_amount(total, cur),
                format_amount(creditable.max(0), cur)
            ),
            Some(if raw_lines.is_empty() {
                "amount"
            } else {
                "lines"
            }),
        ));
    }
    let (mut refund_amount, mut credit_amount, mut out_of_band) =
        (refund_amount.unwrap_or(0), credit_amount, out_of_band);
    if kind == "post_payment" {
        let none_given = refund_amount == 0
            && credit_amount.is_none()
            && out_of_band.is_none()
            && linked.is_empty();
        if none_given {
            // Stripe credits the customer's balance when nothing else is asked for.
            credit_amount = Some(total);
        }
        let sum =
            refund_amount + linked_total + credit_amount.unwrap_or(0) + out_of_band.unwrap_or(0);
        if sum < total && out_of_band.is_none() && ctx.version.is_before("2019-12-03") {
            // Older versions put what is left outside of Stripe.
            out_of_band = Some(total - sum);
        }
        let sum =
            refund_amount + linked_total + credit_amount.unwrap_or(0) + out_of_band.unwrap_or(0);
        if sum != total {
            return Err(ApiError::invalid_nocode(
                format!(
                    "The sum of credit amount, refund amount and out of band amount ({}) must equal the credit note amount ({}).",
                    format_amount(sum, cur),
                    format_amount(total, cur)
                ),
                None,
            ));
        }
        if refund_amount > 0 {
            let Some(ch) = charge_id.as_deref().and_then(|c| db.get_kind("charge", c)) else {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "Invoice {inv_id} was not paid with a charge, so refund_amount cannot be used; use credit_amount or out_of_band_amount."
                    ),
                    Some("refund_amount"),
                ));
            };
            let left =
                ch["amount"].as_i64().unwrap_or(0) - ch["amount_refunded"].as_i64().unwrap_or(0);
            if refund_amount > left {
                return Err(ApiError::invalid(
                    "amount_too_large",
                    format!(
                        "Refund amount ({refund_amount}) is greater than unrefunded amount on charge ({left})"
                    ),
                    Some("refund_amount"),
                ));
            }
        }
    } else {
        refund_amount = 0;
        credit_amount = None;
        out_of_band = None;
    }
    let effective_at = params::int(p, "effective_at")?;
    Ok(Plan {
        invoice: inv,
        cur,
        kind,
        lines,
        subtotal,
        discount,
        incl_tax: incl,
        total,
        discount_amounts: by_discount
            .into_iter()
            .map(|(d, a)| json!({"amount": a, "discount": d}))
            .collect(),
        total_taxes: by_rate
            .into_iter()
            .map(|(r, a, t, inc)| tax_entry(&r, a, t, inc))
            .collect(),
        refund_amount,
        linked,
        credit_amount: credit_amount.unwrap_or(0),
        out_of_band: out_of_band.filter(|x| *x > 0),
        reason: s(p, "reason").map(|r| json!(r)).unwrap_or(Value::Null),
        memo,
        metadata: params::metadata(p)?,
        effective_at,
    })
}

/// The credit note object for a plan (lines get their ids here).
fn build(
    db: &mut Db,
    ctx: &Ctx,
    plan: &Plan,
    id: &str,
    refunds: Vec<Value>,
    cbtxn: Value,
) -> Value {
    let inv = &plan.invoice;
    let inv_id = inv["id"].as_str().unwrap_or_default();
    let lines: Vec<Value> = plan
        .lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l["id"] = json!(db.new_id("cnli"));
            l
        })
        .collect();
    let seq = db
        .ids_of("credit_note")
        .iter()
        .filter(|c| {
            db.get_kind("credit_note", c)
                .is_some_and(|cn| cn["invoice"] == json!(inv_id))
        })
        .count()
        + 1;
    let number = format!("{}-CN-{seq:02}", inv["number"].as_str().unwrap_or("DRAFT"));
    let token = db.new_id(if ctx.livemode { "live" } else { "test" });
    let now = db.now();
    let (pre, post) = if plan.kind == "pre_payment" {
        (plan.total, 0)
    } else {
        (0, plan.total)
    };
    let shown: Vec<Value> = lines.iter().take(10).cloned().collect();
    json!({
        "id": id, "object": "credit_note", "amount": plan.total, "amount_shipping": 0, "created": now,
        "currency": plan.cur.as_str(), "customer": inv["customer"], "customer_account": null,
        "customer_balance_transaction": cbtxn, "discount_amount": plan.discount,
        "discount_amounts": plan.discount_amounts, "effective_at": plan.effective_at.unwrap_or(now),
        "invoice": inv_id,
        "lines": {"object": "list", "data": shown, "has_more": lines.len() > 10, "url": format!("/v1/credit_notes/{id}/lines")},
        "livemode": ctx.livemode, "memo": plan.memo, "metadata": plan.metadata, "number": number,
        "out_of_band_amount": plan.out_of_band,
        "pdf": format!("https://pay.stripe.com/credit_notes/{}/{token}/pdf?s=ap", db.account_id),
        "post_payment_amount": post, "pre_payment_amount": pre, "pretax_credit_amounts": [],
        "reason": plan.reason, "refunds": refunds, "shipping_cost": null, "status": "issued",
        "subtotal": plan.subtotal, "subtotal_excluding_tax": plan.subtotal - plan.incl_tax,
        "total": plan.total, "total_excluding_tax": plan.subtotal - plan.discount - plan.incl_tax,
        "total_taxes": plan.total_taxes, "type": plan.kind, "voided_at": null,
        "_lines": lines,
    })
}

fn refund_link(re: &str, amount: i64) -> Value {
    json!({"amount_refunded": amount, "payment_record_refund": null, "refund": re, "type": "refund"})
}

/// Sets an open invoice's amount due (after a pre-payment credit note or its void): the
/// PaymentIntent and the default InvoicePayment follow; nothing left to pay marks it paid.
fn set_amount_due(db: &mut Db, inv_id: &str, due: i64) -> bool {
    let now = db.now();
    let Some(iv) = db.get_kind_mut("invoice", inv_id) else {
        return false;
    };
    let paid = iv["amount_paid"].as_i64().unwrap_or(0);
    iv["amount_due"] = json!(due.max(0));
    let remaining = (due - paid).max(0);
    iv["amount_remaining"] = json!(remaining);
    let pi = iv["_payment_intent"].as_str().map(str::to_string);
    let settled = remaining == 0;
    if settled {
        iv["status"] = json!("paid");
        iv["status_transitions"]["paid_at"] = json!(now);
        iv["next_payment_attempt"] = Value::Null;
    }
    for ip in db.ids_of("invoice_payment") {
        if let Some(x) = db.get_kind_mut("invoice_payment", &ip)
            && x["invoice"] == json!(inv_id)
            && x["status"] == "open"
        {
            if settled {
                x["status"] = json!("canceled");
                x["status_transitions"]["canceled_at"] = json!(now);
            } else {
                x["amount_requested"] = json!(remaining);
            }
        }
    }
    if let Some(pi) = pi
        && let Some(x) = db.get_kind_mut("payment_intent", &pi)
        && x["status"] != "succeeded"
        && x["status"] != "canceled"
    {
        if settled {
            x["status"] = json!("canceled");
            x["canceled_at"] = json!(now);
        } else {
            x["amount"] = json!(remaining);
        }
    }
    settled
}

/// Moves the customer's balance by `delta` (negative: a credit) and records the transaction.
/// Returns its id and the customer as it was (for the `customer.updated` event).
fn balance_txn(
    db: &mut Db,
    ctx: &Ctx,
    customer: &str,
    cn_id: &str,
    delta: i64,
    cur: Currency,
) -> Option<(String, Value)> {
    let old = db.get_kind("customer", customer).cloned()?;
    let ending = old["balance"].as_i64().unwrap_or(0) + delta;
    let id = db.new_id("cbtxn");
    let now = db.now();
    db.insert("customer_balance_transaction", &id, json!({
        "id": id, "object": "customer_balance_transaction", "amount": delta, "checkout_session": null,
        "created": now, "credit_note": cn_id, "currency": cur.as_str(), "customer": customer,
        "customer_account": null, "description": null, "ending_balance": ending, "invoice": null,
        "livemode": ctx.livemode, "metadata": {}, "type": "credit_note",
    }));
    if let Some(c) = db.get_kind_mut("customer", customer) {
        c["balance"] = json!(ending);
        if c["currency"].is_null() {
            c["currency"] = json!(cur.as_str());
        }
    }
    Some((id, old))
}

fn create(db: &mut Db, ctx: &Ctx, p: &Value) -> R {
    let plan = plan(db, ctx, p)?;
    let inv_id = plan.invoice["id"].as_str().unwrap_or_default().to_string();
    // The refund goes first: if it fails nothing else has changed.
    let mut refunds: Vec<Value> = Vec::new();
    if plan.refund_amount > 0 {
        let ch = plan.invoice["_charge"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let out = crate::payments::refunds(
            db,
            ctx,
            "POST",
            &[],
            &json!({"charge": ch, "amount": plan.refund_amount.to_string()}),
        )?;
        if let Out::Obj(re) = out {
            refunds.push(refund_link(&re, plan.refund_amount));
        }
    }
    refunds.extend(plan.linked.iter().map(|(re, a)| refund_link(re, *a)));
    let id = db.new_id("cn");
    let customer = plan.invoice["customer"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let balance = if plan.credit_amount > 0 {
        balance_txn(db, ctx, &customer, &id, -plan.credit_amount, plan.cur)
    } else {
        None
    };
    let cbtxn = balance
        .as_ref()
        .map(|(t, _)| json!(t))
        .unwrap_or(Value::Null);
    let cn = build(db, ctx, &plan, &id, refunds, cbtxn);
    db.insert("credit_note", &id, cn);
    emit(db, ctx, "credit_note.created", &id, None);
    if let Some((_, old_customer)) = balance {
        emit(db, ctx, "customer.updated", &customer, Some(old_customer));
    }
    let old = plan.invoice.clone();
    let mut paid = false;
    if plan.kind == "pre_payment" {
        let due = old["amount_due"].as_i64().unwrap_or(0) - plan.total;
        if let Some(iv) = db.get_kind_mut("invoice", &inv_id) {
            let n = iv["pre_payment_credit_notes_amount"].as_i64().unwrap_or(0) + plan.total;
            iv["pre_payment_credit_notes_amount"] = json!(n);
        }
        paid = set_amount_due(db, &inv_id, due);
    } else if let Some(iv) = db.get_kind_mut("invoice", &inv_id) {
        let n = iv["post_payment_credit_notes_amount"].as_i64().unwrap_or(0) + plan.total;
        iv["post_payment_credit_notes_amount"] = json!(n);
    }
    emit(db, ctx, "invoice.updated", &inv_id, Some(old));
    if paid {
        emit(db, ctx, "invoice.paid", &inv_id, None);
    }
    Ok(Out::Obj(id))
}

fn void(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &[])?;
    let cn = db
        .get_kind("credit_note", id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("credit note", id))?;
    if cn["status"] == "void" {
        return Err(ApiError::invalid_nocode(
            format!("Credit note {id} has already been voided."),
            None,
        ));
    }
    if cn["refunds"].as_array().is_some_and(|a| !a.is_empty()) {
        return Err(ApiError::invalid_nocode(
            "You cannot void a credit note that has been refunded.",
            None,
        ));
    }
    let inv_id = cn["invoice"].as_str().unwrap_or_default().to_string();
    let inv = db
        .get_kind("invoice", &inv_id)
        .cloned()
        .unwrap_or(Value::Null);
    let pre = cn["pre_payment_amount"].as_i64().unwrap_or(0);
    let post = cn["post_payment_amount"].as_i64().unwrap_or(0);
    if pre > 0 && inv["status"] != "open" {
        return Err(ApiError::invalid_nocode(
            format!(
                "You can only void a pre-payment credit note while its invoice is open. Invoice {inv_id} is {}.",
                inv["status"].as_str().unwrap_or_default()
            ),
            None,
        ));
    }
    let now = db.now();
    if let Some(x) = db.get_kind_mut("credit_note", id) {
        x["status"] = json!("void");
        x["voided_at"] = json!(now);
    }
    emit(db, ctx, "credit_note.voided", id, None);
    // A customer balance credit is taken back.
    let credit = cn["customer_balance_transaction"]
        .as_str()
        .and_then(|t| db.get_kind("customer_balance_transaction", t))
        .and_then(|t| t["amount"].as_i64())
        .unwrap_or(0);
    if credit != 0 {
        let customer = cn["customer"].as_str().unwrap_or_default().to_string();
        if let Some((_, old_customer)) = balance_txn(db, ctx, &customer, id, -credit, cur_of(&cn)) {
            emit(db, ctx, "customer.updated", &customer, Some(old_customer));
        }
    }
    if pre > 0 {
        let due = inv["amount_due"].as_i64().unwrap_or(0) + pre;
        if let Some(iv) = db.get_kind_mut("invoice", &inv_id) {
            let n = iv["pre_payment_credit_notes_amount"].as_i64().unwrap_or(0) - pre;
            iv["pre_payment_credit_notes_amount"] = json!(n.max(0));
        }
        set_amount_due(db, &inv_id, due);
    }
    if post > 0
        && let Some(iv) = db.get_kind_mut("invoice", &inv_id)
    {
        let n = iv["post_payment_credit_notes_amount"].as_i64().unwrap_or(0) - post;
        iv["post_payment_credit_notes_amount"] = json!(n.max(0));
    }
    emit(db, ctx, "invoice.updated", &inv_id, Some(inv));
    Ok(Out::Obj(id.to_string()))
}

fn lines_page(db: &Db, ctx: &Ctx, url: &str, lines: &[Value], p: &Value) -> R {
    allow(p, &["limit", "starting_after", "ending_before"])?;
    let ids: Vec<String> = lines
        .iter()
        .filter_map(|l| l["id"].as_str().map(str::to_string))
        .collect();
    // Line items list in the order they were given.
    let page = page_params(p)?;
    let (sel, more) = paginate(&ids, &page, "credit_note_line_item")?;
    let data: Vec<Value> = sel
        .iter()
        .filter_map(|lid| lines.iter().find(|l| l["id"] == json!(lid)))
        .map(|l| render::render(db, "credit_note_line_item", l, &ctx.version))
        .collect();
    Ok(Out::Raw(render::list_envelope(url, data, more)))
}

/// A preview: the credit note the same parameters would create, stored nowhere.
fn preview(db: &mut Db, ctx: &Ctx, p: &Value) -> Result<Value, ApiError> {
    let plan = plan(db, ctx, p)?;
    let mut refunds: Vec<Value> = Vec::new();
    if plan.refund_amount > 0 {
        // The refund does not exist yet; Stripe shows the amount it would refund.
        refunds.push(json!({"amount_refunded": plan.refund_amount, "payment_record_refund": null, "refund": null, "type": "refund"}));
    }
    refunds.extend(plan.linked.iter().map(|(re, a)| refund_link(re, *a)));
    Ok(db.rewinding_ids(|db| {
        let id = db.new_id("cn");
        build(db, ctx, &plan, &id, refunds, Value::Null)
    }))
}

/// `/v1/credit_notes…`
pub(crate) fn credit_notes(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => create(db, ctx, p),
        ("GET", []) => {
            allow(
                p,
                &[
                    "created",
                    "customer",
                    "customer_account",
                    "invoice",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let customer = s(p, "customer").map(str::to_string);
            let invoice = s(p, "invoice").map(str::to_string);
            list_kind(db, "credit_note", "/v1/credit_notes", p, |v| {
                Ok(customer.as_ref().is_none_or(|c| v["customer"] == json!(c))
                    && invoice.as_ref().is_none_or(|i| v["invoice"] == json!(i)))
            })
        }
        ("GET", ["preview"]) => {
            let v = preview(db, ctx, p)?;
            Ok(Out::Raw(render::render(
                db,
                "credit_note",
                &v,
                &ctx.version,
            )))
        }
        ("GET", ["preview", "lines"]) => {
            let mut q = p.clone();
            let mut page = Map::new();
            if let Some(m) = q.as_object_mut() {
                for k in ["limit", "starting_after", "ending_before"] {
                    if let Some(v) = m.remove(k) {
                        page.insert(k.to_string(), v);
                    }
                }
            }
            let v = preview(db, ctx, &q)?;
            let lines = v["_lines"].as_array().cloned().unwrap_or_default();
            lines_page(
                db,
                ctx,
                "/v1/credit_notes/preview/lines",
                &lines,
                &Value::Object(page),
            )
        }
        ("GET", [id]) => {
            db.get_kind("credit_note", id)
                .ok_or_else(|| ApiError::not_found("credit note", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("GET", [id, "lines"]) => {
            let cn = db
                .get_kind("credit_note", id)
                .ok_or_else(|| ApiError::not_found("credit note", id))?;
            let lines = cn["_lines"].as_array().cloned().unwrap_or_default();
            lines_page(db, ctx, &format!("/v1/credit_notes/{id}/lines"), &lines, p)
        }
        ("POST", [id]) => {
            allow(p, &["memo", "metadata"])?;
            let old = db
                .get_kind("credit_note", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("credit note", id))?;
            let mut v = old.clone();
            if let Some(m) = p.get("memo").and_then(Value::as_str) {
                v["memo"] = if m.is_empty() { Value::Null } else { json!(m) };
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if v != old {
                if let Some(x) = db.get_kind_mut("credit_note", id) {
                    *x = v;
                }
                emit(db, ctx, "credit_note.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id, "void"]) => void(db, ctx, id, p),
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/credit_notes/{}", segs.join("/")),
        )),
    }
}

/// `GET /v1/customers/{id}/balance_transactions[/{cbtxn}]`.
pub(crate) fn customer_balance_transactions(
    db: &mut Db,
    method: &str,
    customer: &str,
    segs: &[&str],
    p: &Value,
) -> R {
    db.get_kind("customer", customer)
        .ok_or_else(|| ApiError::not_found("customer", customer))?;
    match (method, segs) {
        ("GET", []) => {
            allow(
                p,
                &[
                    "created",
                    "invoice",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let invoice = s(p, "invoice").map(str::to_string);
            list_kind(
                db,
                "customer_balance_transaction",
                &format!("/v1/customers/{customer}/balance_transactions"),
                p,
                |v| {
                    Ok(v["customer"] == json!(customer)
                        && invoice.as_ref().is_none_or(|i| v["invoice"] == json!(i)))
                },
            )
        }
        ("GET", [id]) => match db.get_kind("customer_balance_transaction", id) {
            Some(t) if t["customer"] == json!(customer) => Ok(Out::Obj(id.to_string())),
            _ => Err(ApiError::not_found("customer balance transaction", id)),
        },
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!(
                "/v1/customers/{customer}/balance_transactions/{}",
                segs.join("/")
            ),
        )),
    }
}

/// Pre-basil shapes: `refund` (one id) instead of `refunds[]`, `tax_amounts` instead of
/// `total_taxes` / line `taxes`, and lines' `amount_excluding_tax` / `unit_amount_excluding_tax`.
pub(crate) fn render_versioned(
    db: &Db,
    kind: &str,
    src: &Map<String, Value>,
    out: &mut Map<String, Value>,
    version: &ApiVersion,
) {
    let basil = version.is_basil_or_later();
    match kind {
        "credit_note" => {
            if let Some(lines) = out
                .get_mut("lines")
                .and_then(|l| l.get_mut("data"))
                .and_then(Value::as_array_mut)
            {
                for line in lines.iter_mut() {
                    *line = render::render(db, "credit_note_line_item", line, version);
                }
            }
            if !basil {
                let first = src
                    .get("refunds")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .map(|r| r["refund"].clone())
                    .unwrap_or(Value::Null);
                out.insert("refund".into(), first);
                out.insert("tax_amounts".into(), legacy_taxes(src.get("total_taxes")));
                out.remove("refunds");
                out.remove("total_taxes");
            }
        }
        "credit_note_line_item" if !basil => {
            let incl: i64 = src
                .get("taxes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|t| t["tax_behavior"] == "inclusive")
                        .filter_map(|t| t["amount"].as_i64())
                        .sum()
                })
                .unwrap_or(0);
            let amount = src.get("amount").and_then(Value::as_i64).unwrap_or(0);
            let excl = amount - incl;
            out.insert("amount_excluding_tax".into(), json!(excl));
            let unit = match src.get("unit_amount").and_then(Value::as_i64) {
                Some(_) => {
                    let q = src
                        .get("quantity")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                        .max(1);
                    json!(decimal_div(excl, q))
                }
                None => Value::Null,
            };
            out.insert("unit_amount_excluding_tax".into(), unit);
            out.insert("tax_amounts".into(), legacy_taxes(src.get("taxes")));
            out.remove("taxes");
        }
        _ => {}
    }
}

fn legacy_taxes(taxes: Option<&Value>) -> Value {
    json!(
        taxes
            .and_then(Value::as_array)
            .map(|a| a
                .iter()
                .map(|t| json!({
                    "amount": t["amount"], "inclusive": t["tax_behavior"] == "inclusive",
                    "tax_rate": t["tax_rate_details"]["tax_rate"], "taxability_reason": t["taxability_reason"],
                    "taxable_amount": t["taxable_amount"],
                }))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    )
}

/// `n / d` as a decimal string with at most 12 places (Stripe's `*_decimal` precision).
fn decimal_div(n: i64, d: i64) -> String {
    let (whole, mut rem) = (n / d, (n % d).abs());
    if rem == 0 {
        return whole.to_string();
    }
    let mut frac = String::new();
    for _ in 0..12 {
        if rem == 0 {
            break;
        }
        rem *= 10;
        frac.push(char::from(b'0' + (rem / d) as u8));
        rem %= d;
    }
    let sign = if n < 0 && whole == 0 { "-" } else { "" };
    format!("{sign}{whole}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_even_shares() {
        assert_eq!(half_even(5, 2), 2);
        assert_eq!(half_even(7, 2), 4);
        assert_eq!(half_even(10, 4), 2);
        assert_eq!(half_even(11, 4), 3);
        // 20% VAT of 2000 on a 1/3 credit: 133.33 → 133.
        assert_eq!(share(400, 1, 3, 1), 133);
        // KWD moves in steps of 10: 1/2 of 150 is 75 → 80 (7.5 steps → 8, even).
        assert_eq!(share(150, 1, 2, 10), 80);
        assert_eq!(share(250, 1, 2, 10), 120);
        assert_eq!(decimal_div(1000, 3), "333.333333333333");
        assert_eq!(decimal_div(1000, 4), "250");
        assert_eq!(decimal_div(1001, 2), "500.5");
    }
}
