//! Feed input (protocol §8): bad lines rejected and counted without hurting the
//! lines around them; TCP publishers slowed, never dropped; file replay; synthetic market;
//! a hostile publisher's bytes (absurd `ts`, endless symbols, deep nesting, too
//! many or silent or unauthenticated connections) bounded and counted.
mod common;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

const MINUTE_US: u64 = 60_000_000;

fn rejected(reason: &str) -> String {
    format!("tickcast_feed_rejected_total{{reason=\"{reason}\"}}")
}

fn publishers(result: &str) -> String {
    format!("tickcast_feed_publishers_total{{result=\"{result}\"}}")
}

/// Polls `/snapshot` until the symbol's latest state satisfies `pred`.
async fn wait_snapshot(
    s: &Server,
    symbol: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = s.snapshot(symbol).await.pop() {
            if pred(&t) {
                return t;
            }
        }
        assert!(Instant::now() < deadline, "{symbol} never got there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs tickcast until it exits (killed after `WAIT`): its status and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(binary())
        .args(args)
        .env_remove("TICKCAST_FEED_SECRET")
        .env_remove("TICKCAST_AUTH_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

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

#[tokio::test]
async fn an_absurd_ts_is_rejected_and_never_pins_later_updates() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    let now = now_us();
    // Above 2^53 − 1 (u64::MAX used to pin every later update), and beyond the default 1h.
    p.tick(json!({"symbol":"PIN","bid":1.0,"ts":u64::MAX}));
    p.tick(json!({"symbol":"PIN","bid":1.0,"ts":9_007_199_254_740_992u64}));
    p.tick(json!({"symbol":"PIN","bid":1.0,"ts":now - 120 * MINUTE_US}));
    p.tick(json!({"symbol":"PIN","bid":1.0,"ts":now + 120 * MINUTE_US}));
    p.tick(json!({"symbol":"PIN","bid":1.0,"ts":now}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 1.0)
        .await;
    assert_eq!(s.metric(&rejected("ts_out_of_range")).await, 4.0);
    assert_eq!(s.snapshot("PIN").await[0]["ts"], now);
    // An update carries the ts of the last tick merged into it, not the largest.
    let two = format!(
        "{}\n{}\n",
        json!({"symbol":"PIN","bid":2.0,"ts":now + 20}),
        json!({"symbol":"PIN","bid":3.0,"ts":now + 10})
    );
    p.stream.write_all(two.as_bytes()).unwrap();
    let last = wait_snapshot(&s, "PIN", |t| t["bid"] == 3.0).await;
    assert_eq!(last["ts"], now + 10);
}

#[tokio::test]
async fn a_live_ts_far_from_the_time_of_receipt_is_rejected() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--feed-ts-skew", "1m"]);
    let mut p = s.publisher();
    let now = now_us();
    p.tick(json!({"symbol":"OLD","bid":1.0,"ts":now - 2 * MINUTE_US}));
    p.tick(json!({"symbol":"AHEAD","bid":1.0,"ts":now + 2 * MINUTE_US}));
    p.tick(json!({"symbol":"NEAR","bid":1.0,"ts":now - MINUTE_US / 2}));
    p.tick(json!({"symbol":"NOTS","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    assert_eq!(s.metric(&rejected("ts_out_of_range")).await, 2.0);
    let names: Vec<_> = s
        .snapshot("OLD,AHEAD,NEAR,NOTS")
        .await
        .iter()
        .map(|t| t["symbol"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["NEAR", "NOTS"]);
}

#[tokio::test]
async fn replay_takes_any_recorded_past_but_not_the_future_nor_above_2_pow_53() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.ndjson");
    let now = now_us();
    let lines = [
        json!({"symbol":"Y1970","bid":1.0,"ts":1_000_000}),
        json!({"symbol":"AHEAD","bid":1.0,"ts":now + 120 * MINUTE_US}),
        json!({"symbol":"BIG","bid":1.0,"ts":9_007_199_254_740_992u64}),
        json!({"symbol":"Y2024","bid":1.0,"ts":1_732_400_000_000_000u64}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    // The last line has no newline: it is a line all the same.
    std::fs::write(&path, text.join("\n")).unwrap();
    let feed = format!("file:{}", path.display());
    let s = Server::start(&["--feed", &feed, "--replay-speed", "0"]);
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    s.wait_metric(&rejected("ts_out_of_range"), |v| v == 2.0)
        .await;
    let snap = s.snapshot("Y1970,AHEAD,BIG,Y2024").await;
    let ts: Vec<_> = snap.iter().map(|t| t["ts"].as_u64().unwrap()).collect();
    assert_eq!(ts, [1_000_000, 1_732_400_000_000_000]);
}

#[tokio::test]
async fn publishers_beyond_the_cap_are_told_and_closed() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--feed-max-publishers", "2"]);
    let mut a = s.publisher();
    let mut b = s.publisher();
    s.wait_metric("tickcast_feed_publishers", |v| v == 2.0)
        .await;
    let mut over = s.publisher();
    assert_eq!(over.reply(), "{\"error\":\"too many publishers\"}\n");
    assert_eq!(s.metric(&publishers("over_capacity")).await, 1.0);
    a.tick(json!({"symbol":"A","bid":1.0}));
    b.tick(json!({"symbol":"B","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    // A slot comes back when its publisher leaves.
    drop(a);
    s.wait_metric("tickcast_feed_publishers", |v| v == 1.0)
        .await;
    let mut c = s.publisher();
    c.tick(json!({"symbol":"C","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 3.0)
        .await;
    assert_eq!(s.metric(&publishers("accepted")).await, 3.0);
    assert_eq!(s.metric("tickcast_feed_publishers").await, 2.0);
}

#[tokio::test]
async fn a_silent_publisher_is_disconnected_and_a_blank_line_keeps_one_alive() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--feed-idle-timeout", "2s"]);
    let mut quiet = s.publisher();
    quiet.tick(json!({"symbol":"Q","bid":1.0}));
    // Half a line, then silence: cut off by the timeout, and counted.
    quiet.stream.write_all(br#"{"symbol":"Q","bi"#).unwrap();
    let mut alive = s.publisher();
    let keep_alive = std::thread::spawn(move || {
        // Twice the idle timeout, with nothing but empty lines.
        for _ in 0..16 {
            alive.line("");
            std::thread::sleep(Duration::from_millis(250));
        }
        alive
    });
    assert_eq!(quiet.reply(), "{\"error\":\"idle timeout\"}\n");
    s.wait_metric(&publishers("idle_timeout"), |v| v == 1.0)
        .await;
    s.wait_metric(&rejected("truncated"), |v| v == 1.0).await;
    let mut alive = keep_alive.join().unwrap();
    alive.tick(json!({"symbol":"K","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    assert_eq!(s.metric(&publishers("idle_timeout")).await, 1.0);
    s.wait_metric("tickcast_feed_publishers", |v| v == 1.0)
        .await;
}

#[tokio::test]
async fn with_a_feed_secret_publishers_authenticate_first() {
    let s = Server::start_with_env(
        &["--feed", "tcp://127.0.0.1:0", "--feed-idle-timeout", "1s"],
        &[("TICKCAST_FEED_SECRET", "s3cret")],
    );
    let mut good = s.publisher();
    good.line(r#"{"auth":"s3cret"}"#);
    good.tick(json!({"symbol":"AUTHD","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 1.0)
        .await;
    assert_eq!(s.metric(&publishers("accepted")).await, 1.0);
    let unauthorized = "{\"error\":\"unauthorized\"}\n";
    let mut none = s.publisher();
    none.tick(json!({"symbol":"SNEAK","bid":1.0}));
    assert_eq!(none.reply(), unauthorized);
    let mut wrong = s.publisher();
    wrong.line(r#"{"auth":"s3cre"}"#);
    wrong.tick(json!({"symbol":"SNEAK","bid":1.0}));
    assert_eq!(wrong.reply(), unauthorized);
    // No auth line in time (here the idle timeout, 1 s, comes before the 10 s).
    let mut silent = s.publisher();
    assert_eq!(silent.reply(), unauthorized);
    assert_eq!(s.metric(&publishers("unauthorized")).await, 3.0);
    assert_eq!(s.metric(&publishers("accepted")).await, 1.0);
    assert_eq!(s.metric("tickcast_feed_ticks_total").await, 1.0);
    assert!(s.snapshot("SNEAK").await.is_empty());
}

#[tokio::test]
async fn the_feed_secret_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed-secret");
    std::fs::write(&path, "from a file\n").unwrap();
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--feed-secret-file",
        path.to_str().unwrap(),
    ]);
    let mut p = s.publisher();
    p.line(r#"{"auth":"from a file"}"#);
    p.tick(json!({"symbol":"FILED","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 1.0)
        .await;
    let mut q = s.publisher();
    q.line("{\"auth\":\"from a file\\n\"}");
    assert_eq!(q.reply(), "{\"error\":\"unauthorized\"}\n");
}

#[test]
fn a_feed_beyond_loopback_needs_a_secret_and_a_taken_feed_port_exits_1() {
    for feed in ["tcp://0.0.0.0:0", "tcp://[::]:0"] {
        let (code, err) = run_to_exit(&["--listen", "127.0.0.1:0", "--feed", feed]);
        assert_eq!(code, Some(2), "{feed}: {err}");
        let want = format!(
            "--feed {feed} listens beyond loopback: set --feed-secret-file or TICKCAST_FEED_SECRET"
        );
        assert!(err.contains(&want), "{err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let feed = format!("tcp://{}", taken.local_addr().unwrap());
    let (code, err) = run_to_exit(&["--listen", "127.0.0.1:0", "--feed", &feed]);
    assert_eq!(code, Some(1), "a listener that cannot bind exits 1: {err}");
    assert!(err.contains(&format!("--feed {feed}")), "{err}");
    // Other bad feed values stay usage errors.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (code, err) = run_to_exit(&[
        "--listen",
        "127.0.0.1:0",
        "--feed",
        "tcp://127.0.0.1:0",
        "--feed-secret-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--feed-secret-file"), "{err}");
}

#[test]
fn help_names_the_feed_limits_and_where_the_secret_comes_from() {
    let out = std::process::Command::new(binary())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--feed-ts-skew",
        "--feed-max-publishers",
        "--feed-idle-timeout",
        "--feed-secret-file",
        "TICKCAST_FEED_SECRET",
        "--max-feed-symbols",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[tokio::test]
async fn new_symbols_beyond_the_cap_are_rejected() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--max-feed-symbols", "3"]);
    // A name a client asks for, with no value, takes no room.
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, &["WANTED"]).await;
    let mut p = s.publisher();
    for sym in ["A", "B", "C", "D"] {
        p.tick(json!({"symbol":sym,"bid":1.0}));
    }
    p.tick(json!({"symbol":"A","bid":2.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 4.0)
        .await;
    assert_eq!(s.metric(&rejected("symbol_limit")).await, 1.0);
    let (_, body) = s.get("/snapshot").await;
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let names: Vec<_> = all.iter().map(|t| t["symbol"].as_str().unwrap()).collect();
    assert_eq!(names, ["A", "B", "C"]);
}

#[tokio::test]
async fn deeply_nested_lines_are_rejected_and_the_server_survives() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    p.line(&"[".repeat(100_000));
    p.line(&"[".repeat(4000));
    p.line(&r#"{"a":"#.repeat(800));
    p.line(&format!(r#"{{"symbol":{}"#, "[".repeat(4000)));
    // However deep, an unknown field is skipped without recursion.
    p.line(&format!(
        r#"{{"symbol":"DEEP","bid":1,"x":{}1{}}}"#,
        r#"{"a":"#.repeat(600),
        "}".repeat(600)
    ));
    p.tick(json!({"symbol":"AFTER","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    for reason in ["too_long", "not_object", "not_json", "wrong_type"] {
        assert_eq!(s.metric(&rejected(reason)).await, 1.0, "{reason}");
    }
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.snapshot("DEEP,AFTER").await.len(), 2);
}

#[tokio::test]
async fn the_last_line_needs_no_newline() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"FIRST","bid":1.0}));
    p.stream
        .write_all(br#"{"symbol":"LAST","bid":2.0}"#)
        .unwrap();
    drop(p);
    let mut q = s.publisher();
    q.stream.write_all(b"not json at the very end").unwrap();
    drop(q);
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    s.wait_metric(&rejected("not_json"), |v| v == 1.0).await;
    assert_eq!(s.snapshot("LAST").await[0]["bid"], 2.0);
}

#[tokio::test]
async fn a_line_without_fields_is_rejected_and_makes_no_seq() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"NF","bid":1.0}));
    p.tick(json!({"symbol":"NF"}));
    p.tick(json!({"symbol":"NF","bid":null,"ask":null,"last":null,"volume":null}));
    p.tick(json!({"symbol":"FENCE","bid":1.0}));
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 2.0)
        .await;
    assert_eq!(s.metric(&rejected("no_fields")).await, 2.0);
    assert_eq!(s.snapshot("NF").await[0]["seq"], 1);
}

#[tokio::test]
async fn prices_reach_clients_exactly_as_the_feed_wrote_them() {
    // Decimal prices must survive parsing bit for bit: a reader that is off
    // by one unit in the last place turns 1.0836 into 1.0836000000000001.
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--candle-intervals", ""]);
    let mut p = s.publisher();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut sent = Vec::new();
    for i in 0..300 {
        let text = format!("{}.{:04}", rng.u32(0..2000), rng.u32(0..10_000));
        p.line(&format!(r#"{{"symbol":"P{i}","bid":{text}}}"#));
        sent.push(text);
    }
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 300.0)
        .await;
    let (_, body) = s.get("/snapshot").await;
    let snap: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let bids: std::collections::HashMap<&str, f64> = snap
        .iter()
        .map(|t| (t["symbol"].as_str().unwrap(), t["bid"].as_f64().unwrap()))
        .collect();
    for (i, text) in sent.iter().enumerate() {
        let want: f64 = text.parse().unwrap();
        let bid = bids[format!("P{i}").as_str()];
        assert_eq!(bid.to_bits(), want.to_bits(), "P{i}: {text} became {bid}");
    }
}
