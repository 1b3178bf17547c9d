//! HTTP routes (protocol §1): `/ws`, `/sse`, `/snapshot`, `/candles`, `/healthz`,
//! `/readyz`, `/metrics`, `/`, `/client.js`, `/client.d.ts`.
//!
//! The upgrade is answered here (validation, origin, capacity and
//! authentication included, so a refused connection costs no more than its
//! handshake); once hyper hands the socket back, the raw `TcpStream` is
//! taken out of it and given to [`crate::session`], so that no HTTP
//! machinery stays behind for the life of a WebSocket.
//!
//! The operator listener (`--metrics-listen`) answers only `/metrics`,
//! `/healthz` and `/readyz`: it is meant for a private network, and serving
//! clients there would let them around the public listener's limits.

pub mod body;
mod candles;
mod clients;
pub mod origin;
pub mod proxies;
mod snapshot;

use crate::admission::Admission;
use crate::auth::{Authenticator, Claims, TokenError, TokenUse};
use crate::clock::now_secs;
use crate::latest::SymbolTable;
use crate::metrics;
use crate::session::SessionContext;
use body::Body;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use origin::Origins;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const DEMO_PAGE: &str = include_str!("../../web/index.html");
const CLIENT_JS: &str = include_str!("../../web/client.js");
const CLIENT_TYPES: &str = include_str!("../../web/client.d.ts");

/// What the HTTP handlers share.
pub struct AppState {
    pub sessions: Arc<SessionContext>,
    pub table: Arc<SymbolTable>,
    pub auth: Arc<Authenticator>,
    pub allow_auth_message: bool,
    pub feed_ready: Arc<AtomicBool>,
    /// In a cluster: whether NATS is connected now.
    pub bus_connected: Option<Arc<AtomicBool>>,
    /// Whether this node has joined the bus (read the bucket; the ingest
    /// resumed `seq`); always true on a single node.
    pub bus_ready: Arc<AtomicBool>,
    /// False on a cluster ingest, which serves no WebSocket clients.
    pub serves_clients: bool,
    /// Cluster edge: the bucket of last values, which `/snapshot` reads (the
    /// edge itself holds only the symbols its clients follow).
    /// Set once the edge has joined the bus.
    pub last_values: Option<Arc<std::sync::OnceLock<async_nats::jetstream::kv::Store>>>,
    pub shutting_down: AtomicBool,
    pub admission: Arc<Admission>,
    pub origins: Origins,
    pub proxies: proxies::TrustedProxies,
    /// Cluster edge: `/snapshot` answers being built from the bucket now.
    pub snapshots: Arc<std::sync::atomic::AtomicUsize>,
    /// Candle series with a bar on this node, by `SYMBOL@INTERVAL`.
    pub series_table: Arc<SymbolTable>,
    /// Cluster edge: the bus's candle history, for series it does not follow.
    /// Set once the edge has joined the bus.
    pub candle_store: Option<Arc<std::sync::OnceLock<Arc<dyn crate::candle::History>>>>,
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// `--listen`: everything.
    Public,
    /// `--metrics-listen`: `/metrics`, `/healthz`, `/readyz` only.
    Operator,
}

type Reply = Response<Body>;

pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Reply {
    let mut r = Response::new(Body::whole(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut body = body.into();
    body.push('\n');
    reply(status, "text/plain; charset=utf-8", body)
}

/// 503 with a `Retry-After` of 2 to 9 seconds, spread so that the clients
/// refused together do not all come back together.
pub fn unavailable(message: impl Into<String>) -> Reply {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(fastrand::u32(2..10)));
    r
}

/// Routes one request.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<AppState>,
    routes: Routes,
) -> Result<Reply, Infallible> {
    let path = req.uri().path();
    let known = match routes {
        Routes::Public => matches!(
            path,
            "/ws"
                | "/sse"
                | "/snapshot"
                | "/candles"
                | "/healthz"
                | "/readyz"
                | "/metrics"
                | "/"
                | "/client.js"
                | "/client.d.ts"
        ),
        Routes::Operator => matches!(path, "/healthz" | "/readyz" | "/metrics"),
    };
    if !known {
        return Ok(text(StatusCode::NOT_FOUND, format!("no such path: {path}")));
    }
    // `/ws` too: client.js probes it with a token when an upgrade fails.
    let preflight =
        req.method() == Method::OPTIONS && matches!(path, "/snapshot" | "/candles" | "/ws");
    if req.method() != Method::GET && req.method() != Method::HEAD && !preflight {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers GET only"),
        );
        let allow = if matches!(path, "/snapshot" | "/candles" | "/ws") {
            "GET, HEAD, OPTIONS"
        } else {
            "GET, HEAD"
        };
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(r);
    }
    Ok(match path {
        "/ws" if preflight => snapshot::preflight(&req, &state),
        "/ws" => clients::upgrade(req, &state),
        "/sse" => clients::stream(&req, &state),
        "/snapshot" if preflight => snapshot::preflight(&req, &state),
        "/snapshot" => snapshot::answer(&req, &state).await,
        "/candles" if preflight => snapshot::preflight(&req, &state),
        "/candles" => candles::answer(&req, &state).await,
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => readiness(&state),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(
                readiness(&state).status() == StatusCode::OK,
                &state.sessions.node,
            ),
        ),
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", DEMO_PAGE),
        "/client.d.ts" => reply(
            StatusCode::OK,
            "application/typescript; charset=utf-8",
            CLIENT_TYPES,
        ),
        _ => reply(StatusCode::OK, "text/javascript; charset=utf-8", CLIENT_JS),
    })
}

fn readiness(state: &AppState) -> Reply {
    if state.shutting_down.load(Ordering::Acquire) {
        text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !state.bus_ready.load(Ordering::Acquire) {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "joining the bus (NATS): not reachable yet",
        )
    } else if !state.feed_ready.load(Ordering::Acquire) {
        text(StatusCode::SERVICE_UNAVAILABLE, "feed not running yet")
    } else if state
        .bus_connected
        .as_ref()
        .is_some_and(|c| !c.load(Ordering::Acquire))
    {
        text(StatusCode::SERVICE_UNAVAILABLE, "bus (NATS) not connected")
    } else {
        text(StatusCode::OK, "ready")
    }
}

/// The value of one query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Authenticates a request as `/ws` does. `Ok(None)`: no token and none needed.
pub(crate) fn authenticate(
    req: &Request<Incoming>,
    state: &AppState,
) -> Result<Option<Claims>, (StatusCode, String)> {
    token_of(req, state, Authenticator::verify)
}

/// [`authenticate`] without using up a one-time `jti` (the probe of a plain
/// `GET /ws`, which must take nothing).
pub(crate) fn check_token(
    req: &Request<Incoming>,
    state: &AppState,
) -> Result<Option<Claims>, (StatusCode, String)> {
    token_of(req, state, Authenticator::check)
}

type Check = fn(&Authenticator, &str, u64, TokenUse) -> Result<Claims, TokenError>;

fn token_of(
    req: &Request<Incoming>,
    state: &AppState,
    check: Check,
) -> Result<Option<Claims>, (StatusCode, String)> {
    if !state.auth.enabled() {
        return Ok(None);
    }
    let now = now_secs();
    let unauthorized = |e: TokenError| (StatusCode::UNAUTHORIZED, format!("unauthorized: {e}"));
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(crate::auth::bearer_token)
            .ok_or((
                StatusCode::UNAUTHORIZED,
                "unauthorized: Authorization must be `Bearer <token>`".to_string(),
            ))?;
        return check(&state.auth, token, now, TokenUse::Header)
            .map(Some)
            .map_err(unauthorized);
    }
    if let Some(token) = query_param(req.uri().query(), "token") {
        return check(&state.auth, &token, now, TokenUse::Query)
            .map(Some)
            .map_err(unauthorized);
    }
    Err((
        StatusCode::UNAUTHORIZED,
        "unauthorized: no token (Authorization: Bearer, or ?token=)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let q = Some("symbols=FX%3AEUR%2FUSD,AAPL&token=a.b.c&bad=%zz%4");
        assert_eq!(
            query_param(q, "symbols").as_deref(),
            Some("FX:EUR/USD,AAPL")
        );
        assert_eq!(query_param(q, "token").as_deref(), Some("a.b.c"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(q, "none"), None);
        assert_eq!(query_param(None, "token"), None);
    }
}
