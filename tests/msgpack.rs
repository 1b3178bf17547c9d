//! MessagePack over WebSocket, chosen with `Sec-WebSocket-Protocol`: the
//! same messages as JSON in binary frames, decoded here by an independent
//! library (Python's `msgpack`), not by anything of ours.
mod common;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// Decodes MessagePack with Python's `msgpack` and returns it as JSON.
fn decode(bytes: &[u8]) -> Value {
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys, json, msgpack; print(json.dumps(msgpack.unpackb(sys.stdin.buffer.read(), raw=False)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs the msgpack module)");
    py.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python msgpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The next binary frame's payload (skipping pings).
async fn next_binary(raw: &mut RawWs) -> Vec<u8> {
    loop {
        let f = raw.read_frame().await.expect("connection open");
        match f.opcode {
            2 => return f.payload,
            9 | 10 => continue,
            other => panic!("expected a binary frame, got opcode {other}"),
        }
    }
}

#[tokio::test]
async fn msgpack_is_negotiated_and_carries_the_json_messages() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"AAPL","bid":189.1,"ask":189.12,"last":189.11,"volume":1200}));
    s.wait_metric("tickcast_updates_total", |v| v == 1.0).await;

    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut mp = RawWs::handshake(
        stream,
        "/ws",
        &[("Sec-WebSocket-Protocol", "tickcast.msgpack")],
    )
    .await
    .expect("upgraded");
    assert!(mp
        .head
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol: tickcast.msgpack"));
    let welcome = decode(&next_binary(&mut mp).await);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["payload"]["max_message"], 4096);
    // Requests stay JSON text.
    mp.send_text(
        &json!({"type":"subscribe","id":1,"payload":{"symbols":["AAPL","NOPE!"]}}).to_string(),
    )
    .await;
    let sub = decode(&next_binary(&mut mp).await);
    assert_eq!(
        sub,
        json!({"type":"subscribed","id":1,"payload":{"symbols":["AAPL"],"unknown":[]}})
    );
    let err = decode(&next_binary(&mut mp).await);
    assert_eq!(err["payload"]["code"], "invalid_symbol");
    let snap = decode(&next_binary(&mut mp).await);
    assert_eq!(snap["payload"]["snapshot"], true);

    // The same update, as a JSON client sees it.
    let mut js = s.ws_welcomed().await;
    js.subscribe(1, &["AAPL"]).await;
    js.expect_type("tick").await;
    p.tick(json!({"symbol":"AAPL","bid":189.2,"volume":1300}));
    let json_tick = js.expect_type("tick").await;
    let bin = next_binary(&mut mp).await;
    let mp_tick = decode(&bin);
    assert_eq!(mp_tick, json_tick, "the same message and fields");
    assert!(
        bin.len() < json_tick.to_string().len(),
        "{} bytes of MessagePack vs {} of JSON",
        bin.len(),
        json_tick.to_string().len()
    );
    // pong and errors too.
    mp.send_text(r#"{"type":"ping","id":7}"#).await;
    let pong = decode(&next_binary(&mut mp).await);
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_i64()),
        (Some("pong"), Some(7))
    );
}

#[tokio::test]
async fn the_first_known_protocol_wins_and_unknown_ones_are_refused() {
    let s = Server::start(&[]);
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut raw = RawWs::handshake(
        stream,
        "/ws",
        &[(
            "Sec-WebSocket-Protocol",
            "chat, tickcast.json, tickcast.msgpack",
        )],
    )
    .await
    .expect("upgraded");
    assert!(raw
        .head
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol: tickcast.json"));
    assert_eq!(raw.next_json().await["type"], "welcome", "JSON text frames");
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let refused = RawWs::handshake(stream, "/ws", &[("Sec-WebSocket-Protocol", "chat")]).await;
    let (status, body) = refused.err().expect("refused");
    assert_eq!(status, 400);
    assert!(body.contains("tickcast.msgpack"), "{body}");
    // No header: JSON, and no protocol in the answer.
    let mut plain = RawWs::connect(s.addr).await;
    assert!(!plain
        .head
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol"));
    assert_eq!(plain.next_json().await["type"], "welcome");
}

#[tokio::test]
async fn a_msgpack_client_still_may_not_send_binary_frames() {
    let s = Server::start(&[]);
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut mp = RawWs::handshake(
        stream,
        "/ws",
        &[("Sec-WebSocket-Protocol", "tickcast.msgpack")],
    )
    .await
    .unwrap();
    next_binary(&mut mp).await;
    mp.send_frame(true, 2, &[0x80]).await;
    assert_eq!(mp.close_code().await, 1003);
}
