//! HTTP layer: routes, the governance middleware (concurrency, latency, faults, auth), record
//! and SuiteQL handlers, the `/_sim` admin endpoints, and the accept loop that can drop a
//! connection on purpose.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::auth;
use crate::error::NsError;
use crate::model::{NameValidation, RecordType, WriteMode};
use crate::render::{record_url, render_record, render_sublist};
use crate::state::{
    FaultKind, FaultProbabilities, M2mRegistration, QueuedFault, SimHandle, TbaRegistration,
};

/// Per-connection switch: notifying it closes the connection without a response.
#[derive(Clone, Default)]
pub(crate) struct ConnControl {
    pub kill: Arc<Notify>,
}

/// Builds the simulator's axum router over a state handle.
pub fn router(state: SimHandle) -> Router {
    let rest = Router::new()
        .route(auth::TOKEN_PATH, post(token))
        .route(
            "/services/rest/record/v1/{rtype}",
            get(list_records).post(create_record),
        )
        .route(
            "/services/rest/record/v1/{rtype}/{key}",
            get(get_record)
                .patch(patch_record)
                .put(put_record)
                .delete(delete_record),
        )
        .route(
            "/services/rest/record/v1/{rtype}/{key}/{sub}",
            get(get_sublist),
        )
        .route(
            "/services/rest/record/v1/{rtype}/{key}/!transform/{target}",
            post(transform_record),
        )
        .route("/services/rest/query/v1/suiteql", post(suiteql))
        .route(
            "/services/rest/system/v1/governanceLimits",
            get(governance_limits),
        )
        .fallback(rest_fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            governance,
        ));
    Router::new()
        .route("/_sim/state", get(admin_state))
        .route(
            "/_sim/faults",
            post(admin_faults).delete(admin_clear_faults),
        )
        .route("/_sim/m2m", post(admin_m2m))
        .route("/_sim/m2m/generate", post(admin_m2m_generate))
        .route("/_sim/m2m/certificates", post(admin_m2m_upload))
        .route("/_sim/m2m/setup", get(admin_m2m_setup_page))
        .route("/_sim/tba", post(admin_tba))
        .route("/_sim/settings", post(admin_settings))
        .merge(rest)
        .with_state(state)
}

/// The base URL the client addressed: the configured public one, else `http://<Host>`.
fn base_url(h: &SimHandle, headers: &HeaderMap) -> String {
    if let Some(b) = h
        .shared
        .public_base_url
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        return b.trim_end_matches('/').to_owned();
    }
    match headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => h
            .shared
            .bound_base
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default(),
    }
}

/// Decrements the in-flight count however the request ends (even if the connection drops).
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn drop_connection(conn: Option<ConnControl>) -> Response {
    if let Some(c) = conn {
        c.kill.notify_one();
        std::future::pending::<()>().await;
    }
    // Without the simulator's own accept loop (router used in-process) a 500 is the nearest.
    NsError::unexpected().into_response()
}

fn take_fault(h: &SimHandle, method: &str, path: &str, after_commit: bool) -> Option<FaultKind> {
    let mut g = h.shared.lock();
    if let Some(pos) = g
        .queue
        .iter()
        .position(|f| f.kind.after_commit() == after_commit && f.matches_req(method, path))
    {
        let f = g.queue.remove(pos).map(|f| f.kind);
        g.stats.faults_injected += 1;
        return f;
    }
    let p = g.probabilities;
    let mut rng = rand::rng();
    let pick =
        |prob: f64, rng: &mut rand::rngs::ThreadRng| prob > 0.0 && rng.random_bool(prob.min(1.0));
    let kind = if after_commit {
        if pick(p.commit_then_error, &mut rng) {
            Some(FaultKind::CommitThenError)
        } else if pick(p.commit_then_drop, &mut rng) {
            Some(FaultKind::CommitThenDrop)
        } else {
            None
        }
    } else if pick(p.server_error, &mut rng) {
        Some(FaultKind::ServerError)
    } else if pick(p.drop, &mut rng) {
        Some(FaultKind::Drop)
    } else {
        None
    };
    if kind.is_some() {
        g.stats.faults_injected += 1;
    }
    kind
}

