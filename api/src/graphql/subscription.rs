//! Subscriptions over `graphql-transport-ws` at `/graphql/ws`. The API key is given in
//! `connection_init` (`{"Authorization": "Bearer mlck_…"}`; browsers cannot set headers on a
//! WebSocket). A subscription reads through the viewer's tenant like a query, so it can only
//! ever carry that tenant's events.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_graphql::{Context, ID, Result, Subscription as SubscriptionObject};
use futures::Stream;
use mlc_core::ConnectionId;
use mlc_store::{ConnectionStore, Store};

use super::errors::{Code, gql_error};
use super::events::EventSummary;
use super::schema::Viewer;

/// How often a subscription looks for changes. The store is the source (not this process's
/// memory), so changes made by any instance are seen.
const POLL: Duration = Duration::from_millis(500);

pub struct Subscription;

#[SubscriptionObject]
impl Subscription {
    /// Each time one of the connection's events changes state (queued, running, waiting,
    /// succeeded, failed), from now on.
    async fn event_updated(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
    ) -> Result<impl Stream<Item = EventSummary> + use<>> {
        let viewer = ctx
            .data::<Viewer>()
            .map_err(|_| gql_error(Code::Unauthenticated, "an API key is required"))?;
        let store = ctx
            .data::<Store>()
            .map_err(|_| gql_error(Code::Internal, "internal error"))?;
        let (id, scope) = super::schema::viewer_connection(ctx, viewer, &connection_id)
            .await?
            .ok_or_else(|| {
                gql_error(
                    Code::NotFound,
                    format!("no connection `{}` in this tenant", connection_id.as_str()),
                )
            })?;
        let state = Watch {
            store: store.scoped(&scope),
            connection: id,
            since: mlc_core::now_millis(),
            seen_at_since: HashSet::new(),
            ready: VecDeque::new(),
        };
        Ok(futures::stream::unfold(state, |mut w| async move {
            loop {
                if let Some(next) = w.ready.pop_front() {
                    return Some((next, w));
                }
                tokio::time::sleep(POLL).await;
                w.poll().await;
            }
        }))
    }
    /// A replay batch's jobs by state, each time they change; ends once none is queued or
    /// running.
    async fn replay_progress(
        &self,
        ctx: &Context<'_>,
        batch_id: ID,
    ) -> Result<impl Stream<Item = super::schema::JobCounts> + use<>> {
        super::replay::progress_stream(ctx, &batch_id).await
    }
}

/// What one `eventUpdated` subscription has seen.
struct Watch {
    store: ConnectionStore,
    connection: ConnectionId,
    /// Changes at or after this time are looked for.
    since: i64,
    /// Changes already sent that happened exactly at `since` (the next look includes `since`).
    seen_at_since: HashSet<(String, String)>,
    ready: VecDeque<EventSummary>,
}

impl Watch {
    async fn poll(&mut self) {
        let changed = match self.store.events_changed_since(self.since, 200).await {
            Ok(c) => c,
            Err(e) => {
                // A store hiccup: look again next time (nothing is skipped, `since` stays).
                tracing::warn!("subscription: cannot read changes: {e}");
                return;
            }
        };
        for (row, at) in changed {
            let key = (row.event_id.clone(), row.status.clone());
            if at == self.since && self.seen_at_since.contains(&key) {
                continue;
            }
            if at > self.since {
                self.since = at;
                self.seen_at_since.clear();
            }
            self.seen_at_since.insert(key);
            self.ready
                .push_back(EventSummary::new(self.connection.clone(), row));
        }
    }
}
