//! Every flag, its default and its `TICKCAST_*` variable, in one place (protocol §9).
//!
//! Parsing is clap's; a bad flag or value exits with status 2 and a message
//! naming it — or naming the environment variable, when that is where the
//! bad value came from. Durations are written `250ms`, `30s`, `5m` or `1h`;
//! switches read from the environment take `true/false`, `1/0`, `yes/no`,
//! `on/off`.

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "tickcast",
    version,
    about = "Real-time market-data ticker broadcaster over WebSocket",
    long_about = "Real-time market-data ticker broadcaster over WebSocket.\n\n\
        With no subcommand, tickcast serves: it reads ticks from the feed (a synthetic \
        market by default), coalesces them to at most one update per symbol per window, \
        and pushes them to WebSocket clients at ws://LISTEN/ws.\n\n\
        Quick start: `tickcast` then open http://127.0.0.1:8080/ for the demo page.\n\
        Every flag can also be set with an environment variable: --ping-interval is \
        TICKCAST_PING_INTERVAL.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a signed token (JWT, HS256) for a user, for operators and tests.
    Token(TokenArgs),
}

/// How a full client queue is handled (protocol §5).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Drop the oldest queued update; the client later gets the latest state.
    DropOldest,
    /// Close the connection with 4008.
    Close,
}

/// What this node does in a cluster.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Feed, coalescer and clients in one process (no NATS).
    All,
    /// Feed and coalescer; publishes updates to NATS; serves no clients.
    Ingest,
    /// Clients; takes updates from NATS; no feed.
    Edge,
}

/// How an edge takes updates from NATS.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusSubscribe {
    /// One subscription per symbol that has clients on this edge.
    Interest,
    /// One subscription for every symbol.
    Wildcard,
}

/// The intervals of `--candle-intervals`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandleIntervals(pub Vec<crate::candle::Interval>);

pub fn parse_candle_intervals(s: &str) -> Result<CandleIntervals, String> {
    crate::candle::parse_intervals(s).map(CandleIntervals)
}

/// `--candle-volume`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandleVolume {
    /// `volume` is the symbol's running total: a bar's volume is how much it grew.
    Cumulative,
    /// `volume` is each trade's size: a bar's volume is their sum.
    Trade,
}

impl ServeArgs {
    /// The candle settings, or `None` when no interval is served.
    pub fn candles(&self) -> Option<crate::candle::CandleConfig> {
        if self.candle_intervals.0.is_empty() {
            return None;
        }
        Some(crate::candle::CandleConfig {
            intervals: self.candle_intervals.0.clone(),
            keep: self.candle_keep as usize,
            volume: match self.candle_volume {
                CandleVolume::Cumulative => crate::candle::VolumeMode::Cumulative,
                CandleVolume::Trade => crate::candle::VolumeMode::Trade,
            },
            clock: match self.feed {
                FeedSource::File(_) => crate::candle::Clock::Feed,
                _ => crate::candle::Clock::Wall,
            },
            window: self.coalesce,
        })
    }
}

