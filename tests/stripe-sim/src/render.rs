//! Rendering stored objects in a requested API version, `expand[]`, and list pagination.

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::state::{ApiVersion, Db};

/// Removes the simulator's internal `_`-prefixed keys, recursively.
fn strip_internal(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('_'));
            for x in m.values_mut() {
                strip_internal(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_internal),
        _ => {}
    }
}

fn take_internal(m: &Map<String, Value>, k: &str) -> Value {
    m.get(k).cloned().unwrap_or(Value::Null)
}

/// Renders one object (internal shape) in `version`.
pub(crate) fn render(db: &Db, kind: &str, v: &Value, version: &ApiVersion) -> Value {
    let Some(src) = v.as_object() else {
        return v.clone();
    };
    let mut out = src.clone();
    let basil = version.is_basil_or_later();
    match kind {
        "invoice" => {
            if let Some(lines) = out
                .get_mut("lines")
                .and_then(|l| l.get_mut("data"))
                .and_then(Value::as_array_mut)
            {
                for line in lines.iter_mut() {
                    *line = render(db, "line_item", line, version);
                }
            }
            if !basil {
                let paid = src.get("status").and_then(Value::as_str) == Some("paid");
                out.insert("charge".into(), take_internal(src, "_charge"));
                out.insert(
                    "payment_intent".into(),
                    take_internal(src, "_payment_intent"),
                );
                out.insert("subscription".into(), take_internal(src, "_subscription"));
                out.insert("paid".into(), json!(paid));
                out.insert(
                    "paid_out_of_band".into(),
                    json!(src.get("_paid_out_of_band") == Some(&json!(true))),
                );
                let tax: i64 = src
                    .get("total_taxes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|t| t["amount"].as_i64()).sum())
                    .unwrap_or(0);
                let has_tax = src
                    .get("total_taxes")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                out.insert("tax".into(), if has_tax { json!(tax) } else { Value::Null });
                let tta: Vec<Value> = src
                    .get("total_taxes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(legacy_tax_amount).collect())
                    .unwrap_or_default();
                out.insert("total_tax_amounts".into(), json!(tta));
                let first_discount = src
                    .get("discounts")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .and_then(|id| db.get_kind("discount", id))
                    .map(|d| render(db, "discount", d, version))
                    .unwrap_or(Value::Null);
                out.insert("discount".into(), first_discount);
                out.insert("application_fee_amount".into(), Value::Null);
                out.insert("transfer_data".into(), Value::Null);
                for k in [
                    "parent",
                    "total_taxes",
                    "payments",
                    "amount_overpaid",
                    "amount_paid_off_stripe",
                    "confirmation_secret",
                    "total_pretax_credit_amounts",
                ] {
                    out.remove(k);
                }
            }
        }
        "line_item" if !basil => {
            let price_id = src
                .get("pricing")
                .and_then(|p| p.get("price_details"))
                .and_then(|d| d.get("price"))
                .and_then(Value::as_str);
            let price = price_id
                .and_then(|id| db.get_kind("price", id))
                .map(|p| render(db, "price", p, version))
                .unwrap_or(Value::Null);
            let parent = src.get("parent").cloned().unwrap_or(Value::Null);
            let (ty, details) = match parent.get("type").and_then(Value::as_str) {
                Some("subscription_item_details") => {
                    ("subscription", parent["subscription_item_details"].clone())
                }
                _ => ("invoiceitem", parent["invoice_item_details"].clone()),
            };
            out.insert("type".into(), json!(ty));
            out.insert("price".into(), price);
            out.insert(
                "proration".into(),
                details.get("proration").cloned().unwrap_or(json!(false)),
            );
            out.insert(
                "invoice_item".into(),
                details.get("invoice_item").cloned().unwrap_or(Value::Null),
            );
            out.insert(
                "subscription_item".into(),
                details
                    .get("subscription_item")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            out.insert(
                "subscription".into(),
                details.get("subscription").cloned().unwrap_or(Value::Null),
            );
            let taxes: Vec<Value> = src
                .get("taxes")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(legacy_tax_amount).collect())
                .unwrap_or_default();
            let rates: Vec<Value> = taxes
                .iter()
                .filter_map(|t| t.get("tax_rate").cloned())
                .collect();
            out.insert("tax_amounts".into(), json!(taxes));
            out.insert("tax_rates".into(), json!(rates));
            out.insert(
                "unit_amount_excluding_tax".into(),
                src.get("pricing")
                    .and_then(|p| p.get("unit_amount_decimal"))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            for k in ["parent", "pricing", "taxes", "pretax_credit_amounts"] {
                out.remove(k);
            }
        }
        "charge" | "payment_intent" => {
            if !basil {
                out.insert("invoice".into(), take_internal(src, "_invoice"));
            }
            if kind == "charge" && !basil {
                out.insert("dispute".into(), take_internal(src, "_dispute"));
            }
        }
        "dispute" => {
            // Stripe embeds the whole balance transactions (withdrawal, then reinstatement).
            if let Some(txns) = out
                .get_mut("balance_transactions")
                .and_then(Value::as_array_mut)
            {
                for t in txns.iter_mut() {
                    if let Some(txn) = t
                        .as_str()
                        .and_then(|id| db.get_kind("balance_transaction", id))
                    {
                        *t = render(db, "balance_transaction", txn, version);
                    }
                }
            }
        }
        "subscription" => {
            if let Some(items) = out
                .get_mut("items")
                .and_then(|l| l.get_mut("data"))
                .and_then(Value::as_array_mut)
            {
                for item in items.iter_mut() {
                    if let Some(pid) = item
                        .get("price")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        && let Some(p) = db.get_kind("price", &pid)
                    {
                        item["price"] = render(db, "price", p, version);
                    }
                }
            }
            if !basil {
                let first = src["items"]["data"].get(0).cloned().unwrap_or(Value::Null);
                out.insert(
                    "current_period_start".into(),
                    first
                        .get("current_period_start")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
                out.insert(
                    "current_period_end".into(),
                    first
                        .get("current_period_end")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
        }
        "credit_note" | "credit_note_line_item" => {
            crate::credit_notes::render_versioned(db, kind, src, &mut out, version);
        }
        "discount" if !version.is_clover_or_later() => {
            let coupon = src["source"]["coupon"]
                .as_str()
                .and_then(|id| db.get_kind("coupon", id))
                .map(|c| render(db, "coupon", c, version))
                .unwrap_or(Value::Null);
            out.remove("source");
            out.insert("coupon".into(), coupon);
        }
        _ => {}
    }
    // An older dialect simply lacks some fields (no key at all, not `null`).
    out.retain(|k, _| !db.dialect.omits(kind, k));
    let mut v = Value::Object(out);
    strip_internal(&mut v);
    v
}

/// Pre-basil `tax_amounts[]` entry from a basil `taxes[]` entry.
fn legacy_tax_amount(t: &Value) -> Value {
    json!({
        "amount": t["amount"],
        "inclusive": t["tax_behavior"] == "inclusive",
        "tax_rate": t["tax_rate_details"]["tax_rate"],
        "taxability_reason": t["taxability_reason"],
        "taxable_amount": t["taxable_amount"],
    })
}

/// Renders an object by id in `version`; deleted objects render as their `deleted: true` stub.
pub(crate) fn render_id(db: &Db, id: &str, version: &ApiVersion) -> Option<Value> {
    let s = db.get(id)?;
    if s.deleted {
        return Some(json!({"id": id, "object": s.kind, "deleted": true}));
    }
    Some(render(db, s.kind, &s.v, version))
}

/// Expand paths from `expand[]`, validated: at most four levels, as Stripe allows.
pub(crate) fn expand_paths(params: &Value) -> Result<Vec<Vec<String>>, ApiError> {
    let list = match params.get("expand") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(_) => {
            return Err(ApiError::invalid(
                "parameter_invalid_array",
                "Invalid array",
                Some("expand"),
            ));
        }
    };
    let mut out = Vec::new();
    for p in list {
        let Some(s) = p.as_str() else {
            return Err(ApiError::invalid(
                "parameter_invalid_array",
                "Invalid array",
                Some("expand"),
            ));
        };
        let segs: Vec<String> = s.split('.').map(str::to_string).collect();
        if segs.len() > 4 {
            return Err(ApiError::invalid_nocode(
                format!("You cannot expand more than 4 levels of a property. Property: {s}"),
                Some("expand"),
            ));
        }
        if segs.iter().any(String::is_empty) {
            return Err(ApiError::invalid_nocode(
                format!("This property cannot be expanded ({s})."),
                Some("expand"),
            ));
        }
        out.push(segs);
    }
    Ok(out)
}

/// Applies all expansions to a rendered value.
pub(crate) fn apply_expand(
    db: &Db,
    v: &mut Value,
    paths: &[Vec<String>],
    version: &ApiVersion,
) -> Result<(), ApiError> {
    for p in paths {
        if let Some(refused) = db.dialect.refuses_expand(p) {
            return Err(ApiError::invalid_nocode(
                format!("Bad expand '{refused}'"),
                Some("expand"),
            ));
        }
        expand_at(db, v, p, version)?;
    }
    Ok(())
}

fn expand_at(
    db: &Db,
    v: &mut Value,
    segs: &[String],
    version: &ApiVersion,
) -> Result<(), ApiError> {
    let Some((first, rest)) = segs.split_first() else {
        return Ok(());
    };
    match v {
        Value::Array(items) => {
            for it in items.iter_mut() {
                expand_at(db, it, segs, version)?;
            }
            Ok(())
        }
        Value::Object(m) => {
            let not_expandable = || {
                ApiError::invalid_nocode(
                    format!("This property cannot be expanded ({first})."),
                    Some("expand"),
                )
            };
            // Includable lists: not in the object unless asked for.
            let kind = m
                .get("object")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let id = m
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if kind == "invoice" && first == "payments" && !m.contains_key("payments") {
                if !version.is_basil_or_later() {
                    return Err(not_expandable());
                }
                let data: Vec<Value> = db
                    .ids_of("invoice_payment")
                    .iter()
                    .filter_map(|pid| db.get_kind("invoice_payment", pid))
                    .filter(|p| p["invoice"] == json!(id))
                    .map(|p| render(db, "invoice_payment", p, version))
                    .collect();
                m.insert(
                    "payments".into(),
                    json!({"object":"list","data":data,"has_more":false,"url":format!("/v1/invoices/{id}/payments")}),
                );
            }
            if kind == "checkout.session" && first == "line_items" && !m.contains_key("line_items")
            {
                let items = db
                    .get_kind("checkout.session", &id)
                    .and_then(|s| s.get("_line_items"))
                    .cloned()
                    .unwrap_or(json!([]));
                let mut data = items;
                render_session_items(db, &mut data, version);
                m.insert(
                    "line_items".into(),
                    json!({"object":"list","data":data,"has_more":false,"url":format!("/v1/checkout/sessions/{id}/line_items")}),
                );
            }
            let Some(field) = m.get_mut(first.as_str()) else {
                return Err(not_expandable());
            };
            match field {
                Value::String(ref_id) if first != "id" && first != "object" => {
                    let Some(obj) = render_id(db, ref_id, version) else {
                        return Err(not_expandable());
                    };
                    *field = obj;
                    expand_at(db, field, rest, version)
                }
                Value::Array(a) if a.iter().all(Value::is_string) && !a.is_empty() => {
                    for x in a.iter_mut() {
                        let Some(s) = x.as_str() else { continue };
                        let Some(obj) = render_id(db, s, version) else {
                            return Err(not_expandable());
                        };
                        *x = obj;
                        expand_at(db, x, rest, version)?;
                    }
                    Ok(())
                }
                Value::Null => Ok(()),
                Value::Object(_) | Value::Array(_) => expand_at(db, field, rest, version),
                _ => Err(not_expandable()),
            }
        }
        _ => Ok(()),
    }
}

/// Checkout line items hold a full Price object.
pub(crate) fn render_session_items(db: &Db, items: &mut Value, version: &ApiVersion) {
    if let Some(a) = items.as_array_mut() {
        for it in a.iter_mut() {
            if let Some(pid) = it.get("price").and_then(Value::as_str).map(str::to_string)
                && let Some(p) = db.get_kind("price", &pid)
            {
                it["price"] = render(db, "price", p, version);
            }
        }
    }
}

/// Validated pagination parameters.
pub(crate) struct Page {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
}

pub(crate) fn page_params(params: &Value) -> Result<Page, ApiError> {
    let limit = match params.get("limit").and_then(Value::as_str) {
        None | Some("") => 10,
        Some(s) => {
            let n: i64 = s
                .parse()
                .map_err(|_| ApiError::invalid_integer("limit", s))?;
            if n < 1 {
                return Err(ApiError::invalid(
                    "parameter_invalid_integer",
                    format!(
                        "This value must be greater than or equal to 1 (it currently is '{n}')."
                    ),
                    Some("limit"),
                ));
            }
            if n > 100 {
                return Err(ApiError::invalid(
                    "parameter_invalid_integer",
                    format!(
                        "This value must be less than or equal to 100 (it currently is '{n}')."
                    ),
                    Some("limit"),
                ));
            }
            n as usize
        }
    };
    let get = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let starting_after = get("starting_after");
    let ending_before = get("ending_before");
    if starting_after.is_some() && ending_before.is_some() {
        return Err(ApiError::invalid_nocode(
            "You may only specify one of these parameters: ending_before, starting_after.",
            None,
        ));
    }
    Ok(Page {
        limit,
        starting_after,
        ending_before,
    })
}

/// Paginates ids (newest first) and returns the page plus `has_more`.
pub(crate) fn paginate(
    ids: &[String],
    page: &Page,
    noun: &str,
) -> Result<(Vec<String>, bool), ApiError> {
    if let Some(after) = &page.starting_after {
        let pos = ids
            .iter()
            .position(|i| i == after)
            .ok_or_else(|| ApiError::missing_ref(noun, after, "starting_after"))?;
        let rest = &ids[pos + 1..];
        let take: Vec<String> = rest.iter().take(page.limit).cloned().collect();
        return Ok((take, rest.len() > page.limit));
    }
    if let Some(before) = &page.ending_before {
        let pos = ids
            .iter()
            .position(|i| i == before)
            .ok_or_else(|| ApiError::missing_ref(noun, before, "ending_before"))?;
        let newer = &ids[..pos];
        let start = newer.len().saturating_sub(page.limit);
        return Ok((newer[start..].to_vec(), start > 0));
    }
    let take: Vec<String> = ids.iter().take(page.limit).cloned().collect();
    Ok((take, ids.len() > page.limit))
}

/// The list envelope.
pub(crate) fn list_envelope(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({"object": "list", "data": data, "has_more": has_more, "url": url})
}
