//! The GraphQL schema: what a tenant's API key can read and do. Every resolver works inside the
//! tenant the credential belongs to ([`Viewer`]); no argument names a tenant.
//!
//! Conventions (Relay, as Shopify and GitHub do it; see `../shared/reference/saas-graphql.md`):
//! opaque global IDs and `node(id:)`; every list is a connection with `first` ≤ 100 and
//! `after`; top-level errors carry `extensions.code`.

use async_graphql::connection::{Connection as Page, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, Enum, ID, Interface, Json, Object, Result, SimpleObject};
use mlc_core::{ConnectionId, ConnectionStatus, UnixMillis};
use mlc_store::{ApiKeyRole, JobState, TenantScope};

use super::errors::{Code, gql_error, internal, store};
use super::ids::{GlobalId, NodeKind};

/// Who is asking: the tenant and role of the API key the request carried.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub tenant: TenantScope,
    pub role: ApiKeyRole,
    pub key_name: String,
    /// The API key's ID (its request budget is counted by it).
    pub key_id: String,
}

/// The most a page may hold (`first`), and what it holds when `first` is not given.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 20;

pub struct Query;

fn viewer<'a>(ctx: &Context<'a>) -> Result<&'a Viewer> {
    // The HTTP layer refuses a request without a valid key before the schema runs; this only
    // guards a schema executed without one (a bug), and says nothing of the internals.
    ctx.data::<Viewer>()
        .map_err(|_| gql_error(Code::Unauthenticated, "an API key is required"))
}

/// `first`, checked: 1 to [`MAX_PAGE`].
pub fn page_size(first: Option<i32>) -> Result<usize> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 1 && n as usize <= MAX_PAGE => Ok(n as usize),
        Some(n) => Err(gql_error(
            Code::BadUserInput,
            format!("`first` must be between 1 and {MAX_PAGE}, not {n}"),
        )),
    }
}

/// The most hours `stats` covers (31 days).
pub const MAX_STATS_HOURS: i32 = 744;

/// What `stats` costs: its fields, plus one per 24 hours of activity it lists.
fn hours_cost(hours: i32, child_complexity: usize) -> usize {
    let days = hours.clamp(1, MAX_STATS_HOURS) as usize / 24;
    child_complexity.saturating_add(days)
}

/// What a page costs in the complexity limit: its size (as asked, else the default) times what
/// each item asks for, so a query cannot hide a large result behind few fields.
fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let size = first.map_or(DEFAULT_PAGE, |n| n.clamp(1, MAX_PAGE as i32) as usize);
    size.saturating_mul(child_complexity.max(1))
}

