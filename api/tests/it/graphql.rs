//! The GraphQL API over HTTP, as a client sees it: who is asking comes from the API key, every
//! answer stays inside that key's tenant (tested with another tenant's IDs and cursors), and
//! bad requests get a clear code.

use std::time::Duration;

use mlc_core::{ConnectionId, ConnectionStatus, ExposeSecret, TenantId};
use mlc_store::testing::backends;
use mlc_store::{ApiKeyRole, NewConnection, Store};
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually};

/// A tenant with connections `names` and a key of `role`; returns the key's secret.
pub(crate) async fn tenant_with(
    store: &Store,
    tenant: &str,
    names: &[&str],
    role: ApiKeyRole,
) -> String {
    let scope = store
        .create_tenant(&TenantId::parse(tenant).unwrap(), tenant)
        .await
        .unwrap();
    let ts = store.tenant(&scope);
    for name in names {
        ts.create_connection(&NewConnection {
            id: ConnectionId::parse(name).unwrap(),
            name: format!("{tenant} {name}"),
            status: ConnectionStatus::Draft,
            settings: json!({}),
            netsuite_account: None,
        })
        .await
        .unwrap();
    }
    ts.create_api_key("test key", role)
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_string()
}

pub(crate) async fn gql(
    app: &TestApp,
    key: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

pub(crate) fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

const CONNECTIONS: &str = "query($first: Int, $after: String) { connections(first: $first, after: $after) { \
    edges { cursor node { id handle name status webhookPath jobCounts { queued failed } } } \
    pageInfo { hasNextPage endCursor } } }";

#[tokio::test]
async fn a_key_sees_its_own_tenant_and_nothing_of_another() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let acme = tenant_with(&store, "acme", &["eu", "us"], ApiKeyRole::Viewer).await;
        let globex = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;

        let (status, body) = gql(
            &app,
            Some(&acme),
            "{ viewer { tenantId role apiKeyName } }",
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["data"]["viewer"],
            json!({ "tenantId": "acme", "role": "VIEWER", "apiKeyName": "test key" })
        );

        // Acme's connections, a page at a time; none of globex's.
        let (_, first) = gql(&app, Some(&acme), CONNECTIONS, json!({ "first": 1 })).await;
        let page = &first["data"]["connections"];
        assert_eq!(page["edges"].as_array().unwrap().len(), 1, "{first}");
        assert_eq!(page["edges"][0]["node"]["handle"], "eu");
        assert_eq!(page["edges"][0]["node"]["status"], "DRAFT");
        assert_eq!(
            page["edges"][0]["node"]["jobCounts"],
            json!({"queued": 0, "failed": 0})
        );
        assert!(
            page["edges"][0]["node"]["webhookPath"]
                .as_str()
                .unwrap()
                .starts_with("/webhooks/stripe/")
        );
        assert_eq!(page["pageInfo"]["hasNextPage"], true);
        let cursor = page["pageInfo"]["endCursor"].as_str().unwrap().to_string();
        let (_, second) = gql(
            &app,
            Some(&acme),
            CONNECTIONS,
            json!({ "first": 1, "after": cursor }),
        )
        .await;
        let page = &second["data"]["connections"];
        assert_eq!(page["edges"][0]["node"]["handle"], "us", "{second}");
        assert_eq!(page["pageInfo"]["hasNextPage"], false);

        // Globex's own view, then its IDs and cursor through acme's key: nothing.
        let (_, theirs) = gql(&app, Some(&globex), CONNECTIONS, json!({})).await;
        let edges = theirs["data"]["connections"]["edges"].as_array().unwrap();
        let handles: Vec<_> = edges.iter().map(|e| e["node"]["handle"].clone()).collect();
        assert_eq!(handles, vec![json!("main")], "{theirs}");
        let their_id = edges[0]["node"]["id"].as_str().unwrap().to_string();
        let their_cursor = edges[0]["cursor"].as_str().unwrap().to_string();
        for query in [
            "query($id: ID!) { connection(id: $id) { name } }",
            "query($id: ID!) { node(id: $id) { id } }",
        ] {
            let (status, body) = gql(&app, Some(&acme), query, json!({ "id": their_id })).await;
            assert_eq!(status, 200);
            assert!(body["errors"].is_null(), "{body}");
            let data = body["data"].as_object().unwrap();
            assert!(data.values().all(Value::is_null), "{query}: {body}");
        }
        // Their cursor ("main") is only a position in acme's own list: it yields acme's
        // connections after it, never globex's.
        let (_, after_theirs) = gql(
            &app,
            Some(&acme),
            CONNECTIONS,
            json!({ "after": their_cursor }),
        )
        .await;
        let edges = after_theirs["data"]["connections"]["edges"]
            .as_array()
            .unwrap();
        assert!(
            edges
                .iter()
                .all(|e| e["node"]["name"].as_str().unwrap().starts_with("acme ")),
            "{after_theirs}"
        );

        // Acme's own ID through node() resolves.
        let (_, mine) = gql(&app, Some(&acme), CONNECTIONS, json!({ "first": 1 })).await;
        let my_id = mine["data"]["connections"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, node) = gql(
            &app,
            Some(&acme),
            "query($id: ID!) { node(id: $id) { id ... on Connection { handle } } }",
            json!({ "id": my_id }),
        )
        .await;
        assert_eq!(node["data"]["node"]["handle"], "eu", "{node}");
        app.stop().await;
    }
}

