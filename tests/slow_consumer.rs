//! Slow consumers (protocol §5): drop-oldest never leaves a client on a stale
//! value; `--slow-consumer close` closes with 4008.
mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const SYMBOLS: usize = 50;
const ROUNDS: u64 = 120;

fn names() -> Vec<String> {
    (0..SYMBOLS).map(|i| format!("S{i:02}")).collect()
}

/// A server with a short window, a 16-entry queue and a small send buffer, so
/// that a client that stops reading overflows its queue within a few rounds.
fn slow_server(extra: &[&str]) -> Server {
    let mut flags = vec![
        "--feed",
        "tcp://127.0.0.1:0",
        "--coalesce",
        "1ms",
        "--queue",
        "16",
        "--send-buffer",
        "4096",
    ];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

/// A client whose socket takes almost nothing until it reads.
async fn tiny_window_client(s: &Server) -> RawWs {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    RawWs::handshake(stream, "/ws", &[]).await.expect("upgrade")
}

/// Publishes ROUNDS updates of every symbol; the last has `last == ROUNDS`.
fn publish_rounds(p: &mut Publisher) {
    for round in 1..=ROUNDS {
        for name in names() {
            p.tick(json!({"symbol":name,"last":round,"volume":round * 10, "pad":"x".repeat(200)}));
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

async fn wait_until_server_has_final_values(s: &Server) {
    let deadline = Instant::now() + WAIT;
    let list = names().join(",");
    loop {
        let snap = s.snapshot(&list).await;
        if snap.len() == SYMBOLS && snap.iter().all(|p| p["last"] == ROUNDS) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server never reached the final values"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_ends_with_the_latest_value_of_every_symbol() {
    let s = slow_server(&[]);
    let mut p = s.publisher();
    for name in names() {
        p.tick(json!({"symbol":name,"last":0}));
    }
    let mut c = tiny_window_client(&s).await;
    assert_eq!(c.next_json().await["type"], "welcome");
    c.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":names()}}).to_string())
        .await;
    assert_eq!(c.next_json().await["type"], "subscribed");

    // Stop reading while every symbol ticks.
    publish_rounds(&mut p);
    s.wait_metric("tickcast_dropped_total", |v| v > 0.0).await;
    wait_until_server_has_final_values(&s).await;

    // Resume: read until every symbol shows its final value; seq never goes back.
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut latest: HashMap<String, u64> = HashMap::new();
    while latest.len() < SYMBOLS || latest.values().any(|v| *v != ROUNDS) {
        let m = c.next_json().await;
        assert_eq!(m["type"], "tick", "{m}");
        let payload = &m["payload"];
        let sym = payload["symbol"].as_str().unwrap().to_string();
        let seq = payload["seq"].as_u64().unwrap();
        let prev = last_seq.insert(sym.clone(), seq).unwrap_or(0);
        let is_snapshot = payload["snapshot"] == true;
        assert!(
            seq > prev || (is_snapshot && seq == prev),
            "{sym}: seq {prev} then {seq}"
        );
        latest.insert(sym, payload["last"].as_u64().unwrap());
    }
    assert_eq!(
        s.metric("tickcast_disconnects_total{reason=\"slow_consumer\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn under_the_close_policy_a_slow_client_gets_4008() {
    let s = slow_server(&[
        "--slow-consumer",
        "close",
        // The close frame waits behind what the client has not read yet; on a
        // busy machine the test may take seconds to start reading again.
        "--drain-timeout",
        "60s",
    ]);
    let mut p = s.publisher();
    let mut c = tiny_window_client(&s).await;
    assert_eq!(c.next_json().await["type"], "welcome");
    c.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":names()}}).to_string())
        .await;
    publish_rounds(&mut p);
    // Reading again drains what was in flight, then the close frame.
    assert_eq!(c.close_code().await, 4008);
    c.send_frame(true, 8, &4008u16.to_be_bytes()).await;
    s.wait_metric(
        "tickcast_disconnects_total{reason=\"slow_consumer\"}",
        |v| v == 1.0,
    )
    .await;
    assert_eq!(
        s.metric("tickcast_dropped_total").await,
        0.0,
        "nothing dropped under close"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_still_gets_every_closed_bar() {
    let s = slow_server(&["--candle-intervals", "1s"]);
    let series: Vec<String> = names().iter().map(|n| format!("{n}@1s")).collect();
    // Symbols with a value, so that their 50 series are the only names
    // without one this connection waits for (at most 64).
    let mut p = s.publisher();
    for name in names() {
        p.tick(json!({"symbol":name,"bid":1}));
    }
    s.wait_metric("tickcast_feed_ticks_total", |v| v == SYMBOLS as f64)
        .await;
    let mut c = tiny_window_client(&s).await;
    assert_eq!(c.next_json().await["type"], "welcome");
    c.send_text(
        &json!({"type":"subscribe","id":1,"payload":{"candles":series,"symbols":names()}})
            .to_string(),
    )
    .await;
    assert_eq!(c.next_json().await["type"], "subscribed");

    // Stop reading while every symbol trades across a few seconds.
    let dropped = s.metric("tickcast_dropped_total").await;
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_millis(2500) {
        round += 1;
        for name in names() {
            p.tick(json!({"symbol":name,"last":round,"ts":now_us(),"pad":"x".repeat(200)}));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    s.wait_metric("tickcast_dropped_total", |v| v > dropped)
        .await;

    // Read on: every bar the server closed reaches the client, in its final state.
    let mut held: HashMap<(String, u64), serde_json::Value> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    'outer: loop {
        assert!(Instant::now() < deadline, "closed bars missing");
        while let Ok(Some(frame)) = c.read_frame_within(Duration::from_millis(200)).await {
            if frame.opcode != 1 {
                continue;
            }
            let m = frame.json();
            let bars = match m["type"].as_str() {
                Some("candle") => vec![m["payload"].clone()],
                Some("candles") => m["payload"]["bars"].as_array().unwrap().clone(),
                _ => continue,
            };
            let symbol = m["payload"]["symbol"].as_str().unwrap().to_string();
            for mut b in bars {
                // As `/candles` lists it: without the series' names.
                b.as_object_mut().unwrap().remove("symbol");
                b.as_object_mut().unwrap().remove("interval");
                let key = (symbol.clone(), b["start"].as_u64().unwrap());
                if held
                    .get(&key)
                    .is_none_or(|h| h["seq"].as_u64() < b["seq"].as_u64())
                {
                    held.insert(key, b);
                }
            }
        }
        for name in names() {
            let (_, body) = s
                .get(&format!("/candles?symbol={name}&interval=1s&limit=1000"))
                .await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            for bar in v["bars"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["closed"] == true)
            {
                let key = (name.clone(), bar["start"].as_u64().unwrap());
                if held.get(&key) != Some(bar) {
                    continue 'outer;
                }
            }
        }
        break;
    }
}
