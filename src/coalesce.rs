//! The per-symbol coalescing window (protocol §5): leading edge, field merge, `seq`.
//!
//! A symbol that has been quiet for a whole window goes out at once and opens
//! a window; ticks inside the window merge into the symbol's state, and the
//! merged state goes out when the window closes (opening the next one). So a
//! symbol releases at most one update per window, and the last state always
//! goes out. `seq` is assigned at release: 1, 2, 3 … per symbol.
//!
//! Windows all have the same length and open at release time, so their
//! closing times come in the order they were opened: a FIFO of
//! `(closes_at, symbol)` replaces a timer heap, and each tick costs O(1).

use crate::tick::{Fields, TickState};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Window {
    fields: Fields,
    ts: u64,
    seq: u64,
    /// A window is open (the symbol released less than a window ago).
    open: bool,
    /// Ticks merged since the last release wait for the window to close.
    pending: bool,
    /// When the open window closes.
    closes_at: Option<Instant>,
}

/// What became of one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// The symbol was quiet: the update goes out now.
    Released(TickState),
    /// Merged into the open window, which closes at this instant.
    Merged { release_at: Instant },
}

/// One symbol's update released when its window closed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Release {
    pub id: u32,
    pub state: TickState,
}

pub struct Coalescer {
    window: Duration,
    windows: Vec<Window>,
    closing: VecDeque<(Instant, u32)>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Coalescer {
        Coalescer {
            window,
            windows: Vec::new(),
            closing: VecDeque::new(),
        }
    }

    fn window_mut(&mut self, id: u32) -> &mut Window {
        let i = id as usize;
        if i >= self.windows.len() {
            self.windows.resize(i + 1, Window::default());
        }
        &mut self.windows[i]
    }

    /// Goes on from a symbol's last released state (e.g. from a previous
    /// run): `seq` continues after it, and its fields stay the symbol's
    /// state, so the next update is full, not just the new tick's fields.
    pub fn resume(&mut self, id: u32, state: &TickState) {
        let w = self.window_mut(id);
        if state.seq >= w.seq {
            w.seq = state.seq;
            w.fields = state.fields;
            w.ts = state.ts;
        }
    }

    /// The state last released for a symbol, if any.
    pub fn seq(&self, id: u32) -> u64 {
        self.windows.get(id as usize).map_or(0, |w| w.seq)
    }

    /// Merges one tick. `now` must not go backwards between calls.
    pub fn on_tick(
        &mut self,
        id: u32,
        fields: &Fields,
        ts: u64,
        now: Instant,
        now_us: u64,
    ) -> Outcome {
        let window = self.window;
        let w = self.window_mut(id);
        w.fields.merge(fields);
        // The newest tick is the last one merged, by arrival. Never a maximum:
        // one bad `ts` far ahead would otherwise stamp every later update.
        w.ts = ts;
        if w.open {
            w.pending = true;
            return Outcome::Merged {
                release_at: w.closes_at.unwrap_or(now),
            };
        }
        w.open = true;
        w.seq += 1;
        w.closes_at = Some(now + window);
        let state = TickState {
            seq: w.seq,
            fields: w.fields,
            ts: w.ts,
            pub_us: now_us,
            gseq: 0,
        };
        self.closing.push_back((now + window, id));
        Outcome::Released(state)
    }

