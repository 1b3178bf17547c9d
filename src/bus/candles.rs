//! How candles cross nodes (protocol §4c): the ingest makes the bars, NATS
//! carries them, JetStream keeps them.
//!
//! * Every bar message (a forming bar's update, a close) goes out on
//!   `tickcast.candle.<interval>.<symbol hex>` (core NATS, live), and into
//!   the KV bucket `tickcast-forming` under `<interval>.<symbol hex>`: the
//!   newest bar of each series, so a restarted ingest goes on with `seq`
//!   and the forming bar, and an edge serves the forming bar at once.
//! * Every closed bar also goes to `tickcast.bars.<interval>.<symbol hex>`,
//!   the subjects of the stream `tickcast-candles` (file storage,
//!   `--candle-keep` messages per subject): the history, which survives a
//!   restart of any node.
//!
//! An edge loads a series' history when a client first asks for it, then
//! follows its live subject; `/candles` on an edge reads the stream and the
//! bucket directly.

use super::token;
use crate::candle::bar::{Bar, Source};
use crate::candle::series::Series;
use crate::hub::{Command, HubHandle, SeriesInterest};
use crate::symbol::Symbol;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

pub const STREAM: &str = "tickcast-candles";
pub const FORMING: &str = "tickcast-forming";

/// The longest a history read from the stream may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Series histories an edge reads from JetStream at once; the others wait
/// their turn (a crowd subscribing to many series does not make as many
/// consumers at once).
const LOADS_AT_ONCE: usize = 8;

pub fn live_subject(interval: &str, symbol: &str) -> String {
    format!("tickcast.candle.{interval}.{}", token(symbol))
}

pub fn stored_subject(interval: &str, symbol: &str) -> String {
    format!("tickcast.bars.{interval}.{}", token(symbol))
}

pub fn key(interval: &str, symbol: &str) -> String {
    format!("{interval}.{}", token(symbol))
}

/// A bar on the wire: its `candle` payload, with the `gseq` it was given.
pub fn encode(symbol: &str, interval: &str, bar: &Bar) -> Bytes {
    let mut v = bar.to_value(Some((symbol, interval)));
    v["gseq"] = bar.gseq.into();
    serde_json::to_vec(&v).unwrap_or_default().into()
}

/// A bar from the wire, with its symbol and interval; `None` for anything
/// that is not one.
pub fn decode(payload: &[u8]) -> Option<(Symbol, String, Bar)> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64).filter(|x| x.is_finite());
    let u = |k: &str| v.get(k).and_then(Value::as_u64);
    let symbol = Symbol::new(v.get("symbol")?.as_str()?)?;
    let interval = v.get("interval")?.as_str()?;
    if interval.is_empty()
        || interval.len() > 8
        || !interval.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    let bar = Bar {
        start: u("start")?,
        open: f("open")?,
        high: f("high")?,
        low: f("low")?,
        close: f("close")?,
        volume: f("volume")?,
        trades: u32::try_from(u("trades")?).ok()?,
        source: Source::parse(v.get("source")?.as_str()?)?,
        closed: v.get("closed")?.as_bool()?,
        seq: u("seq")?,
        gseq: u("gseq").unwrap_or(0),
    };
    Some((symbol, interval.to_string(), bar))
}

/// The stream of closed bars and the bucket of newest bars (created if missing).
pub async fn stores(
    client: &async_nats::Client,
    keep: usize,
) -> Result<(jetstream::stream::Stream, kv::Store), String> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec!["tickcast.bars.>".into()],
            max_messages_per_subject: keep as i64,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("JetStream stream {STREAM}: {e}"))?;
    let forming = js
        .create_key_value(kv::Config {
            bucket: FORMING.into(),
            history: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("JetStream KV bucket {FORMING}: {e}"))?;
    Ok((stream, forming))
}

/// [`stores`], asked for until NATS answers.
pub async fn stores_when_ready(
    client: &async_nats::Client,
    keep: usize,
) -> (jetstream::stream::Stream, kv::Store) {
    super::retry("the candle stores", || stores(client, keep)).await
}

