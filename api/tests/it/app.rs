//! `/app`, the web dashboard as a GraphQL client: the page and its assets are served with their
//! content types under a strict Content-Security-Policy, and nothing under `/app` reaches the
//! store: the router has no state (it serves the same bytes with no store behind it), and the
//! scripts talk to nothing but `/graphql`, `/graphql/ws` and their own files.

use ml_connector::app::{ASSETS, CONTENT_SECURITY_POLICY};
use mlc_store::testing::TestDb;

use crate::helpers::TestApp;

async fn get(base: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = reqwest::get(format!("{base}{path}"))
        .await
        .expect("answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("{name} is missing: {h:?}"))
}

#[tokio::test]
async fn the_app_is_served_with_its_content_types_under_a_strict_csp() {
    let db = TestDb::sqlite().unwrap();
    let app = TestApp::start(&db).await;
    let base = format!("http://{}", app.addr);
    for path in ["/app", "/app/"] {
        let (status, h, body) = get(&base, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
        assert_eq!(
            header(&h, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(part), "{part}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        assert_eq!(header(&h, "referrer-policy"), "same-origin");
        assert!(body.contains(r#"<script type="module" src="/app/app.js"></script>"#));
        assert!(!body.contains("style="), "no inline style");
        assert_eq!(body.matches("<script").count(), 1, "one script, by src");
    }
    for (name, content_type, content) in ASSETS {
        let (status, h, body) = get(&base, &format!("/app/{name}")).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(header(&h, "content-type"), *content_type, "{name}");
        assert_eq!(
            header(&h, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        assert_eq!(&body, content, "{name}");
    }
    assert_eq!(
        header(&get(&base, "/app/app.js").await.1, "content-type"),
        "text/javascript; charset=utf-8",
        "ES modules need a JavaScript type under nosniff"
    );
    let (status, h, _) = get(&base, "/app/secrets.toml").await;
    assert_eq!(status, 404);
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    app.stop().await;
}

#[tokio::test]
async fn no_app_asset_reaches_the_store() {
    // The router serves the same bytes with no store, no state, nothing behind it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, ml_connector::app::router::<()>())
            .await
            .unwrap()
    });
    let base = format!("http://{addr}");
    assert_eq!(get(&base, "/app").await.0, 200);
    for (name, _, content) in ASSETS {
        let (status, _, body) = get(&base, &format!("/app/{name}")).await;
        assert_eq!((status, &body), (200, &content.to_string()), "{name}");
    }
    server.abort();

    // The scripts' only ways out: /graphql (fetch), /graphql/ws (the socket), their own files.
    let mut fetched = Vec::new();
    for (name, content_type, body) in ASSETS {
        if !content_type.starts_with("text/javascript") {
            continue;
        }
        for call in [
            "fetch(",
            "new WebSocket(",
            "new URL(",
            "XMLHttpRequest",
            "sendBeacon",
        ] {
            for (i, _) in body.match_indices(call) {
                let arg: String = body[i + call.len()..]
                    .chars()
                    .take_while(|c| *c != ',' && *c != ')')
                    .collect();
                fetched.push((name.to_string(), call, arg.trim().to_string()));
            }
        }
    }
    for (file, call, arg) in &fetched {
        let ok = match *call {
            "fetch(" => ["\"/graphql\"", "\"/app/operations.graphql\""].contains(&arg.as_str()),
            "new WebSocket(" => arg == "url",
            "new URL(" => arg == "\"/graphql/ws\"",
            _ => false,
        };
        assert!(ok, "{file}: {call}{arg}…");
    }
    assert!(
        fetched
            .iter()
            .any(|(_, c, a)| *c == "fetch(" && a == "\"/graphql\""),
        "{fetched:?}"
    );
    // Every operation the app sends is one of frontend-schema/operations/ (checked against the
    // schema by scripts/check-graphql.sh): the app has no query text of its own.
    let ops = ASSETS
        .iter()
        .find(|(n, _, _)| *n == "operations.graphql")
        .unwrap()
        .2;
    for (name, content_type, body) in ASSETS {
        if !content_type.starts_with("text/javascript") {
            continue;
        }
        assert!(
            !body.contains("query {") && !body.contains("mutation {"),
            "{name}"
        );
        let named = body
            .match_indices("gql(\"")
            .chain(body.match_indices("subscribe(\""));
        for (i, m) in named {
            let op: String = body[i + m.len()..]
                .chars()
                .take_while(|c| *c != '"')
                .collect();
            assert!(
                ops.contains(&format!("query {op}"))
                    || ops.contains(&format!("mutation {op}"))
                    || ops.contains(&format!("subscription {op}")),
                "{name}: {op} is not in frontend-schema/operations/"
            );
        }
    }
}
