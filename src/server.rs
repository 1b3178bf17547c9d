//! Wiring and lifecycle: builds the pipeline, accepts connections, shuts down gracefully.
//!
//! Shutdown (SIGTERM or SIGINT): `/readyz` turns 503 and `/ws` refuses new
//! upgrades at once (the listener stays open, so load balancers and
//! Prometheus can still see that); clients are closed in waves spread over
//! `--drain-period`, each with a `reconnect` message (how long to wait,
//! spread across clients) and close 1001; the process exits 0 once they are
//! gone or `--drain-timeout` has passed after the last wave. A second
//! signal closes whoever is left at once.
//!
//! A cluster node listens before it has joined the bus (`join_bus`): until
//! NATS answers it is alive but not ready, however long that takes.

use crate::auth::Authenticator;
use crate::bus;
use crate::config::{BusSubscribe, Role, ServeArgs, SlowConsumer};
use crate::http::{AppState, Routes};
use crate::hub::{self, Command, HubLimits};
use crate::latest::SymbolTable;
use crate::listener::{self, HttpLimits};
use crate::metrics::METRICS;
use crate::session::{Limits, SessionContext};
use crate::{feed, info, warn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names without a value (named by clients, never published) one node holds
/// for all its clients together; see [`HubLimits`].
pub const MAX_UNKNOWN_NAMES: usize = 100_000;

/// A failure to start, with the exit status it deserves.
#[derive(Debug)]
pub struct StartError {
    pub status: u8,
    pub message: String,
}

impl StartError {
    fn usage(message: String) -> StartError {
        StartError { status: 2, message }
    }
}

/// Runs the server until a shutdown signal has been handled.
pub async fn serve(args: ServeArgs) -> Result<(), StartError> {
    let mut signals = ShutdownSignal::install().map_err(|e| StartError {
        status: 1,
        message: format!("cannot handle signals: {e}"),
    })?;
    let secret =
        crate::auth::load_secret(args.auth_secret_file.as_deref()).map_err(StartError::usage)?;
    if secret.is_none() {
        warn!("authentication is OFF: anyone who can reach this port may subscribe (set --auth-secret-file or TICKCAST_AUTH_SECRET)");
        if args.allow_auth_message {
            warn!("--allow-auth-message has no effect while authentication is off");
        }
    }
    let feed_secret = feed_secret(&args)?;
    let auth = Arc::new(Authenticator::new(secret));
    let table = Arc::new(SymbolTable::default());
    let node = args
        .node
        .clone()
        .unwrap_or_else(crate::config::default_node);
    if args.role != Role::All && args.nats.is_empty() {
        return Err(StartError::usage(format!(
            "--role {}: needs --nats URL (the cluster's NATS server)",
            if args.role == Role::Ingest {
                "ingest"
            } else {
                "edge"
            }
        )));
    }
    let bus = match args.role {
        Role::All => None,
        _ => Some(
            bus::connect(&args.nats, &node)
                .await
                .map_err(StartError::usage)?,
        ),
    };
    // The ingest taps its releases to the bus (once it has resumed from the
    // bucket's last values: see `join_bus`).
    let candles = args.candles();
    let candles_for_bus = candles.clone();
    if let Some(c) = &candles {
        let _ = crate::metrics::CANDLE_INTERVALS
            .set(c.intervals.iter().map(|i| i.name.clone()).collect());
    }
    let series_table = Arc::new(SymbolTable::default());
    let mut start = hub::Start {
        max_delay: args.max_delay,
        max_feed_symbols: Some(args.max_feed_symbols as usize),
        candles: candles.clone(),
        // The node that reads the feed makes the bars; an edge takes them from the bus.
        build_candles: args.role != Role::Edge,
        series_table: Some(series_table.clone()),
        ..hub::Start::default()
    };
    if let (Some(b), Role::Ingest) = (&bus, args.role) {
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        start.tap = Some(tx);
        tokio::spawn(bus::publish_updates(b.client.clone(), rx));
        if let Some(c) = &candles {
            let (tx, rx) = tokio::sync::mpsc::channel(65_536);
            start.candle_tap = Some(tx);
            let names = c.intervals.iter().map(|i| i.name.clone()).collect();
            tokio::spawn(bus::candles::publish_bars(b.client.clone(), names, rx));
        }
    }
    let mut series_interest_rx = None;
    if args.role == Role::Edge && candles.is_some() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        start.series_interest = Some(tx);
        series_interest_rx = Some(rx);
    }
    let mut interest_rx = None;
    if args.role == Role::Edge && args.bus_subscribe == BusSubscribe::Interest {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        start.interest = Some(tx);
        interest_rx = Some(rx);
    }
    let (ticks_tx, ticks_rx) = crossbeam_channel::bounded(feed::CHANNEL_BATCHES);
    let hub_limits = HubLimits {
        max_symbols: args.max_symbols,
        max_unknown_symbols: args.max_unknown_symbols,
        max_unknown_names: MAX_UNKNOWN_NAMES,
    };
    let hub =
        hub::spawn(args.coalesce, hub_limits, table.clone(), ticks_rx, start).map_err(|e| {
            StartError {
                status: 1,
                message: format!("cannot start the hub thread: {e}"),
            }
        })?;

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = crate::tls::Tls::load(cert, key).map_err(StartError::usage)?;
            tls.clone().watch().map_err(|e| StartError {
                status: 1,
                message: format!("cannot watch for SIGHUP: {e}"),
            })?;
            Some(tls)
        }
        (None, None) => None,
        _ => {
            return Err(StartError::usage(
                "--tls-cert and --tls-key go together: give both, or neither".into(),
            ))
        }
    };
    let listener = listener::listen(args.listen, args.reuse_port).map_err(|e| StartError {
        status: 1,
        message: format!("--listen {}: cannot listen: {e}", args.listen),
    })?;
    // With --metrics-listen, this node alone also answers operators on its own address.
    let mut listeners = vec![];
    if let Some(addr) = args.metrics_listen {
        listeners.push((
            listener::listen(addr, false).map_err(|e| StartError {
                status: 1,
                message: format!("--metrics-listen {addr}: cannot listen: {e}"),
            })?,
            Routes::Operator,
        ));
        info!("metrics on http://{addr}/metrics");
    }
    let local = listener.local_addr().map_err(|e| StartError {
        status: 1,
        message: e.to_string(),
    })?;

    let feed_ready = Arc::new(AtomicBool::new(false));
    let bus_ready = Arc::new(AtomicBool::new(bus.is_none()));
    let last_values = Arc::new(std::sync::OnceLock::new());
    let candle_store = Arc::new(std::sync::OnceLock::new());
    let mut feed_start = None;
    match args.role {
        Role::Edge => {
            // An edge has no feed: its updates come from the bus.
            drop(ticks_tx);
            feed_ready.store(true, Ordering::Release);
            info!("edge: updates from NATS {}", args.nats.join(","));
        }
        // The ingest starts its feed once it has resumed `seq` from the bus.
        Role::Ingest => feed_start = Some((feed_secret, ticks_tx)),
        Role::All => {
            let described = start_feed(&args, feed_secret, ticks_tx, feed_ready.clone())?;
            info!("{described}");
        }
    }

    let limits = Limits {
        ping_interval: args.ping_interval,
        pong_timeout: args.pong_timeout,
        max_message: args.max_message as usize,
        client_rate: args.client_rate,
        client_burst: args.client_burst,
        max_symbols: args.max_symbols,
        queue: args.queue,
        close_on_overflow: args.slow_consumer == SlowConsumer::Close,
        auth_timeout: args.auth_timeout,
        window: args.coalesce,
        close_grace: args.drain_timeout,
        max_connection_age: args.max_connection_age,
    };
    let admission = listener::admission(
        args.max_connections.map(|n| n as usize),
        args.max_handshakes.map(|n| n as usize),
        args.max_connections_per_ip,
        args.max_handshake_rate,
        // Descriptors kept for the feed's publishers (a `tcp://` feed only).
        match args.feed {
            crate::config::FeedSource::Tcp(_) if args.role != Role::Edge => {
                args.feed_max_publishers as usize
            }
            _ => 0,
        },
    );
    METRICS
        .max_connections
        .add(admission.max_connections() as i64);
    let mut sessions = SessionContext::new(limits, hub.clone(), auth.clone(), node);
    sessions.candles = candles.map(Arc::new);
    let state = Arc::new(AppState {
        sessions: Arc::new(sessions),
        table,
        auth,
        allow_auth_message: args.allow_auth_message,
        feed_ready: feed_ready.clone(),
        bus_connected: bus.as_ref().map(|b| b.connected.clone()),
        bus_ready: bus_ready.clone(),
        serves_clients: args.role != Role::Ingest,
        // An edge holds only what its clients follow: /snapshot reads the bucket.
        last_values: (args.role == Role::Edge).then(|| last_values.clone()),
        shutting_down: AtomicBool::new(false),
        admission,
        origins: args.allowed_origins.clone(),
        proxies: args.trusted_proxies.clone(),
        snapshots: Default::default(),
        series_table,
        // An edge reads a series it does not follow from the bus.
        candle_store: (args.role == Role::Edge).then(|| candle_store.clone()),
    });
    let (http, ws) = if tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    info!(
        "listening on {http}://{local} (WebSocket: {ws}://{local}/ws; at most {} connections)",
        state.admission.max_connections()
    );
    listeners.insert(0, (listener, Routes::Public));

    let http_limits = HttpLimits {
        handshake_timeout: args.handshake_timeout,
        max_header_size: args.max_header_size as usize,
        send_buffer: args.send_buffer,
        unacknowledged: args.ping_interval + args.pong_timeout,
        notsent_lowat: args.notsent_lowat,
        tls: None,
    };
    for (listener, routes) in listeners {
        let http_limits = match routes {
            Routes::Public => HttpLimits {
                tls: tls.clone(),
                ..http_limits.clone()
            },
            Routes::Operator => http_limits.clone(),
        };
        let handshakes = match routes {
            Routes::Public => state.admission.clone(),
            Routes::Operator => crate::admission::Admission::new(0, listener::OPERATOR_HANDSHAKES),
        };
        listener::accept_thread(
            listener,
            tokio::runtime::Handle::current(),
            state.clone(),
            routes,
            handshakes,
            http_limits.clone(),
        )
        .map_err(|e| StartError {
            status: 1,
            message: format!("cannot start the accept thread: {e}"),
        })?;
    }
    if let Some(b) = &bus {
        tokio::spawn(join_bus(JoinBus {
            client: b.client.clone(),
            reconnects: b.reconnects.clone(),
            table: state.table.clone(),
            role: args.role,
            hub: hub.clone(),
            sessions: state.sessions.clone(),
            interest: interest_rx,
            last_values,
            candles: candles_for_bus,
            series_interest: series_interest_rx,
            candle_store,
            feed: feed_start.map(|(secret, tx)| IngestFeed {
                args: args.clone(),
                secret,
                tx,
                ready: feed_ready.clone(),
            }),
            ready: bus_ready,
        }));
    }
    signals.received().await;
    state.shutting_down.store(true, Ordering::Release);
    info!(
        "shutting down: closing {} connections in waves over {:?}, then waiting up to {:?}",
        METRICS.connections.get(),
        args.drain_period,
        args.drain_timeout
    );
    let spread_ms = args.drain_period.max(Duration::from_secs(1)).as_millis() as u64;
    tokio::select! {
        _ = drain(&hub, args.drain_period, spread_ms) => {}
        _ = signals.received() => info!("second signal: closing every connection now"),
    }
    drain_wave(&hub, 1, spread_ms).await;
    let deadline = Instant::now() + args.drain_timeout;
    while METRICS.connections.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(b) = &bus {
        // What the ingest published last (bars that just closed) reaches
        // NATS before the process goes, when NATS is there to take it.
        let _ = tokio::time::timeout(Duration::from_secs(2), b.client.flush()).await;
    }
    info!("stopped ({} connections left)", METRICS.connections.get());
    Ok(())
}

