//! The client against a scripted fake NetSuite (tests/common): auth, governance, safe create,
//! SuiteQL paging and error parsing, as a user of the client sees them.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use mlc_core::{Classify, ErrorClass, ExternalId, IdempotencyKey, NetSuiteInternalId, StripeId};
use mlc_netsuite::{
    AccountId, AuthError, CreateOutcome, Credentials, NetSuiteClient, NetSuiteConfig,
    NetSuiteError, SigningAlgorithm,
};
use secrecy::SecretString;
use serde_json::json;

fn m2m_config(fake: &Fake, key: &TestKey, alg: SigningAlgorithm) -> NetSuiteConfig {
    let mut c = NetSuiteConfig::new(
        AccountId::parse(REALM).unwrap(),
        Credentials::M2m {
            client_id: CLIENT_ID.into(),
            certificate_id: CERT_ID.into(),
            private_key_pem: SecretString::from(key.pem.clone()),
            algorithm: alg,
        },
    );
    c.base_url = Some(fake.base.parse().unwrap());
    c.retry_base_delay = Duration::from_millis(5);
    c.retry_max_delay = Duration::from_millis(50);
    c
}

fn tba_config(fake: &Fake, consumer_secret: &str) -> NetSuiteConfig {
    let mut c = NetSuiteConfig::new(
        AccountId::parse("1234567-sb1").unwrap(),
        Credentials::Tba {
            consumer_key: CONSUMER_KEY.into(),
            consumer_secret: SecretString::from(consumer_secret.to_string()),
            token_id: TOKEN_ID.into(),
            token_secret: SecretString::from(TOKEN_SECRET.to_string()),
        },
    );
    c.base_url = Some(fake.base.parse().unwrap());
    c.retry_base_delay = Duration::from_millis(5);
    c.retry_max_delay = Duration::from_millis(50);
    c
}

fn eid(s: &str) -> ExternalId {
    ExternalId::parse(s).unwrap()
}

fn assertion_failures(fake: &Fake) -> Vec<String> {
    fake.assertion_failures.lock().unwrap().clone()
}

// ---- M2M --------------------------------------------------------------------------------------

