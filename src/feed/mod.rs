//! Sources of ticks (protocol §8), each on its own OS threads, never on tokio.
//!
//! A source turns input into [`Tick`]s and sends them in batches over a
//! bounded crossbeam channel to the hub. `send` blocks when the channel is
//! full: a TCP publisher's socket is then simply not read (TCP flow control
//! slows it down) and no tick is ever dropped silently.

pub mod parse;
pub mod replay;
pub mod synthetic;
pub mod tcp;

use crate::config::{FeedSource, ServeArgs};
use crate::encode::Fields;
use crate::symbol::Symbol;
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One tick from the feed.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    pub symbol: Symbol,
    pub fields: Fields,
    /// Feed event time, µs since the epoch (time of receipt when the line had none).
    pub ts: u64,
    /// When tickcast received it, for `tickcast_coalesce_delay_seconds`.
    pub arrival: Instant,
}

/// Ticks travel to the hub in batches, to pay for the channel once per batch.
pub type Batch = Vec<Tick>;

/// Batches in flight between the feed and the hub before the feed blocks.
pub const CHANNEL_BATCHES: usize = 64;

/// Most ticks in one batch.
pub const MAX_BATCH: usize = 512;

/// Starts the configured source. Returns a line describing it for the log,
/// or an error naming what failed (e.g. the TCP address is taken).
pub fn start(
    args: &ServeArgs,
    tx: Sender<Batch>,
    ready: Arc<AtomicBool>,
) -> Result<String, String> {
    let description = match &args.feed {
        FeedSource::Synthetic => {
            let market = synthetic::Market::new(args.symbols as usize, fastrand::u64(..));
            let rate = args.rate;
            spawn("feed-synthetic", move || synthetic::run(market, rate, tx))?;
            format!(
                "synthetic feed: {} symbols, {} ticks/s",
                args.symbols, args.rate
            )
        }
        FeedSource::Tcp(addr) => {
            let bound = tcp::listen(*addr, tx)?;
            format!("feed listening on tcp://{bound}")
        }
        FeedSource::File(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("--feed file:{}: {e}", path.display()))?;
            let speed = args.replay_speed;
            let name = path.display().to_string();
            spawn("feed-replay", move || replay::run(file, &name, speed, tx))?;
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

pub(crate) fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}
