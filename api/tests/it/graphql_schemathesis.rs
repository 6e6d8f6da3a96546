//! The GraphQL API against its own schema, checked by an independent client: schemathesis
//! (pinned in scripts/requirements-test.txt) reads the schema by introspection, generates
//! queries and mutations from it (valid ones and invalid ones), sends them with an owner's API
//! key, and checks every answer: no server error, and every response a GraphQL response that
//! keeps the schema's promises (no null where it says non-null). Fixed seed: the same requests
//! every run.

use std::path::Path;
use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions};
use mlc_core::{ConnectionId, ConnectionStatus, ExposeSecret};
use mlc_netsuite_sim::{FaultKind, QueuedFault};
use mlc_store::{ApiKeyRole, NewConnection};
use mlc_stripe_sim::{ScenarioConfig, ScenarioReport, run_scenario};
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(120);
/// The service operator's token (`admin.token`): only it may call `tenantCreate`.
const OPERATOR_TOKEN: &str = "schemathesis-operator-token-0123456789abcdef";

/// What schemathesis checks: no 5xx and no GraphQL error that is the server's fault (an error
/// with a `path`, unless it carries a client code such as BAD_USER_INPUT); every response a
/// JSON object true to the schema (no null in a non-null field); queries invalid against the
/// schema refused. Not `positive_data_acceptance`: schema-valid values the API refuses by
/// design (`first: -3`, an ID not from this API) would count against it.
const CHECKS: &str = "not_a_server_error,response_schema_conformance,negative_data_rejection";

/// Mutations that would take the ground from under the rest of the run if they hit the
/// connection with the month's events or the key schemathesis holds (delete it, replace its
/// credentials or settings, revoke the key). They run in a second pass of their own, whose
/// IDs are spares: a spare connection, spare keys, and what that pass creates itself.
const DESTRUCTIVE: [&str; 6] = [
    "Mutation.apiKeyRevoke",
    "Mutation.connectionDelete",
    "Mutation.connectionUpdate",
    "Mutation.stripeCredentialsSet",
    "Mutation.netsuiteCredentialsSet",
    "Mutation.webhookSecretRotate",
];

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

