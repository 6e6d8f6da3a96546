//! Onboarding, step 1: connect Stripe with a pasted key. The key is checked against Stripe (the
//! account it opens, test or live), then the connection's webhook endpoint is made in Stripe
//! with the event types the connector handles, and the signing secret Stripe returns (shown
//! only then) is sealed with the key. Run again, it finds the endpoint it made (by URL or by its
//! `mlc_route` metadata) instead of making a second one.

use std::collections::BTreeMap;

use mlc_store::ConnectionStore;
use mlc_store::sealed::MasterKey;
use mlc_stripe::StripeError;
use secrecy::ExposeSecret as _;

use crate::credentials::{self, CredentialError, names};

/// The metadata key that marks the endpoint made for a connection (its route ID).
pub const ROUTE_METADATA: &str = "mlc_route";

/// What connecting Stripe found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeConnected {
    pub account_id: String,
    pub livemode: bool,
    pub endpoint_id: String,
    /// `false`: the endpoint existed already (made by an earlier run).
    pub endpoint_created: bool,
}

/// Why Stripe was not connected; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// Stripe refused the key or a call (permanent until the key or its permissions change).
    #[error("Stripe refused: {0}")]
    Stripe(String),
    /// The endpoint exists but its secret is not stored here (needs a person).
    #[error(
        "Stripe has a webhook endpoint for this URL already ({0}), but its signing secret is only \
         shown when it is made: in Stripe's dashboard roll its secret and give the new one with \
         webhookSecretRotate, or delete the endpoint and connect again"
    )]
    SecretUnknown(String),
    /// The connection's settings cannot build a Stripe client.
    #[error("the connection's settings are not usable: {0}")]
    Settings(String),
    #[error(transparent)]
    Store(#[from] mlc_store::StoreError),
}

fn stripe_error(e: StripeError) -> ConnectError {
    ConnectError::Stripe(crate::ping::bounded(&e.to_string()))
}

/// Connects Stripe for a connection: checks `api_key` against Stripe, makes (or finds) the
/// webhook endpoint for `webhook_url`, and seals the key and the endpoint's secret.
pub async fn connect_stripe(
    connection: &ConnectionStore,
    settings: &serde_json::Value,
    route_id: &str,
    key: Option<&MasterKey>,
    api_key: &str,
    webhook_url: &str,
) -> Result<StripeConnected, ConnectError> {
    let api_key = credentials::check_stripe_key(api_key)?.to_string();
    if key.is_none() {
        return Err(CredentialError::NoMasterKey.into());
    }
    let mut config = crate::config::connection_config(settings)
        .map_err(|e| ConnectError::Settings(e.to_string()))?;
    config.stripe.api_key = Some(secrecy::SecretString::from(api_key.clone()));
    let client = crate::connections::stripe_client(&config)
        .map_err(|e| ConnectError::Settings(format!("{e:#}")))?
        .ok_or_else(|| ConnectError::Settings("no Stripe key".into()))?;
    let account = client.retrieve_account().await.map_err(stripe_error)?;
    let livemode = api_key.contains("_live_");
    let endpoints = client
        .list_webhook_endpoints()
        .await
        .map_err(stripe_error)?;
    let existing = endpoints.iter().find(|e| {
        e.url == webhook_url || e.metadata.get(ROUTE_METADATA).map(String::as_str) == Some(route_id)
    });
    let (endpoint_id, created, secret) = match existing {
        Some(e) => {
            let stored = connection
                .load_secrets(key)
                .await
                .map_err(CredentialError::from)?;
            if !stored.contains_key(names::STRIPE_WEBHOOK_SECRETS) {
                return Err(ConnectError::SecretUnknown(e.id.clone()));
            }
            (e.id.clone(), false, None)
        }
        None => {
            let events: Vec<&str> = crate::pipeline::HANDLED_EVENT_TYPES.to_vec();
            let metadata = BTreeMap::from([(ROUTE_METADATA.to_string(), route_id.to_string())]);
            let made = client
                .create_webhook_endpoint(webhook_url, &events, &metadata)
                .await
                .map_err(stripe_error)?;
            (made.endpoint.id, true, Some(made.secret))
        }
    };
    // Sealed only once Stripe accepted both: a refused step leaves what was stored as it was.
    credentials::set_stripe_key(connection, key, &api_key).await?;
    if let Some(secret) = secret {
        credentials::set_webhook_secrets(connection, key, &[secret.expose_secret()]).await?;
    }
    Ok(StripeConnected {
        account_id: account.id,
        livemode,
        endpoint_id,
        endpoint_created: created,
    })
}
