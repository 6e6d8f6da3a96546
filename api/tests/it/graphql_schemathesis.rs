//! The GraphQL API against its own schema, checked by an independent client: schemathesis
//! (pinned in scripts/requirements-test.txt) reads the schema by introspection, generates
//! queries and mutations from it (valid ones and invalid ones), sends them with an owner's API
//! key, and checks every answer: no server error, and every response a GraphQL response that
//! keeps the schema's promises (no null where it says non-null). Fixed seed: the same requests
//! every run.

use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions};
use mlc_core::{ConnectionId, ConnectionStatus, ExposeSecret};
use mlc_netsuite_sim::{FaultKind, QueuedFault};
use mlc_store::{ApiKeyRole, NewConnection};
use mlc_stripe_sim::{ScenarioConfig, ScenarioReport, run_scenario};
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(120);

/// What schemathesis checks: no 5xx and no GraphQL error that is the server's fault; every
/// response a JSON object true to the schema; invalid queries refused; a request without the
/// key refused.
const CHECKS: &str =
    "not_a_server_error,response_schema_conformance,negative_data_rejection,ignored_auth";

async fn gql(stack: &Stack, key: &str, query: &str, variables: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/graphql", stack.addr))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Runs schemathesis against `/graphql` with `filter` (its operation filters); panics with its
/// output unless every check passed.
async fn schemathesis(
    python: &std::ffi::OsStr,
    stack: &Stack,
    key: &str,
    cwd: &std::path::Path,
    filter: &[&str],
) {
    let out = tokio::process::Command::new(python)
        .args([
            "-m",
            "schemathesis.cli",
            "--config-file",
            "schemathesis.toml",
            "run",
        ])
        .arg(format!("http://{}/graphql", stack.addr))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", CHECKS, "--max-examples", "40", "--seed", "1"])
        .args(filter)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found the GraphQL API untrue to its schema ({filter:?})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
    println!("{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_the_graphql_api_true_to_its_schema() {
    let Some(python) = crate::helpers::test_python() else {
        return;
    };
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StackOptions::new(db.url(), dir.path());
    opts.unmapped_retry_secs = 3600; // the unmapped product's sales wait
    let stack = Stack::start(opts).await.expect("stack starts");

    // A small month on the default connection: NetSuite refuses the first invoice (a closed
    // period: a failed event), one product has no NetSuite item (its sales wait), the rest post.
    stack.netsuite.handle().push_fault(QueuedFault {
        kind: FaultKind::PeriodClosed,
        method: Some("POST".into()),
        path_contains: Some("/record/v1/invoice".into()),
    });
    let month = run_scenario(
        &stack.stripe.base_url,
        stack.stripe.api_key_str(),
        ScenarioConfig {
            customers: 6,
            seed: 5,
            checkout_percent: 100,
            on_catalog: Some(stack.catalog_hook()),
            ..ScenarioConfig::default()
        },
    )
    .await
    .expect("scenario runs");
    assert!(stack.wait_idle(SETTLE).await, "the month did not settle");
    stack.netsuite.handle().clear_faults();

    // The same tenant also has a draft connection without credentials (its test fails, it
    // posts nothing), and an owner's key: every query and mutation is open to it.
    let tenant = stack.store.store().tenant(&stack.store.scope().tenant());
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
        .create_api_key("schemathesis", ApiKeyRole::Owner)
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_string();
    let (status, body) = gql(
        &stack,
        &key,
        "{ connections { nodes { handle jobCounts { succeeded failed waiting } } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let counts = body["data"]["connections"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["handle"] == "default")
        .unwrap_or_else(|| panic!("no default connection: {body}"))["jobCounts"]
        .clone();
    for state in ["succeeded", "failed", "waiting"] {
        assert!(counts[state].as_i64().unwrap() > 0, "{state}: {body}");
    }

    // What it cannot guess: this tenant's IDs, cursors, Stripe and NetSuite IDs. Its
    // dictionaries put them in the arguments that take them, most of the time (the rest of
    // the time it makes up its own), so queries find data and mutations act on real objects.
    let cwd = tempfile::tempdir().unwrap(); // its config and crash cache go there
    let config = fuzz_config(&stack, &key, &month).await;
    std::fs::write(cwd.path().join("schemathesis.toml"), config).unwrap();

    // Everything but revoking keys: schemathesis feeds the IDs it read back into later requests,
    // and `apiKeys` lists its own key, which it would revoke and then test nothing but 401s.
    schemathesis(
        &python,
        &stack,
        &key,
        cwd.path(),
        &["--exclude-name", "Mutation.apiKeyRevoke"],
    )
    .await;
    let (status, body) = gql(&stack, &key, "{ viewer { role } }", json!({})).await;
    assert_eq!(status, 200, "the key must have lasted the run: {body}");
    // Revoking keys, with the keys it makes itself (it never sees the one it holds).
    schemathesis(
        &python,
        &stack,
        &key,
        cwd.path(),
        &[
            "--include-name",
            "Mutation.apiKeyCreate",
            "--include-name",
            "Mutation.apiKeyRevoke",
        ],
    )
    .await;
    let (status, body) = gql(&stack, &key, "{ viewer { role } }", json!({})).await;
    assert_eq!(status, 200, "the key must have lasted the run: {body}");

    // Its replays, pauses, resumes and mappings changed nothing they should not have: no
    // NetSuite invoice twice, once what they set going has run.
    assert!(stack.wait_idle(SETTLE).await, "the replays did not settle");
    let invoices = stack.netsuite_invoices();
    assert!(!invoices.is_empty());
    let mut ids: Vec<&str> = invoices.iter().map(|i| i.external_id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a NetSuite invoice was posted twice");
    stack.stop().await.unwrap();
}

/// A schemathesis config whose dictionaries hold the tenant's real IDs, bound to the arguments
/// that take them (`<Type>.<field>.<argument>`).
async fn fuzz_config(stack: &Stack, key: &str, month: &ScenarioReport) -> String {
    let (_, body) = gql(
        stack,
        key,
        "{ connections { nodes { id handle } pageInfo { endCursor } } }",
        json!({}),
    )
    .await;
    let connections: Vec<Value> = body["data"]["connections"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    let mut cursors = vec![body["data"]["connections"]["pageInfo"]["endCursor"].clone()];
    let default = body["data"]["connections"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["handle"] == "default")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = gql(
        stack,
        key,
        "query($id: ID!) { connection(id: $id) { events(first: 100) { \
         edges { cursor node { id eventId eventType objectId receivedAt } } } } }",
        json!({ "id": default }),
    )
    .await;
    let edges = body["data"]["connection"]["events"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone();
    assert!(!edges.is_empty(), "{body}");
    let field = |name: &str| -> Vec<Value> {
        let mut v: Vec<Value> = edges
            .iter()
            .map(|e| e["node"][name].clone())
            .filter(|v| v.is_string())
            .collect();
        v.sort_by_key(|v| v.to_string());
        v.dedup();
        v
    };
    let events = field("id");
    cursors.extend(edges.iter().step_by(10).map(|e| e["cursor"].clone()));
    let mut nodes = connections.clone();
    nodes.extend(events.iter().cloned());
    let mut stripe_ids = field("eventId");
    stripe_ids.extend(field("objectId"));
    let mut products: Vec<Value> = month.products.values().map(|p| json!(p)).collect();
    products.push(json!(month.unmapped_product));
    let invoices = stack.netsuite_invoices();
    let mut netsuite_ids: Vec<Value> = invoices
        .iter()
        .flat_map(|i| [json!(i.internal_id), json!(i.external_id)])
        .collect();
    netsuite_ids.truncate(40);
    let items = &stack.items;
    let item_ids: Vec<Value> = [items.default, items.fee, items.discount, items.tax]
        .iter()
        .map(|i| json!(i.to_string()))
        .collect();
    let times = field("receivedAt");

    let dictionaries = json!({
        "connections": { "values": connections },
        "events": { "values": events },
        "nodes": { "values": nodes },
        "cursors": { "values": cursors },
        "event_ids": { "values": field("eventId") },
        "event_types": { "values": field("eventType") },
        "stripe_ids": { "values": stripe_ids },
        "netsuite_ids": { "values": netsuite_ids },
        "products": { "values": products },
        "items": { "values": item_ids },
        "times": { "values": times },
        "pages": { "values": [1, 2, 10, 100] },
    });
    let bind = |dictionary: &str| json!({ "dictionary": dictionary, "probability": 0.7 });
    let mut parameters = serde_json::Map::new();
    for (at, dictionary) in [
        ("Query.connection.id", "connections"),
        ("Query.event.id", "events"),
        ("Query.node.id", "nodes"),
        ("Query.connections.first", "pages"),
        ("Query.connections.after", "cursors"),
        ("Connection.events.first", "pages"),
        ("Connection.events.after", "cursors"),
        ("Connection.events.filter.eventType", "event_types"),
        ("Connection.events.filter.stripeId", "stripe_ids"),
        ("Connection.events.filter.netsuiteId", "netsuite_ids"),
        ("Connection.events.filter.receivedAfter", "times"),
        ("Connection.events.filter.receivedBefore", "times"),
        ("Mutation.*.input.connectionId", "connections"),
        ("Mutation.eventReplay.input.eventId", "event_ids"),
        (
            "Mutation.productMappingSet.input.stripeProductId",
            "products",
        ),
        ("Mutation.productMappingSet.input.netsuiteItemId", "items"),
    ] {
        parameters.insert(at.to_string(), bind(dictionary));
    }
    let config = json!({ "dictionaries": dictionaries, "parameters": parameters });
    toml::to_string(&toml::Value::try_from(config).unwrap()).unwrap()
}
