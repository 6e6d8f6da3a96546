//! The worker: [`runner`] claims jobs from the store's queue (the queue's SQL, claim, finish,
//! heartbeat and release, stays in `mlc-store`), keeps their leases alive and records their
//! outcomes; [`registry`] is its job handler, running each job with its connection's pipeline.
//! The apalis issue replaces the runner next.
#![forbid(unsafe_code)]

pub mod registry;
pub mod runner;

use std::future::Future;

use mlc_service::connections::ConnectionHandler;
use mlc_service::pipeline::{AcceptOnly, Pipeline};
use mlc_store::{Job, JobOutcome};

pub use registry::Handler;
pub use runner::{JobHandler, Worker, WorkerConfig};

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
