//! WebSocket frames (RFC 6455 §5) both ways: the client's, decoded without a
//! per-connection buffer, and the server's, encoded once and shared.
//!
//! fastwebsockets gives every connection an 8 KiB read buffer for its whole
//! life; at tens of thousands of mostly idle connections that alone is more
//! than our memory target per connection. Here the reader reads into a
//! per-thread scratch buffer and this decoder keeps bytes only while a frame
//! is incomplete, so an idle connection holds no buffer at all.
//! Unmasking is fastwebsockets' SIMD `unmask`.
//!
//! Every length a client sends is hostile: it is checked on the header,
//! before any payload is kept, with arithmetic that cannot wrap. A frame or
//! fragmented message over `max_message` is refused at once (1009), so the
//! decoder never holds more than one message's worth of bytes.
//!
//! Server frames are unmasked, so a frame is the same bytes for every client:
//! an update's frame is made once and shared ([`crate::latest::Latest`]).

use super::close::is_sendable_close_code;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// WebSocket opcodes the server sends.
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

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

/// A complete unmasked frame whose payload `write` appends: written once,
/// after room for a header of up to 4 bytes (payloads under 64 KiB: every
/// tick), which is then filled in place — no copy, no second allocation. A
/// longer payload (a reply listing thousands of symbols) is copied once.
pub fn frame_with(opcode: u8, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    const ROOM: usize = 4;
    let mut buf = Vec::with_capacity(200);
    buf.extend_from_slice(&[0; ROOM]);
    write(&mut buf);
    let len = buf.len() - ROOM;
    let start = if len < 126 {
        buf[2] = 0x80 | opcode;
        buf[3] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        buf[0] = 0x80 | opcode;
        buf[1] = 126;
        buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        0
    } else {
        return frame(opcode, &buf[ROOM..]);
    };
    let mut frame = Bytes::from(buf);
    // `advance` only moves the start; `split_to` would allocate a shared header.
    frame.advance(start);
    frame
}

/// A close frame with a status code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OP_CLOSE, &payload)
}

