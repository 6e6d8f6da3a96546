//! The worker, on apalis: apalis claims task rows, keeps its worker alive with heartbeats and
//! re-runs a dead worker's tasks; each task is one attempt of one of our jobs, and the outcome
//! (with the next attempt's task, when there is one) is recorded in our `jobs` table by the store.
//!
//! Around apalis 1.0's sharp edges (`../shared/reference/apalis-seaorm.md`):
//! - apalis' own retries have no back-off and `RetryAfterError` is ignored, so the handler
//!   returns `Ok` whatever the job's outcome; the store schedules the next attempt itself.
//! - A worker restarted under its old name strands running tasks (PostgreSQL) or is refused
//!   (SQLite): every start, and every restart, gets a new name.
//! - Any database error ends `worker.run()`: [`Worker::run`] supervises it, restarting with
//!   back-off, logged and counted (`mlc_worker_restarts_total`).
//! - apalis' default orphan window is 1 minute (SQLite) or 5 (PostgreSQL): ours is a short
//!   heartbeat with three missed beats, so a SIGKILLed job runs again within seconds.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apalis::prelude::{
    BackendExt as _, BoxDynError, Data, Strategy, TaskId, WorkerBuilder, WorkerBuilderExt as _,
    WorkerContext,
};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use mlc_core::ErrorClass;
use mlc_service::telemetry::names::JOBS_DEFERRED;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use mlc_store::{Backend, ConnectionScope, Job, JobOutcome, JobTicket, Start, Store, StoreError};

/// Does the work of a job. Return an outcome rather than panicking; a panic is caught and treated
/// as a transient failure (retried per the schedule).
pub trait JobHandler: Send + Sync + 'static {
    fn handle(&self, job: Job) -> impl Future<Output = JobOutcome> + Send;

    /// Asked before a job of `scope` is started: `Some(delay)` puts it off, unstarted, rather
    /// than letting it hold a worker slot while it waits (its NetSuite account is saturated).
    /// `worker_slots` is the worker's concurrency.
    fn defer_for(
        &self,
        scope: &ConnectionScope,
        worker_slots: usize,
    ) -> impl Future<Output = Option<Duration>> + Send {
        let _ = (scope, worker_slots);
        std::future::ready(None)
    }
}

/// How a [`Worker`] runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique per process start (e.g. hostname + pid + random); each restart of the apalis worker
    /// appends its restart count, so no name is ever reused.
    pub worker_id: String,
    /// Jobs handled at the same time (and apalis' fetch batch: no task waits claimed-but-idle
    /// behind a full worker, where a shutdown would have to hand it back).
    pub concurrency: usize,
    /// Jobs of one connection handled at the same time by this process: one tenant's backlog
    /// cannot take every slot. A task over the cap is moved a moment later, unstarted.
    pub per_connection_cap: usize,
    /// How often an idle worker looks for due tasks (scheduled retries, other instances' intake).
    /// This process's intake wakes it at once through [`Worker::notifier`].
    pub poll_interval_ms: u64,
    /// apalis' worker heartbeat; a worker silent for three beats is dead and its tasks run again.
    pub heartbeat_ms: u64,
    /// At shutdown, how long in-flight jobs may take to finish. Jobs still running then are
    /// re-run by another worker (or this one after a restart) once the heartbeat window passes.
    pub shutdown_grace_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: format!(
                "worker-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            concurrency: 4,
            per_connection_cap: 2,
            poll_interval_ms: 500,
            heartbeat_ms: 5_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// What a task on our queue carries: one attempt of a job (pushed by the store), or a tick of a
/// schedule (pushed here).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Work {
    Job(JobTicket),
    Tick(Tick),
}

/// One run of a schedule: slot `slot` is the `slot`-th interval since the Unix epoch. Its task's
/// idempotency key is `schedule:slot`, so however many instances push it, it exists once, and the
/// worker that claims it is the only one to run it: the task is the lock, no leader election.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Tick {
    schedule: String,
    slot: u64,
}

