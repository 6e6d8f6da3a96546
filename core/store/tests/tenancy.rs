//! Tenant isolation: two tenants connecting the same Stripe account keep separate copies of
//! everything; one tenant's scope asked for another's IDs finds nothing; credentials are bound to
//! their tenant, connection and name, survive master-key rotation and never reach the disk in
//! clear; PostgreSQL row-level security holds even for a query that forgot its tenant filter; API
//! keys are shown once and scoped to their tenant. Every test runs on every configured backend.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{event, job_for, steps};
use mlc_core::{ConnectionId, ConnectionStatus, TenantId};
use mlc_store::sealed::{MasterKey, SealError};
use mlc_store::testing::{TestDb, backends, connection, start_next};
use mlc_store::{
    ApiKeyRole, Backend, ConnectionStore, EventFilter, JobOutcome, JobState, NewConnection,
    NewPosting, RecordOutcome, Store,
};
use secrecy::{ExposeSecret as _, SecretString};

const CANARY: &str = "sk_test_PLAINTEXT_CANARY_123";

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

fn posting(object: &str, ns_id: &str) -> NewPosting {
    NewPosting {
        stripe_object_id: object.into(),
        kind: "invoice".into(),
        netsuite_record_type: "invoice".into(),
        netsuite_internal_id: ns_id.into(),
        external_id: format!("stripe_{object}"),
        event_id: None,
        amount_minor: 1250,
        currency: "usd".into(),
    }
}

/// `acme/acme-stripe` and `globex/globex-stripe`: two tenants, each with one connection.
async fn acme_and_globex(store: &Store) -> (ConnectionStore, ConnectionStore) {
    (
        connection(store, "acme", "acme-stripe").await,
        connection(store, "globex", "globex-stripe").await,
    )
}

