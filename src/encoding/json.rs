//! JSON, the default encoding: what protocol v1 speaks.
//!
//! The tick is fixed-shape, so it is written directly with `itoa`/`ryu`
//! rather than through a generic serializer (see `benches/`); so are candle
//! bars (a history holds hundreds); every other message goes through
//! serde_json once per message.

use super::Encoding;
use crate::candle::bar::Bar;
use crate::protocol::Message;
use crate::tick::TickState;
use bytes::BufMut;

/// JSON text (`tickcast.json`, and what a client that asks for nothing gets).
pub struct Json;

impl Encoding for Json {
    fn name(&self) -> &'static str {
        "tickcast.json"
    }

    fn binary(&self) -> bool {
        false
    }

    fn tick(&self, symbol: &str, state: &TickState, snapshot: bool, out: &mut Vec<u8>) {
        put_tick(out, symbol, state, snapshot);
    }

    fn message(&self, m: &Message, out: &mut Vec<u8>) {
        match m {
            Message::Candles {
                symbol,
                interval,
                bars,
                snapshot,
            } => put_candles(out, symbol, interval, bars, *snapshot),
            Message::Candle {
                symbol,
                interval,
                bar,
            } => {
                out.put_slice(b"{\"type\":\"candle\",\"payload\":");
                put_bar(out, Some((symbol, interval)), bar);
                out.put_u8(b'}');
            }
            // Writing a `Value` into a Vec cannot fail.
            _ => {
                let _ = serde_json::to_writer(out, &m.to_value());
            }
        }
    }
}

/// Appends a `candles` message. `symbol` is a valid symbol and `interval` a
/// served interval's name: neither needs escaping.
fn put_candles(buf: &mut Vec<u8>, symbol: &str, interval: &str, bars: &[Bar], snapshot: bool) {
    buf.put_slice(b"{\"type\":\"candles\",\"payload\":");
    put_candles_payload(buf, symbol, interval, bars, snapshot);
    buf.put_u8(b'}');
}

/// Appends a `candles` payload (`{"symbol":…,"interval":…,"bars":[…]}`),
/// as `/candles` answers too.
pub fn put_candles_payload(
    buf: &mut Vec<u8>,
    symbol: &str,
    interval: &str,
    bars: &[Bar],
    snapshot: bool,
) {
    buf.reserve(64 + bars.len() * 160);
    buf.put_slice(b"{\"symbol\":\"");
    buf.put_slice(symbol.as_bytes());
    buf.put_slice(b"\",\"interval\":\"");
    buf.put_slice(interval.as_bytes());
    buf.put_slice(b"\",\"bars\":[");
    for (i, bar) in bars.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        put_bar(buf, None, bar);
    }
    buf.put_u8(b']');
    if snapshot {
        buf.put_slice(b",\"snapshot\":true");
    }
    buf.put_u8(b'}');
}

/// Appends one bar's object, with its series' names when given.
fn put_bar(buf: &mut impl BufMut, series: Option<(&str, &str)>, b: &Bar) {
    buf.put_u8(b'{');
    if let Some((symbol, interval)) = series {
        buf.put_slice(b"\"symbol\":\"");
        buf.put_slice(symbol.as_bytes());
        buf.put_slice(b"\",\"interval\":\"");
        buf.put_slice(interval.as_bytes());
        buf.put_slice(b"\",");
    }
    buf.put_slice(b"\"seq\":");
    put_u64(buf, b.seq);
    buf.put_slice(b",\"start\":");
    put_u64(buf, b.start);
    for (name, v) in [
        (&b",\"open\":"[..], b.open),
        (b",\"high\":", b.high),
        (b",\"low\":", b.low),
        (b",\"close\":", b.close),
        (b",\"volume\":", b.volume),
    ] {
        buf.put_slice(name);
        put_number(buf, v);
    }
    buf.put_slice(b",\"trades\":");
    put_u64(buf, u64::from(b.trades));
    buf.put_slice(b",\"source\":\"");
    buf.put_slice(b.source.as_str().as_bytes());
    buf.put_slice(b"\",\"closed\":");
    buf.put_slice(if b.closed { b"true" } else { b"false" });
    buf.put_u8(b'}');
}

/// Appends a whole `tick` message (`{"type":"tick","payload":{…}}`). `symbol`
/// must be valid (see [`crate::symbol`]): it is written without escaping.
pub fn put_tick(buf: &mut impl BufMut, symbol: &str, t: &TickState, snapshot: bool) {
    buf.put_slice(b"{\"type\":\"tick\",\"payload\":");
    put_tick_payload(buf, symbol, t, snapshot);
    buf.put_u8(b'}');
}

