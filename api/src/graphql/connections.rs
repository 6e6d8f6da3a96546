//! Making and changing connections, and their credentials. Secrets are write-only: they are
//! sealed under the tenant's data key as they arrive, and a query shows only a fingerprint, the
//! last four characters and when each was set. Owner only, as for API keys.
//!
//! The CLI (`connections create`, `credentials set`) goes through the same service functions,
//! so the checks and the audit entries are the same wherever a connection is set up.

use async_graphql::{Context, ID, InputObject, Json, Object, Result, SimpleObject};
use mlc_core::ConnectionId;
use mlc_service::credentials::{self as creds, CredentialError, CredentialView};
use mlc_store::{ApiKeyRole, ConnectionScope, DeleteConnection, StoreError};

use super::errors::{internal, store};
use super::ids::{GlobalId, NodeKind};
use super::mutation::{Keys, UserError, UserErrorCode, own_connection, require, user_error};
use super::schema::{TenantConnection, time};

/// A stored credential, described without its secret.
#[derive(SimpleObject)]
pub struct Credential {
    /// What it is: `stripe/api_key`, `stripe/webhook_secrets`, `netsuite/private_key_pem`,
    /// `netsuite/consumer_secret`, `netsuite/token_secret`.
    pub name: String,
    /// `sha256:` and 16 hex digits of the (current) secret's SHA-256, to tell two apart; null
    /// when this service has no master key to open it.
    pub fingerprint: Option<String>,
    /// The last four characters (one-line secrets only, as Stripe's dashboard shows keys).
    pub last4: Option<String>,
    /// Values held: webhook signing secrets keep the previous one while Stripe rolls it.
    pub values: i32,
    pub set_at: String,
}

impl From<CredentialView> for Credential {
    fn from(c: CredentialView) -> Self {
        Credential {
            name: c.name,
            fingerprint: c.fingerprint,
            last4: c.last4,
            values: i32::try_from(c.values).unwrap_or(i32::MAX),
            set_at: time(c.updated_at),
        }
    }
}

/// The connection's credentials as [`Credential`]s.
pub async fn credentials(ctx: &Context<'_>, scope: &ConnectionScope) -> Result<Vec<Credential>> {
    let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
    let views = creds::describe(&store(ctx)?.scoped(scope), key)
        .await
        .map_err(internal)?;
    Ok(views.into_iter().map(Into::into).collect())
}

#[derive(Default)]
pub struct ConnectionMutation;