/// Where ticks come from (protocol §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedSource {
    Synthetic,
    Tcp(SocketAddr),
    File(PathBuf),
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The HTTP/WebSocket listener address.
    #[arg(
        long,
        env = "TICKCAST_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Tick source: `synthetic`, `tcp://HOST:PORT` (tickcast listens there for NDJSON
    /// publishers) or `file:PATH` (replay).
    #[arg(long, env = "TICKCAST_FEED", default_value = "synthetic", value_name = "SRC", value_parser = parse_feed)]
    pub feed: FeedSource,

    /// A `tcp://` feed line whose `ts` is more than this before or after the time of
    /// receipt is rejected (`ts_out_of_range`); a `file:` replay takes any past `ts` but
    /// none this far in the future. A `ts` above 2^53 − 1 is always rejected.
    #[arg(long, env = "TICKCAST_FEED_TS_SKEW", default_value = "1h", value_name = "D", value_parser = parse_duration)]
    pub feed_ts_skew: Duration,

    /// Most `tcp://` feed publishers connected at once; one more gets
    /// `{"error":"too many publishers"}` and is closed.
    #[arg(long, env = "TICKCAST_FEED_MAX_PUBLISHERS", default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub feed_max_publishers: u32,

    /// A `tcp://` feed publisher that sends nothing for this long is disconnected
    /// (an empty line is a keep-alive).
    #[arg(long, env = "TICKCAST_FEED_IDLE_TIMEOUT", default_value = "60s", value_name = "D", value_parser = parse_duration)]
    pub feed_idle_timeout: Duration,

    /// File holding the feed secret (or set TICKCAST_FEED_SECRET): `tcp://` publishers
    /// must then send `{"auth":"<secret>"}` as their first line within 10s. Required
    /// when the feed listens beyond loopback.
    #[arg(long, env = "TICKCAST_FEED_SECRET_FILE", value_name = "PATH")]
    pub feed_secret_file: Option<PathBuf>,

    /// Most symbols with a value the feed may bring; a line for a new symbol beyond
    /// it is rejected (`symbol_limit`).
    #[arg(long, env = "TICKCAST_MAX_FEED_SYMBOLS", default_value_t = 100_000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_feed_symbols: u32,

    /// Number of symbols of the synthetic feed.
    #[arg(long, env = "TICKCAST_SYMBOLS", default_value_t = 500, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub symbols: u32,

    /// Ticks per second of the synthetic feed.
    #[arg(long, env = "TICKCAST_RATE", default_value_t = 5000.0, value_name = "R", value_parser = parse_positive)]
    pub rate: f64,

    /// Replay speed of a `file:` feed relative to its `ts` pace (0 = as fast as possible).
    #[arg(long, env = "TICKCAST_REPLAY_SPEED", default_value_t = 1.0, value_name = "X", value_parser = parse_non_negative)]
    pub replay_speed: f64,

    /// The per-symbol coalescing window.
    #[arg(long, env = "TICKCAST_COALESCE", default_value = "100ms", value_name = "D", value_parser = parse_duration)]
    pub coalesce: Duration,

    /// Candle intervals served (protocol §4c), e.g. `1s,1m,5m,1h`; empty: no candles.
    #[arg(long, env = "TICKCAST_CANDLE_INTERVALS", default_value = "1s,1m,5m,1h", value_name = "LIST",
          value_parser = parse_candle_intervals)]
    pub candle_intervals: CandleIntervals,

    /// Closed bars kept per candle series (symbol and interval).
    #[arg(long, env = "TICKCAST_CANDLE_KEEP", default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=crate::candle::MAX_KEEP as i64))]
    pub candle_keep: u32,

    /// How the feed's `volume` is read for candles: the symbol's running total, or each trade's size.
    #[arg(
        long,
        env = "TICKCAST_CANDLE_VOLUME",
        value_enum,
        default_value = "cumulative",
        value_name = "HOW"
    )]
    pub candle_volume: CandleVolume,

    /// Per-connection queue entries.
    #[arg(long, env = "TICKCAST_QUEUE", default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue: u32,

    /// What to do when a client's queue is full.
    #[arg(
        long,
        env = "TICKCAST_SLOW_CONSUMER",
        value_enum,
        default_value = "drop-oldest",
        value_name = "P"
    )]
    pub slow_consumer: SlowConsumer,

    /// Interval between server ping frames.
    #[arg(long, env = "TICKCAST_PING_INTERVAL", default_value = "30s", value_name = "D", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A client that sends no frame this long after a ping is dropped.
    #[arg(long, env = "TICKCAST_PONG_TIMEOUT", default_value = "10s", value_name = "D", value_parser = parse_duration)]
    pub pong_timeout: Duration,

    /// Largest inbound message in bytes (larger: close 1009).
    #[arg(long, env = "TICKCAST_MAX_MESSAGE", default_value_t = 4096, value_name = "N",
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub max_message: u32,

    /// Inbound messages per second per connection.
    #[arg(long, env = "TICKCAST_CLIENT_RATE", default_value_t = 10.0, value_name = "R", value_parser = parse_positive)]
    pub client_rate: f64,

    /// Inbound message burst per connection.
    #[arg(long, env = "TICKCAST_CLIENT_BURST", default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub client_burst: u32,

    /// Symbols per connection.
    #[arg(long, env = "TICKCAST_MAX_SYMBOLS", default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_symbols: u32,

    /// File holding the HS256 secret; turns authentication on. The secret may
    /// instead be given in the environment variable TICKCAST_AUTH_SECRET.
    #[arg(long, env = "TICKCAST_AUTH_SECRET_FILE", value_name = "PATH")]
    pub auth_secret_file: Option<PathBuf>,

    /// Allow first-message auth (`auth` as the first message) on upgrades without a token.
    #[arg(long, env = "TICKCAST_ALLOW_AUTH_MESSAGE", value_parser = BoolishValueParser::new())]
    pub allow_auth_message: bool,

    /// How long shutdown waits for clients after sending them 1001.
    #[arg(long, env = "TICKCAST_DRAIN_TIMEOUT", default_value = "5s", value_name = "D", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Shutdown closes clients in waves spread over this long (each told
    /// in a `reconnect` message to wait a random time up to this long, at
    /// least 1s), so they do not all land on the other nodes at once (0:
    /// all at once). A second SIGTERM/SIGINT skips what is left of it.
    #[arg(long, env = "TICKCAST_DRAIN_PERIOD", default_value = "5s", value_name = "D",
          value_parser = parse_drain_period)]
    pub drain_period: Duration,

    /// End every connection after about this long (with a random 10% less,
    /// so they do not end together), the way shutdown does (`reconnect`,
    /// then 1001), so that long-lived connections spread over nodes added
    /// since (0: never).
    #[arg(long, env = "TICKCAST_MAX_CONNECTION_AGE", default_value = "0", value_name = "D",
          value_parser = parse_max_connection_age)]
    pub max_connection_age: Duration,

    /// New WebSocket and SSE sessions per second the node accepts (a token
    /// bucket holding one second's worth; 0: no limit). Beyond it: 503
    /// with Retry-After, before any token is checked, so a reconnect storm
    /// meets a cheap refusal and comes back spread out.
    #[arg(
        long,
        env = "TICKCAST_MAX_HANDSHAKE_RATE",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_handshake_rate: u32,

    /// Time allowed for a connection to complete its HTTP request/upgrade.
    #[arg(long, env = "TICKCAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_name = "D", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Time allowed for first-message auth.
    #[arg(long, env = "TICKCAST_AUTH_TIMEOUT", default_value = "5s", value_name = "D", value_parser = parse_duration)]
    pub auth_timeout: Duration,

    /// This node's part in a cluster: `all` (single node), `ingest` or `edge`.
    #[arg(
        long,
        env = "TICKCAST_ROLE",
        value_enum,
        default_value = "all",
        value_name = "ROLE"
    )]
    pub role: Role,

    /// NATS server(s) of the cluster, e.g. nats://127.0.0.1:4222 (repeat or comma-separate).
    #[arg(
        long = "nats",
        env = "TICKCAST_NATS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub nats: Vec<String>,

    /// Edge: follow only the symbols its clients hold (`interest`) or all (`wildcard`).
    #[arg(
        long,
        env = "TICKCAST_BUS_SUBSCRIBE",
        value_enum,
        default_value = "interest",
        value_name = "HOW"
    )]
    pub bus_subscribe: BusSubscribe,

    /// This node's name, in `welcome` and as the `node` label of every metric
    /// (default: host name and process id).
    #[arg(long, env = "TICKCAST_NODE", value_name = "NAME", value_parser = parse_node)]
    pub node: Option<String>,

    /// Also serve HTTP (for `/metrics`, `/readyz`) on this address of this node
    /// alone, for when `--listen` is shared with `--reuse-port`.
    #[arg(long, env = "TICKCAST_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Let several tickcast processes listen on the same address (SO_REUSEPORT;
    /// the kernel spreads new connections over them).
    #[arg(long, env = "TICKCAST_REUSE_PORT", value_parser = BoolishValueParser::new())]
    pub reuse_port: bool,

    /// Kernel send buffer per client socket in bytes (0: the OS default, autotuned).
    #[arg(
        long,
        env = "TICKCAST_SEND_BUFFER",
        default_value_t = 0,
        value_name = "BYTES"
    )]
    pub send_buffer: u32,

    /// Most WebSocket connections at once; beyond it an upgrade gets 503 with
    /// Retry-After (default: derived from the open-files limit, keeping
    /// descriptors in reserve for health checks, metrics and the feed).
    #[arg(long, env = "TICKCAST_MAX_CONNECTIONS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Most connections in their HTTP phase (handshake, plain requests) at
    /// once; beyond it a new connection gets 503 and is closed (default: an
    /// eighth of the open-files limit, at most 1024).
    #[arg(long, env = "TICKCAST_MAX_HANDSHAKES", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_handshakes: Option<u32>,

    /// Largest HTTP request head (request line and headers) in bytes; larger: 431.
    #[arg(long, env = "TICKCAST_MAX_HEADER_SIZE", default_value_t = 16384, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    pub max_header_size: u32,

    /// Web pages allowed to connect: `*` (any) or a comma-separated list of
    /// origins (`https://app.example.com`). A browser upgrade or `/snapshot`
    /// call from another origin gets 403; requests without `Origin` and pages
    /// served by tickcast itself are always allowed.
    #[arg(long, env = "TICKCAST_ALLOWED_ORIGINS", default_value = "*", value_name = "LIST",
          value_parser = crate::http::origin::Origins::parse)]
    pub allowed_origins: crate::http::origin::Origins,

    /// Corking: how long a client's updates may wait so that several leave in
    /// one write (0: each pass's updates at once; at most 1s). Bounds the
    /// added latency; the first updates after a quiet spell leave at once.
    #[arg(long, env = "TICKCAST_MAX_DELAY", default_value = "10ms", value_name = "D",
          value_parser = parse_max_delay)]
    pub max_delay: Duration,

    /// Unsent bytes the kernel may hold per client socket (TCP_NOTSENT_LOWAT;
    /// 0: no bound). Keeps a slow reader's backlog in its queue, where it is
    /// conflated, rather than stale in the socket.
    #[arg(
        long,
        env = "TICKCAST_NOTSENT_LOWAT",
        default_value_t = 16384,
        value_name = "BYTES"
    )]
    pub notsent_lowat: u32,

    /// Sessions (WebSocket or SSE) one client address may hold at once
    /// (0: no limit); beyond it, 429 with Retry-After.
    #[arg(
        long,
        env = "TICKCAST_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_connections_per_ip: u32,

    /// Proxies (addresses or networks, comma-separated: `127.0.0.1,10.0.0.0/8`)
    /// whose X-Forwarded-For names the client, for per-address limits and
    /// logs; anyone else's is ignored.
    #[arg(long, env = "TICKCAST_TRUSTED_PROXIES", default_value = "", value_name = "LIST",
          value_parser = crate::http::proxies::TrustedProxies::parse)]
    pub trusted_proxies: crate::http::proxies::TrustedProxies,

    /// Serve HTTPS and wss:// on --listen with this certificate chain (PEM;
    /// the server's certificate first). Reloaded on SIGHUP or when it changes.
    #[arg(
        long,
        env = "TICKCAST_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "TICKCAST_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Symbols without a value (nothing published yet) one connection may
    /// wait for; beyond it, `error` `unknown_symbol`.
    #[arg(long, env = "TICKCAST_MAX_UNKNOWN_SYMBOLS", default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_unknown_symbols: u32,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The user (`sub` claim).
    #[arg(long)]
    pub sub: String,
    /// Entitlements: symbols or prefixes ending in `*`, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Lifetime of the token (query-string tokens must live at most 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Token id (`jti`); a random one is used when omitted. A token with a
    /// `jti` is accepted once, however it is presented.
    #[arg(long, conflicts_with = "reusable")]
    pub jti: Option<String>,
    /// No `jti`: the token may be presented any number of times until it
    /// expires (in an `Authorization` header; query-string tokens need a `jti`).
    #[arg(long)]
    pub reusable: bool,
    /// File holding the HS256 secret.
    #[arg(long, env = "TICKCAST_AUTH_SECRET_FILE", value_name = "PATH")]
    pub auth_secret_file: Option<PathBuf>,
}