fn names(secrets: &BTreeMap<String, SecretString>) -> BTreeMap<&str, &str> {
    secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A raw connection to the test database, outside the store (PostgreSQL: as the URL's role,
/// a superuser in CI, so it sees every row unless it `SET ROLE`s).
async fn raw(db: &TestDb) -> sqlx::AnyConnection {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let url = match db.backend() {
        Backend::Sqlite => format!("{}?mode=rw", db.url()),
        Backend::Postgres => db.url().to_string(),
    };
    sqlx::AnyConnection::connect(&url).await.unwrap()
}

/// The SQLite database file's path, from `sqlite://PATH`.
fn sqlite_path(db: &TestDb) -> String {
    db.url()
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Same Stripe account, two tenants.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_on_one_stripe_account_each_keep_their_own_copy() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let (acme, globex) = acme_and_globex(&store).await;
        // The same Stripe event (same ID: one Stripe account) delivered to both connections,
        // at once, so the writer may well commit both in one batch.
        let ev_a = event("evt_same", true);
        let mut ev_g = event("evt_same", true);
        ev_g.signature_header = "t=1700000000,v1=globex".into();
        ev_g.raw_body = b"{\"id\":\"evt_same\",\"for\":\"globex\"}".to_vec();
        let (out_a, out_g) = tokio::join!(
            acme.record_event(&ev_a, Some(job_for("evt_same"))),
            globex.record_event(&ev_g, Some(job_for("evt_same"))),
        );
        assert_eq!(
            (out_a.unwrap(), out_g.unwrap()),
            (RecordOutcome::Stored, RecordOutcome::Stored),
            "{b:?}: the same event ID in two connections is two events"
        );
        // Within one connection it still deduplicates, and only that connection's copy counts.
        assert_eq!(
            acme.record_event(&ev_a, Some(job_for("evt_same")))
                .await
                .unwrap(),
            RecordOutcome::Duplicate
        );

        for (view, ev, deliveries) in [(&acme, &ev_a, 2), (&globex, &ev_g, 1)] {
            let who = view.scope().to_string();
            let got = view.get_event("evt_same").await.unwrap().unwrap();
            assert_eq!(got.raw_body, ev.raw_body, "{b:?} {who}");
            assert_eq!(got.signature_header, ev.signature_header, "{b:?} {who}");
            assert_eq!(got.deliveries, deliveries, "{b:?} {who}");
            let listed = view.list_events(&EventFilter::default()).await.unwrap();
            assert_eq!(listed.len(), 1, "{b:?} {who}");
            assert_eq!(listed[0].event_id, "evt_same");
            assert_eq!(listed[0].status, "queued");
            assert_eq!(view.count_events().await.unwrap(), 1, "{b:?} {who}");
            let audit = view.audit_for_event("evt_same").await.unwrap();
            let want: &[&str] = if deliveries == 2 {
                &["received", "duplicate_delivery"]
            } else {
                &["received"]
            };
            assert_eq!(steps(&audit), want, "{b:?} {who}");
            let counts: HashMap<_, _> = view.job_counts().await.unwrap().into_iter().collect();
            assert_eq!(counts[&JobState::Queued], 1, "{b:?} {who}");
        }

        let job_a = acme.get_job_for_event("evt_same").await.unwrap().unwrap();
        let job_g = globex.get_job_for_event("evt_same").await.unwrap().unwrap();
        assert_ne!(job_a.id, job_g.id, "{b:?}: each connection has its own job");
        assert_eq!(&job_a.scope, acme.scope());
        assert_eq!(&job_g.scope, globex.scope());
        // Each scope's audit of the event names its own job.
        let audit_a = acme.audit_for_event("evt_same").await.unwrap();
        assert_eq!(audit_a[0].job_id.as_deref(), Some(job_a.id.as_str()));
        let audit_g = globex.audit_for_event("evt_same").await.unwrap();
        assert_eq!(audit_g[0].job_id.as_deref(), Some(job_g.id.as_str()));

        // The worker starts jobs across tenants and learns each job's connection from the job.
        let mut started = Vec::new();
        while let Some(next) = start_next(&store, "w").await {
            started.push(next);
        }
        let by_id: HashMap<_, _> = started
            .iter()
            .map(|(j, _)| (j.id.clone(), j.scope.clone()))
            .collect();
        assert_eq!(by_id.len(), 2, "{b:?}: {started:?}");
        assert_eq!(by_id.get(&job_a.id), Some(acme.scope()), "{b:?}");
        assert_eq!(by_id.get(&job_g.id), Some(globex.scope()), "{b:?}");
        for (job, _) in &started {
            assert_eq!(job.event_id.as_deref(), Some("evt_same"));
        }
        let task_of: HashMap<_, _> = started
            .iter()
            .map(|(j, t)| (j.id.clone(), t.clone()))
            .collect();
        // Finishing one tenant's job writes its audit entry into that tenant's trail only.
        store
            .finish(
                &job_a.id,
                &task_of[&job_a.id],
                JobOutcome::Failed {
                    error: "acme only".into(),
                },
            )
            .await
            .unwrap();
        store
            .finish(&job_g.id, &task_of[&job_g.id], JobOutcome::Succeeded)
            .await
            .unwrap();
        assert_eq!(
            steps(&acme.audit_for_event("evt_same").await.unwrap()),
            ["received", "duplicate_delivery", "failed"],
            "{b:?}"
        );
        assert_eq!(
            steps(&globex.audit_for_event("evt_same").await.unwrap()),
            ["received", "succeeded"],
            "{b:?}"
        );
        assert_eq!(
            acme.get_job(&job_a.id).await.unwrap().unwrap().state,
            JobState::Failed
        );
        assert_eq!(
            globex.get_job(&job_g.id).await.unwrap().unwrap().state,
            JobState::Succeeded
        );
        // Replaying acme's copy leaves globex's alone.
        assert!(acme.requeue_event("evt_same").await.unwrap());
        assert_eq!(
            globex.get_job(&job_g.id).await.unwrap().unwrap().state,
            JobState::Succeeded,
            "{b:?}"
        );
        store.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Another tenant's IDs find nothing.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scope_asked_for_another_tenants_ids_finds_nothing() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let (acme, globex) = acme_and_globex(&store).await;
        let master = MasterKey::generate();

        // Globex's rows of every kind.
        globex
            .record_event(&event("evt_only_b", true), Some(job_for("evt_only_b")))
            .await
            .unwrap();
        let job_b = globex
            .get_job_for_event("evt_only_b")
            .await
            .unwrap()
            .unwrap();
        let (started, task) = start_next(&store, "w").await.unwrap();
        assert_eq!(started.id, job_b.id);
        store
            .finish(
                &job_b.id,
                &task,
                JobOutcome::Failed {
                    error: "needs a person".into(),
                },
            )
            .await
            .unwrap();
        globex
            .record_posting(posting("in_evt_only_b", "701"))
            .await
            .unwrap();
        globex
            .record_covered_payments(&["py_b"], "in_evt_only_b")
            .await
            .unwrap();
        globex
            .set_customer_link("cus_b", "501", "manual")
            .await
            .unwrap();
        globex
            .set_item_link("prod_b", "601", "manual")
            .await
            .unwrap();
        globex
            .note_unmapped_product("prod_unmapped_b", Some("Widget"), "in_evt_only_b", None)
            .await
            .unwrap();
        globex.set_watermark("ns_items", "b-mark").await.unwrap();
        globex
            .store_secret(&master, "stripe/api_key", b"sk_globex")
            .await
            .unwrap();
        let b_job_before = globex.get_job(&job_b.id).await.unwrap().unwrap();
        let b_audit_before = steps(&globex.audit_for_event("evt_only_b").await.unwrap());
        assert_eq!(b_audit_before, ["received", "failed"]);

        // Acme's view of every one of them: nothing.
        assert!(acme.get_job(&job_b.id).await.unwrap().is_none(), "{b:?}");
        assert!(acme.get_event("evt_only_b").await.unwrap().is_none());
        assert!(
            acme.get_job_for_event("evt_only_b")
                .await
                .unwrap()
                .is_none()
        );
        assert!(acme.audit_for_event("evt_only_b").await.unwrap().is_empty());
        assert!(acme.audit_for_job(&job_b.id).await.unwrap().is_empty());
        assert!(
            acme.audit_for_stripe_object("in_evt_only_b")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(acme.count_events().await.unwrap(), 0);
        assert!(
            acme.list_events(&EventFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
        for filter in [
            EventFilter {
                stripe_id: Some("evt_only_b".into()),
                ..EventFilter::default()
            },
            EventFilter {
                netsuite_id: Some("701".into()),
                ..EventFilter::default()
            },
            EventFilter {
                status: Some("failed".into()),
                ..EventFilter::default()
            },
        ] {
            assert!(acme.list_events(&filter).await.unwrap().is_empty(), "{b:?}");
        }
        assert!(
            acme.job_counts()
                .await
                .unwrap()
                .iter()
                .all(|(_, n)| *n == 0),
            "{b:?}"
        );
        assert!(
            acme.last_error_containing("needs a person")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            acme.get_posting("in_evt_only_b", "invoice")
                .await
                .unwrap()
                .is_none(),
            "{b:?}"
        );
        assert!(acme.list_postings().await.unwrap().is_empty());
        assert!(
            acme.postings_for_object("in_evt_only_b")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(acme.invoice_covering("py_b").await.unwrap().is_none());
        assert!(acme.get_customer_link("cus_b").await.unwrap().is_none());
        assert!(
            acme.get_customer_link_state("cus_b")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            acme.customer_link_by_netsuite("501", "manual")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            acme.get_item_links(&["prod_b".to_string()])
                .await
                .unwrap()
                .is_empty(),
            "{b:?}"
        );
        assert!(acme.list_item_links().await.unwrap().is_empty());
        assert!(
            acme.item_link_by_netsuite("601", "manual")
                .await
                .unwrap()
                .is_none()
        );
        assert!(acme.list_unmapped_products().await.unwrap().is_empty());
        assert!(
            acme.unmapped_product_name("prod_unmapped_b")
                .await
                .unwrap()
                .is_none()
        );
        assert!(acme.get_watermark("ns_items").await.unwrap().is_none());
        assert!(acme.list_credential_names().await.unwrap().is_empty());
        assert!(
            acme.get_credential("stripe/api_key")
                .await
                .unwrap()
                .is_none()
        );
        assert!(acme.load_secrets(Some(&master)).await.unwrap().is_empty());

        // Acme's writes under the same natural keys make acme's rows, never touch globex's.
        assert!(!acme.requeue_event("evt_only_b").await.unwrap(), "{b:?}");
        assert_eq!(acme.requeue_where(JobState::Failed, None).await.unwrap(), 0);
        assert_eq!(acme.wake_waiting_jobs("").await.unwrap(), 0);
        assert!(!acme.remove_item_link("prod_b").await.unwrap());
        acme.set_item_link("prod_b", "999", "manual").await.unwrap();
        acme.set_customer_link("cus_b", "998", "manual")
            .await
            .unwrap();
        assert!(
            !acme
                .set_customer_fingerprint("cus_b", "501", "v1:forged")
                .await
                .unwrap()
        );
        acme.set_watermark("ns_items", "a-mark").await.unwrap();
        let b_job_after = globex.get_job(&job_b.id).await.unwrap().unwrap();
        assert_eq!(
            (
                b_job_after.state,
                b_job_after.attempts,
                b_job_after.updated_at
            ),
            (
                b_job_before.state,
                b_job_before.attempts,
                b_job_before.updated_at
            ),
            "{b:?}: acme's replay changed globex's job"
        );
        assert_eq!(
            steps(&globex.audit_for_event("evt_only_b").await.unwrap()),
            b_audit_before
        );
        assert_eq!(
            globex
                .get_item_links(&["prod_b".to_string()])
                .await
                .unwrap()
                .get("prod_b")
                .map(String::as_str),
            Some("601")
        );
        let link_b = globex
            .get_customer_link_state("cus_b")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (link_b.netsuite_internal_id.as_str(), link_b.fingerprint),
            ("501", None)
        );
        assert_eq!(
            globex.get_watermark("ns_items").await.unwrap().as_deref(),
            Some("b-mark")
        );
        assert_eq!(
            acme.get_watermark("ns_items").await.unwrap().as_deref(),
            Some("a-mark")
        );
        // Globex's own replay still works (the refusal above was the scope, not the state).
        assert!(globex.requeue_event("evt_only_b").await.unwrap());

        // Connection scopes are made from a lookup: another tenant's connection ID finds nothing.
        let globex_conn = globex.scope().connection_id().clone();
        assert!(
            store
                .connection_scope(&tid("acme"), &globex_conn)
                .await
                .unwrap()
                .is_none(),
            "{b:?}"
        );
        assert_eq!(
            store
                .connection_scope(&tid("globex"), &globex_conn)
                .await
                .unwrap()
                .as_ref(),
            Some(globex.scope())
        );
        assert!(
            store
                .connection_scope(&tid("initech"), &globex_conn)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.tenant_scope(&tid("initech")).await.unwrap().is_none());
        // A tenant's own view of connections: its own only.
        let acme_t = store.tenant(&acme.scope().tenant());
        assert!(acme_t.get_connection(&globex_conn).await.unwrap().is_none());
        let listed: Vec<_> = acme_t
            .list_connections()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.scope)
            .collect();
        assert_eq!(listed, [acme.scope().clone()]);
        assert!(
            !acme_t
                .set_connection_status(&globex_conn, ConnectionStatus::Paused)
                .await
                .unwrap()
        );
        let globex_t = store.tenant(&globex.scope().tenant());
        assert_eq!(
            globex_t
                .get_connection(&globex_conn)
                .await
                .unwrap()
                .unwrap()
                .status,
            ConnectionStatus::Active
        );
        // The operator's view holds both.
        assert_eq!(store.all_connections().await.unwrap().len(), 2);
        let tenants: Vec<_> = store
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(tenants.len(), 2);
        assert!(tenants.contains(&"acme".to_string()) && tenants.contains(&"globex".to_string()));
        store.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ciphertext_moved_to_another_connection_tenant_or_name_does_not_open() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let master = MasterKey::generate();
        let acme_us = connection(&store, "acme", "acme-us").await;
        let acme_eu = connection(&store, "acme", "acme-eu").await;
        let globex = connection(&store, "globex", "globex-us").await;
        acme_us
            .store_secret(&master, "stripe/api_key", CANARY.as_bytes())
            .await
            .unwrap();
        acme_us
            .store_secret(&master, "stripe/webhook_secret", b"whsec_acme_us")
            .await
            .unwrap();
        acme_eu
            .store_secret(&master, "stripe/api_key", b"sk_acme_eu")
            .await
            .unwrap();
        globex
            .store_secret(&master, "stripe/api_key", b"sk_globex")
            .await
            .unwrap();
        assert_eq!(
            names(&acme_us.load_secrets(Some(&master)).await.unwrap()),
            BTreeMap::from([
                ("stripe/api_key", CANARY),
                ("stripe/webhook_secret", "whsec_acme_us")
            ])
        );
        let stolen = acme_us
            .get_credential("stripe/api_key")
            .await
            .unwrap()
            .unwrap();

        // (target, tenant, connection, field the copy lands on)
        let cases: [(&ConnectionStore, &str, &str, &str); 3] = [
            (&globex, "globex", "globex-us", "stripe/api_key"),
            (&acme_eu, "acme", "acme-eu", "stripe/api_key"),
            (&acme_us, "acme", "acme-us", "stripe/webhook_secret"),
        ];
        for (target, tenant, conn, field) in cases {
            let original = target.get_credential(field).await.unwrap().unwrap();
            target.put_credential(field, stolen.clone()).await.unwrap();
            let e = target.load_secrets(Some(&master)).await.unwrap_err();
            assert!(
                matches!(
                    &e,
                    SealError::Misplaced { tenant: t, connection: c, field: f }
                        if t == tenant && c == conn && f == field
                ),
                "{b:?} {tenant}/{conn} {field}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{tenant}/{conn}")) && msg.contains(field),
                "{b:?}: {msg}"
            );
            assert!(!msg.contains(CANARY), "{b:?}: {msg}");
            // Put back, it opens again.
            target.put_credential(field, original).await.unwrap();
            target.load_secrets(Some(&master)).await.unwrap();
        }

        // A tenant with no data key of its own cannot open a copied ciphertext either (the
        // library reports that as a missing data key rather than as a misplaced credential).
        let initech = connection(&store, "initech", "initech-us").await;
        initech
            .put_credential("stripe/api_key", stolen.clone())
            .await
            .unwrap();
        let e = initech.load_secrets(Some(&master)).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("initech") && !msg.contains(CANARY),
            "{b:?}: {e:?}"
        );

        // The victim is unaffected throughout.
        assert_eq!(
            acme_us.load_secrets(Some(&master)).await.unwrap()["stripe/api_key"].expose_secret(),
            CANARY
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_key_rotation_keeps_every_tenants_secrets_and_retires_the_old_key() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let acme_us = connection(&store, "acme", "acme-us").await;
        let acme_eu = connection(&store, "acme", "acme-eu").await;
        let globex = connection(&store, "globex", "globex-us").await;
        let want: [(&ConnectionStore, BTreeMap<&str, &str>); 3] = [
            (
                &acme_us,
                BTreeMap::from([
                    ("stripe/api_key", "sk_acme_us"),
                    ("netsuite/token", "tok_a"),
                ]),
            ),
            (&acme_eu, BTreeMap::from([("stripe/api_key", "sk_acme_eu")])),
            (
                &globex,
                BTreeMap::from([("stripe/api_key", "sk_globex"), ("netsuite/token", "tok_g")]),
            ),
        ];
        for (view, secrets) in &want {
            for (name, value) in secrets {
                view.store_secret(&old, name, value.as_bytes())
                    .await
                    .unwrap();
            }
        }
        let sealed_before = acme_us.get_credential("stripe/api_key").await.unwrap();

        // Rotating from a key that is not the current one changes nothing.
        let e = store.rotate_master_key(&new, &old).await.unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{b:?}: {e}");
        for (view, secrets) in &want {
            assert_eq!(
                &names(&view.load_secrets(Some(&old)).await.unwrap()),
                secrets
            );
        }

        // Two tenants, two data keys rewrapped.
        assert_eq!(
            store.rotate_master_key(&old, &new).await.unwrap(),
            2,
            "{b:?}"
        );
        for (view, secrets) in &want {
            let who = view.scope().to_string();
            assert_eq!(
                &names(&view.load_secrets(Some(&new)).await.unwrap()),
                secrets,
                "{b:?} {who}"
            );
            let e = view.load_secrets(Some(&old)).await.unwrap_err();
            assert!(matches!(e, SealError::WrongKey), "{b:?} {who}: {e}");
            let e = view.store_secret(&old, "x", b"y").await.unwrap_err();
            assert!(matches!(e, SealError::WrongKey), "{b:?} {who}: {e}");
        }
        // The credentials themselves were not rewritten: only the data keys moved.
        assert_eq!(
            acme_us.get_credential("stripe/api_key").await.unwrap(),
            sealed_before
        );

        // All or nothing: a tenant whose data key the given old key does not open stops the
        // whole rotation, and no tenant moves.
        let initech = connection(&store, "initech", "initech-us").await;
        let stray = MasterKey::generate();
        initech
            .store_secret(&stray, "stripe/api_key", b"sk_initech")
            .await
            .unwrap();
        let newer = MasterKey::generate();
        let e = store.rotate_master_key(&new, &newer).await.unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{b:?}: {e}");
        for (view, secrets) in &want {
            assert_eq!(
                &names(&view.load_secrets(Some(&new)).await.unwrap()),
                secrets
            );
        }
        assert!(matches!(
            acme_us.load_secrets(Some(&newer)).await.unwrap_err(),
            SealError::WrongKey
        ));
        assert_eq!(
            initech.load_secrets(Some(&stray)).await.unwrap()["stripe/api_key"].expose_secret(),
            "sk_initech"
        );
        store.close().await;
    }
}

/// Every byte of the SQLite database as it is on disk: the main file and the WAL.
fn sqlite_file_bytes(db: &TestDb) -> Vec<u8> {
    let path = sqlite_path(db);
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
            all.extend(bytes);
        }
    }
    assert!(!all.is_empty(), "no SQLite file at {path}");
    all
}

