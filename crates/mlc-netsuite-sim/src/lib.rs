//! A strict simulator of NetSuite SuiteTalk REST for tests and local runs.
//!
//! It serves the OAuth 2.0 client-credentials token endpoint (JWT assertions: PS256/384/512,
//! ES256/384; RS256 refused), TBA (OAuth 1.0a HMAC-SHA256), the record service for the records a
//! Stripe connector touches (external IDs unique per record group and case-insensitive, upsert,
//! reference validation, invoices, payments applied to invoices), a SuiteQL subset with
//! NetSuite's paging rules, the account concurrency limit (429), latency, and fault injection
//! (5xx, dropped connections, "committed but the response was lost").
//!
//! Architecture invariant: this crate does not depend on the `mlc-netsuite` client; it is
//! checked against an independent Python client (PyJWT + requests) instead.
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
pub use keygen::{M2mSetup, generate_m2m_setup};
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