#[derive(InputObject)]
pub struct ConnectionCreateInput {
    /// Its ID within the tenant: lower-case letters, digits, `_` and `-` (e.g. `production`).
    pub handle: String,
    /// A name for people; default: the handle.
    pub name: Option<String>,
    /// Its settings: any of the `stripe`, `netsuite`, `posting` and `reference` keys of the
    /// configuration file, as JSON (`{"netsuite": {"account_id": "1234567"}}`). No secrets:
    /// set those with `stripeCredentialsSet` and `netsuiteCredentialsSet`.
    pub settings: Option<Json<serde_json::Value>>,
    /// Post at once; by default a new connection is a draft (it stores events and posts
    /// nothing until `connectionResume`).
    pub active: Option<bool>,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ConnectionPayload {
    pub connection: Option<TenantConnection>,
    pub user_errors: Vec<UserError>,
}

fn connection_error(field: &str, code: UserErrorCode, message: String) -> ConnectionPayload {
    ConnectionPayload {
        connection: None,
        user_errors: vec![user_error(field, code, message)],
    }
}

#[derive(InputObject)]
pub struct ConnectionUpdateInput {
    pub connection_id: ID,
    pub name: Option<String>,
    /// Replaces its settings (checked as for `connectionCreate`).
    pub settings: Option<Json<serde_json::Value>>,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ConnectionDeleteInput {
    pub connection_id: ID,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ConnectionDeletePayload {
    /// The deleted connection's ID.
    pub deleted_connection_id: Option<ID>,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct StripeCredentialsSetInput {
    pub connection_id: ID,
    /// A secret (`sk_…`) or restricted (`rk_…`) key.
    pub api_key: Option<String>,
    /// Webhook signing secrets (`whsec_…`), newest first; replaces those stored.
    pub webhook_secrets: Option<Vec<String>>,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct NetsuiteCredentialsSetInput {
    pub connection_id: ID,
    /// The M2M (OAuth 2.0 client credentials) private key, PEM.
    pub private_key_pem: Option<String>,
    /// Token-based authentication: the consumer secret (with `tokenSecret`).
    pub consumer_secret: Option<String>,
    pub token_secret: Option<String>,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct WebhookSecretRotateInput {
    pub connection_id: ID,
    /// The new signing secret Stripe shows after "Roll secret" (`whsec_…`).
    pub new_secret: String,
    /// Stop accepting the previous secret at once (by default it is kept, so deliveries Stripe
    /// signed before the roll still verify; drop it later with `stripeCredentialsSet`).
    pub drop_previous: Option<bool>,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct CredentialsPayload {
    /// What is stored now (never a secret).
    pub credentials: Vec<Credential>,
    pub user_errors: Vec<UserError>,
}

fn credentials_error(field: &str, e: CredentialError) -> Result<CredentialsPayload> {
    let code = match &e {
        CredentialError::Invalid(_) => UserErrorCode::Invalid,
        CredentialError::NoMasterKey => UserErrorCode::NotConfigured,
        CredentialError::Seal(_) => return Err(internal(e)),
    };
    Ok(CredentialsPayload {
        credentials: vec![],
        user_errors: vec![user_error(field, code, e.to_string())],
    })
}

/// The owner's connection a credentials mutation names, or the payload refusing it.
async fn owned_scope(
    ctx: &Context<'_>,
    id: &ID,
) -> Result<std::result::Result<ConnectionScope, CredentialsPayload>> {
    let viewer = require(ctx, ApiKeyRole::Owner)?;
    Ok(own_connection(ctx, viewer, id)
        .await?
        .map(|(_, scope)| scope)
        .map_err(|e| CredentialsPayload {
            credentials: vec![],
            user_errors: vec![e],
        }))
}

/// The answer of a credentials mutation that stored what it was given: what is stored now.
async fn stored(ctx: &Context<'_>, scope: &ConnectionScope) -> Result<CredentialsPayload> {
    Ok(CredentialsPayload {
        credentials: credentials(ctx, scope).await?,
        user_errors: vec![],
    })
}

/// Settings from an input, as stored: a JSON object (empty when not given).
fn settings_value(settings: Option<Json<serde_json::Value>>) -> serde_json::Value {
    settings.map_or_else(|| serde_json::json!({}), |j| j.0)
}

#[Object]
impl ConnectionMutation {
    /// Connects a Stripe account to a NetSuite account: a new connection with its own
    /// unguessable webhook URL. A draft unless `active`. Owner only.
    async fn connection_create(
        &self,
        ctx: &Context<'_>,
        input: ConnectionCreateInput,
    ) -> Result<ConnectionPayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let Ok(id) = ConnectionId::parse(input.handle.trim()) else {
            return Ok(connection_error(
                "handle",
                UserErrorCode::Invalid,
                format!(
                    "`{}` is not a connection handle: lower-case letters, digits, `_` and `-`",
                    input.handle
                ),
            ));
        };
        let store = store(ctx)?;
        let tenant = store.tenant(&viewer.tenant);
        let name = input
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        match mlc_service::connections::create_connection(
            store,
            &tenant,
            id.clone(),
            name,
            settings_value(input.settings),
            input.active.unwrap_or(false),
        )
        .await
        {
            Ok(c) => Ok(ConnectionPayload {
                connection: Some(TenantConnection(c)),
                user_errors: vec![],
            }),
            Err(mlc_service::connections::CreateError::Settings(e)) => Ok(connection_error(
                "settings",
                UserErrorCode::Invalid,
                e.to_string(),
            )),
            Err(mlc_service::connections::CreateError::Store(StoreError::AlreadyExists(_))) => {
                Ok(connection_error(
                    "handle",
                    UserErrorCode::AlreadyExists,
                    format!("this tenant has a connection `{id}` already"),
                ))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Renames a connection or replaces its settings (its status, webhook URL and credentials
    /// stay). Owner only.
    async fn connection_update(
        &self,
        ctx: &Context<'_>,
        input: ConnectionUpdateInput,
    ) -> Result<ConnectionPayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let id = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((id, _)) => id,
            Err(e) => {
                return Ok(ConnectionPayload {
                    connection: None,
                    user_errors: vec![e],
                });
            }
        };
        let name = match input.name.map(|n| n.trim().to_string()) {
            Some(n) if n.is_empty() || n.chars().count() > 200 => {
                return Ok(connection_error(
                    "name",
                    UserErrorCode::Invalid,
                    "a connection's name is 1 to 200 characters".into(),
                ));
            }
            other => other,
        };
        let settings = match input.settings {
            None => None,
            Some(json) => match mlc_service::connections::check_settings(&json.0) {
                Ok(account) => Some((json.0, account)),
                Err(e) => {
                    return Ok(connection_error(
                        "settings",
                        UserErrorCode::Invalid,
                        format!("settings not usable: {e}"),
                    ));
                }
            },
        };
        let tenant = store(ctx)?.tenant(&viewer.tenant);
        tenant
            .update_connection_details(&id, name, settings)
            .await
            .map_err(internal)?;
        Ok(ConnectionPayload {
            connection: tenant
                .get_connection(&id)
                .await
                .map_err(internal)?
                .map(TenantConnection),
            user_errors: vec![],
        })
    }

    /// Deletes a connection and everything stored for it (events, audit trail, mappings,
    /// credentials); what it posted stays in NetSuite. Only a paused or draft connection with
    /// no job queued or running. Owner only.
    async fn connection_delete(
        &self,
        ctx: &Context<'_>,
        input: ConnectionDeleteInput,
    ) -> Result<ConnectionDeletePayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let failed = |code, message: String| {
            Ok(ConnectionDeletePayload {
                deleted_connection_id: None,
                user_errors: vec![user_error("connectionId", code, message)],
            })
        };
        let id = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((id, _)) => id,
            Err(e) => {
                return Ok(ConnectionDeletePayload {
                    deleted_connection_id: None,
                    user_errors: vec![e],
                });
            }
        };
        match store(ctx)?
            .tenant(&viewer.tenant)
            .delete_connection(&id)
            .await
            .map_err(internal)?
        {
            DeleteConnection::Deleted => Ok(ConnectionDeletePayload {
                deleted_connection_id: Some(
                    GlobalId::new(NodeKind::Connection, id.as_str()).encode(),
                ),
                user_errors: vec![],
            }),
            DeleteConnection::NotFound => failed(
                UserErrorCode::NotFound,
                format!(
                    "no connection `{}` in this tenant",
                    input.connection_id.as_str()
                ),
            ),
            DeleteConnection::Active => failed(
                UserErrorCode::Conflict,
                "the connection is active: pause it first (connectionPause), then delete it".into(),
            ),
            DeleteConnection::Busy(n) => failed(
                UserErrorCode::Conflict,
                format!(
                    "{n} job(s) are queued or running on this connection: wait for them to \
                     finish (pausing it stops new ones), then delete it"
                ),
            ),
        }
    }

    /// Stores the connection's Stripe key and/or webhook signing secrets, sealed. Owner only.
    async fn stripe_credentials_set(
        &self,
        ctx: &Context<'_>,
        input: StripeCredentialsSetInput,
    ) -> Result<CredentialsPayload> {
        let scope = match owned_scope(ctx, &input.connection_id).await? {
            Ok(scope) => scope,
            Err(refused) => return Ok(refused),
        };
        if input.api_key.is_none() && input.webhook_secrets.is_none() {
            return credentials_error(
                "apiKey",
                CredentialError::Invalid("give `apiKey`, `webhookSecrets`, or both".into()),
            );
        }
        // Both are checked before either is stored, so a bad one changes nothing.
        if let Some(k) = &input.api_key
            && let Err(e) = creds::check_stripe_key(k)
        {
            return credentials_error("apiKey", e);
        }
        if let Some(w) = &input.webhook_secrets
            && let Err(e) = creds::check_webhook_secrets(w.iter().map(String::as_str))
        {
            return credentials_error("webhookSecrets", e);
        }
        let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
        let connection = store(ctx)?.scoped(&scope);
        if let Some(k) = &input.api_key
            && let Err(e) = creds::set_stripe_key(&connection, key, k).await
        {
            return credentials_error("apiKey", e);
        }
        if let Some(w) = &input.webhook_secrets {
            let refs: Vec<&str> = w.iter().map(String::as_str).collect();
            if let Err(e) = creds::set_webhook_secrets(&connection, key, &refs).await {
                return credentials_error("webhookSecrets", e);
            }
        }
        stored(ctx, &scope).await
    }

    /// Stores the connection's NetSuite M2M private key and/or TBA secrets, sealed. Owner
    /// only.
    async fn netsuite_credentials_set(
        &self,
        ctx: &Context<'_>,
        input: NetsuiteCredentialsSetInput,
    ) -> Result<CredentialsPayload> {
        let scope = match owned_scope(ctx, &input.connection_id).await? {
            Ok(scope) => scope,
            Err(refused) => return Ok(refused),
        };
        let tba = match (&input.consumer_secret, &input.token_secret) {
            (None, None) => None,
            (Some(c), Some(t)) => Some((c, t)),
            _ => {
                return credentials_error(
                    "consumerSecret",
                    CredentialError::Invalid(
                        "token-based authentication needs both `consumerSecret` and \
                         `tokenSecret`"
                            .into(),
                    ),
                );
            }
        };
        if input.private_key_pem.is_none() && tba.is_none() {
            return credentials_error(
                "privateKeyPem",
                CredentialError::Invalid(
                    "give `privateKeyPem` (M2M) or `consumerSecret` and `tokenSecret` (TBA)".into(),
                ),
            );
        }
        if let Some(pem) = &input.private_key_pem
            && let Err(e) = creds::check_private_key(pem)
        {
            return credentials_error("privateKeyPem", e);
        }
        let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
        let connection = store(ctx)?.scoped(&scope);
        if let Some(pem) = &input.private_key_pem
            && let Err(e) = creds::set_netsuite_private_key(&connection, key, pem).await
        {
            return credentials_error("privateKeyPem", e);
        }
        if let Some((c, t)) = tba
            && let Err(e) = creds::set_netsuite_tba(&connection, key, c, t).await
        {
            return credentials_error("consumerSecret", e);
        }
        stored(ctx, &scope).await
    }

    /// Rolls the webhook signing secret: the new one is tried first, and the previous one is
    /// kept (unless `dropPrevious`) so deliveries signed before the roll still verify. Owner
    /// only.
    async fn webhook_secret_rotate(
        &self,
        ctx: &Context<'_>,
        input: WebhookSecretRotateInput,
    ) -> Result<CredentialsPayload> {
        let scope = match owned_scope(ctx, &input.connection_id).await? {
            Ok(scope) => scope,
            Err(refused) => return Ok(refused),
        };
        let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
        if let Err(e) = creds::rotate_webhook_secret(
            &store(ctx)?.scoped(&scope),
            key,
            &input.new_secret,
            input.drop_previous.unwrap_or(false),
        )
        .await
        {
            return credentials_error("newSecret", e);
        }
        stored(ctx, &scope).await
    }
}
