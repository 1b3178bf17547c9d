//! The HTTP phase under attack and at its limits: huge and unfinished request
//! heads, invalid upgrades, a crowd past `--max-connections` and past the
//! open-files limit, foreign origins, and what the operator listener serves.
mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

async fn upgrade_status(s: &Server, headers: &[(&str, &str)]) -> u16 {
    let stream = TcpStream::connect(s.addr).await.unwrap();
    match RawWs::handshake(stream, "/ws", headers).await {
        Ok(_) => 101,
        Err((status, _)) => status,
    }
}

#[tokio::test]
async fn invalid_upgrades_get_400_not_101() {
    let s = Server::start(&[]);
    let good = upgrade_request("");
    assert!(raw_http_head(&s, &good).await.starts_with("HTTP/1.1 101"));
    for (name, request) in [
        ("HTTP/1.0", good.replace("HTTP/1.1", "HTTP/1.0")),
        ("no Host", good.replace("Host: x\r\n", "")),
        ("short key", good.replace(KEY, "c2hvcnQ=")),
        (
            "key of 17 bytes",
            good.replace(KEY, "MTIzNDU2Nzg5MDEyMzQ1Njc="),
        ),
        (
            "key not base64",
            good.replace(KEY, "!!!!!!!!!!!!!!!!!!!!!!=="),
        ),
    ] {
        let (status, _, body) = raw_http(s.addr, request.as_bytes()).await;
        assert_eq!(status, 400, "{name}: {body}");
    }
    s.wait_metric("tickcast_refused_total{reason=\"bad_request\"}", |v| {
        v == 5.0
    })
    .await;
}

/// The first line of the server's answer to a request that stays open.
async fn raw_http_head(s: &Server, request: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn request_heads_are_capped_in_size_and_held_briefly() {
    let s = Server::start(&["--handshake-timeout", "3s"]);
    let (status, _, _) = raw_http(
        s.addr,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(100_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 431, "a head over --max-header-size");
    // Many unfinished heads of 390 KB each: each is cut off at the cap, so
    // memory stays flat (it used to grow by ~0.5 MiB per connection).
    let before = s.metric("process_resident_memory_bytes").await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
                "b".repeat(390_000)
            );
            let _ = c.write_all(head.as_bytes()).await;
            c
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        held.push(t.await.unwrap());
    }
    let grown = s.metric("process_resident_memory_bytes").await - before;
    assert!(
        grown < 40.0 * 1024.0 * 1024.0,
        "200 unfinished heads cost {:.1} MiB",
        grown / 1048576.0
    );
    drop(held);
    // The scrape's own connection is in its HTTP phase too.
    s.wait_metric("tickcast_handshakes", |v| v <= 1.0).await;
}

/// Idle connections fill the handshake slots of the public listener: the next
/// one gets 503 at once, while the operator listener, which has slots of its
/// own, still answers.
#[tokio::test]
async fn past_max_handshakes_a_connection_gets_503_at_once() {
    let port = free_port();
    let ops: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = Server::start(&[
        "--max-handshakes",
        "20",
        "--handshake-timeout",
        "30s",
        "--metrics-listen",
        &ops.to_string(),
    ]);
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let deadline = Instant::now() + WAIT;
    // 20 on the public listener, and the scrape's own on the operator's.
    while Server::metric_at(ops, "tickcast_handshakes").await < 21.0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, head, _) = raw_http(s.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert_eq!(http_get(ops, "/healthz", &[]).await.0, 200);
    assert_eq!(
        Server::metric_at(ops, "tickcast_refused_total{reason=\"handshakes\"}").await,
        1.0
    );
    drop(idle);
    let deadline = Instant::now() + WAIT;
    while Server::metric_at(ops, "tickcast_handshakes").await > 1.0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upgrade_status(&s, &[]).await, 101);
}

#[tokio::test]
async fn past_max_connections_an_upgrade_gets_503_and_operators_still_get_answers() {
    let s = Server::start(&["--max-connections", "3"]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(s.ws_welcomed().await);
    }
    let stream = TcpStream::connect(s.addr).await.unwrap();
    let (status, body) = match RawWs::handshake(stream, "/ws", &[]).await {
        Ok(_) => panic!("a 4th connection was accepted"),
        Err(e) => e,
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max-connections"), "{body}");
    let (status, head, _) = raw_http(s.addr, upgrade_request("").as_bytes()).await;
    assert_eq!(status, 503);
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.metric("tickcast_max_connections").await, 3.0);
    assert_eq!(
        s.metric("tickcast_refused_total{reason=\"max_connections\"}")
            .await,
        2.0
    );
    clients.pop();
    s.wait_metric("tickcast_connections", |v| v == 2.0).await;
    assert_eq!(upgrade_status(&s, &[]).await, 101);
}

