//! The worker: [`runner`] runs jobs on apalis (its workers claim, heartbeat and re-run a dead
//! worker's tasks; the store keeps each job's state and schedules its next attempt), and
//! [`registry`] is its job handler, running each job with its connection's pipeline.
#![forbid(unsafe_code)]

pub mod registry;
pub mod runner;

use std::future::Future;

use mlc_service::connections::ConnectionHandler;
use mlc_service::pipeline::{AcceptOnly, Pipeline};
use mlc_store::{Job, JobOutcome};

pub use registry::Handler;
pub use runner::{JobHandler, Schedule, Worker, WorkerConfig};

// The service's handlers, runnable by a worker on their own (the registry dispatches to them).

impl JobHandler for Pipeline {
    fn handle(&self, job: Job) -> impl Future<Output = JobOutcome> + Send {
        Pipeline::handle(self, job)
    }
}

impl JobHandler for AcceptOnly {
    fn handle(&self, job: Job) -> impl Future<Output = JobOutcome> + Send {
        AcceptOnly::handle(self, job)
    }
}

impl JobHandler for ConnectionHandler {
    fn handle(&self, job: Job) -> impl Future<Output = JobOutcome> + Send {
        ConnectionHandler::handle(self, job)
    }
}
