//! A client's writer: drains its outbox into the socket, a batch per write.
//!
//! Each wake-up takes every control entry and every queued update at once,
//! filters updates by the last `seq` sent per symbol (so a client never sees
//! a symbol go backwards, whatever order snapshots and updates were queued
//! in), and writes all pending frames with one `writev` when the socket takes
//! them. While the socket is full the writer waits without draining more, so
//! the bounded outbox is where a slow client's backlog lives (and is dropped).
//!
//! A frame once started is always finished: a close is written after the
//! last whole frame, and a connection that must end with a frame half
//! written (its peer stopped reading for the whole close grace) is reset,
//! never closed in the middle of a frame. Whatever ends the writer — a
//! return or a panic — ends the connection too ([`WriterGuard`]).

use super::outbox::{Control, Outbox};
use crate::clock::now_us;
use crate::encode;
use crate::latest::SymbolSlot;
use crate::metrics::{DisconnectReason, LocalHistogram, METRICS};
use crate::protocol;
use bytes::{Buf, Bytes};
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::OwnedWriteHalf;

/// Most iovecs handed to one `writev` (Linux IOV_MAX is 1024).
const MAX_IOV: usize = 256;

/// A subscribed symbol as this client has seen it.
struct Sub {
    slot: Arc<SymbolSlot>,
    /// `seq` of the last tick written for it (0: none yet).
    last_seq: u64,
}

/// Frames waiting for the socket.
#[derive(Default)]
struct Pending {
    frames: VecDeque<Bytes>,
    /// The front frame is partly written: the stream is mid-frame.
    mid_frame: bool,
}

impl Pending {
    fn push(&mut self, frame: Bytes) {
        self.frames.push_back(frame);
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.frames.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.frames.pop_front();
                self.mid_frame = false;
            } else {
                front.advance(n);
                self.mid_frame = true;
                n = 0;
            }
        }
    }

    /// Writes everything; cancel-safe (progress is kept in `self`).
    async fn flush(&mut self, socket: &OwnedWriteHalf) -> std::io::Result<()> {
        while !self.frames.is_empty() {
            let written = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut count = 0;
                for (slot, frame) in iov.iter_mut().zip(self.frames.iter()) {
                    *slot = IoSlice::new(frame);
                    count += 1;
                }
                socket.try_write_vectored(&iov[..count])
            };
            match written {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Per-connection state of the writer.
struct Writer {
    outbox: Arc<Outbox>,
    subs: HashMap<u32, Sub>,
    pending: Pending,
}

/// Ends the connection when the writer ends, however it ends (a panic
/// included): the reader then sees EOF and the session cleans up after itself.
struct WriterGuard<'a> {
    outbox: &'a Outbox,
    socket: &'a OwnedWriteHalf,
    /// Set once the writer has ended the connection itself.
    done: bool,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.outbox.abort(DisconnectReason::Client);
            let _ = reset(self.socket);
        }
    }
}

/// How the writer ended the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Shut down after whole frames (a FIN follows).
    Clean,
    /// Reset: no FIN may follow, or the peer would take a cut frame for an end.
    Reset,
}

/// Runs until the connection closes.
pub async fn run(outbox: Arc<Outbox>, socket: OwnedWriteHalf, grace: Duration) {
    let ending = {
        let mut guard = WriterGuard {
            outbox: &outbox,
            socket: &socket,
            done: false,
        };
        let w = Writer {
            outbox: outbox.clone(),
            subs: HashMap::new(),
            pending: Pending::default(),
        };
        let ending = serve(w, &socket, grace).await;
        guard.done = true;
        ending
    };
    if ending == Ending::Reset {
        // Dropping the write half would send a FIN before the reset.
        socket.forget();
    }
}

async fn serve(mut w: Writer, socket: &OwnedWriteHalf, grace: Duration) -> Ending {
    w.outbox.signal.wait().await;
    loop {
        let mut close = w.take_control();
        if close.is_none() && w.outbox.is_closing() {
            // A close is queued before the state turns CLOSING: look once more.
            close = w.take_control();
            if close.is_none() {
                // The reader ended (the peer left) or the connection was aborted.
                return end(socket, &w.pending);
            }
        }
        if let Some((code, reason)) = close {
            return w.close(socket, code, reason, grace).await;
        }
        w.take_ticks();
        let mut woken = false;
        while !w.pending.is_empty() {
            tokio::select! {
                written = w.pending.flush(socket) => if written.is_err() {
                    w.outbox.abort(DisconnectReason::Client);
                    return reset(socket);
                },
                _ = w.outbox.signal.wait() => {
                    woken = true;
                    if w.outbox.is_closing() {
                        // What is pending (maybe a frame half written) stays
                        // pending: the close goes out after it.
                        break;
                    }
                }
            }
        }
        if w.pending.is_empty() && w.pending.frames.capacity() > 64 {
            // Keep an idle connection small.
            w.pending.frames = VecDeque::new();
        }
        if !woken {
            w.outbox.signal.wait().await;
        }
    }
}

