//! Token endpoint (M2M JWT assertions), bearer expiry, and TBA verification.

mod common;

use base64::Engine;
use common::*;
use hmac::{KeyInit, Mac};
use jsonwebtoken::Algorithm;
use mlc_netsuite_sim::M2mRegistration;
use serde_json::json;

#[tokio::test]
async fn issues_a_token_for_ps256_and_es256_assertions() {
    let sim = sim().await;
    for alg in ["PS256", "ES256"] {
        let s = setup(&sim, alg);
        let (status, body) = token_request(&sim, &assertion(&sim, &s)).await;
        assert_eq!(status, 200, "{alg}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(body["access_token"].as_str().is_some_and(|t| t.len() > 20));
        assert!(body.get("refresh_token").is_none());
    }
    assert_eq!(sim.handle().stats().tokens_issued, 2);
}

#[tokio::test]
async fn expires_in_reflects_the_configured_ttl() {
    let sim = sim_with(|c| c.token_ttl = std::time::Duration::from_secs(120)).await;
    let s = setup(&sim, "ES256");
    let (status, body) = token_request(&sim, &assertion(&sim, &s)).await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 120);
}

#[tokio::test]
async fn accepts_scope_as_comma_string_and_the_suitetalk_audience() {
    let sim = sim().await;
    let s = setup(&sim, "PS256");
    let mut c = claims(&sim, &s);
    c["scope"] = json!("restlets,rest_webservices");
    c["aud"] =
        json!("https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token");
    let (status, body) =
        token_request(&sim, &sign(&s, Algorithm::PS256, &s.certificate_id, &c)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn refuses_rs256_and_bad_assertions() {
    let sim = sim().await;
    let s = setup(&sim, "PS256");
    let good = claims(&sim, &s);
    let n = now();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "RS256",
            sign(&s, Algorithm::RS256, &s.certificate_id, &good),
            "invalid_request",
            "UnsupportedAlgo",
        ),
        (
            "unknown kid",
            sign(&s, Algorithm::PS256, "nope", &good),
            "invalid_grant",
            "MissingKey",
        ),
        (
            "wrong iss",
            {
                let mut c = good.clone();
                c["iss"] = json!("someone-else");
                sign(&s, Algorithm::PS256, &s.certificate_id, &c)
            },
            "invalid_grant",
            "InvalidIssuer",
        ),
        (
            "wrong aud",
            {
                let mut c = good.clone();
                c["aud"] = json!(
                    "https://9999999.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
                );
                sign(&s, Algorithm::PS256, &s.certificate_id, &c)
            },
            "invalid_grant",
            "InvalidAudience",
        ),
        (
            "expired",
            {
                let mut c = good.clone();
                c["iat"] = json!(n - 4000);
                c["exp"] = json!(n - 1000);
                sign(&s, Algorithm::PS256, &s.certificate_id, &c)
            },
            "invalid_grant",
            "TokenExpired",
        ),
        (
            "too long",
            {
                let mut c = good.clone();
                c["exp"] = json!(n + 3600);
                sign(&s, Algorithm::PS256, &s.certificate_id, &c)
            },
            "invalid_grant",
            "TokenValidityTooBroad",
        ),
        (
            "future iat",
            {
                let mut c = good.clone();
                c["iat"] = json!(n + 1200);
                c["exp"] = json!(n + 1800);
                sign(&s, Algorithm::PS256, &s.certificate_id, &c)
            },
            "invalid_grant",
            "TokenNotAcceptable",
        ),
        (
            "no scope",
            {
                let mut c = good.clone();
                c["scope"] = json!("restlets");
                sign(&s, Algorithm::PS256, &s.certificate_id, &c)
            },
            "invalid_scope",
            "ScopeMismatched",
        ),
    ];
    for (name, jwt, error, reason) in cases {
        let (status, body) = token_request(&sim, &jwt).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body, json!({"error": error}), "{name}");
        let audit = sim.handle().login_audit();
        let last = audit.last().unwrap();
        assert_eq!(last.status, "Failure", "{name}");
        assert!(last.detail.starts_with(reason), "{name}: {}", last.detail);
    }
    // A signature by another key under a registered kid.
    let other = mlc_netsuite_sim::generate_m2m_setup("PS256").unwrap();
    let forged = sign(&other, Algorithm::PS256, &s.certificate_id, &good);
    let (status, body) = token_request(&sim, &forged).await;
    assert_eq!((status, body), (400, json!({"error": "invalid_grant"})));
    assert_eq!(sim.handle().stats().tokens_issued, 0);
}

#[tokio::test]
async fn refuses_an_expired_certificate_and_a_wrong_grant_type() {
    let sim = sim().await;
    let s = mlc_netsuite_sim::generate_m2m_setup("ES256").unwrap();
    sim.handle()
        .register_m2m(&M2mRegistration {
            expires_at: Some("2020-01-01".into()),
            ..s.registration()
        })
        .unwrap();
    let (status, body) = token_request(&sim, &assertion(&sim, &s)).await;
    assert_eq!((status, body), (400, json!({"error": "invalid_grant"})));

    let resp = reqwest::Client::new()
        .post(sim.token_url())
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "unsupported_grant_type"})
    );
}

