//! sea-orm entities, one per table of the schema (`mlc-migrations`, `sql/*_0001_tenancy.sql`).
//!
//! Columns, types and primary keys follow the SQL exactly: every integer is 64-bit (Unix
//! milliseconds, counters, and the 0/1 flags the schema stores as INTEGER/BIGINT), BLOB/BYTEA are
//! `Vec<u8>`, composite primary keys are several `primary_key, auto_increment = false` fields.
//! Relations exist where the schema has a FOREIGN KEY.
//!
//! The store's admin paths (tenants, connections, API keys: `tenants.rs`) run on these through
//! sea-orm's query builder. The hot paths (group-commit intake, claims, the queue, audit, links,
//! …) stay on raw SQL on the sqlx pool; their entities are here so the whole schema is described
//! in one place and checked against the migrated database by `tests/entities.rs`.
//!
//! Tenant-owned tables must be reached through the store's scoped API ([`crate::TenantStore`],
//! [`crate::ConnectionStore`]): an entity query filters on nothing by itself, and on PostgreSQL
//! row-level security shows it nothing unless the transaction set the tenant.

pub mod api_keys;
pub mod audit;
pub mod connections;
pub mod covered_payments;
pub mod credentials;
pub mod customer_links;
pub mod events;
pub mod history_runs;
pub mod idempotency_keys;
pub mod invitations;
pub mod item_links;
pub mod jobs;
pub mod memberships;
pub mod netsuite_slots;
pub mod postings;
pub mod sessions;
pub mod sync_watermarks;
pub mod tenant_keys;
pub mod tenants;
pub mod unmapped_products;
pub mod users;

/// Every entity, `use mlc_store::entity::prelude::*` style.
pub mod prelude {
    pub use super::api_keys::Entity as ApiKeys;
    pub use super::audit::Entity as Audit;
    pub use super::connections::Entity as Connections;
    pub use super::covered_payments::Entity as CoveredPayments;
    pub use super::credentials::Entity as Credentials;
    pub use super::customer_links::Entity as CustomerLinks;
    pub use super::events::Entity as Events;
    pub use super::history_runs::Entity as HistoryRuns;
    pub use super::item_links::Entity as ItemLinks;
    pub use super::jobs::Entity as Jobs;
    pub use super::netsuite_slots::Entity as NetsuiteSlots;
    pub use super::postings::Entity as Postings;
    pub use super::sync_watermarks::Entity as SyncWatermarks;
    pub use super::tenant_keys::Entity as TenantKeys;
    pub use super::tenants::Entity as Tenants;
    pub use super::unmapped_products::Entity as UnmappedProducts;
}
