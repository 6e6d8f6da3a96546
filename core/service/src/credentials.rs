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

/// Why a credential was not stored. Messages never hold the value given.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The value is not that kind of secret (permanent: give another).
    #[error("{0}")]
    Invalid(String),
    /// Needs a person: the service has no master key to seal it with.
    #[error(
        "no master key: set MLC_MASTER_KEY (64 hex characters or base64) or MLC_MASTER_KEY_FILE \
         (`ml-connector credentials new-key PATH` writes one) and restart the service"
    )]
    NoMasterKey,
    #[error(transparent)]
    Seal(#[from] mlc_store::sealed::SealError),
}

fn one_line(value: &str) -> Option<&str> {
    let v = value.trim();
    (!v.is_empty() && !v.contains(char::is_whitespace)).then_some(v)
}

/// Checks a Stripe secret (`sk_…`) or restricted (`rk_…`) key's shape; the trimmed key.
pub fn check_stripe_key(value: &str) -> Result<&str, CredentialError> {
    one_line(value)
        .filter(|k| k.starts_with("sk_") || k.starts_with("rk_"))
        .ok_or_else(|| {
            CredentialError::Invalid(
                "that is not a Stripe secret key: expected one line sk_live_…/sk_test_… or a \
                 restricted key rk_… (the value is not shown)"
                    .into(),
            )
        })
}

/// Checks webhook signing secrets (`whsec_…`, newest first); the trimmed secrets.
pub fn check_webhook_secrets<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<&'a str>, CredentialError> {
    let secrets: Vec<&str> = secrets
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if secrets.is_empty() {
        return Err(CredentialError::Invalid(
            "no webhook signing secret given (whsec_…)".into(),
        ));
    }
    if let Some(n) = secrets
        .iter()
        .position(|s| !s.starts_with("whsec_") || s.contains(char::is_whitespace))
    {
        return Err(CredentialError::Invalid(format!(
            "secret {} is not a webhook signing secret (whsec_…; the value is not shown)",
            n + 1
        )));
    }
    Ok(secrets)
}

/// Checks a NetSuite M2M private key (PEM).
pub fn check_private_key(pem: &str) -> Result<&str, CredentialError> {
    if pem.contains("-----BEGIN") && pem.contains("PRIVATE KEY-----") {
        Ok(pem.trim())
    } else {
        Err(CredentialError::Invalid(
            "that is not a PEM private key (-----BEGIN PRIVATE KEY----- …; the value is not \
             shown)"
                .into(),
        ))
    }
}

fn master(key: Option<&MasterKey>) -> Result<&MasterKey, CredentialError> {
    key.ok_or(CredentialError::NoMasterKey)
}

/// Stores a connection's Stripe key, sealed.
pub async fn set_stripe_key(
    store: &ConnectionStore,
    key: Option<&MasterKey>,
    value: &str,
) -> Result<(), CredentialError> {
    let k = check_stripe_key(value)?;
    Ok(store
        .store_secret(master(key)?, names::STRIPE_API_KEY, k.as_bytes())
        .await?)
}

/// Replaces a connection's webhook signing secrets (all are tried when verifying, so the
/// previous one keeps working while Stripe rolls it).
pub async fn set_webhook_secrets(
    store: &ConnectionStore,
    key: Option<&MasterKey>,
    secrets: &[&str],
) -> Result<usize, CredentialError> {
    let secrets = check_webhook_secrets(secrets.iter().copied())?;
    let joined = zeroize::Zeroizing::new(secrets.join("\n"));
    store
        .store_secret(
            master(key)?,
            names::STRIPE_WEBHOOK_SECRETS,
            joined.as_bytes(),
        )
        .await?;
    Ok(secrets.len())
}

