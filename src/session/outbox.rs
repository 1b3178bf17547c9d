//! A client's outbox: what the hub and the reader hand to the client's writer.
//!
//! Two queues, both drained by the writer only:
//! * `ticks`: live updates, bounded by `--queue`. The hub pushes without a
//!   lock (crossbeam `SegQueue`, which also allocates nothing while empty).
//!   On overflow the oldest entry is dropped and `resync` is set, which makes
//!   the writer re-send the current state of every symbol whose last sent
//!   `seq` is behind, once it has caught up: a dropped update is never the
//!   last word on a symbol. Under `--slow-consumer close` an overflow closes
//!   the connection with 4008 instead.
//! * `control`: replies, snapshot requests and close requests. They are
//!   never dropped; a client that lets more than [`CONTROL_LIMIT`] of them
//!   pile up (it sends requests but reads nothing) is closed as a slow consumer.
//!
//! [`Signal`] wakes the writer at most once per burst: producers wake it only
//! when it was not already woken.

use crate::latest::{Latest, SymbolSlot};
use crate::metrics::{DisconnectReason, METRICS};
use crate::protocol::Message;
use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam_queue::SegQueue;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

/// Most control entries waiting for one client before it is closed.
pub const CONTROL_LIMIT: usize = 256;

/// A subscribed symbol and the client's `since` for it.
pub struct SubscribedSymbol {
    pub slot: Arc<SymbolSlot>,
    pub since: Option<u64>,
    /// At most one update of it per this long for this client (`interval_ms`).
    pub interval: Option<std::time::Duration>,
    /// A candle series: how many closed bars its history holds (`limit`).
    pub limit: usize,
}

/// Work for the writer that must not be dropped, in the order it was queued.
pub enum Control {
    /// A message (welcome, pong, error …), encoded by the writer for its transport.
    Message(Message),
    /// A keep-alive for the transport to send (WebSocket ping, SSE comment).
    Ping,
    /// The answer to a client's WebSocket ping, with its payload.
    Pong(Bytes),
    /// The hub registered these symbols: reply `subscribed`, then the
    /// request's `error`s (symbols refused), then send snapshots — all of
    /// them, or with `after` (a stream resuming from a `gseq`) only those
    /// that changed since.
    Subscribed {
        id: Option<i64>,
        symbols: Vec<SubscribedSymbol>,
        errors: Vec<Message>,
        after: Option<u64>,
    },
    /// The hub removed these symbols: reply `unsubscribed` (with a reason when
    /// the server ended them itself), stop sending them.
    Unsubscribed {
        id: Option<i64>,
        symbols: Vec<Arc<SymbolSlot>>,
        reason: Option<&'static str>,
    },
    /// Send the transport's close for this code, then stop.
    Close { code: u16, reason: &'static str },
}

/// Wakes one task, once per burst of notifications.
#[derive(Default)]
pub struct Signal {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    pub fn notify(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Completes once `notify` has been called since the last completion.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.pending.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.pending.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// What happened to a pushed tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, and the oldest entry was dropped to make room.
    DroppedOldest,
    /// The client is being closed (overflow under `close`, or already closing).
    Closed,
}

const OPEN: u8 = 0;
const CLOSING: u8 = 1;

pub struct Outbox {
    pub id: u64,
    ticks: SegQueue<Arc<Latest>>,
    ticks_len: AtomicU32,
    capacity: u32,
    close_on_overflow: bool,
    /// Some entry was dropped: re-send current state once caught up.
    resync: AtomicBool,
    control: Mutex<std::collections::VecDeque<Control>>,
    state: AtomicU8,
    /// First reason the connection is ending, as `DisconnectReason as u8 + 1` (0: none yet).
    reason: AtomicU8,
    reader_done: AtomicBool,
    /// The writer has ended (the connection is over); the driver may stop.
    writer_done: AtomicBool,
    writer_ended: tokio::sync::Notify,
    close_requested: AtomicBool,
    /// Set by the hub while this outbox is on its list of writers to wake at
    /// the end of the current pass (only the hub thread touches it).
    wake_listed: AtomicBool,
    pub signal: Signal,
}

impl Outbox {
    pub fn new(id: u64, capacity: u32, close_on_overflow: bool) -> Outbox {
        Outbox {
            id,
            ticks: SegQueue::new(),
            ticks_len: AtomicU32::new(0),
            capacity,
            close_on_overflow,
            resync: AtomicBool::new(false),
            control: Mutex::new(Default::default()),
            state: AtomicU8::new(OPEN),
            reason: AtomicU8::new(0),
            reader_done: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            writer_ended: tokio::sync::Notify::new(),
            close_requested: AtomicBool::new(false),
            wake_listed: AtomicBool::new(false),
            signal: Signal::default(),
        }
    }

