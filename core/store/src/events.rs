//! Stripe events: group-committed intake, lookups and listings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mlc_core::{UnixMillis, now_millis};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Transaction};
use tokio::sync::{Mutex, RwLock, mpsc, oneshot};
use uuid::Uuid;

use crate::db::{Db, Rls, audit_from_row, db_err, get, insert_audit};
use crate::model::{
    AuditEntry, Backend, EventFilter, EventSummary, JobOutcome, JobState, NewAudit, NewEvent,
    NewJob, RecordOutcome, StoreError, StoredEvent,
};
use crate::queue::{Start, defer_in, finish_in, start_in};
use crate::retry::RetryPolicy;
use crate::scope::{ConnectionScope, ConnectionStore};
use crate::store::Store;
use crate::tasks::{NewTask, prioritise_in, pull_forward_in, push_tasks_in};

/// A message to the writer task.
pub(crate) enum WriterMsg {
    Record(Box<RecordRequest>),
    /// A worker's write (claim, job outcome, audit entry), committed with the next batch.
    Op(Box<WriteOp>),
    /// Answered once every earlier message has been committed.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct RecordRequest {
    scope: ConnectionScope,
    event: NewEvent,
    job: Option<NewJob>,
    reply: oneshot::Sender<Result<RecordOutcome, StoreError>>,
}

