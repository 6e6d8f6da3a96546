//! Credentials at rest: sealed in the database, bound to their record, refused under a wrong key,
//! kept readable by master-key rotation (which rewraps the tenants' data keys).

use mlc_store::sealed::{MasterKey, SealError};
use mlc_store::testing::{TestDb, backends};
use secrecy::ExposeSecret;

const SECRET: &str = "sk_test_51PlaintextMustNeverBeOnDisk";

/// Every byte the database holds for the credentials: the SQLite files (main and WAL) or the
/// PostgreSQL rows as the server returns them.
async fn database_bytes(db: &TestDb) -> Vec<u8> {
    match db.backend() {
        mlc_store::Backend::Sqlite => {
            let path = db
                .url()
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap()
                .to_string();
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-journal"] {
                if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
                    all.extend(b);
                }
            }
            assert!(!all.is_empty(), "no SQLite file at {path}");
            all
        }
        mlc_store::Backend::Postgres => {
            use sqlx::Row;
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(db.url()).await.unwrap();
            let rows = sqlx::query("SELECT name, ciphertext FROM credentials")
                .fetch_all(&pool)
                .await
                .unwrap();
            let mut all = Vec::new();
            for r in rows {
                all.extend(r.get::<String, _>(0).into_bytes());
                all.extend(r.get::<Vec<u8>, _>(1));
            }
            let keys = sqlx::query("SELECT wrapped_key FROM tenant_keys")
                .fetch_all(&pool)
                .await
                .unwrap();
            for r in keys {
                all.extend(r.get::<Vec<u8>, _>(0));
            }
            pool.close().await;
            all
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_and_the_database_never_holds_the_plaintext() {
    for db in backends().await {
        let store = db.scoped().await;
        let key = MasterKey::generate();
        store
            .store_secret(&key, "stripe/api_key", SECRET.as_bytes())
            .await
            .unwrap();
        let names = store.list_credential_names().await.unwrap();
        assert_eq!(
            names.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["stripe/api_key"]
        );
        let secrets = store.load_secrets(Some(&key)).await.unwrap();
        assert_eq!(secrets["stripe/api_key"].expose_secret(), SECRET);
        store.store().close().await;
        let bytes = database_bytes(&db).await;
        assert!(contains(&bytes, b"stripe/api_key"), "{:?}", db.backend());
        assert!(
            !contains(&bytes, SECRET.as_bytes()) && !contains(&bytes, b"PlaintextMustNever"),
            "{:?}: plaintext found in the database",
            db.backend()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_missing_key_and_a_moved_ciphertext_are_refused_clearly() {
    for db in backends().await {
        let store = db.scoped().await;
        let key = MasterKey::generate();
        // Nothing stored: nothing to open, no key needed.
        assert!(store.load_secrets(None).await.unwrap().is_empty());
        store
            .store_secret(&key, "stripe/api_key", SECRET.as_bytes())
            .await
            .unwrap();
        store
            .store_secret(&key, "netsuite/token_secret", b"tok_secret")
            .await
            .unwrap();

        let e = store
            .load_secrets(Some(&MasterKey::generate()))
            .await
            .unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("does not open") && msg.contains("MLC_MASTER_KEY"),
            "{msg}"
        );
        // Storing under another key is refused too, so one tenant's data key never mixes keys.
        let e = store
            .store_secret(&MasterKey::generate(), "x", b"y")
            .await
            .unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e}");
        assert!(store.get_credential("x").await.unwrap().is_none());

        let e = store.load_secrets(None).await.unwrap_err();
        assert!(matches!(e, SealError::MissingKey), "{e}");
        assert!(e.to_string().contains("MLC_MASTER_KEY"), "{e}");

        // Copy the Stripe key's ciphertext onto the NetSuite record: it must not open there.
        let stripe = store
            .get_credential("stripe/api_key")
            .await
            .unwrap()
            .unwrap();
        store
            .put_credential("netsuite/token_secret", stripe)
            .await
            .unwrap();
        let e = store.load_secrets(Some(&key)).await.unwrap_err();
        assert!(
            matches!(
                &e,
                SealError::Misplaced { tenant, connection, field }
                    if tenant == "test" && connection == "main" && field == "netsuite/token_secret"
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("netsuite/token_secret") && msg.contains("test/main"),
            "{msg}"
        );
        assert!(!msg.contains(SECRET), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_the_data_key_and_the_old_key_no_longer_opens() {
    for db in backends().await {
        let store = db.scoped().await;
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        store
            .store_secret(&old, "stripe/api_key", SECRET.as_bytes())
            .await
            .unwrap();
        store
            .store_secret(&old, "stripe/webhook_secrets", b"whsec_a\nwhsec_b")
            .await
            .unwrap();
        let before = store.get_credential("stripe/api_key").await.unwrap();

        // The wrong "old" key changes nothing.
        let e = store
            .store()
            .rotate_master_key(&new, &old)
            .await
            .unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e}");
        assert_eq!(
            store.load_secrets(Some(&old)).await.unwrap()["stripe/api_key"].expose_secret(),
            SECRET
        );

        // One tenant, one data key rewrapped; the sealed credentials stay as they are.
        assert_eq!(
            store.store().rotate_master_key(&old, &new).await.unwrap(),
            1
        );
        assert_eq!(
            store.get_credential("stripe/api_key").await.unwrap(),
            before
        );
        let secrets = store.load_secrets(Some(&new)).await.unwrap();
        assert_eq!(secrets["stripe/api_key"].expose_secret(), SECRET);
        assert_eq!(
            secrets["stripe/webhook_secrets"].expose_secret(),
            "whsec_a\nwhsec_b"
        );
        let e = store.load_secrets(Some(&old)).await.unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e}");
        // New secrets go under the new key.
        store
            .store_secret(&new, "netsuite/token_secret", b"tok")
            .await
            .unwrap();
        assert_eq!(store.load_secrets(Some(&new)).await.unwrap().len(), 3);
    }
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused_and_0600_is_accepted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let key = MasterKey::generate();
    key.write_new_file(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    MasterKey::from_file(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = MasterKey::from_file(&path).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");
}
