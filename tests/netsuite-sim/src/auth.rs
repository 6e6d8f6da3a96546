//! OAuth 2.0 client credentials (M2M) token endpoint, bearer checks, and TBA (OAuth 1.0a
//! HMAC-SHA256) verification.

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use jsonwebtoken::{Algorithm, Validation};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::error::NsError;
use crate::state::Shared;

pub(crate) const TOKEN_PATH: &str = "/services/rest/auth/oauth2/v1/token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (RFC 5849 §3.6).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

fn oauth_error(error: &'static str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// `POST /services/rest/auth/oauth2/v1/token`.
///
/// Refusals (bodies `{"error": …}`, all 400): wrong `grant_type` → `unsupported_grant_type`;
/// missing/malformed assertion, `typ` ≠ JWT, or an algorithm outside PS256/384/512, ES256/384
/// (RS256 included) → `invalid_request`; scope without `rest_webservices` → `invalid_scope`;
/// any other assertion problem (kid, expired certificate, signature, iss, aud, iat/exp) →
/// `invalid_grant`, the one error Oracle documents for this flow. The reason goes to the
/// simulated Login Audit Trail, as in NetSuite.
pub(crate) async fn token(
    shared: &Shared,
    base: &str,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    shared.lock().stats.token_requests += 1;
    let Ok(Form(form)) = form else {
        shared.audit("oauth2", "", false, "MalformedRequest");
        return oauth_error("invalid_request");
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        shared.audit("oauth2", "", false, "UnsupportedGrantType");
        return oauth_error("unsupported_grant_type");
    }
    if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
        shared.audit("oauth2", "", false, "InvalidClientAssertionType");
        return oauth_error("invalid_request");
    }
    let Some(jwt) = form.get("client_assertion").filter(|s| !s.is_empty()) else {
        shared.audit("oauth2", "", false, "MissingClientAssertion");
        return oauth_error("invalid_request");
    };
    match check_assertion(shared, base, jwt) {
        Ok(client) => {
            let bytes: [u8; 32] = rand::random();
            let token = URL_SAFE_NO_PAD.encode(bytes);
            let ttl = {
                let mut g = shared.lock();
                let ttl = g.settings.token_ttl;
                let exp = mlc_core::now_millis()
                    .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
                g.tokens.insert(token.clone(), exp);
                g.stats.tokens_issued += 1;
                ttl
            };
            shared.audit("oauth2", &client, true, "Success");
            axum::Json(json!({
                "access_token": token,
                "expires_in": ttl.as_secs(),
                "token_type": "Bearer",
            }))
            .into_response()
        }
        Err((error, client, reason)) => {
            shared.audit("oauth2", &client, false, &reason);
            oauth_error(error)
        }
    }
}

type AssertionError = (&'static str, String, String);

fn check_assertion(shared: &Shared, base: &str, jwt: &str) -> Result<String, AssertionError> {
    let fail = |e: &'static str, client: &str, reason: &str| -> AssertionError {
        (e, client.to_owned(), reason.to_owned())
    };
    let header: JwtHeader = jwt
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fail("invalid_request", "", "MalformedToken"))?;
    if jwt.split('.').count() != 3 {
        return Err(fail("invalid_request", "", "MalformedToken"));
    }
    if header.typ.as_deref() != Some("JWT") {
        return Err(fail("invalid_request", "", "InvalidTokenType"));
    }
    // ES512 is allowed by NetSuite but jsonwebtoken cannot verify it, so the simulator refuses it.
    let alg = match header.alg.as_str() {
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return Err(fail("invalid_request", "", "UnsupportedAlgo")),
    };
    let Some(kid) = header.kid.filter(|k| !k.is_empty()) else {
        return Err(fail("invalid_grant", "", "MissingKeyId"));
    };
    let now_ms = mlc_core::now_millis();
    let (claims, client_id, skew) = {
        let g = shared.lock();
        let skew = i64::try_from(g.settings.clock_skew.as_secs()).unwrap_or(300);
        let Some(cert) = g.certs.get(&kid) else {
            return Err(fail("invalid_grant", "", "MissingKey"));
        };
        if cert.expires_ms <= now_ms {
            return Err(fail(
                "invalid_grant",
                &cert.client_id,
                "MissingKey (certificate expired)",
            ));
        }
        let rsa_alg = matches!(alg, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512);
        if rsa_alg != cert.rsa {
            return Err(fail(
                "invalid_grant",
                &cert.client_id,
                "SignatureValidation",
            ));
        }
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(jwt, &cert.key, &v)
            .map_err(|_| fail("invalid_grant", &cert.client_id, "SignatureValidation"))?;
        (data.claims, cert.client_id.clone(), skew)
    };
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != client_id {
        return Err(fail("invalid_grant", iss, "InvalidIssuer"));
    }
    let accepted = [
        format!(
            "https://{}.suitetalk.api.netsuite.com{TOKEN_PATH}",
            shared.host_form()
        ),
        format!(
            "https://{}.restlets.api.netsuite.com{TOKEN_PATH}",
            shared.host_form()
        ),
        format!("{}{TOKEN_PATH}", base.trim_end_matches('/')),
    ];
    let aud_ok = |a: &str| accepted.iter().any(|x| x.eq_ignore_ascii_case(a));
    let aud_match = match claims.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !aud_match {
        return Err(fail("invalid_grant", iss, "InvalidAudience"));
    }
    let scopes: Vec<String> = match claims.get("scope") {
        Some(Value::String(s)) => s.split([',', ' ']).map(|x| x.trim().to_owned()).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if !scopes.iter().any(|s| s == "rest_webservices") {
        return Err(fail("invalid_scope", iss, "ScopeMismatched"));
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return Err(fail("invalid_grant", iss, "MissingIatOrExp"));
    };
    let now = now_ms / 1000;
    if exp <= now {
        return Err(fail("invalid_grant", iss, "TokenExpired"));
    }
    if iat > now + skew {
        return Err(fail("invalid_grant", iss, "TokenNotAcceptable"));
    }
    // Oracle: exp "must be less than 60 minutes greater than" iat.
    if exp - iat >= 3600 || exp <= iat {
        return Err(fail("invalid_grant", iss, "TokenValidityTooBroad"));
    }
    Ok(client_id)
}

