//! The bar maker, run by the hub on every feed tick before the coalescing
//! window (so no trade is lost to it): one forming bar per symbol and
//! interval, the bar clock that closes them, and the window that paces a
//! forming bar's updates to at most one per `--coalesce`.
//!
//! What it makes comes out as [`Emit`]s (a bar's new state with its series'
//! next `seq`); the hub publishes them like updates. Rules (protocol §4c):
//! trades (`last`) make bars; a symbol that never traded gets bars of its
//! quote mid; a tick whose bar has closed is late and changes nothing.

use super::bar::{Bar, Source};
use super::{CandleConfig, Clock, VolumeMode};
use crate::metrics::METRICS;
use crate::tick::Fields;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A bar's new state, to publish on its series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Emit {
    /// The symbol's id in the hub.
    pub symbol: u32,
    pub interval: usize,
    pub bar: Bar,
}

/// One series as the builder keeps it.
#[derive(Clone, Default)]
struct Slot {
    /// The last `seq` given out.
    seq: u64,
    forming: Option<Bar>,
    /// When the forming bar last went out (its window).
    sent_at: Option<Instant>,
    /// A change waits for the window to close.
    pending: bool,
}

/// One symbol's state across its intervals.
#[derive(Clone, Default)]
struct SymbolBars {
    /// Ever traded: from then on only trades make its bars.
    traded: bool,
    /// The running total of `volume` (cumulative mode), and the `ts` of the
    /// tick that set it.
    total: Option<(f64, u64)>,
    bid: Option<f64>,
    ask: Option<f64>,
    slots: Vec<Slot>,
}

pub struct Builder {
    config: CandleConfig,
    symbols: Vec<SymbolBars>,
    /// The bar clock, µs since the epoch.
    clock: u64,
    /// Per interval: the start of the bar open now.
    current: Vec<u64>,
    /// Per interval: symbols with a forming bar (closed together).
    forming: Vec<Vec<u32>>,
    /// Forming bars whose change waits for its window, soonest first.
    waiting: BinaryHeap<Reverse<(Instant, u32, usize)>>,
    out: Vec<Emit>,
}

impl Builder {
    pub fn new(config: CandleConfig) -> Builder {
        let n = config.intervals.len();
        Builder {
            config,
            symbols: Vec::new(),
            clock: 0,
            current: vec![0; n],
            forming: vec![Vec::new(); n],
            waiting: BinaryHeap::new(),
            out: Vec::new(),
        }
    }

    fn symbol_mut(&mut self, id: u32) -> &mut SymbolBars {
        let i = id as usize;
        if i >= self.symbols.len() {
            let n = self.config.intervals.len();
            self.symbols.resize_with(i + 1, || SymbolBars {
                slots: vec![Slot::default(); n],
                ..SymbolBars::default()
            });
        }
        &mut self.symbols[i]
    }

    /// Goes on from a series' stored state (a restarted cluster ingest):
    /// `seq` continues after `seq`, and a forming bar carries on — or, when
    /// its interval ended while no ingest ran, goes out closed now (so the
    /// history has it). A stored bar of trades marks the symbol as trading.
    pub fn resume(&mut self, symbol: u32, interval: usize, seq: u64, last: Option<Bar>) {
        let current = self.current[interval];
        let s = self.symbol_mut(symbol);
        let slot = &mut s.slots[interval];
        slot.seq = slot.seq.max(seq);
        let Some(bar) = last else {
            return;
        };
        s.traded |= bar.source == Source::Trades;
        if bar.closed || slot.forming.is_some() {
            return;
        }
        // Its `gseq` was the previous run's: this run gives its changes new ones.
        let bar = Bar { gseq: 0, ..bar };
        slot.forming = Some(bar);
        if current > 0 && bar.start < current {
            // Over already: close it as `advance` would have.
            let mut closed = slot.forming.take().expect("just set");
            slot.seq += 1;
            closed.closed = true;
            closed.seq = slot.seq;
            self.out.push(Emit {
                symbol,
                interval,
                bar: closed,
            });
        } else {
            // Open now (or stamped ahead by another host's clock), or the
            // clock has not started: `advance` closes it in time.
            self.forming[interval].push(symbol);
        }
    }

    /// The server's clock, read by the hub on each pass: it moves a live
    /// feed's bar clock (a replay's moves with its ticks' `ts`).
    pub fn wall_clock(&mut self, now_us: u64) {
        if self.config.clock == Clock::Wall {
            self.advance(now_us);
        }
    }

