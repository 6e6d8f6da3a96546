//! A small scripted fake of NetSuite's REST API for the client's tests. It is written from the
//! reference notes, not from the client's code: its own percent-encoding and OAuth 1.0a base
//! string, and jsonwebtoken `decode` for assertions.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::Sha256;

/// A generated key pair: PKCS#8 PEM private key for the client, decoding key for the fake.
pub struct TestKey {
    pub pem: String,
    /// SubjectPublicKeyInfo PEM, for independent verifiers (PyJWT).
    pub public_pem: String,
    pub decoding: DecodingKey,
    pub alg: Algorithm,
}

fn pem_wrap(der: &[u8]) -> String {
    pem_wrap_as("PRIVATE KEY", der)
}

fn pem_wrap_as(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// RSA 3072, generated once per test binary (key generation is slow in debug builds).
pub static RSA_KEY: LazyLock<TestKey> = LazyLock::new(|| {
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa3072).unwrap();
    let der: Pkcs8V1Der<'static> = kp.as_der().unwrap();
    let spki: PublicKeyX509Der<'static> = kp.public_key().as_der().unwrap();
    TestKey {
        pem: pem_wrap(der.as_ref()),
        public_pem: pem_wrap_as("PUBLIC KEY", spki.as_ref()),
        decoding: DecodingKey::from_rsa_der(kp.public_key().as_ref()),
        alg: Algorithm::PS256,
    }
});

/// EC P-256.
pub static EC_KEY: LazyLock<TestKey> = LazyLock::new(|| {
    let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .unwrap();
    let doc = kp.to_pkcs8v1().unwrap();
    let spki: PublicKeyX509Der<'static> = kp.public_key().as_der().unwrap();
    TestKey {
        pem: pem_wrap(doc.as_ref()),
        public_pem: pem_wrap_as("PUBLIC KEY", spki.as_ref()),
        decoding: DecodingKey::from_ec_der(kp.public_key().as_ref()),
        alg: Algorithm::ES256,
    }
});

pub const CLIENT_ID: &str = "client-id-123";
pub const CERT_ID: &str = "cert-id-abc";
pub const REALM: &str = "1234567_SB1";
pub const CONSUMER_KEY: &str = "consumer-key";
pub const CONSUMER_SECRET: &str = "consumer secret&1";
pub const TOKEN_ID: &str = "token-id";
pub const TOKEN_SECRET: &str = "token/secret+2";

/// How the fake authenticates API requests.
pub enum Verify {
    M2m { key: &'static TestKey },
    Tba,
}

#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub record_type: String,
    pub id: u64,
    pub external_id: Option<String>,
    pub body: Value,
}

#[derive(Clone, Debug)]
pub struct SuiteQlCall {
    pub limit: u64,
    pub offset: u64,
    pub params: Vec<String>,
    pub prefer: Option<String>,
}

pub struct Fake {
    pub base: String,
    verify: Verify,
    pub expires_in: AtomicU64,
    pub concurrency_limit: AtomicUsize,
    pub delay: Duration,
    pub token_requests: AtomicU64,
    pub token_error: Mutex<Option<(u16, String)>>,
    /// Answer 503 to this many token requests.
    pub token_fail_next: AtomicU32,
    pub assertion_failures: Mutex<Vec<String>>,
    seen_jti: Mutex<HashSet<String>>,
    tokens: Mutex<HashMap<String, Instant>>,
    token_seq: AtomicU64,
    /// Answer 401 invalid_token to this many API requests.
    pub reject_next: AtomicU32,
    pub unauthorized: AtomicU64,
    pub auth_failures: Mutex<Vec<String>>,
    seen_nonces: Mutex<HashSet<String>>,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub throttled: AtomicU64,
    pub api_requests: AtomicU64,
    pub records: Mutex<Vec<StoredRecord>>,
    next_id: AtomicU64,
    /// Store the next create, then answer 500 (committed but response lost).
    pub lose_next_creates: AtomicU32,
    /// Store the next create, then stall past the client's timeout.
    pub hang_next_creates: AtomicU32,
    /// Answer 404 to the next `eid:` GETs even if the record exists (a lookup racing a create).
    pub hide_next_eid_lookups: AtomicU32,
    pub creates_received: AtomicU64,
    pub suiteql_rows: AtomicU64,
    pub suiteql_calls: Mutex<Vec<SuiteQlCall>>,
    /// Idempotency key → async job number.
    pub jobs: Mutex<HashMap<String, u64>>,
}

