//! The hub: one OS thread that owns the coalescer and the subscriber registry.
//!
//! Everything that changes who gets what goes through this thread as a
//! [`Command`], and every feed batch arrives here too, so the registry needs
//! no lock: on each update the hub walks the subscriber list of that one
//! symbol and pushes the shared, pre-encoded frame into each subscriber's
//! lock-free outbox. Only the subscribers of a symbol are touched when it
//! updates; a client that subscribes to nothing costs the hub nothing.
//!
//! Subscribing registers the client and then queues a `Subscribed` control
//! entry; the client's writer answers it by reading each symbol's latest
//! value. Every update released after the registration is in the client's
//! queue after that entry, so snapshot + queue never miss an update, and the
//! writer's per-symbol `seq` filter throws away anything older.
//!
//! A name without a value (nothing has been published for it yet) costs the
//! hub an entry and every client that waits for it a subscription, so both
//! are capped: at most `max_unknown_symbols` per client and
//! `max_unknown_names` in all; beyond them a client gets `unknown_symbol`
//! instead of a subscription. Names with a value are what the feed made.

use crate::auth::Claims;
use crate::candle::bar::Bar;
use crate::candle::builder::{Builder, Emit};
use crate::candle::series::Series;
use crate::candle::CandleConfig;
use crate::clock::now_us;
use crate::coalesce::{Coalescer, Outcome, Release};
use crate::feed::Batch;
use crate::latest::{Latest, SymbolSlot, SymbolTable};
use crate::metrics::{DisconnectReason, LocalHistogram, RejectReason, METRICS};
use crate::protocol::{ErrorCode, Message, RequestError};
use crate::session::outbox::{Control, Outbox, Pushed, SubscribedSymbol};
use crate::symbol::Symbol;
use crate::tick::{TickState, Update};
use crossbeam_channel::{never, Receiver, Sender};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a cluster edge needs from NATS, as its clients come and go.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Interest {
    /// The first client of this symbol on this node: subscribe, and read its last value.
    Add(Symbol),
    /// Its last client left: unsubscribe.
    Remove(Symbol),
}

/// What a cluster edge needs from the bus for candle series (any edge: a
/// series' history is loaded when a client first asks for it).
#[derive(Clone, Debug, PartialEq)]
pub enum SeriesInterest {
    /// The first client of this series (`SYMBOL@INTERVAL`) on this node:
    /// follow it and load its history.
    Add(String),
    /// Its last client left.
    Remove(String),
    /// The bus lost some of its bars: read its history again.
    Reload(String),
}

/// A `subscribed` reply waiting for the bus to bring some of its symbols up to date.
struct Deferred {
    reply: Reply,
    waiting: HashSet<u32>,
}

/// A `subscribe` being answered: what was subscribed, which of those the
/// request added (only those may still be refused), and its errors.
struct Reply {
    client: u64,
    id: Option<i64>,
    symbols: Vec<SubscribedSymbol>,
    added: HashSet<u32>,
    errors: Vec<Message>,
    /// A stream resuming from a `gseq`: snapshots only of what changed since.
    after: Option<u64>,
}

/// The hub's caps on what clients may hold.
#[derive(Clone, Copy, Debug)]
pub struct HubLimits {
    /// Symbols per connection (`--max-symbols`).
    pub max_symbols: u32,
    /// Symbols without a value per connection (`--max-unknown-symbols`).
    pub max_unknown_symbols: u32,
    /// Names without a value, held by all clients together.
    pub max_unknown_names: usize,
}

/// Requests from sessions and the server to the hub.
pub enum Command {
    /// The bus has subscribed to this symbol and delivered its last value (if any).
    Fresh(Symbol),
    /// An update released by another node's coalescer (cluster edge): taken
    /// if its `seq` is newer than what this node holds, at most one per
    /// symbol per coalescing window (a backlog the bus flushes after an
    /// outage reaches clients as the latest value, once).
    Remote(Update),
    /// Last values from the bus (cluster ingest, before its feed starts):
    /// `seq` goes on from them.
    Restore(Vec<Update>),
    /// A bar made by another node (cluster edge): taken if newer than what
    /// this node holds of its series.
    RemoteBar {
        channel: String,
        bar: Bar,
    },
    /// A series' stored bars, loaded from the bus (cluster edge): into its
    /// history; the replies that waited for it go out.
    SeriesLoaded {
        channel: String,
        bars: Vec<Bar>,
    },
    /// Every series' newest bar from the bus (cluster ingest, before its
    /// feed starts): `seq` and the forming bars go on from them.
    RestoreBars(Vec<(Symbol, String, Bar)>),
    Register(Arc<Outbox>),
    Unregister(u64),
    Subscribe(Subscribe),
    /// The client's token was refreshed: end the subscriptions it no longer allows.
    Reauthorize {
        client: u64,
        id: Option<i64>,
        claims: Arc<Claims>,
    },
    Unsubscribe {
        client: u64,
        id: Option<i64>,
        symbols: Vec<String>,
    },
    /// One wave of a drain (shutdown): `1/waves_left` of the connections
    /// not yet closing get `reconnect` (after a random wait up to
    /// `spread_ms`) and close 1001; `left` hears how many remain open.
    Drain {
        waves_left: u32,
        spread_ms: u64,
        left: tokio::sync::oneshot::Sender<usize>,
    },
}

/// A client's `subscribe`, its symbols already checked by the session
/// (valid, entitled); `errors` (for those it refused) follow the reply.
pub struct Subscribe {
    pub client: u64,
    pub id: Option<i64>,
    pub symbols: Vec<String>,
    pub since: Vec<(String, u64)>,
    /// A stream resuming from a `gseq` (SSE's `Last-Event-ID`).
    pub after: Option<u64>,
    /// At most one update per symbol per this long (`interval_ms`).
    pub interval: Option<Duration>,
    /// Closed bars in each candle series' history (`limit`).
    pub limit: usize,
    pub errors: Vec<Message>,
}

/// The sending side, cloned into every session.
#[derive(Clone)]
pub struct HubHandle {
    commands: Sender<Command>,
}

impl HubHandle {
    pub fn send(&self, command: Command) {
        // Fails only once the hub has stopped, when nothing is left to tell.
        let _ = self.commands.send(command);
    }

    /// A handle on a channel of one's own (tests read the commands).
    pub fn from_sender(commands: Sender<Command>) -> HubHandle {
        HubHandle { commands }
    }
}

/// Subscribers of one symbol: a dense list for fast walks, with positions for O(1) removal.
#[derive(Default)]
struct Subscribers {
    list: Vec<Arc<Outbox>>,
    position: HashMap<u64, usize>,
}

impl Subscribers {
    fn add(&mut self, outbox: &Arc<Outbox>) {
        self.position.insert(outbox.id, self.list.len());
        self.list.push(outbox.clone());
    }

    fn remove(&mut self, client: u64) {
        if let Some(i) = self.position.remove(&client) {
            self.list.swap_remove(i);
            if let Some(moved) = self.list.get(i) {
                self.position.insert(moved.id, i);
            }
        }
    }
}

struct SymbolEntry {
    slot: Arc<SymbolSlot>,
    subscribers: Subscribers,
}

struct Client {
    outbox: Arc<Outbox>,
    symbols: HashSet<u32>,
}

