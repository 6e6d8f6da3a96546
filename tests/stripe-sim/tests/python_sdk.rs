//! Runs the official Stripe Python SDK (stripe==16.1.0) against the simulator.

use std::path::Path;
use std::time::Duration;

use mlc_stripe_sim::{SimConfig, StripeSim};

#[tokio::test]
async fn python_sdk_against_simulator() {
    let Some(python) = std::env::var_os("MLC_TEST_PYTHON") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "MLC_TEST_PYTHON is unset but CI is set: run scripts/test.sh (it creates the venv with stripe==16.1.0 and exports MLC_TEST_PYTHON)"
            );
        }
        println!("skipped: MLC_TEST_PYTHON unset");
        return;
    };
    let sim = StripeSim::start(SimConfig::default())
        .await
        .expect("sim starts");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/stripe_sdk_check.py");
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .env("STRIPE_SIM_BASE", &sim.base_url)
        .env("STRIPE_SIM_KEY", sim.api_key_str())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the SDK check finishes within 120 s")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "stripe SDK check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("OK:"), "unexpected output: {stdout}");
    sim.shutdown().await;
}
