//! Restarts and signals: nothing is lost.

use std::process::Stdio;
use std::time::Duration;

use mlc_store::testing::backends;
use mlc_store::{EventFilter, JobState, Store};

use crate::helpers::*;

#[tokio::test]
async fn events_survive_a_restart() {
    for db in backends().await {
        let app = TestApp::start(&db).await;
        for i in 0..5 {
            let (status, _) = app
                .send_signed(
                    &event_json(&format!("evt_1Keep{i}"), "invoice.paid"),
                    SECRET,
                )
                .await;
            assert_eq!(status, 200);
        }
        app.stop().await;
        let app = TestApp::start(&db).await;
        for i in 0..5 {
            assert!(
                app.store
                    .get_event(&format!("evt_1Keep{i}"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        // A redelivery after the restart is still a duplicate.
        let (_, json) = app
            .send_signed(&event_json("evt_1Keep0", "invoice.paid"), SECRET)
            .await;
        assert_eq!(json["duplicate"], true);
        app.stop().await;
    }
}

/// The real binary, stopped with SIGTERM while webhooks are arriving: every event answered 200 is
/// stored with its job, no job is left running, and it exits as soon as its jobs are done, not
/// at the end of the grace period (which meant the worker's stop waited on something).
#[tokio::test]
async fn sigterm_loses_nothing() {
    for db in backends().await {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ml-connector"))
            .arg("serve")
            .env("MLC__DATABASE__URL", db.url())
            .env("MLC__STRIPE__WEBHOOK_SECRETS", SECRET)
            .env("MLC__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("MLC__LOG__FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        // Read as it comes, so a chatty log never fills the pipe and blocks the process.
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let log = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/webhooks/stripe");
        assert!(
            eventually(Duration::from_secs(20), || async {
                client
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .send()
                    .await
                    .is_ok()
            })
            .await,
            "server did not come up"
        );

        let mut accepted = Vec::new();
        let mut signalled = None;
        for i in 0..40 {
            let id = format!("evt_1Term{i}");
            let body = event_json(&id, "invoice.paid");
            if i == 20 {
                sigterm(&child);
                signalled = Some(std::time::Instant::now());
            }
            let ok = client
                .post(&url)
                .header("stripe-signature", sign_now(SECRET, &body))
                .body(body)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                accepted.push(id);
            }
        }
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        let stopping = signalled.map(|at| at.elapsed()).unwrap_or_default();
        let log = log.await.unwrap();
        // What went wrong, for the failure messages below.
        let warnings = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(status.success(), "exit status {status:?}");
        // Twenty quick jobs at most were in flight; the grace period is 20 s.
        assert!(
            stopping < Duration::from_secs(10),
            "{:?}: stopping took {stopping:?}: {warnings}",
            db.backend(),
        );
        assert!(accepted.len() >= 20, "only {} accepted", accepted.len());

        let store =
            mlc_service::connections::default_scoped(Store::connect(db.url()).await.unwrap())
                .await
                .unwrap();
        for id in &accepted {
            assert!(
                store.get_event(id).await.unwrap().is_some(),
                "{id} lost ({:?})",
                db.backend()
            );
            let job = store
                .get_job_for_event(id)
                .await
                .unwrap()
                .expect("job kept");
            assert_ne!(
                job.state,
                JobState::Running,
                "{:?}: {id} left running: {warnings}",
                db.backend()
            );
        }
        let all = store
            .list_events(&EventFilter {
                limit: 1000,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), accepted.len(), "only answered events are stored");
    }
}