/// With the open-files limit low, the default cap keeps descriptors in
/// reserve: the crowd past it gets 503, health checks and metrics still
/// answer, and the accept loop never runs out of descriptors.
#[tokio::test]
async fn the_default_cap_follows_the_open_files_limit() {
    let mut s = start_with_open_files(200, &[]);
    let cap = s.metric("tickcast_max_connections").await as usize;
    assert!((20..200).contains(&cap), "cap {cap}");
    let mut clients = Vec::new();
    for _ in 0..cap {
        let stream = TcpStream::connect(s.addr).await.unwrap();
        clients.push(
            RawWs::handshake(stream, "/ws", &[])
                .await
                .expect("under the cap"),
        );
    }
    for _ in 0..20 {
        assert_eq!(upgrade_status(&s, &[]).await, 503);
    }
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/metrics").await.0, 200);
    assert_eq!(
        s.metric("tickcast_refused_total{reason=\"accept_failed\"}")
            .await,
        0.0
    );
    assert!(
        !s.log().iter().any(|l| l.contains("accept failed")),
        "{:?}",
        s.log()
    );
}

/// Past the open-files limit itself (a cap set too high by hand), failed
/// accepts back off, are counted, and are logged at most every 10 s; the
/// process recovers once descriptors are free.
#[tokio::test]
async fn at_the_open_files_limit_accept_backs_off_and_logs_rarely() {
    let mut s = start_with_open_files(120, &["--max-connections", "1000"]);
    let mut clients = Vec::new();
    loop {
        let connect = async {
            let stream = TcpStream::connect(s.addr).await.ok()?;
            RawWs::handshake(stream, "/ws", &[]).await.ok()
        };
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Some(c)) => clients.push(c),
            _ => break,
        }
        assert!(clients.len() < 200, "the limit was never reached");
    }
    let deadline = Instant::now() + WAIT;
    while !s.log().iter().any(|l| l.contains("accept failed")) {
        assert!(Instant::now() < deadline, "no accept failure reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three seconds at the limit: a dozen failed accepts, one log line.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reports = s
        .log()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert_eq!(reports, 1, "{:?}", s.log());
    drop(clients);
    let deadline = Instant::now() + WAIT;
    while upgrade_status_soon(&s).await != Some(101) {
        assert!(Instant::now() < deadline, "never recovered");
    }
    let failures = s
        .metric("tickcast_refused_total{reason=\"accept_failed\"}")
        .await;
    assert!(
        (3.0..200.0).contains(&failures),
        "{failures} failures: backed off?"
    );
}

async fn upgrade_status_soon(s: &Server) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(2), upgrade_status(s, &[]))
        .await
        .ok()
}

#[tokio::test]
async fn foreign_origins_are_refused_and_cors_answers_the_allowed_ones() {
    let s = Server::start(&["--allowed-origins", "https://app.example.com"]);
    let host = s.addr.to_string();
    let own = format!("http://{host}");
    assert_eq!(
        upgrade_status(&s, &[("Origin", "https://evil.example")]).await,
        403
    );
    assert_eq!(
        upgrade_status(&s, &[("Origin", "https://app.example.com")]).await,
        101
    );
    assert_eq!(
        upgrade_status(&s, &[]).await,
        101,
        "no Origin: not a browser"
    );
    // The RawWs handshake says `Host: x`: the page's own origin is that host.
    assert_eq!(upgrade_status(&s, &[("Origin", "http://x")]).await, 101);
    assert_eq!(
        s.metric("tickcast_refused_total{reason=\"origin\"}").await,
        1.0
    );

    let ask = |method: &str, origin: &str| {
        format!(
            "{method} /snapshot?symbols= HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\n\
             Connection: close\r\n\r\n"
        )
    };
    let (status, head, body) =
        raw_http(s.addr, ask("GET", "https://app.example.com").as_bytes()).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("access-control-allow-origin: https://app.example.com"),
        "{head}"
    );
    assert!(head.contains("vary: origin"), "{head}");
    let (status, head, _) =
        raw_http(s.addr, ask("OPTIONS", "https://app.example.com").as_bytes()).await;
    assert_eq!(status, 204);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("access-control-allow-headers: authorization"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-methods: get, head, options"),
        "{head}"
    );
    let (status, head, _) = raw_http(s.addr, ask("GET", "https://evil.example").as_bytes()).await;
    assert_eq!(status, 403);
    assert!(!head
        .to_ascii_lowercase()
        .contains("access-control-allow-origin"));
    assert_eq!(
        raw_http(s.addr, ask("OPTIONS", "https://evil.example").as_bytes())
            .await
            .0,
        403
    );
    let (status, _, _) = raw_http(s.addr, ask("GET", &own).as_bytes()).await;
    assert_eq!(status, 200, "the server's own page");
}