/// Counters, the account concurrency limit, latency, faults and authentication, in that order.
async fn governance(State(h): State<SimHandle>, mut req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let is_token = path == auth::TOKEN_PATH;
    let conn = req.extensions().get::<ConnControl>().cloned();
    let base = base_url(&h, req.headers());
    let endpoint = if is_token {
        "token".to_owned()
    } else if path.starts_with("/services/rest/query/") {
        "suiteql".to_owned()
    } else {
        path.split('/')
            .nth(5)
            .and_then(RecordType::from_path)
            .map_or_else(|| "other".to_owned(), |t| t.rest_name().to_owned())
    };
    let (limit, latency) = {
        let mut g = h.shared.lock();
        if !is_token {
            g.stats.rest_requests += 1;
        }
        *g.stats.by_endpoint.entry(endpoint).or_default() += 1;
        (g.settings.concurrency_limit, g.settings.latency)
    };
    // The token endpoint is not governed by the account's concurrency limit.
    let _guard = if is_token {
        None
    } else {
        // Compare-and-swap so a refused request never counts as in flight, even briefly.
        let admitted = h
            .shared
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            });
        let Ok(before) = admitted else {
            h.shared.lock().stats.rejected_concurrency += 1;
            return NsError::concurrency().into_response();
        };
        let now = before + 1;
        let guard = InFlight(&h.shared.in_flight);
        let mut g = h.shared.lock();
        g.stats.max_in_flight = g.stats.max_in_flight.max(now);
        Some(guard)
    };
    // The latency is the account's answer time: the request's own work (authentication, the
    // record) happens within it, not on top of it, so C requests of L ms each allow C/L a second.
    let answer_at = tokio::time::Instant::now() + latency;
    let resp = async {
        match take_fault(&h, &method, &path, false) {
            Some(FaultKind::ServerError) => return NsError::unexpected().into_response(),
            Some(FaultKind::Drop) => {
                tokio::time::sleep_until(answer_at).await;
                return drop_connection(conn).await;
            }
            Some(FaultKind::PeriodClosed) => {
                // The create handler refuses it, once it knows the record's external ID.
                req.extensions_mut().insert(ClosePeriod);
            }
            _ => {}
        }
        if !is_token
            && let Err(e) = auth::authenticate(
                &h.shared,
                &method,
                &base,
                &path,
                req.uri().query(),
                req.headers(),
            )
        {
            h.shared.lock().stats.rejected_auth += 1;
            return e.into_response();
        }
        let is_write = matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
            && path.starts_with("/services/rest/record/");
        let resp = next.run(req).await;
        if is_write && resp.status().is_success() {
            h.shared.lock().stats.writes_committed += 1;
            match take_fault(&h, &method, &path, true) {
                Some(FaultKind::CommitThenError) => return NsError::unexpected().into_response(),
                Some(FaultKind::CommitThenDrop) => {
                    tokio::time::sleep_until(answer_at).await;
                    return drop_connection(conn).await;
                }
                _ => {}
            }
        }
        resp
    }
    .await;
    tokio::time::sleep_until(answer_at).await;
    resp
}

impl QueuedFault {
    fn matches_req(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.to_lowercase().contains(&p.to_lowercase()))
    }
}

async fn token(
    State(h): State<SimHandle>,
    headers: HeaderMap,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let base = base_url(&h, &headers);
    auth::token(&h.shared, &base, form).await
}

async fn rest_fallback() -> Response {
    NsError::new(
        StatusCode::NOT_FOUND,
        "INVALID_REQUEST",
        "The request could not be understood by the server: no such resource. The simulator serves /record/v1/{customer|serviceSaleItem|nonInventorySaleItem|discountItem|invoice|customerPayment|creditMemo|customerRefund|journalEntry|deposit|subsidiary|currency|account} and /query/v1/suiteql.",
    )
    .into_response()
}

