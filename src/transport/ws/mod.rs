//! WebSocket (RFC 6455): the upgrade, frames both ways, close codes, and the
//! reader that turns a client's frames into requests. All of WebSocket lives
//! here; the session core knows nothing of frames.
//!
//! A connection is served over a plain TCP socket (split into lock-free
//! halves, the writer's batches leave in one `writev`) or over any byte
//! stream, such as TLS.

pub mod close;
pub mod frame;
pub mod reader;
pub mod upgrade;

use super::link::{StreamLink, TcpLink};
use super::{form, Framing};
use crate::admission::ConnectionPermit;
use crate::encoding::ENCODINGS;
use crate::latest::Latest;
use crate::protocol::Message;
use crate::session::conn::Heartbeat;
use crate::session::{self, Identity, SessionContext};
use bytes::Bytes;
use frame::{close_frame, frame, frame_with, OP_BINARY, OP_PING, OP_PONG, OP_TEXT};
use std::os::fd::RawFd;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// This transport's place among [`super::TRANSPORTS`].
pub const TRANSPORT: usize = 0;

/// WebSocket frames in one encoding: text frames for JSON, binary for MessagePack.
pub struct WsFraming {
    encoding: usize,
}

impl WsFraming {
    pub fn new(encoding: usize) -> WsFraming {
        WsFraming { encoding }
    }

    fn opcode(&self) -> u8 {
        if ENCODINGS[self.encoding].binary() {
            OP_BINARY
        } else {
            OP_TEXT
        }
    }
}

impl Framing for WsFraming {
    fn form(&self) -> usize {
        form(TRANSPORT, self.encoding)
    }

    fn encode_tick(&self, symbol: &str, latest: &Latest, snapshot: bool) -> Bytes {
        if self.encoding == crate::encoding::JSON {
            // The default, on the hot path: no dynamic dispatch.
            return frame_with(OP_TEXT, |buf| {
                crate::encoding::json::put_tick(buf, symbol, &latest.state, snapshot)
            });
        }
        frame_with(self.opcode(), |buf| {
            ENCODINGS[self.encoding].tick(symbol, &latest.state, snapshot, buf)
        })
    }

    fn message(&self, m: &Message) -> Bytes {
        frame_with(self.opcode(), |buf| {
            ENCODINGS[self.encoding].message(m, buf)
        })
    }

    fn ping(&self) -> Bytes {
        frame(OP_PING, b"")
    }

    fn pong(&self, payload: &[u8]) -> Bytes {
        frame(OP_PONG, payload)
    }

    fn close(&self, code: u16, reason: &str) -> Bytes {
        close_frame(code, reason)
    }
}

/// What a session needs from the upgrade.
pub struct Accepted {
    pub ctx: Arc<SessionContext>,
    pub identity: Identity,
    pub permit: ConnectionPermit,
    pub encoding: usize,
    /// Bytes the HTTP layer read past the upgrade request.
    pub already_read: Bytes,
}

/// Ping frames every `--ping-interval`, and a client that answers nothing
/// within `--pong-timeout` is dead.
fn pings(ctx: &SessionContext) -> Heartbeat {
    Heartbeat {
        every: ctx.limits.ping_interval,
        expects_answer: true,
    }
}

/// Serves an upgraded plain TCP connection until it ends.
pub async fn serve_tcp(a: Accepted, stream: TcpStream) {
    let (read, write) = stream.into_split();
    let max_message = a.ctx.limits.max_message;
    let heartbeat = pings(&a.ctx);
    let mut s = session::start(
        a.ctx,
        a.identity,
        a.permit,
        Box::new(WsFraming::new(a.encoding)),
        Box::new(TcpLink::new(write)),
        heartbeat,
    );
    reader::run(&mut s.conn, read, a.already_read, max_message).await;
}

/// Serves an upgraded connection over any byte stream (TLS) until it ends.
/// `fd` is the socket underneath, for ending it.
pub async fn serve_stream<S>(a: Accepted, stream: S, fd: RawFd)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let max_message = a.ctx.limits.max_message;
    let heartbeat = pings(&a.ctx);
    let mut s = session::start(
        a.ctx,
        a.identity,
        a.permit,
        Box::new(WsFraming::new(a.encoding)),
        Box::new(StreamLink::new(write, fd)),
        heartbeat,
    );
    reader::run(&mut s.conn, read, a.already_read, max_message).await;
}
