//! Billing: tax rates, coupons/discounts, invoice items, invoices (draft → open → paid / void /
//! uncollectible), invoice payments and subscriptions.

use mlc_core::Currency;
use serde_json::{Value, json};

use crate::api::{Ctx, Out, R, list_kind, need_ref};
use crate::error::ApiError;
use crate::events::emit;
use crate::params::{self, allow, s};
use crate::payments::{self, Confirm};
use crate::render::{page_params, paginate};
use crate::state::Db;

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

fn cur_of(v: &Value) -> Currency {
    v["currency"]
        .as_str()
        .and_then(|c| Currency::parse(c).ok())
        .unwrap_or(Currency::USD)
}

/// "$20.00", "¥5,000", "KWD 12.340" — used in line descriptions like Stripe's.
pub(crate) fn format_amount(minor: i64, cur: Currency) -> String {
    let exp = cur.exponent();
    let neg = minor < 0;
    let m = minor.unsigned_abs();
    let div = 10_u64.pow(exp);
    let whole = m / div;
    let ws = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in ws.chars().enumerate() {
        if i > 0 && (ws.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let num = if exp == 0 {
        grouped
    } else {
        format!("{grouped}.{:0width$}", m % div, width = exp as usize)
    };
    let sym = match cur.as_str() {
        "usd" => "$".to_string(),
        "eur" => "€".to_string(),
        "gbp" => "£".to_string(),
        "jpy" => "¥".to_string(),
        _ => format!("{} ", cur.iso_code()),
    };
    format!("{}{sym}{num}", if neg { "-" } else { "" })
}

/// Adds `n` calendar months to a unix time (day clamped to the month's length).
fn add_months(t: i64, n: i64) -> i64 {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + (m - 1) + n;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
    let dim = [
        31,
        if (ny % 4 == 0 && ny % 100 != 0) || ny % 400 == 0 {
            29
        } else {
            28
        },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let nd = d.min(dim[(nm - 1) as usize]);
    days_from_civil(ny, nm, nd) * 86_400 + secs
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// End of a billing period that starts at `start`.
pub(crate) fn period_end(start: i64, recurring: &Value) -> i64 {
    let count = recurring["interval_count"].as_i64().unwrap_or(1);
    match recurring["interval"].as_str() {
        Some("day") => start + 86_400 * count,
        Some("week") => start + 7 * 86_400 * count,
        Some("year") => add_months(start, 12 * count),
        _ => add_months(start, count),
    }
}

// ---------------------------------------------------------------- tax rates and coupons

pub(crate) fn tax_rates(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "display_name",
                    "percentage",
                    "inclusive",
                    "active",
                    "country",
                    "description",
                    "jurisdiction",
                    "metadata",
                    "state",
                    "tax_type",
                ],
            )?;
            let name = params::req_s(p, "display_name")?;
            let pct = params::rate_e4(params::req_s(p, "percentage")?, "percentage")?;
            if pct > 1_000_000 {
                return Err(ApiError::invalid_nocode(
                    "Percentage must be less than or equal to 100.",
                    Some("percentage"),
                ));
            }
            let inclusive =
                params::boolean(p, "inclusive")?.ok_or_else(|| ApiError::missing("inclusive"))?;
            let id = db.new_id("txr");
            db.insert("tax_rate", &id, json!({
                "id": id, "object": "tax_rate", "active": params::boolean(p, "active")?.unwrap_or(true),
                "country": s(p, "country"), "created": db.now(), "description": s(p, "description"),
                "display_name": name, "effective_percentage": params::rate_json(pct), "flat_amount": null,
                "inclusive": inclusive, "jurisdiction": s(p, "jurisdiction"), "jurisdiction_level": null,
                "livemode": ctx.livemode, "metadata": params::metadata(p)?, "percentage": params::rate_json(pct),
                "rate_type": "percentage", "state": s(p, "state"), "tax_type": s(p, "tax_type"), "_pct_e4": pct,
            }));
            emit(db, ctx, "tax_rate.created", &id, None);
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "active",
                    "created",
                    "inclusive",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            list_kind(db, "tax_rate", "/v1/tax_rates", p, |_| Ok(true))
        }
        ("GET", [id]) => {
            db.get_kind("tax_rate", id)
                .ok_or_else(|| ApiError::not_found("tax_rate", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id]) => {
            allow(
                p,
                &[
                    "active",
                    "description",
                    "display_name",
                    "metadata",
                    "country",
                    "state",
                    "jurisdiction",
                    "tax_type",
                ],
            )?;
            let old = db
                .get_kind("tax_rate", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("tax_rate", id))?;
            let mut v = old.clone();
            if let Some(a) = params::boolean(p, "active")? {
                v["active"] = json!(a);
            }
            for k in [
                "description",
                "display_name",
                "country",
                "state",
                "jurisdiction",
                "tax_type",
            ] {
                if let Some(x) = s(p, k) {
                    v[k] = json!(x);
                }
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if let Some(x) = db.get_kind_mut("tax_rate", id) {
                *x = v;
            }
            emit(db, ctx, "tax_rate.updated", id, Some(old));
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/tax_rates/{}", segs.join("/")),
        )),
    }
}

pub(crate) fn coupons(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "id",
                    "percent_off",
                    "amount_off",
                    "currency",
                    "duration",
                    "duration_in_months",
                    "name",
                    "max_redemptions",
                    "metadata",
                    "redeem_by",
                    "applies_to",
                ],
            )?;
            let pct = s(p, "percent_off")
                .map(|x| params::rate_e4(x, "percent_off"))
                .transpose()?;
            let amount_off = params::int(p, "amount_off")?;
            let cur = params::currency(p, "currency")?;
            match (pct, amount_off) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid_nocode(
                        "You may only specify one of these parameters: amount_off, percent_off.",
                        None,
                    ));
                }
                (None, None) => {
                    return Err(ApiError::invalid_nocode(
                        "You must pass either `amount_off` or `percent_off`.",
                        None,
                    ));
                }
                (Some(x), None) if x <= 0 || x > 1_000_000 => {
                    return Err(ApiError::invalid_nocode(
                        "Percent off must be between 0 and 100.",
                        Some("percent_off"),
                    ));
                }
                (None, Some(a)) => {
                    let c = cur.ok_or_else(|| {
                        ApiError::invalid_nocode(
                            "You must pass currency when passing amount_off.",
                            Some("currency"),
                        )
                    })?;
                    params::check_amount(a, c, "amount_off", false)?;
                }
                _ => {}
            }
            let duration = s(p, "duration").unwrap_or("once");
            if !["once", "repeating", "forever"].contains(&duration) {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid duration: must be one of forever, once, or repeating",
                    Some("duration"),
                ));
            }
            let months = params::int(p, "duration_in_months")?;
            if duration == "repeating" && months.is_none() {
                return Err(ApiError::missing("duration_in_months"));
            }
            let id = match s(p, "id") {
                Some(x) => {
                    if db.get_kind("coupon", x).is_some() {
                        return Err(ApiError::invalid(
                            "resource_already_exists",
                            "Coupon already exists.",
                            Some("id"),
                        ));
                    }
                    x.to_string()
                }
                None => {
                    let raw = db.new_id("co");
                    raw[3..11].to_string()
                }
            };
            db.insert("coupon", &id, json!({
                "id": id, "object": "coupon", "amount_off": amount_off, "created": db.now(),
                "currency": cur.map(|c| c.as_str().to_string()), "duration": duration, "duration_in_months": months,
                "livemode": ctx.livemode, "max_redemptions": params::int(p, "max_redemptions")?,
                "metadata": params::metadata(p)?, "name": s(p, "name"), "percent_off": pct.map(params::rate_json),
                "redeem_by": params::int(p, "redeem_by")?, "times_redeemed": 0, "valid": true, "_pct_e4": pct,
            }));
            emit(db, ctx, "coupon.created", &id, None);
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(p, &["created", "limit", "starting_after", "ending_before"])?;
            list_kind(db, "coupon", "/v1/coupons", p, |_| Ok(true))
        }
        ("GET", [id]) => {
            db.get_kind("coupon", id)
                .ok_or_else(|| ApiError::not_found("coupon", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("DELETE", [id]) => {
            db.get_kind("coupon", id)
                .ok_or_else(|| ApiError::not_found("coupon", id))?;
            if let Some(st) = db.objects.get_mut(*id) {
                st.deleted = true;
            }
            emit(db, ctx, "coupon.deleted", id, None);
            Ok(Out::Raw(
                json!({"id": id, "object": "coupon", "deleted": true}),
            ))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/coupons/{}", segs.join("/")),
        )),
    }
}

