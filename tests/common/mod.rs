//! Shared test harness: the real `tickcast` binary on free loopback ports,
//! a tungstenite client for ordinary traffic, a raw WebSocket client for
//! everything a polite client would never do, and small HTTP helpers.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub feed_addr: Option<SocketAddr>,
    log: mpsc::Receiver<String>,
    pub log_lines: Vec<String>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tickcast")
}

/// A token made by `tickcast token ARGS` with `secret`.
pub fn cli_token(secret: &str, args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("token")
        .args(args)
        .env("TICKCAST_AUTH_SECRET", secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Server {
    /// Starts tickcast on 127.0.0.1:0 with these extra flags and waits until it listens.
    pub fn start(flags: &[&str]) -> Server {
        Self::start_with_env(flags, &[])
    }

    pub fn start_with_env(flags: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_at("127.0.0.1:0", flags, env)
    }

    /// Starts tickcast listening on `listen` exactly.
    pub fn start_at(listen: &str, flags: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_inner(listen, flags, env, None)
    }

    fn start_configured(flags: &[&str], env: &[(&str, &str)], open_files: Option<u64>) -> Server {
        Self::start_inner("127.0.0.1:0", flags, env, open_files)
    }

    fn start_inner(
        listen: &str,
        flags: &[&str],
        env: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Server {
        let mut cmd = Command::new(binary());
        cmd.args(["--listen", listen])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start tickcast");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            feed_addr: None,
            log: rx,
            log_lines: vec![],
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let line = server
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("tickcast did not start; log: {:?}", server.log_lines));
            if let Some(rest) = line.split("feed listening on tcp://").nth(1) {
                server.feed_addr = Some(rest.trim().parse().unwrap());
            }
            let listening = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1))
                .map(|r| r.split(' ').next().unwrap().to_string());
            server.log_lines.push(line);
            if let Some(addr) = listening {
                server.addr = addr.parse().unwrap();
            }
            // A cluster ingest starts its `tcp://` feed after it has joined
            // the bus, so after it listens: wait for both.
            let wants_feed = flags
                .windows(2)
                .any(|w| w[0] == "--feed" && w[1].starts_with("tcp://"));
            if server.addr.port() != 0 && (!wants_feed || server.feed_addr.is_some()) {
                return server;
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sends a signal to the child this test started.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Log lines so far.
    pub fn log(&mut self) -> &[String] {
        while let Ok(l) = self.log.try_recv() {
            self.log_lines.push(l);
        }
        &self.log_lines
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn ws(&self) -> Client {
        Client::connect(&self.url("/ws")).await
    }

    /// Connects and reads the welcome.
    pub async fn ws_welcomed(&self) -> Client {
        let mut c = self.ws().await;
        c.expect_type("welcome").await;
        c
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, &[]).await
    }

    /// A metric read from another listener of the server (`--metrics-listen`).
    pub async fn metric_at(addr: SocketAddr, series: &str) -> f64 {
        metric_value(&http_get(addr, "/metrics", &[]).await.1, series)
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.get("/metrics").await.1, series)
    }

    /// Waits until a metric satisfies `pred` (the server is another process: polling is the way to see it).
    pub async fn wait_metric(&self, series: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.metric(series).await;
            if pred(v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{series} stuck at {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn snapshot(&self, symbols: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/snapshot?symbols={symbols}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn publisher(&self) -> Publisher {
        Publisher::connect(
            self.feed_addr
                .expect("server started with --feed tcp://127.0.0.1:0"),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    tickcast::metrics::sample(text, series)
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
}

/// A plain HTTP/1.1 GET; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A well-behaved client (tokio-tungstenite).
pub struct Client {
    pub ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Self::try_connect(url.into_client_request().unwrap())
            .await
            .expect("upgrade accepted")
    }

    pub async fn try_connect(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Client { ws })
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws.send(Message::Text(t.to_string())).await.unwrap();
    }

    /// The next protocol message (pings are answered by tungstenite).
    pub async fn next(&mut self) -> Value {
        self.try_next(WAIT).await.expect("a message in time")
    }

    pub async fn try_next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg.expect("websocket error") {
                Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
                Message::Close(c) => panic!("closed unexpectedly: {c:?}"),
                _ => continue,
            }
        }
    }

    pub async fn expect_type(&mut self, kind: &str) -> Value {
        let m = self.next().await;
        assert_eq!(m["type"], kind, "expected {kind}, got {m}");
        m
    }

    /// Reads until a message of this type (skipping ticks and others).
    pub async fn until_type(&mut self, kind: &str) -> Value {
        loop {
            let m = self.next().await;
            if m["type"] == kind {
                return m;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close in time");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection ended without a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    pub async fn subscribe(&mut self, id: i64, symbols: &[&str]) -> Value {
        self.send(serde_json::json!({"type":"subscribe","id":id,"payload":{"symbols":symbols}}))
            .await;
        self.until_type("subscribed").await
    }
}

/// A WebSocket client that does exactly what it is told, frame by frame.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The head of the 101 answer.
    pub head: String,
}

pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap()
    }
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, 8, "not a close frame");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

impl RawWs {
    /// Handshakes on an already connected stream.
    pub async fn handshake(
        mut stream: TcpStream,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<RawWs, (u16, String)> {
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("handshake reply")
                .unwrap();
            assert!(n > 0, "closed during handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        if status != 101 {
            return Err((status, String::from_utf8_lossy(&buf[end..]).into_owned()));
        }
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong accept key: {head}"
        );
        Ok(RawWs {
            stream,
            buf: buf[end..].to_vec(),
            head,
        })
    }

    /// Bytes read from the socket but not yet returned as frames.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub async fn connect(addr: SocketAddr) -> RawWs {
        Self::handshake(TcpStream::connect(addr).await.unwrap(), "/ws", &[])
            .await
            .expect("upgrade")
    }

    /// Sends one frame, masked unless `unmasked`.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.stream
            .write_all(&client_frame(fin, opcode, payload))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, 1, text.as_bytes()).await;
    }

    /// The next frame of any kind; `None` at EOF or reset.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        self.read_frame_within(WAIT)
            .await
            .expect("a frame or EOF in time")
    }

    /// `Err(())` on timeout.
    pub async fn read_frame_within(&mut self, within: Duration) -> Result<Option<RawFrame>, ()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.buf.len() >= 2 {
                let len7 = (self.buf[1] & 0x7f) as usize;
                let (len, hdr) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= hdr + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[hdr..hdr + len].to_vec();
                    self.buf.drain(..hdr + len);
                    return Ok(Some(RawFrame { opcode, payload }));
                }
            }
            let mut chunk = [0u8; 65536];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next text message as JSON, skipping control frames.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let f = self.read_frame().await.expect("connection open");
            match f.opcode {
                1 => return f.json(),
                8 => panic!("closed: {}", f.close_code()),
                _ => continue,
            }
        }
    }

    /// Reads until a close frame; returns its code. Fails on EOF without one.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let f = self.read_frame().await.expect("a close frame before EOF");
            if f.opcode == 8 {
                return f.close_code();
            }
        }
    }

    /// Reads until EOF; returns the close code seen on the way, if any.
    pub async fn until_eof(&mut self) -> Option<u16> {
        let mut code = None;
        while let Some(f) = self.read_frame().await {
            if f.opcode == 8 {
                code = Some(f.close_code());
            }
        }
        code
    }
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    tickcast::transport::ws::frame::encode_client_frame(
        fin,
        opcode,
        payload,
        [0x12, 0x34, 0x56, 0x78],
    )
}

