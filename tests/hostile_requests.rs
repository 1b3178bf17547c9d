//! The most hostile WebSocket client, message by message: deep JSON,
//! requests naming hundreds of bad symbols, thousands of names that do not
//! exist. Each test is one finding of the hardening issue, over real sockets.
mod common;
use common::*;
use serde_json::json;

fn tcp_feed(extra: &[&str]) -> Server {
    let mut flags = vec!["--feed", "tcp://127.0.0.1:0"];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

#[tokio::test]
async fn deep_json_nesting_is_a_bad_request_not_a_crash() {
    let s = tcp_feed(&["--max-message", "1048576", "--client-burst", "50"]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    for deep in [
        "[".repeat(30_000),
        format!(
            r#"{{"type":"subscribe","id":1,"payload":{}}}"#,
            "{\"a\":".repeat(20_000)
        ),
        "[".repeat(500_000),
    ] {
        raw.send_text(&deep).await;
        let e = raw.next_json().await;
        assert_eq!(e["payload"]["code"], "bad_request", "{e}");
        assert!(e["payload"]["message"].as_str().unwrap().contains("nested"));
    }
    raw.send_text(r#"{"type":"ping","id":2}"#).await;
    assert_eq!(raw.next_json().await["type"], "pong");
    assert_eq!(s.get("/healthz").await.0, 200, "the process is alive");
}

#[tokio::test]
async fn hundreds_of_bad_symbols_get_one_error_and_the_good_one_is_subscribed() {
    let s = tcp_feed(&[]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    let mut symbols: Vec<String> = (0..300).map(|i| format!("BAD {i}")).collect();
    symbols.push("AAPL".into());
    raw.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":symbols}}).to_string())
        .await;
    let sub = raw.next_json().await;
    assert_eq!(sub["type"], "subscribed");
    assert_eq!(sub["payload"]["symbols"], json!(["AAPL"]));
    let e = raw.next_json().await;
    assert_eq!(e["payload"]["code"], "invalid_symbol");
    assert_eq!(e["payload"]["symbols"].as_array().unwrap().len(), 300);
    // Nothing else is queued for that request, and the connection is fine.
    raw.send_text(r#"{"type":"ping","id":2}"#).await;
    let pong = raw.next_json().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(2))
    );
    assert_eq!(
        s.metric("tickcast_disconnects_total{reason=\"slow_consumer\"}")
            .await,
        0.0
    );
    s.wait_metric("tickcast_subscriptions", |v| v == 1.0).await;
}

/// Opens a connection that tries 2 subscribes of 900 names never published.
async fn connect_asking_for_names(s: &Server, c: usize) -> RawWs {
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    for round in 0..2 {
        let names: Vec<String> = (0..900).map(|i| format!("N{c}.{round}.{i}")).collect();
        raw.send_text(
            &json!({"type":"subscribe","id":round,"payload":{"symbols":names}}).to_string(),
        )
        .await;
        let m = raw.next_json().await;
        assert_eq!(m["type"], "subscribed", "{m}");
        let kept = m["payload"]["symbols"].as_array().unwrap().len();
        assert_eq!(kept, if round == 0 { 64 } else { 0 });
        let e = raw.next_json().await;
        assert_eq!(e["payload"]["code"], "unknown_symbol", "{e}");
        assert_eq!(
            e["payload"]["symbols"].as_array().unwrap().len(),
            900 - kept
        );
    }
    raw
}

/// Names that were never published cost a connection next to nothing: at
/// most `--max-unknown-symbols` of them are held per connection, the rest are
/// refused with `unknown_symbol` (it used to be ~0.5 MiB per connection).
#[tokio::test]
async fn symbols_that_do_not_exist_cost_next_to_nothing() {
    const WARM_UP: usize = 10;
    // Enough that the allocator's granularity (pages, segments) is noise.
    const MEASURED: usize = 120;
    let s = tcp_feed(&["--client-burst", "50", "--max-message", "65536"]);
    let mut conns = Vec::new();
    // The first connections pay one-time costs (buffers, allocator arenas).
    for c in 0..WARM_UP {
        conns.push(connect_asking_for_names(&s, c).await);
    }
    let before = s.metric("process_resident_memory_bytes").await;
    for c in WARM_UP..WARM_UP + MEASURED {
        conns.push(connect_asking_for_names(&s, c).await);
    }
    let grown = s.metric("process_resident_memory_bytes").await - before;
    let per_conn = grown / MEASURED as f64;
    assert!(
        per_conn < 96.0 * 1024.0,
        "{:.1} KiB per connection",
        per_conn / 1024.0
    );
    s.wait_metric("tickcast_subscriptions", |v| {
        v == ((WARM_UP + MEASURED) * 64) as f64
    })
    .await;
    // A name that gets published is a symbol like any other from then on.
    let mut p = s.publisher();
    p.tick(json!({"symbol":"N0.0.0","bid":2.0}));
    let t = conns[0].next_json().await;
    assert_eq!(t["payload"]["symbol"], "N0.0.0");
    drop(conns);
    s.wait_metric("tickcast_subscriptions", |v| v == 0.0).await;
}

#[tokio::test]
async fn an_empty_unsubscribe_is_a_bad_request() {
    let s = tcp_feed(&[]);
    let mut c = s.ws_welcomed().await;
    c.send(json!({"type":"unsubscribe","id":4,"payload":{"symbols":[]}}))
        .await;
    let e = c.expect_type("error").await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(4), Some("bad_request"))
    );
}
