//! `POST /webhooks/stripe`: verify, store durably with its job, answer fast.
//!
//! Order matters: the body is read within the size limit, the signature is verified on the raw
//! bytes, the envelope is parsed, and the event and its job are committed in one transaction
//! before the 200. Nothing is processed here: Stripe wants a 2xx quickly, and the worker re-fetches
//! the object from the API anyway.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mlc_store::{NewEvent, NewJob, RecordOutcome};
use mlc_stripe::webhook::SignatureError;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::pipeline;
use crate::telemetry::names;

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

pub async fn receive(State(state): State<AppState>, request: Request) -> Response {
    match receive_inner(&state, request).await {
        Ok(response) => response,
        Err(err) => {
            let outcome = if err.status.is_server_error() {
                "error"
            } else {
                "rejected"
            };
            metrics::counter!(names::EVENTS_RECEIVED, "type" => "unknown", "outcome" => outcome)
                .increment(1);
            err.into_response()
        }
    }
}

async fn receive_inner(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
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
    let raw = axum::body::to_bytes(Body::new(body), state.body_limit_bytes)
        .await
        .map_err(|_| too_large())?;

    let refuse = |e: SignatureError| {
        metrics::counter!(names::SIGNATURE_FAILURES, "reason" => e.code()).increment(1);
        tracing::warn!(reason = e.code(), "webhook refused: {e}");
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    };
    let header = match parts.headers.get("stripe-signature") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| refuse(SignatureError::Malformed("the header is not ASCII text")))?,
        ),
    };
    let now = mlc_core::now_millis() / 1000;
    state.verifier.verify(&raw, header, now).map_err(refuse)?;

    let envelope: Envelope = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
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
        raw_body: raw.to_vec(),
        signature_header: header.unwrap_or_default().to_string(),
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
    let outcome = state.store.record_event(&event, job).await.map_err(|e| {
        // Stripe retries any non-2xx, so a store failure loses nothing.
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the event could not be stored and will be retried by Stripe: {e}"),
        )
    })?;

    let label = match (outcome, handled) {
        (RecordOutcome::Duplicate, _) => "duplicate",
        (RecordOutcome::Stored, true) => "stored",
        (RecordOutcome::Stored, false) => "ignored",
    };
    metrics::counter!(names::EVENTS_RECEIVED, "type" => metric_type(&event_type), "outcome" => label)
        .increment(1);
    if outcome == RecordOutcome::Stored && handled {
        state.worker_wake.notify_one();
    }
    tracing::info!(stripe.event_id = %event_id, stripe.event_type = %event_type, outcome = label, "webhook accepted");
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

/// Bounded label values: a handled type is its own label; anything else is `other`, so a sender
/// cannot blow up the metric's cardinality.
fn metric_type(event_type: &str) -> &'static str {
    pipeline::HANDLED_EVENT_TYPES
        .iter()
        .find(|t| **t == event_type)
        .copied()
        .unwrap_or("other")
}
