//! Onboarding through GraphQL: `stripeConnect` pastes a Stripe key and gets the webhook set up
//! (the endpoint made in Stripe for this connection's URL, its signing secret sealed), as the
//! wizard's first step. Owner only.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use mlc_service::onboarding::{self, ConnectError};
use mlc_store::ApiKeyRole;

use super::connections::{Credential, credentials};
use super::errors::{internal, store};
use super::mutation::{Keys, UserError, UserErrorCode, own_connection, require, user_error, wake};

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

/// How many attempts the onboarding runs' jobs get: the configured `worker.max_attempts`.
pub(super) fn max_attempts(ctx: &Context<'_>) -> i32 {
    ctx.data::<super::ProcessConfig>()
        .map(|c| c.0.worker.max_attempts)
        .unwrap_or(10)
}

/// The connection a mutation names, with its row; a user error when the tenant has none.
pub(super) async fn owned(
    ctx: &Context<'_>,
    viewer: &super::schema::Viewer,
    id: &ID,
) -> Result<std::result::Result<(mlc_core::ConnectionId, mlc_store::Connection), UserError>> {
    let (id, _) = match own_connection(ctx, viewer, id).await? {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    match store(ctx)?
        .tenant(&viewer.tenant)
        .get_connection(&id)
        .await
        .map_err(internal)?
    {
        Some(c) => Ok(Ok((id, c))),
        None => Ok(Err(user_error(
            "connectionId",
            UserErrorCode::NotFound,
            "no such connection in this tenant",
        ))),
    }
}

/// The certificate to upload in NetSuite's M2M setup, and the steps there.
#[derive(SimpleObject)]
pub struct NetsuiteCertificate {
    /// X.509, PEM (`-----BEGIN CERTIFICATE-----`): upload it in NetSuite.
    pub pem: String,
    /// The algorithm the connector signs with (`ES256`).
    pub algorithm: String,
    /// `sha256:` and the hex SHA-256 of the certificate, to tell two apart.
    pub fingerprint: String,
    /// When it expires (RFC 3339): make a new one before then.
    pub not_after: String,
    /// The ID NetSuite gave it, once set (`netsuiteCertificateSet`).
    pub certificate_id: Option<String>,
    /// What to do in NetSuite, step by step.
    pub steps: Vec<String>,
}

pub fn certificate_view(
    c: onboarding::NetsuiteCertificate,
    settings: &serde_json::Value,
) -> NetsuiteCertificate {
    let text = |key: &str| {
        settings
            .pointer(&format!("/netsuite/{key}"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    NetsuiteCertificate {
        steps: onboarding::netsuite_certificate_steps(&text("account_id"), &text("client_id")),
        pem: c.pem,
        algorithm: c.algorithm,
        fingerprint: c.fingerprint,
        not_after: c.not_after,
        certificate_id: c.certificate_id,
    }
}

#[derive(InputObject)]
pub struct NetsuiteKeyPairGenerateInput {
    pub connection_id: ID,
    /// The NetSuite account ID (Setup > Company > Company Information), e.g. `1234567` or
    /// `1234567_SB1`.
    pub account_id: String,
    /// The integration record's client ID (shown once when the record is saved).
    pub client_id: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct NetsuiteCertificateSetInput {
    pub connection_id: ID,
    /// The certificate ID NetSuite shows after the upload (the JWT `kid`).
    pub certificate_id: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct NetsuiteCertificatePayload {
    pub certificate: Option<NetsuiteCertificate>,
    /// What is stored now (never a secret).
    pub credentials: Vec<Credential>,
    pub user_errors: Vec<UserError>,
}

fn certificate_failed(e: UserError) -> Result<NetsuiteCertificatePayload> {
    Ok(NetsuiteCertificatePayload {
        certificate: None,
        credentials: vec![],
        user_errors: vec![e],
    })
}

fn setup_error(e: onboarding::NetsuiteSetupError) -> Result<NetsuiteCertificatePayload> {
    use onboarding::NetsuiteSetupError as E;
    let (field, code) = match &e {
        E::Invalid(field, _) => (*field, UserErrorCode::Invalid),
        E::NoKeyPair => ("connectionId", UserErrorCode::Conflict),
        E::Credential(mlc_service::credentials::CredentialError::NoMasterKey) => {
            ("connectionId", UserErrorCode::NotConfigured)
        }
        E::Credential(mlc_service::credentials::CredentialError::Invalid(_)) => {
            ("connectionId", UserErrorCode::Invalid)
        }
        E::Credential(_) | E::Store(_) => return Err(internal(e)),
    };
    certificate_failed(user_error(field, code, e.to_string()))
}

/// The answer of the NetSuite steps: the certificate (with the steps, from the settings as
/// they are now) and what is stored.
async fn certificate_answer(
    ctx: &Context<'_>,
    tenant: &mlc_store::TenantStore,
    id: &mlc_core::ConnectionId,
    scope: &mlc_store::ConnectionScope,
    cert: onboarding::NetsuiteCertificate,
) -> Result<NetsuiteCertificatePayload> {
    let settings = tenant
        .get_connection(id)
        .await
        .map_err(internal)?
        .map(|c| c.settings)
        .unwrap_or_default();
    Ok(NetsuiteCertificatePayload {
        certificate: Some(certificate_view(cert, &settings)),
        credentials: credentials(ctx, scope).await?,
        user_errors: vec![],
    })
}

/// Where an onboarding run is.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl From<mlc_store::HistoryRunState> for RunState {
    fn from(s: mlc_store::HistoryRunState) -> Self {
        match s {
            mlc_store::HistoryRunState::Queued => RunState::Queued,
            mlc_store::HistoryRunState::Running => RunState::Running,
            mlc_store::HistoryRunState::Succeeded => RunState::Succeeded,
            mlc_store::HistoryRunState::Failed => RunState::Failed,
        }
    }
}

pub(super) fn money(minor: i64, currency: mlc_core::Currency) -> super::mappings::MoneyAmount {
    mlc_service::console::MoneyView::new(mlc_core::Money::new(minor, currency)).into()
}

fn amounts(a: &mlc_service::pipeline::Amounts) -> Vec<super::mappings::MoneyAmount> {
    a.iter().map(|(c, m)| money(*m, *c)).collect()
}

/// One currency's sales that would post.
#[derive(SimpleObject)]
pub struct DryRunTotal {
    pub currency: String,
    /// Invoices and charges.
    pub count: i64,
    /// What the customers paid.
    pub gross: super::mappings::MoneyAmount,
    /// Stripe's fees on them.
    pub fees: super::mappings::MoneyAmount,
    /// Gross less fees: the revenue posted net of fees.
    pub net: super::mappings::MoneyAmount,
}

/// A Stripe product without a NetSuite item: its sales wait until it is mapped.
#[derive(SimpleObject)]
pub struct DryRunProduct {
    pub stripe_product_id: String,
    pub name: Option<String>,
    pub sales: i64,
    pub amounts: Vec<super::mappings::MoneyAmount>,
}

/// A Stripe customer no NetSuite customer matches.
#[derive(SimpleObject)]
pub struct DryRunCustomer {
    pub stripe_customer_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub sales: i64,
    pub amounts: Vec<super::mappings::MoneyAmount>,
    /// The connector will create it in NetSuite (`posting.create_customers`): it blocks
    /// nothing. False: its sales wait for a mapping (`customerMappingSet`).
    pub will_be_created: bool,
}

/// Something else a person must fix before a sale can post.
#[derive(SimpleObject)]
pub struct DryRunProblem {
    pub stripe_object_id: String,
    pub message: String,
}

/// "See if we fit": what the last days of Stripe would post, computed without writing to
/// NetSuite.
pub struct DryRun(pub mlc_store::HistoryRun);

impl DryRun {
    fn report(&self) -> Option<mlc_service::pipeline::DryRunReport> {
        self.0
            .report
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }
}

#[Object]
impl DryRun {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn state(&self) -> RunState {
        self.0.state.into()
    }
    /// Days looked back.
    async fn days(&self) -> i64 {
        self.0.days
    }
    /// The start of the window (RFC 3339).
    async fn since(&self) -> String {
        super::schema::time(self.0.since)
    }
    /// Stripe invoices and charges looked at so far.
    async fn scanned(&self) -> i64 {
        self.0.scanned
    }
    async fn started_at(&self) -> Option<String> {
        self.0.started_at.map(super::schema::time)
    }
    async fn finished_at(&self) -> Option<String> {
        self.0.finished_at.map(super::schema::time)
    }
    /// Why it failed, and what to do.
    async fn error(&self) -> Option<String> {
        self.0.error.clone()
    }
    /// What would post, per currency (once it succeeded).
    async fn would_post(&self) -> Vec<DryRunTotal> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.would_post
            .iter()
            .map(|(c, t)| DryRunTotal {
                currency: c.iso_code(),
                count: t.count,
                gross: money(t.gross_minor, *c),
                fees: money(t.fees_minor, *c),
                net: money(t.net_minor, *c),
            })
            .collect()
    }
    /// Products without a NetSuite item, with the sales that wait for them.
    async fn unmapped_products(&self) -> Vec<DryRunProduct> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.unmapped_products
            .iter()
            .map(|(id, p)| DryRunProduct {
                stripe_product_id: id.clone(),
                name: p.name.clone(),
                sales: p.sales,
                amounts: amounts(&p.amounts),
            })
            .collect()
    }
    /// Stripe customers without a NetSuite customer.
    async fn unmatched_customers(&self) -> Vec<DryRunCustomer> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.customers_without_match
            .iter()
            .map(|(id, c)| DryRunCustomer {
                stripe_customer_id: id.clone(),
                name: c.name.clone(),
                email: c.email.clone(),
                sales: c.sales,
                amounts: amounts(&c.amounts),
                will_be_created: c.will_be_created,
            })
            .collect()
    }
    /// Other things to fix, by Stripe object.
    async fn problems(&self) -> Vec<DryRunProblem> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.problems
            .iter()
            .map(|(id, m)| DryRunProblem {
                stripe_object_id: id.clone(),
                message: m.clone(),
            })
            .collect()
    }
    /// Invoices and charges that post nothing (unpaid, paid an invoice, failed).
    async fn not_posted(&self) -> i64 {
        self.report().map(|r| r.not_posted).unwrap_or(0)
    }
}

/// The backfill of going live: the last days queued as events, posted as live ones are.
pub struct Backfill(pub mlc_store::HistoryRun);

#[Object]
impl Backfill {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn state(&self) -> RunState {
        self.0.state.into()
    }
    async fn days(&self) -> i64 {
        self.0.days
    }
    async fn since(&self) -> String {
        super::schema::time(self.0.since)
    }
    /// Stripe invoices and charges looked at so far.
    async fn scanned(&self) -> i64 {
        self.0.scanned
    }
    /// Events queued for them (one already queued, by a webhook or an earlier backfill, is
    /// not queued again).
    async fn queued(&self) -> i64 {
        self.0.queued
    }
    async fn started_at(&self) -> Option<String> {
        self.0.started_at.map(super::schema::time)
    }
    async fn finished_at(&self) -> Option<String> {
        self.0.finished_at.map(super::schema::time)
    }
    async fn error(&self) -> Option<String> {
        self.0.error.clone()
    }
}

#[derive(InputObject)]
pub struct DryRunStartInput {
    pub connection_id: ID,
    /// Days to look back, 1 to 30.
    #[graphql(default = 30)]
    pub days: i64,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct DryRunPayload {
    pub dry_run: Option<DryRun>,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct ConnectionGoLiveInput {
    pub connection_id: ID,
    /// Also post the last days (1 to 30), exactly once alongside the live events; 0: none.
    #[graphql(default = 0)]
    pub backfill_days: i64,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ConnectionGoLivePayload {
    pub connection: Option<super::schema::TenantConnection>,
    pub backfill: Option<Backfill>,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct OnboardingRunsMutation;

#[Object]
impl OnboardingRunsMutation {
    /// Onboarding, NetSuite: records the account and the integration's client ID, generates a
    /// key pair (the private key is sealed and never leaves the store) and the certificate to
    /// upload in NetSuite's M2M setup, with the steps. Again: a new key pair (upload anew).
    /// Owner only.
    async fn netsuite_key_pair_generate(
        &self,
        ctx: &Context<'_>,
        input: NetsuiteKeyPairGenerateInput,
    ) -> Result<NetsuiteCertificatePayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let (id, connection) = match owned(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => return certificate_failed(e),
        };
        let store = store(ctx)?;
        let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
        let tenant = store.tenant(&viewer.tenant);
        let scoped = store.scoped(&connection.scope);
        match onboarding::generate_netsuite_key(
            &scoped,
            &tenant,
            &id,
            &connection.settings,
            key,
            &input.account_id,
            &input.client_id,
        )
        .await
        {
            Ok(cert) => certificate_answer(ctx, &tenant, &id, &connection.scope, cert).await,
            Err(e) => setup_error(e),
        }
    }

    /// Onboarding, NetSuite continued: the certificate ID NetSuite showed after the upload.
    /// Then `connectionTest` mints a token with it. Owner only.
    async fn netsuite_certificate_set(
        &self,
        ctx: &Context<'_>,
        input: NetsuiteCertificateSetInput,
    ) -> Result<NetsuiteCertificatePayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let (id, connection) = match owned(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => return certificate_failed(e),
        };
        let store = store(ctx)?;
        let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
        let tenant = store.tenant(&viewer.tenant);
        let scoped = store.scoped(&connection.scope);
        match onboarding::set_netsuite_certificate_id(
            &scoped,
            &tenant,
            &id,
            &connection.settings,
            key,
            &input.certificate_id,
        )
        .await
        {
            Ok(cert) => certificate_answer(ctx, &tenant, &id, &connection.scope, cert).await,
            Err(e) => setup_error(e),
        }
    }

    /// "See if we fit": starts a dry run over the last days of Stripe invoices and standalone
    /// charges (a job; follow it on `connection.dryRun`). Nothing is written to NetSuite. Works
    /// on a draft connection. A dry run still running is returned instead of a second one.
    /// Operator or owner.
    async fn dry_run_start(
        &self,
        ctx: &Context<'_>,
        input: DryRunStartInput,
    ) -> Result<DryRunPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let fail = |e: UserError| {
            Ok(DryRunPayload {
                dry_run: None,
                user_errors: vec![e],
            })
        };
        let (_, connection) = match owned(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => return fail(e),
        };
        let scoped = store(ctx)?.scoped(&connection.scope);
        match onboarding::start_history_run(
            &scoped,
            mlc_store::HistoryRunKind::DryRun,
            input.days,
            max_attempts(ctx),
        )
        .await
        {
            Ok(run) => {
                wake(ctx);
                Ok(DryRunPayload {
                    dry_run: Some(DryRun(run)),
                    user_errors: vec![],
                })
            }
            Err(e @ onboarding::HistoryRunError::Days) => {
                fail(user_error("days", UserErrorCode::Invalid, e.to_string()))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Onboarding, last step: the connection goes live (posting starts; what waited runs now),
    /// and with `backfillDays` the last days of Stripe invoices and charges are posted too,
    /// exactly once alongside the live events (follow it on `connection.backfill`). Owner only.
    async fn connection_go_live(
        &self,
        ctx: &Context<'_>,
        input: ConnectionGoLiveInput,
    ) -> Result<ConnectionGoLivePayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let fail = |e: UserError| {
            Ok(ConnectionGoLivePayload {
                connection: None,
                backfill: None,
                user_errors: vec![e],
            })
        };
        let (id, _) = match owned(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => return fail(e),
        };
        let store = store(ctx)?;
        let tenant = store.tenant(&viewer.tenant);
        match onboarding::go_live(store, &tenant, &id, input.backfill_days, max_attempts(ctx)).await
        {
            Ok(Some(run)) => {
                wake(ctx);
                Ok(ConnectionGoLivePayload {
                    connection: tenant
                        .get_connection(&id)
                        .await
                        .map_err(internal)?
                        .map(super::schema::TenantConnection),
                    backfill: run.map(Backfill),
                    user_errors: vec![],
                })
            }
            Ok(None) => fail(user_error(
                "connectionId",
                UserErrorCode::NotFound,
                "no such connection in this tenant",
            )),
            Err(e @ onboarding::HistoryRunError::Days) => fail(user_error(
                "backfillDays",
                UserErrorCode::Invalid,
                format!("backfill {e} (or 0 for none)"),
            )),
            Err(e) => Err(internal(e)),
        }
    }
}
