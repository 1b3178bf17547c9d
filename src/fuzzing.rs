//! Entry points for fuzzing: every parser that takes bytes from a stranger,
//! callable with arbitrary bytes and no server.
//!
//! The `cargo fuzz` targets in `fuzz/` call these, and so does a stable test
//! (`tests/fuzz_corpus.rs`) that replays every committed corpus and crash
//! file, so a fixed crash stays fixed without a nightly toolchain. Each
//! function checks the invariants its parser promises and panics if one
//! breaks; a panic is what the fuzzer reports.

use crate::auth::{self, Authenticator, TokenUse};
use crate::transport::ws::frame::{Flow, Frame, FrameDecoder};

/// The message limit the frame target decodes under.
const MAX_MESSAGE: usize = 4096;

/// Most bytes a decoder may hold between reads: a whole fragmented message
/// so far and one incomplete frame — a data frame's header and what fits
/// the message (14 + the rest of the limit), or a control frame in the middle
/// of a full message (6 + 125).
const MAX_HELD: usize = MAX_MESSAGE + 6 + 125;

/// Client frames, split into reads at the sizes the first bytes choose: no
/// panic, the decoder never holds more than [`MAX_HELD`], every close code
/// it reports may be sent and every ping is a control frame's size, and the
/// frames (and the error, if any) are the same as when the bytes come in one
/// read.
pub fn frame_decoder(data: &[u8]) {
    let (sizes, stream) = data.split_at(data.len().min(4));
    let split = decode(stream, |i| {
        (sizes.get(i % sizes.len().max(1)).copied().unwrap_or(64) as usize).max(1)
    });
    let whole = decode(stream, |_| usize::MAX);
    assert_eq!(split, whole, "the split changed what was decoded");
}

/// What a decoder makes of `stream` read `size(i)` bytes at a time: the
/// frames and, if one came, the error.
fn decode(stream: &[u8], size: impl Fn(usize) -> usize) -> (Vec<String>, Option<String>) {
    use crate::transport::ws::close::is_sendable_close_code;
    let mut decoder = FrameDecoder::new(MAX_MESSAGE);
    let mut frames = Vec::new();
    let (mut rest, mut i) = (stream, 0);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(size(i).min(rest.len()));
        rest = after;
        i += 1;
        let mut chunk = chunk.to_vec();
        let result = decoder.feed(&mut chunk, &mut |frame| {
            frames.push(match frame {
                Frame::Text(t) => {
                    assert!(t.len() <= MAX_MESSAGE, "a message over the limit");
                    if let Ok(text) = std::str::from_utf8(t) {
                        let _ = crate::protocol::parse_client_message(text);
                    }
                    format!("text {t:?}")
                }
                Frame::Ping(p) => {
                    assert!(p.len() <= 125, "a ping of {} bytes", p.len());
                    format!("ping {p:?}")
                }
                Frame::Close(code) => {
                    assert!(code.is_none_or(is_sendable_close_code), "close {code:?}");
                    format!("close {code:?}")
                }
                Frame::Pong => "pong".into(),
                Frame::Fragment => "fragment".into(),
            });
            Flow::Continue
        });
        assert!(
            decoder.held() <= MAX_HELD,
            "the decoder holds {} bytes",
            decoder.held()
        );
        if let Err(e) = result {
            return (frames, Some(format!("{e:?}")));
        }
    }
    (frames, None)
}

