//! Candles (protocol §4c): OHLCV bars per symbol and interval, built from
//! every feed tick before the coalescing window, kept with history, and
//! delivered like ticks.
//!
//! * [`bar`]: what a bar is, and how a trade or a quote changes it.
//! * [`builder`]: the hub's bar maker: one forming bar per symbol and
//!   interval, the bar clock that closes them, the window that paces a
//!   forming bar's updates, `seq` per series.
//! * [`series`]: one series' bounded history, shared (behind a lock taken
//!   only to append or to read a history) by the hub, the writers that send
//!   histories and `/candles`.
//!
//! A series travels through the hub as a channel named `SYMBOL@INTERVAL`
//! (`@` is not a symbol character): it has subscribers, a latest value and
//! `seq` like a symbol, plus its [`series::Series`].

pub mod bar;
pub mod builder;
pub mod series;

use std::time::Duration;

/// Most intervals a node serves (`--candle-intervals`).
pub const MAX_INTERVALS: usize = 8;

/// Most closed bars kept per series (`--candle-keep`).
pub const MAX_KEEP: usize = 100_000;

/// One interval of `--candle-intervals`: its name on the wire and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interval {
    pub name: Box<str>,
    /// Length in µs.
    pub us: u64,
}

impl Interval {
    /// `1s`, `15s`, `1m`, `5m`, `1h`, `1d`: a whole number and a unit; from
    /// 1 s to 7 days, a whole number of seconds.
    pub fn parse(s: &str) -> Result<Interval, String> {
        let not = || format!("`{s}` is not an interval such as 1s, 1m, 5m, 1h, 1d");
        let unit = s.chars().last().ok_or("an empty interval")?;
        let digits = &s[..s.len() - unit.len_utf8()];
        // One spelling per interval (no `01m`, `+1m`): it names series on the wire.
        if s.len() > 8 || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not());
        }
        let n: u64 = digits.parse().map_err(|_| not())?;
        let secs = match unit {
            's' => Some(n),
            'm' => n.checked_mul(60),
            'h' => n.checked_mul(3600),
            'd' => n.checked_mul(86_400),
            _ => None,
        }
        .ok_or_else(|| format!("`{s}` is not an interval such as 1s, 1m, 5m, 1h, 1d"))?;
        if secs == 0 || secs > 7 * 86_400 {
            return Err(format!("interval `{s}` must be from 1s to 7d"));
        }
        Ok(Interval {
            name: s.into(),
            us: secs * 1_000_000,
        })
    }
}

/// Where a cluster edge reads the history of a series it does not follow
/// (the bus's copy: [`crate::bus`]).
pub trait History: Send + Sync {
    /// The last `limit` closed bars before `end` (all without it), then the
    /// forming bar unless `end` excludes it; oldest first.
    fn history<'a>(
        &'a self,
        symbol: &'a str,
        interval: &'a str,
        limit: usize,
        end: Option<u64>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<bar::Bar>, String>> + Send + 'a>,
    >;
}

/// How a feed's `volume` is read (`--candle-volume`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VolumeMode {
    /// The symbol's running total: a bar's volume is how much it grew.
    #[default]
    Cumulative,
    /// Each trade's own size: a bar's volume is their sum.
    Trade,
}

/// What drives the bar clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Clock {
    /// The server's clock (a live feed).
    #[default]
    Wall,
    /// The newest `ts` read from the feed (a replay).
    Feed,
}

/// The candle settings of a node.
#[derive(Clone, Debug)]
pub struct CandleConfig {
    pub intervals: Vec<Interval>,
    /// Closed bars kept per series.
    pub keep: usize,
    pub volume: VolumeMode,
    pub clock: Clock,
    /// At most one update of a forming bar per this long (`--coalesce`).
    pub window: Duration,
}

impl CandleConfig {
    /// The position of the interval named `name`.
    pub fn interval(&self, name: &str) -> Option<usize> {
        self.intervals.iter().position(|i| &*i.name == name)
    }

    /// The interval names, for error messages: `1s, 1m, 5m, 1h`.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.intervals.iter().map(|i| &*i.name).collect();
        names.join(", ")
    }

    /// The channel of a series, if `name` is `SYMBOL@INTERVAL` with a valid
    /// symbol and an interval served here.
    pub fn channel<'a>(&self, name: &'a str) -> Result<(&'a str, usize), ChannelError> {
        let (symbol, interval) = split(name).ok_or(ChannelError::Invalid)?;
        let i = self
            .interval(interval)
            .ok_or(ChannelError::UnknownInterval)?;
        Ok((symbol, i))
    }
}

/// Why a series name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// Not `SYMBOL@INTERVAL` with a valid symbol.
    Invalid,
    /// An interval this node does not serve.
    UnknownInterval,
}

/// The channel name of a series.
pub fn channel_name(symbol: &str, interval: &str) -> String {
    format!("{symbol}@{interval}")
}

/// `SYMBOL@INTERVAL` split in two, if the symbol part is a valid symbol.
pub fn split(name: &str) -> Option<(&str, &str)> {
    let (symbol, interval) = name.split_once('@')?;
    (crate::symbol::is_valid(symbol) && !interval.is_empty() && interval.len() <= 8)
        .then_some((symbol, interval))
}

/// Parses `--candle-intervals`: names separated by commas, shortest to
/// longest is not required but each at most once; empty turns candles off.
pub fn parse_intervals(s: &str) -> Result<Vec<Interval>, String> {
    let mut out: Vec<Interval> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let i = Interval::parse(part)?;
        if out.iter().any(|o| o.us == i.us) {
            return Err(format!("interval `{part}` is listed twice"));
        }
        out.push(i);
    }
    if out.len() > MAX_INTERVALS {
        return Err(format!("at most {MAX_INTERVALS} intervals"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_refuse() {
        let v = parse_intervals("1s,1m,5m,1h").unwrap();
        assert_eq!(
            v.iter().map(|i| i.us).collect::<Vec<_>>(),
            [1_000_000, 60_000_000, 300_000_000, 3_600_000_000]
        );
        assert!(parse_intervals("").unwrap().is_empty());
        for bad in [
            "0s",
            "1x",
            "s",
            "1m,60s",
            "8d",
            "-1s",
            "1.5m",
            "99999999999999999999h",
        ] {
            assert!(parse_intervals(bad).is_err(), "{bad}");
        }
        assert!(parse_intervals("1s,2s,3s,4s,5s,6s,7s,8s,9s").is_err());
    }

    #[test]
    fn channel_names_split_on_the_at_sign() {
        let c = CandleConfig {
            intervals: parse_intervals("1s,1m").unwrap(),
            keep: 10,
            volume: VolumeMode::Cumulative,
            clock: Clock::Wall,
            window: Duration::from_millis(100),
        };
        assert_eq!(c.channel("FX:EUR/USD@1m"), Ok(("FX:EUR/USD", 1)));
        assert_eq!(c.channel("AAPL@5m"), Err(ChannelError::UnknownInterval));
        assert_eq!(c.channel("AAPL"), Err(ChannelError::Invalid));
        assert_eq!(c.channel("AA PL@1s"), Err(ChannelError::Invalid));
        assert_eq!(c.channel("@1s"), Err(ChannelError::Invalid));
        assert_eq!(c.channel("AAPL@"), Err(ChannelError::Invalid));
        assert_eq!(channel_name("AAPL", "1s"), "AAPL@1s");
    }
}