/// Starts the feed, its failures as start errors.
fn start_feed(
    args: &ServeArgs,
    secret: Option<feed::auth::FeedSecret>,
    tx: crossbeam_channel::Sender<feed::Batch>,
    ready: Arc<AtomicBool>,
) -> Result<String, StartError> {
    feed::start(args, secret, tx, ready).map_err(|failure| match failure {
        feed::StartFailure::Usage(message) => StartError::usage(message),
        feed::StartFailure::Listen(message) | feed::StartFailure::Thread(message) => {
            StartError { status: 1, message }
        }
    })
}

/// What a cluster node needs to join the bus.
struct JoinBus {
    client: async_nats::Client,
    reconnects: tokio::sync::watch::Receiver<u64>,
    /// This node's latest values (an ingest publishes them again after an outage).
    table: Arc<SymbolTable>,
    role: Role,
    hub: hub::HubHandle,
    sessions: Arc<SessionContext>,
    interest: Option<tokio::sync::mpsc::UnboundedReceiver<hub::Interest>>,
    last_values: Arc<std::sync::OnceLock<async_nats::jetstream::kv::Store>>,
    /// Candles served (their history lives on the bus), and what an edge needs of them.
    candles: Option<crate::candle::CandleConfig>,
    series_interest: Option<tokio::sync::mpsc::UnboundedReceiver<hub::SeriesInterest>>,
    candle_store: Arc<std::sync::OnceLock<Arc<dyn crate::candle::History>>>,
    /// The ingest's feed, started once `seq` has resumed.
    feed: Option<IngestFeed>,
    ready: Arc<AtomicBool>,
}