#[tokio::test]
async fn ps256_assertion_is_accepted_and_the_token_is_reused() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let id = fake.insert_record("customer", "stripe_cus_1", json!({"companyName": "Acme"}));
    let got = client
        .get(
            "customer",
            &NetSuiteInternalId::parse(&id.to_string()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(got["companyName"], "Acme");
    let again = client
        .get_by_external_id("customer", &eid("stripe_cus_1"))
        .await
        .unwrap();
    assert_eq!(again.unwrap()["id"], id.to_string());

    assert_eq!(assertion_failures(&fake), Vec::<String>::new());
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    let status = client.token_status().unwrap();
    assert!(status.valid);
    assert_eq!(status.token_requests, 1);
    assert!(status.expires_in.unwrap() > Duration::from_secs(3000));
    assert!(status.last_error.is_none());
    assert_eq!(client.requests_made(), 2);
}

#[tokio::test]
async fn es256_assertion_is_accepted() {
    let fake = FakeBuilder::m2m(&EC_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &EC_KEY, SigningAlgorithm::Es256)).unwrap();
    assert!(
        client
            .get_by_external_id("customer", &eid("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(assertion_failures(&fake), Vec::<String>::new());
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_is_renewed_before_it_expires() {
    // A 2 s token: the renewal margin is capped at half its life, so after 1.2 s it is renewed
    // while still valid, and NetSuite never sees an expired token.
    let fake = FakeBuilder::m2m(&RSA_KEY).expires_in(2).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    client
        .get_by_external_id("customer", &eid("a"))
        .await
        .unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client
        .get_by_external_id("customer", &eid("a"))
        .await
        .unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        fake.unauthorized.load(Ordering::SeqCst),
        0,
        "an expired token was sent"
    );
    assert_eq!(client.request_counts().reauths, 0);
}

#[tokio::test]
async fn a_401_re_authenticates_once_and_retries() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    client.check_auth().await.unwrap();
    fake.reject_next.store(1, Ordering::SeqCst);
    let r = client
        .get_by_external_id("customer", &eid("x"))
        .await
        .unwrap();
    assert!(r.is_none());
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(client.request_counts().reauths, 1);

    // Twice in a row: a person must look.
    fake.reject_next.store(2, Ordering::SeqCst);
    let e = client
        .get_by_external_id("customer", &eid("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetSuiteError::Auth(AuthError::InvalidLogin { .. })),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::NeedsPerson);
    assert!(e.to_string().contains("Login Audit Trail"), "{e}");
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn fifty_tasks_share_one_token_and_one_renewal() {
    let fake = FakeBuilder::m2m(&RSA_KEY)
        .delay(Duration::from_millis(5))
        .start()
        .await;
    let mut cfg = m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256);
    cfg.concurrency = 50;
    let client = NetSuiteClient::new(cfg).unwrap();
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
            assert!(t.await.unwrap().unwrap().is_none());
        }
    };
    run(client.clone()).await;
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);

    // NetSuite revokes the token: fifty 401s, still one renewal.
    fake.revoke_all_tokens();
    run(client.clone()).await;
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(assertion_failures(&fake), Vec::<String>::new());
}

#[tokio::test]
async fn token_endpoint_refusal_says_what_to_fix_without_secrets() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let mut cfg = m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256);
    // The fake itself rejects an unknown kid with invalid_grant.
    if let Credentials::M2m { certificate_id, .. } = &mut cfg.credentials {
        *certificate_id = "wrong-cert".into();
    }
    let client = NetSuiteClient::new(cfg).unwrap();
    let e = client
        .get_by_external_id("customer", &eid("x"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::NeedsPerson);
    let msg = e.to_string();
    assert!(
        msg.contains("invalid_grant") && msg.contains("certificate ID"),
        "{msg}"
    );
    assert!(msg.contains("clock") && msg.contains("expired"), "{msg}");
    let key_body: String = RSA_KEY.pem.lines().nth(1).unwrap().to_string();
    assert!(!msg.contains(&key_body));
    assert!(!format!("{e:?}").contains(&key_body));
    assert_eq!(fake.api_requests.load(Ordering::SeqCst), 0);
    let st = client.token_status().unwrap();
    assert!(!st.valid);
    assert!(st.last_error.unwrap().contains("invalid_grant"));

    // A 5xx from the token endpoint is transient.
    *fake.token_error.lock().unwrap() = Some((503, "temporarily_unavailable".into()));
    let e = client
        .get_by_external_id("customer", &eid("x"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
}

#[tokio::test]
async fn a_token_endpoint_outage_is_retried() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    fake.token_fail_next.store(2, Ordering::SeqCst);
    assert!(
        client
            .get_by_external_id("customer", &eid("x"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 3);
    assert_eq!(client.request_counts().retries, 2);
    assert!(client.token_status().unwrap().last_error.is_none());
}

#[tokio::test]
async fn wrong_key_type_for_algorithm_fails_at_construction() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let e = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Es256)).unwrap_err();
    assert_eq!(e.class(), ErrorClass::NeedsPerson);
    assert!(e.to_string().contains("EC"), "{e}");
    assert!(
        "RS256"
            .parse::<SigningAlgorithm>()
            .unwrap_err()
            .to_string()
            .contains("PS256")
    );
}

// ---- TBA --------------------------------------------------------------------------------------

#[tokio::test]
async fn tba_signature_verifies_in_the_fake() {
    let fake = FakeBuilder::tba().start().await;
    fake.suiteql_rows.store(3, Ordering::SeqCst);
    let client = NetSuiteClient::new(tba_config(&fake, CONSUMER_SECRET)).unwrap();
    let id = client
        .create(
            "customer",
            json!({"companyName": "Acme & Sons", "externalId": "stripe_cus_9"}),
        )
        .await
        .unwrap();
    let got = client.get("customer", &id).await.unwrap();
    assert_eq!(got["companyName"], "Acme & Sons");
    // Query parameters are signed too.
    let page = client
        .suiteql("SELECT id FROM transaction", vec![], 2, 0)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        fake.auth_failures.lock().unwrap().clone(),
        Vec::<String>::new()
    );
    assert!(client.token_status().is_none());

    // A wrong secret is refused by the fake, retried once with a fresh signature, then reported.
    let bad = NetSuiteClient::new(tba_config(&fake, "not-the-secret")).unwrap();
    let e = bad.get("customer", &id).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::NeedsPerson);
    let failures = fake.auth_failures.lock().unwrap().clone();
    assert_eq!(failures, vec!["signature mismatch", "signature mismatch"]);
}

// ---- governance -------------------------------------------------------------------------------