pub struct Hub {
    coalescer: Coalescer,
    entries: Vec<Option<SymbolEntry>>,
    free_ids: Vec<u32>,
    by_name: HashMap<Box<str>, u32>,
    table: Arc<SymbolTable>,
    clients: HashMap<u64, Client>,
    limits: HubLimits,
    /// Entries without a value (named by clients, nothing published yet).
    valueless: usize,
    /// The `gseq` of the last update published (see [`TickState::gseq`]).
    gseq: u64,
    releases: Vec<Release>,
    /// Writers to wake at the end of this pass: waking them only then lets a
    /// client's updates of one pass leave in one write.
    to_wake: Vec<Arc<Outbox>>,
    /// Corking (`--max-delay`): how long listed writers may wait to be woken.
    max_delay: Duration,
    /// When the listed writers must be woken at the latest.
    flush_at: Option<Instant>,
    /// When writers were last woken (corking's leading edge).
    flushed_at: Option<Instant>,
    /// Where this node's own releases also go (cluster ingest: to the bus).
    tap: Option<tokio::sync::mpsc::Sender<Update>>,
    /// Where first/last-client changes go (cluster edge with per-symbol interest).
    interest: Option<tokio::sync::mpsc::UnboundedSender<Interest>>,
    /// Symbols whose last value the bus is fetching; replies naming them wait.
    refreshing: HashSet<u32>,
    deferred: Vec<Deferred>,
    /// When queue depths were last sampled into the metrics.
    sampled_at: Instant,
    /// The coalescing window applied again to updates from the bus.
    remote: crate::pacer::Pacer,
    /// Most symbols with a value the feed and the bus may bring (`--max-feed-symbols`).
    max_feed_symbols: usize,
    /// Symbols with a value: never forgotten, so this only grows.
    valued: usize,
    /// Candles: the intervals served (`None`: off).
    candle_config: Option<Arc<CandleConfig>>,
    /// The bar maker (a node that reads the feed).
    builder: Option<Builder>,
    /// Per symbol id, per interval: its series' channel id (`u32::MAX`: none yet).
    series_ids: Vec<Vec<u32>>,
    /// Candle series with a bar, by channel name, for `/candles`.
    series_table: Arc<SymbolTable>,
    emits: Vec<Emit>,
    /// Where this node's bars also go (cluster ingest: to the bus).
    candle_tap: Option<tokio::sync::mpsc::Sender<(Symbol, usize, Bar)>>,
    /// Where first/last-client changes of series go (cluster edge).
    series_interest: Option<tokio::sync::mpsc::UnboundedSender<SeriesInterest>>,
    /// Series being read again after the bus lost some of their bars.
    reloading: HashSet<u32>,
}

/// How often the hub samples queue depths into the metrics.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What a hub starts with besides its feed.
#[derive(Default)]
pub struct Start {
    /// Every release is also sent here (cluster ingest: to the bus). The hub
    /// waits when it is full, which slows the feed rather than losing updates.
    pub tap: Option<tokio::sync::mpsc::Sender<Update>>,
    /// Last values from a previous run: `seq` goes on from there.
    pub restored: Vec<Update>,
    /// First/last-client changes go here (cluster edge, per-symbol interest).
    pub interest: Option<tokio::sync::mpsc::UnboundedSender<Interest>>,
    /// Corking: how long a client's updates may wait to leave together
    /// (`--max-delay`; zero: at the end of every pass).
    pub max_delay: Duration,
    /// `--max-feed-symbols`; `None`: no cap.
    pub max_feed_symbols: Option<usize>,
    /// Candles served (`None`: off); `build_candles`: this node makes the
    /// bars from its feed (not a cluster edge).
    pub candles: Option<CandleConfig>,
    pub build_candles: bool,
    /// Where candle series are found by name (`/candles`).
    pub series_table: Option<Arc<SymbolTable>>,
    /// Every bar made here is also sent here (cluster ingest: to the bus).
    pub candle_tap: Option<tokio::sync::mpsc::Sender<(Symbol, usize, Bar)>>,
    /// First/last-client changes of candle series go here (cluster edge).
    pub series_interest: Option<tokio::sync::mpsc::UnboundedSender<SeriesInterest>>,
}

/// Starts the hub thread.
pub fn spawn(
    window: Duration,
    limits: HubLimits,
    table: Arc<SymbolTable>,
    ticks: Receiver<Batch>,
    start: Start,
) -> std::io::Result<HubHandle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut hub = Hub::new(window, limits, table);
    hub.max_feed_symbols = start.max_feed_symbols.unwrap_or(usize::MAX);
    for u in &start.restored {
        hub.restore(u);
    }
    hub.tap = start.tap;
    hub.max_delay = start.max_delay;
    hub.interest = start.interest;
    if let Some(config) = start.candles {
        hub.builder = start.build_candles.then(|| Builder::new(config.clone()));
        hub.candle_config = Some(Arc::new(config));
    }
    if let Some(table) = start.series_table {
        hub.series_table = table;
    }
    hub.candle_tap = start.candle_tap;
    hub.series_interest = start.series_interest;
    std::thread::Builder::new()
        .name("hub".into())
        .spawn(move || hub.run(ticks, rx))?;
    Ok(HubHandle { commands: tx })
}

impl Hub {
    pub fn new(window: Duration, limits: HubLimits, table: Arc<SymbolTable>) -> Hub {
        Hub {
            coalescer: Coalescer::new(window),
            entries: Vec::new(),
            free_ids: Vec::new(),
            by_name: HashMap::new(),
            table,
            clients: HashMap::new(),
            limits,
            valueless: 0,
            gseq: 0,
            releases: Vec::new(),
            to_wake: Vec::new(),
            max_delay: Duration::ZERO,
            flush_at: None,
            flushed_at: None,
            tap: None,
            interest: None,
            refreshing: HashSet::new(),
            deferred: Vec::new(),
            max_feed_symbols: usize::MAX,
            valued: 0,
            sampled_at: Instant::now(),
            // Half the window: an update the bus delivers a little early
            // (jitter) still goes out as it is; a backlog arriving within
            // milliseconds is still collapsed to its latest value.
            remote: crate::pacer::Pacer::new(window / 2),
            candle_config: None,
            builder: None,
            series_ids: Vec::new(),
            series_table: Arc::new(SymbolTable::default()),
            emits: Vec::new(),
            candle_tap: None,
            series_interest: None,
            reloading: HashSet::new(),
        }
    }

    /// Makes bars from the feed with `config` (tests; [`spawn`] does it from [`Start`]).
    pub fn with_candles(mut self, config: CandleConfig) -> Hub {
        self.builder = Some(Builder::new(config.clone()));
        self.candle_config = Some(Arc::new(config));
        self
    }

    /// The candle series found by name (what `/candles` reads).
    pub fn series_table(&self) -> Arc<SymbolTable> {
        self.series_table.clone()
    }

