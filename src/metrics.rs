//! Every metric of protocol §10, defined once, and their Prometheus text exposition.
//!
//! Metrics are plain atomics in one static so that the hot path pays one
//! relaxed add and nothing else: no registry, no labels looked up at run time
//! (each label value is its own counter). Process metrics are read from
//! `/proc/self` when `/metrics` is scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A monotonically increasing count.
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Relaxed);
        }
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// A value that goes up and down.
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
    pub fn set(&self, n: i64) {
        self.0.store(n, Relaxed);
    }
}

impl Default for Gauge {
    fn default() -> Self {
        Self::new()
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets: 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];

/// A Prometheus histogram over [`LATENCY_BUCKETS`], observed in microseconds.
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    sum_us: AtomicU64,
}

/// Per-batch accumulation of histogram observations, added to a [`Histogram`] at once
/// so that a writer touching shared cache lines does so once per batch, not per message.
#[derive(Default)]
pub struct LocalHistogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum_us: u64,
}

fn bucket_index(us: u64) -> usize {
    let secs = us as f64 / 1e6;
    LATENCY_BUCKETS
        .iter()
        .position(|&le| secs <= le)
        .unwrap_or(LATENCY_BUCKETS.len() - 1)
}

impl LocalHistogram {
    pub fn observe_us(&mut self, us: u64) {
        self.buckets[bucket_index(us)] += 1;
        self.sum_us += us;
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len()],
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe_us(&self, us: u64) {
        self.buckets[bucket_index(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn merge(&self, local: &LocalHistogram) {
        for (b, &n) in self.buckets.iter().zip(local.buckets.iter()) {
            if n > 0 {
                b.fetch_add(n, Relaxed);
            }
        }
        self.sum_us.fetch_add(local.sum_us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a WebSocket connection ended (`tickcast_disconnects_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DisconnectReason {
    Client = 0,
    Heartbeat,
    SlowConsumer,
    RateLimit,
    Protocol,
    Auth,
    Shutdown,
    /// `--max-connection-age` reached (ended with `reconnect` and 1001).
    MaxAge,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 8] = [
        DisconnectReason::Client,
        DisconnectReason::Heartbeat,
        DisconnectReason::SlowConsumer,
        DisconnectReason::RateLimit,
        DisconnectReason::Protocol,
        DisconnectReason::Auth,
        DisconnectReason::Shutdown,
        DisconnectReason::MaxAge,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DisconnectReason::Client => "client",
            DisconnectReason::Heartbeat => "heartbeat",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::RateLimit => "rate_limit",
            DisconnectReason::Protocol => "protocol",
            DisconnectReason::Auth => "auth",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::MaxAge => "max_age",
        }
    }

    pub fn from_u8(v: u8) -> Option<DisconnectReason> {
        Self::ALL.get(v as usize).copied()
    }
}

/// Why a feed line was rejected (`tickcast_feed_rejected_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    NotJson = 0,
    NotObject,
    NoSymbol,
    InvalidSymbol,
    WrongType,
    TooLong,
    /// None of `bid`, `ask`, `last`, `volume`: it would only make a new `seq`.
    NoFields,
    /// `ts` too far from the time of receipt, or above 2^53 − 1.
    TsOutOfRange,
    /// A new symbol while the hub already holds `--max-feed-symbols` with a value.
    SymbolLimit,
    /// A line cut off when its publisher was disconnected (idle, reset).
    Truncated,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::NotJson,
        RejectReason::NotObject,
        RejectReason::NoSymbol,
        RejectReason::InvalidSymbol,
        RejectReason::WrongType,
        RejectReason::TooLong,
        RejectReason::NoFields,
        RejectReason::TsOutOfRange,
        RejectReason::SymbolLimit,
        RejectReason::Truncated,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::NotJson => "not_json",
            RejectReason::NotObject => "not_object",
            RejectReason::NoSymbol => "no_symbol",
            RejectReason::InvalidSymbol => "invalid_symbol",
            RejectReason::WrongType => "wrong_type",
            RejectReason::TooLong => "too_long",
            RejectReason::NoFields => "no_fields",
            RejectReason::TsOutOfRange => "ts_out_of_range",
            RejectReason::SymbolLimit => "symbol_limit",
            RejectReason::Truncated => "truncated",
        }
    }
}

/// What became of a feed publisher's connection (`tickcast_feed_publishers_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublisherResult {
    /// Admitted (and authenticated, when a feed secret is set).
    Accepted = 0,
    /// Refused: `--feed-max-publishers` already connected.
    OverCapacity,
    /// Refused: no valid `auth` line first, in time.
    Unauthorized,
    /// An admitted publisher disconnected after `--feed-idle-timeout` of silence.
    IdleTimeout,
}

impl PublisherResult {
    pub const ALL: [PublisherResult; 4] = [
        PublisherResult::Accepted,
        PublisherResult::OverCapacity,
        PublisherResult::Unauthorized,
        PublisherResult::IdleTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PublisherResult::Accepted => "accepted",
            PublisherResult::OverCapacity => "over_capacity",
            PublisherResult::Unauthorized => "unauthorized",
            PublisherResult::IdleTimeout => "idle_timeout",
        }
    }
}

/// Outcome of an upgrade attempt (`tickcast_connections_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeResult {
    Accepted = 0,
    Unauthorized,
    Rejected,
}

/// Why a connection or an upgrade was refused before any session began
/// (`tickcast_refused_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid WebSocket upgrade (no Host, HTTP/1.0, a bad key …): 400.
    BadRequest = 0,
    /// A browser `Origin` that `--allowed-origins` does not list: 403.
    Origin,
    /// `--max-connections` reached: 503.
    MaxConnections,
    /// `--max-handshakes` connections were already in their HTTP phase: 503.
    Handshakes,
    /// The process could not accept (out of file descriptors): counted per failure.
    AcceptFailed,
    /// Shutting down, or a cluster ingest (serves no clients): 503.
    Unavailable,
    /// `/snapshot` requests already being answered at once: 503.
    Snapshots,
    /// A TLS handshake failed or did not finish within `--handshake-timeout`.
    TlsHandshake,
    /// `--max-connections-per-ip` reached for the client's address: 429.
    PerAddress,
    /// `--max-handshake-rate` reached: 503 with `Retry-After`.
    HandshakeRate,
}

