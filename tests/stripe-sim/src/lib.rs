//! mlc-stripe-sim: a stateful simulator of the Stripe API subset ml-connector uses, with
//! webhook delivery signed exactly as Stripe signs it, adversarial delivery and API faults, and a
//! scenario driver that plays a SaaS month through the HTTP API.
//!
//! Start it in-process with [`StripeSim::start`], embed it with [`router`], or run it as a
//! server with [`serve`]. It shares no code with the `mlc-stripe` client on purpose.
//!
//! Stripe endpoints (form-encoded bodies, Bearer or Basic auth, `Stripe-Version`,
//! `Idempotency-Key`, `expand[]`, list pagination):
//! `GET /v1/account`; customers, products (CRUD + list), prices (create/retrieve/update/list);
//! `GET /v1/payment_methods/{id}` (test tokens `pm_card_visa`, `pm_card_mastercard`,
//! `pm_card_amex`, `pm_card_chargeDeclined`, `pm_card_chargeDeclinedInsufficientFunds`,
//! `pm_card_chargeCustomerFail`); payment intents (create with `confirm`, confirm, cancel,
//! update, list); charges (retrieve/update/list, `/refunds`); refunds; balance transactions;
//! tax rates; coupons; invoice items; invoices (create, update, delete draft, finalize, pay,
//! void, mark_uncollectible, `/lines`); invoice payments; credit notes (create, preview,
//! retrieve, update, list by `invoice`/`customer`, `/lines`, void) and the customer balance
//! transactions they leave (`/v1/customers/{id}/balance_transactions`); subscriptions (create,
//! list, cancel);
//! checkout sessions (create mode=payment, retrieve, list by `payment_intent`, `/line_items`,
//! expire); events (list with `type`/`types[]`/`created`/`delivery_success`, retrieve);
//! webhook endpoints (create returns the secret once, list, retrieve, update, delete);
//! disputes (retrieve, list by `charge`/`payment_intent`/`created`, update evidence and metadata,
//! close); payouts (create a manual one from the available balance, standard or instant;
//! retrieve, list by `status`/`arrival_date`/`created`/`destination`, update metadata, cancel a
//! pending manual one); `GET /v1/balance`; `GET /v1/balance_transactions?payout=po_…` (what an
//! automatic payout covered, its own `payout` transaction included).
//!
//! Sim-only endpoints: `POST /_sim/checkout/sessions/{id}/complete` (the customer pays on the
//! hosted page; `payment_method` defaults to `pm_card_visa`), `POST /_sim/subscriptions/{id}/renew`
//! (bill the next period now), `POST /_sim/webhook_endpoints/{id}/roll` (new secret; old one stays
//! active unless `expire_previous=true`), `POST /_sim/charges/{id}/dispute` (the cardholder's
//! bank opens a dispute: `reason`, `amount`, `inquiry`), `POST /_sim/disputes/{id}/resolve`
//! (`outcome` `won`|`lost`, `fee_returned`), `POST /_sim/refunds/{id}/fail` (the card refund
//! fails: `lost_or_stolen_card`), `POST /_sim/refunds/{id}/succeed` (a pending refund lands; a
//! refund is created pending with `metadata[sim_status]=pending`), `POST /_sim/payouts/run`
//! (Stripe's automatic payouts: per settlement currency, everything not yet paid out;
//! `currency`, `arrival_in_days` default 2), `POST /_sim/payouts/{id}/paid` (paid, then an
//! automatic payout's reconciliation completes), `POST /_sim/payouts/{id}/fail`
//! (`failure_code`, default `account_closed`) — these need the API key and
//! take a form or a JSON body; and without auth:
//! `GET|POST /_sim/faults` (JSON `{"api":{...},"delivery":{...}}`, partial updates),
//! `GET /_sim/deliveries`, `POST /_sim/deliveries/wait_idle`, `POST /_sim/clock/advance`
//! (`{"seconds": N}`), `GET|POST /_sim/dialect` (a [`Dialect`]: the whole value is replaced),
//! `POST /_sim/restricted_keys` (`{"permissions": {"charges": "read", "webhook_endpoints":
//! "write", …}}` → `{"key": "rk_test_…"}`: a request outside its permissions gets Stripe's 403).
//! The resource is a path's first segment (`checkout_sessions` for `/v1/checkout/sessions`).
//!
//! The API key and webhook signing secrets are random per start unless
//! [`SimConfig::secret_seed`] fixes them.
#![recursion_limit = "512"]

mod api;
mod billing;
mod checkout;
pub mod config;
mod credit_notes;
mod delivery;
mod disputes;
pub mod error;
mod events;
pub mod form;
mod params;
mod payments;
mod payouts;
mod render;
pub mod scenario;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use mlc_core::Currency;
use rand::SeedableRng;
use rand::rngs::StdRng;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;

