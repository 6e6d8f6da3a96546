//! The GraphQL admin surface beyond reading: connections made, changed and deleted; sealed
//! credentials that never come back out; mappings; replays by window; the operator token;
//! and the limits (per-key rate, introspection, GraphiQL, cost in `extensions`). Each is tried
//! as the owner, as a lesser role, and with another tenant's IDs.

use mlc_core::{ConnectionId, ExposeSecret, TenantId};
use mlc_store::testing::backends;
use mlc_store::{ApiKeyRole, Store};
use serde_json::{Value, json};

use crate::graphql::{codes, connection_gid, gql, record, tenant_with};
use crate::helpers::TestApp;

/// Another key of `role` in an existing tenant.
async fn key_of(store: &Store, tenant: &str, role: ApiKeyRole) -> String {
    let scope = store
        .tenant_scope(&TenantId::parse(tenant).unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .tenant(&scope)
        .create_api_key(&format!("{} key", role.as_str()), role)
        .await
        .unwrap()
        .secret
        .expose_secret()
        .to_string()
}

fn user_errors<'a>(body: &'a Value, field: &str) -> &'a Vec<Value> {
    body["data"][field]["userErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("{field} has userErrors: {body}"))
}

fn first_code(body: &Value, field: &str) -> String {
    user_errors(body, field)
        .first()
        .and_then(|e| e["code"].as_str())
        .unwrap_or("")
        .to_string()
}

const CREATE: &str = "mutation($h: String!, $s: JSON, $a: Boolean) { connectionCreate(input: { \
    handle: $h, name: \"EU books\", settings: $s, active: $a }) { connection { id handle name \
    status settings webhookPath webhookUrl } userErrors { field code message } } }";
const UPDATE: &str = "mutation($id: ID!, $n: String, $s: JSON) { connectionUpdate(input: { \
    connectionId: $id, name: $n, settings: $s }) { connection { name settings } \
    userErrors { field code message } } }";
const DELETE: &str = "mutation($id: ID!) { connectionDelete(input: { connectionId: $id }) { \
    deletedConnectionId userErrors { field code message } } }";
const PAUSE: &str = "mutation($id: ID!) { connectionPause(input: { connectionId: $id }) { \
    connection { status } userErrors { code } } }";