    /// Moves the bar clock; bars whose interval has ended close.
    pub fn advance(&mut self, now_us: u64) {
        if now_us <= self.clock {
            return;
        }
        self.clock = now_us;
        for i in 0..self.config.intervals.len() {
            let us = self.config.intervals[i].us;
            let current = now_us / us * us;
            if current <= self.current[i] {
                continue;
            }
            self.current[i] = current;
            let mut still = Vec::new();
            for symbol in std::mem::take(&mut self.forming[i]) {
                let slot = &mut self.symbols[symbol as usize].slots[i];
                if slot.forming.is_some_and(|b| b.start >= current) {
                    // Resumed from a bar of the interval open now.
                    still.push(symbol);
                    continue;
                }
                let Some(mut bar) = slot.forming.take() else {
                    continue;
                };
                slot.seq += 1;
                slot.pending = false;
                bar.closed = true;
                bar.seq = slot.seq;
                self.out.push(Emit {
                    symbol,
                    interval: i,
                    bar,
                });
            }
            self.forming[i] = still;
        }
    }

    /// When the live bar clock next closes bars (`None` for a replay).
    pub fn next_boundary_us(&self) -> Option<u64> {
        if self.config.clock != Clock::Wall {
            return None;
        }
        self.config
            .intervals
            .iter()
            .zip(&self.current)
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| c + i.us)
            .min()
    }

    /// When the soonest waiting change's window closes.
    pub fn next_release(&self) -> Option<Instant> {
        self.waiting.peek().map(|Reverse((at, _, _))| *at)
    }

    /// One feed tick of symbol `symbol` (feed time `ts`).
    pub fn on_tick(&mut self, symbol: u32, fields: &Fields, ts: u64, now: Instant) {
        if self.config.clock == Clock::Feed && ts > self.clock {
            self.advance(ts);
        }
        if self.clock == 0 {
            return;
        }
        let mode = self.config.volume;
        let s = self.symbol_mut(symbol);
        s.bid = fields.bid.or(s.bid);
        s.ask = fields.ask.or(s.ask);
        let size = match (mode, fields.volume) {
            (_, None) => 0.0,
            (VolumeMode::Trade, Some(v)) => v,
            (VolumeMode::Cumulative, Some(v)) => match s.total {
                Some((total, _)) if v >= total => {
                    s.total = Some((v, ts));
                    v - total
                }
                // Lower and newer: the total started over (a new session).
                Some((_, at)) if ts > at => {
                    s.total = Some((v, ts));
                    v
                }
                // Lower and older: a tick out of order, already counted.
                Some(_) => 0.0,
                // The first total seen: the baseline.
                None => {
                    s.total = Some((v, ts));
                    0.0
                }
            },
        };
        let size = if size.is_finite() { size.max(0.0) } else { 0.0 };
        let price = match fields.last {
            Some(last) => {
                s.traded = true;
                (last, Source::Trades)
            }
            None if s.traded => return,
            None if fields.bid.is_none() && fields.ask.is_none() => return,
            None => match (s.bid, s.ask) {
                (Some(b), Some(a)) => ((b + a) / 2.0, Source::Mid),
                (Some(x), None) | (None, Some(x)) => (x, Source::Mid),
                (None, None) => return,
            },
        };
        if !price.0.is_finite() {
            return;
        }
        for i in 0..self.config.intervals.len() {
            let us = self.config.intervals[i].us;
            // Stamped ahead of the clock: the bar open now.
            let start = ts.min(self.clock) / us * us;
            if start < self.current[i] {
                METRICS.candle_late(i);
                continue;
            }
            self.change(symbol, i, start, price, size, now);
        }
    }

    fn change(
        &mut self,
        symbol: u32,
        i: usize,
        start: u64,
        (price, source): (f64, Source),
        size: f64,
        now: Instant,
    ) {
        let window = self.config.window;
        let slot = &mut self.symbols[symbol as usize].slots[i];
        match slot.forming.as_mut() {
            Some(bar) if bar.source == source => match source {
                Source::Trades => bar.trade(price, size),
                Source::Mid => bar.price(price),
            },
            // None yet, or a bar of mids that starts over at the first trade.
            current => {
                let fresh = current.is_none();
                let mut bar = Bar::open_at(start, price, source);
                if source == Source::Trades {
                    bar.trades = 1;
                    bar.volume = size;
                }
                slot.forming = Some(bar);
                if fresh {
                    self.forming[i].push(symbol);
                }
            }
        }
        let slot = &mut self.symbols[symbol as usize].slots[i];
        if slot.pending {
            return;
        }
        match slot.sent_at {
            Some(sent) if now < sent + window => {
                slot.pending = true;
                self.waiting.push(Reverse((sent + window, symbol, i)));
            }
            _ => {
                slot.sent_at = Some(now);
                self.out.push(emit(symbol, i, slot));
            }
        }
    }

    /// Sends the forming bars whose window has closed.
    pub fn release_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, symbol, i))) = self.waiting.peek() {
            if at > now {
                break;
            }
            self.waiting.pop();
            let slot = &mut self.symbols[symbol as usize].slots[i];
            if slot.pending && slot.forming.is_some() {
                slot.pending = false;
                slot.sent_at = Some(now);
                self.out.push(emit(symbol, i, slot));
            }
        }
    }

    /// What was made since the last call, in order.
    pub fn take(&mut self, into: &mut Vec<Emit>) {
        into.append(&mut self.out);
    }
}

