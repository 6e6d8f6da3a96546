//! `POST /webhooks/stripe`: verify, store durably with its job, answer fast.
//!
//! Order matters: a delivery without a well-formed signature header is refused before its body is
//! read; the body is read within the size limit, the in-flight body budget and the body deadline;
//! the signature is verified on the raw bytes, the body is parsed (one JSON rule, shared with the
//! console), and the event and its job are committed in one transaction before the 200. Nothing
//! is processed here: Stripe wants a 2xx quickly, and the worker re-fetches the object from the
//! API anyway.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mlc_store::{NewEvent, NewJob, RecordOutcome};
use mlc_stripe::webhook::{SignatureError, SignatureHeader};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::serve::BodyReadError;
use super::webhook_routes::RouteTarget;
use mlc_service::pipeline::{self, check_event_body, parse_event_body};
use mlc_service::telemetry::{self, names};
use tracing::Instrument as _;

/// The envelope fields the intake needs; the rest of the body is kept as raw bytes.
#[derive(Deserialize)]
struct Envelope {
    id: Option<String>,
    object: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    livemode: bool,
    api_version: Option<String>,
    data: Option<EnvelopeData>,
}

#[derive(Deserialize)]
struct EnvelopeData {
    object: Option<DataObject>,
}

#[derive(Deserialize)]
struct DataObject {
    id: Option<String>,
}

/// `POST /webhooks/stripe`: the configured default connection.
pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let target = state.routes.default_target().clone();
    let span = telemetry::webhook_span(target.store.scope());
    answer(
        receive_inner(&state, &target, request)
            .instrument(span)
            .await,
    )
}

/// `POST /webhooks/stripe/{route}`: the connection whose route ID this is. An unknown route is a
/// 404 that says nothing of which routes exist, answered before the body is read.
pub async fn receive_routed(
    State(state): State<AppState>,
    Path(route): Path<String>,
    request: Request,
) -> Response {
    use super::webhook_routes::Resolved;
    let result = match state.routes.resolve(&route).await {
        Ok(Resolved::Found(target)) => {
            let span = telemetry::webhook_span(target.store.scope());
            receive_inner(&state, &target, request)
                .instrument(span)
                .await
        }
        Ok(Resolved::Unknown) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no webhook endpoint at this address",
        )),
        Ok(Resolved::NotReady(why)) => {
            tracing::warn!("webhook delivery refused for now: {why}");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection_not_ready",
                why,
            ))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the connection could not be looked up ({e}); Stripe retries the delivery"),
        )),
    };
    answer(result)
}

