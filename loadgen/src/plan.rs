//! How the connections are split over worker processes and source addresses.
//!
//! A process may hold 20,000 open files here, and one (source, destination)
//! address pair has about 28,000 ephemeral ports; so each worker holds at most
//! [`PER_WORKER`] connections and each source address carries at most
//! [`PER_SOURCE`] connections per destination.

use crate::cli::{Procs, WsUrl};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub const PER_WORKER: u64 = 15_000;
/// Well under the ~28,000 ports, leaving room for the previous run's
/// connections still in TIME_WAIT.
pub const PER_SOURCE: u64 = 10_000;

/// Everything one worker needs, passed to it as JSON.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct WorkerSpec {
    pub index: u32,
    pub urls: Vec<WsUrl>,
    pub connections: u64,
    /// Index of this worker's first connection overall (seeds the symbol choice).
    pub first_connection: u64,
    pub ramp: f64,
    pub sources: Vec<Ipv4Addr>,
    pub universe: Vec<String>,
    pub symbols_per_conn: u32,
    pub zipf: f64,
    pub reconnect: bool,
    /// Tokens for an authenticated server (the secret comes by environment).
    #[serde(default)]
    pub tokens: Option<crate::token::TokenSpec>,
}

/// Number of workers for `connections`.
pub fn worker_count(procs: Procs, connections: u64, cores: u64) -> u64 {
    match procs {
        Procs::Fixed(n) => n as u64,
        Procs::Auto => connections
            .div_ceil(PER_WORKER)
            .max(cores.min(connections))
            .max(1),
    }
}

/// Source addresses: the given ones, or enough consecutive ones from
/// 127.0.0.`first` (the caller varies `first` between runs, so that a run
/// does not meet the previous run's ports in TIME_WAIT).
pub fn sources(
    given: Option<Vec<Ipv4Addr>>,
    connections: u64,
    urls: usize,
    first: u8,
) -> Vec<Ipv4Addr> {
    given.unwrap_or_else(|| {
        let per_destination = connections.div_ceil(urls as u64);
        let n = per_destination.div_ceil(PER_SOURCE).max(1) as u32;
        (0..n)
            .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, first)) + i))
            .collect()
    })
}

/// Splits connections and sources into `workers` specs (sources round-robin).
pub fn split(template: &WorkerSpec, workers: u64, sources: &[Ipv4Addr]) -> Vec<WorkerSpec> {
    let mut first = 0;
    (0..workers)
        .map(|w| {
            let n = template.connections / workers + u64::from(w < template.connections % workers);
            let mine: Vec<Ipv4Addr> = sources
                .iter()
                .copied()
                .skip(w as usize % sources.len())
                .step_by(workers as usize)
                .collect();
            let spec = WorkerSpec {
                index: w as u32,
                connections: n,
                first_connection: first,
                ramp: template.ramp / workers as f64,
                // With more workers than addresses, workers share them.
                sources: if mine.is_empty() {
                    vec![sources[w as usize % sources.len()]]
                } else {
                    mine
                },
                ..template.clone()
            };
            first += n;
            spec
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(connections: u64) -> WorkerSpec {
        WorkerSpec {
            index: 0,
            urls: vec![],
            connections,
            first_connection: 0,
            ramp: 1000.0,
            sources: vec![],
            universe: vec![],
            symbols_per_conn: 5,
            zipf: 1.0,
            reconnect: true,
            tokens: None,
        }
    }

    #[test]
    fn auto_keeps_each_worker_under_the_open_files_limit() {
        assert_eq!(worker_count(Procs::Auto, 100_000, 2), 7);
        assert_eq!(worker_count(Procs::Auto, 15_000, 2), 2);
        assert_eq!(worker_count(Procs::Auto, 1, 2), 1);
        assert_eq!(worker_count(Procs::Fixed(3), 10, 2), 3);
    }

    #[test]
    fn connections_and_sources_are_shared_out_exactly() {
        let srcs = sources(None, 100_000, 1, 2);
        assert_eq!(srcs.len(), 10);
        assert_eq!(srcs[0], Ipv4Addr::new(127, 0, 0, 2));
        assert!(srcs.iter().all(|a| a.is_loopback()));
        let specs = split(&template(100_001), 7, &srcs);
        assert_eq!(specs.iter().map(|s| s.connections).sum::<u64>(), 100_001);
        assert!(specs
            .iter()
            .all(|s| s.connections <= PER_WORKER + 1 && !s.sources.is_empty()));
        assert_eq!(specs[1].first_connection, specs[0].connections);
        let used: std::collections::HashSet<_> =
            specs.iter().flat_map(|s| s.sources.clone()).collect();
        assert_eq!(used.len(), 10, "every address is used");
    }
}
