//! One simulated client: connect from its source address, upgrade, subscribe,
//! measure every tick, answer pings, and reconnect with backoff when dropped.
//!
//! Reconnects use exponential backoff with full jitter (a random delay up to
//! 1 s, 2 s, 4 s … capped at 60 s; back to 1 s after a successful connect) and
//! resubscribe with `since`, so the server sends only what changed. A server
//! that refuses with `Retry-After` (503, 429) is waited for that long, with
//! the backoff on top; one that says `reconnect` before closing is waited
//! for the `after_ms` it gives, instead of the backoff. A connection that
//! never gets through is retried twice (refusals with `Retry-After` aside,
//! up to [`MAX_REFUSALS`]), then counted as failed with its reason.

use crate::stats::Stats;
use crate::wire;
use crate::worker::Shared;
use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Attempts before a connection that never got through counts as failed.
const FIRST_ATTEMPTS: u32 = 3;
/// Refusals with `Retry-After` in a row before a connection gives up.
const MAX_REFUSALS: u32 = 100;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// How a session ended.
enum End {
    /// It was up and then closed, with this close code (1006: no close frame).
    Closed(u16),
    /// It never got up, for this reason.
    Failed(String),
    /// The server refused it for now (503 or 429) and said when to come back.
    Refused(String, Duration),
}

/// One connection's symbols and the last `seq` it holds of each.
struct Book {
    symbols: Vec<usize>,
    last_seq: Vec<u64>,
    /// The `after_ms` of a `reconnect` message on the current connection.
    reconnect_after: Option<Duration>,
    /// The `epoch` of the last `welcome`: `seq`s compare only within one.
    epoch: Option<u64>,
    /// When a connection that was up ended, until a tick arrives on a later one.
    lost_at: Option<Instant>,
    /// When the connection after such a loss was welcomed.
    resumed_at: Option<Instant>,
}

