//! A strict simulator of NetSuite SuiteTalk REST for tests and local runs.
//!
//! It serves the OAuth 2.0 client-credentials token endpoint (JWT assertions: PS256/384/512,
//! ES256/384; RS256 refused), TBA (OAuth 1.0a HMAC-SHA256), the record service for the records a
//! Stripe connector touches (external IDs unique per record group and case-insensitive, upsert,
//! reference validation, invoices, payments and credit memos applied to invoices, customer
//! refunds paying out credit memos, never more than is open, bank deposits of undeposited
//! customer payments with other-deposit and cash-back lines), a SuiteQL subset with
//! NetSuite's paging rules, the account concurrency limit (429), latency, and fault injection
//! (5xx, dropped connections, "committed but the response was lost").
//!
//! Architecture invariant: this crate does not depend on the `mlc-netsuite` client; it is
//! checked against an independent Python client (PyJWT + requests) instead.
//!
//! # Endpoints
//!
//! | Path | |
//! |---|---|
//! | `POST /services/rest/auth/oauth2/v1/token` | M2M client credentials (form) |
//! | `POST/GET /services/rest/record/v1/{type}` | create (204 + `Location`) / list (`limit`, `offset`) |
//! | `GET/PATCH/PUT/DELETE /services/rest/record/v1/{type}/{id or eid:X}` | PUT only with `eid:` (upsert) |
//! | `GET /services/rest/record/v1/{type}/{id}/{sublist}` | an expanded sublist |
//! | `POST /services/rest/record/v1/invoice/{id}/!transform/customerPayment` | pay an invoice |
//! | `POST /services/rest/record/v1/invoice/{id}/!transform/creditMemo` | credit an invoice with its lines, applied to what is open (other transforms: 400) |
//! | `POST /services/rest/query/v1/suiteql` | SuiteQL subset (`Prefer: transient`) |
//! | `GET /services/rest/system/v1/governanceLimits` | the configured concurrency limit |
//! | `GET /_sim/state` | state dump: settings, counters, counts, records, audit trail (secrets redacted) |
//! | `POST /_sim/faults` | `{"probabilities":{…}, "queue":[{"kind","method"?,"path_contains"?}], "clear":bool}` |
//! | `DELETE /_sim/faults` | clear faults |
//! | `POST /_sim/m2m` | register `{"client_id","certificate_id","public_key_pem","expires_at"?}` |
//! | `POST /_sim/m2m/certificates` | upload `{"client_id","certificate_pem"}` as in NetSuite's M2M setup page → `{"certificate_id","expires_at"}` (X.509; RSA 3072/4096 or EC 256/384/521; validity cut to 2 years) |
//! | `GET /_sim/m2m/setup` | the same as an HTML form, for people trying the onboarding wizard |
//! | `POST /_sim/m2m/generate` | `{"algorithm":"PS256"}` (or `ES256`) → a registered key pair, private key included |
//! | `POST /_sim/tba` | register `{"consumer_key","consumer_secret","token_id","token_secret"}` |
//! | `POST /_sim/settings` | `{"concurrency_limit","latency_ms","token_ttl_seconds","expire_access_tokens"}` |
//!
//! `/_sim` endpoints are unauthenticated: the simulator is a local test tool.
//!
//! # Decisions where NetSuite's behaviour is undocumented (see `netsuite.md` §8c)
//!
//! - Token endpoint errors are `400 {"error": …}`: `invalid_request` for malformed requests and
//!   for algorithms outside PS256/384/512, ES256/384 (RS256 included; ES512 too, because
//!   jsonwebtoken cannot verify it), `invalid_scope` without `rest_webservices`, and
//!   `invalid_grant` for every other assertion problem. The precise reason (`MissingKey`,
//!   `SignatureValidation`, `TokenExpired`, …) goes to the Login Audit Trail
//!   ([`SimHandle::login_audit`], `/_sim/state`), as in NetSuite. `exp - iat` must be < 3600
//!   (3600 itself is refused). Access tokens are opaque random strings.
//! - TBA: HMAC-SHA1 or any other method → 400 `INVALID_REQUEST`; bad signature, realm, token,
//!   stale timestamp (beyond `clock_skew`) or reused nonce → 401 `INVALID_LOGIN`. The signed
//!   URL is `http://<Host header><path>` (or `public_base_url` + path).
//! - Duplicate external ID → 400 `USER_ERROR` "Error while accessing a resource. This entity
//!   already exists."; missing mandatory field → 400 `USER_ERROR` "… You must enter a value
//!   for `<field>`." with `o:errorPath`; over-application of a payment → 400 `USER_ERROR`.
//! - References must be `{"id": …}`; `{"externalId": …}` references are refused (unconfirmed
//!   in NetSuite). `location`, `department`, `class`, `terms` are accepted unvalidated.
//! - Multiselects: an item's `subsidiary` (items can be shared by subsidiaries; a customer's
//!   `subsidiary` is a single select) and custom multiselect fields take NetSuite's documented
//!   form `{"items": [{"id": "1"}, {"id": "2"}]}` ("Format of Multiselects" in the REST web
//!   services guide). Whether NetSuite refuses the single-select form `{"id": "1"}` there is not
//!   in our reference (`netsuite.md`), so it is accepted as one value. Each value must exist
//!   (else 400 `INVALID_CONTENT` at `subsidiary.items[i]`); anything else is 400 `INVALID_CONTENT`.
//!   A PATCH replaces the whole selection. GET shows the values inline with `refName`
//!   (NetSuite's GET form is unconfirmed too).
//! - Deposits (`deposit`): `account` (a Bank account) is mandatory, `subsidiary` too on OneWorld;
//!   `currency` defaults to the subsidiary's. `payment.items[]` lines are keyed by the payment's
//!   internal ID (`"id": 379` or `"doc": {"id": "379"}`); only `"deposit": true` lines count (a
//!   missing `deposit` is false, as the line's checkbox defaults to unchecked), and a later line
//!   for the same payment updates the earlier one. A payment is deposited whole
//!   (`paymentAmount`, if sent, must equal it), once, in the deposit's currency and subsidiary,
//!   and only if it posted to undeposited funds (no account, or a Bank account other than the
//!   deposit's); otherwise 400 `INVALID_CONTENT` "Invalid id reference key N: <reason>" (the
//!   wording of NetSuite's SOAP error for that case). `other.items[]` amounts are signed,
//!   `cashback.items[]` amounts positive and subtracted; amounts with more decimals than the
//!   currency are refused. A total ≤ 0 is refused ("The total can not be negative."). `total`
//!   in a request is read-only and ignored silently: verify it by reading the deposit back.
//!   A deposited payment cannot be deleted, nor its amount or currency changed; deleting the
//!   deposit frees it. SuiteQL shows a deposited payment's `status` as `C` (Deposited).
//! - PUT upsert replaces the whole record (sublists included) and answers 204 + `Location`.
//! - GET shows sublists as links unless `expandSubResources=true`, as NetSuite does.
//! - Line amounts are rounded to the currency's `currencyPrecision` (half away from zero);
//!   totals are exact sums. Amounts are printed as JSON numbers (converted only at output).
//! - Unknown body fields: `X-NetSuite-PropertyNameValidation: error` → 400 `INVALID_CONTENT`
//!   with `o:errorPath`; default `warning` → dropped, reported in an `X-NetSuite-Warning`
//!   response header (the real header name is undocumented); `ignore` → dropped silently.
//! - `Prefer: respond-async` on records → 400 (async jobs are not simulated); record
//!   collection `q=` filters → 400 (use SuiteQL).
//! - SuiteQL: NULL columns are omitted from rows; dates are ISO (`2025-01-31`), datetimes
//!   ISO UTC to the second (`2026-11-27T09:11:13Z`), not the account's display format;
//!   `transaction.status` is a letter code (invoice `A` Open / `B` Paid In Full).
//!   `totalResults` is the true count, but paging stops at `suiteql_max_rows` (100,000):
//!   `hasMore` turns false there and a larger `offset` is refused (page by `id > ?`).
//! - Concurrency: the token endpoint is not governed; REST calls beyond the limit get 429
//!   (`USER_ERROR` / `CONCURRENCY_LIMIT_EXCEEDED`, title "Bad Request" as in Oracle's sample),
//!   before authentication. The configured latency is spent while counted as in flight.
//! - Dropped-connection faults close the TCP connection without a response; that needs the
//!   simulator's own accept loop ([`NetSuiteSim::start`]); a bare [`router`] answers 500 instead.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mlc_netsuite_sim::SimError> {
//! use mlc_netsuite_sim::{NetSuiteSim, SimConfig, generate_m2m_setup};
//! let sim = NetSuiteSim::start(SimConfig::example()?).await?;
//! let setup = generate_m2m_setup("PS256")?;
//! sim.handle().register_m2m(&setup.registration())?;
//! println!("{}", sim.base_url());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod auth;
mod error;
mod keygen;
mod model;
mod render;
mod server;
mod state;
mod suiteql;

