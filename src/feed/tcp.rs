//! `--feed tcp://HOST:PORT`: tickcast listens; publishers write NDJSON.
//!
//! One thread accepts, one thread per publisher reads. A publisher's thread
//! blocks on the hub channel when it is full, so its socket is not read and
//! TCP slows the publisher down. A bad line is counted and skipped; the lines
//! around it are processed and the publisher stays connected.
//!
//! Publishers are untrusted: their number is capped (`--feed-max-publishers`;
//! each thread has a small stack and a small read buffer), a silent one is
//! disconnected (`--feed-idle-timeout`; any byte, a blank line too, counts
//! as a sign of life), and with a feed secret the first line must be `auth`.
//! Refusals are one JSON line to the publisher, then close.

use super::accept::{accept_line, TsBounds};
use super::auth::{FeedSecret, AUTH_TIMEOUT};
use super::lines::LineSplitter;
use super::{spawn, Batch, StartFailure, Tick, MAX_BATCH, PUBLISHER_STACK};
use crate::clock::now_us;
use crate::metrics::{PublisherResult, RejectReason, METRICS};
use crossbeam_channel::Sender;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes read from a publisher at once. Many ticks per read, yet small
/// enough that `--feed-max-publishers` of them cost little.
const READ_CHUNK: usize = 16 * 1024;

/// Most bytes read from a refused publisher before closing (see [`refuse`]).
const REFUSE_DRAIN: usize = 64 * 1024;

/// What limits and checks TCP publishers.
#[derive(Debug)]
pub struct Options {
    pub max_publishers: usize,
    pub idle_timeout: Duration,
    pub secret: Option<FeedSecret>,
    pub ts: TsBounds,
}

