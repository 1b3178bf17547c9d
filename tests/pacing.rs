//! Fewer, fuller writes, and fewer updates for those who want fewer:
//! corking within `--max-delay`, and per-subscription `interval_ms`, with the
//! latest value always delivered and `seq` never going back.
mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Publishes `bid` values for `symbol` every `every` for `for_how_long`;
/// returns the last value published.
async fn stream_updates(
    p: &mut Publisher,
    symbol: &str,
    every: Duration,
    for_how_long: Duration,
) -> f64 {
    let start = Instant::now();
    let mut bid = 0.0;
    while start.elapsed() < for_how_long {
        bid += 1.0;
        p.tick(json!({"symbol":symbol,"bid":bid}));
        tokio::time::sleep(every).await;
    }
    bid
}

#[tokio::test]
async fn an_interval_conflates_updates_and_the_latest_always_arrives() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--coalesce", "10ms"]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"FAST","bid":0.5}));
    s.wait_metric("tickcast_updates_total", |v| v >= 1.0).await;
    let mut slow = s.ws_welcomed().await;
    slow.send(json!({"type":"subscribe","id":1,"payload":{"symbols":["FAST"],"interval_ms":400}}))
        .await;
    slow.expect_type("subscribed").await;
    let snapshot = slow.expect_type("tick").await;
    assert_eq!(snapshot["payload"]["snapshot"], true);
    let mut every = s.ws_welcomed().await;
    every.subscribe(1, &["FAST"]).await;
    every.expect_type("tick").await;

    let last = stream_updates(
        &mut p,
        "FAST",
        Duration::from_millis(10),
        Duration::from_millis(1500),
    )
    .await;
    // The unpaced client saw many; the paced one about one per 400 ms.
    let mut seqs = vec![snapshot["payload"]["seq"].as_u64().unwrap()];
    let mut pubs = vec![];
    loop {
        let t = slow.expect_type("tick").await;
        let seq = t["payload"]["seq"].as_u64().unwrap();
        assert!(seq > *seqs.last().unwrap(), "seq goes forward");
        seqs.push(seq);
        pubs.push(t["payload"]["pub"].as_u64().unwrap());
        if t["payload"]["bid"] == last {
            break;
        }
    }
    assert!(
        seqs.len() <= 1 + 6,
        "{} updates in 1.5 s at one per 400 ms",
        seqs.len()
    );
    assert!(seqs.len() >= 3, "{seqs:?}");
    let mut count_every = 0;
    loop {
        let t = every.expect_type("tick").await;
        count_every += 1;
        if t["payload"]["bid"] == last {
            break;
        }
    }
    assert!(
        count_every > 2 * seqs.len(),
        "unpaced: {count_every}, paced: {}",
        seqs.len()
    );
    // Nothing more comes for the paced client: it already has the latest.
    assert!(slow.try_next(Duration::from_millis(600)).await.is_none());
}

#[tokio::test]
async fn an_interval_below_the_coalescing_window_is_a_bad_request() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--coalesce", "100ms"]);
    let mut c = s.ws_welcomed().await;
    c.send(json!({"type":"subscribe","id":3,"payload":{"symbols":["A"],"interval_ms":50}}))
        .await;
    let e = c.expect_type("error").await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(3), Some("bad_request"))
    );
    assert!(e["payload"]["message"]
        .as_str()
        .unwrap()
        .contains("interval_ms"));
    let sse = SseClient::open(s.addr, "/sse?symbols=A&interval_ms=50", &[]).await;
    assert_eq!(sse.status, 400);
}

#[tokio::test]
async fn an_sse_stream_may_be_paced_too() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--coalesce", "10ms"]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"FAST","bid":0.5}));
    s.wait_metric("tickcast_updates_total", |v| v >= 1.0).await;
    let mut sse = SseClient::open(s.addr, "/sse?symbols=FAST&interval_ms=500", &[]).await;
    let mut last_id = None;
    sse.until_event("tick", &mut last_id).await;
    let last = stream_updates(
        &mut p,
        "FAST",
        Duration::from_millis(10),
        Duration::from_millis(1200),
    )
    .await;
    let mut n = 0;
    loop {
        let t = sse.until_event("tick", &mut last_id).await.json();
        n += 1;
        if t["bid"] == last {
            break;
        }
    }
    assert!(
        (1..=4).contains(&n),
        "{n} updates in 1.2 s at one per 500 ms"
    );
}

/// With `--max-delay`, the first update after a quiet spell leaves at once
/// (the leading edge): corking costs a quiet node no latency.
#[tokio::test]
async fn corking_lets_the_first_update_after_quiet_leave_at_once() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--coalesce",
        "1ms",
        "--max-delay",
        "1s",
    ]);
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &["Q1", "Q2"]).await;
    let mut p = s.publisher();
    for (i, sym) in ["Q1", "Q2"].iter().enumerate() {
        p.tick(json!({"symbol":sym,"bid":i as f64 + 1.0}));
        let t = c.expect_type("tick").await;
        let age = now_us().saturating_sub(t["payload"]["pub"].as_u64().unwrap());
        if i == 0 {
            assert!(age < 500_000, "the leading update waited {age} µs");
        } else {
            // The next one, right after a wake-up, waits for the delay.
            assert!(age >= 500_000, "the second update waited only {age} µs");
        }
    }
}

/// With `--max-delay`, a client's updates of several passes leave in one
/// write, and none waits longer than the delay (plus scheduling).
#[tokio::test]
async fn corking_gathers_writes_within_the_bound() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--coalesce",
        "1ms",
        "--max-delay",
        "100ms",
    ]);
    let symbols: Vec<String> = (0..10).map(|i| format!("C{i}")).collect();
    let names: Vec<&str> = symbols.iter().map(|s| s.as_str()).collect();
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &names).await;
    let mut p = s.publisher();
    let writes0 = s.metric("tickcast_writes_total").await;
    let frames0 = s.metric("tickcast_frames_written_total").await;
    // Ten updates 5 ms apart: without corking, ten writes.
    for (i, sym) in symbols.iter().enumerate() {
        p.tick(json!({"symbol":sym,"bid":i as f64 + 1.0}));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut worst = 0;
    for _ in 0..10 {
        let t = c.expect_type("tick").await;
        let age = now_us().saturating_sub(t["payload"]["pub"].as_u64().unwrap());
        worst = worst.max(age);
    }
    let writes = s.metric("tickcast_writes_total").await - writes0;
    let frames = s.metric("tickcast_frames_written_total").await - frames0;
    assert!(frames >= 10.0);
    assert!(writes <= 4.0, "{frames} frames in {writes} writes");
    assert!(
        worst <= 100_000 + 400_000,
        "an update waited {worst} µs (bound 100 ms)"
    );
}
