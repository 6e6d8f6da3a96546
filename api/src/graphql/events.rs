//! A connection's events: the list (filtered, paged) and one event in full (the event as Stripe
//! sent it, the object as fetched, the NetSuite request and answer, its job and audit trail).
//! Read through `mlc_service::console::Console`, as the dashboard and the CLI read them.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::{Connection as Page, CursorType, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, Enum, ID, InputObject, Json, Object, Result, SimpleObject};
use mlc_core::ConnectionId;
use mlc_service::console::{Console, ConsoleError};
use mlc_store::{AuditEntry, ConnectionScope, EventFilter, EventPosition, Job, JobState, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::errors::{Code, gql_error, internal, store};
use super::ids::{GlobalId, NodeKind};
use super::schema::{DEFAULT_PAGE, MAX_PAGE, Viewer, time};

/// The state of an event's job, or IGNORED for an event the connector had nothing to do for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EventStatus {
    Queued,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Ignored,
}

impl EventStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            EventStatus::Queued => "queued",
            EventStatus::Running => "running",
            EventStatus::Waiting => "waiting",
            EventStatus::Succeeded => "succeeded",
            EventStatus::Failed => "failed",
            EventStatus::Ignored => "ignored",
        }
    }

    fn parse(s: &str) -> Self {
        match JobState::parse(s) {
            Some(JobState::Queued) => EventStatus::Queued,
            Some(JobState::Running) => EventStatus::Running,
            Some(JobState::Waiting) => EventStatus::Waiting,
            Some(JobState::Succeeded) => EventStatus::Succeeded,
            Some(JobState::Failed) => EventStatus::Failed,
            _ => EventStatus::Ignored,
        }
    }
}

/// Which events to list (all given conditions hold).
#[derive(InputObject, Default)]
pub struct EventFilterInput {
    pub status: Option<EventStatus>,
    /// A Stripe event type (`invoice.paid`).
    pub event_type: Option<String>,
    /// An event ID or the ID of the Stripe object it concerns.
    pub stripe_id: Option<String>,
    /// The internal or external ID of a NetSuite record posted for the event's object.
    pub netsuite_id: Option<String>,
    /// Received at or after (RFC 3339).
    pub received_after: Option<String>,
    /// Received before (RFC 3339).
    pub received_before: Option<String>,
}

fn millis(field: &str, value: Option<&String>) -> Result<Option<i64>> {
    value
        .map(|v| {
            v.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| {
                    gql_error(
                        Code::BadUserInput,
                        format!("`{field}`: `{v}` is not an RFC 3339 time ({e})"),
                    )
                })
        })
        .transpose()
}

fn console(store: &Store, scope: &ConnectionScope) -> Console {
    Console::new(store.scoped(scope), None, jiff::tz::TimeZone::UTC)
}

/// The `events` cursor: the position of the edge's event in the list (its `received_at` in
/// Unix ms and its event ID, the list's sort key), serialised as `[ms, "evt_…"]` and opaque to
/// clients. The next page is what sorts after it (keyset), so events arriving meanwhile neither
/// repeat nor skip a row, and a deep page costs what the first does. It names no tenant or
/// connection: the scope comes from the connection the list is asked of, so another
/// connection's (or tenant's) cursor only says where to start within this one's events.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EventCursor(i64, String);

impl From<&mlc_store::EventSummary> for EventCursor {
    fn from(row: &mlc_store::EventSummary) -> Self {
        EventCursor(row.received_at, row.event_id.clone())
    }
}

/// A page of a connection's events.
pub type EventsPage = Page<OpaqueCursor<EventCursor>, EventSummary, EmptyFields, EmptyFields>;

