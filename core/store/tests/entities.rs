//! The sea-orm entities against the migrated schema, on every configured backend: every table has
//! an entity whose columns, types, nullability and primary key are the table's; every entity
//! round-trips a fully populated row; tenants, connections and API keys written through the
//! entities are what the store's API reads, and the other way round; relations join; the
//! store's sea-orm pool has the same per-connection settings as its raw pool.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use mlc_core::{ConnectionId, ConnectionStatus, TenantId, WebhookRouteId};
use mlc_store::entity::{
    api_keys, audit, connections, covered_payments, credentials, customer_links, events,
    history_runs, idempotency_keys, invitations, item_links, jobs, memberships, netsuite_slots,
    postings, sessions, sync_watermarks, tenant_keys, tenants, unmapped_products, users,
};
use mlc_store::testing::{backends, connection};
use mlc_store::{ApiKeyRole, Backend, NewConnection, RecordOutcome, Store};
use sea_orm::sea_query::ColumnType;
use sea_orm::{
    ActiveModelTrait as _, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, IdenStatic as _, Iterable as _, ModelTrait as _,
    PrimaryKeyToColumn as _, QueryFilter as _, QuerySelect as _, Statement, TransactionTrait as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

/// A sea-orm transaction on the store's pool that sees every tenant's rows (PostgreSQL
/// row-level security: `app.all_tenants`, as the store's own cross-tenant paths set it).
async fn all_tenants(store: &Store) -> DatabaseTransaction {
    let txn = store.orm().begin().await.unwrap();
    if store.backend() == Backend::Postgres {
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT set_config('app.tenant_id', '', true), set_config('app.all_tenants', 'on', true)",
        ))
        .await
        .unwrap();
    }
    txn
}

// ---------------------------------------------------------------------------------------------
// Schema: every table has an entity, and every entity is its table.

/// One column as the migrated database declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DbColumn {
    /// `text`, `integer` (64-bit) or `blob`.
    kind: &'static str,
    nullable: bool,
    primary_key: bool,
}

fn db_kind(backend: Backend, declared: &str) -> &'static str {
    match (backend, declared.to_ascii_lowercase().as_str()) {
        (Backend::Sqlite, "text") | (Backend::Postgres, "text") => "text",
        (Backend::Sqlite, "integer") | (Backend::Postgres, "bigint") => "integer",
        (Backend::Sqlite, "blob") | (Backend::Postgres, "bytea") => "blob",
        (_, other) => panic!("unexpected column type `{other}` on {backend:?}"),
    }
}

fn entity_kind(t: &ColumnType) -> &'static str {
    match t {
        ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => "text",
        ColumnType::BigInteger => "integer",
        ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob => "blob",
        other => panic!("entity column type {other:?} is not one the schema uses"),
    }
}

/// The tables of the migrated schema (sea-orm's migration history left out, and apalis' tables:
/// its own schema `apalis` on PostgreSQL, `Jobs`, `Workers` and sqlx's migration history on
/// SQLite), with their columns.
async fn schema(store: &Store) -> BTreeMap<String, BTreeMap<String, DbColumn>> {
    let orm = store.orm();
    let backend = store.backend();
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT m.name AS tbl, c.name AS col, c.type AS typ, c.\"notnull\" AS not_null, \
             c.pk AS pk FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> 'seaql_migrations' \
             AND m.name NOT IN ('Jobs', 'Workers', '_sqlx_migrations')"
        }
        Backend::Postgres => {
            "SELECT c.table_name::text AS tbl, c.column_name::text AS col, \
             c.data_type::text AS typ, \
             (CASE WHEN c.is_nullable = 'NO' THEN 1 ELSE 0 END)::bigint AS not_null, \
             (CASE WHEN EXISTS ( \
                SELECT 1 FROM information_schema.table_constraints tc \
                JOIN information_schema.key_column_usage k \
                  ON k.constraint_name = tc.constraint_name \
                 AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name \
                WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema \
                  AND tc.table_name = c.table_name AND k.column_name = c.column_name) \
              THEN 1 ELSE 0 END)::bigint AS pk \
             FROM information_schema.columns c \
             WHERE c.table_schema = current_schema() AND c.table_name <> 'seaql_migrations'"
        }
    };
    let rows = orm
        .query_all_raw(Statement::from_string(orm.get_database_backend(), sql))
        .await
        .unwrap();
    assert!(!rows.is_empty(), "{backend:?}: no schema rows read");
    let mut tables: BTreeMap<String, BTreeMap<String, DbColumn>> = BTreeMap::new();
    for row in rows {
        let table: String = row.try_get("", "tbl").unwrap();
        let column: String = row.try_get("", "col").unwrap();
        let declared: String = row.try_get("", "typ").unwrap();
        let notnull: i64 = row.try_get("", "not_null").unwrap();
        let pk: i64 = row.try_get("", "pk").unwrap();
        tables.entry(table).or_default().insert(
            column,
            DbColumn {
                kind: db_kind(backend, &declared),
                // SQLite reports an INTEGER PRIMARY KEY as nullable (it is the rowid: never NULL).
                nullable: notnull == 0 && pk == 0,
                primary_key: pk > 0,
            },
        );
    }
    tables
}

