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
//! always goes out, within one window. Windows open at different times and
//! get their first waiting update at different times, so the closing times
//! are kept in a heap.

use crate::tick::TickState;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

pub struct Pacer {
    window: Duration,
    /// Per symbol id: when its window closes, and the update waiting for it.
    open: HashMap<u32, (Instant, Option<TickState>)>,
    /// Windows with an update waiting, soonest first.
    closing: BinaryHeap<Reverse<(Instant, u32)>>,
    /// `open` is swept of closed windows when it grows past this (then set
    /// to twice what is left): a quiet symbol's entry is not kept forever,
    /// and the sweep costs O(1) per update over time.
    sweep_at: usize,
}

/// The least size of `open` that triggers a sweep.
const SWEEP_AT: usize = 4096;

impl Pacer {
    pub fn new(window: Duration) -> Pacer {
        Pacer {
            window,
            open: HashMap::new(),
            closing: BinaryHeap::new(),
            sweep_at: SWEEP_AT,
        }
    }

    /// An update for symbol `id`: returned to go out now, or kept (replacing
    /// an older one kept) until its window closes.
    pub fn offer(&mut self, id: u32, state: TickState, now: Instant) -> Option<TickState> {
        if let Some((closes, waiting)) = self.open.get_mut(&id) {
            if *closes > now {
                if waiting.is_none() {
                    self.closing.push(Reverse((*closes, id)));
                }
                if waiting.as_ref().is_none_or(|w| w.seq < state.seq) {
                    *waiting = Some(state);
                }
                return None;
            }
            // The window closed before `due` ran: whichever is newer goes,
            // the waiting one or this.
            let newest = match waiting.take() {
                Some(w) if w.seq > state.seq => w,
                _ => state,
            };
            *closes = now + self.window;
            return Some(newest);
        }
        if self.open.len() >= self.sweep_at {
            self.open
                .retain(|_, (closes, waiting)| *closes > now || waiting.is_some());
            self.sweep_at = (2 * self.open.len()).max(SWEEP_AT);
        }
        self.open.insert(id, (now + self.window, None));
        Some(state)
    }

    /// The next update whose window has closed by `now`; it opens the next
    /// window of its symbol.
    pub fn due(&mut self, now: Instant) -> Option<(u32, TickState)> {
        while let Some(&Reverse((closes, id))) = self.closing.peek() {
            if closes > now {
                return None;
            }
            self.closing.pop();
            if let Some((window, waiting)) = self.open.get_mut(&id) {
                if let Some(state) = waiting.take() {
                    *window = now + self.window;
                    return Some((id, state));
                }
            }
        }
        None
    }

    /// When [`Pacer::due`] has something next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.closing.peek().map(|&Reverse((closes, _))| closes)
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
    fn a_window_closed_before_due_ran_sends_the_newest_of_the_two() {
        let w = Duration::from_millis(100);
        let mut p = Pacer::new(w);
        let t0 = Instant::now();
        p.offer(1, state(100), t0);
        assert!(p
            .offer(1, state(153), t0 + Duration::from_millis(10))
            .is_none());
        // An older value (a reread of the bucket) after the window closed,
        // before `due` ran: the waiting 153 goes, not 120.
        let out = p.offer(1, state(120), t0 + Duration::from_millis(150));
        assert_eq!(out.map(|s| s.seq), Some(153));
        assert!(
            p.due(t0 + Duration::from_millis(150)).is_none(),
            "sent once"
        );
    }

    #[test]
    fn windows_close_in_their_own_order_not_in_the_order_they_got_waiting_updates() {
        let w = Duration::from_millis(100);
        let mut p = Pacer::new(w);
        let t0 = Instant::now();
        p.offer(1, state(1), t0); // closes at 100
        p.offer(2, state(1), t0 + Duration::from_millis(10)); // closes at 110
        assert!(p
            .offer(2, state(2), t0 + Duration::from_millis(20))
            .is_none());
        assert!(p
            .offer(1, state(2), t0 + Duration::from_millis(30))
            .is_none());
        assert_eq!(p.next_deadline(), Some(t0 + w));
        assert_eq!(
            p.due(t0 + w).map(|(id, _)| id),
            Some(1),
            "not held behind 2"
        );
        assert!(p.due(t0 + w).is_none());
        assert_eq!(
            p.due(t0 + Duration::from_millis(110)).map(|(id, _)| id),
            Some(2)
        );
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
