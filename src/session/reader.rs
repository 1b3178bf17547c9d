//! A client's reader: frames in, protocol messages handled, limits enforced.
//!
//! The reader waits for readability and then reads into a per-thread scratch
//! buffer (see [`super::frame`]), so an idle connection holds no read buffer.
//! Waiting for readability is cancel-safe, so the reader can also wait on its
//! one timer (next ping, pong deadline, token expiry, auth deadline, close
//! grace) in the same `select!`. Everything it does per message is
//! synchronous: replies go to the outbox, (un)subscriptions to the hub.
//!
//! Every frame the client sends draws on its rate limit — messages, pings,
//! pongs and fragments alike — so no kind of frame can be flooded. Once a
//! close has begun the reader takes at most [`CLOSING_READ_LIMIT`] more
//! bytes while it waits for the client's answer.

use super::frame::{Flow, Frame, FrameDecoder, FrameError};
use super::outbox::{Control, Outbox};
use super::rate::{RateLimiter, Verdict};
use super::{Identity, SessionContext};
use crate::auth::TokenUse;
use crate::clock::{now_secs, now_us};
use crate::encode::{self, OP_PING, OP_PONG};
use crate::hub::Command;
use crate::metrics::DisconnectReason;
use crate::protocol::{self, close, ClientMessage, ErrorCode, RequestError};
use crate::symbol;
use bytes::Bytes;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedReadHalf;

/// Error replies (other than `rate_limited`) a connection may earn before it is closed with 1008.
pub const MAX_PROTOCOL_ERRORS: u32 = 20;

/// Bytes read from a client once its connection is closing, at most (a
/// client that floods instead of answering the close is cut off).
pub const CLOSING_READ_LIMIT: usize = 64 * 1024;

/// Bytes read from a socket per `read` call.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

struct Conn {
    ctx: Arc<SessionContext>,
    outbox: Arc<Outbox>,
    identity: Identity,
    rate: RateLimiter,
    errors: u32,
    next_ping: Instant,
    awaiting_pong_since: Option<Instant>,
    auth_deadline: Option<Instant>,
    expires_at: Option<Instant>,
    /// Set once the server decided to close; the reader waits for the
    /// client's close frame until then + grace.
    closing_since: Option<Instant>,
    /// Bytes read since the close began.
    read_while_closing: usize,
    /// Input can no longer be decoded (a framing error): wait for EOF.
    discard: bool,
    done: bool,
}

/// Runs the reader until the connection ends. The session's guard does the
/// cleanup, so an early return or a panic here leaks nothing.
pub async fn run(
    ctx: Arc<SessionContext>,
    outbox: Arc<Outbox>,
    read: OwnedReadHalf,
    already_read: Bytes,
    identity: Identity,
) {
    let now = Instant::now();
    let limits = ctx.limits.clone();
    let mut decoder = FrameDecoder::new(limits.max_message);
    let mut conn = Conn {
        outbox,
        rate: RateLimiter::new(limits.client_rate, limits.client_burst, now),
        errors: 0,
        next_ping: now + limits.ping_interval,
        awaiting_pong_since: None,
        auth_deadline: None,
        expires_at: None,
        closing_since: None,
        read_while_closing: 0,
        discard: false,
        done: false,
        identity: Identity::Anonymous,
        ctx,
    };
    match identity {
        Identity::AwaitingAuth => {
            conn.identity = Identity::AwaitingAuth;
            conn.auth_deadline = Some(now + limits.auth_timeout);
        }
        other => conn.start(other),
    }
    if !already_read.is_empty() {
        let mut bytes = already_read.to_vec();
        conn.feed(&mut decoder, &mut bytes);
    }
    // Even empty, this slice keeps hyper's whole read buffer alive: let it go now,
    // not when the connection ends.
    drop(already_read);
    let sleep = tokio::time::sleep_until(conn.next_deadline().into());
    tokio::pin!(sleep);
    while !conn.done {
        sleep.as_mut().reset(conn.next_deadline().into());
        tokio::select! {
            ready = read.readable() => {
                if ready.is_err() || !read_available(&read, &mut decoder, &mut conn) {
                    break;
                }
            }
            _ = &mut sleep => conn.on_timer(Instant::now()),
        }
    }
}

