//! Admission control and deploys: the handshake rate limit (503 with a
//! jittered `Retry-After`), the drain in waves (`reconnect`, then 1001,
//! spread over `--drain-period`), a second signal cutting the drain short,
//! and `--max-connection-age`.
mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends an upgrade and returns the status and head of the answer.
async fn upgrade_head(s: &Server) -> (u16, String) {
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed before answering");
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

fn retry_after(head: &str) -> Option<u32> {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn past_the_handshake_rate_an_upgrade_gets_503_with_retry_after() {
    // One new session per second, a bucket of one: of ten upgrades in a
    // row, at most a few get through, whatever the machine's pace.
    let s = Server::start(&["--max-handshake-rate", "1", "--symbols", "10"]);
    let start = Instant::now();
    let (mut accepted, mut refused) = (0u32, 0u32);
    for _ in 0..10 {
        let (status, head) = upgrade_head(&s).await;
        match status {
            101 => accepted += 1,
            503 => {
                refused += 1;
                let after = retry_after(&head).unwrap_or_else(|| panic!("no Retry-After: {head}"));
                assert!((1..=60).contains(&after), "{head}");
            }
            other => panic!("unexpected {other}: {head}"),
        }
    }
    let allowed = 1 + start.elapsed().as_secs_f64().floor() as u32;
    assert!(accepted >= 1, "the first one fits the bucket");
    assert!(
        accepted <= allowed,
        "{accepted} accepted in {:?}",
        start.elapsed()
    );
    assert_eq!(accepted + refused, 10);
    assert_eq!(
        s.metric("tickcast_refused_total{reason=\"handshake_rate\"}")
            .await,
        refused as f64
    );
    // Health checks and metrics are not sessions: never limited.
    assert_eq!(s.get("/healthz").await.0, 200);
}

/// What one client saw of a drain.
struct Ended {
    reconnect: Value,
    code: u16,
    at: Instant,
}

async fn until_closed(mut c: RawWs) -> Ended {
    let mut reconnect = None;
    loop {
        let f = c.read_frame().await.expect("a close frame before EOF");
        match f.opcode {
            1 => {
                let m = f.json();
                if m["type"] == "reconnect" {
                    reconnect = Some(m);
                }
            }
            8 => {
                return Ended {
                    reconnect: reconnect.expect("a reconnect message before the close"),
                    code: f.close_code(),
                    at: Instant::now(),
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn sigterm_closes_clients_in_waves_each_told_when_to_come_back() {
    let mut s = Server::start(&[
        "--drain-period",
        "2s",
        "--drain-timeout",
        "3s",
        "--symbols",
        "10",
    ]);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = RawWs::connect(s.addr).await;
        assert_eq!(c.next_json().await["type"], "welcome");
        clients.push(c);
    }
    let mut sse = SseClient::open(s.addr, "/sse?symbols=AAPL", &[]).await;
    assert_eq!(sse.status, 200);
    s.wait_metric("tickcast_connections", |v| v == 21.0).await;

    let start = Instant::now();
    s.signal(libc::SIGTERM);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(until_closed(c)))
        .collect();
    // Not ready from the start of the drain, while clients are still open.
    let deadline = Instant::now() + WAIT;
    while s.get("/readyz").await.0 != 503 {
        assert!(Instant::now() < deadline, "/readyz still 200");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.metric("tickcast_connections").await > 0.0);

    let mut ended = Vec::new();
    for t in tasks {
        ended.push(t.await.unwrap());
    }
    let mut waits = std::collections::BTreeSet::new();
    for e in &ended {
        assert_eq!(e.code, 1001);
        assert_eq!(e.reconnect["payload"]["reason"], "server shutting down");
        assert!(e.reconnect.get("id").is_none(), "{}", e.reconnect);
        let after = e.reconnect["payload"]["after_ms"].as_u64().unwrap();
        assert!(after <= 2000, "{after} ms is beyond the drain period");
        waits.insert(after);
    }
    assert!(
        waits.len() > 1,
        "every client told the same wait: {waits:?}"
    );
    let first = ended.iter().map(|e| e.at).min().unwrap();
    let last = ended.iter().map(|e| e.at).max().unwrap();
    assert!(
        last - first >= Duration::from_secs(1),
        "20 clients over a 2 s drain were closed within {:?}",
        last - first
    );

    // The SSE client is told the same, and its browser's own retry matches.
    let mut last_id = None;
    let e = sse.until_event("reconnect", &mut last_id).await;
    // Over SSE the data is the payload.
    let after = e.json()["after_ms"].as_u64().unwrap();
    assert_eq!(e.retry, Some(after), "retry: follows the reconnect message");
    let close = sse.until_event("close", &mut last_id).await;
    assert_eq!(close.json()["code"], 1001);
    assert!(sse.next_block().await.is_none(), "the stream ends after it");

    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_second_signal_closes_everyone_left_at_once() {
    let mut s = Server::start(&[
        "--drain-period",
        "10m",
        "--drain-timeout",
        "2s",
        "--symbols",
        "10",
    ]);
    // A wave closes at least one client each 100 ms: alone, the drain of 60
    // clients would take 6 s.
    let mut clients = Vec::new();
    for _ in 0..60 {
        let mut c = RawWs::connect(s.addr).await;
        c.next_json().await;
        clients.push(c);
    }
    s.wait_metric("tickcast_connections", |v| v == 60.0).await;
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    for c in clients {
        let closed_tx = closed_tx.clone();
        tokio::spawn(async move {
            let e = until_closed(c).await;
            let _ = closed_tx.send(e);
        });
    }
    drop(closed_tx);
    s.signal(libc::SIGTERM);
    let first = closed.recv().await.unwrap();
    assert_eq!(first.code, 1001);
    let second_signal = Instant::now();
    s.signal(libc::SIGTERM);
    let mut rest = 0;
    while let Some(e) = closed.recv().await {
        assert_eq!(e.code, 1001);
        rest += 1;
    }
    assert_eq!(rest, 59);
    let took = second_signal.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the second signal skips the rest of the drain: the last close came {took:?} after it"
    );
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test]
async fn a_connection_past_its_maximum_age_is_told_to_reconnect_and_closed_1001() {
    let s = Server::start(&["--max-connection-age", "1s", "--symbols", "10"]);
    let start = Instant::now();
    let mut c = RawWs::connect(s.addr).await;
    assert_eq!(c.next_json().await["type"], "welcome");
    let e = until_closed(c).await;
    let age = e.at - start;
    assert!(
        age >= Duration::from_millis(900),
        "closed after {age:?}: the age less at most a tenth"
    );
    assert_eq!(e.code, 1001);
    assert_eq!(e.reconnect["payload"]["reason"], "connection age");
    assert!(e.reconnect["payload"]["after_ms"].as_u64().unwrap() <= 1000);
    s.wait_metric("tickcast_disconnects_total{reason=\"max_age\"}", |v| {
        v == 1.0
    })
    .await;
    // The node still serves new connections as before.
    let mut again = s.ws_welcomed().await;
    again.subscribe(1, &["AAPL"]).await;
}

#[tokio::test]
async fn a_refused_token_gives_its_place_in_the_rate_back() {
    const SECRET: &str = "deploys-secret-0123456789";
    let s = Server::start_with_env(
        &["--max-handshake-rate", "1", "--symbols", "10"],
        &[("TICKCAST_AUTH_SECRET", SECRET)],
    );
    // Bad tokens are refused for what they are (401), and spend nothing:
    // with one place a second, a stranger's garbage cannot lock others out.
    for _ in 0..5 {
        let stream = TcpStream::connect(s.addr).await.unwrap();
        let refused =
            RawWs::handshake(stream, "/ws", &[("Authorization", "Bearer not.a.token")]).await;
        assert_eq!(refused.err().map(|e| e.0), Some(401));
    }
    let token = cli_token(SECRET, &["--sub", "alice"]);
    let bearer = format!("Bearer {token}");
    let stream = TcpStream::connect(s.addr).await.unwrap();
    assert!(
        RawWs::handshake(stream, "/ws", &[("Authorization", &bearer)])
            .await
            .is_ok(),
        "the one place of this second is still there"
    );
    assert_eq!(
        s.metric("tickcast_refused_total{reason=\"handshake_rate\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_plain_get_on_ws_says_how_an_upgrade_would_be_answered_taking_nothing() {
    let s = Server::start(&["--max-handshake-rate", "1", "--symbols", "10"]);
    // Asking takes no place: many answers of 426 (it would be let in)…
    for _ in 0..3 {
        let (status, head, _) = raw_http(
            s.addr,
            b"GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\n\r\n",
        )
        .await;
        assert_eq!(status, 426, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("access-control-expose-headers: retry-after"),
            "a page must be able to read Retry-After: {head}"
        );
    }
    // …and the one place of this second is still there for the upgrade.
    let upgraded = RawWs::handshake(TcpStream::connect(s.addr).await.unwrap(), "/ws", &[]).await;
    assert!(upgraded.is_ok());
    // Now the place is taken: the probe says 503 with Retry-After.
    let (status, head, _) = raw_http(s.addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    if status == 503 {
        assert!(retry_after(&head).is_some(), "{head}");
    } else {
        // A second passed on a slow machine and the bucket refilled.
        assert_eq!(status, 426, "{head}");
    }
}
