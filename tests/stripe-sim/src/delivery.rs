//! Webhook delivery: signed like Stripe (`t=<now>,v1=<hmac>[,v0=<fake>]`, re-signed per attempt),
//! retried with backoff, and optionally duplicated, reordered and delayed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, mpsc};

use crate::Shared;
use crate::state::ApiVersion;

/// Counters of webhook delivery, for tests and the demo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// Deliveries queued (each copy of each event for each endpoint counts once).
    pub queued: u64,
    /// Extra copies queued by the duplication knob.
    pub duplicates: u64,
    /// HTTP attempts made (including dropped ones).
    pub attempts: u64,
    /// Attempts answered 2xx.
    pub succeeded: u64,
    /// Attempts that failed (non-2xx, transport error, timeout or dropped).
    pub failed_attempts: u64,
    /// Deliveries that failed every attempt.
    pub gave_up: u64,
}

/// One delivery: an event to an endpoint (one copy).
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub event_id: String,
    pub endpoint_id: String,
}

/// Shared delivery machinery: the queue, in-flight count and stats.
pub(crate) struct Hub {
    tx: mpsc::UnboundedSender<Job>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    inflight: AtomicUsize,
    idle: Notify,
    pub stats: Mutex<DeliveryStats>,
    client: reqwest::Client,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock must not wedge the simulator; the data is plain counters.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub fn new(client: reqwest::Client) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Hub {
            tx,
            rx: Mutex::new(Some(rx)),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            stats: Mutex::new(DeliveryStats::default()),
            client,
        }
    }

    pub fn take_rx(&self) -> Option<mpsc::UnboundedReceiver<Job>> {
        lock(&self.rx).take()
    }

    fn done_one(&self) {
        if self.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Resolves when nothing is queued or in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.inflight.load(Ordering::SeqCst) == 0 {
                return;
            }
            // Re-check periodically too: a notify can race with the load above.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

/// Queues deliveries for newly created events (called after the state lock is released).
pub(crate) fn enqueue(shared: &Arc<Shared>, jobs: Vec<(String, String)>) {
    let faults = shared.faults().delivery;
    let mut rng = shared.fault_rng();
    let hub = &shared.hub;
    for (event_id, endpoint_id) in jobs {
        let mut copies = 1u32;
        if faults.duplicate_probability > 0.0
            && rng.random_bool(faults.duplicate_probability.clamp(0.0, 1.0))
        {
            copies += rng.random_range(1..=faults.max_extra_copies.max(1));
        }
        let mut st = lock(&hub.stats);
        st.queued += u64::from(copies);
        st.duplicates += u64::from(copies - 1);
        drop(st);
        for _ in 0..copies {
            hub.inflight.fetch_add(1, Ordering::SeqCst);
            // The receiver lives as long as the worker; if it is gone the sim is shutting down.
            if hub
                .tx
                .send(Job {
                    event_id: event_id.clone(),
                    endpoint_id: endpoint_id.clone(),
                })
                .is_err()
            {
                hub.done_one();
            }
        }
    }
}

/// The worker: buffers up to `reorder_window` jobs, shuffles, and spawns one task per job.
pub(crate) async fn worker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut buf: Vec<Job> = Vec::new();
    loop {
        let window = shared.faults().delivery.reorder_window.max(1);
        let next = if buf.is_empty() {
            rx.recv().await
        } else {
            // Wait briefly for more jobs to reorder with; flush when the window is full or quiet.
            match tokio::time::timeout(Duration::from_millis(30), rx.recv()).await {
                Ok(j) => j,
                Err(_) => {
                    flush(&shared, &mut buf);
                    continue;
                }
            }
        };
        let Some(job) = next else {
            flush(&shared, &mut buf);
            return;
        };
        buf.push(job);
        if buf.len() >= window {
            flush(&shared, &mut buf);
        }
    }
}

