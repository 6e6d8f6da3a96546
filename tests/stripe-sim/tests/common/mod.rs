//! Test helpers: a form-posting client and a webhook receiver that verifies signatures with its
//! own HMAC code (independent of the simulator's signer).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{KeyInit, Mac};
use mlc_stripe_sim::{RunningSim, SimConfig, StripeSim, form};
use serde_json::{Value, json};

pub async fn sim() -> RunningSim {
    StripeSim::start(SimConfig::default())
        .await
        .expect("sim starts")
}

pub async fn sim_with(cfg: SimConfig) -> RunningSim {
    StripeSim::start(cfg).await.expect("sim starts")
}

/// A tiny client speaking Stripe's form encoding.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
    pub version: Option<String>,
}

impl Client {
    pub fn new(sim: &RunningSim) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: sim.base_url.clone(),
            key: sim.api_key_str().to_string(),
            version: None,
        }
    }

    pub fn with_version(mut self, v: &str) -> Self {
        self.version = Some(v.to_string());
        self
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        params: Value,
        idem: Option<&str>,
    ) -> (u16, Value, HeaderMap) {
        let body = form::encode(&params);
        let url = if method == reqwest::Method::POST || body.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{body}", self.base)
        };
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.key);
        if let Some(v) = &self.version {
            req = req.header("Stripe-Version", v);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        if method == reqwest::Method::POST {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let v: Value = serde_json::from_str(&text).unwrap_or(json!({"raw": text}));
        (status, v, headers)
    }

    pub async fn post(&self, path: &str, params: Value) -> Value {
        let (s, v, _) = self.send(reqwest::Method::POST, path, params, None).await;
        assert_eq!(s, 200, "POST {path} failed: {v}");
        v
    }

    pub async fn get(&self, path: &str, params: Value) -> Value {
        let (s, v, _) = self.send(reqwest::Method::GET, path, params, None).await;
        assert_eq!(s, 200, "GET {path} failed: {v}");
        v
    }
}

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Received>>>,
    /// Number of initial requests to answer 500 (to exercise retries).
    pub fail_first: Arc<Mutex<u32>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    {
        let mut f = r.fail_first.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    r.got.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
    });
    StatusCode::OK
}

/// Starts a receiver on 127.0.0.1:0; returns its URL.
pub async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), r)
}

/// Verifies `Stripe-Signature` like the official libraries: any v1 must match
/// hex(HMAC-SHA256(secret, "<t>.<body>")); v0 is ignored; |now - t| within 300 s.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> Result<i64, String> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.split_once('=').ok_or("malformed header")?;
        match k {
            "t" => t = Some(v.parse::<i64>().map_err(|_| "bad t")?),
            "v1" => v1.push(v.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or("no timestamp")?;
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    if !v1.iter().any(|s| s == &expected) {
        return Err("no matching v1 signature".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if now - t > 300 {
        return Err("timestamp outside tolerance".into());
    }
    Ok(t)
}