pub async fn run(shared: Rc<Shared>, n: u64) {
    let spec = &shared.spec;
    let mut rng = fastrand::Rng::with_seed(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
    let symbols = crate::universe::pick(&shared.cdf, spec.symbols_per_conn as usize, &mut rng);
    {
        let mut stats = shared.stats.borrow_mut();
        for &i in &symbols {
            *stats
                .counters
                .subscribers
                .entry(spec.universe[i].clone())
                .or_default() += 1;
        }
    }
    let mut book = Book {
        last_seq: vec![0; symbols.len()],
        symbols,
        reconnect_after: None,
        epoch: None,
        lost_at: None,
        resumed_at: None,
    };
    let url = &spec.urls[n as usize % spec.urls.len()];
    let source = spec.sources[(n as usize / spec.urls.len()) % spec.sources.len()];
    let mut backoff_step = 0u32;
    let mut failures = 0u32;
    let mut refusals = 0u32;
    let mut ever_up = false;
    loop {
        let (end, was_up) = session(
            &shared,
            &url.authority(),
            &url.path,
            source,
            &mut book,
            ever_up,
            n,
        )
        .await;
        if was_up && book.lost_at.is_none() {
            book.lost_at = Some(Instant::now());
        }
        let mut wait_first = Duration::ZERO;
        if let End::Refused(reason, retry_after) = &end {
            refusals += 1;
            shared.stats.borrow_mut().counters.refused += 1;
            if refusals >= MAX_REFUSALS || !spec.reconnect {
                let mut stats = shared.stats.borrow_mut();
                stats.counters.failed += 1;
                *stats.counters.failures.entry(reason.clone()).or_default() += 1;
                drop(stats);
                crate::worker::note_settled(&shared);
                return;
            }
            wait_first = *retry_after;
        } else {
            refusals = 0;
        }
        if let Some(after) = book.reconnect_after.take() {
            // The server said when: no backoff on top.
            shared.stats.borrow_mut().counters.reconnect_messages += 1;
            if let End::Closed(code) = end {
                *shared
                    .stats
                    .borrow_mut()
                    .counters
                    .closes
                    .entry(code.to_string())
                    .or_default() += 1;
            }
            if !spec.reconnect {
                return;
            }
            ever_up = true;
            backoff_step = 0;
            tokio::time::sleep(after).await;
            continue;
        }
        match end {
            End::Closed(code) => {
                *shared
                    .stats
                    .borrow_mut()
                    .counters
                    .closes
                    .entry(code.to_string())
                    .or_default() += 1;
            }
            End::Failed(reason) if !ever_up && !was_up => {
                failures += 1;
                if failures >= FIRST_ATTEMPTS || !spec.reconnect {
                    let mut stats = shared.stats.borrow_mut();
                    stats.counters.failed += 1;
                    *stats.counters.failures.entry(reason).or_default() += 1;
                    drop(stats);
                    crate::worker::note_settled(&shared);
                    return;
                }
            }
            End::Failed(_) | End::Refused(..) => {}
        }
        if was_up {
            ever_up = true;
            backoff_step = 0;
        }
        if !spec.reconnect {
            return;
        }
        let cap = MAX_BACKOFF.min(Duration::from_secs(1 << backoff_step.min(6)));
        backoff_step += 1;
        tokio::time::sleep(wait_first + cap.mul_f64(rng.f64())).await;
    }
}

/// Connects and serves one session. Returns how it ended and whether it got
/// as far as `welcome`. A session established after an earlier one was up
/// counts as a reconnect.
async fn session(
    shared: &Shared,
    authority: &str,
    path: &str,
    source: Ipv4Addr,
    book: &mut Book,
    reconnecting: bool,
    n: u64,
) -> (End, bool) {
    let started = Instant::now();
    let stream = match connect(authority, source).await {
        Ok(s) => s,
        Err(reason) => return (End::Failed(reason), false),
    };
    let token = shared.minter.as_ref().map(|m| (m.mint(n), m.in_query()));
    let token = token.as_ref().map(|(t, q)| (t.as_str(), *q));
    let (mut stream, leftover) = match upgrade(stream, authority, path, token).await {
        Ok(v) => v,
        Err(end) => return (end, false),
    };
    {
        let mut stats = shared.stats.borrow_mut();
        let _ = stats.handshake.record(started.elapsed().as_micros() as u64);
        stats.counters.established += 1;
        if reconnecting {
            stats.counters.reconnects += 1;
        }
    }
    crate::worker::note_settled(shared);
    let mut welcomed = false;
    let end = serve(shared, &mut stream, leftover, book, &mut welcomed).await;
    shared.stats.borrow_mut().counters.established -= 1;
    (end, welcomed)
}

async fn connect(authority: &str, source: Ipv4Addr) -> Result<TcpStream, String> {
    let addr = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{authority} has no IPv4 address"))?;
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    bind_address_no_port(&socket);
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr)).await {
        Err(_) => Err("connect timed out".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err("connection refused".into())
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            Err(format!("no free port on {source}"))
        }
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            enable_rx_timestamps(&s);
            Ok(s)
        }
    }
}

/// Lets the kernel pick the source port at connect time, unique per
/// (source, destination) pair, rather than at bind time from one pool per
/// source address.
fn bind_address_no_port(socket: &TcpSocket) {
    set_flag(
        socket.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
    );
}

