//! The route table: every route of the service, in one place.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use mlc_store::ConnectionStore;
use tokio::sync::Notify;

use super::error::ApiError;
use super::{health, webhooks};

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The default connection's view of the store.
    pub store: ConnectionStore,
    /// Opens tenants' sealed credentials (the GraphQL connection test); `None` when
    /// `MLC_MASTER_KEY` is not set.
    pub master_key: Option<mlc_store::sealed::MasterKey>,
    /// Where each webhook route delivers (the default connection and every other).
    pub routes: Arc<super::webhook_routes::WebhookRoutes>,
    pub body_limit_bytes: usize,
    /// Webhook body bytes that may be held at once (`server.max_inflight_body_bytes`): a
    /// delivery takes its size from it before its body is read.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    pub max_attempts: i32,
    /// Wakes the worker when a job was enqueued, so it need not wait for its next poll.
    pub worker_wake: Arc<Notify>,
    pub metrics: PrometheusHandle,
    /// How `/graphql` is offered (introspection, GraphiQL, rate limit, operator token).
    pub graphql: crate::graphql::GraphqlOptions,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(webhooks::receive))
        .route("/webhooks/stripe/{route}", post(webhooks::receive_routed))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api", any(rest_api_retired))
        .route("/api/{*rest}", any(rest_api_retired))
        .route("/", get(dashboard_moved))
        .route("/login", get(dashboard_moved))
        .route("/events", get(dashboard_moved))
        .route("/failed", get(dashboard_moved))
        .route("/waiting", get(dashboard_moved))
        .route("/mappings", get(dashboard_moved))
        .merge(crate::app::router())
        .merge(crate::graphql::router(
            state.store.store().clone(),
            state.worker_wake.clone(),
            state.master_key.clone(),
            state.graphql.clone(),
        ))
        .with_state(state)
}

/// The dashboard is the web app at `/app` (`crate::app`): the server-rendered one that lived at
/// `/` is retired, and `/` and its pages' old addresses lead there (the same page when the app has
/// one). Temporary redirects: nothing keeps them in a browser's cache.
async fn dashboard_moved(uri: axum::http::Uri) -> Redirect {
    Redirect::temporary(match uri.path() {
        "/events" => "/app/#/events",
        "/failed" => "/app/#/failed",
        "/waiting" => "/app/#/waiting",
        "/mappings" => "/app/#/mappings",
        "/login" => "/app/#/signin",
        _ => "/app/",
    })
}

/// What the retired REST admin API's paths answer, whatever the method: scripts written for it
/// get a JSON error that says where its features went.
const REST_API_RETIRED: &str = "the REST admin API was retired: use the GraphQL API at \
     /graphql (see frontend-schema/schema.graphql)";

async fn rest_api_retired() -> Response {
    ApiError::new(StatusCode::GONE, "gone", REST_API_RETIRED).into_response()
}