#[tokio::test]
async fn an_owner_creates_changes_and_deletes_connections_and_no_one_else_can() {
    for db in backends().await {
        let app = TestApp::start_with(
            &db,
            &[("MLC__ADMIN__PUBLIC_URL", "https://connector.example.com/")],
        )
        .await;
        let store = app.store.store().clone();
        let owner = tenant_with(&store, "acme", &[], ApiKeyRole::Owner).await;
        let operator = key_of(&store, "acme", ApiKeyRole::Operator).await;
        let globex = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;
        let theirs = connection_gid(&app, &globex, "main").await;

        let settings = json!({ "netsuite": { "account_id": "td123" } });
        let (_, body) = gql(
            &app,
            Some(&owner),
            CREATE,
            json!({ "h": "eu", "s": settings }),
        )
        .await;
        let made = &body["data"]["connectionCreate"]["connection"];
        assert_eq!(made["handle"], "eu", "{body}");
        assert_eq!(made["name"], "EU books");
        assert_eq!(made["status"], "DRAFT", "a new connection is a draft");
        assert_eq!(made["settings"], settings);
        let path = made["webhookPath"].as_str().unwrap();
        assert_eq!(
            made["webhookUrl"].as_str().unwrap(),
            format!("https://connector.example.com{path}")
        );
        let eu = made["id"].as_str().unwrap().to_string();
        // Stored for the tenant, with the NetSuite account its budget is shared by.
        let stored = store
            .tenant(
                &store
                    .tenant_scope(&TenantId::parse("acme").unwrap())
                    .await
                    .unwrap()
                    .unwrap(),
            )
            .get_connection(&ConnectionId::parse("eu").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.netsuite_account.as_deref(), Some("TD123"));

        // The same handle again, a bad handle, settings that would not run: user errors.
        let (_, again) = gql(&app, Some(&owner), CREATE, json!({ "h": "eu" })).await;
        assert_eq!(
            first_code(&again, "connectionCreate"),
            "ALREADY_EXISTS",
            "{again}"
        );
        let (_, bad) = gql(&app, Some(&owner), CREATE, json!({ "h": "EU books!" })).await;
        assert_eq!(first_code(&bad, "connectionCreate"), "INVALID", "{bad}");
        let (_, unusable) = gql(
            &app,
            Some(&owner),
            CREATE,
            json!({ "h": "us", "s": { "posting": { "no_such_key": 1 } } }),
        )
        .await;
        let errors = user_errors(&unusable, "connectionCreate");
        assert_eq!(
            errors[0]["field"],
            json!(["input", "settings"]),
            "{unusable}"
        );
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .contains("posting.no_such_key"),
            "the message names the key: {unusable}"
        );
        // A secret in the settings is refused as such.
        let (_, secret) = gql(
            &app,
            Some(&owner),
            CREATE,
            json!({ "h": "us", "s": { "stripe": { "api_key": "sk_test_x" } } }),
        )
        .await;
        assert_eq!(
            first_code(&secret, "connectionCreate"),
            "INVALID",
            "{secret}"
        );

        // Only an owner: an operator is FORBIDDEN before anything is looked at.
        for (query, vars) in [
            (CREATE, json!({ "h": "ops" })),
            (UPDATE, json!({ "id": eu, "n": "x" })),
            (DELETE, json!({ "id": eu })),
        ] {
            let (_, body) = gql(&app, Some(&operator), query, vars).await;
            assert_eq!(codes(&body), vec!["FORBIDDEN"], "{body}");
        }

        // Update: a new name and settings; bad settings change nothing.
        let (_, body) = gql(
            &app,
            Some(&owner),
            UPDATE,
            json!({ "id": eu, "n": "Europe", "s": { "netsuite": { "account_id": "td999" } } }),
        )
        .await;
        let updated = &body["data"]["connectionUpdate"]["connection"];
        assert_eq!(updated["name"], "Europe", "{body}");
        assert_eq!(updated["settings"]["netsuite"]["account_id"], "td999");
        let (_, body) = gql(
            &app,
            Some(&owner),
            UPDATE,
            json!({ "id": eu, "s": { "worker": { "concurrency": 3 } } }),
        )
        .await;
        assert_eq!(first_code(&body, "connectionUpdate"), "INVALID", "{body}");

        // Another tenant's connection: NOT_FOUND for every one of these, and it is untouched.
        for (field, query, vars) in [
            (
                "connectionUpdate",
                UPDATE,
                json!({ "id": theirs, "n": "mine now" }),
            ),
            ("connectionDelete", DELETE, json!({ "id": theirs })),
        ] {
            let (_, body) = gql(&app, Some(&owner), query, vars).await;
            assert_eq!(first_code(&body, field), "NOT_FOUND", "{body}");
        }
        let (_, body) = gql(
            &app,
            Some(&globex),
            "query($id: ID!) { connection(id: $id) { name } }",
            json!({ "id": theirs }),
        )
        .await;
        assert_eq!(body["data"]["connection"]["name"], "globex main");

        // Delete: refused while active, done once paused; its events go with it.
        let (_, body) = gql(
            &app,
            Some(&owner),
            "mutation($id: ID!) { connectionResume(input: { connectionId: $id }) { userErrors { code } } }",
            json!({ "id": eu }),
        )
        .await;
        assert!(user_errors(&body, "connectionResume").is_empty(), "{body}");
        record(&store, "acme", "eu", "evt_gone", false).await;
        let (_, body) = gql(&app, Some(&owner), DELETE, json!({ "id": eu })).await;
        assert_eq!(first_code(&body, "connectionDelete"), "CONFLICT", "{body}");
        assert!(
            user_errors(&body, "connectionDelete")[0]["message"]
                .as_str()
                .unwrap()
                .contains("pause it first"),
            "{body}"
        );
        let (_, body) = gql(&app, Some(&owner), PAUSE, json!({ "id": eu })).await;
        assert_eq!(
            body["data"]["connectionPause"]["connection"]["status"],
            "PAUSED"
        );
        let (_, body) = gql(&app, Some(&owner), DELETE, json!({ "id": eu })).await;
        assert_eq!(
            body["data"]["connectionDelete"]["deletedConnectionId"], eu,
            "{body}"
        );
        let (_, body) = gql(
            &app,
            Some(&owner),
            "query($id: ID!) { connection(id: $id) { name } }",
            json!({ "id": eu }),
        )
        .await;
        assert!(body["data"]["connection"].is_null(), "{body}");
        // Made again under the same handle, it starts empty: nothing of the old one comes back.
        let (_, body) = gql(&app, Some(&owner), CREATE, json!({ "h": "eu" })).await;
        let again = body["data"]["connectionCreate"]["connection"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, body) = gql(
            &app,
            Some(&owner),
            "query($id: ID!) { connection(id: $id) { stats { events } events { edges { node { eventId } } } } }",
            json!({ "id": again }),
        )
        .await;
        assert_eq!(body["data"]["connection"]["stats"]["events"], 0, "{body}");
        app.stop().await;
    }
}

const STRIPE_SET: &str = "mutation($id: ID!, $k: String, $w: [String!]) { stripeCredentialsSet(\
    input: { connectionId: $id, apiKey: $k, webhookSecrets: $w }) { credentials { name \
    fingerprint last4 values setAt } userErrors { field code message } } }";
const NETSUITE_SET: &str = "mutation($id: ID!, $pem: String, $c: String, $t: String) { \
    netsuiteCredentialsSet(input: { connectionId: $id, privateKeyPem: $pem, consumerSecret: $c, \
    tokenSecret: $t }) { credentials { name fingerprint last4 values } \
    userErrors { field code message } } }";
