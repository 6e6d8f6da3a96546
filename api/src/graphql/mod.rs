//! The GraphQL admin API (async-graphql on axum): `POST /graphql`, `GET /graphql` for queries
//! only, and GraphiQL for a browser at the same address.
//!
//! Who is asking comes from the credential alone: `Authorization: Bearer mlck_…`, a tenant API
//! key (stored as a hash; revoked keys are refused at once). The tenant is never an argument.
//! A request without a valid key is refused before the schema runs (HTTP 401, code
//! UNAUTHENTICATED).

pub mod accounts;
pub mod connections;
pub mod errors;
pub mod events;
pub mod idempotency;
pub mod ids;
pub mod loaders;
pub mod mappings;
pub mod mutation;
pub mod onboarding;
pub mod reconcile;
pub mod replay;
pub mod schema;
pub mod subscription;
pub mod tenants;

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
use tracing::Instrument as _;

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

/// How the GraphQL API is offered (from `[admin]` in the configuration).
#[derive(Clone)]
pub struct GraphqlOptions {
    /// This service's public address, for full webhook URLs (`None`: paths only).
    pub public_url: Option<String>,
    pub introspection: bool,
    pub graphiql: bool,
    /// Requests each API key may make per minute.
    pub requests_per_minute: u32,
    /// The operator token (`admin.token`): it may create tenants, and nothing inside one.
    pub operator_token: Option<crate::console::AdminToken>,
    /// The process configuration: what the configured default connection runs with (its
    /// connection test checks it).
    pub process_config: Option<std::sync::Arc<mlc_service::config::Config>>,
    /// Who may sign up (`admin.signup`).
    pub signup: mlc_service::accounts::SignupPolicy,
}

impl GraphqlOptions {
    pub fn from_config(config: &mlc_service::config::Config) -> Self {
        let admin = &config.admin;
        GraphqlOptions {
            public_url: admin.public_url.clone(),
            introspection: admin.graphql_introspection,
            graphiql: admin.graphql_graphiql,
            requests_per_minute: admin.graphql_requests_per_minute,
            operator_token: admin.token.clone().map(crate::console::AdminToken::new),
            process_config: Some(std::sync::Arc::new(config.clone())),
            signup: admin.signup,
        }
    }
}

/// The process configuration, for the configured default connection.
#[derive(Clone)]
pub struct ProcessConfig(pub std::sync::Arc<mlc_service::config::Config>);

impl Default for GraphqlOptions {
    fn default() -> Self {
        GraphqlOptions {
            public_url: None,
            introspection: true,
            graphiql: true,
            requests_per_minute: 600,
            operator_token: None,
            process_config: None,
            signup: mlc_service::accounts::SignupPolicy::Closed,
        }
    }
}

/// What the resolvers act through: the store (always inside the viewer's tenant), the worker to
/// wake, the master key for sealed credentials.
pub struct Services {
    pub store: Store,
    pub wake: mutation::WorkerWake,
    pub keys: mutation::Keys,
}

/// The public address webhook URLs are given under.
#[derive(Clone)]
pub struct PublicUrl(pub Option<String>);

