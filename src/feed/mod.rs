//! Sources of ticks (protocol §8), each on its own OS threads, never on tokio.
//!
//! A source turns input into [`Tick`]s and sends them in batches over a
//! bounded crossbeam channel to the hub. `send` blocks when the channel is
//! full: a TCP publisher's socket is then simply not read (TCP flow control
//! slows it down) and no tick is ever dropped silently.

pub mod accept;
pub mod auth;
pub mod lines;
pub mod parse;
pub mod replay;
pub mod synthetic;
pub mod tcp;

use crate::config::{FeedSource, ServeArgs};
pub use crate::tick::Tick;
use accept::TsBounds;
use crossbeam_channel::Sender;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Ticks travel to the hub in batches, to pay for the channel once per batch.
pub type Batch = Vec<Tick>;

/// Batches in flight between the feed and the hub before the feed blocks.
pub const CHANNEL_BATCHES: usize = 64;

/// Most ticks in one batch.
pub const MAX_BATCH: usize = 512;

/// Stack of a TCP publisher's thread. Parsing needs little: deep nesting
/// never recurses deeply (see [`parse::parse_line`]; a unit test parses the
/// worst lines on a stack this size, in debug builds).
pub const PUBLISHER_STACK: usize = 256 * 1024;

/// Why a source could not start: the exit status differs (protocol §9).
#[derive(Debug)]
pub enum StartFailure {
    /// A bad value (e.g. a file that cannot be opened): exit 2.
    Usage(String),
    /// The listener cannot bind: exit 1.
    Listen(String),
    /// A thread could not be started: exit 1.
    Thread(String),
}

/// Whether a `tcp://` feed on `addr` can be reached from beyond this host,
/// which then needs a feed secret.
pub fn beyond_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => !ip.is_loopback(),
        IpAddr::V6(ip) => {
            !(ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
    }
}

/// Starts the configured source. Returns a line describing it for the log,
/// or what failed (e.g. the TCP address is taken). `secret`: publishers of a
/// `tcp://` feed must authenticate with it.
pub fn start(
    args: &ServeArgs,
    secret: Option<auth::FeedSecret>,
    tx: Sender<Batch>,
    ready: Arc<AtomicBool>,
) -> Result<String, StartFailure> {
    let description = match &args.feed {
        FeedSource::Synthetic => {
            if args.symbols > args.max_feed_symbols {
                crate::warn!(
                    "--symbols {} is above --max-feed-symbols {}: the ticks of the others are rejected (symbol_limit)",
                    args.symbols,
                    args.max_feed_symbols
                );
            }
            let market = synthetic::Market::new(args.symbols as usize, fastrand::u64(..));
            let rate = args.rate;
            spawn("feed-synthetic", None, move || {
                synthetic::run(market, rate, tx)
            })
            .map_err(StartFailure::Thread)?;
            format!(
                "synthetic feed: {} symbols, {} ticks/s",
                args.symbols, args.rate
            )
        }
        FeedSource::Tcp(addr) => {
            let options = tcp::Options {
                max_publishers: args.feed_max_publishers as usize,
                idle_timeout: args.feed_idle_timeout,
                secret,
                ts: TsBounds::live(args.feed_ts_skew),
            };
            let bound = tcp::listen(*addr, options, tx)?;
            format!("feed listening on tcp://{bound}")
        }
        FeedSource::File(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| StartFailure::Usage(format!("--feed file:{}: {e}", path.display())))?;
            let speed = args.replay_speed;
            let name = path.display().to_string();
            let bounds = TsBounds::replay(args.feed_ts_skew);
            spawn("feed-replay", None, move || {
                replay::run(file, &name, speed, bounds, tx)
            })
            .map_err(StartFailure::Thread)?;
            format!(
                "replaying file:{} at speed {}",
                path.display(),
                args.replay_speed
            )
        }
    };
    ready.store(true, Ordering::Release);
    Ok(description)
}

/// Starts a feed thread; `stack`: its stack size (default: the platform's).
pub(crate) fn spawn(
    name: &str,
    stack: Option<usize>,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    let mut builder = std::thread::Builder::new().name(name.into());
    if let Some(bytes) = stack {
        builder = builder.stack_size(bytes);
    }
    builder
        .spawn(f)
        .map(|_| ())
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_told_apart() {
        for local in [
            "127.0.0.1:9000",
            "127.8.9.10:1",
            "[::1]:9000",
            "[::ffff:127.0.0.1]:9000",
        ] {
            assert!(!beyond_loopback(&local.parse().unwrap()), "{local}");
        }
        for open in [
            "0.0.0.0:9000",
            "[::]:9000",
            "10.0.0.1:9000",
            "[::ffff:10.0.0.1]:1",
        ] {
            assert!(beyond_loopback(&open.parse().unwrap()), "{open}");
        }
    }
}
