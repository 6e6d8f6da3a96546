//! The GraphQL `events` list's keyset cursor and its audit trails, over HTTP: paging walks every
//! event once while new ones arrive, ties in `received_at` included; a cursor is only a position,
//! so another connection's (or tenant's) cursor lists this connection's events and nothing else;
//! each listed event carries its own audit trail.

use std::collections::HashSet;

use mlc_core::{ConnectionId, ConnectionStatus, ExposeSecret, TenantId};
use mlc_store::testing::backends;
use mlc_store::{ApiKeyRole, NewConnection, Store};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const LIST: &str = "query($c: ID!, $first: Int, $after: String, $filter: EventFilterInput) { \
    connection(id: $c) { events(first: $first, after: $after, filter: $filter) { \
    edges { cursor node { eventId receivedAt eventType auditTrail { step message } } } \
    pageInfo { hasNextPage hasPreviousPage endCursor } } } }";

const CONNECTIONS: &str = "{ connections(first: 100) { edges { node { id handle } } } }";

/// A tenant with draft connections `names` and an owner key; returns the key.
async fn tenant(store: &Store, tenant: &str, names: &[&str]) -> String {
    let scope = store
        .create_tenant(&TenantId::parse(tenant).unwrap(), tenant)
        .await
        .unwrap();
    let ts = store.tenant(&scope);
    for name in names {
        ts.create_connection(&NewConnection {
            id: ConnectionId::parse(name).unwrap(),
            name: name.to_string(),
            status: ConnectionStatus::Draft,
            settings: json!({}),
            netsuite_account: None,
        })
        .await
        .unwrap();
    }
    ts.create_api_key("events test", ApiKeyRole::Owner)
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_string()
}

