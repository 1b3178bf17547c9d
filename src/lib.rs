//! tickcast: a real-time market-data ticker broadcaster: WebSocket (JSON or
//! MessagePack) and Server-Sent Events, over plain TCP or TLS.
//!
//! The data path, left to right (each stage is a module):
//!
//! ```text
//!  feed/ (own threads)     hub (one thread)              session/ (per client)          transport/
//!  synthetic|tcp|file ──▶  coalesce ─▶ fan-out ─▶ outbox ─▶ writer ──▶ Framing ──▶ Link ─▶ socket
//!    crossbeam channel     registry    Arc<Latest>   ▲      seq filter,  ws | sse    tcp | tls | http body
//!                          (values,                  │      resync       (bytes made once per update
//!                           no bytes)                │                    and form, shared)
//!                                           conn ◀───┴── ws reader ◀── socket (requests, frames, limits)
//! ```
//!
//! * [`tick`]: what a tick is — fields, merge, a feed tick, a released update
//!   — with no bytes in sight; shared by every stage.
//! * [`feed`] parses NDJSON ticks (or makes them up) on its own threads and
//!   hands them to the hub over a bounded crossbeam channel; a full channel
//!   stalls the publisher's socket instead of dropping ticks.
//! * [`coalesce`] is the per-symbol leading-edge window that merges fields and
//!   assigns `seq`.
//! * [`candle`] makes OHLCV bars from every tick before that window (the
//!   hub runs its builder), keeps each series' bounded history, and hands
//!   bar changes to the hub as values of a channel named `SYMBOL@INTERVAL`,
//!   delivered like ticks (histories by the writer, `/candles` over HTTP).
//! * [`hub`] is the single thread that owns the coalescer and the subscriber
//!   registry. Each update becomes a [`latest::Latest`] (a value) pushed, as a
//!   shared `Arc`, into the lock-free queue of every subscriber of that symbol
//!   — and only those. Replies (`subscribed`, errors) are values too.
//! * [`session`] is one client, whatever its transport: its
//!   [`session::outbox`] (bounded, drop-oldest queue), its
//!   [`session::writer`] (the `seq` filter, the re-send of dropped symbols,
//!   batches to the link) and its [`session::conn`] (requests, limits,
//!   heartbeats, auth and its expiry).
//! * [`encoding`] turns values into bytes (JSON, MessagePack); [`transport`]
//!   frames and sends them: WebSocket ([`transport::ws`]: upgrade, frames,
//!   close codes, reader) or Server-Sent Events ([`transport::sse`]). A
//!   tick's bytes are made once per update for each (transport, encoding)
//!   that some client uses, and shared by all of them.
//! * [`listener`] accepts, [`tls`] encrypts, [`admission`] caps; [`http`]
//!   routes the endpoints; [`auth`] checks tokens; [`bus`] joins a cluster
//!   over NATS, and an edge's [`pacer`] holds what comes from it to the
//!   coalescing window again; [`metrics`] defines every metric once.
//!
//! To add an encoding: a file in `encoding/` and a line in
//! [`encoding::ENCODINGS`]. To add a transport: a file in `transport/` with
//! a [`transport::Framing`], a route in [`http`], and one more in
//! [`transport::TRANSPORTS`].
//!
//! Binaries: `tickcast` (this crate's `main.rs`) and `loadgen/` (its own crate).

pub mod admission;
pub mod auth;
pub mod bus;
pub mod candle;
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
pub mod pacer;
pub mod protocol;
pub mod server;
pub mod session;
pub mod symbol;
pub mod tick;
pub mod tls;
pub mod transport;
