//! The run's report: a human summary, and the same as JSON (with histograms).

use crate::stats::{encode, Percentiles, Stats};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Figures read from a server's own `/metrics` around the measurement.
#[derive(Debug, Clone, Default)]
pub struct ServerFigures {
    pub url: String,
    pub cpu_seconds: f64,
    pub rss_bytes: f64,
    pub connections: f64,
    pub messages_sent: f64,
    pub dropped: f64,
    /// Socket writes and the frames they completed (frames per write: corking).
    pub writes: f64,
    pub frames_written: f64,
}

impl ServerFigures {
    /// Frames per socket write during the measurement (0: no write).
    pub fn frames_per_write(&self) -> f64 {
        if self.writes > 0.0 {
            self.frames_written / self.writes
        } else {
            0.0
        }
    }
}

pub struct Run {
    pub target: u64,
    pub workers: Vec<(u32, Vec<String>, u64)>,
    pub connect_s: f64,
    pub duration_s: f64,
    pub stats: Stats,
    pub feed_sent: Option<BTreeMap<String, u64>>,
    pub servers: Vec<ServerFigures>,
}

impl Run {
    /// Messages the clients should have received for what the feed sent
    /// (when every tick becomes one update: no two ticks of a symbol within a window).
    pub fn expected(&self) -> Option<u64> {
        let sent = self.feed_sent.as_ref()?;
        Some(
            sent.iter()
                .map(|(s, n)| n * self.stats.counters.subscribers.get(s).copied().unwrap_or(0))
                .sum(),
        )
    }

    pub fn json(&self) -> Value {
        let c = &self.stats.counters;
        let lat = |p: Percentiles| json!({"p50":p.p50,"p90":p.p90,"p99":p.p99,"p999":p.p999,"p9999":p.p9999,"max":p.max,"count":p.count});
        let delivered = c.received + c.snapshots;
        json!({
            "duration_s": self.duration_s,
            "connect_s": self.connect_s,
            "connections": {"target": self.target, "established": c.established, "failed": c.failed, "reconnects": c.reconnects,
                "refused_retry_after": c.refused, "reconnect_messages": c.reconnect_messages, "new_epochs": c.new_epochs},
            "messages": {
                "received": c.received,
                "snapshots": c.snapshots,
                "per_second": if self.duration_s > 0.0 { c.received as f64 / self.duration_s } else { 0.0 },
                "expected": self.expected(),
            },
            "gaps": c.gaps,
            "stale": c.stale,
            "latency_us": {
                "fanout": lat(Percentiles::of(&self.stats.fanout)),
                "end_to_end": lat(Percentiles::of(&self.stats.end_to_end)),
                "handshake": lat(Percentiles::of(&self.stats.handshake)),
                "loadgen_delay": lat(Percentiles::of(&self.stats.loadgen_delay)),
                "outage": lat(Percentiles::of(&self.stats.outage)),
                "resume": lat(Percentiles::of(&self.stats.resume)),
            },
            "closes": c.closes,
            "errors": c.errors,
            "failures": c.failures,
            "histograms": {
                "fanout": encode(&self.stats.fanout),
                "end_to_end": encode(&self.stats.end_to_end),
                "handshake": encode(&self.stats.handshake),
                "loadgen_delay": encode(&self.stats.loadgen_delay),
                "outage": encode(&self.stats.outage),
                "resume": encode(&self.stats.resume),
            },
            "loadgen": {
                "rss_bytes": c.rss_bytes,
                "rss_per_connection_bytes": c.rss_bytes.checked_div(self.target.max(1)),
                "cpu_seconds": c.cpu_ms as f64 / 1000.0,
                "loop_lag_max_ms": c.loop_lag_max_ms,
                "saturated": c.loop_lag_over_50ms > 0,
            },
            "servers": self.servers.iter().map(|s| json!({
                "url": s.url,
                "cpu_seconds": s.cpu_seconds,
                "cpu_us_per_message": if s.messages_sent > 0.0 { s.cpu_seconds * 1e6 / s.messages_sent } else { 0.0 },
                "rss_bytes": s.rss_bytes,
                "connections": s.connections,
                "rss_per_connection_bytes": if s.connections > 0.0 { s.rss_bytes / s.connections } else { 0.0 },
                "messages_sent": s.messages_sent,
                "dropped": s.dropped,
                "frames_per_write": s.frames_per_write(),
            })).collect::<Vec<_>>(),
            "feed": self.feed_sent.as_ref().map(|m| json!({"ticks_sent": m.values().sum::<u64>()})),
            "workers": self.workers.iter().map(|(pid, src, est)| json!({"pid": pid, "source_addr": src.join(","), "established": est})).collect::<Vec<_>>(),
            "messages_delivered": delivered,
        })
    }