/// Every value of every row of `credentials` and `tenant_keys`, as bytes.
async fn credential_rows(db: &TestDb) -> Vec<Vec<u8>> {
    use sqlx::Row as _;
    let mut conn = raw(db).await;
    let mut out = Vec::new();
    let rows = sqlx::query(
        "SELECT tenant_id, connection_id, name, ciphertext FROM credentials \
         ORDER BY tenant_id, connection_id, name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!rows.is_empty(), "{:?}: no credential rows", db.backend());
    for r in rows {
        for i in 0..3 {
            out.push(r.get::<String, _>(i).into_bytes());
        }
        out.push(r.get::<Vec<u8>, _>(3));
    }
    let rows = sqlx::query("SELECT tenant_id, wrapped_key FROM tenant_keys ORDER BY tenant_id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!rows.is_empty(), "{:?}: no tenant key rows", db.backend());
    for r in rows {
        out.push(r.get::<String, _>(0).into_bytes());
        out.push(r.get::<Vec<u8>, _>(1));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plaintext_is_in_no_file_and_no_row() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let master = MasterKey::generate();
        let (acme, globex) = acme_and_globex(&store).await;
        acme.store_secret(&master, "stripe/api_key", CANARY.as_bytes())
            .await
            .unwrap();
        globex
            .store_secret(&master, "stripe/api_key", b"sk_globex_other")
            .await
            .unwrap();
        assert_eq!(
            acme.load_secrets(Some(&master)).await.unwrap()["stripe/api_key"].expose_secret(),
            CANARY
        );

        let rows = credential_rows(&db).await;
        assert!(rows.iter().any(|v| v == b"stripe/api_key"), "{b:?}");
        for value in &rows {
            assert!(
                !contains(value, CANARY.as_bytes()) && !contains(value, b"PLAINTEXT_CANARY"),
                "{b:?}: plaintext in a credentials/tenant_keys row"
            );
        }
        if b == Backend::Sqlite {
            // While the store is open (the write may sit in the WAL) and after it closed.
            let open = sqlite_file_bytes(&db);
            assert!(
                contains(&open, b"stripe/api_key"),
                "the credential row is not in the files read"
            );
            assert!(
                !contains(&open, CANARY.as_bytes()) && !contains(&open, b"PLAINTEXT_CANARY"),
                "plaintext in the SQLite files"
            );
            store.close().await;
            let closed = sqlite_file_bytes(&db);
            assert!(
                !contains(&closed, CANARY.as_bytes()) && !contains(&closed, b"PLAINTEXT_CANARY"),
                "plaintext in the SQLite files after close"
            );
        } else {
            store.close().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL row-level security.

const TENANT_TABLES: [&str; 14] = [
    "tenant_keys",
    "connections",
    "api_keys",
    "events",
    "sync_jobs",
    "audit",
    "postings",
    "customer_links",
    "item_links",
    "unmapped_products",
    "covered_payments",
    "sync_watermarks",
    "credentials",
    "tenants",
];

async fn count(conn: &mut sqlx::AnyConnection, sql: &'static str) -> i64 {
    use sqlx::Row as _;
    sqlx::query(sql)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get::<i64, _>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_row_level_security_holds_for_a_query_without_a_tenant_filter() {
    use sqlx::{Connection as _, Row as _};
    for db in backends().await {
        if db.backend() != Backend::Postgres {
            continue;
        }
        let store = db.store().await;
        let master = MasterKey::generate();
        let (acme, globex) = acme_and_globex(&store).await;
        for id in ["evt_a1", "evt_a2"] {
            acme.record_event(&event(id, true), Some(job_for(id)))
                .await
                .unwrap();
        }
        for id in ["evt_g1", "evt_g2", "evt_g3"] {
            globex
                .record_event(&event(id, true), Some(job_for(id)))
                .await
                .unwrap();
        }
        acme.store_secret(&master, "stripe/api_key", b"sk_a")
            .await
            .unwrap();
        for name in ["stripe/api_key", "netsuite/token"] {
            globex.store_secret(&master, name, b"sk_g").await.unwrap();
        }
        acme.set_watermark("ns_items", "a").await.unwrap();
        globex.set_watermark("ns_items", "g").await.unwrap();
        store
            .tenant(&globex.scope().tenant())
            .create_api_key("ci", ApiKeyRole::Viewer)
            .await
            .unwrap();
        store.close().await;

        let mut conn = raw(&db).await;
        // Every tenant-owned table is under RLS, forced (the owner is held to it too).
        for table in TENANT_TABLES {
            let row = sqlx::query(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND c.relkind = 'r' AND n.nspname = current_schema()",
            )
            .bind(table)
            .fetch_optional(&mut conn)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no table {table}"));
            let (rls, force): (bool, bool) = (row.get(0), row.get(1));
            assert!(rls && force, "{table}: rowsecurity {rls}, force {force}");
        }

        // As the service role, which RLS binds.
        sqlx::query("SET ROLE mlc_service")
            .execute(&mut conn)
            .await
            .unwrap();
        let row = sqlx::query(
            "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles \
             WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let (user, sup, bypass): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!((user.as_str(), sup, bypass), ("mlc_service", false, false));

        // Nothing set: nothing seen.
        {
            let mut tx = conn.begin().await.unwrap();
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM events").await, 0);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM sync_jobs").await, 0);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM audit").await, 0);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM credentials").await, 0);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM tenant_keys").await, 0);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM connections").await, 0);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM tenants").await, 0);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM api_keys").await, 0);
            tx.rollback().await.unwrap();
        }

        // acme set: acme's rows only, whatever the query forgot.
        {
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT set_config('app.tenant_id', 'acme', true)")
                .execute(&mut *tx)
                .await
                .unwrap();
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM events").await, 2);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM sync_jobs").await, 2);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM audit").await, 2);
            assert_eq!(
                count(&mut tx, "SELECT COUNT(*) FROM sync_watermarks").await,
                1
            );
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM connections").await, 1);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM tenants").await, 1);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM tenant_keys").await, 1);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM api_keys").await, 0);
            let creds = sqlx::query("SELECT tenant_id, connection_id, name FROM credentials")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            let creds: Vec<(String, String, String)> = creds
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert_eq!(
                creds,
                [(
                    "acme".to_string(),
                    "acme-stripe".to_string(),
                    "stripe/api_key".to_string()
                )]
            );
            let tenants = sqlx::query("SELECT DISTINCT tenant_id FROM events")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            assert_eq!(tenants.len(), 1);
            assert_eq!(tenants[0].get::<String, _>(0), "acme");
            // An UPDATE without a filter reaches acme's rows only.
            let n = sqlx::query("UPDATE sync_watermarks SET value = 'forged'")
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(n, 1);
            tx.rollback().await.unwrap();
        }

        // Writing a row for globex while acme is set is refused (WITH CHECK) ...
        for sql in [
            "INSERT INTO sync_watermarks (tenant_id, connection_id, name, value, updated_at) \
             VALUES ('globex', 'globex-stripe', 'ns_forged', 'x', 0)",
            "INSERT INTO credentials (tenant_id, connection_id, name, ciphertext, updated_at) \
             VALUES ('globex', 'globex-stripe', 'stripe/forged', 'x', 0)",
            "UPDATE sync_watermarks SET tenant_id = 'globex', connection_id = 'globex-stripe', \
             name = 'moved' WHERE tenant_id = 'acme'",
        ] {
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT set_config('app.tenant_id', 'acme', true)")
                .execute(&mut *tx)
                .await
                .unwrap();
            let e = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .expect_err(sql)
                .to_string();
            assert!(e.contains("row-level security"), "{sql}: {e}");
            tx.rollback().await.unwrap();
        }
        // ... while the same write for acme itself goes through (so it was RLS, not a grant).
        {
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT set_config('app.tenant_id', 'acme', true)")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO sync_watermarks (tenant_id, connection_id, name, value, updated_at) \
                 VALUES ('acme', 'acme-stripe', 'ns_ok', 'x', 0)",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.rollback().await.unwrap();
        }

        // The setting is transaction-local: the next transaction on the connection sees nothing.
        {
            let mut tx = conn.begin().await.unwrap();
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM events").await, 0);
            sqlx::query("SELECT set_config('app.tenant_id', 'globex', true)")
                .execute(&mut *tx)
                .await
                .unwrap();
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM events").await, 3);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM credentials").await, 2);
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM api_keys").await, 1);
            tx.rollback().await.unwrap();
        }
        {
            let mut tx = conn.begin().await.unwrap();
            assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM events").await, 0);
            tx.rollback().await.unwrap();
        }
        let _ = conn.close().await;
    }
}