/// One page of `scope`'s events, newest first, after the position `after` names.
pub async fn page(
    store: &Store,
    scope: &ConnectionScope,
    first: Option<i32>,
    after: Option<String>,
    filter: Option<EventFilterInput>,
) -> Result<EventsPage> {
    let first = match first {
        None => DEFAULT_PAGE,
        Some(n) if n >= 1 && n as usize <= MAX_PAGE => n as usize,
        Some(n) => {
            return Err(gql_error(
                Code::BadUserInput,
                format!("`first` must be between 1 and {MAX_PAGE}, not {n}"),
            ));
        }
    };
    let after = after
        .map(|c| {
            OpaqueCursor::<EventCursor>::decode_cursor(&c)
                .map(
                    |OpaqueCursor(EventCursor(received_at, event_id))| EventPosition {
                        received_at,
                        event_id,
                    },
                )
                .map_err(|_| gql_error(Code::BadUserInput, "`after` is not a cursor from this API"))
        })
        .transpose()?;
    let f = filter.unwrap_or_default();
    let has_previous = after.is_some();
    let query = EventFilter {
        status: f.status.map(|s| s.as_str().to_string()),
        event_type: f.event_type.clone(),
        stripe_id: f.stripe_id.clone(),
        netsuite_id: f.netsuite_id.clone(),
        received_after: millis("receivedAfter", f.received_after.as_ref())?,
        received_before: millis("receivedBefore", f.received_before.as_ref())?,
        // One more than asked, to know whether there is a next page.
        limit: first as i64 + 1,
        offset: 0,
        after,
    };
    let mut rows = console(store, scope)
        .events(&query)
        .await
        .map_err(|e| match e {
            ConsoleError::BadRequest(m) => gql_error(Code::BadUserInput, m),
            other => internal(other),
        })?;
    let has_next = rows.len() > first;
    rows.truncate(first);
    // The page's audit trails, loaded together when the first of them is asked for.
    let trails = Arc::new(PageTrails {
        scope: scope.clone(),
        event_ids: rows.iter().map(|r| r.event_id.clone()).collect(),
        loaded: OnceCell::new(),
    });
    let mut page = Page::new(has_previous, has_next);
    page.edges.extend(rows.into_iter().map(|row| {
        Edge::new(
            OpaqueCursor(EventCursor::from(&row)),
            EventSummary {
                connection: scope.connection_id().clone(),
                row,
                trails: Some(trails.clone()),
            },
        )
    }));
    Ok(page)
}

/// The audit trails of one page's events: loaded with one query for the whole page, the first
/// time any event of the page is asked for its trail (never one query per event), and dropped
/// with the page. Scoped to the page's connection, so it holds nothing of any other.
struct PageTrails {
    scope: ConnectionScope,
    event_ids: Vec<String>,
    loaded: OnceCell<HashMap<String, Vec<AuditEntry>>>,
}

/// An event as listed.
pub struct EventSummary {
    connection: ConnectionId,
    row: mlc_store::EventSummary,
    /// Its page's trails; `None` for an event on its own (a subscription's).
    trails: Option<Arc<PageTrails>>,
}

impl EventSummary {
    pub fn new(connection: ConnectionId, row: mlc_store::EventSummary) -> Self {
        EventSummary {
            connection,
            row,
            trails: None,
        }
    }

    /// The event's audit trail: from its page's batch, or (an event on its own) read for it
    /// alone, inside the viewer's tenant.
    async fn trail(&self, ctx: &Context<'_>) -> Result<Vec<AuditEntry>> {
        let store = store(ctx)?;
        if let Some(trails) = &self.trails {
            let loaded = trails
                .loaded
                .get_or_try_init(|| async {
                    store
                        .scoped(&trails.scope)
                        .audit_for_events(&trails.event_ids)
                        .await
                })
                .await
                .map_err(internal)?;
            return Ok(loaded.get(&self.row.event_id).cloned().unwrap_or_default());
        }
        let viewer = ctx
            .data::<Viewer>()
            .map_err(|_| gql_error(Code::Unauthenticated, "an API key is required"))?;
        let Some(scope) = store
            .connection_scope(viewer.tenant.tenant_id(), &self.connection)
            .await
            .map_err(internal)?
        else {
            return Ok(Vec::new());
        };
        store
            .scoped(&scope)
            .audit_for_event(&self.row.event_id)
            .await
            .map_err(internal)
    }
}

fn event_gid(connection: &ConnectionId, event_id: &str) -> ID {
    GlobalId::new(
        NodeKind::Event,
        &format!("{}/{}", connection.as_str(), event_id),
    )
    .encode()
}

