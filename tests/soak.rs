//! The soak of RELIABILITY.md, short: a steady feed and steady readers while
//! clients churn (about 100 connections a second, subscribing and
//! unsubscribing; some never read, some send garbage). Nothing may grow that
//! churn does not explain, and when churn stops, connections, descriptors and
//! threads return to where they were.
//!
//! The long runs are this test with `SOAK_SECS` (how long churn lasts;
//! default 20) and `SOAK_OUT` (a file for one JSON line per second):
//! `SOAK_SECS=300 SOAK_OUT=target/soak.jsonl cargo nextest run --release --test soak`.
mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEADY: usize = 40;

fn churn_for() -> Duration {
    let secs = std::env::var("SOAK_SECS").ok().and_then(|v| v.parse().ok());
    Duration::from_secs(secs.unwrap_or(20))
}
const QUEUE: u32 = 64;

/// What the process holds now, from its `/metrics`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Sample {
    rss: f64,
    fds: f64,
    threads: f64,
    connections: f64,
    queued_max: f64,
    queued: f64,
    feed_queue: f64,
}

async fn sample(s: &Server) -> Sample {
    let (_, page) = s.get("/metrics").await;
    Sample {
        rss: metric_value(&page, "process_resident_memory_bytes"),
        fds: metric_value(&page, "process_open_fds"),
        threads: metric_value(&page, "process_threads"),
        connections: metric_value(&page, "tickcast_connections"),
        queued_max: metric_value(&page, "tickcast_queued_updates_max"),
        queued: metric_value(&page, "tickcast_queued_updates"),
        feed_queue: metric_value(&page, "tickcast_feed_queue"),
    }
}