    /// When the next window closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.closing.front().map(|(t, _)| *t)
    }

    /// Closes every window due at `now`, appending the merged updates to `out`.
    pub fn release_due(&mut self, now: Instant, now_us: u64, out: &mut Vec<Release>) {
        while let Some(&(t, id)) = self.closing.front() {
            if t > now {
                break;
            }
            self.closing.pop_front();
            let w = &mut self.windows[id as usize];
            if w.pending {
                w.pending = false;
                w.seq += 1;
                out.push(Release {
                    id,
                    state: TickState {
                        seq: w.seq,
                        fields: w.fields,
                        ts: w.ts,
                        pub_us: now_us,
                        gseq: 0,
                    },
                });
                w.closes_at = Some(now + self.window);
                self.closing.push_back((now + self.window, id));
            } else {
                w.open = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(100);

    fn bid(v: f64) -> Fields {
        Fields {
            bid: Some(v),
            ..Fields::default()
        }
    }

    fn released(o: Outcome) -> TickState {
        match o {
            Outcome::Released(s) => s,
            other => panic!("expected a release, got {other:?}"),
        }
    }

    #[test]
    fn a_quiet_symbol_goes_out_at_once_with_seq_1() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        let s = released(c.on_tick(0, &bid(1.0), 10, t0, 1000));
        assert_eq!(
            (s.seq, s.fields.bid, s.ts, s.pub_us),
            (1, Some(1.0), 10, 1000)
        );
    }

    #[test]
    fn ticks_inside_the_window_merge_and_leave_when_it_closes() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        released(c.on_tick(7, &bid(1.0), 1, t0, 0));
        let o = c.on_tick(
            7,
            &Fields {
                last: Some(1.5),
                volume: Some(100.0),
                ..Fields::default()
            },
            2,
            t0 + W / 4,
            0,
        );
        assert_eq!(o, Outcome::Merged { release_at: t0 + W });
        c.on_tick(7, &bid(1.1), 3, t0 + W / 2, 0);
        let mut out = Vec::new();
        c.release_due(t0 + W - Duration::from_millis(1), 0, &mut out);
        assert!(out.is_empty(), "nothing before the window closes");
        c.release_due(t0 + W, 99, &mut out);
        assert_eq!(out.len(), 1);
        let s = out[0].state;
        assert_eq!((out[0].id, s.seq, s.ts, s.pub_us), (7, 2, 3, 99));
        assert_eq!(
            s.fields,
            Fields {
                bid: Some(1.1),
                ask: None,
                last: Some(1.5),
                volume: Some(100.0)
            }
        );
    }

    #[test]
    fn ts_is_the_last_merged_ticks_never_a_stale_maximum() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        assert_eq!(released(c.on_tick(0, &bid(1.0), 500, t0, 0)).ts, 500);
        c.on_tick(0, &bid(1.1), 900, t0 + W / 4, 0);
        c.on_tick(0, &bid(1.2), 700, t0 + W / 2, 0);
        let mut out = Vec::new();
        c.release_due(t0 + W, 0, &mut out);
        assert_eq!(out[0].state.ts, 700, "the last merged, not the largest");
        c.release_due(t0 + 2 * W, 0, &mut out);
        let s = released(c.on_tick(0, &bid(1.3), 600, t0 + 3 * W, 0));
        assert_eq!(s.ts, 600, "an earlier ts than before is taken as it is");
    }

    #[test]
    fn at_most_one_update_per_window_under_a_steady_stream() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        let mut releases = vec![t0];
        released(c.on_tick(0, &bid(0.0), 0, t0, 0));
        let mut out = Vec::new();
        for ms in 1..=1000u64 {
            let now = t0 + Duration::from_millis(ms);
            c.release_due(now, 0, &mut out);
            releases.extend(out.drain(..).map(|_| now));
            if let Outcome::Released(_) = c.on_tick(0, &bid(ms as f64), 0, now, 0) {
                releases.push(now);
            }
        }
        for pair in releases.windows(2) {
            assert!(pair[1] - pair[0] >= W, "{:?}", pair[1] - pair[0]);
        }
        assert_eq!(releases.len(), 11, "one per window over 1 s");
        assert_eq!(c.seq(0), 11);
    }

    #[test]
    fn after_a_quiet_window_the_next_tick_leads_again() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        released(c.on_tick(0, &bid(1.0), 0, t0, 0));
        let mut out = Vec::new();
        c.release_due(t0 + W, 0, &mut out);
        assert!(out.is_empty(), "no tick in the window: nothing to release");
        let s = released(c.on_tick(0, &bid(2.0), 0, t0 + W + Duration::from_millis(1), 0));
        assert_eq!(s.seq, 2);
    }

    #[test]
    fn symbols_are_independent_and_seq_resumes() {
        let mut c = Coalescer::new(W);
        let t0 = Instant::now();
        let before = TickState {
            seq: 41,
            fields: Fields {
                bid: Some(0.5),
                ask: Some(0.6),
                ..Fields::default()
            },
            ts: 7,
            pub_us: 8,
            gseq: 3,
        };
        c.resume(1, &before);
        released(c.on_tick(0, &bid(1.0), 0, t0, 0));
        let next = released(c.on_tick(1, &bid(1.0), 0, t0, 0));
        assert_eq!(next.seq, 42);
        assert_eq!(
            next.fields.ask,
            Some(0.6),
            "the resumed state's fields carry on"
        );
        assert!(matches!(
            c.on_tick(0, &bid(1.0), 0, t0, 0),
            Outcome::Merged { .. }
        ));
        assert_eq!(c.next_deadline(), Some(t0 + W));
    }
}
