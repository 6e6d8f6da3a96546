//! Credentials sealed in the store per connection (see `mlc_store::sealed`): the names each
//! secret is stored under, and how the stored secrets fill what a configuration leaves empty.

use mlc_store::ConnectionStore;
use mlc_store::sealed::MasterKey;

use crate::config::Config;

/// Names under which the connector stores each secret (read back by
/// [`load_stored_credentials`]; written by `ml-connector credentials set`).
pub mod names {
    pub const STRIPE_API_KEY: &str = "stripe/api_key";
    pub const STRIPE_WEBHOOK_SECRETS: &str = "stripe/webhook_secrets";
    pub const NETSUITE_PRIVATE_KEY: &str = "netsuite/private_key_pem";
    pub const NETSUITE_CONSUMER_SECRET: &str = "netsuite/consumer_secret";
    pub const NETSUITE_TOKEN_SECRET: &str = "netsuite/token_secret";
    pub const ADMIN_TOKEN: &str = "admin/token";
}

/// Fills the secrets the configuration leaves empty from the credentials store (configuration
/// and environment win when set). Stored credentials without a master key, or with a wrong one,
/// are an error that names `MLC_MASTER_KEY`; no stored credentials leave `config` unchanged.
pub async fn load_stored_credentials(
    mut config: Config,
    store: &ConnectionStore,
    key: Option<&MasterKey>,
) -> anyhow::Result<Config> {
    let mut stored = store.load_secrets(key).await?;
    if stored.is_empty() {
        return Ok(config);
    }
    let (stripe, ns) = (&mut config.stripe, &mut config.netsuite);
    if stripe.api_key.is_none() {
        stripe.api_key = stored.remove(names::STRIPE_API_KEY);
    }
    if stripe.webhook_secrets.is_empty()
        && let Some(all) = stored.remove(names::STRIPE_WEBHOOK_SECRETS)
    {
        use secrecy::ExposeSecret;
        stripe.webhook_secrets = all
            .expose_secret()
            .lines()
            .map(|l| secrecy::SecretString::from(l.to_string()))
            .collect();
    }
    if ns.private_key_path.is_none() && ns.private_key_pem.is_none() {
        ns.private_key_pem = stored.remove(names::NETSUITE_PRIVATE_KEY);
    }
    if ns.consumer_secret.is_none() {
        ns.consumer_secret = stored.remove(names::NETSUITE_CONSUMER_SECRET);
    }
    if ns.token_secret.is_none() {
        ns.token_secret = stored.remove(names::NETSUITE_TOKEN_SECRET);
    }
    if config.admin.token.is_none() {
        config.admin.token = stored.remove(names::ADMIN_TOKEN);
    }
    Ok(config)
}
