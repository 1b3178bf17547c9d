//! The whole acceptance of a publisher's bytes: lines, JSON, the range of `ts`.
//!
//! TCP publishers and file replay call this one piece of code, so a line
//! means the same from either. It is pure (the sources count rejections in
//! the metrics, not this module) so that tests and fuzz targets can run it
//! on any bytes without a server: [`accept_bytes`] is the fuzzing entry point.

use super::lines::LineSplitter;
use super::parse::{parse_line, MAX_LINE};
use crate::metrics::RejectReason;
use crate::symbol::Symbol;
use crate::tick::Fields;
use std::time::Duration;

/// The largest `ts` accepted: 2^53 − 1, the largest integer a JavaScript
/// number (a browser client's) holds exactly.
pub const MAX_TS: u64 = (1 << 53) - 1;

/// How far a line's `ts` may be from the time it is received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsBounds {
    /// At most this many µs in the past; `None`: any past (file replay).
    pub past_us: Option<u64>,
    /// At most this many µs in the future.
    pub future_us: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl TsBounds {
    /// A live source (TCP): a line's `ts` is within `skew` of its receipt.
    pub fn live(skew: Duration) -> TsBounds {
        TsBounds {
            past_us: Some(micros(skew)),
            future_us: micros(skew),
        }
    }

    /// Replay of a recorded file: any past (that is what recordings hold),
    /// but nothing later than `skew` after now.
    pub fn replay(skew: Duration) -> TsBounds {
        TsBounds {
            past_us: None,
            future_us: micros(skew),
        }
    }

    /// The accepted range at `now_us`: computed once per read, so that each
    /// line pays two compares.
    pub fn at(&self, now_us: u64) -> TsRange {
        TsRange {
            now_us,
            lo: self.past_us.map_or(0, |p| now_us.saturating_sub(p)),
            hi: now_us.saturating_add(self.future_us).min(MAX_TS),
        }
    }
}

/// Accepted `ts` values at one moment of receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsRange {
    /// The time of receipt: the `ts` of a line that has none.
    pub now_us: u64,
    lo: u64,
    hi: u64,
}

/// A line that passed every check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AcceptedTick {
    pub symbol: Symbol,
    pub fields: Fields,
    /// The line's `ts` (always within the range), or the time of receipt.
    pub ts: u64,
    /// The line had its own `ts` (replay paces by it).
    pub own_ts: bool,
}

/// One line (without its `\n`; a trailing `\r` is ignored): a tick, `Ok(None)`
/// for a blank line (a keep-alive), or the reason it is rejected.
pub fn accept_line(line: &[u8], range: &TsRange) -> Result<Option<AcceptedTick>, RejectReason> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Before the blank check, so that a long line means the same whether it
    // arrived whole or in pieces (the splitter reports those).
    if line.len() > MAX_LINE {
        return Err(RejectReason::TooLong);
    }
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let t = parse_line(line)?;
    let ts = match t.ts {
        Some(ts) if ts < range.lo || ts > range.hi => return Err(RejectReason::TsOutOfRange),
        Some(ts) => ts,
        None => range.now_us,
    };
    Ok(Some(AcceptedTick {
        symbol: t.symbol,
        fields: t.fields,
        ts,
        own_ts: t.ts.is_some(),
    }))
}

/// [`accept_line`] for a line received at `now_us`.
pub fn accept_line_at(
    line: &[u8],
    now_us: u64,
    bounds: &TsBounds,
) -> Result<Option<AcceptedTick>, RejectReason> {
    accept_line(line, &bounds.at(now_us))
}

