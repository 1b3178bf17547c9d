//! MessagePack (`tickcast.msgpack`): the JSON messages as MessagePack maps,
//! for bots and desktop apps that want fewer bytes and cheaper parsing.
//!
//! The mapping follows what a JSON decoder makes of our JSON: an object is a
//! map with string keys, a string a str, `true` a bool, an integral number
//! (`seq`, `ts`, `pub`, a whole `volume` or price) the smallest unsigned or
//! negative int that holds it, any other number a float 64. The tick is
//! written with `rmp`'s primitives straight from its state; other messages
//! through `rmp-serde` from the same value the JSON encoding writes.

use super::Encoding;
use crate::candle::bar::Bar;
use crate::protocol::Message;
use crate::tick::TickState;

/// MessagePack, binary.
pub struct MsgPack;

impl Encoding for MsgPack {
    fn name(&self) -> &'static str {
        "tickcast.msgpack"
    }

    fn binary(&self) -> bool {
        true
    }

    fn tick(&self, symbol: &str, t: &TickState, snapshot: bool, out: &mut Vec<u8>) {
        put_tick(out, symbol, t, snapshot);
    }

    fn message(&self, m: &Message, out: &mut Vec<u8>) {
        use rmp::encode::{write_array_len, write_bool, write_map_len, write_str};
        match m {
            Message::Candles {
                symbol,
                interval,
                bars,
                snapshot,
            } => {
                let _ = write_map_len(out, 2);
                let _ = write_str(out, "type");
                let _ = write_str(out, "candles");
                let _ = write_str(out, "payload");
                let _ = write_map_len(out, 3 + u32::from(*snapshot));
                let _ = write_str(out, "symbol");
                let _ = write_str(out, symbol);
                let _ = write_str(out, "interval");
                let _ = write_str(out, interval);
                let _ = write_str(out, "bars");
                let _ = write_array_len(out, bars.len() as u32);
                for bar in bars {
                    put_bar(out, None, bar);
                }
                if *snapshot {
                    let _ = write_str(out, "snapshot");
                    let _ = write_bool(out, true);
                }
            }
            Message::Candle {
                symbol,
                interval,
                bar,
            } => {
                let _ = write_map_len(out, 2);
                let _ = write_str(out, "type");
                let _ = write_str(out, "candle");
                let _ = write_str(out, "payload");
                put_bar(out, Some((symbol, interval)), bar);
            }
            // Writing a `Value` into a Vec cannot fail.
            _ => {
                let _ = rmp_serde::encode::write_named(out, &m.to_value());
            }
        }
    }
}

/// One bar's map (as its JSON), with its series' names when given.
fn put_bar(out: &mut Vec<u8>, series: Option<(&str, &str)>, b: &Bar) {
    use rmp::encode::{write_bool, write_map_len, write_str, write_uint};
    let _ = write_map_len(out, 10 + if series.is_some() { 2 } else { 0 });
    if let Some((symbol, interval)) = series {
        let _ = write_str(out, "symbol");
        let _ = write_str(out, symbol);
        let _ = write_str(out, "interval");
        let _ = write_str(out, interval);
    }
    let _ = write_str(out, "seq");
    let _ = write_uint(out, b.seq);
    let _ = write_str(out, "start");
    let _ = write_uint(out, b.start);
    for (name, v) in [
        ("open", b.open),
        ("high", b.high),
        ("low", b.low),
        ("close", b.close),
        ("volume", b.volume),
    ] {
        let _ = write_str(out, name);
        put_number(out, v);
    }
    let _ = write_str(out, "trades");
    let _ = write_uint(out, u64::from(b.trades));
    let _ = write_str(out, "source");
    let _ = write_str(out, b.source.as_str());
    let _ = write_str(out, "closed");
    let _ = write_bool(out, b.closed);
}

