//! Protocol v1 messages (protocol §3, §4): client messages in, server messages out.
//!
//! Client messages are parsed into a simd-json value (buffers reused per
//! thread; on our messages it measured slightly faster than serde_json, see
//! BENCHMARKS.md) and then checked field by field, so that every error says
//! exactly which field is wrong. Server replies are built with serde_json;
//! only the `tick` message, which is on the hot path, is written by hand
//! (see [`crate::encode`]).

use crate::encode::text_frame;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::cell::RefCell;

/// `error` codes (protocol §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    InvalidSymbol,
    Forbidden,
    TooManySymbols,
    Unauthorized,
    RateLimited,
    UnknownSymbol,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::InvalidSymbol,
        ErrorCode::Forbidden,
        ErrorCode::TooManySymbols,
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::UnknownSymbol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidSymbol => "invalid_symbol",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManySymbols => "too_many_symbols",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownSymbol => "unknown_symbol",
        }
    }
}

/// Close codes (protocol §7).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const SLOW_CONSUMER: u16 = 4008;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const RATE_LIMITED: u16 = 4429;
}

/// A client message that parsed.
#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    Subscribe {
        id: Option<i64>,
        symbols: Vec<String>,
        since: Vec<(String, u64)>,
    },
    Unsubscribe {
        id: Option<i64>,
        symbols: Vec<String>,
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

/// A request the server answers with `error`.
#[derive(Debug, PartialEq)]
pub struct RequestError {
    pub id: Option<i64>,
    pub code: ErrorCode,
    /// The symbols at fault, if the error is about symbols.
    pub symbols: Vec<String>,
    pub message: String,
}

impl RequestError {
    pub fn new(id: Option<i64>, code: ErrorCode, message: impl Into<String>) -> RequestError {
        RequestError {
            id,
            code,
            symbols: Vec::new(),
            message: message.into(),
        }
    }

    /// One error for every symbol of a request that failed the same way
    /// (one reply per request and code, however many symbols: replies to one
    /// request always fit the client's control queue).
    pub fn for_symbols(
        id: Option<i64>,
        code: ErrorCode,
        symbols: Vec<String>,
        message: impl Into<String>,
    ) -> RequestError {
        RequestError {
            id,
            code,
            symbols,
            message: message.into(),
        }
    }

    /// The `error` message frame: `symbols` lists the symbols at fault, and
    /// `symbol` names it too when there is exactly one (as protocol v1 did).
    /// Counted in `tickcast_client_errors_total`.
    pub fn frame(&self) -> Bytes {
        crate::metrics::METRICS.client_error(self.code);
        let mut payload = Map::new();
        payload.insert("code".into(), self.code.as_str().into());
        if let [one] = &self.symbols[..] {
            payload.insert("symbol".into(), one.clone().into());
        }
        if !self.symbols.is_empty() {
            payload.insert("symbols".into(), self.symbols.clone().into());
        }
        payload.insert("message".into(), self.message.clone().into());
        message("error", self.id, Value::Object(payload))
    }
}

fn bad(id: Option<i64>, message: impl Into<String>) -> RequestError {
    RequestError::new(id, ErrorCode::BadRequest, message)
}

fn string_list(
    payload: Option<&BorrowedValue>,
    id: Option<i64>,
    kind: &str,
) -> Result<Vec<String>, RequestError> {
    let list = payload
        .and_then(|p| p.get("symbols"))
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            bad(
                id,
                format!("{kind} needs payload.symbols, an array of strings"),
            )
        })?;
    if list.is_empty() {
        return Err(bad(id, format!("{kind}: payload.symbols is empty")));
    }
    list.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            bad(
                id,
                format!("{kind}: payload.symbols must hold only strings"),
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
            let symbols = string_list(payload, id, "subscribe")?;
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
            Ok(ClientMessage::Subscribe { id, symbols, since })
        }
        "unsubscribe" => Ok(ClientMessage::Unsubscribe {
            id,
            symbols: string_list(payload, id, "unsubscribe")?,
        }),
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