/// A role of its own and new databases it owns, on the `TEST_DATABASE_URL` server (roles are
/// the server's, so each test makes its own); dropped by [`ScratchRole::drop_all`].
struct ScratchRole {
    admin: sqlx::AnyConnection,
    base: String,
    role: String,
    names: Vec<String>,
}

impl ScratchRole {
    /// `None` without `TEST_DATABASE_URL`: roles are PostgreSQL's (a SQLite file has none).
    async fn create(options: &str, databases: usize) -> Option<ScratchRole> {
        use sqlx::Connection as _;
        let base = std::env::var("TEST_DATABASE_URL").ok()?;
        let base = base.trim().to_string();
        if base.is_empty() {
            return None;
        }
        sqlx::any::install_default_drivers();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let role = format!("mlc_scratch_{}", &tag[..12]);
        let names: Vec<String> = (0..databases)
            .map(|i| format!("mlc_t_{}_{i}", &tag[..12]))
            .collect();
        let mut admin = sqlx::AnyConnection::connect(&base).await.unwrap();
        // Generated names (hex) and the callers' fixed options: safe to format into SQL.
        let setup = std::iter::once(format!("CREATE ROLE {role} LOGIN {options}")).chain(
            names
                .iter()
                .map(|n| format!("CREATE DATABASE {n} OWNER {role}")),
        );
        for sql in setup {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        Some(ScratchRole {
            admin,
            base,
            role,
            names,
        })
    }

    /// Each database's URL, connecting as the role.
    fn urls(&self) -> Vec<String> {
        self.names
            .iter()
            .map(|n| {
                let mut url = url::Url::parse(&self.base).unwrap();
                url.set_username(&self.role).unwrap();
                url.set_password(None).unwrap();
                url.set_path(&format!("/{n}"));
                url.to_string()
            })
            .collect()
    }

    /// Opens a store on each database at once (each migrates it); the failures, by database.
    async fn migrate_all(&self) -> Vec<String> {
        let urls = self.urls();
        let opened = futures::future::join_all(urls.iter().map(|u| Store::connect(u))).await;
        let mut failed = Vec::new();
        for (name, store) in self.names.iter().zip(opened) {
            match store {
                Ok(store) => store.close().await,
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        failed
    }

    /// As a DBA would: membership in `mlc_service`, without the right to grant it on.
    async fn grant_service(&mut self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "GRANT mlc_service TO {}",
            self.role
        )))
        .execute(&mut self.admin)
        .await
        .unwrap();
    }

