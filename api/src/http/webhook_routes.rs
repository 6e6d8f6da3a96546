//! Which connection a webhook delivery is for: `POST /webhooks/stripe/{route}` names it by its
//! unguessable route ID; `POST /webhooks/stripe` is the configured default connection.
//!
//! A connection's signing secrets are its sealed `stripe/webhook_secrets` credential (one per
//! line: rotation keeps the old secret beside the new). Resolved connections are cached for a
//! few seconds, so a rotated secret or a new connection is picked up without a restart while a
//! flood of deliveries costs no query each. Unknown routes are not cached (nothing to grow).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlc_core::WebhookRouteId;
use mlc_store::sealed::MasterKey;
use mlc_store::{ConnectionStore, Store};
use mlc_stripe::webhook::WebhookVerifier;
use secrecy::{ExposeSecret as _, SecretString};

use mlc_service::credentials::names;

/// How long a resolved route is trusted.
const TTL: Duration = Duration::from_secs(5);
/// Most routes cached; past it the cache starts afresh (a bound, not an eviction policy: every
/// entry is cheap to resolve again).
const MAX_CACHED: usize = 100_000;

/// Where a delivery goes: the connection's view of the store and its verifier.
#[derive(Clone)]
pub struct RouteTarget {
    pub store: ConnectionStore,
    pub verifier: Arc<WebhookVerifier>,
}

/// What a route resolved to.
pub enum Resolved {
    Found(RouteTarget),
    /// No such route (or a malformed one): answered 404 alike, revealing nothing.
    Unknown,
    /// The connection exists but cannot verify deliveries yet (no signing secret, no master
    /// key): answered 503, so Stripe retries and nothing is lost.
    NotReady(String),
}

pub struct WebhookRoutes {
    store: Store,
    master_key: Option<MasterKey>,
    tolerance_secs: i64,
    default: RouteTarget,
    cache: Mutex<HashMap<WebhookRouteId, (Instant, RouteTarget)>>,
}

impl WebhookRoutes {
    pub fn new(
        store: Store,
        master_key: Option<MasterKey>,
        tolerance_secs: i64,
        default: RouteTarget,
    ) -> Self {
        WebhookRoutes {
            store,
            master_key,
            tolerance_secs,
            default,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The configured default connection (`POST /webhooks/stripe`).
    pub fn default_target(&self) -> &RouteTarget {
        &self.default
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<WebhookRouteId, (Instant, RouteTarget)>> {
        // A poisoned cache holds valid entries; a panic elsewhere must not stop intake.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn resolve(&self, route: &str) -> Result<Resolved, mlc_store::StoreError> {
        let Some(route) = WebhookRouteId::parse(route) else {
            return Ok(Resolved::Unknown);
        };
        if let Some((at, target)) = self.cache().get(&route)
            && at.elapsed() < TTL
        {
            return Ok(Resolved::Found(target.clone()));
        }
        let Some(connection) = self.store.connection_by_route(&route).await? else {
            return Ok(Resolved::Unknown);
        };
        let scope = connection.scope.clone();
        let target = if scope == *self.default.store.scope() {
            self.default.clone()
        } else {
            let store = self.store.scoped(&scope);
            let fix = format!(
                "set it with `ml-connector credentials set stripe-webhook --tenant {} \
                 --connection {}`",
                scope.tenant_id(),
                scope.connection_id()
            );
            let secrets = match store.load_secrets(self.master_key.as_ref()).await {
                Ok(mut all) => all.remove(names::STRIPE_WEBHOOK_SECRETS),
                Err(e) => {
                    tracing::error!(connection = %scope, "cannot open the connection's signing secrets: {e}");
                    return Ok(Resolved::NotReady(format!(
                        "connection {scope} cannot verify deliveries: its signing secrets do not \
                         open ({e}); Stripe retries the delivery"
                    )));
                }
            };
            let Some(secrets) = secrets else {
                return Ok(Resolved::NotReady(format!(
                    "connection {scope} has no Stripe webhook signing secret: {fix}; Stripe \
                     retries the delivery"
                )));
            };
            let secrets: Vec<SecretString> = secrets
                .expose_secret()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| SecretString::from(l.to_string()))
                .collect();
            RouteTarget {
                store,
                verifier: Arc::new(WebhookVerifier::new(secrets, self.tolerance_secs)),
            }
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(route, (Instant::now(), target.clone()));
        Ok(Resolved::Found(target))
    }
}
