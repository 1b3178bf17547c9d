//! What a worker measures, and how workers' measurements are merged exactly.
//!
//! Latencies are recorded in microseconds into HDR histograms (3 significant
//! figures, auto-resizing). Between processes they travel as V2-serialized,
//! base64-encoded histograms and are added, so merged percentiles are those
//! of one histogram of all samples.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    B64.encode(bytes)
}

pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = B64
        .decode(s)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("bad histogram: {e:?}"))
}

/// Percentiles of a histogram, in µs.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            count: h.len(),
        }
    }
}

/// A worker's counters and histograms.
pub struct Stats {
    pub fanout: Histogram<u64>,
    pub end_to_end: Histogram<u64>,
    pub handshake: Histogram<u64>,
    /// How long messages waited in the socket before loadgen read them: its
    /// own delay, left out of the latencies above (they use the kernel's
    /// arrival time as receipt).
    pub loadgen_delay: Histogram<u64>,
    /// After a connection that was up ended: until the first tick on a
    /// later one (what the client went without, waits and backoff included).
    pub outage: Histogram<u64>,
    /// From the welcome of that later connection to its first tick (the
    /// server's share: subscribe, snapshots).
    pub resume: Histogram<u64>,
    pub counters: Counters,
}

/// Everything countable; summed across workers.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Connections open now.
    pub established: u64,
    /// Connections that never got through (after their retries).
    pub failed: u64,
    pub reconnects: u64,
    /// Upgrades refused for now (503/429 with Retry-After), and waited out.
    pub refused: u64,
    /// `reconnect` messages the server sent before closing (drain, age).
    pub reconnect_messages: u64,
    /// Welcomes with another `epoch` than the connection's last one.
    pub new_epochs: u64,
    /// Ticks (snapshots included) older than what the connection held: a
    /// stale value shown after a resume. Must stay 0.
    pub stale: u64,
    /// Live ticks (snapshots not included).
    pub received: u64,
    pub snapshots: u64,
    pub gaps: u64,
    pub closes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Why connections failed, by reason.
    pub failures: BTreeMap<String, u64>,
    /// Connections subscribed to each symbol (for what a driven feed implies).
    pub subscribers: BTreeMap<String, u64>,
    /// Worst lateness of the worker's event loop, in ms, and how often it passed 50 ms.
    pub loop_lag_max_ms: u64,
    pub loop_lag_over_50ms: u64,
    /// Resident memory and CPU time of the worker processes.
    pub rss_bytes: u64,
    pub cpu_ms: u64,
    /// When the worker's last connection was established or gave up (µs since
    /// the epoch; 0: not yet). Merged as the latest of all workers.
    pub settled_at_us: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.established += o.established;
        self.failed += o.failed;
        self.reconnects += o.reconnects;
        self.refused += o.refused;
        self.reconnect_messages += o.reconnect_messages;
        self.new_epochs += o.new_epochs;
        self.stale += o.stale;
        self.received += o.received;
        self.snapshots += o.snapshots;
        self.gaps += o.gaps;
        for (map, other) in [
            (&mut self.closes, &o.closes),
            (&mut self.errors, &o.errors),
            (&mut self.failures, &o.failures),
            (&mut self.subscribers, &o.subscribers),
        ] {
            for (k, v) in other {
                *map.entry(k.clone()).or_default() += v;
            }
        }
        self.loop_lag_max_ms = self.loop_lag_max_ms.max(o.loop_lag_max_ms);
        self.loop_lag_over_50ms += o.loop_lag_over_50ms;
        self.rss_bytes += o.rss_bytes;
        self.cpu_ms += o.cpu_ms;
        self.settled_at_us = self.settled_at_us.max(o.settled_at_us);
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            fanout: new_histogram(),
            end_to_end: new_histogram(),
            handshake: new_histogram(),
            loadgen_delay: new_histogram(),
            outage: new_histogram(),
            resume: new_histogram(),
            counters: Counters::default(),
        }
    }
}

/// What a worker reports (every second, and once at the end).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct WorkerReport {
    pub pid: u32,
    pub source_addrs: Vec<String>,
    pub final_report: bool,
    pub counters: Counters,
    /// Serialized histograms: `fanout`, `end_to_end`, `handshake`,
    /// `loadgen_delay`, `outage`, `resume`.
    pub histograms: BTreeMap<String, String>,
}

impl Stats {
    pub fn report(&self, pid: u32, source_addrs: &[String], final_report: bool) -> WorkerReport {
        let histograms = [
            ("fanout", &self.fanout),
            ("end_to_end", &self.end_to_end),
            ("handshake", &self.handshake),
            ("loadgen_delay", &self.loadgen_delay),
            ("outage", &self.outage),
            ("resume", &self.resume),
        ]
        .into_iter()
        .map(|(k, h)| (k.to_string(), encode(h)))
        .collect();
        WorkerReport {
            pid,
            source_addrs: source_addrs.to_vec(),
            final_report,
            counters: self.counters.clone(),
            histograms,
        }
    }

    /// Starts the measurement window: latencies, messages, gaps and loop lag
    /// count from here. Connections, reconnects, closes and errors count over
    /// the whole run.
    pub fn reset_measurement(&mut self) {
        self.fanout.reset();
        self.end_to_end.reset();
        self.loadgen_delay.reset();
        let c = &mut self.counters;
        c.received = 0;
        c.snapshots = 0;
        c.gaps = 0;
        c.loop_lag_max_ms = 0;
        c.loop_lag_over_50ms = 0;
    }
}

/// Adds reports into one set of histograms and counters.
pub fn merge(reports: &[WorkerReport]) -> Result<Stats, String> {
    let mut total = Stats::default();
    for r in reports {
        total.counters.add(&r.counters);
        for (name, h) in [
            ("fanout", &mut total.fanout),
            ("end_to_end", &mut total.end_to_end),
            ("handshake", &mut total.handshake),
            ("loadgen_delay", &mut total.loadgen_delay),
            ("outage", &mut total.outage),
            ("resume", &mut total.resume),
        ] {
            if let Some(s) = r.histograms.get(name) {
                h.add(decode(s)?)
                    .map_err(|e| format!("cannot add {name} histograms: {e:?}"))?;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_workers_have_the_percentiles_of_all_samples() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut all = new_histogram();
        let mut reports = Vec::new();
        for w in 0..2 {
            let mut s = Stats::default();
            // Two differently shaped workers: one fast, one with a long tail.
            for _ in 0..50_000 {
                let v = if w == 0 {
                    rng.u64(50..2_000)
                } else {
                    rng.u64(100..5_000) + rng.u64(0..3) * rng.u64(0..200_000)
                };
                s.fanout.record(v).unwrap();
                all.record(v).unwrap();
            }
            s.counters.received = 50_000;
            s.counters.closes.insert("1001".into(), w + 1);
            reports.push(s.report(100 + w as u32, &[format!("127.0.0.{}", 2 + w)], true));
        }
        let merged = merge(&reports).unwrap();
        assert_eq!(Percentiles::of(&merged.fanout), Percentiles::of(&all));
        assert_eq!(merged.counters.received, 100_000);
        assert_eq!(merged.counters.closes["1001"], 3);
    }

    #[test]
    fn histograms_survive_the_text_channel() {
        let mut h = new_histogram();
        for v in [1, 10, 100, 1_000, 1_000_000] {
            h.record(v).unwrap();
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(Percentiles::of(&back), Percentiles::of(&h));
        assert!(decode("not base64!").is_err());
    }
}