/// Ingest: sends every bar the hub makes to its live subject and the
/// bucket, and a closed one to the stream too.
pub async fn publish_bars(
    client: async_nats::Client,
    intervals: Vec<Box<str>>,
    mut bars: tokio::sync::mpsc::Receiver<(Symbol, usize, Bar)>,
) {
    while let Some((symbol, i, bar)) = bars.recv().await {
        let Some(interval) = intervals.get(i) else {
            continue;
        };
        let name = symbol.as_str();
        let payload = encode(name, interval, &bar);
        // Each waits only while the client's own buffer is full (NATS down).
        // Stored before live, on one connection: a bar an edge has seen
        // live has reached the stream and the bucket too.
        if bar.closed {
            let _ = client
                .publish(stored_subject(interval, name), payload.clone())
                .await;
        }
        let _ = client
            .publish(
                format!("$KV.{FORMING}.{}", key(interval, name)),
                payload.clone(),
            )
            .await;
        let _ = client.publish(live_subject(interval, name), payload).await;
    }
}

/// Ingest, at start: every series' newest bar, to go on from.
pub async fn load_newest(forming: &kv::Store) -> Result<Vec<(Symbol, String, Bar)>, String> {
    super::values(forming, decode).await
}

/// A series' stored bars: its closed bars in the stream (oldest first) and
/// its newest bar in the bucket.
pub async fn load_series(
    stream: &jetstream::stream::Stream,
    forming: &kv::Store,
    symbol: &str,
    interval: &str,
) -> Result<Vec<Bar>, String> {
    let mut bars = Vec::new();
    let mut consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: stored_subject(interval, symbol),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("consumer: {e}"))?;
    let pending = consumer
        .info()
        .await
        .map_err(|e| format!("consumer info: {e}"))?
        .num_pending;
    if pending > 0 {
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("messages: {e}"))?;
        let read = async {
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| format!("message: {e}"))?;
                if let Some((_, _, bar)) = decode(&m.payload) {
                    bars.push(bar);
                }
                let left = m.info().map(|i| i.pending).unwrap_or(0);
                if left == 0 {
                    break;
                }
            }
            Ok::<(), String>(())
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| "reading the stream took too long".to_string())??;
    }
    if let Ok(Some(value)) = forming.get(key(interval, symbol)).await {
        bars.extend(decode(&value).map(|(_, _, bar)| bar));
    }
    Ok(bars)
}

/// `/candles` on an edge: what the bus holds.
pub struct BusHistory {
    pub stream: jetstream::stream::Stream,
    pub forming: kv::Store,
    pub keep: usize,
}

impl crate::candle::History for BusHistory {
    fn history<'a>(
        &'a self,
        symbol: &'a str,
        interval: &'a str,
        limit: usize,
        end: Option<u64>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Bar>, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let series = Series::new(symbol, interval, 0, self.keep);
            for bar in load_series(&self.stream, &self.forming, symbol, interval).await? {
                series.apply(bar);
            }
            Ok(series.history(limit, end).bars)
        })
    }
}