pub use config::{ApiFaults, DeliveryConfig, DeliveryFaults, Dialect, Faults, SimConfig};
pub use delivery::{DeliveryStats, sign as sign_payload, signature_header};
pub use error::{ApiError, SimError};
pub use scenario::{CatalogHook, ScenarioConfig, ScenarioReport, run_scenario};
pub use state::ApiVersion;

/// State shared by the HTTP handlers, the delivery worker and the Rust handle.
pub(crate) struct Shared {
    db: Mutex<state::Db>,
    keys: Vec<SecretString>,
    /// Restricted keys (`rk_…`) made through `POST /_sim/restricted_keys`: each resource it may
    /// read (`"read"`) or also write (`"write"`); a resource not listed is refused.
    restricted:
        Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
    pub(crate) default_version: ApiVersion,
    pub(crate) account_currency: Currency,
    pub(crate) delivery_config: DeliveryConfig,
    faults: Mutex<Faults>,
    fault_rng: Mutex<StdRng>,
    pub(crate) hub: delivery::Hub,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state is left consistent between statements; a panicking handler must not wedge the sim.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn db(&self) -> MutexGuard<'_, state::Db> {
        relock(&self.db)
    }
    pub(crate) fn faults(&self) -> Faults {
        *relock(&self.faults)
    }
    pub(crate) fn fault_rng(&self) -> MutexGuard<'_, StdRng> {
        relock(&self.fault_rng)
    }
    pub(crate) fn key_ok(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k.expose_secret() == key)
            || relock(&self.restricted).contains_key(key)
    }

    /// A new restricted key with these permissions (resource → `read` or `write`).
    pub(crate) fn add_restricted_key(
        &self,
        permissions: std::collections::BTreeMap<String, String>,
    ) -> String {
        let live = self
            .keys
            .first()
            .is_some_and(|k| k.expose_secret().starts_with("sk_live_"));
        let key = self
            .db()
            .new_secret(if live { "rk_live" } else { "rk_test" });
        relock(&self.restricted).insert(key.clone(), permissions);
        key
    }

    /// For a restricted key, the permission a request lacks (`None`: allowed). The resource is
    /// the path's first segment (`/v1/checkout/sessions` is `checkout_sessions`); reading needs
    /// `read` or `write`, anything else `write`.
    pub(crate) fn missing_permission(&self, key: &str, method: &str, path: &str) -> Option<String> {
        let restricted = relock(&self.restricted);
        let permissions = restricted.get(key)?;
        let mut segments = path.trim_start_matches("/v1/").split('/');
        let resource = match segments.next().unwrap_or_default() {
            "checkout" => "checkout_sessions".to_string(),
            other => other.to_string(),
        };
        let reading = method == "GET";
        let granted = permissions.get(&resource).map(String::as_str);
        let ok = match granted {
            Some("write") => true,
            Some("read") => reading,
            _ => false,
        };
        (!ok).then(|| format!("rak_{resource}_{}", if reading { "read" } else { "write" }))
    }
}