    pub fn human(&self) -> String {
        let c = &self.stats.counters;
        let mut s = String::new();
        let rate = if self.duration_s > 0.0 {
            c.received as f64 / self.duration_s
        } else {
            0.0
        };
        s += &format!(
            "connections  {}/{} established, {} failed, {} reconnects ({} refused with Retry-After, {} reconnect messages); all connected in {:.1} s ({} workers)\n",
            c.established, self.target, c.failed, c.reconnects, c.refused, c.reconnect_messages, self.connect_s, self.workers.len()
        );
        s += &format!(
            "messages     {} received in {:.1} s = {:.1}/s; {} snapshots; {} gaps; {} stale",
            c.received, self.duration_s, rate, c.snapshots, c.gaps, c.stale
        );
        if let Some(e) = self.expected() {
            s += &format!("; the feed implies {e}");
        }
        s += "\nlatency (µs)       p50       p90       p99     p99.9    p99.99       max     count\n";
        for (name, h) in [
            ("fan-out", &self.stats.fanout),
            ("end-to-end", &self.stats.end_to_end),
            ("handshake", &self.stats.handshake),
            ("own delay", &self.stats.loadgen_delay),
            ("outage", &self.stats.outage),
            ("resume", &self.stats.resume),
        ] {
            let p = Percentiles::of(h);
            s += &format!(
                "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                name, p.p50, p.p90, p.p99, p.p999, p.p9999, p.max, p.count
            );
        }
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}×{v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        s += &format!(
            "closes       {}\nerrors       {}\n",
            list(&c.closes),
            list(&c.errors)
        );
        if !c.failures.is_empty() {
            s += &format!("failed       {}\n", list(&c.failures));
        }
        for sv in &self.servers {
            let per_msg = if sv.messages_sent > 0.0 {
                sv.cpu_seconds * 1e6 / sv.messages_sent
            } else {
                0.0
            };
            let per_conn = if sv.connections > 0.0 {
                sv.rss_bytes / sv.connections / 1024.0
            } else {
                0.0
            };
            s += &format!(
                "server       {}: CPU {:.2} s ({:.2} µs per message sent), RSS {:.1} MiB ({:.2} KiB per connection), {} dropped, {:.2} frames per write\n",
                sv.url, sv.cpu_seconds, per_msg, sv.rss_bytes / 1048576.0, per_conn, sv.dropped, sv.frames_per_write()
            );
        }
        s += &format!(
            "loadgen      CPU {:.2} s, RSS {:.1} MiB ({:.2} KiB per connection), event loop lag up to {} ms\n",
            c.cpu_ms as f64 / 1000.0,
            c.rss_bytes as f64 / 1048576.0,
            c.rss_bytes as f64 / self.target.max(1) as f64 / 1024.0,
            c.loop_lag_max_ms
        );
        if c.loop_lag_over_50ms > 0 {
            s += &format!(
                "WARNING      loadgen saturated: its event loops fell behind {} times by over 50 ms; its own delay is measured apart (\"own delay\"), but the machine is saturated and every figure includes that contention\n",
                c.loop_lag_over_50ms
            );
        }
        s
    }
}
