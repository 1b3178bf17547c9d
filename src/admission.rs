//! How many clients the server takes at once, so that a crowd (or an
//! attacker) meets a clear refusal instead of an exhausted process.
//!
//! Two counts, each with a hard cap: connections in their HTTP phase
//! (`--max-handshakes`: a slow or idle request holds a buffer and a task)
//! and client sessions, WebSocket or SSE (`--max-connections`, and
//! optionally `--max-connections-per-ip` per client address); and a rate,
//! new sessions per second (`--max-handshake-rate`, a token bucket), so that
//! a reconnect storm is spread out by `Retry-After` instead of taken at once. Their defaults come from
//! the open-files limit, keeping descriptors in reserve for health checks,
//! metrics, the feed and NATS, so the process never reaches the limit
//! itself. A permit is taken before the work starts and given back when its
//! holder is dropped, whatever ends it.

use crate::metrics::METRICS;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Descriptors kept out of both caps: listeners, NATS, log files, the
/// runtime's own, and a few HTTP requests beyond the handshake cap.
pub const RESERVED_FDS: usize = 64;

pub struct Admission {
    max_connections: usize,
    max_handshakes: usize,
    connections: AtomicUsize,
    handshakes: AtomicUsize,
    /// Sessions per client address, when capped (0: not).
    max_per_address: u32,
    /// Addresses with sessions now (one entry per address: bounded by
    /// `max_connections`).
    per_address: Mutex<HashMap<IpAddr, u32>>,
    /// `--max-handshake-rate`, when set.
    rate: Option<HandshakeRate>,
}

/// Why there is no place for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `--max-connections`.
    Node,
    /// `--max-connections-per-ip`.
    Address,
}

/// A session's place; given back on drop.
pub struct ConnectionPermit {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
}

/// A connection's place in the HTTP phase; given back on drop.
pub struct HandshakePermit(Arc<Admission>);

impl Admission {
    pub fn new(max_connections: usize, max_handshakes: usize) -> Arc<Admission> {
        Self::with_per_address(max_connections, max_handshakes, 0)
    }

    pub fn with_per_address(
        max_connections: usize,
        max_handshakes: usize,
        max_per_address: u32,
    ) -> Arc<Admission> {
        Self::build(max_connections, max_handshakes, max_per_address, 0)
    }

    /// Every cap; `max_handshake_rate` 0: no rate limit.
    pub fn build(
        max_connections: usize,
        max_handshakes: usize,
        max_per_address: u32,
        max_handshake_rate: u32,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            max_connections,
            max_handshakes,
            connections: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            max_per_address,
            per_address: Mutex::new(HashMap::new()),
            rate: HandshakeRate::new(max_handshake_rate),
        })
    }

    /// A new session within `--max-handshake-rate`, or the seconds a refused
    /// client should wait (for `Retry-After`).
    pub fn try_rate(&self) -> Result<(), u32> {
        match &self.rate {
            Some(rate) => rate.try_take(Instant::now()),
            None => Ok(()),
        }
    }

    /// Gives back a place taken by [`Admission::try_rate`] (its token was refused).
    pub fn give_back_rate(&self) {
        if let Some(rate) = &self.rate {
            rate.give_back();
        }
    }

    /// Without taking anything: the seconds a new session would be told to
    /// wait now (`Retry-After`), or `None` if it would be let in at this rate.
    pub fn rate_wait(&self) -> Option<u32> {
        self.rate.as_ref()?.wait(Instant::now())
    }

    /// Whether every connection place is taken (without taking one).
    pub fn is_full(&self) -> bool {
        self.connections.load(Ordering::Acquire) >= self.max_connections
    }

    pub fn max_per_address(&self) -> u32 {
        self.max_per_address
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// A place for one more session from `address`, if there is one.
    pub fn try_connection(self: &Arc<Self>, address: IpAddr) -> Result<ConnectionPermit, Full> {
        if !take(&self.connections, self.max_connections) {
            return Err(Full::Node);
        }
        let mut permit = ConnectionPermit {
            admission: self.clone(),
            address: None,
        };
        if self.max_per_address > 0 {
            let mut map = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(address).or_insert(0);
            if *n >= self.max_per_address {
                return Err(Full::Address);
            }
            *n += 1;
            permit.address = Some(address);
        }
        Ok(permit)
    }

    /// A place for one more connection in its HTTP phase, if there is one.
    pub fn try_handshake(self: &Arc<Self>) -> Option<HandshakePermit> {
        if !take(&self.handshakes, self.max_handshakes) {
            return None;
        }
        METRICS.handshakes.add(1);
        Some(HandshakePermit(self.clone()))
    }
}

/// New sessions per second: a token bucket holding one second's worth.
pub struct HandshakeRate {
    rate: f64,
    state: Mutex<RateState>,
}

struct RateState {
    tokens: f64,
    at: Instant,
    /// Refusals in the current second, and in the one before: the crowd
    /// waiting, which `Retry-After` spreads over the seconds it needs.
    window: Instant,
    refused_now: u32,
    refused_before: u32,
}