/// The worker's writes that ride along with the intake's group commit. Each is applied in
/// arrival order after the batch's deliveries and answered only once the transaction holding it
/// has committed.
pub(crate) enum WriteOp {
    Start {
        job_id: String,
        task_id: String,
        worker: String,
        reply: oneshot::Sender<Result<Start, StoreError>>,
    },
    Finish {
        job_id: String,
        task_id: String,
        outcome: JobOutcome,
        reply: oneshot::Sender<Result<JobState, StoreError>>,
    },
    Audit {
        scope: ConnectionScope,
        entry: NewAudit,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    /// A job put off unstarted (see [`Store::defer`]).
    Defer {
        job_id: String,
        task_id: String,
        after_ms: i64,
        reply: oneshot::Sender<Result<Option<String>, StoreError>>,
    },
    /// A put-off task made due now (see [`Store::pull_forward`]).
    PullForward {
        task_id: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// A posting or link the job wrote (see [`crate::links::LinkWrite`]).
    Link {
        scope: ConnectionScope,
        write: crate::links::LinkWrite,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What an op produced inside the transaction, sent once it has committed.
// One per op, moved straight into its reply: boxing the started job would buy nothing.
#[allow(clippy::large_enum_variant)]
enum OpResult {
    Start(Result<Start, StoreError>),
    Finish(Result<JobState, StoreError>),
    Audit(Result<i64, StoreError>),
    Link(Result<(), StoreError>),
    Defer(Result<Option<String>, StoreError>),
    PullForward(Result<bool, StoreError>),
}

impl WriteOp {
    /// Applies the op on `conn`. `Err` is a database error that spoils the transaction; an
    /// answer that changes nothing (a lost lease) is `Ok` with the error inside.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        db: &Db,
        retry: &RetryPolicy,
        now: UnixMillis,
    ) -> Result<OpResult, StoreError> {
        Ok(match self {
            WriteOp::Start {
                job_id,
                task_id,
                worker,
                ..
            } => OpResult::Start(Ok(start_in(conn, job_id, task_id, worker, now).await?)),
            WriteOp::Finish {
                job_id,
                task_id,
                outcome,
                ..
            } => match finish_in(
                conn, db.backend, &db.queue, retry, job_id, task_id, outcome, now,
            )
            .await
            {
                Err(e @ StoreError::NotRunning(_)) => OpResult::Finish(Err(e)),
                other => OpResult::Finish(Ok(other?)),
            },
            WriteOp::Audit { scope, entry, .. } => {
                OpResult::Audit(Ok(insert_audit(conn, scope, entry, now).await?))
            }
            WriteOp::Defer {
                job_id,
                task_id,
                after_ms,
                ..
            } => OpResult::Defer(Ok(defer_in(
                conn, db.backend, &db.queue, job_id, task_id, *after_ms, now,
            )
            .await?)),
            WriteOp::PullForward { task_id, .. } => OpResult::PullForward(Ok(pull_forward_in(
                conn,
                db.backend,
                &db.queue,
                std::slice::from_ref(task_id),
            )
            .await?
                > 0)),
            WriteOp::Link { scope, write, .. } => {
                write.apply(conn, db.backend, scope, now).await?;
                OpResult::Link(Ok(()))
            }
        })
    }

    fn answer(self, result: OpResult) {
        // A caller that went away still had its write committed; nothing to tell it.
        match (self, result) {
            (WriteOp::Start { reply, .. }, OpResult::Start(r)) => {
                let _ = reply.send(r);
            }
            (WriteOp::Finish { reply, .. }, OpResult::Finish(r)) => {
                let _ = reply.send(r);
            }
            (WriteOp::Audit { reply, .. }, OpResult::Audit(r)) => {
                let _ = reply.send(r);
            }
            (WriteOp::Link { reply, .. }, OpResult::Link(r)) => {
                let _ = reply.send(r);
            }
            (WriteOp::Defer { reply, .. }, OpResult::Defer(r)) => {
                let _ = reply.send(r);
            }
            (WriteOp::PullForward { reply, .. }, OpResult::PullForward(r)) => {
                let _ = reply.send(r);
            }
            (op, _) => op.fail(StoreError::Database("mismatched write result".into())),
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            WriteOp::Start { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            WriteOp::Finish { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            WriteOp::Audit { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            WriteOp::Link { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            WriteOp::Defer { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            WriteOp::PullForward { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

impl RecordRequest {
    fn item(&self) -> Item<'_> {
        Item {
            scope: &self.scope,
            event: &self.event,
            job: self.job.as_ref(),
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Database("the store's writer stopped".into())
}

impl Store {
    /// Hands a worker's write (`op`, made with the reply channel) to the writer task and waits
    /// for its answer, sent once the batch holding it has committed.
    pub(crate) async fn write_op<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriterMsg::Op(Box::new(op(reply))))
            .await
            .map_err(|_| StoreError::Database("the store is closed".into()))?;
        rx.await.map_err(|_| writer_stopped())?
    }
}

/// The writer: takes everything pending (up to `max_batch`), commits it in one transaction,
/// then answers each caller with its own outcome. SQLite runs one (it has one writer anyway);
/// PostgreSQL runs several so that one batch's round trips and commit overlap the next.
///
/// Intake deliveries and the worker's writes (claims, job outcomes, audit entries) share the
/// batches: on SQLite every commit is an fsync under the one write lock, so a worker committing
/// on its own would take turns with the intake instead of riding along.
///
/// `inflight` is held shared while a batch is being committed; a flush takes it exclusively, so
/// it is answered only after every batch taken before it has been committed.
pub(crate) async fn writer_loop(
    db: Arc<Db>,
    retry: RetryPolicy,
    rx: Arc<Mutex<mpsc::Receiver<WriterMsg>>>,
    max_batch: usize,
    inflight: Arc<RwLock<()>>,
) {
    let mut msgs = Vec::with_capacity(max_batch);
    let mut held: Held = None;
    loop {
        msgs.clear();
        let in_flight = {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut msgs, max_batch).await == 0 {
                break; // every Store clone is gone
            }
            // Callers answered by the previous batch are usually about to send their next
            // delivery; yielding once lets them join this batch instead of waiting a whole commit
            // for the next. Costs microseconds when idle.
            if msgs.len() < max_batch {
                tokio::task::yield_now().await;
                while msgs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(m) => msgs.push(m),
                        Err(_) => break,
                    }
                }
            }
            // Taken before the receiver is released, so a later flush waits for this batch.
            inflight.clone().read_owned().await
        };
        let mut batch = Vec::with_capacity(msgs.len());
        let mut ops = Vec::new();
        let mut flushes = Vec::new();
        for m in msgs.drain(..) {
            match m {
                WriterMsg::Record(r) => batch.push(*r),
                WriterMsg::Op(op) => ops.push(*op),
                WriterMsg::Flush(f) => flushes.push(f),
            }
        }
        if ops.is_empty() {
            if !batch.is_empty() {
                commit_batch(&db, &mut held, batch).await;
            }
        } else {
            commit_with_ops(&db, &mut held, &retry, batch, ops).await;
        }
        drop(in_flight);
        if !flushes.is_empty() {
            // `Store::close` flushes and then closes the pool, which waits for every connection
            // to come back: give ours back (a later write, if any, acquires one again).
            held = None;
            let _all_done = inflight.write().await;
            for f in flushes {
                let _ = f.send(());
            }
        }
    }
}

/// The writer's own connection on SQLite, kept from batch to batch so that its page cache stays
/// warm: a pool connection picked at random would first re-read every B-tree page the previous
/// writer changed (SQLite drops a connection's cache when another connection wrote).
type Held = Option<PoolConnection<Any>>;

/// Begins a write transaction: on SQLite on the held connection (acquired when there is none),
/// on PostgreSQL on any pool connection (each writer task there would hold one otherwise).
///
/// Its batches hold several tenants' writes, each row written with its own scope's tenant, so
/// the transaction is the store's cross-tenant kind for row-level security.
async fn begin<'a>(db: &Db, held: &'a mut Held) -> Result<Transaction<'a, Any>, StoreError> {
    if db.backend != Backend::Sqlite {
        return db.begin_write_as(Rls::AllTenants).await;
    }
    let conn = match held.take() {
        Some(c) => c,
        None => db.pool.acquire().await.map_err(db_err)?,
    };
    held.insert(conn)
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db_err)
}

/// Deliveries and worker writes in one transaction. If it fails, nothing of it was applied, so
/// each part is redone on its own (the deliveries as [`commit_batch`] does, each op in its own
/// transaction) and every caller gets its own answer.
async fn commit_with_ops(
    db: &Db,
    held: &mut Held,
    retry: &RetryPolicy,
    batch: Vec<RecordRequest>,
    ops: Vec<WriteOp>,
) {
    let t0 = std::time::Instant::now();
    let result = async {
        let items: Vec<Item<'_>> = batch.iter().map(RecordRequest::item).collect();
        let now = now_millis();
        let _guard = db.write_guard_as(crate::db::LockHolder::Writer).await;
        let mut tx = begin(db, held).await?;
        let outcomes = if items.is_empty() {
            Vec::new()
        } else {
            record_batch_in(&mut tx, db, &items, now).await?
        };
        let mut results = Vec::with_capacity(ops.len());
        for op in &ops {
            results.push(op.apply(&mut tx, db, retry, now).await?);
        }
        tx.commit().await.map_err(db_err)?;
        Ok::<_, StoreError>((outcomes, results))
    }
    .await;
    tracing::debug!(
        deliveries = batch.len(),
        ops = ops.len(),
        elapsed_us = t0.elapsed().as_micros() as u64,
        ok = result.is_ok(),
        "group commit"
    );
    match result {
        Ok((outcomes, results)) => {
            for (req, outcome) in batch.into_iter().zip(outcomes) {
                let _ = req.reply.send(Ok(outcome));
            }
            for (op, r) in ops.into_iter().zip(results) {
                op.answer(r);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, deliveries = batch.len(), ops = ops.len(),
                "group commit failed; retrying each write on its own");
            *held = None; // in case the connection is what failed
            if !batch.is_empty() {
                commit_batch(db, held, batch).await;
            }
            for op in ops {
                let alone = async {
                    let now = now_millis();
                    let _guard = db.write_guard_as(crate::db::LockHolder::Writer).await;
                    let mut tx = begin(db, held).await?;
                    let r = op.apply(&mut tx, db, retry, now).await?;
                    tx.commit().await.map_err(db_err)?;
                    Ok::<_, StoreError>(r)
                }
                .await;
                match alone {
                    Ok(r) => op.answer(r),
                    Err(e) => op.fail(e),
                }
            }
        }
    }
}

/// Deliveries alone in one transaction; if it fails, each again in its own.
async fn commit_batch(db: &Db, held: &mut Held, batch: Vec<RecordRequest>) {
    let items: Vec<Item<'_>> = batch.iter().map(RecordRequest::item).collect();
    let t0 = std::time::Instant::now();
    let r = record_batch(db, held, &items).await;
    tracing::debug!(
        size = items.len(),
        elapsed_us = t0.elapsed().as_micros() as u64,
        ok = r.is_ok(),
        "group commit"
    );
    match r {
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
            *held = None; // in case the connection is what failed
            for req in batch {
                let result = record_batch(db, held, &[req.item()]).await.and_then(|v| {
                    v.into_iter()
                        .next()
                        .ok_or_else(|| StoreError::Database("empty batch result".into()))
                });
                let _ = req.reply.send(result);
            }
        }
        Err(e) => {
            *held = None; // in case the connection is what failed
            for req in batch {
                let _ = req.reply.send(Err(StoreError::Database(e.to_string())));
            }
        }
    }
}

/// Rows per multi-row INSERT: well under SQLite's 32,766 bound-parameter limit (13 per event).
const CHUNK: usize = 200;

/// `n` numbered parameters from `$first` on, for an `IN (…)` list (`row`: each as a VALUES row,
/// `($3), ($4)`). Both stores take `$N`; these lists follow other numbered parameters, and are
/// short and off the hot path (the writer's multi-row statements use [`values_sql`]).
pub(crate) fn numbered_params(first: usize, n: usize, row: bool) -> String {
    let (open, close) = if row { ("(", ")") } else { ("", "") };
    (first..first + n)
        .map(|k| format!("{open}${k}{close}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `n` rows of `template` for a multi-row VALUES: every `?` in a column is the next parameter,
/// and the rest is copied as it is (`'queued'`, `to_timestamp(? / 1000.0)`).
///
/// PostgreSQL numbers them (`($1, 1, $2), ($3, 1, $4)`). SQLite gets bare `?`: it looks a
/// numbered or named parameter up in a list, by a linear scan, both when it prepares the
/// statement and each time sqlx binds one, so a 200-row batch's 2,600 `$N` cost millions of
/// comparisons. That was 40% of the writer thread's CPU during a burst of webhooks.
pub(crate) fn values_sql(backend: Backend, n: usize, template: &[&str]) -> String {
    let mut out = String::new();
    let mut k = 0;
    for r in 0..n {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for (c, col) in template.iter().enumerate() {
            if c > 0 {
                out.push_str(", ");
            }
            for ch in col.chars() {
                match (ch, backend) {
                    ('?', Backend::Postgres) => {
                        k += 1;
                        out.push('$');
                        out.push_str(&k.to_string());
                    }
                    _ => out.push(ch),
                }
            }
        }
        out.push(')');
    }
    out
}

/// Records `items` in one transaction with a handful of multi-row statements (per-statement
/// overhead, not fsync, dominates on SQLite). Returns one outcome per item, in input order.
///
/// The first occurrence of an event ID that is not yet stored is `Stored`; every other one is a
/// `Duplicate`. Rows are written in event-ID order so two PostgreSQL instances lock in the same
/// order.
async fn record_batch(
    db: &Db,
    held: &mut Held,
    items: &[Item<'_>],
) -> Result<Vec<RecordOutcome>, StoreError> {
    let now = now_millis();
    let _guard = db.write_guard_as(crate::db::LockHolder::Writer).await;
    let mut tx = begin(db, held).await?;
    let outcomes = record_batch_in(&mut tx, db, items, now).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(outcomes)
}

/// One delivery of a batch: the connection it came in on, the event, its job.
pub(crate) struct Item<'a> {
    pub(crate) scope: &'a ConnectionScope,
    pub(crate) event: &'a NewEvent,
    pub(crate) job: Option<&'a NewJob>,
}

impl Item<'_> {
    /// Events are unique per connection: the same Stripe event delivered to two connections
    /// (two tenants connecting one Stripe account) is two events.
    fn key(&self) -> (&str, &str, &str) {
        (
            self.scope.tenant_id().as_str(),
            self.scope.connection_id().as_str(),
            self.event.event_id.as_str(),
        )
    }
}

/// [`record_batch`] inside the caller's transaction (which holds the write guard).
async fn record_batch_in(
    tx: &mut AnyConnection,
    db: &Db,
    items: &[Item<'_>],
    now: UnixMillis,
) -> Result<Vec<RecordOutcome>, StoreError> {
    type Key<'k> = (&'k str, &'k str, &'k str);
    let mut first_of: HashMap<Key<'_>, usize> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        first_of.entry(it.key()).or_insert(i);
    }
    let mut candidates: Vec<usize> = first_of.values().copied().collect();
    candidates.sort_by(|a, b| items[*a].key().cmp(&items[*b].key()));
    let planned: Vec<Option<String>> = items
        .iter()
        .map(|it| it.job.map(|_| Uuid::now_v7().to_string()))
        .collect();
    let tasks: Vec<Option<NewTask>> = items
        .iter()
        .zip(&planned)
        .map(|(it, id)| Some(NewTask::new(id.as_ref()?, it.scope, it.job?.run_at)))
        .collect();

    // 1. Events: whichever keys come back were new.
    let mut inserted: HashSet<(String, String, String)> = HashSet::new();
    for chunk in candidates.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO events (tenant_id, connection_id, event_id, event_type, object_id, \
             livemode, api_version, stripe_created, raw_body, signature_header, received_at, \
             handled, deliveries, last_delivery_at, job_id) VALUES {} \
             ON CONFLICT (tenant_id, connection_id, event_id) DO NOTHING \
             RETURNING tenant_id, connection_id, event_id",
            values_sql(
                db.backend,
                chunk.len(),
                &[
                    "?", "?", "?", "?", "?", "?", "?", "?", "?", "?", "?", "?", "1", "?", "?"
                ]
            )
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &i in chunk {
            let ev = items[i].event;
            q = q
                .bind(items[i].scope.t())
                .bind(items[i].scope.c())
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
                .bind(planned[i].clone());
        }
        for row in q.fetch_all(&mut *tx).await.map_err(db_err)? {
            inserted.insert((
                get(&row, "tenant_id")?,
                get(&row, "connection_id")?,
                get(&row, "event_id")?,
            ));
        }
    }
    let is_new = |it: &Item<'_>| {
        let (t, c, e) = it.key();
        inserted.contains(&(t.to_string(), c.to_string(), e.to_string()))
    };

    // 2. Jobs of the new events.
    let with_job: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|i| is_new(&items[*i]) && items[*i].job.is_some())
        .collect();
    let mut created: HashSet<String> = HashSet::new();
    for chunk in with_job.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO sync_jobs (id, tenant_id, connection_id, kind, event_id, payload, dedupe_key, \
             state, attempts, max_attempts, run_at, created_at, updated_at, task_id) VALUES {} \
             ON CONFLICT (tenant_id, connection_id, dedupe_key) DO NOTHING RETURNING id",
            values_sql(
                db.backend,
                chunk.len(),
                &[
                    "?", "?", "?", "?", "?", "?", "?", "'queued'", "0", "?", "?", "?", "?", "?"
                ]
            )
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for &i in chunk {
            let Some(job) = items[i].job else { continue };
            q = q
                .bind(planned[i].clone())
                .bind(items[i].scope.t())
                .bind(items[i].scope.c())
                .bind(job.kind.clone())
                .bind(job.event_id.clone())
                .bind(job.payload.to_string())
                .bind(job.dedupe_key.clone())
                .bind(i64::from(job.max_attempts.max(1)))
                .bind(job.run_at)
                .bind(now)
                .bind(now)
                .bind(tasks[i].as_ref().map(|t| t.id.clone()));
        }
        for row in q.fetch_all(&mut *tx).await.map_err(db_err)? {
            created.insert(get(&row, "id")?);
        }
    }
    // 2b. Their apalis tasks, in this transaction: an acknowledged delivery always has its task,
    // and a duplicate (no new job) adds none.
    let mut new_tasks: Vec<NewTask> = with_job
        .iter()
        .filter(|i| planned[**i].as_ref().is_some_and(|id| created.contains(id)))
        .filter_map(|i| tasks[*i].clone())
        .collect();
    if !new_tasks.is_empty() {
        prioritise_in(&mut *tx, db.backend, &mut new_tasks).await?;
        push_tasks_in(&mut *tx, db.backend, &db.queue, &new_tasks).await?;
    }
    let mut job_of: HashMap<usize, (String, bool)> = HashMap::new();
    for &i in &with_job {
        let (Some(planned_id), Some(job)) = (&planned[i], items[i].job) else {
            continue;
        };
        if created.contains(planned_id) {
            job_of.insert(i, (planned_id.clone(), true));
            continue;
        }
        // The dedupe key already had a job (e.g. enqueued by a backfill): link to that one.
        let scope = items[i].scope;
        let row = sqlx::query(
            "SELECT id FROM sync_jobs WHERE dedupe_key = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(job.dedupe_key.clone())
        .bind(scope.t())
        .bind(scope.c())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let actual: String = get(&row, "id")?;
        sqlx::query(
            "UPDATE events SET job_id = $2 \
             WHERE event_id = $1 AND tenant_id = $3 AND connection_id = $4",
        )
        .bind(items[i].event.event_id.clone())
        .bind(actual.clone())
        .bind(scope.t())
        .bind(scope.c())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        job_of.insert(i, (actual, false));
    }

    // 3. Duplicates: one counter update per distinct key, numbered in arrival order.
    let mut dup_count: BTreeMap<Key<'_>, i64> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        if first_of[&it.key()] != i || !is_new(it) {
            *dup_count.entry(it.key()).or_default() += 1;
        }
    }
    let mut next_delivery: HashMap<Key<'_>, i64> = HashMap::new();
    for (key, k) in &dup_count {
        let (tenant, connection, id) = *key;
        let last_at = items
            .iter()
            .filter(|it| it.key() == *key)
            .map(|it| it.event.received_at)
            .max()
            .unwrap_or(now);
        let row = sqlx::query(
            "UPDATE events SET deliveries = deliveries + $2, last_delivery_at = $3 \
             WHERE event_id = $1 AND tenant_id = $4 AND connection_id = $5 RETURNING deliveries",
        )
        .bind(id.to_string())
        .bind(*k)
        .bind(last_at)
        .bind(tenant.to_string())
        .bind(connection.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let total: i64 = get(&row, "deliveries")?;
        next_delivery.insert(*key, total - k + 1);
    }

    // 4. Outcomes and audit entries, in arrival order.
    let mut outcomes = Vec::with_capacity(items.len());
    let mut audits: Vec<(&ConnectionScope, NewAudit)> = Vec::with_capacity(items.len() + 4);
    for (i, it) in items.iter().enumerate() {
        let ev = it.event;
        let stored = first_of[&it.key()] == i && is_new(it);
        if stored {
            outcomes.push(RecordOutcome::Stored);
            audits.extend(
                stored_audits(ev, job_of.get(&i))
                    .into_iter()
                    .map(|a| (it.scope, a)),
            );
        } else {
            outcomes.push(RecordOutcome::Duplicate);
            let n = next_delivery.get_mut(&it.key()).map(|n| {
                *n += 1;
                *n - 1
            });
            audits.push((
                it.scope,
                NewAudit {
                    event_id: Some(ev.event_id.clone()),
                    stripe_object_id: ev.object_id.clone(),
                    step: "duplicate_delivery".into(),
                    message: format!(
                        "Stripe delivered {} again (delivery {}); it was already stored, nothing changed",
                        ev.event_id,
                        n.unwrap_or(0)
                    ),
                    ..NewAudit::default()
                },
            ));
        }
    }
    for chunk in audits.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO audit (at, event_id, job_id, stripe_object_id, step, message, data, \
             tenant_id, connection_id) VALUES {}",
            values_sql(
                db.backend,
                chunk.len(),
                &["?", "?", "?", "?", "?", "?", "?", "?", "?"]
            )
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (scope, a) in chunk {
            q = q
                .bind(now)
                .bind(a.event_id.clone())
                .bind(a.job_id.clone())
                .bind(a.stripe_object_id.clone())
                .bind(a.step.clone())
                .bind(a.message.clone())
                .bind(a.data.as_ref().map(|d| d.to_string()))
                .bind(scope.t())
                .bind(scope.c());
        }
        q.execute(&mut *tx).await.map_err(db_err)?;
    }
    Ok(outcomes)
}

