//! `postings`: what was posted to NetSuite for each Stripe object.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "postings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub stripe_object_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    pub netsuite_record_type: String,
    pub netsuite_internal_id: String,
    pub external_id: String,
    pub event_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