#[Object]
impl Query {
    /// The tenant and role of the API key this request carries.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<ViewerInfo> {
        let v = viewer(ctx)?;
        Ok(ViewerInfo {
            tenant_id: v.tenant.tenant_id().as_str().to_string(),
            role: v.role.into(),
            api_key_name: v.key_name.clone(),
        })
    }

    /// This tenant's connections (one Stripe account into one NetSuite account each), by ID.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn connections(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page<OpaqueCursor<String>, TenantConnection, EmptyFields, EmptyFields>> {
        let v = viewer(ctx)?;
        let first = page_size(first)?;
        // A cursor is only a position (the last connection ID seen) and is applied to this
        // tenant's own list: another tenant's cursor names nothing here.
        let after = match after {
            None => None,
            Some(c) => Some(
                <OpaqueCursor<String> as async_graphql::connection::CursorType>::decode_cursor(&c)
                    .map_err(|_| {
                        gql_error(Code::BadUserInput, "`after` is not a cursor from this API")
                    })?
                    .0,
            ),
        };
        let all = store(ctx)?
            .tenant(&v.tenant)
            .list_connections()
            .await
            .map_err(internal)?;
        let rest: Vec<_> = all
            .into_iter()
            .filter(|c| {
                after
                    .as_deref()
                    .is_none_or(|a| c.scope.connection_id().as_str() > a)
            })
            .collect();
        let has_next = rest.len() > first;
        let mut page = Page::new(after.is_some(), has_next);
        page.edges.extend(rest.into_iter().take(first).map(|c| {
            let cursor = OpaqueCursor(c.scope.connection_id().as_str().to_string());
            Edge::new(cursor, TenantConnection(c))
        }));
        Ok(page)
    }

    /// One of this tenant's connections by its global ID; null when there is none (another
    /// tenant's ID included).
    async fn connection(&self, ctx: &Context<'_>, id: ID) -> Result<Option<TenantConnection>> {
        find_connection(ctx, &id).await
    }

    /// The people of this tenant, with their roles.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<super::accounts::Member>> {
        let v = viewer(ctx)?;
        super::accounts::members(ctx, v).await
    }

    /// This tenant's API keys (never their secrets). Owner only.
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<super::mutation::ApiKey>> {
        let v = viewer(ctx)?;
        if v.role != ApiKeyRole::Owner {
            return Err(gql_error(
                Code::Forbidden,
                "only an owner key can list API keys",
            ));
        }
        let keys = store(ctx)?
            .tenant(&v.tenant)
            .list_api_keys()
            .await
            .map_err(internal)?;
        Ok(keys
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(Into::into)
            .collect())
    }

    /// One event in full, by its global ID; null when this tenant has none.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> Result<Option<super::events::EventDetail>> {
        let gid = decode(&id)?;
        if gid.kind != NodeKind::Event {
            return Ok(None);
        }
        super::events::find(ctx, store(ctx)?, &gid).await
    }

    /// Any object by its global ID; null when this tenant has none.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let gid = decode(&id)?;
        Ok(match gid.kind {
            NodeKind::Connection => find_connection(ctx, &id).await?.map(Node::Connection),
            NodeKind::Event => super::events::find(ctx, store(ctx)?, &gid)
                .await?
                .map(Node::Event),
            // A batch is followed with `replayProgress`; it is not a stored object.
            NodeKind::ReplayBatch => None,
        })
    }
}

fn decode(id: &ID) -> Result<GlobalId> {
    GlobalId::decode(id).ok_or_else(|| {
        gql_error(
            Code::BadUserInput,
            format!("`{}` is not an ID from this API", id.as_str()),
        )
    })
}

/// The viewer's connection a global ID names; `None` for a malformed ID, an ID of another
/// kind, or a connection this tenant does not have (another tenant's included: a decoded ID is
/// only ever looked up inside the viewer's tenant). Every resolver that takes a connection ID
/// comes here.
pub async fn viewer_connection(
    ctx: &Context<'_>,
    viewer: &Viewer,
    id: &ID,
) -> Result<Option<(ConnectionId, mlc_store::ConnectionScope)>> {
    let Some(gid) = GlobalId::decode(id).filter(|g| g.kind == NodeKind::Connection) else {
        return Ok(None);
    };
    let Ok(connection_id) = ConnectionId::parse(&gid.key) else {
        return Ok(None);
    };
    let scope = store(ctx)?
        .connection_scope(viewer.tenant.tenant_id(), &connection_id)
        .await
        .map_err(internal)?;
    Ok(scope.map(|s| (connection_id, s)))
}

async fn find_connection(ctx: &Context<'_>, id: &ID) -> Result<Option<TenantConnection>> {
    let v = viewer(ctx)?;
    let gid = decode(id)?;
    if gid.kind != NodeKind::Connection {
        return Ok(None);
    }
    let Ok(connection_id) = ConnectionId::parse(&gid.key) else {
        return Ok(None);
    };
    let found = store(ctx)?
        .tenant(&v.tenant)
        .get_connection(&connection_id)
        .await
        .map_err(internal)?;
    Ok(found.map(TenantConnection))
}

/// Anything with a global ID.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
// One is built per `node(id:)` answer: the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Node {
    Connection(TenantConnection),
    Event(super::events::EventDetail),
}

/// The viewer: the tenant the API key belongs to and what it may do.
#[derive(SimpleObject)]
#[graphql(name = "Viewer")]
pub struct ViewerInfo {
    pub tenant_id: String,
    pub role: Role,
    pub api_key_name: String,
}