/// The entity's view of its table: the same shape as [`schema`]'s.
fn entity_columns<E: EntityTrait>() -> (String, BTreeMap<String, DbColumn>) {
    let pk: Vec<String> = E::PrimaryKey::iter()
        .map(|k| k.into_column().as_str().to_string())
        .collect();
    let columns = E::Column::iter()
        .map(|c| {
            let def = c.def();
            let name = c.as_str().to_string();
            let column = DbColumn {
                kind: entity_kind(def.get_column_type()),
                nullable: def.is_null(),
                primary_key: pk.contains(&name),
            };
            (name, column)
        })
        .collect();
    (E::default().table_name().to_string(), columns)
}

#[tokio::test]
async fn every_table_has_an_entity_with_its_columns_types_and_primary_key() {
    let entities = [
        entity_columns::<tenants::Entity>(),
        entity_columns::<tenant_keys::Entity>(),
        entity_columns::<connections::Entity>(),
        entity_columns::<api_keys::Entity>(),
        entity_columns::<idempotency_keys::Entity>(),
        entity_columns::<users::Entity>(),
        entity_columns::<memberships::Entity>(),
        entity_columns::<sessions::Entity>(),
        entity_columns::<invitations::Entity>(),
        entity_columns::<events::Entity>(),
        entity_columns::<jobs::Entity>(),
        entity_columns::<audit::Entity>(),
        entity_columns::<postings::Entity>(),
        entity_columns::<customer_links::Entity>(),
        entity_columns::<item_links::Entity>(),
        entity_columns::<unmapped_products::Entity>(),
        entity_columns::<covered_payments::Entity>(),
        entity_columns::<netsuite_slots::Entity>(),
        entity_columns::<sync_watermarks::Entity>(),
        entity_columns::<credentials::Entity>(),
        entity_columns::<history_runs::Entity>(),
    ];
    let entities: BTreeMap<String, BTreeMap<String, DbColumn>> = entities.into_iter().collect();
    assert_eq!(entities.len(), 21);
    for db in backends().await {
        let store = db.store().await;
        let schema = schema(&store).await;
        assert_eq!(
            schema.keys().collect::<Vec<_>>(),
            entities.keys().collect::<Vec<_>>(),
            "{:?}: tables vs entities",
            db.backend()
        );
        for (table, columns) in &schema {
            assert_eq!(
                &entities[table],
                columns,
                "{:?}: entity of `{table}` vs the migrated table",
                db.backend()
            );
        }
        store.close().await;
    }
}

/// `SELECT <every column> … LIMIT 0` on every entity: the database knows every column the
/// entity names (a typo or a dropped column fails here, before any row exists).
#[tokio::test]
async fn every_entity_selects_on_the_migrated_schema() {
    for db in backends().await {
        let store = db.store().await;
        let orm = store.orm();
        macro_rules! select_none {
            ($($e:ident),*) => {$(
                assert!(
                    $e::Entity::find().limit(0).all(orm).await.unwrap().is_empty(),
                    "{:?}: {}", db.backend(), stringify!($e)
                );
            )*};
        }
        select_none!(
            tenants,
            tenant_keys,
            connections,
            api_keys,
            events,
            jobs,
            audit,
            postings,
            customer_links,
            item_links,
            unmapped_products,
            covered_payments,
            netsuite_slots,
            sync_watermarks,
            credentials,
            history_runs
        );
        store.close().await;
    }
}

