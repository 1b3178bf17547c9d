//! The two doors for clients, `/ws` and `/sse`: what both check before a
//! session starts (shutdown, role, origin, capacity, token), and the
//! hand-over to the transport. A refused client costs no more than its
//! request: every refusal closes the connection and is counted.

use super::body::Body;
use super::{authenticate, origin, query_param, reply, text, unavailable, AppState, Reply};
use crate::admission::{ConnectionPermit, Full};
use crate::metrics::{Refusal, UpgradeResult, METRICS};
use crate::session::Identity;
use crate::transport::{sse, ws};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// `GET /ws`: the WebSocket upgrade.
pub fn upgrade(mut req: Request<Incoming>, state: &AppState) -> Reply {
    if !ws::upgrade::is_upgrade(req.headers()) {
        return probe(&req, state);
    }
    let valid = match ws::upgrade::validate(req.method(), req.version(), req.headers()) {
        Ok(v) => v,
        Err(e) => {
            let mut r = text(e.status, e.message);
            if e.status == StatusCode::UPGRADE_REQUIRED {
                r.headers_mut()
                    .insert("sec-websocket-version", HeaderValue::from_static("13"));
            }
            return refused(Refusal::BadRequest, r);
        }
    };
    let (permit, identity) = match admit(&req, state, state.allow_auth_message) {
        Ok(admitted) => admitted,
        Err(r) => return *r,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let accepted = ws::Accepted {
        ctx: state.sessions.clone(),
        identity,
        permit,
        encoding: valid.encoding,
        already_read: Bytes::new(),
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // Each kind of stream is served by a task of its own, sized for it:
        // this one ends here, and holds nothing for the session's life.
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let a = ws::Accepted {
                    already_read: parts.read_buf,
                    ..accepted
                };
                tokio::spawn(ws::serve_tcp(a, parts.io.into_inner()));
                return;
            }
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<crate::tls::ServerStream>>() {
            Ok(parts) => {
                let a = ws::Accepted {
                    already_read: parts.read_buf,
                    ..accepted
                };
                let stream = parts.io.into_inner();
                let fd = crate::tls::raw_fd(&stream);
                tokio::spawn(ws::serve_stream(a, stream, fd));
            }
            Err(_) => crate::warn!("an upgraded connection of an unknown kind"),
        }
    });
    METRICS.upgrade(UpgradeResult::Accepted);
    ws::upgrade::switching_protocols(&valid)
}

/// A plain `GET /ws` (no upgrade): how an upgrade would be answered now,
/// without taking anything (no rate token, no connection place). A browser
/// cannot read the answer to a refused upgrade, so `client.js` asks this
/// after an attempt fails before it opens: 503 with `Retry-After` (busy or
/// shutting down: wait that long), 403 (origin), 401/403 (its token), or
/// 426 (it would be let in: the upgrade itself did not get through, as
/// behind a proxy that refuses upgrades).
fn probe(req: &Request<Incoming>, state: &AppState) -> Reply {
    let mut r = probe_answer(req, state);
    origin::add_cors(&mut r, req.headers());
    closing(r)
}

fn probe_answer(req: &Request<Incoming>, state: &AppState) -> Reply {
    if state.shutting_down.load(Ordering::Acquire) {
        return unavailable("shutting down: no new connections");
    }
    if !state.serves_clients {
        return unavailable("this node is a cluster ingest: connect to an edge");
    }
    if !state.origins.allows(req.headers()) {
        return text(
            StatusCode::FORBIDDEN,
            "origin not allowed (--allowed-origins)",
        );
    }
    if let Some(seconds) = state.admission.rate_wait() {
        let mut r = unavailable(format!(
            "too many new connections (--max-handshake-rate): try again in {seconds} s"
        ));
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return r;
    }
    if state.admission.is_full() {
        return unavailable(format!(
            "server full: {} connections (--max-connections); try again later",
            state.admission.max_connections()
        ));
    }
    match super::check_token(req, state) {
        Err(_) if state.allow_auth_message && no_token_given(req) => {}
        Err((status, message)) => return text(status, message),
        Ok(_) => {}
    }
    let mut r = text(
        StatusCode::UPGRADE_REQUIRED,
        "/ws expects a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
    );
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    r
}

