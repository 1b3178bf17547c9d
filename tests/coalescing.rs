//! Coalescing (protocol §5): leading edge, field merge, at most one update per window.
//! Timing is judged by the server's own `ts`/`pub` stamps, not by the test's clock.
mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const WINDOW_US: u64 = 1_000_000;

#[tokio::test]
async fn leading_edge_then_one_merged_update_per_window() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--coalesce", "1s"]);
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &["AAPL", "FENCE"]).await;
    let mut p = s.publisher();

    // A quiet symbol goes out at once.
    let sent = now_us();
    p.tick(json!({"symbol":"AAPL","bid":10.0,"ask":10.02,"ts":sent}));
    let first = c.expect_type("tick").await["payload"].clone();
    assert_eq!(
        (first["seq"].as_u64(), first["ts"].as_u64()),
        (Some(1), Some(sent))
    );
    let first_pub = first["pub"].as_u64().unwrap();
    assert!(
        first_pub - sent < WINDOW_US / 2,
        "released at once, not at the window's end"
    );

    // Quote and trade ticks inside the window merge into one update.
    for i in 1..=10u64 {
        if i % 2 == 0 {
            p.tick(json!({"symbol":"AAPL","bid":10.0 + i as f64 / 100.0,"ask":10.5,"ts":sent + i}));
        } else {
            p.tick(json!({"symbol":"AAPL","last":10.01,"volume":100 * i,"ts":sent + i}));
        }
    }
    let second = c.expect_type("tick").await["payload"].clone();
    assert_eq!(second["seq"], 2);
    assert_eq!(second["bid"], 10.1);
    assert_eq!(second["ask"], 10.5);
    assert_eq!(second["last"], 10.01);
    assert_eq!(second["volume"], 900);
    assert_eq!(
        second["ts"].as_u64(),
        Some(sent + 10),
        "ts of the newest tick merged in"
    );
    assert!(
        second["pub"].as_u64().unwrap() - first_pub >= WINDOW_US,
        "not before the window closes"
    );

    // Nothing else for AAPL: the FENCE tick, sent later, is the next message.
    p.tick(json!({"symbol":"FENCE","bid":1.0}));
    assert_eq!(c.expect_type("tick").await["payload"]["symbol"], "FENCE");

    // After a whole quiet window, AAPL leads again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let sent = now_us();
    p.tick(json!({"symbol":"AAPL","bid":11.0,"ts":sent}));
    let third = c.expect_type("tick").await["payload"].clone();
    assert_eq!(third["seq"], 3);
    assert!(third["pub"].as_u64().unwrap() - sent < WINDOW_US / 2);
    // The hub counts right after it hands updates out: wait for the counters to settle.
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 13.0)
        .await;
    s.wait_metric("tickcast_updates_total", |v| v == 4.0).await;
}

#[tokio::test]
async fn a_steady_stream_releases_at_most_once_per_window() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--coalesce", "200ms"]);
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &["AAPL"]).await;
    let mut p = s.publisher();
    let writer = std::thread::spawn(move || {
        for i in 0..150u64 {
            p.tick(json!({"symbol":"AAPL","last": i}));
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    });
    let mut pubs = vec![];
    loop {
        let t = c.expect_type("tick").await["payload"].clone();
        pubs.push(t["pub"].as_u64().unwrap());
        if t["last"] == 149 {
            break;
        }
    }
    drop(writer.join());
    for w in pubs.windows(2) {
        assert!(
            w[1] - w[0] >= 200_000,
            "two updates {} µs apart",
            w[1] - w[0]
        );
    }
    // A busy machine may stretch 1.5 s of ticks: only the lower bound is fixed.
    assert!(
        pubs.len() >= 5,
        "{} updates for 150 ticks 10 ms apart",
        pubs.len()
    );
}