fn record_type(s: &str) -> Result<RecordType, NsError> {
    RecordType::from_path(s).ok_or_else(|| {
        NsError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            format!(
                "Invalid record type: '{s}'. The record type is not supported by the simulator."
            ),
        )
    })
}

fn name_validation(headers: &HeaderMap) -> NameValidation {
    match headers
        .get("x-netsuite-propertynamevalidation")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("error") => NameValidation::Error,
        Some("ignore") => NameValidation::Ignore,
        _ => NameValidation::Warning,
    }
}

fn refuse_async(headers: &HeaderMap) -> Result<(), NsError> {
    let asynchronous = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("respond-async"));
    if asynchronous {
        return Err(NsError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "Asynchronous processing (Prefer: respond-async) is not simulated; send the request synchronously.",
        ));
    }
    Ok(())
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>, NsError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(NsError::invalid_request()),
    }
}

fn written(base: &str, t: RecordType, id: u64, warnings: &[String]) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&record_url(base, t, id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if !warnings.is_empty()
        && let Ok(v) = HeaderValue::from_str(&warnings.join("; "))
    {
        resp.headers_mut().insert("x-netsuite-warning", v);
    }
    resp
}

fn writable(t: RecordType) -> Result<(), NsError> {
    if t.read_only() {
        return Err(NsError::user_error(format!(
            "The simulator treats {} records as read-only setup data.",
            t.rest_name()
        )));
    }
    Ok(())
}

fn singular(v: Value) -> Response {
    let mut resp = Json(v).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.oracle.resource+json; type=singular"),
    );
    resp
}

/// Marks a create refused by a `PeriodClosed` fault.
#[derive(Clone, Copy)]
struct ClosePeriod;

fn period_closed() -> NsError {
    NsError::user_error(
        "The posting period of this transaction is closed. Reopen the period or choose an open one.",
    )
    .at("postingPeriod")
}

async fn create_record(
    State(h): State<SimHandle>,
    Path(rtype): Path<String>,
    close: Option<axum::Extension<ClosePeriod>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    writable(t)?;
    refuse_async(&headers)?;
    let body = body_object(&body)?;
    if let Some(eid) = body.get("externalId").and_then(Value::as_str) {
        let mut g = h.shared.lock();
        if close.is_some() {
            g.closed_period_refusals.insert(eid.to_string());
        }
        if g.closed_period_refusals.contains(eid) {
            return Err(period_closed());
        }
    } else if close.is_some() {
        return Err(period_closed());
    }
    let base = base_url(&h, &headers);
    let mut warnings = Vec::new();
    let id = h.shared.lock().db.write(
        t,
        None,
        &body,
        WriteMode::Create,
        &[],
        name_validation(&headers),
        &mut warnings,
        mlc_core::now_millis(),
    )?;
    Ok(written(&base, t, id, &warnings))
}

#[derive(Deserialize, Default)]
struct RecordQuery {
    #[serde(rename = "expandSubResources")]
    expand: Option<String>,
    fields: Option<String>,
    replace: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
    q: Option<String>,
}

async fn get_record(
    State(h): State<SimHandle>,
    Path((rtype, key)): Path<(String, String)>,
    Query(q): Query<RecordQuery>,
    headers: HeaderMap,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    let base = base_url(&h, &headers);
    let expand = q
        .expand
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let g = h.shared.lock();
    let id = g.db.resolve(t, &key).ok_or_else(NsError::not_found)?;
    let r = g.db.get(t, id).ok_or_else(NsError::not_found)?;
    let mut v = render_record(&g.db, &base, r, expand);
    if let (Some(fields), Value::Object(m)) = (&q.fields, &mut v) {
        let keep: Vec<&str> = fields.split(',').map(str::trim).collect();
        m.retain(|k, _| k == "links" || k == "id" || keep.contains(&k.as_str()));
    }
    Ok(singular(v))
}

