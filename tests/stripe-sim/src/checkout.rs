//! Checkout Sessions (mode=payment) and the sim-only completion endpoint that pays one.

use mlc_core::Currency;
use serde_json::{Value, json};

use crate::api::{Ctx, Out, R, list_kind, need_ref};
use crate::error::ApiError;
use crate::events::emit;
use crate::params::{self, allow, s};
use crate::payments::{self, Confirm};
use crate::render::{self, page_params, paginate};
use crate::state::Db;

pub(crate) fn sessions(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "mode",
                    "line_items",
                    "customer",
                    "customer_email",
                    "success_url",
                    "cancel_url",
                    "metadata",
                    "client_reference_id",
                    "payment_method_types",
                    "payment_intent_data",
                    "customer_creation",
                    "allow_promotion_codes",
                    "ui_mode",
                    "submit_type",
                    "locale",
                    "return_url",
                    "expires_at",
                    "billing_address_collection",
                    "currency",
                ],
            )?;
            let mode = params::req_s(p, "mode")?;
            match mode {
                "payment" => {}
                "subscription" | "setup" => {
                    return Err(ApiError::invalid_nocode(
                        format!("The simulator supports only mode=payment (got {mode})."),
                        Some("mode"),
                    ));
                }
                _ => {
                    return Err(ApiError::invalid(
                        "parameter_invalid_string",
                        "Invalid mode: must be one of payment, setup, or subscription",
                        Some("mode"),
                    ));
                }
            }
            let items = params::hash_list(p, "line_items")?;
            if items.is_empty() {
                return Err(ApiError::invalid_nocode(
                    "`line_items` is required in `payment` mode.",
                    Some("line_items"),
                ));
            }
            let mut lines = Vec::new();
            let mut cur: Option<Currency> = None;
            let mut subtotal = 0i64;
            for (i, it) in items.iter().enumerate() {
                let param = format!("line_items[{i}][price]");
                if it.contains_key("price_data") {
                    return Err(ApiError::invalid_nocode(
                        "The simulator supports only line_items[][price].",
                        Some(&format!("line_items[{i}][price_data]")),
                    ));
                }
                let pid = it
                    .get("price")
                    .and_then(Value::as_str)
                    .filter(|x| !x.is_empty())
                    .ok_or_else(|| ApiError::missing(&param))?;
                let price = need_ref(db, "price", pid, &param)?.clone();
                if price["type"] != "one_time" {
                    return Err(ApiError::invalid_nocode(
                        "You must provide at least one recurring price in `subscription` mode when using prices.",
                        Some(&param),
                    ));
                }
                if price["active"] == json!(false) {
                    return Err(ApiError::invalid_nocode(
                        format!("The price `{pid}` is not active."),
                        Some(&param),
                    ));
                }
                let qty =
                    params::int_at(it.get("quantity"), &format!("line_items[{i}][quantity]"))?
                        .ok_or_else(|| ApiError::missing(&format!("line_items[{i}][quantity]")))?;
                if !(1..=999_999).contains(&qty) {
                    return Err(ApiError::invalid_nocode(
                        "Quantity must be between 1 and 999999.",
                        Some(&format!("line_items[{i}][quantity]")),
                    ));
                }
                let pc = price["currency"]
                    .as_str()
                    .and_then(|c| Currency::parse(c).ok())
                    .unwrap_or(Currency::USD);
                if cur.is_some_and(|c| c != pc) {
                    return Err(ApiError::invalid_nocode(
                        "All prices on a Checkout Session must use the same currency.",
                        Some(&param),
                    ));
                }
                cur = Some(pc);
                let amount = price["unit_amount"].as_i64().unwrap_or(0) * qty;
                subtotal += amount;
                let name = price["product"]
                    .as_str()
                    .and_then(|x| db.get_kind("product", x))
                    .map(|x| x["name"].clone())
                    .unwrap_or(Value::Null);
                let li = db.new_id("li");
                lines.push(json!({
                    "id": li, "object": "item", "amount_discount": 0, "amount_subtotal": amount, "amount_tax": 0,
                    "amount_total": amount, "currency": pc.as_str(), "description": name, "price": pid, "quantity": qty,
                }));
            }
            let cur = cur.unwrap_or(ctx.account_currency);
            let customer = match s(p, "customer") {
                Some(c) => {
                    need_ref(db, "customer", c, "customer")?;
                    json!(c)
                }
                None => Value::Null,
            };
            if customer.is_string() && s(p, "customer_email").is_some() {
                return Err(ApiError::invalid_nocode(
                    "You may only specify one of these parameters: customer, customer_email.",
                    None,
                ));
            }
            let raw = db.new_id("cs_test_a1");
            let id = raw.replacen("cs_test_a1_", "cs_test_a1", 1);
            let now = db.now();
            let pid_meta = params::path(p, &["payment_intent_data", "metadata"])
                .cloned()
                .unwrap_or(json!({}));
            let pid_desc = params::path(p, &["payment_intent_data", "description"])
                .cloned()
                .unwrap_or(Value::Null);
            db.insert("checkout.session", &id, json!({
                "id": id, "object": "checkout.session", "adaptive_pricing": {"enabled": false}, "after_expiration": null,
                "allow_promotion_codes": params::boolean(p, "allow_promotion_codes")?, "amount_subtotal": subtotal,
                "amount_total": subtotal,
                "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
                "billing_address_collection": s(p, "billing_address_collection"), "cancel_url": s(p, "cancel_url"),
                "client_reference_id": s(p, "client_reference_id"), "client_secret": null, "collected_information": null,
                "consent": null, "consent_collection": null, "created": now, "currency": cur.as_str(),
                "currency_conversion": null, "custom_fields": [],
                "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
                "customer": customer, "customer_creation": if customer.is_null() { json!("if_required") } else { Value::Null },
                "customer_details": null, "customer_email": s(p, "customer_email"), "discounts": [],
                "expires_at": params::int(p, "expires_at")?.unwrap_or(now + 86_400), "invoice": null,
                "invoice_creation": {"enabled": false, "invoice_data": {"account_tax_ids": null, "custom_fields": null, "description": null, "footer": null, "issuer": null, "metadata": {}, "rendering_options": null}},
                "livemode": ctx.livemode, "locale": s(p, "locale"), "metadata": params::metadata(p)?, "mode": "payment",
                "payment_intent": null, "payment_link": null, "payment_method_collection": "if_required",
                "payment_method_configuration_details": null,
                "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
                "payment_method_types": ["card"], "payment_status": "unpaid", "phone_number_collection": {"enabled": false},
                "recovered_from": null, "saved_payment_method_options": null, "setup_intent": null,
                "shipping_address_collection": null, "shipping_cost": null, "shipping_options": [], "status": "open",
                "submit_type": s(p, "submit_type"), "subscription": null, "success_url": s(p, "success_url"),
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}, "ui_mode": "hosted",
                "url": format!("https://checkout.stripe.com/c/pay/{id}"),
                "_line_items": lines, "_pi_metadata": pid_meta, "_pi_description": pid_desc,
            }));
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "payment_intent",
                    "customer",
                    "status",
                    "created",
                    "payment_link",
                    "subscription",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let pi = s(p, "payment_intent").map(str::to_string);
            let customer = s(p, "customer").map(str::to_string);
            let status = s(p, "status").map(str::to_string);
            list_kind(db, "checkout.session", "/v1/checkout/sessions", p, |v| {
                Ok(pi.as_ref().is_none_or(|x| v["payment_intent"] == json!(x))
                    && customer.as_ref().is_none_or(|x| v["customer"] == json!(x))
                    && status.as_ref().is_none_or(|x| v["status"] == json!(x)))
            })
        }
        ("GET", [id]) => {
            db.get_kind("checkout.session", id)
                .ok_or_else(|| ApiError::not_found("checkout.session", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("GET", [id, "line_items"]) => {
            allow(p, &["limit", "starting_after", "ending_before"])?;
            let sess = db
                .get_kind("checkout.session", id)
                .ok_or_else(|| ApiError::not_found("checkout.session", id))?;
            let items: Vec<Value> = sess["_line_items"].as_array().cloned().unwrap_or_default();
            let ids: Vec<String> = items
                .iter()
                .filter_map(|l| l["id"].as_str().map(str::to_string))
                .collect();
            let (sel, more) = paginate(&ids, &page_params(p)?, "line_item")?;
            let mut data: Value = json!(
                sel.iter()
                    .filter_map(|lid| items.iter().find(|l| l["id"] == json!(lid)).cloned())
                    .collect::<Vec<_>>()
            );
            render::render_session_items(db, &mut data, &ctx.version);
            let data = data.as_array().cloned().unwrap_or_default();
            Ok(Out::Raw(render::list_envelope(
                &format!("/v1/checkout/sessions/{id}/line_items"),
                data,
                more,
            )))
        }
        ("POST", [id, "expire"]) => {
            let sess = db
                .get_kind("checkout.session", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("checkout.session", id))?;
            if sess["status"] != "open" {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
                        sess["status"].as_str().unwrap_or("")
                    ),
                    None,
                ));
            }
            if let Some(x) = db.get_kind_mut("checkout.session", id) {
                x["status"] = json!("expired");
                x["url"] = Value::Null;
            }
            emit(db, ctx, "checkout.session.expired", id, None);
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/checkout/sessions/{}", segs.join("/")),
        )),
    }
}