/// Every entity inserts a row with every column set (NULLable ones included) and reads back
/// exactly that row: names, types and decoding agree with the database.
#[tokio::test]
async fn every_entity_round_trips_a_full_row() {
    for db in backends().await {
        let store = db.store().await;
        // The tenant and connection the tenant-owned rows hang off (foreign keys).
        let scoped = connection(&store, "acme", "main").await;
        let (t, c) = (
            scoped.scope().tenant_id().as_str().to_string(),
            scoped.scope().connection_id().as_str().to_string(),
        );
        let txn = all_tenants(&store).await;
        let backend = db.backend();

        macro_rules! round_trip {
            ($e:ident, $model:expr) => {{
                let model: $e::Model = $model;
                let am: $e::ActiveModel = model.clone().into();
                $e::Entity::insert(am)
                    .exec_without_returning(&txn)
                    .await
                    .unwrap_or_else(|e| panic!("{backend:?}: inserting {}: {e}", stringify!($e)));
                let back = $e::Entity::find()
                    .filter(
                        <$e::Entity as EntityTrait>::PrimaryKey::iter()
                            .map(|k| k.into_column())
                            .fold(sea_orm::Condition::all(), |cond, col| {
                                cond.add(col.eq(model.get(col)))
                            }),
                    )
                    .one(&txn)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("{backend:?}: {} not found", stringify!($e)));
                assert_eq!(back, model, "{backend:?}: {}", stringify!($e));
            }};
        }

        round_trip!(
            tenants,
            tenants::Model {
                id: "globex".into(),
                name: "Globex".into(),
                created_at: 1_700_000_000_001,
            }
        );
        round_trip!(
            tenant_keys,
            tenant_keys::Model {
                tenant_id: "globex".into(),
                wrapped_key: vec![0, 1, 2, 255, 0, 128],
                created_at: 1_700_000_000_002,
                rotated_at: 1_700_000_000_003,
            }
        );
        round_trip!(
            connections,
            connections::Model {
                tenant_id: "globex".into(),
                id: "eu".into(),
                route_id: format!("whc_{}", "r".repeat(32)),
                name: "Globex EU".into(),
                status: "paused".into(),
                settings: r#"{"subsidiary":"7"}"#.into(),
                netsuite_account: Some("TSTDRV1".into()),
                created_at: 1,
                updated_at: 2,
                last_test_at: Some(3),
                last_test_ok: Some(1),
                last_test_message: Some("ok".into()),
                token_issued_at: Some(4),
                last_error: Some("boom".into()),
                last_error_at: Some(5),
            }
        );
        round_trip!(
            api_keys,
            api_keys::Model {
                id: "key-1".into(),
                tenant_id: "globex".into(),
                name: "ci".into(),
                role: "viewer".into(),
                key_hash: "ab".repeat(32),
                prefix: "mlck_abcd".into(),
                last4: "wxyz".into(),
                created_at: 6,
                last_used_at: Some(7),
                revoked_at: Some(8),
            }
        );
        round_trip!(
            events,
            events::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                event_id: "evt_1".into(),
                event_type: "invoice.paid".into(),
                object_id: Some("in_1".into()),
                livemode: 1,
                api_version: Some("2025-03-31.basil".into()),
                stripe_created: 1_700_000_000,
                raw_body: b"{\"id\":  \"evt_1\"}\n\xff".to_vec(),
                signature_header: "t=1,v1=abc".into(),
                received_at: 9,
                handled: 1,
                deliveries: 3,
                last_delivery_at: 10,
                job_id: Some("job-1".into()),
            }
        );
        round_trip!(
            jobs,
            jobs::Model {
                id: "job-1".into(),
                tenant_id: t.clone(),
                connection_id: c.clone(),
                kind: "process_event".into(),
                event_id: Some("evt_1".into()),
                payload: r#"{"event_id":"evt_1"}"#.into(),
                dedupe_key: "process_event:evt_1".into(),
                state: "waiting".into(),
                attempts: 2,
                max_attempts: 5,
                run_at: 11,
                locked_by: Some("worker-1".into()),
                task_id: Some("01JZ0000000000000000000000".into()),
                replay_batch: None,
                last_error: Some("netsuite 503".into()),
                created_at: 13,
                updated_at: 14,
            }
        );
        // audit: the database assigns the id (append-only, so inserted once and only read).
        {
            let entry = audit::ActiveModel {
                tenant_id: Set(t.clone()),
                connection_id: Set(c.clone()),
                at: Set(15),
                event_id: Set(Some("evt_1".into())),
                job_id: Set(Some("job-1".into())),
                stripe_object_id: Set(Some("in_1".into())),
                step: Set("posted".into()),
                message: Set("posted invoice".into()),
                data: Set(Some(r#"{"n":1}"#.into())),
                ..Default::default()
            };
            let id = audit::Entity::insert(entry)
                .exec(&txn)
                .await
                .unwrap()
                .last_insert_id;
            let back = audit::Entity::find_by_id(id)
                .one(&txn)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (back.step.as_str(), back.at, back.data.as_deref()),
                ("posted", 15, Some(r#"{"n":1}"#)),
                "{backend:?}"
            );
        }
        round_trip!(
            postings,
            postings::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                stripe_object_id: "in_1".into(),
                kind: "invoice".into(),
                netsuite_record_type: "invoice".into(),
                netsuite_internal_id: "1001".into(),
                external_id: "stripe_in_1".into(),
                event_id: Some("evt_1".into()),
                amount_minor: -1250,
                currency: "usd".into(),
                created_at: 16,
            }
        );
        round_trip!(
            customer_links,
            customer_links::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                stripe_customer_id: "cus_1".into(),
                netsuite_internal_id: "42".into(),
                source: "created".into(),
                updated_at: 17,
                fingerprint: Some("fp".into()),
            }
        );
        round_trip!(
            item_links,
            item_links::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                stripe_product_id: "prod_1".into(),
                netsuite_internal_id: "77".into(),
                source: "manual".into(),
                updated_at: 18,
            }
        );
        round_trip!(
            unmapped_products,
            unmapped_products::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                stripe_product_id: "prod_2".into(),
                name: Some("Widget".into()),
                last_object_id: "in_2".into(),
                last_event_id: Some("evt_2".into()),
                first_seen: 19,
                last_seen: 20,
            }
        );
        round_trip!(
            covered_payments,
            covered_payments::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                payment_object_id: "py_1".into(),
                covered_by: "in_1".into(),
                recorded_at: 21,
            }
        );
        round_trip!(
            netsuite_slots,
            netsuite_slots::Model {
                account: "TSTDRV1".into(),
                slot: 3,
                holder: Some("worker-1".into()),
                expires_at: i64::MAX,
            }
        );
        round_trip!(
            sync_watermarks,
            sync_watermarks::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                name: "customers".into(),
                value: "cursor-1".into(),
                updated_at: 22,
            }
        );
        round_trip!(
            credentials,
            credentials::Model {
                tenant_id: t.clone(),
                connection_id: c.clone(),
                name: "stripe_api_key".into(),
                ciphertext: vec![9, 8, 7, 0, 255],
                updated_at: 23,
            }
        );
        round_trip!(
            history_runs,
            history_runs::Model {
                id: "run-1".into(),
                tenant_id: t.clone(),
                connection_id: c.clone(),
                kind: "dry_run".into(),
                state: "succeeded".into(),
                days: 30,
                since: 24,
                scanned: 25,
                queued: 26,
                report: Some("{}".into()),
                error: Some("none".into()),
                created_at: 27,
                started_at: Some(28),
                finished_at: Some(29),
                updated_at: 30,
            }
        );

        // Relations: tenant → connections and API keys, tenant → its key, composite
        // connection ← credentials.
        let (_, conns) = tenants::Entity::find_by_id("globex")
            .find_with_related(connections::Entity)
            .all(&txn)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            conns.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["eu"]
        );
        let (_, keys) = tenants::Entity::find_by_id("globex")
            .find_with_related(api_keys::Entity)
            .all(&txn)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["key-1"]
        );
        let (_, key) = tenants::Entity::find_by_id("globex")
            .find_also_related(tenant_keys::Entity)
            .one(&txn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key.unwrap().wrapped_key, vec![0, 1, 2, 255, 0, 128]);
        let (cred, conn) = credentials::Entity::find()
            .find_also_related(connections::Entity)
            .one(&txn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (cred.name.as_str(), conn.map(|c| (c.tenant_id, c.id))),
            ("stripe_api_key", Some((t.clone(), c.clone())))
        );
        let event_conn = events::Entity::find_by_id((t.clone(), c.clone(), "evt_1".to_string()))
            .one(&txn)
            .await
            .unwrap()
            .unwrap()
            .find_related(connections::Entity)
            .one(&txn)
            .await
            .unwrap();
        assert_eq!(event_conn.map(|c| c.id), Some(c.clone()));
        let job_conn = jobs::Entity::find_by_id("job-1")
            .find_also_related(connections::Entity)
            .one(&txn)
            .await
            .unwrap()
            .unwrap()
            .1;
        assert_eq!(job_conn.map(|c| c.id), Some(c.clone()));
        txn.commit().await.unwrap();
        store.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Entities and the store's API see the same rows.