struct InFlight(Arc<Fake>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct FakeBuilder {
    verify: Verify,
    expires_in: u64,
    concurrency_limit: usize,
    delay: Duration,
}

impl FakeBuilder {
    pub fn m2m(key: &'static TestKey) -> Self {
        FakeBuilder {
            verify: Verify::M2m { key },
            expires_in: 3600,
            concurrency_limit: 1000,
            delay: Duration::from_millis(0),
        }
    }
    pub fn tba() -> Self {
        FakeBuilder {
            verify: Verify::Tba,
            ..Self::m2m(&RSA_KEY_PLACEHOLDER)
        }
    }
    pub fn expires_in(mut self, s: u64) -> Self {
        self.expires_in = s;
        self
    }
    pub fn concurrency_limit(mut self, n: usize) -> Self {
        self.concurrency_limit = n;
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    pub async fn start(self) -> Arc<Fake> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Fake {
            base: format!("http://{addr}/"),
            verify: self.verify,
            expires_in: AtomicU64::new(self.expires_in),
            concurrency_limit: AtomicUsize::new(self.concurrency_limit),
            delay: self.delay,
            token_requests: AtomicU64::new(0),
            token_error: Mutex::new(None),
            token_fail_next: AtomicU32::new(0),
            assertion_failures: Mutex::new(Vec::new()),
            seen_jti: Mutex::new(HashSet::new()),
            tokens: Mutex::new(HashMap::new()),
            token_seq: AtomicU64::new(0),
            reject_next: AtomicU32::new(0),
            unauthorized: AtomicU64::new(0),
            auth_failures: Mutex::new(Vec::new()),
            seen_nonces: Mutex::new(HashSet::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            throttled: AtomicU64::new(0),
            api_requests: AtomicU64::new(0),
            records: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(100),
            lose_next_creates: AtomicU32::new(0),
            hang_next_creates: AtomicU32::new(0),
            hide_next_eid_lookups: AtomicU32::new(0),
            creates_received: AtomicU64::new(0),
            suiteql_rows: AtomicU64::new(0),
            suiteql_calls: Mutex::new(Vec::new()),
            jobs: Mutex::new(HashMap::new()),
        });
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        fake
    }
}

/// TBA fakes never check a key; any static will do.
static RSA_KEY_PLACEHOLDER: LazyLock<TestKey> = LazyLock::new(|| TestKey {
    pem: String::new(),
    public_pem: String::new(),
    decoding: DecodingKey::from_secret(b"unused"),
    alg: Algorithm::HS256,
});

impl Fake {
    pub fn token_url(&self) -> String {
        format!("{}services/rest/auth/oauth2/v1/token", self.base)
    }
    /// Makes every token issued so far invalid (as if NetSuite revoked them).
    pub fn revoke_all_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }
    pub fn records_with_external_id(&self, eid: &str) -> Vec<StoredRecord> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.external_id
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(eid))
            })
            .cloned()
            .collect()
    }
    pub fn insert_record(&self, record_type: &str, external_id: &str, body: Value) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.records.lock().unwrap().push(StoredRecord {
            record_type: record_type.into(),
            id,
            external_id: Some(external_id.into()),
            body,
        });
        id
    }
}