const ROTATE: &str = "mutation($id: ID!, $s: String!, $d: Boolean) { webhookSecretRotate(input: { \
    connectionId: $id, newSecret: $s, dropPrevious: $d }) { credentials { name last4 values } \
    userErrors { field code message } } }";

fn credential<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

#[tokio::test]
async fn credentials_are_sealed_and_only_ever_shown_as_fingerprints() {
    for db in backends().await {
        let app =
            TestApp::start_keyed(&db, &[], Some(mlc_store::sealed::MasterKey::generate())).await;
        let store = app.store.store().clone();
        let owner = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Owner).await;
        let viewer = key_of(&store, "acme", ApiKeyRole::Viewer).await;
        let globex = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;
        let eu = connection_gid(&app, &owner, "eu").await;
        let theirs = connection_gid(&app, &globex, "main").await;
        let stripe_key = "sk_test_51ExampleSecretKeyValue9XyZ";
        let (old, new) = ("whsec_firstSecretValueAAAA", "whsec_secondSecretValueBBBB");

        let (_, body) = gql(
            &app,
            Some(&owner),
            STRIPE_SET,
            json!({ "id": eu, "k": stripe_key, "w": [old] }),
        )
        .await;
        let text = body.to_string();
        assert!(!text.contains(stripe_key) && !text.contains(old), "{text}");
        let list = &body["data"]["stripeCredentialsSet"]["credentials"];
        let key = credential(list, "stripe/api_key");
        assert_eq!(key["last4"], "9XyZ", "{body}");
        assert!(
            key["fingerprint"].as_str().unwrap().starts_with("sha256:"),
            "{body}"
        );
        assert_eq!(credential(list, "stripe/webhook_secrets")["values"], 1);
        // Sealed in the store: the bytes there are not the key.
        let sealed = store
            .scoped(&crate::helpers::connection_scope(&store, "acme", "eu").await)
            .get_credential("stripe/api_key")
            .await
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains(stripe_key));

        // Read back through the connection: the same fingerprints, never a secret.
        let (_, read) = gql(
            &app,
            Some(&viewer),
            "query($id: ID!) { connection(id: $id) { credentials { name fingerprint last4 } } }",
            json!({ "id": eu }),
        )
        .await;
        assert!(!read.to_string().contains(stripe_key), "{read}");
        assert_eq!(
            credential(&read["data"]["connection"]["credentials"], "stripe/api_key")["fingerprint"],
            key["fingerprint"]
        );

        // Rolling the webhook secret keeps the previous one until it is dropped.
        let (_, body) = gql(&app, Some(&owner), ROTATE, json!({ "id": eu, "s": new })).await;
        let hooks = credential(
            &body["data"]["webhookSecretRotate"]["credentials"],
            "stripe/webhook_secrets",
        );
        assert_eq!(hooks["values"], 2, "{body}");
        assert_eq!(hooks["last4"], "BBBB", "the new one is current: {body}");
        let (_, body) = gql(
            &app,
            Some(&owner),
            ROTATE,
            json!({ "id": eu, "s": new, "d": true }),
        )
        .await;
        let hooks = credential(
            &body["data"]["webhookSecretRotate"]["credentials"],
            "stripe/webhook_secrets",
        );
        assert_eq!(hooks["values"], 1, "{body}");

        // NetSuite: a PEM (no last four shown), then TBA secrets; half of TBA is refused.
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEAq\n-----END PRIVATE KEY-----\n";
        let (_, body) = gql(
            &app,
            Some(&owner),
            NETSUITE_SET,
            json!({ "id": eu, "pem": pem }),
        )
        .await;
        let list = &body["data"]["netsuiteCredentialsSet"]["credentials"];
        assert!(
            credential(list, "netsuite/private_key_pem")["last4"].is_null(),
            "{body}"
        );
        assert!(!body.to_string().contains("MIIBVgIBADAN"), "{body}");
        let (_, body) = gql(
            &app,
            Some(&owner),
            NETSUITE_SET,
            json!({ "id": eu, "c": "abc" }),
        )
        .await;
        assert_eq!(
            first_code(&body, "netsuiteCredentialsSet"),
            "INVALID",
            "{body}"
        );

        // Malformed secrets are refused without echoing them.
        let (_, body) = gql(
            &app,
            Some(&owner),
            STRIPE_SET,
            json!({ "id": eu, "k": "pk_test_publishableNotSecret" }),
        )
        .await;
        assert_eq!(
            first_code(&body, "stripeCredentialsSet"),
            "INVALID",
            "{body}"
        );
        assert!(!body.to_string().contains("publishableNotSecret"), "{body}");
        let (_, body) = gql(
            &app,
            Some(&owner),
            ROTATE,
            json!({ "id": eu, "s": "not-a-secret" }),
        )
        .await;
        assert_eq!(
            first_code(&body, "webhookSecretRotate"),
            "INVALID",
            "{body}"
        );

        // A viewer cannot set credentials; another tenant's connection is NOT_FOUND.
        let (_, body) = gql(
            &app,
            Some(&viewer),
            STRIPE_SET,
            json!({ "id": eu, "k": stripe_key }),
        )
        .await;
        assert_eq!(codes(&body), vec!["FORBIDDEN"], "{body}");
        for (field, query, vars) in [
            (
                "stripeCredentialsSet",
                STRIPE_SET,
                json!({ "id": theirs, "k": stripe_key }),
            ),
            (
                "netsuiteCredentialsSet",
                NETSUITE_SET,
                json!({ "id": theirs, "pem": pem }),
            ),
            (
                "webhookSecretRotate",
                ROTATE,
                json!({ "id": theirs, "s": new }),
            ),
        ] {
            let (_, body) = gql(&app, Some(&owner), query, vars).await;
            assert_eq!(first_code(&body, field), "NOT_FOUND", "{body}");
        }
        let (_, body) = gql(
            &app,
            Some(&globex),
            "query($id: ID!) { connection(id: $id) { credentials { name } } }",
            json!({ "id": theirs }),
        )
        .await;
        assert_eq!(
            body["data"]["connection"]["credentials"],
            json!([]),
            "{body}"
        );
        app.stop().await;

        // Without a master key nothing can be sealed: a user error that says what to set.
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let owner = tenant_with(&store, "initech", &["main"], ApiKeyRole::Owner).await;
        let main = connection_gid(&app, &owner, "main").await;
        let (_, body) = gql(
            &app,
            Some(&owner),
            STRIPE_SET,
            json!({ "id": main, "k": stripe_key }),
        )
        .await;
        let errors = user_errors(&body, "stripeCredentialsSet");
        assert_eq!(errors[0]["code"], "NOT_CONFIGURED", "{body}");
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .contains("MLC_MASTER_KEY")
        );
        app.stop().await;
    }
}

