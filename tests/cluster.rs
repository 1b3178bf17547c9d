//! Cluster over NATS: one ingest, several edges, a real nats-server with JetStream.
mod common;
use common::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server with JetStream on a free port, its store in a temp dir.
struct Nats {
    child: Child,
    port: u16,
    monitor: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        Self::start_on(free_port())
    }

    /// On a port chosen beforehand (nodes started before NATS point at it).
    fn start_on(port: u16) -> Nats {
        let monitor = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, monitor, dir.path());
        Nats {
            child,
            port,
            monitor,
            dir,
        }
    }

    fn spawn(port: u16, monitor: u16, store: &std::path::Path) -> Child {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
                "-sd",
            ])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(store.join("nats.log")).unwrap())
            .spawn()
            .expect("nats-server is installed by scripts/test (Debian package nats-server)");
        let mut child = child;
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || std::fs::read_to_string(store.join("nats.log")).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited ({status}):\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// The tick subjects a node (by `--node` name) is subscribed to, as NATS sees it.
    async fn subjects_of(&self, node: &str) -> Vec<String> {
        let addr = format!("127.0.0.1:{}", self.monitor).parse().unwrap();
        let (_, body) = http_get(addr, "/connz?subs=1", &[]).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut subjects: Vec<String> = v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == format!("tickcast {node}"))
            .flat_map(|c| {
                c["subscriptions_list"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|s| s.as_str().map(str::to_string))
            .filter(|s| s.starts_with("tickcast.tick."))
            .collect();
        subjects.sort();
        subjects
    }

    async fn wait_subjects(&self, node: &str, want: &[&str]) {
        let mut want: Vec<String> = want.iter().map(|s| tickcast::bus::subject(s)).collect();
        want.sort();
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.subjects_of(node).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{node} follows {got:?}, expected {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops and starts it again on the same client port, its store kept.
    /// The monitoring port is a new one: while NATS was down another test
    /// may have been given the old one.
    fn restart(&mut self) {
        self.stop();
        self.monitor = free_port();
        self.child = Self::spawn(self.port, self.monitor, self.dir.path());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ingest(nats: &Nats) -> Server {
    Server::start(&[
        "--role",
        "ingest",
        "--nats",
        &nats.url(),
        "--feed",
        "tcp://127.0.0.1:0",
        "--coalesce",
        "10ms",
        "--node",
        "ingest",
    ])
}

fn edge(nats: &Nats, name: &str) -> Server {
    Server::start(&["--role", "edge", "--nats", &nats.url(), "--node", name])
}

async fn subscribed(s: &Server, symbols: &[&str]) -> Client {
    let mut c = s.ws_welcomed().await;
    c.subscribe(1, symbols).await;
    c
}

/// Publishes one tick and waits until the ingest has released it.
async fn publish(ingest: &Server, p: &mut Publisher, tick: serde_json::Value) {
    let before = ingest.metric("tickcast_updates_total").await;
    p.tick(tick);
    ingest
        .wait_metric("tickcast_updates_total", |v| v > before)
        .await;
}

#[tokio::test]
async fn every_edge_delivers_the_ingests_seq() {
    let nats = Nats::start();
    let ing = ingest(&nats);
    let (a, b) = (edge(&nats, "edge-a"), edge(&nats, "edge-b"));
    let mut ca = subscribed(&a, &["AAPL"]).await;
    let mut cb = subscribed(&b, &["AAPL"]).await;
    let mut p = ing.publisher();
    for i in 1..=3 {
        publish(
            &ing,
            &mut p,
            json!({"symbol":"AAPL","bid":100.0 + i as f64,"ask":101.0 + i as f64}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await; // past the 10 ms window: one update each
    }
    for c in [&mut ca, &mut cb] {
        let mut last = None;
        while last
            .as_ref()
            .is_none_or(|t: &serde_json::Value| t["seq"] != 3)
        {
            last = Some(c.expect_type("tick").await["payload"].clone());
        }
        let t = last.unwrap();
        assert_eq!(
            (t["bid"].as_f64(), t["ask"].as_f64()),
            (Some(103.0), Some(104.0))
        );
    }
    // The ingest serves no WebSocket clients; the edges are ready.
    let refused = RawWs::handshake(
        tokio::net::TcpStream::connect(ing.addr).await.unwrap(),
        "/ws",
        &[],
    )
    .await;
    assert_eq!(refused.err().map(|e| e.0), Some(503));
    assert_eq!(a.get("/readyz").await.0, 200);
    assert_eq!(ing.get("/readyz").await.0, 200);
}

#[tokio::test]
async fn a_restarted_ingest_goes_on_counting_and_a_late_edge_has_the_snapshot() {
    let nats = Nats::start();
    let mut ing = ingest(&nats);
    let a = edge(&nats, "edge-a");
    let mut ca = subscribed(&a, &["MSFT"]).await;
    let mut p = ing.publisher();
    for i in 1..=2 {
        publish(
            &ing,
            &mut p,
            json!({"symbol":"MSFT","bid":399.5,"last":400.0 + i as f64}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    while ca.expect_type("tick").await["payload"]["seq"] != 2 {}

    // Restart the ingest: seq goes on from the bucket, never back to 1.
    drop(p);
    ing.signal(libc::SIGKILL);
    ing.wait_exit(WAIT);
    drop(ing);
    ing = ingest(&nats);
    let mut p = ing.publisher();
    publish(&ing, &mut p, json!({"symbol":"MSFT","last":410.5})).await;
    let t = ca.expect_type("tick").await["payload"].clone();
    assert_eq!(
        (t["seq"].as_u64(), t["last"].as_f64()),
        (Some(3), Some(410.5))
    );
    assert_eq!(
        t["bid"].as_f64(),
        Some(399.5),
        "the full state goes on after a restart, not just the new tick's fields"
    );

    // An edge started now serves the right snapshot at once.
    let late = edge(&nats, "edge-late");
    let mut cl = late.ws_welcomed().await;
    cl.send(json!({"type":"subscribe","id":1,"payload":{"symbols":["MSFT"]}}))
        .await;
    let sub = cl.expect_type("subscribed").await;
    assert_eq!(sub["payload"]["unknown"], json!([]));
    let snap = cl.expect_type("tick").await["payload"].clone();
    assert_eq!(
        (
            snap["seq"].as_u64(),
            snap["last"].as_f64(),
            snap["snapshot"].as_bool()
        ),
        (Some(3), Some(410.5), Some(true))
    );
}

#[tokio::test]
async fn when_nats_restarts_edges_are_unready_then_deliver_again_and_clients_stay() {
    let mut nats = Nats::start();
    let ing = ingest(&nats);
    let a = edge(&nats, "edge-a");
    let mut c = subscribed(&a, &["TSLA"]).await;
    let mut p = ing.publisher();
    publish(&ing, &mut p, json!({"symbol":"TSLA","bid":250.0})).await;
    assert_eq!(c.expect_type("tick").await["payload"]["seq"], 1);

    nats.stop();
    let deadline = Instant::now() + WAIT;
    while a.get("/readyz").await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "readyz stays 200 while NATS is down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.get("/readyz").await.1.contains("NATS"));
    nats.restart();
    while a.get("/readyz").await.0 != 200 || ing.get("/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline + WAIT,
            "edge never reconnected to NATS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client never left; ticks flow again.
    tokio::time::sleep(Duration::from_millis(30)).await;
    publish(&ing, &mut p, json!({"symbol":"TSLA","bid":251.0})).await;
    let t = c.expect_type("tick").await["payload"].clone();
    assert_eq!(
        (t["seq"].as_u64(), t["bid"].as_f64()),
        (Some(2), Some(251.0))
    );
    assert_eq!(a.metric("tickcast_connections").await, 1.0);
}

#[test]
fn a_cluster_role_needs_nats() {
    let out = Command::new(binary())
        .args(["--role", "edge", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nats"));
}

#[tokio::test]
async fn clients_of_a_killed_edge_resume_on_another_with_exactly_what_changed() {
    let nats = Nats::start();
    let ing = ingest(&nats);
    let a = edge(&nats, "edge-a");
    let b = edge(&nats, "edge-b");
    let symbols = ["S1", "S2", "S3", "S4", "S5"];
    let mut p = ing.publisher();
    for s in symbols {
        publish(&ing, &mut p, json!({"symbol":s,"last":1.0})).await;
    }
    // Wait until edge b has every value (it takes them from NATS).
    let deadline = Instant::now() + WAIT;
    while b.snapshot("S1,S2,S3,S4,S5").await.len() < 5 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut held: std::collections::HashMap<String, (u64, f64)> = Default::default();
    let mut c = subscribed(&a, &symbols).await;
    while held.len() < 5 {
        let t = c.expect_type("tick").await["payload"].clone();
        held.insert(
            t["symbol"].as_str().unwrap().into(),
            (t["seq"].as_u64().unwrap(), t["last"].as_f64().unwrap()),
        );
    }

    a.signal(libc::SIGKILL);
    tokio::time::sleep(Duration::from_millis(30)).await;
    publish(&ing, &mut p, json!({"symbol":"S2","last":2.0})).await;
    publish(&ing, &mut p, json!({"symbol":"S4","last":4.0})).await;
    let deadline = Instant::now() + WAIT;
    while b.snapshot("S2,S4").await.iter().any(|t| t["seq"] != 2) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Reconnect to edge b, resubscribing with since.
    let mut c = b.ws_welcomed().await;
    let since: serde_json::Map<String, serde_json::Value> = held
        .iter()
        .map(|(s, (seq, _))| (s.clone(), (*seq).into()))
        .collect();
    c.send(json!({"type":"subscribe","id":2,"payload":{"symbols":symbols,"since":since}}))
        .await;
    c.expect_type("subscribed").await;
    c.send(json!({"type":"ping","id":3})).await;
    loop {
        let m = c.next().await;
        if m["type"] == "pong" {
            break;
        }
        assert_eq!(m["type"], "tick", "{m}");
        let t = &m["payload"];
        let sym = t["symbol"].as_str().unwrap();
        assert!(
            sym == "S2" || sym == "S4",
            "{sym} did not change while away"
        );
        held.insert(
            sym.into(),
            (t["seq"].as_u64().unwrap(), t["last"].as_f64().unwrap()),
        );
    }
    let expected: std::collections::HashMap<String, (u64, f64)> = [
        ("S1", 1, 1.0),
        ("S2", 2, 2.0),
        ("S3", 1, 1.0),
        ("S4", 2, 4.0),
        ("S5", 1, 1.0),
    ]
    .into_iter()
    .map(|(s, seq, v)| (s.to_string(), (seq, v)))
    .collect();
    assert_eq!(held, expected, "the latest value of every symbol");
}

#[tokio::test]
async fn an_edge_follows_on_nats_only_the_symbols_its_clients_hold() {
    let nats = Nats::start();
    let ing = ingest(&nats);
    let mut p = ing.publisher();
    publish(&ing, &mut p, json!({"symbol":"AAPL","bid":1.0})).await;
    let a = edge(&nats, "edge-a");
    nats.wait_subjects("edge-a", &[]).await;

    let mut c = subscribed(&a, &["AAPL", "MSFT"]).await;
    nats.wait_subjects("edge-a", &["AAPL", "MSFT"]).await;
    // The reply waited for the bucket: AAPL's snapshot is there at once.
    let snap = c.expect_type("tick").await["payload"].clone();
    assert_eq!(
        (snap["symbol"].as_str(), snap["snapshot"].as_bool()),
        (Some("AAPL"), Some(true))
    );

    c.send(json!({"type":"unsubscribe","id":2,"payload":{"symbols":["AAPL"]}}))
        .await;
    c.expect_type("unsubscribed").await;
    nats.wait_subjects("edge-a", &["MSFT"]).await;
    drop(c);
    nats.wait_subjects("edge-a", &[]).await;

    // The other way, for comparison: one wildcard subscription.
    let w = Server::start(&[
        "--role",
        "edge",
        "--nats",
        &nats.url(),
        "--node",
        "edge-w",
        "--bus-subscribe",
        "wildcard",
    ]);
    let deadline = Instant::now() + WAIT;
    while nats.subjects_of("edge-w").await != ["tickcast.tick.*"] {
        assert!(
            Instant::now() < deadline,
            "the wildcard edge has one subscription for all"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut cw = subscribed(&w, &["AAPL"]).await;
    assert_eq!(cw.expect_type("tick").await["payload"]["seq"], 1);
}

/// The epoch a node announces in `welcome`.
async fn epoch_of(s: &Server) -> u64 {
    s.ws().await.expect_type("welcome").await["payload"]["epoch"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn nodes_started_while_nats_is_unreachable_wait_for_it_not_ready_then_serve() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut a = edge_at(&url, "edge-early");
    // The ingest's synthetic feed starts once it has joined the bus.
    let mut ing = Server::start(&[
        "--role",
        "ingest",
        "--nats",
        &url,
        "--symbols",
        "10",
        "--rate",
        "200",
        "--node",
        "ingest-early",
    ]);
    // They used to give up after 10 s: still there past it, alive and not ready.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(11) {
        assert!(a.is_running() && ing.is_running(), "a node exited");
        let (status, body) = a.get("/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("NATS"), "{body}");
        assert_eq!(ing.get("/readyz").await.0, 503);
        assert_eq!(a.get("/healthz").await.0, 200);
        assert_eq!(
            a.get("/snapshot").await.0,
            503,
            "no last values to answer with"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _nats = Nats::start_on(port);
    let deadline = Instant::now() + WAIT;
    while a.get("/readyz").await.0 != 200 || ing.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let symbol = loop {
        // The ingest's first releases reach the bucket shortly after it joins.
        let (_, body) = a.get("/snapshot").await;
        let all: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(first) = all.as_array().and_then(|a| a.first()) {
            break first["symbol"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline + WAIT, "no values: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut c = subscribed(&a, &[&symbol]).await;
    assert_eq!(c.expect_type("tick").await["payload"]["symbol"], symbol);
}

fn edge_at(url: &str, name: &str) -> Server {
    Server::start(&["--role", "edge", "--nats", url, "--node", name])
}

#[tokio::test]
async fn every_edge_and_a_restarted_one_announce_the_clusters_epoch() {
    let nats = Nats::start();
    let _ing = ingest(&nats);
    let a = edge(&nats, "edge-a");
    let b = edge(&nats, "edge-b");
    // Joining is in the background: the epoch is the cluster's once ready.
    for s in [&a, &b] {
        let deadline = Instant::now() + WAIT;
        while s.get("/readyz").await.0 != 200 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let epoch = epoch_of(&a).await;
    assert_eq!(epoch_of(&b).await, epoch, "one lineage of seq, one epoch");
    drop(a);
    let again = edge(&nats, "edge-a");
    let deadline = Instant::now() + WAIT;
    while again.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        epoch_of(&again).await,
        epoch,
        "seq carries on across an edge restart, so the epoch does too"
    );
}

#[tokio::test]
async fn after_a_nats_outage_clients_get_the_latest_value_once_not_a_burst() {
    let mut nats = Nats::start();
    let ing = ingest(&nats);
    let a = edge(&nats, "edge-a");
    let mut c = subscribed(&a, &["TSLA"]).await;
    let mut p = ing.publisher();
    publish(&ing, &mut p, json!({"symbol":"TSLA","bid":1.0})).await;
    assert_eq!(c.expect_type("tick").await["payload"]["seq"], 1);

    nats.stop();
    let deadline = Instant::now() + WAIT;
    while ing.get("/readyz").await.0 != 503 || a.get("/readyz").await.0 != 503 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 40 updates while NATS is away (the ingest's window is 10 ms).
    for i in 2..=41 {
        publish(&ing, &mut p, json!({"symbol":"TSLA","bid": i as f64})).await;
        tokio::time::sleep(Duration::from_millis(12)).await;
    }
    nats.restart();
    // The client stays, and ends on the latest value within a few windows,
    // never moving backwards, at most one update per window.
    let mut seen = Vec::new();
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let t = c.expect_type("tick").await["payload"].clone();
        seen.push((
            Instant::now(),
            t["seq"].as_u64().unwrap(),
            t["bid"].as_f64().unwrap(),
        ));
        if t["bid"] == 41.0 {
            break;
        }
        assert!(Instant::now() < deadline, "never got the latest: {seen:?}");
    }
    assert!(seen.windows(2).all(|w| w[1].1 > w[0].1), "{seen:?}");
    assert!(
        seen.len() <= 4,
        "a burst of stale ticks after the outage: {:?}",
        seen.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    assert_eq!(seen.last().unwrap().1, 41);
    assert_eq!(a.metric("tickcast_connections").await, 1.0);
}

/// Candle messages of one series as a client sees them: closed bars by
/// start, and every `seq` in order.
#[derive(Default)]
struct BarLog {
    closed: std::collections::BTreeMap<u64, serde_json::Value>,
    /// Every bar seen, forming or closed, as last seen.
    seen: std::collections::BTreeMap<u64, serde_json::Value>,
    seqs: Vec<u64>,
}

impl BarLog {
    fn take(&mut self, bar: &serde_json::Value) {
        self.seqs.push(bar["seq"].as_u64().unwrap());
        self.seen
            .insert(bar["start"].as_u64().unwrap(), bar.clone());
        if bar["closed"] == true {
            self.closed
                .insert(bar["start"].as_u64().unwrap(), bar.clone());
        }
    }
}

/// Reads `c` until `n` more bars of the 1s series have closed, publishing a
/// trade every 100 ms meanwhile.
async fn trade_until_closed(
    ingest: &Server,
    p: &mut Publisher,
    c: &mut Client,
    log: &mut BarLog,
    n: usize,
    price: &mut f64,
) {
    let want = log.closed.len() + n;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next_trade = Instant::now();
    while log.closed.len() < want {
        assert!(Instant::now() < deadline, "bars did not close");
        if Instant::now() >= next_trade {
            *price += 0.25;
            publish(
                ingest,
                p,
                json!({"symbol":"AAPL","last":*price,"ts":now_us()}),
            )
            .await;
            next_trade = Instant::now() + Duration::from_millis(100);
        }
        if let Some(m) = c.try_next(Duration::from_millis(50)).await {
            if m["type"] == "candle" {
                log.take(&m["payload"]);
            }
        }
    }
}

#[tokio::test]
async fn candles_come_from_the_ingest_and_survive_its_restart_in_jetstream() {
    let nats = Nats::start();
    let ingest_flags = |nats: &Nats| {
        vec![
            "--role".to_string(),
            "ingest".into(),
            "--nats".into(),
            nats.url(),
            "--feed".into(),
            "tcp://127.0.0.1:0".into(),
            "--coalesce".into(),
            "10ms".into(),
            "--candle-intervals".into(),
            "1s,1m".into(),
        ]
    };
    let start_ingest = |nats: &Nats| {
        let flags = ingest_flags(nats);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start(&flags)
    };
    let edge_flags = ["--candle-intervals", "1s,1m"];
    let edge_with = |nats: &Nats, name: &str| {
        Server::start(&[
            "--role",
            "edge",
            "--nats",
            &nats.url(),
            "--node",
            name,
            edge_flags[0],
            edge_flags[1],
        ])
    };
    let mut ing = start_ingest(&nats);
    let a = edge_with(&nats, "edge-a");
    let mut c = a.ws_welcomed().await;
    c.send(json!({"type":"subscribe","id":1,"payload":{"candles":["AAPL@1s"]}}))
        .await;
    c.expect_type("subscribed").await;
    assert_eq!(c.expect_type("candles").await["payload"]["bars"], json!([]));
    let mut log = BarLog::default();
    let mut price = 100.0;
    let mut p = ing.publisher();
    trade_until_closed(&ing, &mut p, &mut c, &mut log, 2, &mut price).await;

    // One more trade: a bar is forming when the ingest dies without a word.
    let closed_up_to = *log.closed.keys().last().unwrap();
    while log.seen.keys().last() <= Some(&closed_up_to) {
        price += 0.25;
        publish(
            &ing,
            &mut p,
            json!({"symbol":"AAPL","last":price,"ts":now_us()}),
        )
        .await;
        while let Some(m) = c.try_next(Duration::from_millis(100)).await {
            if m["type"] == "candle" {
                log.take(&m["payload"]);
            }
        }
    }
    drop(p);
    ing.signal(libc::SIGKILL);
    ing.wait_exit(WAIT);
    drop(ing);
    let before = *log.seqs.last().unwrap();
    // The bar forming when the ingest died: closed by its successor.
    let (&forming_start, forming) = log.seen.last_key_value().unwrap();
    let forming = forming.clone();
    // Its second ends before the next ingest is up: that one must close it.
    let ends = forming_start + 1_000_000;
    tokio::time::sleep(Duration::from_micros(
        ends.saturating_sub(now_us()) + 50_000,
    ))
    .await;
    ing = start_ingest(&nats);
    let mut p = ing.publisher();
    trade_until_closed(&ing, &mut p, &mut c, &mut log, 2, &mut price).await;
    let after: Vec<u64> = log.seqs.iter().copied().filter(|s| *s > before).collect();
    assert!(!after.is_empty());
    assert!(
        log.seqs.windows(2).all(|w| w[0] < w[1]),
        "seq goes on across the restart: {:?}",
        log.seqs
    );

    // An edge started now serves every closed bar at once, from JetStream:
    // over HTTP and as a subscriber's history.
    let late = edge_with(&nats, "edge-late");
    let deadline = Instant::now() + WAIT;
    let history = loop {
        let (status, body) = late
            .get("/candles?symbol=AAPL&interval=1s&limit=1000")
            .await;
        if status == 200 {
            break serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stored: std::collections::BTreeMap<u64, serde_json::Value> = history["bars"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["closed"] == true)
        .map(|b| (b["start"].as_u64().unwrap(), b.clone()))
        .collect();
    for (start, bar) in &log.closed {
        let kept = stored
            .get(start)
            .unwrap_or_else(|| panic!("bar {start} lost: {history}"));
        for k in ["open", "high", "low", "close", "trades", "seq"] {
            assert_eq!(kept[k], bar[k], "{k} of bar {start}");
        }
    }
    let kept = stored
        .get(&forming_start)
        .unwrap_or_else(|| panic!("the bar forming at the kill was lost: {history}"));
    assert!(
        kept["trades"].as_u64() >= forming["trades"].as_u64(),
        "{kept} vs {forming}"
    );
    let mut cl = late.ws_welcomed().await;
    cl.send(json!({"type":"subscribe","id":1,"payload":{"candles":["AAPL@1s"],"limit":1000}}))
        .await;
    cl.expect_type("subscribed").await;
    let bars = cl.expect_type("candles").await["payload"]["bars"].clone();
    let starts: Vec<u64> = bars
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["closed"] == true)
        .map(|b| b["start"].as_u64().unwrap())
        .collect();
    for start in log.closed.keys() {
        assert!(starts.contains(start), "{start} missing from the history");
    }
}
