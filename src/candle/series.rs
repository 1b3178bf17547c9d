//! One series' history: its last closed bars and its forming bar, bounded.
//!
//! Written by the hub (one bar change at a time, ≤ one per coalescing window
//! per series, plus the close) and by a cluster edge's history load; read by
//! writers sending a history or filling a gap, and by `/candles`. A mutex
//! per series: readers copy out what they need and let go, and nobody holds
//! it across an await or a write to a socket.

use super::bar::Bar;
use std::collections::VecDeque;
use std::sync::Mutex;

pub struct Series {
    pub symbol: Box<str>,
    /// The interval's name (`1m`).
    pub interval: Box<str>,
    /// Position of the interval in [`super::CandleConfig::intervals`].
    pub interval_index: usize,
    keep: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Oldest first; only the last may be forming.
    bars: VecDeque<Bar>,
    /// The newest `seq` applied.
    seq: u64,
}

/// Bars read out of a series, and its `seq` at that moment.
pub struct Read {
    pub bars: Vec<Bar>,
    pub seq: u64,
}

impl Series {
    pub fn new(symbol: &str, interval: &str, interval_index: usize, keep: usize) -> Series {
        Series {
            symbol: symbol.into(),
            interval: interval.into(),
            interval_index,
            keep: keep.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves whole bars behind: go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest `seq` applied (0: no bar yet).
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Takes a bar's new state: it replaces the bar with the same start (if
    /// newer), or comes after the last one. Older bars, arriving late (a
    /// history loaded while updates flow), are merged in place. Returns
    /// whether it changed anything.
    pub fn apply(&self, bar: Bar) -> bool {
        let mut inner = self.lock();
        let changed = insert(&mut inner.bars, bar);
        if changed {
            inner.seq = inner.seq.max(bar.seq);
            trim(&mut inner.bars, self.keep);
        }
        changed
    }

    /// The last `limit` closed bars that start before `end` (all of them
    /// without it), oldest first, then the forming bar unless `end` is at or
    /// before its start.
    pub fn history(&self, limit: usize, end: Option<u64>) -> Read {
        let inner = self.lock();
        let end = end.unwrap_or(u64::MAX);
        let before: Vec<&Bar> = inner.bars.iter().filter(|b| b.start < end).collect();
        let forming = before.last().filter(|b| !b.closed).copied();
        let closed = &before[..before.len() - usize::from(forming.is_some())];
        let from = closed.len().saturating_sub(limit);
        let mut bars: Vec<Bar> = closed[from..].iter().map(|b| **b).collect();
        bars.extend(forming.copied());
        Read {
            bars,
            seq: inner.seq,
        }
    }

    /// Every bar whose last change came after `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Read {
        self.filtered(|b| b.seq > seq)
    }

    /// Every bar whose last change came after the hub's `gseq` (SSE resume).
    pub fn after_gseq(&self, gseq: u64) -> Read {
        self.filtered(|b| b.gseq > gseq)
    }

    fn filtered(&self, keep: impl Fn(&Bar) -> bool) -> Read {
        let inner = self.lock();
        Read {
            bars: inner.bars.iter().filter(|b| keep(b)).copied().collect(),
            seq: inner.seq,
        }
    }

    /// The forming bar, if the interval has one yet.
    pub fn forming(&self) -> Option<Bar> {
        self.lock().bars.back().filter(|b| !b.closed).copied()
    }

    /// How many bars it holds now.
    pub fn len(&self) -> usize {
        self.lock().bars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Puts `bar` in its place by start; an equal start keeps the newer `seq`.
/// A bar followed by a newer one is over, whatever its copy here said (this
/// copy missed its close): only the last may be forming.
fn insert(bars: &mut VecDeque<Bar>, bar: Bar) -> bool {
    match bars.back_mut() {
        None => {
            bars.push_back(bar);
            return true;
        }
        Some(last) if last.start < bar.start => {
            last.closed = true;
            bars.push_back(bar);
            return true;
        }
        _ => {}
    }
    match bars.binary_search_by_key(&bar.start, |b| b.start) {
        Ok(i) if bars[i].seq < bar.seq => {
            let over = bar.closed || i + 1 < bars.len();
            bars[i] = Bar {
                closed: over,
                ..bar
            };
            true
        }
        Ok(_) => false,
        Err(i) => {
            // Older than the last: over.
            bars.insert(
                i,
                Bar {
                    closed: true,
                    ..bar
                },
            );
            true
        }
    }
}

/// Drops the oldest closed bars past `keep` (a forming bar is not counted).
fn trim(bars: &mut VecDeque<Bar>, keep: usize) {
    let forming = usize::from(bars.back().is_some_and(|b| !b.closed));
    while bars.len() > keep + forming {
        bars.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::bar::Source;

    fn bar(start: u64, seq: u64, closed: bool) -> Bar {
        let mut b = Bar::open_at(start, start as f64, Source::Trades);
        b.seq = seq;
        b.gseq = seq * 10;
        b.closed = closed;
        b
    }

    #[test]
    fn keeps_the_last_closed_bars_and_the_forming_one() {
        let s = Series::new("AAPL", "1s", 0, 3);
        for i in 0..10 {
            s.apply(bar(i, 2 * i + 1, false));
            s.apply(bar(i, 2 * i + 2, true));
        }
        s.apply(bar(10, 21, false));
        assert_eq!(s.len(), 4, "3 closed and the forming one");
        let h = s.history(300, None);
        assert_eq!(
            h.bars
                .iter()
                .map(|b| (b.start, b.closed))
                .collect::<Vec<_>>(),
            [(7, true), (8, true), (9, true), (10, false)]
        );
        assert_eq!(h.seq, 21);
        let h = s.history(2, None);
        assert_eq!(
            h.bars.iter().map(|b| b.start).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        let h = s.history(2, Some(10));
        assert_eq!(h.bars.iter().map(|b| b.start).collect::<Vec<_>>(), [8, 9]);
        let h = s.history(300, Some(8));
        assert_eq!(h.bars.iter().map(|b| b.start).collect::<Vec<_>>(), [7]);
        assert_eq!(
            s.since(18).bars.iter().map(|b| b.seq).collect::<Vec<_>>(),
            [20, 21]
        );
        assert_eq!(s.after_gseq(200).bars.len(), 1);
        assert_eq!(s.forming().map(|b| b.start), Some(10));
    }

    #[test]
    fn an_older_state_never_replaces_a_newer_and_late_bars_merge_in_order() {
        let s = Series::new("AAPL", "1s", 0, 10);
        assert!(s.apply(bar(5, 9, false)));
        assert!(!s.apply(bar(5, 8, false)));
        assert!(s.apply(bar(3, 4, true)));
        assert!(s.apply(bar(4, 6, true)));
        assert_eq!(
            s.history(10, None)
                .bars
                .iter()
                .map(|b| (b.start, b.seq))
                .collect::<Vec<_>>(),
            [(3, 4), (4, 6), (5, 9)]
        );
        assert_eq!(s.seq(), 9);
        // A forming bar followed by a newer one is closed.
        let s = Series::new("AAPL", "1s", 0, 10);
        s.apply(bar(1, 1, false));
        s.apply(bar(2, 2, false));
        assert!(s.history(10, None).bars[0].closed);
    }
}
