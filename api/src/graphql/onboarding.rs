//! Onboarding through GraphQL: `stripeConnect` pastes a Stripe key and gets the webhook set up
//! (the endpoint made in Stripe for this connection's URL, its signing secret sealed), as the
//! wizard's first step. Owner only.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use mlc_service::onboarding::{self, ConnectError};
use mlc_store::ApiKeyRole;

use super::connections::{Credential, credentials};
use super::errors::{internal, store};
use super::mutation::{Keys, UserError, UserErrorCode, own_connection, require, user_error};

#[derive(Default)]
pub struct OnboardingMutation;

#[derive(InputObject)]
pub struct StripeConnectInput {
    pub connection_id: ID,
    /// A secret (`sk_…`) or restricted (`rk_…`) key of the Stripe account to connect.
    pub api_key: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct StripeConnectPayload {
    /// The Stripe account the key opens (`acct_…`).
    pub account_id: Option<String>,
    /// A live key (else test mode).
    pub livemode: Option<bool>,
    /// The webhook endpoint in Stripe that delivers to this connection (`we_…`).
    pub webhook_endpoint_id: Option<String>,
    /// Whether this call made it (false: it existed from an earlier call).
    pub webhook_endpoint_created: Option<bool>,
    pub webhook_url: Option<String>,
    /// What is stored now (never a secret).
    pub credentials: Vec<Credential>,
    pub user_errors: Vec<UserError>,
}

fn failed(field: &str, code: UserErrorCode, message: String) -> Result<StripeConnectPayload> {
    Ok(StripeConnectPayload {
        account_id: None,
        livemode: None,
        webhook_endpoint_id: None,
        webhook_endpoint_created: None,
        webhook_url: None,
        credentials: vec![],
        user_errors: vec![user_error(field, code, message)],
    })
}

#[Object]
impl OnboardingMutation {
    /// Connects a Stripe account with a pasted key: checks the key with Stripe, makes the
    /// webhook endpoint for this connection's URL (or finds the one an earlier call made) with
    /// the event types the connector handles, and seals the key and the endpoint's signing
    /// secret. Needs `admin.public_url` (the address Stripe delivers to). Owner only.
    async fn stripe_connect(
        &self,
        ctx: &Context<'_>,
        input: StripeConnectInput,
    ) -> Result<StripeConnectPayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let (id, scope) = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => {
                return Ok(StripeConnectPayload {
                    account_id: None,
                    livemode: None,
                    webhook_endpoint_id: None,
                    webhook_endpoint_created: None,
                    webhook_url: None,
                    credentials: vec![],
                    user_errors: vec![e],
                });
            }
        };
        let Some(base) = ctx
            .data::<super::PublicUrl>()
            .ok()
            .and_then(|u| u.0.clone())
        else {
            return failed(
                "connectionId",
                UserErrorCode::NotConfigured,
                "this service has no public address for Stripe to deliver to (admin.public_url): \
                 set it, or make the endpoint in Stripe yourself and give its signing secret with \
                 stripeCredentialsSet"
                    .into(),
            );
        };
        let store = store(ctx)?;
        let Some(connection) = store
            .tenant(&viewer.tenant)
            .get_connection(&id)
            .await
            .map_err(internal)?
        else {
            return failed(
                "connectionId",
                UserErrorCode::NotFound,
                format!(
                    "no connection `{}` in this tenant",
                    input.connection_id.as_str()
                ),
            );
        };
        let url = format!("{base}/webhooks/stripe/{}", connection.route_id);
        let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
        let scoped = store.scoped(&scope);
        match onboarding::connect_stripe(
            &scoped,
            &connection.settings,
            connection.route_id.as_str(),
            key,
            &input.api_key,
            &url,
        )
        .await
        {
            Ok(done) => Ok(StripeConnectPayload {
                account_id: Some(done.account_id),
                livemode: Some(done.livemode),
                webhook_endpoint_id: Some(done.endpoint_id),
                webhook_endpoint_created: Some(done.endpoint_created),
                webhook_url: Some(url),
                credentials: credentials(ctx, &scope).await?,
                user_errors: vec![],
            }),
            Err(e) => {
                let (field, code) = match &e {
                    ConnectError::Credential(
                        mlc_service::credentials::CredentialError::NoMasterKey,
                    ) => ("apiKey", UserErrorCode::NotConfigured),
                    ConnectError::Credential(
                        mlc_service::credentials::CredentialError::Invalid(_),
                    )
                    | ConnectError::Stripe(_) => ("apiKey", UserErrorCode::Invalid),
                    ConnectError::SecretUnknown(_) => ("connectionId", UserErrorCode::Conflict),
                    ConnectError::Settings(_) => ("connectionId", UserErrorCode::Invalid),
                    ConnectError::Credential(_) | ConnectError::Store(_) => {
                        return Err(internal(e));
                    }
                };
                failed(field, code, e.to_string())
            }
        }
    }
}
