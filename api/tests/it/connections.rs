//! Hostile connections against the server loop: silent, slow, stalled and idle clients are
//! disconnected within the configured times, the connection cap answers 503, broken bodies are
//! 400 (not 413), and a valid delivery still answers during all of it.
//!
//! Times are configured short (1–2 s) and checked only against generous bounds.

use std::time::Duration;

use mlc_store::testing::backends;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::*;

/// Far above every configured timeout, far below "never".
const CLOSED_WITHIN: Duration = Duration::from_secs(20);

fn short_timeouts() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MLC__SERVER__HEADER_READ_TIMEOUT_SECS", "1"),
        ("MLC__SERVER__BODY_READ_TIMEOUT_SECS", "1"),
        ("MLC__SERVER__IDLE_TIMEOUT_SECS", "2"),
    ]
}

/// Reads until the server closes the connection (EOF or reset); returns what was read, or
/// `None` if it was still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn webhook_head(signature: &str, content_length: usize) -> String {
    format!(
        "POST /webhooks/stripe HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         stripe-signature: {signature}\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_silent_stalled_and_idle_clients_are_disconnected_while_a_valid_delivery_answers() {
    let db = backends().await.remove(0);
    let mut env = short_timeouts();
    env.push(("MLC__SERVER__MAX_CONNECTIONS", "200"));
    let app = TestApp::start_with(&db, &env).await;
    let addr = app.addr;

    let mut clients = tokio::task::JoinSet::new();
    // Silent: connect and send nothing.
    for _ in 0..20 {
        clients.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            ("silent", read_until_closed(&mut s, CLOSED_WITHIN).await)
        });
    }
    // Slow headers: a request line dripped a byte every 200 ms, never finished in time.
    for _ in 0..20 {
        clients.spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let drip = tokio::spawn(async move {
                for b in b"POST /webhooks/stripe HTTP/1.1\r\nhost: test\r\nx-slow: ".iter() {
                    if w.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // Keep the write side open until the server closes.
                tokio::time::sleep(CLOSED_WITHIN).await;
            });
            let mut buf = Vec::new();
            let closed = tokio::time::timeout(CLOSED_WITHIN, r.read_to_end(&mut buf)).await;
            drip.abort();
            ("slow headers", closed.ok().map(|_| buf))
        });
    }
    // Stalled bodies: complete headers announcing 1000 bytes, then 10 bytes and silence.
    for _ in 0..20 {
        clients.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let t = mlc_core::now_millis() / 1000;
            let head = webhook_head(&format!("t={t},v1=00"), 1000);
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(b"{\"id\":\"ev").await.unwrap();
            (
                "stalled body",
                read_until_closed(&mut s, CLOSED_WITHIN).await,
            )
        });
    }
    // Idle keep-alive: one request answered, then nothing.
    for _ in 0..10 {
        clients.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
                .await
                .unwrap();
            (
                "idle keep-alive",
                read_until_closed(&mut s, CLOSED_WITHIN).await,
            )
        });
    }

    // During all of that, Stripe's deliveries and health checks are answered promptly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        let started = Instant::now();
        let (status, json) = app
            .send_signed(
                &event_json(&format!("evt_1Flood{i}"), "invoice.paid"),
                SECRET,
            )
            .await;
        assert_eq!(status, 200, "{json}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a valid delivery took {:?} during the flood",
            started.elapsed()
        );
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }

    let mut closed = std::collections::BTreeMap::<&str, usize>::new();
    while let Some(result) = clients.join_next().await {
        let (kind, outcome) = result.unwrap();
        let Some(response) = outcome else {
            panic!("a {kind} connection was still open after {CLOSED_WITHIN:?}");
        };
        match kind {
            // Never a request: closed without an answer.
            "silent" | "slow headers" => assert!(response.is_empty(), "{kind}: {response:?}"),
            "stalled body" => {
                assert_eq!(
                    status_of(&response),
                    Some(408),
                    "{}",
                    String::from_utf8_lossy(&response)
                );
                assert!(String::from_utf8_lossy(&response).contains("body_timeout"));
            }
            _ => assert_eq!(status_of(&response), Some(200)),
        }
        *closed.entry(kind).or_default() += 1;
    }
    assert_eq!(
        closed.values().sum::<usize>(),
        70,
        "every client was disconnected: {closed:?}"
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mlc_http_connections_closed_total{reason=\"header_timeout\"}")
            && metrics.contains("mlc_http_connections_closed_total{reason=\"idle_timeout\"}"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn at_the_cap_a_new_connection_takes_the_place_of_the_longest_waiting_one() {
    let db = backends().await.remove(0);
    // Long header timeout: the silent sockets would hold the cap for a long time on their own.
    let app = TestApp::start_with(
        &db,
        &[
            ("MLC__SERVER__MAX_CONNECTIONS", "3"),
            ("MLC__SERVER__HEADER_READ_TIMEOUT_SECS", "600"),
        ],
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
        // Distinct ages, and accepted before the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let (status, json) = app
        .send_signed(&event_json("evt_1AtCap", "invoice.paid"), SECRET)
        .await;
    assert_eq!(status, 200, "{json}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The oldest silent socket made room; the others are still open.
    let mut oldest = silent.remove(0);
    assert!(
        read_until_closed(&mut oldest, Duration::from_secs(5))
            .await
            .is_some_and(|r| r.is_empty()),
        "the longest-waiting connection was closed without an answer"
    );
    for s in &mut silent {
        let mut buf = [0u8; 1];
        let still_open = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(still_open.is_err(), "a newer connection was closed");
    }
    app.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_is_answered_503_with_retry_after() {
    let db = backends().await.remove(0);
    let mut env = short_timeouts();
    env.push(("MLC__SERVER__MAX_CONNECTIONS", "3"));
    env.push(("MLC__SERVER__BODY_READ_TIMEOUT_SECS", "3"));
    let app = TestApp::start_with(&db, &env).await;

    // Three requests in progress: headers complete, bodies stalled.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let t = mlc_core::now_millis() / 1000;
        s.write_all(webhook_head(&format!("t={t},v1=00"), 100).as_bytes())
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    let refused = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the connection over the cap is answered and closed at once");
    let text = String::from_utf8_lossy(&refused).to_ascii_lowercase();
    assert_eq!(status_of(&refused), Some(503), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");

    // The stalled bodies are cut (408); then deliveries are served again.
    for mut s in busy {
        let answer = read_until_closed(&mut s, CLOSED_WITHIN)
            .await
            .expect("a stalled body is cut");
        assert_eq!(status_of(&answer), Some(408));
    }
    let (status, json) = app
        .send_signed(&event_json("evt_1AfterCap", "invoice.paid"), SECRET)
        .await;
    assert_eq!(status, 200, "{json}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mlc_http_connections_refused_total"),
        "{metrics}"
    );
    app.stop().await;
}

/// Sends `raw` on a fresh connection, half-closes it, and returns the answer (empty if the
/// server closed without one).
async fn exchange(addr: std::net::SocketAddr, raw: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    read_until_closed(&mut s, CLOSED_WITHIN)
        .await
        .expect("the server answers or closes")
}

#[tokio::test]
async fn truncated_and_badly_chunked_bodies_are_400_or_closed_never_413() {
    for db in backends().await {
        let app = TestApp::start_with(&db, &short_timeouts()).await;
        let body = event_json("evt_1Truncated", "invoice.paid");
        let signature = sign_now(SECRET, &body);

        // Declared longer than sent, then the client closes its side.
        let mut truncated = webhook_head(&signature, body.len() + 100).into_bytes();
        truncated.extend_from_slice(body.as_bytes());
        let answer = exchange(app.addr, &truncated, true).await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status_of(&answer), Some(400), "truncated: {text}");
        assert!(text.contains("body_unreadable"), "truncated: {text}");

        // A chunk size that is not hexadecimal.
        let chunked = format!(
            "POST /webhooks/stripe HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             stripe-signature: {signature}\r\ntransfer-encoding: chunked\r\n\r\n\
             10\r\n{}\r\nzz\r\n",
            &body[..16]
        );
        let answer = exchange(app.addr, chunked.as_bytes(), false).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || status_of(&answer) == Some(400),
            "bad chunk: {text}"
        );
        assert!(!text.contains("body_too_large"), "{text}");

        assert!(
            app.store
                .get_event("evt_1Truncated")
                .await
                .unwrap()
                .is_none()
        );
        // And a body really over the limit is still 413.
        let (status, json) = app
            .send_signed(&format!("{body}{}", " ".repeat(2_000_000)), SECRET)
            .await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (413, Some("body_too_large"))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_delivery_without_a_usable_signature_header_is_refused_before_its_body() {
    let db = backends().await.remove(0);
    let app = TestApp::start_with(&db, &short_timeouts()).await;
    // Headers announce a large body that never comes: the answer must not wait for it.
    for (header, code) in [
        (None, "missing_signature_header"),
        (Some("garbage"), "malformed_signature_header"),
        (Some("t=1,v0=abc"), "no_v1_signature"),
    ] {
        let mut head = String::from(
            "POST /webhooks/stripe HTTP/1.1\r\nhost: test\r\ncontent-length: 1000000\r\n",
        );
        if let Some(h) = header {
            head.push_str(&format!("stripe-signature: {h}\r\n"));
        }
        head.push_str("\r\n");
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        // Shorter than the body timeout (1 s) would allow a body-reading server to answer.
        let n = tokio::time::timeout(Duration::from_millis(900), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{code}: no answer before the body arrived"))
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(status_of(&buf[..n]), Some(400), "{text}");
        assert!(text.contains(code), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn large_bodies_beyond_the_in_flight_budget_are_refused_503_before_they_are_read() {
    let db = backends().await.remove(0);
    let mut env = short_timeouts();
    env.push(("MLC__SERVER__BODY_LIMIT_BYTES", "4096"));
    env.push(("MLC__SERVER__MAX_INFLIGHT_BODY_BYTES", "4096"));
    env.push(("MLC__SERVER__BODY_READ_TIMEOUT_SECS", "2"));
    let app = TestApp::start_with(&db, &env).await;

    // One delivery holds 4000 of the 4096 bytes while its body trickles in.
    let mut holder = TcpStream::connect(app.addr).await.unwrap();
    let t = mlc_core::now_millis() / 1000;
    holder
        .write_all(webhook_head(&format!("t={t},v1=00"), 4000).as_bytes())
        .await
        .unwrap();
    holder.write_all(b"{").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let body = event_json("evt_1Budget", "invoice.paid");
    let (status, json) = app.send_signed(&body, SECRET).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"]["code"], "too_many_bodies");

    // The holder's body times out (408), its bytes are released, and the retry is stored.
    let answer = read_until_closed(&mut holder, CLOSED_WITHIN)
        .await
        .expect("the stalled body is cut");
    assert_eq!(status_of(&answer), Some(408));
    let (status, json) = app.send_signed(&body, SECRET).await;
    assert_eq!(status, 200, "{json}");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_finishes() {
    let db = backends().await.remove(0);
    // Long timeouts: shutdown must not wait for them.
    let app = TestApp::start_with(
        &db,
        &[
            ("MLC__SERVER__IDLE_TIMEOUT_SECS", "600"),
            ("MLC__SERVER__HEADER_READ_TIMEOUT_SECS", "600"),
        ],
    )
    .await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&buf[..n]), Some(200));
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("stops without waiting for idle connections");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );
}

/// The real binary under a low open-files limit (128): the connection cap is lowered to fit, so
/// a flood of silent sockets never exhausts the descriptors; a health check is answered at once
/// instead of `accept` failing with "Too many open files" and every client, Stripe included,
/// hanging until the flood ends.
#[tokio::test]
async fn under_a_low_open_files_limit_a_flood_leaves_health_checks_answered() {
    let db = backends().await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("serve.log");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec '{}' serve",
            env!("CARGO_BIN_EXE_ml-connector")
        ))
        .env("MLC__DATABASE__URL", db.url())
        .env("MLC__STRIPE__WEBHOOK_SECRETS", SECRET)
        .env("MLC__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("MLC__SERVER__HEADER_READ_TIMEOUT_SECS", "8")
        .env("MLC__LOG__FORMAT", "json")
        .env_remove("MLC_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = reqwest::Client::new();
    assert!(
        eventually(Duration::from_secs(20), || async {
            client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok()
        })
        .await,
        "server did not come up"
    );

    let mut flood = Vec::new();
    for _ in 0..130 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Within half the header timeout: a server stuck on accept would not answer before the
    // flood's sockets are closed. At the cap, the probe takes a silent socket's place.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut probe, Duration::from_secs(4))
        .await
        .expect("answered while the flood is held");
    assert_eq!(
        status_of(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Deliveries are served: on a kept-alive connection at once, on new ones once the flood's
    // silent sockets are cut.
    let served = eventually(Duration::from_secs(30), || async {
        let body = event_json("evt_1AfterFlood", "invoice.paid");
        client
            .post(format!("http://{addr}/webhooks/stripe"))
            .header("stripe-signature", sign_now(SECRET, &body))
            .body(body)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(served);
    drop(flood);
    child.kill().await.unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("capping connections at 64"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}