/// Creates Discount objects for `discounts[i][coupon]` entries.
fn make_discounts(
    db: &mut Db,
    p: &Value,
    customer: &str,
    invoice: Option<&str>,
    subscription: Option<&str>,
    cur: Currency,
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (i, d) in params::hash_list(p, "discounts")?.into_iter().enumerate() {
        let param = format!("discounts[{i}][coupon]");
        let Some(coupon_id) = d
            .get("coupon")
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
        else {
            if d.contains_key("discount") || d.contains_key("promotion_code") {
                return Err(ApiError::invalid_nocode(
                    "The simulator supports only discounts[][coupon].",
                    Some(&format!("discounts[{i}]")),
                ));
            }
            return Err(ApiError::missing(&param));
        };
        let coupon = db
            .get_kind("coupon", coupon_id)
            .cloned()
            .ok_or_else(|| ApiError::missing_ref("coupon", coupon_id, &param))?;
        if coupon["valid"] != json!(true) {
            return Err(ApiError::invalid_nocode(
                format!("Coupon expired: {coupon_id}"),
                Some(&param),
            ));
        }
        if let Some(c) = coupon["currency"].as_str()
            && c != cur.as_str()
        {
            return Err(ApiError::invalid_nocode(
                format!(
                    "The coupon currency ({c}) must match the currency ({}).",
                    cur.as_str()
                ),
                Some(&param),
            ));
        }
        let id = db.new_id("di");
        let now = db.now();
        db.insert("discount", &id, json!({
            "id": id, "object": "discount", "checkout_session": null, "customer": customer, "customer_account": null,
            "end": null, "invoice": invoice, "invoice_item": null, "promotion_code": null,
            "source": {"coupon": coupon_id, "type": "coupon"}, "start": now, "subscription": subscription,
            "subscription_item": null,
        }));
        if let Some(c) = db.get_kind_mut("coupon", coupon_id) {
            let n = c["times_redeemed"].as_i64().unwrap_or(0) + 1;
            c["times_redeemed"] = json!(n);
        }
        out.push(id);
    }
    Ok(out)
}

fn tax_rate_ids(db: &Db, p: &Value, key: &str) -> Result<Vec<String>, ApiError> {
    let ids = params::str_list(p, key)?.unwrap_or_default();
    for (i, id) in ids.iter().enumerate() {
        let tr = need_ref(db, "tax_rate", id, &format!("{key}[{i}]"))?;
        if tr["active"] == json!(false) {
            return Err(ApiError::invalid_nocode(
                format!("Tax rate {id} is inactive."),
                Some(&format!("{key}[{i}]")),
            ));
        }
    }
    Ok(ids)
}

/// Stripe fixes a customer's `currency` at its first invoice or subscription.
fn set_customer_currency(db: &mut Db, ctx: &Ctx, customer: &str, cur: Currency) {
    let Some(old) = db.get_kind("customer", customer).cloned() else {
        return;
    };
    if !old["currency"].is_null() {
        return;
    }
    if let Some(c) = db.get_kind_mut("customer", customer) {
        c["currency"] = json!(cur.as_str());
    }
    emit(db, ctx, "customer.updated", customer, Some(old));
}

// ---------------------------------------------------------------- invoice items

fn line_from_item(db: &mut Db, item: &Value, invoice: &str) -> Value {
    let id = db.new_id("il");
    json!({
        "id": id, "object": "line_item", "amount": item["amount"], "currency": item["currency"],
        "description": item["description"], "discount_amounts": [], "discountable": item["discountable"],
        "discounts": [], "invoice": invoice, "livemode": item["livemode"], "metadata": item["metadata"],
        "parent": {
            "invoice_item_details": {"invoice_item": item["id"], "proration": false, "proration_details": {"credited_items": null}, "subscription": null},
            "subscription_item_details": null, "type": "invoice_item_details",
        },
        "period": item["period"], "pretax_credit_amounts": [], "pricing": item["pricing"],
        "quantity": item["quantity"], "quantity_decimal": item["quantity"].as_i64().map(|q| q.to_string()), "subscription": null, "subtotal": item["amount"], "taxes": [],
        "_tax_rates": item["_tax_rates"],
    })
}

pub(crate) fn invoice_items(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "customer",
                    "amount",
                    "currency",
                    "description",
                    "invoice",
                    "metadata",
                    "period",
                    "price",
                    "pricing",
                    "quantity",
                    "unit_amount_decimal",
                    "discountable",
                    "tax_rates",
                    "tax_behavior",
                    "subscription",
                    "discounts",
                ],
            )?;
            let customer = params::req_s(p, "customer")?;
            need_ref(db, "customer", customer, "customer")?;
            let price_id = s(p, "price")
                .or_else(|| params::path(p, &["pricing", "price"]).and_then(Value::as_str));
            let quantity = params::int(p, "quantity")?.unwrap_or(1);
            if quantity < 0 {
                return Err(ApiError::invalid_nocode(
                    "Quantity must be non-negative.",
                    Some("quantity"),
                ));
            }
            let (amount, cur, unit_dec, price_product) = match price_id {
                Some(pid) => {
                    if s(p, "amount").is_some() {
                        return Err(ApiError::invalid_nocode(
                            "You may only specify one of these parameters: amount, price.",
                            None,
                        ));
                    }
                    let price = need_ref(db, "price", pid, "pricing[price]")?;
                    let unit = price["unit_amount"].as_i64().unwrap_or(0);
                    (
                        unit * quantity,
                        cur_of(price),
                        price["unit_amount_decimal"].clone(),
                        Some((pid.to_string(), price["product"].clone())),
                    )
                }
                None => {
                    let cur = params::currency(p, "currency")?;
                    match (params::int(p, "amount")?, s(p, "unit_amount_decimal")) {
                        (Some(a), _) => {
                            let c = cur.ok_or_else(|| ApiError::missing("currency"))?;
                            (a, c, json!(a.to_string()), None)
                        }
                        (None, Some(u)) => {
                            let c = cur.ok_or_else(|| ApiError::missing("currency"))?;
                            let unit: i64 = u.parse().map_err(|_| {
                                ApiError::invalid_nocode(
                                    "The simulator only supports whole unit_amount_decimal values.",
                                    Some("unit_amount_decimal"),
                                )
                            })?;
                            (unit * quantity, c, json!(u), None)
                        }
                        (None, None) => {
                            return Err(ApiError::invalid_nocode(
                                "You must specify either `amount`, `unit_amount_decimal`, or `pricing[price]`.",
                                None,
                            ));
                        }
                    }
                }
            };
            if amount % cur.amount_step() != 0 {
                params::check_amount(amount.abs(), cur, "amount", true)?;
            }
            let invoice = match s(p, "invoice") {
                Some(inv) => {
                    let iv = need_ref(db, "invoice", inv, "invoice")?;
                    if iv["status"] != "draft" {
                        return Err(ApiError::invalid(
                            "invoice_not_editable",
                            format!(
                                "You can only add invoice items to draft invoices. Invoice {inv} has status {}.",
                                iv["status"].as_str().unwrap_or("")
                            ),
                            Some("invoice"),
                        ));
                    }
                    if iv["customer"] != json!(customer) {
                        return Err(ApiError::invalid_nocode(
                            format!("The invoice {inv} does not belong to customer {customer}."),
                            Some("invoice"),
                        ));
                    }
                    if iv["currency"] != json!(cur.as_str()) {
                        return Err(ApiError::invalid_nocode(
                            format!(
                                "The currency of the invoice item ({}) must match the currency of the invoice ({}).",
                                cur.as_str(),
                                iv["currency"].as_str().unwrap_or("")
                            ),
                            Some("currency"),
                        ));
                    }
                    Some(inv.to_string())
                }
                None => None,
            };
            let tax_rates = tax_rate_ids(db, p, "tax_rates")?;
            let now = db.now();
            let period = json!({
                "end": params::int_at(params::path(p, &["period", "end"]), "period[end]")?.unwrap_or(now),
                "start": params::int_at(params::path(p, &["period", "start"]), "period[start]")?.unwrap_or(now),
            });
            let description = match (s(p, "description"), &price_product) {
                (Some(d), _) => json!(d),
                (None, Some((_, prod))) => prod
                    .as_str()
                    .and_then(|pid| db.get_kind("product", pid))
                    .map(|pr| pr["name"].clone())
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            };
            let pricing = json!({
                "price_details": price_product.as_ref().map(|(pid, prod)| json!({"price": pid, "product": prod})),
                "type": "price_details",
                "unit_amount_decimal": unit_dec,
            });
            let id = db.new_id("ii");
            let tr_objs: Vec<Value> = tax_rates
                .iter()
                .filter_map(|t| db.get_kind("tax_rate", t))
                .cloned()
                .collect();
            let item = json!({
                "id": id, "object": "invoiceitem", "amount": amount, "currency": cur.as_str(), "customer": customer,
                "customer_account": null, "date": now, "description": description,
                "discountable": params::boolean(p, "discountable")?.unwrap_or(true), "discounts": [],
                "invoice": invoice, "livemode": ctx.livemode, "metadata": params::metadata(p)?, "net_amount": amount,
                "parent": null, "period": period, "pricing": pricing, "proration": false, "quantity": quantity, "quantity_decimal": quantity.to_string(),
                "tax_rates": tr_objs, "test_clock": null, "_tax_rates": tax_rates,
            });
            db.insert("invoiceitem", &id, item.clone());
            emit(db, ctx, "invoiceitem.created", &id, None);
            if let Some(inv) = invoice {
                let old = db.get_kind("invoice", &inv).cloned();
                let line = line_from_item(db, &item, &inv);
                if let Some(iv) = db.get_kind_mut("invoice", &inv)
                    && let Some(a) = iv["_lines"].as_array_mut()
                {
                    a.push(line);
                }
                recompute(db, &inv);
                emit(db, ctx, "invoice.updated", &inv, old);
            }
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "created",
                    "customer",
                    "invoice",
                    "pending",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let customer = s(p, "customer").map(str::to_string);
            let invoice = s(p, "invoice").map(str::to_string);
            let pending = params::boolean(p, "pending")?;
            list_kind(db, "invoiceitem", "/v1/invoiceitems", p, |v| {
                Ok(customer.as_ref().is_none_or(|c| v["customer"] == json!(c))
                    && invoice.as_ref().is_none_or(|c| v["invoice"] == json!(c))
                    && pending.is_none_or(|pd| v["invoice"].is_null() == pd))
            })
        }
        ("GET", [id]) => match db.get(id) {
            Some(st) if st.kind == "invoiceitem" => Ok(Out::Obj(id.to_string())),
            _ => Err(ApiError::not_found("invoiceitem", id)),
        },
        ("DELETE", [id]) => {
            let item = db
                .get_kind("invoiceitem", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("invoiceitem", id))?;
            if let Some(inv) = item["invoice"].as_str() {
                let old = db.get_kind("invoice", inv).cloned();
                if old.as_ref().is_some_and(|o| o["status"] != "draft") {
                    return Err(ApiError::invalid(
                        "invoice_not_editable",
                        "This invoice item is attached to an invoice that is no longer editable.",
                        None,
                    ));
                }
                if let Some(iv) = db.get_kind_mut("invoice", inv)
                    && let Some(a) = iv["_lines"].as_array_mut()
                {
                    a.retain(|l| l["parent"]["invoice_item_details"]["invoice_item"] != json!(id));
                }
                recompute(db, inv);
                emit(db, ctx, "invoice.updated", inv, old);
            }
            if let Some(st) = db.objects.get_mut(*id) {
                st.deleted = true;
            }
            emit(db, ctx, "invoiceitem.deleted", id, None);
            Ok(Out::Raw(
                json!({"id": id, "object": "invoiceitem", "deleted": true}),
            ))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/invoiceitems/{}", segs.join("/")),
        )),
    }
}

