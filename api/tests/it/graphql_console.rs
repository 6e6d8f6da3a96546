//! What the retired REST admin API did, through GraphQL, end to end on both stores: the default
//! connection's month with an invoice NetSuite refused, read as the dashboard and the CLI read
//! it (counts, health, activity, failed events with their reasons, one event in full, search by
//! Stripe and NetSuite IDs), replayed one at a time and by window (posting once, audited as
//! the CLI's and the dashboard's replays are), and a mapping that releases the waiting sales.
//! The CLI is asked the same questions on the same store and gives the same answers.

use mlc_core::ExposeSecret;
use mlc_store::ApiKeyRole;
use serde_json::{Value, json};

use crate::console::{SETTLE, invoices_with_external_id, month_with_a_refusal, start};
use crate::graphql::codes;
use crate::helpers::cli;

/// The default tenant's GraphQL API, as a client with an owner key sees it.
pub(crate) struct DefaultTenant {
    url: String,
    key: String,
    http: reqwest::Client,
    /// The default connection's global ID.
    pub connection: String,
}

impl DefaultTenant {
    /// Makes an owner key for the default tenant and finds its default connection.
    pub(crate) async fn new(stack: &ml_connector::stack::Stack) -> DefaultTenant {
        let store = stack.store.store();
        let key = store
            .tenant(&stack.store.scope().tenant())
            .create_api_key("console test", ApiKeyRole::Owner)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let mut me = DefaultTenant {
            url: format!("http://{}/graphql", stack.addr),
            key,
            http: reqwest::Client::new(),
            connection: String::new(),
        };
        let body = me
            .query("{ connections { nodes { id handle } } }", json!({}))
            .await;
        me.connection = body["data"]["connections"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["handle"] == "default")
            .unwrap_or_else(|| panic!("no default connection: {body}"))["id"]
            .as_str()
            .unwrap()
            .to_string();
        me
    }