impl Refusal {
    pub const ALL: [Refusal; 10] = [
        Refusal::BadRequest,
        Refusal::Origin,
        Refusal::MaxConnections,
        Refusal::Handshakes,
        Refusal::AcceptFailed,
        Refusal::Unavailable,
        Refusal::Snapshots,
        Refusal::TlsHandshake,
        Refusal::PerAddress,
        Refusal::HandshakeRate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Origin => "origin",
            Refusal::MaxConnections => "max_connections",
            Refusal::Handshakes => "handshakes",
            Refusal::AcceptFailed => "accept_failed",
            Refusal::Unavailable => "unavailable",
            Refusal::Snapshots => "snapshots",
            Refusal::TlsHandshake => "tls_handshake",
            Refusal::PerAddress => "per_address",
            Refusal::HandshakeRate => "handshake_rate",
        }
    }
}

/// All of tickcast's own metrics.
pub struct Metrics {
    pub connections: Gauge,
    pub connections_total: [Counter; 3],
    pub subscriptions: Gauge,
    pub feed_ticks: Counter,
    pub feed_rejected: [Counter; RejectReason::ALL.len()],
    /// TCP feed publishers connected now (authenticating ones included).
    pub feed_publishers: Gauge,
    pub feed_publishers_total: [Counter; PublisherResult::ALL.len()],
    pub updates: Counter,
    pub messages_sent: Counter,
    pub dropped: Counter,
    pub disconnects: [Counter; DisconnectReason::ALL.len()],
    pub fanout_latency: Histogram,
    pub coalesce_delay: Histogram,
    // What the server refused, and its limits (the hardening's metrics).
    pub refused: [Counter; Refusal::ALL.len()],
    pub auth_failures: [Counter; crate::auth::TokenError::ALL.len()],
    pub client_errors: [Counter; crate::protocol::ErrorCode::ALL.len()],
    pub handshakes: Gauge,
    pub max_connections: Gauge,
    // Corking: how many frames each write carries.
    pub writes: Counter,
    pub frames_written: Counter,
    // Queue depths, sampled by the hub once a second (for soak runs and alerts).
    pub queued_updates: Gauge,
    pub queued_updates_max: Gauge,
    pub feed_queue: Gauge,
    // Candles (protocol §4c).
    pub candle_updates: Counter,
    pub candle_late: [Counter; crate::candle::MAX_INTERVALS],
}

