//! One WebSocket client: a reader task and a writer task sharing an [`outbox::Outbox`].
//!
//! The reader owns the read half of the socket (protocol in, limits,
//! heartbeats, auth); the writer owns the write half (queue out, one
//! vectored write per batch). They never wait on each other: the reader
//! and the hub hand the writer work through the outbox, and each side ends
//! the other by closing the outbox or shutting the socket down.

pub mod frame;
pub mod outbox;
pub mod rate;
pub mod reader;
pub mod writer;

use crate::auth::{Authenticator, Claims};
use crate::hub::HubHandle;
use crate::metrics::METRICS;
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
) {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let outbox = Arc::new(Outbox::new(
        id,
        ctx.limits.queue,
        ctx.limits.close_on_overflow,
    ));
    let (read, write) = stream.into_split();
    METRICS.connections.add(1);
    tokio::spawn(writer::run(outbox.clone(), write, ctx.limits.close_grace));
    reader::run(ctx, outbox, read, already_read, identity).await;
    METRICS.connections.add(-1);
}