/// A feed publisher writing NDJSON lines to `--feed tcp://`.
pub struct Publisher {
    pub stream: std::net::TcpStream,
}

impl Publisher {
    pub fn connect(addr: SocketAddr) -> Publisher {
        Publisher {
            stream: std::net::TcpStream::connect(addr).unwrap(),
        }
    }

    pub fn line(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).unwrap();
        self.stream.write_all(b"\n").unwrap();
    }

    pub fn tick(&mut self, v: Value) {
        self.line(&v.to_string());
    }
}

/// Sends raw bytes as an HTTP request and reads the answer until the server
/// closes or `Connection: close` ends it; returns the status (0 when the
/// server closed without a status line), the head and the body.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no answer in time: {:?}", String::from_utf8_lossy(&raw)),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

/// A TCP connection whose receive buffer is `rcvbuf` bytes (set before
/// connecting, so the window the server sees is small from the start).
pub async fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(rcvbuf as u32).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Starts a server with the open-files limit of the process set to `limit`.
pub fn start_with_open_files(limit: u64, flags: &[&str]) -> Server {
    Server::start_configured(flags, &[], Some(limit))
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Realtime microseconds, as the server stamps `ts` and `pub`.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

impl Publisher {
    /// Everything the server writes to this publisher until it closes the
    /// connection (publishers only hear from the server when it refuses them).
    pub fn reply(&mut self) -> String {
        use std::io::Read;
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "the server did not close the publisher ({e}); got {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// One block of a Server-Sent Events stream (up to a blank line).
#[derive(Debug, Default, Clone)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: Option<String>,
    pub id: Option<String>,
    pub retry: Option<u64>,
    /// The block was only a comment (`: ping`).
    pub comment: bool,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).unwrap()
    }
}

/// A Server-Sent Events client over a raw socket: sends exactly the headers
/// it is given, decodes the chunked body, splits it into events.
pub struct SseClient {
    stream: TcpStream,
    /// Bytes read, not yet decoded from the chunked encoding.
    raw: Vec<u8>,
    /// Body bytes decoded, not yet returned as events.
    body: Vec<u8>,
    pub status: u16,
    pub head: String,
    ended: bool,
    /// The body is chunked (a stream), or sent whole.
    chunked: bool,
}

impl SseClient {
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "closed before answering");
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        SseClient {
            stream,
            raw: raw[end..].to_vec(),
            body: Vec::new(),
            status,
            head,
            ended: false,
            chunked,
        }
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..line_end]).unwrap();
            let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if n == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < line_end + 2 + n + 2 {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + n]);
            self.raw.drain(..line_end + 2 + n + 2);
        }
    }

    /// The next block; `None` once the stream has ended.
    pub async fn next_block(&mut self) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.dechunk();
            if let Some(i) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.body[..i].to_vec()).unwrap();
                self.body.drain(..i + 2);
                let mut e = SseEvent::default();
                let mut only_comments = true;
                for line in block.lines() {
                    if line.starts_with(':') {
                        continue;
                    }
                    only_comments = false;
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "event" => e.event = Some(value.to_string()),
                        "data" => e.data = Some(value.to_string()),
                        "id" => e.id = Some(value.to_string()),
                        "retry" => e.retry = value.parse().ok(),
                        other => panic!("unknown field {other:?} in {block:?}"),
                    }
                }
                e.comment = only_comments;
                return Some(e);
            }
            if self.ended {
                return None;
            }
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("an event in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event of this kind, noting the last `id` seen on the way.
    pub async fn until_event(&mut self, kind: &str, last_id: &mut Option<String>) -> SseEvent {
        loop {
            let e = self.next_block().await.expect("the stream is open");
            if e.id.is_some() {
                last_id.clone_from(&e.id);
            }
            if e.event.as_deref() == Some(kind) {
                return e;
            }
        }
    }
}
