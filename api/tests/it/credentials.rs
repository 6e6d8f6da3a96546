//! `ml-connector credentials` through the real binary: secrets go in on standard input, are sealed
//! in the store under MLC_MASTER_KEY, and `ping`/`serve` use them when the configuration leaves
//! them empty. Neither output ever shows a secret.

use std::path::Path;
use std::process::Stdio;

use mlc_store::sealed::MasterKey;
use mlc_store::testing::{TestDb, backends};
use mlc_stripe_sim::{SimConfig as StripeConfig, StripeSim};
use secrecy::SecretString;
use tokio::io::AsyncWriteExt;

const STRIPE_KEY: &str = "sk_test_51StoredKeyNeverPrinted";
const WHSEC: &str = "whsec_stored_secret_never_printed";

/// Runs the binary with `args`, `stdin` on standard input and only the given master key
/// variables; returns (success, stdout + stderr).
async fn run(config: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("MLC_CONFIG")
        .env_remove("MLC_MASTER_KEY")
        .env_remove("MLC_MASTER_KEY_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("stdin written");
    drop(input);
    // A guard, not a timing assertion: a `serve` that wrongly starts would otherwise run forever.
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .unwrap_or_else(|_| panic!("`ml-connector {}` did not exit", args.join(" ")))
    .expect("binary finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(STRIPE_KEY), "Stripe key printed:\n{text}");
    assert!(!text.contains(WHSEC), "webhook secret printed:\n{text}");
    (out.status.success(), text)
}

fn write_config(dir: &Path, db: &TestDb, extra: &str) -> std::path::PathBuf {
    let path = dir.join(format!("config-{}.toml", rand::random::<u32>()));
    let toml = format!(
        "[database]\nurl = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n{extra}",
        db.url()
    );
    std::fs::write(&path, toml).expect("config written");
    path
}

fn hex_key() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("k");
    MasterKey::generate().write_new_file(&p).expect("key file");
    std::fs::read_to_string(p).expect("key").trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_on_stdin_is_stored_sealed_and_used_by_ping_and_serve() {
    let stripe = StripeSim::start(StripeConfig {
        api_keys: vec![SecretString::from(STRIPE_KEY.to_string())],
        ..Default::default()
    })
    .await
    .expect("stripe sim");
    for db in backends().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = hex_key();
        let with_key = [("MLC_MASTER_KEY", key.as_str())];
        let bare = write_config(dir.path(), &db, "");

        // Not a Stripe key: refused, and the value is not echoed.
        let (ok, out) = run(
            &bare,
            &["credentials", "set", "stripe"],
            "pk_test_notasecret\n",
            &with_key,
        )
        .await;
        assert!(!ok && out.contains("not a Stripe secret key"), "{out}");
        assert!(!out.contains("pk_test_notasecret"), "{out}");

        // No master key: refused, naming the variable.
        let (ok, out) = run(&bare, &["credentials", "set", "stripe"], STRIPE_KEY, &[]).await;
        assert!(!ok && out.contains("MLC_MASTER_KEY"), "{out}");

        let (ok, out) = run(
            &bare,
            &["credentials", "set", "stripe"],
            &format!("{STRIPE_KEY}\n"),
            &with_key,
        )
        .await;
        assert!(ok, "{out}");
        assert!(out.contains("stored stripe/api_key"), "{out}");
        let (ok, out) = run(
            &bare,
            &["credentials", "set", "stripe-webhook"],
            &format!("{WHSEC}\n"),
            &with_key,
        )
        .await;
        assert!(ok, "{out}");
        let (ok, out) = run(&bare, &["credentials", "list"], "", &with_key).await;
        assert!(ok, "{out}");
        assert!(
            out.contains("stripe/api_key") && out.contains("stripe/webhook_secrets"),
            "{out}"
        );
        assert!(!out.contains("_key_check"), "{out}");

        // ping with no api_key in the configuration uses the stored one against the simulator.
        let with_base = write_config(
            dir.path(),
            &db,
            &format!("[stripe]\napi_base = \"{}\"\n", stripe.base_url),
        );
        let (_, out) = run(&with_base, &["ping"], "", &with_key).await;
        let stripe_line = out
            .lines()
            .find(|l| l.contains("stripe key:"))
            .unwrap_or_else(|| panic!("no stripe key line:\n{out}"));
        assert!(
            stripe_line.starts_with("ok") && stripe_line.contains("test mode"),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains("webhook secrets")),
            "{out}"
        );

        // serve: the stored key and webhook secret are used (so it asks for NetSuite, where an
        // unconfigured instance would start accept-only).
        let (ok, out) = run(&with_base, &["serve"], "", &with_key).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains("stripe.api_key is set but netsuite.account_id is not"),
            "{out}"
        );
        // Without the key, or with a wrong one, serve stops at once and says why.
        let (ok, out) = run(&with_base, &["serve"], "", &[]).await;
        assert!(
            !ok && out.contains("no master key is given: set MLC_MASTER_KEY"),
            "{out}"
        );
        let wrong = hex_key();
        let (ok, out) = run(&with_base, &["serve"], "", &[("MLC_MASTER_KEY", &wrong)]).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains(
                "the master key does not open the tenant's data key: wrong MLC_MASTER_KEY?"
            ),
            "{out}"
        );
        assert!(!out.contains(&key) && !out.contains(&wrong), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_moves_everything_and_the_old_key_no_longer_opens() {
    for db in backends().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let old_file = dir.path().join("old.key");
        MasterKey::generate()
            .write_new_file(&old_file)
            .expect("old key");
        let old_file_s = old_file.display().to_string();
        let new_file = dir.path().join("new.key");
        let new_file_s = new_file.display().to_string();
        let config = write_config(dir.path(), &db, "");
        let old_env = [("MLC_MASTER_KEY_FILE", old_file_s.as_str())];
        let (ok, out) = run(
            &config,
            &["credentials", "set", "stripe"],
            STRIPE_KEY,
            &old_env,
        )
        .await;
        assert!(ok, "{out}");

        let (ok, out) = run(
            &config,
            &["credentials", "rotate-key", "--new-key-file", &new_file_s],
            "",
            &old_env,
        )
        .await;
        assert!(ok, "{out}");
        assert!(
            out.contains("re-wrapped the data keys of 1 tenant"),
            "{out}"
        );
        assert!(
            out.contains(&format!("MLC_MASTER_KEY_FILE={new_file_s}")),
            "{out}"
        );

        let store = mlc_service::connections::default_scoped(db.store().await)
            .await
            .unwrap();
        let new = MasterKey::from_file(&new_file).expect("new key file is 0600");
        let old = MasterKey::from_file(&old_file).expect("old key");
        let secrets = store.load_secrets(Some(&new)).await.expect("new key opens");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&secrets["stripe/api_key"]),
            STRIPE_KEY
        );
        let e = store.load_secrets(Some(&old)).await.unwrap_err();
        assert!(e.to_string().contains("wrong MLC_MASTER_KEY?"), "{e}");
        store.store().close().await;

        // A key file others can read is refused before anything is touched.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&new_file, std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
            let (ok, out) = run(
                &config,
                &["credentials", "list"],
                "",
                &[("MLC_MASTER_KEY_FILE", new_file_s.as_str())],
            )
            .await;
            // `list` needs no key; `set` does, and refuses the file.
            assert!(ok, "{out}");
            let (ok, out) = run(
                &config,
                &["credentials", "set", "stripe"],
                STRIPE_KEY,
                &[("MLC_MASTER_KEY_FILE", new_file_s.as_str())],
            )
            .await;
            assert!(
                !ok && out.contains("0644") && out.contains("chmod 600"),
                "{out}"
            );
        }
    }
}

/// `credentials new-key` needs no store: run where no configuration or database exists (the
/// first step of a container deployment), it writes a 0600 key that opens, and creates nothing
/// else.
#[tokio::test]
async fn new_key_writes_a_key_file_without_a_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args(["credentials", "new-key", "master.key"])
        .current_dir(dir.path())
        .env_remove("MLC_CONFIG")
        .env_remove("MLC__DATABASE__URL")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = dir.path().join("master.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    MasterKey::from_file(&key).expect("the key opens");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("master.key")]);
}
