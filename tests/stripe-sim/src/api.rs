//! HTTP layer: auth, versions, faults, idempotency, dispatch, and the simple resources
//! (account, customers, products, prices, payment methods).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use crate::Shared;
use crate::error::ApiError;
use crate::params::{self, allow, s};
use crate::render::{self, page_params, paginate};
use crate::state::{ApiVersion, Db, IdemRecord};
use crate::{billing, checkout, credit_notes, disputes, events, payments, payouts};

/// Per-request context handlers need.
pub(crate) struct Ctx {
    /// Version to render the response in (`Stripe-Version` or the account default).
    pub version: ApiVersion,
    /// The account default version (events are frozen in it).
    pub account_version: ApiVersion,
    pub req_id: String,
    /// True for sim-only endpoints that stand for Stripe acting on its own (renewals, a
    /// customer paying on a hosted page): their events carry `request.id: null`, as Stripe's do.
    pub automatic: bool,
    pub idem_key: Option<String>,
    pub livemode: bool,
    pub account_currency: mlc_core::Currency,
}

/// What a handler produced.
pub(crate) enum Out {
    /// A stored object, rendered in the request's version.
    Obj(String),
    /// A list of stored objects.
    List {
        url: String,
        ids: Vec<String>,
        has_more: bool,
    },
    /// A value already rendered.
    Raw(Value),
}

pub(crate) type R = Result<Out, ApiError>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/deliveries", get(deliveries))
        .route("/_sim/deliveries/wait_idle", post(wait_idle))
        .route("/_sim/clock/advance", post(advance_clock))
        .route("/_sim/dialect", get(get_dialect).post(set_dialect))
        .route("/_sim/restricted_keys", post(add_restricted_key))
        .fallback(handle)
        .with_state(shared)
}

async fn get_faults(State(st): State<Arc<Shared>>) -> Json<crate::Faults> {
    Json(st.faults())
}

async fn set_faults(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    // Partial updates: only the given sections/fields change.
    let cur = serde_json::to_value(st.faults()).unwrap_or(Value::Null);
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"error": {"type": "invalid_request_error", "message": format!("invalid JSON: {e}")}}))).into_response(),
    };
    let mut merged = cur;
    for section in ["api", "delivery"] {
        if let Some(m) = patch.get(section).and_then(Value::as_object) {
            for (k, v) in m {
                merged[section][k] = v.clone();
            }
        }
    }
    match serde_json::from_value::<crate::Faults>(merged) {
        Ok(f) => {
            *crate::relock(&st.faults) = f;
            Json(f).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": {"type": "invalid_request_error", "message": format!("invalid faults: {e}")}}))).into_response(),
    }
}

async fn get_dialect(State(st): State<Arc<Shared>>) -> Json<crate::Dialect> {
    Json(st.db().dialect.clone())
}

/// Replaces the whole dialect (`{}` restores plain Stripe).
async fn set_dialect(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<crate::Dialect>(&body) {
        Ok(d) => {
            st.db().dialect = d.clone();
            Json(d).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": {"type": "invalid_request_error", "message": format!("invalid dialect: {e}")}}))).into_response(),
    }
}

async fn deliveries(State(st): State<Arc<Shared>>) -> Json<Value> {
    Json(crate::delivery::stats_json(&st))
}

async fn wait_idle(State(st): State<Arc<Shared>>) -> Json<Value> {
    st.hub.wait_idle().await;
    Json(crate::delivery::stats_json(&st))
}

/// `POST /_sim/restricted_keys` `{"permissions": {"charges": "read", "webhook_endpoints":
/// "write", …}}` → `{"key": "rk_test_…"}`: a restricted key as the Stripe Dashboard makes one.
async fn add_restricted_key(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let permissions = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("permissions").cloned())
        .and_then(|p| serde_json::from_value::<std::collections::BTreeMap<String, String>>(p).ok());
    match permissions {
        Some(p) if p.values().all(|a| a == "read" || a == "write") => {
            Json(json!({"key": st.add_restricted_key(p)})).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "expected {\"permissions\": {\"<resource>\": \"read\" | \"write\"}}"})),
        )
            .into_response(),
    }
}

async fn advance_clock(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let secs = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["seconds"].as_i64())
        .unwrap_or(0)
        .max(0);
    let mut db = st.db();
    db.clock_offset += secs;
    Json(json!({"now": db.now()})).into_response()
}