async fn hammer(client: &NetSuiteClient, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.get_by_external_id("customer", &eid(&format!("k{i}")))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn configured_concurrency_is_never_exceeded() {
    let fake = FakeBuilder::m2m(&RSA_KEY)
        .concurrency_limit(3)
        .delay(Duration::from_millis(10))
        .start()
        .await;
    let mut cfg = m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256);
    cfg.concurrency = 3;
    let client = NetSuiteClient::new(cfg).unwrap();
    hammer(&client, 30).await;
    assert!(fake.max_in_flight.load(Ordering::SeqCst) <= 3);
    assert_eq!(fake.throttled.load(Ordering::SeqCst), 0);
    assert_eq!(client.requests_made(), 30);
}

#[tokio::test]
async fn on_429_the_client_backs_off_and_lowers_its_limit() {
    // We allow 6, NetSuite (the fake) only 2: 429s happen, every request still succeeds, the
    // client never has more than its own limit in flight, and it lowers that limit.
    let fake = FakeBuilder::m2m(&RSA_KEY)
        .concurrency_limit(2)
        .delay(Duration::from_millis(15))
        .start()
        .await;
    let mut cfg = m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256);
    cfg.concurrency = 6;
    cfg.max_retries = 20;
    let client = NetSuiteClient::new(cfg).unwrap();
    hammer(&client, 40).await;
    let throttled = fake.throttled.load(Ordering::SeqCst);
    assert!(throttled > 0, "the scenario should provoke 429s");
    assert!(fake.max_in_flight.load(Ordering::SeqCst) <= 6);
    let counts = client.request_counts();
    assert_eq!(counts.throttled, throttled);
    assert_eq!(counts.total, 40 + throttled);
    assert!(client.budget().current_limit() < 6);
}

#[tokio::test]
async fn concurrency_limit_error_after_retries_is_transient() {
    let fake = FakeBuilder::m2m(&RSA_KEY)
        .concurrency_limit(0)
        .start()
        .await;
    let mut cfg = m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256);
    cfg.max_retries = 2;
    let client = NetSuiteClient::new(cfg).unwrap();
    let e = client
        .get_by_external_id("customer", &eid("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetSuiteError::ConcurrencyLimit { attempts: 3 }),
        "{e:?}"
    );
    // The job steps back for longer than the transient schedule's first steps.
    assert_eq!(
        e.retry_after(),
        Some(mlc_netsuite::error::CONCURRENCY_LIMIT_PAUSE)
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(client.requests_made(), 3);
    assert_eq!(client.budget().current_limit(), 1);
}

// ---- safe create ------------------------------------------------------------------------------

#[tokio::test]
async fn create_once_survives_a_committed_but_lost_response() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    fake.lose_next_creates.store(1, Ordering::SeqCst);
    let body = json!({"entity": {"id": "107"}, "item": {"items": [{"item": {"id": "55"}, "amount": 99.0}]}});
    let (id, outcome) = client
        .create_once("invoice", &eid("stripe_in_1Abc"), body.clone())
        .await
        .unwrap();
    assert_eq!(outcome, CreateOutcome::Created);
    let stored = fake.records_with_external_id("stripe_in_1Abc");
    assert_eq!(stored.len(), 1, "exactly one invoice");
    assert_eq!(stored[0].id.to_string(), id.as_str());
    assert_eq!(stored[0].body["externalId"], "stripe_in_1Abc");
    assert_eq!(
        fake.creates_received.load(Ordering::SeqCst),
        1,
        "no second POST"
    );

    // Replayed later (e.g. the job ran again): found, not created.
    let (id2, outcome) = client
        .create_once("invoice", &eid("stripe_in_1Abc"), body)
        .await
        .unwrap();
    assert_eq!((id2, outcome), (id, CreateOutcome::AlreadyExisted));
    assert_eq!(fake.records_with_external_id("stripe_in_1Abc").len(), 1);
}

