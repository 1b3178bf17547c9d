//! loadgen's flags. Bad values exit 2 with a message naming the flag (clap's usage errors).

use clap::Parser;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;
use tickcast::config::{parse_duration, parse_non_negative, parse_positive};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    version,
    about = "Holds many WebSocket connections to tickcast and measures latency",
    long_about = "Holds many WebSocket connections to tickcast and measures latency.\n\n\
        Opens --connections connections (split over worker processes and loopback source \
        addresses when one process cannot hold them), subscribes each to --symbols-per-conn \
        symbols with Zipf-skewed popularity, and measures fan-out latency (receipt - pub), \
        end-to-end latency (receipt - ts), handshake latency, messages/s and seq gaps.\n\n\
        Example: loadgen --url ws://127.0.0.1:8080/ws --connections 15000 --duration 30s"
)]
pub struct Args {
    /// WebSocket URL of a tickcast node (repeat for several; connections alternate).
    #[arg(long = "url", required_unless_present = "worker_spec", value_parser = parse_url)]
    pub urls: Vec<WsUrl>,

    /// Connections to hold.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub connections: u64,

    /// New connections per second (all workers together).
    #[arg(long, default_value_t = 5000.0, value_parser = parse_positive)]
    pub ramp: f64,

    /// Worker processes: `auto` (enough for the open-files limit, at least one per core) or a number.
    #[arg(long, default_value = "auto", value_parser = parse_procs)]
    pub procs: Procs,

    /// Loopback source addresses, e.g. `127.0.0.2-127.0.0.20` or `127.0.0.2,127.0.0.3`
    /// (default: enough of 127.0.0.2, .3 … for the connections).
    #[arg(long, value_parser = parse_sources)]
    pub source_addrs: Option<Vec<Ipv4Addr>>,

    /// Symbols each connection subscribes to.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub symbols_per_conn: u32,

    /// The symbol universe, comma-separated (default: the server's /snapshot).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,

    /// Zipf exponent of symbol popularity (0: uniform).
    #[arg(long, default_value_t = 1.0, value_parser = parse_non_negative)]
    pub zipf: f64,

    /// Drive the server's feed too: `tcp://HOST:PORT` of its `--feed tcp://` listener.
    #[arg(long, value_parser = parse_feed)]
    pub feed: Option<String>,

    /// Ticks per second sent to --feed (round-robin over the universe).
    #[arg(long, default_value_t = 1000.0, value_parser = parse_positive)]
    pub feed_rate: f64,

    /// Symbols to make up when driving the feed and no --symbols are given.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub universe: u32,

    /// How long to measure once every connection is up.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Do not reconnect dropped connections.
    #[arg(long)]
    pub no_reconnect: bool,

    /// The server's token secret (else TICKCAST_AUTH_SECRET): every
    /// connection attempt then carries a fresh one-time token.
    #[arg(long, value_name = "PATH")]
    pub auth_secret_file: Option<PathBuf>,

    /// Where the token goes: `header` (Authorization: Bearer) or `query`
    /// (?token=; such tokens live at most 300 s, the server's limit, and the
    /// server ends a connection when its token expires: header tokens suit
    /// runs longer than that).
    #[arg(long, default_value = "header", value_parser = ["header", "query"])]
    pub token_in: String,

    /// Lifetime of each token.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub token_ttl: Duration,

    /// Write the report as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Serve live figures for Prometheus at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Internal: run as a worker with this plan.
    #[arg(long, hide = true)]
    pub worker_spec: Option<String>,
}

/// A `ws://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WsUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl WsUrl {
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for WsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ws://{}:{}{}", self.host, self.port, self.path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Procs {
    Auto,
    Fixed(u32),
}

pub fn parse_url(s: &str) -> Result<WsUrl, String> {
    let rest = s
        .strip_prefix("ws://")
        .ok_or_else(|| format!("`{s}`: only ws:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/ws"),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}`: the URL needs a port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("`{s}`: `{port}` is not a port"))?;
    if host.is_empty() {
        return Err(format!("`{s}`: no host"));
    }
    Ok(WsUrl {
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

fn parse_procs(s: &str) -> Result<Procs, String> {
    if s == "auto" {
        return Ok(Procs::Auto);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=64).contains(&n) => Ok(Procs::Fixed(n)),
        _ => Err(format!("`{s}`: use auto or a number from 1 to 64")),
    }
}

/// `127.0.0.2-127.0.0.20` or `127.0.0.2,127.0.0.3`; loopback only.
pub fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        let b: Ipv4Addr = b
            .trim()
            .parse()
            .map_err(|_| format!("`{b}` is not an IPv4 address"))?;
        let (lo, hi) = (u32::from(a), u32::from(b));
        if lo > hi || hi - lo > 65_535 {
            return Err(format!("`{part}` is not a range from low to high"));
        }
        for ip in lo..=hi {
            let ip = Ipv4Addr::from(ip);
            if !ip.is_loopback() {
                return Err(format!(
                    "`{ip}`: source addresses must be loopback (127.0.0.0/8)"
                ));
            }
            out.push(ip);
        }
    }
    Ok(out)
}

fn parse_feed(s: &str) -> Result<String, String> {
    let addr = s
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("`{s}`: write tcp://HOST:PORT"))?;
    if addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_none()
    {
        return Err(format!("`{s}`: write tcp://HOST:PORT"));
    }
    Ok(addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("ws://127.0.0.1:8080/ws").unwrap(),
            WsUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/ws".into()
            }
        );
        assert_eq!(parse_url("ws://localhost:9").unwrap().path, "/ws");
        for bad in [
            "http://x:1/ws",
            "ws://x/ws",
            "ws://x:port/ws",
            "ws://:80/ws",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_ranges_are_loopback_only() {
        assert_eq!(parse_sources("127.0.0.2-127.0.0.4").unwrap().len(), 3);
        assert_eq!(parse_sources("127.0.0.2,127.0.1.1").unwrap().len(), 2);
        assert!(parse_sources("10.0.0.1").is_err());
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("127.0.0.x").is_err());
    }
}
