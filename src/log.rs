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