async fn get_sublist(
    State(h): State<SimHandle>,
    Path((rtype, key, sub)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    let base = base_url(&h, &headers);
    let g = h.shared.lock();
    let id = g.db.resolve(t, &key).ok_or_else(NsError::not_found)?;
    let r = g.db.get(t, id).ok_or_else(NsError::not_found)?;
    render_sublist(&g.db, &base, r, &sub)
        .map(|v| Json(v).into_response())
        .ok_or_else(NsError::not_found)
}

async fn patch_record(
    State(h): State<SimHandle>,
    Path((rtype, key)): Path<(String, String)>,
    Query(q): Query<RecordQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    writable(t)?;
    refuse_async(&headers)?;
    let body = body_object(&body)?;
    let base = base_url(&h, &headers);
    let replace: Vec<String> = q
        .replace
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mut warnings = Vec::new();
    let mut g = h.shared.lock();
    let id = g.db.resolve(t, &key).ok_or_else(NsError::not_found)?;
    g.db.write(
        t,
        Some(id),
        &body,
        WriteMode::Patch,
        &replace,
        name_validation(&headers),
        &mut warnings,
        mlc_core::now_millis(),
    )?;
    Ok(written(&base, t, id, &warnings))
}

/// `PUT …/eid:X` upsert: creates the record if the external ID is free, else replaces it.
async fn put_record(
    State(h): State<SimHandle>,
    Path((rtype, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    writable(t)?;
    refuse_async(&headers)?;
    let Some(eid) = key.strip_prefix("eid:").filter(|e| !e.is_empty()) else {
        return Err(NsError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "The upsert operation (PUT) is only supported with an external ID: use …/eid:<externalId>.",
        ));
    };
    let mut body = body_object(&body)?;
    body.insert("externalId".into(), json!(eid));
    let base = base_url(&h, &headers);
    let mut warnings = Vec::new();
    let mut g = h.shared.lock();
    let existing = g.db.find_eid(t, eid);
    let mode = if existing.is_some() {
        WriteMode::Replace
    } else {
        WriteMode::Create
    };
    let id = g.db.write(
        t,
        existing,
        &body,
        mode,
        &[],
        name_validation(&headers),
        &mut warnings,
        mlc_core::now_millis(),
    )?;
    Ok(written(&base, t, id, &warnings))
}

/// `POST /invoice/{id}/!transform/customerPayment`: a payment for the invoice's customer,
/// subsidiary and currency, applied to the invoice (by default for its whole amount remaining).
/// `…/!transform/creditMemo`: a credit memo with the invoice's customer and lines, applied to
/// what is open on it. Other transforms are not simulated.
async fn transform_record(
    State(h): State<SimHandle>,
    Path((rtype, key, target)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    refuse_async(&headers)?;
    let to_memo = target.eq_ignore_ascii_case("creditMemo");
    if t != RecordType::Invoice || !(to_memo || target.eq_ignore_ascii_case("customerPayment")) {
        return Err(NsError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            format!(
                "The transformation from {rtype} to {target} is not simulated (only invoice → customerPayment or creditMemo)."
            ),
        ));
    }
    let mut body = if body.is_empty() {
        Map::new()
    } else {
        body_object(&body)?
    };
    let base = base_url(&h, &headers);
    let mut warnings = Vec::new();
    let mut g = h.shared.lock();
    let inv_id = g.db.resolve(t, &key).ok_or_else(NsError::not_found)?;
    let inv = g.db.get(t, inv_id).ok_or_else(NsError::not_found)?;
    let remaining = g.db.amount_remaining(inv, None);
    if to_memo {
        // A credit memo for the invoice's customer, with its lines (unless given), applied to
        // what is still open on it; the rest stays the customer's credit.
        for (k, v) in [
            ("entity", inv.fields.get("entity")),
            ("subsidiary", inv.fields.get("subsidiary")),
            ("currency", inv.fields.get("currency")),
            ("item", inv.fields.get("item")),
        ] {
            if let Some(v) = v {
                body.entry(k).or_insert_with(|| v.clone());
            }
        }
        let total: rust_decimal::Decimal = body
            .get("item")
            .and_then(|i| i.get("items"))
            .and_then(Value::as_array)
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| l.get("amount").and_then(crate::model::dec_of))
                    .sum()
            })
            .unwrap_or_default();
        let applied = total.min(remaining);
        if applied > rust_decimal::Decimal::ZERO {
            body.entry("apply").or_insert_with(|| {
                json!({"items": [{"doc": {"id": inv_id.to_string()}, "apply": true, "amount": applied.normalize().to_string()}]})
            });
        }
        let id = g.db.write(
            RecordType::CreditMemo,
            None,
            &body,
            WriteMode::Create,
            &[],
            name_validation(&headers),
            &mut warnings,
            mlc_core::now_millis(),
        )?;
        return Ok(written(&base, RecordType::CreditMemo, id, &warnings));
    }
    for (k, v) in [
        ("customer", inv.fields.get("entity")),
        ("subsidiary", inv.fields.get("subsidiary")),
        ("currency", inv.fields.get("currency")),
    ] {
        if let Some(v) = v {
            body.entry(k).or_insert_with(|| v.clone());
        }
    }
    let amount = body
        .get("payment")
        .cloned()
        .unwrap_or_else(|| json!(remaining.normalize().to_string()));
    body.entry("payment").or_insert_with(|| amount.clone());
    body.entry("apply").or_insert_with(
        || json!({"items": [{"doc": {"id": inv_id.to_string()}, "apply": true, "amount": amount}]}),
    );
    let id = g.db.write(
        RecordType::CustomerPayment,
        None,
        &body,
        WriteMode::Create,
        &[],
        name_validation(&headers),
        &mut warnings,
        mlc_core::now_millis(),
    )?;
    Ok(written(&base, RecordType::CustomerPayment, id, &warnings))
}