    /// A role that may not create roles, on a server where `mlc_service` exists (a store opened
    /// on any database of the server makes it).
    async fn plain_where_service_exists() -> Option<ScratchRole> {
        for db in backends().await {
            db.store().await.close().await;
        }
        ScratchRole::create("NOCREATEROLE", 1).await
    }

    /// Whether the role is a member of `mlc_service`.
    async fn is_service_member(&mut self) -> bool {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = 'mlc_service' AND u.rolname = $1",
        )
        .bind(self.role.clone())
        .fetch_one(&mut self.admin)
        .await
        .unwrap();
        sqlx::Row::get::<i64, _>(&row, 0) > 0
    }

    async fn drop_all(mut self) {
        use sqlx::Connection as _;
        let teardown = self
            .names
            .iter()
            .map(|n| format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
            .chain([format!("DROP ROLE IF EXISTS {}", self.role)]);
        for sql in teardown {
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut self.admin)
                .await
            {
                eprintln!("cleaning up: {sql}: {e}");
            }
        }
        let _ = self.admin.close().await;
    }
}

/// Databases on one server share its roles, so several migrating at once (a test suite; one
/// database per environment deployed together) race to make the migrating role a member of
/// `mlc_service`: the loser's `GRANT` fails on the membership's unique index, and its migration
/// failed with it. A new role that may create roles migrates six new databases at once: each
/// migration succeeds, and the role ends a member of `mlc_service`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn databases_migrating_at_once_on_one_server_all_succeed() {
    let Some(mut scratch) = ScratchRole::create("CREATEROLE", 6).await else {
        return;
    };
    let failed = scratch.migrate_all().await;
    let member = scratch.is_service_member().await;
    let role = scratch.role.clone();
    scratch.drop_all().await;
    assert!(failed.is_empty(), "migrations failed: {failed:#?}");
    assert!(member, "{role} is not a member of mlc_service");
}