#[tokio::test]
async fn the_operator_listener_serves_only_metrics_and_health() {
    let port = free_port();
    let s = Server::start(&["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let ops: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(http_get(ops, path, &[]).await.0, 200, "{path}");
    }
    for path in ["/ws", "/snapshot", "/", "/client.js"] {
        assert_eq!(http_get(ops, path, &[]).await.0, 404, "{path}");
    }
    let stream = TcpStream::connect(ops).await.unwrap();
    assert_eq!(
        RawWs::handshake(stream, "/ws", &[])
            .await
            .err()
            .map(|e| e.0),
        Some(404)
    );
    assert_eq!(
        upgrade_status(&s, &[]).await,
        101,
        "the public listener still upgrades"
    );
}

/// A snapshot of every symbol is written as the client reads: many clients
/// asking for it and not reading cost a chunk each, not a copy each.
#[tokio::test]
async fn slow_readers_of_a_large_snapshot_cost_a_chunk_each() {
    use std::io::Write;
    let s = Server::start(&["--feed", "tcp://127.0.0.1:0"]);
    let mut p = s.publisher();
    let mut lines = Vec::new();
    for i in 0..20_000 {
        writeln!(
            lines,
            r#"{{"symbol":"S{i}","bid":{i}.25,"ask":{i}.5,"last":{i}.375,"volume":{i}}}"#
        )
        .unwrap();
    }
    p.stream.write_all(&lines).unwrap();
    s.wait_metric("tickcast_updates_total", |v| v == 20_000.0)
        .await;
    let (status, body) = s.get("/snapshot").await;
    assert_eq!(status, 200);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 20_000);
    assert!(body.len() > 2_000_000, "{} bytes", body.len());
    let before = s.metric("process_resident_memory_bytes").await;
    let mut readers = Vec::new();
    for _ in 0..60 {
        let mut c = connect_with_rcvbuf(s.addr, 4096).await;
        c.write_all(b"GET /snapshot HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        readers.push(c);
    }
    // Each answer has started and stalled on its client's window.
    s.wait_metric("tickcast_handshakes", |v| v >= 61.0).await;
    let grown = s.metric("process_resident_memory_bytes").await - before;
    assert!(
        grown < 40.0 * 1024.0 * 1024.0,
        "60 stalled snapshots of {} bytes cost {:.1} MiB",
        body.len(),
        grown / 1048576.0
    );
}

async fn upgrade_from(s: &Server, source: &str, headers: &[(&str, &str)]) -> (u16, Option<RawWs>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    match RawWs::handshake(stream, "/ws", headers).await {
        Ok(ws) => (101, Some(ws)),
        Err((status, _)) => (status, None),
    }
}

#[tokio::test]
async fn one_address_gets_at_most_max_connections_per_ip() {
    let s = Server::start(&["--max-connections-per-ip", "2"]);
    let (a, _ka) = upgrade_from(&s, "127.0.0.1", &[]).await;
    let (b, _kb) = upgrade_from(&s, "127.0.0.1", &[]).await;
    assert_eq!((a, b), (101, 101));
    let (status, _) = upgrade_from(&s, "127.0.0.1", &[]).await;
    assert_eq!(status, 429);
    let (other, _ko) = upgrade_from(&s, "127.0.0.2", &[]).await;
    assert_eq!(other, 101, "another address has its own count");
    assert_eq!(
        s.metric("tickcast_refused_total{reason=\"per_address\"}")
            .await,
        1.0
    );
    drop(_ka);
    s.wait_metric("tickcast_connections", |v| v == 2.0).await;
    assert_eq!(upgrade_from(&s, "127.0.0.1", &[]).await.0, 101);
}

/// Behind a trusted proxy the client is who the proxy says; anyone else's
/// X-Forwarded-For is ignored.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let mut s = Server::start(&[
        "--max-connections-per-ip",
        "1",
        "--trusted-proxies",
        "127.0.0.9",
    ]);
    let alice = [("X-Forwarded-For", "203.0.113.7")];
    let bob = [("X-Forwarded-For", "198.51.100.2")];
    let (a, _ka) = upgrade_from(&s, "127.0.0.9", &alice).await;
    assert_eq!(a, 101);
    assert_eq!(
        upgrade_from(&s, "127.0.0.9", &alice).await.0,
        429,
        "alice again"
    );
    let (b, _kb) = upgrade_from(&s, "127.0.0.9", &bob).await;
    assert_eq!(b, 101, "bob, through the same proxy");
    // Not a trusted proxy: its header is ignored, it is itself.
    let (c, _kc) = upgrade_from(&s, "127.0.0.3", &alice).await;
    assert_eq!(c, 101);
    assert_eq!(upgrade_from(&s, "127.0.0.3", &bob).await.0, 429);
    assert!(
        s.log().iter().any(|l| l.contains("refused 203.0.113.7")),
        "{:?}",
        s.log()
    );
}
