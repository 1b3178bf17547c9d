//! Candles (protocol §4c): bars made from a replayed feed match bars computed
//! here independently; history and live updates over WebSocket, SSE and
//! `/candles`; resume with `since`; the errors a client can earn.
mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

const S: u64 = 1_000_000;
/// A whole minute, in the past (a replay may be any past).
const T0: u64 = 1_732_400_040 * S;

/// One feed line of the replay, as the test wrote it.
struct Line {
    symbol: &'static str,
    bid: Option<f64>,
    ask: Option<f64>,
    last: Option<f64>,
    volume: Option<f64>,
    ts: u64,
}

/// A bar as computed here: (open, high, low, close, volume, trades, source).
type Expected = (f64, f64, f64, f64, f64, u64, &'static str);

/// The rules of §4c, written out again without the server's code: bars by
/// the interval `ts` falls in, the replay's clock is the newest `ts`, a tick
/// whose bar has closed is late, cumulative volume, mids until a first trade.
fn expected_bars(lines: &[Line], interval_us: u64) -> (BTreeMap<(&str, u64), Expected>, u64) {
    let mut bars: BTreeMap<(&str, u64), Expected> = BTreeMap::new();
    let mut clock = 0u64;
    let mut late = 0;
    let mut traded: BTreeMap<&str, bool> = BTreeMap::new();
    let mut total: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    let mut quote: BTreeMap<&str, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for l in lines {
        clock = clock.max(l.ts);
        let q = quote.entry(l.symbol).or_default();
        q.0 = l.bid.or(q.0);
        q.1 = l.ask.or(q.1);
        // Growth of the running total; a lower, newer total is a new session
        // (counts whole), a lower, older one a tick out of order (counts 0).
        let size = match (l.volume, total.get(l.symbol).copied()) {
            (None, _) => 0.0,
            (Some(v), None) => {
                total.insert(l.symbol, (v, l.ts));
                0.0
            }
            (Some(v), Some((t, at))) => {
                if v >= t || l.ts > at {
                    total.insert(l.symbol, (v, l.ts));
                }
                match v >= t {
                    true => v - t,
                    false if l.ts > at => v,
                    false => 0.0,
                }
            }
        };
        let start = l.ts / interval_us * interval_us;
        let open_now = clock / interval_us * interval_us;
        let (price, source) = if let Some(last) = l.last {
            traded.insert(l.symbol, true);
            (last, "trades")
        } else if traded.get(l.symbol).copied().unwrap_or(false) || (l.bid, l.ask) == (None, None) {
            continue;
        } else {
            let (b, a) = *q;
            (
                match (b, a) {
                    (Some(b), Some(a)) => (b + a) / 2.0,
                    (Some(x), None) | (None, Some(x)) => x,
                    _ => continue,
                },
                "mid",
            )
        };
        if start < open_now {
            late += 1;
            continue;
        }
        let bar = bars.entry((l.symbol, start));
        match bar {
            std::collections::btree_map::Entry::Occupied(mut e) if e.get().6 == source => {
                let b = e.get_mut();
                b.1 = b.1.max(price);
                b.2 = b.2.min(price);
                b.3 = price;
                if source == "trades" {
                    b.4 += size;
                    b.5 += 1;
                }
            }
            e => {
                let fresh = if source == "trades" {
                    (price, price, price, price, size, 1, source)
                } else {
                    (price, price, price, price, 0.0, 0, source)
                };
                match e {
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        o.insert(fresh);
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(fresh);
                    }
                }
            }
        }
    }
    (bars, late)
}

