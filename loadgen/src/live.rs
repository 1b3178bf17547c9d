//! `--metrics-listen`: the live figures of a run, for Prometheus.

use crate::stats::{Percentiles, Stats};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// The latest merged figures, as `/metrics` text.
pub type Page = Arc<Mutex<String>>;

pub fn serve(addr: SocketAddr) -> Result<Page, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    let page: Page = Arc::new(Mutex::new(String::new()));
    let shared = page.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req);
            let body = shared.lock().map(|p| p.clone()).unwrap_or_default();
            let (status, body) = if req.starts_with(b"GET /metrics") {
                ("200 OK", body)
            } else {
                ("404 Not Found", "not found\n".into())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(page)
}

pub fn render(stats: &Stats, target: u64, workers: usize) -> String {
    let c = &stats.counters;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "loadgen_connections_target",
        "gauge",
        "Connections loadgen was asked to hold.",
        target.to_string(),
    );
    metric(
        "loadgen_connections_established",
        "gauge",
        "Connections open now.",
        c.established.to_string(),
    );
    metric(
        "loadgen_connections_failed_total",
        "counter",
        "Connections that never got through.",
        c.failed.to_string(),
    );
    metric(
        "loadgen_reconnects_total",
        "counter",
        "Reconnects after a drop.",
        c.reconnects.to_string(),
    );
    metric(
        "loadgen_messages_received_total",
        "counter",
        "Live tick messages received.",
        c.received.to_string(),
    );
    metric(
        "loadgen_gaps_total",
        "counter",
        "Missing seq numbers, summed over symbols and connections.",
        c.gaps.to_string(),
    );
    metric(
        "loadgen_workers",
        "gauge",
        "Worker processes.",
        workers.to_string(),
    );
    metric(
        "loadgen_loop_lag_max_seconds",
        "gauge",
        "Worst event-loop lateness of any worker.",
        (c.loop_lag_max_ms as f64 / 1000.0).to_string(),
    );
    for (name, help, h) in [
        (
            "loadgen_fanout_latency_seconds",
            "Receipt minus the server's pub stamp.",
            &stats.fanout,
        ),
        (
            "loadgen_end_to_end_latency_seconds",
            "Receipt minus the feed's ts stamp.",
            &stats.end_to_end,
        ),
    ] {
        let p = Percentiles::of(h);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
        for (q, v) in [
            ("0.5", p.p50),
            ("0.9", p.p90),
            ("0.99", p.p99),
            ("0.999", p.p999),
            ("0.9999", p.p9999),
        ] {
            let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", v as f64 / 1e6);
        }
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            h.mean() * h.len() as f64 / 1e6,
            h.len()
        );
    }
    out
}
