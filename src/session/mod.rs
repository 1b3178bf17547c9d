//! One WebSocket client: a reader task and a writer task sharing an [`outbox::Outbox`].
//!
//! The reader owns the read half of the socket (protocol in, limits,
//! heartbeats, auth); the writer owns the write half (queue out, one
//! vectored write per batch). They never wait on each other: the reader
//! and the hub hand the writer work through the outbox, and each side ends
//! the other by closing the outbox or shutting the socket down.
//!
//! However a session ends — the client leaves, a limit closes it, a task
//! panics — [`SessionGuard`] unregisters it from the hub, counts the
//! disconnect and gives back its connection permit: a session is never
//! left half alive, holding its socket and still receiving ticks.

pub mod frame;
pub mod outbox;
pub mod rate;
pub mod reader;
pub mod writer;

use crate::admission::ConnectionPermit;
use crate::auth::{Authenticator, Claims};
use crate::hub::{Command, HubHandle};
use crate::metrics::{DisconnectReason, METRICS};
use bytes::Bytes;
use outbox::Outbox;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

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
    /// How long a closing connection waits for its close frame to leave and
    /// for the client's answer.
    pub close_grace: Duration,
}

/// What every session shares.
pub struct SessionContext {
    pub limits: Limits,
    pub hub: HubHandle,
    pub auth: Arc<Authenticator>,
    /// The `seq` lineage announced in `welcome` (this process's start time, µs).
    pub epoch: u64,
    /// This node's name (`--node`), in `welcome` and the metrics.
    pub node: String,
    next_id: AtomicU64,
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
            epoch: crate::clock::now_us(),
            node,
            next_id: AtomicU64::new(1),
        }
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

/// Serves one upgraded connection until it ends. `already_read` holds bytes
/// the HTTP layer read past the upgrade request.
pub async fn run(
    ctx: Arc<SessionContext>,
    stream: TcpStream,
    already_read: Bytes,
    identity: Identity,
    permit: ConnectionPermit,
) {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let outbox = Arc::new(Outbox::new(
        id,
        ctx.limits.queue,
        ctx.limits.close_on_overflow,
    ));
    let (read, write) = stream.into_split();
    let _guard = SessionGuard::new(ctx.hub.clone(), outbox.clone(), permit);
    tokio::spawn(writer::run(outbox.clone(), write, ctx.limits.close_grace));
    reader::run(ctx, outbox, read, already_read, identity).await;
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
