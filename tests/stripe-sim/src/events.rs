//! Events (snapshots frozen at creation, rendered per API version) and webhook endpoints.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::Shared;
use crate::api::{Ctx, Out};
use crate::error::ApiError;
use crate::params::{self, allow, s};
use crate::render::{self, page_params, paginate};
use crate::state::{ApiVersion, Db};

/// Event types a webhook endpoint may subscribe to (a subset of Stripe's list).
pub(crate) const KNOWN_TYPES: &[&str] = &[
    "balance.available",
    "charge.captured",
    "charge.dispute.closed",
    "charge.dispute.created",
    "charge.dispute.funds_reinstated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.updated",
    "charge.expired",
    "charge.failed",
    "charge.pending",
    "charge.refund.updated",
    "charge.refunded",
    "charge.succeeded",
    "charge.updated",
    "checkout.session.async_payment_failed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.completed",
    "checkout.session.expired",
    "coupon.created",
    "coupon.deleted",
    "coupon.updated",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
    "customer.created",
    "customer.deleted",
    "customer.updated",
    "customer.discount.created",
    "customer.discount.deleted",
    "customer.discount.updated",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.updated",
    "invoice.created",
    "invoice.deleted",
    "invoice.finalization_failed",
    "invoice.finalized",
    "invoice.marked_uncollectible",
    "invoice.overdue",
    "invoice.overpaid",
    "invoice.paid",
    "invoice.payment_action_required",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.sent",
    "invoice.upcoming",
    "invoice.updated",
    "invoice.voided",
    "invoice.will_be_due",
    "invoice_payment.paid",
    "invoiceitem.created",
    "invoiceitem.deleted",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.created",
    "payment_intent.partially_funded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    "payment_method.attached",
    "payment_method.detached",
    "payout.canceled",
    "payout.created",
    "payout.failed",
    "payout.paid",
    "payout.reconciliation_completed",
    "payout.updated",
    "plan.created",
    "plan.deleted",
    "plan.updated",
    "price.created",
    "price.deleted",
    "price.updated",
    "product.created",
    "product.deleted",
    "product.updated",
    "refund.created",
    "refund.failed",
    "refund.updated",
    "tax_rate.created",
    "tax_rate.updated",
];

/// Records an event for the object `obj_id` (snapshot of its current internal state).
/// `prev` is the internal state before an update, for `previous_attributes`.
pub(crate) fn emit(db: &mut Db, ctx: &Ctx, ty: &str, obj_id: &str, prev: Option<Value>) {
    let Some(stored) = db.get(obj_id) else { return };
    let kind = stored.kind;
    let snapshot = if stored.deleted {
        json!({"id": obj_id, "object": kind, "deleted": true})
    } else {
        stored.v.clone()
    };
    let endpoints: Vec<String> = db
        .ids_of("webhook_endpoint")
        .into_iter()
        .filter(|id| {
            db.get_kind("webhook_endpoint", id).is_some_and(|ep| {
                ep["status"] == "enabled"
                    && ep["enabled_events"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|t| t == "*" || t == ty))
            })
        })
        .rev()
        .collect();
    let id = db.new_id("evt");
    let ev = json!({
        "id": id,
        "object": "event",
        "api_version": ctx.account_version.as_str(),
        "created": db.now(),
        "data": {"object": snapshot},
        "livemode": ctx.livemode,
        "pending_webhooks": endpoints.len(),
        "request": if ctx.automatic {
            json!({"id": null, "idempotency_key": null})
        } else {
            json!({"id": ctx.req_id, "idempotency_key": ctx.idem_key})
        },
        "type": ty,
        "_kind": kind,
        "_prev": prev.unwrap_or(Value::Null),
        "_endpoints": endpoints,
        "_delivered": [],
        "_failed": [],
    });
    db.insert("event", &id, ev);
    db.new_events.push(id);
}