use std::net::SocketAddr;

pub use error::SimError;
pub use keygen::{M2mSetup, generate_m2m_setup, registration_from_certificate};
pub use model::{MandatoryFields, RecordType};
pub use server::router;
pub use state::{
    FaultKind, FaultProbabilities, LoginAudit, M2mRegistration, QueuedFault, Seed, SimConfig,
    SimHandle, SimStats, TbaRegistration,
};

/// The token endpoint path.
pub const TOKEN_PATH: &str = auth::TOKEN_PATH;

/// Entry point: starts simulators.
#[derive(Debug)]
pub struct NetSuiteSim;

/// A simulator listening on a local address. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSim {
    handle: SimHandle,
    addr: SocketAddr,
    base_url: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl NetSuiteSim {
    /// Binds `config.listen` (default `127.0.0.1:0`), applies the seed and serves in the
    /// background on the current Tokio runtime.
    pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
        let handle = SimHandle::new(&config)?;
        let addr = config
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(SimError::Serve)?;
        let bound = format!("http://{addr}");
        *handle
            .shared
            .bound_base
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(bound.clone());
        let base_url = config.public_base_url.clone().unwrap_or(bound);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server::accept_loop(listener, router(handle.clone()), rx));
        Ok(RunningSim {
            handle,
            addr,
            base_url,
            stop,
            task,
        })
    }
}