/// What starting a feed takes, kept for later (a cluster ingest).
struct IngestFeed {
    args: ServeArgs,
    secret: Option<feed::auth::FeedSecret>,
    tx: crossbeam_channel::Sender<feed::Batch>,
    ready: Arc<AtomicBool>,
}

/// A cluster node joins the bus in the background, for as long as NATS
/// takes to answer: meanwhile it serves `/healthz` and `/metrics`, and
/// `/readyz` says 503 (a node started while NATS is unreachable waits for
/// it instead of exiting). The epoch becomes the cluster's (the bucket's
/// creation: the same on every node, and across restarts of any of them);
/// an ingest resumes `seq` from the bucket, then starts its feed; an edge
/// starts following the bus.
async fn join_bus(j: JoinBus) {
    let store = bus::bucket_when_ready(&j.client).await;
    if let Some(epoch) = bus::epoch(&store).await {
        j.sessions.set_epoch(epoch);
    }
    match j.role {
        Role::Ingest => {
            let restored = bus::load_all_when_ready(&store).await;
            info!(
                "resumed {} symbols from the bus's last values",
                restored.len()
            );
            j.hub.send(Command::Restore(restored));
            if let Some(c) = &j.candles {
                let (_, forming) = bus::candles::stores_when_ready(&j.client, c.keep).await;
                let newest =
                    bus::retry("the newest bars", || bus::candles::load_newest(&forming)).await;
                info!("resumed {} candle series from the bus", newest.len());
                j.hub.send(Command::RestoreBars(newest));
            }
            tokio::spawn(bus::republish_on_reconnect(
                j.client.clone(),
                j.table,
                j.reconnects,
            ));
            if let Some(f) = j.feed {
                match start_feed(&f.args, f.secret, f.tx, f.ready) {
                    Ok(described) => info!("{described}"),
                    Err(e) => {
                        // As if at start: the same message and status.
                        eprintln!("tickcast: {}", e.message);
                        std::process::exit(e.status.into());
                    }
                }
            }
        }
        Role::Edge => {
            let _ = j.last_values.set(store.clone());
            if let (Some(c), Some(rx)) = (&j.candles, j.series_interest) {
                let (stream, forming) = bus::candles::stores_when_ready(&j.client, c.keep).await;
                let history: Arc<dyn crate::candle::History> = Arc::new(bus::candles::BusHistory {
                    stream: stream.clone(),
                    forming: forming.clone(),
                    keep: c.keep,
                });
                let _ = j.candle_store.set(history);
                tokio::spawn(bus::candles::follow_series(
                    j.client.clone(),
                    stream,
                    forming,
                    j.hub.clone(),
                    rx,
                    j.reconnects.clone(),
                ));
            }
            match j.interest {
                Some(rx) => {
                    tokio::spawn(bus::follow_interest(
                        j.client,
                        store,
                        j.hub,
                        rx,
                        j.reconnects,
                    ));
                }
                None => bus::receive_updates_when_ready(j.client, store, j.hub, j.reconnects).await,
            }
        }
        Role::All => {}
    }
    j.ready.store(true, Ordering::Release);
    info!("joined the bus");
}