/// The schema. Introspection follows `options`; the `analyzer` extension reports each request's
/// depth and complexity (its cost) in `extensions`.
pub fn build_schema(services: Option<Services>, options: &GraphqlOptions) -> ApiSchema {
    let mut builder = Schema::build(
        schema::Query,
        mutation::Mutation::default(),
        subscription::Subscription,
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .extension(async_graphql::extensions::Analyzer)
    .extension(idempotency::Idempotency)
    .data(PublicUrl(options.public_url.clone()))
    .data(accounts::AccountPolicy {
        signup: options.signup,
        // Over HTTPS the session cookie is Secure (never sent in the clear).
        secure_cookie: options
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
    })
    .data(accounts::SignInLimits::new());
    if !options.introspection {
        builder = builder.disable_introspection();
    }
    if let Some(config) = &options.process_config {
        builder = builder.data(ProcessConfig(config.clone()));
    }
    if let Some(s) = services {
        builder = builder.data(s.store).data(s.wake).data(s.keys);
    }
    builder.finish()
}

/// The SDL committed as `frontend-schema/schema.graphql` (`ml-connector graphql-schema`).
pub fn sdl() -> String {
    build_schema(None, &GraphqlOptions::default()).sdl()
}

pub fn router(
    store: Store,
    worker_wake: std::sync::Arc<tokio::sync::Notify>,
    master_key: Option<mlc_store::sealed::MasterKey>,
    options: GraphqlOptions,
) -> Router<AppState> {
    let schema = build_schema(
        Some(Services {
            store,
            wake: mutation::WorkerWake(worker_wake),
            keys: mutation::Keys(master_key),
        }),
        &options,
    );
    let gate = Gate::new(options);
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        // The GraphQL extractor reads the body itself (it does not honour `DefaultBodyLimit`):
        // the limit is put on the body, so a larger one is refused (413) before it is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(Extension(schema))
        .layer(Extension(gate))
}

/// Who may come in, and how often: the operator token and each API key's request budget.
#[derive(Clone)]
struct Gate {
    options: std::sync::Arc<GraphqlOptions>,
    /// One bucket per API key ID, in this process (each instance enforces its own share).
    limiter: std::sync::Arc<governor::DefaultKeyedRateLimiter<String>>,
}

impl Gate {
    fn new(options: GraphqlOptions) -> Self {
        let per_minute = std::num::NonZeroU32::new(options.requests_per_minute)
            .unwrap_or(std::num::NonZeroU32::MIN);
        Gate {
            limiter: std::sync::Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_minute(per_minute),
            )),
            options: std::sync::Arc::new(options),
        }
    }

    /// Takes one request from the key's budget, or says when to come back.
    fn admit(&self, key_id: &str) -> Result<(), Refusal> {
        match self.limiter.check_key(&key_id.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                use governor::clock::Clock as _;
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: Code::RateLimited,
                    message: format!(
                        "this API key made more than {} requests in a minute; retry in {secs} s",
                        self.options.requests_per_minute
                    ),
                    retry_after: Some(secs.max(1)),
                })
            }
        }
    }
}

/// Who is calling: a tenant's API key, a dashboard session, the service operator, or nobody
/// (who may only sign up or sign in).
enum Caller {
    Tenant(Viewer),
    /// A session: its viewer and the hash of its token (for `signOut`).
    Session(Viewer, String),
    Operator,
    Anonymous,
}

impl Caller {
    /// The span a request runs in: the tenant asking, so its logs and traces name it.
    fn span(&self) -> tracing::Span {
        match self {
            Caller::Tenant(v) | Caller::Session(v, _) => {
                tracing::info_span!("graphql", tenant = %v.tenant.tenant_id())
            }
            Caller::Operator => tracing::info_span!("graphql", caller = "operator"),
            Caller::Anonymous => tracing::info_span!("graphql", caller = "anonymous"),
        }
    }

    /// The request's data: who is asking, and their own DataLoaders.
    fn into_data(self, store: &Store) -> async_graphql::Data {
        let mut data = async_graphql::Data::default();
        match self {
            Caller::Tenant(v) => {
                data.insert(loaders::for_viewer(store, &v));
                data.insert(v);
            }
            Caller::Session(v, token_hash) => {
                data.insert(loaders::for_viewer(store, &v));
                data.insert(v);
                data.insert(accounts::SessionTokenHash(token_hash));
            }
            Caller::Operator => data.insert(tenants::ServiceOperator),
            Caller::Anonymous => {}
        }
        data
    }
}