const MAPPINGS: &str = "query($id: ID!, $first: Int, $after: String) { connection(id: $id) { \
    productMappings(first: $first, after: $after) { edges { node { stripeId netsuiteId source } } \
    pageInfo { hasNextPage endCursor } } customerMappings { edges { node { stripeId netsuiteId } } } \
    unmappedProducts { edges { node { stripeProductId name waitingEventIds \
    waitingAmounts { amount currency } } } } } }";
const IMPORT: &str = "mutation($id: ID!, $csv: String!) { mappingsImport(input: { connectionId: $id, \
    csv: $csv }) { applied releasedJobs lineErrors { line message } userErrors { field code message } } }";
const REMOVE: &str = "mutation($id: ID!, $p: String!) { productMappingRemove(input: { \
    connectionId: $id, stripeProductId: $p }) { removed userErrors { code } } }";
const CUSTOMER: &str = "mutation($id: ID!, $c: String!, $n: String!) { customerMappingSet(input: { \
    connectionId: $id, stripeCustomerId: $c, netsuiteCustomerId: $n }) { mapping { stripeId \
    netsuiteId source } releasedJobs userErrors { field code } } }";

#[tokio::test]
async fn mappings_are_listed_imported_set_and_removed_per_connection() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let operator = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Operator).await;
        let viewer = key_of(&store, "acme", ApiKeyRole::Viewer).await;
        let globex = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;
        let eu = connection_gid(&app, &operator, "eu").await;
        let theirs = connection_gid(&app, &globex, "main").await;
        let scope = crate::helpers::connection_scope(&store, "acme", "eu").await;
        store
            .scoped(&scope)
            .note_unmapped_product("prod_Waiting", Some("Gold plan"), "in_1", Some("evt_1"))
            .await
            .unwrap();

        let csv = "stripe_product_id,netsuite_item_id\nprod_A,101\nprod_B,102\nnot_a_product,103\nprod_C,1x\n";
        let (_, body) = gql(
            &app,
            Some(&operator),
            IMPORT,
            json!({ "id": eu, "csv": csv }),
        )
        .await;
        let import = &body["data"]["mappingsImport"];
        assert_eq!(import["applied"], 2, "{body}");
        let lines: Vec<i64> = import["lineErrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["line"].as_i64().unwrap())
            .collect();
        assert_eq!(lines, vec![4, 5], "{body}");
        let (_, body) = gql(
            &app,
            Some(&operator),
            IMPORT,
            json!({ "id": eu, "csv": "a,b\n" }),
        )
        .await;
        assert_eq!(first_code(&body, "mappingsImport"), "INVALID", "{body}");

        // Listed a page at a time, by product ID.
        let (_, page1) = gql(
            &app,
            Some(&viewer),
            MAPPINGS,
            json!({ "id": eu, "first": 1 }),
        )
        .await;
        let c = &page1["data"]["connection"];
        assert_eq!(
            c["productMappings"]["edges"][0]["node"],
            json!({ "stripeId": "prod_A", "netsuiteId": "101", "source": "manual" }),
            "{page1}"
        );
        assert_eq!(c["productMappings"]["pageInfo"]["hasNextPage"], true);
        let after = c["productMappings"]["pageInfo"]["endCursor"].clone();
        let (_, page2) = gql(
            &app,
            Some(&viewer),
            MAPPINGS,
            json!({ "id": eu, "first": 5, "after": after }),
        )
        .await;
        let ids: Vec<_> = page2["data"]["connection"]["productMappings"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["stripeId"].clone())
            .collect();
        assert_eq!(ids, vec![json!("prod_B")], "{page2}");
        let unmapped = &c["unmappedProducts"]["edges"];
        assert_eq!(
            unmapped[0]["node"]["stripeProductId"], "prod_Waiting",
            "{page1}"
        );
        assert_eq!(unmapped[0]["node"]["name"], "Gold plan");

        // A customer mapping, then a product mapping removed.
        let (_, body) = gql(
            &app,
            Some(&operator),
            CUSTOMER,
            json!({ "id": eu, "c": "cus_Q1", "n": "777" }),
        )
        .await;
        assert_eq!(
            body["data"]["customerMappingSet"]["mapping"],
            json!({ "stripeId": "cus_Q1", "netsuiteId": "777", "source": "manual" }),
            "{body}"
        );
        let (_, body) = gql(
            &app,
            Some(&operator),
            CUSTOMER,
            json!({ "id": eu, "c": "prod_A", "n": "abc" }),
        )
        .await;
        assert_eq!(user_errors(&body, "customerMappingSet").len(), 2, "{body}");
        let (_, body) = gql(
            &app,
            Some(&operator),
            REMOVE,
            json!({ "id": eu, "p": "prod_A" }),
        )
        .await;
        assert_eq!(
            body["data"]["productMappingRemove"]["removed"], true,
            "{body}"
        );
        let (_, body) = gql(
            &app,
            Some(&operator),
            REMOVE,
            json!({ "id": eu, "p": "prod_A" }),
        )
        .await;
        assert_eq!(
            first_code(&body, "productMappingRemove"),
            "NOT_FOUND",
            "{body}"
        );
        let (_, body) = gql(&app, Some(&viewer), MAPPINGS, json!({ "id": eu })).await;
        let c = &body["data"]["connection"];
        assert_eq!(
            c["productMappings"]["edges"].as_array().unwrap().len(),
            1,
            "{body}"
        );
        assert_eq!(
            c["customerMappings"]["edges"][0]["node"],
            json!({ "stripeId": "cus_Q1", "netsuiteId": "777" })
        );
        // Audited as the CLI audits them.
        let audit = store
            .scoped(&scope)
            .audit_for_object("prod_A")
            .await
            .unwrap();
        let steps: Vec<&str> = audit.iter().map(|a| a.step.as_str()).collect();
        assert!(
            steps.contains(&"mapping_set") && steps.contains(&"mapping_removed"),
            "{steps:?}"
        );

        // A viewer cannot change mappings; another tenant's connection is NOT_FOUND and theirs
        // keeps nothing of ours.
        let (_, body) = gql(&app, Some(&viewer), IMPORT, json!({ "id": eu, "csv": csv })).await;
        assert_eq!(codes(&body), vec!["FORBIDDEN"], "{body}");
        for (field, query, vars) in [
            (
                "mappingsImport",
                IMPORT,
                json!({ "id": theirs, "csv": csv }),
            ),
            (
                "productMappingRemove",
                REMOVE,
                json!({ "id": theirs, "p": "prod_B" }),
            ),
            (
                "customerMappingSet",
                CUSTOMER,
                json!({ "id": theirs, "c": "cus_Q1", "n": "1" }),
            ),
        ] {
            let (_, body) = gql(&app, Some(&operator), query, vars).await;
            assert_eq!(first_code(&body, field), "NOT_FOUND", "{body}");
        }
        let (_, body) = gql(&app, Some(&globex), MAPPINGS, json!({ "id": theirs })).await;
        let c = &body["data"]["connection"];
        assert_eq!(c["productMappings"]["edges"], json!([]), "{body}");
        assert_eq!(c["customerMappings"]["edges"], json!([]), "{body}");
        assert_eq!(c["unmappedProducts"]["edges"], json!([]), "{body}");
        app.stop().await;
    }
}

