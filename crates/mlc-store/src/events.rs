//! Stripe events: group-committed intake, lookups and listings.

use std::sync::Arc;

use mlc_core::{UnixMillis, now_millis};
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db::{Db, db_err, get, insert_audit};
use crate::model::{
    EventFilter, EventSummary, NewAudit, NewEvent, NewJob, RecordOutcome, StoreError, StoredEvent,
};
use crate::queue::insert_job;
use crate::store::Store;

/// A message to the intake writer task.
pub(crate) enum WriterMsg {
    Record(RecordRequest),
    /// Answered once every earlier message has been committed.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct RecordRequest {
    event: NewEvent,
    job: Option<NewJob>,
    reply: oneshot::Sender<Result<RecordOutcome, StoreError>>,
}

/// The single intake writer: takes everything pending (up to `max_batch`), commits it in one
/// transaction, then answers each caller with its own outcome.
pub(crate) async fn writer_loop(db: Arc<Db>, mut rx: mpsc::Receiver<WriterMsg>, max_batch: usize) {
    let mut msgs = Vec::with_capacity(max_batch);
    loop {
        msgs.clear();
        if rx.recv_many(&mut msgs, max_batch).await == 0 {
            break; // every Store clone is gone
        }
        let mut batch = Vec::with_capacity(msgs.len());
        let mut flushes = Vec::new();
        for m in msgs.drain(..) {
            match m {
                WriterMsg::Record(r) => batch.push(r),
                WriterMsg::Flush(f) => flushes.push(f),
            }
        }
        if !batch.is_empty() {
            commit_batch(&db, batch).await;
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

async fn commit_batch(db: &Db, batch: Vec<RecordRequest>) {
    let items: Vec<(&NewEvent, Option<&NewJob>)> =
        batch.iter().map(|r| (&r.event, r.job.as_ref())).collect();
    match record_batch(db, &items).await {
        Ok(outcomes) => {
            for (req, outcome) in batch.into_iter().zip(outcomes) {
                // A caller that went away (client disconnected) still had its event stored.
                let _ = req.reply.send(Ok(outcome));
            }
        }
        Err(e) if batch.len() > 1 => {
            // One bad delivery (or a deadlock with another instance) must not fail its
            // neighbours: redo each in its own transaction so everyone gets their own answer.
            tracing::warn!(error = %e, size = batch.len(), "group commit failed; retrying one by one");
            for req in batch {
                let result = record_batch(db, &[(&req.event, req.job.as_ref())])
                    .await
                    .and_then(|v| {
                        v.into_iter()
                            .next()
                            .ok_or_else(|| StoreError::Database("empty batch result".into()))
                    });
                let _ = req.reply.send(result);
            }
        }
        Err(e) => {
            for req in batch {
                let _ = req.reply.send(Err(StoreError::Database(e.to_string())));
            }
        }
    }
}

/// Records `items` in one transaction. Items are applied in event-ID order (stable, so repeated
/// IDs keep their arrival order) so two PostgreSQL instances lock rows in the same order.
async fn record_batch(
    db: &Db,
    items: &[(&NewEvent, Option<&NewJob>)],
) -> Result<Vec<RecordOutcome>, StoreError> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*a].0.event_id.cmp(&items[*b].0.event_id));
    let now = now_millis();
    let _guard = db.write_guard().await;
    let mut tx = db.begin_write().await?;
    let mut outcomes = vec![RecordOutcome::Duplicate; items.len()];
    for i in order {
        let (event, job) = items[i];
        outcomes[i] = record_one(&mut tx, event, job, now).await?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(outcomes)
}

async fn record_one(
    conn: &mut AnyConnection,
    ev: &NewEvent,
    job: Option<&NewJob>,
    now: UnixMillis,
) -> Result<RecordOutcome, StoreError> {
    let planned_job_id = job.map(|_| Uuid::now_v7().to_string());
    let inserted = sqlx::query(
        "INSERT INTO events (event_id, event_type, object_id, livemode, api_version, \
         stripe_created, raw_body, signature_header, received_at, handled, deliveries, \
         last_delivery_at, job_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(ev.event_id.clone())
    .bind(ev.event_type.clone())
    .bind(ev.object_id.clone())
    .bind(i64::from(ev.livemode))
    .bind(ev.api_version.clone())
    .bind(ev.stripe_created)
    .bind(ev.raw_body.clone())
    .bind(ev.signature_header.clone())
    .bind(ev.received_at)
    .bind(i64::from(ev.handled))
    .bind(ev.received_at)
    .bind(planned_job_id.clone())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();

    if inserted == 0 {
        let row = sqlx::query(
            "UPDATE events SET deliveries = deliveries + 1, last_delivery_at = $2 \
             WHERE event_id = $1 RETURNING deliveries",
        )
        .bind(ev.event_id.clone())
        .bind(ev.received_at)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        let deliveries: i64 = get(&row, "deliveries")?;
        let audit = NewAudit {
            event_id: Some(ev.event_id.clone()),
            stripe_object_id: ev.object_id.clone(),
            step: "duplicate_delivery".into(),
            message: format!(
                "Stripe delivered {} again (delivery {deliveries}); it was already stored, nothing changed",
                ev.event_id
            ),
            ..NewAudit::default()
        };
        insert_audit(conn, &audit, now).await?;
        return Ok(RecordOutcome::Duplicate);
    }

    let mut job_id = None;
    if let (Some(job), Some(planned)) = (job, planned_job_id) {
        let (actual, created) = insert_job(conn, &planned, job, now).await?;
        if actual != planned {
            // The dedupe key already had a job (e.g. enqueued by a backfill): link to that one.
            sqlx::query("UPDATE events SET job_id = $2 WHERE event_id = $1")
                .bind(ev.event_id.clone())
                .bind(actual.clone())
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
        }
        job_id = Some((actual, created));
    }

    let message = match &job_id {
        Some((id, true)) => format!(
            "Received {} ({}); stored and queued job {id}",
            ev.event_id, ev.event_type
        ),
        Some((id, false)) => format!(
            "Received {} ({}); stored; its work is already queued as job {id}",
            ev.event_id, ev.event_type
        ),
        None => format!("Received {} ({}); stored", ev.event_id, ev.event_type),
    };
    let received = NewAudit {
        event_id: Some(ev.event_id.clone()),
        job_id: job_id.as_ref().map(|(id, _)| id.clone()),
        stripe_object_id: ev.object_id.clone(),
        step: "received".into(),
        message,
        data: Some(serde_json::json!({
            "event_type": ev.event_type,
            "livemode": ev.livemode,
            "api_version": ev.api_version,
            "bytes": ev.raw_body.len(),
        })),
    };
    insert_audit(conn, &received, now).await?;
    if !ev.handled {
        let ignored = NewAudit {
            event_id: Some(ev.event_id.clone()),
            stripe_object_id: ev.object_id.clone(),
            step: "ignored".into(),
            message: format!(
                "The connector does not act on {} events; acknowledged to Stripe, nothing to do",
                ev.event_type
            ),
            ..NewAudit::default()
        };
        insert_audit(conn, &ignored, now).await?;
    }
    Ok(RecordOutcome::Stored)
}

const EVENT_COLUMNS: &str = "event_id, event_type, object_id, livemode, api_version, \
     stripe_created, raw_body, signature_header, received_at, handled, deliveries";

impl Store {
    /// Stores a verified delivery durably: the event (body byte-exact), its job when given, and
    /// audit entries (`received`, plus `ignored` when not handled), all in one transaction that is
    /// committed before this returns.
    ///
    /// A repeated event ID changes nothing but the delivery counter and a `duplicate_delivery`
    /// audit entry, and returns [`RecordOutcome::Duplicate`].
    ///
    /// Concurrent calls are group-committed by one writer task (on both backends: fewer commits
    /// help PostgreSQL too, and one code path is one thing to test). If a batch fails, each of its
    /// deliveries is retried alone, so one caller's error is never reported to another. A commit
    /// whose outcome was lost in transit (connection dropped during COMMIT) may be re-applied as
    /// a duplicate, which is still a correct answer for Stripe.
    pub async fn record_event(
        &self,
        event: &NewEvent,
        job: Option<NewJob>,
    ) -> Result<RecordOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        let msg = WriterMsg::Record(RecordRequest {
            event: event.clone(),
            job,
            reply,
        });
        self.writer
            .send(msg)
            .await
            .map_err(|_| StoreError::Database("the store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Database("the store's writer stopped".into()))?
    }

    /// The stored event, body included.
    pub async fn get_event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event_id.to_string())
            .fetch_optional(&self.db.pool)
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredEvent {
            event_id: get(&row, "event_id")?,
            event_type: get(&row, "event_type")?,
            object_id: get(&row, "object_id")?,
            livemode: get::<i64>(&row, "livemode")? != 0,
            api_version: get(&row, "api_version")?,
            stripe_created: get(&row, "stripe_created")?,
            raw_body: get(&row, "raw_body")?,
            signature_header: get(&row, "signature_header")?,
            received_at: get(&row, "received_at")?,
            handled: get::<i64>(&row, "handled")? != 0,
            deliveries: get(&row, "deliveries")?,
        }))
    }

    /// Events newest first with the state of their job (`ignored` when they have none).
    /// `limit <= 0` means 50; at most 1000 rows are returned.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        let mut sql = String::from(
            "SELECT e.event_id, e.event_type, e.object_id, e.received_at, \
             j.state AS job_state, j.attempts AS job_attempts, j.last_error AS job_last_error \
             FROM events e LEFT JOIN jobs j ON j.id = e.job_id WHERE 1 = 1",
        );
        let mut texts: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Parameters are numbered in the order they are bound: all texts first, then integers.
        let mut conds_text: Vec<String> = Vec::new();
        let mut conds_int: Vec<String> = Vec::new();
        match filter.status.as_deref() {
            None | Some("") => {}
            Some("ignored") => conds_text.push(" AND e.job_id IS NULL".into()),
            Some(s) => {
                texts.push(s.to_string());
                conds_text.push(format!(" AND j.state = ${}", texts.len()));
            }
        }
        if let Some(t) = filter.event_type.as_deref().filter(|t| !t.is_empty()) {
            texts.push(t.to_string());
            conds_text.push(format!(" AND e.event_type = ${}", texts.len()));
        }
        if let Some(id) = filter.stripe_id.as_deref().filter(|t| !t.is_empty()) {
            texts.push(id.to_string());
            let n = texts.len();
            conds_text.push(format!(" AND (e.event_id = ${n} OR e.object_id = ${n})"));
        }
        let base = texts.len();
        if let Some(after) = filter.received_after {
            ints.push(after);
            conds_int.push(format!(" AND e.received_at >= ${}", base + ints.len()));
        }
        if let Some(before) = filter.received_before {
            ints.push(before);
            conds_int.push(format!(" AND e.received_at < ${}", base + ints.len()));
        }
        for c in conds_text.iter().chain(conds_int.iter()) {
            sql.push_str(c);
        }
        let limit = if filter.limit <= 0 {
            50
        } else {
            filter.limit.min(1000)
        };
        ints.push(limit);
        ints.push(filter.offset.max(0));
        let n = base + ints.len();
        sql.push_str(&format!(
            " ORDER BY e.received_at DESC, e.event_id DESC LIMIT ${} OFFSET ${n}",
            n - 1
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in texts {
            q = q.bind(t);
        }
        for i in ints {
            q = q.bind(i);
        }
        let rows = q.fetch_all(&self.db.pool).await.map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let state: Option<String> = get(row, "job_state")?;
                Ok(EventSummary {
                    event_id: get(row, "event_id")?,
                    event_type: get(row, "event_type")?,
                    object_id: get(row, "object_id")?,
                    received_at: get(row, "received_at")?,
                    status: state.unwrap_or_else(|| "ignored".into()),
                    attempts: get::<Option<i64>>(row, "job_attempts")?.unwrap_or(0),
                    last_error: get(row, "job_last_error")?,
                })
            })
            .collect()
    }

    /// Number of distinct events stored.
    pub async fn count_events(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM events")
            .fetch_one(&self.db.pool)
            .await
            .map_err(db_err)?;
        get(&row, "n")
    }
}
