//! The client against the NetSuite simulator (in-process, 127.0.0.1:0): token renewal and
//! re-authentication, RS256 refused on both sides, TBA, governance under the concurrency limit,
//! safe create when the response is lost after commit, SuiteQL paging, error shapes, and exact
//! decimal totals in zero- and three-decimal currencies.

use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mlc_core::{ExternalId, NetSuiteInternalId};
use mlc_netsuite::documents::{InvoiceDoc, InvoiceLine, ItemDoc, TranDate};
use mlc_netsuite::{
    AccountId, CreateOutcome, Credentials, NetSuiteClient, NetSuiteConfig, NetSuiteError,
    SigningAlgorithm,
};
use mlc_netsuite_sim::{
    FaultKind, M2mSetup, NetSuiteSim, QueuedFault, RecordType, RunningSim, SimConfig,
    generate_m2m_setup,
};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut cfg = SimConfig::example().expect("example seed");
    f(&mut cfg);
    NetSuiteSim::start(cfg).await.expect("simulator starts")
}

fn provision(sim: &RunningSim, alg: &str) -> M2mSetup {
    let s = generate_m2m_setup(alg).expect("keygen");
    sim.handle()
        .register_m2m(&s.registration())
        .expect("register");
    s
}

fn m2m_config(sim: &RunningSim, s: &M2mSetup) -> NetSuiteConfig {
    let mut c = NetSuiteConfig::new(
        AccountId::parse(sim.account_id()).expect("account"),
        Credentials::M2m {
            client_id: s.client_id.clone(),
            certificate_id: s.certificate_id.clone(),
            private_key_pem: s.private_key_pem.clone(),
            algorithm: SigningAlgorithm::from_str(&s.algorithm).expect("algorithm"),
        },
    );
    c.base_url = Some(sim.base_url().parse().expect("url"));
    c.retry_base_delay = Duration::from_millis(5);
    c.retry_max_delay = Duration::from_millis(100);
    c
}

async fn m2m_client(sim: &RunningSim) -> NetSuiteClient {
    let s = provision(sim, "PS256");
    NetSuiteClient::new(m2m_config(sim, &s)).expect("client")
}

fn eid(s: &str) -> ExternalId {
    ExternalId::parse(s).expect("external id")
}

fn nsid(s: &str) -> NetSuiteInternalId {
    NetSuiteInternalId::parse(s).expect("internal id")
}

/// A JSON number as an exact decimal (its text, not a float).
fn dec(v: &Value) -> Decimal {
    Decimal::from_str(&v.to_string()).unwrap_or_else(|_| panic!("not a decimal: {v}"))
}

fn seeded_item(sim: &RunningSim) -> String {
    sim.handle()
        .get(RecordType::ServiceSaleItem, "eid:stripe_prod_SEEDPRO")
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .expect("seeded item")
}

fn customer(sim: &RunningSim, eid: &str, subsidiary: &str, currency: Option<&str>) -> String {
    let mut body = json!({"externalId": eid, "companyName": format!("Co {eid}"), "subsidiary": {"id": subsidiary}});
    if let Some(c) = currency {
        body["currency"] = json!({"id": c});
    }
    sim.handle()
        .create(RecordType::Customer, body)
        .expect("customer created")
        .to_string()
}

fn invoices_with_eid(sim: &RunningSim, eid: &str) -> usize {
    sim.handle()
        .ids(RecordType::Invoice)
        .iter()
        .filter_map(|id| sim.handle().get(RecordType::Invoice, &id.to_string()))
        .filter(|v| v["externalId"] == eid)
        .count()
}

// ---- M2M tokens -------------------------------------------------------------------------------

