//! loadgen: holds many WebSocket connections to tickcast and measures latency honestly.
//!
//! The binary is both the coordinator (what the operator runs) and its
//! workers (the same binary started with a hidden `--worker-spec`).
//!
//! * [`cli`] flags; [`plan`] splits connections over workers and source addresses;
//! * [`worker`] holds connections ([`conn`]) on one thread and reports [`stats`];
//! * [`coordinator`] runs the phases, drives the [`feed`], merges and prints the [`report`];
//! * [`wire`] is the client side of the WebSocket wire; [`live`] serves `/metrics`.

mod cli;
mod conn;
mod coordinator;
mod feed;
mod live;
mod plan;
mod report;
mod stats;
mod token;
mod universe;
mod wire;
mod worker;

use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Realtime microseconds, the clock of tickcast's `ts` and `pub`.
pub use tickcast::clock::now_us;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    if let Some(spec) = &args.worker_spec {
        match serde_json::from_str(spec) {
            Ok(spec) => worker::run(spec),
            Err(e) => {
                eprintln!("loadgen: bad --worker-spec: {e}");
                return ExitCode::from(2);
            }
        }
    }
    coordinator::run(args)
}