fn envelope(status: u16, title: &str, code: &str, detail: &str, path: Option<&str>) -> Response {
    let mut d = json!({"detail": detail, "o:errorCode": code});
    if let Some(p) = path {
        d["o:errorPath"] = json!(p);
    }
    let body = json!({
        "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15",
        "title": title,
        "status": status,
        "o:errorDetails": [d],
    });
    (
        StatusCode::from_u16(status).unwrap(),
        [(
            "content-type",
            "application/vnd.oracle.resource+json; type=error",
        )],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    if path == "/services/rest/auth/oauth2/v1/token" {
        return token(&fake, &parts.method, &body);
    }
    fake.api_requests.fetch_add(1, Ordering::SeqCst);
    let n = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(fake.clone());
    fake.max_in_flight.fetch_max(n, Ordering::SeqCst);
    if n > fake.concurrency_limit.load(Ordering::SeqCst) {
        fake.throttled.fetch_add(1, Ordering::SeqCst);
        // Oracle's sample: status 429, top-level USER_ERROR, detail code CONCURRENCY_LIMIT_EXCEEDED.
        let body = json!({
            "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
            "title": "Bad Request", "status": 429, "o:errorCode": "USER_ERROR",
            "o:errorDetails": [{"detail": "Concurrent request limit exceeded. Request blocked.",
                                "o:errorCode": "CONCURRENCY_LIMIT_EXCEEDED"}]});
        return (StatusCode::TOO_MANY_REQUESTS, body.to_string()).into_response();
    }
    if !fake.delay.is_zero() {
        tokio::time::sleep(fake.delay).await;
    }
    if let Err(why) = check_auth(&fake, &parts.method, &parts.uri, &parts.headers) {
        fake.unauthorized.fetch_add(1, Ordering::SeqCst);
        fake.auth_failures.lock().unwrap().push(why);
        let mut r = envelope(
            401,
            "Unauthorized",
            "INVALID_LOGIN",
            "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.",
            None,
        );
        r.headers_mut().insert(
            "www-authenticate",
            "Bearer realm=\"1234567\", error=\"invalid_token\", error_description=\"Invalid login attempt.\""
                .parse()
                .unwrap(),
        );
        return r;
    }
    if let Some(rest) = path.strip_prefix("/services/rest/record/v1/") {
        let segs: Vec<&str> = rest.split('/').collect();
        return record(&fake, &parts.method, &parts.headers, &segs, &body).await;
    }
    if path == "/services/rest/query/v1/suiteql" && parts.method == Method::POST {
        return suiteql(&fake, &parts.uri, &parts.headers, &body);
    }
    envelope(404, "Not Found", "INVALID_REQUEST", "no such path", None)
}

fn token(fake: &Fake, method: &Method, body: &[u8]) -> Response {
    fake.token_requests.fetch_add(1, Ordering::SeqCst);
    if fake
        .token_fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response();
    }
    if let Some((status, code)) = fake.token_error.lock().unwrap().clone() {
        return (
            StatusCode::from_u16(status).unwrap(),
            json!({ "error": code }).to_string(),
        )
            .into_response();
    }
    let refuse = |why: String| {
        fake.assertion_failures.lock().unwrap().push(why);
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant"}).to_string(),
        )
            .into_response()
    };
    if method != Method::POST {
        return refuse("not POST".into());
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return refuse(format!("grant_type {:?}", form.get("grant_type")));
    }
    if form.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return refuse("client_assertion_type".into());
    }
    let Some(assertion) = form.get("client_assertion") else {
        return refuse("no client_assertion".into());
    };
    let Verify::M2m { key } = &fake.verify else {
        return refuse("M2M not configured".into());
    };
    let header = match jsonwebtoken::decode_header(assertion) {
        Ok(h) => h,
        Err(e) => return refuse(format!("header: {e}")),
    };
    if header.typ.as_deref() != Some("JWT") {
        return refuse(format!("typ {:?}", header.typ));
    }
    if header.kid.as_deref() != Some(CERT_ID) {
        return refuse(format!("kid {:?}", header.kid));
    }
    if header.alg != key.alg {
        return refuse(format!("alg {:?}", header.alg));
    }
    let mut v = Validation::new(key.alg);
    v.set_audience(&[fake.token_url()]);
    v.set_issuer(&[CLIENT_ID]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims: Value = match jsonwebtoken::decode::<Value>(assertion, &key.decoding, &v) {
        Ok(d) => d.claims,
        Err(e) => return refuse(format!("decode: {e}")),
    };
    let scope_ok = claims["scope"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s == "rest_webservices"));
    if !scope_ok {
        return refuse(format!("scope {}", claims["scope"]));
    }
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap_or(0),
        claims["exp"].as_u64().unwrap_or(0),
    );
    if exp <= iat || exp - iat >= 3600 {
        return refuse(format!("exp - iat = {}", exp as i64 - iat as i64));
    }
    let Some(jti) = claims["jti"].as_str().filter(|j| !j.is_empty()) else {
        return refuse("no jti".into());
    };
    if !fake.seen_jti.lock().unwrap().insert(jti.to_string()) {
        return refuse("jti replayed".into());
    }
    let n = fake.token_seq.fetch_add(1, Ordering::SeqCst);
    let tok = format!("tok-{n}-{}", uuid::Uuid::new_v4().simple());
    let expires_in = fake.expires_in.load(Ordering::SeqCst);
    fake.tokens.lock().unwrap().insert(
        tok.clone(),
        Instant::now() + Duration::from_secs(expires_in),
    );
    (
        StatusCode::OK,
        json!({"access_token": tok, "expires_in": expires_in, "token_type": "Bearer"}).to_string(),
    )
        .into_response()
}