#[tokio::test]
async fn token_is_renewed_ahead_of_expiry() {
    let sim = sim_with(|c| c.token_ttl = Duration::from_secs(3)).await;
    let s = provision(&sim, "PS256");
    let mut cfg = m2m_config(&sim, &s);
    // Capped at half the token's life (1.5 s), so the token is renewed 1.5 s after issue.
    cfg.m2m.refresh_before = Duration::from_secs(2);
    let client = NetSuiteClient::new(cfg).expect("client");
    client.check_auth().await.expect("first token");
    assert_eq!(sim.handle().stats().tokens_issued, 1);
    client
        .get_by_external_id("customer", &eid("nobody"))
        .await
        .expect("same token");
    assert_eq!(sim.handle().stats().tokens_issued, 1, "the token is reused");
    tokio::time::sleep(Duration::from_millis(1800)).await;
    client
        .get_by_external_id("customer", &eid("nobody"))
        .await
        .expect("renewed token");
    let stats = sim.handle().stats();
    assert_eq!(stats.tokens_issued, 2, "renewed before it expired");
    assert_eq!(
        stats.rejected_auth, 0,
        "no request carried an expired token"
    );
    assert_eq!(client.request_counts().reauths, 0);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_after_a_401() {
    let sim = sim_with(|_| {}).await;
    let client = m2m_client(&sim).await;
    client.check_auth().await.expect("token");
    assert_eq!(sim.handle().stats().tokens_issued, 1);
    sim.handle().expire_access_tokens();
    let found = client
        .get_by_external_id("customer", &eid("stripe_cus_SEED0001"))
        .await
        .expect("re-authenticated");
    assert!(found.is_some());
    let stats = sim.handle().stats();
    assert_eq!(stats.tokens_issued, 2, "exactly one new token");
    assert_eq!(stats.rejected_auth, 1);
    assert_eq!(client.request_counts().reauths, 1);
}

#[tokio::test]
async fn fifty_tasks_share_one_token_and_one_renewal() {
    let sim = sim_with(|c| c.concurrency_limit = 50).await;
    let s = provision(&sim, "ES256");
    let mut cfg = m2m_config(&sim, &s);
    cfg.concurrency = 50;
    let client = NetSuiteClient::new(cfg).expect("client");
    let run = |client: NetSuiteClient| async move {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let c = client.clone();
                tokio::spawn(async move {
                    c.get_by_external_id("customer", &eid(&format!("c{i}")))
                        .await
                })
            })
            .collect();
        for t in tasks {
            let r = t.await.expect("task");
            assert!(r.expect("lookup").is_none());
        }
    };
    run(client.clone()).await;
    assert_eq!(sim.handle().stats().tokens_issued, 1);
    sim.handle().expire_access_tokens();
    run(client.clone()).await;
    assert_eq!(sim.handle().stats().tokens_issued, 2, "one shared renewal");
    // Every token request succeeded; the only refusals were the revoked token's 401s.
    let audit = sim.handle().login_audit();
    assert!(
        audit
            .iter()
            .all(|a| a.status == "Success" || a.detail == "AccessTokenExpired"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn rs256_is_refused_by_the_client_and_the_simulator() {
    // The client will not even configure it.
    let e = "RS256"
        .parse::<SigningAlgorithm>()
        .expect_err("RS256 refused");
    assert!(e.to_string().contains("PS256"), "says what to use: {e}");

    // A hand-made RS256 assertion with a registered RSA key is refused by the token endpoint.
    let sim = sim_with(|_| {}).await;
    let s = provision(&sim, "PS256");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = json!({"iss": s.client_id, "scope": ["rest_webservices"], "aud": sim.token_url(), "iat": now, "exp": now + 300});
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(s.certificate_id.clone());
    let key =
        EncodingKey::from_rsa_pem(s.private_key_pem.expose_secret().as_bytes()).expect("rsa key");
    let jwt = jsonwebtoken::encode(&h, &claims, &key).expect("signed");
    let resp = reqwest::Client::new()
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt.as_str()),
        ])
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(sim.handle().stats().tokens_issued, 0);
}

#[tokio::test]
async fn tba_works_against_the_simulator() {
    let sim = sim_with(|_| {}).await;
    let mut cfg = NetSuiteConfig::new(
        AccountId::parse(sim.account_id()).expect("account"),
        Credentials::Tba {
            consumer_key: "sim-consumer-key".into(),
            consumer_secret: SecretString::from("sim-consumer-secret".to_string()),
            token_id: "sim-token-id".into(),
            token_secret: SecretString::from("sim-token-secret".to_string()),
        },
    );
    cfg.base_url = Some(sim.base_url().parse().expect("url"));
    let client = NetSuiteClient::new(cfg.clone()).expect("client");
    client.check_auth().await.expect("TBA accepted");
    let rows = client
        .suiteql_all(
            "SELECT id, companyname FROM customer WHERE externalid = ?",
            vec!["stripe_cus_SEED0001".into()],
        )
        .await
        .expect("query");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["companyname"], "Seeded Customer Inc.");
    let (_, outcome) = client
        .create_once(
            "customer",
            &eid("stripe_cus_TBA"),
            json!({"companyName": "TBA Co", "subsidiary": {"id": "1"}}),
        )
        .await
        .expect("create over TBA");
    assert_eq!(outcome, CreateOutcome::Created);

    // A wrong token secret is a login failure that needs a person.
    cfg.credentials = Credentials::Tba {
        consumer_key: "sim-consumer-key".into(),
        consumer_secret: SecretString::from("sim-consumer-secret".to_string()),
        token_id: "sim-token-id".into(),
        token_secret: SecretString::from("wrong".to_string()),
    };
    let bad = NetSuiteClient::new(cfg).expect("client");
    let e = bad
        .get_by_external_id("customer", &eid("stripe_cus_SEED0001"))
        .await
        .expect_err("refused");
    assert_eq!(
        mlc_core::Classify::class(&e),
        mlc_core::ErrorClass::NeedsPerson
    );
    assert!(!e.to_string().contains("wrong"), "no secret in: {e}");
}