/// Recurring work run once per interval across every instance sharing the database (the
/// NetSuite → Stripe reference sync). Instances that share a database must register the same
/// schedules.
#[derive(Clone)]
pub struct Schedule {
    /// Unique among schedules (e.g. `reference_sync:default/default`).
    pub name: String,
    pub every: Duration,
    pub run: Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("name", &self.name)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Schedule {
    fn slot_of(&self, unix_secs: u64) -> u64 {
        unix_secs / self.every.as_secs().max(1)
    }

    fn slot_start(&self, slot: u64) -> u64 {
        slot.saturating_mul(self.every.as_secs().max(1))
    }
}

/// Missed heartbeats after which apalis treats a worker as dead.
const MISSED_HEARTBEATS: usize = 3;
/// Connections that had a task within this window count as wanting this worker's slots.
const CONTENDED_WINDOW: Duration = Duration::from_secs(5);
/// How long a task over its connection's cap is put off, at most: a slot its connection gives
/// back here brings it forward sooner (see [`Shared::parked`]).
const CAP_DEFER_MS: i64 = 1_000;
/// Tasks remembered per connection for bringing forward; any more wait out `CAP_DEFER_MS`.
const PARKED_PER_CONNECTION: usize = 256;
/// Restart back-off of the supervised apalis worker.
const RESTART_MIN: Duration = Duration::from_millis(250);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// Finished apalis tasks are kept this long (a week) for operators' inspection.
const FINISHED_TASKS_KEPT_SECS: i64 = 7 * 24 * 3600;
/// A worker life this long resets the restart back-off.
const HEALTHY_LIFE: Duration = Duration::from_secs(60);

/// Runs jobs from a [`Store`] with a [`JobHandler`].
pub struct Worker<H: JobHandler> {
    store: Store,
    handler: Arc<H>,
    config: WorkerConfig,
    notify: Arc<Notify>,
    schedules: Vec<Schedule>,
}

/// What every task execution shares (apalis' `Data`).
struct Shared<H> {
    store: Store,
    handler: Arc<H>,
    cap: usize,
    /// The worker's concurrency (for [`JobHandler::defer_for`]).
    slots: usize,
    /// Job attempts in flight: shutdown waits for them (within the grace period).
    attempts: tokio_util::task::TaskTracker,
    in_flight: Mutex<HashMap<ConnectionScope, usize>>,
    /// When each connection last had a task here: the cap applies while several do.
    recent: Mutex<HashMap<ConnectionScope, Instant>>,
    /// Each connection's tasks put off at its cap or while its NetSuite account was busy,
    /// oldest first. Each slot the connection gives back brings the oldest forward; left to
    /// wait out `CAP_DEFER_MS`, a small tenant's burst (all of it put off at once, being first
    /// in line) ran a few jobs a second while a flooding tenant's tasks took the slots it left.
    parked: Mutex<HashMap<ConnectionScope, VecDeque<String>>>,
    /// Wakes the worker to claim a task brought forward.
    wake: Arc<Notify>,
    schedules: HashMap<String, Schedule>,
}

/// A connection's slot in this process; given back on drop.
struct Slot<'a, H> {
    shared: &'a Shared<H>,
    scope: ConnectionScope,
}

impl<H> Drop for Slot<'_, H> {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.scope) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.scope);
            }
        }
    }
}

impl<H> Shared<H> {
    /// Whether `scope` has a slot free here now (as [`Shared::take_slot`] would see it).
    fn has_room(&self, scope: &ConnectionScope) -> bool {
        let map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        map.get(scope).is_none_or(|n| *n < self.cap)
    }

