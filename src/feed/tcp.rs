//! `--feed tcp://HOST:PORT`: tickcast listens; any number of publishers write NDJSON.
//!
//! One thread accepts, one thread per publisher reads. A publisher's thread
//! blocks on the hub channel when it is full, so its socket is not read and
//! TCP slows the publisher down. A bad line is counted and skipped; the lines
//! around it are processed and the publisher stays connected.

use super::parse::{accept, MAX_LINE};
use super::{spawn, Batch, Tick, MAX_BATCH};
use crate::clock::now_us;
use crate::metrics::{RejectReason, METRICS};
use crossbeam_channel::Sender;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

/// Binds the listener now (so a taken port fails at start) and accepts in a thread.
pub fn listen(addr: SocketAddr, tx: Sender<Batch>) -> Result<SocketAddr, String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("--feed tcp://{addr}: cannot listen: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    spawn("feed-accept", move || {
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    let tx = tx.clone();
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let started = spawn("feed-publisher", move || read_publisher(stream, tx));
                    if let Err(e) = started {
                        crate::warn!("feed publisher {peer} refused: {e}");
                    }
                }
                Err(e) => {
                    crate::warn!("feed accept failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    })?;
    Ok(bound)
}

/// Splits a byte stream into lines and ticks; keeps at most one line of state.
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Skipping the rest of a line that was already rejected as too long.
    skipping: bool,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter {
            buf: Vec::with_capacity(MAX_LINE + 1),
            skipping: false,
        }
    }
}

impl LineSplitter {
    /// Feeds bytes; calls `on_line` for each complete line (not for skipped ones).
    pub fn push(&mut self, mut data: &[u8], mut on_line: impl FnMut(&[u8])) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&data[..nl], &data[nl + 1..]);
            if self.skipping {
                self.skipping = false;
            } else if self.buf.is_empty() {
                on_line(head);
            } else {
                self.buf.extend_from_slice(head);
                on_line(&self.buf);
                self.buf.clear();
            }
            data = rest;
        }
        if self.skipping {
            return;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() > MAX_LINE {
            METRICS.rejected(RejectReason::TooLong);
            self.buf.clear();
            self.skipping = true;
        }
    }
}

/// Handles one line: a tick into `batch`, or a rejection counted.
pub fn accept_line(line: &[u8], ts: u64, arrival: Instant, batch: &mut Batch) {
    if let Some(t) = accept(line) {
        batch.push(Tick {
            symbol: t.symbol,
            fields: t.fields,
            ts: t.ts.unwrap_or(ts),
            arrival,
        });
    }
}

fn read_publisher(mut stream: TcpStream, tx: Sender<Batch>) {
    let mut splitter = LineSplitter::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (ts, arrival) = (now_us(), Instant::now());
        let mut batch = Vec::with_capacity(64);
        splitter.push(&chunk[..n], |line| {
            accept_line(line, ts, arrival, &mut batch);
        });
        for part in batch.chunks(MAX_BATCH) {
            if tx.send(part.to_vec()).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        out
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        assert_eq!(lines(&[b"ab", b"c\nde", b"f\n\ng"]), vec!["abc", "def", ""]);
    }

    #[test]
    fn an_overlong_line_is_skipped_and_the_next_one_kept() {
        let long = vec![b'x'; MAX_LINE + 10];
        assert_eq!(
            lines(&[b"a\n", &long, &long, b"tail\nok\n"]),
            vec!["a", "ok"]
        );
    }
}