    /// Live updates queued now.
    pub fn queued(&self) -> u32 {
        self.ticks_len.load(Ordering::Relaxed)
    }

    /// The `--queue` bound on live updates.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn is_closing(&self) -> bool {
        self.state.load(Ordering::Acquire) != OPEN
    }

    /// Pushes a live update; never blocks and takes no lock.
    /// The caller wakes the writer with `signal.notify()` (once per batch).
    pub fn push_tick(&self, tick: Arc<Latest>) -> Pushed {
        if self.is_closing() {
            return Pushed::Closed;
        }
        let mut result = Pushed::Queued;
        if self.ticks_len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            if self.close_on_overflow {
                self.ticks_len.fetch_sub(1, Ordering::AcqRel);
                self.close(4008, "slow consumer", DisconnectReason::SlowConsumer);
                return Pushed::Closed;
            }
            if self.ticks.pop().is_some() {
                self.ticks_len.fetch_sub(1, Ordering::AcqRel);
                self.resync.store(true, Ordering::Release);
                METRICS.dropped.inc();
                result = Pushed::DroppedOldest;
            }
        }
        self.ticks.push(tick);
        result
    }

    /// For the hub: true the first time it is called since the last
    /// [`Outbox::wake`], so that each writer is listed once per pass.
    pub fn list_for_wake(&self) -> bool {
        !self.wake_listed.swap(true, Ordering::Relaxed)
    }

    /// For the hub, at the end of a pass: wakes the writer.
    pub fn wake(&self) {
        self.wake_listed.store(false, Ordering::Relaxed);
        self.signal.notify();
    }

    /// Takes the next queued update.
    pub fn pop_tick(&self) -> Option<Arc<Latest>> {
        let t = self.ticks.pop()?;
        self.ticks_len.fetch_sub(1, Ordering::AcqRel);
        Some(t)
    }

