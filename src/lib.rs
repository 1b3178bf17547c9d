//! tickcast: a real-time market-data ticker broadcaster over WebSocket.
//!
//! The data path, top to bottom (each stage is a module):
//!
//! ```text
//!  feed/ (own OS threads)      hub (one OS thread)                 session/ (tokio tasks, one pair per client)
//!  synthetic | tcp | file ──▶  coalesce ─▶ fan-out ─▶ Outbox queues ─▶ writer ─▶ socket (one writev per batch)
//!        crossbeam channel      (owns the subscriber registry)    ▲
//!                                                                 reader ◀─ socket (protocol in, limits, auth)
//! ```
//!
//! * [`feed`] parses NDJSON ticks (or makes them up) on its own threads and hands
//!   them to the hub over a bounded crossbeam channel; a full channel stalls the
//!   publisher's socket instead of dropping ticks.
//! * [`coalesce`] is the per-symbol leading-edge window that merges fields and
//!   assigns `seq`.
//! * [`hub`] is the single thread that owns the coalescer and the subscriber
//!   registry. Each update is encoded once ([`encode`]) into the bytes of a
//!   complete WebSocket frame and pushed, as a shared `Arc`, into the lock-free
//!   queue of every subscriber of that symbol — and only those.
//! * [`session`] holds one client: its [`session::outbox`] (bounded, drop-oldest
//!   queue), its writer (drains the queue into one vectored write) and its reader
//!   (frames in, protocol messages, limits, heartbeats, auth).
//! * [`http`] routes the HTTP endpoints; [`metrics`] defines every metric once.
//!
//! Binaries: `tickcast` (this crate's `main.rs`) and `loadgen/` (its own crate).

pub mod admission;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod encoding;
pub mod feed;
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod latest;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod session;
pub mod symbol;
pub mod tick;
pub mod tls;
pub mod transport;