async fn delete_record(
    State(h): State<SimHandle>,
    Path((rtype, key)): Path<(String, String)>,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    writable(t)?;
    let mut g = h.shared.lock();
    let id = g.db.resolve(t, &key).ok_or_else(NsError::not_found)?;
    let in_use = match t {
        RecordType::Customer => {
            crate::model::TRANSACTION_TYPES.iter().any(|tt| {
                g.db.iter(*tt)
                    .any(|r| r.ref_id("entity") == Some(id) || r.ref_id("customer") == Some(id))
            }) || g.db.iter(RecordType::Deposit).any(|d| {
                d.lines("other")
                    .iter()
                    .any(|l| l.get("entity").and_then(crate::model::ref_id) == Some(id))
            })
        }
        // Deposited: the deposit must go first (or let the payment go).
        RecordType::CustomerPayment => g.db.deposit_of(id, None).is_some(),
        RecordType::Invoice => !g.db.applied(id, None).is_zero(),
        // Refunded from: the refund must go first.
        RecordType::CreditMemo => g.db.iter(RecordType::CustomerRefund).any(|r| {
            r.lines("apply")
                .iter()
                .any(|l| l.get("doc").and_then(crate::model::ref_id) == Some(id))
        }),
        t if crate::model::ITEM_TYPES.contains(&t) => {
            g.db.iter(RecordType::Invoice)
                .chain(g.db.iter(RecordType::CreditMemo))
                .any(|r| {
                    r.lines("item")
                        .iter()
                        .any(|l| l.get("item").and_then(crate::model::ref_id) == Some(id))
                })
        }
        _ => false,
    };
    if in_use {
        return Err(NsError::user_error(
            "This record cannot be deleted because it has dependent records.",
        ));
    }
    if let Some(rec) = g.db.delete(t, id)
        && t == RecordType::Deposit
    {
        // Its payments are undeposited again: their status changes.
        let freed: Vec<u64> = rec
            .lines("payment")
            .iter()
            .filter_map(|l| l.get("id").and_then(Value::as_u64))
            .collect();
        g.db.touch(RecordType::CustomerPayment, &freed, mlc_core::now_millis());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

struct Paging {
    limit: usize,
    offset: usize,
}

fn paging(limit: Option<&str>, offset: Option<&str>) -> Result<Paging, NsError> {
    let limit = match limit {
        None => 1000,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(NsError::invalid_parameter(
                    format!(
                        "Invalid value '{s}' for the query parameter 'limit'. The value must be an integer between 1 and 1000."
                    ),
                    "limit",
                ));
            }
        },
    };
    let offset = match offset {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| {
            NsError::invalid_parameter(
                format!("Invalid value '{s}' for the query parameter 'offset'."),
                "offset",
            )
        })?,
    };
    if offset % limit != 0 {
        return Err(NsError::invalid_parameter(
            format!(
                "Invalid value '{offset}' for the query parameter 'offset'. The offset must be a multiple of the limit ({limit})."
            ),
            "offset",
        ));
    }
    Ok(Paging { limit, offset })
}