    fn run(&mut self, ticks: Receiver<Batch>, commands: Receiver<Command>) {
        let mut ticks = ticks;
        loop {
            let next = [
                self.coalescer.next_deadline(),
                self.flush_at,
                self.remote.next_deadline(),
                self.candle_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = next.map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(Instant::now())
            });
            crossbeam_channel::select! {
                recv(ticks) -> batch => match batch {
                    Ok(batch) => {
                        self.on_batch(&batch);
                        // Take what else is already waiting, so a burst costs one pass.
                        for _ in 0..16 {
                            match ticks.try_recv() {
                                Ok(more) => self.on_batch(&more),
                                Err(_) => break,
                            }
                        }
                    }
                    // The feed ended (a replay finished): keep serving clients.
                    Err(_) => ticks = never(),
                },
                recv(commands) -> command => match command {
                    Ok(command) => self.on_command(command),
                    Err(_) => return,
                },
                default(timeout) => {}
            }
            self.release_due();
            let now = Instant::now();
            self.release_remote(now);
            self.flush(now);
            if now.duration_since(self.sampled_at) >= QUEUE_SAMPLE_EVERY {
                self.sampled_at = now;
                self.sample_queues(ticks.len());
            }
        }
    }

    /// Queue depths into the metrics: a look at every client's queue, once a
    /// second (atomic loads; nothing on the path of an update).
    fn sample_queues(&self, feed_batches: usize) {
        let (mut total, mut max) = (0i64, 0i64);
        for c in self.clients.values() {
            let n = i64::from(c.outbox.queued());
            total += n;
            max = max.max(n);
        }
        METRICS.queued_updates.set(total);
        METRICS.queued_updates_max.set(max);
        METRICS.feed_queue.set(feed_batches as i64);
    }

    /// Wakes the writers listed in this pass — at once, or (corking, with
    /// `--max-delay`) at most once per that delay: the first updates after
    /// a quiet spell leave at once (the leading edge: a quiet node adds no
    /// latency), and what comes within the delay after a wake-up waits for
    /// the next one, so that a client's updates of several passes leave in
    /// one write. An update waits at most the delay. One deadline for the
    /// whole node, no timer per connection; under load the wake-ups fall on
    /// a grid of that period, which lines every client's updates up.
    pub fn flush(&mut self, now: Instant) {
        if self.max_delay.is_zero() {
            return self.wake_writers();
        }
        if self.to_wake.is_empty() {
            return;
        }
        let due = *self.flush_at.get_or_insert_with(|| match self.flushed_at {
            Some(at) => at + self.max_delay,
            None => now,
        });
        if now >= due {
            self.wake_writers();
            self.flush_at = None;
            self.flushed_at = Some(now);
        }
    }

    /// Wakes every writer that got updates in this pass, once.
    pub fn wake_writers(&mut self) {
        for outbox in self.to_wake.drain(..) {
            outbox.wake();
        }
    }

    /// When the bar maker next has something to do: a paced forming bar's
    /// turn, or (live feeds) the end of an interval.
    fn candle_deadline(&self) -> Option<Instant> {
        let b = self.builder.as_ref()?;
        let boundary = b
            .next_boundary_us()
            .map(|at| Instant::now() + Duration::from_micros(at.saturating_sub(now_us())));
        [b.next_release(), boundary].into_iter().flatten().min()
    }

    /// Coalesces one batch of feed ticks and publishes what goes out at once.
    pub fn on_batch(&mut self, batch: &Batch) {
        let (now, pub_us) = (Instant::now(), now_us());
        if let Some(b) = self.builder.as_mut() {
            b.wall_clock(pub_us);
        }
        let mut delays = LocalHistogram::default();
        let mut refused = 0;
        for tick in batch {
            let Some(id) = self.intern_from_feed(tick.symbol.as_str()) else {
                refused += 1;
                METRICS.rejected(RejectReason::SymbolLimit);
                continue;
            };
            if let Some(b) = self.builder.as_mut() {
                // Every tick, before the window: no trade is lost to it.
                b.on_tick(id, &tick.fields, tick.ts, now);
            }
            match self
                .coalescer
                .on_tick(id, &tick.fields, tick.ts, now, pub_us)
            {
                Outcome::Released(state) => {
                    delays
                        .observe_us(now.saturating_duration_since(tick.arrival).as_micros() as u64);
                    self.publish(id, state);
                }
                Outcome::Merged { release_at } => {
                    delays.observe_us(
                        release_at
                            .saturating_duration_since(tick.arrival)
                            .as_micros() as u64,
                    );
                }
            }
        }
        // Bars first: once the feed's count shows a tick, its bars are out.
        self.publish_bars();
        METRICS.coalesce_delay.merge(&delays);
        METRICS.feed_ticks.add((batch.len() - refused) as u64);
    }

    /// Publishes what the bar maker made.
    fn publish_bars(&mut self) {
        let Some(b) = self.builder.as_mut() else {
            return;
        };
        let mut emits = std::mem::take(&mut self.emits);
        b.take(&mut emits);
        for mut e in emits.drain(..) {
            let Some(channel) = self.series_channel(e.symbol, e.interval) else {
                continue;
            };
            // This node's bar: the next `gseq`, which every edge keeps.
            self.gseq += 1;
            e.bar.gseq = self.gseq;
            if let (Some(tap), Some(entry)) =
                (&self.candle_tap, self.entries[e.symbol as usize].as_ref())
            {
                if let Some(symbol) = Symbol::new(&entry.slot.name) {
                    // Blocks while the bus is behind, as for ticks.
                    let _ = tap.blocking_send((symbol, e.interval, e.bar));
                }
            }
            self.publish_bar(channel, e.bar);
        }
        self.emits = emits;
    }

    /// The channel id of symbol `symbol`'s series of interval `i`.
    fn series_channel(&mut self, symbol: u32, i: usize) -> Option<u32> {
        let n = self.candle_config.as_ref()?.intervals.len();
        let s = symbol as usize;
        if s >= self.series_ids.len() {
            self.series_ids.resize(s + 1, Vec::new());
        }
        if self.series_ids[s].is_empty() {
            self.series_ids[s] = vec![u32::MAX; n];
        }
        if self.series_ids[s][i] == u32::MAX {
            let name = {
                let config = self.candle_config.as_ref()?;
                let entry = self.entries[s].as_ref()?;
                crate::candle::channel_name(&entry.slot.name, &config.intervals[i].name)
            };
            self.series_ids[s][i] = self.intern(&name);
        }
        Some(self.series_ids[s][i])
    }

    /// Publishes a bar's new state on its channel: into the series' history,
    /// as the channel's latest value, and to its subscribers. It carries its
    /// `gseq` (this node's, or the ingest's for a bar from the bus).
    fn publish_bar(&mut self, channel: u32, bar: Bar) {
        let Some(entry) = self.entries[channel as usize].as_ref() else {
            return;
        };
        let Some(series) = entry.slot.series.as_ref() else {
            return;
        };
        self.gseq = self.gseq.max(bar.gseq);
        series.apply(bar);
        let latest = Arc::new(Latest::candle(channel, bar, now_us()));
        if entry.slot.latest.swap(Some(latest.clone())).is_none() {
            // A series is not a symbol: not in /snapshot, not under the symbol cap.
            self.valueless -= 1;
            self.series_table.insert(entry.slot.clone());
        }
        self.fan_out(channel, &latest);
        METRICS.candle_updates.inc();
    }

    /// Hands a published value to every subscriber of its channel; after
    /// the swap, so a writer that reads [`crate::latest::PUBLISHED`] and then
    /// the latest values reads values at least this new.
    fn fan_out(&mut self, id: u32, latest: &Arc<Latest>) {
        crate::latest::PUBLISHED.store(self.gseq, std::sync::atomic::Ordering::Release);
        let Some(entry) = self.entries[id as usize].as_ref() else {
            return;
        };
        for outbox in &entry.subscribers.list {
            if outbox.push_tick(latest.clone()) != Pushed::Closed && outbox.list_for_wake() {
                self.to_wake.push(outbox.clone());
            }
        }
    }

    /// The id of a symbol the feed or the bus brings, or `None` when it would
    /// be a symbol with a value beyond `--max-feed-symbols`: such symbols are
    /// never forgotten, so without a cap one publisher inventing names would
    /// grow memory and `/snapshot` without end. Below the cap this costs one
    /// compare more than `intern`.
    fn intern_from_feed(&mut self, name: &str) -> Option<u32> {
        if self.valued < self.max_feed_symbols {
            return Some(self.intern(name));
        }
        let id = *self.by_name.get(name)?;
        self.entries[id as usize]
            .as_ref()
            .is_some_and(|e| e.slot.latest.load().is_some())
            .then_some(id)
    }

    /// Publishes every update whose window has closed.
    pub fn release_due(&mut self) {
        let (now, pub_us) = (Instant::now(), now_us());
        let mut releases = std::mem::take(&mut self.releases);
        self.coalescer.release_due(now, pub_us, &mut releases);
        for r in releases.drain(..) {
            self.publish(r.id, r.state);
        }
        self.releases = releases;
        if let Some(b) = self.builder.as_mut() {
            b.wall_clock(pub_us);
            b.release_due(now);
            self.publish_bars();
        }
    }

    /// Takes a symbol's last value from a previous run: it becomes the latest
    /// value and the coalescer's `seq` goes on after it.
    pub fn restore(&mut self, u: &Update) {
        let id = self.intern(u.symbol.as_str());
        self.coalescer.resume(id, &u.state);
        if let Some(entry) = self.entries[id as usize].as_ref() {
            let latest = Arc::new(Latest::new(id, u.state));
            self.gseq = self.gseq.max(u.state.gseq);
            // Restored symbols count against the cap, and are kept even beyond it.
            if entry.slot.latest.swap(Some(latest)).is_none() {
                self.valued += 1;
                self.valueless -= 1;
            }
            self.table.insert(entry.slot.clone());
        }
    }

    /// An update from another node: published if newer than what this node
    /// holds — at once if the symbol published nothing within the window,
    /// else held (the newest only) until the window has passed.
    fn on_remote(&mut self, u: Update, now: Instant) {
        let Some(id) = self.intern_from_feed(u.symbol.as_str()) else {
            METRICS.rejected(RejectReason::SymbolLimit);
            return;
        };
        if u.state.seq <= self.held_seq(id) {
            return;
        }
        if let Some(state) = self.remote.offer(id, u.state, now) {
            self.publish(id, state);
        }
    }

    /// The channel of a series named by the bus, if this node still holds
    /// it (a series its clients left before the bus answered is not made
    /// again: what the bus says of it is dropped).
    fn series_from_bus(&self, channel: &str) -> Option<u32> {
        let id = *self.by_name.get(channel)?;
        self.entries[id as usize]
            .as_ref()
            .is_some_and(|e| e.slot.series.is_some())
            .then_some(id)
    }

    /// The newest `seq` this node holds of a channel.
    fn held_seq(&self, id: u32) -> u64 {
        self.entries[id as usize]
            .as_ref()
            .and_then(|e| e.slot.latest.load().as_ref().map(|l| l.seq()))
            .unwrap_or(0)
    }

    /// A bar from the ingest: published if newer than what this node holds.
    /// One that skips a `seq` means the bus lost some (core NATS does not
    /// retry): the series is read again from JetStream, once at a time.
    fn on_remote_bar(&mut self, channel: &str, bar: Bar) {
        let Some(id) = self.series_from_bus(channel) else {
            return;
        };
        let held = self.held_seq(id);
        if bar.seq <= held {
            return;
        }
        if held > 0 && bar.seq > held + 1 && self.reloading.insert(id) {
            if let Some(interest) = &self.series_interest {
                let _ = interest.send(SeriesInterest::Reload(channel.to_string()));
            }
        }
        self.publish_bar(id, bar);
    }

    /// A series' stored bars: those newer than what this node holds are
    /// published in order (clients that follow it get what they missed), the
    /// others fill in its history; then the replies waiting for it go out.
    fn on_series_loaded(&mut self, channel: &str, mut bars: Vec<Bar>) {
        let Some(id) = self.series_from_bus(channel) else {
            return;
        };
        self.reloading.remove(&id);
        bars.sort_by_key(|b| b.seq);
        for bar in bars {
            if bar.seq > self.held_seq(id) {
                self.publish_bar(id, bar);
            } else if let Some(series) = self.entries[id as usize]
                .as_ref()
                .and_then(|e| e.slot.series.as_ref())
            {
                series.apply(bar);
            }
        }
        self.stop_waiting_for(id);
    }

    /// Each series' newest bar from a previous run (cluster ingest): the bar
    /// maker goes on from it, and it is the series' latest here.
    fn restore_bars(&mut self, bars: Vec<(Symbol, String, Bar)>) {
        for (symbol, interval, bar) in bars {
            let Some(i) = self
                .candle_config
                .as_ref()
                .and_then(|c| c.interval(&interval))
            else {
                continue;
            };
            // Only symbols whose value came back too (`Restore` is first):
            // the id of a symbol without one may be freed and used again.
            let Some(&sid) = self.by_name.get(symbol.as_str()) else {
                continue;
            };
            if self.held_seq(sid) == 0 {
                continue;
            }
            if let Some(b) = self.builder.as_mut() {
                b.resume(sid, i, bar.seq, Some(bar));
            }
            if let Some(channel) = self.series_channel(sid, i) {
                if bar.seq > self.held_seq(channel) {
                    self.publish_bar(channel, bar);
                }
            }
        }
        // Bars whose interval ended while no ingest ran go out closed.
        self.publish_bars();
    }

    /// Publishes the remote updates whose window has passed.
    fn release_remote(&mut self, now: Instant) {
        while let Some((id, state)) = self.remote.due(now) {
            if state.seq > self.held_seq(id) {
                self.publish(id, state);
            }
        }
    }

    /// Publishes an update: this node's release gets the next `gseq`, an
    /// update from another node keeps the `gseq` it was given there.
    fn publish(&mut self, id: u32, mut state: TickState) {
        let Some(entry) = self.entries[id as usize].as_mut() else {
            return;
        };
        if state.gseq == 0 {
            self.gseq += 1;
            state.gseq = self.gseq;
        } else {
            self.gseq = self.gseq.max(state.gseq);
        }
        if let Some(tap) = &self.tap {
            if let Some(symbol) = Symbol::new(&entry.slot.name) {
                // Blocks while the bus is behind: the feed slows, nothing is lost.
                let _ = tap.blocking_send(Update { symbol, state });
            }
        }
        let latest = Arc::new(Latest::new(id, state));
        if entry.slot.latest.swap(Some(latest.clone())).is_none() {
            self.valueless -= 1;
            self.table.insert(entry.slot.clone());
            self.valued += 1;
        }
        self.fan_out(id, &latest);
        METRICS.updates.inc();
    }

    /// The id of a symbol, creating its entry if new.
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.free_ids.pop().unwrap_or(self.entries.len() as u32);
        let series = self.candle_config.as_ref().and_then(|c| {
            let (symbol, interval) = crate::candle::split(name)?;
            let i = c.interval(interval)?;
            Some(Series::new(symbol, interval, i, c.keep))
        });
        let slot = match series {
            Some(series) => SymbolSlot::for_series(id, name, series),
            None => SymbolSlot::new(id, name),
        };
        let entry = SymbolEntry {
            slot: Arc::new(slot),
            subscribers: Subscribers::default(),
        };
        if id as usize == self.entries.len() {
            self.entries.push(Some(entry));
        } else {
            self.entries[id as usize] = Some(entry);
        }
        self.by_name.insert(name.into(), id);
        self.valueless += 1;
        id
    }

    /// Forgets a symbol that nobody subscribes to and that never had a value
    /// (clients may subscribe to names the feed never sends).
    fn forget_if_unused(&mut self, id: u32) {
        let unused = self.entries[id as usize]
            .as_ref()
            .is_some_and(|e| e.subscribers.list.is_empty() && e.slot.latest.load().is_none());
        if unused {
            // Replies must not wait for a symbol that no longer exists.
            self.stop_waiting_for(id);
            if let Some(e) = self.entries[id as usize].take() {
                self.by_name.remove(&e.slot.name);
                self.free_ids.push(id);
                self.valueless -= 1;
            }
        }
    }

    pub fn on_command(&mut self, command: Command) {
        match command {
            Command::Remote(u) => self.on_remote(u, Instant::now()),
            Command::Restore(updates) => {
                for u in &updates {
                    self.restore(u);
                }
            }
            Command::Fresh(symbol) => self.on_fresh(symbol),
            Command::RemoteBar { channel, bar } => self.on_remote_bar(&channel, bar),
            Command::SeriesLoaded { channel, bars } => self.on_series_loaded(&channel, bars),
            Command::RestoreBars(bars) => self.restore_bars(bars),
            Command::Register(outbox) => {
                self.clients.insert(
                    outbox.id,
                    Client {
                        outbox,
                        symbols: HashSet::new(),
                    },
                );
            }
            Command::Unregister(client) => {
                self.deferred.retain(|d| d.reply.client != client);
                if let Some(c) = self.clients.remove(&client) {
                    METRICS.subscriptions.add(-(c.symbols.len() as i64));
                    for id in c.symbols {
                        self.drop_subscriber(id, client);
                    }
                }
            }
            Command::Subscribe(request) => self.subscribe(request),
            Command::Reauthorize { client, id, claims } => self.reauthorize(client, id, &claims),
            Command::Unsubscribe {
                client,
                id,
                symbols,
            } => self.unsubscribe(client, id, symbols),
            Command::Drain {
                waves_left,
                spread_ms,
                left,
            } => {
                let open: Vec<&Arc<Outbox>> = self
                    .clients
                    .values()
                    .map(|c| &c.outbox)
                    .filter(|o| !o.is_closing())
                    .collect();
                let wave = open.len().div_ceil(waves_left.max(1) as usize);
                for outbox in &open[..wave] {
                    outbox.close_with_reconnect(
                        fastrand::u64(0..=spread_ms),
                        "server shutting down",
                        DisconnectReason::Shutdown,
                    );
                }
                let _ = left.send(open.len() - wave);
            }
        }
    }

    fn subscribe(&mut self, request: Subscribe) {
        let Subscribe {
            client,
            id,
            symbols,
            since,
            after,
            interval,
            limit,
            errors,
        } = request;
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        let new = symbols
            .iter()
            .filter(|s| {
                self.by_name
                    .get(s.as_str())
                    .is_none_or(|sid| !c.symbols.contains(sid))
            })
            .count();
        let max = self.limits.max_symbols as usize;
        if c.symbols.len() + new > max {
            let e = RequestError::new(
                id,
                ErrorCode::TooManySymbols,
                format!(
                    "subscribing to {new} more symbols would pass the limit of {max} per connection ({} subscribed); nothing subscribed",
                    c.symbols.len()
                ),
            );
            c.outbox.push_control(Control::Message(e.into()));
            return;
        }
        let mut reply = Reply {
            client,
            id,
            symbols: Vec::with_capacity(symbols.len()),
            added: HashSet::new(),
            errors,
            after,
        };
        let since: HashMap<String, u64> = since.into_iter().collect();
        for name in &symbols {
            let sid = self.intern(name);
            let Some(c) = self.clients.get_mut(&client) else {
                return;
            };
            let entry = self.entries[sid as usize].as_mut().expect("interned above");
            if c.symbols.insert(sid) {
                reply.added.insert(sid);
                entry.subscribers.add(&c.outbox);
                METRICS.subscriptions.add(1);
                // This node's copy of a symbol may be stale, and a series'
                // history is on the bus: the reply waits for the bus.
                if entry.subscribers.list.len() == 1
                    && tell_bus(&self.interest, &self.series_interest, &entry.slot, true)
                {
                    self.refreshing.insert(sid);
                }
            }
            let since = since.get(name).copied();
            let is_series = entry.slot.series.is_some();
            reply.symbols.push(SubscribedSymbol {
                slot: entry.slot.clone(),
                since,
                interval: interval.filter(|_| !is_series),
                limit,
            });
        }
        let waiting: HashSet<u32> = reply
            .symbols
            .iter()
            .map(|s| s.slot.id)
            .filter(|sid| self.refreshing.contains(sid))
            .collect();
        if waiting.is_empty() {
            self.answer(reply);
        } else {
            self.deferred.push(Deferred { reply, waiting });
        }
    }

    /// Sends a `subscribed` reply, once every symbol in it is up to date.
    /// Symbols the request added that still have no value are refused past
    /// the caps on names without a value (and unsubscribed again).
    fn answer(&mut self, mut reply: Reply) {
        let Some(c) = self.clients.get(&reply.client) else {
            return;
        };
        let valueless = |slot: &SymbolSlot| slot.latest.load().is_none();
        let mut held = c
            .symbols
            .iter()
            .filter(|sid| {
                self.entries[**sid as usize]
                    .as_ref()
                    .is_some_and(|e| valueless(&e.slot))
            })
            .count();
        let mut names = self.valueless;
        let mut refused = Vec::new();
        let mut kept = Vec::with_capacity(reply.symbols.len());
        for s in std::mem::take(&mut reply.symbols).into_iter().rev() {
            let over = held > self.limits.max_unknown_symbols as usize
                || names > self.limits.max_unknown_names;
            if over && reply.added.contains(&s.slot.id) && valueless(&s.slot) {
                held -= 1;
                let only_holder = self.entries[s.slot.id as usize]
                    .as_ref()
                    .is_some_and(|e| e.subscribers.list.len() == 1);
                if only_holder {
                    names -= 1;
                }
                refused.push(s.slot.clone());
            } else {
                kept.push(s);
            }
        }
        kept.reverse();
        reply.symbols = kept;
        if !refused.is_empty() {
            let names: Vec<String> = refused.iter().rev().map(|s| s.name.to_string()).collect();
            for slot in &refused {
                if let Some(c) = self.clients.get_mut(&reply.client) {
                    c.symbols.remove(&slot.id);
                }
                METRICS.subscriptions.add(-1);
                self.drop_subscriber(slot.id, reply.client);
            }
            let message = format!(
                "{} no value yet, and this connection (at most {}) or this server (at most {}) waits for as many symbols without one as it may",
                if names.len() == 1 { "has" } else { "have" },
                self.limits.max_unknown_symbols,
                self.limits.max_unknown_names
            );
            let e = RequestError::for_symbols(reply.id, ErrorCode::UnknownSymbol, names, message);
            reply.errors.push(e.into());
        }
        if let Some(c) = self.clients.get(&reply.client) {
            c.outbox.push_control(Control::Subscribed {
                id: reply.id,
                symbols: reply.symbols,
                errors: reply.errors,
                after: reply.after,
            });
        }
    }

    /// Ends the client's subscriptions that `claims` no longer allow, and says so.
    fn reauthorize(&mut self, client: u64, id: Option<i64>, claims: &Claims) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        let entries = &self.entries;
        let name = |sid: u32| entries[sid as usize].as_ref().map(|e| e.slot.clone());
        let ended: Vec<Arc<SymbolSlot>> = c
            .symbols
            .iter()
            .filter_map(|sid| name(*sid))
            .filter(|slot| !claims.allows(slot.symbol()))
            .collect();
        for slot in &ended {
            c.symbols.remove(&slot.id);
        }
        for d in self
            .deferred
            .iter_mut()
            .filter(|d| d.reply.client == client)
        {
            d.reply.symbols.retain(|s| claims.allows(s.slot.symbol()));
        }
        METRICS.subscriptions.add(-(ended.len() as i64));
        for slot in &ended {
            self.drop_subscriber(slot.id, client);
        }
        if !ended.is_empty() {
            if let Some(c) = self.clients.get(&client) {
                c.outbox.push_control(Control::Unsubscribed {
                    id,
                    symbols: ended,
                    reason: Some("forbidden"),
                });
            }
        }
    }

    /// The bus has brought a symbol up to date: send the replies that waited for it.
    fn on_fresh(&mut self, symbol: Symbol) {
        if let Some(&sid) = self.by_name.get(symbol.as_str()) {
            self.stop_waiting_for(sid);
        }
    }

    fn stop_waiting_for(&mut self, sid: u32) {
        if !self.refreshing.remove(&sid) {
            return;
        }
        let mut still = Vec::with_capacity(self.deferred.len());
        let mut ready = Vec::new();
        for mut d in std::mem::take(&mut self.deferred) {
            d.waiting.remove(&sid);
            if d.waiting.is_empty() {
                ready.push(d.reply);
            } else {
                still.push(d);
            }
        }
        self.deferred = still;
        for reply in ready {
            self.answer(reply);
        }
    }

    /// Removes one subscriber of a symbol; tells the bus when it was the last.
    fn drop_subscriber(&mut self, sid: u32, client: u64) {
        if let Some(e) = self.entries[sid as usize].as_mut() {
            e.subscribers.remove(client);
            if e.subscribers.list.is_empty() {
                tell_bus(&self.interest, &self.series_interest, &e.slot, false);
            }
        }
        self.forget_if_unused(sid);
    }

    fn unsubscribe(&mut self, client: u64, id: Option<i64>, symbols: Vec<String>) {
        let mut removed = Vec::new();
        for name in &symbols {
            let Some(&sid) = self.by_name.get(name.as_str()) else {
                continue;
            };
            let Some(c) = self.clients.get_mut(&client) else {
                return;
            };
            if c.symbols.remove(&sid) {
                if let Some(e) = self.entries[sid as usize].as_ref() {
                    removed.push(e.slot.clone());
                }
                METRICS.subscriptions.add(-1);
                self.drop_subscriber(sid, client);
            }
        }
        if let Some(c) = self.clients.get(&client) {
            c.outbox.push_control(Control::Unsubscribed {
                id,
                symbols: removed,
                reason: None,
            });
        }
    }
}