/// The fuzzing entry point: what becomes of every line of a publisher that
/// sends `data` (any bytes) at `now_us` and closes — split, parsed, range
/// checked, the last line without a newline included, blank lines left out.
/// Never panics; allocates only the result.
pub fn accept_bytes(
    data: &[u8],
    now_us: u64,
    bounds: &TsBounds,
) -> Vec<Result<AcceptedTick, RejectReason>> {
    let range = bounds.at(now_us);
    let mut splitter = LineSplitter::default();
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(line) = splitter.next_line(&mut rest, true) {
        if let Some(r) = line.and_then(|l| accept_line(l, &range)).transpose() {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_732_400_000_000_000;
    const HOUR: u64 = 3_600_000_000;

    fn live() -> TsBounds {
        TsBounds::live(Duration::from_secs(3600))
    }

    fn ts_of(line: &str, bounds: &TsBounds) -> Result<u64, RejectReason> {
        accept_line_at(line.as_bytes(), NOW, bounds).map(|t| t.unwrap().ts)
    }

    #[test]
    fn a_live_ts_must_be_near_the_time_of_receipt() {
        let b = live();
        let line = |ts: u64| format!(r#"{{"symbol":"A","bid":1,"ts":{ts}}}"#);
        assert_eq!(ts_of(&line(NOW), &b), Ok(NOW));
        assert_eq!(ts_of(&line(NOW - HOUR), &b), Ok(NOW - HOUR));
        assert_eq!(ts_of(&line(NOW + HOUR), &b), Ok(NOW + HOUR));
        for bad in [0, 1, NOW - HOUR - 1, NOW + HOUR + 1, MAX_TS, u64::MAX] {
            assert_eq!(
                ts_of(&line(bad), &b),
                Err(RejectReason::TsOutOfRange),
                "{bad}"
            );
        }
        assert_eq!(ts_of(r#"{"symbol":"A","bid":1}"#, &b), Ok(NOW));
    }

    #[test]
    fn replay_takes_any_past_but_no_far_future_and_nothing_above_2_pow_53() {
        let b = TsBounds::replay(Duration::from_secs(3600));
        let line = |ts: u64| format!(r#"{{"symbol":"A","bid":1,"ts":{ts}}}"#);
        assert_eq!(ts_of(&line(0), &b), Ok(0));
        assert_eq!(
            ts_of(&line(NOW - 400 * 24 * HOUR), &b),
            Ok(NOW - 400 * 24 * HOUR)
        );
        assert_eq!(ts_of(&line(NOW + HOUR), &b), Ok(NOW + HOUR));
        assert_eq!(
            ts_of(&line(NOW + HOUR + 1), &b),
            Err(RejectReason::TsOutOfRange)
        );
        // Even when the clock itself is far ahead, 2^53 - 1 stays the ceiling.
        let far = TsBounds::replay(Duration::from_secs(365 * 86400));
        assert_eq!(
            accept_line_at(line(MAX_TS + 1).as_bytes(), MAX_TS, &far),
            Err(RejectReason::TsOutOfRange)
        );
        assert!(accept_line_at(line(MAX_TS).as_bytes(), MAX_TS, &far).is_ok());
    }

    #[test]
    fn the_bounds_saturate_instead_of_overflowing() {
        let huge = TsBounds {
            past_us: Some(u64::MAX),
            future_us: u64::MAX,
        };
        let r = huge.at(5);
        assert_eq!((r.lo, r.hi), (0, MAX_TS));
        let r = live().at(u64::MAX);
        assert_eq!(r.hi, MAX_TS);
    }

    #[test]
    fn blank_lines_are_keep_alives_and_cr_is_ignored() {
        assert_eq!(accept_line_at(b"", NOW, &live()), Ok(None));
        let spaces = vec![b' '; MAX_LINE + 1];
        assert_eq!(
            accept_line_at(&spaces, NOW, &live()),
            Err(RejectReason::TooLong)
        );
        assert_eq!(accept_line_at(b" \t\r", NOW, &live()), Ok(None));
        assert!(
            accept_line_at(b"{\"symbol\":\"A\",\"bid\":1}\r", NOW, &live())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_stream_is_split_parsed_and_checked() {
        let data = b"{\"symbol\":\"A\",\"bid\":1}\n\n{\"symbol\":\"B\"}\r\n[1]\n{\"symbol\":\"C\",\"last\":2,\"ts\":1}\n{\"symbol\":\"D\",\"ask\":3}";
        let got: Vec<_> = accept_bytes(data, NOW, &live())
            .into_iter()
            .map(|r| r.map(|t| t.symbol.as_str().to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                Ok("A".to_string()),
                Err(RejectReason::NoFields),
                Err(RejectReason::NotObject),
                Err(RejectReason::TsOutOfRange),
                Ok("D".to_string()),
            ]
        );
    }

    /// Random bytes, and random mutations of good lines, never panic and
    /// never yield a tick outside the range.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let good = br#"{"symbol":"FX:EUR/USD","bid":1.1,"ask":1.2,"last":1.15,"volume":10,"ts":1732400000000000}"#;
        let alphabet = b"{}[]\":,\\ \n\r\t0123456789.-+eEnulltruefalsesymbolbidaskts\x00\xff\xc3";
        let mut rng = fastrand::Rng::with_seed(7);
        let bounds = [live(), TsBounds::replay(Duration::from_secs(1))];
        for round in 0..20_000 {
            let len = rng.usize(0..if round % 100 == 0 { 20_000 } else { 300 });
            let data: Vec<u8> = match round % 3 {
                0 => (0..len).map(|_| rng.u8(..)).collect(),
                1 => (0..len)
                    .map(|_| alphabet[rng.usize(..alphabet.len())])
                    .collect(),
                _ => {
                    let mut d = good.repeat(1 + len / 100);
                    for _ in 0..rng.usize(0..8) {
                        let i = rng.usize(..d.len());
                        d[i] = alphabet[rng.usize(..alphabet.len())];
                    }
                    d
                }
            };
            let now = rng.u64(..);
            for b in &bounds {
                let range = b.at(now);
                for t in accept_bytes(&data, now, b).into_iter().flatten() {
                    assert!(t.ts <= MAX_TS || t.ts == now, "{t:?}");
                    assert!(t.ts >= range.lo && t.ts <= range.hi || t.ts == now);
                    assert_ne!(t.fields, Fields::default());
                }
            }
        }
    }
}
