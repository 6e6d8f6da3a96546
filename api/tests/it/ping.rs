//! `ml-connector ping` (the real binary) against both simulators started in-process, and the
//! configuration `ml-connector sim netsuite --keygen` prints, used as is with `--config`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mlc_netsuite_sim::{NetSuiteSim, RunningSim as NsSim, SimConfig as NsConfig};
use mlc_stripe_sim::{RunningSim as StripeRunning, SimConfig as StripeConfig, StripeSim};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, BufReader};

const STRIPE_KEY: &str = "sk_test_51PingGoodKeyNeverPrinted";
const WHSEC: &str = "whsec_ping_secret_never_printed";

struct Sims {
    stripe: StripeRunning,
    netsuite: NsSim,
    dir: tempfile::TempDir,
    /// The `[netsuite]` section printed by the simulator's provisioning.
    netsuite_toml: String,
    certificate_id: String,
}

async fn sims_with(ns: impl FnOnce(&mut NsConfig)) -> Sims {
    let sc = StripeConfig {
        api_keys: vec![SecretString::from(STRIPE_KEY.to_string())],
        ..Default::default()
    };
    let stripe = StripeSim::start(sc).await.expect("stripe sim");
    let mut nc = NsConfig::example().expect("seed");
    ns(&mut nc);
    let netsuite = NetSuiteSim::start(nc).await.expect("netsuite sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let (setup, netsuite_toml) = netsuite
        .provision_m2m("PS256", &dir.path().join("netsuite.pem"))
        .expect("provision");
    Sims {
        stripe,
        netsuite,
        dir,
        netsuite_toml,
        certificate_id: setup.certificate_id,
    }
}

fn stripe_toml(base: &str, key: &str) -> String {
    format!(
        "[stripe]\napi_key = \"{key}\"\napi_base = \"{base}\"\nwebhook_secrets = [\"{WHSEC}\"]\n"
    )
}

const POSTING: &str = "[posting]\nsubsidiary = \"1\"\ncurrencies = [\"USD=1\", \"JPY=3\"]\n";

/// Runs `ml-connector --config <file> ping`; returns (success, stdout + stderr).
async fn ping(dir: &Path, toml: &str) -> (bool, String) {
    let path = dir.join(format!("config-{}.toml", rand::random::<u32>()));
    std::fs::write(&path, toml).expect("config written");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .arg("--config")
        .arg(&path)
        .arg("ping")
        .env_remove("MLC_CONFIG")
        .kill_on_drop(true)
        .output()
        .await
        .expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

fn assert_no_secret(out: &str, sims: &Sims) {
    assert!(!out.contains(STRIPE_KEY), "Stripe key printed:\n{out}");
    assert!(!out.contains(WHSEC), "webhook secret printed:\n{out}");
    assert!(!out.contains("PRIVATE KEY"), "private key printed:\n{out}");
    let pem = std::fs::read_to_string(sims.dir.path().join("netsuite.pem")).expect("key");
    let body = pem.lines().nth(1).expect("pem body");
    assert!(!out.contains(body), "private key printed:\n{out}");
}

#[tokio::test]
async fn all_checks_pass_with_good_credentials() {
    let sims = sims_with(|_| {}).await;
    let toml = format!(
        "{}\n{}\n{POSTING}",
        sims.netsuite_toml,
        stripe_toml(&sims.stripe.base_url, STRIPE_KEY)
    );
    let (ok, out) = ping(sims.dir.path(), &toml).await;
    assert!(ok, "ping failed:\n{out}");
    assert!(
        line(&out, "ok   stripe key:").contains("test mode"),
        "{out}"
    );
    assert!(
        line(&out, "ok   webhook secrets:").contains("1 well-formed"),
        "{out}"
    );
    assert!(line(&out, "ok   netsuite token:").contains("M2M"), "{out}");
    line(&out, "ok   item field custitem_stripe_product_id:");
    assert!(
        line(&out, "ok   subsidiary 1:").contains("Parent Company"),
        "{out}"
    );
    line(&out, "ok   currency 1:");
    line(&out, "ok   currency 3:");
    assert!(out.contains("all checks passed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert_no_secret(&out, &sims);
    // One token for the whole run: the checks share the client.
    assert_eq!(sims.netsuite.handle().stats().tokens_issued, 1);
}

#[tokio::test]
async fn a_wrong_stripe_key_fails_with_what_to_fix() {
    let sims = sims_with(|_| {}).await;
    let wrong = "sk_test_51PingWrongKeyAlsoNeverPrinted";
    let toml = format!(
        "{}\n{}\n{POSTING}",
        sims.netsuite_toml,
        stripe_toml(&sims.stripe.base_url, wrong)
    );
    let (ok, out) = ping(sims.dir.path(), &toml).await;
    assert!(!ok, "ping passed:\n{out}");
    let l = line(&out, "FAIL stripe key:");
    assert!(l.contains("refused by Stripe"), "{l}");
    assert!(l.contains("fix: set stripe.api_key"), "{l}");
    assert!(!out.contains(wrong), "the wrong key was printed:\n{out}");
    // The other checks still ran and passed.
    line(&out, "ok   netsuite token:");
    assert!(out.contains("1 of"), "{out}");
    assert_no_secret(&out, &sims);
}

#[tokio::test]
async fn a_wrong_certificate_id_fails_the_netsuite_login() {
    let sims = sims_with(|_| {}).await;
    let ns = sims.netsuite_toml.replace(
        &format!("certificate_id = \"{}\"", sims.certificate_id),
        "certificate_id = \"not-the-certificate\"",
    );
    assert_ne!(ns, sims.netsuite_toml);
    let toml = format!(
        "{ns}\n{}\n{POSTING}",
        stripe_toml(&sims.stripe.base_url, STRIPE_KEY)
    );
    let (ok, out) = ping(sims.dir.path(), &toml).await;
    assert!(!ok, "ping passed:\n{out}");
    let l = line(&out, "FAIL netsuite token:");
    assert!(l.contains("invalid_grant"), "{l}");
    assert!(l.contains("fix: check netsuite.certificate_id"), "{l}");
    line(&out, "skip netsuite references:");
    line(&out, "ok   stripe key:");
    assert_no_secret(&out, &sims);
    // NetSuite's own reason is in its Login Audit Trail.
    assert!(
        sims.netsuite
            .handle()
            .login_audit()
            .iter()
            .any(|a| a.status != "Success"),
        "the sim saw a failed login"
    );
}

#[tokio::test]
async fn a_revoked_certificate_fails_with_the_revocation_named_in_the_fix() {
    let sims = sims_with(|_| {}).await;
    assert!(
        sims.netsuite
            .handle()
            .revoke_certificate(&sims.certificate_id)
    );
    let toml = format!(
        "{}\n{}\n{POSTING}",
        sims.netsuite_toml,
        stripe_toml(&sims.stripe.base_url, STRIPE_KEY)
    );
    let (ok, out) = ping(sims.dir.path(), &toml).await;
    assert!(!ok, "ping passed:\n{out}");
    let l = line(&out, "FAIL netsuite token:");
    assert!(l.contains("invalid_grant"), "{l}");
    assert!(l.contains("neither expired nor revoked"), "{l}");
    assert_no_secret(&out, &sims);
}

#[tokio::test]
async fn a_missing_item_field_and_a_wrong_currency_id_are_named() {
    // An account where the item custom field was never created.
    let sims = sims_with(|c| {
        c.seed.custom_fields = Some(vec!["custentity_stripe_customer_id".into()]);
        for item in &mut c.seed.items {
            item.remove("custitem_stripe_product_id");
        }
    })
    .await;
    let toml = format!(
        "{}\n{}\n[posting]\nsubsidiary = \"1\"\ncurrencies = [\"EUR=3\"]\n",
        sims.netsuite_toml,
        stripe_toml(&sims.stripe.base_url, STRIPE_KEY)
    );
    let (ok, out) = ping(sims.dir.path(), &toml).await;
    assert!(!ok, "ping passed:\n{out}");
    let l = line(&out, "FAIL item field custitem_stripe_product_id:");
    assert!(l.contains("create the custom item field"), "{l}");
    line(&out, "ok   customer field custentity_stripe_customer_id:");
    let l = line(&out, "FAIL currency 3:");
    assert!(l.contains("JPY") && l.contains("not EUR"), "{l}");
    assert!(out.contains("2 of"), "{out}");
}

/// `sim netsuite --keygen` prints a `[netsuite]` section that works as is with `--config`.
#[tokio::test]
async fn the_printed_simulator_configuration_works_with_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("ns.pem");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args([
            "sim",
            "netsuite",
            "--listen",
            "127.0.0.1:0",
            "--keygen",
            "ES256",
        ])
        .arg("--key-out")
        .arg(&key)
        .env_remove("MLC_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("simulator starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let read = async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("Press Ctrl-C") {
                break;
            }
            printed.push_str(&l);
            printed.push('\n');
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the simulator printed its configuration");
    let snippet = printed
        .split_once("# connector configuration (use with --config):\n")
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| panic!("no configuration in:\n{printed}"));
    assert!(snippet.starts_with("[netsuite]\n"), "{snippet}");
    assert!(snippet.contains("algorithm = \"ES256\""), "{snippet}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");

    let sc = StripeConfig {
        api_keys: vec![SecretString::from(STRIPE_KEY.to_string())],
        ..Default::default()
    };
    let stripe = StripeSim::start(sc).await.expect("stripe sim");
    let toml = format!(
        "{snippet}\n{}\n{POSTING}",
        stripe_toml(&stripe.base_url, STRIPE_KEY)
    );
    let (ok, out) = ping(dir.path(), &toml).await;
    assert!(ok, "ping failed with the printed configuration:\n{out}");
    line(&out, "ok   netsuite token:");
    assert!(!out.contains(stripe.api_key.expose_secret()), "{out}");
    let _ = child.kill().await;
}
