//! `audit`: the append-only audit log (triggers refuse UPDATE and DELETE).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit")]
pub struct Model {
    /// INTEGER PRIMARY KEY AUTOINCREMENT (SQLite), BIGSERIAL (PostgreSQL).
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: String,
    pub connection_id: String,
    pub at: i64,
    pub event_id: Option<String>,
    pub job_id: Option<String>,
    pub stripe_object_id: Option<String>,
    pub step: String,
    pub message: String,
    /// JSON text.
    pub data: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