#[tokio::test]
async fn expired_or_unknown_bearer_gets_401_invalid_login() {
    let sim = sim().await;
    let api = Api::new(&sim).await;
    assert_eq!(
        api.get("customer", "eid:stripe_cus_SEED0001").await.status,
        200
    );
    sim.handle().expire_access_tokens();
    let r = api.get("customer", "eid:stripe_cus_SEED0001").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            "Bearer realm=\"1234567_SB1\", error=\"invalid_token\", error_description=\"Invalid login attempt.\""
        )
    );
    assert_eq!(r.error_code(), "INVALID_LOGIN");
    assert_eq!(r.body["status"], 401);
    assert_eq!(r.body["title"], "Unauthorized");

    let stranger = Api {
        token: "made-up".into(),
        ..api
    };
    assert_eq!(stranger.get("customer", "1").await.status, 401);
}

const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// An OAuth 1.0a header built here by hand, independent of the simulator's code.
fn tba_header(
    method: &str,
    url: &str,
    query: &[(&str, &str)],
    nonce: &str,
    ts: i64,
    sig_method: &str,
    secret: &str,
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("oauth_consumer_key".into(), "sim-consumer-key".into()),
        ("oauth_nonce".into(), nonce.into()),
        ("oauth_signature_method".into(), sig_method.into()),
        ("oauth_timestamp".into(), ts.to_string()),
        ("oauth_token".into(), "sim-token-id".into()),
        ("oauth_version".into(), "1.0".into()),
    ];
    params.extend(
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut encoded: Vec<(String, String)> = params.iter().map(|(k, v)| (enc(k), enc(v))).collect();
    encoded.sort();
    let norm = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!("{method}&{}&{}", enc(url), enc(&norm));
    let key = format!("{}&{}", enc("sim-consumer-secret"), enc(secret));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(base.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "OAuth realm=\"1234567_SB1\", oauth_consumer_key=\"sim-consumer-key\", oauth_token=\"sim-token-id\", oauth_signature_method=\"{sig_method}\", oauth_timestamp=\"{ts}\", oauth_nonce=\"{nonce}\", oauth_version=\"1.0\", oauth_signature=\"{}\"",
        enc(&sig)
    )
}

#[tokio::test]
async fn tba_hmac_sha256_is_verified_with_nonce_and_timestamp_rules() {
    let sim = sim().await;
    let http = reqwest::Client::new();
    let path = "/services/rest/record/v1/customer";
    let url = format!("{}{path}", sim.base_url());
    let call = |auth: String, q: &'static str| {
        let http = http.clone();
        let url = format!("{url}{q}");
        async move {
            http.get(url)
                .header("Authorization", auth)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let n = now();
    assert_eq!(
        call(
            tba_header(
                "GET",
                &url,
                &[("limit", "5")],
                "nonce-1",
                n,
                "HMAC-SHA256",
                "sim-token-secret"
            ),
            "?limit=5"
        )
        .await,
        200
    );
    // Query parameters are part of the signature.
    assert_eq!(
        call(
            tba_header(
                "GET",
                &url,
                &[],
                "nonce-2",
                n,
                "HMAC-SHA256",
                "sim-token-secret"
            ),
            "?limit=5"
        )
        .await,
        401
    );
    // Reused nonce.
    assert_eq!(
        call(
            tba_header(
                "GET",
                &url,
                &[("limit", "5")],
                "nonce-1",
                n,
                "HMAC-SHA256",
                "sim-token-secret"
            ),
            "?limit=5"
        )
        .await,
        401
    );
    // Wrong token secret.
    assert_eq!(
        call(
            tba_header("GET", &url, &[], "nonce-3", n, "HMAC-SHA256", "wrong"),
            ""
        )
        .await,
        401
    );
    // Stale timestamp.
    assert_eq!(
        call(
            tba_header(
                "GET",
                &url,
                &[],
                "nonce-4",
                n - 3600,
                "HMAC-SHA256",
                "sim-token-secret"
            ),
            ""
        )
        .await,
        401
    );
    // HMAC-SHA1 is no longer supported.
    assert_eq!(
        call(
            tba_header(
                "GET",
                &url,
                &[],
                "nonce-5",
                n,
                "HMAC-SHA1",
                "sim-token-secret"
            ),
            ""
        )
        .await,
        400
    );
    // A fresh nonce works again.
    assert_eq!(
        call(
            tba_header(
                "GET",
                &url,
                &[],
                "nonce-6",
                n,
                "HMAC-SHA256",
                "sim-token-secret"
            ),
            ""
        )
        .await,
        200
    );
    let audit = sim.handle().login_audit();
    assert!(
        audit
            .iter()
            .any(|a| a.method == "tba" && a.detail == "NonceUsed")
    );
    assert!(
        audit
            .iter()
            .any(|a| a.method == "tba" && a.detail == "InvalidTimestamp")
    );
}