fn page_links(href: &str, p: &Paging, total: usize) -> Value {
    let link = |rel: &str, off: usize| json!({"rel": rel, "href": format!("{href}?limit={}&offset={off}", p.limit)});
    let last = if total == 0 {
        0
    } else {
        (total - 1) / p.limit * p.limit
    };
    let mut links = vec![link("first", 0)];
    if p.offset > 0 {
        links.push(link("prev", p.offset.saturating_sub(p.limit)));
    }
    if p.offset + p.limit < total {
        links.push(link("next", p.offset + p.limit));
    }
    links.push(link("last", last));
    links.push(link("self", p.offset));
    Value::Array(links)
}

async fn list_records(
    State(h): State<SimHandle>,
    Path(rtype): Path<String>,
    Query(q): Query<RecordQuery>,
    headers: HeaderMap,
) -> Result<Response, NsError> {
    let t = record_type(&rtype)?;
    if q.q.is_some() {
        return Err(NsError::invalid_parameter(
            "Invalid search query. Record collection filtering (q) is not simulated; use SuiteQL.",
            "q",
        ));
    }
    let p = paging(q.limit.as_deref(), q.offset.as_deref())?;
    let base = base_url(&h, &headers);
    let g = h.shared.lock();
    let all: Vec<u64> = g.db.iter(t).map(|r| r.id).collect();
    let items: Vec<Value> = all
        .iter()
        .skip(p.offset)
        .take(p.limit)
        .map(|id| json!({"links": [{"rel": "self", "href": record_url(&base, t, *id)}], "id": id.to_string()}))
        .collect();
    let href = format!("{base}/services/rest/record/v1/{}", t.url_name());
    Ok(Json(json!({
        "links": page_links(&href, &p, all.len()),
        "count": items.len(),
        "hasMore": p.offset + items.len() < all.len(),
        "offset": p.offset,
        "totalResults": all.len(),
        "items": items,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct SuiteqlParams {
    limit: Option<String>,
    offset: Option<String>,
}

async fn suiteql(
    State(h): State<SimHandle>,
    Query(qp): Query<SuiteqlParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, NsError> {
    let transient = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("transient"))
        });
    if !transient {
        return Err(NsError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "The request is missing the required header 'Prefer: transient'.",
        ));
    }
    let p = paging(qp.limit.as_deref(), qp.offset.as_deref())?;
    let body = body_object(&body)?;
    let Some(q) = body.get("q").and_then(Value::as_str) else {
        return Err(NsError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER",
            "Invalid search query. Provide a valid search query in the 'q' property.",
        ));
    };
    let params = match body.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(NsError::invalid_request()),
    };
    let base = base_url(&h, &headers);
    let g = h.shared.lock();
    let cap = g.settings.suiteql_max_rows;
    if p.offset >= cap {
        return Err(NsError::invalid_parameter(
            format!(
                "Invalid value '{}' for the query parameter 'offset'. A SuiteQL query returns at most {cap} results; page by a key instead (WHERE id > ? ORDER BY id).",
                p.offset
            ),
            "offset",
        ));
    }
    let rows = crate::suiteql::run(&g.db, q, &params)?;
    let total = rows.len();
    let reachable = total.min(cap);
    let items: Vec<Value> = rows
        .into_iter()
        .take(reachable)
        .skip(p.offset)
        .take(p.limit)
        .collect();
    let href = format!("{base}/services/rest/query/v1/suiteql");
    Ok(Json(json!({
        "links": page_links(&href, &p, reachable),
        "count": items.len(),
        "hasMore": p.offset + items.len() < reachable,
        "offset": p.offset,
        "totalResults": total,
        "items": items,
    }))
    .into_response())
}