/// A server message frame: `{"type":…,"id":…,"payload":…}`.
pub fn message(kind: &str, id: Option<i64>, payload: Value) -> Bytes {
    let mut obj = Map::new();
    obj.insert("type".into(), kind.into());
    if let Some(id) = id {
        obj.insert("id".into(), id.into());
    }
    obj.insert("payload".into(), payload);
    text_frame(&serde_json::to_vec(&Value::Object(obj)).unwrap_or_default())
}

/// What `welcome` tells a client.
pub struct Welcome<'a> {
    pub session: &'a str,
    pub heartbeat_ms: u64,
    pub max_symbols: u32,
    /// The inbound message limit in bytes (a client splits its requests under it).
    pub max_message: usize,
    /// Names the lineage of `seq` numbers: they compare only within one epoch
    /// (a restarted single node starts `seq` over, with a new epoch).
    pub epoch: u64,
    pub node: &'a str,
    /// When the connection's token expires (seconds since the epoch), if it has one.
    pub exp: Option<u64>,
}

pub fn welcome(w: &Welcome) -> Bytes {
    let mut payload = json!({"session": w.session, "server": concat!("tickcast/", env!("CARGO_PKG_VERSION")),
               "heartbeat_ms": w.heartbeat_ms, "max_symbols": w.max_symbols,
               "max_message": w.max_message, "epoch": w.epoch, "node": w.node});
    if let Some(exp) = w.exp {
        payload["exp"] = exp.into();
    }
    message("welcome", None, payload)
}

pub fn subscribed(id: Option<i64>, symbols: &[&str], unknown: &[&str]) -> Bytes {
    message(
        "subscribed",
        id,
        json!({"symbols": symbols, "unknown": unknown}),
    )
}

/// `reason` is present when the server ended the subscriptions itself
/// (`forbidden`: a token refresh narrowed the entitlements).
pub fn unsubscribed(id: Option<i64>, symbols: &[&str], reason: Option<&str>) -> Bytes {
    match reason {
        Some(reason) => message(
            "unsubscribed",
            id,
            json!({"symbols": symbols, "reason": reason}),
        ),
        None => message("unsubscribed", id, json!({"symbols": symbols})),
    }
}

pub fn pong(id: Option<i64>, ts: u64) -> Bytes {
    message("pong", id, json!({"ts": ts}))
}

/// Reply to a successful token refresh (`auth` on an authenticated connection).
pub fn authenticated(id: Option<i64>, sub: &str, exp: u64) -> Bytes {
    message("authenticated", id, json!({"sub": sub, "exp": exp}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (Option<i64>, ErrorCode) {
        let e = parse_client_message(text).unwrap_err();
        (e.id, e.code)
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
                since: vec![("AAPL".into(), 1041)]
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"unsubscribe","id":2,"payload":{"symbols":["MSFT"]}}"#),
            Ok(ClientMessage::Unsubscribe {
                id: Some(2),
                symbols: vec!["MSFT".into()]
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
    fn replies_have_the_spec_shape() {
        let f = RequestError::for_symbols(
            Some(1),
            ErrorCode::Forbidden,
            vec!["TSLA".into()],
            "not entitled to TSLA",
        )
        .frame();
        let v: Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","id":1,"payload":{"code":"forbidden","symbol":"TSLA","symbols":["TSLA"],"message":"not entitled to TSLA"}})
        );
        let f = RequestError::for_symbols(
            None,
            ErrorCode::InvalidSymbol,
            vec!["A B".into(), "C D".into()],
            "2 invalid",
        )
        .frame();
        let v: Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","payload":{"code":"invalid_symbol","symbols":["A B","C D"],"message":"2 invalid"}})
        );
        let f = subscribed(Some(1), &["AAPL", "MSFT"], &["MSFT"]);
        let v: Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(
            v,
            json!({"type":"subscribed","id":1,"payload":{"symbols":["AAPL","MSFT"],"unknown":["MSFT"]}})
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