#[tokio::test]
async fn tenants_and_connections_written_by_entity_are_read_by_the_store_and_back() {
    for db in backends().await {
        let store = db.store().await;
        let backend = db.backend();
        let route = format!("{}{}", WebhookRouteId::PREFIX, "k".repeat(32));
        let route_id = WebhookRouteId::parse(&route).expect("a well-formed route");

        // Written through the entities…
        let txn = all_tenants(&store).await;
        tenants::ActiveModel {
            id: Set("initech".into()),
            name: Set("Initech".into()),
            created_at: Set(1_600_000_000_000),
        }
        .insert(&txn)
        .await
        .unwrap();
        connections::ActiveModel {
            tenant_id: Set("initech".into()),
            id: Set("us".into()),
            route_id: Set(route.clone()),
            name: Set("Initech US".into()),
            status: Set("paused".into()),
            settings: Set(r#"{"subsidiary":"3"}"#.into()),
            netsuite_account: Set(Some("TSTDRV9".into())),
            created_at: Set(10),
            updated_at: Set(11),
            last_test_at: Set(Some(12)),
            last_test_ok: Set(Some(0)),
            last_test_message: Set(Some("401".into())),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .unwrap();
        txn.commit().await.unwrap();

        // …read through the store.
        let tenants = store.list_tenants().await.unwrap();
        let initech = tenants.iter().find(|t| t.id.as_str() == "initech").unwrap();
        assert_eq!(
            (initech.name.as_str(), initech.created_at),
            ("Initech", 1_600_000_000_000),
            "{backend:?}"
        );
        let scope = store.tenant_scope(&tid("initech")).await.unwrap().unwrap();
        let by_route = store.connection_by_route(&route_id).await.unwrap().unwrap();
        assert_eq!(by_route.scope.connection_id().as_str(), "us");
        assert_eq!(by_route.status, ConnectionStatus::Paused);
        assert_eq!(by_route.settings, serde_json::json!({ "subsidiary": "3" }));
        assert_eq!(by_route.netsuite_account.as_deref(), Some("TSTDRV9"));
        assert_eq!(
            (
                by_route.health.last_test_at,
                by_route.health.last_test_ok,
                by_route.health.last_test_message.as_deref(),
                by_route.health.token_issued_at,
            ),
            (Some(12), Some(false), Some("401"), None),
            "{backend:?}"
        );
        let tenant = store.tenant(&scope);
        let got = tenant.get_connection(&cid("us")).await.unwrap().unwrap();
        assert_eq!(got.route_id, route_id);
        assert!(
            store
                .connection_scope(&tid("initech"), &cid("us"))
                .await
                .unwrap()
                .is_some()
        );

        // Written through the store…
        let acme = store.create_tenant(&tid("acme"), "Acme").await.unwrap();
        let made = store
            .tenant(&acme)
            .create_connection(&NewConnection {
                id: cid("main"),
                name: "Acme main".into(),
                status: ConnectionStatus::Active,
                settings: serde_json::json!({ "currency": "usd" }),
                netsuite_account: None,
            })
            .await
            .unwrap();
        store
            .tenant(&acme)
            .record_connection_test(&cid("main"), true, "pong")
            .await
            .unwrap();
        assert!(
            store
                .tenant(&acme)
                .set_connection_status(&cid("main"), ConnectionStatus::Paused)
                .await
                .unwrap()
        );

        // …read through the entities.
        let txn = all_tenants(&store).await;
        let row = tenants::Entity::find_by_id("acme")
            .one(&txn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.name, "Acme");
        let row = connections::Entity::find_by_id(("acme".to_string(), "main".to_string()))
            .one(&txn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.route_id, made.route_id.as_str());
        assert_eq!(row.status, "paused");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row.settings).unwrap(),
            serde_json::json!({ "currency": "usd" })
        );
        assert_eq!(
            (
                row.last_test_ok,
                row.last_test_message.as_deref(),
                row.netsuite_account
            ),
            (Some(1), Some("pong"), None),
            "{backend:?}"
        );
        assert!(row.last_test_at.is_some() && row.updated_at >= row.created_at);
        txn.commit().await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn api_keys_written_by_entity_authenticate_and_store_keys_are_rows() {
    for db in backends().await {
        let store = db.store().await;
        let backend = db.backend();
        let acme = store.create_tenant(&tid("acme"), "Acme").await.unwrap();

        // A key inserted through the entity (only its hash is stored) authenticates.
        let secret = format!("mlck_{}", "a".repeat(40));
        let hash = hex::encode(Sha256::digest(secret.as_bytes()));
        let txn = all_tenants(&store).await;
        api_keys::ActiveModel {
            id: Set("key-entity".into()),
            tenant_id: Set("acme".into()),
            name: Set("from entity".into()),
            role: Set("operator".into()),
            key_hash: Set(hash.clone()),
            prefix: Set("mlck_aaaa".into()),
            last4: Set("aaaa".into()),
            created_at: Set(1),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .unwrap();
        txn.commit().await.unwrap();
        let (scope, info) = store
            .authenticate_api_key(&SecretString::from(secret.clone()))
            .await
            .unwrap()
            .expect("the key authenticates");
        assert_eq!(scope, acme, "{backend:?}");
        assert_eq!(
            (info.id.as_str(), info.role, info.name.as_str()),
            ("key-entity", ApiKeyRole::Operator, "from entity")
        );
        let used = info.last_used_at.expect("its use is recorded");
        let row = api_keys::Entity::find_by_id("key-entity")
            .one(&all_tenants(&store).await)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.last_used_at, Some(used), "{backend:?}");

        // A key made by the store is a row with the secret's hash, never the secret.
        let made = store
            .tenant(&acme)
            .create_api_key("ci", ApiKeyRole::Viewer)
            .await
            .unwrap();
        let txn = all_tenants(&store).await;
        let row = api_keys::Entity::find_by_id(made.info.id.as_str())
            .one(&txn)
            .await
            .unwrap()
            .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(
            row.key_hash,
            hex::encode(Sha256::digest(made.secret.expose_secret().as_bytes()))
        );
        assert_ne!(row.key_hash, made.secret.expose_secret());
        assert_eq!(
            (
                row.role.as_str(),
                row.prefix.as_str(),
                row.last4.as_str(),
                row.revoked_at
            ),
            (
                "viewer",
                made.info.prefix.as_str(),
                made.info.last4.as_str(),
                None
            )
        );
        let listed = store.tenant(&acme).list_api_keys().await.unwrap();
        assert_eq!(
            listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            [made.info.id.as_str(), "key-entity"],
            "newest first"
        );

        // Revoked through the entity: the store no longer authenticates it, nor revokes it again.
        let txn = all_tenants(&store).await;
        api_keys::Entity::update_many()
            .set(api_keys::ActiveModel {
                revoked_at: Set(Some(99)),
                ..Default::default()
            })
            .filter(api_keys::Column::Id.eq("key-entity"))
            .exec(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert!(
            store
                .authenticate_api_key(&SecretString::from(secret))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store
                .tenant(&acme)
                .revoke_api_key("key-entity")
                .await
                .unwrap()
        );
        // Revoked through the store: the row says when.
        assert!(
            store
                .tenant(&acme)
                .revoke_api_key(&made.info.id)
                .await
                .unwrap()
        );
        let row = api_keys::Entity::find_by_id(made.info.id.as_str())
            .one(&all_tenants(&store).await)
            .await
            .unwrap()
            .unwrap();
        assert!(row.revoked_at.is_some(), "{backend:?}");
        store.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The sea-orm pool itself.

/// The pool's connections carry the raw pool's settings: SQLite WAL, `synchronous=FULL`,
/// `busy_timeout`, foreign keys; PostgreSQL acts as `mlc_service`, so row-level security binds a
/// query made straight on [`Store::orm`] (nothing set: no tenant-owned row).
#[tokio::test]
async fn the_orm_pool_has_the_raw_pools_settings() {
    for db in backends().await {
        let store = db.store().await;
        let _ = connection(&store, "acme", "main").await;
        let orm = store.orm();
        // Several transactions at once, so several pooled connections are checked.
        let mut txns = Vec::new();
        for _ in 0..3 {
            txns.push(orm.begin().await.unwrap());
        }
        for txn in &txns {
            match db.backend() {
                Backend::Sqlite => {
                    let mut got = Vec::new();
                    for pragma in [
                        "journal_mode",
                        "synchronous",
                        "busy_timeout",
                        "foreign_keys",
                    ] {
                        let row = txn
                            .query_one_raw(Statement::from_string(
                                DbBackend::Sqlite,
                                format!("PRAGMA {pragma}"),
                            ))
                            .await
                            .unwrap()
                            .unwrap();
                        got.push(match pragma {
                            "journal_mode" => row.try_get_by_index::<String>(0).unwrap(),
                            _ => row.try_get_by_index::<i64>(0).unwrap().to_string(),
                        });
                    }
                    assert_eq!(got, ["wal", "2", "5000", "1"]);
                }
                Backend::Postgres => {
                    let row = txn
                        .query_one_raw(Statement::from_string(
                            DbBackend::Postgres,
                            "SELECT current_user::text AS u",
                        ))
                        .await
                        .unwrap()
                        .unwrap();
                    let user: String = row.try_get("", "u").unwrap();
                    assert_eq!(user, "mlc_service");
                }
            }
        }
        drop(txns);
        let seen = connections::Entity::find().all(orm).await.unwrap().len();
        match db.backend() {
            Backend::Sqlite => assert_eq!(seen, 1),
            Backend::Postgres => assert_eq!(seen, 0, "RLS: nothing set, nothing seen"),
        }
        store.close().await;
    }
}

/// On SQLite the sea-orm writers and the crate's own writer (group-commit intake) share the
/// database's single write lock: they queue on the store's write guard and neither fails with
/// SQLITE_BUSY nor deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orm_writes_and_intake_writes_interleave_without_deadlock() {
    for db in backends().await {
        let store = db.store().await;
        let scoped = connection(&store, "acme", "main").await;
        let tenant = store.tenant(&scoped.scope().tenant());
        let mut tasks = Vec::new();
        for i in 0..16 {
            let scoped = scoped.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("evt_{i}");
                let outcome = scoped
                    .record_event(&common::event(&id, true), Some(common::job_for(&id)))
                    .await
                    .unwrap();
                assert_eq!(outcome, RecordOutcome::Stored);
            }));
            let tenant = tenant.clone();
            tasks.push(tokio::spawn(async move {
                tenant
                    .create_api_key(&format!("key {i}"), ApiKeyRole::Viewer)
                    .await
                    .unwrap();
                tenant
                    .record_connection_test(&cid("main"), i % 2 == 0, "ping")
                    .await
                    .unwrap();
            }));
        }
        let all = futures_join(tasks);
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("no deadlock");
        assert_eq!(tenant.list_api_keys().await.unwrap().len(), 16);
        store.close().await;
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.await.unwrap();
    }
}
