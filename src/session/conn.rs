//! One client's side of the protocol, whatever its transport: requests in,
//! replies out (as values, to the outbox), limits, heartbeats, the auth
//! deadline, token expiry and refresh, and the close.
//!
//! A transport drives it: the WebSocket reader hands it messages and frames
//! as they arrive, and every transport calls [`Conn::on_timer`] when
//! [`Conn::next_deadline`] comes. Everything here is synchronous: replies go
//! to the outbox, (un)subscriptions to the hub.
//!
//! Every frame the client sends draws on its rate limit — messages, pings,
//! pongs and fragments alike — so no kind of frame can be flooded.

use super::outbox::{Control, Outbox};
use super::rate::{RateLimiter, Verdict};
use super::{Identity, SessionContext};
use crate::auth::TokenUse;
use crate::candle::{self, ChannelError};
use crate::clock::{now_secs, now_us};
use crate::hub::Command;
use crate::metrics::DisconnectReason;
use crate::protocol::message::Welcome;
use crate::protocol::{self, ClientMessage, ErrorCode, Message, RequestError};
use crate::symbol;
use crate::transport::ws::close;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest `interval_ms` a subscription may ask for.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Error replies (other than `rate_limited`) a connection may earn before it is closed with 1008.
pub const MAX_PROTOCOL_ERRORS: u32 = 20;

/// How a transport keeps a connection alive.
#[derive(Clone, Copy, Debug)]
pub struct Heartbeat {
    /// A keep-alive this often (announced in `welcome` as `heartbeat_ms`).
    pub every: Duration,
    /// Whether a client that says nothing within `--pong-timeout` after one
    /// is dead (WebSocket: yes; SSE: its clients never speak, and the socket
    /// tells when one is gone).
    pub expects_answer: bool,
}

pub struct Conn {
    ctx: Arc<SessionContext>,
    outbox: Arc<Outbox>,
    identity: Identity,
    rate: RateLimiter,
    errors: u32,
    next_ping: Instant,
    ping_every: Duration,
    awaiting_pong_since: Option<Instant>,
    /// See [`Heartbeat::expects_answer`].
    expects_pongs: bool,
    auth_deadline: Option<Instant>,
    expires_at: Option<Instant>,
    /// `--max-connection-age` (less a random tenth): then `reconnect` and 1001.
    ends_at: Option<Instant>,
    /// Set once the server decided to close; the connection waits for the
    /// client's close until then + grace.
    closing_since: Option<Instant>,
    done: bool,
}

impl Conn {
    /// A connection that has just been accepted: it gets `welcome` now, or
    /// (first-message auth) once its `auth` message has been checked.
    pub fn new(
        ctx: Arc<SessionContext>,
        outbox: Arc<Outbox>,
        identity: Identity,
        heartbeat: Heartbeat,
    ) -> Conn {
        let now = Instant::now();
        let limits = &ctx.limits;
        let mut conn = Conn {
            rate: RateLimiter::new(limits.client_rate, limits.client_burst, now),
            next_ping: now + heartbeat.every,
            ping_every: heartbeat.every,
            outbox,
            errors: 0,
            awaiting_pong_since: None,
            expects_pongs: heartbeat.expects_answer,
            auth_deadline: None,
            expires_at: None,
            ends_at: (!limits.max_connection_age.is_zero()).then(|| {
                let age = limits.max_connection_age;
                now + age - age.mul_f64(fastrand::f64() / 10.0)
            }),
            closing_since: None,
            done: false,
            identity: Identity::Anonymous,
            ctx,
        };
        match identity {
            Identity::AwaitingAuth => {
                conn.identity = Identity::AwaitingAuth;
                conn.auth_deadline = Some(now + conn.ctx.limits.auth_timeout);
            }
            other => conn.start(other),
        }
        conn
    }

