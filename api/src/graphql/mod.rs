//! The GraphQL admin API (async-graphql on axum): `POST /graphql`, `GET /graphql` for queries
//! only, and GraphiQL for a browser at the same address.
//!
//! Who is asking comes from the credential alone: `Authorization: Bearer mlck_…`, a tenant API
//! key (stored as a hash; revoked keys are refused at once). The tenant is never an argument.
//! A request without a valid key is refused before the schema runs (HTTP 401, code
//! UNAUTHENTICATED).

pub mod errors;
pub mod events;
pub mod ids;
pub mod mutation;
pub mod schema;
pub mod subscription;

use async_graphql::Schema;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{Extension, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mlc_core::SecretString;
use mlc_store::Store;

use crate::http::AppState;
use errors::Code;
pub use schema::Viewer;

pub type ApiSchema = Schema<schema::Query, mutation::Mutation, subscription::Subscription>;

/// Nesting deeper than this is refused before anything runs (a hostile query's first cost).
/// The standard introspection query that client libraries send (`gql`, graphql-js) nests
/// about 14 deep through its `ofType` chain, so less would refuse them.
pub const MAX_DEPTH: usize = 16;
/// Each field costs 1 and a list field its page size times its children; more is refused
/// before anything runs.
pub const MAX_COMPLEXITY: usize = 2_000;
/// A GraphQL request body larger than this is refused (413).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The schema, with the store its resolvers read through (always inside the viewer's tenant).
pub fn build_schema(store: Option<(Store, mutation::WorkerWake, mutation::Keys)>) -> ApiSchema {
    let mut builder = Schema::build(
        schema::Query,
        mutation::Mutation,
        subscription::Subscription,
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY);
    if let Some((store, wake, keys)) = store {
        builder = builder.data(store).data(wake).data(keys);
    }
    builder.finish()
}

/// The SDL committed as `frontend-schema/schema.graphql` (`ml-connector graphql-schema`).
pub fn sdl() -> String {
    build_schema(None).sdl()
}

pub fn router(
    store: Store,
    worker_wake: std::sync::Arc<tokio::sync::Notify>,
    master_key: Option<mlc_store::sealed::MasterKey>,
) -> Router<AppState> {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        // The GraphQL extractor reads the body itself (it does not honour `DefaultBodyLimit`):
        // the limit is put on the body, so a larger one is refused (413) before it is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(Extension(build_schema(Some((
            store,
            mutation::WorkerWake(worker_wake),
            mutation::Keys(master_key),
        )))))
}

/// A request refused before the schema runs.
struct Refusal {
    status: StatusCode,
    code: Code,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        refusal(self.status, self.code, &self.message)
    }
}

/// A top-level error response, shaped as GraphQL's, for refusals made before the schema runs.
fn refusal(status: StatusCode, code: Code, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code.as_str() } }]
    });
    let mut resp = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

/// The viewer the request's API key names, or the refusal to send.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Viewer, Refusal> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    authenticate_value(state, header).await
}

/// [`authenticate`] from an `Authorization` value (a header, or a subscription's
/// `connection_init` payload).
async fn authenticate_value(state: &AppState, value: Option<&str>) -> Result<Viewer, Refusal> {
    let unauthenticated = |message: &str| {
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: Code::Unauthenticated,
            message: message.to_string(),
        })
    };
    let Some(value) = value else {
        return unauthenticated(
            "send a tenant API key as `Authorization: Bearer mlck_…` (make one with \
             `ml-connector api-keys create`)",
        );
    };
    let Some(secret) = value.strip_prefix("Bearer ").map(str::trim) else {
        return unauthenticated("the Authorization header must be `Bearer <API key>`");
    };
    match state
        .store
        .store()
        .authenticate_api_key(&SecretString::from(secret.to_string()))
        .await
    {
        Ok(Some((tenant, key))) => Ok(Viewer {
            tenant,
            role: key.role,
            key_name: key.name,
        }),
        // Unknown and revoked keys read alike: nothing says which keys exist.
        Ok(None) => unauthenticated("this API key is not valid (unknown or revoked)"),
        Err(e) => {
            tracing::error!("cannot check an API key: {e}");
            Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: Code::Internal,
                message: "the service cannot check API keys right now; try again shortly".into(),
            })
        }
    }
}

/// `GET /graphql/ws`: subscriptions over `graphql-transport-ws` (or the older
/// `graphql-ws`). The key comes in `connection_init`: `{"Authorization": "Bearer mlck_…"}`;
/// a connection without a valid one is closed before any subscription starts.
async fn graphql_ws(
    State(state): State<AppState>,
    Extension(schema): Extension<ApiSchema>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload: serde_json::Value| async move {
                    let value = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|v| v.as_str());
                    let viewer = authenticate_value(&state, value)
                        .await
                        .map_err(|r| async_graphql::Error::new(r.message))?;
                    let mut data = async_graphql::Data::default();
                    data.insert(viewer);
                    Ok(data)
                })
                .serve()
        })
}

async fn graphql_post(
    State(state): State<AppState>,
    Extension(schema): Extension<ApiSchema>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> Response {
    execute(&state, &schema, &headers, req.into_inner()).await
}

/// Runs `request` as the viewer the headers' API key names, or answers the refusal.
async fn execute(
    state: &AppState,
    schema: &ApiSchema,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> Response {
    match authenticate(state, headers).await {
        Ok(viewer) => {
            GraphQLResponse::from(schema.execute(request.data(viewer)).await).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

/// `GET /graphql`: GraphiQL for a browser (no query string), or a query from the query string.
/// A mutation over GET is refused: a link or an image must never change anything.
async fn graphql_get(
    State(state): State<AppState>,
    Extension(schema): Extension<ApiSchema>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if uri.query().is_none_or(str::is_empty) {
        return Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response();
    }
    let request = match async_graphql::http::parse_query_string(uri.query().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                &format!("cannot read the query string: {e}"),
            );
        }
    };
    if is_mutation(&request) {
        return refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::BadUserInput,
            "mutations are only accepted over POST",
        );
    }
    execute(&state, &schema, &headers, request).await
}

/// Whether the operation the request would run is a mutation (or a subscription). A document
/// that does not parse is left to the schema, which reports it.
fn is_mutation(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let not_query = |ty: OperationType| ty != OperationType::Query;
    match &doc.operations {
        DocumentOperations::Single(op) => not_query(op.node.ty),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops
                .get(name.as_str())
                .is_some_and(|op| not_query(op.node.ty)),
            None => ops.values().any(|op| not_query(op.node.ty)),
        },
    }
}