fn respond(
    status: StatusCode,
    body: &Value,
    req_id: &str,
    version: &str,
    extra: &[(&str, String)],
) -> Response {
    let text = serde_json::to_string_pretty(body).unwrap_or_else(|_| "{}".into());
    let mut resp = (status, text).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(req_id) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(version) {
        h.insert("stripe-version", v);
    }
    for (k, v) in extra {
        if let (Ok(name), Ok(val)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, val);
        }
    }
    resp
}

fn error_response(e: &ApiError, req_id: &str, version: &str) -> Response {
    let mut extra = Vec::new();
    if let Some(r) = e.should_retry {
        extra.push(("stripe-should-retry", r.to_string()));
    }
    respond(e.status, &e.to_json(), req_id, version, &extra)
}

/// The API key from `Authorization: Bearer sk_...` or Basic with the key as username.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let h = headers.get("authorization")?.to_str().ok()?.trim();
    if let Some(k) = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
    {
        return Some(k.trim().to_string());
    }
    let b = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    Some(s.split(':').next().unwrap_or("").to_string())
}

fn new_req_id() -> String {
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..14)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect();
    format!("req_{tail}")
}

async fn handle(
    State(st): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req_id = new_req_id();
    let path = uri.path().to_string();
    let default_v = st.default_version.as_str().to_string();
    let is_api = path.starts_with("/v1/") || path.starts_with("/_sim/");
    if !is_api {
        return error_response(
            &ApiError::unrecognized_url(method.as_str(), &path),
            &req_id,
            &default_v,
        );
    }

    // Fault injection happens before anything executes.
    let faults = st.faults().api;
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let injected = {
        let mut rng = st.fault_rng();
        if faults.rate_limit_probability > 0.0
            && rng.random_bool(faults.rate_limit_probability.clamp(0.0, 1.0))
        {
            Some(ApiError::rate_limited())
        } else if faults.error_500_probability > 0.0
            && rng.random_bool(faults.error_500_probability.clamp(0.0, 1.0))
        {
            Some(ApiError::internal())
        } else {
            None
        }
    };
    if let Some(e) = injected {
        return error_response(&e, &req_id, &default_v);
    }

    let key = match api_key(&headers) {
        None => return error_response(&ApiError::no_key(), &req_id, &default_v),
        Some(k) if k.is_empty() => return error_response(&ApiError::no_key(), &req_id, &default_v),
        Some(k) => k,
    };
    if !st.key_ok(&key) {
        return error_response(&ApiError::bad_key(&key), &req_id, &default_v);
    }
    if path.starts_with("/v1/")
        && let Some(permission) = st.missing_permission(&key, method.as_str(), &path)
    {
        let account = st.db().account_id.clone();
        return error_response(
            &ApiError::permission_denied(&key, &account, &permission),
            &req_id,
            &default_v,
        );
    }
    let livemode = key.starts_with("sk_live_") || key.starts_with("rk_live_");

    let version = match headers
        .get("stripe-version")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => st.default_version.clone(),
        Some(v) => match ApiVersion::parse(v.trim()) {
            Some(v) => v,
            None => {
                let e = ApiError::invalid_nocode(format!("Invalid Stripe API version: {v}"), None);
                return error_response(&e, &req_id, &default_v);
            }
        },
    };
    let vstr = version.as_str().to_string();

    let raw = if method == Method::POST && !body.is_empty() {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        uri.query().unwrap_or("").to_string()
    };
    // Sim-only endpoints also take a JSON body (`{"reason": "fraudulent", "amount": 1000}`); its
    // leaves become strings, as form values are, so handlers read both alike.
    let json_body =
        path.starts_with("/_sim/") && method == Method::POST && raw.trim_start().starts_with('{');
    let parsed = if json_body {
        serde_json::from_str::<Value>(&raw)
            .map(|v| json_params(&v))
            .map_err(|e| format!("Invalid JSON body: {e}"))
    } else {
        crate::form::parse(&raw)
    };
    let params = match parsed {
        Ok(p) => p,
        Err(m) => return error_response(&ApiError::invalid_nocode(m, None), &req_id, &vstr),
    };

    let idem_key = if method == Method::POST {
        headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    } else {
        None
    };
    if let Some(k) = &idem_key
        && k.len() > 255
    {
        let e = ApiError::invalid_nocode(
            "Idempotency-Key must be no more than 255 characters long.",
            None,
        );
        return error_response(&e, &req_id, &vstr);
    }
    let fingerprint = format!("{} {} {}", method, path, crate::form::encode(&params));
    let idem_slot = idem_key.as_ref().map(|k| format!("{key}\u{0}{k}"));

    let ctx = Ctx {
        version: version.clone(),
        account_version: st.default_version.clone(),
        req_id: req_id.clone(),
        automatic: path.starts_with("/_sim/"),
        idem_key: idem_key.clone(),
        livemode,
        account_currency: st.account_currency,
    };

    let (status, value, jobs) = {
        let mut db = st.db();
        if let Some(slot) = &idem_slot
            && let Some(rec) = db.idem.get(slot)
        {
            let extra = [
                ("idempotent-replayed", "true".to_string()),
                ("idempotency-key", idem_key.clone().unwrap_or_default()),
            ];
            if rec.fingerprint != fingerprint {
                let e = ApiError::idempotency_mismatch(idem_key.as_deref().unwrap_or(""));
                return error_response(&e, &req_id, &vstr);
            }
            let code = StatusCode::from_u16(rec.status).unwrap_or(StatusCode::OK);
            return respond(code, &rec.body, &req_id, &vstr, &extra);
        }
        if db.dialect.endpoint_missing(&path) {
            let e = ApiError::unrecognized_url(method.as_str(), &path);
            return error_response(&e, &req_id, &vstr);
        }
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let result = dispatch(&mut db, &ctx, method.as_str(), &segs, &params)
            .and_then(|out| finish(&db, &ctx, out, &params));
        let (status, value, save) = match result {
            Ok(v) => (StatusCode::OK, v, true),
            // Card errors executed (a charge exists), so Stripe saves them; validation errors not.
            Err(e) => (
                e.status,
                e.to_json(),
                e.status == StatusCode::PAYMENT_REQUIRED,
            ),
        };
        if let (Some(slot), true) = (&idem_slot, save) {
            db.idem.insert(
                slot.clone(),
                IdemRecord {
                    fingerprint,
                    status: status.as_u16(),
                    body: value.clone(),
                },
            );
        }
        let jobs = events::drain_jobs(&mut db);
        (status, value, jobs)
    };
    if !jobs.is_empty() {
        crate::delivery::enqueue(&st, jobs);
    }
    let mut extra = Vec::new();
    if let Some(k) = idem_key {
        extra.push(("idempotency-key", k));
    }
    respond(status, &value, &req_id, &vstr, &extra)
}