/// Top-level keys whose values differ; keys absent before are `null` (as Stripe shows them).
fn previous_attributes(old: &Value, new: &Value) -> Value {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return Value::Null;
    };
    let mut out = Map::new();
    for (k, nv) in n {
        match o.get(k) {
            Some(ov) if ov == nv => {}
            Some(ov) => {
                if let (Some(om), Some(nm)) = (ov.as_object(), nv.as_object())
                    && k == "metadata"
                {
                    let mut diff = Map::new();
                    for (mk, mv) in nm {
                        if om.get(mk) != Some(mv) {
                            diff.insert(mk.clone(), om.get(mk).cloned().unwrap_or(Value::Null));
                        }
                    }
                    for (mk, mv) in om {
                        if !nm.contains_key(mk) {
                            diff.insert(mk.clone(), mv.clone());
                        }
                    }
                    out.insert(k.clone(), Value::Object(diff));
                    continue;
                }
                out.insert(k.clone(), ov.clone());
            }
            None => {
                out.insert(k.clone(), Value::Null);
            }
        }
    }
    Value::Object(out)
}

/// Renders a stored event in `version` (a webhook endpoint's), or in the version it was
/// created in (the Events API never re-renders).
pub(crate) fn render_event(db: &Db, ev: &Value, version: Option<&ApiVersion>) -> Value {
    let stored_version = ev["api_version"]
        .as_str()
        .and_then(ApiVersion::parse)
        .unwrap_or_default();
    let version = version.cloned().unwrap_or(stored_version);
    let kind = ev["_kind"].as_str().unwrap_or("");
    let obj = &ev["data"]["object"];
    let rendered = if obj.get("deleted").is_some() {
        obj.clone()
    } else {
        render::render(db, kind, obj, &version)
    };
    let mut data = json!({"object": rendered});
    if !ev["_prev"].is_null() {
        let old = render::render(db, kind, &ev["_prev"], &version);
        data["previous_attributes"] = previous_attributes(&old, &data["object"]);
    }
    json!({
        "id": ev["id"],
        "object": "event",
        "api_version": version.as_str(),
        "created": ev["created"],
        "data": data,
        "livemode": ev["livemode"],
        "pending_webhooks": ev["pending_webhooks"],
        "request": ev["request"],
        "type": ev["type"],
    })
}

fn update_event(shared: &Arc<Shared>, event_id: &str, f: impl FnOnce(&mut Value)) {
    let mut db = shared.db();
    if let Some(ev) = db.get_kind_mut("event", event_id) {
        f(ev);
    }
}

pub(crate) fn mark_delivered(shared: &Arc<Shared>, event_id: &str, endpoint_id: &str) {
    update_event(shared, event_id, |ev| {
        let Some(d) = ev["_delivered"].as_array_mut() else {
            return;
        };
        if !d.iter().any(|x| x == endpoint_id) {
            d.push(json!(endpoint_id));
        }
        let delivered = d.len();
        let total = ev["_endpoints"].as_array().map(Vec::len).unwrap_or(0);
        ev["pending_webhooks"] = json!(total.saturating_sub(delivered));
    });
}

pub(crate) fn mark_failed(shared: &Arc<Shared>, event_id: &str, endpoint_id: &str) {
    update_event(shared, event_id, |ev| {
        if let Some(f) = ev["_failed"].as_array_mut()
            && !f.iter().any(|x| x == endpoint_id)
        {
            f.push(json!(endpoint_id));
        }
    });
}

/// Delivery jobs for events created since the last call.
pub(crate) fn drain_jobs(db: &mut Db) -> Vec<(String, String)> {
    let ids = std::mem::take(&mut db.new_events);
    let mut jobs = Vec::new();
    for id in ids {
        if let Some(ev) = db.get_kind("event", &id) {
            for ep in ev["_endpoints"].as_array().into_iter().flatten() {
                if let Some(ep) = ep.as_str() {
                    jobs.push((id.clone(), ep.to_string()));
                }
            }
        }
    }
    jobs
}

fn created_filter(p: &Value, created: i64) -> Result<bool, ApiError> {
    range_matches(p, "created", created)
}

