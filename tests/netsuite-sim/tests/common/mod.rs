//! Test helpers: a simulator with the example seed, hand-built JWT assertions, a bearer client.
#![allow(dead_code)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mlc_netsuite_sim::{M2mSetup, NetSuiteSim, RunningSim, SimConfig, generate_m2m_setup};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

pub fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

pub async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut cfg = SimConfig::example().expect("example seed");
    f(&mut cfg);
    NetSuiteSim::start(cfg).await.expect("sim starts")
}

pub async fn sim() -> RunningSim {
    sim_with(|_| {}).await
}

pub fn setup(sim: &RunningSim, alg: &str) -> M2mSetup {
    let s = generate_m2m_setup(alg).expect("keygen");
    sim.handle()
        .register_m2m(&s.registration())
        .expect("register");
    s
}

/// Signs an assertion with explicit header algorithm and claims.
pub fn sign(s: &M2mSetup, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let pem = s.private_key_pem.expose_secret().as_bytes();
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    };
    let mut h = Header::new(alg);
    h.typ = Some("JWT".into());
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

pub fn claims(sim: &RunningSim, s: &M2mSetup) -> Value {
    let n = now();
    json!({
        "iss": s.client_id,
        "scope": ["restlets", "rest_webservices"],
        "aud": sim.token_url(),
        "iat": n,
        "exp": n + 3000,
    })
}

pub fn alg_of(s: &M2mSetup) -> Algorithm {
    if s.algorithm == "ES256" {
        Algorithm::ES256
    } else {
        Algorithm::PS256
    }
}

pub fn assertion(sim: &RunningSim, s: &M2mSetup) -> String {
    sign(s, alg_of(s), &s.certificate_id, &claims(sim, s))
}

/// POSTs the assertion; returns (status, body).
pub async fn token_request(sim: &RunningSim, assertion: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn token(sim: &RunningSim) -> String {
    let s = setup(sim, "PS256");
    let (status, body) = token_request(sim, &assertion(sim, &s)).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A tiny bearer client for the tests.
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
    pub fn location_id(&self) -> String {
        self.header("location")
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    }
    pub fn error_code(&self) -> &str {
        self.body["o:errorDetails"][0]["o:errorCode"]
            .as_str()
            .unwrap_or("")
    }
    pub fn error_detail(&self) -> &str {
        self.body["o:errorDetails"][0]["detail"]
            .as_str()
            .unwrap_or("")
    }
    pub fn error_path(&self) -> &str {
        self.body["o:errorDetails"][0]["o:errorPath"]
            .as_str()
            .unwrap_or("")
    }
}

impl Api {
    pub async fn new(sim: &RunningSim) -> Api {
        Api {
            base: sim.base_url().to_owned(),
            token: token(sim).await,
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        Resp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn post(&self, rtype: &str, body: Value) -> Resp {
        self.send(
            reqwest::Method::POST,
            &format!("/services/rest/record/v1/{rtype}"),
            Some(body),
            &[],
        )
        .await
    }

    pub async fn get(&self, rtype: &str, key: &str) -> Resp {
        self.send(
            reqwest::Method::GET,
            &format!("/services/rest/record/v1/{rtype}/{key}?expandSubResources=true"),
            None,
            &[],
        )
        .await
    }

    pub async fn suiteql(&self, q: &str, params: Value, query: &str) -> Resp {
        self.send(
            reqwest::Method::POST,
            &format!("/services/rest/query/v1/suiteql{query}"),
            Some(json!({"q": q, "params": params})),
            &[("Prefer", "transient")],
        )
        .await
    }

    /// Creates a customer in subsidiary 1 and returns its internal ID.
    pub async fn customer(&self, eid: &str) -> String {
        let r = self
            .post("customer", json!({"externalId": eid, "companyName": format!("Co {eid}"), "subsidiary": {"id": "1"}}))
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        r.location_id()
    }

    /// The seeded "Pro plan" service item's internal ID.
    pub async fn seeded_item(&self) -> String {
        let r = self.get("serviceSaleItem", "eid:stripe_prod_SEEDPRO").await;
        assert_eq!(r.status, 200);
        r.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn invoice(&self, eid: &str, customer: &str, item: &str, amount: &str) -> String {
        let r = self
            .post(
                "invoice",
                json!({"externalId": eid, "entity": {"id": customer}, "subsidiary": {"id": "1"},
                       "item": {"items": [{"item": {"id": item}, "amount": amount}]}}),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        r.location_id()
    }
}