// ---------------------------------------------------------------- invoices

/// Recomputes line discounts, taxes and all invoice totals from `_lines`.
pub(crate) fn recompute(db: &mut Db, inv_id: &str) {
    let Some(inv) = db.get_kind("invoice", inv_id).cloned() else {
        return;
    };
    let cur = cur_of(&inv);
    let mut lines: Vec<Value> = inv["_lines"].as_array().cloned().unwrap_or_default();
    let n = lines.len();
    let amounts: Vec<i64> = lines
        .iter()
        .map(|l| l["amount"].as_i64().unwrap_or(0))
        .collect();
    let discountable: Vec<bool> = lines
        .iter()
        .map(|l| l["discountable"] != json!(false))
        .collect();
    let mut line_disc: Vec<Vec<Value>> = vec![Vec::new(); n];
    let mut line_disc_total = vec![0i64; n];
    let mut total_discount_amounts = Vec::new();
    for di in inv["discounts"].as_array().cloned().unwrap_or_default() {
        let Some(di_id) = di.as_str() else { continue };
        let Some(coupon) = db
            .get_kind("discount", di_id)
            .and_then(|d| d["source"]["coupon"].as_str())
            .and_then(|c| db.get_kind("coupon", c))
        else {
            continue;
        };
        let base: i64 = (0..n)
            .filter(|&i| discountable[i])
            .map(|i| (amounts[i] - line_disc_total[i]).max(0))
            .sum();
        let d = if let Some(pct) = coupon["_pct_e4"].as_i64() {
            round_step(
                round_div(i128::from(base) * i128::from(pct), 1_000_000),
                cur,
            )
        } else {
            coupon["amount_off"].as_i64().unwrap_or(0).min(base)
        };
        // Allocate proportionally; the last discountable line takes the remainder.
        let idx: Vec<usize> = (0..n)
            .filter(|&i| discountable[i] && amounts[i] - line_disc_total[i] > 0)
            .collect();
        let mut left = d;
        for (k, &i) in idx.iter().enumerate() {
            let share = if k + 1 == idx.len() {
                left
            } else {
                round_step(
                    round_div(
                        i128::from(d) * i128::from(amounts[i] - line_disc_total[i]),
                        i128::from(base.max(1)),
                    ),
                    cur,
                )
                .min(left)
            };
            left -= share;
            line_disc_total[i] += share;
            line_disc[i].push(json!({"amount": share, "discount": di_id}));
        }
        total_discount_amounts.push(json!({"amount": d, "discount": di_id}));
    }
    let default_rates: Vec<String> = inv["default_tax_rates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    let mut totals: Vec<(String, i64, i64, bool)> = Vec::new();
    let (mut excl, mut incl) = (0i64, 0i64);
    for i in 0..n {
        let own: Vec<String> = lines[i]["_tax_rates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        let rates = if own.is_empty() {
            default_rates.clone()
        } else {
            own
        };
        let base = amounts[i] - line_disc_total[i];
        let mut taxes = Vec::new();
        for r in rates {
            let Some(tr) = db.get_kind("tax_rate", &r) else {
                continue;
            };
            let pct = tr["_pct_e4"].as_i64().unwrap_or(0);
            let inclusive = tr["inclusive"] == json!(true);
            let (tax, taxable) = if inclusive {
                let taxable = round_div(i128::from(base) * 1_000_000, 1_000_000 + i128::from(pct));
                let tax = round_step(base - taxable, cur);
                (tax, base - tax)
            } else {
                (
                    round_step(
                        round_div(i128::from(base) * i128::from(pct), 1_000_000),
                        cur,
                    ),
                    base,
                )
            };
            if inclusive {
                incl += tax
            } else {
                excl += tax
            }
            taxes.push(json!({
                "amount": tax, "tax_behavior": if inclusive { "inclusive" } else { "exclusive" },
                "tax_rate_details": {"tax_rate": r}, "taxability_reason": "not_available",
                "taxable_amount": taxable, "type": "tax_rate_details",
            }));
            match totals.iter_mut().find(|t| t.0 == r) {
                Some(t) => {
                    t.1 += tax;
                    t.2 += taxable;
                }
                None => totals.push((r.clone(), tax, taxable, inclusive)),
            }
        }
        lines[i]["discount_amounts"] = json!(line_disc[i]);
        lines[i]["discounts"] = json!(
            line_disc[i]
                .iter()
                .map(|d| d["discount"].clone())
                .collect::<Vec<_>>()
        );
        lines[i]["taxes"] = json!(taxes);
        lines[i]["subtotal"] = json!(amounts[i]);
    }
    let subtotal: i64 = amounts.iter().sum();
    let discount: i64 = line_disc_total.iter().sum();
    let total = subtotal - discount + excl;
    let Some(iv) = db.get_kind_mut("invoice", inv_id) else {
        return;
    };
    let paid = iv["amount_paid"].as_i64().unwrap_or(0);
    iv["subtotal"] = json!(subtotal);
    iv["subtotal_excluding_tax"] = json!(subtotal - incl);
    iv["total_discount_amounts"] = json!(total_discount_amounts);
    iv["total_excluding_tax"] = json!(subtotal - discount - incl);
    iv["total"] = json!(total);
    iv["total_taxes"] = json!(totals.iter().map(|(r, a, t, inc)| json!({
        "amount": a, "tax_behavior": if *inc { "inclusive" } else { "exclusive" }, "tax_rate_details": {"tax_rate": r},
        "taxability_reason": "not_available", "taxable_amount": t, "type": "tax_rate_details",
    })).collect::<Vec<_>>());
    // Pre-payment credit notes lower what is due (never below zero).
    let pre_credited = iv["pre_payment_credit_notes_amount"].as_i64().unwrap_or(0);
    let due = (total - pre_credited).max(0);
    iv["amount_due"] = json!(due);
    iv["amount_remaining"] = json!((due - paid).max(0));
    iv["ending_balance"] = Value::Null;
    let shown: Vec<Value> = lines.iter().take(10).cloned().collect();
    iv["lines"] = json!({"object": "list", "data": shown, "has_more": n > 10, "total_count": n, "url": format!("/v1/invoices/{inv_id}/lines")});
    iv["_lines"] = json!(lines);
}

struct NewInvoice<'a> {
    customer: &'a str,
    currency: Currency,
    billing_reason: &'a str,
    collection_method: &'a str,
    days_until_due: Option<i64>,
    subscription: Option<&'a str>,
    default_tax_rates: Vec<String>,
    description: Value,
    metadata: Value,
    auto_advance: bool,
    period: (i64, i64),
    default_payment_method: Value,
}

