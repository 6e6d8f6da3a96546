//! What the connector posted, and its cached links between Stripe and NetSuite records, per
//! connection: every query here filters on the [`ConnectionStore`]'s tenant and connection.

use std::collections::BTreeMap;

use mlc_core::now_millis;
use serde::Serialize;

use sqlx::AnyConnection;

use crate::db::{Rls, db_err, get};
use crate::model::{Backend, StoreError};
use crate::scope::{ConnectionScope, ConnectionStore};

/// A NetSuite record the connector wrote for a Stripe object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Posting {
    pub stripe_object_id: String,
    /// `invoice`, `payment`, `fee_journal`.
    pub kind: String,
    pub netsuite_record_type: String,
    pub netsuite_internal_id: String,
    pub external_id: String,
    pub event_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub created_at: i64,
}

/// A posting to record.
#[derive(Debug, Clone)]
pub struct NewPosting {
    pub stripe_object_id: String,
    pub kind: String,
    pub netsuite_record_type: String,
    pub netsuite_internal_id: String,
    pub external_id: String,
    pub event_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
}

/// A link from a Stripe object to a NetSuite record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub stripe_id: String,
    pub netsuite_internal_id: String,
    /// How it was found: `custom_field`, `externalid`, `created`, `manual`…
    pub source: String,
    pub updated_at: i64,
}

/// A Stripe customer's link with what the connector last wrote to that NetSuite customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerLink {
    pub netsuite_internal_id: String,
    /// How it was found (`created`, `custom_field`, `metadata`, …).
    pub source: String,
    /// Opaque to the store: the connector's fingerprint of the fields it last wrote to (or read
    /// back from) this NetSuite record. `None`: not known (older link, or never written).
    pub fingerprint: Option<String>,
}

/// A Stripe product seen without a NetSuite item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmappedProduct {
    pub stripe_product_id: String,
    pub name: Option<String>,
    pub last_object_id: String,
    pub last_event_id: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

const POSTING_COLUMNS: &str = "stripe_object_id, kind, netsuite_record_type, netsuite_internal_id, \
     external_id, event_id, amount_minor, currency, created_at";

fn posting_from_row(row: &sqlx::any::AnyRow) -> Result<Posting, StoreError> {
    Ok(Posting {
        stripe_object_id: get(row, "stripe_object_id")?,
        kind: get(row, "kind")?,
        netsuite_record_type: get(row, "netsuite_record_type")?,
        netsuite_internal_id: get(row, "netsuite_internal_id")?,
        external_id: get(row, "external_id")?,
        event_id: get(row, "event_id")?,
        amount_minor: get(row, "amount_minor")?,
        currency: get(row, "currency")?,
        created_at: get(row, "created_at")?,
    })
}

impl ConnectionStore {
    /// Records a posting; a second record for the same object and kind (in this connection)
    /// keeps the first. Committed before this returns, by the group-commit writer (see
    /// [`LinkWrite`]).
    pub async fn record_posting(&self, p: NewPosting) -> Result<(), StoreError> {
        self.write_link(LinkWrite::Posting(p)).await
    }