    /// Sends `welcome` and arms the token's expiry.
    fn start(&mut self, identity: Identity) {
        let mut exp = None;
        if let Identity::User(claims) = &identity {
            self.expires_at = Some(expiry_instant(claims.exp));
            exp = Some(claims.exp);
        }
        self.identity = identity;
        self.auth_deadline = None;
        let limits = &self.ctx.limits;
        self.send(Message::Welcome(Welcome {
            session: format!("{:016x}", fastrand::u64(..)),
            heartbeat_ms: self.ping_every.as_millis() as u64,
            max_symbols: limits.max_symbols,
            max_message: limits.max_message,
            epoch: self.ctx.epoch(),
            node: self.ctx.node.clone(),
            exp,
        }));
    }

    fn send(&self, m: Message) {
        self.outbox.push_control(Control::Message(m));
    }

    /// The session is over: the transport stops driving it.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A close has begun; only the client's answer matters now.
    pub fn is_closing(&self) -> bool {
        self.closing_since.is_some()
    }

    /// The client sent something: it is alive (any frame answers a ping).
    pub fn heard(&mut self) {
        self.awaiting_pong_since = None;
    }

    /// A whole text message.
    pub fn on_text(&mut self, text: &str) {
        if self.is_closing() {
            return;
        }
        match self.rate.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Limit => {
                let id = protocol::parse_client_message(text)
                    .ok()
                    .and_then(|m| m.id());
                return self.send(RequestError::rate_limited(id).into());
            }
            Verdict::Close => {
                return self.close(
                    close::RATE_LIMITED,
                    "message rate limit exceeded",
                    DisconnectReason::RateLimit,
                );
            }
        }
        match protocol::parse_client_message(text) {
            Ok(message) => self.on_message(message),
            Err(e) => self.error(e),
        }
    }

    /// A text message that is not UTF-8.
    pub fn on_invalid_text(&mut self) {
        self.close(
            close::INVALID_PAYLOAD,
            "text frame is not UTF-8",
            DisconnectReason::Protocol,
        );
    }

    /// A ping from the client: answered with its payload, within the rate.
    pub fn on_ping(&mut self, payload: &[u8]) {
        if !self.is_closing() && self.frame_allowed() {
            self.outbox
                .push_control(Control::Pong(Bytes::copy_from_slice(payload)));
        }
    }

    /// A frame that is not a whole message (a pong, a fragment): it only
    /// counts against the rate.
    pub fn on_frame(&mut self) {
        if !self.is_closing() {
            self.frame_allowed();
        }
    }

    /// The client closes: answered with its own code (1000 when it gave none).
    pub fn on_peer_close(&mut self, code: Option<u16>) {
        let echo = code.unwrap_or(close::NORMAL);
        self.outbox.close(echo, "", DisconnectReason::Client);
        self.done = true;
    }

    /// The client broke the framing rules: close with `code`.
    pub fn on_framing_error(&mut self, code: u16, reason: &'static str) {
        self.close(code, reason, DisconnectReason::Protocol);
    }

    /// Charges a frame that is not a whole message to the rate limit: over
    /// the rate it is ignored, and at twice the rate the client is closed.
    fn frame_allowed(&mut self) -> bool {
        match self.rate.check(Instant::now()) {
            Verdict::Allow => true,
            Verdict::Limit => false,
            Verdict::Close => {
                self.close(
                    close::RATE_LIMITED,
                    "frame rate limit exceeded",
                    DisconnectReason::RateLimit,
                );
                false
            }
        }
    }

    fn on_message(&mut self, message: ClientMessage) {
        if let (Identity::AwaitingAuth, ClientMessage::Auth { token, .. }) =
            (&self.identity, &message)
        {
            match self.ctx.auth.verify(token, now_secs(), TokenUse::Message) {
                Ok(claims) => self.start(Identity::User(claims)),
                Err(e) => self.close(close::UNAUTHORIZED, auth_failed(&e), DisconnectReason::Auth),
            }
            return;
        }
        if let Identity::AwaitingAuth = self.identity {
            let e = RequestError::new(
                message.id(),
                ErrorCode::Unauthorized,
                "authenticate first: send an auth message",
            );
            return self.error(e);
        }
        match message {
            ClientMessage::Subscribe {
                id,
                symbols,
                since,
                interval_ms,
                candles,
                limit,
            } => {
                let interval = match pace(self.ctx.limits.window, id, interval_ms) {
                    Ok(interval) => interval,
                    Err(e) => return self.error(e),
                };
                let limit = match self.ctx.candle_limit(id, limit) {
                    Ok(limit) => limit,
                    Err(e) => return self.error(e),
                };
                let request = Wanted {
                    symbols,
                    candles,
                    since,
                    after: None,
                    interval,
                    limit,
                };
                if let Some(errors) = self.subscribe(id, request) {
                    if !errors {
                        return;
                    }
                    // One request earns at most one protocol error, however
                    // many symbols it got wrong.
                    self.count_error();
                }
            }
            ClientMessage::Unsubscribe {
                id,
                symbols,
                candles,
            } => {
                let symbols = symbols
                    .into_iter()
                    .filter(|s| symbol::is_valid(s))
                    .chain(candles.into_iter().filter(|c| candle::split(c).is_some()))
                    .collect();
                self.ctx.hub.send(Command::Unsubscribe {
                    client: self.outbox.id,
                    id,
                    symbols,
                });
            }
            ClientMessage::Ping { id } => self.send(Message::Pong { id, ts: now_us() }),
            ClientMessage::Auth { id, token } => self.refresh(id, &token),
        }
    }

    /// Checks each symbol (syntax, entitlement) and hands the good ones to the
    /// hub, with `after` for a stream that resumes from a `gseq`. The bad
    /// ones get one `error` per code, after the `subscribed` reply. Returns
    /// whether some were refused (`None` if the connection cannot subscribe).
    pub fn subscribe(&mut self, id: Option<i64>, request: Wanted) -> Option<bool> {
        if let Identity::AwaitingAuth = self.identity {
            return None;
        }
        let Wanted {
            symbols,
            candles,
            since,
            after,
            interval,
            limit,
        } = request;
        let mut accepted: Vec<String> = Vec::with_capacity(symbols.len());
        let mut invalid = Vec::new();
        let mut forbidden = Vec::new();
        // Hashed, not searched: a request may name thousands of symbols.
        let mut seen = std::collections::HashSet::with_capacity(symbols.len());
        for s in symbols {
            if !seen.insert(s.clone()) {
                continue;
            }
            if !symbol::is_valid(&s) {
                invalid.push(s);
            } else if matches!(&self.identity, Identity::User(claims) if !claims.allows(&s)) {
                forbidden.push(s);
            } else {
                accepted.push(s);
            }
        }
        let invalid_symbols = !invalid.is_empty();
        let mut unserved = Vec::new();
        for c in candles {
            if !seen.insert(c.clone()) {
                continue;
            }
            let Some(config) = &self.ctx.candles else {
                unserved.push(c);
                continue;
            };
            match config.channel(&c) {
                Err(ChannelError::Invalid) => invalid.push(c),
                Err(ChannelError::UnknownInterval) => unserved.push(c),
                Ok((symbol, _)) => match &self.identity {
                    Identity::User(claims) if !claims.allows(symbol) => forbidden.push(c),
                    _ => accepted.push(c),
                },
            }
        }
        let mut errors: Vec<Message> = Vec::new();
        if !invalid.is_empty() {
            let what = if invalid_symbols {
                "not a symbol: 1 to 32 characters from A-Z a-z 0-9 . _ : / -"
            } else {
                "not a candle series: SYMBOL@INTERVAL"
            };
            let message = format!("{} {what}", plural(&invalid, "is", "are"));
            errors.push(
                RequestError::for_symbols(id, ErrorCode::InvalidSymbol, invalid, message).into(),
            );
        }
        if !forbidden.is_empty() {
            let message = format!("not entitled to {}", plural(&forbidden, "", ""));
            errors.push(
                RequestError::for_symbols(id, ErrorCode::Forbidden, forbidden, message).into(),
            );
        }
        if !unserved.is_empty() {
            let message = match &self.ctx.candles {
                Some(c) if !c.intervals.is_empty() => {
                    format!("intervals served here: {}", c.names())
                }
                _ => "candles are off on this server".to_string(),
            };
            errors.push(
                RequestError::for_symbols(id, ErrorCode::BadRequest, unserved, message).into(),
            );
        }
        let refused = !errors.is_empty();
        let since = since
            .into_iter()
            .filter(|(s, _)| {
                seen.contains(s) && (symbol::is_valid(s) || candle::split(s).is_some())
            })
            .collect();
        self.ctx.hub.send(Command::Subscribe(crate::hub::Subscribe {
            client: self.outbox.id,
            id,
            symbols: accepted,
            since,
            after,
            interval,
            limit,
            errors,
        }));
        Some(refused)
    }

    /// A token refresh: same `sub`, the new token's expiry and entitlements
    /// from now on (subscriptions it no longer allows end at once).
    fn refresh(&mut self, id: Option<i64>, token: &str) {
        if !self.ctx.auth.enabled() {
            return self.error(RequestError::new(
                id,
                ErrorCode::BadRequest,
                "authentication is off on this server",
            ));
        }
        let Identity::User(current) = &self.identity else {
            return;
        };
        match self.ctx.auth.verify(token, now_secs(), TokenUse::Message) {
            Ok(claims) if claims.sub == current.sub => {
                self.expires_at = Some(expiry_instant(claims.exp));
                self.send(Message::Authenticated {
                    id,
                    sub: claims.sub.clone(),
                    exp: claims.exp,
                });
                self.ctx.hub.send(Command::Reauthorize {
                    client: self.outbox.id,
                    id,
                    claims: Arc::new(claims.clone()),
                });
                self.identity = Identity::User(claims);
            }
            Ok(_) => self.error(RequestError::new(
                id,
                ErrorCode::Unauthorized,
                "a refreshed token must be for the same sub",
            )),
            Err(e) => self.error(RequestError::new(
                id,
                ErrorCode::Unauthorized,
                format!("token refused: {e}"),
            )),
        }
    }

    fn error(&mut self, e: RequestError) {
        self.send(e.into());
        self.count_error();
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors > MAX_PROTOCOL_ERRORS {
            self.close(
                close::POLICY_VIOLATION,
                "too many protocol errors",
                DisconnectReason::Protocol,
            );
        }
    }

    /// Starts closing with `code`; only the first call counts.
    pub fn close(&mut self, code: u16, reason: &'static str, why: DisconnectReason) {
        if self.closing_since.is_none() {
            self.closing_since = Some(Instant::now());
            self.outbox.close(code, reason, why);
        }
    }

    /// When [`Conn::on_timer`] must run next.
    pub fn next_deadline(&self) -> Instant {
        let limits = &self.ctx.limits;
        // Closing: only the grace matters (the other deadlines may be past,
        // and would wake the timer again and again for nothing).
        if let Some(t) = self.closing_since {
            return t + limits.close_grace;
        }
        let far = Instant::now() + Duration::from_secs(3600);
        [
            Some(self.next_ping),
            self.awaiting_pong_since.map(|t| t + limits.pong_timeout),
            self.auth_deadline,
            self.expires_at,
            self.ends_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far)
    }

    pub fn on_timer(&mut self, now: Instant) {
        let limits = self.ctx.limits.clone();
        if let Some(t) = self.closing_since {
            if now >= t + limits.close_grace {
                self.done = true;
            }
            return;
        }
        if self.auth_deadline.is_some_and(|t| now >= t) {
            return self.close(
                close::UNAUTHORIZED,
                "no auth message in time",
                DisconnectReason::Auth,
            );
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return self.close(close::UNAUTHORIZED, "token expired", DisconnectReason::Auth);
        }
        if self.ends_at.is_some_and(|t| now >= t) {
            self.closing_since = Some(now);
            return self.outbox.close_with_reconnect(
                fastrand::u64(0..=AGE_RECONNECT_SPREAD_MS),
                "connection age",
                DisconnectReason::MaxAge,
            );
        }
        if self
            .awaiting_pong_since
            .is_some_and(|t| now >= t + limits.pong_timeout)
        {
            self.outbox.abort(DisconnectReason::Heartbeat);
            self.done = true;
            return;
        }
        if now >= self.next_ping {
            self.outbox.push_control(Control::Ping);
            if self.expects_pongs {
                self.awaiting_pong_since.get_or_insert(now);
            }
            self.next_ping = now + self.ping_every;
        }
    }
}