/// `received` (and `ignored` when the connector does not act on the type) for a new event.
fn stored_audits(ev: &NewEvent, job: Option<&(String, bool)>) -> Vec<NewAudit> {
    let message = match job {
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
    let mut out = vec![NewAudit {
        event_id: Some(ev.event_id.clone()),
        job_id: job.map(|(id, _)| id.clone()),
        stripe_object_id: ev.object_id.clone(),
        step: "received".into(),
        message,
        data: Some(serde_json::json!({
            "event_type": ev.event_type,
            "livemode": ev.livemode,
            "api_version": ev.api_version,
            "bytes": ev.raw_body.len(),
        })),
    }];
    if !ev.handled {
        out.push(NewAudit {
            event_id: Some(ev.event_id.clone()),
            stripe_object_id: ev.object_id.clone(),
            step: "ignored".into(),
            message: format!(
                "The connector does not act on {} events; acknowledged to Stripe, nothing to do",
                ev.event_type
            ),
            ..NewAudit::default()
        });
    }
    out
}

/// A status filter lists from the jobs (and sorts them) when a connection has at most this many
/// jobs in that state; with more, walking the list in its order finds a page's worth sooner.
/// From the jobs, a page costs each of those jobs (about 12 µs each in `bench events`, either
/// backend); the walk costs each entry it passes over with its job (about 4 µs), some 50 ×
/// events / jobs of them a page. For a connection of 100,000 events the two meet near 1,250
/// jobs; for a million, near 4,000 (where both cost some 50 ms a page: BENCHMARKS.md, "GraphQL
/// events query").
pub(crate) const FEW_JOBS: i64 = 1_500;

const EVENT_COLUMNS: &str = "event_id, event_type, object_id, livemode, api_version, \
     stripe_created, raw_body, signature_header, received_at, handled, deliveries";

impl ConnectionStore {
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
        let _waiting = self.store.db.intake.enter();
        let (reply, rx) = oneshot::channel();
        let msg = WriterMsg::Record(Box::new(RecordRequest {
            scope: self.scope.clone(),
            event: event.clone(),
            job,
            reply,
        }));
        self.store
            .writer
            .send(msg)
            .await
            .map_err(|_| StoreError::Database("the store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Database("the store's writer stopped".into()))?
    }

    /// The stored event, body included.
    pub async fn get_event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE event_id = $1 AND tenant_id = $2 AND connection_id = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event_id.to_string())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
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
    ///
    /// Paging: `after` (keyset) starts after a listed event's position, whatever was inserted
    /// since, and costs the same on every page; `offset` skips rows (after `after`, when both
    /// are given), which walks over them all and shifts when events arrive.
    ///
    /// Plans (migration 0005's indexes; both backends), in two steps: the page's keys from the
    /// indexes alone, then its rows by key. The list is walked in its order on `events_listing`,
    /// or by type on `events_type` (both end in `received_at, event_id, job_id`), so a page
    /// reads the index entries it passes over and, under a status filter, each one's job by its
    /// key: never an event row it does not return. A status few of the connection's jobs have
    /// (at most [`FEW_JOBS`]: failed, waiting or running, as a rule) would make that walk pass
    /// over most of the list on every page, so such a list starts from those jobs instead
    /// (`jobs_connection_state`; their events by `events_job`) and sorts them; reading at most
    /// `FEW_JOBS + 1` of them decides. `ignored` walks `events_job`'s entries without a job.
    /// Each plan is written so that no join order the planner may pick (without statistics, on
    /// a new PostgreSQL table) costs more than one pass over the connection's list.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        let mut conn = self.store.db.read(&self.scope).await?;
        // $1 and $2 are the scope; the filters' texts follow, then the integers.
        let mut texts: Vec<String> = vec![self.scope.t(), self.scope.c()];
        let mut ints: Vec<i64> = Vec::new();
        // Parameters are numbered in the order they are bound: all texts first, then integers.
        let mut conds_text: Vec<String> = Vec::new();
        let mut conds_int: Vec<String> = Vec::new();
        // The few jobs a status filter starts from: the number of their first parameter, and
        // how many.
        let mut few = None;
        match filter.status.as_deref() {
            None | Some("") => {}
            Some("ignored") => conds_text.push(" AND e.job_id IS NULL".into()),
            Some(s) => match self.few_jobs_in(&mut conn, s).await? {
                Some(jobs) if jobs.is_empty() => return Ok(Vec::new()),
                Some(jobs) => {
                    few = Some((texts.len() + 1, jobs.len()));
                    texts.extend(jobs);
                }
                None => {
                    // A scalar subquery rather than a join: each row passed over costs one
                    // lookup by the job's key, on both backends, whatever the statistics say.
                    // PostgreSQL prices it with a default selectivity, often past
                    // `jit_above_cost`: compiling it would cost ~150 ms for a 10 ms query.
                    if self.store.db.backend == Backend::Postgres {
                        sqlx::query("SELECT set_config('jit', 'off', true)")
                            .execute(&mut *conn)
                            .await
                            .map_err(db_err)?;
                    }
                    texts.push(s.to_string());
                    conds_text.push(format!(
                        " AND (SELECT j.state FROM sync_jobs j WHERE j.id = e.job_id) = ${}",
                        texts.len()
                    ));
                }
            },
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
        if let Some(id) = filter.netsuite_id.as_deref().filter(|t| !t.is_empty()) {
            texts.push(id.to_string());
            let n = texts.len();
            conds_text.push(format!(
                " AND e.object_id IN (SELECT stripe_object_id FROM postings \
                 WHERE tenant_id = $1 AND connection_id = $2 \
                 AND (netsuite_internal_id = ${n} OR external_id = ${n}))"
            ));
        }
        // The keyset position's event ID is a text too, so it is numbered with them.
        let after = filter.after.as_ref().map(|after| {
            texts.push(after.event_id.clone());
            (texts.len(), after)
        });
        let base = texts.len();
        if let Some(after) = filter.received_after {
            ints.push(after);
            conds_int.push(format!(" AND e.received_at >= ${}", base + ints.len()));
        }
        if let Some(before) = filter.received_before {
            ints.push(before);
            conds_int.push(format!(" AND e.received_at < ${}", base + ints.len()));
        }
        if let Some((t, after)) = after {
            // One row-value comparison, in the listing's order: both backends take it as a
            // range on the index rather than a filter.
            ints.push(after.received_at);
            conds_int.push(format!(
                " AND (e.received_at, e.event_id) < (${}, ${t})",
                base + ints.len()
            ));
        }
        let limit = if filter.limit <= 0 {
            50
        } else {
            filter.limit.min(1000)
        };
        ints.push(limit);
        ints.push(filter.offset.max(0));
        let n = base + ints.len();

        // 1. The page's keys, from the indexes alone where the filters allow: no event row is
        // read for the rows passed over, skipped by the offset or sorted.
        let mut sql = match few {
            // The jobs first (the CTE's rows drive the join on both backends), then sorted.
            Some((first, n)) => format!(
                "WITH few(job_id) AS (VALUES {}) SELECT e.event_id AS page_event_id \
                 FROM few CROSS JOIN events e \
                 WHERE e.tenant_id = $1 AND e.connection_id = $2 AND e.job_id = few.job_id",
                numbered_params(first, n, true)
            ),
            None => "SELECT e.event_id AS page_event_id FROM events e \
                     WHERE e.tenant_id = $1 AND e.connection_id = $2"
                .to_string(),
        };
        for c in conds_text.iter().chain(conds_int.iter()) {
            sql.push_str(c);
        }
        sql.push_str(&format!(
            " ORDER BY e.received_at DESC, e.event_id DESC LIMIT ${} OFFSET ${n}",
            n - 1
        ));
        // Not prepared once and reused: PostgreSQL would switch to a generic plan after five
        // runs, blind to how few the jobs or keys are (one hashed every event of the connection
        // for 300 jobs: 60 ms instead of 3); this way each run is planned with its values.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        for t in texts {
            q = q.bind(t);
        }
        for i in ints {
            q = q.bind(i);
        }
        let keys: Vec<String> = q
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?
            .iter()
            .map(|row| get(row, "page_event_id"))
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }

        // 2. Its rows, by key, with their jobs; put in the keys' order here. The keys drive the
        // join, so each is one lookup by primary key (`event_id IN (…)` led SQLite, which keeps
        // no statistics for these tables, to scan the connection's list on a covering index).
        let list = numbered_params(3, keys.len(), true);
        let sql = format!(
            "WITH page(event_id) AS (VALUES {list}) \
             SELECT e.event_id, e.event_type, e.object_id, e.received_at, \
             j.state AS job_state, j.attempts AS job_attempts, j.last_error AS job_last_error \
             FROM page CROSS JOIN events e LEFT JOIN sync_jobs j ON j.id = e.job_id \
             WHERE e.tenant_id = $1 AND e.connection_id = $2 AND e.event_id = page.event_id"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(self.scope.t())
            .bind(self.scope.c());
        for k in &keys {
            q = q.bind(k.clone());
        }
        let rows = q.fetch_all(&mut *conn).await.map_err(db_err)?;
        let place: HashMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let mut page = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        page.sort_by_key(|e| place.get(e.event_id.as_str()).copied());
        Ok(page)
    }

    /// The connection's jobs in `state` when there are at most [`FEW_JOBS`] of them (`None`
    /// when there are more; reads at most one more from the `jobs_connection_state` index).
    async fn few_jobs_in(
        &self,
        conn: &mut AnyConnection,
        state: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let sql = format!(
            "SELECT id FROM sync_jobs WHERE tenant_id = $1 AND connection_id = $2 AND state = $3 \
             LIMIT {}",
            FEW_JOBS + 1
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.scope.t())
            .bind(self.scope.c())
            .bind(state.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
        if rows.len() as i64 > FEW_JOBS {
            return Ok(None);
        }
        rows.iter()
            .map(|row| get(row, "id"))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// The audit trails of listed events, oldest entry first, in one query (a page of a
    /// listing asks for all of its events' trails at once, never one query per event). Events
    /// with no entry, and IDs that are not this connection's events, are absent from the map.
    pub async fn audit_for_events(
        &self,
        event_ids: &[String],
    ) -> Result<HashMap<String, Vec<AuditEntry>>, StoreError> {
        let mut out: HashMap<String, Vec<AuditEntry>> = HashMap::new();
        let mut ids: Vec<&String> = event_ids.iter().collect();
        ids.sort();
        ids.dedup();
        // A page is at most a few hundred events; chunked anyway, for the bound-parameter limit.
        for chunk in ids.chunks(500) {
            let list = numbered_params(3, chunk.len(), false);
            let sql = format!(
                "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
                 FROM audit WHERE tenant_id = $1 AND connection_id = $2 AND event_id IN ({list}) \
                 ORDER BY event_id, id"
            );
            // Planned with its values each time (see `list_events`).
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .persistent(false)
                .bind(self.scope.t())
                .bind(self.scope.c());
            for id in chunk {
                q = q.bind((*id).clone());
            }
            let rows = q
                .fetch_all(&mut *self.store.db.read(&self.scope).await?)
                .await
                .map_err(db_err)?;
            for row in &rows {
                let entry = audit_from_row(row)?;
                if let Some(id) = entry.event_id.clone() {
                    out.entry(id).or_default().push(entry);
                }
            }
        }
        Ok(out)
    }

    /// Events whose job changed at or after `since` (Unix ms), oldest change first, each with
    /// the time of its change: what a live view (the GraphQL `eventUpdated` subscription) polls.
    pub async fn events_changed_since(
        &self,
        since: UnixMillis,
        limit: i64,
    ) -> Result<Vec<(EventSummary, UnixMillis)>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.event_id, e.event_type, e.object_id, e.received_at, j.state AS job_state, \
             j.attempts AS job_attempts, j.last_error AS job_last_error, j.updated_at AS changed_at \
             FROM sync_jobs j JOIN events e ON e.job_id = j.id \
             AND e.tenant_id = j.tenant_id AND e.connection_id = j.connection_id \
             WHERE j.tenant_id = $1 AND j.connection_id = $2 AND j.updated_at >= $3 \
             ORDER BY j.updated_at ASC, e.event_id ASC LIMIT $4",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .bind(since)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| Ok((summary_from_row(row)?, get(row, "changed_at")?)))
            .collect()
    }

    /// Number of distinct events stored.
    pub async fn count_events(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM events WHERE tenant_id = $1 AND connection_id = $2",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_one(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        get(&row, "n")
    }
}

/// An event listing's row (`e.*` with the job's `job_state`, `job_attempts`, `job_last_error`).
fn summary_from_row(row: &sqlx::any::AnyRow) -> Result<EventSummary, StoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backends;

    fn ev(id: &str) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            event_type: "invoice.paid".into(),
            object_id: None,
            livemode: false,
            api_version: None,
            stripe_created: 1,
            raw_body: id.as_bytes().to_vec(),
            signature_header: "t=1,v1=00".into(),
            received_at: now_millis(),
            handled: true,
        }
    }

    /// A batch holding one delivery the database refuses (an empty event ID violates a CHECK
    /// constraint) fails as a whole; every other caller must still get its own, correct answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_batch_falls_back_to_one_by_one() {
        for db in backends().await {
            let store = db.scoped().await;
            store.record_event(&ev("evt_before"), None).await.unwrap();
            let ids = ["evt_1", "", "evt_before", "evt_2", "evt_1"];
            let mut replies = Vec::new();
            let mut batch = Vec::new();
            for id in ids {
                let (reply, rx) = oneshot::channel();
                batch.push(RecordRequest {
                    scope: store.scope().clone(),
                    event: ev(id),
                    job: None,
                    reply,
                });
                replies.push(rx);
            }
            commit_batch(&store.store().db, &mut None, batch).await;
            let mut got = Vec::new();
            for rx in replies {
                got.push(rx.await.unwrap().map_err(|e| e.to_string()));
            }
            assert_eq!(got[0], Ok(RecordOutcome::Stored));
            assert!(got[1].is_err(), "{:?}", got[1]);
            assert_eq!(got[2], Ok(RecordOutcome::Duplicate));
            assert_eq!(got[3], Ok(RecordOutcome::Stored));
            assert_eq!(got[4], Ok(RecordOutcome::Duplicate));
            assert_eq!(store.count_events().await.unwrap(), 3);
            assert_eq!(
                store.get_event("evt_1").await.unwrap().unwrap().deliveries,
                2
            );
        }
    }

    fn job(id: &str) -> NewJob {
        NewJob {
            kind: "process_event".into(),
            event_id: Some(id.into()),
            payload: serde_json::json!({ "event_id": id }),
            dedupe_key: format!("event:{id}"),
            max_attempts: 3,
            run_at: now_millis(),
        }
    }

    /// One batch's worth of messages: deliveries plus worker writes, with their answers.
    struct Mixed {
        batch: Vec<RecordRequest>,
        records: Vec<oneshot::Receiver<Result<RecordOutcome, StoreError>>>,
        ops: Vec<WriteOp>,
        finishes: Vec<oneshot::Receiver<Result<JobState, StoreError>>>,
        audits: Vec<oneshot::Receiver<Result<i64, StoreError>>>,
        starts: Vec<oneshot::Receiver<Result<Start, StoreError>>>,
    }

    fn mixed(
        scope: &ConnectionScope,
        events: &[&str],
        finishes: &[(&str, &str)],
        audits: &[&str],
        starts: &[(&str, &str)],
    ) -> Mixed {
        let mut m = Mixed {
            batch: Vec::new(),
            records: Vec::new(),
            ops: Vec::new(),
            finishes: Vec::new(),
            audits: Vec::new(),
            starts: Vec::new(),
        };
        for id in events {
            let (reply, rx) = oneshot::channel();
            m.batch.push(RecordRequest {
                scope: scope.clone(),
                event: ev(id),
                job: (!id.is_empty()).then(|| job(id)),
                reply,
            });
            m.records.push(rx);
        }
        for (job_id, task_id) in finishes {
            let (reply, rx) = oneshot::channel();
            m.ops.push(WriteOp::Finish {
                job_id: job_id.to_string(),
                task_id: task_id.to_string(),
                outcome: JobOutcome::Succeeded,
                reply,
            });
            m.finishes.push(rx);
        }
        for event_id in audits {
            let (reply, rx) = oneshot::channel();
            m.ops.push(WriteOp::Audit {
                scope: scope.clone(),
                entry: NewAudit {
                    event_id: Some(event_id.to_string()),
                    step: "posted".into(),
                    message: "posted".into(),
                    ..NewAudit::default()
                },
                reply,
            });
            m.audits.push(rx);
        }
        for (job_id, task_id) in starts {
            let (reply, rx) = oneshot::channel();
            m.ops.push(WriteOp::Start {
                job_id: job_id.to_string(),
                task_id: task_id.to_string(),
                worker: "w2".into(),
                reply,
            });
            m.starts.push(rx);
        }
        m
    }

    async fn steps_of(store: &ConnectionStore, event_id: &str) -> Vec<String> {
        store
            .audit_for_event(event_id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.step)
            .collect()
    }

    /// Deliveries, job outcomes, audit entries and a start committed as one transaction, each
    /// caller answered with its own result, a stale task changing nothing; and when the batch
    /// fails (one delivery the database refuses) each write is redone alone, applied once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn worker_writes_share_the_intake_commit_and_survive_a_failed_batch() {
        for db in backends().await {
            let store = db.scoped().await;
            let retry = RetryPolicy::default();
            for (bad, tag) in [(false, "ok"), (true, "bad")] {
                let held = format!("evt_{tag}_held");
                store
                    .record_event(&ev(&held), Some(job(&held)))
                    .await
                    .unwrap();
                let queued = store.get_job_for_event(&held).await.unwrap().unwrap();
                let (job_id, task_id) = (queued.id.clone(), queued.task_id.clone().unwrap());
                let started = store.store().start(&job_id, &task_id, "w1").await.unwrap();
                assert!(matches!(started, Start::Run(_)), "{started:?}");
                // A job queued earlier, started in the batch (after its deliveries).
                let other = format!("evt_{tag}_other");
                store
                    .record_event(&ev(&other), Some(job(&other)))
                    .await
                    .unwrap();
                let other_job = store.get_job_for_event(&other).await.unwrap().unwrap();
                let other_task = other_job.task_id.clone().unwrap();
                let new = format!("evt_{tag}_new");
                let mut events = vec![new.as_str()];
                if bad {
                    events.push(""); // violates a CHECK: the combined transaction fails
                }
                let m = mixed(
                    store.scope(),
                    &events,
                    &[
                        (&job_id, "01J0000000000000000000STALE"),
                        (&job_id, &task_id),
                    ],
                    &[held.as_str(), held.as_str()],
                    &[(&other_job.id, &other_task)],
                );
                commit_with_ops(&store.store().db, &mut None, &retry, m.batch, m.ops).await;
                let mut records = Vec::new();
                for rx in m.records {
                    records.push(rx.await.unwrap().map_err(|e| e.to_string()));
                }
                assert_eq!(records[0], Ok(RecordOutcome::Stored), "{tag}");
                if bad {
                    assert!(records[1].is_err(), "{records:?}");
                }
                let mut finishes = Vec::new();
                for rx in m.finishes {
                    finishes.push(rx.await.unwrap());
                }
                assert!(
                    matches!(finishes[0], Err(StoreError::NotRunning(_))),
                    "{finishes:?}"
                );
                assert_eq!(finishes[1].as_ref().ok(), Some(&JobState::Succeeded));
                let mut ids = Vec::new();
                for rx in m.audits {
                    ids.push(rx.await.unwrap().unwrap());
                }
                assert!(ids[0] < ids[1], "arrival order: {ids:?}");
                let got = m.starts.into_iter().next().unwrap().await.unwrap().unwrap();
                match got {
                    Start::Run(j) => assert_eq!(j.event_id.as_deref(), Some(other.as_str())),
                    other => panic!("{tag}: {other:?}"),
                }
                assert_eq!(
                    steps_of(&store, &held).await,
                    ["received", "succeeded", "posted", "posted"],
                    "{tag}"
                );
                assert_eq!(steps_of(&store, &new).await, ["received"], "{tag}");
                let held_job = store.get_job(&job_id).await.unwrap().unwrap();
                assert_eq!(held_job.state, JobState::Succeeded);
            }
        }
    }

    /// Keyset paging walks a listing in its order (ties in `received_at` split by event ID),
    /// with or without a filter and an offset after the position; a page's audit trails come
    /// back per event and only this connection's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyset_pages_follow_the_listing_order_and_trails_stay_in_scope() {
        for db in backends().await {
            let store = db.scoped().await;
            let other = crate::testing::connection(store.store(), "test", "other").await;
            let mut all = Vec::new();
            for i in 0..12_i64 {
                let id = format!("evt_k{:02}", (i * 5) % 12);
                let mut e = ev(&id);
                e.received_at = 1_000 + i / 4; // four to a millisecond
                e.event_type = if i % 2 == 0 {
                    "invoice.paid"
                } else {
                    "charge.succeeded"
                }
                .into();
                store.record_event(&e, Some(job(&id))).await.unwrap();
                other.record_event(&e, None).await.unwrap(); // same IDs, another connection
                all.push((e.received_at, id));
            }
            all.sort();
            all.reverse();
            let everything = store
                .list_events(&EventFilter {
                    limit: 100,
                    ..EventFilter::default()
                })
                .await
                .unwrap();
            let listed: Vec<(i64, String)> = everything
                .iter()
                .map(|e| (e.received_at, e.event_id.clone()))
                .collect();
            assert_eq!(
                listed, all,
                "the listing order is (received_at, event_id) descending"
            );

            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .list_events(&EventFilter {
                        limit: 5,
                        after: after.clone(),
                        ..EventFilter::default()
                    })
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.position());
                walked.extend(page.iter().map(|e| (e.received_at, e.event_id.clone())));
            }
            assert_eq!(walked, all);

            // Filtered, and an offset counted from the position.
            let paid = store
                .list_events(&EventFilter {
                    event_type: Some("invoice.paid".into()),
                    after: Some(everything[2].position()),
                    offset: 1,
                    limit: 2,
                    ..EventFilter::default()
                })
                .await
                .unwrap();
            let expected: Vec<&str> = everything[3..]
                .iter()
                .filter(|e| e.event_type == "invoice.paid")
                .skip(1)
                .take(2)
                .map(|e| e.event_id.as_str())
                .collect();
            let got: Vec<&str> = paid.iter().map(|e| e.event_id.as_str()).collect();
            assert_eq!(got, expected);

            let ids: Vec<String> = everything[..3]
                .iter()
                .map(|e| e.event_id.clone())
                .chain(["evt_unknown".to_string()])
                .collect();
            let trails = store.audit_for_events(&ids).await.unwrap();
            assert_eq!(trails.len(), 3, "{trails:?}");
            for id in &ids[..3] {
                let trail = &trails[id];
                assert_eq!(trail.len(), 1, "{trail:?}");
                assert_eq!(trail[0].event_id.as_deref(), Some(id.as_str()));
                assert!(
                    trail[0].job_id.is_some(),
                    "this connection's entry, with its job"
                );
            }
        }
    }

    /// Both plans of a status filter (from the jobs, for a status few jobs have; walking the
    /// list, for the others) page through exactly the rows of the unfiltered list that have
    /// that status, in its order; so do type filters and offsets after a position.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_filters_list_the_same_rows_whichever_plan() {
        for db in backends().await {
            let store = db.scoped().await;
            let other = crate::testing::connection(store.store(), "test", "other").await;
            for (scoped, number) in [(&store, 0), (&other, 1_000_000)] {
                scoped
                    .load_synthetic_events(
                        crate::synthetic::SyntheticRange {
                            number,
                            from: 0,
                            count: 3_000,
                            first_at: 1_000_000,
                            step: 7,
                        },
                        b"{}",
                    )
                    .await
                    .unwrap();
            }
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .list_events(&EventFilter {
                        limit: 1000,
                        after: after.clone(),
                        ..EventFilter::default()
                    })
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                after = Some(last.position());
                all.extend(page);
            }
            assert_eq!(all.len(), 3_000);
            let succeeded = all.iter().filter(|e| e.status == "succeeded").count() as i64;
            let failed = all.iter().filter(|e| e.status == "failed").count() as i64;
            assert!(
                succeeded > FEW_JOBS && (1..=FEW_JOBS).contains(&failed),
                "{succeeded} {failed}"
            );
            for (status, event_type) in [
                ("succeeded", None),
                ("failed", None),
                ("queued", None),
                ("running", None),
                ("succeeded", Some("charge.refunded")),
                ("failed", Some("charge.succeeded")),
            ] {
                let expected: Vec<&str> = all
                    .iter()
                    .filter(|e| e.status == status)
                    .filter(|e| event_type.is_none_or(|t| e.event_type == t))
                    .map(|e| e.event_id.as_str())
                    .collect();
                let mut got = Vec::new();
                let mut after = None;
                loop {
                    let page = store
                        .list_events(&EventFilter {
                            status: Some(status.into()),
                            event_type: event_type.map(str::to_string),
                            limit: 37,
                            after: after.clone(),
                            ..EventFilter::default()
                        })
                        .await
                        .unwrap();
                    let Some(last) = page.last() else { break };
                    after = Some(last.position());
                    got.extend(page.into_iter().map(|e| e.event_id));
                }
                assert_eq!(got, expected, "{status} {event_type:?}");
                // An offset counts from the position.
                if expected.len() > 12 {
                    let page = store
                        .list_events(&EventFilter {
                            status: Some(status.into()),
                            event_type: event_type.map(str::to_string),
                            limit: 5,
                            offset: 3,
                            after: Some(
                                all.iter()
                                    .find(|e| e.event_id == expected[4])
                                    .unwrap()
                                    .position(),
                            ),
                            ..EventFilter::default()
                        })
                        .await
                        .unwrap();
                    let ids: Vec<&str> = page.iter().map(|e| e.event_id.as_str()).collect();
                    assert_eq!(ids, expected[8..13], "{status} {event_type:?}");
                }
            }
        }
    }

    #[test]
    fn values_sql_numbers_parameters_across_rows_on_postgres_only() {
        let template = ["?", "1", "f(? / 10)"];
        assert_eq!(
            values_sql(Backend::Postgres, 2, &template),
            "($1, 1, f($2 / 10)), ($3, 1, f($4 / 10))"
        );
        assert_eq!(
            values_sql(Backend::Sqlite, 2, &template),
            "(?, 1, f(? / 10)), (?, 1, f(? / 10))"
        );
    }

    #[test]
    fn numbered_params_follow_the_parameters_before_them() {
        assert_eq!(numbered_params(3, 3, false), "$3, $4, $5");
        assert_eq!(numbered_params(2, 2, true), "($2), ($3)");
        assert_eq!(numbered_params(1, 0, false), "");
    }
}