// ---- governance -------------------------------------------------------------------------------

#[tokio::test]
async fn forty_creates_through_a_limit_of_five_all_succeed() {
    let sim = sim_with(|c| {
        c.concurrency_limit = 5;
        c.latency = Duration::from_millis(30);
    })
    .await;
    let s = provision(&sim, "PS256");
    let mut cfg = m2m_config(&sim, &s);
    cfg.concurrency = 8;
    cfg.max_retries = 12;
    let client = NetSuiteClient::new(cfg).expect("client");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.create_once(
                    "customer",
                    &eid(&format!("stripe_cus_G{i}")),
                    json!({"companyName": format!("G{i}"), "subsidiary": {"id": "1"}}),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        let (_, outcome) = t.await.expect("task").expect("created");
        assert_eq!(outcome, CreateOutcome::Created);
    }
    // 40 new customers plus the seeded one, each once.
    assert_eq!(sim.handle().count(RecordType::Customer), 41);
    assert!(
        sim.handle().max_in_flight() <= 5,
        "the simulator never held more than its limit"
    );
}

// ---- safe create ------------------------------------------------------------------------------

async fn lost_response_case(kind: FaultKind) {
    let sim = sim_with(|_| {}).await;
    let client = m2m_client(&sim).await;
    let cust = customer(&sim, "stripe_cus_LOST", "1", None);
    let item = seeded_item(&sim);
    sim.handle().push_fault(QueuedFault {
        kind,
        method: Some("POST".into()),
        path_contains: Some("/record/v1/invoice".into()),
    });
    let body = json!({"entity": {"id": cust}, "subsidiary": {"id": "1"}, "item": {"items": [{"item": {"id": item}, "amount": "99.00"}]}});
    let (id, outcome) = client
        .create_once("invoice", &eid("stripe_in_LOST"), body.clone())
        .await
        .expect("resolved by external ID");
    assert_eq!(outcome, CreateOutcome::Created, "{kind:?}");
    assert_eq!(sim.handle().queued_faults(), 0, "the fault fired");
    assert_eq!(invoices_with_eid(&sim, "stripe_in_LOST"), 1, "{kind:?}");
    let stored = sim
        .handle()
        .get(RecordType::Invoice, "eid:stripe_in_LOST")
        .expect("stored");
    assert_eq!(stored["id"], id.as_str());

    // Replayed: found, not created again.
    let (id2, outcome) = client
        .create_once("invoice", &eid("stripe_in_LOST"), body)
        .await
        .expect("replay");
    assert_eq!((id2, outcome), (id, CreateOutcome::AlreadyExisted));
    assert_eq!(invoices_with_eid(&sim, "stripe_in_LOST"), 1);
}

#[tokio::test]
async fn create_once_when_committed_then_error() {
    lost_response_case(FaultKind::CommitThenError).await;
}

#[tokio::test]
async fn create_once_when_committed_then_dropped() {
    lost_response_case(FaultKind::CommitThenDrop).await;
}

// ---- SuiteQL ----------------------------------------------------------------------------------

