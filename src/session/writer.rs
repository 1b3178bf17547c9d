//! A client's writer: drains its outbox into the socket, a batch per write.
//!
//! Each wake-up takes every control entry and every queued update at once,
//! filters updates by the last `seq` sent per symbol (so a client never sees
//! a symbol go backwards, whatever order snapshots and updates were queued
//! in), and writes all pending frames with one `writev` when the socket takes
//! them. While the socket is full the writer waits without draining more, so
//! the bounded outbox is where a slow client's backlog lives (and is dropped).

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
            } else {
                front.advance(n);
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

/// Runs until the connection closes.
pub async fn run(outbox: Arc<Outbox>, socket: OwnedWriteHalf, grace: Duration) {
    let mut w = Writer {
        outbox,
        subs: HashMap::new(),
        pending: Pending::default(),
    };
    w.outbox.signal.wait().await;
    loop {
        let mut close = w.take_control();
        if close.is_none() && w.outbox.is_closing() {
            // A close is queued before the state turns CLOSING: look once more.
            close = w.take_control();
            if close.is_none() {
                return shutdown(&socket);
            }
        }
        if let Some((code, reason)) = close {
            return w.close(socket, code, reason, grace).await;
        }
        w.take_ticks();
        let mut woken = false;
        while !w.pending.is_empty() {
            tokio::select! {
                written = w.pending.flush(&socket) => if written.is_err() {
                    w.outbox.abort(DisconnectReason::Client);
                    return shutdown(&socket);
                },
                _ = w.outbox.signal.wait() => {
                    woken = true;
                    if w.outbox.is_closing() {
                        break;
                    }
                }
            }
        }
        if w.pending.frames.capacity() > 64 {
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
                Control::Subscribed { id, symbols } => {
                    let names: Vec<&str> = symbols.iter().map(|s| &*s.slot.name).collect();
                    let unknown: Vec<&str> = symbols
                        .iter()
                        .filter(|s| s.slot.latest.load().is_none())
                        .map(|s| &*s.slot.name)
                        .collect();
                    self.pending
                        .push(protocol::subscribed(id, &names, &unknown));
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
                Control::Unsubscribed { id, symbols } => {
                    for slot in &symbols {
                        self.subs.remove(&slot.id);
                    }
                    let names: Vec<&str> = symbols.iter().map(|s| &*s.name).collect();
                    self.pending.push(protocol::unsubscribed(id, &names));
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
        socket: OwnedWriteHalf,
        code: u16,
        reason: &'static str,
        grace: Duration,
    ) {
        self.pending.push(encode::close_frame(code, reason));
        let _ = tokio::time::timeout(grace, self.pending.flush(&socket)).await;
        let outbox = self.outbox.clone();
        let _ = tokio::time::timeout(grace, async move {
            while !outbox.is_reader_done() {
                outbox.signal.wait().await;
            }
        })
        .await;
        shutdown(&socket);
    }
}

/// Ends the TCP connection both ways, which also wakes the reader.
fn shutdown(socket: &OwnedWriteHalf) {
    let _ = socket2::SockRef::from(socket.as_ref()).shutdown(std::net::Shutdown::Both);
}
