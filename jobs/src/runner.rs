//! The job runner: claims jobs, keeps their leases alive, applies the handler's outcome, and on
//! shutdown finishes or releases what it holds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mlc_core::ErrorClass;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use mlc_store::{Job, JobOutcome, Store, StoreError};

/// Does the work of a job. Return an outcome rather than panicking; a panic is caught and treated
/// as a transient failure (retried per the schedule).
pub trait JobHandler: Send + Sync + 'static {
    fn handle(&self, job: Job) -> impl Future<Output = JobOutcome> + Send;
}

/// How a [`Worker`] runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique per process (e.g. hostname + pid + random); recorded as `locked_by`.
    pub worker_id: String,
    /// Jobs handled at the same time.
    pub concurrency: usize,
    /// Lease length: if this process dies, its jobs are claimable again after this long.
    pub lease_ms: i64,
    /// How often to look for work when idle (a [`Worker::notifier`] nudge comes sooner).
    pub poll_interval_ms: u64,
    /// How often a running job's lease is extended; keep well below `lease_ms`.
    pub heartbeat_ms: u64,
    /// At shutdown, how long in-flight jobs may take to finish before they are released.
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
            lease_ms: 60_000,
            poll_interval_ms: 1_000,
            heartbeat_ms: 15_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Runs jobs from a [`Store`] with a [`JobHandler`].
pub struct Worker<H: JobHandler> {
    store: Store,
    handler: Arc<H>,
    config: WorkerConfig,
    notify: Arc<Notify>,
}

