//! The queue on apalis: `jobs` becomes `sync_jobs` (SQLite's names are case-insensitive and
//! apalis' table is `Jobs`), `task_id` names the apalis task carrying a job's next attempt, and
//! the hand-written lease column goes. apalis' own migrations run right after this list
//! (`mlc_store`'s `migrate`): its table cannot exist while ours is still called `jobs`.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[allow(elided_lifetimes_in_paths)] // the trait is declared with an elided lifetime
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            include_str!("sql/sqlite_0003_apalis.sql"),
            include_str!("sql/postgres_0003_apalis.sql"),
        )
        .await
    }
}