/// Appends a number in shortest round-trip form: integers without a fraction
/// (`1200`, not `1200.0`), others as `ryu` would print them (`189.11`).
pub fn put_number(buf: &mut impl BufMut, v: f64) {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        buf.put_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else if !put_short_decimal(buf, v) {
        buf.put_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

/// Prices are short decimals (`189.11`, `0.86925`); printing them as an
/// integer of 10⁻⁸ units is several times cheaper than a general shortest
/// float formatter. Below 10⁷ a double's spacing is under 10⁻⁸, so at most
/// one integer maps back to `v`: when it does, stripping its trailing zeros
/// gives the shortest round-trip form, the same digits `ryu` prints.
/// Returns false (and writes nothing) for anything else.
fn put_short_decimal(buf: &mut impl BufMut, v: f64) -> bool {
    const SCALE: f64 = 1e8;
    let a = v.abs();
    if !(1e-8..1e7).contains(&a) {
        return false;
    }
    let units = (a * SCALE).round();
    if units / SCALE != a {
        return false;
    }
    let units = units as u64;
    let (int, mut frac) = (units / 100_000_000, units % 100_000_000);
    let mut digits = 8;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    if v < 0.0 {
        buf.put_u8(b'-');
    }
    let mut ib = itoa::Buffer::new();
    buf.put_slice(ib.format(int).as_bytes());
    buf.put_u8(b'.');
    let f = ib.format(frac);
    buf.put_bytes(b'0', digits - f.len());
    buf.put_slice(f.as_bytes());
    true
}

fn put_u64(buf: &mut impl BufMut, v: u64) {
    buf.put_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends the tick payload object (`{"symbol":…,"seq":…,…}`).
pub fn put_tick_payload(buf: &mut impl BufMut, symbol: &str, t: &TickState, snapshot: bool) {
    buf.put_slice(b"{\"symbol\":\"");
    buf.put_slice(symbol.as_bytes());
    buf.put_slice(b"\",\"seq\":");
    put_u64(buf, t.seq);
    for (name, value) in [
        (&b",\"bid\":"[..], t.fields.bid),
        (b",\"ask\":", t.fields.ask),
        (b",\"last\":", t.fields.last),
        (b",\"volume\":", t.fields.volume),
    ] {
        if let Some(v) = value {
            buf.put_slice(name);
            put_number(buf, v);
        }
    }
    buf.put_slice(b",\"ts\":");
    put_u64(buf, t.ts);
    buf.put_slice(b",\"pub\":");
    put_u64(buf, t.pub_us);
    if snapshot {
        buf.put_slice(b",\"snapshot\":true");
    }
    buf.put_u8(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Fields;
    use bytes::BytesMut;

    fn tick_json(symbol: &str, t: &TickState, snapshot: bool) -> String {
        let mut out = Vec::new();
        Json.tick(symbol, t, snapshot, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn candles_written_directly_are_the_messages_json_value() {
        let mut a = Bar::open_at(60_000_000, 189.1, crate::candle::bar::Source::Trades);
        a.trade(189.25, 1200.0);
        a.seq = 7;
        a.closed = true;
        let mut b = Bar::open_at(120_000_000, 1.08545, crate::candle::bar::Source::Mid);
        b.price(-0.5);
        b.seq = 9;
        for m in [
            Message::Candles {
                symbol: "FX:EUR/USD".into(),
                interval: "1m".into(),
                bars: vec![a, b],
                snapshot: true,
            },
            Message::Candles {
                symbol: "A".into(),
                interval: "1s".into(),
                bars: vec![],
                snapshot: false,
            },
            Message::candle("AAPL@1m", &a),
        ] {
            let mut out = Vec::new();
            Json.message(&m, &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v, m.to_value(), "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn tick_is_the_spec_json() {
        let t = TickState {
            seq: 1042,
            fields: Fields {
                bid: Some(189.1),
                ask: Some(189.12),
                last: Some(189.11),
                volume: Some(1200.0),
            },
            ts: 1732400000123456,
            pub_us: 1732400000129012,
            gseq: 77,
        };
        assert_eq!(
            tick_json("AAPL", &t, false),
            r#"{"type":"tick","payload":{"symbol":"AAPL","seq":1042,"bid":189.1,"ask":189.12,"last":189.11,"volume":1200,"ts":1732400000123456,"pub":1732400000129012}}"#
        );
        assert!(tick_json("AAPL", &t, true).ends_with(r#""snapshot":true}}"#));
    }

    #[test]
    fn absent_fields_are_left_out_and_extremes_are_valid_json() {
        let t = TickState {
            seq: 1,
            fields: Fields {
                last: Some(0.1 + 0.2),
                ..Fields::default()
            },
            ts: 5,
            pub_us: 6,
            gseq: 1,
        };
        assert_eq!(
            tick_json("X", &t, false),
            r#"{"type":"tick","payload":{"symbol":"X","seq":1,"last":0.30000000000000004,"ts":5,"pub":6}}"#
        );
        let t = TickState {
            seq: u64::MAX,
            fields: Fields {
                bid: Some(1.0e-7),
                ask: Some(123456.789),
                last: Some(-3.5),
                volume: Some(1e20),
            },
            ts: u64::MAX,
            pub_us: u64::MAX,
            gseq: u64::MAX,
        };
        let v: serde_json::Value =
            serde_json::from_str(&tick_json(&"L".repeat(32), &t, true)).unwrap();
        assert_eq!(v["payload"]["bid"].as_f64(), Some(1.0e-7));
        assert_eq!(v["payload"]["volume"].as_f64(), Some(1e20));
    }

    #[test]
    fn short_decimals_print_as_ryu_does() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..200_000 {
            let decimals = rng.u32(0..=8);
            let v = rng.i64(-10_000_000_000..10_000_000_000) as f64 / 10f64.powi(decimals as i32);
            for v in [v, v / 1000.0, v * 3.7] {
                let mut ours = BytesMut::new();
                put_number(&mut ours, v);
                let ours = std::str::from_utf8(&ours).unwrap();
                assert_eq!(
                    ours.parse::<f64>().unwrap(),
                    v,
                    "{ours} does not round-trip"
                );
                let theirs = ryu::Buffer::new().format_finite(v).to_string();
                if !theirs.contains('e') {
                    assert_eq!(ours, theirs.trim_end_matches(".0"), "{v}");
                }
            }
        }
    }

    #[test]
    fn prices_print_in_shortest_round_trip_form() {
        let mut b = BytesMut::new();
        put_number(&mut b, 18911.0 / 100.0);
        assert_eq!(&b[..], b"189.11");
    }
}