#[tokio::test]
async fn requests_without_a_valid_key_or_within_limits_are_refused_with_a_code() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let key = tenant_with(&store, "initech", &["main"], ApiKeyRole::Operator).await;

        // No key, a made-up key, a malformed header: 401 UNAUTHENTICATED.
        let (status, body) = gql(&app, None, "{ viewer { tenantId } }", json!({})).await;
        assert_eq!(
            (status, codes(&body)),
            (401, vec!["UNAUTHENTICATED".into()])
        );
        let (status, body) = gql(
            &app,
            Some("mlck_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            "{ viewer { tenantId } }",
            json!({}),
        )
        .await;
        assert_eq!(
            (status, codes(&body)),
            (401, vec!["UNAUTHENTICATED".into()])
        );

        // A revoked key is refused at once.
        let scope = store
            .tenant_scope(&TenantId::parse("initech").unwrap())
            .await
            .unwrap()
            .unwrap();
        let revoked = store
            .tenant(&scope)
            .create_api_key("old", ApiKeyRole::Owner)
            .await
            .unwrap();
        let (status, _) = gql(
            &app,
            Some(revoked.secret.expose_secret()),
            "{ viewer { role } }",
            json!({}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            store
                .tenant(&scope)
                .revoke_api_key(&revoked.info.id)
                .await
                .unwrap()
        );
        let (status, body) = gql(
            &app,
            Some(revoked.secret.expose_secret()),
            "{ viewer { role } }",
            json!({}),
        )
        .await;
        assert_eq!(
            (status, codes(&body)),
            (401, vec!["UNAUTHENTICATED".into()])
        );

        // A page over 100, a foreign string as an ID or a cursor: BAD_USER_INPUT.
        let (_, body) = gql(&app, Some(&key), CONNECTIONS, json!({ "first": 101 })).await;
        assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_string()], "{body}");
        let (_, body) = gql(&app, Some(&key), CONNECTIONS, json!({ "after": "!!" })).await;
        assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_string()], "{body}");
        let (_, body) = gql(
            &app,
            Some(&key),
            "{ connection(id: \"not-an-id\") { name } }",
            json!({}),
        )
        .await;
        assert_eq!(codes(&body), vec!["BAD_USER_INPUT".to_string()], "{body}");

        // Hostile queries are refused before anything runs: nested past the depth limit
        // (introspection's `ofType` chains are the classic), or a page of aliases each asking
        // for a full page (its cost is counted as pages × fields).
        let deep = format!(
            "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
            "ofType { ".repeat(20),
            "}".repeat(20)
        );
        let (_, body) = gql(&app, Some(&key), &deep, json!({})).await;
        assert!(body["data"].is_null(), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("nested too deep"), "{body}");
        let aliases: String = (0..30)
            .map(|i| {
                format!("a{i}: connections(first: 100) {{ edges {{ node {{ name handle }} }} }} ")
            })
            .collect();
        let (_, body) = gql(&app, Some(&key), &format!("{{ {aliases} }}"), json!({})).await;
        assert!(body["data"].is_null(), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("too complex"), "{body}");

        // GET runs queries, refuses mutations, and serves GraphiQL to a browser.
        let url = format!(
            "{}?query={}",
            app.url("/graphql"),
            percent_encode("{ viewer { tenantId } }")
        );
        let resp = app.client.get(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["data"]["viewer"]["tenantId"], "initech");
        let url = format!(
            "{}?query={}",
            app.url("/graphql"),
            percent_encode("mutation { anything }")
        );
        let resp = app.client.get(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        let page = app
            .client
            .get(app.url("/graphql"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("graphiql"), "GraphiQL page expected");

        // A body over the limit is refused (413), not read.
        let huge = "x".repeat(ml_connector::graphql::MAX_BODY_BYTES + 1);
        let resp = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(format!("{{\"query\":\"{huge}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 413);
        app.stop().await;
    }
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `frontend-schema/schema.graphql` is what the code serves: regenerate it with
/// `cargo run -- graphql-schema > frontend-schema/schema.graphql` when this fails.
#[test]
fn the_committed_schema_is_the_one_the_code_serves() {
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend-schema/schema.graphql"),
    )
    .expect("frontend-schema/schema.graphql exists");
    assert!(
        committed == ml_connector::graphql::sdl(),
        "frontend-schema/schema.graphql is stale: run `cargo run -- graphql-schema > \
         frontend-schema/schema.graphql` and commit it"
    );
}

/// The global ID of `tenant`'s connection `handle`, through that tenant's own key.
pub(crate) async fn connection_gid(app: &TestApp, key: &str, handle: &str) -> String {
    let (_, body) = gql(app, Some(key), CONNECTIONS, json!({})).await;
    body["data"]["connections"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["handle"] == handle)
        .unwrap_or_else(|| panic!("{handle} in {body}"))["node"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

const PAUSE: &str = "mutation($id: ID!) { connectionPause(input: { connectionId: $id }) { \
    connection { handle status } releasedJobs userErrors { field code message } } }";
const RESUME: &str = "mutation($id: ID!) { connectionResume(input: { connectionId: $id }) { \
    connection { handle status } releasedJobs userErrors { field code message } } }";
const MAP: &str = "mutation($id: ID!, $p: String!, $i: String!) { productMappingSet(input: { \
    connectionId: $id, stripeProductId: $p, netsuiteItemId: $i }) { releasedJobs \
    userErrors { field code message } } }";
const REPLAY: &str = "mutation($id: ID!, $e: String!) { eventReplay(input: { connectionId: $id, \
    eventId: $e }) { queued userErrors { field code message } } }";

#[tokio::test]
async fn mutations_act_inside_the_keys_tenant_and_its_role() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let operator = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Operator).await;
        let owner = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;
        let scope = store
            .tenant_scope(&TenantId::parse("acme").unwrap())
            .await
            .unwrap()
            .unwrap();
        let viewer = store
            .tenant(&scope)
            .create_api_key("read only", ApiKeyRole::Viewer)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let eu = connection_gid(&app, &operator, "eu").await;
        let main = connection_gid(&app, &owner, "main").await;

        // A viewer may read but not change: FORBIDDEN, whatever the ID.
        for (query, vars) in [
            (PAUSE, json!({ "id": eu })),
            (PAUSE, json!({ "id": main })),
            (MAP, json!({ "id": eu, "p": "prod_X", "i": "12" })),
            (REPLAY, json!({ "id": eu, "e": "evt_1" })),
            (
                "mutation { apiKeyCreate(input: { name: \"x\", role: OWNER }) { secret } }",
                json!({}),
            ),
        ] {
            let (_, body) = gql(&app, Some(&viewer), query, vars).await;
            assert_eq!(
                codes(&body),
                vec!["FORBIDDEN".to_string()],
                "{query}: {body}"
            );
        }
        // An operator cannot manage keys.
        let (_, body) = gql(
            &app,
            Some(&operator),
            "mutation { apiKeyCreate(input: { name: \"x\", role: OWNER }) { secret } }",
            json!({}),
        )
        .await;
        assert_eq!(codes(&body), vec!["FORBIDDEN".to_string()], "{body}");

        // Pause and resume its own connection.
        let (_, body) = gql(&app, Some(&operator), RESUME, json!({ "id": eu })).await;
        let payload = &body["data"]["connectionResume"];
        assert_eq!(payload["connection"]["status"], "ACTIVE", "{body}");
        assert_eq!(payload["userErrors"], json!([]));
        let (_, body) = gql(&app, Some(&operator), PAUSE, json!({ "id": eu })).await;
        assert_eq!(
            body["data"]["connectionPause"]["connection"]["status"],
            "PAUSED"
        );

        // Another tenant's connection through acme's key: NOT_FOUND in userErrors, and globex's
        // connection is untouched.
        for (query, vars, field) in [
            (RESUME, json!({ "id": main }), "connectionResume"),
            (
                MAP,
                json!({ "id": main, "p": "prod_X", "i": "12" }),
                "productMappingSet",
            ),
            (REPLAY, json!({ "id": main, "e": "evt_1" }), "eventReplay"),
        ] {
            let (_, body) = gql(&app, Some(&operator), query, vars).await;
            assert!(body["errors"].is_null(), "{body}");
            let errors = &body["data"][field]["userErrors"];
            assert_eq!(errors[0]["code"], "NOT_FOUND", "{field}: {body}");
            assert_eq!(errors[0]["field"], json!(["input", "connectionId"]));
        }
        let (_, theirs) = gql(&app, Some(&owner), CONNECTIONS, json!({})).await;
        assert_eq!(
            theirs["data"]["connections"]["edges"][0]["node"]["status"],
            "DRAFT"
        );
        let their_scope = crate::helpers::connection_scope(&store, "globex", "main").await;
        assert!(
            store
                .scoped(&their_scope)
                .list_item_links()
                .await
                .unwrap()
                .is_empty(),
            "acme's key must not map globex's products"
        );

        // Mapping: bad input is a user error per field; a good one is stored and audited.
        let (_, body) = gql(
            &app,
            Some(&operator),
            MAP,
            json!({ "id": eu, "p": "price_1", "i": "abc" }),
        )
        .await;
        let fields: Vec<_> = body["data"]["productMappingSet"]["userErrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"][1].clone())
            .collect();
        assert_eq!(
            fields,
            vec![json!("stripeProductId"), json!("netsuiteItemId")],
            "{body}"
        );
        let (_, body) = gql(
            &app,
            Some(&operator),
            MAP,
            json!({ "id": eu, "p": "prod_Widget", "i": "210" }),
        )
        .await;
        assert_eq!(
            body["data"]["productMappingSet"]["userErrors"],
            json!([]),
            "{body}"
        );
        let eu_scope = crate::helpers::connection_scope(&store, "acme", "eu").await;
        let eu_store = store.scoped(&eu_scope);
        let links = eu_store.list_item_links().await.unwrap();
        assert_eq!(links.len(), 1, "{links:?}");
        let audit = eu_store
            .audit_for_stripe_object("prod_Widget")
            .await
            .unwrap();
        assert!(
            audit.iter().any(|a| a.step == "mapping_set"),
            "the same audit entry as the CLI: {audit:?}"
        );

        // Replaying an event that is not stored says so.
        let (_, body) = gql(
            &app,
            Some(&operator),
            REPLAY,
            json!({ "id": eu, "e": "evt_missing" }),
        )
        .await;
        assert_eq!(body["data"]["eventReplay"]["queued"], false);
        assert_eq!(
            body["data"]["eventReplay"]["userErrors"][0]["code"], "NOT_FOUND",
            "{body}"
        );

        // Keys: an owner makes one (secret shown once, works at once), lists, revokes; another
        // tenant's key ID is not found and keeps working.
        let (_, made) = gql(
            &app,
            Some(&owner),
            "mutation { apiKeyCreate(input: { name: \"ci\", role: VIEWER }) { secret \
             apiKey { id name role } userErrors { code } } }",
            json!({}),
        )
        .await;
        let made = &made["data"]["apiKeyCreate"];
        let secret = made["secret"].as_str().unwrap().to_string();
        let new_id = made["apiKey"]["id"].as_str().unwrap().to_string();
        assert_eq!(made["apiKey"]["role"], "VIEWER");
        let (_, me) = gql(
            &app,
            Some(&secret),
            "{ viewer { tenantId role } }",
            json!({}),
        )
        .await;
        assert_eq!(
            me["data"]["viewer"],
            json!({ "tenantId": "globex", "role": "VIEWER" })
        );
        let (_, listed) = gql(&app, Some(&owner), "{ apiKeys { id name } }", json!({})).await;
        let listed = listed["data"]["apiKeys"].as_array().unwrap().clone();
        assert!(
            listed.iter().any(|k| k["id"] == new_id.as_str()),
            "{listed:?}"
        );
        assert!(
            !serde_json::to_string(&listed).unwrap().contains(&secret),
            "a listed key never shows its secret"
        );
        let (_, body) = gql(&app, Some(&viewer), "{ apiKeys { id } }", json!({})).await;
        assert_eq!(codes(&body), vec!["FORBIDDEN".to_string()]);
        // acme's owner (made here) tries to revoke globex's new key: not found, still works.
        let acme_owner = store
            .tenant(&scope)
            .create_api_key("acme owner", ApiKeyRole::Owner)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let revoke = "mutation($id: ID!) { apiKeyRevoke(input: { id: $id }) { revoked \
                      userErrors { code } } }";
        let (_, body) = gql(&app, Some(&acme_owner), revoke, json!({ "id": new_id })).await;
        assert_eq!(body["data"]["apiKeyRevoke"]["revoked"], false, "{body}");
        assert_eq!(
            body["data"]["apiKeyRevoke"]["userErrors"][0]["code"],
            "NOT_FOUND"
        );
        let (status, _) = gql(&app, Some(&secret), "{ viewer { role } }", json!({})).await;
        assert_eq!(status, 200);
        let (_, body) = gql(&app, Some(&owner), revoke, json!({ "id": new_id })).await;
        assert_eq!(body["data"]["apiKeyRevoke"]["revoked"], true, "{body}");
        let (status, _) = gql(&app, Some(&secret), "{ viewer { role } }", json!({})).await;
        assert_eq!(status, 401);
        app.stop().await;
    }
}