/// A complete frame or message, borrowed from the decoder or the input.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// A whole text message (fragments joined); not yet checked for UTF-8.
    Text(&'a [u8]),
    /// A fragment of a text message that is not the last one: it is kept by
    /// the decoder, and reported so that the caller can count frames.
    Fragment,
    Ping(&'a [u8]),
    Pong,
    /// A close frame and its status code, if it had one (already checked:
    /// a code a peer may send, and a UTF-8 reason).
    Close(Option<u16>),
}

/// Why the connection must be closed, with the close code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// 1009: a message over the limit.
    TooBig,
    /// 1003: a binary message.
    Binary,
    /// 1007: a close reason that is not UTF-8.
    NotUtf8,
    /// 1002: a framing rule was broken.
    Protocol(&'static str),
}

/// Whether the caller wants more frames from this input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

pub struct FrameDecoder {
    max_message: usize,
    /// Bytes of an incomplete frame (empty, unallocated, most of the time).
    partial: Vec<u8>,
    /// Payload of a fragmented text message so far.
    message: Vec<u8>,
    in_message: bool,
}

/// Largest frame header: 2 bytes, a 64-bit length, the mask.
const MAX_HEADER: usize = 14;

impl FrameDecoder {
    pub fn new(max_message: usize) -> FrameDecoder {
        FrameDecoder {
            max_message,
            partial: Vec::new(),
            message: Vec::new(),
            in_message: false,
        }
    }

    /// Bytes held between calls (an incomplete frame and a fragmented message).
    pub fn held(&self) -> usize {
        self.partial.len() + self.message.len()
    }

    /// Decodes `data` (which it may unmask in place), calling `on_frame` for
    /// every complete frame until it returns [`Flow::Stop`].
    pub fn feed(
        &mut self,
        data: &mut [u8],
        on_frame: &mut dyn FnMut(Frame<'_>) -> Flow,
    ) -> Result<Flow, FrameError> {
        if self.partial.is_empty() {
            let (used, flow) = self.decode(data, on_frame)?;
            if flow == Flow::Continue && used < data.len() {
                self.partial.extend_from_slice(&data[used..]);
            }
            Ok(flow)
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let (used, flow) = self.decode(&mut buf, on_frame)?;
            if flow == Flow::Continue && used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
            Ok(flow)
        }
    }

    fn decode(
        &mut self,
        buf: &mut [u8],
        on_frame: &mut dyn FnMut(Frame<'_>) -> Flow,
    ) -> Result<(usize, Flow), FrameError> {
        let mut pos = 0;
        loop {
            let b = &mut buf[pos..];
            if b.len() < 2 {
                return Ok((pos, Flow::Continue));
            }
            let fin = b[0] & 0x80 != 0;
            let opcode = b[0] & 0x0f;
            if b[0] & 0x70 != 0 {
                return Err(FrameError::Protocol("reserved bits set"));
            }
            if b[1] & 0x80 == 0 {
                return Err(FrameError::Protocol("client frames must be masked"));
            }
            let (len, header) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
                127 if b.len() >= 10 => {
                    let len = u64::from_be_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]);
                    if len >> 63 != 0 {
                        return Err(FrameError::Protocol(
                            "64-bit payload length with the most significant bit set",
                        ));
                    }
                    (len, 10)
                }
                126 | 127 => return Ok((pos, Flow::Continue)),
                n => (n as u64, 2),
            };
            match opcode {
                0x8..=0xA if !fin || len > 125 => {
                    return Err(FrameError::Protocol(
                        "control frames must be whole and at most 125 bytes",
                    ))
                }
                0x2 => return Err(FrameError::Binary),
                0x0 if !self.in_message => {
                    return Err(FrameError::Protocol("continuation without a message"))
                }
                0x1 if self.in_message => {
                    return Err(FrameError::Protocol("new message inside a fragmented one"))
                }
                0x0 | 0x1 => {
                    // What the message may still grow by: never negative, never wrapping.
                    let room = self.max_message.saturating_sub(self.message.len()) as u64;
                    if len > room {
                        return Err(FrameError::TooBig);
                    }
                }
                0x8..=0xA => {}
                _ => return Err(FrameError::Protocol("unknown opcode")),
            }
            // `len` is now at most max_message (or 125), so this cannot overflow.
            let len = len as usize;
            let total = header + 4 + len;
            debug_assert!(total <= self.max_message.max(125) + MAX_HEADER);
            if b.len() < total {
                return Ok((pos, Flow::Continue));
            }
            let mask = [b[header], b[header + 1], b[header + 2], b[header + 3]];
            let payload = &mut b[header + 4..total];
            fastwebsockets::unmask(payload, mask);
            pos += total;
            let flow = match opcode {
                0x1 if fin => on_frame(Frame::Text(payload)),
                0x1 => {
                    self.message.extend_from_slice(payload);
                    self.in_message = true;
                    on_frame(Frame::Fragment)
                }
                0x0 => {
                    self.message.extend_from_slice(payload);
                    if fin {
                        self.in_message = false;
                        let message = std::mem::take(&mut self.message);
                        on_frame(Frame::Text(&message))
                    } else {
                        on_frame(Frame::Fragment)
                    }
                }
                0x8 => on_frame(Frame::Close(close_code(payload)?)),
                0x9 => on_frame(Frame::Ping(payload)),
                _ => on_frame(Frame::Pong),
            };
            if flow == Flow::Stop {
                return Ok((pos, Flow::Stop));
            }
        }
    }
}

/// The status code of a close frame's payload, checked (RFC 6455 §5.5.1, §7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_sendable_close_code(code) {
                return Err(FrameError::Protocol("a close code that may not be sent"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::NotUtf8);
            }
            Ok(Some(code))
        }
    }
}

