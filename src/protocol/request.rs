//! Client messages in (protocol §3): parsed, checked field by field, so that
//! every error says exactly which field is wrong.
//!
//! Messages are parsed into a simd-json value (buffers reused per thread; on
//! our messages it measured slightly faster than serde_json, see
//! BENCHMARKS.md). Nesting is bounded before the parser sees a byte.

use super::{ErrorCode, RequestError};
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::cell::RefCell;

/// A client message that parsed.
#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    Subscribe {
        id: Option<i64>,
        symbols: Vec<String>,
        since: Vec<(String, u64)>,
        /// At most one update per symbol per this many ms (`interval_ms`).
        interval_ms: Option<u64>,
        /// Candle series, `SYMBOL@INTERVAL` (protocol §4c).
        candles: Vec<String>,
        /// Closed bars in each series' history.
        limit: Option<u64>,
    },
    Unsubscribe {
        id: Option<i64>,
        symbols: Vec<String>,
        candles: Vec<String>,
    },
    Ping {
        id: Option<i64>,
    },
    Auth {
        id: Option<i64>,
        token: String,
    },
}

impl ClientMessage {
    pub fn id(&self) -> Option<i64> {
        match self {
            ClientMessage::Subscribe { id, .. }
            | ClientMessage::Unsubscribe { id, .. }
            | ClientMessage::Ping { id }
            | ClientMessage::Auth { id, .. } => *id,
        }
    }
}

fn bad(id: Option<i64>, message: impl Into<String>) -> RequestError {
    RequestError::new(id, ErrorCode::BadRequest, message)
}

/// `payload.symbols` and `payload.candles`: at least one of them, each a
/// non-empty array of strings when present.
fn string_lists(
    payload: Option<&BorrowedValue>,
    id: Option<i64>,
    kind: &str,
) -> Result<(Vec<String>, Vec<String>), RequestError> {
    let candles = match present(payload.and_then(|p| p.get("candles"))) {
        None => None,
        Some(v) => Some(string_list(v.as_array(), id, kind, "candles")?),
    };
    let symbols = match (present(payload.and_then(|p| p.get("symbols"))), &candles) {
        (None, Some(_)) => Vec::new(),
        (v, _) => string_list(v.and_then(|v| v.as_array()), id, kind, "symbols")?,
    };
    Ok((symbols, candles.unwrap_or_default()))
}

fn string_list(
    list: Option<&Vec<BorrowedValue>>,
    id: Option<i64>,
    kind: &str,
    field: &str,
) -> Result<Vec<String>, RequestError> {
    let list = list.ok_or_else(|| {
        bad(
            id,
            format!("{kind} needs payload.{field}, an array of strings"),
        )
    })?;
    if list.is_empty() {
        return Err(bad(id, format!("{kind}: payload.{field} is empty")));
    }
    list.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            bad(
                id,
                format!("{kind}: payload.{field} must hold only strings"),
            )
        })
}

thread_local! {
    /// simd-json parses in place: a copy of the message and its reusable buffers.
    static PARSER: RefCell<(Vec<u8>, simd_json::Buffers)> = RefCell::new((Vec::new(), simd_json::Buffers::default()));
}

/// Deepest nesting of arrays and objects a client message may have. Ours
/// need 3 (`{"payload":{"since":{…}}}`); parsers recurse per level, and a
/// message of nothing but `[` would otherwise take a worker's stack.
pub const MAX_DEPTH: usize = 8;

