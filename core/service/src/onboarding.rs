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

/// The name under which a connection's generated certificate is kept (with the key pair: the
/// certificate is public, but it belongs with its private key and is shown again from here).
pub const NETSUITE_CERTIFICATE: &str = "netsuite/certificate";
/// How long a generated certificate is valid: NetSuite shortens anything longer than two years.
const CERTIFICATE_DAYS: i64 = 729;

/// What a person uploads in NetSuite's M2M setup, and what came back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetsuiteCertificate {
    /// X.509, PEM (`-----BEGIN CERTIFICATE-----`).
    pub pem: String,
    /// The JWT algorithm the key signs with (`ES256`).
    pub algorithm: String,
    /// `sha256:` and the hex SHA-256 of the certificate's DER, as NetSuite lists certificates.
    pub fingerprint: String,
    /// RFC 3339.
    pub not_after: String,
    /// Set once NetSuite named it (`netsuiteCertificateSet`).
    #[serde(skip)]
    pub certificate_id: Option<String>,
}

/// The steps in NetSuite, in order, in the words of its menus (docs/NETSUITE_SETUP.md).
pub fn netsuite_certificate_steps(account_id: &str, client_id: &str) -> Vec<String> {
    vec![
        format!(
            "Sign in to NetSuite account {account_id} as an administrator."
        ),
        "Go to Setup > Integration > Manage Authentication > OAuth 2.0 Client Credentials (M2M) Setup, and click Create New.".into(),
        "Entity: the employee the connector acts as. Role: a role with REST Web Services and Log in using OAuth 2.0 Access Tokens (and the permissions on customers, items, invoices and payments).".into(),
        format!("Application: the integration record whose client ID is {client_id}."),
        "Certificate: upload the certificate shown here (save it as ml-connector.pem), and click Save.".into(),
        "Copy the Certificate ID that NetSuite shows in the list, and paste it here.".into(),
    ]
}