fn new_invoice(db: &mut Db, ctx: &Ctx, n: NewInvoice<'_>) -> String {
    let id = db.new_id("in");
    let now = db.now();
    let cust = db
        .get_kind("customer", n.customer)
        .cloned()
        .unwrap_or(Value::Null);
    let parent = match n.subscription {
        Some(sub) => {
            json!({"quote_details": null, "subscription_details": {"metadata": {}, "subscription": sub}, "type": "subscription_details"})
        }
        None => Value::Null,
    };
    db.insert("invoice", &id, json!({
        "id": id, "object": "invoice", "account_country": "US", "account_name": "Simulated SaaS Inc.",
        "account_tax_ids": null, "amount_due": 0, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": 0,
        "amount_shipping": 0, "application": null, "attempt_count": 0, "attempted": false,
        "auto_advance": n.auto_advance,
        "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
        "automatically_finalizes_at": if n.auto_advance { json!(now + 3600) } else { Value::Null },
        "billing_reason": n.billing_reason, "collection_method": n.collection_method, "created": now,
        "currency": n.currency.as_str(), "custom_fields": null, "customer": n.customer, "customer_account": null,
        "customer_address": cust["address"], "customer_email": cust["email"], "customer_name": cust["name"],
        "customer_phone": cust["phone"], "customer_shipping": null, "customer_tax_exempt": cust["tax_exempt"],
        "customer_tax_ids": [], "default_payment_method": n.default_payment_method, "default_source": null,
        "default_tax_rates": n.default_tax_rates, "description": n.description, "discounts": [],
        "due_date": null, "effective_at": null, "ending_balance": null, "footer": null, "from_invoice": null,
        "hosted_invoice_url": null, "invoice_pdf": null, "issuer": {"type": "self"}, "last_finalization_error": null,
        "latest_revision": null, "lines": {"object": "list", "data": [], "has_more": false, "total_count": 0, "url": format!("/v1/invoices/{id}/lines")},
        "livemode": ctx.livemode, "metadata": n.metadata, "next_payment_attempt": null, "number": null,
        "on_behalf_of": null, "parent": parent,
        "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
        "period_end": n.period.1, "period_start": n.period.0, "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0, "receipt_number": null, "rendering": null, "shipping_cost": null,
        "shipping_details": null, "starting_balance": 0, "statement_descriptor": null, "status": "draft",
        "status_transitions": {"finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null},
        "subtotal": 0, "subtotal_excluding_tax": 0, "test_clock": null, "total": 0, "total_discount_amounts": [],
        "total_excluding_tax": 0, "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": null,
        "_lines": [], "_charge": null, "_payment_intent": null, "_subscription": n.subscription,
        "_days_until_due": n.days_until_due,
    }));
    id
}

/// draft → open: number, PaymentIntent and default InvoicePayment; zero invoices go to paid.
fn finalize(db: &mut Db, ctx: &Ctx, inv_id: &str) -> Result<(), ApiError> {
    let inv = db
        .get_kind("invoice", inv_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("invoice", inv_id))?;
    if inv["status"] != "draft" {
        return Err(ApiError::invalid(
            "invoice_not_editable",
            "This invoice is already finalized, you can't re-finalize a non-draft invoice."
                .to_string(),
            None,
        ));
    }
    let customer = inv["customer"].as_str().unwrap_or("").to_string();
    let (prefix, seq) = match db.get_kind_mut("customer", &customer) {
        Some(c) => {
            let seq = c["next_invoice_sequence"].as_i64().unwrap_or(1);
            c["next_invoice_sequence"] = json!(seq + 1);
            (
                c["invoice_prefix"].as_str().unwrap_or("SIM").to_string(),
                seq,
            )
        }
        None => ("SIM".to_string(), 1),
    };
    let now = db.now();
    let acct = db.account_id.clone();
    let amount_due = inv["amount_due"].as_i64().unwrap_or(0);
    let cur = cur_of(&inv);
    let pi = if amount_due > 0 {
        let desc = match inv["billing_reason"].as_str() {
            Some("subscription_create") => json!("Subscription creation"),
            Some("subscription_cycle") => json!("Subscription update"),
            _ => Value::Null,
        };
        Some(payments::new_pi(
            db,
            ctx,
            amount_due,
            cur,
            json!(customer),
            desc,
            json!({}),
            Some(inv_id),
        ))
    } else {
        None
    };
    let token = db.new_id("test");
    {
        let Some(iv) = db.get_kind_mut("invoice", inv_id) else {
            return Ok(());
        };
        iv["status"] = json!("open");
        iv["number"] = json!(format!("{prefix}-{seq:04}"));
        iv["status_transitions"]["finalized_at"] = json!(now);
        iv["effective_at"] = json!(now);
        iv["automatically_finalizes_at"] = Value::Null;
        iv["webhooks_delivered_at"] = json!(now);
        iv["hosted_invoice_url"] =
            json!(format!("https://invoice.stripe.com/i/{acct}/{token}?s=ap"));
        iv["invoice_pdf"] = json!(format!(
            "https://pay.stripe.com/invoice/{acct}/{token}/pdf?s=ap"
        ));
        if iv["collection_method"] == "send_invoice" {
            let days = iv["_days_until_due"].as_i64().unwrap_or(30);
            iv["due_date"] = json!(now + days * 86_400);
        } else if pi.is_some() && iv["auto_advance"] == json!(true) {
            iv["next_payment_attempt"] = json!(now + 3600);
        }
        iv["_payment_intent"] = json!(pi);
    }
    if let Some(pi) = &pi {
        let ip = db.new_id("inpay");
        db.insert("invoice_payment", &ip, json!({
            "id": ip, "object": "invoice_payment", "amount_paid": null, "amount_requested": amount_due, "created": now,
            "currency": cur.as_str(), "invoice": inv_id, "is_default": true, "livemode": ctx.livemode,
            "payment": {"payment_intent": pi, "type": "payment_intent"}, "status": "open",
            "status_transitions": {"canceled_at": null, "paid_at": null},
        }));
    }
    emit(db, ctx, "invoice.finalized", inv_id, None);
    if let Some(pi) = &pi {
        emit(db, ctx, "payment_intent.created", pi, None);
    } else {
        // Nothing to collect: Stripe marks zero-amount invoices paid at finalization.
        if let Some(iv) = db.get_kind_mut("invoice", inv_id) {
            iv["status"] = json!("paid");
            iv["status_transitions"]["paid_at"] = json!(now);
            iv["next_payment_attempt"] = Value::Null;
        }
        emit(db, ctx, "invoice.paid", inv_id, None);
        emit(db, ctx, "invoice.payment_succeeded", inv_id, None);
    }
    Ok(())
}

/// Outcome of a payment attempt on an invoice.
pub(crate) enum PayOutcome {
    Paid,
    Declined { pi: String, charge: String },
}

fn default_pm(db: &Db, inv: &Value) -> Option<String> {
    if let Some(pm) = inv["default_payment_method"].as_str() {
        return Some(pm.to_string());
    }
    if let Some(sub) = inv["_subscription"]
        .as_str()
        .and_then(|s| db.get_kind("subscription", s))
        && let Some(pm) = sub["default_payment_method"].as_str()
    {
        return Some(pm.to_string());
    }
    inv["customer"]
        .as_str()
        .and_then(|c| db.get_kind("customer", c))
        .and_then(|c| {
            c["invoice_settings"]["default_payment_method"]
                .as_str()
                .map(str::to_string)
        })
}

fn pay(
    db: &mut Db,
    ctx: &Ctx,
    inv_id: &str,
    pm_param: Option<&str>,
    out_of_band: bool,
) -> Result<PayOutcome, ApiError> {
    let inv = db
        .get_kind("invoice", inv_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("invoice", inv_id))?;
    match inv["status"].as_str() {
        Some("draft") => {
            finalize(db, ctx, inv_id)?;
            return pay(db, ctx, inv_id, pm_param, out_of_band);
        }
        Some("paid") => return Err(ApiError::invalid_nocode("Invoice is already paid", None)),
        Some("void") => {
            return Err(ApiError::invalid_nocode(
                "This invoice has been voided and can no longer be paid.",
                None,
            ));
        }
        _ => {}
    }
    let now = db.now();
    let amount_due = inv["amount_due"].as_i64().unwrap_or(0);
    let pi_id = inv["_payment_intent"].as_str().map(str::to_string);
    if out_of_band {
        let old = inv.clone();
        if let Some(iv) = db.get_kind_mut("invoice", inv_id) {
            iv["status"] = json!("paid");
            iv["amount_paid"] = json!(amount_due);
            iv["amount_remaining"] = json!(0);
            iv["status_transitions"]["paid_at"] = json!(now);
            iv["next_payment_attempt"] = Value::Null;
            iv["_paid_out_of_band"] = json!(true);
        }
        for ip in db.ids_of("invoice_payment") {
            if let Some(x) = db.get_kind_mut("invoice_payment", &ip)
                && x["invoice"] == json!(inv_id)
                && x["status"] == "open"
            {
                x["status"] = json!("canceled");
                x["status_transitions"]["canceled_at"] = json!(now);
            }
        }
        if let Some(pi) = &pi_id
            && let Some(x) = db.get_kind_mut("payment_intent", pi)
        {
            x["status"] = json!("canceled");
            x["canceled_at"] = json!(now);
        }
        emit(db, ctx, "invoice.updated", inv_id, Some(old));
        emit(db, ctx, "invoice.paid", inv_id, None);
        return Ok(PayOutcome::Paid);
    }
    let Some(pi_id) = pi_id else {
        return Err(ApiError::invalid_nocode(
            "This invoice has nothing to collect.",
            None,
        ));
    };
    let pm = match pm_param {
        Some(pm) => payments::resolve_pm(db, ctx, pm, "payment_method", false)?,
        None => default_pm(db, &inv).ok_or_else(|| {
            ApiError::invalid_nocode(
                "This customer has no attached payment source or default payment method. Please consider adding a default payment method. For more information, visit https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority.",
                None,
            )
        })?,
    };
    let (charge, ok) = payments::confirm(
        db,
        ctx,
        Confirm {
            pi_id: &pi_id,
            pm_id: &pm,
            invoice: Some(inv_id),
        },
    )?;
    let attempts = inv["attempt_count"].as_i64().unwrap_or(0) + 1;
    if ok {
        if let Some(iv) = db.get_kind_mut("invoice", inv_id) {
            iv["status"] = json!("paid");
            iv["amount_paid"] = json!(amount_due);
            iv["amount_remaining"] = json!(0);
            iv["attempted"] = json!(true);
            iv["attempt_count"] = json!(attempts);
            iv["status_transitions"]["paid_at"] = json!(now);
            iv["next_payment_attempt"] = Value::Null;
            iv["_charge"] = json!(charge);
        }
        let mut inpay = None;
        for ip in db.ids_of("invoice_payment") {
            if let Some(x) = db.get_kind_mut("invoice_payment", &ip)
                && x["invoice"] == json!(inv_id)
                && x["payment"]["payment_intent"] == json!(pi_id)
            {
                x["status"] = json!("paid");
                x["amount_paid"] = json!(amount_due);
                x["status_transitions"]["paid_at"] = json!(now);
                inpay = Some(ip.clone());
            }
        }
        emit(db, ctx, "invoice.paid", inv_id, None);
        emit(db, ctx, "invoice.payment_succeeded", inv_id, None);
        if let Some(ip) = inpay {
            emit(db, ctx, "invoice_payment.paid", &ip, None);
        }
        Ok(PayOutcome::Paid)
    } else {
        if let Some(iv) = db.get_kind_mut("invoice", inv_id) {
            iv["attempted"] = json!(true);
            iv["attempt_count"] = json!(attempts);
            iv["_charge"] = json!(charge);
        }
        emit(db, ctx, "invoice.payment_failed", inv_id, None);
        Ok(PayOutcome::Declined { pi: pi_id, charge })
    }
}

pub(crate) fn invoices(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "customer",
                    "currency",
                    "auto_advance",
                    "collection_method",
                    "days_until_due",
                    "default_payment_method",
                    "default_tax_rates",
                    "description",
                    "discounts",
                    "metadata",
                    "pending_invoice_items_behavior",
                    "footer",
                    "due_date",
                    "subscription",
                    "custom_fields",
                    "statement_descriptor",
                ],
            )?;
            let customer = params::req_s(p, "customer")?.to_string();
            let cust = need_ref(db, "customer", &customer, "customer")?.clone();
            let cur = params::currency(p, "currency")?
                .or_else(|| {
                    cust["currency"]
                        .as_str()
                        .and_then(|c| Currency::parse(c).ok())
                })
                .unwrap_or(ctx.account_currency);
            let cm = s(p, "collection_method").unwrap_or("charge_automatically");
            if !["charge_automatically", "send_invoice"].contains(&cm) {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid collection_method: must be one of charge_automatically or send_invoice",
                    Some("collection_method"),
                ));
            }
            let due = params::int(p, "days_until_due")?;
            if cm == "send_invoice" && due.is_none() && s(p, "due_date").is_none() {
                return Err(ApiError::invalid_nocode(
                    "Missing required param: days_until_due or due_date when collection_method=send_invoice.",
                    Some("days_until_due"),
                ));
            }
            if cm == "charge_automatically" && due.is_some() {
                return Err(ApiError::invalid_nocode(
                    "You cannot set `days_until_due` when `collection_method` is `charge_automatically`.",
                    Some("days_until_due"),
                ));
            }
            let pending = s(p, "pending_invoice_items_behavior").unwrap_or("exclude");
            if !["exclude", "include"].contains(&pending) {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid pending_invoice_items_behavior: must be one of exclude or include",
                    Some("pending_invoice_items_behavior"),
                ));
            }
            if s(p, "subscription").is_some() {
                return Err(ApiError::invalid_nocode(
                    "The simulator does not support creating invoices for a subscription manually.",
                    Some("subscription"),
                ));
            }
            let rates = tax_rate_ids(db, p, "default_tax_rates")?;
            let dpm = match s(p, "default_payment_method") {
                Some(pm) => json!(payments::resolve_pm(
                    db,
                    ctx,
                    pm,
                    "default_payment_method",
                    false
                )?),
                None => Value::Null,
            };
            let now = db.now();
            let id = new_invoice(
                db,
                ctx,
                NewInvoice {
                    customer: &customer,
                    currency: cur,
                    billing_reason: "manual",
                    collection_method: cm,
                    days_until_due: due,
                    subscription: None,
                    default_tax_rates: rates,
                    description: s(p, "description").map(|d| json!(d)).unwrap_or(Value::Null),
                    metadata: json!(params::metadata(p)?),
                    auto_advance: params::boolean(p, "auto_advance")?.unwrap_or(false),
                    period: (now, now),
                    default_payment_method: dpm,
                },
            );
            let discounts = match make_discounts(db, p, &customer, Some(&id), None, cur) {
                Ok(d) => d,
                Err(e) => {
                    db.objects.remove(&id);
                    return Err(e);
                }
            };
            if let Some(iv) = db.get_kind_mut("invoice", &id) {
                iv["discounts"] = json!(discounts);
            }
            if pending == "include" {
                let items: Vec<Value> = db
                    .ids_of("invoiceitem")
                    .into_iter()
                    .rev()
                    .filter_map(|ii| db.get_kind("invoiceitem", &ii).cloned())
                    .filter(|it| {
                        it["customer"] == json!(customer)
                            && it["invoice"].is_null()
                            && it["currency"] == json!(cur.as_str())
                    })
                    .collect();
                for it in items {
                    let line = line_from_item(db, &it, &id);
                    if let Some(x) = db.get_kind_mut("invoiceitem", it["id"].as_str().unwrap_or(""))
                    {
                        x["invoice"] = json!(id);
                    }
                    if let Some(iv) = db.get_kind_mut("invoice", &id)
                        && let Some(a) = iv["_lines"].as_array_mut()
                    {
                        a.push(line);
                    }
                }
            }
            recompute(db, &id);
            emit(db, ctx, "invoice.created", &id, None);
            set_customer_currency(db, ctx, &customer, cur);
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "collection_method",
                    "created",
                    "customer",
                    "due_date",
                    "status",
                    "subscription",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let customer = s(p, "customer").map(str::to_string);
            let status = s(p, "status").map(str::to_string);
            let sub = s(p, "subscription").map(str::to_string);
            let cm = s(p, "collection_method").map(str::to_string);
            list_kind(db, "invoice", "/v1/invoices", p, |v| {
                Ok(customer.as_ref().is_none_or(|c| v["customer"] == json!(c))
                    && status.as_ref().is_none_or(|c| v["status"] == json!(c))
                    && sub.as_ref().is_none_or(|c| v["_subscription"] == json!(c))
                    && cm
                        .as_ref()
                        .is_none_or(|c| v["collection_method"] == json!(c)))
            })
        }
        ("GET", [id]) => match db.get(id) {
            Some(st) if st.kind == "invoice" => Ok(Out::Obj(id.to_string())),
            _ => Err(ApiError::not_found("invoice", id)),
        },
        ("GET", [id, "lines"]) => {
            allow(p, &["limit", "starting_after", "ending_before"])?;
            let inv = db
                .get_kind("invoice", id)
                .ok_or_else(|| ApiError::not_found("invoice", id))?;
            let lines: Vec<Value> = inv["_lines"].as_array().cloned().unwrap_or_default();
            let ids: Vec<String> = lines
                .iter()
                .filter_map(|l| l["id"].as_str().map(str::to_string))
                .collect();
            let page = page_params(p)?;
            let (sel, more) = paginate(&ids, &page, "line_item")?;
            let data: Vec<Value> = sel
                .iter()
                .filter_map(|lid| lines.iter().find(|l| l["id"] == json!(lid)))
                .map(|l| crate::render::render(db, "line_item", l, &ctx.version))
                .collect();
            Ok(Out::Raw(crate::render::list_envelope(
                &format!("/v1/invoices/{id}/lines"),
                data,
                more,
            )))
        }
        ("POST", [id, "finalize"]) => {
            allow(p, &["auto_advance"])?;
            db.get_kind("invoice", id)
                .ok_or_else(|| ApiError::not_found("invoice", id))?;
            finalize(db, ctx, id)?;
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id, "pay"]) => {
            allow(
                p,
                &[
                    "payment_method",
                    "paid_out_of_band",
                    "forgive",
                    "off_session",
                    "source",
                    "mandate",
                ],
            )?;
            db.get_kind("invoice", id)
                .ok_or_else(|| ApiError::not_found("invoice", id))?;
            let oob = params::boolean(p, "paid_out_of_band")?.unwrap_or(false);
            match pay(db, ctx, id, s(p, "payment_method"), oob)? {
                PayOutcome::Paid => Ok(Out::Obj(id.to_string())),
                PayOutcome::Declined { pi, charge } => {
                    Err(payments::decline_error(db, ctx, &pi, &charge))
                }
            }
        }
        ("POST", [id, "void"]) => {
            let inv = db
                .get_kind("invoice", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("invoice", id))?;
            let st = inv["status"].as_str().unwrap_or("");
            if st != "open" && st != "uncollectible" {
                return Err(ApiError::invalid(
                    "invoice_not_editable",
                    format!(
                        "You can only void open or uncollectible invoices. This invoice is {st}."
                    ),
                    None,
                ));
            }
            let now = db.now();
            if let Some(iv) = db.get_kind_mut("invoice", id) {
                iv["status"] = json!("void");
                iv["status_transitions"]["voided_at"] = json!(now);
                iv["amount_remaining"] = json!(0);
                iv["next_payment_attempt"] = Value::Null;
            }
            for ip in db.ids_of("invoice_payment") {
                if let Some(x) = db.get_kind_mut("invoice_payment", &ip)
                    && x["invoice"] == json!(id)
                    && x["status"] == "open"
                {
                    x["status"] = json!("canceled");
                    x["status_transitions"]["canceled_at"] = json!(now);
                }
            }
            let pi = inv["_payment_intent"].as_str().map(str::to_string);
            if let Some(pi) = &pi
                && let Some(x) = db.get_kind_mut("payment_intent", pi)
            {
                x["status"] = json!("canceled");
                x["canceled_at"] = json!(now);
                x["cancellation_reason"] = json!("void_invoice");
            }
            emit(db, ctx, "invoice.voided", id, None);
            if let Some(pi) = pi {
                emit(db, ctx, "payment_intent.canceled", &pi, None);
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id, "mark_uncollectible"]) => {
            let inv = db
                .get_kind("invoice", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("invoice", id))?;
            if inv["status"] != "open" {
                return Err(ApiError::invalid(
                    "invoice_not_editable",
                    format!(
                        "You can only mark open invoices as uncollectible. This invoice is {}.",
                        inv["status"].as_str().unwrap_or("")
                    ),
                    None,
                ));
            }
            let now = db.now();
            if let Some(iv) = db.get_kind_mut("invoice", id) {
                iv["status"] = json!("uncollectible");
                iv["status_transitions"]["marked_uncollectible_at"] = json!(now);
            }
            emit(db, ctx, "invoice.marked_uncollectible", id, None);
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id]) => {
            allow(
                p,
                &[
                    "description",
                    "metadata",
                    "default_tax_rates",
                    "auto_advance",
                    "footer",
                    "default_payment_method",
                ],
            )?;
            let old = db
                .get_kind("invoice", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("invoice", id))?;
            let draft = old["status"] == "draft";
            let only_meta = p
                .as_object()
                .is_some_and(|m| m.keys().all(|k| k == "metadata" || k == "expand"));
            if !draft && !only_meta {
                return Err(ApiError::invalid(
                    "invoice_not_editable",
                    "You can only update metadata on a finalized invoice.",
                    None,
                ));
            }
            let rates = if p.get("default_tax_rates").is_some() {
                Some(tax_rate_ids(db, p, "default_tax_rates")?)
            } else {
                None
            };
            let auto = params::boolean(p, "auto_advance")?;
            if let Some(iv) = db.get_kind_mut("invoice", id) {
                if let Some(d) = p.get("description").and_then(Value::as_str) {
                    iv["description"] = if d.is_empty() { Value::Null } else { json!(d) };
                }
                if let Some(r) = rates {
                    iv["default_tax_rates"] = json!(r);
                }
                if let Some(a) = auto {
                    iv["auto_advance"] = json!(a);
                }
                if let Some(m) = iv["metadata"].as_object_mut() {
                    params::merge_metadata(m, p)?;
                }
            }
            recompute(db, id);
            let new = db.get_kind("invoice", id).cloned();
            if new.as_ref() != Some(&old) {
                emit(db, ctx, "invoice.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("DELETE", [id]) => {
            let inv = db
                .get_kind("invoice", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("invoice", id))?;
            if inv["status"] != "draft" {
                return Err(ApiError::invalid(
                    "invoice_not_editable",
                    "You can only delete draft invoices.",
                    None,
                ));
            }
            for ii in db.ids_of("invoiceitem") {
                if let Some(x) = db.get_kind_mut("invoiceitem", &ii)
                    && x["invoice"] == json!(id)
                {
                    x["invoice"] = Value::Null;
                }
            }
            if let Some(st) = db.objects.get_mut(*id) {
                st.deleted = true;
            }
            emit(db, ctx, "invoice.deleted", id, None);
            Ok(Out::Raw(
                json!({"id": id, "object": "invoice", "deleted": true}),
            ))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/invoices/{}", segs.join("/")),
        )),
    }
}

