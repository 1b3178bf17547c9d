//! A client's writer: drains its outbox into its connection, a batch per write.
//!
//! Each wake-up takes every control entry and every queued update at once,
//! filters updates by the last `seq` sent per symbol (so a client never sees
//! a symbol go backwards, whatever order snapshots and updates were queued
//! in), and hands all pending frames to the link at once (one `writev` on a
//! plain socket). While the link is full the writer waits without draining
//! more, so the bounded outbox is where a slow client's backlog lives (and
//! is dropped). Once it catches up after a drop, the writer re-sends the
//! current state of every symbol it is behind on.
//!
//! The writer knows nothing of frames: the transport's [`Framing`] makes
//! them (a tick's bytes once per update and form, shared by every client of
//! that form) and its [`Link`] writes them.
//!
//! A frame once started is always finished: a close is written after the
//! last whole frame, and a connection that must end with a frame half
//! written (its peer stopped reading for the whole close grace) is reset,
//! never closed in the middle of a frame. Whatever ends the writer — a
//! return or a panic — ends the connection too (its guard).
//!
//! For transports that resume from one number (SSE), the writer also keeps a
//! watermark: a `gseq` such that the client holds, for every symbol it
//! subscribes to, a state at least as new as that symbol's last update up to
//! it. It moves with updates written in order, freezes while dropped updates
//! wait to be re-sent, and jumps to what was published when snapshots or
//! re-sends were read.

use super::outbox::{Control, Outbox};
use crate::clock::now_us;
use crate::latest::{published, Latest, SymbolSlot};
use crate::metrics::{DisconnectReason, LocalHistogram, METRICS};
use crate::protocol::Message;
use crate::transport::link::Link;
use crate::transport::Framing;
use bytes::{Buf, Bytes};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A subscribed symbol as this client has seen it.
struct Sub {
    slot: Arc<SymbolSlot>,
    /// `seq` of the last tick written for it (0: none yet).
    last_seq: u64,
    /// A subscription with `interval_ms`: conflated on the way out.
    pace: Option<Box<Pace>>,
    /// A candle series whose history waits for its turn (see
    /// [`HISTORY_BUDGET`]); its live bars wait with it.
    history: Option<HistoryAsk>,
}

/// What a candle series' history is to hold.
#[derive(Clone, Copy)]
struct HistoryAsk {
    since: Option<u64>,
    after: Option<u64>,
    limit: usize,
}

/// Histories are made only while less than this is waiting for the link:
/// the rest wait (as values, not bytes) until the client has read, so a
/// client that asks for many long histories and reads nothing holds at
/// most about this much, not megabytes per request.
pub const HISTORY_BUDGET: usize = 256 << 10;

/// Bars of history a connection is sent per second at most (a bucket this
/// deep): a chart's few histories go at once, while a client that asks for
/// hundreds of long ones again and again gets them at this pace instead of
/// making its writer encode without end (a small request, a large answer).
pub const HISTORY_BARS_PER_SECOND: f64 = 20_000.0;

/// A connection's allowance of history bars (see [`HISTORY_BARS_PER_SECOND`]).
struct HistoryRate {
    bars: f64,
    at: Instant,
}

impl HistoryRate {
    fn new() -> HistoryRate {
        HistoryRate {
            bars: HISTORY_BARS_PER_SECOND,
            at: Instant::now(),
        }
    }

    /// Takes `n` bars now, or says when there will be enough (a history
    /// larger than the whole bucket goes once the bucket is full).
    fn take(&mut self, n: usize, now: Instant) -> Result<(), Instant> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.bars = (self.bars + elapsed * HISTORY_BARS_PER_SECOND).min(HISTORY_BARS_PER_SECOND);
        self.at = now;
        let need = (n as f64).min(HISTORY_BARS_PER_SECOND);
        if self.bars >= need {
            self.bars -= n as f64;
            return Ok(());
        }
        let wait = (need - self.bars) / HISTORY_BARS_PER_SECOND;
        Err(now + Duration::from_secs_f64(wait))
    }
}

