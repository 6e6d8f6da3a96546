//! Mutations: each takes one `input` and returns a payload whose `userErrors` carry business
//! failures (an unknown connection, a malformed Stripe ID); top-level errors are for who may ask
//! (UNAUTHENTICATED, FORBIDDEN) and for failures inside (INTERNAL). They act through the same
//! service functions as the CLI and the console, so a replay or a mapping means the same thing,
//! with the same audit entry, wherever it is asked for.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use mlc_core::{ConnectionId, ConnectionStatus};
use mlc_store::{ApiKeyInfo, ApiKeyRole, ConnectionScope, ConnectionStore};

use super::errors::{Code, gql_error, internal, store};
use super::schema::{Role, TenantConnection, Viewer, time};

/// Wakes this process's worker when a mutation queued work (a replay, released jobs).
#[derive(Clone)]
pub struct WorkerWake(pub Arc<tokio::sync::Notify>);

/// The master key that opens tenants' sealed credentials (`None`: `MLC_MASTER_KEY` is unset).
#[derive(Clone)]
pub struct Keys(pub Option<mlc_store::sealed::MasterKey>);

/// The mutation root: each area's mutations, merged into one type.
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct Mutation(
    CoreMutation,
    super::connections::ConnectionMutation,
    super::mappings::MappingMutation,
    super::replay::ReplayMutation,
    super::tenants::TenantMutation,
    super::accounts::AccountMutation,
    super::onboarding::OnboardingMutation,
    super::onboarding::OnboardingRunsMutation,
    super::reconcile::ReconcileMutation,
);

/// Pausing, replaying, testing a connection, and API keys.
#[derive(Default)]
pub struct CoreMutation;