/// What an API key may do: owners everything (keys and credentials included), operators replay,
/// mappings and pause/resume, viewers read.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    Owner,
    Operator,
    Viewer,
}

impl From<ApiKeyRole> for Role {
    fn from(r: ApiKeyRole) -> Self {
        match r {
            ApiKeyRole::Owner => Role::Owner,
            ApiKeyRole::Operator => Role::Operator,
            ApiKeyRole::Viewer => Role::Viewer,
        }
    }
}

/// Whether a connection posts: drafts and paused connections store their events but post
/// nothing until they are active.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConnectionState {
    Draft,
    Active,
    Paused,
}

impl From<ConnectionStatus> for ConnectionState {
    fn from(s: ConnectionStatus) -> Self {
        match s {
            ConnectionStatus::Draft => ConnectionState::Draft,
            ConnectionStatus::Active => ConnectionState::Active,
            ConnectionStatus::Paused => ConnectionState::Paused,
        }
    }
}

/// A time as RFC 3339 in UTC.
pub fn time(ms: UnixMillis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// One Stripe account posting into one NetSuite account.
pub struct TenantConnection(pub mlc_store::Connection);

#[Object(name = "Connection")]
impl TenantConnection {
    async fn id(&self) -> ID {
        GlobalId::new(NodeKind::Connection, self.0.scope.connection_id().as_str()).encode()
    }

    /// The connection's own ID within the tenant (`default`, `eu`, …), as the CLI names it.
    async fn handle(&self) -> &str {
        self.0.scope.connection_id().as_str()
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn status(&self) -> ConnectionState {
        self.0.status.into()
    }

    /// Where Stripe delivers this connection's events: register it as the webhook endpoint's
    /// URL under this service's public address.
    async fn webhook_path(&self) -> String {
        format!("/webhooks/stripe/{}", self.0.route_id)
    }

    /// The full webhook URL to register in Stripe, when this service's public address is
    /// configured (`admin.public_url`); else null, and `webhookPath` under your address.
    async fn webhook_url(&self, ctx: &Context<'_>) -> Option<String> {
        let base = ctx.data::<super::PublicUrl>().ok()?.0.as_deref()?;
        Some(format!("{base}/webhooks/stripe/{}", self.0.route_id))
    }

    /// The IANA time zone its dates are shown in: its `posting.time_zone`, the day boundary of
    /// what it posts (for the configured default connection, `admin.time_zone`, which defaults
    /// to that). `UTC` when the zone has no IANA name.
    async fn time_zone(&self, ctx: &Context<'_>) -> String {
        super::reconcile::connection_zone(ctx, &self.0)
            .iana_name()
            .unwrap_or("UTC")
            .to_string()
    }

    /// Its settings (the `stripe`, `netsuite`, `posting` and `reference` keys it overrides;
    /// never a secret: those are only in `credentials`).
    async fn settings(&self) -> Json<serde_json::Value> {
        Json(self.0.settings.clone())
    }

    /// Its stored credentials: names, fingerprints, last four characters, when set; never the
    /// secrets.
    async fn credentials(&self, ctx: &Context<'_>) -> Result<Vec<super::connections::Credential>> {
        super::connections::credentials(ctx, &self.0.scope).await
    }

    /// The certificate generated for NetSuite's M2M setup (`netsuiteKeyPairGenerate`), with
    /// its certificate ID once set; null when none was generated here.
    async fn netsuite_certificate(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<super::onboarding::NetsuiteCertificate>> {
        let key = ctx
            .data::<super::mutation::Keys>()
            .ok()
            .and_then(|k| k.0.as_ref());
        let connection = store(ctx)?.scoped(&self.0.scope);
        Ok(
            mlc_service::onboarding::netsuite_certificate(&connection, key, &self.0.settings)
                .await
                .map_err(internal)?
                .map(|c| super::onboarding::certificate_view(c, &self.0.settings)),
        )
    }

    /// The latest "see if we fit" dry run (`dryRunStart`); null when none ran.
    async fn dry_run(&self, ctx: &Context<'_>) -> Result<Option<super::onboarding::DryRun>> {
        Ok(store(ctx)?
            .scoped(&self.0.scope)
            .latest_history_run(mlc_store::HistoryRunKind::DryRun)
            .await
            .map_err(internal)?
            .map(super::onboarding::DryRun))
    }

    /// The latest backfill (`connectionGoLive` with `backfillDays`); null when none ran.
    async fn backfill(&self, ctx: &Context<'_>) -> Result<Option<super::onboarding::Backfill>> {
        Ok(store(ctx)?
            .scoped(&self.0.scope)
            .latest_history_run(mlc_store::HistoryRunKind::Backfill)
            .await
            .map_err(internal)?
            .map(super::onboarding::Backfill))
    }

    /// The latest reconciliation (`reconciliationStart`); null when none ran.
    async fn reconciliation(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<super::reconcile::Reconciliation>> {
        let zone = super::reconcile::connection_zone(ctx, &self.0);
        Ok(store(ctx)?
            .scoped(&self.0.scope)
            .latest_history_run(mlc_store::HistoryRunKind::Reconcile)
            .await
            .map_err(internal)?
            .map(|run| super::reconcile::Reconciliation { run, zone }))
    }

    /// Counts by state and activity per hour.
    #[graphql(complexity = "hours_cost(hours, child_complexity)")]
    async fn stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = 24,
            desc = "How many hours of activity, up to now (1 to 744, i.e. 31 days)."
        )]
        hours: i32,
    ) -> Result<ConnectionStats> {
        if !(1..=MAX_STATS_HOURS).contains(&hours) {
            return Err(gql_error(
                Code::BadUserInput,
                format!("`hours` must be between 1 and {MAX_STATS_HOURS}, not {hours}"),
            ));
        }
        let console = mlc_service::console::Console::new(
            store(ctx)?.scoped(&self.0.scope),
            None,
            jiff::tz::TimeZone::UTC,
        );
        let counts = console.counts().await.map_err(internal)?;
        let activity = console.activity(i64::from(hours)).await.map_err(internal)?;
        Ok(ConnectionStats {
            events: counts.events,
            jobs: JobCounts {
                queued: counts.queued,
                running: counts.running,
                waiting: counts.waiting,
                succeeded: counts.succeeded,
                failed: counts.failed,
            },
            activity: activity
                .into_iter()
                .map(|b| HourActivity {
                    hour_start: time(b.start),
                    events_received: b.received,
                    records_posted: b.posted,
                })
                .collect(),
        })
    }

    /// Product → item mappings, by Stripe product ID.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn product_mappings(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<super::mappings::MappingPage> {
        super::mappings::mappings(
            store(ctx)?,
            &self.0.scope,
            super::mappings::Mappings::Products,
            first,
            after,
        )
        .await
    }

    /// Stripe customer → NetSuite customer mappings, by Stripe customer ID.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn customer_mappings(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<super::mappings::MappingPage> {
        super::mappings::mappings(
            store(ctx)?,
            &self.0.scope,
            super::mappings::Mappings::Customers,
            first,
            after,
        )
        .await
    }

    /// Products seen without a NetSuite item, with the sales waiting for them and what they
    /// amount to per currency. Map one with `productMappingSet` and its sales post by
    /// themselves.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn unmapped_products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<
        Page<OpaqueCursor<String>, super::mappings::UnmappedProduct, EmptyFields, EmptyFields>,
    > {
        super::mappings::unmapped_products(store(ctx)?, &self.0.scope, first, after).await
    }

    /// The NetSuite account it posts to (its concurrency limit is shared by every connection
    /// posting there).
    async fn netsuite_account(&self) -> Option<&str> {
        self.0.netsuite_account.as_deref()
    }

    async fn created_at(&self) -> String {
        time(self.0.created_at)
    }

    async fn updated_at(&self) -> String {
        time(self.0.updated_at)
    }

    /// What the last connection test and the last errors said, and how deep its queue is.
    async fn health(&self, ctx: &Context<'_>) -> Result<ConnectionHealth> {
        let h = &self.0.health;
        let connection = store(ctx)?.scoped(&self.0.scope);
        let last = |prefix: &'static str| {
            let connection = connection.clone();
            async move {
                connection
                    .last_error_containing(prefix)
                    .await
                    .map_err(internal)
                    .map(|found| {
                        found.map(|a| LastError {
                            at: time(a.at),
                            event_id: a.event_id,
                            message: a.message,
                        })
                    })
            }
        };
        let counts = super::loaders::job_counts(ctx, &self.0.scope).await?;
        let depth = counts.queued + counts.running;
        Ok(ConnectionHealth {
            last_test_at: h.last_test_at.map(time),
            last_test_ok: h.last_test_ok,
            last_test_message: h.last_test_message.clone(),
            netsuite_token_issued_at: h.token_issued_at.map(time),
            netsuite_token_age_secs: h
                .token_issued_at
                .map(|at| (mlc_core::now_millis() - at).max(0) / 1000),
            last_error: h.last_error.clone(),
            last_error_at: h.last_error_at.map(time),
            last_stripe_error: last("Stripe: ").await?,
            last_netsuite_error: last("NetSuite: ").await?,
            queue_depth: depth,
        })
    }

    /// The connection's events, newest first.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<super::events::EventFilterInput>,
    ) -> Result<super::events::EventsPage> {
        super::events::page(store(ctx)?, &self.0.scope, first, after, filter).await
    }

    /// Jobs by state: what is queued, running, waiting for a person, done, failed.
    async fn job_counts(&self, ctx: &Context<'_>) -> Result<JobCounts> {
        super::loaders::job_counts(ctx, &self.0.scope).await
    }
}