/// Turns on an integer socket option.
fn set_flag(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a c_int option value.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Sends the upgrade (with `token`: its text, and whether it goes in the
/// query) and reads the answer; returns bytes read past it.
async fn upgrade(
    mut stream: TcpStream,
    authority: &str,
    path: &str,
    token: Option<(&str, bool)>,
) -> Result<(TcpStream, Vec<u8>), End> {
    use tokio::io::AsyncReadExt;
    let failed = |s: String| End::Failed(s);
    let (target, headers) = crate::token::place(path, token);
    stream
        .write_all(&wire::upgrade_request(authority, &target, &headers))
        .await
        .map_err(|e| failed(format!("upgrade: {e}")))?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Err(failed("upgrade timed out".into())),
            Ok(Err(e)) => return Err(failed(format!("upgrade: {e}"))),
            Ok(Ok(0)) => return Err(failed("closed during upgrade".into())),
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(&chunk[..n]);
        if head.len() > 16 * 1024 {
            return Err(failed("upgrade answer too long".into()));
        }
    };
    let head_text = String::from_utf8_lossy(&head[..end]);
    let status = head_text.split(' ').nth(1).unwrap_or("?").to_string();
    if status != "101" {
        let reason = format!("HTTP {status}");
        return Err(match (status.as_str(), wire::retry_after(&head_text)) {
            ("503" | "429", Some(after)) => End::Refused(reason, after),
            _ => failed(reason),
        });
    }
    Ok((stream, head[end..].to_vec()))
}

/// Reads frames until the connection ends.
async fn serve(
    shared: &Shared,
    stream: &mut TcpStream,
    mut partial: Vec<u8>,
    book: &mut Book,
    welcomed: &mut bool,
) -> End {
    let mut out: Vec<u8> = Vec::new();
    let mut ended = None;
    // When the bytes in `partial` arrived (the latest read that added to them).
    let mut partial_arrival = crate::now_us();
    loop {
        if !partial.is_empty() && ended.is_none() {
            let used = handle_frames(
                shared,
                &partial,
                partial_arrival,
                book,
                welcomed,
                &mut out,
                &mut ended,
            );
            partial.drain(..used);
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return End::Closed(1006);
            }
            out = Vec::new();
        }
        if let Some(end) = ended.take() {
            return end;
        }
        if stream.readable().await.is_err() {
            return End::Closed(1006);
        }
        let got = SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let fd = stream.as_raw_fd();
            match stream.try_io(Interest::READABLE, || {
                recv_timestamped(fd, &mut scratch[..])
            }) {
                Ok((0, _)) => Err(()),
                Ok((n, kernel_ts)) => {
                    let arrival = kernel_ts.unwrap_or_else(crate::now_us);
                    if partial.is_empty() {
                        let used = handle_frames(
                            shared,
                            &scratch[..n],
                            arrival,
                            book,
                            welcomed,
                            &mut out,
                            &mut ended,
                        );
                        partial.extend_from_slice(&scratch[used..n]);
                    } else {
                        partial.extend_from_slice(&scratch[..n]);
                    }
                    partial_arrival = arrival;
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Err(_) => Err(()),
            }
        });
        if got.is_err() {
            return End::Closed(1006);
        }
    }
}

/// Asks the kernel to stamp each received segment with its arrival time
/// (CLOCK_REALTIME, the clock of `pub` and `ts`).
fn enable_rx_timestamps(stream: &TcpStream) {
    set_flag(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS);
}

/// `recv` that also returns the kernel's arrival time of the data, in µs.
///
/// Latency is "receipt − pub", and receipt is when the bytes reached this
/// machine's socket: a worker busy reading thousands of other sockets first
/// would otherwise add its own delay to the server's figure.
fn recv_timestamped(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: a zeroed msghdr is valid; we point it at live buffers for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: fd is an open socket; msg points at buffers that outlive the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut arrival = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled in.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                arrival = Some(t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, arrival))
}