/// A reader that stays for the whole run and checks that each symbol's `seq`
/// only grows; counts the ticks it got.
async fn steady(mut c: RawWs, symbols: Vec<String>, stop: Arc<AtomicBool>, got: Arc<AtomicU64>) {
    c.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":symbols}}).to_string())
        .await;
    let mut last: HashMap<String, u64> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let f = match c.read_frame_within(Duration::from_millis(500)).await {
            Err(()) => continue,
            Ok(None) => panic!("a steady reader's connection ended"),
            Ok(Some(f)) => f,
        };
        match f.opcode {
            1 => {
                let m = f.json();
                if m["type"] == "tick" {
                    let p = &m["payload"];
                    let seq = p["seq"].as_u64().unwrap();
                    let sym = p["symbol"].as_str().unwrap().to_string();
                    let before = last.insert(sym.clone(), seq).unwrap_or(0);
                    assert!(seq > before, "{sym}: seq {seq} after {before}");
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
            8 => panic!("a steady reader was closed: {}", f.close_code()),
            // Heartbeats: a steady reader outlives the ping interval.
            9 => c.send_frame(true, 10, &f.payload).await,
            _ => {}
        }
    }
}

/// One churning client, of kind `i % 20`: 0 never reads after subscribing
/// to many symbols; 1 sends garbage (it gets `error` replies, then
/// `rate_limited` ones); the rest read for a while, unsubscribe some, and
/// leave (politely or not).
async fn churner(addr: std::net::SocketAddr, i: u64, names: Arc<Vec<String>>) {
    let Ok(mut c) = tokio::time::timeout(
        WAIT,
        RawWs::handshake(
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            "/ws",
            &[],
        ),
    )
    .await
    .expect("an answer in time") else {
        return;
    };
    let pick = |k: usize| names[(i as usize * 7 + k * 13) % names.len()].clone();
    let life = Duration::from_millis(200 + (i * 37) % 1800);
    match i % 20 {
        0 => {
            let many: Vec<String> = (0..50).map(pick).collect();
            c.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":many}}).to_string())
                .await;
            tokio::time::sleep(life * 2).await;
        }
        1 => {
            for _ in 0..25 {
                c.send_text("{not json").await;
            }
            let mut bad_requests = 0;
            while let Ok(Some(f)) = c.read_frame_within(Duration::from_millis(300)).await {
                if f.opcode == 1 && f.json()["payload"]["code"] == "bad_request" {
                    bad_requests += 1;
                }
            }
            assert!(bad_requests > 0, "garbage is answered");
        }
        _ => {
            let some: Vec<String> = (0..3).map(pick).collect();
            c.send_text(&json!({"type":"subscribe","id":1,"payload":{"symbols":some}}).to_string())
                .await;
            let until = Instant::now() + life;
            while Instant::now() < until {
                let _ = c.read_frame_within(Duration::from_millis(50)).await;
            }
            c.send_text(
                &json!({"type":"unsubscribe","id":2,"payload":{"symbols":[some[0]]}}).to_string(),
            )
            .await;
            if i % 2 == 0 {
                c.send_frame(true, 8, &1000u16.to_be_bytes()).await;
                let _ = c.until_eof().await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_nothing_behind() {
    let s = Server::start(&[
        "--symbols",
        "200",
        "--rate",
        "2000",
        "--queue",
        &QUEUE.to_string(),
    ]);
    // The synthetic feed's opening quotes come within its first pass.
    let deadline = Instant::now() + WAIT;
    let names: Vec<String> = loop {
        let (status, body) = s.get("/snapshot").await;
        assert_eq!(status, 200, "{body}");
        let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["symbol"].as_str().unwrap().to_string())
            .collect();
        if names.len() >= 100 {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "{} symbols with a value",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let names = Arc::new(names);

    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..STEADY {
        let mut c = RawWs::connect(s.addr).await;
        c.next_json().await;
        let symbols = (0..5)
            .map(|k| names[(i * 5 + k) % names.len()].clone())
            .collect();
        readers.push(tokio::spawn(steady(c, symbols, stop.clone(), got.clone())));
    }
    s.wait_metric("tickcast_connections", |v| v == STEADY as f64)
        .await;
    let before = sample(&s).await;

    // About 100 new connections a second for CHURN_FOR.
    let started = Instant::now();
    let mut churn = tokio::task::JoinSet::new();
    let mut samples = Vec::new();
    let mut i = 0u64;
    let mut next_sample = Instant::now();
    let churn_for = churn_for();
    let mut out = std::env::var("SOAK_OUT")
        .ok()
        .map(|path| std::fs::File::create(path).expect("SOAK_OUT"));
    while started.elapsed() < churn_for {
        churn.spawn(churner(s.addr, i, names.clone()));
        i += 1;
        if Instant::now() >= next_sample {
            let x = sample(&s).await;
            if let Some(f) = out.as_mut() {
                use std::io::Write;
                let line = json!({"t": started.elapsed().as_secs_f64(), "churned": i, "sample": x});
                writeln!(f, "{line}").unwrap();
            }
            samples.push(x);
            next_sample += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while let Some(r) = churn.join_next().await {
        r.unwrap();
    }
    let expected = churn_for.as_secs() * 50;
    assert!(i >= expected, "{i} churning clients in {churn_for:?}");

    // Back to where it was: only the steady readers are left.
    s.wait_metric("tickcast_connections", |v| v == STEADY as f64)
        .await;
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let now = sample(&s).await;
        if now.fds <= before.fds {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "descriptors {before:?} → {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after.threads, before.threads, "{before:?} → {after:?}");
    for x in &samples {
        assert!(x.queued_max <= QUEUE as f64, "{x:?}");
        assert!(x.threads <= before.threads, "{x:?}");
    }
    // Memory: the allocator keeps some of what churn used; it must not keep
    // growing with it. The second half of the run holds no more than the
    // first half did, give or take an allocator's slack.
    let half = samples.len() / 2;
    let first_peak = samples[..half].iter().map(|x| x.rss).fold(0.0, f64::max);
    let second_peak = samples[half..].iter().map(|x| x.rss).fold(0.0, f64::max);
    eprintln!(
        "soak: {i} clients churned in {churn_for:?}; before {before:?}; peak RSS {:.1} MiB then {:.1} MiB; after {after:?}",
        first_peak / 1048576.0,
        second_peak / 1048576.0
    );
    assert!(
        second_peak <= first_peak * 1.25 + 8e6,
        "RSS grows with churn: {:.1} MiB then {:.1} MiB",
        first_peak / 1048576.0,
        second_peak / 1048576.0
    );

    // The steady readers were served all along.
    let before_end = got.load(Ordering::Relaxed);
    assert!(before_end > 0);
    s.wait_metric("tickcast_messages_sent_total", |v| v > 0.0)
        .await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
}