const REPLAY_MANY: &str = "mutation($id: ID!, $since: String!, $until: String, $dry: Boolean, \
    $filter: EventFilterInput) { eventsReplay(input: { connectionId: $id, since: $since, \
    until: $until, dryRun: $dry, filter: $filter }) { batch { id dryRun events \
    matchedByState { waiting failed } progress { queued running waiting succeeded failed } } \
    userErrors { field code message } } }";

/// Waits (up to 20 s) until `n` of the connection's jobs are waiting.
async fn wait_for_waiting(app: &TestApp, key: &str, connection: &str, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, body) = gql(
            app,
            Some(key),
            "query($id: ID!) { connection(id: $id) { stats { jobs { waiting } } } }",
            json!({ "id": connection }),
        )
        .await;
        if body["data"]["connection"]["stats"]["jobs"]["waiting"] == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} jobs never waited: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

#[tokio::test]
async fn events_are_replayed_by_window_as_a_batch_with_a_dry_run_first() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let operator = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Operator).await;
        let viewer = key_of(&store, "acme", ApiKeyRole::Viewer).await;
        let globex = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;
        let eu = connection_gid(&app, &operator, "eu").await;
        let theirs = connection_gid(&app, &globex, "main").await;
        let start = mlc_core::now_millis() - 1000;
        for id in ["evt_r1", "evt_r2", "evt_r3"] {
            record(&store, "acme", "eu", id, true).await;
        }
        record(&store, "acme", "eu", "evt_ignored", false).await;
        record(&store, "globex", "main", "evt_g1", true).await;
        // The connection is a draft: its jobs wait for it to be active.
        wait_for_waiting(&app, &operator, &eu, 3).await;

        let window = json!({ "id": eu, "since": rfc3339(start) });
        let mut dry = window.clone();
        dry["dry"] = json!(true);
        let (_, body) = gql(&app, Some(&operator), REPLAY_MANY, dry).await;
        let batch = &body["data"]["eventsReplay"]["batch"];
        assert_eq!(batch["dryRun"], true, "{body}");
        assert_eq!(
            batch["events"], 3,
            "the ignored event has nothing to replay: {body}"
        );
        assert_eq!(batch["matchedByState"]["waiting"], 3);
        assert!(batch["id"].is_null());
        let audit_before = store
            .scoped(&crate::helpers::connection_scope(&store, "acme", "eu").await)
            .audit_for_event("evt_r1")
            .await
            .unwrap()
            .len();

        let (_, body) = gql(&app, Some(&operator), REPLAY_MANY, window.clone()).await;
        let batch = &body["data"]["eventsReplay"]["batch"];
        assert_eq!(batch["dryRun"], false, "{body}");
        assert_eq!(batch["events"], 3);
        let progress = &batch["progress"];
        let in_batch: i64 = ["queued", "running", "waiting", "succeeded", "failed"]
            .iter()
            .map(|s| progress[*s].as_i64().unwrap())
            .sum();
        assert_eq!(in_batch, 3, "every replayed job is in the batch: {body}");
        let audit_after = store
            .scoped(&crate::helpers::connection_scope(&store, "acme", "eu").await)
            .audit_for_event("evt_r1")
            .await
            .unwrap();
        assert!(audit_after.len() > audit_before, "replay is audited");
        assert!(
            audit_after.iter().any(|a| a.step == "replayed"),
            "{audit_after:?}"
        );

        // A window wider than 14 days, an end before the start, running/ignored as the
        // status: refused, and nothing queued.
        let wide = json!({ "id": eu, "since": rfc3339(start - 15 * 86_400_000) });
        let (_, body) = gql(&app, Some(&operator), REPLAY_MANY, wide).await;
        assert_eq!(first_code(&body, "eventsReplay"), "INVALID", "{body}");
        assert!(
            user_errors(&body, "eventsReplay")[0]["message"]
                .as_str()
                .unwrap()
                .contains("14 days")
        );
        let backwards = json!({ "id": eu, "since": rfc3339(start), "until": rfc3339(start - 1) });
        let (_, body) = gql(&app, Some(&operator), REPLAY_MANY, backwards).await;
        assert_eq!(first_code(&body, "eventsReplay"), "INVALID", "{body}");
        let mut running = window.clone();
        running["filter"] = json!({ "status": "RUNNING" });
        let (_, body) = gql(&app, Some(&operator), REPLAY_MANY, running).await;
        assert_eq!(first_code(&body, "eventsReplay"), "INVALID", "{body}");

        // A viewer may not; another tenant's connection is NOT_FOUND and its event untouched.
        let (_, body) = gql(&app, Some(&viewer), REPLAY_MANY, window).await;
        assert_eq!(codes(&body), vec!["FORBIDDEN"], "{body}");
        let (_, body) = gql(
            &app,
            Some(&operator),
            REPLAY_MANY,
            json!({ "id": theirs, "since": rfc3339(start) }),
        )
        .await;
        assert_eq!(first_code(&body, "eventsReplay"), "NOT_FOUND", "{body}");
        app.stop().await;
    }
}