/// At most one update of a symbol per `every` for this client: an update
/// that comes sooner waits (replacing any that waited before it), and the
/// latest one always leaves when its turn comes.
struct Pace {
    every: Duration,
    /// When the next update may leave.
    next: Instant,
    waiting: Option<Arc<Latest>>,
}

/// Frames waiting for the link.
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

    /// Bytes waiting for the link.
    fn bytes(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum()
    }

    /// Drops the first `n` bytes written; returns how many frames they finished.
    fn advance(&mut self, mut n: usize) -> u64 {
        let mut finished = 0;
        while n > 0 {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.frames.pop_front();
                self.mid_frame = false;
                finished += 1;
            } else {
                front.advance(n);
                self.mid_frame = true;
                n = 0;
            }
        }
        finished
    }

    /// Writes everything; cancel-safe (progress is kept in `self`).
    async fn flush(&mut self, link: &mut dyn Link) -> std::io::Result<()> {
        while !self.frames.is_empty() {
            let n = poll_fn(|cx| link.poll_take(cx, &self.frames)).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let finished = self.advance(n);
            METRICS.writes.inc();
            METRICS.frames_written.add(finished);
        }
        Ok(())
    }
}

/// Per-connection state of the writer.
struct Writer {
    outbox: Arc<Outbox>,
    framing: Box<dyn Framing>,
    subs: HashMap<u32, Sub>,
    pending: Pending,
    /// See the module doc: everything up to this `gseq` is with the client.
    watermark: u64,
    /// Paced updates waiting for their turn, and the soonest turn.
    paced_waiting: usize,
    next_turn: Option<Instant>,
    /// Candle series whose history waits for its turn, in the order asked.
    histories: VecDeque<u32>,
    history_rate: HistoryRate,
    /// When the next waiting history may go (the rate), if it must wait.
    history_at: Option<Instant>,
}

/// Ends the connection when the writer ends, however it ends (a panic
/// included): the driver then sees the end and the session cleans up.
struct WriterGuard<'a> {
    outbox: &'a Outbox,
    link: &'a mut dyn Link,
    /// Set once the writer has ended the connection itself.
    done: bool,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.outbox.abort(DisconnectReason::Client);
            self.link.reset();
        }
        self.outbox.writer_finished();
    }
}

/// Runs until the connection closes.
pub async fn run(
    outbox: Arc<Outbox>,
    mut link: Box<dyn Link>,
    framing: Box<dyn Framing>,
    grace: Duration,
) {
    let mut guard = WriterGuard {
        outbox: &outbox,
        link: &mut *link,
        done: false,
    };
    let w = Writer {
        outbox: outbox.clone(),
        framing,
        subs: HashMap::new(),
        pending: Pending::default(),
        watermark: 0,
        paced_waiting: 0,
        next_turn: None,
        histories: VecDeque::new(),
        history_rate: HistoryRate::new(),
        history_at: None,
    };
    serve(w, guard.link, grace).await;
    guard.done = true;
}