/// Whether `json` nests arrays and objects at most `max` deep. A byte scan
/// that skips strings (and their escapes); it does not validate, it only
/// bounds what a parser will be asked to do.
pub fn nesting_within(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Parses one text message.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, RequestError> {
    if !nesting_within(text.as_bytes(), MAX_DEPTH) {
        return Err(bad(
            None,
            format!("not a message: nested more than {MAX_DEPTH} deep"),
        ));
    }
    PARSER.with(|cell| {
        let (scratch, buffers) = &mut *cell.borrow_mut();
        scratch.clear();
        scratch.extend_from_slice(text.as_bytes());
        let value = simd_json::to_borrowed_value_with_buffers(scratch, buffers)
            .map_err(|e| bad(None, format!("not JSON: {e}")))?;
        interpret(&value)
    })
}

fn present<'a, 'v>(v: Option<&'a BorrowedValue<'v>>) -> Option<&'a BorrowedValue<'v>> {
    v.filter(|v| !v.is_null())
}

fn interpret(value: &BorrowedValue) -> Result<ClientMessage, RequestError> {
    if value.as_object().is_none() {
        return Err(bad(None, "a message must be a JSON object"));
    }
    let id = match present(value.get("id")) {
        None => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| bad(None, "id must be an integer"))?,
        ),
    };
    let kind = match value.get("type") {
        Some(v) => v.as_str().ok_or_else(|| bad(id, "type must be a string"))?,
        None => return Err(bad(id, "missing field type")),
    };
    let payload = present(value.get("payload"));
    if payload.is_some_and(|p| p.as_object().is_none()) {
        return Err(bad(id, "payload must be an object"));
    }
    match kind {
        "subscribe" => {
            let (symbols, candles) = string_lists(payload, id, "subscribe")?;
            let since = match present(payload.and_then(|p| p.get("since"))) {
                None => Vec::new(),
                Some(v) => v
                    .as_object()
                    .ok_or_else(|| bad(id, "payload.since must be an object"))?
                    .iter()
                    .map(|(k, v)| v.as_u64().map(|seq| (k.to_string(), seq)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        bad(
                            id,
                            "payload.since maps symbols to seq numbers (integers ≥ 0)",
                        )
                    })?,
            };
            let interval_ms = match present(payload.and_then(|p| p.get("interval_ms"))) {
                None => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    bad(id, "payload.interval_ms must be an integer number of ms")
                })?),
            };
            let limit =
                match present(payload.and_then(|p| p.get("limit"))) {
                    None => None,
                    Some(v) => Some(v.as_u64().ok_or_else(|| {
                        bad(id, "payload.limit must be an integer number of bars")
                    })?),
                };
            Ok(ClientMessage::Subscribe {
                id,
                symbols,
                since,
                interval_ms,
                candles,
                limit,
            })
        }
        "unsubscribe" => {
            let (symbols, candles) = string_lists(payload, id, "unsubscribe")?;
            Ok(ClientMessage::Unsubscribe {
                id,
                symbols,
                candles,
            })
        }
        "ping" => Ok(ClientMessage::Ping { id }),
        "auth" => match payload
            .and_then(|p| p.get("token"))
            .and_then(|t| t.as_str())
        {
            Some(t) => Ok(ClientMessage::Auth {
                id,
                token: t.to_string(),
            }),
            None => Err(bad(id, "auth needs payload.token, a string")),
        },
        other => Err(RequestError::new(
            id,
            ErrorCode::UnknownType,
            format!("unknown message type `{other}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (Option<i64>, ErrorCode) {
        let e = parse_client_message(text).unwrap_err();
        (e.id, e.code)
    }

    #[test]
    fn candles_go_with_or_without_symbols() {
        assert_eq!(
            parse_client_message(
                r#"{"type":"subscribe","id":1,"payload":{"candles":["AAPL@1m"],"limit":500,"since":{"AAPL@1m":7}}}"#
            ),
            Ok(ClientMessage::Subscribe {
                id: Some(1),
                symbols: vec![],
                since: vec![("AAPL@1m".into(), 7)],
                interval_ms: None,
                candles: vec!["AAPL@1m".into()],
                limit: Some(500),
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"unsubscribe","payload":{"candles":["AAPL@1m"]}}"#),
            Ok(ClientMessage::Unsubscribe {
                id: None,
                symbols: vec![],
                candles: vec!["AAPL@1m".into()],
            })
        );
        for (text, says) in [
            (
                r#"{"type":"subscribe","payload":{}}"#,
                "needs payload.symbols",
            ),
            (
                r#"{"type":"subscribe","payload":{"candles":[]}}"#,
                "payload.candles is empty",
            ),
            (
                r#"{"type":"subscribe","payload":{"candles":[1]}}"#,
                "payload.candles must hold only strings",
            ),
            (
                r#"{"type":"subscribe","payload":{"candles":"AAPL@1m"}}"#,
                "needs payload.candles",
            ),
            (
                r#"{"type":"subscribe","payload":{"candles":["A@1m"],"symbols":[]}}"#,
                "payload.symbols is empty",
            ),
            (
                r#"{"type":"subscribe","payload":{"candles":["A@1m"],"limit":-1}}"#,
                "payload.limit",
            ),
        ] {
            let e = parse_client_message(text).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{text}");
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
    }

    #[test]
    fn the_four_client_messages() {
        assert_eq!(
            parse_client_message(
                r#"{"type":"subscribe","id":1,"payload":{"symbols":["AAPL","MSFT"],"since":{"AAPL":1041}}}"#
            ),
            Ok(ClientMessage::Subscribe {
                id: Some(1),
                symbols: vec!["AAPL".into(), "MSFT".into()],
                since: vec![("AAPL".into(), 1041)],
                interval_ms: None,
                candles: vec![],
                limit: None,
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"unsubscribe","id":2,"payload":{"symbols":["MSFT"]}}"#),
            Ok(ClientMessage::Unsubscribe {
                id: Some(2),
                symbols: vec!["MSFT".into()],
                candles: vec![],
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping","id":3}"#),
            Ok(ClientMessage::Ping { id: Some(3) })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping { id: None })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"auth","id":4,"payload":{"token":"t"}}"#),
            Ok(ClientMessage::Auth {
                id: Some(4),
                token: "t".into()
            })
        );
    }

    #[test]
    fn bad_requests_echo_the_id_when_it_is_readable() {
        assert_eq!(code("nope"), (None, ErrorCode::BadRequest));
        assert_eq!(code("[1]"), (None, ErrorCode::BadRequest));
        assert_eq!(
            code(r#"{"id":"x","type":"ping"}"#),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":1.5,"type":"ping"}"#),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(code(r#"{"id":5}"#), (Some(5), ErrorCode::BadRequest));
        assert_eq!(
            code(r#"{"id":5,"type":7}"#),
            (Some(5), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":6,"type":"subscribe"}"#),
            (Some(6), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":6,"type":"subscribe","payload":{"symbols":[]}}"#),
            (Some(6), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":6,"type":"subscribe","payload":{"symbols":[1]}}"#),
            (Some(6), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":6,"type":"subscribe","payload":{"symbols":["A"],"interval_ms":1.5}}"#),
            (Some(6), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":6,"type":"subscribe","payload":{"symbols":["A"],"since":{"A":-1}}}"#),
            (Some(6), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":6,"type":"subscribe","payload":"AAPL"}"#),
            (Some(6), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":7,"type":"auth","payload":{}}"#),
            (Some(7), ErrorCode::BadRequest)
        );
        assert_eq!(
            code(r#"{"id":8,"type":"quote"}"#),
            (Some(8), ErrorCode::UnknownType)
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        assert!(nesting_within(br#"{"a":{"b":[1,{"c":2}]}}"#, 4));
        assert!(!nesting_within(br#"{"a":{"b":[1,{"c":2}]}}"#, 3));
        assert!(
            nesting_within(br#"{"a":"[[[[[[[[[[[[\"{{{{"}"#, 1),
            "brackets in strings do not count"
        );
        let deep = "[".repeat(100_000);
        assert_eq!(code(&deep), (None, ErrorCode::BadRequest));
        let deep = format!(r#"{{"type":"ping","id":1,"x":{}}}"#, "[".repeat(50));
        assert_eq!(code(&deep), (None, ErrorCode::BadRequest));
        let ok = r#"{"type":"subscribe","id":1,"payload":{"symbols":["A"],"since":{"A":1}}}"#;
        assert!(parse_client_message(ok).is_ok());
    }
}