/// The replay: AAPL trades most seconds (cumulative volume that resets once)
/// and quotes; ONE trades once; FX:EUR/USD only quotes; GAPPY trades in
/// seconds 0, 1 and 6 only; two AAPL trades arrive late for their second.
fn replay_lines() -> Vec<Line> {
    let mut lines = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut volume = 1_000.0;
    // In cents: prices with two decimals, which every JSON parser reads exactly.
    let mut cents: i64 = 18_900;
    for i in 0..400u64 {
        let ts = T0 + i * 25_000 + rng.u64(0..20_000); // 10 s of feed time
        let second = (ts - T0) / S;
        if i == 200 {
            volume = 50.0; // a new session: the total starts over
        }
        if rng.bool() || second == 3 {
            cents += rng.i64(-5..=5);
            let price = cents as f64 / 100.0;
            volume += rng.u32(1..10) as f64 * 100.0;
            lines.push(Line {
                symbol: "AAPL",
                bid: None,
                ask: None,
                last: Some(price),
                volume: Some(volume),
                ts,
            });
        } else {
            lines.push(Line {
                symbol: "AAPL",
                bid: Some((cents - 1) as f64 / 100.0),
                ask: Some((cents + 1) as f64 / 100.0),
                last: None,
                volume: None,
                ts,
            });
        }
        if i % 7 == 0 {
            lines.push(Line {
                symbol: "FX:EUR/USD",
                bid: Some((10_800 + rng.u32(0..100)) as f64 / 10_000.0),
                ask: if i % 14 == 0 { Some(1.0812) } else { None },
                last: None,
                volume: None,
                ts,
            });
        }
        if matches!(second, 0 | 1 | 6) && i % 5 == 0 {
            lines.push(Line {
                symbol: "GAPPY",
                bid: None,
                ask: None,
                last: Some(10.0 + second as f64),
                volume: Some(i as f64),
                ts,
            });
        }
        if i == 100 {
            lines.push(Line {
                symbol: "ONE",
                bid: Some(4.0),
                ask: Some(4.2),
                last: Some(4.1),
                volume: Some(7.0),
                ts,
            });
        }
        if i == 300 {
            // A trade out of order: a lower total stamped a little earlier.
            lines.push(Line {
                symbol: "AAPL",
                bid: None,
                ask: None,
                last: Some(cents as f64 / 100.0),
                volume: Some(volume - 50.0),
                ts: ts - 1_000,
            });
        }
        if i == 150 || i == 250 {
            // Late: stamped 1.5 s back, its second has closed.
            lines.push(Line {
                symbol: "AAPL",
                bid: None,
                ask: None,
                last: Some(999.0),
                volume: None,
                ts: ts - 1_500_000,
            });
        }
    }
    lines
}

/// A one-time token for `sub`, entitled to `symbols`.
fn make_token(secret: &str, sub: &str, symbols: &[&str]) -> String {
    cli_token(secret, &["--sub", sub, "--symbols", &symbols.join(",")])
}

fn write_replay(lines: &[Line]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticks.ndjson");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        let mut v = json!({"symbol": l.symbol, "ts": l.ts});
        for (k, x) in [
            ("bid", l.bid),
            ("ask", l.ask),
            ("last", l.last),
            ("volume", l.volume),
        ] {
            if let Some(x) = x {
                v[k] = json!(x);
            }
        }
        writeln!(f, "{v}").unwrap();
    }
    let feed = format!("file:{}", path.display());
    (dir, feed)
}

/// A server replaying `lines` as fast as it can, once it has read them all.
async fn replay_server(lines: &[Line], flags: &[&str]) -> (Server, tempfile::TempDir) {
    let (dir, feed) = write_replay(lines);
    let mut all = vec!["--feed", &feed, "--replay-speed", "0"];
    all.extend_from_slice(flags);
    let s = Server::start(&all);
    s.wait_metric("tickcast_feed_ticks_total", |v| v == lines.len() as f64)
        .await;
    (s, dir)
}

fn as_expected(b: &Value) -> Expected {
    let f = |k: &str| b[k].as_f64().unwrap();
    (
        f("open"),
        f("high"),
        f("low"),
        f("close"),
        f("volume"),
        b["trades"].as_u64().unwrap(),
        match b["source"].as_str().unwrap() {
            "trades" => "trades",
            _ => "mid",
        },
    )
}