pub(crate) fn invoice_payments(db: &mut Db, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("GET", []) => {
            allow(
                p,
                &[
                    "invoice",
                    "payment",
                    "status",
                    "created",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let inv = s(p, "invoice").map(str::to_string);
            let status = s(p, "status").map(str::to_string);
            let pay_pi = params::path(p, &["payment", "payment_intent"])
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(t) = params::path(p, &["payment", "type"]).and_then(Value::as_str)
                && !["payment_intent", "payment_record"].contains(&t)
            {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid payment[type]: must be one of payment_intent or payment_record",
                    Some("payment[type]"),
                ));
            }
            list_kind(db, "invoice_payment", "/v1/invoice_payments", p, |v| {
                Ok(inv.as_ref().is_none_or(|c| v["invoice"] == json!(c))
                    && status.as_ref().is_none_or(|c| v["status"] == json!(c))
                    && pay_pi
                        .as_ref()
                        .is_none_or(|c| v["payment"]["payment_intent"] == json!(c)))
            })
        }
        ("GET", [id]) => {
            db.get_kind("invoice_payment", id)
                .ok_or_else(|| ApiError::not_found("invoice_payment", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/invoice_payments/{}", segs.join("/")),
        )),
    }
}

// ---------------------------------------------------------------- subscriptions