/// A new key pair (EC P-256, for ES256: small, and accepted by NetSuite) and a self-signed
/// certificate for it valid for two years less a day. Returns the certificate and the private
/// key (PKCS#8 PEM). Pure apart from the random key.
pub fn make_certificate(
    account_id: &str,
    now: jiff::Timestamp,
) -> Result<(NetsuiteCertificate, secrecy::SecretString), CredentialError> {
    use sha2::Digest as _;
    let failed = |e: rcgen::Error| CredentialError::Invalid(format!("key generation failed: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("ml-connector {account_id}"),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "ml-connector");
    let date = |t: jiff::Timestamp| {
        let d = jiff::tz::TimeZone::UTC.to_datetime(t).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let until = now
        .checked_add(jiff::SignedDuration::from_hours(24 * CERTIFICATE_DAYS))
        .map_err(|e| CredentialError::Invalid(e.to_string()))?;
    params.not_before = date(now);
    params.not_after = date(until);
    let cert = params.self_signed(&key).map_err(failed)?;
    let fingerprint = format!("sha256:{}", hex::encode(sha2::Sha256::digest(cert.der())));
    let not_after = jiff::tz::TimeZone::UTC
        .to_datetime(until)
        .date()
        .to_string();
    Ok((
        NetsuiteCertificate {
            pem: cert.pem(),
            algorithm: "ES256".into(),
            fingerprint,
            not_after: format!("{not_after}T00:00:00Z"),
            certificate_id: None,
        },
        secrecy::SecretString::from(key.serialize_pem()),
    ))
}

/// Why the NetSuite step did not go through; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetsuiteSetupError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A field the person typed is not usable (permanent until they change it).
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The certificate ID came before a key pair (needs the first step).
    #[error(
        "generate the key pair first (netsuiteKeyPairGenerate), upload its certificate in NetSuite, then give the certificate ID"
    )]
    NoKeyPair,
    #[error(transparent)]
    Store(#[from] mlc_store::StoreError),
}

fn with_netsuite(
    settings: &serde_json::Value,
    change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> serde_json::Value {
    let mut settings = match settings {
        serde_json::Value::Object(_) => settings.clone(),
        _ => serde_json::json!({}),
    };
    if !settings["netsuite"].is_object() {
        settings["netsuite"] = serde_json::json!({});
    }
    if let Some(ns) = settings["netsuite"].as_object_mut() {
        change(ns);
    }
    settings
}

async fn save_settings(
    tenant: &mlc_store::TenantStore,
    id: &mlc_core::ConnectionId,
    settings: serde_json::Value,
) -> Result<(), NetsuiteSetupError> {
    let account = crate::connections::check_settings(&settings).map_err(|e| {
        NetsuiteSetupError::Invalid("settings", format!("settings not usable: {e}"))
    })?;
    tenant
        .update_connection_details(id, None, Some((settings, account)))
        .await?;
    Ok(())
}

/// Onboarding, step 2: NetSuite. Records the account and the integration's client ID in the
/// connection's settings, generates the key pair and its certificate, and seals the private key
/// (it never leaves the store). A second call replaces the key pair: its certificate must then
/// be uploaded again, so the certificate ID is cleared.
pub async fn generate_netsuite_key(
    connection: &ConnectionStore,
    tenant: &mlc_store::TenantStore,
    id: &mlc_core::ConnectionId,
    settings: &serde_json::Value,
    key: Option<&MasterKey>,
    account_id: &str,
    client_id: &str,
) -> Result<NetsuiteCertificate, NetsuiteSetupError> {
    let account = mlc_netsuite::auth::account::AccountId::parse(account_id).map_err(|_| {
        NetsuiteSetupError::Invalid(
            "accountId",
            "that is not a NetSuite account ID: it is in Setup > Company > Company Information \
             (e.g. 1234567, or 1234567_SB1 for a sandbox)"
                .into(),
        )
    })?;
    let client_id = client_id.trim();
    if client_id.is_empty() || client_id.len() > 128 || client_id.contains(char::is_whitespace) {
        return Err(NetsuiteSetupError::Invalid(
            "clientId",
            "that is not an integration client ID: it is shown once when the integration record \
             is saved (Setup > Integration > Manage Integrations)"
                .into(),
        ));
    }
    let key = key.ok_or(CredentialError::NoMasterKey)?;
    let (certificate, private_key) =
        make_certificate(account.realm_form().as_str(), jiff::Timestamp::now())?;
    let account_text = account.realm_form();
    let settings = with_netsuite(settings, |ns| {
        ns.insert("account_id".into(), account_text.clone().into());
        ns.insert("client_id".into(), client_id.into());
        ns.insert("algorithm".into(), certificate.algorithm.clone().into());
        ns.remove("certificate_id");
    });
    // Checked before anything is sealed, so a refused setting leaves the key pair as it was.
    crate::connections::check_settings(&settings).map_err(|e| {
        NetsuiteSetupError::Invalid("settings", format!("settings not usable: {e}"))
    })?;
    credentials::set_netsuite_private_key(connection, Some(key), private_key.expose_secret())
        .await?;
    let stored =
        serde_json::to_vec(&certificate).map_err(|e| CredentialError::Invalid(e.to_string()))?;
    connection
        .store_secret(key, NETSUITE_CERTIFICATE, &stored)
        .await
        .map_err(CredentialError::from)?;
    save_settings(tenant, id, settings).await?;
    connection
        .append_audit(mlc_store::NewAudit {
            step: "netsuite_key_generated".into(),
            message: format!(
                "NetSuite key pair generated for account {account_text} (certificate {}, valid until {}); upload the certificate in NetSuite's M2M setup",
                certificate.fingerprint, certificate.not_after
            ),
            ..mlc_store::NewAudit::default()
        })
        .await?;
    Ok(certificate)
}

/// Onboarding, step 2 continued: the certificate ID NetSuite showed after the upload.
pub async fn set_netsuite_certificate_id(
    connection: &ConnectionStore,
    tenant: &mlc_store::TenantStore,
    id: &mlc_core::ConnectionId,
    settings: &serde_json::Value,
    key: Option<&MasterKey>,
    certificate_id: &str,
) -> Result<NetsuiteCertificate, NetsuiteSetupError> {
    let certificate_id = certificate_id.trim();
    if certificate_id.is_empty()
        || certificate_id.len() > 200
        || certificate_id.contains(char::is_whitespace)
    {
        return Err(NetsuiteSetupError::Invalid(
            "certificateId",
            "that is not a certificate ID: copy it from the list in NetSuite's OAuth 2.0 Client \
             Credentials (M2M) Setup, one line"
                .into(),
        ));
    }
    let mut certificate = netsuite_certificate(connection, key, settings)
        .await?
        .ok_or(NetsuiteSetupError::NoKeyPair)?;
    let settings = with_netsuite(settings, |ns| {
        ns.insert("certificate_id".into(), certificate_id.into());
    });
    save_settings(tenant, id, settings).await?;
    connection
        .append_audit(mlc_store::NewAudit {
            step: "netsuite_certificate_set".into(),
            message: format!(
                "NetSuite certificate ID set for certificate {}",
                certificate.fingerprint
            ),
            ..mlc_store::NewAudit::default()
        })
        .await?;
    certificate.certificate_id = Some(certificate_id.to_string());
    Ok(certificate)
}

/// The connection's generated certificate, with its certificate ID once set; `None` when no key
/// pair was generated here (or there is no master key to open it).
pub async fn netsuite_certificate(
    connection: &ConnectionStore,
    key: Option<&MasterKey>,
    settings: &serde_json::Value,
) -> Result<Option<NetsuiteCertificate>, CredentialError> {
    let Some(key) = key else { return Ok(None) };
    let stored = connection.load_secrets(Some(key)).await?;
    let Some(raw) = stored.get(NETSUITE_CERTIFICATE) else {
        return Ok(None);
    };
    let mut certificate: NetsuiteCertificate = serde_json::from_str(raw.expose_secret())
        .map_err(|e| CredentialError::Invalid(format!("the stored certificate: {e}")))?;
    certificate.certificate_id = settings
        .pointer("/netsuite/certificate_id")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok(Some(certificate))
}

/// The most days a dry run or a backfill looks back: Stripe keeps events 30 days, and the
/// onboarding promise is "your last month".
pub const HISTORY_MAX_DAYS: i64 = 30;

/// Why a run over the Stripe history was not started.
#[derive(Debug, thiserror::Error)]
pub enum HistoryRunError {
    #[error("days must be 1 to {HISTORY_MAX_DAYS}")]
    Days,
    #[error(transparent)]
    Store(#[from] mlc_store::StoreError),
}

/// Starts a dry run or a backfill of the last `days` days as a job of the connection; a run of
/// that kind still queued or running is returned instead of a second one.
pub async fn start_history_run(
    connection: &ConnectionStore,
    kind: mlc_store::HistoryRunKind,
    days: i64,
    max_attempts: i32,
) -> Result<mlc_store::HistoryRun, HistoryRunError> {
    if !(1..=HISTORY_MAX_DAYS).contains(&days) {
        return Err(HistoryRunError::Days);
    }
    if let Some(run) = connection.latest_history_run(kind).await?
        && !run.state.is_done()
    {
        return Ok(run);
    }
    let since = mlc_core::now_millis() - days * 86_400_000;
    Ok(connection
        .start_history_run(kind, days, since, max_attempts)
        .await?)
}

/// Onboarding, last step: the connection goes live (what waited for it runs now), and with
/// `backfill_days` the last days are queued too, as events of their own. Exactly once with the
/// live events: both post under the Stripe objects' external IDs. `None`: no such connection.
pub async fn go_live(
    store: &mlc_store::Store,
    tenant: &mlc_store::TenantStore,
    id: &mlc_core::ConnectionId,
    backfill_days: i64,
    max_attempts: i32,
) -> Result<Option<Option<mlc_store::HistoryRun>>, HistoryRunError> {
    if backfill_days != 0 && !(1..=HISTORY_MAX_DAYS).contains(&backfill_days) {
        return Err(HistoryRunError::Days);
    }
    if crate::connections::set_status(store, tenant, id, mlc_core::ConnectionStatus::Active)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    if backfill_days == 0 {
        return Ok(Some(None));
    }
    let Some(scope) = store
        .connection_scope(tenant.scope().tenant_id(), id)
        .await?
    else {
        return Ok(None);
    };
    let run = start_history_run(
        &store.scoped(&scope),
        mlc_store::HistoryRunKind::Backfill,
        backfill_days,
        max_attempts,
    )
    .await?;
    Ok(Some(Some(run)))
}
