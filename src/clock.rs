//! Wall-clock timestamps in microseconds since the Unix epoch.
//!
//! `ts` and `pub` on the wire are realtime microseconds so that a client on the
//! same clock can measure latency as "receipt − pub"; everything else uses
//! `Instant`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch on the realtime clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch on the realtime clock.
pub fn now_secs() -> u64 {
    now_us() / 1_000_000
}