async fn gql(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// The global ID of the key's connection `handle`.
async fn connection_id(app: &TestApp, key: &str, handle: &str) -> String {
    let body = gql(app, key, CONNECTIONS, json!({})).await;
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

/// Records event `id` received at `at` (Unix ms) on `tenant`'s connection, with its job.
async fn record(store: &Store, tenant: &str, connection: &str, id: &str, at: i64) {
    let scope = crate::helpers::connection_scope(store, tenant, connection).await;
    let event = mlc_store::NewEvent {
        event_id: id.to_string(),
        event_type: "invoice.paid".into(),
        object_id: Some(format!("in_{id}")),
        livemode: false,
        api_version: None,
        stripe_created: at / 1000,
        raw_body: json!({ "id": id, "type": "invoice.paid" })
            .to_string()
            .into_bytes(),
        signature_header: "t=1,v1=00".into(),
        received_at: at,
        handled: true,
    };
    let job = mlc_store::NewJob {
        kind: "process_event".into(),
        event_id: Some(id.to_string()),
        payload: json!({ "event_id": id }),
        dedupe_key: format!("process_event:{id}"),
        max_attempts: 5,
        run_at: at,
    };
    store
        .scoped(&scope)
        .record_event(&event, Some(job))
        .await
        .unwrap();
}

/// One page: its edges, `hasNextPage`, `endCursor`; panics on errors.
fn page_of(body: &Value) -> (Vec<Value>, bool, Option<String>) {
    assert!(body["errors"].is_null(), "{body}");
    let events = &body["data"]["connection"]["events"];
    (
        events["edges"].as_array().unwrap().clone(),
        events["pageInfo"]["hasNextPage"] == true,
        events["pageInfo"]["endCursor"].as_str().map(str::to_string),
    )
}

fn event_ids(edges: &[Value]) -> Vec<String> {
    edges
        .iter()
        .map(|e| e["node"]["eventId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn graphql_event_pages_walk_every_event_once_while_new_ones_arrive() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let key = tenant(&store, "acme", &["eu"]).await;
        let eu = connection_id(&app, &key, "eu").await;
        // 23 events an hour ago, three to a millisecond: pages must split ties by event ID.
        let base = mlc_core::now_millis() - 3_600_000;
        let mut before: Vec<String> = Vec::new();
        for i in 0..23 {
            let id = format!("evt_walk_{:02}", (i * 7) % 23);
            record(&store, "acme", "eu", &id, base + i / 3).await;
            before.push(id);
        }

        let mut seen: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        let mut last_key: Option<(i64, String)> = None;
        for round in 0.. {
            let body = gql(
                &app,
                &key,
                LIST,
                json!({ "c": eu, "first": 4, "after": after }),
            )
            .await;
            let (edges, has_next, end) = page_of(&body);
            let page = &body["data"]["connection"]["events"]["pageInfo"];
            assert_eq!(page["hasPreviousPage"], after.is_some(), "{body}");
            for e in &edges {
                let node = &e["node"];
                let id = node["eventId"].as_str().unwrap().to_string();
                // Newest first: (receivedAt, eventId) strictly decreasing across pages.
                let at = node["receivedAt"]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    .as_millisecond();
                let k = (at, id.clone());
                if let Some(prev) = &last_key {
                    assert!(k < *prev, "{k:?} after {prev:?}");
                }
                last_key = Some(k);
                // Each event's own trail, loaded with its page.
                let trail = node["auditTrail"].as_array().unwrap();
                assert!(
                    trail
                        .iter()
                        .any(|a| a["step"] == "received"
                            && a["message"].as_str().unwrap().contains(&id)),
                    "{node}"
                );
                assert!(
                    trail
                        .iter()
                        .all(|a| !a["message"].as_str().unwrap().contains("evt_")
                            || a["message"].as_str().unwrap().contains(&id)),
                    "another event's entry in {node}"
                );
                seen.push(id);
            }
            // New events arrive between pages (an OFFSET cursor would repeat rows now).
            record(
                &store,
                "acme",
                "eu",
                &format!("evt_new_{round}"),
                mlc_core::now_millis(),
            )
            .await;
            if !has_next {
                break;
            }
            after = end;
            assert!(round < 20, "paging does not end: {seen:?}");
        }
        let distinct: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "an event listed twice: {seen:?}"
        );
        let mut expected = before.clone();
        expected.sort();
        let mut got = seen.clone();
        got.sort();
        assert_eq!(
            got, expected,
            "every event once, none of those that arrived later"
        );

        // A filtered walk keeps its filter from page to page.
        let body = gql(
            &app,
            &key,
            LIST,
            json!({ "c": eu, "first": 2, "filter": { "stripeId": "in_evt_walk_05" } }),
        )
        .await;
        let (edges, has_next, _) = page_of(&body);
        assert_eq!(event_ids(&edges), vec!["evt_walk_05"]);
        assert!(!has_next);

        // Not a cursor of this API: refused with a code, not a database error.
        let body = gql(
            &app,
            &key,
            LIST,
            json!({ "c": eu, "first": 2, "after": "bm90IGEgY3Vyc29y" }),
        )
        .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn graphql_event_cursor_of_another_connection_only_positions_within_this_one() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let acme = tenant(&store, "acme", &["eu", "us"]).await;
        let globex = tenant(&store, "globex", &["main"]).await;
        let eu = connection_id(&app, &acme, "eu").await;
        let us = connection_id(&app, &acme, "us").await;
        let main = connection_id(&app, &globex, "main").await;
        // Interleaved in time: eu at base + 3k, us at base + 3k + 1, globex at base + 3k + 2.
        let base = mlc_core::now_millis() - 3_600_000;
        for k in 0..8 {
            record(&store, "acme", "eu", &format!("evt_eu_{k}"), base + 3 * k).await;
            record(
                &store,
                "acme",
                "us",
                &format!("evt_us_{k}"),
                base + 3 * k + 1,
            )
            .await;
            record(
                &store,
                "globex",
                "main",
                &format!("evt_gx_{k}"),
                base + 3 * k + 2,
            )
            .await;
        }
        // eu's cursor after its three newest events (evt_eu_7, 6, 5): a position just below
        // eu_5's, i.e. base + 15.
        let body = gql(&app, &acme, LIST, json!({ "c": eu, "first": 3 })).await;
        let (edges, _, cursor) = page_of(&body);
        assert_eq!(event_ids(&edges), vec!["evt_eu_7", "evt_eu_6", "evt_eu_5"]);
        let cursor = cursor.unwrap();

        // On us (same tenant): us's events older than that position, and only us's.
        let body = gql(
            &app,
            &acme,
            LIST,
            json!({ "c": us, "first": 50, "after": cursor }),
        )
        .await;
        let (edges, has_next, _) = page_of(&body);
        assert_eq!(
            event_ids(&edges),
            vec!["evt_us_4", "evt_us_3", "evt_us_2", "evt_us_1", "evt_us_0"],
            "{body}"
        );
        assert!(!has_next);
        for e in &edges {
            for a in e["node"]["auditTrail"].as_array().unwrap() {
                assert!(!a["message"].as_str().unwrap().contains("evt_eu"), "{e}");
            }
        }

        // On another tenant's connection, through that tenant's key: its own events only.
        let body = gql(
            &app,
            &globex,
            LIST,
            json!({ "c": main, "first": 50, "after": cursor }),
        )
        .await;
        let (edges, _, _) = page_of(&body);
        assert_eq!(
            event_ids(&edges),
            vec!["evt_gx_4", "evt_gx_3", "evt_gx_2", "evt_gx_1", "evt_gx_0"],
            "{body}"
        );
        // And acme's key with the cursor on globex's connection: no such connection for acme.
        let body = gql(
            &app,
            &acme,
            LIST,
            json!({ "c": main, "first": 50, "after": cursor }),
        )
        .await;
        assert!(body["data"]["connection"].is_null(), "{body}");
        app.stop().await;
    }
}
