//! `ml-connector ping`: prints the connection checks (`mlc_service::ping`) one line each, each
//! failure with what to fix, and records the outcome on the connection.
//!
//! Without `--tenant`/`--connection` it checks the configured default connection (the
//! configuration, plus the sealed credentials when a master key is given); with them, the named
//! connection's stored settings and sealed credentials. Either way the outcome is recorded on
//! the connection (`connections show` prints it), except that a ping of the default connection
//! never creates a database only to record it.

use mlc_core::{ConnectionId, TenantId};
use mlc_store::sealed::MasterKey;
use mlc_store::{ConnectionScope, ConnectionStore, Store};

use mlc_service::config::Config;
use mlc_service::ping::{Check, Status, checks, outcome_message};
use mlc_service::{connections, credentials};

/// Prints one line per check; fails (non-zero exit) when any check failed.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let results = checks(config).await;
    report(&results)
}

/// Prints the checks' lines; `Err` (non-zero exit) when any failed.
fn report(results: &[Check]) -> anyhow::Result<()> {
    for c in results {
        println!("{}", c.line());
    }
    let failed = results.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", results.len());
    }
    println!("all checks passed");
    Ok(())
}

/// `ml-connector ping [--tenant T] [--connection C]`.
pub async fn run_target(config: Config, target: &connections::Target) -> anyhow::Result<()> {
    let key = MasterKey::from_env()?;
    if target.tenant.is_none() && target.connection.is_none() {
        return run_default(config, key).await;
    }
    let (store, scoped) = connections::open_connection(&config, target).await?;
    let outcome = if is_default(scoped.scope()) {
        // `--tenant default`: the configured connection, as without the flags.
        run_default_in(config, key, store.clone(), scoped).await
    } else {
        run_connection(&store, &scoped, key.as_ref()).await
    };
    store.close().await;
    outcome
}

fn is_default(scope: &ConnectionScope) -> bool {
    *scope.tenant_id() == TenantId::default_id()
        && *scope.connection_id() == ConnectionId::default_id()
}

/// A connection of a tenant: its stored settings and sealed credentials (the GraphQL
/// `connectionTest` runs the same).
async fn run_connection(
    store: &Store,
    scoped: &ConnectionStore,
    key: Option<&MasterKey>,
) -> anyhow::Result<()> {
    println!(
        "connection {}: its stored settings and credentials",
        scoped.scope()
    );
    let results = mlc_service::ping::test_connection(store, scoped, key, None).await?;
    report(&results)
}

/// The default connection with no flags: the configuration, with the sealed credentials when a
/// master key is given (then the store is opened, as `serve` would). Without a key the store is
/// opened only when it already exists, to record the outcome.
async fn run_default(config: Config, key: Option<MasterKey>) -> anyhow::Result<()> {
    if key.is_some() {
        let (store, default) =
            connections::open_connection(&config, &connections::Target::default()).await?;
        let outcome = run_default_in(config, key, store.clone(), default).await;
        store.close().await;
        return outcome;
    }
    let results = checks(&config).await;
    if let Some(store) = existing_store(&config).await {
        if let Ok(Some(scope)) = store
            .connection_scope(&TenantId::default_id(), &ConnectionId::default_id())
            .await
        {
            let (ok, message) = outcome_message(&results);
            record(&store, &scope, ok, &message).await;
        }
        store.close().await;
    }
    report(&results)
}

/// The default connection with its store open.
async fn run_default_in(
    config: Config,
    key: Option<MasterKey>,
    store: Store,
    default: ConnectionStore,
) -> anyhow::Result<()> {
    let config = match key {
        Some(key) => credentials::load_stored_credentials(config, &default, Some(&key)).await?,
        None => config,
    };
    let results = checks(&config).await;
    let (ok, message) = outcome_message(&results);
    record(&store, default.scope(), ok, &message).await;
    report(&results)
}

/// The configured store when it already exists and answers quickly; `None` otherwise (a SQLite
/// file that is not there is not created, an unreachable server does not hold ping up).
async fn existing_store(config: &Config) -> Option<Store> {
    let url = config.database.url.trim();
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path.starts_with(':') || !std::path::Path::new(path).is_file() {
            return None;
        }
    }
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        Store::connect(&config.database.url),
    )
    .await
    {
        Ok(Ok(store)) => Some(store),
        Ok(Err(e)) => {
            tracing::debug!("ping: not recording the outcome: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Records the outcome on the connection; a failure to record does not change ping's verdict
/// (it is said on standard error).
async fn record(store: &Store, scope: &ConnectionScope, ok: bool, message: &str) {
    if let Err(e) = mlc_service::ping::record(store, scope, ok, message).await {
        eprintln!("warning: could not record the outcome on connection {scope}: {e}");
    }
}
