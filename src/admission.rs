//! How many clients the server takes at once, so that a crowd (or an
//! attacker) meets a clear refusal instead of an exhausted process.
//!
//! Two counts, each with a hard cap: connections in their HTTP phase
//! (`--max-handshakes`: a slow or idle request holds a buffer and a task)
//! and WebSocket sessions (`--max-connections`). Their defaults come from
//! the open-files limit, keeping descriptors in reserve for health checks,
//! metrics, the feed and NATS, so the process never reaches the limit
//! itself. A permit is taken before the work starts and given back when its
//! holder is dropped, whatever ends it.

use crate::metrics::METRICS;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Descriptors kept out of both caps: listeners, NATS, log files, the
/// runtime's own, and a few HTTP requests beyond the handshake cap.
pub const RESERVED_FDS: usize = 64;

pub struct Admission {
    max_connections: usize,
    max_handshakes: usize,
    connections: AtomicUsize,
    handshakes: AtomicUsize,
}

/// A WebSocket session's place; given back on drop.
pub struct ConnectionPermit(Arc<Admission>);

/// A connection's place in the HTTP phase; given back on drop.
pub struct HandshakePermit(Arc<Admission>);

impl Admission {
    pub fn new(max_connections: usize, max_handshakes: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_connections,
            max_handshakes,
            connections: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
        })
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// A place for one more WebSocket session, if there is one.
    pub fn try_connection(self: &Arc<Self>) -> Option<ConnectionPermit> {
        take(&self.connections, self.max_connections).then(|| ConnectionPermit(self.clone()))
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

fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
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
        let a = Admission::new(2, 1);
        let c1 = a.try_connection().unwrap();
        let _c2 = a.try_connection().unwrap();
        assert!(a.try_connection().is_none());
        drop(c1);
        assert!(a.try_connection().is_some());
        let h = a.try_handshake().unwrap();
        assert!(a.try_handshake().is_none());
        drop(h);
        assert!(a.try_handshake().is_some());
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