/// `GET /services/rest/system/v1/governanceLimits`: the whole account limit, no allocation.
async fn governance_limits(State(h): State<SimHandle>) -> Response {
    let limit = h.shared.lock().settings.concurrency_limit;
    Json(json!({
        "accountConcurrencyLimit": limit,
        "accountUnallocatedConcurrencyLimit": limit,
        "integrationConcurrencyLimit": limit,
        "integrationLimitType": "accountLimit",
    }))
    .into_response()
}

async fn admin_state(State(h): State<SimHandle>) -> Response {
    Json(h.state_json()).into_response()
}

#[derive(Deserialize)]
struct FaultRequest {
    #[serde(default)]
    probabilities: Option<FaultProbabilities>,
    #[serde(default)]
    queue: Vec<QueuedFault>,
    #[serde(default)]
    clear: bool,
}

async fn admin_faults(State(h): State<SimHandle>, Json(req): Json<FaultRequest>) -> Response {
    if req.clear {
        h.clear_faults();
    }
    if let Some(p) = req.probabilities {
        h.set_fault_probabilities(p);
    }
    for f in req.queue {
        h.push_fault(f);
    }
    Json(json!({"queued": h.queued_faults()})).into_response()
}

async fn admin_clear_faults(State(h): State<SimHandle>) -> Response {
    h.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_m2m(State(h): State<SimHandle>, Json(reg): Json<M2mRegistration>) -> Response {
    match h.register_m2m(&reg) {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({"client_id": reg.client_id, "certificate_id": reg.certificate_id})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct UploadRequest {
    client_id: String,
    certificate_pem: String,
}

/// The certificate upload of NetSuite's M2M setup page: the certificate is checked as NetSuite
/// checks it, registered for the client, and its new certificate ID returned.
async fn admin_m2m_upload(State(h): State<SimHandle>, Json(req): Json<UploadRequest>) -> Response {
    let now = jiff::Timestamp::now().as_second();
    let registered =
        crate::keygen::registration_from_certificate(&req.client_id, &req.certificate_pem, now)
            .and_then(|reg| h.register_m2m(&reg).map(|()| reg));
    match registered {
        Ok(reg) => (
            StatusCode::CREATED,
            Json(json!({
                "client_id": reg.client_id,
                "certificate_id": reg.certificate_id,
                "expires_at": reg.expires_at,
            })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// A page standing in for NetSuite's "OAuth 2.0 Client Credentials (M2M) Setup": paste the
/// client ID and the certificate, get the certificate ID. Its script posts to the upload route.
async fn admin_m2m_setup_page() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        M2M_SETUP_PAGE,
    )
        .into_response()
}

const M2M_SETUP_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OAuth 2.0 Client Credentials (M2M) Setup (simulated NetSuite)</title></head>
<body style="font-family: sans-serif; max-width: 48rem; margin: 2rem auto">
<h1>OAuth 2.0 Client Credentials (M2M) Setup</h1>
<p>The NetSuite simulator's stand-in for Setup &gt; Integration &gt; Manage Authentication &gt;
OAuth 2.0 Client Credentials (M2M) Setup &gt; Create New.</p>
<form id="upload">
<p><label>Application (integration client ID)<br><input name="client_id" size="70" required></label></p>
<p><label>Certificate (PEM)<br><textarea name="certificate_pem" rows="14" cols="70" required></textarea></label></p>
<p><button>Save</button></p>
</form>
<p id="result" data-testid="certificate-result"></p>
<script>
document.getElementById("upload").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const r = await fetch("certificates", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: form.get("client_id"), certificate_pem: form.get("certificate_pem") }) });
  const body = await r.json();
  document.getElementById("result").textContent = r.ok
    ? "Certificate ID: " + body.certificate_id + " (valid until " + body.expires_at + ")"
    : "Error: " + body.error;
});
</script>
</body></html>
"#;