fn answer(result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(response) => response,
        Err(err) => {
            let outcome = if err.status.is_server_error() {
                "error"
            } else {
                "rejected"
            };
            metrics::counter!(names::EVENTS_RECEIVED, "type" => "unknown", "outcome" => outcome)
                .increment(1);
            // A refused delivery's connection is not reused: its body may be unread, and a
            // sender of refused requests gets no kept-alive socket to hold.
            let mut response = err.into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            response
        }
    }
}
async fn receive_inner(
    state: &AppState,
    target: &RouteTarget,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let refuse = |e: SignatureError| {
        metrics::counter!(names::SIGNATURE_FAILURES, "reason" => e.code()).increment(1);
        tracing::warn!(reason = e.code(), "webhook refused: {e}");
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    };
    // Before the body is read: a delivery without a usable signature header cannot verify, so
    // its body is not worth memory or time.
    let header = parts
        .headers
        .get("stripe-signature")
        .ok_or(SignatureError::MissingHeader)
        .and_then(|v| {
            v.to_str()
                .map_err(|_| SignatureError::Malformed("the header is not ASCII text"))
        })
        .map_err(refuse)?;
    SignatureHeader::parse(header).map_err(refuse)?;

    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body exceeds the {} byte limit (server.body_limit_bytes)",
                state.body_limit_bytes
            ),
        )
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body_limit_bytes) {
        return Err(too_large());
    }
    // Memory for the body is taken from the shared budget up front (a chunked body may grow to
    // the limit), so many large deliveries with bogus signatures cannot exhaust it.
    let reserve = declared.unwrap_or(state.body_limit_bytes).max(1);
    let _budget = u32::try_from(reserve)
        .ok()
        .and_then(|n| state.body_budget.clone().try_acquire_many_owned(n).ok())
        .ok_or_else(|| {
            metrics::counter!(names::WEBHOOK_BODIES_REFUSED).increment(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_bodies",
                "too many webhook bodies are being received at once \
                 (server.max_inflight_body_bytes); Stripe retries the delivery",
            )
        })?;
    let raw = read_body(body, state.body_limit_bytes, declared, too_large).await?;

    let now = mlc_core::now_millis() / 1000;
    target
        .verifier
        .verify(&raw, Some(header), now)
        .map_err(refuse)?;

    let invalid_json = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    };
    // Checked, not parsed: building the body's `Value` only to read six fields cost about a
    // tenth of `serve`'s CPU per webhook (BENCHMARKS.md, twelfth pass).
    check_event_body(&raw).map_err(invalid_json)?;
    let envelope = match serde_json::from_slice::<Envelope>(&raw) {
        Ok(envelope) => envelope,
        // A struct refuses a repeated key where a `Value` keeps the last, and words a wrong
        // type differently: such a body is read as it always was, so its answer is unchanged.
        Err(_) => Envelope::deserialize(&parse_event_body(&raw).map_err(invalid_json)?)
            .map_err(invalid_json)?,
    };
    if envelope.object.as_deref() == Some("v2.core.event") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "thin_event_unsupported",
            "thin (v2) event notifications are not supported: configure the Stripe endpoint to send snapshot events",
        ));
    }
    let (Some(event_id), Some(event_type)) = (envelope.id, envelope.event_type) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_an_event",
            "the body is JSON but not a Stripe event: `id` and `type` are required",
        ));
    };
    if mlc_core::StripeId::parse(mlc_core::StripeIdKind::Event, &event_id).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_an_event",
            "the event `id` is not a Stripe event ID (evt_…)",
        ));
    }

    let handled = pipeline::handles(&event_type);
    let received_at = mlc_core::now_millis();
    let event = NewEvent {
        event_id: event_id.clone(),
        event_type: event_type.clone(),
        object_id: envelope.data.and_then(|d| d.object).and_then(|o| o.id),
        livemode: envelope.livemode,
        api_version: envelope.api_version,
        stripe_created: envelope.created,
        raw_body: raw,
        signature_header: header.to_string(),
        received_at,
        handled,
    };
    let job = handled.then(|| NewJob {
        kind: pipeline::PROCESS_EVENT.to_string(),
        event_id: Some(event_id.clone()),
        payload: json!({"event_id": event_id, "type": event_type}),
        dedupe_key: format!("event:{event_id}"),
        max_attempts: state.max_attempts,
        run_at: received_at,
    });
    // Stored, counted and logged in a task of its own: if the client goes away after the commit,
    // hyper drops this handler, but the event is stored all the same and must be counted and
    // logged all the same.
    let (store, wake) = (target.store.clone(), state.worker_wake.clone());
    let recorded = tokio::spawn(async move {
        let outcome = store.record_event(&event, job).await?;
        let label = match (outcome, handled) {
            (RecordOutcome::Duplicate, _) => "duplicate",
            (RecordOutcome::Stored, true) => "stored",
            (RecordOutcome::Stored, false) => "ignored",
        };
        metrics::counter!(names::EVENTS_RECEIVED, "type" => metric_type(&event.event_type), "outcome" => label)
            .increment(1);
        if let Some(tenant) = telemetry::tenant_label(store.scope().tenant_id()) {
            metrics::counter!(names::TENANT_WEBHOOK_EVENTS, "tenant" => tenant, "outcome" => label)
                .increment(1);
        }
        if outcome == RecordOutcome::Stored && handled {
            wake.notify_one();
        }
        tracing::info!(stripe.event_id = %event.event_id, stripe.event_type = %event.event_type, outcome = label, "webhook accepted");
        Ok::<_, mlc_store::StoreError>(outcome)
    }
    .in_current_span());
    let outcome = match recorded.await {
        Ok(Ok(outcome)) => outcome,
        // Stripe retries any non-2xx, so a store failure loses nothing.
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the event could not be stored and will be retried by Stripe: {e}"),
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("storing the event failed unexpectedly ({e}); Stripe retries the delivery"),
            ));
        }
    };

    Ok((
        StatusCode::OK,
        Json(json!({
            "received": true,
            "event_id": event_id,
            "duplicate": outcome == RecordOutcome::Duplicate,
            "ignored": !handled,
        })),
    )
        .into_response())
}

/// The body, at most `limit` bytes. A stalled body is 408; a truncated or badly framed one
/// (or a client that went away) is 400: only a body over the limit is 413.
async fn read_body(
    body: Body,
    limit: usize,
    declared: Option<usize>,
    too_large: impl Fn() -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut raw = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_read_error(&e))?;
        if raw.len() + chunk.len() > limit {
            return Err(too_large());
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(raw)
}

fn body_read_error(e: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(BodyReadError::TimedOut(_)) = err.downcast_ref::<BodyReadError>() {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", err.to_string());
        }
        source = err.source();
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "body_unreadable",
        format!("the body could not be read (truncated or badly framed): {e}"),
    )
}

/// Bounded label values: a handled type is its own label; anything else is `other`, so a sender
/// cannot blow up the metric's cardinality.
fn metric_type(event_type: &str) -> &'static str {
    pipeline::HANDLED_EVENT_TYPES
        .iter()
        .find(|t| **t == event_type)
        .copied()
        .unwrap_or("other")
}