/// A business failure: what was wrong with the input, and where.
#[derive(SimpleObject, Debug, Clone)]
pub struct UserError {
    /// The path to the input field at fault (`["input", "connectionId"]`).
    pub field: Vec<String>,
    pub code: UserErrorCode,
    pub message: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UserErrorCode {
    /// Nothing by that ID in this tenant (another tenant's included).
    NotFound,
    /// The value is malformed or not allowed here.
    Invalid,
    /// The object is not in a state where this can be done.
    NotReplayable,
    /// One by that ID exists already.
    AlreadyExists,
    /// Not now: the object is busy or in a state that forbids it (the message says what to do).
    Conflict,
    /// The service is not set up for this (e.g. no master key to seal credentials with).
    NotConfigured,
}

pub fn user_error(field: &str, code: UserErrorCode, message: impl Into<String>) -> UserError {
    UserError {
        field: vec!["input".to_string(), field.to_string()],
        code,
        message: message.into(),
    }
}

/// The viewer, if their role is at least `needed`; FORBIDDEN otherwise (checked before any
/// lookup, so it says nothing of what exists).
pub fn require<'a>(ctx: &Context<'a>, needed: ApiKeyRole) -> Result<&'a Viewer> {
    let viewer = ctx
        .data::<Viewer>()
        .map_err(|_| gql_error(Code::Unauthenticated, "an API key is required"))?;
    let rank = |r: ApiKeyRole| match r {
        ApiKeyRole::Viewer => 0,
        ApiKeyRole::Operator => 1,
        ApiKeyRole::Owner => 2,
    };
    if rank(viewer.role) < rank(needed) {
        return Err(gql_error(
            Code::Forbidden,
            format!(
                "this API key's role ({}) cannot do this: it needs an {} key",
                viewer.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    Ok(viewer)
}

pub fn wake(ctx: &Context<'_>) {
    if let Ok(w) = ctx.data::<WorkerWake>() {
        w.0.notify_one();
    }
}

/// The viewer's connection named by a global ID, or the user error to return.
pub async fn own_connection(
    ctx: &Context<'_>,
    viewer: &Viewer,
    id: &ID,
) -> Result<std::result::Result<(ConnectionId, ConnectionScope), UserError>> {
    Ok(super::schema::viewer_connection(ctx, viewer, id)
        .await?
        .ok_or_else(|| {
            user_error(
                "connectionId",
                UserErrorCode::NotFound,
                format!("no connection `{}` in this tenant", id.as_str()),
            )
        }))
}

#[derive(InputObject)]
pub struct ConnectionStatusInput {
    /// The connection's global ID.
    pub connection_id: ID,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ConnectionStatusPayload {
    pub connection: Option<TenantConnection>,
    /// Jobs that were waiting for the connection and run now (resume only).
    pub released_jobs: i64,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct ProductMappingSetInput {
    pub connection_id: ID,
    /// `prod_…`
    pub stripe_product_id: String,
    /// The NetSuite item's internal ID (digits).
    pub netsuite_item_id: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ProductMappingSetPayload {
    /// Sales that waited for this product's mapping and run now.
    pub released_jobs: i64,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct EventReplayInput {
    pub connection_id: ID,
    /// The Stripe event's ID (`evt_…`).
    pub event_id: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct EventReplayPayload {
    /// Whether the event's job was queued again (what already posted is never posted twice).
    pub queued: bool,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct ConnectionTestInput {
    pub connection_id: ID,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

/// How one check ended.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    /// Not checked: not configured, or an earlier check failed.
    Skipped,
}

/// One check of a connection test.
#[derive(SimpleObject)]
pub struct ConnectionCheck {
    /// `STRIPE_KEY`, `STRIPE_WEBHOOK_SECRETS`, `NETSUITE_TOKEN`, …: stable, for programs.
    pub code: String,
    /// The check's name for a person (`stripe key`).
    pub name: String,
    pub status: CheckStatus,
    /// What was found (never a secret).
    pub message: String,
    /// What to change when it failed.
    pub fix: Option<String>,
}

/// "Ping your systems": every check, never an error for a failing one.
#[derive(SimpleObject)]
pub struct ConnectionTestResult {
    /// Whether every check passed (skipped ones aside).
    pub ok: bool,
    pub checked_at: String,
    pub checks: Vec<ConnectionCheck>,
}

#[derive(SimpleObject)]
pub struct ConnectionTestPayload {
    pub result: Option<ConnectionTestResult>,
    pub user_errors: Vec<UserError>,
}

fn check_view(c: mlc_service::ping::Check) -> ConnectionCheck {
    use mlc_service::ping::Status;
    let code = c
        .name
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect::<String>();
    ConnectionCheck {
        code,
        status: match c.status {
            Status::Ok => CheckStatus::Pass,
            Status::Fail => CheckStatus::Fail,
            Status::Skip => CheckStatus::Skipped,
        },
        name: c.name,
        message: c.detail,
        fix: c.fix,
    }
}

#[derive(InputObject)]
pub struct ApiKeyCreateInput {
    pub name: String,
    pub role: Role,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

/// An API key as listed: never its secret.
#[derive(SimpleObject)]
pub struct ApiKey {
    pub id: ID,
    pub name: String,
    pub role: Role,
    /// Its first characters and last four, to tell keys apart.
    pub prefix: String,
    pub last4: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl From<ApiKeyInfo> for ApiKey {
    fn from(k: ApiKeyInfo) -> Self {
        ApiKey {
            id: ID(k.id),
            name: k.name,
            role: k.role.into(),
            prefix: k.prefix,
            last4: k.last4,
            created_at: time(k.created_at),
            last_used_at: k.last_used_at.map(time),
        }
    }
}

#[derive(SimpleObject)]
pub struct ApiKeyCreatePayload {
    pub api_key: Option<ApiKey>,
    /// The key itself, shown this once: it is stored only as a hash.
    pub secret: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct ApiKeyRevokeInput {
    pub id: ID,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ApiKeyRevokePayload {
    pub revoked: bool,
    pub user_errors: Vec<UserError>,
}

impl From<Role> for ApiKeyRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => ApiKeyRole::Owner,
            Role::Operator => ApiKeyRole::Operator,
            Role::Viewer => ApiKeyRole::Viewer,
        }
    }
}

impl CoreMutation {
    async fn set_status(
        ctx: &Context<'_>,
        input: ConnectionStatusInput,
        status: ConnectionStatus,
    ) -> Result<ConnectionStatusPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let (id, _) = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => {
                return Ok(ConnectionStatusPayload {
                    connection: None,
                    released_jobs: 0,
                    user_errors: vec![e],
                });
            }
        };
        let store = store(ctx)?;
        let tenant = store.tenant(&viewer.tenant);
        let released = mlc_service::connections::set_status(store, &tenant, &id, status)
            .await
            .map_err(internal)?
            .unwrap_or(0);
        if released > 0 {
            wake(ctx);
        }
        let connection = tenant.get_connection(&id).await.map_err(internal)?;
        Ok(ConnectionStatusPayload {
            connection: connection.map(TenantConnection),
            released_jobs: released as i64,
            user_errors: vec![],
        })
    }
}

#[Object]
impl CoreMutation {
    /// Stops posting for a connection: its events are still stored (nothing a customer paid is
    /// lost) and post when it is resumed. Operator or owner.
    async fn connection_pause(
        &self,
        ctx: &Context<'_>,
        input: ConnectionStatusInput,
    ) -> Result<ConnectionStatusPayload> {
        CoreMutation::set_status(ctx, input, ConnectionStatus::Paused).await
    }

    /// Starts (or restarts) posting for a connection; what waited for it runs now. Operator or
    /// owner.
    async fn connection_resume(
        &self,
        ctx: &Context<'_>,
        input: ConnectionStatusInput,
    ) -> Result<ConnectionStatusPayload> {
        CoreMutation::set_status(ctx, input, ConnectionStatus::Active).await
    }

    /// Maps a Stripe product to a NetSuite item; sales that waited for it post now. Audited as
    /// `mapping_set`, as from the CLI. Operator or owner.
    async fn product_mapping_set(
        &self,
        ctx: &Context<'_>,
        input: ProductMappingSetInput,
    ) -> Result<ProductMappingSetPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let scope = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((_, scope)) => scope,
            Err(e) => {
                return Ok(ProductMappingSetPayload {
                    released_jobs: 0,
                    user_errors: vec![e],
                });
            }
        };
        let mut errors = vec![];
        if mlc_core::StripeId::parse(
            mlc_core::StripeIdKind::Product,
            input.stripe_product_id.trim(),
        )
        .is_err()
        {
            errors.push(user_error(
                "stripeProductId",
                UserErrorCode::Invalid,
                format!(
                    "`{}` is not a Stripe product ID (prod_…)",
                    input.stripe_product_id
                ),
            ));
        }
        if mlc_core::NetSuiteInternalId::parse(input.netsuite_item_id.trim()).is_err() {
            errors.push(user_error(
                "netsuiteItemId",
                UserErrorCode::Invalid,
                format!(
                    "`{}` is not a NetSuite internal ID (digits)",
                    input.netsuite_item_id
                ),
            ));
        }
        if !errors.is_empty() {
            return Ok(ProductMappingSetPayload {
                released_jobs: 0,
                user_errors: errors,
            });
        }
        let connection: ConnectionStore = store(ctx)?.scoped(&scope);
        let released = mlc_service::mappings::set_mapping(
            &connection,
            &input.stripe_product_id,
            &input.netsuite_item_id,
        )
        .await
        .map_err(internal)?;
        if released > 0 {
            wake(ctx);
        }
        Ok(ProductMappingSetPayload {
            released_jobs: released as i64,
            user_errors: vec![],
        })
    }

    /// Runs a stored event through the pipeline again (after fixing what made it fail). Safe:
    /// what already posted is not posted again. Audited as `replayed`. Operator or owner.
    async fn event_replay(
        &self,
        ctx: &Context<'_>,
        input: EventReplayInput,
    ) -> Result<EventReplayPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let scope = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((_, scope)) => scope,
            Err(e) => {
                return Ok(EventReplayPayload {
                    queued: false,
                    user_errors: vec![e],
                });
            }
        };
        let console = mlc_service::console::Console::new(
            store(ctx)?.scoped(&scope),
            None,
            jiff::tz::TimeZone::UTC,
        );
        let results = console
            .replay(std::slice::from_ref(&input.event_id))
            .await
            .map_err(internal)?;
        let Some(result) = results.into_iter().next() else {
            return Err(internal("replay returned no result"));
        };
        let user_errors = match result.outcome {
            "queued" => {
                wake(ctx);
                vec![]
            }
            "not_found" => vec![user_error(
                "eventId",
                UserErrorCode::NotFound,
                format!(
                    "no event `{}` is stored for this connection",
                    input.event_id
                ),
            )],
            _ => vec![user_error(
                "eventId",
                UserErrorCode::NotReplayable,
                result.detail,
            )],
        };
        Ok(EventReplayPayload {
            queued: user_errors.is_empty(),
            user_errors,
        })
    }

    /// "Ping your systems": checks the connection's Stripe key, webhook secrets, NetSuite
    /// login and configured NetSuite references with its stored settings and credentials, as
    /// `ml-connector ping` does, and records the outcome as its last test. A failing check is
    /// part of the result, not an error. Operator or owner.
    async fn connection_test(
        &self,
        ctx: &Context<'_>,
        input: ConnectionTestInput,
    ) -> Result<ConnectionTestPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let scope = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((_, scope)) => scope,
            Err(e) => {
                return Ok(ConnectionTestPayload {
                    result: None,
                    user_errors: vec![e],
                });
            }
        };
        let store = store(ctx)?;
        let key = ctx.data::<Keys>().ok().and_then(|k| k.0.as_ref());
        let process = ctx
            .data::<super::ProcessConfig>()
            .ok()
            .map(|c| c.0.as_ref());
        let checks =
            match mlc_service::ping::test_connection(store, &store.scoped(&scope), key, process)
                .await
            {
                Ok(checks) => checks.into_iter().map(check_view).collect(),
                // Settings that are unusable or credentials that do not open: one failed check
                // that says so (the cause chain names no secret).
                Err(e) => vec![ConnectionCheck {
                    code: "SETUP".into(),
                    name: "setup".into(),
                    status: CheckStatus::Fail,
                    message: mlc_service::ping::bounded(&format!("{e:#}")),
                    fix: Some(
                        "set the connection's settings and credentials (`ml-connector credentials \
                     set … --tenant … --connection …`), then test again"
                            .into(),
                    ),
                }],
            };
        Ok(ConnectionTestPayload {
            result: Some(ConnectionTestResult {
                ok: checks.iter().all(|c| c.status != CheckStatus::Fail),
                checked_at: time(mlc_core::now_millis()),
                checks,
            }),
            user_errors: vec![],
        })
    }

    /// Makes an API key for this tenant; its secret is in the payload this once. Owner only.
    async fn api_key_create(
        &self,
        ctx: &Context<'_>,
        input: ApiKeyCreateInput,
    ) -> Result<ApiKeyCreatePayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Ok(ApiKeyCreatePayload {
                api_key: None,
                secret: None,
                user_errors: vec![user_error(
                    "name",
                    UserErrorCode::Invalid,
                    "a key's name is 1 to 100 characters",
                )],
            });
        }
        let made = store(ctx)?
            .tenant(&viewer.tenant)
            .create_api_key(name, input.role.into())
            .await
            .map_err(internal)?;
        use mlc_core::ExposeSecret as _;
        Ok(ApiKeyCreatePayload {
            secret: Some(made.secret.expose_secret().to_string()),
            api_key: Some(made.info.into()),
            user_errors: vec![],
        })
    }

    /// Revokes one of this tenant's API keys; it is refused from the next request on. Owner
    /// only.
    async fn api_key_revoke(
        &self,
        ctx: &Context<'_>,
        input: ApiKeyRevokeInput,
    ) -> Result<ApiKeyRevokePayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        let revoked = store(ctx)?
            .tenant(&viewer.tenant)
            .revoke_api_key(input.id.as_str())
            .await
            .map_err(internal)?;
        Ok(ApiKeyRevokePayload {
            revoked,
            user_errors: if revoked {
                vec![]
            } else {
                vec![user_error(
                    "id",
                    UserErrorCode::NotFound,
                    format!("no API key `{}` in this tenant", input.id.as_str()),
                )]
            },
        })
    }
}