/// The inverse of [`FrameDecoder`]: a client's masked frame. The server never
/// sends one; loadgen and the tests do.
pub fn encode_client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push((if fin { 0x80 } else { 0 }) | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        encode_client_frame(fin, opcode, payload, [1, 2, 3, 4])
    }

    fn decode_all(d: &mut FrameDecoder, chunks: &[Vec<u8>]) -> Result<Vec<String>, FrameError> {
        let mut out = Vec::new();
        for c in chunks {
            let mut c = c.clone();
            d.feed(&mut c, &mut |f| {
                out.push(match f {
                    Frame::Text(t) => format!("text:{}", String::from_utf8_lossy(t)),
                    Frame::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                    Frame::Pong => "pong".into(),
                    Frame::Fragment => "fragment".into(),
                    Frame::Close(c) => format!("close:{c:?}"),
                });
                Flow::Continue
            })?;
        }
        Ok(out)
    }

    #[test]
    fn whole_frames_in_one_read() {
        let mut d = FrameDecoder::new(4096);
        let mut all = frame(true, 1, b"hello");
        all.extend(frame(true, 9, b"p"));
        all.extend(frame(true, 8, &1000u16.to_be_bytes()));
        assert_eq!(
            decode_all(&mut d, &[all]).unwrap(),
            vec!["text:hello", "ping:p", "close:Some(1000)"]
        );
        assert!(d.partial.capacity() == 0, "nothing kept between reads");
    }

    #[test]
    fn frames_split_at_every_byte_are_reassembled() {
        let bytes = frame(true, 1, &[b'x'; 300]);
        let mut d = FrameDecoder::new(4096);
        let chunks: Vec<Vec<u8>> = bytes.iter().map(|b| vec![*b]).collect();
        assert_eq!(
            decode_all(&mut d, &chunks).unwrap(),
            vec![format!("text:{}", "x".repeat(300))]
        );
        assert!(d.partial.is_empty());
    }

    #[test]
    fn fragments_join_and_control_frames_may_interleave() {
        let mut d = FrameDecoder::new(4096);
        let chunks = vec![
            frame(false, 1, b"ab"),
            frame(true, 9, b""),
            frame(false, 0, b"cd"),
            frame(true, 0, b"e"),
        ];
        assert_eq!(
            decode_all(&mut d, &chunks).unwrap(),
            vec!["fragment", "ping:", "fragment", "text:abcde"]
        );
    }

    #[test]
    fn size_limit_counts_whole_messages_before_buffering() {
        let mut d = FrameDecoder::new(10);
        assert_eq!(
            decode_all(&mut d, &[frame(true, 1, &[b'a'; 10])])
                .unwrap()
                .len(),
            1
        );
        // The header alone is enough to refuse: no payload was sent.
        let header_only = frame(true, 1, &[b'a'; 70000])[..14].to_vec();
        assert_eq!(decode_all(&mut d, &[header_only]), Err(FrameError::TooBig));
        let mut d = FrameDecoder::new(10);
        assert_eq!(
            decode_all(
                &mut d,
                &[frame(false, 1, &[b'a'; 6]), frame(true, 0, &[b'a'; 5])]
            ),
            Err(FrameError::TooBig)
        );
    }

    #[test]
    fn rule_breaking_frames_are_refused() {
        let mut unmasked = frame(true, 1, b"x");
        unmasked[1] &= 0x7f;
        let cases = [
            (frame(true, 2, b"bin"), FrameError::Binary),
            (frame(false, 2, b"bin"), FrameError::Binary),
            (
                unmasked,
                FrameError::Protocol("client frames must be masked"),
            ),
            (
                frame(true, 0, b"x"),
                FrameError::Protocol("continuation without a message"),
            ),
            (
                frame(false, 9, b""),
                FrameError::Protocol("control frames must be whole and at most 125 bytes"),
            ),
            (
                frame(true, 9, &[0; 126]),
                FrameError::Protocol("control frames must be whole and at most 125 bytes"),
            ),
            (frame(true, 3, b""), FrameError::Protocol("unknown opcode")),
            (
                frame(true, 0x41, b""),
                FrameError::Protocol("reserved bits set"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                decode_all(&mut FrameDecoder::new(4096), &[bytes]),
                Err(expected)
            );
        }
    }

    /// A frame header claiming `len` bytes (64-bit form), with a mask and no payload.
    fn header_claiming(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode, 0x80 | 127];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f
    }

    #[test]
    fn lengths_that_would_wrap_are_refused_not_summed() {
        for first in [1usize, 20, 4000] {
            for claim in [
                u64::MAX,
                u64::MAX - first as u64 + 1,
                1 << 63,
                (1 << 63) - 1,
            ] {
                let mut d = FrameDecoder::new(4096);
                let got = decode_all(
                    &mut d,
                    &[
                        frame(false, 1, &vec![b'a'; first]),
                        header_claiming(true, 0, claim),
                    ],
                );
                let expected = if claim >> 63 != 0 {
                    FrameError::Protocol("64-bit payload length with the most significant bit set")
                } else {
                    FrameError::TooBig
                };
                assert_eq!(got, Err(expected), "first {first}, claim {claim}");
                assert!(d.held() <= 4096 + MAX_HEADER);
            }
        }
    }

    #[test]
    fn the_decoder_never_holds_more_than_one_message() {
        let mut d = FrameDecoder::new(100);
        // Fragments up to the limit, then one more byte: refused before it is kept.
        let mut chunks = vec![];
        for _ in 0..10 {
            chunks.push(frame(
                false,
                if chunks.is_empty() { 1 } else { 0 },
                &[b'x'; 10],
            ));
        }
        chunks.push(frame(false, 0, b"y"));
        assert_eq!(decode_all(&mut d, &chunks), Err(FrameError::TooBig));
        assert!(d.held() <= 100);
    }

    #[test]
    fn close_frames_are_checked() {
        let close =
            |payload: &[u8]| decode_all(&mut FrameDecoder::new(4096), &[frame(true, 8, payload)]);
        assert_eq!(close(b"").unwrap(), vec!["close:None"]);
        for ok in [1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
            assert_eq!(
                close(&ok.to_be_bytes()).unwrap(),
                vec![format!("close:Some({ok})")]
            );
        }
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                close(&bad.to_be_bytes()),
                Err(FrameError::Protocol("a close code that may not be sent")),
                "{bad}"
            );
        }
        assert_eq!(
            close(b"\x03"),
            Err(FrameError::Protocol("a close payload of one byte"))
        );
        let mut not_utf8 = 1000u16.to_be_bytes().to_vec();
        not_utf8.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(close(&not_utf8), Err(FrameError::NotUtf8));
        let mut utf8 = 1000u16.to_be_bytes().to_vec();
        utf8.extend_from_slice("bye ✓".as_bytes());
        assert_eq!(close(&utf8).unwrap(), vec!["close:Some(1000)"]);
    }

    #[test]
    fn server_frames_have_the_shortest_header() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let f = frame_with(OP_TEXT, |b| b.resize(b.len() + len, b'x'));
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(f.len(), header + len, "{len}");
            assert_eq!(f[0], 0x81);
            assert_eq!(f[..], super::frame(OP_TEXT, &vec![b'x'; len])[..]);
        }
    }

    #[test]
    fn close_frame_carries_code_and_a_whole_reason() {
        let f = close_frame(4008, "slow consumer");
        assert_eq!(f[0], 0x88);
        assert_eq!(&f[2..4], &4008u16.to_be_bytes());
        assert_eq!(&f[4..], b"slow consumer");
        let long = "é".repeat(100);
        let f = close_frame(1000, &long);
        assert!(f.len() <= 2 + 125);
        assert!(
            std::str::from_utf8(&f[4..]).is_ok(),
            "cut on a character boundary"
        );
    }
}
