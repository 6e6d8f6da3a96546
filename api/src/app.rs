//! `/app`: the web dashboard as a GraphQL client. A build-free ES-module app (`api/app/`),
//! embedded in the binary with `include_str!` and served as static files: it reads and writes
//! only through the public GraphQL API (`/graphql`, `/graphql/ws`) with the person's session
//! cookie and CSRF token, like any other client. Nothing here reaches the store: the router has
//! no state.
//!
//! The operations it sends are the named ones of `frontend-schema/operations/` (validated against
//! the schema by `scripts/check-graphql.sh`), served as one document at `/app/operations.graphql`;
//! the page sends each operation with the fragments it uses.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's Content-Security-Policy: its own scripts, styles and connections only, no inline
/// script or style, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     style-src 'self'; script-src 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../app/index.html");

/// The operations the app may send: every file of `frontend-schema/operations/`.
const OPERATIONS: &str = concat!(
    include_str!("../../frontend-schema/operations/fragments.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/app.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/viewer.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/connections.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/setup.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/events.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/mappings.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/replay.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/api-keys.graphql"),
    "\n",
    include_str!("../../frontend-schema/operations/node.graphql"),
);

const JS: &str = "text/javascript; charset=utf-8";

/// The files under `/app/`: name, content type, body.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", INDEX),
    ("app.js", JS, include_str!("../app/app.js")),
    ("graphql.js", JS, include_str!("../app/graphql.js")),
    ("dom.js", JS, include_str!("../app/dom.js")),
    ("pages.js", JS, include_str!("../app/pages.js")),
    ("shared.js", JS, include_str!("../app/shared.js")),
    ("wizard.js", JS, include_str!("../app/wizard.js")),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../app/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../app/favicon.svg"),
    ),
    (
        "operations.graphql",
        "text/plain; charset=utf-8",
        OPERATIONS,
    ),
];

/// `GET /app`, `GET /app/` (the page) and `GET /app/{file}` (its assets). Stateless: it serves
/// the embedded files and nothing else.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/app", get(index))
        .route("/app/", get(index))
        .route("/app/{file}", get(asset))
}

async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => file(content_type, body),
        None => {
            let mut r = (StatusCode::NOT_FOUND, "not found\n").into_response();
            secure(&mut r);
            r
        }
    }
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    // The files change with the binary: always revalidate.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(&mut r);
    r
}

fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}