/// Reads what the socket has; false once the connection is over.
fn read_available(read: &OwnedReadHalf, decoder: &mut FrameDecoder, conn: &mut Conn) -> bool {
    SCRATCH_BUF.with(|cell| {
        let mut scratch = cell.borrow_mut();
        // A few reads per wake-up at most, so one busy client cannot hog a worker.
        for _ in 0..4 {
            match read.try_read(&mut scratch[..]) {
                Ok(0) => return false,
                Ok(n) => {
                    if conn.closing_since.is_some() {
                        conn.read_while_closing = conn.read_while_closing.saturating_add(n);
                        if conn.read_while_closing > CLOSING_READ_LIMIT {
                            return false;
                        }
                    }
                    if !conn.feed(decoder, &mut scratch[..n]) {
                        return false;
                    }
                    if n < scratch.len() {
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    })
}

impl Conn {
    /// Sends `welcome` and arms the token's expiry.
    fn start(&mut self, identity: Identity) {
        let mut exp = None;
        if let Identity::User(claims) = &identity {
            self.expires_at = Some(expiry_instant(claims.exp));
            exp = Some(claims.exp);
        }
        self.identity = identity;
        self.auth_deadline = None;
        let session = format!("{:016x}", fastrand::u64(..));
        let limits = &self.ctx.limits;
        self.send(protocol::welcome(&protocol::Welcome {
            session: &session,
            heartbeat_ms: limits.ping_interval.as_millis() as u64,
            max_symbols: limits.max_symbols,
            max_message: limits.max_message,
            epoch: self.ctx.epoch,
            node: &self.ctx.node,
            exp,
        }));
    }

    fn send(&self, frame: Bytes) {
        self.outbox.push_control(Control::Frame(frame));
    }

    /// Decodes bytes; false once the reader should stop.
    fn feed(&mut self, decoder: &mut FrameDecoder, bytes: &mut [u8]) -> bool {
        if self.discard {
            return true;
        }
        self.awaiting_pong_since = None;
        match decoder.feed(bytes, &mut |frame| self.on_frame(frame)) {
            Ok(Flow::Continue) => !self.done,
            Ok(Flow::Stop) => false,
            Err(e) => {
                let (code, reason) = match e {
                    FrameError::TooBig => (close::TOO_BIG, "message too big"),
                    FrameError::Binary => {
                        (close::UNSUPPORTED_DATA, "binary frames are not supported")
                    }
                    FrameError::NotUtf8 => (close::INVALID_PAYLOAD, "close reason is not UTF-8"),
                    FrameError::Protocol(why) => (close::PROTOCOL_ERROR, why),
                };
                self.close(code, reason, DisconnectReason::Protocol);
                self.discard = true;
                true
            }
        }
    }

    fn on_frame(&mut self, frame: Frame<'_>) -> Flow {
        if let Frame::Close(code) = frame {
            // Answer a client's close with the same code (1000 when it gave none).
            let echo = code.unwrap_or(close::NORMAL);
            self.outbox.close(echo, "", DisconnectReason::Client);
            return Flow::Stop;
        }
        if self.closing_since.is_some() {
            // Only the client's close matters now.
            return Flow::Continue;
        }
        match frame {
            Frame::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => self.on_text(text),
                Err(_) => self.close(
                    close::INVALID_PAYLOAD,
                    "text frame is not UTF-8",
                    DisconnectReason::Protocol,
                ),
            },
            Frame::Ping(payload) => {
                if self.frame_allowed() {
                    self.send(encode::frame(OP_PONG, payload));
                }
            }
            Frame::Pong | Frame::Fragment => {
                self.frame_allowed();
            }
            Frame::Close(_) => {}
        }
        Flow::Continue
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

    fn on_text(&mut self, text: &str) {
        match self.rate.check(Instant::now()) {
            Verdict::Allow => {}
            Verdict::Limit => {
                let id = protocol::parse_client_message(text)
                    .ok()
                    .and_then(|m| m.id());
                let e =
                    RequestError::new(id, ErrorCode::RateLimited, "too many messages: slow down");
                self.send(e.frame());
                return;
            }
            Verdict::Close => {
                self.close(
                    close::RATE_LIMITED,
                    "message rate limit exceeded",
                    DisconnectReason::RateLimit,
                );
                return;
            }
        }
        match protocol::parse_client_message(text) {
            Ok(message) => self.on_message(message),
            Err(e) => self.error(e),
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
            ClientMessage::Subscribe { id, symbols, since } => self.subscribe(id, symbols, since),
            ClientMessage::Unsubscribe { id, symbols } => {
                let symbols = symbols
                    .into_iter()
                    .filter(|s| symbol::is_valid(s))
                    .collect();
                self.ctx.hub.send(Command::Unsubscribe {
                    client: self.outbox.id,
                    id,
                    symbols,
                });
            }
            ClientMessage::Ping { id } => self.send(protocol::pong(id, now_us())),
            ClientMessage::Auth { id, token } => self.refresh(id, &token),
        }
    }

    /// Checks each symbol (syntax, entitlement) and hands the good ones to the
    /// hub. The bad ones get one `error` per code, after the `subscribed` reply.
    fn subscribe(&mut self, id: Option<i64>, symbols: Vec<String>, since: Vec<(String, u64)>) {
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
        let mut errors = Vec::new();
        if !invalid.is_empty() {
            let message = format!(
                "{} not a symbol: 1 to 32 characters from A-Z a-z 0-9 . _ : / -",
                plural(&invalid, "is", "are")
            );
            errors.push(
                RequestError::for_symbols(id, ErrorCode::InvalidSymbol, invalid, message).frame(),
            );
        }
        if !forbidden.is_empty() {
            let message = format!("not entitled to {}", plural(&forbidden, "", ""));
            errors.push(
                RequestError::for_symbols(id, ErrorCode::Forbidden, forbidden, message).frame(),
            );
        }
        if !errors.is_empty() {
            // One request earns at most one protocol error, however many symbols it got wrong.
            self.count_error();
        }
        let since = since
            .into_iter()
            .filter(|(s, _)| seen.contains(s) && symbol::is_valid(s))
            .collect();
        self.ctx.hub.send(Command::Subscribe {
            client: self.outbox.id,
            id,
            symbols: accepted,
            since,
            errors,
        });
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
                self.send(protocol::authenticated(id, &claims.sub, claims.exp));
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
        self.send(e.frame());
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

    fn close(&mut self, code: u16, reason: &'static str, why: DisconnectReason) {
        if self.closing_since.is_none() {
            self.closing_since = Some(Instant::now());
            self.outbox.close(code, reason, why);
        }
    }

    fn next_deadline(&self) -> Instant {
        let limits = &self.ctx.limits;
        let far = Instant::now() + Duration::from_secs(3600);
        [
            Some(self.next_ping),
            self.awaiting_pong_since.map(|t| t + limits.pong_timeout),
            self.auth_deadline,
            self.expires_at,
            self.closing_since.map(|t| t + limits.close_grace),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far)
    }

    fn on_timer(&mut self, now: Instant) {
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
        if self
            .awaiting_pong_since
            .is_some_and(|t| now >= t + limits.pong_timeout)
        {
            self.outbox.abort(DisconnectReason::Heartbeat);
            self.done = true;
            return;
        }
        if now >= self.next_ping {
            self.send(encode::frame(OP_PING, b""));
            self.awaiting_pong_since.get_or_insert(now);
            self.next_ping = now + limits.ping_interval;
        }
    }
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