/// A request refused before the schema runs.
struct Refusal {
    status: StatusCode,
    code: Code,
    message: String,
    /// Seconds to wait (429).
    retry_after: Option<u64>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = refusal(self.status, self.code, &self.message);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
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

/// The caller a request names: an API key or the operator token (`Authorization`), else a
/// dashboard session (the session cookie; a mutation must also carry the session's CSRF token
/// in `X-CSRF-Token`), else nobody, who may only sign up, sign in or accept an invitation. Or
/// the refusal to send.
async fn authenticate(
    state: &AppState,
    gate: &Gate,
    headers: &HeaderMap,
    request: &async_graphql::Request,
) -> Result<Caller, Refusal> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return authenticate_value(state, gate, Some(value.to_str().unwrap_or_default())).await;
    }
    let anonymous_ok = only_anonymous_fields(request);
    if let Some(token) = crate::console::auth::cookie(headers, accounts::SESSION_COOKIE) {
        let csrf = is_mutation(request).then(|| {
            headers
                .get(accounts::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
        });
        match authenticate_session(state, gate, token, csrf).await {
            // A stale cookie does not stand in the way of signing in again, nor does a live one
            // in a tab without its CSRF token (a new tab): signing in needs neither.
            Err(r)
                if anonymous_ok
                    && matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {}
            other => return other,
        }
    }
    if anonymous_ok {
        return Ok(Caller::Anonymous);
    }
    authenticate_value(state, gate, None).await
}

/// A dashboard session by its cookie's token. `csrf`: `Some` for a mutation, with the CSRF
/// token it carried (which must be the session's).
async fn authenticate_session(
    state: &AppState,
    gate: &Gate,
    token: &str,
    csrf: Option<Option<&str>>,
) -> Result<Caller, Refusal> {
    let hash = mlc_store::token_hash(token.trim());
    match state.store.store().session(&hash).await {
        Ok(Some(s)) => {
            if let Some(given) = csrf
                && !given.is_some_and(|g| mlc_service::accounts::csrf_matches(&s.csrf_hash, g))
            {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    code: Code::Forbidden,
                    message: "a change made with the session cookie must carry the session's CSRF \
                              token in the X-CSRF-Token header (signIn's answer gives it)"
                        .into(),
                    retry_after: None,
                });
            }
            gate.admit(&format!("user:{}", s.user_id))?;
            Ok(Caller::Session(
                Viewer {
                    tenant: s.tenant,
                    role: s.role,
                    key_name: s.email,
                    key_id: format!("user:{}", s.user_id),
                },
                hash,
            ))
        }
        Ok(None) => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: Code::Unauthenticated,
            message: "your session has ended (signed out or expired): sign in again".into(),
            retry_after: None,
        }),
        Err(e) => {
            tracing::error!("cannot check a session: {e}");
            Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: Code::Internal,
                message: "the service cannot check sessions right now; try again shortly".into(),
                retry_after: Some(5),
            })
        }
    }
}

/// Whether the operation the request would run is a mutation of sign-up, sign-in or invitation
/// fields only (what may run without a credential).
fn only_anonymous_fields(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let op = match &doc.operations {
        DocumentOperations::Single(op) => Some(op),
        DocumentOperations::Multiple(ops) => match &request.operation_name {
            Some(name) => ops.get(name.as_str()),
            None if ops.len() == 1 => ops.values().next(),
            None => None,
        },
    };
    let Some(op) = op else { return false };
    op.node.ty == OperationType::Mutation
        && !op.node.selection_set.node.items.is_empty()
        && op
            .node
            .selection_set
            .node
            .items
            .iter()
            .all(|s| match &s.node {
                Selection::Field(f) => {
                    let name = f.node.name.node.as_str();
                    name == "__typename" || accounts::ANONYMOUS_FIELDS.contains(&name)
                }
                _ => false,
            })
}