/// Binds the listener now (so a taken port fails at start) and accepts in a thread.
pub fn listen(
    addr: SocketAddr,
    options: Options,
    tx: Sender<Batch>,
) -> Result<SocketAddr, StartFailure> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| StartFailure::Listen(format!("--feed tcp://{addr}: cannot listen: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartFailure::Listen(format!("--feed tcp://{addr}: {e}")))?;
    let options = Arc::new(options);
    let connected = Arc::new(AtomicUsize::new(0));
    spawn("feed-accept", None, move || {
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => admit(stream, &connected, &options, &tx),
                Err(e) => {
                    crate::warn!("feed accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    })
    .map_err(StartFailure::Thread)?;
    Ok(bound)
}

/// Gives a new publisher its own thread, or refuses it when all slots are taken.
fn admit(
    stream: TcpStream,
    connected: &Arc<AtomicUsize>,
    options: &Arc<Options>,
    tx: &Sender<Batch>,
) {
    // Only this thread takes slots, so the check and the take cannot race.
    if connected.load(Ordering::Acquire) >= options.max_publishers {
        METRICS.publisher(PublisherResult::OverCapacity);
        refuse(&stream, br#"{"error":"too many publishers"}"#);
        return;
    }
    let slot = Slot::take(connected.clone());
    let (options, tx) = (options.clone(), tx.clone());
    let started = spawn("feed-publisher", Some(PUBLISHER_STACK), move || {
        let _slot = slot;
        serve(stream, &options, &tx);
    });
    // A thread that could not start dropped its closure, and the slot with it.
    if let Err(e) = started {
        crate::warn!("feed publisher refused: {e}");
    }
}

/// One publisher's place under `--feed-max-publishers`, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(connected: Arc<AtomicUsize>) -> Slot {
        connected.fetch_add(1, Ordering::AcqRel);
        METRICS.feed_publishers.add(1);
        Slot(connected)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        METRICS.feed_publishers.add(-1);
    }
}

/// Tells a publisher why it is being disconnected, in one line, and closes
/// without ever blocking. What it already sent is read first (bounded):
/// closing a socket with unread data resets the connection, and a reset can
/// make the peer lose our line before reading it.
fn refuse(mut stream: &TcpStream, line: &[u8]) {
    let _ = stream.set_nonblocking(true);
    // A few bytes into a send buffer we have never used: they fit.
    let _ = stream.write_all(line);
    let _ = stream.write_all(b"\n");
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < REFUSE_DRAIN {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => drained = drained.saturating_add(n),
            _ => break,
        }
    }
}

/// How a publisher's connection ended.
#[derive(Debug, PartialEq)]
enum End {
    /// It closed, or the hub has stopped.
    Closed,
    /// No valid `auth` line first, within [`AUTH_TIMEOUT`].
    Unauthorized,
    /// Silent for `--feed-idle-timeout`.
    Idle,
    /// A read failed (reset).
    Failed,
}

fn serve(mut stream: TcpStream, options: &Options, tx: &Sender<Batch>) {
    let mut splitter = LineSplitter::default();
    let end = read_publisher(&mut stream, &mut splitter, options, tx);
    // Counted before the publisher is told, so that what it hears is already in /metrics.
    if matches!(end, End::Idle | End::Failed) && splitter.has_partial_line() {
        METRICS.rejected(RejectReason::Truncated);
    }
    match end {
        End::Closed => {}
        End::Unauthorized => {
            METRICS.publisher(PublisherResult::Unauthorized);
            refuse(&stream, br#"{"error":"unauthorized"}"#);
        }
        End::Idle => {
            METRICS.publisher(PublisherResult::IdleTimeout);
            refuse(&stream, br#"{"error":"idle timeout"}"#);
        }
        End::Failed => {}
    }
}

fn read_publisher(
    stream: &mut TcpStream,
    splitter: &mut LineSplitter,
    options: &Options,
    tx: &Sender<Batch>,
) -> End {
    let auth_deadline = Instant::now() + AUTH_TIMEOUT;
    let mut authenticated = options.secret.is_none();
    if authenticated {
        METRICS.publisher(PublisherResult::Accepted);
    }
    // Zero would mean "no timeout"; the flag's parser refuses zero anyway.
    let idle = options.idle_timeout.max(Duration::from_millis(1));
    if stream.set_read_timeout(Some(idle)).is_err() {
        return End::Failed;
    }
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        if !authenticated {
            let left = auth_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stream.set_read_timeout(Some(left.min(idle))).is_err() {
                return End::Unauthorized;
            }
        }
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            // A signal (e.g. SIGTERM) interrupts reads that have a timeout.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return if authenticated {
                    End::Idle
                } else {
                    End::Unauthorized
                };
            }
            Err(_) => return End::Failed,
        };
        // One clock read per read, not per line.
        let (range, arrival) = (options.ts.at(now_us()), Instant::now());
        let mut batch = Vec::with_capacity(64);
        let mut data = &chunk[..n];
        // At EOF (n == 0) what is left is the last line, which needs no newline.
        while let Some(line) = splitter.next_line(&mut data, n == 0) {
            if !authenticated {
                match (line, &options.secret) {
                    (Ok(l), _) if l.iter().all(|b| b.is_ascii_whitespace()) => continue,
                    (Ok(l), Some(secret)) if secret.accepts_line(l) => {
                        authenticated = true;
                        METRICS.publisher(PublisherResult::Accepted);
                        if stream.set_read_timeout(Some(idle)).is_err() {
                            return End::Failed;
                        }
                        continue;
                    }
                    _ => return End::Unauthorized,
                }
            }
            match line.and_then(|l| accept_line(l, &range)) {
                Ok(Some(t)) => batch.push(Tick {
                    symbol: t.symbol,
                    fields: t.fields,
                    ts: t.ts,
                    arrival,
                }),
                Ok(None) => {}
                Err(reason) => METRICS.rejected(reason),
            }
        }
        if !send(tx, batch) {
            return End::Closed;
        }
        if n == 0 {
            return if authenticated {
                End::Closed
            } else {
                End::Unauthorized
            };
        }
    }
}

/// Hands ticks to the hub in batches of at most [`MAX_BATCH`]; false once the hub is gone.
fn send(tx: &Sender<Batch>, batch: Batch) -> bool {
    if batch.is_empty() {
        return true;
    }
    if batch.len() <= MAX_BATCH {
        return tx.send(batch).is_ok();
    }
    batch
        .chunks(MAX_BATCH)
        .all(|part| tx.send(part.to_vec()).is_ok())
}
