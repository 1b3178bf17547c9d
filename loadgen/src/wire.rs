//! The client side of the WebSocket wire: the upgrade request, masked client
//! frames, server frame parsing, and reading the few fields of a `tick` that
//! latency and gap measurement need without a full JSON parse.

/// The HTTP upgrade request for `path` on `host`.
pub fn upgrade_request(host: &str, path: &str, extra_headers: &str) -> Vec<u8> {
    let key: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra_headers}\r\n"
    )
    .into_bytes()
}

/// A response head's `Retry-After` in seconds (at most an hour), if any.
pub fn retry_after(head: &str) -> Option<std::time::Duration> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("retry-after") {
            return None;
        }
        let secs: u64 = value.trim().parse().ok()?;
        Some(std::time::Duration::from_secs(secs.min(3600)))
    })
}

/// A masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    tickcast::transport::ws::frame::encode_client_frame(
        true,
        opcode,
        payload,
        fastrand::u32(..).to_be_bytes(),
    )
}

/// One server frame found at the start of a buffer.
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
    /// Bytes the frame takes in the buffer.
    pub len: usize,
}

/// Parses the first complete (unmasked) server frame in `buf`, if there is one.
pub fn parse_frame(buf: &[u8]) -> Option<Frame<'_>> {
    if buf.len() < 2 {
        return None;
    }
    let (len, header): (usize, usize) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let total = header.checked_add(len)?;
    if buf.len() < total {
        return None;
    }
    Some(Frame {
        opcode: buf[0] & 0x0f,
        payload: &buf[header..total],
        len: total,
    })
}

/// The number after `"key":` in a flat JSON object.
pub fn field_u64(json: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(json, key)? + key.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The string after `"key":"` (no escapes: tickcast's symbols need none).
pub fn field_str<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = find(json, key)? + key.len();
    let end = json[at..].iter().position(|&b| b == b'"')?;
    Some(&json[at..at + end])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a `tick` message says, for measurement.
#[derive(Debug, PartialEq)]
pub struct TickFields<'a> {
    pub symbol: &'a [u8],
    pub seq: u64,
    pub ts: u64,
    pub pub_us: u64,
    pub snapshot: bool,
}

/// Reads a tick's fields, or `None` when the message is not a tick.
pub fn tick_fields(json: &[u8]) -> Option<TickFields<'_>> {
    if !json.starts_with(br#"{"type":"tick""#) {
        return None;
    }
    Some(TickFields {
        symbol: field_str(json, br#""symbol":""#)?,
        seq: field_u64(json, br#""seq":"#)?,
        ts: field_u64(json, br#""ts":"#)?,
        pub_us: field_u64(json, br#""pub":"#)?,
        snapshot: find(json, br#""snapshot":true"#).is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_tick() {
        let t = br#"{"type":"tick","payload":{"symbol":"AAPL","seq":1042,"bid":189.1,"ask":189.12,"last":189.11,"volume":1200,"ts":1732400000123456,"pub":1732400000129012}}"#;
        assert_eq!(
            tick_fields(t),
            Some(TickFields {
                symbol: b"AAPL",
                seq: 1042,
                ts: 1732400000123456,
                pub_us: 1732400000129012,
                snapshot: false
            })
        );
        let s = br#"{"type":"tick","payload":{"symbol":"FX:EUR/USD","seq":1,"ts":5,"pub":6,"snapshot":true}}"#;
        assert!(tick_fields(s).unwrap().snapshot);
        assert!(tick_fields(br#"{"type":"pong","id":1}"#).is_none());
    }

    #[test]
    fn frames_round_trip_through_the_parser() {
        let server = [&[0x81u8, 5][..], b"hello", &[0x89, 0]].concat();
        let f = parse_frame(&server).unwrap();
        assert_eq!((f.opcode, f.payload, f.len), (1, &b"hello"[..], 7));
        let g = parse_frame(&server[7..]).unwrap();
        assert_eq!((g.opcode, g.payload.len()), (9, 0));
        assert!(parse_frame(&server[..6]).is_none(), "incomplete");
        let c = client_frame(1, &[7u8; 300]);
        assert_eq!((c[0], c[1], c.len()), (0x81, 0x80 | 126, 4 + 4 + 300));
    }
}