impl RunningSim {
    /// `http://127.0.0.1:<port>` (or the configured public base URL), without trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The account ID, e.g. `1234567_SB1`.
    pub fn account_id(&self) -> &str {
        self.handle.account_id()
    }
    /// The token endpoint URL on this simulator (also a valid JWT `aud`).
    pub fn token_url(&self) -> String {
        format!("{}{}", self.base_url, TOKEN_PATH)
    }
    /// The in-process state handle.
    pub fn handle(&self) -> &SimHandle {
        &self.handle
    }
    /// One-step M2M wiring for a newcomer: generates a key pair (`PS256` or `ES256`), writes
    /// the private key to `private_key_path` (mode 0600), registers the public key with this
    /// simulator, and returns the setup with the connector configuration (TOML) to paste.
    pub fn provision_m2m(
        &self,
        algorithm: &str,
        private_key_path: &std::path::Path,
    ) -> Result<(M2mSetup, String), SimError> {
        let setup = generate_m2m_setup(algorithm)?;
        keygen::write_private_key(private_key_path, &setup.private_key_pem)?;
        self.handle.register_m2m(&setup.registration())?;
        let toml = setup.connector_toml(self.account_id(), self.base_url(), private_key_path);
        Ok((setup, toml))
    }

    /// Stops accepting and closes open connections.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

/// Runs a simulator on `listen` until the returned future is dropped (the CLI's
/// `ml-connector sim netsuite --listen …`). Logs the base URL and account with `tracing`.
pub async fn serve(listen: SocketAddr, mut config: SimConfig) -> Result<(), SimError> {
    config.listen = Some(listen);
    let sim = NetSuiteSim::start(config).await?;
    tracing::info!(
        base_url = sim.base_url(),
        account_id = sim.account_id(),
        "NetSuite simulator listening"
    );
    // Park forever; dropping this future drops `sim`, which stops the server.
    std::future::pending::<()>().await;
    drop(sim);
    Ok(())
}