/// Builds the invoice for the subscription's current period, finalizes and pays it.
fn bill_subscription(
    db: &mut Db,
    ctx: &Ctx,
    sub_id: &str,
    reason: &str,
) -> Result<(String, PayOutcome), ApiError> {
    let sub = db
        .get_kind("subscription", sub_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("subscription", sub_id))?;
    let items: Vec<Value> = sub["items"]["data"].as_array().cloned().unwrap_or_default();
    let first = items.first().cloned().unwrap_or(Value::Null);
    let period = (
        first["current_period_start"].as_i64().unwrap_or(0),
        first["current_period_end"].as_i64().unwrap_or(0),
    );
    let cur = cur_of(&sub);
    let customer = sub["customer"].as_str().unwrap_or("").to_string();
    let rates: Vec<String> = sub["_default_tax_rates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    let inv = new_invoice(
        db,
        ctx,
        NewInvoice {
            customer: &customer,
            currency: cur,
            billing_reason: reason,
            collection_method: sub["collection_method"]
                .as_str()
                .unwrap_or("charge_automatically"),
            days_until_due: sub["days_until_due"].as_i64(),
            subscription: Some(sub_id),
            default_tax_rates: rates,
            description: Value::Null,
            metadata: json!({}),
            auto_advance: true,
            period,
            default_payment_method: Value::Null,
        },
    );
    let mut lines = Vec::new();
    for it in &items {
        let price_id = it["price"].as_str().unwrap_or("");
        let Some(price) = db.get_kind("price", price_id).cloned() else {
            continue;
        };
        let qty = it["quantity"].as_i64().unwrap_or(1);
        let unit = price["unit_amount"].as_i64().unwrap_or(0);
        let pc = cur_of(&price);
        let prod_name = price["product"]
            .as_str()
            .and_then(|p| db.get_kind("product", p))
            .and_then(|p| p["name"].as_str())
            .unwrap_or("")
            .to_string();
        let interval = price["recurring"]["interval"].as_str().unwrap_or("month");
        let lid = db.new_id("il");
        lines.push(json!({
            "id": lid, "object": "line_item", "amount": unit * qty, "currency": pc.as_str(),
            "description": format!("{qty} × {prod_name} (at {} / {interval})", format_amount(unit, pc)),
            "discount_amounts": [], "discountable": true, "discounts": [], "invoice": inv, "livemode": ctx.livemode,
            "metadata": {},
            "parent": {
                "invoice_item_details": null,
                "subscription_item_details": {"invoice_item": null, "proration": false, "proration_details": {"credited_items": null}, "subscription": sub_id, "subscription_item": it["id"]},
                "type": "subscription_item_details",
            },
            "period": {"end": it["current_period_end"], "start": it["current_period_start"]},
            "pretax_credit_amounts": [], "pricing": {"price_details": {"price": price_id, "product": price["product"]}, "type": "price_details", "unit_amount_decimal": price["unit_amount_decimal"]},
            "quantity": qty, "quantity_decimal": qty.to_string(), "subscription": sub_id, "subtotal": unit * qty, "taxes": [], "_tax_rates": it["_tax_rates"],
        }));
    }
    let discounts = sub["discounts"].clone();
    if let Some(iv) = db.get_kind_mut("invoice", &inv) {
        iv["_lines"] = json!(lines);
        iv["discounts"] = discounts;
    }
    recompute(db, &inv);
    emit(db, ctx, "invoice.created", &inv, None);
    finalize(db, ctx, &inv)?;
    let paid_now = db
        .get_kind("invoice", &inv)
        .is_some_and(|i| i["status"] == "paid");
    if paid_now || sub["collection_method"] == "send_invoice" {
        return Ok((inv, PayOutcome::Paid));
    }
    let outcome = pay(db, ctx, &inv, None, false)?;
    Ok((inv, outcome))
}