/// Rolls the webhook signing secret: `new` first, then the one it replaces (kept so deliveries
/// Stripe signed before the roll still verify) unless `drop_previous`. Older ones are dropped.
/// Returns how many secrets are now accepted.
pub async fn rotate_webhook_secret(
    store: &ConnectionStore,
    key: Option<&MasterKey>,
    new: &str,
    drop_previous: bool,
) -> Result<usize, CredentialError> {
    let key = master(key)?;
    let new = check_webhook_secrets([new])?[0].to_string();
    let current = store.load_secrets(Some(key)).await?;
    let mut all = vec![new.clone()];
    if !drop_previous && let Some(previous) = current.get(names::STRIPE_WEBHOOK_SECRETS) {
        use secrecy::ExposeSecret;
        if let Some(first) = previous
            .expose_secret()
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && *l != new)
        {
            all.push(first.to_string());
        }
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    set_webhook_secrets(store, Some(key), &refs).await
}

/// Stores a connection's NetSuite M2M private key (PEM), sealed.
pub async fn set_netsuite_private_key(
    store: &ConnectionStore,
    key: Option<&MasterKey>,
    pem: &str,
) -> Result<(), CredentialError> {
    let pem = check_private_key(pem)?;
    Ok(store
        .store_secret(master(key)?, names::NETSUITE_PRIVATE_KEY, pem.as_bytes())
        .await?)
}

/// Stores a connection's NetSuite TBA consumer and token secrets, sealed.
pub async fn set_netsuite_tba(
    store: &ConnectionStore,
    key: Option<&MasterKey>,
    consumer_secret: &str,
    token_secret: &str,
) -> Result<(), CredentialError> {
    let (Some(consumer), Some(token)) = (one_line(consumer_secret), one_line(token_secret)) else {
        return Err(CredentialError::Invalid(
            "the consumer secret and the token secret are one line each, without spaces (the \
             values are not shown)"
                .into(),
        ));
    };
    let key = master(key)?;
    store
        .store_secret(key, names::NETSUITE_CONSUMER_SECRET, consumer.as_bytes())
        .await?;
    Ok(store
        .store_secret(key, names::NETSUITE_TOKEN_SECRET, token.as_bytes())
        .await?)
}

/// A stored credential as a person may see it: never the secret, but enough to tell which one
/// is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialView {
    /// The name it is stored under (`stripe/api_key`, …).
    pub name: String,
    pub updated_at: mlc_core::UnixMillis,
    /// `sha256:` and the first 16 hex digits of the (current) secret's SHA-256; `None` without
    /// the master key.
    pub fingerprint: Option<String>,
    /// The secret's last four characters, for the one-line secrets Stripe's dashboard also
    /// shows that way (never for a private key).
    pub last4: Option<String>,
    /// How many values it holds (webhook signing secrets: the current and the previous).
    pub values: usize,
}

/// What is stored for a connection, described without a secret. Without the master key (or with
/// one that does not open them) the names and times are still given.
pub async fn describe(
    store: &ConnectionStore,
    key: Option<&MasterKey>,
) -> Result<Vec<CredentialView>, mlc_store::StoreError> {
    use secrecy::ExposeSecret;
    use sha2::Digest;
    let infos = store.list_credential_names().await?;
    let opened = match key {
        Some(k) => store.load_secrets(Some(k)).await.unwrap_or_default(),
        None => Default::default(),
    };
    Ok(infos
        .into_iter()
        .map(|info| {
            let value = opened.get(&info.name).map(|s| s.expose_secret());
            let lines: Vec<&str> = value
                .map(|v| v.lines().filter(|l| !l.trim().is_empty()).collect())
                .unwrap_or_default();
            let current = if info.name == names::STRIPE_WEBHOOK_SECRETS {
                lines.first().copied()
            } else {
                value
            };
            let one_line_secret = info.name != names::NETSUITE_PRIVATE_KEY;
            CredentialView {
                fingerprint: current.map(|v| {
                    let digest = sha2::Sha256::digest(v.trim().as_bytes());
                    format!("sha256:{}", &hex::encode(digest)[..16])
                }),
                last4: current.filter(|_| one_line_secret).map(|v| {
                    let v = v.trim();
                    v.chars()
                        .skip(v.chars().count().saturating_sub(4))
                        .collect()
                }),
                values: if info.name == names::STRIPE_WEBHOOK_SECRETS {
                    lines.len()
                } else {
                    usize::from(value.is_some())
                },
                name: info.name,
                updated_at: info.updated_at,
            }
        })
        .collect())
}