#[derive(Deserialize)]
struct GenerateRequest {
    #[serde(default = "default_alg")]
    algorithm: String,
}
fn default_alg() -> String {
    "PS256".into()
}

/// Generates a key pair, registers it, and returns it with the private key: a test-only
/// convenience, the simulator being a local test tool.
async fn admin_m2m_generate(
    State(h): State<SimHandle>,
    headers: HeaderMap,
    Json(req): Json<GenerateRequest>,
) -> Response {
    let base = base_url(&h, &headers);
    let setup = match crate::keygen::generate_m2m_setup(&req.algorithm) {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    if let Err(e) = h.register_m2m(&setup.registration()) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string()})),
        )
            .into_response();
    }
    Json(json!({
        "client_id": setup.client_id,
        "certificate_id": setup.certificate_id,
        "algorithm": setup.algorithm,
        "private_key_pem": secrecy::ExposeSecret::expose_secret(&setup.private_key_pem),
        "public_key_pem": setup.public_key_pem,
        "account_id": h.account_id(),
        "base_url": base,
        "token_url": format!("{base}{}", auth::TOKEN_PATH),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct TbaRequest {
    consumer_key: String,
    consumer_secret: String,
    token_id: String,
    token_secret: String,
}

async fn admin_tba(State(h): State<SimHandle>, Json(r): Json<TbaRequest>) -> Response {
    h.register_tba(TbaRegistration {
        consumer_key: r.consumer_key,
        consumer_secret: r.consumer_secret.into(),
        token_id: r.token_id.clone(),
        token_secret: r.token_secret.into(),
    });
    (StatusCode::CREATED, Json(json!({"token_id": r.token_id}))).into_response()
}

#[derive(Deserialize)]
struct SettingsRequest {
    concurrency_limit: Option<usize>,
    latency_ms: Option<u64>,
    token_ttl_seconds: Option<u64>,
    #[serde(default)]
    expire_access_tokens: bool,
}

async fn admin_settings(State(h): State<SimHandle>, Json(r): Json<SettingsRequest>) -> Response {
    if let Some(n) = r.concurrency_limit {
        h.set_concurrency_limit(n);
    }
    if let Some(ms) = r.latency_ms {
        h.set_latency(std::time::Duration::from_millis(ms));
    }
    if let Some(s) = r.token_ttl_seconds {
        h.set_token_ttl(std::time::Duration::from_secs(s));
    }
    if r.expire_access_tokens {
        h.expire_access_tokens();
    }
    Json(h.state_json()["settings"].clone()).into_response()
}

/// Serves `app` on `listener` until `shutdown` fires. Each connection gets a [`ConnControl`]
/// so a handler can close it without answering (the dropped-connection faults).
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let ctl = ConnControl::default();
                let svc = hyper_util::service::TowerToHyperService::new(
                    app.clone().layer(Extension(ctl.clone())),
                );
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = ctl.kill.notified() => {}
                        _ = stop.changed() => {}
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}