/// The forming bar of `slot` under the series' next `seq`.
fn emit(symbol: u32, interval: usize, slot: &mut Slot) -> Emit {
    slot.seq += 1;
    let bar = slot.forming.as_mut().expect("a forming bar");
    bar.seq = slot.seq;
    Emit {
        symbol,
        interval,
        bar: *bar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::parse_intervals;
    use std::time::Duration;

    const S: u64 = 1_000_000;

    fn builder(clock: Clock, volume: VolumeMode) -> Builder {
        Builder::new(CandleConfig {
            intervals: parse_intervals("1s,1m").unwrap(),
            keep: 100,
            volume,
            clock,
            window: Duration::from_millis(100),
        })
    }

    fn trade(last: f64, volume: Option<f64>) -> Fields {
        Fields {
            last: Some(last),
            volume,
            ..Fields::default()
        }
    }

    fn quote(bid: f64, ask: f64) -> Fields {
        Fields {
            bid: Some(bid),
            ask: Some(ask),
            ..Fields::default()
        }
    }

    fn taken(b: &mut Builder) -> Vec<Emit> {
        let mut v = Vec::new();
        b.take(&mut v);
        v
    }

    #[test]
    fn forming_updates_are_paced_and_bars_close_on_the_clock() {
        let mut b = builder(Clock::Wall, VolumeMode::Cumulative);
        let t0 = Instant::now();
        b.advance(100 * S + 10);
        b.on_tick(0, &trade(10.0, Some(1000.0)), 100 * S + 10, t0);
        // Leading edge: out at once in both intervals, seq 1.
        let e = taken(&mut b);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].bar.seq, e[0].bar.start, e[0].bar.volume),
            (1, 100 * S, 0.0)
        );
        b.on_tick(0, &trade(11.0, Some(1005.0)), 100 * S + 20, t0);
        b.on_tick(0, &trade(9.0, Some(1007.0)), 100 * S + 30, t0);
        assert!(taken(&mut b).is_empty(), "within the window: waits");
        assert_eq!(b.next_release(), Some(t0 + Duration::from_millis(100)));
        b.release_due(t0 + Duration::from_millis(100));
        let e = taken(&mut b);
        assert_eq!(e.len(), 2);
        let bar = e[0].bar;
        assert_eq!(
            (bar.seq, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades),
            (2, 10.0, 11.0, 9.0, 9.0, 7.0, 3)
        );
        assert_eq!(b.next_boundary_us(), Some(101 * S));
        b.advance(101 * S);
        let e = taken(&mut b);
        assert_eq!(e.len(), 1, "the 1s bar closes, the 1m bar goes on");
        assert!(e[0].bar.closed && e[0].bar.seq == 3 && e[0].interval == 0);
        // A tick stamped in the closed second is late for 1s, counts for 1m.
        b.on_tick(
            0,
            &trade(50.0, None),
            100 * S + 999_999,
            t0 + Duration::from_millis(300),
        );
        let e = taken(&mut b);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].interval, e[0].bar.high), (1, 50.0));
    }

    #[test]
    fn mids_until_the_first_trade_and_no_bar_without_one_after() {
        let mut b = builder(Clock::Feed, VolumeMode::Cumulative);
        let t0 = Instant::now();
        b.on_tick(0, &quote(1.0, 1.2), 5 * S, t0);
        let e = taken(&mut b);
        assert_eq!(
            (e[0].bar.source, e[0].bar.open, e[0].bar.trades),
            (Source::Mid, 1.1, 0)
        );
        // A first trade in the same second starts the bar over.
        b.on_tick(
            0,
            &trade(2.0, Some(10.0)),
            5 * S + 1,
            t0 + Duration::from_secs(1),
        );
        let e = taken(&mut b);
        assert_eq!(
            (
                e[0].bar.source,
                e[0].bar.open,
                e[0].bar.low,
                e[0].bar.trades
            ),
            (Source::Trades, 2.0, 2.0, 1)
        );
        // The replay's clock moves with ts: the second closes, quotes after make no bar.
        b.on_tick(0, &quote(3.0, 3.2), 6 * S, t0 + Duration::from_secs(2));
        let e = taken(&mut b);
        assert_eq!(e.len(), 1);
        assert!(e[0].bar.closed && e[0].bar.start == 5 * S);
    }

    #[test]
    fn volume_cumulative_resets_and_trade_sizes() {
        let mut b = builder(Clock::Feed, VolumeMode::Cumulative);
        let t0 = Instant::now();
        for (i, v) in [100.0, 150.0, 20.0, 30.0].into_iter().enumerate() {
            b.on_tick(
                0,
                &trade(1.0, Some(v)),
                5 * S + i as u64,
                t0 + Duration::from_secs(i as u64),
            );
        }
        let e = taken(&mut b);
        // baseline 0, +50, reset counts whole (20), +10
        assert_eq!(e.last().unwrap().bar.volume, 80.0);
        // A lower total stamped before the one it follows is out of order, not a reset.
        let mut b = builder(Clock::Feed, VolumeMode::Cumulative);
        for (i, (v, ts)) in [(1000.0, 10), (1100.0, 30), (1050.0, 20), (1200.0, 40)]
            .into_iter()
            .enumerate()
        {
            b.on_tick(
                0,
                &trade(1.0, Some(v)),
                5 * S + ts,
                t0 + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(taken(&mut b).last().unwrap().bar.volume, 200.0);
        let mut b = builder(Clock::Feed, VolumeMode::Trade);
        for (i, v) in [100.0, 150.0].into_iter().enumerate() {
            b.on_tick(
                0,
                &trade(1.0, Some(v)),
                5 * S + i as u64,
                t0 + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(taken(&mut b).last().unwrap().bar.volume, 250.0);
    }

    #[test]
    fn a_resumed_bar_whose_interval_ended_goes_out_closed() {
        let mut b = builder(Clock::Wall, VolumeMode::Trade);
        b.advance(100 * S + 5);
        let mut stored = Bar::open_at(98 * S, 10.0, Source::Trades);
        stored.seq = 7;
        b.resume(0, 0, 7, Some(stored));
        let e = taken(&mut b);
        assert_eq!(e.len(), 1);
        assert!(e[0].bar.closed && e[0].bar.seq == 8 && e[0].bar.start == 98 * S);
        // Before the clock starts, it waits for the first advance, which
        // closes it if its interval is over and keeps it if not.
        let mut b = builder(Clock::Wall, VolumeMode::Trade);
        b.resume(0, 0, 7, Some(stored));
        let mut open = Bar::open_at(100 * S, 10.0, Source::Trades);
        open.seq = 3;
        b.resume(1, 0, 3, Some(open));
        assert!(taken(&mut b).is_empty());
        b.advance(100 * S + 1);
        let e = taken(&mut b);
        assert_eq!(e.len(), 1);
        assert!(e[0].bar.closed && e[0].bar.seq == 8 && e[0].symbol == 0);
        b.advance(101 * S);
        let e = taken(&mut b);
        assert!(e[0].bar.closed && e[0].bar.seq == 4 && e[0].symbol == 1);
    }

    #[test]
    fn resume_goes_on_with_seq_and_the_forming_bar() {
        let mut b = builder(Clock::Wall, VolumeMode::Trade);
        b.advance(100 * S + 5);
        let mut stored = Bar::open_at(100 * S, 10.0, Source::Trades);
        stored.trades = 2;
        stored.seq = 41;
        b.resume(0, 0, 41, Some(stored));
        b.on_tick(0, &trade(12.0, Some(1.0)), 100 * S + 6, Instant::now());
        let e = taken(&mut b);
        assert_eq!(
            (e[0].bar.seq, e[0].bar.open, e[0].bar.high, e[0].bar.trades),
            (42, 10.0, 12.0, 3)
        );
    }
}