pub(crate) fn subscriptions(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "customer",
                    "items",
                    "default_payment_method",
                    "default_tax_rates",
                    "discounts",
                    "metadata",
                    "collection_method",
                    "days_until_due",
                    "payment_behavior",
                    "description",
                    "currency",
                    "off_session",
                    "proration_behavior",
                ],
            )?;
            let customer = params::req_s(p, "customer")?.to_string();
            need_ref(db, "customer", &customer, "customer")?;
            let items = params::hash_list(p, "items")?;
            if items.is_empty() {
                return Err(ApiError::missing("items"));
            }
            let behavior = s(p, "payment_behavior").unwrap_or("allow_incomplete");
            if ![
                "allow_incomplete",
                "error_if_incomplete",
                "default_incomplete",
                "pending_if_incomplete",
            ]
            .contains(&behavior)
            {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid payment_behavior",
                    Some("payment_behavior"),
                ));
            }
            let cm = s(p, "collection_method").unwrap_or("charge_automatically");
            let due = params::int(p, "days_until_due")?;
            if cm == "send_invoice" && due.is_none() {
                return Err(ApiError::missing("days_until_due"));
            }
            let mut prices = Vec::new();
            for (i, it) in items.iter().enumerate() {
                let param = format!("items[{i}][price]");
                let pid = it
                    .get("price")
                    .and_then(Value::as_str)
                    .filter(|x| !x.is_empty())
                    .ok_or_else(|| ApiError::missing(&param))?;
                let price = need_ref(db, "price", pid, &param)?.clone();
                if price["type"] != "recurring" {
                    return Err(ApiError::invalid_nocode(
                        "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
                        Some(&param),
                    ));
                }
                if price["active"] == json!(false) {
                    return Err(ApiError::invalid_nocode(
                        "The price specified is inactive. This field only accepts active prices."
                            .to_string(),
                        Some(&param),
                    ));
                }
                let qty = params::int_at(it.get("quantity"), &format!("items[{i}][quantity]"))?
                    .unwrap_or(1);
                let rates: Vec<String> = match it.get("tax_rates").and_then(Value::as_array) {
                    Some(a) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                    None => Vec::new(),
                };
                for r in &rates {
                    need_ref(db, "tax_rate", r, &format!("items[{i}][tax_rates]"))?;
                }
                prices.push((price, qty, rates));
            }
            let first = &prices[0].0;
            let cur = cur_of(first);
            for (pr, _, _) in &prices[1..] {
                if cur_of(pr) != cur
                    || pr["recurring"]["interval"] != first["recurring"]["interval"]
                    || pr["recurring"]["interval_count"] != first["recurring"]["interval_count"]
                {
                    return Err(ApiError::invalid_nocode(
                        "Currency and interval fields must match across all plans on this subscription.",
                        Some("items"),
                    ));
                }
            }
            let dpm = match s(p, "default_payment_method") {
                Some(pm) => {
                    let id = payments::resolve_pm(db, ctx, pm, "default_payment_method", false)?;
                    Value::String(id)
                }
                None => Value::Null,
            };
            let rates = tax_rate_ids(db, p, "default_tax_rates")?;
            let sub_id = db.new_id("sub");
            let now = db.now();
            let end = period_end(now, &first["recurring"]);
            let mut si = Vec::new();
            for (pr, qty, r) in &prices {
                let sid = db.new_id("si");
                si.push(json!({
                    "id": sid, "object": "subscription_item", "billing_thresholds": null, "created": now,
                    "current_period_end": end, "current_period_start": now, "discounts": [], "metadata": {},
                    "price": pr["id"], "quantity": qty, "subscription": sub_id,
                    "tax_rates": r.iter().filter_map(|t| db.get_kind("tax_rate", t)).cloned().collect::<Vec<_>>(),
                    "_tax_rates": r,
                }));
            }
            let discounts = make_discounts(db, p, &customer, None, Some(&sub_id), cur)?;
            let rate_objs: Vec<Value> = rates
                .iter()
                .filter_map(|t| db.get_kind("tax_rate", t))
                .cloned()
                .collect();
            db.insert("subscription", &sub_id, json!({
                "id": sub_id, "object": "subscription", "application": null, "application_fee_percent": null,
                "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
                "billing_cycle_anchor": now, "billing_cycle_anchor_config": null, "billing_mode": {"type": "classic"},
                "billing_schedules": [], "billing_thresholds": null, "cancel_at": null, "cancel_at_period_end": false, "canceled_at": null,
                "cancellation_details": {"comment": null, "feedback": null, "reason": null},
                "collection_method": cm, "created": now, "currency": cur.as_str(), "customer": customer,
                "customer_account": null, "days_until_due": due, "default_payment_method": dpm, "default_source": null,
                "default_tax_rates": rate_objs, "description": s(p, "description"), "discounts": discounts,
                "ended_at": null, "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
                "items": {"object": "list", "data": si, "has_more": false, "total_count": prices.len(), "url": format!("/v1/subscription_items?subscription={sub_id}")},
                "latest_invoice": null, "livemode": ctx.livemode, "managed_payments": {"enabled": false}, "metadata": params::metadata(p)?,
                "next_pending_invoice_item_invoice": null, "on_behalf_of": null, "pause_collection": null,
                "payment_settings": {"payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off"},
                "pending_invoice_item_interval": null, "pending_setup_intent": null, "pending_update": null,
                "schedule": null, "start_date": now, "status": "incomplete", "test_clock": null, "transfer_data": null,
                "trial_end": null, "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
                "trial_start": null, "_default_tax_rates": rates,
            }));
            set_customer_currency(db, ctx, &customer, cur);
            emit(db, ctx, "customer.subscription.created", &sub_id, None);
            let old = db.get_kind("subscription", &sub_id).cloned();
            let (inv, outcome) = bill_subscription(db, ctx, &sub_id, "subscription_create")?;
            let status = match (&outcome, cm) {
                (_, "send_invoice") => "active",
                (PayOutcome::Paid, _) => "active",
                (PayOutcome::Declined { .. }, _) => "incomplete",
            };
            if let Some(sv) = db.get_kind_mut("subscription", &sub_id) {
                sv["latest_invoice"] = json!(inv);
                sv["status"] = json!(status);
            }
            emit(db, ctx, "customer.subscription.updated", &sub_id, old);
            if let (PayOutcome::Declined { pi, charge }, "error_if_incomplete") =
                (&outcome, behavior)
            {
                return Err(payments::decline_error(db, ctx, pi, charge));
            }
            Ok(Out::Obj(sub_id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "customer",
                    "price",
                    "status",
                    "created",
                    "collection_method",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let customer = s(p, "customer").map(str::to_string);
            let status = s(p, "status").map(str::to_string);
            let price = s(p, "price").map(str::to_string);
            list_kind(db, "subscription", "/v1/subscriptions", p, |v| {
                let st = v["status"].as_str().unwrap_or("");
                let status_ok = match status.as_deref() {
                    None => st != "canceled",
                    Some("all") => true,
                    Some(x) => st == x,
                };
                Ok(status_ok
                    && customer.as_ref().is_none_or(|c| v["customer"] == json!(c))
                    && price.as_ref().is_none_or(|pr| {
                        v["items"]["data"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|i| i["price"] == json!(pr)))
                    }))
            })
        }
        ("GET", [id]) => {
            db.get_kind("subscription", id)
                .ok_or_else(|| ApiError::not_found("subscription", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("DELETE", [id]) => {
            allow(p, &["invoice_now", "prorate", "cancellation_details"])?;
            let old = db
                .get_kind("subscription", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("subscription", id))?;
            if old["status"] == "canceled" {
                return Err(ApiError::invalid_nocode(
                    "A canceled subscription can only update its cancellation_details and metadata.".to_string(),
                    None,
                ));
            }
            let now = db.now();
            if let Some(sv) = db.get_kind_mut("subscription", id) {
                sv["status"] = json!("canceled");
                sv["canceled_at"] = json!(now);
                sv["ended_at"] = json!(now);
                sv["cancellation_details"]["reason"] = json!("cancellation_requested");
            }
            emit(db, ctx, "customer.subscription.deleted", id, None);
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/subscriptions/{}", segs.join("/")),
        )),
    }
}

