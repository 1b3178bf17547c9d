//! Every endpoint of protocol §1 against the real binary.
mod common;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn health_readiness_404_and_plain_get_on_ws() {
    let s = Server::start(&["--symbols", "20"]);
    assert_eq!(s.get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(s.get("/readyz").await.0, 200);
    assert_eq!(s.get("/nope").await.0, 404);
    // A plain GET is told how an upgrade would be answered: here, let in (426).
    let (status, body) = s.get("/ws").await;
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("upgrade"), "{body}");
}

#[tokio::test]
async fn websocket_version_other_than_13_is_refused() {
    let s = Server::start(&["--symbols", "20"]);
    let (status, _) = http_get(
        s.addr,
        "/ws",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "8"),
            ("Sec-WebSocket-Key", "x"),
        ],
    )
    .await;
    assert_eq!(status, 426);
    assert_eq!(
        s.metric("tickcast_connections_total{result=\"rejected\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn metrics_have_every_name_of_the_spec() {
    let s = Server::start(&["--symbols", "20"]);
    let (status, body) = s.get("/metrics").await;
    assert_eq!(status, 200);
    for (name, kind) in [
        ("tickcast_ready", "gauge"),
        ("tickcast_connections", "gauge"),
        ("tickcast_connections_total", "counter"),
        ("tickcast_subscriptions", "gauge"),
        ("tickcast_feed_ticks_total", "counter"),
        ("tickcast_feed_rejected_total", "counter"),
        ("tickcast_updates_total", "counter"),
        ("tickcast_messages_sent_total", "counter"),
        ("tickcast_dropped_total", "counter"),
        ("tickcast_disconnects_total", "counter"),
        ("tickcast_fanout_latency_seconds", "histogram"),
        ("tickcast_coalesce_delay_seconds", "histogram"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_cpu_seconds_total", "counter"),
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} missing"
        );
    }
    for reason in [
        "client",
        "heartbeat",
        "slow_consumer",
        "rate_limit",
        "protocol",
        "auth",
        "shutdown",
    ] {
        let series = format!("tickcast_disconnects_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&body, &series), 0.0, "{series}");
    }
    assert!(
        body.contains("tickcast_connections{node=\""),
        "every tickcast series names its node"
    );
    assert!(metric_value(&body, "process_resident_memory_bytes") > 1e6);
    assert_eq!(
        metric_value(&body, "tickcast_ready"),
        1.0,
        "ready, as /readyz says"
    );
    // The synthetic feed is running: ticks flow and the coalescer releases updates.
    s.wait_metric("tickcast_updates_total", |v| v > 0.0).await;
    s.wait_metric("tickcast_coalesce_delay_seconds_count", |v| v > 0.0)
        .await;
}

#[tokio::test]
async fn snapshot_returns_latest_payloads() {
    let s = Server::start(&["--symbols", "50"]);
    // The synthetic feed quotes every symbol first.
    let deadline = std::time::Instant::now() + WAIT;
    let all = loop {
        let (_, body) = s.get("/snapshot").await;
        let all: Vec<Value> = serde_json::from_str(&body).unwrap();
        if all.len() == 50 || std::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(all.len(), 50);
    let some = s.snapshot("AAPL,FX%3AEUR%2FUSD,NOSUCH").await;
    assert_eq!(some.len(), 2, "unknown symbols are left out: {some:?}");
    assert_eq!(some[0]["symbol"], "AAPL");
    assert_eq!(some[1]["symbol"], "FX:EUR/USD");
    for p in &some {
        assert!(p["seq"].as_u64().unwrap() >= 1);
        assert!(p["bid"].as_f64().unwrap() < p["ask"].as_f64().unwrap());
        assert!(p["pub"].as_u64().unwrap() >= p["ts"].as_u64().unwrap());
        assert!(p.get("snapshot").is_none());
    }
    let (status, body) = s.get("/snapshot?symbols=BAD%20NAME").await;
    assert_eq!(status, 400);
    assert!(body.contains("BAD NAME"));
}

#[tokio::test]
async fn demo_page_and_client_library_are_served() {
    let s = Server::start(&["--symbols", "20"]);
    let (status, page) = s.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html") && page.contains("/client.js"));
    let (status, js) = s.get("/client.js").await;
    assert_eq!(status, 200);
    assert!(js.contains("export function"));
}

#[tokio::test]
async fn readyz_is_ready_once_the_tcp_feed_listens() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    assert!(s.feed_addr.is_some());
    assert_eq!(s.get("/readyz").await.0, 200);
}