/// Edge: follows the series its clients ask for. On the first client of a
/// series it subscribes to its live subject, then loads its history (the
/// subscription first, so no bar falls between), and hands both to the
/// hub, which then answers the waiting `subscribe`s. When NATS comes back
/// after a loss, every series followed is loaded again.
pub async fn follow_series(
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    forming: kv::Store,
    hub: HubHandle,
    mut interest: tokio::sync::mpsc::UnboundedReceiver<SeriesInterest>,
    mut reconnects: tokio::sync::watch::Receiver<u64>,
) {
    let mut followed: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut watching = true;
    let loads = std::sync::Arc::new(tokio::sync::Semaphore::new(LOADS_AT_ONCE));
    loop {
        let change = tokio::select! {
            change = interest.recv() => match change {
                Some(change) => change,
                None => return,
            },
            back = reconnects.changed(), if watching => {
                watching = back.is_ok();
                for name in followed.keys().cloned() {
                    spawn_load(&loads, &stream, &forming, &hub, name);
                }
                continue;
            }
        };
        match change {
            SeriesInterest::Add(name) => {
                let Some((symbol, interval)) = crate::candle::split(&name) else {
                    continue;
                };
                if !followed.contains_key(&name) {
                    match client.subscribe(live_subject(interval, symbol)).await {
                        Ok(sub) => {
                            let channel = name.clone();
                            let task = super::forward(sub, hub.clone(), move |payload| {
                                decode(payload).map(|(_, _, bar)| Command::RemoteBar {
                                    channel: channel.clone(),
                                    bar,
                                })
                            });
                            followed.insert(name.clone(), task);
                        }
                        Err(e) => crate::warn!("bus: cannot subscribe to {name}: {e}"),
                    }
                }
                spawn_load(&loads, &stream, &forming, &hub, name);
            }
            SeriesInterest::Reload(name) => {
                if followed.contains_key(&name) {
                    spawn_load(&loads, &stream, &forming, &hub, name);
                }
            }
            SeriesInterest::Remove(name) => {
                if let Some(task) = followed.remove(&name) {
                    task.abort();
                }
            }
        }
    }
}

/// Loads a series off the caller's loop (a slow read holds up nothing
/// else), at most [`LOADS_AT_ONCE`] at a time.
fn spawn_load(
    loads: &std::sync::Arc<tokio::sync::Semaphore>,
    stream: &jetstream::stream::Stream,
    forming: &kv::Store,
    hub: &HubHandle,
    channel: String,
) {
    let (loads, stream, forming, hub) =
        (loads.clone(), stream.clone(), forming.clone(), hub.clone());
    tokio::spawn(async move {
        let _turn = loads.acquire_owned().await;
        load(&stream, &forming, &hub, channel).await;
    });
}

/// Loads one series' stored bars into the hub (which then answers the
/// `subscribe`s waiting for it; with nothing read, they get what it holds).
async fn load(
    stream: &jetstream::stream::Stream,
    forming: &kv::Store,
    hub: &HubHandle,
    channel: String,
) {
    let bars = match crate::candle::split(&channel) {
        Some((symbol, interval)) => match load_series(stream, forming, symbol, interval).await {
            Ok(bars) => bars,
            Err(e) => {
                crate::warn!("bus: cannot read the history of {channel}: {e}");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    hub.send(Command::SeriesLoaded { channel, bars });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_round_trip_through_the_wire_payload() {
        let mut bar = Bar::open_at(60_000_000, 1.5, Source::Trades);
        bar.trade(1.75, 3.0);
        bar.seq = 9;
        bar.gseq = 77;
        bar.closed = true;
        let (symbol, interval, back) = decode(&encode("FX:EUR/USD", "1m", &bar)).unwrap();
        assert_eq!(
            (symbol.as_str(), interval.as_str(), back),
            ("FX:EUR/USD", "1m", bar)
        );
        assert_eq!(live_subject("1m", "A.B"), "tickcast.candle.1m.412e42");
        assert_eq!(key("5m", "A"), "5m.41");
        for bad in [
            r#"{"symbol":"A","interval":"1m"}"#,
            r#"{"symbol":"A B","interval":"1m","seq":1,"start":0,"open":1,"high":1,"low":1,"close":1,"volume":0,"trades":0,"source":"mid","closed":false}"#,
            r#"{"symbol":"A","interval":"1.m","seq":1,"start":0,"open":1,"high":1,"low":1,"close":1,"volume":0,"trades":0,"source":"mid","closed":false}"#,
            r#"{"symbol":"A","interval":"1m","seq":1,"start":0,"open":1,"high":1,"low":1,"close":1,"volume":0,"trades":0,"source":"other","closed":false}"#,
            "not json",
        ] {
            assert!(decode(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