/// The interval names of `tickcast_candle_late_ticks_total`, set once at start.
pub static CANDLE_INTERVALS: std::sync::OnceLock<Vec<Box<str>>> = std::sync::OnceLock::new();

/// The process-wide metrics.
pub static METRICS: Metrics = Metrics {
    connections: Gauge::new(),
    connections_total: [const { Counter::new() }; 3],
    subscriptions: Gauge::new(),
    feed_ticks: Counter::new(),
    feed_rejected: [const { Counter::new() }; RejectReason::ALL.len()],
    feed_publishers: Gauge::new(),
    feed_publishers_total: [const { Counter::new() }; PublisherResult::ALL.len()],
    updates: Counter::new(),
    messages_sent: Counter::new(),
    dropped: Counter::new(),
    disconnects: [const { Counter::new() }; DisconnectReason::ALL.len()],
    fanout_latency: Histogram::new(),
    coalesce_delay: Histogram::new(),
    refused: [const { Counter::new() }; Refusal::ALL.len()],
    auth_failures: [const { Counter::new() }; crate::auth::TokenError::ALL.len()],
    client_errors: [const { Counter::new() }; crate::protocol::ErrorCode::ALL.len()],
    handshakes: Gauge::new(),
    max_connections: Gauge::new(),
    writes: Counter::new(),
    frames_written: Counter::new(),
    queued_updates: Gauge::new(),
    queued_updates_max: Gauge::new(),
    feed_queue: Gauge::new(),
    candle_updates: Counter::new(),
    candle_late: [const { Counter::new() }; crate::candle::MAX_INTERVALS],
};

