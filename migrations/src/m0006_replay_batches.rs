//! Replay batches: `eventsReplay` marks each job it queues again with its batch, so the
//! batch's progress is one indexed count by state (`replayProgress`). A job replayed again
//! later moves to the later batch.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The same on both backends.
const SQL: &str = "\
ALTER TABLE sync_jobs ADD COLUMN replay_batch TEXT;
CREATE INDEX sync_jobs_replay_batch ON sync_jobs (tenant_id, connection_id, replay_batch);
";

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, SQL, SQL).await
    }
}