    pub(crate) async fn query(&self, query: &str, variables: Value) -> Value {
        self.http
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A query on the default connection (`$c`); returns `data.connection`.
    pub(crate) async fn connection(&self, fields: &str, mut variables: Value) -> Value {
        variables["c"] = json!(self.connection);
        let body = self.query(fields, variables).await;
        assert!(body["errors"].is_null(), "{body}");
        body["data"]["connection"].clone()
    }

    /// Jobs by state.
    pub(crate) async fn counts(&self) -> Value {
        self.connection(
            "query($c: ID!) { connection(id: $c) { jobCounts { queued running waiting \
             succeeded failed } } }",
            json!({}),
        )
        .await["jobCounts"]
            .clone()
    }

    /// The events matching `filter` (one page of up to 100), newest first.
    pub(crate) async fn events(&self, filter: Value) -> Vec<Value> {
        self.connection(
            "query($c: ID!, $f: EventFilterInput) { connection(id: $c) { events(first: 100, \
             filter: $f) { nodes { id eventId eventType objectId status attempts lastError } } } }",
            json!({ "f": filter }),
        )
        .await["events"]["nodes"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// One event in full, by its Stripe event ID.
    pub(crate) async fn event(&self, event_id: &str) -> Value {
        let found = self.events(json!({ "stripeId": event_id })).await;
        let gid = found
            .iter()
            .find(|e| e["eventId"] == event_id)
            .unwrap_or_else(|| panic!("{event_id} not listed: {found:?}"))["id"]
            .clone();
        let body = self
            .query(
                "query($id: ID!) { event(id: $id) { eventId eventType objectId status rawEvent \
                 stripeObject netsuiteRequest netsuiteResponse job { state attempts lastError } \
                 auditTrail { step message } } }",
                json!({ "id": gid }),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
        body["data"]["event"].clone()
    }

    async fn replay(&self, event_id: &str) -> Value {
        self.query(
            "mutation($c: ID!, $e: String!) { eventReplay(input: { connectionId: $c, \
             eventId: $e }) { queued userErrors { field code message } } }",
            json!({ "c": self.connection, "e": event_id }),
        )
        .await["data"]["eventReplay"]
            .clone()
    }
}

fn steps(event: &Value) -> Vec<String> {
    event["auditTrail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["step"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graphql_replays_a_failed_invoice_and_a_mapping_releases_waiting_sales() {
    for db in mlc_store::testing::backends().await {
        let dir = tempfile::tempdir().unwrap();
        let stack = start(db.url(), dir.path(), true).await;
        let began = mlc_core::now_millis() - 1000;
        let report = month_with_a_refusal(&stack).await;
        let api = DefaultTenant::new(&stack).await;
        let backend = format!("{:?}", db.backend());

        // Counts and health: failed events of the refused sale, sales waiting for the product.
        let counts = api.counts().await;
        let failed_before = counts["failed"].as_i64().unwrap();
        assert!(failed_before >= 1, "{counts} on {backend}");
        let waiting = counts["waiting"].as_i64().unwrap();
        assert!(waiting > 0, "{counts}");
        let health = api
            .connection(
                "query($c: ID!) { connection(id: $c) { health { queueDepth \
                 lastStripeError { message } lastNetsuiteError { message eventId } } } }",
                json!({}),
            )
            .await["health"]
            .clone();
        let ns_error = health["lastNetsuiteError"]["message"].as_str().unwrap();
        assert!(ns_error.contains("posting period"), "{health}");
        assert!(health["lastStripeError"].is_null(), "{health}");
        assert_eq!(health["queueDepth"], 0, "{health}");

        // The failed events, by status, each with its reason.
        let failed = api.events(json!({ "status": "FAILED" })).await;
        assert_eq!(failed.len() as i64, failed_before, "{failed:?}");
        assert!(
            failed.iter().all(|e| e["lastError"]
                .as_str()
                .is_some_and(|m| m.contains("posting period"))),
            "{failed:?}"
        );
        // The one that got as far as asking NetSuite: the fetched object, the request, no
        // answer, and an audit trail ending in `failed`.
        let mut refused = None;
        for e in &failed {
            let detail = api.event(e["eventId"].as_str().unwrap()).await;
            if detail["netsuiteRequest"]["externalId"].is_string() {
                refused = Some(detail);
                break;
            }
        }
        let detail = refused.expect("a failed event with a NetSuite request");
        let event_id = detail["eventId"].as_str().unwrap().to_string();
        let object_id = detail["objectId"].as_str().unwrap().to_string();
        let external_id = detail["netsuiteRequest"]["externalId"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(detail["status"], "FAILED");
        assert_eq!(detail["rawEvent"]["id"], event_id.as_str());
        assert_eq!(detail["stripeObject"]["id"], object_id.as_str(), "{detail}");
        assert!(external_id.starts_with("stripe_"), "{external_id}");
        assert!(detail["netsuiteResponse"].is_null());
        assert_eq!(steps(&detail).last().map(String::as_str), Some("failed"));
        assert_eq!(invoices_with_external_id(&stack, &external_id), 0);

        // The CLI sees the same: `status` counts and `events list` finds the failed event.
        let (ok, out, err) = cli(db.url(), &["status", "--json"]);
        assert!(ok, "{err}");
        let status: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(status["counts"]["failed"], failed_before, "{out}");
        assert_eq!(status["counts"]["waiting"], waiting);
        let (ok, out, _) = cli(db.url(), &["events", "list", "--status", "failed"]);
        assert!(ok && out.contains(&event_id), "{out}");

        // Replay it: it posts once.
        let r = api.replay(&event_id).await;
        assert_eq!(r, json!({ "queued": true, "userErrors": [] }));
        assert!(stack.wait_idle(SETTLE).await);
        let detail = api.event(&event_id).await;
        assert_eq!(detail["status"], "SUCCEEDED", "{detail}");
        let ns_id = detail["netsuiteResponse"]["netsuite_internal_id"]
            .as_str()
            .expect("NetSuite's answer is recorded")
            .to_string();
        assert_eq!(
            detail["netsuiteResponse"]["external_id"],
            external_id.as_str()
        );
        assert_eq!(invoices_with_external_id(&stack, &external_id), 1);

        // The rest of the failed events by window, this one again from GraphQL and from the
        // CLI: nothing twice in NetSuite, and each replay the same audit entry.
        let body = api
            .query(
                "mutation($c: ID!, $since: String!) { eventsReplay(input: { connectionId: $c, \
                 since: $since, filter: { status: FAILED } }) { batch { events } \
                 userErrors { code message } } }",
                json!({
                    "c": api.connection,
                    "since": jiff::Timestamp::from_millisecond(began).unwrap().to_string(),
                }),
            )
            .await;
        assert_eq!(
            body["data"]["eventsReplay"]["batch"]["events"],
            failed_before - 1,
            "{body}"
        );
        assert_eq!(
            api.replay(&event_id).await,
            json!({ "queued": true, "userErrors": [] })
        );
        let missing = api.replay("evt_NoSuchEvent").await;
        assert_eq!(missing["queued"], false);
        assert_eq!(missing["userErrors"][0]["code"], "NOT_FOUND", "{missing}");
        assert!(stack.wait_idle(SETTLE).await);
        let (ok, out, err) = cli(db.url(), &["replay", &event_id]);
        assert!(ok, "{out}{err}");
        assert!(stack.wait_idle(SETTLE).await);
        assert_eq!(invoices_with_external_id(&stack, &external_id), 1);
        let replays: Vec<String> = api.event(&event_id).await["auditTrail"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["step"] == "replayed")
            .map(|a| a["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(replays.len(), 3, "{replays:?}");
        assert!(
            replays.windows(2).all(|w| w[0] == w[1]),
            "one replay, one audit entry, wherever it was asked for: {replays:?}"
        );

        // Found by the NetSuite internal ID, the external ID and the Stripe object's ID, from
        // GraphQL and from the CLI.
        for filter in [
            json!({ "netsuiteId": ns_id }),
            json!({ "netsuiteId": external_id }),
            json!({ "stripeId": object_id }),
        ] {
            let ids: Vec<Value> = api
                .events(filter.clone())
                .await
                .iter()
                .map(|e| e["eventId"].clone())
                .collect();
            assert!(ids.contains(&json!(event_id)), "{filter}: {ids:?}");
        }
        let (ok, out, err) = cli(db.url(), &["events", "list", "--netsuite-id", &ns_id]);
        assert!(ok && out.contains(&event_id), "{out}{err}");
        let (ok, out, err) = cli(db.url(), &["events", "show", &event_id, "--json"]);
        assert!(ok, "{err}");
        let shown: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            shown["netsuite_response"]["netsuite_internal_id"],
            ns_id.as_str()
        );

        // The unmapped product, with its waiting sales and their amounts; mapping it posts them.
        let unmapped = api
            .connection(
                "query($c: ID!) { connection(id: $c) { unmappedProducts(first: 100) { nodes { \
                 stripeProductId waitingEventIds waitingAmounts { amount currency display } } } } }",
                json!({}),
            )
            .await;
        let row = unmapped["unmappedProducts"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["stripeProductId"] == report.unmapped_product.as_str())
            .unwrap_or_else(|| panic!("unmapped product not listed: {unmapped}"))
            .clone();
        assert!(!row["waitingEventIds"].as_array().unwrap().is_empty());
        assert!(!row["waitingAmounts"].as_array().unwrap().is_empty());
        let item = ml_connector::stack::create_product_item(
            stack.netsuite.handle(),
            "Legacy Add-on",
            &report.unmapped_product,
        )
        .unwrap();
        let map = "mutation($c: ID!, $p: String!, $i: String!) { productMappingSet(input: { \
                   connectionId: $c, stripeProductId: $p, netsuiteItemId: $i }) { releasedJobs \
                   userErrors { field code message } } }";
        let bad = api
            .query(
                map,
                json!({ "c": api.connection, "p": report.unmapped_product, "i": "abc" }),
            )
            .await;
        let errors = &bad["data"]["productMappingSet"]["userErrors"];
        assert_eq!(
            errors[0]["field"],
            json!(["input", "netsuiteItemId"]),
            "{bad}"
        );
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .contains("internal ID"),
            "{bad}"
        );
        // The mapping releases the sales; a refund of one of them waits for its sale, not for
        // the product, and posts once the sale is in.
        let refunds_waiting = stack
            .store
            .list_events(&mlc_store::EventFilter {
                status: Some("waiting".into()),
                limit: 1000,
                ..mlc_store::EventFilter::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|e| {
                e.last_error
                    .as_deref()
                    .is_some_and(|m| m.contains("waits for the sale"))
            })
            .count() as i64;
        let mapped = api
            .query(
                map,
                json!({ "c": api.connection, "p": report.unmapped_product, "i": item.to_string() }),
            )
            .await;
        assert_eq!(
            mapped["data"]["productMappingSet"],
            json!({ "releasedJobs": waiting - refunds_waiting, "userErrors": [] }),
            "{mapped}"
        );
        assert!(stack.wait_idle(SETTLE).await);
        let counts = api.counts().await;
        assert_eq!(
            (counts["waiting"].as_i64(), counts["failed"].as_i64()),
            (Some(0), Some(0))
        );
        assert_eq!(
            stack.netsuite_invoices().len(),
            report.paid_invoices.len() + report.standalone_charges.len(),
            "every sale is one NetSuite invoice on {backend}"
        );
        let after = api
            .connection(
                "query($c: ID!) { connection(id: $c) { productMappings(first: 100) { nodes { \
                 stripeId netsuiteId source } } stats(hours: 24) { activity { recordsPosted } } } }",
                json!({}),
            )
            .await;
        assert!(
            after["productMappings"]["nodes"]
                .as_array()
                .unwrap()
                .contains(&json!({
                    "stripeId": report.unmapped_product,
                    "netsuiteId": item.to_string(),
                    "source": "manual",
                })),
            "{after}"
        );
        let posted: i64 = after["stats"]["activity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["recordsPosted"].as_i64().unwrap())
            .sum();
        assert!(
            posted as usize >= stack.netsuite_invoices().len(),
            "{after}"
        );
        let audit = stack
            .store
            .audit_for_object(&report.unmapped_product)
            .await
            .unwrap();
        assert!(
            audit.iter().any(|a| a.step == "mapping_set"),
            "the same audit entry as `mappings set`: {audit:?}"
        );

        // Bad requests say what is wrong.
        for (filter, first) in [
            (json!({ "receivedAfter": "yesterday" }), 10),
            (json!({}), 1001),
        ] {
            let body = api
                .query(
                    "query($c: ID!, $f: EventFilterInput, $n: Int) { connection(id: $c) { \
                     events(first: $n, filter: $f) { nodes { eventId } } } }",
                    json!({ "c": api.connection, "f": filter, "n": first }),
                )
                .await;
            assert_eq!(codes(&body), vec!["BAD_USER_INPUT"], "{body}");
        }
        let body = api
            .query(
                "query($c: ID!) { connection(id: $c) { events(filter: { status: LOST }) { \
                 nodes { eventId } } } }",
                json!({ "c": api.connection }),
            )
            .await;
        assert!(!body["errors"].as_array().unwrap().is_empty(), "{body}");
        stack.stop().await.unwrap();
    }
}