impl Metrics {
    pub fn upgrade(&self, result: UpgradeResult) {
        self.connections_total[result as usize].inc();
    }
    pub fn rejected(&self, reason: RejectReason) {
        self.feed_rejected[reason as usize].inc();
    }
    pub fn publisher(&self, result: PublisherResult) {
        self.feed_publishers_total[result as usize].inc();
    }
    pub fn disconnect(&self, reason: DisconnectReason) {
        self.disconnects[reason as usize].inc();
    }
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }
    pub fn auth_failure(&self, e: crate::auth::TokenError) {
        if let Some(i) = crate::auth::TokenError::ALL.iter().position(|x| *x == e) {
            self.auth_failures[i].inc();
        }
    }
    /// A tick too late for its bar of interval `i` (the bar had closed).
    pub fn candle_late(&self, i: usize) {
        if let Some(c) = self.candle_late.get(i) {
            c.inc();
        }
    }
    pub fn client_error(&self, code: crate::protocol::ErrorCode) {
        self.client_errors[code as usize].inc();
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    header(out, name, "histogram", help);
    let mut cumulative = 0;
    for (le, b) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
        cumulative += b.load(Relaxed);
        if le.is_infinite() {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        } else {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
    }
    let sum = h.sum_us.load(Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
}

/// The whole `/metrics` page; `ready` is what `/readyz` answers now. Every
/// `tickcast_*` series carries `node="…"` so that a cluster's nodes can be told
/// apart however they are scraped (`node` is a checked name: no quoting needed).
pub fn render(ready: bool, node: &str) -> String {
    with_node_label(&render_series(ready), node)
}

/// A sample line without its `node` label.
pub fn strip_node_label(line: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = line.find("node=\"") else {
        return line.into();
    };
    let Some(len) = line[start + 6..].find('"') else {
        return line.into();
    };
    let (before, after) = (&line[..start], &line[start + 6 + len + 1..]);
    if before.ends_with('{') && after.starts_with('}') {
        format!("{}{}", &before[..before.len() - 1], &after[1..]).into()
    } else if let Some(rest) = after.strip_prefix(',') {
        format!("{before}{rest}").into()
    } else {
        format!("{}{after}", before.trim_end_matches(',')).into()
    }
}

/// The value of `series` (e.g. `tickcast_disconnects_total{reason="client"}`)
/// in a `/metrics` page, whatever `node` label it carries.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let l = strip_node_label(l);
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn with_node_label(page: &str, node: &str) -> String {
    let mut out = String::with_capacity(page.len() + page.len() / 4);
    for line in page.lines() {
        if line.starts_with("tickcast_") {
            match line.find(['{', ' ']) {
                Some(i) if line.as_bytes()[i] == b'{' => {
                    let _ = writeln!(out, "{}{{node=\"{node}\",{}", &line[..i], &line[i + 1..]);
                }
                Some(i) => {
                    let _ = writeln!(out, "{}{{node=\"{node}\"}}{}", &line[..i], &line[i..]);
                }
                None => {
                    let _ = writeln!(out, "{line}");
                }
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn render_series(ready: bool) -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(8192);
    header(
        &mut out,
        "tickcast_ready",
        "gauge",
        "1 while /readyz answers 200, else 0.",
    );
    let _ = writeln!(out, "tickcast_ready {}", u8::from(ready));
    header(
        &mut out,
        "tickcast_connections",
        "gauge",
        "Open WebSocket connections.",
    );
    let _ = writeln!(out, "tickcast_connections {}", m.connections.get());
    header(
        &mut out,
        "tickcast_connections_total",
        "counter",
        "WebSocket upgrade attempts by result.",
    );
    for (label, c) in ["accepted", "unauthorized", "rejected"]
        .iter()
        .zip(&m.connections_total)
    {
        let _ = writeln!(
            out,
            "tickcast_connections_total{{result=\"{label}\"}} {}",
            c.get()
        );
    }
    header(
        &mut out,
        "tickcast_subscriptions",
        "gauge",
        "Subscribed (connection, symbol) pairs.",
    );
    let _ = writeln!(out, "tickcast_subscriptions {}", m.subscriptions.get());
    header(
        &mut out,
        "tickcast_feed_ticks_total",
        "counter",
        "Ticks accepted from the feed.",
    );
    let _ = writeln!(out, "tickcast_feed_ticks_total {}", m.feed_ticks.get());
    header(
        &mut out,
        "tickcast_feed_rejected_total",
        "counter",
        "Feed lines rejected, by reason.",
    );
    for (r, c) in RejectReason::ALL.iter().zip(&m.feed_rejected) {
        let _ = writeln!(
            out,
            "tickcast_feed_rejected_total{{reason=\"{}\"}} {}",
            r.label(),
            c.get()
        );
    }
    header(
        &mut out,
        "tickcast_feed_publishers",
        "gauge",
        "TCP feed publishers connected now.",
    );
    let _ = writeln!(out, "tickcast_feed_publishers {}", m.feed_publishers.get());
    header(
        &mut out,
        "tickcast_feed_publishers_total",
        "counter",
        "TCP feed publisher connections by result.",
    );
    for (r, c) in PublisherResult::ALL.iter().zip(&m.feed_publishers_total) {
        let _ = writeln!(
            out,
            "tickcast_feed_publishers_total{{result=\"{}\"}} {}",
            r.label(),
            c.get()
        );
    }
    header(
        &mut out,
        "tickcast_updates_total",
        "counter",
        "Updates released by the coalescer.",
    );
    let _ = writeln!(out, "tickcast_updates_total {}", m.updates.get());
    header(
        &mut out,
        "tickcast_candle_updates_total",
        "counter",
        "Candle messages published: forming bars' updates and closes.",
    );
    let _ = writeln!(
        out,
        "tickcast_candle_updates_total {}",
        m.candle_updates.get()
    );
    if let Some(names) = CANDLE_INTERVALS.get().filter(|n| !n.is_empty()) {
        header(
            &mut out,
            "tickcast_candle_late_ticks_total",
            "counter",
            "Ticks whose bar of that interval had already closed (not applied to it).",
        );
        for (name, c) in names.iter().zip(&m.candle_late) {
            let _ = writeln!(
                out,
                "tickcast_candle_late_ticks_total{{interval=\"{name}\"}} {}",
                c.get()
            );
        }
    }
    header(
        &mut out,
        "tickcast_messages_sent_total",
        "counter",
        "Tick messages written to clients.",
    );
    let _ = writeln!(
        out,
        "tickcast_messages_sent_total {}",
        m.messages_sent.get()
    );
    header(
        &mut out,
        "tickcast_dropped_total",
        "counter",
        "Queue entries dropped on overflow.",
    );
    let _ = writeln!(out, "tickcast_dropped_total {}", m.dropped.get());
    header(
        &mut out,
        "tickcast_disconnects_total",
        "counter",
        "WebSocket disconnects by reason.",
    );
    for (r, c) in DisconnectReason::ALL.iter().zip(&m.disconnects) {
        let _ = writeln!(
            out,
            "tickcast_disconnects_total{{reason=\"{}\"}} {}",
            r.label(),
            c.get()
        );
    }
    histogram(
        &mut out,
        "tickcast_fanout_latency_seconds",
        "From an update's release by the coalescer to its write to a client's socket.",
        &m.fanout_latency,
    );
    histogram(
        &mut out,
        "tickcast_coalesce_delay_seconds",
        "From a tick's arrival to the release of the update that carries it.",
        &m.coalesce_delay,
    );
    render_refusals(&mut out);
    process_metrics(&mut out);
    out
}

/// What the server refused and why, and the limits it enforces.
fn render_refusals(out: &mut String) {
    let m = &METRICS;
    header(
        out,
        "tickcast_refused_total",
        "counter",
        "Connections and upgrades refused before a session began, by reason.",
    );
    for (r, c) in Refusal::ALL.iter().zip(&m.refused) {
        let _ = writeln!(
            out,
            "tickcast_refused_total{{reason=\"{}\"}} {}",
            r.label(),
            c.get()
        );
    }
    header(
        out,
        "tickcast_auth_failures_total",
        "counter",
        "Tokens refused, by reason.",
    );
    for (e, c) in crate::auth::TokenError::ALL.iter().zip(&m.auth_failures) {
        let _ = writeln!(
            out,
            "tickcast_auth_failures_total{{reason=\"{}\"}} {}",
            e.label(),
            c.get()
        );
    }
    header(
        out,
        "tickcast_client_errors_total",
        "counter",
        "error replies sent to clients, by code.",
    );
    for (e, c) in crate::protocol::ErrorCode::ALL.iter().zip(&m.client_errors) {
        let _ = writeln!(
            out,
            "tickcast_client_errors_total{{code=\"{}\"}} {}",
            e.as_str(),
            c.get()
        );
    }
    header(
        out,
        "tickcast_handshakes",
        "gauge",
        "Connections in their HTTP phase (before an upgrade or between requests).",
    );
    let _ = writeln!(out, "tickcast_handshakes {}", m.handshakes.get());
    header(
        out,
        "tickcast_max_connections",
        "gauge",
        "The --max-connections limit in force.",
    );
    let _ = writeln!(out, "tickcast_max_connections {}", m.max_connections.get());
    header(
        out,
        "tickcast_writes_total",
        "counter",
        "Writes to client connections (one writev of whatever was pending).",
    );
    let _ = writeln!(out, "tickcast_writes_total {}", m.writes.get());
    header(
        out,
        "tickcast_frames_written_total",
        "counter",
        "Frames those writes completed; divided by tickcast_writes_total: frames per write.",
    );
    let _ = writeln!(
        out,
        "tickcast_frames_written_total {}",
        m.frames_written.get()
    );
    for (name, help, g) in [
        (
            "tickcast_queued_updates",
            "Live updates queued for clients' writers, all clients (sampled each second).",
            &m.queued_updates,
        ),
        (
            "tickcast_queued_updates_max",
            "Live updates queued for the most backed-up client (at most --queue; sampled each second).",
            &m.queued_updates_max,
        ),
        (
            "tickcast_feed_queue",
            "Batches of feed ticks waiting for the hub (sampled each second).",
            &m.feed_queue,
        ),
    ] {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {}", g.get());
    }
}

/// `process_*` metrics as the Prometheus client libraries define them.
fn process_metrics(out: &mut String) {
    // SAFETY: sysconf and getrlimit only read process-wide values.
    let (ticks_per_sec, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at ") ".
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split(' ').collect())
            .unwrap_or_default();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // Indices relative to field 3 (state): utime=14, stime=15, starttime=22, vsize=23, rss=24.
        let cpu = (field(11) + field(12)) / ticks_per_sec;
        header(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
        header(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(
            out,
            "process_resident_memory_bytes {}",
            field(21) * page_size
        );
        header(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        let _ = writeln!(out, "process_virtual_memory_bytes {}", field(20));
        header(
            out,
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
        );
        let _ = writeln!(out, "process_threads {}", field(17));
        if let Some(boot) = boot_time() {
            header(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
            );
            let _ = writeln!(
                out,
                "process_start_time_seconds {}",
                boot + field(19) / ticks_per_sec
            );
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        header(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {}", dir.count());
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        header(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
        );
        let _ = writeln!(out, "process_max_fds {}", limit.rlim_cur);
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tickcast_series_gets_the_node_label() {
        let page =
            "# HELP tickcast_x a\ntickcast_x 1\ntickcast_y{reason=\"a\"} 2\nprocess_open_fds 3\n";
        assert_eq!(
            with_node_label(page, "edge-1"),
            "# HELP tickcast_x a\ntickcast_x{node=\"edge-1\"} 1\ntickcast_y{node=\"edge-1\",reason=\"a\"} 2\nprocess_open_fds 3\n"
        );
    }

    #[test]
    fn samples_are_found_whatever_their_node() {
        let page = with_node_label(
            "tickcast_x 1\ntickcast_y{reason=\"a\"} 2\nprocess_open_fds 3\n",
            "n1",
        );
        assert_eq!(sample(&page, "tickcast_x"), Some(1.0));
        assert_eq!(sample(&page, "tickcast_y{reason=\"a\"}"), Some(2.0));
        assert_eq!(sample(&page, "process_open_fds"), Some(3.0));
        assert_eq!(sample(&page, "tickcast_z"), None);
    }

    #[test]
    fn buckets_are_cumulative_and_counted() {
        let h = Histogram::new();
        h.observe_us(10);
        h.observe_us(700);
        let mut local = LocalHistogram::default();
        local.observe_us(20_000_000);
        h.merge(&local);
        assert_eq!(h.count(), 3);
        let mut out = String::new();
        histogram(&mut out, "x", "help", &h);
        assert!(out.contains("x_bucket{le=\"0.00005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}
