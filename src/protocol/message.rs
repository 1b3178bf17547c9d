//! Server messages out (protocol §4), as values: every reply and notice but
//! `tick`, which is on the hot path and encoded straight from its state.
//!
//! A message is `{"type":…,"id":…,"payload":…}`; [`Message::to_value`]
//! builds that shape once, and each encoding writes it in its own bytes.

use super::{ErrorCode, RequestError};
use crate::candle::bar::Bar;
use serde_json::{json, Map, Value};

/// What `welcome` tells a client.
#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    pub session: String,
    pub heartbeat_ms: u64,
    pub max_symbols: u32,
    /// The inbound message limit in bytes (a client splits its requests under it).
    pub max_message: usize,
    /// Names the lineage of `seq` numbers: they compare only within one epoch.
    pub epoch: u64,
    pub node: String,
    /// When the connection's token expires (seconds since the epoch), if it has one.
    pub exp: Option<u64>,
}

/// A message from the server (other than `tick`).
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Welcome(Welcome),
    /// The symbols now subscribed, and those of them without a value yet.
    Subscribed {
        id: Option<i64>,
        symbols: Vec<String>,
        unknown: Vec<String>,
        /// Candle series subscribed (`SYMBOL@INTERVAL`), when the request named some.
        candles: Vec<String>,
    },
    /// `reason` is present when the server ended the subscriptions itself
    /// (`forbidden`: a token refresh narrowed the entitlements).
    Unsubscribed {
        id: Option<i64>,
        symbols: Vec<String>,
        candles: Vec<String>,
        reason: Option<&'static str>,
    },
    /// A series' history (`snapshot`: right after subscribing).
    Candles {
        symbol: String,
        interval: String,
        bars: Vec<Bar>,
        snapshot: bool,
    },
    /// One bar's new state (a gap filled; live ones are encoded once per
    /// update and form, from the same payload).
    Candle {
        symbol: String,
        interval: String,
        bar: Bar,
    },
    Pong {
        id: Option<i64>,
        ts: u64,
    },
    /// A token refresh succeeded.
    Authenticated {
        id: Option<i64>,
        sub: String,
        exp: u64,
    },
    Error(RequestError),
    /// The server is about to close this connection (1001: a drain, or
    /// `--max-connection-age`): reconnect after `after_ms`, spread across
    /// clients so that they do not all arrive at the next node at once.
    Reconnect {
        after_ms: u64,
        reason: &'static str,
    },
}

impl Message {
    /// A bar's new state as a `candle` message on the channel `SYMBOL@INTERVAL`.
    pub fn candle(channel: &str, bar: &Bar) -> Message {
        let (symbol, interval) = channel.split_once('@').unwrap_or((channel, ""));
        Message::Candle {
            symbol: symbol.into(),
            interval: interval.into(),
            bar: *bar,
        }
    }

    /// The message's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Welcome(_) => "welcome",
            Message::Subscribed { .. } => "subscribed",
            Message::Unsubscribed { .. } => "unsubscribed",
            Message::Candles { .. } => "candles",
            Message::Candle { .. } => "candle",
            Message::Pong { .. } => "pong",
            Message::Authenticated { .. } => "authenticated",
            Message::Error(_) => "error",
            Message::Reconnect { .. } => "reconnect",
        }
    }

    fn id(&self) -> Option<i64> {
        match self {
            Message::Welcome(_)
            | Message::Reconnect { .. }
            | Message::Candles { .. }
            | Message::Candle { .. } => None,
            Message::Subscribed { id, .. }
            | Message::Unsubscribed { id, .. }
            | Message::Pong { id, .. }
            | Message::Authenticated { id, .. } => *id,
            Message::Error(e) => e.id,
        }
    }

    /// The payload object alone (what an SSE event's `data` holds).
    pub fn payload(&self) -> Value {
        match self {
            Message::Welcome(w) => {
                let mut p = json!({"session": w.session,
                    "server": concat!("tickcast/", env!("CARGO_PKG_VERSION")),
                    "heartbeat_ms": w.heartbeat_ms, "max_symbols": w.max_symbols,
                    "max_message": w.max_message, "epoch": w.epoch, "node": w.node});
                if let Some(exp) = w.exp {
                    p["exp"] = exp.into();
                }
                p
            }
            Message::Subscribed {
                symbols,
                unknown,
                candles,
                ..
            } => {
                let mut p = json!({"symbols": symbols, "unknown": unknown});
                if !candles.is_empty() {
                    p["candles"] = candles.clone().into();
                }
                p
            }
            Message::Unsubscribed {
                symbols,
                candles,
                reason,
                ..
            } => {
                let mut p = json!({ "symbols": symbols });
                if !candles.is_empty() {
                    p["candles"] = candles.clone().into();
                }
                if let Some(reason) = reason {
                    p["reason"] = (*reason).into();
                }
                p
            }
            Message::Candles {
                symbol,
                interval,
                bars,
                snapshot,
            } => {
                let bars: Vec<Value> = bars.iter().map(|b| b.to_value(None)).collect();
                let mut p = json!({"symbol": symbol, "interval": interval, "bars": bars});
                if *snapshot {
                    p["snapshot"] = true.into();
                }
                p
            }
            Message::Candle {
                symbol,
                interval,
                bar,
            } => bar.to_value(Some((symbol, interval))),
            Message::Pong { ts, .. } => json!({"ts": ts}),
            Message::Authenticated { sub, exp, .. } => json!({"sub": sub, "exp": exp}),
            Message::Error(e) => error_payload(e),
            Message::Reconnect { after_ms, reason } => {
                json!({"after_ms": after_ms, "reason": reason})
            }
        }
    }

    /// The whole message: `{"type":…,"id":…,"payload":…}` (`id` when there is one).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".into(), self.kind().into());
        if let Some(id) = self.id() {
            obj.insert("id".into(), id.into());
        }
        obj.insert("payload".into(), self.payload());
        Value::Object(obj)
    }
}

