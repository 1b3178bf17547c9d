//! Heartbeats (protocol §6): silent clients are dropped, answering clients are kept.
mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_client_that_never_answers_pings_is_dropped() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--ping-interval",
        "300ms",
        "--pong-timeout",
        "300ms",
    ]);
    let mut raw = RawWs::connect(s.addr).await;
    let start = Instant::now();
    let mut pings = 0;
    // Read everything, answer nothing.
    while let Some(f) = raw.read_frame().await {
        if f.opcode == 9 {
            pings += 1;
        }
    }
    assert!(pings >= 1, "the server pinged");
    assert!(
        start.elapsed() >= Duration::from_millis(550),
        "not before interval + timeout"
    );
    s.wait_metric("tickcast_disconnects_total{reason=\"heartbeat\"}", |v| {
        v == 1.0
    })
    .await;
    s.wait_metric("tickcast_connections", |v| v == 0.0).await;
}

#[tokio::test]
async fn a_client_that_answers_pings_is_kept() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--ping-interval",
        "200ms",
        "--pong-timeout",
        "500ms",
    ]);
    let mut raw = RawWs::connect(s.addr).await;
    // Three times interval + timeout: a client that did not answer would be gone.
    let until = Instant::now() + Duration::from_millis(2100);
    let mut pings = 0;
    while Instant::now() < until {
        match raw.read_frame_within(until - Instant::now()).await {
            Ok(Some(f)) if f.opcode == 9 => {
                pings += 1;
                raw.send_frame(true, 10, &f.payload).await;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("dropped although it answered"),
            Err(()) => break,
        }
    }
    assert!(pings >= 3, "{pings} pings in 2.1 s");
    raw.send_text(&json!({"type":"ping","id":1}).to_string())
        .await;
    assert_eq!(raw.next_json().await["type"], "pong");
    assert_eq!(
        s.metric("tickcast_disconnects_total{reason=\"heartbeat\"}")
            .await,
        0.0
    );
}