async fn serve(mut w: Writer, link: &mut dyn Link, grace: Duration) {
    w.outbox.signal.wait().await;
    loop {
        let mut close = w.take_control();
        if close.is_none() && w.outbox.is_closing() {
            // A close is queued before the state turns CLOSING: look once more.
            close = w.take_control();
            if close.is_none() {
                // The driver ended (the peer left) or the connection was aborted.
                return end(link, &w.pending).await;
            }
        }
        if let Some((code, reason)) = close {
            return w.close(link, code, reason, grace).await;
        }
        w.send_histories();
        w.take_ticks();
        w.mark();
        let mut woken = false;
        while !w.pending.is_empty() {
            tokio::select! {
                written = w.pending.flush(link) => if written.is_err() {
                    w.outbox.abort(DisconnectReason::Client);
                    return link.reset();
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
        // Histories that wait only for the link to drain go at once; those
        // that wait for the rate, at their time.
        let histories_now = !w.histories.is_empty() && w.history_at.is_none();
        if !woken && !histories_now {
            match [w.next_turn, w.history_at].into_iter().flatten().min() {
                None => w.outbox.signal.wait().await,
                Some(at) => {
                    // Paced updates wait for their turn: the only timer a
                    // writer has, and only while one waits.
                    tokio::select! {
                        _ = w.outbox.signal.wait() => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
            }
        }
    }
}

impl Writer {
    fn message(&mut self, m: &Message) {
        let frame = self.framing.message(m);
        self.pending.push(frame);
    }

    /// Handles control entries; returns the close request, if one came.
    fn take_control(&mut self) -> Option<(u16, &'static str)> {
        for entry in self.outbox.take_control() {
            match entry {
                Control::Message(m) => self.message(&m),
                Control::Ping => {
                    let ping = self.framing.ping();
                    self.pending.push(ping);
                }
                Control::Pong(payload) => {
                    let pong = self.framing.pong(&payload);
                    self.pending.push(pong);
                }
                Control::Subscribed {
                    id,
                    symbols,
                    errors,
                    after,
                } => {
                    let (series, ticks): (Vec<_>, Vec<_>) =
                        symbols.iter().partition(|s| s.slot.series.is_some());
                    let names = ticks.iter().map(|s| s.slot.name.to_string()).collect();
                    let unknown = ticks
                        .iter()
                        .filter(|s| s.slot.latest.load().is_none())
                        .map(|s| s.slot.name.to_string())
                        .collect();
                    let candles = series.iter().map(|s| s.slot.name.to_string()).collect();
                    self.message(&Message::Subscribed {
                        id,
                        symbols: names,
                        unknown,
                        candles,
                    });
                    for e in &errors {
                        self.message(e);
                    }
                    // Every value read below is at least as new as this.
                    let seen = published();
                    let now = Instant::now();
                    for s in &symbols {
                        let sub = self.subs.entry(s.slot.id).or_insert_with(|| Sub {
                            slot: s.slot.clone(),
                            last_seq: 0,
                            pace: None,
                            history: None,
                        });
                        if s.slot.series.is_some() {
                            // Made by `send_histories`, after this batch of replies.
                            let ask = HistoryAsk {
                                since: s.since,
                                after,
                                limit: s.limit,
                            };
                            ask_history(sub, ask, &mut self.histories);
                            continue;
                        }
                        // The request's interval from now on (none: every update).
                        let waiting = sub.pace.as_mut().and_then(|p| p.waiting.take());
                        self.paced_waiting -= usize::from(waiting.is_some());
                        sub.pace = s.interval.map(|every| {
                            Box::new(Pace {
                                every,
                                next: now + every,
                                waiting: None,
                            })
                        });
                        let Some(current) = s.slot.latest.load_full() else {
                            continue;
                        };
                        // The client that names a `since` at or past the
                        // current seq (or resumes after its gseq) is up to date.
                        let up_to_date = s.since.is_some_and(|since| since >= current.seq())
                            || after.is_some_and(|after| after >= current.state.gseq);
                        if !up_to_date {
                            let frame = self.framing.tick(&s.slot.name, &current, true);
                            self.pending.push(frame);
                            METRICS.messages_sent.inc();
                        }
                        sub.last_seq = sub.last_seq.max(current.seq());
                    }
                    self.watermark = self.watermark.max(seen).max(after.unwrap_or(0));
                }
                Control::Unsubscribed {
                    id,
                    symbols,
                    reason,
                } => {
                    for slot in &symbols {
                        if let Some(sub) = self.subs.remove(&slot.id) {
                            let waited = sub.pace.is_some_and(|p| p.waiting.is_some());
                            self.paced_waiting -= usize::from(waited);
                        }
                    }
                    let (candles, symbols): (Vec<_>, Vec<_>) =
                        symbols.iter().partition(|s| s.series.is_some());
                    self.message(&Message::Unsubscribed {
                        id,
                        symbols: symbols.iter().map(|s| s.name.to_string()).collect(),
                        candles: candles.iter().map(|s| s.name.to_string()).collect(),
                        reason,
                    });
                }
                Control::Close { code, reason } => return Some((code, reason)),
            }
        }
        None
    }

    /// Sends the histories of candle series that wait for one, while less
    /// than [`HISTORY_BUDGET`] waits for the link; the others wait for the
    /// next pass (the writer comes back once what is pending is written).
    fn send_histories(&mut self) {
        self.history_at = None;
        let now = Instant::now();
        let mut budget = HISTORY_BUDGET.saturating_sub(self.pending.bytes());
        while budget > 0 {
            let Some(id) = self.histories.pop_front() else {
                return;
            };
            let Some(sub) = self.subs.get_mut(&id) else {
                continue;
            };
            let (Some(ask), Some(series)) = (sub.history.take(), sub.slot.series.as_ref()) else {
                continue;
            };
            let read = match (ask.since, ask.after) {
                (Some(seq), _) => series.since(seq),
                (None, Some(gseq)) => series.after_gseq(gseq),
                (None, None) => series.history(ask.limit, None),
            };
            if let Err(at) = self.history_rate.take(read.bars.len(), now) {
                // Not yet: it waits, first in line, and is read again then.
                sub.history = Some(ask);
                self.histories.push_front(id);
                self.history_at = Some(at);
                return;
            }
            // A resume that missed nothing gets nothing.
            if !read.bars.is_empty() || (ask.since.is_none() && ask.after.is_none()) {
                let m = Message::Candles {
                    symbol: series.symbol.to_string(),
                    interval: series.interval.to_string(),
                    bars: read.bars,
                    snapshot: true,
                };
                let frame = self.framing.message(&m);
                budget = budget.saturating_sub(frame.len());
                self.pending.push(frame);
                METRICS.messages_sent.inc();
            }
            sub.last_seq = sub.last_seq.max(read.seq);
        }
    }

    /// Moves queued updates into `pending`, newest-only per symbol, then
    /// re-sends the current state of symbols whose updates were dropped.
    fn take_ticks(&mut self) {
        let now = now_us();
        let instant = Instant::now();
        let mut latency = LocalHistogram::default();
        let mut sent = 0u64;
        let dropped = self.outbox.take_resync();
        let watermark_before = self.watermark;
        // At most a queue's worth per pass, so a fast feed cannot keep us here.
        for _ in 0..=self.outbox.capacity() {
            let Some(tick) = self.outbox.pop_tick() else {
                break;
            };
            if !dropped {
                // Updates arrive in gseq order: all before this one are here.
                self.watermark = self.watermark.max(tick.state.gseq);
            }
            let Some(sub) = self.subs.get_mut(&tick.id) else {
                continue;
            };
            if sub.history.is_some() {
                // Its history, when it goes, holds this.
                continue;
            }
            if tick.seq() > sub.last_seq {
                if sub.slot.series.is_some() && tick.seq() > sub.last_seq + 1 {
                    // A candle missed (dropped): every bar changed since.
                    fill_gap(sub, &mut self.histories);
                    continue;
                }
                sub.last_seq = tick.seq();
                if let Some(tick) = offer(sub, tick, instant, &mut self.paced_waiting) {
                    latency.observe_us(now.saturating_sub(tick.state.pub_us));
                    let frame = self.framing.tick(&sub.slot.name, &tick, false);
                    self.pending.push(frame);
                    sent += 1;
                }
            }
        }
        if !dropped && self.outbox.resync_pending() {
            // Something was dropped while this pass took the queue: what was
            // taken may have overtaken it. The re-send will move the mark.
            self.watermark = watermark_before;
        }
        if dropped {
            let seen = published();
            for sub in self.subs.values_mut() {
                let Some(current) = sub.slot.latest.load_full() else {
                    continue;
                };
                if current.seq() > sub.last_seq && sub.history.is_none() {
                    if sub.slot.series.is_some() {
                        fill_gap(sub, &mut self.histories);
                        continue;
                    }
                    sub.last_seq = current.seq();
                    if let Some(current) = offer(sub, current, instant, &mut self.paced_waiting) {
                        latency.observe_us(now.saturating_sub(current.state.pub_us));
                        let frame = self.framing.tick(&sub.slot.name, &current, false);
                        self.pending.push(frame);
                        sent += 1;
                    }
                }
            }
            self.watermark = self.watermark.max(seen);
        }
        sent += self.release_paced(instant, now, &mut latency);
        if sent > 0 {
            METRICS.messages_sent.add(sent);
            METRICS.fanout_latency.merge(&latency);
        }
    }

    /// Sends the paced updates whose turn has come, and notes the next turn.
    fn release_paced(&mut self, instant: Instant, now: u64, latency: &mut LocalHistogram) -> u64 {
        self.next_turn = None;
        if self.paced_waiting == 0 {
            return 0;
        }
        let mut sent = 0;
        for sub in self.subs.values_mut() {
            let Some(pace) = sub.pace.as_mut() else {
                continue;
            };
            if pace.waiting.is_none() {
                continue;
            }
            if pace.next <= instant {
                let tick = pace.waiting.take().expect("checked above");
                pace.next = instant + pace.every;
                self.paced_waiting -= 1;
                latency.observe_us(now.saturating_sub(tick.state.pub_us));
                let frame = self.framing.tick(&sub.slot.name, &tick, false);
                self.pending.push(frame);
                sent += 1;
            } else {
                self.next_turn = Some(self.next_turn.map_or(pace.next, |t| t.min(pace.next)));
            }
        }
        sent
    }

    /// Lets the transport note the watermark after this batch: never past
    /// an update still waiting for its turn (the client does not have it).
    fn mark(&mut self) {
        if !self.histories.is_empty() {
            // A history still to send: the client does not hold it yet.
            return;
        }
        let mut watermark = self.watermark;
        if self.paced_waiting > 0 {
            for sub in self.subs.values() {
                if let Some(w) = sub.pace.as_ref().and_then(|p| p.waiting.as_ref()) {
                    watermark = watermark.min(w.state.gseq.saturating_sub(1));
                }
            }
        }
        if let Some(frame) = self.framing.mark(watermark) {
            self.pending.push(frame);
        }
    }

    /// Sends the close after what was already pending (replies queued
    /// before the close, e.g. the errors that led to it; queued ticks are not
    /// taken any more), waits for the driver to see the client's answer (or
    /// the grace to pass), and closes.
    async fn close(
        mut self,
        link: &mut dyn Link,
        code: u16,
        reason: &'static str,
        grace: Duration,
    ) {
        let frame = self.framing.close(code, reason);
        self.pending.push(frame);
        let flushed = tokio::time::timeout(grace, self.pending.flush(link)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            // The peer did not take the close in time (or is gone).
            return end(link, &self.pending).await;
        }
        let outbox = self.outbox.clone();
        let _ = tokio::time::timeout(grace, async move {
            while !outbox.is_reader_done() {
                outbox.signal.wait().await;
            }
        })
        .await;
        link.close().await;
    }
}

/// A candle series that missed some of its messages gets every bar changed
/// after the last `seq` sent, as a history (`candles`): queued like one, so
/// a client that fell far behind on many series costs the budget, not a
/// burst of all of them at once.
fn fill_gap(sub: &mut Sub, histories: &mut VecDeque<u32>) {
    let ask = HistoryAsk {
        since: Some(sub.last_seq),
        after: None,
        limit: usize::MAX,
    };
    ask_history(sub, ask, histories);
}

/// Queues a history for `sub` (the newest ask replaces one that waits; a
/// series is in the queue once).
fn ask_history(sub: &mut Sub, ask: HistoryAsk, histories: &mut VecDeque<u32>) {
    if sub.history.replace(ask).is_none() {
        histories.push_back(sub.slot.id);
    }
}

/// A newer update of `sub`: back to go out now, or (paced) kept to wait for
/// its turn — in place of any update that waited before it.
fn offer(
    sub: &mut Sub,
    tick: Arc<Latest>,
    now: Instant,
    waiting: &mut usize,
) -> Option<Arc<Latest>> {
    let Some(pace) = sub.pace.as_mut() else {
        return Some(tick);
    };
    if now >= pace.next && pace.waiting.is_none() {
        pace.next = now + pace.every;
        return Some(tick);
    }
    if pace.waiting.replace(tick).is_none() {
        *waiting += 1;
    }
    None
}

/// Ends the connection without a close: a clean end after whole frames, a
/// reset when a frame is half written (a peer must never read a stream cut
/// in the middle of a frame as if it had ended).
async fn end(link: &mut dyn Link, pending: &Pending) {
    if pending.mid_frame {
        link.reset()
    } else {
        link.close().await
    }
}