/// Sim-only: bills the next period of an active subscription now (`subscription_cycle`).
pub(crate) fn renew(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &[])?;
    let old = db
        .get_kind("subscription", id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("subscription", id))?;
    if old["status"] != "active" && old["status"] != "past_due" {
        return Err(ApiError::invalid_nocode(
            format!(
                "Only active subscriptions can be renewed (status is {}).",
                old["status"].as_str().unwrap_or("")
            ),
            None,
        ));
    }
    if let Some(sv) = db.get_kind_mut("subscription", id)
        && let Some(items) = sv["items"]["data"].as_array_mut()
    {
        for it in items.iter_mut() {
            let start = it["current_period_end"].as_i64().unwrap_or(0);
            it["current_period_start"] = json!(start);
            it["_period_start"] = json!(start);
        }
    }
    // Period ends need the price's interval.
    let items: Vec<Value> = db
        .get_kind("subscription", id)
        .map(|s| s["items"]["data"].clone())
        .and_then(|d| d.as_array().cloned())
        .unwrap_or_default();
    let mut ends = Vec::new();
    for it in &items {
        let rec = it["price"]
            .as_str()
            .and_then(|p| db.get_kind("price", p))
            .map(|p| p["recurring"].clone())
            .unwrap_or(Value::Null);
        ends.push(period_end(
            it["current_period_start"].as_i64().unwrap_or(0),
            &rec,
        ));
    }
    if let Some(sv) = db.get_kind_mut("subscription", id)
        && let Some(a) = sv["items"]["data"].as_array_mut()
    {
        for (it, end) in a.iter_mut().zip(ends) {
            it["current_period_end"] = json!(end);
            if let Some(m) = it.as_object_mut() {
                m.remove("_period_start");
            }
        }
    }
    let (inv, outcome) = bill_subscription(db, ctx, id, "subscription_cycle")?;
    let status = match outcome {
        PayOutcome::Paid => "active",
        PayOutcome::Declined { .. } => "past_due",
    };
    if let Some(sv) = db.get_kind_mut("subscription", id) {
        sv["latest_invoice"] = json!(inv);
        sv["status"] = json!(status);
    }
    emit(db, ctx, "customer.subscription.updated", id, Some(old));
    Ok(Out::Obj(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_formatting() {
        // 2026-01-31T00:00:00Z + 1 month = 2026-02-28
        let jan31 = days_from_civil(2026, 1, 31) * 86_400;
        assert_eq!(
            civil_from_days(add_months(jan31, 1) / 86_400),
            (2026, 2, 28)
        );
        assert_eq!(
            civil_from_days(add_months(jan31, 12) / 86_400),
            (2027, 1, 31)
        );
        assert_eq!(format_amount(2000, Currency::USD), "$20.00");
        assert_eq!(format_amount(500_000, Currency::JPY), "¥500,000");
        assert_eq!(format_amount(12_340, Currency::KWD), "KWD 12.340");
    }
}
