//! loadgen against the real tickcast server.
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn loadgen() -> &'static str {
    env!("CARGO_BIN_EXE_loadgen")
}

/// The tickcast binary beside loadgen's, built if this test run did not build it.
fn tickcast() -> PathBuf {
    let path = PathBuf::from(loadgen()).with_file_name("tickcast");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "tickcast", "--bin", "tickcast"])
            .status()
            .expect("cargo build");
        assert!(status.success());
    }
    path
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(listen: &str, flags: &[&str]) -> Server {
        let mut child = Command::new(tickcast())
            .args(["--listen", listen])
            .args(flags)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tickcast");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx.recv_timeout(WAIT).expect("tickcast started");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split(' ').next().unwrap().parse().unwrap();
            }
        };
        Server { child, addr }
    }

    fn metrics_text(&self) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    }

    fn metric(&self, series: &str) -> f64 {
        tickcast::metrics::sample(&self.metrics_text(), series)
            .unwrap_or_else(|| panic!("no {series}"))
    }

    fn wait_metric(&self, series: &str, pred: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.metric(series);
            if pred(v) {
                return;
            }
            assert!(Instant::now() < deadline, "{series} stuck at {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn report(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("JSON report written")).unwrap()
}

fn assert_ran(out: &Output) {
    assert!(
        out.status.success(),
        "loadgen failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_small_driven_run_receives_exactly_what_the_feed_implies() {
    let feed_port = free_port();
    let feed = format!("tcp://127.0.0.1:{feed_port}");
    // A 1 ms window and 40 symbols at 400 ticks/s: each symbol ticks every 100 ms,
    // so every tick becomes one update.
    let server = Server::start("127.0.0.1:0", &["--feed", &feed, "--coalesce", "1ms"]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(loadgen())
        .args([
            "--url",
            &format!("ws://{}/ws", server.addr),
            "--connections",
            "200",
            "--procs",
            "2",
        ])
        .args([
            "--feed",
            &feed,
            "--feed-rate",
            "400",
            "--universe",
            "40",
            "--symbols-per-conn",
            "3",
        ])
        .args(["--duration", "3s", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ran(&out);
    let r = report(&json);
    assert_eq!(r["connections"]["established"], 200);
    assert_eq!(r["connections"]["failed"], 0);
    let expected = r["messages"]["expected"].as_u64().unwrap();
    assert!(expected > 10_000, "{expected}");
    assert_eq!(
        r["messages"]["received"].as_u64(),
        Some(expected),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(r["gaps"], 0);
    for kind in ["fanout", "end_to_end", "handshake", "loadgen_delay"] {
        assert!(
            r["latency_us"][kind]["count"].as_u64().unwrap() > 0,
            "{kind} histogram empty"
        );
        assert!(!r["histograms"][kind].as_str().unwrap().is_empty());
    }
    assert_eq!(r["latency_us"]["fanout"]["count"].as_u64(), Some(expected));
    let workers = r["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(
        workers
            .iter()
            .map(|w| w["established"].as_u64().unwrap())
            .sum::<u64>(),
        200
    );
    assert!(r["servers"][0]["cpu_seconds"].as_f64().unwrap() > 0.0);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("fan-out") && human.contains("p99.9"),
        "{human}"
    );
}

#[test]
fn every_connection_comes_back_after_a_server_restart() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let first = Server::start(
        &listen,
        &[
            "--symbols",
            "50",
            "--rate",
            "500",
            "--drain-timeout",
            "1s",
            "--drain-period",
            "1s",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let run = Command::new(loadgen())
        .args([
            "--url",
            &format!("ws://{listen}/ws"),
            "--connections",
            "100",
            "--procs",
            "2",
            "--symbols-per-conn",
            "2",
        ])
        .args(["--duration", "8s", "--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    first.wait_metric("tickcast_subscriptions", |v| v == 200.0);
    // SAFETY: signals the server this test started.
    unsafe { libc::kill(first.child.id() as i32, libc::SIGTERM) };
    let mut first = first;
    let _ = first.child.wait();
    let second = Server::start(&listen, &["--symbols", "50", "--rate", "500"]);
    // Backoff with full jitter starts at up to 1 s: all are back well within the run.
    second.wait_metric("tickcast_connections", |v| v == 100.0);
    second.wait_metric("tickcast_subscriptions", |v| v == 200.0);
    let out = run.wait_with_output().unwrap();
    assert_ran(&out);
    let r = report(&json);
    assert_eq!(r["connections"]["established"], 100);
    assert_eq!(r["connections"]["reconnects"], 100);
    assert_eq!(
        r["closes"]["1001"],
        100,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        r["connections"]["reconnect_messages"], 100,
        "each close came after a reconnect message"
    );
    assert!(r["messages"]["received"].as_u64().unwrap() > 0);
}

#[test]
fn an_authenticated_server_is_loaded_with_a_token_each_within_its_handshake_rate() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "loadgen-test-secret-0123456789").unwrap();
    let secret = secret.to_str().unwrap();
    let server = Server::start(
        "127.0.0.1:0",
        &[
            "--auth-secret-file",
            secret,
            "--max-handshake-rate",
            "40",
            "--symbols",
            "50",
        ],
    );
    let mut refused_seen = 0;
    for token_in in ["query", "header"] {
        let json = dir.path().join(format!("report-{token_in}.json"));
        let out = Command::new(loadgen())
            .args([
                "--url",
                &format!("ws://{}/ws", server.addr),
                "--connections",
                "120",
                "--procs",
                "2",
                "--symbols-per-conn",
                "2",
            ])
            .args(["--auth-secret-file", secret, "--token-in", token_in])
            .args(["--duration", "1s", "--json", json.to_str().unwrap()])
            .output()
            .unwrap();
        assert_ran(&out);
        let r = report(&json);
        let human = String::from_utf8_lossy(&out.stdout);
        assert_eq!(r["connections"]["established"], 120, "{human}");
        assert_eq!(r["connections"]["failed"], 0, "{human}");
        // 120 at once against 40/s: most wait out a Retry-After first.
        let refused = r["connections"]["refused_retry_after"].as_u64().unwrap();
        assert!(refused > 0, "{human}");
        refused_seen += refused;
        assert!(r["messages"]["received"].as_u64().unwrap() > 0, "{human}");
    }
    // Every token was good (no auth failure of any kind), and the server's
    // rate refusals are the ones loadgen counted and waited out.
    let text = server.metrics_text();
    let auth_failures: f64 = text
        .lines()
        .filter(|l| l.starts_with("tickcast_auth_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(auth_failures, 0.0);
    assert_eq!(
        server.metric("tickcast_refused_total{reason=\"handshake_rate\"}"),
        refused_seen as f64
    );
}

#[test]
fn a_wrong_secret_is_reported_as_refused_upgrades_not_retried_forever() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, "the-servers-secret-0123456789").unwrap();
    std::fs::write(&wrong, "not-the-servers-secret-012345").unwrap();
    let server = Server::start(
        "127.0.0.1:0",
        &["--auth-secret-file", right.to_str().unwrap()],
    );
    let out = Command::new(loadgen())
        .args([
            "--url",
            &format!("ws://{}/ws", server.addr),
            "--connections",
            "5",
            "--duration",
            "1s",
        ])
        .args(["--auth-secret-file", wrong.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("401"), "{text}");
}

/// The reconnect storm of RELIABILITY.md, small: the node is killed
/// (SIGKILL) under 600 subscribed connections and restarted with a handshake
/// rate limit. Every client comes back (none gives up) through the 503s,
/// resubscribes from nothing on the new epoch, and sees no `seq` gap.
#[test]
fn after_a_sigkill_every_client_comes_back_through_the_rate_limit_with_no_gap() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let flags = [
        "--symbols",
        "50",
        "--rate",
        "500",
        "--max-handshake-rate",
        "200",
    ];
    let first = Server::start(&listen, &flags);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let run = Command::new(loadgen())
        .args([
            "--url",
            &format!("ws://{listen}/ws"),
            "--connections",
            "600",
            "--procs",
            "2",
            "--symbols-per-conn",
            "3",
        ])
        .args(["--duration", "15s", "--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    first.wait_metric("tickcast_subscriptions", |v| v == 1800.0);
    let refused_before = first.metric("tickcast_refused_total{reason=\"handshake_rate\"}");
    let mut first = first;
    first.child.kill().unwrap();
    let _ = first.child.wait();
    let second = Server::start(&listen, &flags);
    second.wait_metric("tickcast_connections", |v| v == 600.0);
    second.wait_metric("tickcast_subscriptions", |v| v == 1800.0);
    let refused_after = second.metric("tickcast_refused_total{reason=\"handshake_rate\"}");
    assert!(refused_after > 0.0, "600 at once against 200/s");
    let out = run.wait_with_output().unwrap();
    assert_ran(&out);
    let human = String::from_utf8_lossy(&out.stdout);
    let r = report(&json);
    let c = &r["connections"];
    assert_eq!(c["established"], 600, "{human}");
    assert_eq!(c["failed"], 0, "none gave up: {human}");
    assert_eq!(c["reconnects"], 600, "{human}");
    assert_eq!(c["new_epochs"], 600, "a restarted node starts a new epoch");
    assert_eq!(
        c["refused_retry_after"].as_f64(),
        Some(refused_before + refused_after),
        "every 503 was waited out: {human}"
    );
    assert_eq!(r["gaps"], 0, "{human}");
    assert_eq!(r["stale"], 0, "{human}");
    for kind in ["outage", "resume"] {
        assert_eq!(
            r["latency_us"][kind]["count"], 600,
            "each client current again after the restart: {kind}"
        );
    }
}

#[test]
fn a_url_that_refuses_connections_is_reported_not_retried_forever() {
    let port = free_port();
    let started = Instant::now();
    let out = Command::new(loadgen())
        .args([
            "--url",
            &format!("ws://127.0.0.1:{port}/ws"),
            "--symbols",
            "AAPL",
            "--connections",
            "20",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn bad_arguments_exit_2_naming_the_problem() {
    for (args, named) in [
        (&["--connections", "10"][..], "--url"),
        (&["--url", "http://x:1/ws"], "ws://"),
        (&["--url", "ws://127.0.0.1:1/ws", "--procs", "0"], "--procs"),
        (
            &["--url", "ws://127.0.0.1:1/ws", "--source-addrs", "10.0.0.1"],
            "loopback",
        ),
        (
            &["--url", "ws://127.0.0.1:1/ws", "--duration", "5x"],
            "--duration",
        ),
        (
            &["--url", "ws://127.0.0.1:1/ws", "--feed", "udp://x"],
            "--feed",
        ),
        (
            &["--url", "ws://127.0.0.1:1/ws", "--connections", "0"],
            "--connections",
        ),
    ] {
        let out = Command::new(loadgen()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?} should name {named}: {err}");
    }
}

#[test]
fn live_metrics_are_served_during_a_run() {
    let server = Server::start("127.0.0.1:0", &["--symbols", "20", "--rate", "200"]);
    let metrics_port = free_port();
    let mut run = Command::new(loadgen())
        .args([
            "--url",
            &format!("ws://{}/ws", server.addr),
            "--connections",
            "20",
            "--procs",
            "1",
        ])
        .args([
            "--duration",
            "3s",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let page = loop {
        let page = TcpStream::connect(("127.0.0.1", metrics_port))
            .ok()
            .and_then(|mut s| {
                write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
                let mut t = String::new();
                s.read_to_string(&mut t).ok()?;
                Some(t)
            });
        if let Some(p) = page.filter(|p| p.contains("loadgen_connections_established 20")) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "live metrics never showed 20 connections"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for name in [
        "loadgen_messages_received_total",
        "loadgen_fanout_latency_seconds{quantile=\"0.99\"}",
        "loadgen_gaps_total",
    ] {
        assert!(page.contains(name), "{name} missing");
    }
    assert!(run.wait().unwrap().success());
}