/// Writes into a Vec, which cannot fail.
fn put_tick(out: &mut Vec<u8>, symbol: &str, t: &TickState, snapshot: bool) {
    use rmp::encode::{write_bool, write_map_len, write_str, write_uint};
    let fields = [
        ("bid", t.fields.bid),
        ("ask", t.fields.ask),
        ("last", t.fields.last),
        ("volume", t.fields.volume),
    ];
    let present = fields.iter().filter(|(_, v)| v.is_some()).count() as u32;
    let _ = write_map_len(out, 2);
    let _ = write_str(out, "type");
    let _ = write_str(out, "tick");
    let _ = write_str(out, "payload");
    let _ = write_map_len(out, 4 + present + u32::from(snapshot));
    let _ = write_str(out, "symbol");
    let _ = write_str(out, symbol);
    let _ = write_str(out, "seq");
    let _ = write_uint(out, t.seq);
    for (name, value) in fields {
        if let Some(v) = value {
            let _ = write_str(out, name);
            put_number(out, v);
        }
    }
    let _ = write_str(out, "ts");
    let _ = write_uint(out, t.ts);
    let _ = write_str(out, "pub");
    let _ = write_uint(out, t.pub_us);
    if snapshot {
        let _ = write_str(out, "snapshot");
        let _ = write_bool(out, true);
    }
}

/// An integral value that a float 64 holds exactly as an int, else a float 64.
fn put_number(out: &mut Vec<u8>, v: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && v.abs() < EXACT {
        if v >= 0.0 {
            let _ = rmp::encode::write_uint(out, v as u64);
        } else {
            let _ = rmp::encode::write_sint(out, v as i64);
        }
    } else {
        let _ = rmp::encode::write_f64(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Fields;

    #[test]
    fn a_tick_decodes_to_the_json_fields() {
        let t = TickState {
            seq: 1042,
            fields: Fields {
                bid: Some(189.1),
                ask: None,
                last: Some(-3.0),
                volume: Some(1200.0),
            },
            ts: 1732400000123456,
            pub_us: 1732400000129012,
            gseq: 9,
        };
        let mut out = Vec::new();
        MsgPack.tick("AAPL", &t, true, &mut out);
        let v: serde_json::Value = rmp_serde::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"tick","payload":{"symbol":"AAPL","seq":1042,"bid":189.1,
                "last":-3,"volume":1200,"ts":1732400000123456u64,"pub":1732400000129012u64,"snapshot":true}})
        );
        let mut json = Vec::new();
        super::super::json::Json.tick("AAPL", &t, true, &mut json);
        assert!(
            out.len() < json.len(),
            "{} vs {} bytes",
            out.len(),
            json.len()
        );
    }

    /// The example of docs/protocol.md §4a, byte for byte.
    #[test]
    fn the_documented_example() {
        let t = TickState {
            seq: 1042,
            fields: Fields {
                bid: Some(189.1),
                volume: Some(1200.0),
                ..Fields::default()
            },
            ts: 1732400000123456,
            pub_us: 1732400000129012,
            gseq: 1,
        };
        let mut out = Vec::new();
        MsgPack.tick("AAPL", &t, false, &mut out);
        let hex: Vec<String> = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "82 a4 74 79 70 65 a4 74 69 63 6b a7 70 61 79 6c 6f 61 64 86 a6 73 79 6d 62 6f 6c \
             a4 41 41 50 4c a3 73 65 71 cd 04 12 a3 62 69 64 cb 40 67 a3 33 33 33 33 33 a6 76 \
             6f 6c 75 6d 65 cd 04 b0 a2 74 73 cf 00 06 27 9b ce 9d c2 40 a3 70 75 62 cf 00 06 \
             27 9b ce 9d d7 f4"
        );
        assert_eq!(out.len(), 87);
    }

    #[test]
    fn messages_are_maps_of_the_json_value() {
        let mut bar = Bar::open_at(60_000_000, 189.1, crate::candle::bar::Source::Trades);
        bar.trade(-2.0, 1200.0);
        bar.seq = 7;
        for m in [
            Message::Pong { id: Some(3), ts: 5 },
            Message::Candles {
                symbol: "AAPL".into(),
                interval: "1m".into(),
                bars: vec![bar, bar],
                snapshot: true,
            },
            Message::candle("AAPL@1m", &bar),
        ] {
            let mut out = Vec::new();
            MsgPack.message(&m, &mut out);
            let v: serde_json::Value = rmp_serde::from_slice(&out).unwrap();
            assert_eq!(v, m.to_value());
        }
    }
}
