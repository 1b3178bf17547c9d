//! Messages of protocol §3 and §4: welcome, subscribe (snapshots, unknown, since), unsubscribe, ping.
mod common;
use common::*;
use serde_json::json;

/// A server on a TCP feed, with `symbols` published once and visible in /snapshot.
async fn with_values(symbols: &[(&str, f64)]) -> (Server, Publisher) {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--coalesce", "20ms"]);
    let mut p = s.publisher();
    for (sym, bid) in symbols {
        p.tick(json!({"symbol": sym, "bid": bid, "ask": bid + 0.02}));
    }
    let names: Vec<&str> = symbols.iter().map(|(s, _)| *s).collect();
    let deadline = std::time::Instant::now() + WAIT;
    while s.snapshot(&names.join(",")).await.len() < names.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "feed ticks never reached the server"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    (s, p)
}

#[tokio::test]
async fn welcome_comes_first_with_the_configured_limits() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--ping-interval",
        "12s",
        "--max-symbols",
        "99",
    ]);
    let mut a = s.ws().await;
    let mut b = s.ws().await;
    let wa = a.expect_type("welcome").await;
    let wb = b.expect_type("welcome").await;
    assert_eq!(wa["payload"]["heartbeat_ms"], 12000);
    assert_eq!(wa["payload"]["max_symbols"], 99);
    assert!(wa["payload"]["server"]
        .as_str()
        .unwrap()
        .starts_with("tickcast/"));
    let epoch = wa["payload"]["epoch"].as_u64().expect("epoch");
    assert_eq!(
        wb["payload"]["epoch"].as_u64(),
        Some(epoch),
        "one epoch per process"
    );
    assert!(
        epoch > 1_700_000_000_000_000,
        "the server's start, µs since the epoch"
    );
    assert_ne!(
        wa["payload"]["session"], wb["payload"]["session"],
        "session differs per connection"
    );
    s.wait_metric("tickcast_connections", |v| v == 2.0).await;
    assert_eq!(
        s.metric("tickcast_connections_total{result=\"accepted\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn subscribe_replies_then_sends_snapshots_and_live_ticks() {
    let (s, mut p) = with_values(&[("AAPL", 189.1)]).await;
    let mut c = s.ws_welcomed().await;
    c.send(json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL","MSFT"]}}))
        .await;
    let sub = c.next().await;
    assert_eq!(
        sub,
        json!({"type":"subscribed","id":1,"payload":{"symbols":["AAPL","MSFT"],"unknown":["MSFT"]}})
    );
    let snap = c.expect_type("tick").await;
    assert_eq!(snap["payload"]["symbol"], "AAPL");
    assert_eq!(snap["payload"]["seq"], 1);
    assert_eq!(snap["payload"]["bid"], 189.1);
    assert_eq!(snap["payload"]["ask"], 189.12);
    assert_eq!(snap["payload"]["snapshot"], true);
    s.wait_metric("tickcast_subscriptions", |v| v == 2.0).await;
    // MSFT had no value: it ticks once the feed sends it.
    p.tick(json!({"symbol":"MSFT","last":411.5,"volume":1200}));
    let live = c.expect_type("tick").await;
    assert_eq!(live["payload"]["symbol"], "MSFT");
    assert_eq!(live["payload"]["seq"], 1);
    assert_eq!(live["payload"]["last"], 411.5);
    assert_eq!(live["payload"]["volume"], 1200);
    assert!(live["payload"].get("snapshot").is_none());
    assert!(
        live["payload"].get("bid").is_none(),
        "fields appear once the feed sent them"
    );
}

#[tokio::test]
async fn since_skips_snapshots_the_client_does_not_need() {
    let (s, mut p) = with_values(&[("AAPL", 1.0), ("MSFT", 2.0)]).await;
    p.tick(json!({"symbol":"AAPL","bid":1.5}));
    s.wait_metric("tickcast_updates_total", |v| v == 3.0).await;
    let mut c = s.ws_welcomed().await;
    // AAPL is at seq 2 (its trailing window update), MSFT at 1.
    c.send(json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL","MSFT"],"since":{"AAPL":2,"MSFT":0}}})).await;
    c.expect_type("subscribed").await;
    let t = c.expect_type("tick").await;
    assert_eq!(
        (
            t["payload"]["symbol"].as_str(),
            t["payload"]["seq"].as_u64()
        ),
        (Some("MSFT"), Some(1))
    );
    c.send(json!({"type":"ping","id":9})).await;
    assert_eq!(
        c.next().await["type"],
        "pong",
        "no AAPL snapshot: the client was up to date"
    );
    // Re-subscribing is not an error and re-sends the snapshot under the same rule.
    c.send(json!({"type":"subscribe","id":2,"payload":{"symbols":["AAPL"],"since":{"AAPL":1}}}))
        .await;
    assert_eq!(c.expect_type("subscribed").await["id"], 2);
    let again = c.expect_type("tick").await;
    assert_eq!(
        (
            again["payload"]["seq"].as_u64(),
            again["payload"]["bid"].as_f64()
        ),
        (Some(2), Some(1.5))
    );
    assert_eq!(again["payload"]["snapshot"], true);
}

#[tokio::test]
async fn unsubscribe_stops_ticks_and_ignores_unknown_symbols() {
    let (s, mut p) = with_values(&[("AAPL", 1.0), ("FENCE", 1.0)]).await;
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &["AAPL", "FENCE"]).await;
    c.expect_type("tick").await;
    c.expect_type("tick").await;
    c.send(
        json!({"type":"unsubscribe","id":2,"payload":{"symbols":["AAPL","NOTHELD","bad name"]}}),
    )
    .await;
    assert_eq!(
        c.next().await,
        json!({"type":"unsubscribed","id":2,"payload":{"symbols":["AAPL"]}})
    );
    // AAPL then FENCE from one publisher: FENCE arriving alone proves AAPL was not sent.
    p.tick(json!({"symbol":"AAPL","bid":2.0}));
    p.tick(json!({"symbol":"FENCE","bid":2.0}));
    let t = c.expect_type("tick").await;
    assert_eq!(t["payload"]["symbol"], "FENCE");
    s.wait_metric("tickcast_subscriptions", |v| v == 1.0).await;
}

#[tokio::test]
async fn ping_message_and_ping_frame_are_answered() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut c = s.ws_welcomed().await;
    let before = now_us();
    c.send(json!({"type":"ping","id":3})).await;
    let pong = c.expect_type("pong").await;
    assert_eq!(pong["id"], 3);
    let ts = pong["payload"]["ts"].as_u64().unwrap();
    assert!(ts >= before && ts <= now_us());
    let mut raw = RawWs::connect(s.addr).await;
    assert_eq!(raw.next_json().await["type"], "welcome");
    raw.send_frame(true, 9, b"hello").await;
    let f = raw.read_frame().await.unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (10, &b"hello"[..]));
}

#[tokio::test]
async fn seq_strictly_increases_and_the_last_value_arrives() {
    let (s, mut p) = with_values(&[("AAPL", 1.0)]).await;
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &["AAPL"]).await;
    let mut last_seq = c.expect_type("tick").await["payload"]["seq"]
        .as_u64()
        .unwrap();
    for i in 1..=300 {
        p.tick(json!({"symbol":"AAPL","last": 100.0 + i as f64 / 100.0, "volume": i * 100}));
        if i % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
    loop {
        let t = c.expect_type("tick").await;
        let seq = t["payload"]["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "seq went from {last_seq} to {seq}");
        last_seq = seq;
        if t["payload"]["volume"] == 30000 {
            assert_eq!(t["payload"]["last"], 103.0);
            break;
        }
    }
}

#[tokio::test]
async fn a_client_close_is_answered_and_counted() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    raw.send_frame(true, 8, &1000u16.to_be_bytes()).await;
    assert_eq!(raw.until_eof().await, Some(1000));
    s.wait_metric("tickcast_disconnects_total{reason=\"client\"}", |v| {
        v == 1.0
    })
    .await;
    s.wait_metric("tickcast_connections", |v| v == 0.0).await;
}
