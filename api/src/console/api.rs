//! The admin API under `/api`: JSON over the [`Console`](mlc_service::console::Console) service, behind the admin
//! token ([`super::auth::require_token`]). `/api/openapi.json` describes it and needs no token.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mlc_store::EventFilter;
use serde::Deserialize;
use serde_json::json;

use crate::http::AppState;
use crate::http::error::ApiError;
use mlc_service::console::{ConsoleError, parse_time};

/// A console error in the API's JSON error shape, with its status.
impl From<ConsoleError> for ApiError {
    fn from(e: ConsoleError) -> Self {
        let (status, code) = match &e {
            ConsoleError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ConsoleError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ConsoleError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ConsoleError::Other(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(value: T) -> ApiResult {
    Ok(Json(value).into_response())
}

pub fn router(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/api/overview", get(overview))
        .route("/api/counts", get(counts))
        .route("/api/health", get(health))
        .route("/api/activity", get(activity))
        .route("/api/events", get(list_events))
        .route("/api/events/{event_id}", get(event))
        .route("/api/events/{event_id}/replay", post(replay_one))
        .route("/api/replay", post(replay_many))
        .route("/api/mappings", get(mappings).post(set_mapping))
        .route("/api/unmapped", get(unmapped))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            super::auth::require_token,
        ));
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/{*rest}", axum::routing::any(not_found))
        .merge(protected)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}; see /api/openapi.json", uri.path()),
    )
    .into_response()
}

async fn openapi() -> Response {
    Json(super::openapi::document()).into_response()
}

async fn overview(State(s): State<AppState>) -> ApiResult {
    ok(s.console.overview().await?)
}

async fn counts(State(s): State<AppState>) -> ApiResult {
    ok(s.console.counts().await?)
}

async fn health(State(s): State<AppState>) -> ApiResult {
    ok(s.console.health().await?)
}

#[derive(Debug, Deserialize)]
struct ActivityQuery {
    hours: Option<i64>,
}

/// A query string that does not parse is a 400 in the API's JSON error shape.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ConsoleError> {
    q.map(|Query(v)| v)
        .map_err(|e| ConsoleError::BadRequest(e.body_text()))
}

async fn activity(
    State(s): State<AppState>,
    q: Result<Query<ActivityQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let hours = q.hours.unwrap_or(24);
    if !(1..=744).contains(&hours) {
        return Err(ConsoleError::BadRequest(format!(
            "hours must be 1 to 744 (31 days), not {hours}"
        ))
        .into());
    }
    ok(s.console.activity(hours).await?)
}

/// Filters of `GET /api/events`; empty values mean "any".
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub stripe_id: Option<String>,
    pub netsuite_id: Option<String>,
    /// Received at or after: `YYYY-MM-DD` (in the console's zone) or an RFC 3339 time.
    pub since: Option<String>,
    /// Received before: same formats; a date means the start of that day.
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl EventsQuery {
    pub fn to_filter(&self, tz: &jiff::tz::TimeZone) -> Result<EventFilter, ConsoleError> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let time = |v: &Option<String>, name: &str| {
            nonempty(v)
                .map(|s| {
                    parse_time(&s, tz).map_err(|e| ConsoleError::BadRequest(format!("{name}: {e}")))
                })
                .transpose()
        };
        if let Some(l) = self.limit.filter(|l| !(1..=1000).contains(l)) {
            return Err(ConsoleError::BadRequest(format!(
                "limit must be 1 to 1000, not {l}"
            )));
        }
        if let Some(o) = self.offset.filter(|o| !(0..=1_000_000_000).contains(o)) {
            return Err(ConsoleError::BadRequest(format!(
                "offset must be 0 to 1000000000, not {o}"
            )));
        }
        Ok(EventFilter {
            status: nonempty(&self.status),
            event_type: nonempty(&self.event_type),
            stripe_id: nonempty(&self.stripe_id),
            netsuite_id: nonempty(&self.netsuite_id),
            received_after: time(&self.since, "since")?,
            received_before: time(&self.until, "until")?,
            limit: self.limit.unwrap_or(50).clamp(1, 1000),
            offset: self.offset.unwrap_or(0).max(0),
            after: None,
        })
    }
}

