//! Drives the server's feed (`--feed tcp://…`): NDJSON ticks at `--feed-rate`,
//! round-robin over the universe so that each symbol's ticks are as far apart
//! as the rate allows. It counts what it sent per symbol, which, with the
//! subscriber counts, tells how many messages the clients should receive.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends until `stop` is set; returns ticks sent per symbol.
pub fn drive(
    addr: &str,
    rate: f64,
    universe: &[String],
    stop: Arc<AtomicBool>,
) -> Result<BTreeMap<String, u64>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("--feed tcp://{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    let start = Instant::now();
    let mut total = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Acquire) {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        buf.clear();
        let ts = crate::now_us();
        while total < due {
            let name = &universe[total as usize % universe.len()];
            let n = sent.entry(name.clone()).or_default();
            *n += 1;
            let price = 100.0 + (*n % 1000) as f64 / 100.0;
            let _ = writeln!(
                buf,
                r#"{{"symbol":"{name}","last":{price},"volume":{n},"ts":{ts}}}"#
            );
            total += 1;
        }
        if !buf.is_empty() {
            stream
                .write_all(&buf)
                .map_err(|e| format!("--feed tcp://{addr}: {e}"))?;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(sent)
}