/// Checks `Authorization` on a REST call: `Bearer <access token>` or `OAuth …` (TBA).
pub(crate) fn authenticate(
    shared: &Shared,
    method: &str,
    base: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), NsError> {
    let realm = shared.realm();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(token) = auth.strip_prefix("Bearer ") {
        let ok = shared
            .lock()
            .tokens
            .get(token.trim())
            .is_some_and(|exp| *exp > mlc_core::now_millis());
        if ok {
            return Ok(());
        }
        shared.audit("oauth2", "", false, "AccessTokenExpired");
        return Err(NsError::invalid_login(&realm, true));
    }
    if let Some(params) = auth.strip_prefix("OAuth ") {
        return verify_tba(shared, method, base, path, query, params);
    }
    shared.audit("oauth2", "", false, "MissingAuthorization");
    Err(NsError::invalid_login(&realm, true))
}

/// Parses `k="v", k2="v2"` (values percent-decoded).
fn parse_oauth_header(s: &str) -> HashMap<String, String> {
    s.split(',')
        .filter_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            let v = v.trim().trim_matches('"');
            Some((
                k.trim().to_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            ))
        })
        .collect()
}

fn verify_tba(
    shared: &Shared,
    method: &str,
    base: &str,
    path: &str,
    query: Option<&str>,
    header_params: &str,
) -> Result<(), NsError> {
    let realm = shared.realm();
    let p = parse_oauth_header(header_params);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let consumer_key = get("oauth_consumer_key");
    let fail = |reason: &str| {
        shared.audit("tba", consumer_key, false, reason);
        NsError::invalid_login(&realm, false)
    };
    match get("oauth_signature_method") {
        "HMAC-SHA256" => {}
        // HMAC-SHA1 support ended (2023.1); upgraded accounts answered "malformed syntax".
        _ => {
            shared.audit("tba", consumer_key, false, "UnsupportedSignatureMethod");
            return Err(NsError::invalid_request());
        }
    }
    if get("realm") != realm {
        return Err(fail("InvalidRealm"));
    }
    if let Some(v) = p.get("oauth_version")
        && v != "1.0"
    {
        return Err(fail("InvalidVersion"));
    }
    let (consumer_secret, token_secret) = {
        let g = shared.lock();
        let Some(cred) = g.tba.get(get("oauth_token")) else {
            drop(g);
            return Err(fail("InvalidToken"));
        };
        if cred.consumer_key != consumer_key {
            drop(g);
            return Err(fail("InvalidConsumerKey"));
        }
        (
            cred.consumer_secret.expose_secret().to_owned(),
            cred.token_secret.expose_secret().to_owned(),
        )
    };
    let skew = i64::try_from(shared.lock().settings.clock_skew.as_secs()).unwrap_or(300);
    let Ok(ts) = get("oauth_timestamp").parse::<i64>() else {
        return Err(fail("InvalidTimestamp"));
    };
    if (mlc_core::now_millis() / 1000 - ts).abs() > skew {
        return Err(fail("InvalidTimestamp"));
    }
    let nonce = get("oauth_nonce");
    if nonce.is_empty() {
        return Err(fail("InvalidNonce"));
    }
    // Base string: METHOD & enc(base URL) & enc(sorted params); realm and signature excluded,
    // query parameters included, the body never signed.
    let mut params: Vec<(String, String)> = p
        .iter()
        .filter(|(k, _)| k.starts_with("oauth_") && k.as_str() != "oauth_signature")
        .map(|(k, v)| (enc(k), enc(v)))
        .collect();
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let d = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        params.push((enc(&d(k)), enc(&d(v))));
    }
    params.sort();
    let norm = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let url = format!("{}{path}", base.trim_end_matches('/').to_lowercase());
    let base_string = format!("{}&{}&{}", method.to_uppercase(), enc(&url), enc(&norm));
    let key = format!("{}&{}", enc(&consumer_secret), enc(&token_secret));
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) else {
        return Err(fail("SignatureValidation"));
    };
    mac.update(base_string.as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    if !bool::from(expected.as_bytes().ct_eq(get("oauth_signature").as_bytes())) {
        return Err(fail("InvalidSignature"));
    }
    {
        let mut g = shared.lock();
        let key = format!("{consumer_key}|{}|{nonce}", get("oauth_token"));
        if !g.nonces.insert(key.clone()) {
            drop(g);
            return Err(fail("NonceUsed"));
        }
        g.nonce_order.push_back(key);
        if g.nonce_order.len() > 100_000
            && let Some(old) = g.nonce_order.pop_front()
        {
            g.nonces.remove(&old);
        }
    }
    shared.audit("tba", consumer_key, true, "Success");
    Ok(())
}