/// A timestamp filter such as `created` or `arrival_date`: an exact value or a range
/// (`key[gt|gte|lt|lte]`).
pub(crate) fn range_matches(p: &Value, key: &str, value: i64) -> Result<bool, ApiError> {
    let created = value;
    match p.get(key) {
        None => Ok(true),
        Some(Value::String(s)) if s.is_empty() => Ok(true),
        Some(Value::String(s)) => {
            let n: i64 = s.parse().map_err(|_| ApiError::invalid_integer(key, s))?;
            Ok(created == n)
        }
        Some(Value::Object(m)) => {
            for (op, v) in m {
                let name = format!("{key}[{op}]");
                let n = params::int_at(Some(v), &name)?.unwrap_or(0);
                let ok = match op.as_str() {
                    "gt" => created > n,
                    "gte" => created >= n,
                    "lt" => created < n,
                    "lte" => created <= n,
                    _ => return Err(ApiError::unknown_param(&name)),
                };
                if !ok {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Some(_) => Err(ApiError::invalid_integer(key, "(array)")),
    }
}

/// `created` filter shared by list endpoints.
pub(crate) fn created_matches(p: &Value, v: &Value) -> Result<bool, ApiError> {
    created_filter(p, v["created"].as_i64().unwrap_or(0))
}

fn type_matches(pattern: &str, ty: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => ty.starts_with(prefix),
        None => pattern == ty,
    }
}

/// `GET /v1/events`.
pub(crate) fn list_events(db: &Db, p: &Value) -> Result<Out, ApiError> {
    allow(
        p,
        &[
            "created",
            "delivery_success",
            "ending_before",
            "limit",
            "starting_after",
            "type",
            "types",
        ],
    )?;
    let page = page_params(p)?;
    let ty = s(p, "type");
    let types = params::str_list(p, "types")?;
    if ty.is_some() && types.is_some() {
        return Err(ApiError::invalid_nocode(
            "You may only specify one of these parameters: type, types.",
            Some("types"),
        ));
    }
    if types.as_ref().is_some_and(|t| t.len() > 20) {
        return Err(ApiError::invalid_nocode(
            "You may pass at most 20 types.",
            Some("types"),
        ));
    }
    let delivery = params::boolean(p, "delivery_success")?;
    let mut ids = Vec::new();
    for id in db.ids_of("event") {
        let Some(ev) = db.get_kind("event", &id) else {
            continue;
        };
        let t = ev["type"].as_str().unwrap_or("");
        if let Some(pat) = ty
            && !type_matches(pat, t)
        {
            continue;
        }
        if let Some(ts) = &types
            && !ts.iter().any(|x| x == t)
        {
            continue;
        }
        if !created_matches(p, ev)? {
            continue;
        }
        if let Some(want) = delivery {
            let failed = ev["_failed"].as_array().is_some_and(|a| !a.is_empty());
            let pending = ev["pending_webhooks"].as_u64().unwrap_or(0) > 0;
            let success = !failed && !pending;
            if success != want {
                continue;
            }
        }
        ids.push(id);
    }
    let (page_ids, has_more) = paginate(&ids, &page, "event")?;
    let data = page_ids
        .iter()
        .filter_map(|id| db.get_kind("event", id))
        .map(|ev| render_event(db, ev, None))
        .collect();
    Ok(Out::Raw(render::list_envelope(
        "/v1/events",
        data,
        has_more,
    )))
}

/// `GET /v1/events/{id}`.
pub(crate) fn get_event(db: &Db, id: &str) -> Result<Out, ApiError> {
    let ev = db
        .get_kind("event", id)
        .ok_or_else(|| ApiError::not_found("event", id))?;
    Ok(Out::Raw(render_event(db, ev, None)))
}

fn validate_events(list: &[String]) -> Result<(), ApiError> {
    if list.is_empty() {
        return Err(ApiError::missing("enabled_events"));
    }
    for (i, t) in list.iter().enumerate() {
        if t != "*" && !KNOWN_TYPES.contains(&t.as_str()) {
            return Err(ApiError::invalid(
                "parameter_invalid_string",
                format!(
                    "Invalid enabled_events[{i}]: must be one of the supported event types or '*' (got '{t}')."
                ),
                Some(&format!("enabled_events[{i}]")),
            ));
        }
    }
    Ok(())
}

fn validate_url(u: &str) -> Result<(), ApiError> {
    let ok =
        (u.starts_with("https://") || u.starts_with("http://")) && u.len() > 10 && !u.contains(' ');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "url_invalid",
            format!("Invalid URL: {u}"),
            Some("url"),
        ))
    }
}

