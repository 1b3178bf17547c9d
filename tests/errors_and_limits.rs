//! Error codes of protocol §4 and the limits and close codes of §6 and §7.
mod common;
use common::*;
use serde_json::json;

fn tcp_feed(extra: &[&str]) -> Server {
    let mut flags = vec!["--feed", "tcp://127.0.0.1:0"];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

async fn error_of(c: &mut Client, text: &str) -> serde_json::Value {
    c.send_text(text).await;
    let e = c.expect_type("error").await;
    e
}

#[tokio::test]
async fn bad_requests_and_unknown_types_name_the_problem() {
    let s = tcp_feed(&[]);
    let mut c = s.ws_welcomed().await;
    let e = error_of(&mut c, "not json").await;
    assert_eq!(e["payload"]["code"], "bad_request");
    assert!(e.get("id").is_none());
    let e = error_of(&mut c, "[1,2]").await;
    assert_eq!(e["payload"]["code"], "bad_request");
    let e = error_of(&mut c, r#"{"id":5,"type":"subscribe"}"#).await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(5), Some("bad_request"))
    );
    assert!(e["payload"]["message"]
        .as_str()
        .unwrap()
        .contains("symbols"));
    let e = error_of(
        &mut c,
        r#"{"id":6,"type":"subscribe","payload":{"symbols":"AAPL"}}"#,
    )
    .await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(6), Some("bad_request"))
    );
    let e = error_of(&mut c, r#"{"id":7,"type":"quote"}"#).await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(7), Some("unknown_type"))
    );
    // The connection is still fine.
    c.send(json!({"type":"ping","id":8})).await;
    assert_eq!(c.expect_type("pong").await["id"], 8);
}

#[tokio::test]
async fn invalid_symbols_are_refused_in_one_error_and_the_rest_subscribed() {
    let s = tcp_feed(&[]);
    let mut c = s.ws_welcomed().await;
    c.send(json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL","BAD NAME", "X".repeat(33)]}})).await;
    // `subscribed` first, then one error naming every invalid symbol.
    let sub = c.expect_type("subscribed").await;
    assert_eq!(sub["payload"]["symbols"], json!(["AAPL"]));
    let e = c.expect_type("error").await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(1), Some("invalid_symbol"))
    );
    assert_eq!(e["payload"]["symbols"], json!(["BAD NAME", "X".repeat(33)]));
    assert!(e["payload"].get("symbol").is_none(), "two symbols at fault");
}

#[tokio::test]
async fn too_many_symbols_subscribes_nothing_of_that_request() {
    let s = tcp_feed(&["--max-symbols", "3"]);
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &["A", "B"]).await;
    c.send(json!({"type":"subscribe","id":2,"payload":{"symbols":["C","D"]}}))
        .await;
    let e = c.expect_type("error").await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(2), Some("too_many_symbols"))
    );
    assert_eq!(
        s.metric("tickcast_subscriptions").await,
        2.0,
        "neither C nor D"
    );
    let sub = c.subscribe(3, &["C"]).await;
    assert_eq!(sub["payload"]["symbols"], json!(["C"]));
    s.wait_metric("tickcast_subscriptions", |v| v == 3.0).await;
}

