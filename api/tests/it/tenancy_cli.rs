//! The tenancy commands through the real binary, as an operator runs them: tenants, a tenant's
//! connections (settings file, webhook route, draft/pause/resume), its sealed credentials, its
//! API keys and `ping`, then a webhook signed with the stored secret delivered to the tenant's
//! route. Another tenant sees and touches none of it. On SQLite and PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ml_connector::startup::App;
use mlc_netsuite_sim::{NetSuiteSim, SimConfig as NsConfig};
use mlc_service::config::{self, Sources};
use mlc_store::sealed::MasterKey;
use mlc_store::testing::{TestDb, backends};
use mlc_stripe_sim::{SimConfig as StripeConfig, StripeSim};
use secrecy::SecretString;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::helpers::{event_json, sign_now};

const STRIPE_KEY: &str = "sk_test_51TenancyCliKeyNeverPrinted";
const ACME_WHSEC: &str = "whsec_acme_production_never_printed";
const SANDBOX_WHSEC: &str = "whsec_acme_sandbox_never_printed";
const DEFAULT_WHSEC: &str = "whsec_default_connection_secret";

/// One operator's shell: a configuration file, a master key, and the binary.
struct Operator {
    config: PathBuf,
    key: String,
}

/// What one command did.
struct Ran {
    ok: bool,
    stdout: String,
    /// stdout then stderr.
    all: String,
}

impl Operator {
    /// Runs `ml-connector --config … args` with `stdin` on standard input and `MLC_MASTER_KEY`
    /// set; fails the test if a Stripe secret shows up in the output.
    async fn run(&self, args: &[&str], stdin: &str) -> Ran {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("MLC_CONFIG")
            .env_remove("MLC_MASTER_KEY_FILE")
            .env_remove("MLC_TENANT")
            .env_remove("MLC_CONNECTION")
            .env("MLC_MASTER_KEY", &self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("binary runs");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.as_bytes())
            .await
            .expect("stdin written");
        drop(input);
        // A guard, not a timing assertion.
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`ml-connector {}` did not exit", args.join(" ")))
            .expect("binary finishes");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        for secret in [
            STRIPE_KEY,
            ACME_WHSEC,
            SANDBOX_WHSEC,
            DEFAULT_WHSEC,
            self.key.as_str(),
        ] {
            assert!(
                !all.contains(secret),
                "`{}` printed a secret:\n{all}",
                args.join(" ")
            );
        }
        Ran {
            ok: out.status.success(),
            stdout,
            all,
        }
    }

    /// [`Operator::run`] that must succeed.
    async fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, "").await
    }

    async fn ok_with(&self, args: &[&str], stdin: &str) -> String {
        let r = self.run(args, stdin).await;
        assert!(r.ok, "`ml-connector {}` failed:\n{}", args.join(" "), r.all);
        r.stdout
    }

    /// [`Operator::run`] that must fail; returns its output.
    async fn fails(&self, args: &[&str]) -> String {
        let r = self.run(args, "").await;
        assert!(
            !r.ok,
            "`ml-connector {}` should have failed:\n{}",
            args.join(" "),
            r.all
        );
        r.all
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("file written");
    path
}

fn hex_key() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("k");
    MasterKey::generate().write_new_file(&p).expect("key file");
    std::fs::read_to_string(p).expect("key").trim().to_string()
}

/// The value of a `connections show` line (`status       active` → `active`).
fn field<'a>(show: &'a str, name: &str) -> &'a str {
    show.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{show}"))
}