pub(crate) fn new_event(id: &str, handled: bool) -> mlc_store::NewEvent {
    let body = format!(
        "{{\"id\":\"{id}\",\"object\":\"event\",\"type\":\"{}\",\"data\":{{\"object\":{{\"id\":\"in_{id}\"}}}},\"created\":1700000000}}",
        if handled {
            "invoice.paid"
        } else {
            "customer.updated"
        }
    );
    mlc_store::NewEvent {
        event_id: id.to_string(),
        event_type: if handled {
            "invoice.paid"
        } else {
            "customer.updated"
        }
        .to_string(),
        object_id: Some(format!("in_{id}")),
        livemode: false,
        api_version: Some("2025-03-31.basil".into()),
        stripe_created: 1_700_000_000,
        raw_body: body.into_bytes(),
        signature_header: format!("t=1700000000,v1=abc{id}"),
        received_at: mlc_core::now_millis(),
        handled,
    }
}

pub(crate) fn job_for(id: &str) -> mlc_store::NewJob {
    mlc_store::NewJob {
        kind: "process_event".into(),
        event_id: Some(id.to_string()),
        payload: json!({ "event_id": id }),
        dedupe_key: format!("process_event:{id}"),
        max_attempts: 5,
        run_at: mlc_core::now_millis(),
    }
}