/// Webhook endpoint routes.
pub(crate) fn webhook_endpoints(
    db: &mut Db,
    ctx: &Ctx,
    method: &str,
    segs: &[&str],
    p: &Value,
) -> Result<Out, ApiError> {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "url",
                    "enabled_events",
                    "api_version",
                    "description",
                    "metadata",
                    "connect",
                ],
            )?;
            let url = params::req_s(p, "url")?;
            validate_url(url)?;
            let events = params::str_list(p, "enabled_events")?
                .ok_or_else(|| ApiError::missing("enabled_events"))?;
            validate_events(&events)?;
            let version = match s(p, "api_version") {
                Some(v) => Some(
                    ApiVersion::parse(v)
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "parameter_invalid_string",
                                format!("Invalid API version: {v}"),
                                Some("api_version"),
                            )
                        })?
                        .as_str()
                        .to_string(),
                ),
                None => None,
            };
            if params::boolean(p, "connect")? == Some(true) {
                return Err(ApiError::invalid_nocode(
                    "Connect endpoints are not supported by this account.",
                    Some("connect"),
                ));
            }
            let id = db.new_id("we");
            let secret = db.new_secret("whsec");
            let v = json!({
                "id": id, "object": "webhook_endpoint", "api_version": version, "application": null,
                "created": db.now(), "description": s(p, "description"), "enabled_events": events,
                "livemode": ctx.livemode, "metadata": params::metadata(p)?, "status": "enabled",
                "url": url, "_secret": secret, "_previous_secrets": [],
            });
            db.insert("webhook_endpoint", &id, v.clone());
            // The secret is only ever shown in the creation response.
            let mut out = render::render(db, "webhook_endpoint", &v, &ctx.version);
            out["secret"] = json!(secret);
            Ok(Out::Raw(out))
        }
        ("GET", []) => {
            allow(p, &["limit", "starting_after", "ending_before"])?;
            let page = page_params(p)?;
            let ids = db.ids_of("webhook_endpoint");
            let (ids, more) = paginate(&ids, &page, "webhook_endpoint")?;
            Ok(Out::List {
                url: "/v1/webhook_endpoints".into(),
                ids,
                has_more: more,
            })
        }
        ("GET", [id]) => {
            db.get_kind("webhook_endpoint", id)
                .ok_or_else(|| ApiError::not_found("webhook_endpoint", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id]) => {
            allow(
                p,
                &[
                    "url",
                    "enabled_events",
                    "description",
                    "metadata",
                    "disabled",
                ],
            )?;
            let url = s(p, "url").map(str::to_string);
            if let Some(u) = &url {
                validate_url(u)?;
            }
            let events = params::str_list(p, "enabled_events")?;
            if let Some(e) = &events {
                validate_events(e)?;
            }
            let disabled = params::boolean(p, "disabled")?;
            let ep = db
                .get_kind_mut("webhook_endpoint", id)
                .ok_or_else(|| ApiError::not_found("webhook_endpoint", id))?;
            if let Some(u) = url {
                ep["url"] = json!(u);
            }
            if let Some(e) = events {
                ep["enabled_events"] = json!(e);
            }
            if let Some(d) = disabled {
                ep["status"] = json!(if d { "disabled" } else { "enabled" });
            }
            if let Some(d) = s(p, "description") {
                ep["description"] = json!(d);
            }
            if let Some(m) = ep["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("DELETE", [id]) => {
            db.get_kind("webhook_endpoint", id)
                .ok_or_else(|| ApiError::not_found("webhook_endpoint", id))?;
            if let Some(st) = db.objects.get_mut(*id) {
                st.deleted = true;
            }
            Ok(Out::Raw(
                json!({"id": id, "object": "webhook_endpoint", "deleted": true}),
            ))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/webhook_endpoints/{}", segs.join("/")),
        )),
    }
}

/// Sim-only `POST /_sim/webhook_endpoints/{id}/roll`: a new signing secret, returned once, like
/// rolling in the Dashboard. Unless `expire_previous=true`, the old secret stays active and each
/// delivery then carries one `v1` per active secret.
pub(crate) fn roll_secret(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> Result<Out, ApiError> {
    allow(p, &["expire_previous"])?;
    let expire = params::boolean(p, "expire_previous")?.unwrap_or(false);
    let secret = db.new_secret("whsec");
    let ep = db
        .get_kind_mut("webhook_endpoint", id)
        .ok_or_else(|| ApiError::not_found("webhook_endpoint", id))?;
    let old = ep["_secret"].clone();
    ep["_secret"] = json!(secret);
    ep["_previous_secrets"] = if expire { json!([]) } else { json!([old]) };
    let v = ep.clone();
    let mut out = render::render(db, "webhook_endpoint", &v, &ctx.version);
    out["secret"] = json!(secret);
    Ok(Out::Raw(out))
}
