//! A WebSocket client's reader: bytes in, frames decoded, each handed to the
//! session's [`Conn`]; and the one timer of the connection.
//!
//! The reader reads into a per-thread scratch buffer inside a single poll
//! (see [`super::frame::FrameDecoder`]), so an idle connection holds no read buffer, and
//! waiting to read stays cancel-safe: the reader waits on its socket and on
//! the connection's next deadline (ping, pong, token expiry, auth deadline,
//! close grace) in the same `select!`. Once a close has begun it reads at
//! most [`CLOSING_READ_LIMIT`] more bytes while it waits for the answer.

use super::close;
use super::frame::{Flow, Frame, FrameDecoder, FrameError};
use crate::session::conn::Conn;
use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from a client once its connection is closing, at most (a
/// client that floods instead of answering the close is cut off).
pub const CLOSING_READ_LIMIT: usize = 64 * 1024;

/// Bytes read from a socket per read.
const SCRATCH: usize = 16 * 1024;

/// Reads per turn of the loop at most, so that timers get their turn too.
const READS_PER_WAKE: usize = 4;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

struct Reader {
    decoder: FrameDecoder,
    /// Bytes read since the close began.
    read_while_closing: usize,
    /// Input can no longer be decoded (a framing error): wait for EOF.
    discard: bool,
}

/// Runs until the connection ends. `already_read` holds bytes the HTTP
/// layer read past the upgrade request.
pub async fn run<R: AsyncRead + Unpin>(
    conn: &mut Conn,
    mut read: R,
    already_read: bytes::Bytes,
    max_message: usize,
) {
    let mut r = Reader {
        decoder: FrameDecoder::new(max_message),
        read_while_closing: 0,
        discard: false,
    };
    if !already_read.is_empty() {
        let mut bytes = already_read.to_vec();
        r.feed(conn, &mut bytes);
    }
    // Even empty, this slice keeps hyper's whole read buffer alive: let it go
    // now, not when the connection ends.
    drop(already_read);
    let sleep = tokio::time::sleep_until(conn.next_deadline().into());
    tokio::pin!(sleep);
    while !conn.is_done() {
        sleep.as_mut().reset(conn.next_deadline().into());
        tokio::select! {
            open = poll_fn(|cx| r.poll_read_some(cx, conn, &mut read)) => {
                if !open {
                    break;
                }
            }
            _ = &mut sleep => conn.on_timer(Instant::now()),
        }
    }
}

impl Reader {
    /// Reads and decodes what the socket has; `Ready(false)` once the
    /// connection is over, `Pending` when there is nothing to read.
    fn poll_read_some<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        conn: &mut Conn,
        read: &mut R,
    ) -> Poll<bool> {
        SCRATCH_BUF.with(|cell| {
            let mut scratch = cell.borrow_mut();
            for i in 0..READS_PER_WAKE {
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut *read).poll_read(cx, &mut buf) {
                    Poll::Pending if i == 0 => return Poll::Pending,
                    Poll::Pending => return Poll::Ready(true),
                    Poll::Ready(Err(_)) => return Poll::Ready(false),
                    Poll::Ready(Ok(())) => {}
                }
                let n = buf.filled().len();
                if n == 0 {
                    return Poll::Ready(false);
                }
                if conn.is_closing() {
                    self.read_while_closing = self.read_while_closing.saturating_add(n);
                    if self.read_while_closing > CLOSING_READ_LIMIT {
                        return Poll::Ready(false);
                    }
                }
                if !self.feed(conn, &mut scratch[..n]) {
                    return Poll::Ready(false);
                }
                if n < scratch.len() {
                    break;
                }
            }
            // A busy client is read again on the next turn of the loop
            // (tokio's budget makes the task yield now and then).
            Poll::Ready(true)
        })
    }

    /// Decodes bytes; false once the reader should stop.
    fn feed(&mut self, conn: &mut Conn, bytes: &mut [u8]) -> bool {
        if self.discard {
            return true;
        }
        conn.heard();
        let result = self.decoder.feed(bytes, &mut |frame| {
            match frame {
                Frame::Close(code) => {
                    conn.on_peer_close(code);
                    return Flow::Stop;
                }
                Frame::Text(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => conn.on_text(text),
                    Err(_) => conn.on_invalid_text(),
                },
                Frame::Ping(payload) => conn.on_ping(payload),
                Frame::Pong | Frame::Fragment => conn.on_frame(),
            }
            Flow::Continue
        });
        match result {
            Ok(Flow::Continue) => !conn.is_done(),
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
                conn.on_framing_error(code, reason);
                self.discard = true;
                true
            }
        }
    }
}
