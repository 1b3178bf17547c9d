//! The HTTP listeners: bind, accept on an OS thread, serve HTTP/1.1 with bounds.
//!
//! Accepting runs on its own thread: an accept task on the runtime would
//! wait its turn behind every writer woken by a busy feed, the backlog would
//! overflow and new clients would pay seconds of SYN retransmits; here the
//! backlog is always drained, and the handshake itself queues on the runtime.
//!
//! What a connection may cost before it is a WebSocket is bounded: at most
//! `--max-handshakes` connections are in their HTTP phase at once (beyond
//! that a new one gets a 503 and is closed), each one's request head is at
//! most `--max-header-size` bytes (else 431) and must arrive within
//! `--handshake-timeout`. When the process cannot accept (out of file
//! descriptors), the thread backs off and says so at most every 10 s.

use crate::admission::{Admission, HandshakePermit};
use crate::http::{self, AppState, Routes};
use crate::metrics::{Refusal, METRICS};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Most connections waiting to be accepted. The kernel caps it at
/// `net.core.somaxconn` (4096 on current kernels); tokio's default of 1024
/// overflows when thousands of clients connect at once, and each overflow
/// costs a client a SYN retransmit (1 s, then 3 s).
const LISTEN_BACKLOG: i32 = 4096;

/// Refusals being written at once, at most; past it a connection is simply closed.
const MAX_REFUSING: usize = 256;

/// What is known of the connection a request came on (in its extensions).
#[derive(Clone)]
pub struct ConnInfo {
    /// The TCP peer (a client, or a proxy in front of it).
    pub peer: SocketAddr,
    /// The socket, open as long as the request's connection is.
    pub fd: std::os::fd::RawFd,
    /// The connection's place among those in their HTTP phase: a request
    /// that turns it into a stream (SSE) gives it back.
    pub handshake: Arc<std::sync::Mutex<Option<HandshakePermit>>>,
}

impl ConnInfo {
    /// The connection is a client's stream now, no longer in its HTTP phase.
    pub fn end_handshake(&self) {
        drop(
            self.handshake
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
    }
}

/// How connections on a listener are served.
#[derive(Clone)]
pub struct HttpLimits {
    pub handshake_timeout: Duration,
    pub max_header_size: usize,
    /// Kernel send buffer per client socket (0: the OS default).
    pub send_buffer: u32,
    /// Sent data unacknowledged this long ends a connection (TCP_USER_TIMEOUT):
    /// a peer gone without a FIN is found even where nothing asks it for
    /// an answer (an SSE stream).
    pub unacknowledged: Duration,
    /// TLS on this listener (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Unsent bytes the kernel may hold for a client (TCP_NOTSENT_LOWAT; 0:
    /// the kernel's default, no bound). Beyond it a write waits, and a slow
    /// reader's backlog stays in its queue, where it is conflated, instead of
    /// growing stale in the socket.
    pub notsent_lowat: u32,
}

pub fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Connections the operator listener (`--metrics-listen`) serves at once:
/// its own, so that a crowd on the public listener cannot lock operators out.
pub const OPERATOR_HANDSHAKES: usize = 16;

/// Accepts on its own OS thread until the process ends. `handshakes` holds
/// this listener's places for connections in their HTTP phase.
pub fn accept_thread(
    listener: std::net::TcpListener,
    runtime: tokio::runtime::Handle,
    state: Arc<AppState>,
    routes: Routes,
    handshakes: Arc<Admission>,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let refusing = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || {
            let mut failures = AcceptFailures::default();
            loop {
                let stream = match listener.accept() {
                    Ok((stream, _peer)) => {
                        failures.recovered();
                        stream
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        std::thread::sleep(failures.failed(&e));
                        continue;
                    }
                };
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let permit = handshakes.try_handshake();
                let state = state.clone();
                let limits = limits.clone();
                let refusing = refusing.clone();
                let _enter = runtime.enter();
                let Ok(stream) = TcpStream::from_std(stream) else {
                    continue;
                };
                match permit {
                    Some(permit) => {
                        runtime.spawn(serve_connection(stream, state, routes, limits, permit));
                    }
                    None => {
                        METRICS.refused(Refusal::Handshakes);
                        refuse_busy(&runtime, stream, refusing);
                    }
                }
            }
        })?;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<AppState>,
    routes: Routes,
    limits: HttpLimits,
    permit: HandshakePermit,
) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(&stream);
    if limits.send_buffer > 0 {
        let _ = sock.set_send_buffer_size(limits.send_buffer as usize);
    }
    let _ = sock.set_tcp_user_timeout(Some(limits.unacknowledged));
    if limits.notsent_lowat > 0 {
        set_notsent_lowat(&stream, limits.notsent_lowat);
    }
    let info = ConnInfo {
        peer: stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
        handshake: Arc::new(std::sync::Mutex::new(Some(permit))),
    };
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        http::handle(req, state.clone(), routes)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .max_header_size(limits.max_header_size)
        .max_buf_size(limits.max_header_size.max(8192));
    match &limits.tls {
        None => {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
        Some(tls) => {
            let handshake = tls.acceptor().accept(stream);
            let Ok(Ok(stream)) = tokio::time::timeout(limits.handshake_timeout, handshake).await
            else {
                METRICS.refused(Refusal::TlsHandshake);
                return;
            };
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
    }
}

fn set_notsent_lowat(stream: &TcpStream, bytes: u32) {
    use std::os::fd::AsRawFd;
    let value = bytes as libc::c_int;
    // SAFETY: setsockopt reads an int from a valid pointer for the call.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Too many connections are in their HTTP phase: answer 503 and close.
/// The answer is written at once (the socket buffer is empty), then what the
/// client sends is read for a moment, so that the close is a FIN and the
/// client gets to read the 503 rather than a reset.
fn refuse_busy(runtime: &tokio::runtime::Handle, stream: TcpStream, refusing: Arc<AtomicUsize>) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 55\r\nConnection: close\r\n\r\n\
        server busy: too many connections in their handshake.\n";
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    runtime.spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            // Awaited, not `try_write`: a socket just handed to the runtime
            // is not known writable until the driver has polled it once.
            if stream.write_all(BUSY).await.is_err() {
                return;
            }
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 1024];
            while stream.readable().await.is_ok() {
                match stream.try_read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        })
        .await;
        refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Failed accepts: how long to back off, and a log line at most every 10 s.
#[derive(Default)]
struct AcceptFailures {
    backoff: Duration,
    since_log: u64,
    last_log: Option<Instant>,
}

impl AcceptFailures {
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn failed(&mut self, e: &std::io::Error) -> Duration {
        METRICS.refused(Refusal::AcceptFailed);
        self.since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Self::LOG_EVERY)
        {
            crate::warn!(
                "accept failed {} times since the last report: {e} (see --max-connections)",
                self.since_log
            );
            self.since_log = 0;
            self.last_log = Some(now);
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
        self.backoff
    }

    fn recovered(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

/// The admission caps for this process: given ones, or derived from its
/// open-files limit (see [`crate::admission::default_caps`]).
pub fn admission(
    max_connections: Option<usize>,
    max_handshakes: Option<usize>,
    max_per_address: u32,
    max_handshake_rate: u32,
    feed_publishers: usize,
) -> Arc<Admission> {
    let (connections, handshakes) =
        crate::admission::default_caps(crate::admission::open_files_limit(), feed_publishers);
    Admission::build(
        max_connections.unwrap_or(connections),
        max_handshakes.unwrap_or(handshakes),
        max_per_address,
        max_handshake_rate,
    )
}
