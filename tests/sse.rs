//! Server-Sent Events (`GET /sse`): the same ticks, queue, entitlements and
//! expiry as a WebSocket client; resume with `Last-Event-ID`; keep-alives;
//! what `curl -N` sees.
mod common;
use common::*;
use serde_json::json;
use std::io::BufRead;
use std::time::Duration;

const SECRET: &str = "sse-test-secret";

fn tcp_feed(extra: &[&str]) -> Server {
    let mut flags = vec!["--feed", "tcp://127.0.0.1:0", "--coalesce", "10ms"];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

/// Publishes and waits until `/snapshot` shows it.
async fn publish(s: &Server, p: &mut Publisher, tick: serde_json::Value) {
    let symbol = tick["symbol"].as_str().unwrap().to_string();
    let bid = tick["bid"].as_f64();
    p.tick(tick);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let snap = s.snapshot(&symbol).await;
        if snap.first().is_some_and(|t| t["bid"].as_f64() == bid) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{symbol} never published"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn curl_sees_ticks() {
    let s = tcp_feed(&[]);
    let mut p = s.publisher();
    publish(&s, &mut p, json!({"symbol":"AAPL","bid":1.5})).await;
    let url = format!("http://{}/sse?symbols=AAPL", s.addr);
    let mut curl = std::process::Command::new("curl")
        .args(["-sN", "--max-time", "30", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = curl.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let saw = |want: &str| loop {
        let line = rx.recv_timeout(WAIT).expect("curl prints the stream");
        if line.contains(want) {
            return;
        }
    };
    saw("event: welcome");
    saw(r#""symbol":"AAPL","seq":1,"bid":1.5"#);
    p.tick(json!({"symbol":"AAPL","bid":2.25}));
    saw(r#""bid":2.25"#);
    let _ = curl.kill();
    let _ = curl.wait();
}

#[tokio::test]
async fn a_stream_has_welcome_subscribed_snapshots_ticks_and_resume_marks() {
    let s = tcp_feed(&[]);
    let mut p = s.publisher();
    publish(&s, &mut p, json!({"symbol":"AAPL","bid":1.0})).await;
    let mut sse = SseClient::open(s.addr, "/sse?symbols=AAPL,NEVER", &[]).await;
    assert_eq!(sse.status, 200);
    assert!(sse
        .head
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
    let welcome = sse.next_block().await.unwrap();
    assert_eq!(welcome.event.as_deref(), Some("welcome"));
    assert!((1000..=5000).contains(&welcome.retry.unwrap()));
    assert_eq!(welcome.json()["max_symbols"], 1024);
    let sub = sse.next_block().await.unwrap();
    assert_eq!(sub.event.as_deref(), Some("subscribed"));
    assert_eq!(
        sub.json(),
        json!({"symbols":["AAPL","NEVER"],"unknown":["NEVER"]})
    );
    let snap = sse.next_block().await.unwrap();
    assert_eq!(snap.event.as_deref(), Some("tick"));
    assert_eq!(snap.json()["snapshot"], true);
    let mark = sse.next_block().await.unwrap();
    assert_eq!(mark.event.as_deref(), Some("mark"));
    assert_eq!(mark.json()["id"].as_str(), mark.id.as_deref());
    assert!(mark.id.unwrap().contains('-'));
    p.tick(json!({"symbol":"AAPL","bid":1.25}));
    let mut last = None;
    let t = sse.until_event("tick", &mut last).await;
    assert_eq!(
        (t.json()["seq"].as_u64(), t.json()["bid"].as_f64()),
        (Some(2), Some(1.25))
    );
    assert!(t.json().get("snapshot").is_none());
}

/// A client that comes back with its last event id gets snapshots of only
/// what changed while it was away; with an id of another epoch, everything.
#[tokio::test]
async fn last_event_id_resumes_with_only_what_changed() {
    let s = tcp_feed(&[]);
    let mut p = s.publisher();
    for sym in ["AAPL", "MSFT", "TSLA"] {
        publish(&s, &mut p, json!({"symbol":sym,"bid":1.0})).await;
    }
    let path = "/sse?symbols=AAPL,MSFT,TSLA";
    let mut first = SseClient::open(s.addr, path, &[]).await;
    let mut last = None;
    for _ in 0..3 {
        first.until_event("tick", &mut last).await;
    }
    // The mark after the snapshots.
    while last.is_none() {
        let e = first.next_block().await.unwrap();
        last = e.id.clone();
    }
    let resume = last.unwrap();
    drop(first);
    publish(&s, &mut p, json!({"symbol":"MSFT","bid":2.0})).await;
    for (headers, query) in [
        (vec![("Last-Event-ID", resume.as_str())], String::new()),
        (vec![], format!("&lastEventId={resume}")),
    ] {
        let mut again = SseClient::open(s.addr, &format!("{path}{query}"), &headers).await;
        let mut last = None;
        again.until_event("subscribed", &mut last).await;
        let t = again.until_event("tick", &mut last).await;
        assert_eq!(t.json()["symbol"], "MSFT", "only the symbol that changed");
        assert_eq!(t.json()["bid"], 2.0);
        // Next comes the mark, not another snapshot.
        let e = again.next_block().await.unwrap();
        assert_eq!(e.event.as_deref(), Some("mark"), "{e:?}");
    }
    let other_epoch = format!("1-{}", resume.split_once('-').unwrap().1);
    let mut full = SseClient::open(s.addr, path, &[("Last-Event-ID", &other_epoch)]).await;
    let mut last = None;
    let mut symbols = Vec::new();
    for _ in 0..3 {
        symbols.push(full.until_event("tick", &mut last).await.json()["symbol"].clone());
    }
    symbols.sort_by_key(|s| s.to_string());
    assert_eq!(symbols, vec![json!("AAPL"), json!("MSFT"), json!("TSLA")]);
}

#[tokio::test]
async fn keep_alive_comments_flow_on_a_quiet_stream() {
    let s = tcp_feed(&["--ping-interval", "300ms"]);
    let mut sse = SseClient::open(s.addr, "/sse?symbols=QUIET", &[]).await;
    let welcome = sse.next_block().await.unwrap();
    assert_eq!(welcome.json()["heartbeat_ms"], 300);
    loop {
        if sse.next_block().await.unwrap().comment {
            break;
        }
    }
}

#[tokio::test]
async fn bad_requests_and_tokens_are_refused_before_the_stream() {
    let s = Server::start_with_env(
        &["--feed", "tcp://127.0.0.1:0"],
        &[("TICKCAST_AUTH_SECRET", SECRET)],
    );
    for (path, status) in [
        ("/sse", 400),
        ("/sse?symbols=", 400),
        ("/sse?symbols=AAPL", 401),
    ] {
        let sse = SseClient::open(s.addr, path, &[]).await;
        assert_eq!(sse.status, status, "{path}");
    }
    let claims = |jti: &str, symbols: Option<Vec<String>>, ttl: u64| tickcast::auth::Claims {
        sub: "alice".into(),
        exp: now_us() / 1_000_000 + ttl,
        iat: Some(now_us() / 1_000_000),
        nbf: None,
        jti: Some(jti.into()),
        symbols,
    };
    let sign = |c| tickcast::auth::sign(SECRET.as_bytes(), &c);
    // Symbols not entitled or not valid get `error` events, as over
    // WebSocket, and the others stream (an EventSource cannot read a 403).
    let only_aapl = sign(claims("a", Some(vec!["AAPL".into()]), 60));
    let mut sse = SseClient::open(
        s.addr,
        &format!("/sse?symbols=TSLA,BAD%20NAME,AAPL&token={only_aapl}"),
        &[],
    )
    .await;
    assert_eq!(sse.status, 200);
    let mut last = None;
    let sub = sse.until_event("subscribed", &mut last).await;
    assert_eq!(sub.json()["symbols"], json!(["AAPL"]));
    let mut codes = vec![
        sse.until_event("error", &mut last).await.json()["code"].clone(),
        sse.until_event("error", &mut last).await.json()["code"].clone(),
    ];
    codes.sort_by_key(|c| c.to_string());
    assert_eq!(codes, vec![json!("forbidden"), json!("invalid_symbol")]);
    let ok = sign(claims("b", Some(vec!["AAPL".into()]), 60));
    let sse = SseClient::open(s.addr, &format!("/sse?symbols=AAPL&token={ok}"), &[]).await;
    assert_eq!(sse.status, 200);
    let replay = SseClient::open(s.addr, &format!("/sse?symbols=AAPL&token={ok}"), &[]).await;
    assert_eq!(replay.status, 401, "one-time tokens are one-time here too");
    // A token that expires ends the stream with a close event, 4401.
    let short = sign(claims("c", None, 2));
    let mut sse = SseClient::open(s.addr, &format!("/sse?symbols=AAPL&token={short}"), &[]).await;
    let mut last = None;
    let close = sse.until_event("close", &mut last).await;
    assert_eq!(close.json(), json!({"code":4401,"reason":"token expired"}));
    assert!(sse.next_block().await.is_none(), "and then the stream ends");
    s.wait_metric("tickcast_disconnects_total{reason=\"auth\"}", |v| v == 1.0)
        .await;
}

#[tokio::test]
async fn streams_count_as_connections() {
    let s = tcp_feed(&["--max-connections", "2"]);
    let _a = SseClient::open(s.addr, "/sse?symbols=A", &[]).await;
    let _b = s.ws_welcomed().await;
    s.wait_metric("tickcast_connections", |v| v == 2.0).await;
    // Full: an EventSource would never retry after a 503, so the answer is
    // a stream that says when to come back and ends.
    let mut c = SseClient::open(s.addr, "/sse?symbols=A", &[]).await;
    assert_eq!(c.status, 200);
    let close = c.next_block().await.unwrap();
    assert!((2000..10000).contains(&close.retry.unwrap()), "{close:?}");
    assert_eq!(close.event.as_deref(), Some("close"));
    assert_eq!(close.json()["code"], 1013);
    assert!(close.json()["reason"]
        .as_str()
        .unwrap()
        .contains("max-connections"));
    assert!(c.next_block().await.is_none());
    assert_eq!(
        s.metric("tickcast_refused_total{reason=\"max_connections\"}")
            .await,
        1.0
    );
    // A client that goes is noticed at once, not at the next keep-alive.
    drop(_a);
    s.wait_metric("tickcast_connections", |v| v == 1.0).await;
}

/// A stream whose reader stalls still ends on the latest value of every
/// symbol once it reads again (drop-oldest, then re-sent).
#[tokio::test]
async fn a_stalled_stream_catches_up_on_the_latest_values() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--queue",
        "8",
        "--coalesce",
        "1ms",
        "--send-buffer",
        "4096",
    ]);
    let mut p = s.publisher();
    let symbols: Vec<String> = (0..20).map(|i| format!("S{i}")).collect();
    for sym in &symbols {
        publish(&s, &mut p, json!({"symbol":sym,"bid":0.5})).await;
    }
    let mut sse =
        SseClient::open(s.addr, &format!("/sse?symbols={}", symbols.join(",")), &[]).await;
    let mut last = None;
    sse.until_event("subscribed", &mut last).await;
    // Rounds of updates while the client does not read, until its queue drops some.
    let mut round = 0u32;
    while s.metric("tickcast_dropped_total").await == 0.0 {
        round += 1;
        assert!(round < 100_000, "the stream never backed up");
        let mut lines = String::new();
        for sym in &symbols {
            lines.push_str(&format!("{{\"symbol\":\"{sym}\",\"bid\":{round}.5}}\n"));
        }
        use std::io::Write;
        p.stream.write_all(lines.as_bytes()).unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let final_bid = round as f64 + 0.5;
    s.wait_metric("tickcast_feed_ticks_total", |v| {
        v >= 20.0 * (round as f64 + 1.0)
    })
    .await;
    let mut latest = std::collections::HashMap::new();
    while latest.len() < symbols.len() || latest.values().any(|b| *b != final_bid) {
        let t = sse.until_event("tick", &mut last).await.json();
        latest.insert(
            t["symbol"].as_str().unwrap().to_string(),
            t["bid"].as_f64().unwrap(),
        );
    }
}

/// An open stream is a client's session, not a connection in its HTTP
/// phase: streams do not use up the handshake places.
#[tokio::test]
async fn streams_do_not_hold_handshake_places() {
    let s = tcp_feed(&["--max-handshakes", "2"]);
    let mut streams = Vec::new();
    for _ in 0..4 {
        let sse = SseClient::open(s.addr, "/sse?symbols=A", &[]).await;
        assert_eq!(sse.status, 200);
        streams.push(sse);
    }
    s.wait_metric("tickcast_connections", |v| v == 4.0).await;
    assert_eq!(s.get("/healthz").await.0, 200);
    s.ws_welcomed().await;
    // And a stream that goes is let go at once, however its end is seen.
    for _ in 0..4 {
        drop(streams.pop());
    }
    s.wait_metric("tickcast_connections", |v| v == 0.0).await;
}
