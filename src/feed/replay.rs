//! `--feed file:PATH`: replays a file of NDJSON ticks at the pace of their `ts`.
//!
//! The gap between two lines' `ts` is waited out, divided by `--replay-speed`
//! (0: as fast as the hub takes them). Lines keep their own `ts`; lines
//! without one get the time they are replayed.

use super::tcp::accept_line;
use super::{Batch, MAX_BATCH};
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
        // Lines over the limit are read whole here and rejected by `accept_line`.
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => lines += 1,
            Err(e) => {
                crate::warn!("replay of {name} stopped: {e}");
                break;
            }
        }
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let before = batch.len();
        accept_line(content, now_us(), Instant::now(), &mut batch);
        let Some(tick) = batch.get(before).copied() else {
            continue;
        };
        if speed > 0.0 && tick.ts > 0 {
            let base = *first_ts.get_or_insert(tick.ts);
            let due =
                start + Duration::from_secs_f64(tick.ts.saturating_sub(base) as f64 / 1e6 / speed);
            let now = Instant::now();
            if due > now {
                // Send what is due now, then wait for this tick's time.
                let pending: Batch = batch.drain(..before).collect();
                if !pending.is_empty() && tx.send(pending).is_err() {
                    return;
                }
                std::thread::sleep(due - now);
                batch[0].arrival = Instant::now();
            }
        }
        if batch.len() >= MAX_BATCH && tx.send(std::mem::take(&mut batch)).is_err() {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    crate::info!("replay of {name} finished: {lines} lines");
}