/// A JSON body as form parameters: numbers and booleans become their text, `null` the empty
/// string (unset), objects and arrays keep their shape.
fn json_params(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| (k.clone(), json_params(x))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(json_params).collect()),
        Value::String(x) => Value::String(x.clone()),
        Value::Null => Value::String(String::new()),
        other => Value::String(other.to_string()),
    }
}

/// Renders a handler's output and applies `expand[]`.
fn finish(db: &Db, ctx: &Ctx, out: Out, p: &Value) -> Result<Value, ApiError> {
    let paths = render::expand_paths(p)?;
    let mut v = match out {
        Out::Obj(id) => render::render_id(db, &id, &ctx.version)
            .ok_or_else(|| ApiError::not_found("object", &id))?,
        Out::List { url, .. } if db.dialect.list_empty(&url) => {
            render::list_envelope(&url, Vec::new(), false)
        }
        Out::List { url, ids, has_more } => {
            let data = ids
                .iter()
                .filter_map(|id| render::render_id(db, id, &ctx.version))
                .collect();
            render::list_envelope(&url, data, has_more)
        }
        Out::Raw(v) => v,
    };
    render::apply_expand(db, &mut v, &paths, &ctx.version)?;
    Ok(v)
}

fn dispatch(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    let full = format!("/{}", segs.join("/"));
    let unknown = || ApiError::unrecognized_url(method, &full);
    match segs {
        ["v1", "account"] if method == "GET" => Ok(Out::Raw(account(db, ctx))),
        ["v1", "customers", id, "balance_transactions", rest @ ..] => {
            credit_notes::customer_balance_transactions(db, method, id, rest, p)
        }
        ["v1", "customers", rest @ ..] => customers(db, ctx, method, rest, p),
        ["v1", "products", rest @ ..] => products(db, ctx, method, rest, p),
        ["v1", "prices", rest @ ..] => prices(db, ctx, method, rest, p),
        ["v1", "payment_methods", id] if method == "GET" => {
            db.get_kind("payment_method", id)
                .ok_or_else(|| ApiError::not_found("PaymentMethod", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ["v1", "payment_intents", rest @ ..] => payments::payment_intents(db, ctx, method, rest, p),
        ["v1", "charges", rest @ ..] => payments::charges(db, ctx, method, rest, p),
        ["v1", "refunds", rest @ ..] => payments::refunds(db, ctx, method, rest, p),
        ["v1", "disputes", rest @ ..] => disputes::disputes(db, ctx, method, rest, p),
        ["v1", "balance_transactions", rest @ ..] => {
            payments::balance_transactions(db, method, rest, p)
        }
        ["v1", "payouts", rest @ ..] => payouts::payouts(db, ctx, method, rest, p),
        ["v1", "balance"] if method == "GET" => payouts::balance(db, ctx, p),
        ["v1", "tax_rates", rest @ ..] => billing::tax_rates(db, ctx, method, rest, p),
        ["v1", "coupons", rest @ ..] => billing::coupons(db, ctx, method, rest, p),
        ["v1", "invoiceitems", rest @ ..] => billing::invoice_items(db, ctx, method, rest, p),
        ["v1", "invoices", rest @ ..] => billing::invoices(db, ctx, method, rest, p),
        ["v1", "invoice_payments", rest @ ..] => billing::invoice_payments(db, method, rest, p),
        ["v1", "credit_notes", rest @ ..] => credit_notes::credit_notes(db, ctx, method, rest, p),
        ["v1", "subscriptions", rest @ ..] => billing::subscriptions(db, ctx, method, rest, p),
        ["v1", "checkout", "sessions", rest @ ..] => checkout::sessions(db, ctx, method, rest, p),
        ["v1", "events"] if method == "GET" => events::list_events(db, p),
        ["v1", "events", id] if method == "GET" => events::get_event(db, id),
        ["v1", "webhook_endpoints", rest @ ..] => {
            events::webhook_endpoints(db, ctx, method, rest, p)
        }
        ["_sim", "checkout", "sessions", id, "complete"] if method == "POST" => {
            checkout::complete(db, ctx, id, p)
        }
        ["_sim", "subscriptions", id, "renew"] if method == "POST" => {
            billing::renew(db, ctx, id, p)
        }
        ["_sim", "webhook_endpoints", id, "roll"] if method == "POST" => {
            events::roll_secret(db, ctx, id, p)
        }
        ["_sim", "charges", id, "dispute"] if method == "POST" => disputes::open(db, ctx, id, p),
        ["_sim", "disputes", id, "resolve"] if method == "POST" => {
            disputes::resolve(db, ctx, id, p)
        }
        ["_sim", "refunds", id, "fail"] if method == "POST" => {
            payments::fail_refund(db, ctx, id, p)
        }
        ["_sim", "refunds", id, "succeed"] if method == "POST" => {
            payments::succeed_refund(db, ctx, id, p)
        }
        ["_sim", "payouts", "run"] if method == "POST" => payouts::run(db, ctx, p),
        ["_sim", "payouts", id, "paid"] if method == "POST" => payouts::mark_paid(db, ctx, id, p),
        ["_sim", "payouts", id, "fail"] if method == "POST" => payouts::fail(db, ctx, id, p),
        _ => Err(unknown()),
    }
}

fn account(db: &Db, ctx: &Ctx) -> Value {
    json!({
        "id": db.account_id, "object": "account",
        "business_profile": {"mcc": "5734", "name": "Simulated SaaS Inc.", "support_email": null, "url": "https://example.com"},
        "business_type": "company", "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": true, "controller": {"type": "account"}, "country": "US", "created": 1_700_000_000,
        "default_currency": ctx.account_currency.as_str(), "details_submitted": true,
        "email": "billing@example.com", "payouts_enabled": true,
        "settings": {"dashboard": {"display_name": "Simulated SaaS", "timezone": "Etc/UTC"}},
        "type": "standard",
    })
}

/// Lists of a kind with a filter, paginated.
pub(crate) fn list_kind(
    db: &Db,
    kind: &str,
    url: &str,
    p: &Value,
    filter: impl Fn(&Value) -> Result<bool, ApiError>,
) -> R {
    let page = page_params(p)?;
    let mut ids = Vec::new();
    for id in db.ids_of(kind) {
        if let Some(v) = db.get_kind(kind, &id)
            && filter(v)?
            && events::created_matches(p, v)?
        {
            ids.push(id);
        }
    }
    let (ids, has_more) = paginate(&ids, &page, crate::state::noun(kind))?;
    Ok(Out::List {
        url: url.into(),
        ids,
        has_more,
    })
}

/// Looks up a referenced object for a parameter (400 resource_missing if absent).
pub(crate) fn need_ref<'a>(
    db: &'a Db,
    kind: &str,
    id: &str,
    param: &str,
) -> Result<&'a Value, ApiError> {
    db.get_kind(kind, id)
        .ok_or_else(|| ApiError::missing_ref(crate::state::noun(kind), id, param))
}

fn customers(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    const FIELDS: &[&str] = &[
        "address",
        "balance",
        "description",
        "email",
        "metadata",
        "name",
        "phone",
        "payment_method",
        "invoice_settings",
        "preferred_locales",
        "shipping",
        "tax_exempt",
        "invoice_prefix",
        "next_invoice_sequence",
        "tax",
        "test_clock",
        "business_name",
        "individual_name",
    ];
    match (method, segs) {
        ("POST", []) => {
            allow(p, FIELDS)?;
            let id = db.new_id("cus");
            let prefix = match s(p, "invoice_prefix") {
                Some(x) => x.to_string(),
                None => db.invoice_prefix(),
            };
            let mut v = json!({
                "id": id, "object": "customer", "address": p.get("address").cloned().unwrap_or(Value::Null),
                "balance": params::int(p, "balance")?.unwrap_or(0), "created": db.now(), "currency": null,
                "customer_account": null, "default_source": null, "delinquent": false,
                "description": s(p, "description"), "discount": null, "email": s(p, "email"),
                "invoice_prefix": prefix,
                "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
                "livemode": ctx.livemode, "metadata": params::metadata(p)?, "name": s(p, "name"),
                "next_invoice_sequence": params::int(p, "next_invoice_sequence")?.unwrap_or(1),
                "phone": s(p, "phone"), "preferred_locales": params::str_list(p, "preferred_locales")?.unwrap_or_default(),
                "shipping": null, "tax_exempt": s(p, "tax_exempt").unwrap_or("none"), "test_clock": null,
            });
            // Attaching a test card (`pm_card_visa`) makes a new PaymentMethod; the same token in
            // invoice_settings[default_payment_method] then refers to it, as in Stripe's examples.
            let mut token_map: Option<(String, String)> = None;
            if let Some(pm) = s(p, "payment_method") {
                let pm_id = payments::resolve_pm(db, ctx, pm, "payment_method", true)?;
                token_map = Some((pm.to_string(), pm_id));
            }
            db.insert("customer", &id, v.clone());
            if let Some((_, pm_id)) = &token_map
                && let Some(pm) = db.get_kind_mut("payment_method", pm_id)
            {
                pm["customer"] = json!(id);
            }
            if let Some(dpm) = params::path(p, &["invoice_settings", "default_payment_method"])
                .and_then(Value::as_str)
            {
                let resolved = match &token_map {
                    Some((tok, pm_id)) if tok == dpm || pm_id == dpm => pm_id.clone(),
                    _ => {
                        db.objects.remove(&id);
                        return Err(ApiError::invalid_nocode(
                            format!(
                                "The customer does not have a payment method with the ID {dpm}. The payment method must be attached to the customer."
                            ),
                            Some("invoice_settings[default_payment_method]"),
                        ));
                    }
                };
                v["invoice_settings"]["default_payment_method"] = json!(resolved);
                if let Some(c) = db.get_kind_mut("customer", &id) {
                    *c = v;
                }
            }
            events::emit(db, ctx, "customer.created", &id, None);
            if let Some((_, pm_id)) = token_map {
                events::emit(db, ctx, "payment_method.attached", &pm_id, None);
            }
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "created",
                    "email",
                    "limit",
                    "starting_after",
                    "ending_before",
                    "test_clock",
                ],
            )?;
            let email = s(p, "email").map(str::to_string);
            list_kind(db, "customer", "/v1/customers", p, |c| {
                Ok(email.as_ref().is_none_or(|e| c["email"] == json!(e)))
            })
        }
        ("GET", [id]) => match db.get(id) {
            Some(st) if st.kind == "customer" => Ok(Out::Obj(id.to_string())),
            _ => Err(ApiError::not_found("customer", id)),
        },
        ("POST", [id]) => {
            allow(p, FIELDS)?;
            let old = db
                .get_kind("customer", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("customer", id))?;
            let mut v = old.clone();
            for k in ["description", "email", "name", "phone"] {
                if let Some(x) = p.get(k).and_then(Value::as_str) {
                    v[k] = if x.is_empty() { Value::Null } else { json!(x) };
                }
            }
            if let Some(a) = p.get("address") {
                v["address"] = a.clone();
            }
            if let Some(dpm) = params::path(p, &["invoice_settings", "default_payment_method"])
                .and_then(Value::as_str)
            {
                let attached = db
                    .get_kind("payment_method", dpm)
                    .is_some_and(|pm| pm["customer"] == json!(id));
                if !attached {
                    return Err(ApiError::invalid_nocode(
                        format!(
                            "The customer does not have a payment method with the ID {dpm}. The payment method must be attached to the customer."
                        ),
                        Some("invoice_settings[default_payment_method]"),
                    ));
                }
                v["invoice_settings"]["default_payment_method"] = json!(dpm);
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if v != old {
                if let Some(c) = db.get_kind_mut("customer", id) {
                    *c = v;
                }
                events::emit(db, ctx, "customer.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("DELETE", [id]) => {
            db.get_kind("customer", id)
                .ok_or_else(|| ApiError::not_found("customer", id))?;
            if let Some(st) = db.objects.get_mut(*id) {
                st.deleted = true;
            }
            events::emit(db, ctx, "customer.deleted", id, None);
            Ok(Out::Raw(
                json!({"id": id, "object": "customer", "deleted": true}),
            ))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/customers/{}", segs.join("/")),
        )),
    }
}

fn products(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    const FIELDS: &[&str] = &[
        "id",
        "name",
        "active",
        "description",
        "metadata",
        "images",
        "shippable",
        "statement_descriptor",
        "tax_code",
        "unit_label",
        "url",
        "marketing_features",
        "package_dimensions",
    ];
    match (method, segs) {
        ("POST", []) => {
            allow(p, FIELDS)?;
            let name = params::req_s(p, "name")?;
            let id = match s(p, "id") {
                Some(x) => {
                    if db.get(x).is_some() {
                        return Err(ApiError::invalid(
                            "resource_already_exists",
                            "Product already exists.".to_string(),
                            Some("id"),
                        ));
                    }
                    x.to_string()
                }
                None => db.new_id("prod"),
            };
            let now = db.now();
            let v = json!({
                "id": id, "object": "product", "active": params::boolean(p, "active")?.unwrap_or(true),
                "created": now, "default_price": null, "description": s(p, "description"),
                "images": params::str_list(p, "images")?.unwrap_or_default(), "livemode": ctx.livemode,
                "marketing_features": [], "metadata": params::metadata(p)?, "name": name,
                "package_dimensions": null, "shippable": params::boolean(p, "shippable")?,
                "statement_descriptor": s(p, "statement_descriptor"), "tax_code": s(p, "tax_code"),
                "type": "service", "unit_label": s(p, "unit_label"), "updated": now, "url": s(p, "url"),
            });
            db.insert("product", &id, v);
            events::emit(db, ctx, "product.created", &id, None);
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "active",
                    "created",
                    "ids",
                    "limit",
                    "starting_after",
                    "ending_before",
                    "shippable",
                    "url",
                ],
            )?;
            let active = params::boolean(p, "active")?;
            let ids = params::str_list(p, "ids")?;
            list_kind(db, "product", "/v1/products", p, |v| {
                Ok(active.is_none_or(|a| v["active"] == json!(a))
                    && ids
                        .as_ref()
                        .is_none_or(|l| l.iter().any(|i| v["id"] == json!(i))))
            })
        }
        ("GET", [id]) => match db.get(id) {
            Some(st) if st.kind == "product" => Ok(Out::Obj(id.to_string())),
            _ => Err(ApiError::not_found("product", id)),
        },
        ("POST", [id]) => {
            allow(
                p,
                &[
                    "name",
                    "active",
                    "description",
                    "metadata",
                    "images",
                    "default_price",
                    "tax_code",
                    "unit_label",
                    "url",
                    "statement_descriptor",
                ],
            )?;
            let old = db
                .get_kind("product", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("product", id))?;
            let mut v = old.clone();
            if let Some(n) = p.get("name").and_then(Value::as_str) {
                if n.is_empty() {
                    return Err(ApiError::invalid_empty("name"));
                }
                v["name"] = json!(n);
            }
            for k in [
                "description",
                "tax_code",
                "unit_label",
                "url",
                "statement_descriptor",
            ] {
                if let Some(x) = p.get(k).and_then(Value::as_str) {
                    v[k] = if x.is_empty() { Value::Null } else { json!(x) };
                }
            }
            if let Some(a) = params::boolean(p, "active")? {
                v["active"] = json!(a);
            }
            if let Some(dp) = s(p, "default_price") {
                let price = need_ref(db, "price", dp, "default_price")?;
                if price["product"] != json!(id) {
                    return Err(ApiError::invalid_nocode(
                        format!("The price {dp} does not belong to product {id}."),
                        Some("default_price"),
                    ));
                }
                v["default_price"] = json!(dp);
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if v != old {
                v["updated"] = json!(db.now());
                if let Some(x) = db.get_kind_mut("product", id) {
                    *x = v;
                }
                events::emit(db, ctx, "product.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("DELETE", [id]) => {
            db.get_kind("product", id)
                .ok_or_else(|| ApiError::not_found("product", id))?;
            let has_prices = db.ids_of("price").iter().any(|pid| {
                db.get_kind("price", pid)
                    .is_some_and(|pr| pr["product"] == json!(id))
            });
            if has_prices {
                return Err(ApiError::invalid_nocode(
                    "This product cannot be deleted because it has one or more user-created prices.",
                    None,
                ));
            }
            if let Some(st) = db.objects.get_mut(*id) {
                st.deleted = true;
            }
            events::emit(db, ctx, "product.deleted", id, None);
            Ok(Out::Raw(
                json!({"id": id, "object": "product", "deleted": true}),
            ))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/products/{}", segs.join("/")),
        )),
    }
}

fn prices(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "currency",
                    "product",
                    "product_data",
                    "unit_amount",
                    "unit_amount_decimal",
                    "recurring",
                    "nickname",
                    "lookup_key",
                    "metadata",
                    "active",
                    "tax_behavior",
                    "billing_scheme",
                    "transfer_lookup_key",
                ],
            )?;
            let cur = params::currency_of(params::req_s(p, "currency")?, "currency")?;
            let product = match (s(p, "product"), p.get("product_data")) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid_nocode(
                        "You may only specify one of these parameters: product, product_data.",
                        None,
                    ));
                }
                (Some(pid), None) => {
                    let prod = need_ref(db, "product", pid, "product")?;
                    if prod["active"] == json!(false) {
                        return Err(ApiError::invalid_nocode(
                            format!("The product `{pid}` is inactive."),
                            Some("product"),
                        ));
                    }
                    pid.to_string()
                }
                (None, Some(pd)) => {
                    let name = pd
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| ApiError::missing("product_data[name]"))?;
                    let pid = db.new_id("prod");
                    let now = db.now();
                    db.insert("product", &pid, json!({
                        "id": pid, "object": "product", "active": true, "created": now, "default_price": null,
                        "description": null, "images": [], "livemode": ctx.livemode, "marketing_features": [],
                        "metadata": {}, "name": name, "package_dimensions": null, "shippable": null,
                        "statement_descriptor": null, "tax_code": null, "type": "service", "unit_label": null,
                        "updated": now, "url": null,
                    }));
                    events::emit(db, ctx, "product.created", &pid, None);
                    pid
                }
                (None, None) => return Err(ApiError::missing("product")),
            };
            if s(p, "billing_scheme").is_some_and(|b| b != "per_unit") {
                return Err(ApiError::invalid_nocode(
                    "The simulator only supports billing_scheme=per_unit.",
                    Some("billing_scheme"),
                ));
            }
            let unit = match (params::int(p, "unit_amount")?, s(p, "unit_amount_decimal")) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid_nocode(
                        "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                        None,
                    ));
                }
                (Some(u), None) => u,
                (None, Some(d)) => d.parse::<i64>().map_err(|_| {
                    ApiError::invalid_nocode(
                        "The simulator only supports whole unit_amount_decimal values.",
                        Some("unit_amount_decimal"),
                    )
                })?,
                (None, None) => {
                    return Err(ApiError::invalid_nocode(
                        "You must pass either `unit_amount`, `unit_amount_decimal`, or `custom_unit_amount`.",
                        None,
                    ));
                }
            };
            params::check_amount(unit, cur, "unit_amount", true)?;
            let recurring = match p.get("recurring") {
                None => Value::Null,
                Some(r) => {
                    let interval = r
                        .get("interval")
                        .and_then(Value::as_str)
                        .ok_or_else(|| ApiError::missing("recurring[interval]"))?;
                    if !["day", "week", "month", "year"].contains(&interval) {
                        return Err(ApiError::invalid(
                            "parameter_invalid_string",
                            "Invalid recurring[interval]: must be one of day, week, month, or year"
                                .to_string(),
                            Some("recurring[interval]"),
                        ));
                    }
                    let count =
                        params::int_at(r.get("interval_count"), "recurring[interval_count]")?
                            .unwrap_or(1);
                    let max = match interval {
                        "day" => 1095,
                        "week" => 156,
                        "month" => 36,
                        _ => 3,
                    };
                    if count < 1 || count > max {
                        return Err(ApiError::invalid_nocode(
                            "Invalid recurring[interval_count]: the maximum billing interval is 3 years.",
                            Some("recurring[interval_count]"),
                        ));
                    }
                    json!({"interval": interval, "interval_count": count, "meter": null, "trial_period_days": null, "usage_type": "licensed"})
                }
            };
            let tax_behavior = s(p, "tax_behavior").unwrap_or("unspecified");
            if !["inclusive", "exclusive", "unspecified"].contains(&tax_behavior) {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid tax_behavior",
                    Some("tax_behavior"),
                ));
            }
            let id = db.new_id("price");
            let v = json!({
                "id": id, "object": "price", "active": params::boolean(p, "active")?.unwrap_or(true),
                "billing_scheme": "per_unit", "created": db.now(), "currency": cur.as_str(),
                "custom_unit_amount": null, "livemode": ctx.livemode, "lookup_key": s(p, "lookup_key"),
                "metadata": params::metadata(p)?, "nickname": s(p, "nickname"), "product": product,
                "recurring": recurring, "tax_behavior": tax_behavior, "tiers_mode": null,
                "transform_quantity": null, "type": if recurring.is_null() { "one_time" } else { "recurring" },
                "unit_amount": unit, "unit_amount_decimal": unit.to_string(),
            });
            db.insert("price", &id, v);
            events::emit(db, ctx, "price.created", &id, None);
            if recurring.is_object() {
                // Stripe still emits the legacy plan event for recurring prices.
                events::emit(db, ctx, "plan.created", &id, None);
                if let Some(ev_id) = db.new_events.last().cloned()
                    && let Some(ev) = db.get_kind_mut("event", &ev_id)
                {
                    ev["_kind"] = json!("plan");
                    ev["data"]["object"] = plan_of(&ev["data"]["object"]);
                }
            }
            Ok(Out::Obj(id))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "active",
                    "created",
                    "currency",
                    "limit",
                    "starting_after",
                    "ending_before",
                    "lookup_keys",
                    "product",
                    "recurring",
                    "type",
                ],
            )?;
            let active = params::boolean(p, "active")?;
            let cur = s(p, "currency").map(str::to_lowercase);
            let product = s(p, "product").map(str::to_string);
            let ty = s(p, "type").map(str::to_string);
            let lookup = params::str_list(p, "lookup_keys")?;
            list_kind(db, "price", "/v1/prices", p, |v| {
                Ok(active.is_none_or(|a| v["active"] == json!(a))
                    && cur.as_ref().is_none_or(|c| v["currency"] == json!(c))
                    && product.as_ref().is_none_or(|x| v["product"] == json!(x))
                    && ty.as_ref().is_none_or(|x| v["type"] == json!(x))
                    && lookup
                        .as_ref()
                        .is_none_or(|l| l.iter().any(|k| v["lookup_key"] == json!(k))))
            })
        }
        ("GET", [id]) => {
            db.get_kind("price", id)
                .ok_or_else(|| ApiError::not_found("price", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id]) => {
            allow(
                p,
                &[
                    "active",
                    "metadata",
                    "nickname",
                    "lookup_key",
                    "tax_behavior",
                    "transfer_lookup_key",
                ],
            )?;
            let old = db
                .get_kind("price", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("price", id))?;
            let mut v = old.clone();
            if let Some(a) = params::boolean(p, "active")? {
                v["active"] = json!(a);
            }
            for k in ["nickname", "lookup_key"] {
                if let Some(x) = p.get(k).and_then(Value::as_str) {
                    v[k] = if x.is_empty() { Value::Null } else { json!(x) };
                }
            }
            if let Some(tb) = s(p, "tax_behavior") {
                if old["tax_behavior"] != "unspecified" && old["tax_behavior"] != json!(tb) {
                    return Err(ApiError::invalid_nocode(
                        "Tax behavior cannot be changed once it is set to inclusive or exclusive.",
                        Some("tax_behavior"),
                    ));
                }
                v["tax_behavior"] = json!(tb);
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if v != old {
                if let Some(x) = db.get_kind_mut("price", id) {
                    *x = v;
                }
                events::emit(db, ctx, "price.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/prices/{}", segs.join("/")),
        )),
    }
}

/// The legacy Plan view of a recurring price (for `plan.*` events).
fn plan_of(price: &Value) -> Value {
    json!({
        "id": price["id"], "object": "plan", "active": price["active"], "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"], "billing_scheme": "per_unit", "created": price["created"],
        "currency": price["currency"], "interval": price["recurring"]["interval"],
        "interval_count": price["recurring"]["interval_count"], "livemode": price["livemode"],
        "metadata": price["metadata"], "meter": null, "nickname": price["nickname"], "product": price["product"],
        "tiers_mode": null, "transform_usage": null, "trial_period_days": null, "usage_type": "licensed",
    })
}
