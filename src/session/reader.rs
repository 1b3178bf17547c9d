//! A client's reader: frames in, protocol messages handled, limits enforced.
//!
//! The reader waits for readability and then reads into a per-thread scratch
//! buffer (see [`super::frame`]), so an idle connection holds no read buffer.
//! Waiting for readability is cancel-safe, so the reader can also wait on its
//! one timer (next ping, pong deadline, token expiry, auth deadline, close
//! grace) in the same `select!`. Everything it does per message is
//! synchronous: replies go to the outbox, (un)subscriptions to the hub.

use super::frame::{Flow, Frame, FrameDecoder, FrameError};
use super::outbox::{Control, Outbox};
use super::rate::{RateLimiter, Verdict};
use super::{Identity, SessionContext};
use crate::clock::{now_secs, now_us};
use crate::encode::{self, OP_PING, OP_PONG};
use crate::hub::Command;
use crate::metrics::{DisconnectReason, METRICS};
use crate::protocol::{self, close, ClientMessage, ErrorCode, RequestError};
use crate::symbol;
use bytes::Bytes;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedReadHalf;

/// Error replies (other than `rate_limited`) a connection may earn before it is closed with 1008.
pub const MAX_PROTOCOL_ERRORS: u32 = 20;

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
    /// Input can no longer be decoded (a framing error): wait for EOF.
    discard: bool,
    done: bool,
}

/// Runs the reader until the connection ends, then unregisters it.
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
        outbox: outbox.clone(),
        rate: RateLimiter::new(limits.client_rate, limits.client_burst, now),
        errors: 0,
        next_ping: now + limits.ping_interval,
        awaiting_pong_since: None,
        auth_deadline: None,
        expires_at: None,
        closing_since: None,
        discard: false,
        done: false,
        identity: Identity::Anonymous,
        ctx,
    };
    conn.ctx.hub.send(Command::Register(outbox.clone()));
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
    let reason = outbox.reason().unwrap_or(DisconnectReason::Client);
    outbox.set_reason(reason);
    outbox.reader_finished();
    conn.ctx.hub.send(Command::Unregister(outbox.id));
    METRICS.disconnect(reason);
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
        if let Identity::User(claims) = &identity {
            self.expires_at = Some(expiry_instant(claims.exp));
        }
        self.identity = identity;
        self.auth_deadline = None;
        let session = format!("{:016x}", fastrand::u64(..));
        let limits = &self.ctx.limits;
        self.send(protocol::welcome(
            &session,
            limits.ping_interval.as_millis() as u64,
            limits.max_symbols,
            self.ctx.epoch,
            &self.ctx.node,
        ));
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
                    FrameError::Protocol(why) => (close::PROTOCOL_ERROR, why),
                };
                self.close(code, reason, DisconnectReason::Protocol);
                self.discard = true;
                true
            }
        }
    }

    fn on_frame(&mut self, frame: Frame<'_>) -> Flow {
        match frame {
            Frame::Text(bytes) => {
                if self.closing_since.is_none() {
                    match std::str::from_utf8(bytes) {
                        Ok(text) => self.on_text(text),
                        Err(_) => self.close(
                            close::INVALID_PAYLOAD,
                            "text frame is not UTF-8",
                            DisconnectReason::Protocol,
                        ),
                    }
                }
                Flow::Continue
            }
            Frame::Ping(payload) => {
                self.send(encode::frame(OP_PONG, payload));
                Flow::Continue
            }
            Frame::Pong => Flow::Continue,
            Frame::Close(code) => {
                // Answer a client's close with the same code (1000 when it gave
                // none or one that may not be sent).
                let echo = code
                    .filter(|c| matches!(c, 1000..=1003 | 1007..=1011 | 3000..=4999))
                    .unwrap_or(close::NORMAL);
                self.outbox.close(echo, "", DisconnectReason::Client);
                Flow::Stop
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
            match self.ctx.auth.verify(token, now_secs()) {
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

    fn subscribe(&mut self, id: Option<i64>, symbols: Vec<String>, since: Vec<(String, u64)>) {
        let mut accepted: Vec<String> = Vec::with_capacity(symbols.len());
        let mut refused = false;
        for s in symbols {
            if accepted.contains(&s) {
                continue;
            }
            if !symbol::is_valid(&s) {
                let message =
                    format!("`{s}` is not a symbol: 1 to 32 characters from A-Z a-z 0-9 . _ : / -");
                self.send(
                    RequestError::for_symbol(id, ErrorCode::InvalidSymbol, &s, message).frame(),
                );
                refused = true;
            } else if let Identity::User(claims) = &self.identity {
                if !claims.allows(&s) {
                    let message = format!("not entitled to {s}");
                    self.send(
                        RequestError::for_symbol(id, ErrorCode::Forbidden, &s, message).frame(),
                    );
                    refused = true;
                } else {
                    accepted.push(s);
                }
            } else {
                accepted.push(s);
            }
        }
        if refused {
            // One request earns at most one protocol error, however many symbols it got wrong.
            self.count_error();
        }
        let since = since
            .into_iter()
            .filter(|(s, _)| accepted.contains(s))
            .collect();
        self.ctx.hub.send(Command::Subscribe {
            client: self.outbox.id,
            id,
            symbols: accepted,
            since,
        });
    }

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
        match self.ctx.auth.verify(token, now_secs()) {
            Ok(claims) if claims.sub == current.sub => {
                self.expires_at = Some(expiry_instant(claims.exp));
                self.send(protocol::authenticated(id, &claims.sub, claims.exp));
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

fn auth_failed(e: &crate::auth::TokenError) -> &'static str {
    use crate::auth::TokenError::*;
    match e {
        Expired => "auth failed: token expired",
        BadSignature => "auth failed: bad signature",
        _ => "auth failed: malformed token",
    }
}

/// The instant a token expiring at `exp` (seconds since the epoch) runs out.
fn expiry_instant(exp: u64) -> Instant {
    let left_us = (exp.saturating_mul(1_000_000)).saturating_sub(now_us());
    Instant::now() + Duration::from_micros(left_us)
}
