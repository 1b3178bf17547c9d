//! Server-to-client bytes: WebSocket frame headers and the `tick` message.
//!
//! Server frames are unmasked, so a tick's complete frame (header + JSON) is
//! the same for every client: it is encoded once here, frozen into `Bytes`
//! and shared. The tick JSON is fixed-shape, so it is written directly with
//! `itoa`/`ryu` rather than through a generic serializer (see `benches/`).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// WebSocket opcodes the server sends.
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The fields of a symbol's state; each is present once the feed has sent it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fields {
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub last: Option<f64>,
    pub volume: Option<f64>,
}

impl Fields {
    /// Overwrites the fields that `newer` has.
    pub fn merge(&mut self, newer: &Fields) {
        if newer.bid.is_some() {
            self.bid = newer.bid;
        }
        if newer.ask.is_some() {
            self.ask = newer.ask;
        }
        if newer.last.is_some() {
            self.last = newer.last;
        }
        if newer.volume.is_some() {
            self.volume = newer.volume;
        }
    }
}

/// One released update of one symbol: the full state, never a delta.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TickState {
    pub seq: u64,
    pub fields: Fields,
    /// Feed event time of the newest tick merged in, µs since the epoch.
    pub ts: u64,
    /// When the coalescer released it, µs since the epoch.
    pub pub_us: u64,
}

/// Writes a frame header for a payload of `len` bytes.
fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

/// A complete unmasked frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    put_header(&mut buf, opcode, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// A complete text frame.
pub fn text_frame(payload: &[u8]) -> Bytes {
    frame(OP_TEXT, payload)
}

/// A close frame with a status code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    frame(OP_CLOSE, &payload)
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

/// The complete text frame of a `tick` message. `symbol` must be valid
/// (see [`crate::symbol`]): it is written without escaping.
pub fn tick_frame(symbol: &str, t: &TickState, snapshot: bool) -> Bytes {
    // Reserve the longest header a tick can need (4 bytes: payloads stay under
    // 64 KiB), write the JSON after it, then fill the header in place.
    const HEADER: usize = 4;
    let mut buf = BytesMut::with_capacity(200);
    buf.put_bytes(0, HEADER);
    buf.put_slice(b"{\"type\":\"tick\",\"payload\":");
    put_tick_payload(&mut buf, symbol, t, snapshot);
    buf.put_u8(b'}');
    let len = buf.len() - HEADER;
    let start = if len < 126 {
        buf[2] = 0x80 | OP_TEXT;
        buf[3] = len as u8;
        2
    } else {
        buf[0] = 0x80 | OP_TEXT;
        buf[1] = 126;
        buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        0
    };
    let mut frame = buf.freeze();
    // `advance` only moves the start; `split_to` would allocate a shared header.
    frame.advance(start);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(frame: &[u8]) -> &str {
        let (start, len) = match frame[1] {
            126 => (4, u16::from_be_bytes([frame[2], frame[3]]) as usize),
            n => (2, n as usize),
        };
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame.len(), start + len);
        std::str::from_utf8(&frame[start..]).unwrap()
    }

    #[test]
    fn tick_frame_is_the_spec_json() {
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
        };
        let f = tick_frame("AAPL", &t, false);
        assert_eq!(
            payload_of(&f),
            r#"{"type":"tick","payload":{"symbol":"AAPL","seq":1042,"bid":189.1,"ask":189.12,"last":189.11,"volume":1200,"ts":1732400000123456,"pub":1732400000129012}}"#
        );
        let s = tick_frame("AAPL", &t, true);
        assert!(payload_of(&s).ends_with(r#""snapshot":true}}"#));
    }

    #[test]
    fn absent_fields_are_left_out_and_long_payloads_get_16_bit_lengths() {
        let t = TickState {
            seq: 1,
            fields: Fields {
                last: Some(0.1 + 0.2),
                ..Fields::default()
            },
            ts: 5,
            pub_us: 6,
        };
        let f = tick_frame("X", &t, false);
        assert_eq!(
            payload_of(&f),
            r#"{"type":"tick","payload":{"symbol":"X","seq":1,"last":0.30000000000000004,"ts":5,"pub":6}}"#
        );
        let long = "L".repeat(32);
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
        };
        let f = tick_frame(&long, &t, true);
        assert_eq!(f[1], 126);
        let v: serde_json::Value = serde_json::from_str(payload_of(&f)).unwrap();
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

    #[test]
    fn close_frame_carries_code_and_reason() {
        let f = close_frame(4008, "slow consumer");
        assert_eq!(f[0], 0x88);
        assert_eq!(&f[2..4], &4008u16.to_be_bytes());
        assert_eq!(&f[4..], b"slow consumer");
    }

    #[test]
    fn merge_overwrites_only_present_fields() {
        let mut a = Fields {
            bid: Some(1.0),
            ask: Some(2.0),
            ..Fields::default()
        };
        a.merge(&Fields {
            last: Some(1.5),
            volume: Some(10.0),
            ..Fields::default()
        });
        a.merge(&Fields {
            bid: Some(1.1),
            ..Fields::default()
        });
        assert_eq!(
            a,
            Fields {
                bid: Some(1.1),
                ask: Some(2.0),
                last: Some(1.5),
                volume: Some(10.0)
            }
        );
    }
}
