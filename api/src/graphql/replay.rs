//! Replaying many events at once: `eventsReplay` queues again every event in a bounded window
//! that matches a filter, as one batch, or with `dryRun` only counts what it would queue. The
//! batch is followed by `replayProgress` (a subscription) or its `progress` field. Replays never edit
//! history: each job gets a fresh attempt, audited `replayed`, and what already posted is not
//! posted again.

use std::time::Duration;

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use futures::Stream;
use mlc_core::{ConnectionId, now_millis};
use mlc_store::{ApiKeyRole, ConnectionScope, ConnectionStore, EventFilter, JobState, Store};
use rand::RngCore as _;

use super::errors::{Code, gql_error, internal, store};
use super::events::{EventFilterInput, EventStatus};
use super::ids::{GlobalId, NodeKind};
use super::mutation::{UserError, UserErrorCode, own_connection, require, user_error, wake};
use super::schema::{JobCounts, Viewer};

/// The widest window one `eventsReplay` may cover: a mistake stays bounded.
pub const MAX_WINDOW_DAYS: i64 = 14;
/// The most events one batch may queue; a larger set is refused (narrow the window or filter).
pub const MAX_BATCH_EVENTS: usize = 10_000;

#[derive(Default)]
pub struct ReplayMutation;

#[derive(InputObject)]
pub struct EventsReplayInput {
    pub connection_id: ID,
    /// Events received at or after this time (RFC 3339). Required: a replay is always bounded.
    pub since: String,
    /// Events received before this time (RFC 3339); default now. At most 14 days after
    /// `since`.
    pub until: Option<String>,
    /// Which events in the window (status, type, Stripe or NetSuite ID). Without a status,
    /// every event with a job that is not running: failed, waiting, queued and succeeded (a
    /// succeeded one is checked again and not posted twice).
    pub filter: Option<EventFilterInput>,
    /// Count what would be queued, and queue nothing.
    pub dry_run: Option<bool>,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

/// A set of events queued again together.
pub struct ReplayBatch {
    connection: ConnectionId,
    scope: ConnectionScope,
    batch: String,
    /// How many events matched and were queued (or would be, for a dry run).
    events: i64,
    dry_run: bool,
    /// The matching events by their job's state when asked (a dry run's breakdown).
    matched: JobCounts,
}

#[Object]
impl ReplayBatch {
    /// Null for a dry run (nothing was queued to follow).
    async fn id(&self) -> Option<ID> {
        (!self.dry_run).then(|| {
            GlobalId::new(
                NodeKind::ReplayBatch,
                &format!("{}/{}", self.connection, self.batch),
            )
            .encode()
        })
    }

    async fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Events that matched the window and filter (queued, unless a dry run).
    async fn events(&self) -> i64 {
        self.events
    }

    /// What the matching events' jobs were doing when the batch was asked for.
    async fn matched_by_state(&self) -> &JobCounts {
        &self.matched
    }

    /// The batch's jobs by state now: it is done when none is queued or running. Zeros for a
    /// dry run.
    async fn progress(&self, ctx: &Context<'_>) -> Result<JobCounts> {
        if self.dry_run {
            return Ok(JobCounts::default());
        }
        progress(&store(ctx)?.scoped(&self.scope), &self.batch)
            .await
            .map_err(internal)
    }
}

async fn progress(
    store: &ConnectionStore,
    batch: &str,
) -> Result<JobCounts, mlc_store::StoreError> {
    Ok(JobCounts::from_states(&store.replay_progress(batch).await?))
}

fn millis(field: &str, value: &str) -> std::result::Result<i64, UserError> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            user_error(
                field,
                UserErrorCode::Invalid,
                format!("`{value}` is not an RFC 3339 time ({e})"),
            )
        })
}

#[derive(SimpleObject)]
pub struct EventsReplayPayload {
    pub batch: Option<ReplayBatch>,
    pub user_errors: Vec<UserError>,
}