/// The longest `Retry-After` given, in seconds.
const MAX_RETRY_AFTER: u32 = 60;

impl HandshakeRate {
    pub fn new(per_second: u32) -> Option<HandshakeRate> {
        (per_second > 0).then(|| {
            let now = Instant::now();
            HandshakeRate {
                rate: per_second as f64,
                state: Mutex::new(RateState {
                    tokens: per_second as f64,
                    at: now,
                    window: now,
                    refused_now: 0,
                    refused_before: 0,
                }),
            }
        })
    }

    /// Returns one place.
    pub fn give_back(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.tokens = (s.tokens + 1.0).min(self.rate);
    }

    /// The bucket at `now`: refilled at the rate since it was last taken from.
    fn tokens_at(&self, s: &RateState, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
        (s.tokens + elapsed * self.rate).min(self.rate)
    }

    /// What [`HandshakeRate::try_take`] would say now, taking nothing.
    pub fn wait(&self, now: Instant) -> Option<u32> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.tokens_at(&s, now) >= 1.0 {
            return None;
        }
        let crowd = s.refused_now.max(s.refused_before).max(1) as f64;
        Some(self.retry_after(crowd))
    }

    /// A random whole number of seconds, from 1 up to what `crowd` waiting
    /// clients need at this rate.
    fn retry_after(&self, crowd: f64) -> u32 {
        let spread = (crowd / self.rate)
            .ceil()
            .clamp(1.0, MAX_RETRY_AFTER as f64) as u32;
        fastrand::u32(1..=spread)
    }

    /// Takes a place, or says how many seconds to wait: a random whole
    /// number from 1 up to what the crowd refused lately needs at this rate
    /// (the crowd spread evenly over that time comes back at the rate).
    pub fn try_take(&self, now: Instant) -> Result<(), u32> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.tokens = self.tokens_at(&s, now);
        s.at = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return Ok(());
        }
        let since = now.saturating_duration_since(s.window);
        if since >= Duration::from_secs(1) {
            s.refused_before = if since < Duration::from_secs(2) {
                s.refused_now
            } else {
                0
            };
            s.refused_now = 0;
            s.window = now;
        }
        s.refused_now = s.refused_now.saturating_add(1);
        let crowd = s.refused_now.max(s.refused_before) as f64;
        let spread = (crowd / self.rate)
            .ceil()
            .clamp(1.0, MAX_RETRY_AFTER as f64) as u32;
        Err(fastrand::u32(1..=spread))
    }
}

fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let a = &self.admission;
        a.connections.fetch_sub(1, Ordering::AcqRel);
        if let Some(address) = self.address {
            let mut map = a.per_address.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&address) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&address);
                }
            }
        }
    }
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::AcqRel);
        METRICS.handshakes.add(-1);
    }
}

/// The open-files limit this process runs under, after raising its soft
/// limit to the hard one (a process may; nothing system-wide changes).
pub fn open_files_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Default caps for an open-files limit: handshakes get an eighth of it (at
/// most 1,024); connections what is left after handshakes, feed publishers
/// and [`RESERVED_FDS`].
pub fn default_caps(open_files: usize, feed_publishers: usize) -> (usize, usize) {
    let handshakes = (open_files / 8).clamp(1, 1024);
    let connections = open_files
        .saturating_sub(handshakes + feed_publishers + RESERVED_FDS)
        .max(1);
    (connections, handshakes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_capped_and_given_back_on_drop() {
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let a = Admission::new(2, 1);
        let c1 = a.try_connection(here).unwrap();
        let _c2 = a.try_connection(here).unwrap();
        assert_eq!(a.try_connection(here).err(), Some(Full::Node));
        drop(c1);
        assert!(a.try_connection(here).is_ok());
        let h = a.try_handshake().unwrap();
        assert!(a.try_handshake().is_none());
        drop(h);
        assert!(a.try_handshake().is_some());
    }

    #[test]
    fn per_address_caps_count_each_address_and_forget_it_at_zero() {
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a = Admission::with_per_address(10, 1, 2);
        let x1 = a.try_connection(x).unwrap();
        let x2 = a.try_connection(x).unwrap();
        assert_eq!(a.try_connection(x).err(), Some(Full::Address));
        let y1 = a
            .try_connection(y)
            .expect("another address has its own count");
        assert_eq!(
            a.connections.load(Ordering::Acquire),
            3,
            "a refused one holds no place"
        );
        drop((x1, x2, y1));
        assert!(a.per_address.lock().unwrap().is_empty());
        assert!(a.try_connection(x).is_ok());
    }

    #[test]
    fn defaults_keep_descriptors_in_reserve() {
        let (c, h) = default_caps(20_000, 64);
        assert_eq!(h, 1024);
        assert_eq!(c, 20_000 - 1024 - 64 - RESERVED_FDS);
        let (c, h) = default_caps(1024, 64);
        assert_eq!((c, h), (1024 - 128 - 64 - RESERVED_FDS, 128));
        assert_eq!(default_caps(10, 64), (1, 1));
    }
}
