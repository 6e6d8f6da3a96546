//! ml-connector's database migrations: one list for both backends, run at start (`serve`, the
//! demo, the tests) and by `ml-connector migrate`.
//!
//! Each migration is plain SQL per backend (`src/sql/<backend>_<n>_<name>.sql`), chosen at run
//! time: the schema leans on what the builders do not express the same way on both (triggers
//! that keep the audit log append-only, row-level security on PostgreSQL), and one SQL file per
//! backend reads as what the database actually holds. The history is sea-orm's
//! `seaql_migrations` table.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

mod m0001_tenancy;
mod m0002_row_level_security;
mod m0003_apalis_queue;
mod m0004_job_changes;
mod m0005_event_listing;
mod m0006_replay_batches;
mod m0007_idempotency_keys;
mod m0008_accounts;
mod m0009_history_runs;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_tenancy::Migration),
            Box::new(m0002_row_level_security::Migration),
            Box::new(m0003_apalis_queue::Migration),
            Box::new(m0004_job_changes::Migration),
            Box::new(m0005_event_listing::Migration),
            Box::new(m0006_replay_batches::Migration),
            Box::new(m0007_idempotency_keys::Migration),
            Box::new(m0008_accounts::Migration),
            Box::new(m0009_history_runs::Migration),
        ]
    }
}

/// Runs the SQL for the connection's backend, statement by statement.
pub(crate) async fn run_sql(
    manager: &SchemaManager<'_>,
    sqlite: &str,
    postgres: &str,
) -> Result<(), DbErr> {
    let sql = match manager.get_database_backend() {
        DbBackend::Sqlite => sqlite,
        DbBackend::Postgres => postgres,
        other => {
            return Err(DbErr::Migration(format!(
                "unsupported database backend {other:?}: use SQLite or PostgreSQL"
            )));
        }
    };
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}