fn check_auth(
    fake: &Fake,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), String> {
    if fake
        .reject_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err("scripted 401".into());
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization")?;
    match fake.verify {
        Verify::M2m { .. } => {
            let tok = auth.strip_prefix("Bearer ").ok_or("not Bearer")?;
            let tokens = fake.tokens.lock().unwrap();
            let exp = tokens.get(tok).ok_or("unknown or revoked token")?;
            if Instant::now() >= *exp {
                return Err("expired token".into());
            }
            Ok(())
        }
        Verify::Tba => check_tba(fake, method, uri, headers, auth),
    }
}

// ---- an independent OAuth 1.0a check --------------------------------------------------------

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dec(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn check_tba(
    fake: &Fake,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    auth: &str,
) -> Result<(), String> {
    let rest = auth.strip_prefix("OAuth ").ok_or("not OAuth")?;
    let mut fields: HashMap<String, String> = HashMap::new();
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').ok_or("bad field")?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or("unquoted")?;
        fields.insert(k.to_string(), dec(v));
    }
    let get = |k: &str| fields.get(k).cloned().ok_or(format!("missing {k}"));
    if get("realm")? != REALM {
        return Err(format!("realm {}", get("realm")?));
    }
    if get("oauth_consumer_key")? != CONSUMER_KEY || get("oauth_token")? != TOKEN_ID {
        return Err("wrong consumer key or token".into());
    }
    if get("oauth_signature_method")? != "HMAC-SHA256" || get("oauth_version")? != "1.0" {
        return Err("method/version".into());
    }
    if !fake.seen_nonces.lock().unwrap().insert(get("oauth_nonce")?) {
        return Err("nonce replayed".into());
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .ok_or("no host")?;
    let mut params: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "realm" && k.as_str() != "oauth_signature")
        .map(|(k, v)| (enc(k), enc(v)))
        .collect();
    if let Some(q) = uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            params.push((enc(&k), enc(&v)));
        }
    }
    params.sort();
    let param_str = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!(
        "{}&{}&{}",
        method.as_str(),
        enc(&format!("http://{host}{}", uri.path())),
        enc(&param_str)
    );
    let key = format!("{}&{}", enc(CONSUMER_SECRET), enc(TOKEN_SECRET));
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(base.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if get("oauth_signature")? != expected {
        return Err("signature mismatch".into());
    }
    Ok(())
}

// ---- records --------------------------------------------------------------------------------

fn record_json(r: &StoredRecord) -> Value {
    let mut v = r.body.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(r.id.to_string()));
        o.insert("links".into(), json!([]));
    }
    v
}