/// What a connection's last test and last errors said (times in RFC 3339, UTC).
#[derive(SimpleObject)]
pub struct ConnectionHealth {
    pub last_test_at: Option<String>,
    pub last_test_ok: Option<bool>,
    pub last_test_message: Option<String>,
    /// When its NetSuite M2M token was last issued (tokens live 60 minutes and are renewed 5
    /// minutes before they expire, or at once on a 401).
    pub netsuite_token_issued_at: Option<String>,
    /// Seconds since then.
    pub netsuite_token_age_secs: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// The last error Stripe answered (fetching an object), from the audit trail.
    pub last_stripe_error: Option<LastError>,
    /// The last error NetSuite answered (posting), from the audit trail.
    pub last_netsuite_error: Option<LastError>,
    /// Jobs queued or running.
    pub queue_depth: i64,
}

/// The last error from one side.
#[derive(SimpleObject)]
pub struct LastError {
    pub at: String,
    /// The Stripe event it happened on.
    pub event_id: Option<String>,
    pub message: String,
}

/// A connection's counts and activity.
#[derive(SimpleObject)]
pub struct ConnectionStats {
    /// Events stored (acted on or not).
    pub events: i64,
    pub jobs: JobCounts,
    /// Events received and NetSuite records posted per hour, oldest first, every hour listed.
    pub activity: Vec<HourActivity>,
}

/// One hour's activity.
#[derive(SimpleObject)]
pub struct HourActivity {
    pub hour_start: String,
    pub events_received: i64,
    pub records_posted: i64,
}

/// Jobs by state.
#[derive(SimpleObject, Default, Clone, PartialEq, Eq, Debug)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub waiting: i64,
    pub succeeded: i64,
    pub failed: i64,
}

impl JobCounts {
    pub fn from_states(counts: &[(JobState, i64)]) -> Self {
        let mut out = JobCounts::default();
        for (state, n) in counts {
            out.add(Some(*state), *n);
        }
        out
    }

    pub fn add(&mut self, state: Option<JobState>, n: i64) {
        let slot = match state {
            Some(JobState::Queued) => &mut self.queued,
            Some(JobState::Running) => &mut self.running,
            Some(JobState::Waiting) => &mut self.waiting,
            Some(JobState::Succeeded) => &mut self.succeeded,
            Some(JobState::Failed) => &mut self.failed,
            None => return,
        };
        *slot += n;
    }

    pub fn total(&self) -> i64 {
        self.queued + self.running + self.waiting + self.succeeded + self.failed
    }
}
