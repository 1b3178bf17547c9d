//! One client, whatever its transport: the session core.
//!
//! A session is a writer task and a driver sharing an [`outbox::Outbox`].
//! The writer ([`writer`]) owns the connection's write side: it drains the
//! outbox, keeps each symbol's `seq` going forward, re-sends what a full
//! queue dropped, and hands batches to the transport's framing and link.
//! The driver is the transport's: the WebSocket reader feeds the client's
//! frames to the session's [`conn::Conn`] (requests, limits, heartbeats,
//! auth) and runs its timer; an SSE stream only runs the timer. They never
//! wait on each other: the driver and the hub hand the writer work through
//! the outbox, and each side ends the other by closing the outbox or the
//! connection.
//!
//! However a session ends — the client leaves, a limit closes it, a task
//! panics — [`SessionGuard`] unregisters it from the hub, counts the
//! disconnect and gives back its connection permit: a session is never
//! left half alive, holding its socket and still receiving ticks.

pub mod conn;
pub mod outbox;
pub mod rate;
pub mod writer;

use crate::admission::ConnectionPermit;
use crate::auth::{Authenticator, Claims};
use crate::hub::{Command, HubHandle};
use crate::metrics::{DisconnectReason, METRICS};
use crate::transport::link::Link;
use crate::transport::Framing;
use conn::Conn;
use outbox::Outbox;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Per-connection limits and timings (protocol §6), from the command line.
#[derive(Clone, Debug)]
pub struct Limits {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub max_message: usize,
    pub client_rate: f64,
    pub client_burst: u32,
    pub max_symbols: u32,
    pub queue: u32,
    pub close_on_overflow: bool,
    pub auth_timeout: Duration,
    /// The coalescing window: the shortest `interval_ms` a subscription may ask for.
    pub window: Duration,
    /// How long a closing connection waits for its close frame to leave and
    /// for the client's answer.
    pub close_grace: Duration,
    /// `--max-connection-age` (zero: none).
    pub max_connection_age: Duration,
}

/// What every session shares.
pub struct SessionContext {
    pub limits: Limits,
    pub hub: HubHandle,
    pub auth: Arc<Authenticator>,
    /// The `seq` lineage announced in `welcome`: this process's start time
    /// (µs), or the cluster's, once read from the bus.
    epoch: AtomicU64,
    /// This node's name (`--node`), in `welcome` and the metrics.
    pub node: String,
    next_id: AtomicU64,
    /// Candles served (`None`: off).
    pub candles: Option<Arc<crate::candle::CandleConfig>>,
}

impl SessionContext {
    pub fn new(
        limits: Limits,
        hub: HubHandle,
        auth: Arc<Authenticator>,
        node: String,
    ) -> SessionContext {
        SessionContext {
            limits,
            hub,
            auth,
            epoch: AtomicU64::new(crate::clock::now_us()),
            node,
            next_id: AtomicU64::new(1),
            candles: None,
        }
    }

    /// The closed bars a series' history holds: `limit` (default 300, at
    /// most `--candle-keep`).
    pub fn candle_limit(
        &self,
        id: Option<i64>,
        limit: Option<u64>,
    ) -> Result<usize, crate::protocol::RequestError> {
        let keep = self.candles.as_ref().map_or(1, |c| c.keep) as u64;
        match limit {
            None => Ok(DEFAULT_CANDLE_LIMIT.min(keep) as usize),
            Some(n) if (1..=keep).contains(&n) => Ok(n as usize),
            Some(n) => Err(crate::protocol::RequestError::new(
                id,
                crate::protocol::ErrorCode::BadRequest,
                format!("limit {n} is not from 1 to {keep} (--candle-keep)"),
            )),
        }
    }
}

/// Closed bars in a history when the client names no `limit`.
pub const DEFAULT_CANDLE_LIMIT: u64 = 300;

impl SessionContext {
    /// The lineage of `seq` numbers (see [`crate::protocol::message::Welcome`]).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Takes the cluster's lineage instead of this process's.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Release);
    }
}

/// Who is on the other end, as far as the upgrade request told.
pub enum Identity {
    /// Authentication is off.
    Anonymous,
    /// A valid token came with the upgrade.
    User(Claims),
    /// First-message auth: the first message must be `auth`.
    AwaitingAuth,
}

/// A session under way: its transport drives `conn`, and dropping `guard`
/// (however the transport's task ends) ends the session.
pub struct Started {
    pub conn: Conn,
    pub outbox: Arc<Outbox>,
    _guard: SessionGuard,
}

/// Starts a session: registers it with the hub, spawns its writer on
/// `link` with `framing`, and sends `welcome` (unless `identity` still has to
/// authenticate), keeping it alive with `heartbeat`.
pub fn start(
    ctx: Arc<SessionContext>,
    identity: Identity,
    permit: ConnectionPermit,
    framing: Box<dyn Framing>,
    link: Box<dyn Link>,
    heartbeat: conn::Heartbeat,
) -> Started {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let outbox = Arc::new(Outbox::new(
        id,
        ctx.limits.queue,
        ctx.limits.close_on_overflow,
    ));
    let guard = SessionGuard::new(ctx.hub.clone(), outbox.clone(), permit);
    tokio::spawn(writer::run(
        outbox.clone(),
        link,
        framing,
        ctx.limits.close_grace,
    ));
    let conn = Conn::new(ctx, outbox.clone(), identity, heartbeat);
    Started {
        conn,
        outbox,
        _guard: guard,
    }
}

/// Registers a session with the hub and the metrics, and undoes both when
/// dropped — on a normal end and while unwinding from a panic alike.
pub struct SessionGuard {
    hub: HubHandle,
    outbox: Arc<Outbox>,
    _permit: Option<ConnectionPermit>,
}

impl SessionGuard {
    pub fn new(hub: HubHandle, outbox: Arc<Outbox>, permit: ConnectionPermit) -> SessionGuard {
        Self::register(hub, outbox, Some(permit))
    }

    fn register(
        hub: HubHandle,
        outbox: Arc<Outbox>,
        permit: Option<ConnectionPermit>,
    ) -> SessionGuard {
        METRICS.connections.add(1);
        hub.send(Command::Register(outbox.clone()));
        SessionGuard {
            hub,
            outbox,
            _permit: permit,
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let reason = self.outbox.reason().unwrap_or(DisconnectReason::Client);
        self.outbox.set_reason(reason);
        // Stops the writer (it closes the socket once its close frame is out).
        self.outbox.reader_finished();
        self.hub.send(Command::Unregister(self.outbox.id));
        METRICS.disconnect(reason);
        METRICS.connections.add(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_session_is_unregistered_all_the_same() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let hub = HubHandle::from_sender(tx);
        let outbox = Arc::new(Outbox::new(42, 4, false));
        let task = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                let _guard = SessionGuard::register(hub, outbox, None);
                panic!("a bug in the reader");
            }
        });
        assert!(task.await.unwrap_err().is_panic());
        assert!(matches!(rx.try_recv(), Ok(Command::Register(_))));
        assert!(matches!(rx.try_recv(), Ok(Command::Unregister(42))));
        assert!(outbox.is_closing(), "the writer is told to stop");
        assert!(outbox.is_reader_done());
    }
}