pub(crate) async fn record(store: &Store, tenant: &str, connection: &str, id: &str, handled: bool) {
    let scope = crate::helpers::connection_scope(store, tenant, connection).await;
    store
        .scoped(&scope)
        .record_event(&new_event(id, handled), handled.then(|| job_for(id)))
        .await
        .unwrap();
}

const EVENTS: &str = "query($c: ID!, $first: Int, $after: String, $filter: EventFilterInput) { \
    connection(id: $c) { events(first: $first, after: $after, filter: $filter) { \
    edges { cursor node { id eventId eventType status } } pageInfo { hasNextPage endCursor } } } }";

#[tokio::test]
async fn events_are_listed_and_read_within_the_tenant() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let acme = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Operator).await;
        let globex = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;
        record(&store, "acme", "eu", "evt_a1", true).await;
        record(&store, "acme", "eu", "evt_a2", true).await;
        record(&store, "acme", "eu", "evt_a3", false).await;
        record(&store, "globex", "main", "evt_g1", true).await;
        let eu = connection_gid(&app, &acme, "eu").await;
        let main = connection_gid(&app, &globex, "main").await;

        // Two pages of acme's three events, and never globex's.
        let (_, one) = gql(&app, Some(&acme), EVENTS, json!({ "c": eu, "first": 2 })).await;
        let page = &one["data"]["connection"]["events"];
        assert_eq!(page["edges"].as_array().unwrap().len(), 2, "{one}");
        assert_eq!(page["pageInfo"]["hasNextPage"], true);
        let (_, two) = gql(
            &app,
            Some(&acme),
            EVENTS,
            json!({ "c": eu, "first": 2, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
        let rest = two["data"]["connection"]["events"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(rest.len(), 1, "{two}");
        let mut ids: Vec<String> = page["edges"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rest.iter())
            .map(|e| e["node"]["eventId"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["evt_a1", "evt_a2", "evt_a3"]);

        // Filters: the event nobody had to act on, by status; by type.
        let (_, ignored) = gql(
            &app,
            Some(&acme),
            EVENTS,
            json!({ "c": eu, "filter": { "status": "IGNORED" } }),
        )
        .await;
        let edges = ignored["data"]["connection"]["events"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(edges.len(), 1, "{ignored}");
        assert_eq!(edges[0]["node"]["eventId"], "evt_a3");
        assert_eq!(edges[0]["node"]["eventType"], "customer.updated");
        let (_, bad) = gql(
            &app,
            Some(&acme),
            EVENTS,
            json!({ "c": eu, "filter": { "receivedAfter": "yesterday" } }),
        )
        .await;
        assert_eq!(codes(&bad), vec!["BAD_USER_INPUT".to_string()], "{bad}");

        // One event in full: the body as Stripe sent it, its job, its audit trail.
        let a1 = page["edges"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rest.iter())
            .find(|e| e["node"]["eventId"] == "evt_a1")
            .unwrap()["node"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let detail = "query($id: ID!) { event(id: $id) { eventId rawEvent status \
                      job { state attempts maxAttempts nextRunAt } auditTrail { step message } } }";
        let (_, body) = gql(&app, Some(&acme), detail, json!({ "id": a1 })).await;
        let event = &body["data"]["event"];
        assert_eq!(event["rawEvent"]["id"], "evt_a1", "{body}");
        assert_eq!(event["job"]["maxAttempts"], 5);
        assert!(
            event["auditTrail"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["step"] == "received"),
            "{body}"
        );

        // Globex's event and its connection's list through acme's key: nothing.
        let (_, theirs) = gql(&app, Some(&globex), EVENTS, json!({ "c": main })).await;
        let g1 = theirs["data"]["connection"]["events"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        for query in [detail, "query($id: ID!) { node(id: $id) { id } }"] {
            let (_, body) = gql(&app, Some(&acme), query, json!({ "id": g1 })).await;
            assert!(body["errors"].is_null(), "{body}");
            assert!(
                body["data"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(Value::is_null),
                "{query}: {body}"
            );
        }
        let (_, body) = gql(&app, Some(&acme), EVENTS, json!({ "c": main })).await;
        assert!(body["data"]["connection"].is_null(), "{body}");
        // Replaying globex's event through acme's own connection finds nothing either; acme's
        // own event is queued again, with the same audit entry as the console's replay.
        let (_, body) = gql(
            &app,
            Some(&acme),
            REPLAY,
            json!({ "id": eu, "e": "evt_g1" }),
        )
        .await;
        assert_eq!(
            body["data"]["eventReplay"]["userErrors"][0]["code"], "NOT_FOUND",
            "{body}"
        );
        // The worker may be running evt_a1's job at any moment (it is queued, or retried after
        // a failure), and a running job is not replayed (NOT_REPLAYABLE, as it should be): as
        // an operator would, ask again until the job is not running.
        let last = std::sync::Mutex::new(Value::Null);
        let replayed = eventually(Duration::from_secs(20), || async {
            let (_, body) = gql(
                &app,
                Some(&acme),
                REPLAY,
                json!({ "id": eu, "e": "evt_a1" }),
            )
            .await;
            let queued = body["data"]["eventReplay"]["queued"] == true;
            let running = body["data"]["eventReplay"]["userErrors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("running"));
            *last.lock().unwrap() = body;
            queued || !running
        })
        .await;
        let body = last.into_inner().unwrap();
        assert!(replayed, "evt_a1's job was still running: {body}");
        assert_eq!(body["data"]["eventReplay"]["queued"], true, "{body}");
        let (_, body) = gql(&app, Some(&acme), detail, json!({ "id": a1 })).await;
        assert!(
            body["data"]["event"]["auditTrail"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["step"] == "replayed"),
            "{body}"
        );
        app.stop().await;
    }
}

const TEST: &str = "mutation($id: ID!) { connectionTest(input: { connectionId: $id }) { \
    result { ok checkedAt checks { code name status message fix } } userErrors { code } } }";

/// "Ping your systems" through GraphQL: a tenant's connection, with its sealed credentials,
/// against the Stripe and NetSuite simulators; the outcome is recorded as its last test. A
/// connection with no credentials gets a failed check that says what to do, not an error.
#[tokio::test]
async fn connection_test_pings_the_tenants_systems_and_records_the_outcome() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let opts = ml_connector::stack::StackOptions::new(db.url(), keys.path());
        let stack = ml_connector::stack::Stack::start(opts.clone())
            .await
            .expect("stack starts");
        // Kept: its simulators stop when dropped.
        let _globex = stack
            .add_tenant("globex", "production", &opts, None)
            .await
            .expect("tenant connects");
        let store = stack.store.store().clone();
        let scope = store
            .tenant_scope(&TenantId::parse("globex").unwrap())
            .await
            .unwrap()
            .unwrap();
        let tenant = store.tenant(&scope);
        tenant
            .create_connection(&NewConnection {
                id: ConnectionId::parse("bare").unwrap(),
                name: "no credentials yet".into(),
                status: ConnectionStatus::Draft,
                settings: json!({}),
                netsuite_account: None,
            })
            .await
            .unwrap();
        let key = tenant
            .create_api_key("ops", ApiKeyRole::Operator)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let list = crate::helpers::gql(stack.addr, &key, CONNECTIONS, json!({})).await;
        let id_of = |handle: &str| {
            list["data"]["connections"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["node"]["handle"] == handle)
                .unwrap()["node"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        };

        let body =
            crate::helpers::gql(stack.addr, &key, TEST, json!({ "id": id_of("production") })).await;
        let result = &body["data"]["connectionTest"]["result"];
        let checks = result["checks"].as_array().unwrap();
        assert_eq!(result["ok"], true, "{body}");
        assert!(
            checks
                .iter()
                .any(|c| c["code"] == "STRIPE_KEY" && c["status"] == "PASS"),
            "{body}"
        );
        assert!(
            checks
                .iter()
                .any(|c| c["name"].as_str().unwrap().starts_with("netsuite")
                    && c["status"] == "PASS"),
            "{body}"
        );
        assert!(checks.iter().all(|c| c["status"] != "FAIL"), "{body}");

        let body =
            crate::helpers::gql(stack.addr, &key, TEST, json!({ "id": id_of("bare") })).await;
        assert!(
            body["errors"].is_null(),
            "a failing test is a result: {body}"
        );
        let result = &body["data"]["connectionTest"]["result"];
        assert_eq!(result["ok"], false, "{body}");
        let failed: Vec<_> = result["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "FAIL")
            .collect();
        assert!(!failed.is_empty(), "{body}");
        assert!(failed.iter().all(|c| c["fix"].is_string()), "{body}");

        // Both outcomes are the connections' last tests.
        let health = crate::helpers::gql(
            stack.addr,
            &key,
            "{ connections { nodes { handle health { lastTestOk lastTestAt } } } }",
            json!({}),
        )
        .await;
        let nodes = health["data"]["connections"]["nodes"].as_array().unwrap();
        let ok_of = |h: &str| {
            nodes.iter().find(|n| n["handle"] == h).unwrap()["health"]["lastTestOk"].clone()
        };
        assert_eq!(ok_of("production"), json!(true), "{health}");
        assert_eq!(ok_of("bare"), json!(false), "{health}");

        // The configured default connection runs with the process configuration (its stored
        // settings only say so): its test checks that configuration, and passes.
        let default_scope = store
            .tenant_scope(&TenantId::default_id())
            .await
            .unwrap()
            .unwrap();
        let default_key = store
            .tenant(&default_scope)
            .create_api_key("ops", ApiKeyRole::Operator)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let list = crate::helpers::gql(stack.addr, &default_key, CONNECTIONS, json!({})).await;
        let default_id = list["data"]["connections"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let body =
            crate::helpers::gql(stack.addr, &default_key, TEST, json!({ "id": default_id })).await;
        let result = &body["data"]["connectionTest"]["result"];
        assert_eq!(result["ok"], true, "{body}");
        assert!(
            result["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["code"] == "STRIPE_KEY" && c["status"] == "PASS"),
            "{body}"
        );
        stack.stop().await.unwrap();
    }
}

/// The API through an independent client, the Python `gql` package (pinned in
/// scripts/requirements-test.txt): `connectionTest`, a replay, and a subscription over
/// graphql-transport-ws that reports the replayed event (api/tests/it/graphql_client.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_independent_graphql_client_tests_replays_and_subscribes() {
    let Some(python) = crate::helpers::test_python() else {
        return;
    };
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let opts = ml_connector::stack::StackOptions::new(db.url(), keys.path());
        let stack = ml_connector::stack::Stack::start(opts.clone())
            .await
            .expect("stack starts");
        let globex = stack
            .add_tenant("globex", "production", &opts, None)
            .await
            .expect("tenant connects");
        let stripe = globex.stripe.as_ref().unwrap();
        mlc_stripe_sim::run_scenario(
            &stripe.base_url,
            stripe.api_key_str(),
            mlc_stripe_sim::ScenarioConfig {
                customers: 2,
                seed: 11,
                on_catalog: Some(ml_connector::stack::catalog_hook_for(
                    vec![globex.netsuite.handle().clone()],
                    true,
                )),
                ..mlc_stripe_sim::ScenarioConfig::default()
            },
        )
        .await
        .expect("scenario runs");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let counts = globex.store.job_counts().await.unwrap();
            let n = |s: mlc_store::JobState| {
                counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n)
            };
            if n(mlc_store::JobState::Succeeded) > 0
                && n(mlc_store::JobState::Queued) + n(mlc_store::JobState::Running) == 0
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let scope = stack
            .store
            .store()
            .tenant_scope(&TenantId::parse("globex").unwrap())
            .await
            .unwrap()
            .unwrap();
        let key = stack
            .store
            .store()
            .tenant(&scope)
            .create_api_key("python", ApiKeyRole::Operator)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let list = crate::helpers::gql(stack.addr, &key, CONNECTIONS, json!({})).await;
        let connection = list["data"]["connections"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Another tenant, for the client to try through this key.
        let other = stack
            .add_tenant("initech", "main", &opts, Some(&stack.stripe))
            .await
            .expect("another tenant connects");
        let other_key = tenant_key(&stack.store.store().clone(), "initech").await;
        let theirs = crate::helpers::gql(stack.addr, &other_key, CONNECTIONS, json!({})).await;
        let other_connection = theirs["data"]["connections"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/graphql_client.py");
        let out = tokio::process::Command::new(&python)
            .arg(&script)
            .env("MLC_URL", format!("http://{}", stack.addr))
            .env("MLC_KEY", &key)
            .env("MLC_CONNECTION", &connection)
            .env("MLC_OTHER_CONNECTION", &other_connection)
            .output()
            .await
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.trim_end().ends_with("ok"),
            "{:?}: the gql client failed\nstdout:\n{stdout}\nstderr:\n{stderr}",
            db.backend()
        );
        drop((globex, other));
        stack.stop().await.unwrap();
    }
}

/// An owner key for an existing tenant.
async fn tenant_key(store: &Store, tenant: &str) -> String {
    let scope = store
        .tenant_scope(&TenantId::parse(tenant).unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .tenant(&scope)
        .create_api_key("test", ApiKeyRole::Owner)
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_string()
}