#[tokio::test]
async fn rate_limited_messages_get_an_error_and_do_not_count_as_protocol_errors() {
    // One token per 100 s after the burst: however slowly the server gets to
    // the messages, no refill changes the outcome.
    let s = tcp_feed(&["--client-rate", "0.01", "--client-burst", "15"]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    for _ in 0..15 {
        raw.send_text("nope").await;
    }
    for i in 0..10 {
        raw.send_text(&json!({"type":"ping","id":100 + i}).to_string())
            .await;
    }
    for _ in 0..15 {
        assert_eq!(raw.next_json().await["payload"]["code"], "bad_request");
    }
    for i in 0..10 {
        let e = raw.next_json().await;
        assert_eq!(
            (e["id"].as_i64(), e["payload"]["code"].as_str()),
            (Some(100 + i), Some("rate_limited"))
        );
    }
    // 25 error replies, but only 15 count against the limit of 20: still open
    // (and still rate-limited).
    raw.send_text(&json!({"type":"ping","id":200}).to_string())
        .await;
    let e = raw.next_json().await;
    assert_eq!(
        (e["id"].as_i64(), e["payload"]["code"].as_str()),
        (Some(200), Some("rate_limited"))
    );
    assert_eq!(
        s.metric("tickcast_disconnects_total{reason=\"protocol\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn too_many_protocol_errors_close_1008() {
    let s = tcp_feed(&["--client-burst", "100"]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    for _ in 0..21 {
        raw.send_text("nope").await;
    }
    for _ in 0..21 {
        assert_eq!(raw.next_json().await["payload"]["code"], "bad_request");
    }
    assert_eq!(raw.close_code().await, 1008);
    s.wait_metric("tickcast_disconnects_total{reason=\"protocol\"}", |v| {
        v == 1.0
    })
    .await;
}

#[tokio::test]
async fn flooding_at_twice_the_rate_closes_4429() {
    // A slow refill, so that the outcome does not depend on how fast the server reads.
    let s = tcp_feed(&["--client-rate", "1"]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    for i in 0..200 {
        raw.send_text(&json!({"type":"ping","id":i}).to_string())
            .await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    let code = loop {
        let f = raw.read_frame().await.expect("close frame before EOF");
        match f.opcode {
            1 if f.json()["type"] == "pong" => pongs += 1,
            1 => {
                assert_eq!(f.json()["payload"]["code"], "rate_limited");
                limited += 1;
            }
            8 => break f.close_code(),
            _ => {}
        }
    };
    assert_eq!(code, 4429);
    assert!(
        pongs >= 20 && limited >= 20,
        "burst then limited then closed: {pongs} pongs, {limited} limited"
    );
    s.wait_metric("tickcast_disconnects_total{reason=\"rate_limit\"}", |v| {
        v == 1.0
    })
    .await;
}

#[tokio::test]
async fn binary_frames_close_1003() {
    let s = tcp_feed(&[]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    raw.send_frame(true, 2, b"\x01\x02").await;
    assert_eq!(raw.close_code().await, 1003);
}

#[tokio::test]
async fn non_utf8_text_closes_1007() {
    let s = tcp_feed(&[]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    raw.send_frame(true, 1, b"{\"type\":\"ping\xff\"}").await;
    assert_eq!(raw.close_code().await, 1007);
}

#[tokio::test]
async fn oversized_messages_close_1009_even_when_fragmented() {
    let s = tcp_feed(&["--max-message", "100"]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    raw.send_frame(true, 1, &[b' '; 100]).await;
    assert_eq!(
        raw.next_json().await["payload"]["code"],
        "bad_request",
        "100 bytes is within the limit"
    );
    raw.send_frame(true, 1, &[b' '; 101]).await;
    assert_eq!(raw.close_code().await, 1009);

    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    raw.send_frame(false, 1, &[b' '; 60]).await;
    raw.send_frame(true, 0, &[b' '; 60]).await;
    assert_eq!(raw.close_code().await, 1009);
}

#[tokio::test]
async fn fragmented_messages_are_joined() {
    let s = tcp_feed(&[]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    raw.send_frame(false, 1, br#"{"type":"pi"#).await;
    raw.send_frame(true, 9, b"").await;
    raw.send_frame(true, 0, br#"ng","id":4}"#).await;
    let pong = loop {
        let f = raw.read_frame().await.unwrap();
        if f.opcode == 1 {
            break f.json();
        }
    };
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(4))
    );
}

#[tokio::test]
async fn an_unfinished_handshake_is_dropped() {
    let s = tcp_feed(&["--handshake-timeout", "300ms"]);
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("closed by the server in time");
    assert!(matches!(n, Ok(0) | Err(_)), "no bytes, just closed");
}
