//! `jobs`: the job queue.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub kind: String,
    pub event_id: Option<String>,
    /// JSON text.
    pub payload: String,
    /// Unique per connection.
    pub dedupe_key: String,
    /// `queued`, `running`, `waiting`, `succeeded` or `failed` (a CHECK constraint).
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub locked_by: Option<String>,
    pub task_id: Option<String>,
    /// The `eventsReplay` batch that last queued it again.
    pub replay_batch: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::connections::Entity",
        from = "(Column::TenantId, Column::ConnectionId)",
        to = "(super::connections::Column::TenantId, super::connections::Column::Id)"
    )]
    Connections,
}

impl Related<super::connections::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Connections.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