/// A connection ended for its age is told to come back within this long
/// (a random wait; ages are spread already).
const AGE_RECONNECT_SPREAD_MS: u64 = 1000;

/// The per-client interval a subscription asks for (`interval_ms`): at
/// least the coalescing `window` (updates never come faster than that
/// anyway), at most [`MAX_INTERVAL`].
pub fn pace(
    window: Duration,
    id: Option<i64>,
    interval_ms: Option<u64>,
) -> Result<Option<Duration>, RequestError> {
    let Some(ms) = interval_ms else {
        return Ok(None);
    };
    let interval = Duration::from_millis(ms);
    if interval < window || interval > MAX_INTERVAL {
        return Err(RequestError::new(
            id,
            ErrorCode::BadRequest,
            format!(
                "interval_ms must be from {} (the coalescing window) to {}",
                window.as_millis(),
                MAX_INTERVAL.as_millis()
            ),
        ));
    }
    Ok(Some(interval))
}

/// `AAPL` or `AAPL, MSFT` for a message, with the verb agreeing.
fn plural(symbols: &[String], one: &str, many: &str) -> String {
    const SHOWN: usize = 5;
    let mut s = symbols
        .iter()
        .take(SHOWN)
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if symbols.len() > SHOWN {
        s.push_str(&format!(" and {} more", symbols.len() - SHOWN));
    }
    let verb = if symbols.len() == 1 { one } else { many };
    if verb.is_empty() {
        s
    } else {
        format!("{s} {verb}")
    }
}