/// A client's text message: parsed or refused with a reason, never a panic.
pub fn client_message(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        match crate::protocol::parse_client_message(text) {
            Ok(m) => {
                let _ = m.id();
                if let crate::protocol::ClientMessage::Subscribe { candles, .. }
                | crate::protocol::ClientMessage::Unsubscribe { candles, .. } = &m
                {
                    // Series names go on to the session's check: a name it
                    // takes is a valid symbol and an interval it serves.
                    let config = series_config();
                    for name in candles {
                        if let Ok((symbol, i)) = config.channel(name) {
                            assert!(crate::symbol::is_valid(symbol));
                            assert!(name.ends_with(&*config.intervals[i].name));
                        }
                    }
                }
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
    }
}

/// The default candle intervals, as a node serves them.
fn series_config() -> crate::candle::CandleConfig {
    crate::candle::CandleConfig {
        intervals: crate::candle::parse_intervals("1s,1m,5m,1h").unwrap_or_default(),
        keep: 1000,
        volume: crate::candle::VolumeMode::Cumulative,
        clock: crate::candle::Clock::Wall,
        window: std::time::Duration::from_millis(100),
    }
}

/// A publisher's bytes: split into lines, each accepted as a tick or
/// rejected with a reason; an accepted tick is a valid symbol with a `ts` a
/// JavaScript client can read, within the live bounds of the receipt time.
pub fn feed_line(data: &[u8]) {
    use crate::feed::accept::{accept_bytes, TsBounds, MAX_TS};
    // Below 2^53 − 1, as any real clock reading: a line without `ts` gets it.
    const NOW_US: u64 = 1_700_000_000_000_000;
    let skew = std::time::Duration::from_secs(3600);
    for bounds in [TsBounds::live(skew), TsBounds::replay(skew)] {
        for tick in accept_bytes(data, NOW_US, &bounds).into_iter().flatten() {
            assert!(crate::symbol::is_valid(tick.symbol.as_str()));
            assert!(tick.ts <= MAX_TS, "ts {} above 2^53", tick.ts);
            assert!(
                tick.ts <= NOW_US + 3_600_000_000,
                "ts {} in the future",
                tick.ts
            );
            let f = tick.fields;
            assert!(
                f.bid.or(f.ask).or(f.last).or(f.volume).is_some(),
                "a tick without fields"
            );
        }
    }
}

/// A token: as given (header, query or message), and re-signed with the
/// server's secret so that the claims parser is reached too.
pub fn token(data: &[u8]) {
    const SECRET: &[u8] = b"fuzz-secret";
    const NOW: u64 = 1_700_000_000;
    let a = Authenticator::new(Some(SECRET.to_vec()));
    if let Ok(t) = std::str::from_utf8(data) {
        for how in [TokenUse::Header, TokenUse::Query, TokenUse::Message] {
            let _ = a.verify(t, NOW, how);
        }
        let _ = auth::bearer_token(t);
    }
    let check = |claims: &auth::Claims, how: TokenUse| {
        assert!(claims.exp > NOW && !claims.sub.is_empty());
        let soon = NOW + auth::LEEWAY_SECS;
        assert!(claims.nbf.is_none_or(|n| n <= soon) && claims.iat.is_none_or(|i| i <= soon));
        if how == TokenUse::Query {
            assert!(claims.jti.is_some());
            let from = claims.iat.unwrap_or(NOW);
            assert!(
                claims.exp - from <= auth::MAX_QUERY_TOKEN_TTL,
                "a query token lives too long"
            );
        }
    };
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    let signed = auth::sign_parts(SECRET, header, body.get(1..).unwrap_or_default());
    for how in [TokenUse::Header, TokenUse::Query, TokenUse::Message] {
        if let Ok(claims) = a.check(&signed, NOW, how) {
            check(&claims, how);
        }
    }
    // Once accepted, a token with a jti is refused on every path.
    let fresh = Authenticator::new(Some(SECRET.to_vec()));
    if let Ok(claims) = fresh.verify(&signed, NOW, TokenUse::Header) {
        check(&claims, TokenUse::Header);
        if claims.jti.is_some() {
            for how in [TokenUse::Header, TokenUse::Query, TokenUse::Message] {
                assert!(
                    fresh.verify(&signed, NOW, how).is_err(),
                    "a jti accepted twice"
                );
            }
        }
    }
}

/// An HTTP request head, validated as a WebSocket upgrade.
pub fn upgrade_request(data: &[u8]) {
    if let Some(Ok(upgrade)) = crate::transport::ws::upgrade::validate_raw(data) {
        assert_eq!(upgrade.key.len(), 24);
        let _ = crate::transport::ws::upgrade::accept_key(upgrade.key.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_break_nothing() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let len = rng.usize(0..300);
            let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            frame_decoder(&data);
            client_message(&data);
            feed_line(&data);
            token(&data);
            upgrade_request(&data);
        }
    }
}