    fn park(&self, scope: &ConnectionScope, task_id: String) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let queue = parked.entry(scope.clone()).or_default();
        if queue.len() < PARKED_PER_CONNECTION {
            queue.push_back(task_id);
        }
    }

    /// Forgets `task_id` as parked: it was claimed (due, or brought forward).
    fn unpark(&self, scope: &ConnectionScope, task_id: &str) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = parked.get_mut(scope) {
            queue.retain(|t| t != task_id);
            if queue.is_empty() {
                parked.remove(scope);
            }
        }
    }

    fn next_parked(&self, scope: &ConnectionScope) -> Option<String> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let queue = parked.get_mut(scope)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            parked.remove(scope);
        }
        next
    }

    /// Brings `scope`'s oldest parked task forward (one still waiting to be claimed) and wakes
    /// the worker. A failure only leaves the task to its own time, so it is logged, not raised.
    async fn release_parked(&self, scope: &ConnectionScope) {
        while let Some(task_id) = self.next_parked(scope) {
            match self.store.pull_forward(&task_id).await {
                Ok(true) => {
                    self.wake.notify_one();
                    return;
                }
                // Claimed meanwhile (by another instance, or due): the next one.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bring a put-off task forward; it runs at its time");
                    return;
                }
            }
        }
    }

    /// A slot for a job of `scope`, unless the connection has its share of this worker while
    /// other connections have work too. With one connection busy (a single-company install, or
    /// one tenant active at a time) the cap would only leave slots idle, so it does not apply.
    fn take_slot(&self, scope: &ConnectionScope) -> Option<Slot<'_, H>> {
        let contended = {
            let now = Instant::now();
            let mut seen = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            seen.insert(scope.clone(), now);
            seen.retain(|_, at| now.duration_since(*at) < CONTENDED_WINDOW);
            seen.len() > 1
        };
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(scope.clone()).or_insert(0);
        if contended && *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            shared: self,
            scope: scope.clone(),
        })
    }
}

impl<H: JobHandler> Worker<H> {
    pub fn new(store: Store, handler: H, config: WorkerConfig) -> Self {
        // apalis keeps every finished task row; our `sync_jobs` and audit log keep the history,
        // so finished tasks older than a week go, hourly, once across all instances.
        let vacuum_store = store.clone();
        let vacuum = Schedule {
            name: "vacuum_finished_tasks".into(),
            every: Duration::from_secs(3600),
            run: Arc::new(move || {
                let store = vacuum_store.clone();
                Box::pin(async move {
                    match store.vacuum_tasks(FINISHED_TASKS_KEPT_SECS).await {
                        Ok(n) => tracing::debug!(deleted = n, "finished apalis tasks vacuumed"),
                        Err(e) => {
                            tracing::warn!(error = %e, "vacuuming finished apalis tasks failed; next hour again")
                        }
                    }
                })
            }),
        };
        Worker {
            store,
            handler: Arc::new(handler),
            config,
            notify: Arc::new(Notify::new()),
            schedules: vec![vacuum],
        }
    }

