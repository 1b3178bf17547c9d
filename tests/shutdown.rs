//! Graceful shutdown: /readyz 503, no new WebSocket connections, 1001 to every client, exit 0.
mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--drain-timeout", "3s"]);
    let mut polite = s.ws_welcomed().await;
    // This one never answers the close: the server waits for it up to the drain timeout.
    let mut stubborn = RawWs::connect(s.addr).await;
    stubborn.next_json().await;
    s.wait_metric("tickcast_connections", |v| v == 2.0).await;

    let start = Instant::now();
    s.signal(libc::SIGTERM);
    assert_eq!(polite.close_code().await, 1001);
    assert_eq!(stubborn.close_code().await, 1001);
    // Still draining (the stubborn client holds on): not ready, and no new WebSockets.
    let (status, body) = s.get("/readyz").await;
    assert_eq!((status, body.trim()), (503, "shutting down"));
    assert_eq!(
        s.metric("tickcast_ready").await,
        0.0,
        "the gauge follows /readyz"
    );
    let refused = RawWs::handshake(
        tokio::net::TcpStream::connect(s.addr).await.unwrap(),
        "/ws",
        &[],
    )
    .await;
    assert_eq!(refused.err().map(|e| e.0), Some(503));

    let code = s.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "exits within the drain timeout"
    );
    assert!(s.log().iter().any(|l| l.contains("shutting down")));
}

#[tokio::test]
async fn sigint_with_no_clients_exits_at_once() {
    let mut s = Server::start(&["--drain-timeout", "30s", "--symbols", "10"]);
    let start = Instant::now();
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "nothing to wait for"
    );
}
