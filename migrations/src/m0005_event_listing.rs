//! Event listings page by keyset: the GraphQL `events` cursor is the last row's
//! `(received_at, event_id)`, and the next page is what sorts below it. The listing indexes now
//! end in both columns (they ended in `received_at`), so a page, filtered by type or not, is a
//! range read of an index in the list's order however deep it is: no sort, no rows skipped. They
//! also carry `job_id`, so a status filter finds each row's job without reading the event row
//! (its raw body makes it large: several pages on SQLite). For a status few of a connection's
//! jobs have, the list starts from those jobs instead (`ConnectionStore::list_events` picks):
//! `jobs_connection_state` now carries the job's ID, so they are found from the index alone, and
//! `events_job` finds their events (and, in order, the events without a job: status
//! `ignored`).

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The same on both backends (each statement is plain SQL both accept).
const SQL: &str = "\
DROP INDEX events_received_at;
CREATE INDEX events_listing ON events (tenant_id, connection_id, received_at, event_id, job_id);
DROP INDEX events_type;
CREATE INDEX events_type ON events (tenant_id, connection_id, event_type, received_at, event_id, job_id);
CREATE INDEX events_job ON events (tenant_id, connection_id, job_id, received_at, event_id);
DROP INDEX jobs_connection_state;
CREATE INDEX jobs_connection_state ON sync_jobs (tenant_id, connection_id, state, id);
";

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, SQL, SQL).await
    }
}