fn flush(shared: &Arc<Shared>, buf: &mut Vec<Job>) {
    if buf.len() > 1 {
        let mut rng = shared.fault_rng();
        buf.shuffle(&mut *rng);
    }
    for job in buf.drain(..) {
        let s = shared.clone();
        tokio::spawn(async move {
            deliver(&s, job).await;
            s.hub.done_one();
        });
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `Stripe-Signature` for a body at time `t`: `t=..,v1=..` with one `v1` per active secret
/// (current first, then secrets still active after a roll), plus a fake `v0` in test mode.
pub fn signature_header(
    secrets: &[&str],
    t: i64,
    body: &[u8],
    test_mode: bool,
    fake_v0: &str,
) -> String {
    let mut h = format!("t={t}");
    for s in secrets {
        h.push_str(",v1=");
        h.push_str(&sign(s, t, body));
    }
    if test_mode {
        h.push_str(",v0=");
        h.push_str(fake_v0);
    }
    h
}

/// Lowercase hex HMAC-SHA256 of `"<t>.<body>"` keyed by the whole `whsec_…` string.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC accepts keys of any length; this branch is unreachable in practice.
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

struct Prepared {
    url: String,
    secrets: Vec<String>,
    body: String,
    livemode: bool,
}

fn prepare(shared: &Shared, job: &Job) -> Option<Prepared> {
    let db = shared.db();
    let ep = db.get_kind("webhook_endpoint", &job.endpoint_id)?;
    if ep["status"] != "enabled" {
        return None;
    }
    let version = ep["api_version"]
        .as_str()
        .and_then(ApiVersion::parse)
        .unwrap_or_else(|| shared.default_version.clone());
    let ev = db.get_kind("event", &job.event_id)?;
    let rendered = crate::events::render_event(&db, ev, Some(&version));
    let body = serde_json::to_string_pretty(&rendered).ok()?;
    Some(Prepared {
        url: ep["url"].as_str()?.to_string(),
        secrets: std::iter::once(ep["_secret"].clone())
            .chain(
                ep["_previous_secrets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        body,
        livemode: ev["livemode"].as_bool().unwrap_or(false),
    })
}

async fn deliver(shared: &Arc<Shared>, job: Job) {
    let faults = shared.faults().delivery;
    let policy = shared.delivery_config;
    if faults.max_delay_ms > 0 {
        let d = shared.fault_rng().random_range(0..=faults.max_delay_ms);
        tokio::time::sleep(Duration::from_millis(d)).await;
    }
    for attempt in 0..policy.max_attempts.max(1) {
        if attempt > 0 {
            let delay = policy.base_delay_ms.saturating_mul(1u64 << attempt.min(20));
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        // Re-read every attempt: a deleted or disabled endpoint stops pending retries.
        let Some(p) = prepare(shared, &job) else {
            return;
        };
        lock(&shared.hub.stats).attempts += 1;
        let dropped = {
            let f = shared.faults().delivery.drop_probability;
            f > 0.0 && shared.fault_rng().random_bool(f.clamp(0.0, 1.0))
        };
        let ok = if dropped {
            false
        } else {
            let t = unix_now();
            let fake_v0 = {
                let mut b = [0u8; 32];
                shared.fault_rng().fill_bytes(&mut b);
                hex::encode(b)
            };
            let secrets: Vec<&str> = p.secrets.iter().map(String::as_str).collect();
            let sig = signature_header(&secrets, t, p.body.as_bytes(), !p.livemode, &fake_v0);
            let res = shared
                .hub
                .client
                .post(&p.url)
                .timeout(policy.timeout())
                .header("Content-Type", "application/json; charset=utf-8")
                .header(
                    "User-Agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                )
                .header("Cache-Control", "no-cache")
                .header("Accept", "*/*; q=0.5, application/xml")
                .header("Stripe-Signature", sig)
                .body(p.body.clone())
                .send()
                .await;
            matches!(res, Ok(r) if r.status().is_success())
        };
        if ok {
            lock(&shared.hub.stats).succeeded += 1;
            crate::events::mark_delivered(shared, &job.event_id, &job.endpoint_id);
            return;
        }
        lock(&shared.hub.stats).failed_attempts += 1;
        tracing::debug!(event = %job.event_id, endpoint = %job.endpoint_id, attempt, "webhook delivery attempt failed");
    }
    lock(&shared.hub.stats).gave_up += 1;
    crate::events::mark_failed(shared, &job.event_id, &job.endpoint_id);
}

/// The JSON `GET /_sim/deliveries` returns.
pub(crate) fn stats_json(shared: &Shared) -> Value {
    let s = lock(&shared.hub.stats).clone();
    json!({"stats": s, "in_flight": shared.hub.inflight.load(Ordering::SeqCst)})
}