    /// Runs `schedule` every interval, once across all instances (see [`Schedule`]).
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Call `notify_one()` on this after enqueueing to make an idle worker look for work now.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Runs until `shutdown` is cancelled, restarting apalis' worker (under a new name, with
    /// back-off) whenever it stops on a database error. At shutdown it stops fetching, gives
    /// in-flight jobs `shutdown_grace_ms` to finish, and returns; apalis hands tasks fetched but
    /// not started back to the queue.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        let cfg = self.config;
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            handler: self.handler,
            cap: cfg.per_connection_cap.max(1),
            slots: cfg.concurrency.max(1),
            attempts: tokio_util::task::TaskTracker::new(),
            in_flight: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
            wake: self.notify.clone(),
            schedules: self
                .schedules
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
        });
        // The current slot of every schedule, unless an instance already pushed (or ran) it.
        for schedule in &self.schedules {
            let slot = schedule.slot_of(unix_secs());
            if let Err(e) = push_tick(&self.store, schedule, slot, unix_secs()).await {
                tracing::warn!(schedule = %schedule.name, error = %e,
                    "cannot schedule; it is scheduled again by the next start or tick");
            }
        }
        // Never a name apalis has seen, even when a caller reuses `worker_id` across restarts.
        let life = uuid::Uuid::new_v4().simple().to_string();
        let life = &life[..8];
        let mut restarts: u32 = 0;
        let mut backoff_step: u32 = 0;
        // When the shutdown began: the grace period counts from then, across apalis' drain and
        // the wait for attempts below.
        let stopping_since = Arc::new(std::sync::OnceLock::new());
        // A worker started again on the same store queues on SQLite's write lock again.
        self.store.worker_starting();
        // What tells apalis to stop: the shutdown, once apalis has no database use under way.
        let apalis_stop = CancellationToken::new();
        let grace = Duration::from_millis(cfg.shutdown_grace_ms);
        let watcher = tokio::spawn({
            let shutdown = shutdown.clone();
            let apalis_stop = apalis_stop.clone();
            let stopping_since = stopping_since.clone();
            let store = self.store.clone();
            async move {
                shutdown.cancelled().await;
                let _ = stopping_since.set(tokio::time::Instant::now());
                // Stopping, apalis leaves a fetch it began unpolled until its jobs finish; on
                // SQLite that fetch would keep the write lock the jobs' outcomes need. So apalis
                // is told once it has nothing under way (`run_once`'s signal does the rest).
                let held = store.quiesce_worker_pool(grace / 2).await;
                apalis_stop.cancel();
                held
            }
        });
        while !shutdown.is_cancelled() {
            let name = format!("{}-{life}-{restarts}", cfg.worker_id);
            // This process's intake nudges `notify`; apalis polls a stream of wake-ups.
            let (wake_tx, wake_rx) = futures::channel::mpsc::channel::<()>(1);
            let bridge = tokio::spawn(bridge_wakes(self.notify.clone(), wake_tx));
            let born = std::time::Instant::now();
            let result = run_once(
                &self.store,
                &shared,
                &cfg,
                &name,
                wake_rx,
                &shutdown,
                &apalis_stop,
            )
            .await;
            bridge.abort();
            if born.elapsed() >= HEALTHY_LIFE {
                // A worker that ran a good while before failing starts the back-off afresh.
                backoff_step = 0;
            }
            match result {
                Ok(()) => break,
                Err(e) if shutdown.is_cancelled() => {
                    tracing::warn!(worker = %name, error = %e, "worker stopped with an error during shutdown");
                    break;
                }
                Err(e) => {
                    let backoff = RESTART_MIN
                        .saturating_mul(2u32.saturating_pow(backoff_step.min(16)))
                        .min(RESTART_MAX);
                    backoff_step = backoff_step.saturating_add(1);
                    metrics::counter!("mlc_worker_restarts_total").increment(1);
                    tracing::error!(worker = %name, error = %e, restart_in_ms = backoff.as_millis() as u64,
                        "the job worker stopped on a database error; restarting it under a new name");
                    restarts = restarts.saturating_add(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        // Stopped between two lives of apalis' worker: no signal said it.
        self.store.worker_stopping();
        // The write lock the watcher holds (SQLite) goes once apalis' worker is gone.
        let _held = watcher.await.ok().flatten();
        // Attempts apalis let go of at shutdown still finish and record their outcome, within
        // what is left of the grace period.
        shared.attempts.close();
        let left = stopping_since
            .get()
            .map_or(grace, |at| grace.saturating_sub(at.elapsed()));
        if tokio::time::timeout(left, shared.attempts.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = shared.attempts.len(),
                "shutdown grace period over with jobs still running; they run again once this \
                 worker's heartbeat window has passed"
            );
        }
        Ok(())
    }
}

async fn bridge_wakes(notify: Arc<Notify>, mut tx: futures::channel::mpsc::Sender<()>) {
    loop {
        notify.notified().await;
        // Full means a wake-up is already pending: one poll serves both.
        if let Err(e) = tx.try_send(())
            && e.is_disconnected()
        {
            return;
        }
    }
}

/// One life of apalis' worker: until it is told to stop (`apalis_stop`, `Ok`) or a backend
/// error (`Err`); dropped once the grace period after `shutdown` is over.
async fn run_once<H: JobHandler>(
    store: &Store,
    shared: &Arc<Shared<H>>,
    cfg: &WorkerConfig,
    name: &str,
    wake: futures::channel::mpsc::Receiver<()>,
    shutdown: &CancellationToken,
    apalis_stop: &CancellationToken,
) -> Result<(), String> {
    let heartbeat = Duration::from_millis(cfg.heartbeat_ms.max(1_000));
    let poll = Duration::from_millis(cfg.poll_interval_ms.max(10));
    let concurrency = cfg.concurrency.max(1);
    // Half the slots per fetch: tasks fetched wait in apalis' buffer for a slot, and a newly
    // busy connection's first task waits behind them.
    let batch = (concurrency / 2).max(1);
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    let strategy = Strategy::new().stream(wake).interval(poll);
    let stop = apalis_stop.clone();
    let stopping = store.clone();
    let signal = async move {
        stop.cancelled().await;
        // apalis stops itself right after this, in the same poll, before it polls its fetch
        // again: whoever waits for SQLite's write lock may go on without it now (what apalis
        // does as it closes, the in-flight jobs' outcomes); the fetch stays unpolled.
        stopping.worker_stopping();
        Ok::<(), std::io::Error>(())
    };
    let run: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> =
        match store.backend() {
            Backend::Sqlite => {
                let config = apalis_sqlite::Config::default()
                    .queue(store.queue())
                    .batch_size(batch)
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(MISSED_HEARTBEATS);
                // The store's worker pool: apalis' writes queue on this process's write lock
                // with the intake's instead of sleeping in SQLite's busy handler.
                let pool = store
                    .sqlite_worker_pool()
                    .ok_or("a SQLite store without its worker pool")?;
                let backend = SqliteStorage::<Work>::new(pool)
                    .with_config(config)
                    .poll_with_strategy(strategy);
                let worker = WorkerBuilder::new(name)
                    .backend(backend)
                    .data(shared.clone())
                    .concurrency(concurrency)
                    .build(run_task::<H>);
                Box::pin(async move { worker.run_until(signal).await.map_err(|e| e.to_string()) })
            }
            Backend::Postgres => {
                let config = apalis_postgres::Config::default()
                    .queue(store.queue())
                    .batch_size(batch)
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(MISSED_HEARTBEATS);
                let pool = store.orm().get_postgres_connection_pool();
                // Other instances' intake: PostgreSQL's NOTIFY on insert (apalis' trigger).
                let strategy = strategy.stream(apalis_postgres::Pubsub::new(
                    pool.clone(),
                    store.queue().to_string(),
                ));
                let backend = PostgresStorage::<Work>::new(pool)
                    .with_config(config)
                    .poll_with_strategy(strategy);
                let worker = WorkerBuilder::new(name)
                    .backend(backend)
                    .data(shared.clone())
                    .concurrency(concurrency)
                    .build(run_task::<H>);
                Box::pin(async move { worker.run_until(signal).await.map_err(|e| e.to_string()) })
            }
        };
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(worker = %name, "shutdown grace period over with jobs still running; \
                they run again once this worker's heartbeat window has passed");
            Ok(())
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Pushes `schedule`'s tick for `slot`, due at the slot's start (or `not_before`, if later),
/// with the idempotency key that makes it exist once: a second push is a no-op on SQLite (`ON
/// CONFLICT DO NOTHING`) and a unique violation on PostgreSQL, taken here as "already there".
async fn push_tick(
    store: &Store,
    schedule: &Schedule,
    slot: u64,
    not_before: u64,
) -> Result<(), String> {
    let tick = Tick {
        schedule: schedule.name.clone(),
        slot,
    };
    let body = serde_json::to_vec(&tick).map_err(|e| e.to_string())?;
    let task = apalis::prelude::TaskBuilder::new(body)
        .run_at_timestamp(schedule.slot_start(slot).max(not_before))
        .idempotency_key(format!("{}:{slot}", schedule.name))
        .max_attempts(mlc_store::TASK_MAX_ATTEMPTS as usize)
        .priority(mlc_store::PRIORITY_BASE as usize)
        .build();
    match store.backend() {
        Backend::Sqlite => {
            let mut conn = store
                .orm()
                .get_sqlite_connection_pool()
                .acquire()
                .await
                .map_err(|e| e.to_string())?;
            apalis_sqlite::queries::push_tasks(&mut *conn, store.queue(), &[task])
                .await
                .map_err(|e| e.to_string())
        }
        Backend::Postgres => {
            let mut conn = store
                .orm()
                .get_postgres_connection_pool()
                .acquire()
                .await
                .map_err(|e| e.to_string())?;
            match apalis_postgres::queries::push_tasks(&mut *conn, store.queue(), vec![task]).await
            {
                Ok(()) => Ok(()),
                Err(e) if e.to_string().contains("idx_jobs_idempotency_key") => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// One apalis task: one attempt of one job, or one tick of a schedule.
async fn run_task<H: JobHandler>(
    work: Work,
    shared: Data<Arc<Shared<H>>>,
    task_id: TaskId,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    match work {
        Work::Job(ticket) => {
            // The whole attempt, from its start to its recorded outcome, is a task of its own
            // that the worker's shutdown waits for: apalis drops this future at shutdown, even
            // mid-attempt, which left jobs `running` with their outcome unrecorded (they ran
            // again after the heartbeat window: safe, but a graceful stop should not need that).
            let shared: Arc<Shared<H>> = (*shared).clone();
            let worker = worker.name().to_string();
            let task_id = task_id.to_string();
            let tracker = shared.attempts.clone();
            match tracker
                .spawn(async move { run_job(ticket, &shared, task_id, &worker).await })
                .await
            {
                Ok(result) => result,
                Err(e) => Err(format!("a job attempt crashed: {e}").into()),
            }
        }
        Work::Tick(tick) => {
            run_tick(tick, &shared).await;
            Ok(())
        }
    }
}

/// Runs a schedule's slot, then pushes its next slot. A tick of a schedule this instance does
/// not know (configured on another instance only) is logged and left.
async fn run_tick<H>(tick: Tick, shared: &Shared<H>) {
    let Some(schedule) = shared.schedules.get(&tick.schedule) else {
        tracing::warn!(schedule = %tick.schedule, "a tick of a schedule this instance does not run; \
            instances sharing a database should share their configuration");
        return;
    };
    let run = (schedule.run)();
    // Its own task: a panic is logged, and the next slot is scheduled all the same.
    if let Err(e) = tokio::spawn(run).await {
        tracing::error!(schedule = %tick.schedule, error = %e, "scheduled run crashed");
    }
    let now = unix_secs();
    // The next slot to come: a run that overran skips the slots it covered.
    let next = (tick.slot + 1).max(schedule.slot_of(now) + 1);
    if let Err(e) = push_tick(&shared.store, schedule, next, now).await {
        tracing::error!(schedule = %tick.schedule, error = %e,
            "cannot schedule the next run; it is scheduled again at the next start");
    }
}

/// One attempt of one job.
async fn run_job<H: JobHandler>(
    ticket: JobTicket,
    shared: &Shared<H>,
    task_id: String,
    worker: &str,
) -> Result<(), BoxDynError> {
    let scope = ticket.scope()?;
    shared.unpark(&scope, &task_id);
    let Some(slot) = shared.take_slot(&scope) else {
        // The connection has its share of this worker: put the job off, unstarted, until the
        // connection gives a slot back (or `CAP_DEFER_MS` has passed).
        metrics::counter!(JOBS_DEFERRED, "reason" => "connection_cap").increment(1);
        if let Some(later) = shared
            .store
            .defer(&ticket.job, &task_id, CAP_DEFER_MS)
            .await?
        {
            shared.park(&scope, later);
            // Its slots may all have come back while it was being put off.
            if shared.has_room(&scope) {
                shared.release_parked(&scope).await;
            }
        }
        return Ok(());
    };
    if let Some(delay) = shared.handler.defer_for(&scope, shared.slots).await {
        let after_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        metrics::counter!(JOBS_DEFERRED, "reason" => "account_busy").increment(1);
        // Parked as at the cap: the connection's next finished job (one fewer on its account)
        // brings it forward. On SQLite apalis' `run_at` is whole seconds, so waiting out even
        // a short put-off took up to a second and more while the account ran dry.
        if let Some(later) = shared.store.defer(&ticket.job, &task_id, after_ms).await? {
            shared.park(&scope, later);
        }
        return Ok(());
    }
    let result = match shared.store.start(&ticket.job, &task_id, worker).await {
        Ok(Start::Run(job)) => run_attempt(&shared.store, shared.handler.clone(), job, task_id)
            .await
            .map_err(Into::into),
        Ok(Start::Stale | Start::GaveUp) => Ok(()),
        Err(e) => Err(e.into()),
    };
    // The slot is free, and its account has one job fewer: the connection's oldest task put
    // off (at its cap, or while its account was busy) takes it. (Not after an account-busy
    // deferral above: its account has no room for more of its work.)
    drop(slot);
    shared.release_parked(&scope).await;
    result
}

/// Runs a started job's handler and records its outcome, in a span that carries its tenant and
/// connection (logs and traces).
async fn run_attempt<H: JobHandler>(
    store: &Store,
    handler: Arc<H>,
    job: mlc_store::Job,
    task_id: String,
) -> Result<(), String> {
    let span = mlc_service::telemetry::job_span(&job.scope, &job.id, &job.kind);
    attempt(store, handler, job, task_id).instrument(span).await
}

async fn attempt<H: JobHandler>(
    store: &Store,
    handler: Arc<H>,
    job: mlc_store::Job,
    task_id: String,
) -> Result<(), String> {
    let job_id = job.id.clone();
    // Its own task, so a panic is contained and reported as a transient failure.
    let outcome =
        match tokio::spawn(async move { handler.handle(job).await }.in_current_span()).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let msg = if e.is_panic() {
                    panic_message(e.into_panic())
                } else {
                    "the job handler was cancelled".into()
                };
                tracing::error!(job_id = %job_id, panic = %msg, "job handler crashed");
                JobOutcome::Retry {
                    error: format!("the job handler crashed: {msg}"),
                    class: ErrorClass::Transient,
                    after_ms: None,
                }
            }
        };
    // A brief database hiccup should not make apalis run the attempt again.
    let mut last = String::new();
    for attempt in 1..=3u64 {
        match store.finish(&job_id, &task_id, outcome.clone()).await {
            Ok(state) => {
                tracing::debug!(job_id = %job_id, %state, "job finished");
                return Ok(());
            }
            Err(StoreError::NotRunning(_)) => {
                tracing::warn!(job_id = %job_id, "the job was replayed while it ran; this outcome is dropped");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(job_id = %job_id, error = %e, attempt, "recording the outcome failed");
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
    // apalis runs the task again (the job is still `running` under it); the NetSuite create is
    // idempotent, so a second run posts nothing twice.
    Err(format!(
        "recording the outcome of job {job_id} failed: {last}"
    ))
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
