//! Feed input (protocol §8): bad lines rejected and counted without hurting the
//! lines around them; TCP publishers slowed, never dropped; file replay; synthetic market.
mod common;
use common::*;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

#[tokio::test]
async fn bad_lines_are_counted_by_reason_and_the_publisher_stays_connected() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"AAPL","bid":1.0}));
    p.line("this is not json");
    p.line("[1,2,3]");
    p.line(r#"{"bid":1.0}"#);
    p.line(r#"{"symbol":"NOT VALID","bid":1.0}"#);
    p.line(r#"{"symbol":"AAPL","bid":"one"}"#);
    p.line(&format!(
        r#"{{"symbol":"AAPL","pad":"{}"}}"#,
        "x".repeat(5000)
    ));
    p.tick(json!({"symbol":"MSFT","bid":2.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    for reason in [
        "not_json",
        "not_object",
        "no_symbol",
        "invalid_symbol",
        "wrong_type",
        "too_long",
    ] {
        let series = format!("tickcast_feed_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(s.metric(&series).await, 1.0, "{reason}");
    }
    // Same connection, still read.
    p.tick(json!({"symbol":"TSLA","bid":3.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 3.0)
        .await;
    assert_eq!(s.snapshot("AAPL,MSFT,TSLA").await.len(), 3);
}

#[tokio::test]
async fn a_fast_publisher_is_slowed_down_never_dropped() {
    const N: u64 = 200_000;
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    let writer = std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(8 << 20);
        for i in 1..=N {
            writeln!(
                buf,
                r#"{{"symbol":"S{}","last":{i},"volume":{i}}}"#,
                i % 100
            )
            .unwrap();
        }
        p.stream.write_all(&buf).unwrap();
        p
    });
    let publisher = writer.join().unwrap();
    s.wait_metric("tickcast_feed_ticks_total", |v| v == N as f64)
        .await;
    assert_eq!(
        s.metric("tickcast_feed_rejected_total{reason=\"not_json\"}")
            .await,
        0.0
    );
    let deadline = Instant::now() + WAIT;
    while s.snapshot("S0").await[0]["volume"] != N {
        assert!(
            Instant::now() < deadline,
            "the last tick must be the last word"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(publisher);
}

#[tokio::test]
async fn several_publishers_at_once() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut a = s.publisher();
    let mut b = s.publisher();
    a.tick(json!({"symbol":"A","bid":1.0}));
    b.tick(json!({"symbol":"B","bid":2.0}));
    drop(a);
    b.tick(json!({"symbol":"C","bid":3.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 3.0)
        .await;
}

#[tokio::test]
async fn file_replay_keeps_its_ts_and_its_pace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticks.ndjson");
    let t0 = 1_732_400_000_000_000u64;
    let mut f = std::fs::File::create(&path).unwrap();
    for (i, sym) in ["R1", "R2", "R3"].iter().enumerate() {
        writeln!(
            f,
            "{}",
            json!({"symbol":sym,"bid":1.0 + i as f64,"ts":t0 + i as u64 * 400_000})
        )
        .unwrap();
    }
    writeln!(f, "garbage line").unwrap();
    writeln!(f, "{}", json!({"symbol":"R4","bid":9.5})).unwrap();
    drop(f);
    let feed = format!("file:{}", path.display());
    let started = Instant::now();
    let s = Server::start(&["--feed", &feed, "--replay-speed", "2"]);
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 4.0)
        .await;
    // 800 ms of feed time at speed 2: the replay cannot be done in under 400 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        s.metric("tickcast_feed_rejected_total{reason=\"not_json\"}")
            .await,
        1.0
    );
    let snap = s.snapshot("R1,R2,R3,R4").await;
    let ts: Vec<u64> = snap.iter().map(|p| p["ts"].as_u64().unwrap()).collect();
    assert_eq!(
        &ts[..3],
        &[t0, t0 + 400_000, t0 + 800_000],
        "replayed lines keep their ts"
    );
    assert!(
        snap[3]["ts"].as_u64().unwrap() > t0,
        "a line without ts gets the replay time"
    );
    assert_eq!(s.get("/readyz").await.0, 200);
}

#[tokio::test]
async fn the_synthetic_market_looks_like_one() {
    // A 1 ms window, so that update counts show the feed's skew rather than the window's cap.
    let s = Server::start(&["--symbols", "300", "--rate", "5000", "--coalesce", "1ms"]);
    s.wait_metric("tickcast_feed_ticks_total", |v| v > 10_000.0)
        .await;
    let (_, body) = s.get("/snapshot").await;
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(all.len(), 300);
    let by_name = |n: &str| {
        all.iter()
            .find(|p| p["symbol"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    let aapl = by_name("AAPL");
    let eur = by_name("FX:EUR/USD");
    by_name("BTC-USD");
    let tail = by_name("UVXY")["seq"].as_u64().unwrap();
    let top = aapl["seq"].as_u64().unwrap();
    assert!(
        top > 20 * tail,
        "the most popular symbols tick most: AAPL {top} updates, UVXY {tail}"
    );
    for p in [&aapl, &eur] {
        assert!(p["bid"].as_f64().unwrap() < p["ask"].as_f64().unwrap());
    }
}