/// `GET /sse?symbols=A,B`: a Server-Sent Events stream of those symbols.
///
/// A browser's EventSource never retries after an answer other than 200
/// (and cannot read it), so "come back later" (shutdown, capacity) is a 200
/// stream that says `retry` and ends with a `close` event; and symbols that
/// are invalid or not entitled get `error` events, as over WebSocket, while
/// the others stream.
pub fn stream(req: &Request<Incoming>, state: &AppState) -> Reply {
    let asked = requested_symbols(req, state).and_then(|(symbols, candles)| {
        let interval = requested_interval(req, state)?;
        let limit = query_param(req.uri().query(), "limit")
            .map(|n| n.parse::<u64>())
            .transpose()
            .map_err(|_| "limit must be a number of bars".to_string())?;
        let limit = state
            .sessions
            .candle_limit(None, limit)
            .map_err(|e| e.message)?;
        Ok(((symbols, candles), (interval, limit)))
    });
    let ((symbols, candles), (interval, limit)) = match asked {
        Ok(asked) => asked,
        Err(message) => {
            return refused(Refusal::BadRequest, text(StatusCode::BAD_REQUEST, message))
        }
    };
    let (permit, identity) = match admit(req, state, false) {
        Ok(admitted) => admitted,
        Err(r)
            if matches!(
                r.status(),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
            ) =>
        {
            return come_back_later(&r, req)
        }
        Err(r) => return *r,
    };
    // The browser's own reconnect sends the header; a client that reconnects
    // itself (with a fresh token in the URL) can only use the query.
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query_param(req.uri().query(), "lastEventId"));
    let info = req.extensions().get::<crate::listener::ConnInfo>();
    if let Some(info) = info {
        info.end_handshake();
    }
    let (rx, gone) = sse::start(sse::Stream {
        ctx: state.sessions.clone(),
        identity,
        permit,
        symbols,
        last_event_id,
        interval,
        candles,
        limit,
        fd: info.map(|c| c.fd),
    });
    METRICS.upgrade(UpgradeResult::Accepted);
    let mut r = event_stream(req);
    *r.body_mut() = Body::Stream(rx, gone);
    r
}

/// A 200 `text/event-stream` answer, its body to be set.
fn event_stream(req: &Request<Incoming>) -> Reply {
    let mut r = reply(
        StatusCode::OK,
        "text/event-stream; charset=utf-8",
        Bytes::new(),
    );
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx would otherwise buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    origin::add_cors(&mut r, req.headers());
    r
}

/// A refusal an EventSource can act on: wait `Retry-After` (as `retry`),
/// then come back; the `close` event says why (1013: try again later).
fn come_back_later(refusal: &Reply, req: &Request<Incoming>) -> Reply {
    let retry_s: u64 = refusal
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(5);
    let reason = match refusal.body() {
        Body::Whole(Some(b)) => String::from_utf8_lossy(b).trim().to_string(),
        _ => String::new(),
    };
    let retry_ms = retry_s * 1000 + fastrand::u64(0..1000);
    let close = serde_json::json!({
        "code": ws::close::TRY_AGAIN_LATER,
        "reason": reason,
        "retry_after_ms": retry_ms,
    });
    let body = format!("retry: {retry_ms}\nevent: close\ndata: {close}\n\n");
    let mut r = event_stream(req);
    *r.body_mut() = Body::whole(body);
    closing(r)
}

/// The symbols of `?symbols=A,B`, at least one and within `--max-symbols`
/// (each is checked by the session, which answers a bad one with `error`).
/// `?symbols=A,B` and `?candles=A@1m,B@5m`: at least one name in all, at
/// most `--max-symbols`.
fn requested_symbols(
    req: &Request<Incoming>,
    state: &AppState,
) -> Result<(Vec<String>, Vec<String>), String> {
    let list = |name: &str| -> Vec<String> {
        let list = query_param(req.uri().query(), name).unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        list.split(',')
            .filter(|s| !s.is_empty() && seen.insert(*s))
            .map(str::to_string)
            .collect()
    };
    let (symbols, candles) = (list("symbols"), list("candles"));
    let max = state.sessions.limits.max_symbols as usize;
    match symbols.len() + candles.len() {
        0 => Err("/sse needs ?symbols=A,B (at least one symbol) or ?candles=A@1m".into()),
        n if n > max => Err(format!("{n} symbols: at most {max} per stream")),
        _ => Ok((symbols, candles)),
    }
}

