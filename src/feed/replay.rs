//! `--feed file:PATH`: replays a file of NDJSON ticks at the pace of their `ts`.
//!
//! The gap between two lines' `ts` is waited out, divided by `--replay-speed`
//! (0: as fast as the hub takes them). Lines keep their own `ts`; a line
//! without one goes out right after the line before it, stamped with the
//! time it is replayed. Bad lines are counted and skipped, as on TCP.

use super::parse::accept;
use super::{Batch, Tick, MAX_BATCH};
use crate::clock::now_us;
use crossbeam_channel::Sender;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

pub fn run(file: impl Read, name: &str, speed: f64, tx: Sender<Batch>) {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let start = Instant::now();
    let mut first_ts: Option<u64> = None;
    let mut batch: Batch = Vec::with_capacity(MAX_BATCH);
    let mut line = Vec::with_capacity(256);
    let mut lines = 0u64;
    loop {
        line.clear();
        // Lines over the limit are read whole here and rejected by `accept`.
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => lines += 1,
            Err(e) => {
                crate::warn!("replay of {name} stopped: {e}");
                break;
            }
        }
        let Some(parsed) = accept(line.strip_suffix(b"\n").unwrap_or(&line)) else {
            continue;
        };
        if let (Some(ts), true) = (parsed.ts, speed > 0.0) {
            let base = *first_ts.get_or_insert(ts);
            let due = start + Duration::from_secs_f64(ts.saturating_sub(base) as f64 / 1e6 / speed);
            let now = Instant::now();
            if due > now {
                // Hand over what is due now, then wait for this line's time.
                if !batch.is_empty() && tx.send(std::mem::take(&mut batch)).is_err() {
                    return;
                }
                std::thread::sleep(due - now);
            }
        }
        let ts = parsed.ts.unwrap_or_else(now_us);
        batch.push(Tick {
            symbol: parsed.symbol,
            fields: parsed.fields,
            ts,
            arrival: Instant::now(),
        });
        if batch.len() >= MAX_BATCH && tx.send(std::mem::take(&mut batch)).is_err() {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    crate::info!("replay of {name} finished: {lines} lines");
}