#[tokio::test]
async fn create_once_survives_a_timeout_after_commit() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let mut cfg = m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256);
    cfg.timeout = Duration::from_millis(700);
    let client = NetSuiteClient::new(cfg).unwrap();
    client.check_auth().await.unwrap();
    fake.hang_next_creates.store(1, Ordering::SeqCst);
    let (_, outcome) = client
        .create_once(
            "customer",
            &eid("stripe_cus_T"),
            json!({"companyName": "T"}),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CreateOutcome::Created);
    assert_eq!(fake.records_with_external_id("stripe_cus_T").len(), 1);
    assert_eq!(fake.creates_received.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn plain_create_does_not_retry_an_ambiguous_failure() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    fake.lose_next_creates.store(1, Ordering::SeqCst);
    let e = client
        .create("customer", json!({"companyName": "X", "externalId": "e1"}))
        .await
        .unwrap_err();
    assert!(e.is_ambiguous(), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(e.error_code(), Some("UNEXPECTED_ERROR"));
    assert_eq!(fake.creates_received.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn create_refused_as_duplicate_resolves_to_the_existing_record() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    // Another worker created it between our lookup and our POST.
    let existing = fake.insert_record("invoice", "stripe_in_race", json!({"memo": "theirs"}));
    fake.hide_next_eid_lookups.store(1, Ordering::SeqCst);
    let (id, outcome) = client
        .create_once("invoice", &eid("stripe_in_race"), json!({"memo": "ours"}))
        .await
        .unwrap();
    assert_eq!(outcome, CreateOutcome::AlreadyExisted);
    assert_eq!(id.as_str(), existing.to_string());
    assert_eq!(fake.records_with_external_id("stripe_in_race").len(), 1);
}

#[tokio::test]
async fn create_once_rejects_a_conflicting_external_id_in_the_body() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let e = client
        .create_once("invoice", &eid("a"), json!({"externalId": "b"}))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert_eq!(client.requests_made(), 0);
}

#[tokio::test]
async fn upsert_and_patch() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let e = eid("stripe_cus_U");
    let id1 = client
        .upsert_by_external_id("customer", &e, json!({"companyName": "One"}))
        .await
        .unwrap()
        .unwrap();
    let id2 = client
        .upsert_by_external_id("customer", &e, json!({"companyName": "Two"}))
        .await
        .unwrap();
    assert_eq!(Some(id1.clone()), id2);
    assert_eq!(fake.records_with_external_id("stripe_cus_U").len(), 1);
    client
        .patch("customer", &id1, json!({"email": "a@example.com"}))
        .await
        .unwrap();
    let got = client
        .get_by_external_id("customer", &e)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["companyName"], "Two");
    assert_eq!(got["email"], "a@example.com");
    let counts = client.request_counts();
    assert_eq!((counts.record_writes, counts.record_reads), (3, 1));
}

// ---- errors -----------------------------------------------------------------------------------

