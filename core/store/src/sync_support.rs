//! Store queries of the reference sync: links looked up from the NetSuite side (which Stripe
//! object a sync linked to a NetSuite record, to finish a sync that stopped between creating the
//! Stripe object and writing its ID back), and the audit of one Stripe object (sync writes have
//! no event). All of one connection: a NetSuite record is looked up among its own links only.

use crate::db::{audit_from_row, db_err, get};
use crate::model::{AuditEntry, StoreError};
use crate::scope::ConnectionStore;

impl ConnectionStore {
    /// The Stripe product most recently linked to NetSuite item `netsuite_internal_id` with link
    /// source `source` (several products may share an item; only links of that source count).
    pub async fn item_link_by_netsuite(
        &self,
        netsuite_internal_id: &str,
        source: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT stripe_product_id AS stripe_id FROM item_links \
             WHERE netsuite_internal_id = $1 AND source = $2 \
               AND tenant_id = $3 AND connection_id = $4 \
             ORDER BY updated_at DESC, stripe_product_id LIMIT 1",
        )
        .bind(netsuite_internal_id.to_string())
        .bind(source.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "stripe_id")).transpose()
    }

    /// The Stripe customer most recently linked to NetSuite customer `netsuite_internal_id` with
    /// link source `source`.
    pub async fn customer_link_by_netsuite(
        &self,
        netsuite_internal_id: &str,
        source: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT stripe_customer_id AS stripe_id FROM customer_links \
             WHERE netsuite_internal_id = $1 AND source = $2 \
               AND tenant_id = $3 AND connection_id = $4 \
             ORDER BY updated_at DESC, stripe_customer_id LIMIT 1",
        )
        .bind(netsuite_internal_id.to_string())
        .bind(source.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "stripe_id")).transpose()
    }

    /// Every audit entry about a Stripe object, oldest first.
    pub async fn audit_for_stripe_object(
        &self,
        stripe_object_id: &str,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, event_id, job_id, stripe_object_id, step, message, data \
             FROM audit WHERE stripe_object_id = $1 AND tenant_id = $2 AND connection_id = $3 \
             ORDER BY id",
        )
        .bind(stripe_object_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }
}