#[tokio::test]
async fn suiteql_pages_and_keyset_reaches_past_the_row_cap() {
    // The cap lowered from 100,000 to 1,500 so the test stays small.
    let sim = sim_with(|c| c.suiteql_max_rows = 1500).await;
    for i in 0..2100 {
        customer(&sim, &format!("stripe_cus_Q{i}"), "1", None);
    }
    let client = m2m_client(&sim).await;
    let ids = sim.handle().ids(RecordType::Customer);
    assert_eq!(ids.len(), 2101);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let bound = sorted[1199].to_string();

    // 1,200 rows: two pages of offset paging.
    let before = client.request_counts().suiteql;
    let rows = client
        .suiteql_all(
            "SELECT id FROM customer WHERE id <= ? ORDER BY id",
            vec![bound],
        )
        .await
        .expect("paged");
    assert_eq!(rows.len(), 1200);
    assert_eq!(client.request_counts().suiteql - before, 2);

    // 2,101 rows: offset paging stops at the cap; the client refuses to return a cut result.
    let e = client
        .suiteql_all("SELECT id FROM customer ORDER BY id", vec![])
        .await
        .expect_err("cut at the cap");
    assert!(e.to_string().contains("suiteql_keyset"), "{e}");

    // Keyset paging gets every row.
    let rows = client
        .suiteql_keyset(
            "SELECT id FROM customer WHERE id > ? ORDER BY id",
            vec![],
            "id",
        )
        .await
        .expect("keyset");
    assert_eq!(rows.len(), 2101);
    let got: Vec<u64> = rows
        .iter()
        .filter_map(|r| {
            r["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or(r["id"].as_u64())
        })
        .collect();
    assert_eq!(got, sorted);
}

// ---- errors -----------------------------------------------------------------------------------

#[tokio::test]
async fn netsuite_error_shapes_become_typed_errors() {
    let sim = sim_with(|_| {}).await;
    let client = m2m_client(&sim).await;
    let cust = customer(&sim, "stripe_cus_ERR", "1", None);
    let e = client
        .create_once(
            "invoice",
            &eid("stripe_in_ERR"),
            json!({"entity": {"id": cust}, "subsidiary": {"id": "1"}, "item": {"items": [{"item": {"id": "999999"}, "amount": "1.00"}]}}),
        )
        .await
        .expect_err("unknown item");
    match &e {
        NetSuiteError::Rejected {
            status, error_path, ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error_path.as_deref(), Some("item.items[0].item"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(
        mlc_core::Classify::class(&e),
        mlc_core::ErrorClass::Permanent
    );
    assert_eq!(invoices_with_eid(&sim, "stripe_in_ERR"), 0);

    let e = client
        .get("invoice", &nsid("987654"))
        .await
        .expect_err("missing");
    assert!(matches!(e, NetSuiteError::NotFound { .. }), "{e:?}");
    assert_eq!(e.error_code(), Some("NONEXISTENT_ID"));
}

// ---- documents --------------------------------------------------------------------------------

async fn post_and_read_back(sim: &RunningSim, client: &NetSuiteClient, doc: InvoiceDoc) {
    let (id, outcome) = client
        .create_once("invoice", &doc.external_id, doc.to_json())
        .await
        .expect("created");
    assert_eq!(outcome, CreateOutcome::Created);
    let back = client.get("invoice", &id).await.expect("read back");
    assert_eq!(dec(&back["total"]), doc.total(), "{back}");
    let stored = sim
        .handle()
        .get(
            RecordType::Invoice,
            &format!("eid:{}", doc.external_id.as_str()),
        )
        .expect("stored");
    assert_eq!(dec(&stored["total"]), doc.total());
    assert_eq!(stored["currency"]["id"], back["currency"]["id"]);
}

#[tokio::test]
async fn invoice_documents_keep_exact_totals_in_jpy_and_kwd() {
    let sim = sim_with(|_| {}).await;
    let client = m2m_client(&sim).await;
    let item = nsid(&seeded_item(&sim));

    // Japan KK (subsidiary 3) invoices in yen (currency 3, no decimals).
    let jp = customer(&sim, "stripe_cus_JP", "3", Some("3"));
    let jpy = InvoiceDoc {
        external_id: eid("stripe_in_JPY"),
        customer: nsid(&jp),
        subsidiary: Some(nsid("3")),
        currency: Some(nsid("3")),
        tran_date: TranDate::parse("2026-11-01").expect("date"),
        memo: "Stripe in_JPY".into(),
        other_ref_num: Some("ABC-0001".into()),
        lines: vec![
            InvoiceLine {
                item: item.clone(),
                quantity: Decimal::ONE,
                rate: Decimal::from(1500),
                amount: Decimal::from(1500),
                description: Some("Pro".into()),
                period: None,
            },
            InvoiceLine {
                item: item.clone(),
                quantity: Decimal::from(2),
                rate: Decimal::from(333),
                amount: Decimal::from(666),
                description: None,
                period: None,
            },
        ],
        custom_fields: vec![],
    };
    assert_eq!(jpy.total(), Decimal::from(2166));
    post_and_read_back(&sim, &client, jpy).await;

    // Kuwaiti dinar (currency 4, three decimals).
    let kw = customer(&sim, "stripe_cus_KW", "1", Some("4"));
    let kwd = InvoiceDoc {
        external_id: eid("stripe_in_KWD"),
        customer: nsid(&kw),
        subsidiary: Some(nsid("1")),
        currency: Some(nsid("4")),
        tran_date: TranDate::parse("2026-11-01").expect("date"),
        memo: "Stripe in_KWD".into(),
        other_ref_num: None,
        lines: vec![
            InvoiceLine {
                item: item.clone(),
                quantity: Decimal::ONE,
                rate: Decimal::new(12_345, 3),
                amount: Decimal::new(12_345, 3),
                description: None,
                period: None,
            },
            InvoiceLine {
                item,
                quantity: Decimal::from(3),
                rate: Decimal::new(125, 3),
                amount: Decimal::new(375, 3),
                description: None,
                period: None,
            },
        ],
        custom_fields: vec![],
    };
    assert_eq!(kwd.total(), Decimal::new(12_720, 3));
    post_and_read_back(&sim, &client, kwd).await;
}

/// `create_new_once` costs one request for a new record, and stays exactly-once when the record
/// exists already or the response is lost.
#[tokio::test]
async fn create_new_once_is_one_request_and_still_exactly_once() {
    let sim = sim_with(|_| {}).await;
    let client = m2m_client(&sim).await;
    let cust = customer(&sim, "stripe_cus_NEW", "1", None);
    let item = seeded_item(&sim);
    let body = json!({"entity": {"id": cust}, "subsidiary": {"id": "1"}, "item": {"items": [{"item": {"id": item}, "amount": "10.00"}]}});
    let before = client.requests_made();
    let (id, outcome) = client
        .create_new_once("invoice", &eid("stripe_in_NEW1"), body.clone())
        .await
        .expect("created");
    assert_eq!(outcome, CreateOutcome::Created);
    assert_eq!(client.requests_made() - before, 1, "one POST, no lookup");

    // The same external ID again: NetSuite refuses the duplicate, the lookup finds the first.
    let (id2, outcome) = client
        .create_new_once("invoice", &eid("STRIPE_IN_NEW1"), body.clone())
        .await
        .expect("found");
    assert_eq!((id2, outcome), (id, CreateOutcome::AlreadyExisted));
    assert_eq!(invoices_with_eid(&sim, "stripe_in_NEW1"), 1);

    // Committed but the response lost: resolved by external ID, one record.
    sim.handle().push_fault(QueuedFault {
        kind: FaultKind::CommitThenDrop,
        method: Some("POST".into()),
        path_contains: Some("/record/v1/invoice".into()),
    });
    let (_, outcome) = client
        .create_new_once("invoice", &eid("stripe_in_NEW2"), body)
        .await
        .expect("resolved");
    assert_eq!(outcome, CreateOutcome::Created);
    assert_eq!(invoices_with_eid(&sim, "stripe_in_NEW2"), 1);
}

/// An item is created with its subsidiaries in NetSuite's multiselect form, which the simulator
/// (like NetSuite) takes and shows back value by value.
#[tokio::test]
async fn item_documents_send_subsidiary_as_a_multiselect() {
    let sim = sim_with(|_| {}).await;
    let client = m2m_client(&sim).await;
    let doc = ItemDoc {
        external_id: eid("stripe_prod_MULTI"),
        item_id: "Shared plan".into(),
        display_name: "Shared plan".into(),
        description: Some("Sold by two subsidiaries".into()),
        subsidiaries: vec![nsid("1"), nsid("2")],
        income_account: Some(nsid("4")),
        custom_fields: vec![("custitem_stripe_product_id".into(), json!("prod_MULTI"))],
    };
    let before = client.requests_made();
    let (id, outcome) = client
        .create_new_once("serviceSaleItem", &doc.external_id, doc.to_json())
        .await
        .expect("item created");
    assert_eq!(outcome, CreateOutcome::Created);
    assert_eq!(client.requests_made() - before, 1, "one POST");
    let stored = sim
        .handle()
        .get(RecordType::ServiceSaleItem, id.as_str())
        .expect("stored");
    let subs: Vec<&str> = stored["subsidiary"]["items"]
        .as_array()
        .expect("a multiselect")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(subs, ["1", "2"], "{stored}");
    assert_eq!(stored["externalId"], "stripe_prod_MULTI");
    assert_eq!(stored["incomeAccount"]["id"], "4");
    assert_eq!(stored["custitem_stripe_product_id"], "prod_MULTI");

    // Read back through the client as well: NetSuite names each selected subsidiary.
    let back = client.get("serviceSaleItem", &id).await.expect("read back");
    assert_eq!(back["subsidiary"]["items"][1]["refName"], "Europe GmbH");
}