fn auth_failed(e: &crate::auth::TokenError) -> &'static str {
    use crate::auth::TokenError::*;
    match e {
        Expired => "auth failed: token expired",
        BadSignature => "auth failed: bad signature",
        Replayed => "auth failed: token already used",
        NotYetValid | IssuedInFuture => "auth failed: token not valid yet",
        _ => "auth failed: malformed token",
    }
}

/// The instant a token expiring at `exp` (seconds since the epoch) runs out.
fn expiry_instant(exp: u64) -> Instant {
    let left_us = (exp.saturating_mul(1_000_000)).saturating_sub(now_us());
    // Far-future expiries are capped: `Instant` arithmetic must not overflow.
    Instant::now() + Duration::from_micros(left_us.min(10 * 365 * 86_400 * 1_000_000))
}

/// What a client asks to subscribe to, before it is checked.
pub struct Wanted {
    pub symbols: Vec<String>,
    /// Candle series, `SYMBOL@INTERVAL`.
    pub candles: Vec<String>,
    pub since: Vec<(String, u64)>,
    /// A stream resuming from a `gseq` (SSE's `Last-Event-ID`).
    pub after: Option<u64>,
    /// At most one update per symbol per this long (`interval_ms`).
    pub interval: Option<Duration>,
    /// Closed bars in each series' history.
    pub limit: usize,
}
