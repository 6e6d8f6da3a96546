//! `/healthz` (the process answers), `/readyz` (the store answers) and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use mlc_service::telemetry::names;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.store().ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "store": "ok"})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "store": e.to_string()})),
        ),
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Job gauges are read from the store at scrape time so every instance reports the shared
    // queue, whichever process did the work.
    if let Ok(counts) = state.store.store().job_counts_all().await {
        for state_name in mlc_store::JobState::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == state_name)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            metrics::gauge!(names::JOBS, "state" => state_name.as_str()).set(n as f64);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
