//! Builders shared by the store's integration tests.
#![allow(dead_code, unused_imports)]

use mlc_core::now_millis;
use mlc_store::{NewEvent, NewJob};

/// A delivery as the intake would hand it over. The body contains bytes JSON re-serialisation
/// would change (spacing, key order, escaped unicode, a trailing newline) to prove byte-exactness.
pub fn event(id: &str, handled: bool) -> NewEvent {
    let body = format!(
        "{{\"id\":  \"{id}\", \"object\":\"event\",\"type\":\"invoice.paid\",\"data\":{{\"object\":{{\"id\":\"in_{id}\",\"name\":\"Caf\\u00e9 \u{2014} \u{1F600}\"}}}},\"created\":1700000000}}\n"
    );
    NewEvent {
        event_id: id.to_string(),
        event_type: if handled {
            "invoice.paid"
        } else {
            "customer.updated"
        }
        .to_string(),
        object_id: Some(format!("in_{id}")),
        livemode: false,
        api_version: Some("2025-03-31.basil".into()),
        stripe_created: 1_700_000_000,
        raw_body: body.into_bytes(),
        signature_header: format!("t=1700000000,v1=abc{id}"),
        received_at: now_millis(),
        handled,
    }
}

pub fn job_for(id: &str) -> NewJob {
    NewJob {
        kind: "process_event".into(),
        event_id: Some(id.to_string()),
        payload: serde_json::json!({ "event_id": id }),
        dedupe_key: format!("process_event:{id}"),
        max_attempts: 5,
        run_at: now_millis(),
    }
}

pub use mlc_store::testing::plain_job;

pub fn steps(entries: &[mlc_store::AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.step.clone()).collect()
}

/// apalis' task rows with ID `task_id` in the store's queue: `(status, run_at in unix ms)` each.
/// SQLite keeps `run_at` in whole seconds, so its value is a multiple of 1000 there.
pub async fn apalis_tasks(store: &mlc_store::Store, task_id: &str) -> Vec<(String, i64)> {
    use sea_orm::{ConnectionTrait as _, Statement};
    let sql = match store.backend() {
        mlc_store::Backend::Sqlite => {
            "SELECT status, run_at * 1000 AS run_at_ms FROM Jobs WHERE id = $1 AND job_type = $2"
        }
        mlc_store::Backend::Postgres => {
            "SELECT status, CAST(EXTRACT(EPOCH FROM run_at) * 1000 AS BIGINT) AS run_at_ms \
             FROM apalis.jobs WHERE id = $1 AND job_type = $2"
        }
    };
    let orm = store.orm();
    let rows = orm
        .query_all_raw(Statement::from_sql_and_values(
            orm.get_database_backend(),
            sql,
            [task_id.into(), store.queue().into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "status").unwrap(),
                r.try_get::<i64>("", "run_at_ms").unwrap(),
            )
        })
        .collect()
}

/// How many apalis task rows the store's queue holds (any status).
pub async fn apalis_task_count(store: &mlc_store::Store) -> i64 {
    use sea_orm::{ConnectionTrait as _, Statement};
    let sql = match store.backend() {
        mlc_store::Backend::Sqlite => "SELECT COUNT(*) AS n FROM Jobs WHERE job_type = $1",
        mlc_store::Backend::Postgres => "SELECT COUNT(*) AS n FROM apalis.jobs WHERE job_type = $1",
    };
    let orm = store.orm();
    let row = orm
        .query_one_raw(Statement::from_sql_and_values(
            orm.get_database_backend(),
            sql,
            [store.queue().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// A task ID that carries no job (a fresh ULID).
pub fn unknown_task() -> String {
    ulid::Ulid::generate().to_string()
}