impl<H: JobHandler> Worker<H> {
    pub fn new(store: Store, handler: H, config: WorkerConfig) -> Self {
        Worker {
            store,
            handler: Arc::new(handler),
            config,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Call `notify_one()` on this after enqueueing to make an idle worker look for work now.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Runs until `shutdown` is cancelled. Then it stops claiming, gives in-flight jobs up to
    /// `shutdown_grace_ms` to finish, and releases the rest back to the queue.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        let cfg = Arc::new(self.config);
        let concurrency = cfg.concurrency.max(1);
        let poll = Duration::from_millis(cfg.poll_interval_ms.max(1));
        // Cancelled after the grace period: tells jobs still running to stop and release.
        let hard_stop = CancellationToken::new();
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut idle_rounds: u32 = 0;

        'outer: while !shutdown.is_cancelled() {
            // Fill free slots with one claim: each claim is a write, and on SQLite writes take turns.
            let (mut claimed_any, mut maybe_more) = (false, false);
            let free = concurrency.saturating_sub(in_flight.len());
            if free > 0 && !shutdown.is_cancelled() {
                match self
                    .store
                    .claim_many(&cfg.worker_id, cfg.lease_ms, free)
                    .await
                {
                    Ok(jobs) => {
                        claimed_any = !jobs.is_empty();
                        // Fewer than asked for: nothing else is due until a nudge or the poll.
                        maybe_more = jobs.len() == free;
                        for job in jobs {
                            in_flight.spawn(run_job(
                                self.store.clone(),
                                self.handler.clone(),
                                cfg.clone(),
                                job,
                                hard_stop.clone(),
                            ));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed; will retry"),
                }
            }
            if !claimed_any && in_flight.len() < concurrency {
                idle_rounds = idle_rounds.wrapping_add(1);
                // Now and then, while idle, fail jobs whose worker died on their last attempt.
                if idle_rounds % 10 == 1
                    && let Err(e) = self.store.fail_abandoned_jobs().await
                {
                    tracing::warn!(error = %e, "sweeping abandoned jobs failed");
                }
            }
            let full = in_flight.len() >= concurrency;
            tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                Some(res) = in_flight.join_next(), if !in_flight.is_empty() => {
                    log_join(res);
                    // Jobs that ended together free their slots for one claim, not one each.
                    while let Some(res) = in_flight.try_join_next() {
                        log_join(res);
                    }
                }
                _ = self.notify.notified(), if !full => {}
                _ = tokio::time::sleep(poll), if !full && !maybe_more => {}
                // Claimed all that was asked and still have room: loop at once to claim more.
                _ = std::future::ready(()), if !full && maybe_more => {}
            }
        }

        // Shutdown: let in-flight jobs finish within the grace period, then release the rest.
        let grace = tokio::time::sleep(Duration::from_millis(cfg.shutdown_grace_ms));
        tokio::pin!(grace);
        loop {
            if in_flight.is_empty() {
                break;
            }
            tokio::select! {
                Some(res) = in_flight.join_next() => log_join(res),
                _ = &mut grace => {
                    tracing::info!(jobs = in_flight.len(), "shutdown grace period over; releasing jobs");
                    hard_stop.cancel();
                    while let Some(res) = in_flight.join_next().await {
                        log_join(res);
                    }
                    break;
                }
            }
        }
        Ok(())
    }
}

fn log_join(res: Result<(), tokio::task::JoinError>) {
    if let Err(e) = res {
        // run_job itself does not panic; this would be a bug worth seeing.
        tracing::error!(error = %e, "job supervisor task ended abnormally");
    }
}

/// Runs one claimed job: the handler in its own task (so a panic is contained), a heartbeat
/// beside it, then `finish` — or `release` when told to stop.
async fn run_job<H: JobHandler>(
    store: Store,
    handler: Arc<H>,
    cfg: Arc<WorkerConfig>,
    job: Job,
    hard_stop: CancellationToken,
) {
    let job_id = job.id.clone();
    let worker_id = cfg.worker_id.as_str();
    let mut task = tokio::spawn(async move { handler.handle(job).await });
    let mut beat = tokio::time::interval(Duration::from_millis(cfg.heartbeat_ms.max(1)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await; // the first tick is immediate; the claim just set the lease

    let outcome = loop {
        tokio::select! {
            res = &mut task => {
                break match res {
                    Ok(outcome) => outcome,
                    Err(e) if e.is_panic() => {
                        let msg = panic_message(e.into_panic());
                        tracing::error!(job_id = %job_id, panic = %msg, "job handler panicked");
                        JobOutcome::Retry {
                            error: format!("the job handler crashed: {msg}"),
                            class: ErrorClass::Transient,
                            after_ms: None,
                        }
                    }
                    Err(_) => JobOutcome::Retry {
                        error: "the job handler was cancelled".into(),
                        class: ErrorClass::Transient,
                        after_ms: None,
                    },
                };
            }
            _ = beat.tick() => {
                match store.heartbeat(&job_id, worker_id, cfg.lease_ms).await {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost(_)) => {
                        // Another worker owns the job now; stop so it is not run twice at once.
                        tracing::warn!(job_id = %job_id, "lease lost; abandoning the job");
                        task.abort();
                        return;
                    }
                    Err(e) => tracing::warn!(job_id = %job_id, error = %e, "heartbeat failed"),
                }
            }
            _ = hard_stop.cancelled() => {
                task.abort();
                let _ = (&mut task).await;
                match store.release(&job_id, worker_id).await {
                    Ok(_) => tracing::info!(job_id = %job_id, "job released at shutdown"),
                    Err(e) => tracing::warn!(job_id = %job_id, error = %e,
                        "releasing at shutdown failed; the job is claimable when its lease expires"),
                }
                return;
            }
        }
    };

    // A brief database hiccup should not leave the job to wait out its lease.
    for attempt in 1..=3u64 {
        match store.finish(&job_id, worker_id, outcome.clone()).await {
            Ok(state) => {
                tracing::debug!(job_id = %job_id, %state, "job finished");
                return;
            }
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(job_id = %job_id, "lease lost before the outcome was recorded");
                return;
            }
            Err(e) => {
                tracing::warn!(job_id = %job_id, error = %e, attempt, "recording the outcome failed");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
        }
    }
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
