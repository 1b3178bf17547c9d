//! How bytes reach a client: WebSocket ([`ws`]) or Server-Sent Events
//! ([`sse`]). A transport frames what the session core hands it — ticks
//! and messages as values, pings, a close — in its own way and in the
//! connection's encoding, and writes through a [`link::Link`].
//!
//! To add a transport: a file with a [`Framing`] (and whatever reads the
//! client's requests, if it has any), a route that starts a session with
//! it, and one more in [`TRANSPORTS`] so each update keeps its bytes too.

pub mod link;
pub mod peer_watch;
pub mod sse;
pub mod ws;

use crate::encoding::ENCODINGS;
use crate::latest::Latest;
use crate::protocol::Message;
use bytes::Bytes;

/// Transports whose tick bytes an update keeps: WebSocket, SSE.
pub const TRANSPORTS: usize = 2;

/// Forms of a tick's bytes an update may keep: one per transport and encoding.
pub const FORMS: usize = TRANSPORTS * ENCODINGS.len();

/// The index of a (transport, encoding) pair among the [`FORMS`].
pub const fn form(transport: usize, encoding: usize) -> usize {
    transport * ENCODINGS.len() + encoding
}

/// How one connection's frames are made.
pub trait Framing: Send + 'static {
    /// This connection's form: the bytes of each update it shares with every
    /// connection of the same transport and encoding.
    fn form(&self) -> usize;
    /// A tick's bytes, made for the first connection of this form that needs them.
    fn encode_tick(&self, symbol: &str, latest: &Latest, snapshot: bool) -> Bytes;
    fn message(&self, m: &Message) -> Bytes;
    /// A keep-alive (WebSocket ping frame, SSE comment).
    fn ping(&self) -> Bytes;
    /// The answer to a client's ping (WebSocket).
    fn pong(&self, payload: &[u8]) -> Bytes;
    /// The last bytes before the connection ends for `code` (protocol §7).
    fn close(&self, code: u16, reason: &str) -> Bytes;
    /// Written after a batch whose effect is "the client has everything up
    /// to `watermark`" (see [`crate::tick::TickState::gseq`]), for transports
    /// that resume from one number (SSE's `id:`).
    fn mark(&mut self, _watermark: u64) -> Option<Bytes> {
        None
    }

    /// A tick's bytes, shared: made once per update and form.
    fn tick(&self, symbol: &str, latest: &Latest, snapshot: bool) -> Bytes {
        latest.form(self.form(), snapshot, || match &latest.candle {
            // A candle series' update: rarer than ticks, sent as a message.
            Some(bar) => self.message(&Message::candle(symbol, bar)),
            None => self.encode_tick(symbol, latest, snapshot),
        })
    }
}