    pub async fn get_posting(
        &self,
        stripe_object_id: &str,
        kind: &str,
    ) -> Result<Option<Posting>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POSTING_COLUMNS} FROM postings \
             WHERE stripe_object_id = $1 AND kind = $2 AND tenant_id = $3 AND connection_id = $4"
        )))
        .bind(stripe_object_id.to_string())
        .bind(kind.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(posting_from_row).transpose()
    }

    /// This connection's postings matching one condition on a text column (`$1`), oldest first.
    /// The condition may use `$1` only (`$2` and `$3` are the scope).
    pub(crate) async fn postings_where(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<Vec<Posting>, StoreError> {
        // Parenthesised so that a condition with an OR cannot escape the scope filter.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POSTING_COLUMNS} FROM postings \
             WHERE ({condition}) AND tenant_id = $2 AND connection_id = $3 \
             ORDER BY created_at, kind"
        )))
        .bind(value.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(posting_from_row).collect()
    }

    /// Every posting of this connection, oldest first (reconciliation, exports).
    pub async fn list_postings(&self) -> Result<Vec<Posting>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POSTING_COLUMNS} FROM postings WHERE tenant_id = $1 AND connection_id = $2 \
             ORDER BY created_at, stripe_object_id, kind"
        )))
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter().map(posting_from_row).collect()
    }

    /// Records that each of `payment_object_ids` (charges, payment intents) paid a Stripe
    /// invoice, in one statement; IDs already recorded keep their invoice.
    pub async fn record_covered_payments(
        &self,
        payment_object_ids: &[&str],
        invoice_id: &str,
    ) -> Result<(), StoreError> {
        let mut ids: Vec<String> = payment_object_ids.iter().map(|s| s.to_string()).collect();
        // One row per ID (an invoice's charge and its own list can name one payment intent twice).
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        self.write_link(LinkWrite::CoveredPayments {
            payment_object_ids: ids,
            invoice_id: invoice_id.to_string(),
        })
        .await
    }

    /// The Stripe invoice a charge or payment intent paid, if recorded.
    pub async fn invoice_covering(
        &self,
        payment_object_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT covered_by FROM covered_payments \
             WHERE payment_object_id = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(payment_object_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref().map(|r| get(r, "covered_by")).transpose()
    }

    pub async fn get_customer_link(
        &self,
        stripe_customer_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT netsuite_internal_id FROM customer_links \
             WHERE stripe_customer_id = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(stripe_customer_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(|r| get(r, "netsuite_internal_id"))
            .transpose()
    }

    /// Links a Stripe customer to a NetSuite customer. Relinking to another NetSuite record
    /// forgets the fingerprint (it described the old record); the same record keeps it.
    pub async fn set_customer_link(
        &self,
        stripe_customer_id: &str,
        netsuite_internal_id: &str,
        source: &str,
    ) -> Result<(), StoreError> {
        let _guard = self.store.db.write_guard().await;
        let mut conn = self.store.db.write_one(&self.scope).await?;
        upsert_link(
            &mut conn,
            &self.scope,
            "customer_links",
            "stripe_customer_id",
            stripe_customer_id,
            netsuite_internal_id,
            source,
        )
        .await?;
        conn.done().await
    }

    /// The customer link with its fingerprint.
    pub async fn get_customer_link_state(
        &self,
        stripe_customer_id: &str,
    ) -> Result<Option<CustomerLink>, StoreError> {
        let row = sqlx::query(
            "SELECT netsuite_internal_id, source, fingerprint FROM customer_links \
             WHERE stripe_customer_id = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(stripe_customer_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(|r| {
                Ok(CustomerLink {
                    netsuite_internal_id: get(r, "netsuite_internal_id")?,
                    source: get(r, "source")?,
                    fingerprint: get(r, "fingerprint")?,
                })
            })
            .transpose()
    }

    /// Links a customer to the NetSuite record the connector has just written, with the
    /// fingerprint of what it wrote, in one statement.
    pub async fn set_customer_link_written(
        &self,
        stripe_customer_id: &str,
        netsuite_internal_id: &str,
        source: &str,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        self.write_link(LinkWrite::CustomerWritten {
            stripe_customer_id: stripe_customer_id.to_string(),
            netsuite_internal_id: netsuite_internal_id.to_string(),
            source: source.to_string(),
            fingerprint: fingerprint.to_string(),
        })
        .await
    }

    /// Stores the fingerprint of what was just written to (or read from) a linked NetSuite
    /// customer, only while the link still points at that record. Returns whether it did.
    pub async fn set_customer_fingerprint(
        &self,
        stripe_customer_id: &str,
        netsuite_internal_id: &str,
        fingerprint: &str,
    ) -> Result<bool, StoreError> {
        let _guard = self.store.db.write_guard().await;
        let mut conn = self.store.db.write_one(&self.scope).await?;
        let n = sqlx::query(
            "UPDATE customer_links SET fingerprint = $1 \
             WHERE stripe_customer_id = $2 AND netsuite_internal_id = $3 \
               AND tenant_id = $4 AND connection_id = $5",
        )
        .bind(fingerprint.to_string())
        .bind(stripe_customer_id.to_string())
        .bind(netsuite_internal_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?
        .rows_affected();
        conn.done().await?;
        Ok(n > 0)
    }

    /// Cached item links for these products (those without one are absent).
    pub async fn get_item_links(
        &self,
        products: &[String],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        if products.is_empty() {
            return Ok(out);
        }
        let mut conn = self.store.db.read(&self.scope).await?;
        // One query per product keeps the SQL identical on both backends; lists are short.
        for p in products {
            let row = sqlx::query(
                "SELECT netsuite_internal_id FROM item_links \
                 WHERE stripe_product_id = $1 AND tenant_id = $2 AND connection_id = $3",
            )
            .bind(p.clone())
            .bind(self.scope.t())
            .bind(self.scope.c())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
            if let Some(r) = row {
                out.insert(p.clone(), get(&r, "netsuite_internal_id")?);
            }
        }
        Ok(out)
    }

    /// Links a product to an item and forgets that it was unmapped, in one transaction.
    pub async fn set_item_link(
        &self,
        stripe_product_id: &str,
        netsuite_internal_id: &str,
        source: &str,
    ) -> Result<(), StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        upsert_link(
            &mut tx,
            &self.scope,
            "item_links",
            "stripe_product_id",
            stripe_product_id,
            netsuite_internal_id,
            source,
        )
        .await?;
        sqlx::query(
            "DELETE FROM unmapped_products \
             WHERE stripe_product_id = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(stripe_product_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// Removes a cached item link; returns whether there was one.
    pub async fn remove_item_link(&self, stripe_product_id: &str) -> Result<bool, StoreError> {
        let _guard = self.store.db.write_guard().await;
        let mut conn = self.store.db.write_one(&self.scope).await?;
        let n = sqlx::query(
            "DELETE FROM item_links \
             WHERE stripe_product_id = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(stripe_product_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?
        .rows_affected();
        conn.done().await?;
        Ok(n > 0)
    }

    /// A page of this connection's item links (product to item), by product ID after `after`.
    pub async fn page_item_links(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Link>, StoreError> {
        self.page_links("item_links", "stripe_product_id", after, limit)
            .await
    }

    /// A page of this connection's customer links (Stripe customer to NetSuite customer), by
    /// customer ID after `after`.
    pub async fn page_customer_links(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Link>, StoreError> {
        self.page_links("customer_links", "stripe_customer_id", after, limit)
            .await
    }

    async fn page_links(
        &self,
        table: &'static str,
        key: &'static str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Link>, StoreError> {
        let sql = format!(
            "SELECT {key} AS stripe_id, netsuite_internal_id, source, updated_at FROM {table} \
             WHERE tenant_id = $1 AND connection_id = $2 AND {key} > $3 ORDER BY {key} LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.scope.t())
            .bind(self.scope.c())
            .bind(after.unwrap_or("").to_string())
            .bind(limit)
            .fetch_all(&mut *self.store.db.read(&self.scope).await?)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Link {
                    stripe_id: get(r, "stripe_id")?,
                    netsuite_internal_id: get(r, "netsuite_internal_id")?,
                    source: get(r, "source")?,
                    updated_at: get(r, "updated_at")?,
                })
            })
            .collect()
    }

    /// This connection's item links, by product ID.
    pub async fn list_item_links(&self) -> Result<Vec<Link>, StoreError> {
        self.page_links("item_links", "stripe_product_id", None, i64::MAX)
            .await
    }

    /// Notes a product seen without an item (keeps the first-seen time and the best name).
    pub async fn note_unmapped_product(
        &self,
        stripe_product_id: &str,
        name: Option<&str>,
        object_id: &str,
        event_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let _guard = self.store.db.write_guard().await;
        let mut conn = self.store.db.write_one(&self.scope).await?;
        sqlx::query(
            "INSERT INTO unmapped_products (stripe_product_id, name, last_object_id, last_event_id, \
             first_seen, last_seen, tenant_id, connection_id) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7) \
             ON CONFLICT (tenant_id, connection_id, stripe_product_id) DO UPDATE SET \
             name = COALESCE(excluded.name, unmapped_products.name), last_object_id = excluded.last_object_id, \
             last_event_id = excluded.last_event_id, last_seen = excluded.last_seen",
        )
        .bind(stripe_product_id.to_string())
        .bind(name.map(str::to_string))
        .bind(object_id.to_string())
        .bind(event_id.map(str::to_string))
        .bind(now)
        .bind(self.scope.t())
        .bind(self.scope.c())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        conn.done().await?;
        Ok(())
    }

    pub async fn unmapped_product_name(
        &self,
        stripe_product_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT name FROM unmapped_products \
             WHERE stripe_product_id = $1 AND tenant_id = $2 AND connection_id = $3",
        )
        .bind(stripe_product_id.to_string())
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_optional(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        Ok(match row {
            Some(r) => get::<Option<String>>(&r, "name")?,
            None => None,
        })
    }

    /// This connection's unmapped products, first seen first.
    pub async fn list_unmapped_products(&self) -> Result<Vec<UnmappedProduct>, StoreError> {
        let rows = sqlx::query(
            "SELECT stripe_product_id, name, last_object_id, last_event_id, first_seen, last_seen \
             FROM unmapped_products WHERE tenant_id = $1 AND connection_id = $2 \
             ORDER BY first_seen, stripe_product_id",
        )
        .bind(self.scope.t())
        .bind(self.scope.c())
        .fetch_all(&mut *self.store.db.read(&self.scope).await?)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(UnmappedProduct {
                    stripe_product_id: get(r, "stripe_product_id")?,
                    name: get(r, "name")?,
                    last_object_id: get(r, "last_object_id")?,
                    last_event_id: get(r, "last_event_id")?,
                    first_seen: get(r, "first_seen")?,
                    last_seen: get(r, "last_seen")?,
                })
            })
            .collect()
    }
}

/// Inserts or moves `scope`'s link `key` in `table` (`customer_links` or `item_links`) on the
/// caller's connection (which holds the write guard and commits).
async fn upsert_link(
    conn: &mut AnyConnection,
    scope: &ConnectionScope,
    table: &str,
    key_column: &str,
    key: &str,
    netsuite_internal_id: &str,
    source: &str,
) -> Result<(), StoreError> {
    // A customer fingerprint describes one NetSuite record: a link moved elsewhere drops it.
    // (`customer_links.…` is the conflicting row, which the conflict target keeps in scope.)
    let fingerprint = if table == "customer_links" {
        ", fingerprint = CASE WHEN customer_links.netsuite_internal_id = \
         excluded.netsuite_internal_id THEN customer_links.fingerprint ELSE NULL END"
    } else {
        ""
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} ({key_column}, netsuite_internal_id, source, updated_at, tenant_id, \
         connection_id) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, connection_id, {key_column}) DO UPDATE SET \
         netsuite_internal_id = excluded.netsuite_internal_id, source = excluded.source, \
         updated_at = excluded.updated_at{fingerprint}"
    )))
    .bind(key.to_string())
    .bind(netsuite_internal_id.to_string())
    .bind(source.to_string())
    .bind(now_millis())
    .bind(scope.t())
    .bind(scope.c())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The link writes a job makes while it posts (the posting, the payments an invoice covers, the
/// customer it created). They ride the group-commit writer's next batch, as audit entries do:
/// on SQLite each on its own was a commit (an fsync) on a pool connection whose page cache the
/// writer's commits had made stale, under the one write lock, and with ten companies posting
/// they held that lock a quarter of the time (BENCHMARKS.md, seventh pass).
pub(crate) enum LinkWrite {
    Posting(NewPosting),
    CoveredPayments {
        payment_object_ids: Vec<String>,
        invoice_id: String,
    },
    CustomerWritten {
        stripe_customer_id: String,
        netsuite_internal_id: String,
        source: String,
        fingerprint: String,
    },
}

impl ConnectionStore {
    async fn write_link(&self, write: LinkWrite) -> Result<(), StoreError> {
        self.store
            .write_op(|reply| crate::events::WriteOp::Link {
                scope: self.scope.clone(),
                write,
                reply,
            })
            .await
    }
}

impl LinkWrite {
    /// Applies the write inside the writer's transaction, every row in `scope`'s tenant and
    /// connection.
    pub(crate) async fn apply(
        &self,
        conn: &mut AnyConnection,
        backend: Backend,
        scope: &ConnectionScope,
        now: mlc_core::UnixMillis,
    ) -> Result<(), StoreError> {
        match self {
            LinkWrite::Posting(p) => {
                sqlx::query(
                    "INSERT INTO postings (stripe_object_id, kind, netsuite_record_type, netsuite_internal_id, \
                     external_id, event_id, amount_minor, currency, created_at, tenant_id, connection_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (tenant_id, connection_id, stripe_object_id, kind) DO NOTHING",
                )
                .bind(p.stripe_object_id.clone())
                .bind(p.kind.clone())
                .bind(p.netsuite_record_type.clone())
                .bind(p.netsuite_internal_id.clone())
                .bind(p.external_id.clone())
                .bind(p.event_id.clone())
                .bind(p.amount_minor)
                .bind(p.currency.clone())
                .bind(now)
                .bind(scope.t())
                .bind(scope.c())
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
            }
            LinkWrite::CoveredPayments {
                payment_object_ids,
                invoice_id,
            } => {
                let rows = crate::events::values_sql(backend, payment_object_ids.len(), &["?"; 5]);
                let sql = format!(
                    "INSERT INTO covered_payments (payment_object_id, covered_by, recorded_at, \
                     tenant_id, connection_id) VALUES {rows} \
                     ON CONFLICT (tenant_id, connection_id, payment_object_id) DO NOTHING"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for id in payment_object_ids {
                    q = q
                        .bind(id.clone())
                        .bind(invoice_id.clone())
                        .bind(now)
                        .bind(scope.t())
                        .bind(scope.c());
                }
                q.execute(&mut *conn).await.map_err(db_err)?;
            }
            LinkWrite::CustomerWritten {
                stripe_customer_id,
                netsuite_internal_id,
                source,
                fingerprint,
            } => {
                sqlx::query(
                    "INSERT INTO customer_links (stripe_customer_id, netsuite_internal_id, source, updated_at, \
                     fingerprint, tenant_id, connection_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant_id, connection_id, stripe_customer_id) DO UPDATE SET \
                     netsuite_internal_id = excluded.netsuite_internal_id, source = excluded.source, \
                     updated_at = excluded.updated_at, fingerprint = excluded.fingerprint",
                )
                .bind(stripe_customer_id.clone())
                .bind(netsuite_internal_id.clone())
                .bind(source.clone())
                .bind(now)
                .bind(fingerprint.clone())
                .bind(scope.t())
                .bind(scope.c())
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
            }
        }
        Ok(())
    }
}