/// `symbols` lists the symbols at fault, and `symbol` names it too when there
/// is exactly one (as protocol v1 did).
fn error_payload(e: &RequestError) -> Value {
    let mut payload = Map::new();
    payload.insert("code".into(), e.code.as_str().into());
    if let [one] = &e.symbols[..] {
        payload.insert("symbol".into(), one.clone().into());
    }
    if !e.symbols.is_empty() {
        payload.insert("symbols".into(), e.symbols.clone().into());
    }
    payload.insert("message".into(), e.message.clone().into());
    Value::Object(payload)
}

impl From<RequestError> for Message {
    /// Counted in `tickcast_client_errors_total` as it is made into a message.
    fn from(e: RequestError) -> Message {
        crate::metrics::METRICS.client_error(e.code);
        Message::Error(e)
    }
}

impl RequestError {
    /// The `rate_limited` reply to a message refused for its rate.
    pub fn rate_limited(id: Option<i64>) -> RequestError {
        RequestError::new(id, ErrorCode::RateLimited, "too many messages: slow down")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_have_the_spec_shape() {
        let m = Message::from(RequestError::for_symbols(
            Some(1),
            ErrorCode::Forbidden,
            vec!["TSLA".into()],
            "not entitled to TSLA",
        ));
        assert_eq!(
            m.to_value(),
            json!({"type":"error","id":1,"payload":{"code":"forbidden","symbol":"TSLA","symbols":["TSLA"],"message":"not entitled to TSLA"}})
        );
        let m = Message::from(RequestError::for_symbols(
            None,
            ErrorCode::InvalidSymbol,
            vec!["A B".into(), "C D".into()],
            "2 invalid",
        ));
        assert_eq!(
            m.to_value(),
            json!({"type":"error","payload":{"code":"invalid_symbol","symbols":["A B","C D"],"message":"2 invalid"}})
        );
        let m = Message::Subscribed {
            id: Some(1),
            symbols: vec!["AAPL".into(), "MSFT".into()],
            unknown: vec!["MSFT".into()],
            candles: vec![],
        };
        assert_eq!(
            m.to_value(),
            json!({"type":"subscribed","id":1,"payload":{"symbols":["AAPL","MSFT"],"unknown":["MSFT"]}})
        );
        let m = Message::Unsubscribed {
            id: Some(2),
            symbols: vec!["TSLA".into()],
            candles: vec![],
            reason: Some("forbidden"),
        };
        assert_eq!(
            m.to_value(),
            json!({"type":"unsubscribed","id":2,"payload":{"symbols":["TSLA"],"reason":"forbidden"}})
        );
    }

    #[test]
    fn welcome_carries_the_limits_and_the_expiry() {
        let w = Welcome {
            session: "s".into(),
            heartbeat_ms: 30000,
            max_symbols: 1024,
            max_message: 4096,
            epoch: 7,
            node: "n".into(),
            exp: Some(99),
        };
        let v = Message::Welcome(w.clone()).to_value();
        assert_eq!(v["payload"]["max_message"], 4096);
        assert_eq!(v["payload"]["exp"], 99);
        let v = Message::Welcome(Welcome { exp: None, ..w }).to_value();
        assert!(v["payload"].get("exp").is_none());
    }
}