const TENANT_CREATE: &str = "mutation($id: String!) { tenantCreate(input: { id: $id, name: \"Initech\" }) { \
    tenantId ownerKey { name role } ownerKeySecret userErrors { field code } } }";
const OPERATOR_TOKEN: &str = "an-operator-token-that-is-long-enough-0123456789";

#[tokio::test]
async fn the_operator_token_creates_tenants_and_nothing_else() {
    for db in backends().await {
        let app = TestApp::start_with(&db, &[("MLC__ADMIN__TOKEN", OPERATOR_TOKEN)]).await;
        let store = app.store.store().clone();
        let owner = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Owner).await;

        let (status, body) = gql(
            &app,
            Some(OPERATOR_TOKEN),
            TENANT_CREATE,
            json!({ "id": "initech" }),
        )
        .await;
        assert_eq!(status, 200);
        let made = &body["data"]["tenantCreate"];
        assert_eq!(made["tenantId"], "initech", "{body}");
        assert_eq!(made["ownerKey"]["role"], "OWNER");
        let secret = made["ownerKeySecret"].as_str().unwrap().to_string();
        // The new owner key works, inside the new tenant only.
        let (_, body) = gql(
            &app,
            Some(&secret),
            "{ viewer { tenantId role } connections { edges { node { handle } } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            body["data"]["viewer"],
            json!({ "tenantId": "initech", "role": "OWNER" }),
            "{body}"
        );
        assert_eq!(body["data"]["connections"]["edges"], json!([]));

        // Again: ALREADY_EXISTS; a bad ID: INVALID.
        let (_, body) = gql(
            &app,
            Some(OPERATOR_TOKEN),
            TENANT_CREATE,
            json!({ "id": "initech" }),
        )
        .await;
        assert_eq!(
            first_code(&body, "tenantCreate"),
            "ALREADY_EXISTS",
            "{body}"
        );
        let (_, body) = gql(
            &app,
            Some(OPERATOR_TOKEN),
            TENANT_CREATE,
            json!({ "id": "Not Valid" }),
        )
        .await;
        assert_eq!(first_code(&body, "tenantCreate"), "INVALID", "{body}");

        // A tenant's owner key cannot create tenants; the operator token reads no tenant.
        let (_, body) = gql(&app, Some(&owner), TENANT_CREATE, json!({ "id": "evil" })).await;
        assert_eq!(codes(&body), vec!["FORBIDDEN"], "{body}");
        let (_, body) = gql(
            &app,
            Some(OPERATOR_TOKEN),
            "{ connections { edges { node { handle } } } }",
            json!({}),
        )
        .await;
        assert_eq!(codes(&body), vec!["UNAUTHENTICATED"], "{body}");
        // A wrong token is no operator.
        let (status, _) = gql(
            &app,
            Some("an-operator-token-that-is-long-enough-xxxxxxxxxx"),
            TENANT_CREATE,
            json!({ "id": "evil" }),
        )
        .await;
        assert_eq!(status, 401);
        assert!(
            store
                .tenant_scope(&TenantId::parse("evil").unwrap())
                .await
                .unwrap()
                .is_none()
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn each_key_has_its_own_request_budget_and_the_schema_can_be_hidden() {
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    let app = TestApp::start_with(
        &db,
        &[
            ("MLC__ADMIN__GRAPHQL_REQUESTS_PER_MINUTE", "3"),
            ("MLC__ADMIN__GRAPHQL_INTROSPECTION", "false"),
            ("MLC__ADMIN__GRAPHQL_GRAPHIQL", "false"),
        ],
    )
    .await;
    let store = app.store.store().clone();
    let busy = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Viewer).await;
    let other = key_of(&store, "acme", ApiKeyRole::Viewer).await;

    // The cost of each request is reported.
    let (_, body) = gql(&app, Some(&busy), "{ viewer { tenantId } }", json!({})).await;
    assert!(
        body["extensions"]["analyzer"]["complexity"]
            .as_u64()
            .unwrap()
            >= 1,
        "{body}"
    );
    // Refused before any resolver runs, and still with a code: a missing argument, a value out
    // of range.
    for query in [
        "{ connection { handle } }",
        "{ connections { nodes { stats(hours: -3) { events } } } }",
    ] {
        let (_, body) = gql(&app, Some(&other), query, json!({})).await;
        assert_eq!(codes(&body), vec!["BAD_USER_INPUT"], "{query}: {body}");
    }
    // Introspection is off here: refused, while ordinary queries run.
    let (_, body) = gql(
        &app,
        Some(&busy),
        "{ __schema { types { name } } }",
        json!({}),
    )
    .await;
    assert!(body["data"]["__schema"].is_null(), "{body}");
    // The third request was the last of the minute for this key.
    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&busy)
        .json(&json!({ "query": "{ viewer { tenantId } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&busy)
        .json(&json!({ "query": "{ viewer { tenantId } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(codes(&body), vec!["RATE_LIMITED"], "{body}");
    // Another key of the same tenant has its own budget.
    let (status, _) = gql(&app, Some(&other), "{ viewer { tenantId } }", json!({})).await;
    assert_eq!(status, 200);
    // GraphiQL is off: a browser is told to send a query.
    let page = app.client.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 400);
    app.stop().await;
}

const KEY_CREATE: &str = "mutation($n: String!, $k: String) { apiKeyCreate(input: { name: $n, \
    role: VIEWER, idempotencyKey: $k }) { apiKey { id name } secret userErrors { code } } }";

#[tokio::test]
async fn a_retried_mutation_with_its_idempotency_key_acts_once() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let owner = tenant_with(&store, "acme", &["eu"], ApiKeyRole::Owner).await;
        let globex = tenant_with(&store, "globex", &["main"], ApiKeyRole::Owner).await;
        let count_keys = |key: String| {
            let app = &app;
            async move {
                let (_, body) = gql(app, Some(&key), "{ apiKeys { id } }", json!({})).await;
                body["data"]["apiKeys"].as_array().unwrap().len()
            }
        };
        let before = count_keys(owner.clone()).await;

        let vars = json!({ "n": "billing", "k": "retry-1" });
        let (_, first) = gql(&app, Some(&owner), KEY_CREATE, vars.clone()).await;
        let made = &first["data"]["apiKeyCreate"];
        assert!(
            made["secret"].as_str().unwrap().starts_with("mlck_"),
            "{first}"
        );
        let (_, second) = gql(&app, Some(&owner), KEY_CREATE, vars.clone()).await;
        let again = &second["data"]["apiKeyCreate"];
        assert_eq!(
            again["apiKey"], made["apiKey"],
            "the first answer: {second}"
        );
        assert!(
            again["secret"].is_null(),
            "a kept answer holds no secret: {second}"
        );
        assert_eq!(
            count_keys(owner.clone()).await,
            before + 1,
            "one key made, not two"
        );

        // The same key for another request is refused and does nothing.
        let (_, other) = gql(
            &app,
            Some(&owner),
            KEY_CREATE,
            json!({ "n": "something else", "k": "retry-1" }),
        )
        .await;
        assert_eq!(codes(&other), vec!["BAD_USER_INPUT"], "{other}");
        assert_eq!(count_keys(owner.clone()).await, before + 1);

        // Keys are per tenant: globex's "retry-1" is its own.
        let before_globex = count_keys(globex.clone()).await;
        let (_, theirs) = gql(&app, Some(&globex), KEY_CREATE, vars).await;
        assert!(
            theirs["data"]["apiKeyCreate"]["secret"].as_str().is_some(),
            "{theirs}"
        );
        assert_ne!(
            theirs["data"]["apiKeyCreate"]["apiKey"]["id"],
            made["apiKey"]["id"]
        );
        assert_eq!(count_keys(globex.clone()).await, before_globex + 1);
        // Without a key, every request acts.
        for _ in 0..2 {
            gql(&app, Some(&owner), KEY_CREATE, json!({ "n": "unkeyed" })).await;
        }
        assert_eq!(count_keys(owner).await, before + 3);
        app.stop().await;
    }
}

/// A page of connections loads its job counts in one batch (a per-request DataLoader); each
/// connection still shows its own, and a same-named connection of another tenant counts none of
/// them.
#[tokio::test]
async fn a_page_of_connections_shows_each_ones_own_job_counts() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        let store = app.store.store().clone();
        let acme = tenant_with(&store, "acme", &["eu", "us", "uk"], ApiKeyRole::Viewer).await;
        let globex = tenant_with(&store, "globex", &["eu"], ApiKeyRole::Viewer).await;
        for (connection, n) in [("eu", 3), ("us", 1)] {
            for i in 0..n {
                record(
                    &store,
                    "acme",
                    connection,
                    &format!("evt_{connection}{i}"),
                    true,
                )
                .await;
            }
        }
        let query = "{ connections { edges { node { handle jobCounts { waiting queued running } \
                     health { queueDepth } } } } }";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, body) = gql(&app, Some(&acme), query, json!({})).await;
            let counts: Vec<(String, i64, i64)> = body["data"]["connections"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let c = &e["node"]["jobCounts"];
                    (
                        e["node"]["handle"].as_str().unwrap().to_string(),
                        c["waiting"].as_i64().unwrap(),
                        c["queued"].as_i64().unwrap() + c["running"].as_i64().unwrap(),
                    )
                })
                .collect();
            // Drafts: every job ends up waiting for the connection to be active.
            if counts
                == vec![
                    ("eu".to_string(), 3, 0),
                    ("uk".to_string(), 0, 0),
                    ("us".to_string(), 1, 0),
                ]
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{body}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let (_, body) = gql(&app, Some(&globex), query, json!({})).await;
        assert_eq!(
            body["data"]["connections"]["edges"][0]["node"]["jobCounts"],
            json!({ "waiting": 0, "queued": 0, "running": 0 }),
            "{body}"
        );
        app.stop().await;
    }
}