/// Tells the bus that `slot` got its first client here (`first`) or lost
/// its last: a candle series to the series follower, a symbol to the
/// per-symbol follower, when this node has one. Returns whether one was told.
fn tell_bus(
    symbols: &Option<tokio::sync::mpsc::UnboundedSender<Interest>>,
    series: &Option<tokio::sync::mpsc::UnboundedSender<SeriesInterest>>,
    slot: &SymbolSlot,
    first: bool,
) -> bool {
    if slot.series.is_some() {
        let Some(series) = series else {
            return false;
        };
        let name = slot.name.to_string();
        let _ = series.send(if first {
            SeriesInterest::Add(name)
        } else {
            SeriesInterest::Remove(name)
        });
        return true;
    }
    let (Some(symbols), Some(symbol)) = (symbols, Symbol::new(&slot.name)) else {
        return false;
    };
    let _ = symbols.send(if first {
        Interest::Add(symbol)
    } else {
        Interest::Remove(symbol)
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbol::Symbol;
    use crate::tick::{Fields, Tick};

    fn tick(symbol: &str, bid: f64) -> Tick {
        Tick {
            symbol: Symbol::new(symbol).unwrap(),
            fields: Fields {
                bid: Some(bid),
                ..Fields::default()
            },
            ts: 1,
            arrival: Instant::now(),
        }
    }

    fn hub() -> (Hub, Arc<SymbolTable>) {
        let table = Arc::new(SymbolTable::default());
        let limits = HubLimits {
            max_symbols: 3,
            max_unknown_symbols: 2,
            max_unknown_names: 4,
        };
        (
            Hub::new(Duration::from_secs(60), limits, table.clone()),
            table,
        )
    }

    fn client(hub: &mut Hub, id: u64) -> Arc<Outbox> {
        let o = Arc::new(Outbox::new(id, 16, false));
        hub.on_command(Command::Register(o.clone()));
        o
    }

    fn subscribe(hub: &mut Hub, client: u64, symbols: &[&str]) {
        hub.on_command(Command::Subscribe(Subscribe {
            client,
            id: Some(1),
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            since: vec![],
            after: None,
            interval: None,
            limit: 300,
            errors: vec![],
        }));
    }

    fn candle_config() -> CandleConfig {
        CandleConfig {
            intervals: crate::candle::parse_intervals("1s,1m").unwrap(),
            keep: 10,
            volume: crate::candle::VolumeMode::Cumulative,
            clock: crate::candle::Clock::Wall,
            window: Duration::from_millis(100),
        }
    }

    fn trade(symbol: &str, last: f64) -> Tick {
        Tick {
            symbol: Symbol::new(symbol).unwrap(),
            fields: Fields {
                last: Some(last),
                ..Fields::default()
            },
            ts: now_us(),
            arrival: Instant::now(),
        }
    }

    #[test]
    fn bars_leave_for_the_bus_with_the_gseq_every_edge_keeps() {
        let (hub, _) = hub();
        let mut hub = hub.with_candles(candle_config());
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        hub.candle_tap = Some(tx);
        hub.on_batch(&vec![trade("AAPL", 10.0)]);
        let mut tapped = Vec::new();
        while let Ok((symbol, i, bar)) = rx.try_recv() {
            assert_eq!(symbol.as_str(), "AAPL");
            tapped.push((i, bar));
        }
        assert_eq!(tapped.len(), 2, "one bar per interval");
        let series = hub.series_table().get("AAPL@1s").unwrap();
        let held = series.latest.load_full().unwrap();
        assert!(tapped.iter().all(|(_, b)| b.gseq > 0));
        assert_eq!(
            tapped[0].1.gseq, held.state.gseq,
            "the same gseq here and on the bus"
        );
        assert!(series.symbol() == "AAPL" && hub.table.get("AAPL@1s").is_none());
    }

    #[test]
    fn an_edge_drops_the_history_of_a_series_its_clients_already_left() {
        let (hub, _) = hub();
        let mut hub = hub;
        hub.candle_config = Some(Arc::new(candle_config()));
        let (tx, mut interest) = tokio::sync::mpsc::unbounded_channel();
        hub.series_interest = Some(tx);
        client(&mut hub, 1);
        subscribe(&mut hub, 1, &["ZQ1@1s"]);
        assert_eq!(
            interest.try_recv().unwrap(),
            SeriesInterest::Add("ZQ1@1s".into())
        );
        hub.on_command(Command::Unsubscribe {
            client: 1,
            id: None,
            symbols: vec!["ZQ1@1s".into()],
        });
        assert_eq!(
            interest.try_recv().unwrap(),
            SeriesInterest::Remove("ZQ1@1s".into())
        );
        let before = hub.valueless;
        // The bus answers late, with nothing: the name is not made again.
        hub.on_command(Command::SeriesLoaded {
            channel: "ZQ1@1s".into(),
            bars: vec![],
        });
        hub.on_command(Command::RemoteBar {
            channel: "ZQ1@1s".into(),
            bar: crate::candle::bar::Bar::open_at(0, 1.0, crate::candle::bar::Source::Trades),
        });
        assert!(!hub.by_name.contains_key("ZQ1@1s"));
        assert_eq!(hub.valueless, before);
    }

    #[test]
    fn an_edge_reads_a_series_again_when_the_bus_skipped_a_bar() {
        let (hub, _) = hub();
        let mut hub = hub;
        hub.candle_config = Some(Arc::new(candle_config()));
        let (tx, mut interest) = tokio::sync::mpsc::unbounded_channel();
        hub.series_interest = Some(tx);
        let o = client(&mut hub, 1);
        subscribe(&mut hub, 1, &["AAPL@1s"]);
        interest.try_recv().unwrap();
        let bar = |seq| {
            let mut b =
                crate::candle::bar::Bar::open_at(0, 1.0, crate::candle::bar::Source::Trades);
            b.seq = seq;
            b.gseq = 100 + seq;
            b
        };
        hub.on_command(Command::SeriesLoaded {
            channel: "AAPL@1s".into(),
            bars: vec![bar(1)],
        });
        hub.on_command(Command::RemoteBar {
            channel: "AAPL@1s".into(),
            bar: bar(2),
        });
        assert!(interest.try_recv().is_err(), "no gap");
        hub.on_command(Command::RemoteBar {
            channel: "AAPL@1s".into(),
            bar: bar(4),
        });
        hub.on_command(Command::RemoteBar {
            channel: "AAPL@1s".into(),
            bar: bar(6),
        });
        assert_eq!(
            interest.try_recv().unwrap(),
            SeriesInterest::Reload("AAPL@1s".into())
        );
        assert!(interest.try_recv().is_err(), "one reload at a time");
        assert_eq!(o.queued(), 4, "every bar still goes out: 1, 2, 4, 6");
        assert_eq!(hub.gseq, 106, "the ingest's gseq, not the edge's own");
    }

    #[test]
    fn updates_reach_only_the_subscribers_of_their_symbol() {
        let (mut hub, table) = hub();
        let a = client(&mut hub, 1);
        let b = client(&mut hub, 2);
        subscribe(&mut hub, 1, &["AAPL"]);
        subscribe(&mut hub, 2, &["MSFT"]);
        hub.on_batch(&vec![tick("AAPL", 1.0)]);
        assert_eq!(a.pop_tick().map(|t| t.seq()), Some(1));
        assert!(
            b.pop_tick().is_none(),
            "MSFT's subscriber is not touched by AAPL"
        );
        assert_eq!(
            table
                .get("AAPL")
                .unwrap()
                .latest
                .load()
                .as_ref()
                .unwrap()
                .seq(),
            1
        );
        assert!(table.get("MSFT").is_none(), "no value yet");
    }

    #[test]
    fn with_interest_the_reply_waits_for_the_bus_and_last_clients_are_told() {
        let (mut hub, _) = hub();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        hub.interest = Some(tx);
        let a = client(&mut hub, 1);
        let b = client(&mut hub, 2);
        subscribe(&mut hub, 1, &["AAPL"]);
        assert_eq!(
            rx.try_recv().unwrap(),
            Interest::Add(Symbol::new("AAPL").unwrap())
        );
        assert!(
            a.take_control().is_empty(),
            "no reply before the bus has the last value"
        );
        subscribe(&mut hub, 2, &["AAPL"]);
        assert!(rx.try_recv().is_err(), "only the first client asks the bus");
        assert!(b.take_control().is_empty(), "still refreshing");
        hub.on_command(Command::Fresh(Symbol::new("AAPL").unwrap()));
        assert!(matches!(a.take_control()[0], Control::Subscribed { .. }));
        assert!(matches!(b.take_control()[0], Control::Subscribed { .. }));
        hub.on_command(Command::Unregister(1));
        assert!(rx.try_recv().is_err());
        hub.on_command(Command::Unsubscribe {
            client: 2,
            id: None,
            symbols: vec!["AAPL".into()],
        });
        assert_eq!(
            rx.try_recv().unwrap(),
            Interest::Remove(Symbol::new("AAPL").unwrap())
        );
    }

    #[test]
    fn a_reply_never_waits_for_a_symbol_whose_clients_all_left() {
        let (mut hub, _) = hub();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        hub.interest = Some(tx);
        let a = client(&mut hub, 1);
        subscribe(&mut hub, 1, &["ZZZ"]);
        hub.on_command(Command::Unsubscribe {
            client: 1,
            id: None,
            symbols: vec!["ZZZ".into()],
        });
        let control = a.take_control();
        assert!(control
            .iter()
            .any(|c| matches!(c, Control::Subscribed { .. })));
        assert!(hub.refreshing.is_empty());
    }

    #[test]
    fn new_feed_symbols_beyond_the_cap_are_refused_known_ones_still_tick() {
        let (mut hub, table) = hub();
        hub.max_feed_symbols = 2;
        let a = client(&mut hub, 1);
        // A name clients asked for but the feed never sent does not count.
        subscribe(&mut hub, 1, &["WANTED"]);
        hub.on_batch(&vec![tick("A", 1.0), tick("B", 1.0), tick("C", 1.0)]);
        assert!(
            table.get("C").is_none(),
            "a third symbol with a value is refused"
        );
        hub.on_batch(&vec![tick("WANTED", 1.0), tick("A", 2.0)]);
        assert!(
            table.get("WANTED").is_none(),
            "at the cap, no new value for anyone"
        );
        assert!(a.pop_tick().is_none());
        assert_eq!(hub.valued, 2);
        // Restored last values are kept even beyond the cap, and count.
        hub.restore(&Update {
            symbol: Symbol::new("R").unwrap(),
            state: TickState {
                seq: 7,
                fields: Fields::default(),
                ts: 1,
                pub_us: 1,
                gseq: 0,
            },
        });
        assert_eq!(hub.valued, 3);
        hub.on_command(Command::Remote(Update {
            symbol: Symbol::new("REMOTE").unwrap(),
            state: TickState {
                seq: 1,
                fields: Fields::default(),
                ts: 1,
                pub_us: 1,
                gseq: 0,
            },
        }));
        assert!(table.get("REMOTE").is_none(), "the bus's symbols count too");
        hub.on_batch(&vec![tick("R", 2.0)]);
        assert_eq!(
            table
                .get("R")
                .unwrap()
                .latest
                .load()
                .as_ref()
                .unwrap()
                .seq(),
            8
        );
    }

    #[test]
    fn too_many_symbols_subscribes_nothing() {
        let (mut hub, _) = hub();
        let a = client(&mut hub, 1);
        hub.on_batch(&vec![
            tick("A", 1.0),
            tick("B", 1.0),
            tick("C", 1.0),
            tick("D", 1.0),
        ]);
        subscribe(&mut hub, 1, &["A", "B"]);
        subscribe(&mut hub, 1, &["B", "C", "D"]);
        let control = a.take_control();
        assert!(matches!(control[0], Control::Subscribed { .. }));
        let Control::Message(m) = &control[1] else {
            panic!("expected an error message")
        };
        assert!(m.to_value().to_string().contains("too_many_symbols"));
        // Re-subscribing to held symbols does not count against the limit.
        subscribe(&mut hub, 1, &["A", "B", "C"]);
        assert!(matches!(a.take_control()[0], Control::Subscribed { .. }));
        assert_eq!(hub.clients[&1].symbols.len(), 3);
    }

    #[test]
    fn unsubscribe_and_unregister_stop_delivery_and_forget_unused_names() {
        let (mut hub, _) = hub();
        let a = client(&mut hub, 1);
        subscribe(&mut hub, 1, &["AAPL", "NEVER"]);
        hub.on_command(Command::Unsubscribe {
            client: 1,
            id: None,
            symbols: vec!["AAPL".into(), "ZZZ".into()],
        });
        hub.on_batch(&vec![tick("AAPL", 1.0)]);
        assert!(a.pop_tick().is_none());
        assert!(hub.by_name.contains_key("NEVER"));
        hub.on_command(Command::Unregister(1));
        assert!(
            !hub.by_name.contains_key("NEVER"),
            "a name with no value and no subscriber is forgotten"
        );
        assert!(
            hub.by_name.contains_key("AAPL"),
            "a symbol with a value stays"
        );
    }

    fn subscribed_names(control: &std::collections::VecDeque<Control>) -> Vec<String> {
        control
            .iter()
            .find_map(|c| match c {
                Control::Subscribed { symbols, .. } => {
                    Some(symbols.iter().map(|s| s.slot.name.to_string()).collect())
                }
                _ => None,
            })
            .expect("a subscribed reply")
    }

    fn error_text(control: &std::collections::VecDeque<Control>) -> String {
        control
            .iter()
            .find_map(|c| match c {
                Control::Subscribed { errors, .. } => {
                    Some(errors.iter().map(|e| e.to_value().to_string()).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn symbols_without_a_value_are_capped_per_client_and_in_all() {
        let (mut hub, _) = hub();
        hub.limits.max_symbols = 10;
        hub.on_batch(&vec![tick("AAPL", 1.0)]);
        let a = client(&mut hub, 1);
        subscribe(&mut hub, 1, &["AAPL", "N1", "N2"]);
        assert_eq!(subscribed_names(&a.take_control()), ["AAPL", "N1", "N2"]);
        // A third name without a value passes this client's cap of 2.
        subscribe(&mut hub, 1, &["N3"]);
        let control = a.take_control();
        assert!(subscribed_names(&control).is_empty());
        assert!(
            error_text(&control).contains("unknown_symbol"),
            "{}",
            error_text(&control)
        );
        assert!(
            !hub.by_name.contains_key("N3"),
            "a refused name costs nothing"
        );
        // Re-subscribing to a held one is not refused.
        subscribe(&mut hub, 1, &["N1"]);
        assert_eq!(subscribed_names(&a.take_control()), ["N1"]);
        // Across clients: 4 names without a value at most.
        let b = client(&mut hub, 2);
        subscribe(&mut hub, 2, &["M1", "M2"]);
        assert_eq!(subscribed_names(&b.take_control()), ["M1", "M2"]);
        let c = client(&mut hub, 3);
        subscribe(&mut hub, 3, &["N1", "Z1"]);
        let control = c.take_control();
        assert_eq!(
            subscribed_names(&control),
            ["N1"],
            "a name others wait for costs nothing new"
        );
        assert!(error_text(&control).contains("Z1"));
        assert_eq!(hub.valueless, 4);
        // Once the feed publishes one, it has a value and frees a place.
        hub.on_batch(&vec![tick("N1", 1.0)]);
        assert_eq!(hub.valueless, 3);
        subscribe(&mut hub, 3, &["Z1"]);
        assert_eq!(subscribed_names(&c.take_control()), ["Z1"]);
        hub.on_command(Command::Unregister(1));
        hub.on_command(Command::Unregister(2));
        hub.on_command(Command::Unregister(3));
        assert_eq!(hub.valueless, 0, "every name without a value was forgotten");
    }

    #[test]
    fn a_narrower_refresh_ends_subscriptions_at_once() {
        let (mut hub, _) = hub();
        let a = client(&mut hub, 1);
        hub.on_batch(&vec![tick("AAPL", 1.0), tick("TSLA", 1.0)]);
        subscribe(&mut hub, 1, &["AAPL", "TSLA"]);
        a.take_control();
        while a.pop_tick().is_some() {}
        let claims = Claims {
            sub: "alice".into(),
            exp: u64::MAX,
            iat: None,
            nbf: None,
            jti: None,
            symbols: Some(vec!["AAPL".into()]),
        };
        hub.on_command(Command::Reauthorize {
            client: 1,
            id: Some(9),
            claims: Arc::new(claims),
        });
        let control = a.take_control();
        match &control[0] {
            Control::Unsubscribed {
                id,
                symbols,
                reason,
            } => {
                assert_eq!(*id, Some(9));
                assert_eq!(symbols.len(), 1);
                assert_eq!(&*symbols[0].name, "TSLA");
                assert_eq!(*reason, Some("forbidden"));
            }
            _ => panic!("expected unsubscribed"),
        }
        hub.release_due();
        hub.on_batch(&vec![tick("TSLA", 2.0)]);
        let mut out = Vec::new();
        let t0 = Instant::now() + Duration::from_secs(61);
        hub.coalescer.release_due(t0, 0, &mut out);
        for r in out {
            hub.publish(r.id, r.state);
        }
        while let Some(t) = a.pop_tick() {
            assert_eq!(
                &*hub.entries[t.id as usize].as_ref().unwrap().slot.name,
                "AAPL"
            );
        }
        assert_eq!(hub.clients[&1].symbols.len(), 1);
    }
}