#[tokio::test]
async fn netsuite_error_envelopes_become_typed_errors() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let e = client
        .create_once(
            "invoice",
            &eid("stripe_in_bad"),
            json!({"entity": {"id": "9999"}}),
        )
        .await
        .unwrap_err();
    match &e {
        NetSuiteError::Rejected {
            status,
            code,
            detail,
            error_path,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(code, "INVALID_CONTENT");
            assert_eq!(error_path.as_deref(), Some("entity"));
            assert!(detail.contains("Invalid Field Value 9999"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(fake.records_with_external_id("stripe_in_bad").is_empty());

    let missing = NetSuiteInternalId::parse("424242").unwrap();
    let e = client.get("invoice", &missing).await.unwrap_err();
    assert!(matches!(e, NetSuiteError::NotFound { .. }), "{e:?}");
    assert_eq!(e.error_code(), Some("NONEXISTENT_ID"));
    assert!(
        client
            .get_by_external_id("invoice", &eid("none"))
            .await
            .unwrap()
            .is_none()
    );
}

// ---- SuiteQL ----------------------------------------------------------------------------------

#[tokio::test]
async fn suiteql_paging_rules_are_checked_before_sending() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    for (limit, offset) in [(1001, 0), (0, 0), (1000, 10), (100, 100_000)] {
        let e = client
            .suiteql("SELECT id FROM item", vec![], limit, offset)
            .await
            .unwrap_err();
        assert!(
            matches!(e, NetSuiteError::InvalidArgument(_)),
            "{limit}/{offset}: {e:?}"
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
    }
    assert_eq!(client.requests_made(), 0);
}

#[tokio::test]
async fn suiteql_all_pages_until_has_more_is_false() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    fake.suiteql_rows.store(2500, Ordering::SeqCst);
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let rows = client
        .suiteql_all(
            "SELECT id, tranid FROM transaction WHERE type = 'CustInvc'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2500);
    assert_eq!(rows[0]["id"], "1");
    assert_eq!(rows[2499]["tranid"], "INV2500");
    assert!(rows.iter().all(|r| !r.contains_key("links")));
    let calls = fake.suiteql_calls.lock().unwrap().clone();
    let shape: Vec<(u64, u64)> = calls.iter().map(|c| (c.limit, c.offset)).collect();
    assert_eq!(shape, vec![(1000, 0), (1000, 1000), (1000, 2000)]);
    assert!(
        calls
            .iter()
            .all(|c| c.prefer.as_deref() == Some("transient"))
    );

    let page = client
        .suiteql(
            "SELECT id FROM transaction WHERE id > ?",
            vec!["2400".into()],
            50,
            50,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(page.items[0]["id"], "2451");
    assert!(!page.has_more);
    assert_eq!(page.total_results, Some(100));
}

#[tokio::test]
async fn past_100k_rows_offset_paging_stops_and_keyset_paging_gets_everything() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    fake.suiteql_rows.store(100_500, Ordering::SeqCst);
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let Err(e) = client
        .suiteql_all("SELECT id FROM transaction", vec![])
        .await
    else {
        panic!("suiteql_all must refuse a result cut at 100,000 rows");
    };
    assert!(e.to_string().contains("suiteql_keyset"), "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    // totalResults on the first page already tells.
    assert_eq!(client.request_counts().suiteql, 1);

    let rows = client
        .suiteql_keyset(
            "SELECT id FROM transaction WHERE id > ? ORDER BY id",
            vec![],
            "id",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 100_500);
    assert_eq!(rows[100_499]["id"], "100500");
    let calls = fake.suiteql_calls.lock().unwrap().clone();
    let keyset: Vec<&Vec<String>> = calls[1..].iter().map(|c| &c.params).collect();
    assert_eq!(keyset.len(), 101);
    assert_eq!(keyset[0], &vec![i64::MIN.to_string()]);
    assert_eq!(keyset[1], &vec!["1000".to_string()]);
    assert_eq!(keyset[100], &vec!["100000".to_string()]);
    assert!(calls[1..].iter().all(|c| c.offset == 0 && c.limit == 1000));

    // Placeholder count is checked.
    let Err(e) = client
        .suiteql_keyset("SELECT id FROM transaction ORDER BY id", vec![], "id")
        .await
    else {
        panic!("a keyset query without its placeholder must be refused");
    };
    assert_eq!(e.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn shared_clients_share_counters() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let c2 = client.clone();
    let _ = Arc::new(c2.clone());
    c2.get_by_external_id("customer", &eid("z")).await.unwrap();
    assert_eq!(client.requests_made(), 1);
    assert_eq!(client.request_counts().token, 1);
}

// ---- async + idempotency key ------------------------------------------------------------------

#[tokio::test]
async fn async_create_sends_the_idempotency_key_and_survives_a_lost_response() {
    let fake = FakeBuilder::m2m(&RSA_KEY).start().await;
    let client = NetSuiteClient::new(m2m_config(&fake, &RSA_KEY, SigningAlgorithm::Ps256)).unwrap();
    let key = IdempotencyKey::derive(&StripeId::parse_any("evt_1").unwrap(), "invoice");
    // The first response is lost after NetSuite accepted the job; the retry carries the same
    // key, so NetSuite points at the original job instead of creating a second record.
    fake.lose_next_creates.store(1, Ordering::SeqCst);
    let job = client
        .create_async("invoice", json!({"externalId": "stripe_in_A"}), &key)
        .await
        .unwrap();
    assert_eq!(job.location, "/services/rest/async/v1/job/1");
    assert!(job.reused);
    assert_eq!(fake.records_with_external_id("stripe_in_A").len(), 1);
    assert_eq!(fake.creates_received.load(Ordering::SeqCst), 2);
    // The key header is a UUID derived from the key, stable across calls.
    let uuid = mlc_netsuite::netsuite_idempotency_uuid(&key).to_string();
    assert_eq!(fake.jobs.lock().unwrap().get(&uuid), Some(&1));

    let other = IdempotencyKey::derive(&StripeId::parse_any("evt_2").unwrap(), "invoice");
    let job2 = client
        .create_async("invoice", json!({"externalId": "stripe_in_B"}), &other)
        .await
        .unwrap();
    assert_eq!(
        (job2.location.as_str(), job2.reused),
        ("/services/rest/async/v1/job/2", false)
    );
}

#[tokio::test]
async fn unreachable_netsuite_is_transient_and_not_ambiguous() {
    // A port nothing listens on: the request was never sent, so even a create may be retried.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let fake = FakeBuilder::tba().start().await;
    let mut cfg = tba_config(&fake, CONSUMER_SECRET);
    cfg.base_url = Some(format!("http://{addr}/").parse().unwrap());
    cfg.max_retries = 2;
    let client = NetSuiteClient::new(cfg).unwrap();
    let e = client
        .create("customer", json!({"companyName": "X"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            NetSuiteError::Network {
                ambiguous: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(e.to_string().contains("could not connect"), "{e}");
    assert_eq!(client.requests_made(), 3, "first attempt + 2 retries");
}