/// A drain's waves are this far apart (fewer when the period is short).
const DRAIN_WAVE: Duration = Duration::from_millis(100);

/// Closes the clients in waves over `period`, until none is left open.
async fn drain(hub: &hub::HubHandle, period: Duration, spread_ms: u64) {
    let waves = (period.as_millis() / DRAIN_WAVE.as_millis()).max(1) as u32;
    let gap = period / waves;
    let mut next = tokio::time::Instant::now();
    for waves_left in (1..=waves).rev() {
        if drain_wave(hub, waves_left, spread_ms).await == 0 {
            return;
        }
        next += gap;
        tokio::time::sleep_until(next).await;
    }
}

/// One wave: `1/waves_left` of the open connections get `reconnect` and
/// 1001. Returns how many remain open.
async fn drain_wave(hub: &hub::HubHandle, waves_left: u32, spread_ms: u64) -> usize {
    let (left, answer) = tokio::sync::oneshot::channel();
    hub.send(Command::Drain {
        waves_left,
        spread_ms,
        left,
    });
    // The hub answers within one pass; it is gone only when the process is.
    answer.await.unwrap_or(0)
}

/// The feed secret (`--feed-secret-file` or `TICKCAST_FEED_SECRET`), checked
/// before anything listens: a `tcp://` feed reachable beyond loopback needs one.
fn feed_secret(args: &ServeArgs) -> Result<Option<feed::auth::FeedSecret>, StartError> {
    let secret = crate::auth::load_secret_from(
        args.feed_secret_file.as_deref(),
        "--feed-secret-file",
        "TICKCAST_FEED_SECRET",
    )
    .map_err(StartError::usage)?;
    if secret
        .as_deref()
        .is_some_and(|s| std::str::from_utf8(s).is_err())
    {
        return Err(StartError::usage(
            "--feed-secret-file / TICKCAST_FEED_SECRET: the feed secret must be UTF-8 text (publishers send it in a JSON string)".into(),
        ));
    }
    let tcp = match args.feed {
        crate::config::FeedSource::Tcp(addr) if args.role != Role::Edge => Some(addr),
        _ => None,
    };
    match (tcp, &secret) {
        (Some(addr), None) if feed::beyond_loopback(&addr) => Err(StartError::usage(format!(
            "--feed tcp://{addr} listens beyond loopback: set --feed-secret-file or TICKCAST_FEED_SECRET"
        ))),
        (Some(addr), None) => {
            info!("feed publishers need no secret: tcp://{addr} is reachable from this host only (--feed-secret-file or TICKCAST_FEED_SECRET to require one)");
            Ok(None)
        }
        _ => Ok(secret.map(|s| feed::auth::FeedSecret::new(&s))),
    }
}

/// SIGTERM and SIGINT, handled from the moment this is created: before the
/// server says it listens, so that no signal meets the default action (death).
struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> std::io::Result<ShutdownSignal> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
