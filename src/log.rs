//! One-line log messages on standard error, prefixed with the UTC time.
//!
//! tickcast logs little (start, listeners, warnings, shutdown); a logging
//! framework would cost more than it gives.

/// Writes `message` to standard error with a timestamp.
pub fn write(level: &str, message: std::fmt::Arguments<'_>) {
    let us = crate::clock::now_us();
    let secs = us / 1_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    eprintln!(
        "{h:02}:{m:02}:{s:02}.{:03} {level} {message}",
        (us / 1000) % 1000
    );
}

/// Whether a log line kept in `last` (µs of its last writing) may be written
/// now: at most once per `every`, so that a storm of one event cannot flood
/// the log. Lines skipped are counted by the caller's metrics, not here.
pub fn now_and_then(last: &std::sync::atomic::AtomicU64, every: std::time::Duration) -> bool {
    use std::sync::atomic::Ordering;
    let now = crate::clock::now_us();
    let before = last.load(Ordering::Relaxed);
    now.saturating_sub(before) >= every.as_micros() as u64
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// `info!("...")`: a normal event.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write("INFO", format_args!($($arg)*)) };
}

/// `warn!("...")`: something an operator should look at.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write("WARN", format_args!($($arg)*)) };
}