async fn record(
    fake: &Arc<Fake>,
    method: &Method,
    headers: &HeaderMap,
    segs: &[&str],
    body: &[u8],
) -> Response {
    let record_type = segs[0].to_string();
    let key = segs.get(1).copied().filter(|s| !s.is_empty());
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return envelope(
                    400,
                    "Bad Request",
                    "INVALID_REQUEST",
                    "The request could not be understood by the server due to malformed syntax.",
                    None,
                );
            }
        }
    };
    let find = |key: &str| -> Option<StoredRecord> {
        let recs = fake.records.lock().unwrap();
        if let Some(eid) = key.strip_prefix("eid:") {
            recs.iter()
                .find(|r| {
                    r.record_type == record_type
                        && r.external_id
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case(eid))
                })
                .cloned()
        } else {
            let id: u64 = key.parse().ok()?;
            recs.iter()
                .find(|r| r.record_type == record_type && r.id == id)
                .cloned()
        }
    };
    let location = |id: u64| format!("{}services/rest/record/v1/{record_type}/{id}", fake.base);
    match (method.clone(), key) {
        (Method::POST, None) => {
            fake.creates_received.fetch_add(1, Ordering::SeqCst);
            if body["entity"]["id"] == "9999" {
                return envelope(
                    400,
                    "Bad Request",
                    "INVALID_CONTENT",
                    "Error while accessing resource: You have entered an Invalid Field Value 9999 for the following field: entity",
                    Some("entity"),
                );
            }
            // Async + idempotency key: a key seen before answers with the original job.
            let prefer = headers.get("prefer").and_then(|v| v.to_str().ok());
            let idem = headers
                .get("x-netsuite-idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let is_async = prefer == Some("respond-async");
            if is_async {
                let Some(k) = &idem else {
                    return envelope(
                        400,
                        "Bad Request",
                        "INVALID_REQUEST",
                        "test fake wants a key",
                        None,
                    );
                };
                if uuid::Uuid::parse_str(k).is_err() {
                    return envelope(
                        400,
                        "Bad Request",
                        "INVALID_REQUEST",
                        "idempotency key is not a UUID",
                        None,
                    );
                }
                if let Some(job) = fake.jobs.lock().unwrap().get(k) {
                    let mut r = envelope(
                        400,
                        "Conflict",
                        "IDEMPOTENCY_ERROR",
                        "A request with the same idempotency key is already submitted. See the \"Location\" header for a link to the previously submitted job",
                        None,
                    );
                    r.headers_mut().insert(
                        "location",
                        format!("/services/rest/async/v1/job/{job}")
                            .parse()
                            .unwrap(),
                    );
                    return r;
                }
            }
            let eid = body["externalId"].as_str().map(str::to_string);
            if let Some(e) = &eid
                && !fake.records_with_external_id(e).is_empty()
            {
                return envelope(
                    400,
                    "Bad Request",
                    "USER_ERROR",
                    "Error while accessing a resource. This entity already exists.",
                    None,
                );
            }
            let id = fake.next_id.fetch_add(1, Ordering::SeqCst);
            fake.records.lock().unwrap().push(StoredRecord {
                record_type: record_type.clone(),
                id,
                external_id: eid,
                body,
            });
            let job = if is_async {
                let mut jobs = fake.jobs.lock().unwrap();
                let job = jobs.len() as u64 + 1;
                jobs.insert(idem.clone().unwrap_or_default(), job);
                Some(job)
            } else {
                None
            };
            if fake
                .lose_next_creates
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return envelope(
                    500,
                    "Internal Server Error",
                    "UNEXPECTED_ERROR",
                    "An unexpected error occurred. Error ID: jrgbpyylphhishmmlxyt",
                    None,
                );
            }
            if fake
                .hang_next_creates
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            if let Some(job) = job {
                return (
                    StatusCode::ACCEPTED,
                    [
                        ("location", format!("/services/rest/async/v1/job/{job}")),
                        ("preference-applied", "respond-async".to_string()),
                    ],
                    Body::empty(),
                )
                    .into_response();
            }
            (
                StatusCode::NO_CONTENT,
                [("location", location(id))],
                Body::empty(),
            )
                .into_response()
        }
        (Method::GET, Some(k)) => {
            if k.starts_with("eid:")
                && fake
                    .hide_next_eid_lookups
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return envelope(
                    404,
                    "Not Found",
                    "NONEXISTENT_ID",
                    "Record does not exist.",
                    None,
                );
            }
            match find(k) {
                Some(r) => (StatusCode::OK, record_json(&r).to_string()).into_response(),
                None => envelope(
                    404,
                    "Not Found",
                    "NONEXISTENT_ID",
                    "Record does not exist.",
                    None,
                ),
            }
        }
        (Method::PUT, Some(k)) if k.starts_with("eid:") => {
            let eid = &k[4..];
            let existing = find(k);
            let id = match existing {
                Some(r) => {
                    let mut recs = fake.records.lock().unwrap();
                    if let Some(x) = recs.iter_mut().find(|x| x.id == r.id) {
                        x.body = body;
                    }
                    r.id
                }
                None => {
                    let id = fake.next_id.fetch_add(1, Ordering::SeqCst);
                    fake.records.lock().unwrap().push(StoredRecord {
                        record_type: record_type.clone(),
                        id,
                        external_id: Some(eid.to_string()),
                        body,
                    });
                    id
                }
            };
            (
                StatusCode::NO_CONTENT,
                [("location", location(id))],
                Body::empty(),
            )
                .into_response()
        }
        (Method::PATCH, Some(k)) => {
            let Some(r) = find(k) else {
                return envelope(
                    404,
                    "Not Found",
                    "NONEXISTENT_ID",
                    "Record does not exist.",
                    None,
                );
            };
            let mut recs = fake.records.lock().unwrap();
            if let Some(x) = recs.iter_mut().find(|x| x.id == r.id)
                && let (Some(dst), Some(src)) = (x.body.as_object_mut(), body.as_object())
            {
                for (k, v) in src {
                    dst.insert(k.clone(), v.clone());
                }
            }
            (
                StatusCode::NO_CONTENT,
                [("location", location(r.id))],
                Body::empty(),
            )
                .into_response()
        }
        _ => envelope(
            405,
            "Method Not Allowed",
            "INVALID_REQUEST",
            "unsupported",
            None,
        ),
    }
}

