//! The most hostile WebSocket client, frame by frame: crafted frame lengths,
//! close frames a peer may not send, floods of pings, and a reader too slow
//! for the close to leave whole. Each test is one finding of the hardening
//! issue, over real sockets.
mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tcp_feed(extra: &[&str]) -> Server {
    let mut flags = vec!["--feed", "tcp://127.0.0.1:0"];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

/// A masked frame header claiming `len` payload bytes in the 64-bit form.
fn header_claiming(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode, 0x80 | 127];
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    f
}

async fn open_fds(s: &Server) -> f64 {
    s.metric("process_open_fds").await
}

#[tokio::test]
async fn a_continuation_claiming_2_64_bytes_closes_1002_and_leaks_nothing() {
    let s = tcp_feed(&[]);
    // Connections this test opens are counted; the server's own fds are the baseline.
    let baseline = open_fds(&s).await;
    for first in [1usize, 100, 4000] {
        for claim in [u64::MAX, u64::MAX - first as u64 + 1] {
            let mut raw = RawWs::connect(s.addr).await;
            raw.next_json().await;
            let mut attack = client_frame(false, 1, &vec![b'a'; first]);
            attack.extend(header_claiming(true, 0, claim));
            raw.stream.write_all(&attack).await.unwrap();
            assert_eq!(raw.close_code().await, 1002, "first {first}, claim {claim}");
        }
    }
    s.wait_metric("tickcast_connections", |v| v == 0.0).await;
    s.wait_metric("tickcast_disconnects_total{reason=\"protocol\"}", |v| {
        v == 6.0
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while open_fds(&s).await > baseline {
        assert!(Instant::now() < deadline, "descriptors leaked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still serving.
    let mut c = s.ws_welcomed().await;
    c.send(json!({"type":"ping","id":1})).await;
    c.expect_type("pong").await;
}

#[tokio::test]
async fn a_fragment_claiming_more_than_the_limit_closes_1009_before_buffering() {
    let s = tcp_feed(&[]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    let mut attack = client_frame(false, 1, &[b'a'; 100]);
    // Under 2^63, over the limit: refused on the header, nothing buffered.
    attack.extend(header_claiming(true, 0, (1 << 62) + 5));
    raw.stream.write_all(&attack).await.unwrap();
    assert_eq!(raw.close_code().await, 1009);
    // Whatever the client goes on sending, the server reads only a little
    // more and then ends the connection.
    let junk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), raw.stream.write_all(&junk)).await {
            Ok(Ok(())) => sent += junk.len(),
            Ok(Err(_)) => break,
            Err(_) => {
                // The server stopped reading: its end must come.
                let mut buf = [0u8; 64];
                let r = tokio::time::timeout(WAIT, raw.stream.read(&mut buf)).await;
                assert!(r.is_ok(), "the server neither reads nor closes");
                break;
            }
        }
        assert!(
            Instant::now() < deadline && sent < 64 << 20,
            "server kept reading {sent} bytes"
        );
    }
    s.wait_metric("tickcast_connections", |v| v == 0.0).await;
    assert!(
        s.metric("process_resident_memory_bytes").await < 200.0 * 1024.0 * 1024.0,
        "nothing of it was kept"
    );
}

#[tokio::test]
async fn close_codes_a_client_may_not_send_get_1002_and_bad_reasons_1007() {
    let s = tcp_feed(&[]);
    let close_with = |payload: Vec<u8>| {
        let addr = s.addr;
        async move {
            let mut raw = RawWs::connect(addr).await;
            raw.next_json().await;
            raw.send_frame(true, 8, &payload).await;
            raw.close_code().await
        }
    };
    for bad in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_eq!(close_with(bad.to_be_bytes().to_vec()).await, 1002, "{bad}");
    }
    assert_eq!(close_with(vec![0x03]).await, 1002, "one-byte payload");
    let mut not_utf8 = 1000u16.to_be_bytes().to_vec();
    not_utf8.extend_from_slice(&[0xc3, 0x28]);
    assert_eq!(close_with(not_utf8).await, 1007);
    for good in [1000u16, 1001, 1012, 3000, 4999] {
        let mut payload = good.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        assert_eq!(close_with(payload).await, good, "echoed");
    }
    assert_eq!(close_with(vec![]).await, 1000, "no code: answered 1000");
}

/// Pings in one write: answered up to the burst, then the client is closed
/// for its rate (4429), not as a slow consumer; the flood after that is not read.
#[tokio::test]
async fn a_ping_flood_is_rate_limited_and_closed_4429() {
    let s = tcp_feed(&[]);
    let mut raw = RawWs::connect(s.addr).await;
    raw.next_json().await;
    let mut flood = Vec::new();
    for i in 0..100_000u32 {
        flood.extend(client_frame(true, 9, &i.to_be_bytes()));
    }
    let (mut rd, mut wr) = raw.stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&flood).await;
        wr
    });
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(WAIT, rd.read_to_end(&mut bytes))
        .await
        .expect("the server ends the connection");
    let frames = parse_server_frames(&bytes);
    let pongs = frames.iter().filter(|(op, _)| *op == 10).count();
    assert!(pongs <= 20, "{pongs} pongs for a burst of 20");
    let close = frames
        .iter()
        .find(|(op, _)| *op == 8)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 4429);
    s.wait_metric("tickcast_disconnects_total{reason=\"rate_limit\"}", |v| {
        v == 1.0
    })
    .await;
    assert_eq!(
        s.metric("tickcast_disconnects_total{reason=\"slow_consumer\"}")
            .await,
        0.0
    );
    drop(writer);
}