async fn list_events(
    State(s): State<AppState>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let filter = q.to_filter(&s.console.time_zone)?;
    let events = s.console.events(&filter).await?;
    let amounts = s.console.amounts(&events).await?;
    let rows: Vec<_> = events
        .into_iter()
        .map(|e| {
            let amount = amounts.get(&e.event_id).cloned();
            json!({
                "event_id": e.event_id,
                "event_type": e.event_type,
                "object_id": e.object_id,
                "received_at": e.received_at,
                "status": e.status,
                "attempts": e.attempts,
                "last_error": e.last_error,
                "amount": amount,
            })
        })
        .collect();
    ok(json!({
        "events": rows,
        "limit": filter.limit,
        "offset": filter.offset,
    }))
}

async fn event(State(s): State<AppState>, Path(event_id): Path<String>) -> ApiResult {
    ok(s.console.event(&event_id).await?)
}

async fn replay_one(State(s): State<AppState>, Path(event_id): Path<String>) -> ApiResult {
    let results = s.console.replay(std::slice::from_ref(&event_id)).await?;
    let result = results.into_iter().next();
    match result {
        Some(r) if r.outcome == "not_found" => {
            Err(ConsoleError::NotFound(format!("no event {event_id} is stored")).into())
        }
        Some(r) if r.outcome == "not_replayed" => Ok((
            StatusCode::CONFLICT,
            Json(json!({"error": {"code": "not_replayed", "message": r.detail}})),
        )
            .into_response()),
        other => ok(other),
    }
}

/// `POST /api/replay`: `{"event_ids": [...]}` and/or `{"status": "failed", "since": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    event_ids: Vec<String>,
    status: Option<String>,
    since: Option<String>,
}

async fn replay_many(
    State(s): State<AppState>,
    body: Result<Json<ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(req) = body.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    if req.event_ids.is_empty() && req.status.is_none() {
        return Err(ConsoleError::BadRequest(
            "name events in `event_ids`, or give `status` (failed, waiting or succeeded)".into(),
        )
        .into());
    }
    if req.event_ids.len() > 1000 {
        return Err(ConsoleError::BadRequest(
            "at most 1000 event IDs per request; use `status` to replay more".into(),
        )
        .into());
    }
    let results = s.console.replay(&req.event_ids).await?;
    let by_status = match &req.status {
        Some(status) => {
            let since = req
                .since
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| parse_time(t, &s.console.time_zone))
                .transpose()
                .map_err(|e| ConsoleError::BadRequest(format!("since: {e}")))?;
            Some(s.console.replay_state(status, since).await?)
        }
        None => None,
    };
    let queued =
        results.iter().filter(|r| r.outcome == "queued").count() as u64 + by_status.unwrap_or(0);
    ok(json!({"queued": queued, "results": results, "queued_by_status": by_status}))
}

async fn mappings(State(s): State<AppState>) -> ApiResult {
    ok(s.console.mappings().await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingRequest {
    stripe_product_id: String,
    netsuite_item_id: String,
}

async fn set_mapping(
    State(s): State<AppState>,
    body: Result<Json<MappingRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(req) = body.map_err(|e| ConsoleError::BadRequest(e.body_text()))?;
    let released = s
        .console
        .set_mapping(&req.stripe_product_id, &req.netsuite_item_id)
        .await?;
    ok(json!({
        "stripe_product_id": req.stripe_product_id,
        "netsuite_item_id": req.netsuite_item_id,
        "released": released,
    }))
}

async fn unmapped(State(s): State<AppState>) -> ApiResult {
    ok(s.console.unmapped().await?)
}