/// A DBA made `mlc_service` and granted it to the database's owner, without `ADMIN OPTION`: the
/// migration's own grant is refused (it needed that option), the migration goes on, and the
/// role acts as `mlc_service`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_granted_mlc_service_without_admin_option_migrates() {
    let Some(mut scratch) = ScratchRole::plain_where_service_exists().await else {
        return;
    };
    scratch.grant_service().await;
    let failed = scratch.migrate_all().await;
    let member = scratch.is_service_member().await;
    scratch.drop_all().await;
    assert!(failed.is_empty(), "migration failed: {failed:#?}");
    assert!(member);
}

/// A database owned by a plain role (it may not create roles, nor grant `mlc_service`), on a
/// server where `mlc_service` already exists (another database made it): the migration still
/// succeeds, and the store runs as that role, which row-level security binds as the tables'
/// owner (FORCE).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_role_migrates_its_database_where_mlc_service_exists() {
    let Some(mut scratch) = ScratchRole::plain_where_service_exists().await else {
        return;
    };
    let failed = scratch.migrate_all().await;
    let member = scratch.is_service_member().await;
    // It works as that role: a webhook recorded for one tenant, its job queued, none for another.
    let (mut queued, mut others) = (None, None);
    if failed.is_empty() {
        let store = Store::connect(&scratch.urls()[0]).await.unwrap();
        let (acme, globex) = acme_and_globex(&store).await;
        acme.record_event(&event("evt_plain", true), Some(job_for("evt_plain")))
            .await
            .unwrap();
        let count = |counts: Vec<(JobState, i64)>| -> i64 { counts.iter().map(|(_, n)| n).sum() };
        queued = Some(count(acme.job_counts().await.unwrap()));
        others = Some(count(globex.job_counts().await.unwrap()));
        store.close().await;
    }
    scratch.drop_all().await;
    assert!(failed.is_empty(), "migration failed: {failed:#?}");
    assert!(!member);
    assert_eq!((queued, others), (Some(1), Some(0)));
}