/// Runs schemathesis against `/graphql` as `key` (an API key or the operator token) with the
/// config file `config` (in `cwd`) and the operation filters `filter`; panics with its output
/// unless every check passed.
async fn schemathesis(
    python: &std::ffi::OsStr,
    stack: &Stack,
    key: &str,
    cwd: &Path,
    config: &str,
    filter: &[String],
) {
    let out = tokio::process::Command::new(python)
        .args(["-m", "schemathesis.cli", "--config-file", config, "run"])
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
    // Hundreds of requests in seconds through one key: conformance is tested here, the
    // per-key limit elsewhere.
    opts.extra_env.push((
        "MLC__ADMIN__GRAPHQL_REQUESTS_PER_MINUTE".into(),
        "1000000".into(),
    ));
    opts.extra_env
        .push(("MLC__ADMIN__TOKEN".into(), OPERATOR_TOKEN.into()));
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

    // The same tenant also has draft connections without credentials (their test fails, they
    // post nothing), spare keys, and an owner's key: every query and mutation is open to it.
    let tenant = stack.store.store().tenant(&stack.store.scope().tenant());
    for (handle, name) in [("bare", "no credentials yet"), ("spare", "to be deleted")] {
        tenant
            .create_connection(&NewConnection {
                id: ConnectionId::parse(handle).unwrap(),
                name: name.into(),
                status: ConnectionStatus::Draft,
                settings: json!({}),
                netsuite_account: None,
            })
            .await
            .unwrap();
    }
    for spare in ["spare-1", "spare-2", "spare-3"] {
        tenant
            .create_api_key(spare, ApiKeyRole::Viewer)
            .await
            .unwrap();
    }
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
    let cwd = tempfile::tempdir().unwrap(); // its configs and crash cache go there
    let ids = Ids::read(&stack, &key, &month).await;
    std::fs::write(cwd.path().join("main.toml"), ids.main_config()).unwrap();
    std::fs::write(cwd.path().join("spares.toml"), ids.spares_config()).unwrap();

    // Everything but the destructive mutations (schemathesis also feeds the IDs it reads back
    // into later requests, and `apiKeys` lists the key it holds), `tenantCreate` (the
    // operator's: an API key gets FORBIDDEN) and `signIn` (its slow-down answers RATE_LIMITED
    // after five tries of one account, by design; api/tests/it/accounts.rs tests it).
    let mut filter = vec![
        "--exclude-name".to_string(),
        "Mutation.tenantCreate".to_string(),
        "--exclude-name".to_string(),
        "Mutation.signIn".to_string(),
    ];
    for name in DESTRUCTIVE {
        filter.extend(["--exclude-name".to_string(), name.to_string()]);
    }
    schemathesis(&python, &stack, &key, cwd.path(), "main.toml", &filter).await;
    let (status, body) = gql(&stack, &key, "{ viewer { role } }", json!({})).await;
    assert_eq!(status, 200, "the key must have lasted the run: {body}");
    // The destructive ones, on spares and on what this pass creates (it never sees the default
    // connection's ID nor the key it holds).
    let mut filter = Vec::new();
    for name in DESTRUCTIVE
        .iter()
        .chain(&["Mutation.apiKeyCreate", "Mutation.connectionCreate"])
    {
        filter.extend(["--include-name".to_string(), name.to_string()]);
    }
    schemathesis(&python, &stack, &key, cwd.path(), "spares.toml", &filter).await;
    let (status, body) = gql(&stack, &key, "{ viewer { role } }", json!({})).await;
    assert_eq!(status, 200, "the key must have lasted the run: {body}");
    // `tenantCreate`, as the operator.
    let filter = [
        "--include-name".to_string(),
        "Mutation.tenantCreate".to_string(),
    ];
    schemathesis(
        &python,
        &stack,
        OPERATOR_TOKEN,
        cwd.path(),
        "spares.toml",
        &filter,
    )
    .await;

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

/// The tenant's real IDs, read through the API (and the month's Stripe and NetSuite IDs).
struct Ids {
    connections: Vec<Value>,
    spare_connections: Vec<Value>,
    events: Vec<Value>,
    cursors: Vec<Value>,
    event_ids: Vec<Value>,
    event_types: Vec<Value>,
    stripe_ids: Vec<Value>,
    stripe_customers: Vec<Value>,
    netsuite_ids: Vec<Value>,
    products: Vec<Value>,
    items: Vec<Value>,
    times: Vec<Value>,
    spare_keys: Vec<Value>,
}

impl Ids {
    async fn read(stack: &Stack, key: &str, month: &ScenarioReport) -> Ids {
        let (_, body) = gql(
            stack,
            key,
            "{ connections { nodes { id handle } pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
        let nodes = body["data"]["connections"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .clone();
        let id_of = |handle: &str| {
            nodes
                .iter()
                .find(|c| c["handle"] == handle)
                .unwrap_or_else(|| panic!("no connection {handle}: {body}"))["id"]
                .clone()
        };
        let default = id_of("default");
        let spare = id_of("spare");
        let connections: Vec<Value> = nodes
            .iter()
            .filter(|c| c["handle"] != "spare")
            .map(|c| c["id"].clone())
            .collect();
        let mut cursors = vec![body["data"]["connections"]["pageInfo"]["endCursor"].clone()];

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
                .filter(Value::is_string)
                .collect();
            v.sort_by_key(Value::to_string);
            v.dedup();
            v
        };
        cursors.extend(edges.iter().step_by(10).map(|e| e["cursor"].clone()));
        let mut stripe_ids = field("eventId");
        stripe_ids.extend(field("objectId"));
        let mut products: Vec<Value> = month.products.values().map(|p| json!(p)).collect();
        products.push(json!(month.unmapped_product));
        let mut netsuite_ids: Vec<Value> = stack
            .netsuite_invoices()
            .iter()
            .flat_map(|i| [json!(i.internal_id), json!(i.external_id)])
            .collect();
        netsuite_ids.truncate(40);
        let items = &stack.items;
        let items = [items.default, items.fee, items.discount, items.tax]
            .iter()
            .map(|i| json!(i.to_string()))
            .collect();

        let (_, body) = gql(stack, key, "{ apiKeys { id name } }", json!({})).await;
        let spare_keys: Vec<Value> = body["data"]["apiKeys"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .filter(|k| k["name"].as_str().unwrap().starts_with("spare-"))
            .map(|k| k["id"].clone())
            .collect();
        assert_eq!(spare_keys.len(), 3, "{body}");

        Ids {
            connections,
            spare_connections: vec![spare],
            events: field("id"),
            cursors,
            event_ids: field("eventId"),
            event_types: field("eventType"),
            stripe_ids,
            stripe_customers: month.customers.iter().map(|c| json!(c)).collect(),
            netsuite_ids,
            products,
            items,
            times: field("receivedAt"),
            spare_keys,
        }
    }

    /// The first pass: the tenant's real objects, bound to the arguments that take them.
    fn main_config(&self) -> String {
        let mut nodes = self.connections.clone();
        nodes.extend(self.events.iter().cloned());
        config(
            &[
                ("connections", self.connections.clone()),
                ("events", self.events.clone()),
                ("nodes", nodes),
                ("cursors", self.cursors.clone()),
                ("event_ids", self.event_ids.clone()),
                ("event_types", self.event_types.clone()),
                ("stripe_ids", self.stripe_ids.clone()),
                ("stripe_customers", self.stripe_customers.clone()),
                ("netsuite_ids", self.netsuite_ids.clone()),
                ("products", self.products.clone()),
                ("items", self.items.clone()),
                ("times", self.times.clone()),
                ("pages", vec![json!(1), json!(2), json!(10), json!(100)]),
            ],
            &[
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
                ("Mutation.eventsReplay.input.since", "times"),
                ("Mutation.eventsReplay.input.until", "times"),
                ("Mutation.*.input.stripeProductId", "products"),
                ("Mutation.*.input.netsuiteItemId", "items"),
                ("Mutation.*.input.stripeCustomerId", "stripe_customers"),
            ],
        )
    }

    /// The second pass: only spares.
    fn spares_config(&self) -> String {
        config(
            &[
                ("connections", self.spare_connections.clone()),
                ("spare_keys", self.spare_keys.clone()),
            ],
            &[
                ("Mutation.*.input.connectionId", "connections"),
                ("Mutation.apiKeyRevoke.input.id", "spare_keys"),
            ],
        )
    }
}

/// A schemathesis config (TOML): `dictionaries` by name, and `bindings` of arguments
/// (`<Type>.<field>.<argument path>`, `*` for any) to a dictionary, used 70% of the time.
fn config(dictionaries: &[(&str, Vec<Value>)], bindings: &[(&str, &str)]) -> String {
    let dictionaries: serde_json::Map<String, Value> = dictionaries
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(name, values)| (name.to_string(), json!({ "values": values })))
        .collect();
    let parameters: serde_json::Map<String, Value> = bindings
        .iter()
        .filter(|(_, dictionary)| dictionaries.contains_key(*dictionary))
        .map(|(at, dictionary)| {
            (
                at.to_string(),
                json!({ "dictionary": dictionary, "probability": 0.7 }),
            )
        })
        .collect();
    let config = json!({ "dictionaries": dictionaries, "parameters": parameters });
    toml::to_string(&toml::Value::try_from(config).unwrap()).unwrap()
}
