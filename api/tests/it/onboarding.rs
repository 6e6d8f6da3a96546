//! Onboarding's Stripe step against the Stripe simulator: a pasted key is checked, the webhook
//! endpoint is made in Stripe for the connection's URL (once, however often it is run), its
//! secret is sealed, and the events Stripe then sends arrive, verified, on that connection.

use mlc_core::{ConnectionId, ConnectionStatus, ExposeSecret, TenantId};
use mlc_store::testing::backends;
use mlc_store::{ApiKeyRole, NewConnection};
use serde_json::{Value, json};

const CONNECT: &str = "mutation($id: ID!, $k: String!) { stripeConnect(input: { connectionId: $id, \
    apiKey: $k }) { accountId livemode webhookEndpointId webhookEndpointCreated webhookUrl \
    credentials { name values } userErrors { field code message } } }";

async fn gql(addr: std::net::SocketAddr, key: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn endpoints(base: &str, key: &str) -> Vec<Value> {
    let list: Value = reqwest::Client::new()
        .get(format!("{base}/v1/webhook_endpoints?limit=100"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pasting_a_stripe_key_sets_the_webhook_up_once_and_events_arrive() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut opts = ml_connector::stack::StackOptions::new(db.url(), keys.path());
        opts.listen = Some(addr);
        opts.extra_env
            .push(("MLC__ADMIN__PUBLIC_URL".into(), format!("http://{addr}")));
        let stack = ml_connector::stack::Stack::start(opts)
            .await
            .expect("stack starts");
        let store = stack.store.store().clone();
        let scope = store
            .create_tenant(&TenantId::parse("acme").unwrap(), "Acme")
            .await
            .unwrap();
        let tenant = store.tenant(&scope);
        let made = tenant
            .create_connection(&NewConnection {
                id: ConnectionId::parse("live").unwrap(),
                name: "Acme live".into(),
                status: ConnectionStatus::Draft,
                settings: json!({ "stripe": { "api_base": stack.stripe.base_url } }),
                netsuite_account: None,
            })
            .await
            .unwrap();
        let owner = tenant
            .create_api_key("owner", ApiKeyRole::Owner)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let operator = tenant
            .create_api_key("ops", ApiKeyRole::Operator)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        let list = gql(addr, &owner, "{ connections { nodes { id } } }", json!({})).await;
        let id = list["data"]["connections"]["nodes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let stripe_key = stack.stripe.api_key_str().to_string();
        let url = format!("http://{addr}/webhooks/stripe/{}", made.route_id);
        let before = endpoints(&stack.stripe.base_url, &stripe_key).await.len();

        let body = gql(addr, &owner, CONNECT, json!({ "id": id, "k": stripe_key })).await;
        let done = &body["data"]["stripeConnect"];
        assert_eq!(done["userErrors"], json!([]), "{body}");
        assert!(
            done["accountId"].as_str().unwrap().starts_with("acct_"),
            "{body}"
        );
        assert_eq!(done["livemode"], false);
        assert_eq!(done["webhookEndpointCreated"], true);
        assert_eq!(done["webhookUrl"], url);
        assert!(
            !body.to_string().contains(&stripe_key),
            "the key is never answered"
        );
        let names: Vec<&str> = done["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["stripe/api_key", "stripe/webhook_secrets"],
            "{body}"
        );
        // In Stripe: one endpoint for this connection's URL, with the handled event types.
        let now = endpoints(&stack.stripe.base_url, &stripe_key).await;
        assert_eq!(now.len(), before + 1);
        let ours = now.iter().find(|e| e["url"] == url).expect("our endpoint");
        assert_eq!(ours["id"], done["webhookEndpointId"]);
        assert_eq!(ours["metadata"]["mlc_route"], made.route_id.as_str());
        let enabled = ours["enabled_events"].as_array().unwrap();
        assert!(enabled.contains(&json!("invoice.paid")), "{ours}");

        // Again: the same endpoint, nothing new in Stripe.
        let body = gql(addr, &owner, CONNECT, json!({ "id": id, "k": stripe_key })).await;
        let again = &body["data"]["stripeConnect"];
        assert_eq!(again["webhookEndpointCreated"], false, "{body}");
        assert_eq!(again["webhookEndpointId"], ours["id"]);
        assert_eq!(
            endpoints(&stack.stripe.base_url, &stripe_key).await.len(),
            before + 1
        );

        // Stripe now delivers to the connection, signed with the sealed secret: a customer made
        // in Stripe arrives as a verified event on it.
        let customer: Value = reqwest::Client::new()
            .post(format!("{}/v1/customers", stack.stripe.base_url))
            .bearer_auth(&stripe_key)
            .form(&[("name", "Onboarded Ltd"), ("email", "ap@onboarded.example")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let customer_id = customer["id"].as_str().unwrap().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let body = gql(
                addr,
                &owner,
                "query($id: ID!, $s: String) { connection(id: $id) { events(filter: { stripeId: $s }) { nodes { eventType } } } }",
                json!({ "id": id, "s": customer_id }),
            )
            .await;
            let types = body["data"]["connection"]["events"]["nodes"].clone();
            if types
                .as_array()
                .is_some_and(|t| t.iter().any(|e| e["eventType"] == "customer.created"))
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the customer's event never arrived: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }

        // A key Stripe refuses, a value that is no key, an operator: refused, nothing stored.
        let body = gql(
            addr,
            &owner,
            CONNECT,
            json!({ "id": id, "k": "sk_test_notAKeyStripeKnows" }),
        )
        .await;
        let e = &body["data"]["stripeConnect"]["userErrors"][0];
        assert_eq!(e["code"], "INVALID", "{body}");
        assert!(
            e["message"].as_str().unwrap().contains("Stripe refused"),
            "{body}"
        );
        assert!(!body.to_string().contains("notAKeyStripeKnows"), "{body}");
        let body = gql(
            addr,
            &owner,
            CONNECT,
            json!({ "id": id, "k": "pk_test_publishable" }),
        )
        .await;
        assert_eq!(
            body["data"]["stripeConnect"]["userErrors"][0]["code"], "INVALID",
            "{body}"
        );
        let body = gql(
            addr,
            &operator,
            CONNECT,
            json!({ "id": id, "k": stripe_key }),
        )
        .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{body}"
        );
        stack.stop().await.unwrap();
    }
}