/// The webhook route (`whc_…`) in an output.
fn route_in(out: &str) -> String {
    let at = out
        .find("/webhooks/stripe/whc_")
        .unwrap_or_else(|| panic!("no webhook route in:\n{out}"));
    out[at + "/webhooks/stripe/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_up_a_tenant_end_to_end_and_other_tenants_see_none_of_it() {
    // For a connection whose ping passes: Stripe and NetSuite simulators.
    let stripe = StripeSim::start(StripeConfig {
        api_keys: vec![SecretString::from(STRIPE_KEY.to_string())],
        ..Default::default()
    })
    .await
    .expect("stripe sim");
    let netsuite = NetSuiteSim::start(NsConfig::example().expect("seed"))
        .await
        .expect("netsuite sim");
    let sims_dir = tempfile::tempdir().expect("tempdir");
    let pem_path = sims_dir.path().join("netsuite.pem");
    let (_, netsuite_toml) = netsuite
        .provision_m2m("PS256", &pem_path)
        .expect("provision");
    // A connection's settings name no server file: its key is a sealed credential.
    let netsuite_settings: String = netsuite_toml
        .lines()
        .filter(|l| !l.starts_with("private_key_path"))
        .map(|l| format!("{l}\n"))
        .collect();
    let pem_arg = pem_path.display().to_string();

    for db in backends().await {
        one_backend(&db, &stripe.base_url, &netsuite_settings, &pem_arg).await;
    }
}

async fn one_backend(db: &TestDb, stripe_base: &str, netsuite_settings: &str, pem: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "config.toml",
        &format!(
            "[database]\nurl = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[stripe]\n\
             webhook_secrets = [\"{DEFAULT_WHSEC}\"]\n[worker]\npoll_interval_ms = 50\n",
            db.url()
        ),
    );
    let op = Operator {
        config: config.clone(),
        key: hex_key(),
    };

    // Tenants.
    let out = op.ok(&["tenants", "create", "acme"]).await;
    assert!(out.contains("tenant acme created"), "{out}");
    op.ok(&["tenants", "create", "globex", "--name", "Globex Corp"])
        .await;
    let list = op.ok(&["tenants", "list"]).await;
    assert!(
        list.lines().any(|l| l.starts_with("acme ")),
        "acme not listed:\n{list}"
    );
    assert!(list.contains("Globex Corp"), "{list}");
    let again = op.fails(&["tenants", "create", "acme"]).await;
    assert!(
        again.contains("acme") && again.contains("already exists"),
        "{again}"
    );

    // A connection from a settings file; files with an unknown or a secret key are refused.
    let settings = write(
        dir.path(),
        "production.toml",
        "[netsuite]\naccount_id = \"TSTDRV1\"\n[posting]\nfees = \"gross\"\n",
    );
    let typo = write(
        dir.path(),
        "typo.toml",
        "[netsuite]\naccount_idd = \"TSTDRV1\"\n",
    );
    let secret = write(
        dir.path(),
        "secret.toml",
        "[stripe]\napi_key = \"sk_test_x\"\n",
    );
    let op = &op;
    let create = |file: &Path| {
        let file = file.display().to_string();
        async move {
            let args = [
                "connections",
                "create",
                "production",
                "--tenant",
                "acme",
                "--settings",
                &file,
            ];
            op.run(&args, "").await
        }
    };
    let r = create(&typo).await;
    assert!(!r.ok && r.all.contains("netsuite.account_idd"), "{}", r.all);
    let r = create(&secret).await;
    assert!(!r.ok && r.all.contains("stripe.api_key"), "{}", r.all);
    assert!(
        !r.all.contains("sk_test_x"),
        "the secret was echoed:\n{}",
        r.all
    );
    let out = op.ok(&["connections", "list", "--tenant", "acme"]).await;
    assert!(
        out.contains("no connections yet"),
        "a refused file still made a connection:\n{out}"
    );

    let r = create(&settings).await;
    assert!(r.ok, "{}", r.all);
    let created = r.stdout;
    let route = route_in(&created);
    assert!(
        route.len() > "whc_".len() + 16,
        "route {route} in:\n{created}"
    );
    assert_eq!(field(&created, "status"), "draft", "{created}");
    assert!(
        created.contains("credentials set stripe-webhook --tenant acme --connection production")
            && created.contains("connections resume production --tenant acme"),
        "next steps missing:\n{created}"
    );

    let list = op.ok(&["connections", "list", "--tenant", "acme"]).await;
    let line = list
        .lines()
        .find(|l| l.starts_with("production"))
        .unwrap_or_else(|| panic!("production not listed:\n{list}"));
    assert!(
        line.contains("draft") && line.contains(&format!("/webhooks/stripe/{route}")),
        "{list}"
    );

    let show_args = ["connections", "show", "production", "--tenant", "acme"];
    let show = op.ok(&show_args).await;
    assert_eq!(field(&show, "connection"), "acme/production", "{show}");
    assert_eq!(field(&show, "status"), "draft", "{show}");
    assert!(
        field(&show, "webhook URL").ends_with(&format!("/webhooks/stripe/{route}")),
        "{show}"
    );
    assert_eq!(field(&show, "NetSuite"), "account TSTDRV1", "{show}");
    assert_eq!(field(&show, "credentials"), "none", "{show}");
    assert_eq!(field(&show, "last test"), "never", "{show}");

    let out = op
        .ok(&["connections", "pause", "production", "--tenant", "acme"])
        .await;
    assert!(out.contains("acme/production paused"), "{out}");
    assert_eq!(field(&op.ok(&show_args).await, "status"), "paused");
    let out = op
        .ok(&["connections", "resume", "production", "--tenant", "acme"])
        .await;
    assert!(out.contains("acme/production resumed"), "{out}");
    assert_eq!(field(&op.ok(&show_args).await, "status"), "active");

    // Another tenant can neither see nor act on acme's connection.
    let out = op
        .fails(&["connections", "show", "production", "--tenant", "globex"])
        .await;
    assert!(
        out.contains("no connection `production` in tenant `globex`"),
        "{out}"
    );
    assert!(!out.contains(&route), "acme's route leaked:\n{out}");
    let out = op
        .fails(&["connections", "pause", "production", "--tenant", "globex"])
        .await;
    assert!(
        out.contains("no connection `production` in tenant `globex`"),
        "{out}"
    );
    let out = op.ok(&["connections", "list", "--tenant", "globex"]).await;
    assert!(
        !out.contains("production") && !out.contains(&route),
        "{out}"
    );
    let out = op
        .fails(&[
            "events",
            "list",
            "--tenant",
            "globex",
            "--connection",
            "production",
        ])
        .await;
    assert!(
        out.contains("tenant `globex` has no connection `production`"),
        "{out}"
    );
    let out = op
        .fails(&["connections", "list", "--tenant", "initech"])
        .await;
    assert!(out.contains("no tenant `initech`"), "{out}");
    // acme is still active: globex's pause did nothing.
    assert_eq!(field(&op.ok(&show_args).await, "status"), "active");

    // Credentials are the connection's own.
    let acme_prod = ["--tenant", "acme", "--connection", "production"];
    let set: Vec<&str> = ["credentials", "set", "stripe-webhook"]
        .into_iter()
        .chain(acme_prod)
        .collect();
    let out = op.ok_with(&set, &format!("{ACME_WHSEC}\n")).await;
    assert!(out.contains("stored stripe/webhook_secrets"), "{out}");
    let list: Vec<&str> = ["credentials", "list"]
        .into_iter()
        .chain(acme_prod)
        .collect();
    let out = op.ok(&list).await;
    assert!(out.contains("stripe/webhook_secrets"), "{out}");
    let out = op.ok(&["credentials", "list"]).await;
    assert!(
        !out.contains("stripe/webhook_secrets"),
        "the default connection lists acme's credential:\n{out}"
    );
    let out = op
        .fails(&[
            "credentials",
            "list",
            "--tenant",
            "globex",
            "--connection",
            "production",
        ])
        .await;
    assert!(
        out.contains("tenant `globex` has no connection `production`"),
        "{out}"
    );
    assert_eq!(
        field(&op.ok(&show_args).await, "credentials"),
        "stripe/webhook_secrets"
    );

    // API keys: the secret once, then only its prefix and last four.
    let out = op
        .ok(&[
            "api-keys", "create", "--tenant", "acme", "--name", "ci", "--role", "operator",
        ])
        .await;
    let api_secret = out
        .split_whitespace()
        .find(|w| w.starts_with("mlck_"))
        .unwrap_or_else(|| panic!("no mlck_ secret in:\n{out}"))
        .to_string();
    assert!(out.contains("shown once"), "{out}");
    let key_id = out
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no key ID in:\n{out}"))
        .to_string();
    let list = op.ok(&["api-keys", "list", "--tenant", "acme"]).await;
    assert!(!list.contains(&api_secret), "secret listed:\n{list}");
    let line = list
        .lines()
        .find(|l| l.starts_with(&key_id))
        .unwrap_or_else(|| panic!("key {key_id} not listed:\n{list}"));
    let last4 = &api_secret[api_secret.len() - 4..];
    assert!(
        line.contains("mlck_") && line.contains(&format!("…{last4}")),
        "{line}"
    );
    assert!(line.contains("operator") && line.contains("ci"), "{line}");
    let list = op.ok(&["api-keys", "list", "--tenant", "globex"]).await;
    assert!(
        !list.contains(&key_id) && !list.contains(last4),
        "globex sees acme's key:\n{list}"
    );
    let out = op
        .fails(&["api-keys", "revoke", &key_id, "--tenant", "globex"])
        .await;
    assert!(out.contains(&format!("no active key `{key_id}`")), "{out}");
    let list = op.ok(&["api-keys", "list", "--tenant", "acme"]).await;
    assert!(!list.contains("revoked"), "globex revoked it:\n{list}");
    let out = op
        .ok(&["api-keys", "revoke", &key_id, "--tenant", "acme"])
        .await;
    assert!(out.contains(&format!("API key {key_id} revoked")), "{out}");
    let list = op.ok(&["api-keys", "list", "--tenant", "acme"]).await;
    assert!(
        list.lines()
            .any(|l| l.starts_with(&key_id) && l.contains("revoked")),
        "{list}"
    );

    // ping with no Stripe key stored: it says so and how to store one, and the connection
    // records the failure.
    let ping: Vec<&str> = ["ping"].into_iter().chain(acme_prod).collect();
    let r = op.run(&ping, "").await;
    assert!(!r.ok, "{}", r.all);
    assert!(
        r.all.lines().any(|l| l.starts_with("FAIL stripe key:")
            && l.contains("no Stripe key is stored")
            && l.contains("credentials set stripe --tenant acme --connection production")),
        "{}",
        r.all
    );
    assert!(
        r.all
            .lines()
            .any(|l| l.starts_with("ok   webhook secrets:") && l.contains("1 well-formed")),
        "the stored webhook secret was not used:\n{}",
        r.all
    );
    let show = op.ok(&show_args).await;
    let last = field(&show, "last test");
    assert!(
        last.starts_with("FAILED") && last.contains("stripe key"),
        "{show}"
    );
    // The default connection's record is untouched by it.
    let default_show = op.ok(&["connections", "show", "default"]).await;
    assert_eq!(field(&default_show, "last test"), "never", "{default_show}");

    // A second connection, set up completely, against the simulators: its ping passes.
    let sandbox_settings = write(
        dir.path(),
        "sandbox.toml",
        &format!(
            "[stripe]\napi_base = \"{stripe_base}\"\n{netsuite_settings}[posting]\n\
             subsidiary = \"1\"\ncurrencies = [\"USD=1\"]\n"
        ),
    );
    let sandbox_path = sandbox_settings.display().to_string();
    op.ok(&[
        "connections",
        "create",
        "sandbox",
        "--tenant",
        "acme",
        "--settings",
        &sandbox_path,
        "--active",
    ])
    .await;
    let acme_sandbox = ["--tenant", "acme", "--connection", "sandbox"];
    let set_stripe: Vec<&str> = ["credentials", "set", "stripe"]
        .into_iter()
        .chain(acme_sandbox)
        .collect();
    op.ok_with(&set_stripe, STRIPE_KEY).await;
    let set_whsec: Vec<&str> = ["credentials", "set", "stripe-webhook"]
        .into_iter()
        .chain(acme_sandbox)
        .collect();
    op.ok_with(&set_whsec, SANDBOX_WHSEC).await;
    let set_ns: Vec<&str> = ["credentials", "set", "netsuite", "--from-file", pem]
        .into_iter()
        .chain(acme_sandbox)
        .collect();
    op.ok(&set_ns).await;
    let ping_sandbox: Vec<&str> = ["ping"].into_iter().chain(acme_sandbox).collect();
    let out = op.ok(&ping_sandbox).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok   stripe key:") && l.contains("test mode")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok   netsuite token:") && l.contains("M2M")),
        "{out}"
    );
    assert!(out.contains("all checks passed"), "{out}");
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    let sandbox_show = op
        .ok(&["connections", "show", "sandbox", "--tenant", "acme"])
        .await;
    assert!(
        field(&sandbox_show, "last test").starts_with("passed"),
        "{sandbox_show}"
    );
    // production's record is its own.
    assert!(field(&op.ok(&show_args).await, "last test").starts_with("FAILED"));

    // serve: a webhook signed with acme's stored secret, at acme's route, lands in acme's
    // production connection only.
    let loaded = config::load(&Sources {
        file: Some(config.clone()),
        env: vec![],
    })
    .expect("config loads")
    .0;
    let master = MasterKey::parse(&op.key).expect("master key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::build_keyed(loaded, listener, Some(master))
        .await
        .expect("serve builds");
    let addr = app.addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = reqwest::Client::new();
    let post = |path: String, body: String, secret: &'static str| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://{addr}{path}"))
                .header("content-type", "application/json")
                .header("stripe-signature", sign_now(secret, &body))
                .body(body)
                .send()
                .await
                .expect("request sent")
                .status()
                .as_u16()
        }
    };
    let acme_path = format!("/webhooks/stripe/{route}");
    let event = "evt_tenancy_cli_acme_1";
    // Signed with another connection's secret: refused at acme's route, and acme's secret is
    // refused at the default route.
    let status = post(
        acme_path.clone(),
        event_json("evt_tenancy_cli_wrong", "charge.succeeded"),
        DEFAULT_WHSEC,
    )
    .await;
    assert_eq!(status, 400, "acme's route took the default's signature");
    let status = post(
        "/webhooks/stripe".into(),
        event_json("evt_tenancy_cli_wrong2", "charge.succeeded"),
        ACME_WHSEC,
    )
    .await;
    assert_eq!(status, 400, "the default route took acme's signature");
    let status = post(acme_path, event_json(event, "charge.succeeded"), ACME_WHSEC).await;
    assert_eq!(status, 200, "acme's signed delivery refused");

    let events: Vec<&str> = ["events", "list"].into_iter().chain(acme_prod).collect();
    let out = op.ok(&events).await;
    assert!(
        out.lines().any(|l| l.starts_with(event)),
        "acme's event not listed:\n{out}"
    );
    assert!(!out.contains("evt_tenancy_cli_wrong"), "{out}");
    let out = op.ok(&["events", "list"]).await;
    assert!(
        !out.contains(event),
        "the default connection lists acme's event:\n{out}"
    );
    let sandbox_events: Vec<&str> = ["events", "list"].into_iter().chain(acme_sandbox).collect();
    let out = op.ok(&sandbox_events).await;
    assert!(
        !out.contains(event),
        "sandbox lists production's event:\n{out}"
    );

    stop.cancel();
    task.await
        .expect("serve task")
        .expect("serve stopped cleanly");
}
