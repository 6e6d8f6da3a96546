//! Onboarding's Stripe step against the Stripe simulator: a pasted key is checked, the webhook
//! endpoint is made in Stripe for the connection's URL (once, however often it is run), its
//! secret is sealed, and the events Stripe then sends arrive, verified, on that connection.

use mlc_core::{ConnectionId, ConnectionStatus, ExposeSecret, TenantId};
use mlc_store::testing::backends;
use mlc_store::{ApiKeyRole, NewConnection};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use serde_json::{Value, json};

use crate::helpers::gql;

const CONNECT: &str = "mutation($id: ID!, $k: String!) { stripeConnect(input: { connectionId: $id, \
    apiKey: $k }) { accountId livemode webhookEndpointId webhookEndpointCreated webhookUrl \
    credentials { name values } userErrors { field code message } } }";

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

const KEY_PAIR: &str = "mutation($id: ID!, $a: String!, $c: String!) { netsuiteKeyPairGenerate(input: \
    { connectionId: $id, accountId: $a, clientId: $c }) { certificate { pem algorithm fingerprint \
    notAfter certificateId steps } credentials { name } userErrors { field code message } } }";
const CERT_ID: &str = "mutation($id: ID!, $c: String!) { netsuiteCertificateSet(input: \
    { connectionId: $id, certificateId: $c }) { certificate { certificateId } \
    userErrors { field code message } } }";
const PING: &str = "mutation($id: ID!) { connectionTest(input: { connectionId: $id }) { \
    result { ok checks { name status message fix } } userErrors { code message } } }";
const DRY_RUN: &str = "mutation($id: ID!) { dryRunStart(input: { connectionId: $id }) { \
    dryRun { id state } userErrors { field code message } } }";
const DRY_RUN_READ: &str = "query($id: ID!) { node(id: $id) { ... on Connection { status \
    dryRun { state scanned error notPosted wouldPost { currency count gross { amount } \
    fees { amount } net { amount } } unmappedProducts { stripeProductId name sales \
    amounts { amount currency } } unmatchedCustomers { stripeCustomerId willBeCreated } \
    problems { stripeObjectId message } } backfill { state scanned queued error } } } }";
const MAP: &str = "mutation($id: ID!, $p: String!, $i: String!) { productMappingSet(input: \
    { connectionId: $id, stripeProductId: $p, netsuiteItemId: $i }) { userErrors { message } } }";
const GO_LIVE: &str = "mutation($id: ID!, $d: Int!) { connectionGoLive(input: { connectionId: $id, \
    backfillDays: $d }) { connection { status } backfill { state days } \
    userErrors { field code message } } }";

/// A connector with a public address, simulators connected to nothing (the wizard's), and
/// company `acme` with a draft connection on their preset settings and an owner key.
struct Wizard {
    _keys: tempfile::TempDir,
    addr: std::net::SocketAddr,
    stack: ml_connector::stack::Stack,
    sims: ml_connector::stack::UnconnectedSims,
    store: mlc_store::Store,
    scope: mlc_store::TenantScope,
    owner: String,
    /// The connection's global ID.
    id: String,
}

impl Wizard {
    async fn start(db: &mlc_store::testing::TestDb) -> Wizard {
        Wizard::start_with(db, &[]).await
    }