#[Object]
impl EventSummary {
    async fn id(&self) -> ID {
        event_gid(&self.connection, &self.row.event_id)
    }
    /// Stripe's event ID (`evt_…`).
    async fn event_id(&self) -> &str {
        &self.row.event_id
    }
    async fn event_type(&self) -> &str {
        &self.row.event_type
    }
    /// The Stripe object the event concerns.
    async fn object_id(&self) -> Option<&str> {
        self.row.object_id.as_deref()
    }
    async fn received_at(&self) -> String {
        time(self.row.received_at)
    }
    async fn status(&self) -> EventStatus {
        EventStatus::parse(&self.row.status)
    }
    async fn attempts(&self) -> i64 {
        self.row.attempts
    }
    async fn last_error(&self) -> Option<&str> {
        self.row.last_error.as_deref()
    }
    /// What happened to it, oldest first (as `Event.auditTrail`). A page's trails are read
    /// together, in one query for the page.
    async fn audit_trail(&self, ctx: &Context<'_>) -> Result<Vec<AuditView>> {
        Ok(self.trail(ctx).await?.iter().map(AuditView::from).collect())
    }
}

/// The viewer's event named by a global ID (`None`: not this tenant's, or not stored).
pub async fn find(ctx: &Context<'_>, store: &Store, id: &GlobalId) -> Result<Option<EventDetail>> {
    let viewer = ctx
        .data::<Viewer>()
        .map_err(|_| gql_error(Code::Unauthenticated, "an API key is required"))?;
    let Some((connection, event_id)) = id.key.split_once('/') else {
        return Ok(None);
    };
    let Ok(connection) = ConnectionId::parse(connection) else {
        return Ok(None);
    };
    let Some(scope) = store
        .connection_scope(viewer.tenant.tenant_id(), &connection)
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    match console(store, &scope).event(event_id).await {
        Ok(detail) => Ok(Some(EventDetail { connection, detail })),
        Err(ConsoleError::NotFound(_)) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

/// One event in full.
pub struct EventDetail {
    connection: ConnectionId,
    detail: mlc_service::console::EventDetail,
}

#[Object(name = "Event")]
impl EventDetail {
    pub async fn id(&self) -> ID {
        event_gid(&self.connection, &self.detail.event_id)
    }
    async fn event_id(&self) -> &str {
        &self.detail.event_id
    }
    async fn event_type(&self) -> &str {
        &self.detail.event_type
    }
    async fn object_id(&self) -> Option<&str> {
        self.detail.object_id.as_deref()
    }
    async fn livemode(&self) -> bool {
        self.detail.livemode
    }
    async fn received_at(&self) -> String {
        time(self.detail.received_at)
    }
    /// How many times Stripe delivered it (duplicates are stored once).
    async fn deliveries(&self) -> i64 {
        self.detail.deliveries
    }
    async fn status(&self) -> EventStatus {
        EventStatus::parse(&self.detail.status)
    }
    /// The event exactly as Stripe sent it.
    async fn raw_event(&self) -> Json<serde_json::Value> {
        Json(self.detail.raw_event.clone())
    }
    /// The Stripe object as last fetched from the Stripe API (the webhook body is never trusted).
    async fn stripe_object(&self) -> Option<Json<serde_json::Value>> {
        self.detail.stripe_object.clone().map(Json)
    }
    /// The last NetSuite record body the connector built, and NetSuite's answer.
    async fn netsuite_request(&self) -> Option<Json<serde_json::Value>> {
        self.detail.netsuite_request.clone().map(Json)
    }
    async fn netsuite_response(&self) -> Option<Json<serde_json::Value>> {
        self.detail.netsuite_response.clone().map(Json)
    }
    /// The job that posts it: state, attempts, next run, last error.
    async fn job(&self) -> Option<JobView> {
        self.detail.job.as_ref().map(JobView::from)
    }
    /// What happened to it, oldest first.
    async fn audit_trail(&self) -> Vec<AuditView> {
        self.detail.audit.iter().map(AuditView::from).collect()
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Job")]
pub struct JobView {
    pub state: EventStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When it runs next (queued or waiting).
    pub next_run_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        JobView {
            state: EventStatus::parse(j.state.as_str()),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            next_run_at: matches!(j.state, JobState::Queued | JobState::Waiting)
                .then(|| time(j.run_at)),
            last_error: j.last_error.clone(),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "AuditEntry")]
pub struct AuditView {
    pub at: String,
    /// `received`, `fetched`, `posted`, `waiting`, `replayed`, …
    pub step: String,
    pub message: String,
    pub stripe_object_id: Option<String>,
}

impl From<&AuditEntry> for AuditView {
    fn from(a: &AuditEntry) -> Self {
        AuditView {
            at: time(a.at),
            step: a.step.clone(),
            message: a.message.clone(),
            stripe_object_id: a.stripe_object_id.clone(),
        }
    }
}