#[Object]
impl ReplayMutation {
    /// Queues again every event of a connection received in a window (at most 14 days) that
    /// matches the filter, as one batch; `dryRun` counts them and queues nothing. Follow the
    /// batch with `replayProgress`. Operator or owner.
    async fn events_replay(
        &self,
        ctx: &Context<'_>,
        input: EventsReplayInput,
    ) -> Result<EventsReplayPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let failed = |e| {
            Ok(EventsReplayPayload {
                batch: None,
                user_errors: vec![e],
            })
        };
        let (connection, scope) = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => return failed(e),
        };
        let since = match millis("since", &input.since) {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        let until = match input.until.as_deref().map(|u| millis("until", u)) {
            None => now_millis(),
            Some(Ok(t)) => t,
            Some(Err(e)) => return failed(e),
        };
        if until <= since {
            return failed(user_error(
                "until",
                UserErrorCode::Invalid,
                "`until` must be after `since`",
            ));
        }
        if until - since > MAX_WINDOW_DAYS * 86_400_000 {
            return failed(user_error(
                "since",
                UserErrorCode::Invalid,
                format!(
                    "a replay covers at most {MAX_WINDOW_DAYS} days: move `since` later or set \
                     `until`, and replay the rest as another batch"
                ),
            ));
        }
        let f = input.filter.unwrap_or_default();
        let status = f.status.map(EventStatus::as_str);
        if matches!(status, Some("running" | "ignored")) {
            return failed(user_error(
                "filter",
                UserErrorCode::Invalid,
                "running events are being worked on and ignored ones have nothing to do: \
                 replay failed, waiting, queued or succeeded events",
            ));
        }
        let window_filter = |t: Option<&String>, field: &str| match t {
            None => Ok(None),
            Some(v) => millis(field, v).map(Some),
        };
        let (after, before) = match (
            window_filter(f.received_after.as_ref(), "filter"),
            window_filter(f.received_before.as_ref(), "filter"),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return failed(e),
        };
        let connection_store = store(ctx)?.scoped(&scope);
        let rows = connection_store
            .list_events(&EventFilter {
                status: status.map(str::to_string),
                event_type: f.event_type.clone(),
                stripe_id: f.stripe_id.clone(),
                netsuite_id: f.netsuite_id.clone(),
                received_after: Some(after.map_or(since, |a| a.max(since))),
                // Exclusive: the window is [since, until).
                received_before: Some(before.map_or(until, |b| b.min(until))),
                limit: MAX_BATCH_EVENTS as i64 + 1,
                ..EventFilter::default()
            })
            .await
            .map_err(internal)?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| !matches!(r.status.as_str(), "running" | "ignored"))
            .collect();
        if rows.len() > MAX_BATCH_EVENTS {
            return failed(user_error(
                "since",
                UserErrorCode::Invalid,
                format!(
                    "more than {MAX_BATCH_EVENTS} events match: narrow the window or the filter \
                     and replay in several batches"
                ),
            ));
        }
        let mut matched = JobCounts::default();
        for r in &rows {
            matched.add(JobState::parse(&r.status), 1);
        }
        let mut batch = [0u8; 9];
        rand::rng().fill_bytes(&mut batch);
        let batch = format!("rb_{}", hex::encode(batch));
        let dry_run = input.dry_run.unwrap_or(false);
        if !dry_run && !rows.is_empty() {
            let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
            connection_store
                .requeue_events_in_batch(&ids, &batch)
                .await
                .map_err(internal)?;
            wake(ctx);
        }
        Ok(EventsReplayPayload {
            batch: Some(ReplayBatch {
                connection,
                scope,
                batch,
                events: rows.len() as i64,
                dry_run,
                matched,
            }),
            user_errors: vec![],
        })
    }
}

/// The scope, connection and batch key of a batch ID, if the batch's connection is the
/// viewer's. A batch ID names only a position in its own connection's jobs: another tenant's
/// finds nothing here.
async fn own_batch(
    ctx: &Context<'_>,
    gid: &GlobalId,
) -> Result<Option<(ConnectionScope, ConnectionId, String)>> {
    let viewer = ctx
        .data::<Viewer>()
        .map_err(|_| gql_error(Code::Unauthenticated, "an API key is required"))?;
    if gid.kind != NodeKind::ReplayBatch {
        return Ok(None);
    }
    let Some((connection, batch)) = gid.key.split_once('/') else {
        return Ok(None);
    };
    let Ok(connection) = ConnectionId::parse(connection) else {
        return Ok(None);
    };
    if !batch.starts_with("rb_") {
        return Ok(None);
    }
    let scope = store(ctx)?
        .connection_scope(viewer.tenant.tenant_id(), &connection)
        .await
        .map_err(internal)?;
    Ok(scope.map(|s| (s, connection, batch.to_string())))
}

/// How often `replayProgress` looks.
const PROGRESS_POLL: Duration = Duration::from_millis(500);

/// `replayProgress(batchId)`: the batch's counts whenever they change, ending after the first
/// report with nothing queued or running.
pub async fn progress_stream(
    ctx: &Context<'_>,
    batch_id: &ID,
) -> Result<impl Stream<Item = JobCounts> + use<>> {
    let not_found = || {
        gql_error(
            Code::NotFound,
            format!("no replay batch `{}` in this tenant", batch_id.as_str()),
        )
    };
    let gid = GlobalId::decode(batch_id).ok_or_else(not_found)?;
    let (scope, _, batch) = own_batch(ctx, &gid).await?.ok_or_else(not_found)?;
    let store: Store = store(ctx)?.clone();
    let connection = store.scoped(&scope);
    struct State {
        connection: ConnectionStore,
        batch: String,
        last: Option<JobCounts>,
        done: bool,
    }
    let state = State {
        connection,
        batch,
        last: None,
        done: false,
    };
    Ok(futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            match progress(&s.connection, &s.batch).await {
                Ok(now) if s.last.as_ref() != Some(&now) => {
                    s.done = now.queued == 0 && now.running == 0;
                    s.last = Some(now.clone());
                    return Some((now, s));
                }
                Ok(_) => {}
                // A store hiccup: look again next time.
                Err(e) => tracing::warn!("replayProgress: cannot read the batch: {e}"),
            }
            tokio::time::sleep(PROGRESS_POLL).await;
        }
    }))
}