    /// Whether entries were dropped since the last call.
    pub fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::AcqRel)
    }

    /// Whether entries were dropped since the last [`Outbox::take_resync`].
    pub fn resync_pending(&self) -> bool {
        self.resync.load(Ordering::Acquire)
    }

    /// Queues a control entry and wakes the writer.
    pub fn push_control(&self, entry: Control) {
        let overflow = {
            let mut q = self.control.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= CONTROL_LIMIT {
                true
            } else {
                q.push_back(entry);
                false
            }
        };
        if overflow {
            self.close(4008, "slow consumer", DisconnectReason::SlowConsumer);
        }
        self.signal.notify();
    }

    /// Takes every queued control entry.
    pub fn take_control(&self) -> std::collections::VecDeque<Control> {
        let mut q = self.control.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *q)
    }

    /// Records why the connection ends; the first reason given wins.
    pub fn set_reason(&self, reason: DisconnectReason) {
        let _ =
            self.reason
                .compare_exchange(0, reason as u8 + 1, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn reason(&self) -> Option<DisconnectReason> {
        match self.reason.load(Ordering::Acquire) {
            0 => None,
            v => DisconnectReason::from_u8(v - 1),
        }
    }

    /// Starts closing: the writer sends a close frame with `code` and stops.
    /// Only the first call has an effect.
    pub fn close(&self, code: u16, reason: &'static str, why: DisconnectReason) {
        if self.close_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        self.set_reason(why);
        // The close entry is queued before the state says CLOSING, so a writer
        // that sees CLOSING always finds the entry when it looks again.
        let mut q = self.control.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(Control::Close { code, reason });
        drop(q);
        self.state.store(CLOSING, Ordering::Release);
        self.signal.notify();
    }

    /// Ends the connection the deploy-friendly way: a `reconnect` message
    /// saying how long to wait, then close 1001. Only the first close of a
    /// connection has an effect.
    pub fn close_with_reconnect(&self, after_ms: u64, reason: &'static str, why: DisconnectReason) {
        if self.close_requested.swap(true, Ordering::AcqRel) {
            return;
        }
        self.set_reason(why);
        let mut q = self.control.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(Control::Message(Message::Reconnect { after_ms, reason }));
        q.push_back(Control::Close {
            code: crate::transport::ws::close::GOING_AWAY,
            reason,
        });
        drop(q);
        self.state.store(CLOSING, Ordering::Release);
        self.signal.notify();
    }

    /// The reader has finished: the writer may close the socket once its
    /// close frame (if any) is out.
    pub fn reader_finished(&self) {
        self.reader_done.store(true, Ordering::Release);
        self.state.store(CLOSING, Ordering::Release);
        self.signal.notify();
    }

    pub fn is_reader_done(&self) -> bool {
        self.reader_done.load(Ordering::Acquire)
    }

    /// For the writer, as it ends, however it ends.
    pub fn writer_finished(&self) {
        self.writer_done.store(true, Ordering::Release);
        self.writer_ended.notify_waiters();
    }

    /// Completes once the writer has ended.
    pub async fn writer_ended(&self) {
        loop {
            let notified = self.writer_ended.notified();
            if self.writer_done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Stops the writer without a close frame (the peer is gone).
    pub fn abort(&self, why: DisconnectReason) {
        self.set_reason(why);
        self.state.store(CLOSING, Ordering::Release);
        self.signal.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Fields, TickState};

    fn tick(seq: u64) -> Arc<Latest> {
        Arc::new(Latest::new(
            0,
            TickState {
                seq,
                fields: Fields::default(),
                ts: 0,
                pub_us: 0,
                gseq: seq,
            },
        ))
    }

    #[test]
    fn overflow_drops_the_oldest_and_asks_for_a_resync() {
        let o = Outbox::new(1, 3, false);
        for s in 1..=3 {
            assert_eq!(o.push_tick(tick(s)), Pushed::Queued);
        }
        assert!(!o.take_resync());
        assert_eq!(o.push_tick(tick(4)), Pushed::DroppedOldest);
        assert_eq!(o.push_tick(tick(5)), Pushed::DroppedOldest);
        let seqs: Vec<u64> = std::iter::from_fn(|| o.pop_tick())
            .map(|t| t.seq())
            .collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(o.take_resync());
        assert!(!o.take_resync(), "cleared once taken");
    }

    #[test]
    fn overflow_under_close_policy_closes_with_4008() {
        let o = Outbox::new(1, 2, true);
        o.push_tick(tick(1));
        o.push_tick(tick(2));
        assert_eq!(o.push_tick(tick(3)), Pushed::Closed);
        assert!(o.is_closing());
        assert_eq!(o.reason(), Some(DisconnectReason::SlowConsumer));
        let control = o.take_control();
        assert!(matches!(
            control.front(),
            Some(Control::Close { code: 4008, .. })
        ));
        assert_eq!(o.push_tick(tick(4)), Pushed::Closed);
    }

    #[test]
    fn control_entries_are_never_dropped_but_bounded() {
        let o = Outbox::new(1, 1, false);
        for _ in 0..CONTROL_LIMIT {
            o.push_control(Control::Ping);
        }
        assert!(!o.is_closing());
        o.push_control(Control::Ping);
        assert!(o.is_closing());
        assert_eq!(
            o.take_control().len(),
            CONTROL_LIMIT + 1,
            "all kept, plus the close"
        );
    }

    #[test]
    fn first_reason_wins() {
        let o = Outbox::new(1, 1, false);
        o.set_reason(DisconnectReason::Heartbeat);
        o.close(1001, "", DisconnectReason::Shutdown);
        assert_eq!(o.reason(), Some(DisconnectReason::Heartbeat));
    }

    #[tokio::test]
    async fn signal_wakes_once_per_burst() {
        let s = Arc::new(Signal::default());
        s.notify();
        s.notify();
        s.wait().await;
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        tokio::task::yield_now().await;
        s.notify();
        waiter.await.unwrap();
    }
}
