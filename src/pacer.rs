//! The coalescing window for updates that already carry their `seq`: a
//! cluster edge's updates from the bus.
//!
//! The ingest's coalescer keeps every symbol to one update per window, but
//! the bus does not keep that pace: after an outage the ingest's NATS client
//! flushes what it buffered, and an edge would pass the backlog on as a
//! burst of stale ticks. The edge applies a window again (half the
//! coalescing window, so that the bus's ordinary jitter passes untouched): a
//! symbol quiet for a whole window goes out at once; what comes within the
//! window waits, the newest only, until the window closes. The latest value
//! always goes out, within one window. Windows all have the same length, so a FIFO of
//! closing times replaces a timer heap (as in the coalescer).

use crate::tick::TickState;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub struct Pacer {
    window: Duration,
    /// Per symbol id: when its window closes, and the update waiting for it.
    open: HashMap<u32, (Instant, Option<TickState>)>,
    /// Windows with an update waiting, in closing order.
    closing: VecDeque<(Instant, u32)>,
}

impl Pacer {
    pub fn new(window: Duration) -> Pacer {
        Pacer {
            window,
            open: HashMap::new(),
            closing: VecDeque::new(),
        }
    }

    /// An update for symbol `id`: returned to go out now, or kept (replacing
    /// an older one kept) until its window closes.
    pub fn offer(&mut self, id: u32, state: TickState, now: Instant) -> Option<TickState> {
        match self.open.get_mut(&id) {
            Some((closes, waiting)) if *closes > now => {
                if waiting.is_none() {
                    self.closing.push_back((*closes, id));
                }
                if waiting.as_ref().is_none_or(|w| w.seq < state.seq) {
                    *waiting = Some(state);
                }
                None
            }
            _ => {
                self.open.insert(id, (now + self.window, None));
                Some(state)
            }
        }
    }

    /// The next update whose window has closed by `now`; it opens the next
    /// window of its symbol.
    pub fn due(&mut self, now: Instant) -> Option<(u32, TickState)> {
        while let Some(&(closes, id)) = self.closing.front() {
            if closes > now {
                return None;
            }
            self.closing.pop_front();
            if let Some((window, waiting)) = self.open.get_mut(&id) {
                if let Some(state) = waiting.take() {
                    *window = now + self.window;
                    return Some((id, state));
                }
            }
        }
        // Nothing waits: windows that closed without one may be forgotten
        // (a quiet symbol's next update goes out at once either way).
        if self.open.len() > 4 * 1024 && self.closing.is_empty() {
            self.open.retain(|_, (closes, _)| *closes > now);
        }
        None
    }

    /// When [`Pacer::due`] has something next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.closing.front().map(|&(closes, _)| closes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seq: u64) -> TickState {
        TickState {
            seq,
            fields: crate::tick::Fields::default(),
            ts: 0,
            pub_us: 0,
            gseq: 0,
        }
    }

    #[test]
    fn a_burst_goes_out_as_its_first_update_then_its_latest_once_a_window() {
        let w = Duration::from_millis(100);
        let mut p = Pacer::new(w);
        let t0 = Instant::now();
        assert_eq!(p.offer(7, state(84), t0).map(|s| s.seq), Some(84));
        for seq in 85..=153 {
            assert!(p
                .offer(7, state(seq), t0 + Duration::from_millis(1))
                .is_none());
        }
        assert_eq!(p.next_deadline(), Some(t0 + w));
        assert!(p.due(t0 + Duration::from_millis(99)).is_none());
        let (id, s) = p.due(t0 + w).unwrap();
        assert_eq!((id, s.seq), (7, 153), "the latest, once");
        assert!(p.due(t0 + 3 * w).is_none());
        // That release opened a window: the next update within it waits.
        assert!(p
            .offer(7, state(154), t0 + w + Duration::from_millis(50))
            .is_none());
        assert_eq!(p.due(t0 + 2 * w).map(|(_, s)| s.seq), Some(154));
        // A quiet symbol goes out at once.
        assert_eq!(p.offer(7, state(155), t0 + 5 * w).map(|s| s.seq), Some(155));
        assert_eq!(p.offer(8, state(1), t0 + 5 * w).map(|s| s.seq), Some(1));
    }

    #[test]
    fn updates_a_little_closer_than_the_coalescing_window_pass_untouched() {
        // The hub's pacer has half the window: the ingest's updates, 100 ms
        // apart, arriving 60 ms apart after the bus's jitter, each go out as
        // they are (merging them made seq gaps in a rolling deploy).
        let mut p = Pacer::new(Duration::from_millis(50));
        let t0 = Instant::now();
        assert!(p.offer(3, state(1), t0).is_some());
        assert!(p
            .offer(3, state(2), t0 + Duration::from_millis(60))
            .is_some());
        assert!(p
            .offer(3, state(3), t0 + Duration::from_millis(115))
            .is_some());
    }

    #[test]
    fn an_older_update_never_replaces_a_newer_one_waiting() {
        let w = Duration::from_millis(100);
        let mut p = Pacer::new(w);
        let t0 = Instant::now();
        p.offer(1, state(10), t0);
        assert!(p.offer(1, state(12), t0).is_none());
        assert!(p.offer(1, state(11), t0).is_none());
        assert_eq!(p.due(t0 + w).map(|(_, s)| s.seq), Some(12));
    }
}
