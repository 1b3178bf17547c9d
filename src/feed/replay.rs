//! `--feed file:PATH`: replays a file of NDJSON ticks at the pace of their `ts`.
//!
//! The gap between two lines' `ts` is waited out, divided by `--replay-speed`
//! (0: as fast as the hub takes them). Lines keep their own `ts`; a line
//! without one goes out right after the line before it, stamped with the
//! time it is replayed. Bad lines are counted and skipped, as on TCP, and
//! the file is read in bounded chunks, so a line without end costs no more
//! memory than a line. A recording's `ts` may lie in any past, but not
//! beyond `--feed-ts-skew` in the future nor above 2^53 − 1
//! ([`TsBounds::replay`]).

use super::accept::{accept_line, AcceptedTick, TsBounds, TsRange};
use super::lines::LineSplitter;
use super::{Batch, Tick, MAX_BATCH};
use crate::clock::now_us;
use crate::metrics::METRICS;
use crossbeam_channel::Sender;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// Bytes read from the file at once.
const READ_CHUNK: usize = 64 * 1024;

/// Paces accepted lines and hands them to the hub in batches.
struct Pacer {
    speed: f64,
    start: Instant,
    first_ts: Option<u64>,
    batch: Batch,
    tx: Sender<Batch>,
}

impl Pacer {
    /// Queues one tick, first waiting for its time; false once the hub is gone.
    /// `range` is refreshed whenever this waited, so that later lines are
    /// stamped and checked against the time they are actually replayed.
    fn push(&mut self, t: AcceptedTick, bounds: &TsBounds, range: &mut TsRange) -> bool {
        if t.own_ts && self.speed > 0.0 {
            let base = *self.first_ts.get_or_insert(t.ts);
            let due = self.start
                + Duration::from_secs_f64(t.ts.saturating_sub(base) as f64 / 1e6 / self.speed);
            let now = Instant::now();
            if due > now {
                // Hand over what is due now, then wait for this line's time.
                if !self.flush() {
                    return false;
                }
                std::thread::sleep(due - now);
                *range = bounds.at(now_us());
            }
        }
        self.batch.push(Tick {
            symbol: t.symbol,
            fields: t.fields,
            ts: t.ts,
            arrival: Instant::now(),
        });
        if self.batch.len() >= MAX_BATCH {
            if !self.flush() {
                return false;
            }
            *range = bounds.at(now_us());
        }
        true
    }

    fn flush(&mut self) -> bool {
        self.batch.is_empty() || self.tx.send(std::mem::take(&mut self.batch)).is_ok()
    }
}

pub fn run(mut file: impl Read, name: &str, speed: f64, bounds: TsBounds, tx: Sender<Batch>) {
    let mut pacer = Pacer {
        speed,
        start: Instant::now(),
        first_ts: None,
        batch: Vec::with_capacity(MAX_BATCH),
        tx,
    };
    let mut splitter = LineSplitter::default();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut lines = 0u64;
    loop {
        let n = match file.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::warn!("replay of {name} stopped: {e}");
                0
            }
        };
        let mut range = bounds.at(now_us());
        let mut data = &chunk[..n];
        // At the end (n == 0) what is left is the last line, which needs no newline.
        while let Some(line) = splitter.next_line(&mut data, n == 0) {
            lines += 1;
            match line.and_then(|l| accept_line(l, &range)) {
                Ok(Some(t)) => {
                    if !pacer.push(t, &bounds, &mut range) {
                        return;
                    }
                }
                Ok(None) => {}
                Err(reason) => METRICS.rejected(reason),
            }
        }
        if n == 0 {
            break;
        }
    }
    pacer.flush();
    crate::info!("replay of {name} finished: {lines} lines");
}