impl Writer {
    /// Handles control entries; returns the close request, if one came.
    fn take_control(&mut self) -> Option<(u16, &'static str)> {
        for entry in self.outbox.take_control() {
            match entry {
                Control::Frame(frame) => self.pending.push(frame),
                Control::Subscribed {
                    id,
                    symbols,
                    errors,
                } => {
                    let names: Vec<&str> = symbols.iter().map(|s| &*s.slot.name).collect();
                    let unknown: Vec<&str> = symbols
                        .iter()
                        .filter(|s| s.slot.latest.load().is_none())
                        .map(|s| &*s.slot.name)
                        .collect();
                    self.pending
                        .push(protocol::subscribed(id, &names, &unknown));
                    for e in errors {
                        self.pending.push(e);
                    }
                    for s in &symbols {
                        let sub = self.subs.entry(s.slot.id).or_insert_with(|| Sub {
                            slot: s.slot.clone(),
                            last_seq: 0,
                        });
                        let Some(current) = s.slot.latest.load_full() else {
                            continue;
                        };
                        // The client that names a `since` at or past the current seq is up to date.
                        if s.since.is_none_or(|since| since < current.seq()) {
                            self.pending.push(current.snapshot_frame(&s.slot.name));
                            METRICS.messages_sent.inc();
                        }
                        sub.last_seq = sub.last_seq.max(current.seq());
                    }
                }
                Control::Unsubscribed {
                    id,
                    symbols,
                    reason,
                } => {
                    for slot in &symbols {
                        self.subs.remove(&slot.id);
                    }
                    let names: Vec<&str> = symbols.iter().map(|s| &*s.name).collect();
                    self.pending
                        .push(protocol::unsubscribed(id, &names, reason));
                }
                Control::Close { code, reason } => return Some((code, reason)),
            }
        }
        None
    }

    /// Moves queued updates into `pending`, newest-only per symbol, then
    /// re-sends the current state of symbols whose updates were dropped.
    fn take_ticks(&mut self) {
        let now = now_us();
        let mut latency = LocalHistogram::default();
        let mut sent = 0u64;
        // At most a queue's worth per pass, so a fast feed cannot keep us here.
        for _ in 0..=self.outbox.capacity() {
            let Some(tick) = self.outbox.pop_tick() else {
                break;
            };
            let Some(sub) = self.subs.get_mut(&tick.id) else {
                continue;
            };
            if tick.seq() > sub.last_seq {
                sub.last_seq = tick.seq();
                latency.observe_us(now.saturating_sub(tick.state.pub_us));
                self.pending.push(tick.frame.clone());
                sent += 1;
            }
        }
        if self.outbox.take_resync() {
            for sub in self.subs.values_mut() {
                let Some(current) = sub.slot.latest.load_full() else {
                    continue;
                };
                if current.seq() > sub.last_seq {
                    sub.last_seq = current.seq();
                    latency.observe_us(now.saturating_sub(current.state.pub_us));
                    self.pending.push(current.frame.clone());
                    sent += 1;
                }
            }
        }
        if sent > 0 {
            METRICS.messages_sent.add(sent);
            METRICS.fanout_latency.merge(&latency);
        }
    }

    /// Sends the close frame after what was already pending (replies queued
    /// before the close, e.g. the errors that led to it; queued ticks are not
    /// taken any more), waits for the reader to see the client's answer (or
    /// the grace to pass), and closes.
    async fn close(
        mut self,
        socket: &OwnedWriteHalf,
        code: u16,
        reason: &'static str,
        grace: Duration,
    ) -> Ending {
        self.pending.push(encode::close_frame(code, reason));
        let flushed = tokio::time::timeout(grace, self.pending.flush(socket)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            // The peer did not take the close in time (or is gone).
            return end(socket, &self.pending);
        }
        let outbox = self.outbox.clone();
        let _ = tokio::time::timeout(grace, async move {
            while !outbox.is_reader_done() {
                outbox.signal.wait().await;
            }
        })
        .await;
        shutdown(socket)
    }
}

/// Ends the connection without a close frame: a clean FIN after whole frames,
/// a reset when a frame is half written (a peer must never read a stream cut
/// in the middle of a frame as if it had ended).
fn end(socket: &OwnedWriteHalf, pending: &Pending) -> Ending {
    if pending.mid_frame {
        reset(socket)
    } else {
        shutdown(socket)
    }
}

/// Ends the TCP connection both ways, which also wakes the reader.
fn shutdown(socket: &OwnedWriteHalf) -> Ending {
    let _ = socket2::SockRef::from(socket.as_ref()).shutdown(std::net::Shutdown::Both);
    Ending::Clean
}

/// Resets the TCP connection: with a zero linger the kernel sends RST when
/// the socket is closed, and shutting down the read side wakes the reader,
/// whose end closes it. Nothing more is written.
fn reset(socket: &OwnedWriteHalf) -> Ending {
    let sock = socket2::SockRef::from(socket.as_ref());
    let _ = sock.set_linger(Some(Duration::ZERO));
    let _ = sock.shutdown(std::net::Shutdown::Read);
    Ending::Reset
}
