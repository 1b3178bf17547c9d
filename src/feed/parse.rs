//! One NDJSON feed line → one tick, or the reason it was rejected.
//!
//! serde_json with a borrowed struct is used on the ingest path: on our own
//! ~70-byte lines it beats simd-json even with reused buffers (figures in
//! BENCHMARKS.md, `benches/hot_path.rs`). The simd-json variant is kept
//! beside it so the benchmark can keep checking that choice.
//!
//! This is the JSON step only; [`super::accept`] adds blank lines and the
//! `ts` range around it, and is what sources call.

use crate::metrics::RejectReason;
use crate::symbol::Symbol;
use crate::tick::Fields;
use serde::Deserialize;
use std::borrow::Cow;

/// Longest line accepted, in bytes (without the newline).
pub const MAX_LINE: usize = 4096;

/// A line's content.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParsedTick {
    pub symbol: Symbol,
    pub fields: Fields,
    /// `ts` of the line, if it had one.
    pub ts: Option<u64>,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    bid: Option<f64>,
    ask: Option<f64>,
    last: Option<f64>,
    volume: Option<f64>,
    ts: Option<u64>,
}

impl Line<'_> {
    fn into_tick(self) -> Result<ParsedTick, RejectReason> {
        let name = self.symbol.ok_or(RejectReason::NoSymbol)?;
        let symbol = Symbol::new(&name).ok_or(RejectReason::InvalidSymbol)?;
        let fields = Fields {
            bid: self.bid,
            ask: self.ask,
            last: self.last,
            volume: self.volume,
        };
        // A line that changes nothing would still make a new `seq` and wake every subscriber.
        if fields == Fields::default() {
            return Err(RejectReason::NoFields);
        }
        Ok(ParsedTick {
            symbol,
            fields,
            ts: self.ts,
        })
    }
}

fn starts_like_object(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Parses one line (without its newline) with serde_json.
///
/// Deep nesting (`[[[[…`, `{"a":{"a":…`) cannot exhaust a publisher thread's
/// small stack: the typed fields refuse an array or object at once (a top-level
/// array is `not_object`), an unknown field's value is skipped by serde_json's
/// `ignore_value`, which keeps its nesting on the heap (bounded by the line's
/// [`MAX_LINE`] bytes), and serde_json's recursion limit (128) would stop any
/// other path. `tests/feed.rs` sends such lines to the real server.
pub fn parse_line(line: &[u8]) -> Result<ParsedTick, RejectReason> {
    if line.len() > MAX_LINE {
        return Err(RejectReason::TooLong);
    }
    match serde_json::from_slice::<Line>(line) {
        Ok(l) => l.into_tick(),
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Data if starts_like_object(line) => {
                RejectReason::WrongType
            }
            serde_json::error::Category::Data => RejectReason::NotObject,
            _ => RejectReason::NotJson,
        }),
    }
}

/// The same with simd-json, reusing its buffers and a scratch copy of the line
/// (simd-json parses in place). Kept for the benchmark comparison.
pub struct SimdLineParser {
    buffers: simd_json::Buffers,
    scratch: Vec<u8>,
}

impl Default for SimdLineParser {
    fn default() -> Self {
        SimdLineParser {
            buffers: simd_json::Buffers::new(MAX_LINE),
            scratch: Vec::with_capacity(MAX_LINE),
        }
    }
}