    async fn start_with(db: &mlc_store::testing::TestDb, env: &[(&str, &str)]) -> Wizard {
        let keys = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut opts = ml_connector::stack::StackOptions::new(db.url(), keys.path());
        opts.listen = Some(addr);
        opts.extra_env
            .push(("MLC__ADMIN__PUBLIC_URL".into(), format!("http://{addr}")));
        opts.extra_env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let stack = ml_connector::stack::Stack::start(opts.clone())
            .await
            .expect("stack starts");
        let sims = ml_connector::stack::UnconnectedSims::start(&opts, "7654321_SB1")
            .await
            .expect("simulators start");
        let store = stack.store.store().clone();
        let scope = store
            .create_tenant(&TenantId::parse("acme").unwrap(), "Acme")
            .await
            .unwrap();
        let tenant = store.tenant(&scope);
        tenant
            .create_connection(&NewConnection {
                id: ConnectionId::parse("main").unwrap(),
                name: "Acme".into(),
                status: ConnectionStatus::Draft,
                settings: sims.preset_settings(),
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
        let list = gql(addr, &owner, "{ connections { nodes { id } } }", json!({})).await;
        let id = list["data"]["connections"]["nodes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        Wizard {
            _keys: keys,
            addr,
            stack,
            sims,
            store,
            scope,
            owner,
            id,
        }
    }
}

/// Polls the connection until its latest run of `field` (`dryRun`, `backfill`) is done.
async fn run_done(addr: std::net::SocketAddr, key: &str, id: &str, field: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let body = gql(addr, key, DRY_RUN_READ, json!({ "id": id })).await;
        let run = body["data"]["node"][field].clone();
        if run["state"] == "SUCCEEDED" || run["state"] == "FAILED" {
            return body["data"]["node"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the {field} did not finish: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The wizard from nothing to live, against simulators that know nothing of the connector:
/// Stripe by key (the endpoint made in Stripe), NetSuite by a generated key pair whose
/// certificate is uploaded to NetSuite's M2M setup, every check green; sales happen while the
/// connection is still a draft; the dry run says what would post and names the unmapped product
/// without writing to NetSuite; once it is mapped the dry run agrees with Stripe; going live with
/// the backfill posts every sale exactly once though each also arrived as a webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wizard_goes_from_keys_to_live_and_posts_the_month_once() {
    for db in backends().await {
        let Wizard {
            _keys,
            addr,
            stack,
            sims,
            store,
            scope,
            owner,
            id,
        } = Wizard::start(&db).await;
        let ns = sims.netsuite.handle().clone();

        // Another company, as an attacker: acme's connection ID gets it nothing.
        let other = store
            .create_tenant(&TenantId::parse("globex").unwrap(), "Globex")
            .await
            .unwrap();
        let intruder = store
            .tenant(&other)
            .create_api_key("owner", ApiKeyRole::Owner)
            .await
            .unwrap()
            .secret
            .expose_secret()
            .to_string();
        for (query, vars, field) in [
            (DRY_RUN, json!({ "id": id }), "dryRunStart"),
            (GO_LIVE, json!({ "id": id, "d": 30 }), "connectionGoLive"),
            (
                KEY_PAIR,
                json!({ "id": id, "a": "1234567", "c": "x" }),
                "netsuiteKeyPairGenerate",
            ),
            (
                CERT_ID,
                json!({ "id": id, "c": "x" }),
                "netsuiteCertificateSet",
            ),
        ] {
            let body = gql(addr, &intruder, query, vars).await;
            assert_eq!(
                body["data"][field]["userErrors"][0]["code"], "NOT_FOUND",
                "{field}: {body}"
            );
        }

        // 1. Stripe.
        let stripe_key = sims.stripe.api_key_str().to_string();
        let body = gql(addr, &owner, CONNECT, json!({ "id": id, "k": stripe_key })).await;
        assert_eq!(
            body["data"]["stripeConnect"]["userErrors"],
            json!([]),
            "{body}"
        );

        // 2. NetSuite: a key pair, its certificate uploaded in NetSuite, the certificate ID.
        let client_id = "ab".repeat(32);
        let body = gql(
            addr,
            &owner,
            KEY_PAIR,
            json!({ "id": id, "a": "7654321_sb1", "c": client_id }),
        )
        .await;
        let made = &body["data"]["netsuiteKeyPairGenerate"];
        assert_eq!(made["userErrors"], json!([]), "{body}");
        let pem = made["certificate"]["pem"].as_str().unwrap().to_string();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{body}");
        assert_eq!(made["certificate"]["algorithm"], "ES256");
        assert_eq!(made["certificate"]["certificateId"], Value::Null);
        assert!(
            made["certificate"]["steps"]
                .to_string()
                .contains(&client_id),
            "the steps name the integration: {body}"
        );
        assert!(
            !body.to_string().contains("PRIVATE KEY"),
            "the private key never leaves the store: {body}"
        );
        assert!(
            made["credentials"]
                .to_string()
                .contains("netsuite/private_key_pem"),
            "{body}"
        );
        // A bad account ID is the person's to fix, said in words.
        let bad = gql(
            addr,
            &owner,
            KEY_PAIR,
            json!({ "id": id, "a": "not an account", "c": client_id }),
        )
        .await;
        assert_eq!(
            bad["data"]["netsuiteKeyPairGenerate"]["userErrors"][0]["field"],
            json!(["input", "accountId"]),
            "{bad}"
        );
        let uploaded: Value = reqwest::Client::new()
            .post(format!(
                "{}/_sim/m2m/certificates",
                sims.netsuite.base_url().trim_end_matches('/')
            ))
            .json(&json!({ "client_id": client_id, "certificate_pem": pem }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let certificate_id = uploaded["certificate_id"]
            .as_str()
            .unwrap_or_else(|| panic!("NetSuite took the certificate: {uploaded}"))
            .to_string();
        let body = gql(
            addr,
            &owner,
            CERT_ID,
            json!({ "id": id, "c": certificate_id }),
        )
        .await;
        assert_eq!(
            body["data"]["netsuiteCertificateSet"]["certificate"]["certificateId"], certificate_id,
            "{body}"
        );

        // 3. Every check green.
        let body = gql(addr, &owner, PING, json!({ "id": id })).await;
        assert_eq!(
            body["data"]["connectionTest"]["result"]["ok"], true,
            "every check passes: {body}"
        );

        // Sales happen meanwhile; the draft stores their events, and posts nothing.
        let report = run_scenario(
            &sims.stripe.base_url,
            &stripe_key,
            ScenarioConfig {
                customers: 6,
                seed: 11,
                checkout_percent: 100,
                refunds: 0,
                on_catalog: Some(ml_connector::stack::catalog_hook(ns.clone(), false)),
                ..ScenarioConfig::default()
            },
        )
        .await
        .expect("the scenario runs");
        let sales = report.paid_invoices.len() + report.standalone_charges.len();
        assert!(sales > 0);

        // 4. See if we fit: the unmapped product, with its sales; nothing in NetSuite.
        let body = gql(addr, &owner, DRY_RUN, json!({ "id": id })).await;
        assert_eq!(
            body["data"]["dryRunStart"]["userErrors"],
            json!([]),
            "{body}"
        );
        let node = run_done(addr, &owner, &id, "dryRun").await;
        let dry = &node["dryRun"];
        assert_eq!(dry["state"], "SUCCEEDED", "{node}");
        assert_eq!(node["status"], "DRAFT");
        let unmapped = dry["unmappedProducts"].as_array().unwrap();
        assert_eq!(unmapped.len(), 1, "{node}");
        assert_eq!(unmapped[0]["stripeProductId"], report.unmapped_product);
        assert!(unmapped[0]["name"].as_str().is_some(), "{node}");
        assert_eq!(
            ns.count(mlc_netsuite_sim::RecordType::Invoice),
            0,
            "a dry run writes nothing to NetSuite"
        );
        let counted = |dry: &Value| -> u64 {
            dry["wouldPost"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["count"].as_u64().unwrap())
                .sum()
        };
        let waiting: u64 = unmapped[0]["sales"].as_u64().unwrap();
        assert_eq!(counted(dry) + waiting, sales as u64, "{node}");

        // Mapped, the dry run again: everything fits.
        let item = ns
            .create(
                mlc_netsuite_sim::RecordType::ServiceSaleItem,
                json!({ "itemId": "Mapped later", "displayName": "Mapped later", "subsidiary": {"id": "1"}, "includeChildren": true }),
            )
            .unwrap();
        let body = gql(
            addr,
            &owner,
            MAP,
            json!({ "id": id, "p": report.unmapped_product, "i": item.to_string() }),
        )
        .await;
        assert_eq!(
            body["data"]["productMappingSet"]["userErrors"],
            json!([]),
            "{body}"
        );
        gql(addr, &owner, DRY_RUN, json!({ "id": id })).await;
        let node = run_done(addr, &owner, &id, "dryRun").await;
        let dry = &node["dryRun"];
        assert_eq!(dry["unmappedProducts"], json!([]), "{node}");
        assert_eq!(dry["problems"], json!([]), "{node}");
        assert_eq!(counted(dry), sales as u64, "{node}");
        for t in dry["wouldPost"].as_array().unwrap() {
            let (g, f, n) = (
                t["gross"]["amount"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap(),
                t["fees"]["amount"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap(),
                t["net"]["amount"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap(),
            );
            assert_eq!(g - f, n, "net is gross less fees: {t}");
            assert!(
                f > rust_decimal::Decimal::ZERO,
                "Stripe's fees are counted: {t}"
            );
        }
        assert_eq!(ns.count(mlc_netsuite_sim::RecordType::Invoice), 0);
        let predicted: std::collections::BTreeMap<String, rust_decimal::Decimal> = dry["wouldPost"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["currency"].as_str().unwrap().to_string(),
                    t["net"]["amount"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();

        // 5. Live, with the month backfilled: each sale once, though each also came by webhook.
        let body = gql(addr, &owner, GO_LIVE, json!({ "id": id, "d": 30 })).await;
        let live = &body["data"]["connectionGoLive"];
        assert_eq!(live["userErrors"], json!([]), "{body}");
        assert_eq!(live["connection"]["status"], "ACTIVE");
        let node = run_done(addr, &owner, &id, "backfill").await;
        assert_eq!(node["backfill"]["state"], "SUCCEEDED", "{node}");
        assert!(
            node["backfill"]["queued"].as_u64().unwrap() >= sales as u64,
            "{node}"
        );
        let scoped = store.scoped(
            &store
                .connection_scope(scope.tenant_id(), &ConnectionId::parse("main").unwrap())
                .await
                .unwrap()
                .unwrap(),
        );
        assert!(
            ml_connector::stack::wait_idle(
                &sims.stripe.handle,
                &scoped,
                std::time::Duration::from_secs(180)
            )
            .await,
            "everything posts"
        );
        assert_eq!(
            ns.count(mlc_netsuite_sim::RecordType::Invoice),
            sales,
            "one NetSuite invoice per Stripe sale, none twice"
        );
        // The dry run said what would post, to the minor unit: each currency's invoices in
        // NetSuite total its net (fees are negative lines in net mode).
        let iso_of = |id: &str| {
            ml_connector::stack::CURRENCIES
                .split(',')
                .filter_map(|p| p.split_once('='))
                .find(|(_, i)| *i == id)
                .map(|(c, _)| c.to_string())
                .unwrap()
        };
        let mut posted: std::collections::BTreeMap<String, rust_decimal::Decimal> =
            Default::default();
        for invoice in ns.ids(mlc_netsuite_sim::RecordType::Invoice) {
            let v = ns
                .get(mlc_netsuite_sim::RecordType::Invoice, &invoice.to_string())
                .unwrap();
            let currency = match &v["currency"]["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let total: rust_decimal::Decimal = match &v["total"] {
                Value::String(s) => s.parse().unwrap(),
                other => other.to_string().parse().unwrap(),
            };
            *posted.entry(iso_of(&currency)).or_default() += total;
        }
        assert_eq!(posted, predicted, "the dry run predicted what posted");

        // The other company still sees nothing of it.
        let body = gql(addr, &intruder, DRY_RUN_READ, json!({ "id": id })).await;
        assert_eq!(body["data"]["node"], Value::Null, "{body}");
        stack.stop().await.unwrap();
    }
}

/// A restricted key is checked resource by resource: the check names what it may not read and
/// how to grant it, and `stripeConnect` with a key that may not make webhook endpoints says
/// which permission is missing. With every permission it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restricted_key_is_told_which_permissions_it_lacks() {
    let db = backends().await.into_iter().next().unwrap();
    let Wizard {
        _keys,
        addr,
        stack,
        sims,
        owner,
        id,
        ..
    } = Wizard::start(&db).await;
    let restricted = |permissions: Value| {
        let base = sims.stripe.base_url.clone();
        async move {
            let made: Value = reqwest::Client::new()
                .post(format!("{base}/_sim/restricted_keys"))
                .json(&json!({ "permissions": permissions }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            made["key"].as_str().unwrap().to_string()
        }
    };
    let reads = json!({
        "account": "read", "charges": "read", "invoices": "read", "customers": "read",
        "products": "read", "prices": "read", "refunds": "read",
        "balance_transactions": "read", "checkout_sessions": "read", "events": "read",
        "webhook_endpoints": "read",
    });

    // May read, may not make the webhook endpoint: stripeConnect names the permission.
    let read_only = restricted(reads.clone()).await;
    let body = gql(addr, &owner, CONNECT, json!({ "id": id, "k": read_only })).await;
    let error = &body["data"]["stripeConnect"]["userErrors"][0];
    assert_eq!(error["field"], json!(["input", "apiKey"]), "{body}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rak_webhook_endpoints_write"),
        "{body}"
    );
    assert!(
        !body.to_string().contains(&read_only),
        "the key is never echoed"
    );

    // Everything the connector needs: connected; then a key missing two reads fails the check.
    let mut full = reads.clone();
    full["webhook_endpoints"] = json!("write");
    let key = restricted(full).await;
    let body = gql(addr, &owner, CONNECT, json!({ "id": id, "k": key })).await;
    assert_eq!(
        body["data"]["stripeConnect"]["userErrors"],
        json!([]),
        "{body}"
    );
    let mut partial = reads.clone();
    partial.as_object_mut().unwrap().remove("refunds");
    partial.as_object_mut().unwrap().remove("events");
    let key = restricted(partial).await;
    let body = gql(
        addr,
        &owner,
        "mutation($id: ID!, $k: String!) { stripeCredentialsSet(input: { connectionId: $id, \
         apiKey: $k }) { userErrors { message } } }",
        json!({ "id": id, "k": key }),
    )
    .await;
    assert_eq!(
        body["data"]["stripeCredentialsSet"]["userErrors"],
        json!([]),
        "{body}"
    );
    let body = gql(addr, &owner, PING, json!({ "id": id })).await;
    let checks = body["data"]["connectionTest"]["result"]["checks"]
        .as_array()
        .unwrap();
    let stripe = checks
        .iter()
        .find(|c| c["name"] == "stripe key")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(stripe["status"], "FAIL", "{body}");
    assert!(
        stripe["message"]
            .as_str()
            .unwrap()
            .ends_with("it may not read Refunds, Events"),
        "{body}"
    );
    assert!(
        stripe["fix"].as_str().unwrap().contains("Refunds, Events"),
        "{body}"
    );
    stack.stop().await.unwrap();
}

/// A dry run that Stripe keeps failing ends as failed with the reason once its attempts are
/// spent: the page never waits on a run that will not end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_stripe_keeps_failing_ends_failed_with_the_reason() {
    let db = backends().await.into_iter().next().unwrap();
    let Wizard {
        _keys,
        addr,
        stack,
        sims,
        owner,
        id,
        ..
    } = Wizard::start_with(&db, &[("MLC__WORKER__MAX_ATTEMPTS", "2")]).await;
    let stripe_key = sims.stripe.api_key_str().to_string();
    let body = gql(addr, &owner, CONNECT, json!({ "id": id, "k": stripe_key })).await;
    assert_eq!(
        body["data"]["stripeConnect"]["userErrors"],
        json!([]),
        "{body}"
    );
    // NetSuite connected as the wizard does it: key pair, certificate uploaded, its ID given.
    let client_id = "cd".repeat(32);
    let body = gql(
        addr,
        &owner,
        KEY_PAIR,
        json!({ "id": id, "a": "7654321_SB1", "c": client_id }),
    )
    .await;
    let pem = body["data"]["netsuiteKeyPairGenerate"]["certificate"]["pem"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
    let uploaded: Value = reqwest::Client::new()
        .post(format!(
            "{}/_sim/m2m/certificates",
            sims.netsuite.base_url().trim_end_matches('/')
        ))
        .json(&json!({ "client_id": client_id, "certificate_pem": pem }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let certificate = uploaded["certificate_id"].as_str().unwrap().to_string();
    gql(addr, &owner, CERT_ID, json!({ "id": id, "c": certificate })).await;
    // From now on Stripe answers every request with a 500.
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", sims.stripe.base_url))
        .json(&json!({ "api": { "error_500_probability": 1.0 } }))
        .send()
        .await
        .unwrap();
    let body = gql(addr, &owner, DRY_RUN, json!({ "id": id })).await;
    assert_eq!(
        body["data"]["dryRunStart"]["userErrors"],
        json!([]),
        "{body}"
    );
    let node = run_done(addr, &owner, &id, "dryRun").await;
    assert_eq!(node["dryRun"]["state"], "FAILED", "{node}");
    assert!(
        node["dryRun"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Stripe"),
        "{node}"
    );
    stack.stop().await.unwrap();
}