// ---------------------------------------------------------------------------------------------
// API keys.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_are_shown_once_listed_without_secret_and_scoped_to_their_tenant() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let acme_scope = store.ensure_tenant(&tid("acme"), "Acme").await.unwrap();
        let globex_scope = store.ensure_tenant(&tid("globex"), "Globex").await.unwrap();
        let acme = store.tenant(&acme_scope);
        let globex = store.tenant(&globex_scope);

        let made = acme
            .create_api_key("ci", ApiKeyRole::Operator)
            .await
            .unwrap();
        let secret = made.secret.expose_secret().to_string();
        assert!(secret.starts_with("mlck_") && secret.len() > 30, "{b:?}");
        assert!(
            !format!("{made:?}").contains(&secret),
            "the new key's Debug shows the secret"
        );
        assert_eq!(made.info.tenant_id, tid("acme"));
        assert_eq!(made.info.role, ApiKeyRole::Operator);
        assert_eq!(made.info.name, "ci");
        assert!(secret.starts_with(&made.info.prefix) && made.info.prefix.len() < 12);
        assert!(secret.ends_with(&made.info.last4) && made.info.last4.len() == 4);
        assert_eq!((made.info.last_used_at, made.info.revoked_at), (None, None));
        let other = acme.create_api_key("ops", ApiKeyRole::Owner).await.unwrap();
        assert_ne!(other.secret.expose_secret(), secret);

        // Listed: who and what, never the secret.
        let listed = acme.list_api_keys().await.unwrap();
        assert_eq!(listed.len(), 2);
        let mine = listed.iter().find(|k| k.id == made.info.id).unwrap();
        assert_eq!(mine, &made.info);
        let shown = format!("{listed:?}{}", serde_json::to_string(&listed).unwrap());
        let body = &secret["mlck_".len()..];
        assert!(
            !shown.contains(body),
            "{b:?}: a listed key shows its secret"
        );
        assert!(globex.list_api_keys().await.unwrap().is_empty());
        // Nor is it in the table: only its hash.
        {
            use sqlx::Row as _;
            let mut conn = raw(&db).await;
            let rows = sqlx::query("SELECT id, name, role, key_hash, prefix, last4 FROM api_keys")
                .fetch_all(&mut conn)
                .await
                .unwrap();
            assert_eq!(rows.len(), 2);
            for r in rows {
                for i in 0..6 {
                    let v: String = r.get(i);
                    assert!(!v.contains(body), "{b:?}: api_keys holds the secret");
                }
            }
        }

        // Authenticates to its tenant and records its use.
        let (scope, info) = store
            .authenticate_api_key(&SecretString::from(secret.clone()))
            .await
            .unwrap()
            .expect("the key authenticates");
        assert_eq!(scope, acme_scope, "{b:?}");
        assert_eq!(info.id, made.info.id);
        assert_eq!(info.role, ApiKeyRole::Operator);
        assert!(info.last_used_at.is_some(), "{b:?}");
        let relisted = acme.list_api_keys().await.unwrap();
        let mine = relisted.iter().find(|k| k.id == made.info.id).unwrap();
        assert!(
            mine.last_used_at.is_some(),
            "{b:?}: last_used_at not stored"
        );
        assert_eq!(
            relisted
                .iter()
                .find(|k| k.id == other.info.id)
                .unwrap()
                .last_used_at,
            None
        );
        // Wrong or malformed secrets find nothing.
        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push(if secret.ends_with('a') { 'b' } else { 'a' });
        for s in [wrong.as_str(), body, "", "mlck_"] {
            assert!(
                store
                    .authenticate_api_key(&SecretString::from(s.to_string()))
                    .await
                    .unwrap()
                    .is_none(),
                "{b:?}: {s:?} authenticated"
            );
        }

        // Another tenant cannot revoke it.
        assert!(
            !globex.revoke_api_key(&made.info.id).await.unwrap(),
            "{b:?}"
        );
        assert!(
            store
                .authenticate_api_key(&SecretString::from(secret.clone()))
                .await
                .unwrap()
                .is_some()
        );
        // Its own tenant can, once; then it no longer authenticates.
        assert!(acme.revoke_api_key(&made.info.id).await.unwrap());
        assert!(!acme.revoke_api_key(&made.info.id).await.unwrap());
        assert!(
            store
                .authenticate_api_key(&SecretString::from(secret.clone()))
                .await
                .unwrap()
                .is_none(),
            "{b:?}: a revoked key authenticated"
        );
        let relisted = acme.list_api_keys().await.unwrap();
        let mine = relisted.iter().find(|k| k.id == made.info.id).unwrap();
        assert!(mine.revoked_at.is_some());
        // The other key still works.
        let (scope, _) = store
            .authenticate_api_key(&other.secret)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(scope, acme_scope);
        store.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_get_unguessable_routes_and_are_found_by_them() {
    for db in backends().await {
        let b = db.backend();
        let store = db.store().await;
        let acme = store.tenant(&store.ensure_tenant(&tid("acme"), "Acme").await.unwrap());
        let globex = store.tenant(&store.ensure_tenant(&tid("globex"), "Globex").await.unwrap());
        let new = |id: &str| NewConnection {
            id: cid(id),
            name: id.to_string(),
            status: ConnectionStatus::Active,
            settings: serde_json::json!({ "subsidiary": "1" }),
            netsuite_account: Some("1234567".into()),
        };
        // The same connection ID in two tenants is two connections.
        let a = acme.create_connection(&new("main")).await.unwrap();
        let g = globex.create_connection(&new("main")).await.unwrap();
        assert_ne!(a.route_id, g.route_id, "{b:?}");
        assert_ne!(a.scope, g.scope);
        assert!(matches!(
            acme.create_connection(&new("main")).await,
            Err(mlc_store::StoreError::AlreadyExists(_))
        ));
        for c in [&a, &g] {
            let found = store
                .connection_by_route(&c.route_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(found.scope, c.scope, "{b:?}");
            assert_eq!(found.netsuite_account.as_deref(), Some("1234567"));
        }
        // Pausing acme's leaves globex's active.
        assert!(
            acme.set_connection_status(&cid("main"), ConnectionStatus::Paused)
                .await
                .unwrap()
        );
        assert_eq!(
            globex
                .get_connection(&cid("main"))
                .await
                .unwrap()
                .unwrap()
                .status,
            ConnectionStatus::Active
        );
        // A reconfigured (upserted) connection keeps its status and route.
        let again = acme.upsert_connection(&new("main")).await.unwrap();
        assert_eq!(
            (again.status, again.route_id.clone()),
            (ConnectionStatus::Paused, a.route_id.clone())
        );
        store.close().await;
    }
}
