//! Runs the independent Python client (PyJWT + cryptography + requests) against the simulator.

use std::path::PathBuf;

#[tokio::test]
async fn independent_python_client_check() {
    let Some(python) = std::env::var_os("MLC_TEST_PYTHON") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "MLC_TEST_PYTHON is unset but CI is set: run scripts/test.sh, which creates the venv and exports it"
            );
        }
        println!("skipped: MLC_TEST_PYTHON unset");
        return;
    };
    let cfg = mlc_netsuite_sim::SimConfig::example().expect("example seed");
    let sim = mlc_netsuite_sim::NetSuiteSim::start(cfg)
        .await
        .expect("sim starts");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/netsuite_client_check.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .arg(sim.base_url())
        .arg(sim.account_id())
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client check failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("OK netsuite_client_check"), "{stdout}");
    assert_eq!(sim.handle().stats().tokens_issued, 1);
}