/// Frames the server wrote: (opcode, payload). Panics on anything that is not
/// a whole, well-formed server frame: the stream must never be corrupt.
fn parse_server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "a cut frame header at the end");
        assert_eq!(
            bytes[0] & 0xf0,
            0x80,
            "FIN set, no reserved bits: {:x}",
            bytes[0]
        );
        let opcode = bytes[0] & 0x0f;
        assert!(matches!(opcode, 1 | 8 | 9 | 10), "opcode {opcode}");
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, hdr) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert!(
            bytes.len() >= hdr + len,
            "a frame cut short: the stream is corrupt"
        );
        let payload = bytes[hdr..hdr + len].to_vec();
        if opcode == 1 {
            serde_json::from_slice::<serde_json::Value>(&payload).expect("text frames are JSON");
        }
        out.push((opcode, payload));
        bytes = &bytes[hdr + len..];
    }
    out
}

/// A backed-up client (2 KiB receive buffer, 4 KiB server send buffer, and
/// reading far slower than the feed) overflows its queue: the close must come
/// after whole frames, never in the middle of one.
#[tokio::test]
async fn a_close_never_cuts_a_frame_of_a_backed_up_client() {
    for round in 0..3 {
        let s = tcp_feed(&[
            "--send-buffer",
            "4096",
            "--slow-consumer",
            "close",
            "--coalesce",
            "1ms",
            "--drain-timeout",
            "2s",
        ]);
        let stream = connect_with_rcvbuf(s.addr, 2048).await;
        let mut raw = RawWs::handshake(stream, "/ws", &[]).await.unwrap();
        raw.next_json().await;
        let symbols: Vec<String> = (0..100).map(|i| format!("S{i}")).collect();
        raw.send_text(
            &json!({"type":"subscribe","id":1,"payload":{"symbols":symbols}}).to_string(),
        )
        .await;
        assert_eq!(raw.next_json().await["type"], "subscribed");
        // A slow reader: 1 KiB every 5 ms, until the server ends the connection.
        let mut bytes = raw_buffered(&mut raw);
        let mut stream = raw.stream;
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 1024];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) => return (bytes, None),
                    Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                    Err(e) => return (bytes, Some(e.kind())),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut p = s.publisher();
        let mut i = 0u64;
        let deadline = Instant::now() + WAIT;
        while !reader.is_finished() {
            let mut lines = String::new();
            for sym in 0..100 {
                i += 1;
                lines.push_str(&format!(
                    "{{\"symbol\":\"S{sym}\",\"bid\":{i}.25,\"ask\":{i}.75,\"last\":{i}.5,\"volume\":{i}}}\n"
                ));
            }
            p.stream.write_all_lines(&lines);
            assert!(Instant::now() < deadline, "never closed as a slow consumer");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (bytes, error) = reader.await.unwrap();
        let frames = parse_server_frames(&bytes);
        let last = frames.last().expect("frames");
        assert_eq!(
            last.0, 8,
            "round {round}: the stream ends with a close frame ({error:?})"
        );
        assert_eq!(u16::from_be_bytes([last.1[0], last.1[1]]), 4008);
    }
}

/// What the raw client had read past its last frame.
fn raw_buffered(raw: &mut RawWs) -> Vec<u8> {
    raw.take_buffered()
}

trait WriteLines {
    fn write_all_lines(&mut self, lines: &str);
}

impl WriteLines for std::net::TcpStream {
    fn write_all_lines(&mut self, lines: &str) {
        use std::io::Write;
        self.write_all(lines.as_bytes()).unwrap();
    }
}
