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

    fn metric(&self, series: &str) -> f64 {
        let mut s = TcpStream::connect(self.addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        tickcast::metrics::sample(&text, series).unwrap_or_else(|| panic!("no {series}"))
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
        &["--symbols", "50", "--rate", "500", "--drain-timeout", "1s"],
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
    assert!(r["messages"]["received"].as_u64().unwrap() > 0);
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