/// Handles every complete frame at the start of `buf`; returns the bytes used.
fn handle_frames(
    shared: &Shared,
    buf: &[u8],
    receipt: u64,
    book: &mut Book,
    welcomed: &mut bool,
    out: &mut Vec<u8>,
    ended: &mut Option<End>,
) -> usize {
    let measuring = shared.measuring.get();
    // How long the bytes waited in the socket for this worker to read them.
    let own_delay = crate::now_us().saturating_sub(receipt);
    let mut stats = shared.stats.borrow_mut();
    let mut used = 0;
    while ended.is_none() {
        let Some(frame) = wire::parse_frame(&buf[used..]) else {
            break;
        };
        used += frame.len;
        match frame.opcode {
            1 => on_text(
                shared,
                &mut stats,
                frame.payload,
                receipt,
                own_delay,
                measuring,
                book,
                welcomed,
                out,
            ),
            8 => {
                let code = if frame.payload.len() >= 2 {
                    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                } else {
                    1005
                };
                out.extend_from_slice(&wire::client_frame(8, &code.to_be_bytes()));
                *ended = Some(End::Closed(code));
            }
            9 => out.extend_from_slice(&wire::client_frame(10, frame.payload)),
            _ => {}
        }
    }
    used
}

#[allow(clippy::too_many_arguments)]
fn on_text(
    shared: &Shared,
    stats: &mut Stats,
    payload: &[u8],
    receipt: u64,
    own_delay: u64,
    measuring: bool,
    book: &mut Book,
    welcomed: &mut bool,
    out: &mut Vec<u8>,
) {
    let universe = &shared.spec.universe;
    if let Some(t) = wire::tick_fields(payload) {
        let Some(i) = book
            .symbols
            .iter()
            .position(|&s| universe[s].as_bytes() == t.symbol)
        else {
            return;
        };
        let last = book.last_seq[i];
        if let (Some(lost), Some(resumed)) = (book.lost_at, book.resumed_at) {
            // The first tick since a loss: the client is current again.
            let now = Instant::now();
            let _ = stats
                .outage
                .record(now.duration_since(lost).as_micros() as u64);
            let _ = stats
                .resume
                .record(now.duration_since(resumed).as_micros() as u64);
            book.lost_at = None;
            book.resumed_at = None;
        }
        if t.seq < last {
            // Older than what this client holds (same epoch): a stale value.
            stats.counters.stale += 1;
        }
        if measuring {
            let _ = stats.loadgen_delay.record(own_delay);
            let _ = stats.fanout.record(receipt.saturating_sub(t.pub_us));
            let _ = stats.end_to_end.record(receipt.saturating_sub(t.ts));
            if t.snapshot {
                stats.counters.snapshots += 1;
            } else {
                stats.counters.received += 1;
                if last > 0 && t.seq > last + 1 {
                    stats.counters.gaps += t.seq - last - 1;
                }
            }
        }
        book.last_seq[i] = if t.snapshot { t.seq } else { last.max(t.seq) };
        return;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    match v["type"].as_str() {
        Some("welcome") => {
            *welcomed = true;
            // A new lineage of `seq` (a restarted single node): what we hold
            // compares with nothing, so resume from nothing.
            let epoch = v["payload"]["epoch"].as_u64();
            if book.epoch.is_some() && epoch != book.epoch {
                book.last_seq.fill(0);
                stats.counters.new_epochs += 1;
            }
            book.epoch = epoch;
            if book.lost_at.is_some() {
                book.resumed_at = Some(Instant::now());
            }
            let names: Vec<&str> = book.symbols.iter().map(|&s| universe[s].as_str()).collect();
            let since: serde_json::Map<String, serde_json::Value> = book
                .symbols
                .iter()
                .zip(&book.last_seq)
                .filter(|(_, &seq)| seq > 0)
                .map(|(&s, &seq)| (universe[s].clone(), seq.into()))
                .collect();
            let msg = serde_json::json!({"type":"subscribe","id":1,"payload":{"symbols":names,"since":since}});
            out.extend_from_slice(&wire::client_frame(1, msg.to_string().as_bytes()));
        }
        Some("reconnect") => {
            let ms = v["payload"]["after_ms"].as_u64().unwrap_or(0).min(600_000);
            book.reconnect_after = Some(Duration::from_millis(ms));
        }
        Some("error") => {
            let code = v["payload"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_string();
            *stats.counters.errors.entry(code).or_default() += 1;
        }
        _ => {}
    }
}