/// [`authenticate`] from an `Authorization` value (a header, or a subscription's
/// `connection_init` payload). An API key's request is taken from its per-minute budget.
async fn authenticate_value(
    state: &AppState,
    gate: &Gate,
    value: Option<&str>,
) -> Result<Caller, Refusal> {
    let unauthenticated = |message: &str| {
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: Code::Unauthenticated,
            message: message.to_string(),
            retry_after: None,
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
    if !secret.starts_with(mlc_store::API_KEY_PREFIX) {
        return match &gate.options.operator_token {
            Some(token) if token.matches(secret) => Ok(Caller::Operator),
            _ => unauthenticated("this API key is not valid (unknown or revoked)"),
        };
    }
    match state
        .store
        .store()
        .authenticate_api_key(&SecretString::from(secret.to_string()))
        .await
    {
        Ok(Some((tenant, key))) => {
            gate.admit(&key.id)?;
            Ok(Caller::Tenant(Viewer {
                tenant,
                role: key.role,
                key_name: key.name,
                key_id: key.id,
            }))
        }
        // Unknown and revoked keys read alike: nothing says which keys exist.
        Ok(None) => unauthenticated("this API key is not valid (unknown or revoked)"),
        Err(e) => {
            tracing::error!("cannot check an API key: {e}");
            Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: Code::Internal,
                message: "the service cannot check API keys right now; try again shortly".into(),
                retry_after: Some(5),
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
    Extension(gate): Extension<Gate>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A dashboard session may subscribe too: its cookie came with the upgrade, and its CSRF
    // token must come in `connection_init` (`{"csrfToken": …}`), so another site's page cannot
    // open a socket with the cookie alone.
    let session =
        crate::console::auth::cookie(&headers, accounts::SESSION_COOKIE).map(str::to_string);
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload: serde_json::Value| async move {
                    let value = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|v| v.as_str());
                    let caller = match (value, &session) {
                        (None, Some(token)) => {
                            let csrf = payload.get("csrfToken").and_then(|v| v.as_str());
                            authenticate_session(&state, &gate, token, Some(csrf)).await
                        }
                        _ => authenticate_value(&state, &gate, value).await,
                    }
                    .map_err(|r| async_graphql::Error::new(r.message))?;
                    Ok(caller.into_data(state.store.store()))
                })
                .serve()
        })
}

async fn graphql_post(
    State(state): State<AppState>,
    Extension(schema): Extension<ApiSchema>,
    Extension(gate): Extension<Gate>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    req: GraphQLRequest,
) -> Response {
    execute(
        &state,
        &schema,
        &gate,
        &headers,
        &extensions,
        req.into_inner(),
    )
    .await
}

/// Runs `request` as the viewer the headers' API key names, or answers the refusal.
async fn execute(
    state: &AppState,
    schema: &ApiSchema,
    gate: &Gate,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    mut request: async_graphql::Request,
) -> Response {
    match authenticate(state, gate, headers, &request).await {
        Ok(caller) => {
            let span = caller.span();
            request.data = caller.into_data(state.store.store());
            let peer = extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip());
            request.data.insert(accounts::ClientAddr(peer));
            let mut response = schema.execute(request).instrument(span).await;
            with_codes(&mut response.errors);
            GraphQLResponse::from(response).into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

/// `GET /graphql`: GraphiQL for a browser (no query string), or a query from the query string.
/// A mutation over GET is refused: a link or an image must never change anything.
async fn graphql_get(
    State(state): State<AppState>,
    Extension(schema): Extension<ApiSchema>,
    Extension(gate): Extension<Gate>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    uri: axum::http::Uri,
) -> Response {
    if uri.query().is_none_or(str::is_empty) {
        if !gate.options.graphiql {
            return refusal(
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                "send a query (`?query=…`); the GraphiQL page is turned off here \
                 (admin.graphql_graphiql)",
            );
        }
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
    execute(&state, &schema, &gate, &headers, &extensions, request).await
}

/// Gives every error a code: resolvers set theirs; what has none was refused before any
/// resolver ran (a parse or validation error, a value of the wrong type, a query too deep or
/// too complex), which is the request's fault.
fn with_codes(errors: &mut [async_graphql::ServerError]) {
    for e in errors {
        let extensions = e.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", Code::BadUserInput.as_str());
        }
    }
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