/// `?interval_ms=`: at most one update per symbol per that long.
fn requested_interval(
    req: &Request<Incoming>,
    state: &AppState,
) -> Result<Option<Duration>, String> {
    let ms = query_param(req.uri().query(), "interval_ms")
        .map(|ms| ms.parse::<u64>())
        .transpose()
        .map_err(|_| "interval_ms must be a number of ms".to_string())?;
    crate::session::conn::pace(state.sessions.limits.window, None, ms).map_err(|e| e.message)
}

/// What both doors check, in this order: shutdown and role (503), origin
/// (403), capacity (503/429, before the token so that a refusal for capacity
/// does not use up a one-time token), the handshake rate (503), token (401).
fn admit(
    req: &Request<Incoming>,
    state: &AppState,
    allow_auth_message: bool,
) -> Result<(ConnectionPermit, Identity), Box<Reply>> {
    if state.shutting_down.load(Ordering::Acquire) {
        return Err(Box::new(refused(
            Refusal::Unavailable,
            unavailable("shutting down: no new connections"),
        )));
    }
    if !state.serves_clients {
        return Err(Box::new(refused(
            Refusal::Unavailable,
            unavailable("this node is a cluster ingest: connect to an edge"),
        )));
    }
    if !state.origins.allows(req.headers()) {
        return Err(Box::new(refused(
            Refusal::Origin,
            text(
                StatusCode::FORBIDDEN,
                "origin not allowed (--allowed-origins)",
            ),
        )));
    }
    let peer = req
        .extensions()
        .get::<crate::listener::ConnInfo>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.peer.ip());
    let client = state.proxies.client(peer, req.headers());
    let permit = match state.admission.try_connection(client) {
        Ok(permit) => permit,
        Err(Full::Node) => {
            return Err(Box::new(refused(
                Refusal::MaxConnections,
                unavailable(format!(
                    "server full: {} connections (--max-connections); try again later",
                    state.admission.max_connections()
                )),
            )))
        }
        Err(Full::Address) => {
            static LOGGED: AtomicU64 = AtomicU64::new(0);
            if crate::log::now_and_then(&LOGGED, Duration::from_secs(10)) {
                crate::warn!(
                    "refused {client}: {} connections from that address (--max-connections-per-ip); \
                     more like it are counted in tickcast_refused_total{{reason=\"per_address\"}}",
                    state.admission.max_per_address()
                );
            }
            let mut r = text(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many connections from {client}: at most {} (--max-connections-per-ip)",
                    state.admission.max_per_address()
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(fastrand::u32(5..30)));
            return Err(Box::new(refused(Refusal::PerAddress, r)));
        }
    };
    // The rate comes after the caps (a client refused by them spends none of
    // it) and before the token, the costly check; a refused token gives its
    // place back, so no one spends the rate without being let in.
    if let Err(seconds) = state.admission.try_rate() {
        let mut r = unavailable(format!(
            "too many new connections (--max-handshake-rate): try again in {seconds} s"
        ));
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Err(Box::new(refused(Refusal::HandshakeRate, r)));
    }
    let identity = match authenticate(req, state) {
        Ok(None) => Identity::Anonymous,
        Ok(Some(claims)) => Identity::User(claims),
        Err(_) if allow_auth_message && no_token_given(req) => Identity::AwaitingAuth,
        Err((status, message)) => {
            state.admission.give_back_rate();
            METRICS.upgrade(UpgradeResult::Unauthorized);
            return Err(Box::new(closing(text(status, message))));
        }
    };
    Ok((permit, identity))
}

fn no_token_given(req: &Request<Incoming>) -> bool {
    req.headers().get(header::AUTHORIZATION).is_none()
        && query_param(req.uri().query(), "token").is_none()
}

fn refused(why: Refusal, r: Reply) -> Reply {
    METRICS.refused(why);
    METRICS.upgrade(UpgradeResult::Rejected);
    closing(r)
}

/// A refused client's connection ends: no keep-alive for a client we turned away.
fn closing(mut r: Reply) -> Reply {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