// ---- SuiteQL: a synthetic table with ids 1..=suiteql_rows -----------------------------------

fn suiteql(fake: &Fake, uri: &axum::http::Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let q: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let limit: u64 = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(1000);
    let offset: u64 = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let params: Vec<String> = body["params"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    fake.suiteql_calls.lock().unwrap().push(SuiteQlCall {
        limit,
        offset,
        params: params.clone(),
        prefer: prefer.clone(),
    });
    if prefer.as_deref() != Some("transient") {
        return envelope(
            400,
            "Bad Request",
            "INVALID_REQUEST",
            "Prefer: transient is required",
            None,
        );
    }
    if limit == 0 || limit > 1000 || !offset.is_multiple_of(limit) || offset >= 100_000 {
        return envelope(
            400,
            "Bad Request",
            "INVALID_PARAMETER",
            "Invalid limit/offset",
            Some("limit"),
        );
    }
    if !body["q"].is_string() {
        return envelope(400, "Bad Request", "INVALID_REQUEST", "missing q", None);
    }
    // A `?` in the query binds the last param as the keyset lower bound.
    let lower: i64 = if body["q"].as_str().unwrap_or("").contains('?') {
        params
            .last()
            .and_then(|p| p.parse().ok())
            .unwrap_or(i64::MIN)
    } else {
        i64::MIN
    };
    let n = fake.suiteql_rows.load(Ordering::SeqCst) as i64;
    let first = lower.saturating_add(1).max(1);
    let matching = (n - first + 1).max(0) as u64;
    let visible = matching.min(100_000);
    let start = offset.min(visible);
    let end = (offset + limit).min(visible);
    let items: Vec<Value> = (start..end)
        .map(|i| {
            let id = first + i as i64;
            json!({"links": [], "id": id.to_string(), "tranid": format!("INV{id}")})
        })
        .collect();
    let resp = json!({
        "links": [{"rel": "self", "href": format!("{}services/rest/query/v1/suiteql?limit={limit}&offset={offset}", fake.base)}],
        "count": items.len(),
        "hasMore": end < visible,
        "offset": offset,
        "totalResults": visible,
        "items": items,
    });
    (StatusCode::OK, resp.to_string()).into_response()
}