/// A handle to a simulator's state: fault knobs, delivery stats, idle waiting. Cheap to clone.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    worker: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Builds the state and spawns the webhook delivery worker (needs a Tokio runtime).
    pub fn new(config: &SimConfig) -> Result<(SimHandle, SecretString), SimError> {
        let mut db = state::Db::new(config.seed, config.secret_seed, config.dialect.clone());
        let mut keys = config.api_keys.clone();
        if keys.is_empty() {
            let k = db.new_secret("sk_test");
            keys.push(SecretString::from(k));
        }
        let first = keys[0].clone();
        let default_version = ApiVersion::parse(&config.default_api_version).ok_or_else(|| {
            SimError::Client(format!(
                "invalid default API version {}",
                config.default_api_version
            ))
        })?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SimError::Client(e.to_string()))?;
        let shared = Arc::new(Shared {
            db: Mutex::new(db),
            keys,
            restricted: Mutex::new(Default::default()),
            default_version,
            account_currency: config.account_currency,
            delivery_config: config.delivery,
            faults: Mutex::new(Faults {
                api: config.api_faults,
                delivery: config.delivery_faults,
            }),
            fault_rng: Mutex::new(StdRng::seed_from_u64(config.seed ^ 0x5eed_f00d)),
            hub: delivery::Hub::new(client),
        });
        let worker = shared
            .hub
            .take_rx()
            .map(|rx| tokio::spawn(delivery::worker(shared.clone(), rx)));
        Ok((
            SimHandle {
                shared,
                worker: Arc::new(Mutex::new(worker)),
            },
            first,
        ))
    }

    /// Current fault settings.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the API fault knobs.
    pub fn set_api_faults(&self, f: ApiFaults) {
        relock(&self.shared.faults).api = f;
    }

    /// Replaces the webhook delivery fault knobs (applies to events created afterwards).
    pub fn set_delivery_faults(&self, f: DeliveryFaults) {
        relock(&self.shared.faults).delivery = f;
    }

    /// Waits until no webhook delivery is queued, delayed or retrying.
    pub async fn wait_for_deliveries_idle(&self) {
        self.shared.hub.wait_idle().await;
    }

    /// Delivery counters.
    pub fn delivery_stats(&self) -> DeliveryStats {
        relock(&self.shared.hub.stats).clone()
    }

    /// Types of all events created so far, oldest first (for tests).
    pub fn event_types(&self) -> Vec<String> {
        let db = self.shared.db();
        let mut ids = db.ids_of("event");
        ids.reverse();
        ids.iter()
            .filter_map(|id| db.get_kind("event", id))
            .filter_map(|e| e["type"].as_str().map(str::to_string))
            .collect()
    }

    /// Replaces the dialect knobs (older API shapes, refused expands, missing endpoints).
    pub fn set_dialect(&self, d: Dialect) {
        self.shared.db().dialect = d;
    }

    /// Moves the simulated clock forward (affects `created` and periods of new objects).
    pub fn advance_clock(&self, seconds: i64) {
        self.shared.db().clock_offset += seconds.max(0);
    }

    fn stop_worker(&self) {
        if let Some(h) = relock(&self.worker).take() {
            h.abort();
        }
    }
}

/// The axum router serving `/v1/...` and the sim-only `/_sim/...` endpoints.
pub fn router(handle: &SimHandle) -> axum::Router {
    api::router(handle.shared.clone())
}

/// Entry point for starting a simulator.
#[derive(Debug)]
pub struct StripeSim;

/// A running simulator bound to a local port.
pub struct RunningSim {
    /// `http://127.0.0.1:<port>` (no trailing slash; API paths start with `/v1`).
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// A secret key the simulator accepts (`sk_test_…`).
    pub api_key: SecretString,
    /// Handle to the state, faults and delivery stats.
    pub handle: SimHandle,
    server: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for RunningSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSim")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl StripeSim {
    /// Binds `config.listen` (default 127.0.0.1:0) and serves in the background.
    pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
        let addr = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (handle, api_key) = SimHandle::new(&config)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let app = router(&handle);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let res = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "stripe simulator server stopped");
            }
        });
        Ok(RunningSim {
            base_url: format!("http://{addr}"),
            addr,
            api_key,
            handle,
            server,
            stop: Some(tx),
        })
    }
}

impl RunningSim {
    /// The key, exposed (for building clients in tests and the demo).
    pub fn api_key_str(&self) -> &str {
        self.api_key.expose_secret()
    }

    /// Stops serving and stops webhook delivery.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.stop_worker();
        let _ = (&mut self.server).await;
    }
}

/// Runs the simulator as a server until Ctrl-C (for `ml-connector sim stripe --listen ...`).
/// Prints the base URL and the test key to stdout so the user can point a client at it.
pub async fn serve(listen: SocketAddr, mut config: SimConfig) -> Result<(), SimError> {
    config.listen = Some(listen);
    let sim = StripeSim::start(config).await?;
    println!("Stripe simulator listening on {}", sim.base_url);
    println!("API key: {}", sim.api_key_str());
    println!(
        "Sim-only endpoints: POST /_sim/faults, GET /_sim/deliveries, POST /_sim/checkout/sessions/{{id}}/complete"
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Ok(())
}

/// Starts a simulator on `listen`, runs the scenario against it over HTTP, prints the report as
/// JSON, and keeps serving until Ctrl-C when `keep_serving` is set.
pub async fn scenario_cli(
    listen: SocketAddr,
    config: SimConfig,
    scenario: ScenarioConfig,
    keep_serving: bool,
) -> Result<ScenarioReport, SimError> {
    let mut config = config;
    config.listen = Some(listen);
    let sim = StripeSim::start(config).await?;
    let report = run_scenario(&sim.base_url, sim.api_key_str(), scenario).await?;
    match serde_json::to_string_pretty(&report) {
        Ok(s) => println!("{s}"),
        Err(e) => tracing::warn!(error = %e, "cannot print the scenario report"),
    }
    if keep_serving {
        println!(
            "Stripe simulator listening on {} (key {})",
            sim.base_url,
            sim.api_key_str()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    sim.shutdown().await;
    Ok(report)
}
