//! `ml-connector bench intake` (the real binary) with a small load: it starts `serve` as a child
//! process with the worker on, drives it, waits for the worker, then does the same with three
//! tenants (`--connections 3`: own routes, own sealed signing secrets), runs the Python baseline
//! when a Python with the pinned packages is given (MLC_TEST_PYTHON), and prints the figures. No
//! timing is asserted; what is asserted is that every webhook was answered 2xx, every job ran,
//! and the lines a reader compares (the two figures, their ratio, the server's memory) are there.

/// Parses `… N events in … = R events/s  p50 A ms  p99 B ms  max C ms  errors E` for `label`.
fn figures(out: &str, label: &str) -> (u64, f64, f64, f64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| -> &str {
        let i = words
            .iter()
            .position(|x| *x == w)
            .unwrap_or_else(|| panic!("no `{w}` in `{line}`"));
        words[i + 1]
    };
    let before = |w: &str| -> &str {
        let i = words
            .iter()
            .position(|x| *x == w)
            .unwrap_or_else(|| panic!("no `{w}` in `{line}`"));
        words[i - 1]
    };
    (
        before("events").parse().unwrap(),
        before("events/s").parse().unwrap(),
        after("p50").parse().unwrap(),
        after("p99").parse().unwrap(),
        after("errors").parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_intake_drives_serve_with_the_worker_and_prints_figures() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"));
    cmd.args([
        "bench",
        "intake",
        "--events",
        "200",
        "--concurrency",
        "8",
        "--connections",
        "3",
    ]);
    let pg = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    cmd.args(["--store", if pg.is_some() { "both" } else { "sqlite" }]);
    let python = std::env::var("MLC_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    match &python {
        Some(p) => {
            cmd.args(["--python", p]);
        }
        None => {
            cmd.arg("--no-baseline");
        }
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.output())
        .await
        .expect("bench intake finished within 5 minutes")
        .expect("bench intake ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("worker on") && stdout.contains("log level info"),
        "{stdout}"
    );

    let mut stores = vec!["sqlite"];
    if pg.is_some() {
        stores.push("postgres");
    }
    // Per store: the single-connection run, then the three tenants' run.
    let labels: Vec<String> = stores
        .iter()
        .flat_map(|s| {
            [
                format!("serve ({s})"),
                format!("serve ({s}, 3 connections)"),
            ]
        })
        .collect();
    for label in &labels {
        let (events, rate, p50, p99, errors) = figures(&stdout, label);
        assert_eq!((events, errors), (200, 0), "{stdout}");
        assert!(rate > 0.0 && p50 > 0.0 && p99 >= p50, "{stdout}");
    }
    // The worker ran beside the intake: every job (the warm-up's 32 and the 200) succeeded, the
    // three tenants' as much as the default connection's.
    let lines_starting = |prefix: &str| -> Vec<&str> {
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with(prefix))
            .collect()
    };
    let worker_lines = lines_starting("worker:");
    assert_eq!(worker_lines.len(), labels.len(), "{stdout}");
    for l in worker_lines {
        assert!(
            l.contains("232 of 232 jobs succeeded (0 failed)"),
            "{l}\n{stdout}"
        );
    }
    let setup_lines = lines_starting("setup:");
    assert_eq!(setup_lines.len(), stores.len(), "{stdout}");
    for l in setup_lines {
        assert!(
            l.contains("3 tenants, one connection and one sealed signing secret each"),
            "{l}\n{stdout}"
        );
    }
    // The server's memory after every run, against the target for the many-connection runs.
    let memory_lines = lines_starting("memory: serve peak RSS");
    assert_eq!(memory_lines.len(), labels.len(), "{stdout}");
    for l in &memory_lines {
        let peak: f64 = l
            .split_whitespace()
            .nth(4)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no peak in `{l}`"));
        assert!(peak > 1.0 && peak < 150.0, "{l}\n{stdout}");
    }
    assert_eq!(
        memory_lines
            .iter()
            .filter(|l| l.contains("with 3 active connections (target < 150 MB: met)"))
            .count(),
        stores.len(),
        "{stdout}"
    );
    assert_eq!(
        lines_starting("cpu: serve used").len(),
        labels.len(),
        "{stdout}"
    );
    // The ratio of the two figures of each store, and whether it is within 10%.
    for s in &stores {
        let prefix = format!("serve ({s}, 3 connections) / serve ({s}): ");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stdout}"));
        let ratio: f64 = line[prefix.len()..]
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no ratio in `{line}`"));
        assert!(ratio > 0.0, "{line}");
        assert!(
            line.contains("within 10%: met") || line.contains("within 10%: NOT met"),
            "{line}"
        );
    }
    if python.is_some() {
        let (events, rate, _, _, errors) = figures(&stdout, "baseline (python)");
        assert_eq!((events, errors), (200, 0), "{stdout}");
        assert!(rate > 0.0);
        for label in &labels {
            assert!(
                stdout.contains(&format!("{label} / baseline: ")),
                "{stdout}"
            );
        }
    } else {
        assert!(!stdout.contains("baseline (python)"), "{stdout}");
    }
}

/// `bench events` on a small store: it runs through the real schema, and its walk through the
/// whole list sees every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_events_pages_the_graphql_list_and_prints_figures() {
    let pg = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
        .args([
            "bench",
            "events",
            "--events",
            "3000",
            "--tenant-events",
            "1200",
            "--tenants",
            "4",
            "--samples",
            "5",
            "--store",
            if pg.is_some() { "both" } else { "sqlite" },
        ])
        .output()
        .await
        .expect("bench events ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let runs = if pg.is_some() { 2 } else { 1 };
    assert_eq!(
        stdout
            .matches("saw 1200 events, 1200 distinct, 0 twice")
            .count(),
        runs,
        "{stdout}"
    );
    assert_eq!(stdout.matches("first page ").count(), runs, "{stdout}");
}
