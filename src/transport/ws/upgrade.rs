//! Is this HTTP request a WebSocket upgrade we accept (RFC 6455 §4.2.1), and
//! in which encoding; and the `101 Switching Protocols` that answers it.
//!
//! Checked before anything else is spent on a connection: HTTP/1.1, exactly
//! one `Host`, `Connection: Upgrade` and `Upgrade: websocket` (tokens,
//! case-insensitive), version 13 and a `Sec-WebSocket-Key` that is the
//! base64 of 16 bytes. A request that fails gets 400 (426 for another
//! version) and no upgrade. The encoding is the first of the client's
//! `Sec-WebSocket-Protocol` values that names one (`tickcast.json`,
//! `tickcast.msgpack`), echoed in the 101; without the header, JSON; with it
//! but no name we know, 400. Pure functions of the request, so that they can
//! be fuzzed without a socket.

use crate::encoding::ENCODINGS;
use base64::Engine;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode, Version};
use sha1::{Digest, Sha1};

/// What a valid upgrade request carries that the answer needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key`, to compute `Sec-WebSocket-Accept` from.
    pub key: HeaderValue,
    /// The encoding (an index into [`ENCODINGS`]).
    pub encoding: usize,
    /// Whether the client asked for it by name (then the 101 echoes it).
    pub named: bool,
}

/// Why an upgrade is refused: an HTTP status and a one-line reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub message: &'static str,
}

fn refuse(message: &'static str) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive), in any of its values.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The only value of a header that must appear once.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// Whether the request asks for an upgrade at all (otherwise `/ws` answers 400 plainly).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// Checks a request for `/ws`.
pub fn validate(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<Upgrade, Refused> {
    if method != Method::GET {
        return Err(refuse("a WebSocket upgrade is a GET"));
    }
    if version != Version::HTTP_11 {
        return Err(refuse("a WebSocket upgrade needs HTTP/1.1"));
    }
    if single(headers, "host").is_none_or(|h| h.is_empty()) {
        return Err(refuse("a WebSocket upgrade needs exactly one Host header"));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") || !is_upgrade(headers) {
        return Err(refuse(
            "/ws expects a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
        ));
    }
    if single(headers, "sec-websocket-version").map(|v| v.as_bytes()) != Some(b"13") {
        return Err(Refused {
            status: StatusCode::UPGRADE_REQUIRED,
            message: "only WebSocket version 13 is supported",
        });
    }
    let key = single(headers, "sec-websocket-key")
        .filter(|k| is_valid_key(k.as_bytes()))
        .ok_or(refuse(
            "Sec-WebSocket-Key must be the base64 of 16 bytes, given once",
        ))?;
    let (encoding, named) = match chosen_protocol(headers) {
        Chosen::NotAsked => (crate::encoding::JSON, false),
        Chosen::Known(e) => (e, true),
        Chosen::Unknown => {
            return Err(refuse(
                "Sec-WebSocket-Protocol names no encoding tickcast speaks: tickcast.json, tickcast.msgpack",
            ))
        }
    };
    Ok(Upgrade {
        key: key.clone(),
        encoding,
        named,
    })
}

enum Chosen {
    NotAsked,
    Known(usize),
    Unknown,
}

/// The first subprotocol the client lists that names an encoding.
fn chosen_protocol(headers: &HeaderMap) -> Chosen {
    let mut asked = false;
    for value in headers.get_all("sec-websocket-protocol") {
        let Ok(value) = value.to_str() else {
            return Chosen::Unknown;
        };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            asked = true;
            if let Some(e) = crate::encoding::by_name(name) {
                return Chosen::Known(e);
            }
        }
    }
    if asked {
        Chosen::Unknown
    } else {
        Chosen::NotAsked
    }
}

/// The `101 Switching Protocols` for a valid upgrade.
pub fn switching_protocols(upgrade: &Upgrade) -> hyper::Response<crate::http::body::Body> {
    let mut r = hyper::Response::new(crate::http::body::Body::whole(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept_key(upgrade.key.as_bytes())) {
        h.insert("sec-websocket-accept", accept);
    }
    if upgrade.named {
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(ENCODINGS[upgrade.encoding].name()),
        );
    }
    r
}

/// A key is 16 random bytes in base64: 24 characters ending in `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Parses a raw HTTP request head and validates it as an upgrade: the whole
/// path from bytes, for fuzzing. `None` when the bytes are not a complete head.
pub fn validate_raw(raw: &[u8]) -> Option<Result<Upgrade, Refused>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !req.parse(raw).ok()?.is_complete() {
        return None;
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let version = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let name = header::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        map.append(name, value);
    }
    Some(validate(&method, version, &map))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    fn check(raw: &str) -> Result<Upgrade, Refused> {
        validate_raw(raw.as_bytes()).expect("a complete head")
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_good_upgrade_passes() {
        assert_eq!(check(GOOD).unwrap().key, "dGhlIHNhbXBsZSBub25jZQ==");
        let upper = GOOD
            .replace("websocket", "WebSocket")
            .replace("Upgrade\r", "UPGRADE\r");
        assert!(check(&upper).is_ok());
    }

    #[test]
    fn each_rule_refuses() {
        let cases = [
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (GOOD.replace("Host: x\r\n", ""), 400),
            (GOOD.replace("Host: x\r\n", "Host: x\r\nHost: y\r\n"), 400),
            (GOOD.replace("Host: x", "Host:"), 400),
            (GOOD.replace("keep-alive, Upgrade", "keep-alive"), 400),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), 400),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
                400,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZSE="),
                400,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!=="),
                400,
            ),
            (GOOD.replace("GET", "POST"), 400),
        ];
        for (raw, status) in cases {
            assert_eq!(check(&raw).unwrap_err().status.as_u16(), status, "{raw}");
        }
        let two_keys = GOOD.replace(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
        assert_eq!(check(&two_keys).unwrap_err().status, 400);
    }

    #[test]
    fn the_encoding_is_the_first_one_named() {
        let with = |p: &str| {
            check(&GOOD.replace(
                "\r\n\r\n",
                &format!("\r\nSec-WebSocket-Protocol: {p}\r\n\r\n"),
            ))
        };
        let u = check(GOOD).unwrap();
        assert_eq!((u.encoding, u.named), (crate::encoding::JSON, false));
        let u = with("tickcast.msgpack").unwrap();
        assert_eq!(
            (ENCODINGS[u.encoding].name(), u.named),
            ("tickcast.msgpack", true)
        );
        let u = with("chat, tickcast.json, tickcast.msgpack").unwrap();
        assert_eq!(ENCODINGS[u.encoding].name(), "tickcast.json");
        assert_eq!(with("chat, superchat").unwrap_err().status, 400);
    }

    #[test]
    fn incomplete_or_garbage_heads_are_not_upgrades() {
        assert!(validate_raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n").is_none());
        assert!(validate_raw(b"\x00\x01\x02").is_none());
    }
}