async fn candles(s: &Server, query: &str) -> Value {
    let (status, body) = s.get(&format!("/candles?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn bars_of_a_replay_match_bars_computed_independently() {
    let lines = replay_lines();
    let (s, _dir) = replay_server(
        &lines,
        &["--coalesce", "10ms", "--candle-intervals", "1s,5s"],
    )
    .await;
    for (interval, us) in [("1s", S), ("5s", 5 * S)] {
        let (want, late) = expected_bars(&lines, us);
        assert_eq!(
            s.metric(&format!(
                "tickcast_candle_late_ticks_total{{interval=\"{interval}\"}}"
            ))
            .await,
            late as f64,
            "{interval}"
        );
        for symbol in ["AAPL", "ONE", "FX:EUR/USD", "GAPPY"] {
            let want: Vec<(u64, Expected)> = want
                .iter()
                .filter(|((s, _), _)| *s == symbol)
                .map(|((_, start), b)| (*start, *b))
                .collect();
            assert!(!want.is_empty());
            // The last bar's final changes may wait for their window (10 ms).
            let deadline = Instant::now() + Duration::from_secs(10);
            let query = format!("symbol={symbol}&interval={interval}&limit=1000");
            loop {
                let got = candles(&s, &query).await;
                let bars = got["bars"].as_array().unwrap();
                let got: Vec<(u64, Expected)> = bars
                    .iter()
                    .map(|b| (b["start"].as_u64().unwrap(), as_expected(b)))
                    .collect();
                if got == want || Instant::now() > deadline {
                    assert_eq!(got, want, "{symbol} {interval}");
                    // Closed once the replay's clock (its newest ts) passed
                    // their end: a replay's last bars stay open.
                    let clock = lines.iter().map(|l| l.ts).max().unwrap();
                    for b in bars {
                        let open = b["start"].as_u64().unwrap() == clock / us * us;
                        assert_eq!(b["closed"], !open, "{symbol} {interval} {b}");
                    }
                    let seqs: Vec<u64> = bars.iter().map(|b| b["seq"].as_u64().unwrap()).collect();
                    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // The boundaries the replay was made to have.
    let one = candles(&s, "symbol=ONE&interval=1s").await;
    assert_eq!(one["bars"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["bars"][0]["trades"], 1);
    assert_eq!(one["bars"][0]["volume"], 0, "a first total is the baseline");
    let fx = candles(&s, "symbol=FX:EUR/USD&interval=1s").await;
    assert!(fx["bars"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["source"] == "mid" && b["trades"] == 0 && b["volume"] == 0));
    let gappy = candles(&s, "symbol=GAPPY&interval=1s").await;
    let starts: Vec<u64> = gappy["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["start"].as_u64().unwrap() - T0) / S)
        .collect();
    assert_eq!(starts, [0, 1, 6], "no bar where no trade was");
    assert!(
        s.metric("tickcast_candle_late_ticks_total{interval=\"1s\"}")
            .await
            >= 2.0
    );
    // Paging back: `limit` bars before `end`.
    let all = candles(&s, "symbol=AAPL&interval=1s&limit=1000").await;
    let all = all["bars"].as_array().unwrap();
    let end = all[5]["start"].as_u64().unwrap();
    let page = candles(&s, &format!("symbol=AAPL&interval=1s&limit=3&end={end}")).await;
    assert_eq!(page["bars"].as_array().unwrap(), &all[2..5].to_vec());
    let last2 = candles(&s, "symbol=AAPL&interval=1s&limit=2").await;
    assert_eq!(
        last2["bars"].as_array().unwrap().len(),
        3,
        "2 closed bars and the forming one"
    );
    let none = candles(&s, "symbol=NEVER&interval=1s").await;
    assert_eq!(none["bars"], json!([]));
}

#[tokio::test]
async fn candles_endpoint_refuses_what_it_cannot_answer() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--candle-keep", "50"]);
    for (query, want) in [
        ("interval=1m", "needs ?symbol="),
        ("symbol=A%20B&interval=1m", "is not a symbol"),
        ("symbol=AAPL&interval=2m", "1s, 1m, 5m, 1h"),
        ("symbol=AAPL&interval=1m&limit=0", "from 1 to 50"),
        ("symbol=AAPL&interval=1m&limit=51", "from 1 to 50"),
        ("symbol=AAPL&interval=1m&limit=x", "from 1 to 50"),
        ("symbol=AAPL&interval=1m&end=-1", "end must be"),
    ] {
        let (status, body) = s.get(&format!("/candles?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(want), "{query}: {body}");
    }
    let off = Server::start(&["--feed", "tcp://127.0.0.1:0", "--candle-intervals", ""]);
    assert_eq!(off.get("/candles?symbol=A&interval=1m").await.0, 404);
}

#[tokio::test]
async fn candles_endpoint_has_the_auth_of_snapshot() {
    let secret = "candles-secret";
    let s = Server::start_with_env(
        &["--feed", "tcp://127.0.0.1:0"],
        &[("TICKCAST_AUTH_SECRET", secret)],
    );
    assert_eq!(s.get("/candles?symbol=AAPL&interval=1m").await.0, 401);
    let token = make_token(secret, "alice", &["AAPL"]);
    let auth = format!("Bearer {token}");
    let (status, body) = http_get(
        s.addr,
        "/candles?symbol=AAPL&interval=1m",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(
        (status, body.contains("\"bars\":[]")),
        (200, true),
        "{body}"
    );
    let auth = format!("Bearer {}", make_token(secret, "alice", &["AAPL"]));
    let (status, body) = http_get(
        s.addr,
        "/candles?symbol=TSLA&interval=1m",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

/// Reads messages until a `candle` (or `candles`) of `series` arrives.
async fn next_candle(c: &mut Client) -> Value {
    loop {
        let m = c.next().await;
        if m["type"] == "candle" {
            return m["payload"].clone();
        }
        assert_ne!(m["type"], "error", "{m}");
    }
}

#[tokio::test]
async fn a_subscriber_gets_history_then_every_change_then_the_close() {
    // 1d, not 1m: a live test cannot choose its clock, and a bar boundary
    // between its trades would change what they make (once a day, not a minute).
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--coalesce",
        "20ms",
        "--candle-intervals",
        "1s,1d",
    ]);
    let mut p = s.publisher();
    // A bar before anyone subscribes: it will be history.
    p.tick(json!({"symbol":"AAPL","last":100.0,"volume":1000,"ts":now_us()}));
    s.wait_metric("tickcast_candle_updates_total", |v| v >= 2.0)
        .await;

    let mut c = s.ws_welcomed().await;
    c.send(json!({"type":"subscribe","id":1,"payload":{"candles":["AAPL@1s","AAPL@1d"],"symbols":["AAPL"]}}))
        .await;
    let sub = c.expect_type("subscribed").await["payload"].clone();
    assert_eq!(sub["candles"], json!(["AAPL@1s", "AAPL@1d"]));
    assert_eq!(sub["symbols"], json!(["AAPL"]));
    let mut history = BTreeMap::new();
    let mut seq = BTreeMap::new();
    for _ in 0..3 {
        let m = c.next().await;
        match m["type"].as_str().unwrap() {
            "candles" => {
                let p = &m["payload"];
                assert_eq!(p["snapshot"], true);
                let bars = p["bars"].as_array().unwrap().clone();
                seq.insert(
                    p["interval"].as_str().unwrap().to_string(),
                    bars.iter()
                        .map(|b| b["seq"].as_u64().unwrap())
                        .max()
                        .unwrap_or(0),
                );
                history.insert(p["interval"].as_str().unwrap().to_string(), bars);
            }
            "tick" => assert_eq!(m["payload"]["snapshot"], true),
            other => panic!("{other}: {m}"),
        }
    }
    let day = &history["1d"];
    assert_eq!(day.last().unwrap()["open"], 100.0);
    assert_eq!(day.last().unwrap()["closed"], false);

    // Every change of the forming bar, then the close, seq one by one.
    p.tick(json!({"symbol":"AAPL","last":101.5,"volume":1200,"ts":now_us()}));
    let mut closed_1s = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while closed_1s.is_none() {
        assert!(Instant::now() < deadline, "no 1s bar closed");
        let bar = next_candle(&mut c).await;
        let interval = bar["interval"].as_str().unwrap().to_string();
        let last = seq.get_mut(&interval).unwrap();
        assert_eq!(bar["seq"].as_u64().unwrap(), *last + 1, "{bar}");
        *last += 1;
        if interval == "1s" && bar["closed"] == true {
            closed_1s = Some(bar);
        } else if interval == "1d" {
            assert_eq!(bar["closed"], false);
            assert_eq!(bar["high"], 101.5);
            assert_eq!(bar["volume"], 200);
        }
    }
    let closed_1s = closed_1s.unwrap();
    assert_eq!(closed_1s["symbol"], "AAPL");
    assert!(closed_1s["start"].as_u64().unwrap() % S == 0);

    // A client that comes back with `since` gets only what changed after it.
    let held = seq["1d"];
    drop(c);
    p.tick(json!({"symbol":"AAPL","last":99.0,"volume":1300,"ts":now_us()}));
    let deadline = Instant::now() + WAIT;
    // The last bar: the day's (a run across midnight has yesterday's before it).
    while candles(&s, "symbol=AAPL&interval=1d").await["bars"]
        .as_array()
        .and_then(|b| b.last().cloned())
        .is_none_or(|b| b["low"] != 99.0)
    {
        assert!(Instant::now() < deadline, "the bar never took the trade");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = s.ws_welcomed().await;
    c.send(json!({"type":"subscribe","id":2,"payload":{"candles":["AAPL@1d"],"since":{"AAPL@1d":held}}}))
        .await;
    c.expect_type("subscribed").await;
    let resumed = c.expect_type("candles").await["payload"].clone();
    let bars = resumed["bars"].as_array().unwrap();
    assert!(!bars.is_empty());
    assert!(
        bars.iter().all(|b| b["seq"].as_u64().unwrap() > held),
        "{resumed}"
    );
    assert_eq!(bars.last().unwrap()["low"], 99.0);

    // Unsubscribing says so, and no candle follows.
    c.send(json!({"type":"unsubscribe","id":3,"payload":{"candles":["AAPL@1d"]}}))
        .await;
    let un = c.until_type("unsubscribed").await;
    assert_eq!(un["payload"]["candles"], json!(["AAPL@1d"]));
    p.tick(json!({"symbol":"AAPL","last":98.0,"ts":now_us()}));
    c.send(json!({"type":"ping","id":4})).await;
    assert_eq!(c.until_type("pong").await["id"], 4);
    assert!(c.try_next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn candle_requests_a_client_gets_wrong_are_answered() {
    let secret = "candles-secret";
    let s = Server::start_with_env(
        &["--feed", "tcp://127.0.0.1:0", "--candle-keep", "100"],
        &[("TICKCAST_AUTH_SECRET", secret)],
    );
    let token = make_token(secret, "alice", &["AAPL", "FX:*"]);
    let mut c = Client::connect(&format!("ws://{}/ws?token={token}", s.addr)).await;
    c.expect_type("welcome").await;
    c.send(json!({"type":"subscribe","id":1,"payload":{"candles":["AAPL@1m","AAPL@2m","nope","TSLA@1m","FX:EUR/USD@1s","AAPL@1m"]}}))
        .await;
    let sub = c.expect_type("subscribed").await;
    assert_eq!(
        sub["payload"]["candles"],
        json!(["AAPL@1m", "FX:EUR/USD@1s"])
    );
    let mut codes = BTreeMap::new();
    for _ in 0..3 {
        let e = c.expect_type("error").await["payload"].clone();
        codes.insert(
            e["code"].as_str().unwrap().to_string(),
            e["symbols"].clone(),
        );
    }
    assert_eq!(codes["invalid_symbol"], json!(["nope"]));
    assert_eq!(codes["forbidden"], json!(["TSLA@1m"]));
    assert_eq!(codes["bad_request"], json!(["AAPL@2m"]));
    for (limit, ok) in [(0, false), (100, true), (101, false)] {
        c.send(json!({"type":"subscribe","id":2,"payload":{"candles":["AAPL@5m"],"limit":limit}}))
            .await;
        let m = c.until_type(if ok { "subscribed" } else { "error" }).await;
        assert_eq!(m["id"], 2, "{m}");
    }
    c.send(json!({"type":"subscribe","id":3,"payload":{"candles":[]}}))
        .await;
    let e = c.expect_type("error").await;
    assert!(
        e["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("candles is empty"),
        "{e}"
    );
}

#[tokio::test]
async fn sse_streams_candles_with_history() {
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0", "--coalesce", "20ms"]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"MSFT","last":400.0,"ts":now_us()}));
    s.wait_metric("tickcast_candle_updates_total", |v| v >= 4.0)
        .await;
    let mut sse = SseClient::open(s.addr, "/sse?candles=MSFT@1m&limit=10", &[]).await;
    let mut last_id = None;
    let sub = sse.until_event("subscribed", &mut last_id).await.json();
    assert_eq!(sub["candles"], json!(["MSFT@1m"]));
    let history = sse.until_event("candles", &mut last_id).await.json();
    assert_eq!(history["bars"][0]["open"], 400.0);
    p.tick(json!({"symbol":"MSFT","last":401.0,"ts":now_us()}));
    let live = sse.until_event("candle", &mut last_id).await.json();
    assert_eq!(
        (live["interval"].clone(), live["close"].clone()),
        (json!("1m"), json!(401))
    );
}

#[tokio::test]
async fn a_narrower_token_ends_the_series_it_no_longer_allows() {
    let secret = "candles-secret";
    let s = Server::start_with_env(
        &["--feed", "tcp://127.0.0.1:0"],
        &[("TICKCAST_AUTH_SECRET", secret)],
    );
    let token = make_token(secret, "alice", &["AAPL", "MSFT"]);
    let mut c = Client::connect(&format!("ws://{}/ws?token={token}", s.addr)).await;
    c.expect_type("welcome").await;
    c.send(json!({"type":"subscribe","id":1,"payload":{"candles":["AAPL@1m","MSFT@1m"]}}))
        .await;
    c.expect_type("subscribed").await;
    let narrower = make_token(secret, "alice", &["AAPL"]);
    c.send(json!({"type":"auth","id":2,"payload":{"token":narrower}}))
        .await;
    c.until_type("authenticated").await;
    let un = c.until_type("unsubscribed").await["payload"].clone();
    assert_eq!(
        un,
        json!({"symbols":[],"candles":["MSFT@1m"],"reason":"forbidden"})
    );
    // MSFT's bars no longer come; AAPL's do.
    let mut p = s.publisher();
    p.tick(json!({"symbol":"MSFT","last":1.0,"ts":now_us()}));
    p.tick(json!({"symbol":"AAPL","last":2.0,"ts":now_us()}));
    let bar = next_candle(&mut c).await;
    assert_eq!(bar["symbol"], "AAPL", "{bar}");
}

#[tokio::test]
async fn an_sse_stream_resumes_with_the_bars_changed_since_its_mark() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--coalesce",
        "10ms",
        "--candle-intervals",
        "1d",
    ]);
    let mut p = s.publisher();
    p.tick(json!({"symbol":"MSFT","last":400.0,"ts":now_us()}));
    s.wait_metric("tickcast_candle_updates_total", |v| v >= 1.0)
        .await;
    let mut sse = SseClient::open(s.addr, "/sse?candles=MSFT@1d", &[]).await;
    let mut mark = None;
    sse.until_event("candles", &mut mark).await;
    p.tick(json!({"symbol":"MSFT","last":401.0,"ts":now_us()}));
    sse.until_event("candle", &mut mark).await;
    // The mark after that candle: everything up to it is with the client.
    sse.until_event("mark", &mut mark).await;
    let mark = mark.expect("a mark");
    drop(sse);
    p.tick(json!({"symbol":"MSFT","last":399.0,"ts":now_us()}));
    let deadline = Instant::now() + WAIT;
    while candles(&s, "symbol=MSFT&interval=1d").await["bars"]
        .as_array()
        .and_then(|b| b.last().cloned())
        .is_none_or(|b| b["low"] != 399.0)
    {
        assert!(Instant::now() < deadline, "the bar never took the trade");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = SseClient::open(
        s.addr,
        "/sse?candles=MSFT@1d",
        &[("Last-Event-ID", mark.as_str())],
    )
    .await;
    let mut id = None;
    let resumed = again.until_event("candles", &mut id).await.json();
    let bars = resumed["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 1, "only the bar that changed: {resumed}");
    assert_eq!(bars[0]["low"], 399.0);
}

/// Resident memory of a process, in bytes.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn long_histories_for_clients_that_do_not_read_cost_a_bounded_amount() {
    // 20 symbols with 1,000 closed 1s bars each, from a replay.
    const SYMBOLS: usize = 20;
    let mut lines = Vec::new();
    for second in 0..1_002u64 {
        for i in 0..SYMBOLS {
            lines.push(Line {
                symbol: Box::leak(format!("H{i:02}").into_boxed_str()),
                bid: None,
                ask: None,
                last: Some(100.0 + (second % 50) as f64),
                volume: Some((second * 100) as f64),
                ts: T0 + second * S + i as u64,
            });
        }
    }
    let (s, _dir) = replay_server(
        &lines,
        &["--candle-intervals", "1s", "--send-buffer", "4096"],
    )
    .await;
    let series: Vec<String> = (0..SYMBOLS).map(|i| format!("H{i:02}@1s")).collect();
    let subscribe =
        json!({"type":"subscribe","id":1,"payload":{"candles":series,"limit":1000}}).to_string();
    let before = rss(s.pid());
    // 40 clients ask for 20 histories of 1,000 bars each (about 4 MB of
    // JSON per client) and read nothing after the reply.
    let mut idle = Vec::new();
    for _ in 0..40 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let stream = socket.connect(s.addr).await.unwrap();
        let mut c = RawWs::handshake(stream, "/ws", &[]).await.expect("upgrade");
        assert_eq!(c.next_json().await["type"], "welcome");
        c.send_text(&subscribe).await;
        assert_eq!(c.next_json().await["type"], "subscribed");
        idle.push(c);
    }
    let grown = rss(s.pid()).saturating_sub(before);
    eprintln!("{} KiB held for 40 clients", grown >> 10);
    assert!(
        grown < 64 << 20,
        "{} MiB held for 40 clients that read nothing",
        grown >> 20
    );
    // One that reads gets every history, whole, each before its live bars;
    // asking for them all again, it gets them at 20,000 bars a second.
    let mut c = s.ws_welcomed().await;
    let started = Instant::now();
    for _ in 0..2 {
        c.send_text(&subscribe).await;
        c.expect_type("subscribed").await;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < SYMBOLS {
            let m = c.next().await;
            assert_eq!(m["type"], "candles", "{m}");
            let bars = m["payload"]["bars"].as_array().unwrap();
            assert_eq!(bars.len(), 1001, "1,000 closed bars and the forming one");
            assert!(seen.insert(m["payload"]["symbol"].as_str().unwrap().to_string()));
        }
    }
    // 40,040 bars: a bucket of 20,000, then 20,040 more at 20,000 a second.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
}

#[tokio::test]
async fn a_live_tick_stamped_in_a_closed_bar_is_late_for_it_only() {
    let s = Server::start(&[
        "--feed",
        "tcp://127.0.0.1:0",
        "--coalesce",
        "10ms",
        "--candle-intervals",
        "1s,1d",
    ]);
    let mut p = s.publisher();
    // Two seconds ago: that second's bar has closed; the day's is open
    // (unless the day began in those two seconds: then it is late for both).
    let ts = now_us() - 2 * S;
    let same_day = ts / (86_400 * S) == now_us() / (86_400 * S);
    p.tick(json!({"symbol":"LATE","last":5.0,"volume":10,"ts":ts}));
    s.wait_metric("tickcast_candle_late_ticks_total{interval=\"1s\"}", |v| {
        v == 1.0
    })
    .await;
    s.wait_metric("tickcast_feed_ticks_total", |v| v == 1.0)
        .await;
    let day = candles(&s, "symbol=LATE&interval=1d").await;
    let second = candles(&s, "symbol=LATE&interval=1s").await;
    assert_eq!(second["bars"], json!([]), "a closed bar is final");
    if same_day {
        assert_eq!(day["bars"][0]["close"], 5.0, "{day}");
        assert_eq!(
            s.metric("tickcast_candle_late_ticks_total{interval=\"1d\"}")
                .await,
            0.0
        );
    }
}
