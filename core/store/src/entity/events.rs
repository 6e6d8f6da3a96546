//! `events`: each Stripe event of a connection, byte-exact as received.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    /// 0 or 1.
    pub livemode: i64,
    pub api_version: Option<String>,
    /// Stripe's `created` (unix seconds).
    pub stripe_created: i64,
    pub raw_body: Vec<u8>,
    pub signature_header: String,
    pub received_at: i64,
    /// 0 or 1.
    pub handled: i64,
    pub deliveries: i64,
    pub last_delivery_at: i64,
    /// The job created with the event (NULL for ignored events).
    pub job_id: Option<String>,
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