impl Cli {
    /// Parses the command line and the environment. On a bad value, the
    /// error names the flag, or the `TICKCAST_*` variable when the value came
    /// from the environment (the flag not being on the command line).
    pub fn parse_or_explain() -> Result<Cli, clap::Error> {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        Cli::try_parse_from(&args).map_err(|e| name_the_variable(e, &args))
    }
}

/// Rewrites a bad-value error whose value came from a `TICKCAST_*` variable.
fn name_the_variable(e: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let long = arg
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or("");
    let on_command_line = args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")))
    });
    let cmd = Cli::command();
    let env = std::iter::once(&cmd)
        .chain(cmd.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .and_then(|v| v.to_str())
        .map(str::to_string);
    match env {
        Some(var) if !on_command_line && std::env::var_os(&var).is_some() => {
            let rendered = e.render().to_string();
            let detail = rendered
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            let mut cmd = Cli::command();
            cmd.error(
                ErrorKind::ValueValidation,
                format!("environment variable {var}: {detail}"),
            )
        }
        _ => e,
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h` (also `1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` has no unit: write e.g. 250ms, 30s, 5m"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write e.g. 250ms, 30s, 5m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}`: use ms, s, m or h"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 365.0 * 86400.0 {
        return Err(format!("`{s}` is out of range: must be above zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration as [`parse_duration`] reads it, or `0` (none).
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// `--max-delay`: a duration up to one second, or `0`. Corking longer than
/// that would hold updates past the coalescing promise for nothing.
pub fn parse_max_delay(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d > Duration::from_secs(1) {
        return Err(format!("`{s}` is too long: at most 1s (0: no corking)"));
    }
    Ok(d)
}

/// `--max-connection-age`: `0` (none) or at least a second.
pub fn parse_max_connection_age(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if !d.is_zero() && d < Duration::from_secs(1) {
        return Err(format!("`{s}` is too short: at least 1s (0: no maximum)"));
    }
    Ok(d)
}

/// `--drain-period`: `0` or a duration up to ten minutes.
pub fn parse_drain_period(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d > Duration::from_secs(600) {
        return Err(format!("`{s}` is too long: at most 10m"));
    }
    Ok(d)
}

/// A finite number above zero.
pub fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// A finite number of at least zero.
pub fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("`{s}` is not a number ≥ 0")),
    }
}

/// A node name: 1 to 64 characters from `A-Z a-z 0-9 . _ : -`.
pub fn parse_node(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}`: a node name is 1 to 64 characters from A-Z a-z 0-9 . _ : -"
        ))
    }
}

/// The default node name: host name and process id.
pub fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let host = if host.is_empty() {
        "tickcast".to_string()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

/// Parses `synthetic`, `tcp://HOST:PORT` or `file:PATH`.
pub fn parse_feed(s: &str) -> Result<FeedSource, String> {
    if s == "synthetic" {
        Ok(FeedSource::Synthetic)
    } else if let Some(addr) = s.strip_prefix("tcp://") {
        use std::net::ToSocketAddrs;
        addr.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(FeedSource::Tcp)
            .ok_or_else(|| format!("`{s}`: `{addr}` is not a HOST:PORT address"))
    } else if let Some(path) = s.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`file:` needs a path, e.g. file:ticks.ndjson".into());
        }
        Ok(FeedSource::File(PathBuf::from(path)))
    } else {
        Err(format!(
            "`{s}` is not a feed: use synthetic, tcp://HOST:PORT or file:PATH"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "30", "s", "10x", "0s", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn feeds() {
        assert_eq!(parse_feed("synthetic").unwrap(), FeedSource::Synthetic);
        assert_eq!(
            parse_feed("tcp://127.0.0.1:9000").unwrap(),
            FeedSource::Tcp("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(
            parse_feed("file:/tmp/x").unwrap(),
            FeedSource::File("/tmp/x".into())
        );
        for bad in ["tcp://nope", "file:", "udp://1.2.3.4:5", "synth"] {
            assert!(parse_feed(bad).is_err(), "{bad}");
        }
    }
}