impl SimdLineParser {
    pub fn parse_line(&mut self, line: &[u8]) -> Result<ParsedTick, RejectReason> {
        if line.len() > MAX_LINE {
            return Err(RejectReason::TooLong);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(line);
        match simd_json::serde::from_slice_with_buffers::<Line>(
            &mut self.scratch,
            &mut self.buffers,
        ) {
            Ok(l) => l.into_tick(),
            // The error path may be slow: classify with a full parse.
            Err(_) => Err(match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(_)) => RejectReason::WrongType,
                Ok(_) => RejectReason::NotObject,
                Err(_) => RejectReason::NotJson,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(line: &str) -> Result<ParsedTick, RejectReason> {
        let a = parse_line(line.as_bytes());
        let b = SimdLineParser::default().parse_line(line.as_bytes());
        assert_eq!(a, b, "serde_json and simd-json disagree on {line}");
        a
    }

    #[test]
    fn quote_and_trade_lines() {
        let q =
            both(r#"{"symbol":"AAPL","bid":189.10,"ask":189.12,"ts":1732400000123456}"#).unwrap();
        assert_eq!(q.symbol.as_str(), "AAPL");
        assert_eq!(
            q.fields,
            Fields {
                bid: Some(189.1),
                ask: Some(189.12),
                ..Fields::default()
            }
        );
        assert_eq!(q.ts, Some(1732400000123456));
        let t = both(r#"{"symbol":"AAPL","last":189.11,"volume":1200}"#).unwrap();
        assert_eq!(
            t.fields,
            Fields {
                last: Some(189.11),
                volume: Some(1200.0),
                ..Fields::default()
            }
        );
        assert_eq!(t.ts, None);
    }

    #[test]
    fn unknown_fields_and_nulls_are_ignored() {
        let t = both(r#" {"symbol":"X","venue":"XNAS","bid":null,"last":1} "#).unwrap();
        assert_eq!(
            t.fields,
            Fields {
                last: Some(1.0),
                ..Fields::default()
            }
        );
    }

    #[test]
    fn each_kind_of_bad_line_has_its_reason() {
        assert_eq!(both("not json"), Err(RejectReason::NotJson));
        assert_eq!(
            both(r#"{"symbol":"AAPL","bid":"#),
            Err(RejectReason::NotJson)
        );
        assert_eq!(both(r#"[1,2]"#), Err(RejectReason::NotObject));
        assert_eq!(both(r#""AAPL""#), Err(RejectReason::NotObject));
        assert_eq!(both(r#"{"bid":1.0}"#), Err(RejectReason::NoSymbol));
        assert_eq!(
            both(r#"{"symbol":"A B","bid":1.0}"#),
            Err(RejectReason::InvalidSymbol)
        );
        assert_eq!(
            both(r#"{"symbol":"AAPL","bid":"1.0"}"#),
            Err(RejectReason::WrongType)
        );
        assert_eq!(both(r#"{"symbol":7}"#), Err(RejectReason::WrongType));
        assert_eq!(
            both(r#"{"symbol":"AAPL","ts":-5}"#),
            Err(RejectReason::WrongType)
        );
        let long = format!(r#"{{"symbol":"AAPL","pad":"{}"}}"#, "x".repeat(MAX_LINE));
        assert_eq!(both(&long), Err(RejectReason::TooLong));
    }

    #[test]
    fn a_line_without_any_field_is_rejected() {
        assert_eq!(both(r#"{"symbol":"AAPL"}"#), Err(RejectReason::NoFields));
        assert_eq!(
            both(r#"{"symbol":"AAPL","bid":null,"ask":null,"last":null,"volume":null,"ts":5}"#),
            Err(RejectReason::NoFields)
        );
        assert!(both(r#"{"symbol":"AAPL","volume":0}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_deep_recursion() {
        // Run on a stack as small as a publisher thread's.
        let run = || {
            let deep_array = "[".repeat(MAX_LINE);
            assert_eq!(
                parse_line(deep_array.as_bytes()),
                Err(RejectReason::NotObject)
            );
            let deep_open = r#"{"a":"#.repeat(MAX_LINE / 5);
            assert_eq!(parse_line(deep_open.as_bytes()), Err(RejectReason::NotJson));
            let n = 600;
            let closed = format!(
                r#"{{"symbol":"DEEP","bid":1,"x":{}1{}}}"#,
                r#"{"a":"#.repeat(n),
                "}".repeat(n)
            );
            assert!(closed.len() <= MAX_LINE);
            assert_eq!(
                parse_line(closed.as_bytes()).unwrap().symbol.as_str(),
                "DEEP"
            );
            let arrays = format!(
                r#"{{"symbol":"DEEP","bid":1,"x":{}{}}}"#,
                "[".repeat(2000),
                "]".repeat(2000)
            );
            assert!(parse_line(arrays.as_bytes()).is_ok());
            for field in ["symbol", "bid", "ts"] {
                let typed = format!(r#"{{"{field}":{}"#, "[".repeat(3000));
                assert_eq!(
                    parse_line(typed.as_bytes()),
                    Err(RejectReason::WrongType),
                    "{field}"
                );
            }
        };
        std::thread::Builder::new()
            .stack_size(crate::feed::PUBLISHER_STACK)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn escaped_symbols_are_decoded_before_validation() {
        assert_eq!(
            both(r#"{"symbol":"FX:EUR\/USD","bid":1.1}"#)
                .unwrap()
                .symbol
                .as_str(),
            "FX:EUR/USD"
        );
    }
}