/// Sim-only `POST /_sim/checkout/sessions/{id}/complete`: the customer pays on the hosted page.
/// `payment_method` (default `pm_card_visa`), `email`, `name`.
pub(crate) fn complete(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &["payment_method", "email", "name"])?;
    let sess = db
        .get_kind("checkout.session", id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("checkout.session", id))?;
    if sess["status"] != "open" {
        return Err(ApiError::invalid_nocode(
            format!(
                "This Checkout Session is no longer open (status {}).",
                sess["status"].as_str().unwrap_or("")
            ),
            None,
        ));
    }
    let cur = sess["currency"]
        .as_str()
        .and_then(|c| Currency::parse(c).ok())
        .unwrap_or(Currency::USD);
    let amount = sess["amount_total"].as_i64().unwrap_or(0);
    let pi = match sess["payment_intent"].as_str() {
        Some(pi) => pi.to_string(),
        None => {
            let pi = payments::new_pi(
                db,
                ctx,
                amount,
                cur,
                sess["customer"].clone(),
                sess["_pi_description"].clone(),
                sess["_pi_metadata"].clone(),
                None,
            );
            if let Some(x) = db.get_kind_mut("checkout.session", id) {
                x["payment_intent"] = json!(pi);
            }
            emit(db, ctx, "payment_intent.created", &pi, None);
            pi
        }
    };
    let pm_token = s(p, "payment_method").unwrap_or("pm_card_visa");
    let pm = payments::resolve_pm(db, ctx, pm_token, "payment_method", false)?;
    let email = s(p, "email").map(str::to_string).or_else(|| {
        sess["customer_email"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                sess["customer"]
                    .as_str()
                    .and_then(|c| db.get_kind("customer", c))
                    .and_then(|c| c["email"].as_str().map(str::to_string))
            })
    });
    let (charge, ok) = payments::confirm(
        db,
        ctx,
        Confirm {
            pi_id: &pi,
            pm_id: &pm,
            invoice: None,
        },
    )?;
    if !ok {
        return Err(payments::decline_error(db, ctx, &pi, &charge));
    }
    if let Some(ch) = db.get_kind_mut("charge", &charge) {
        ch["billing_details"]["email"] = json!(email);
        ch["billing_details"]["name"] = json!(s(p, "name"));
    }
    if let Some(x) = db.get_kind_mut("checkout.session", id) {
        x["status"] = json!("complete");
        x["payment_status"] = json!("paid");
        x["url"] = Value::Null;
        x["customer_details"] = json!({
            "address": {"city": null, "country": "US", "line1": null, "line2": null, "postal_code": "94107", "state": null},
            "business_name": null, "email": email, "individual_name": null, "name": s(p, "name"), "phone": null,
            "tax_exempt": "none", "tax_ids": [],
        });
    }
    emit(db, ctx, "checkout.session.completed", id, None);
    Ok(Out::Obj(id.to_string()))
}
