//! How updates cross nodes: NATS as the pub/sub backbone, JetStream KV for last values.
//!
//! The ingest node publishes every update its coalescer releases (with the
//! `seq` it assigned) on `tickcast.tick.<symbol in hex>` and, fire-and-forget,
//! on the KV bucket `tickcast` (history 1), whose stream keeps the last value
//! of every symbol. Edge nodes load the bucket at start (so their snapshots
//! are right at once) and then take every update from NATS; their hubs keep
//! only updates newer than what they hold, so `seq` is the ingest's on every
//! edge. A restarted ingest reads the bucket first and goes on from there.
//!
//! Symbols may hold `.`, `:` and `/`, which subjects and KV keys reserve or
//! refuse: both use the symbol's hex. The payload is the tick's JSON payload.

pub mod candles;

use crate::encoding::json::put_tick_payload;
use crate::hub::{Command, HubHandle, Interest};
use crate::symbol::Symbol;
use crate::tick::Update;
use crate::tick::{Fields, TickState};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const BUCKET: &str = "tickcast";

/// How often a node pings NATS (see [`connect`]).
pub const BUS_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// A connection to the bus and whether it is up now.
pub struct Bus {
    pub client: async_nats::Client,
    pub connected: Arc<AtomicBool>,
    /// Bumped each time the connection comes back after a loss: what was
    /// published meanwhile may be lost or late, so nodes catch up.
    pub reconnects: tokio::sync::watch::Receiver<u64>,
}

/// The hex of a symbol: a safe subject token and KV key.
pub fn token(symbol: &str) -> String {
    symbol.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The symbol a hex token stands for.
pub fn from_token(token: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

pub fn subject(symbol: &str) -> String {
    format!("tickcast.tick.{}", token(symbol))
}

/// The tick's JSON payload, and its `gseq` (the ingest's release order).
pub fn encode(u: &Update) -> Bytes {
    let mut buf = Vec::with_capacity(180);
    put_tick_payload(&mut buf, u.symbol.as_str(), &u.state, false);
    buf.pop();
    buf.extend_from_slice(format!(",\"gseq\":{}}}", u.state.gseq).as_bytes());
    buf.into()
}

pub fn decode(payload: &[u8]) -> Option<Update> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
    Some(Update {
        symbol: Symbol::new(v.get("symbol")?.as_str()?)?,
        state: TickState {
            seq: v.get("seq")?.as_u64()?,
            fields: Fields {
                bid: f("bid"),
                ask: f("ask"),
                last: f("last"),
                volume: f("volume"),
            },
            ts: v.get("ts")?.as_u64()?,
            pub_us: v.get("pub")?.as_u64()?,
            // Values written before `gseq` existed have none: 0, "before everything".
            gseq: v.get("gseq").and_then(|g| g.as_u64()).unwrap_or(0),
        },
    })
}

/// Connects (retrying in the background until the server is there) and
/// tracks whether the connection is up.
pub async fn connect(urls: &[String], node: &str) -> Result<Bus, String> {
    let connected = Arc::new(AtomicBool::new(false));
    let flag = connected.clone();
    let (reconnected, reconnects) = tokio::sync::watch::channel(0u64);
    let reconnected = Arc::new(reconnected);
    let ever = Arc::new(AtomicBool::new(false));
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().map_err(|e| format!("--nats {u}: {e}")))
        .collect::<Result<_, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("tickcast {node}"))
        .retry_on_initial_connect()
        // A partition (no FIN, no RST) is noticed once 3 pings go unanswered:
        // within about 6 s, not the 3 minutes of the default interval.
        .ping_interval(BUS_PING_INTERVAL)
        .event_callback(move |event| {
            let flag = flag.clone();
            let (reconnected, ever) = (reconnected.clone(), ever.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        flag.store(true, Ordering::Release);
                        if ever.swap(true, Ordering::AcqRel) {
                            reconnected.send_modify(|n| *n += 1);
                        }
                    }
                    async_nats::Event::Disconnected => {
                        flag.store(false, Ordering::Release);
                        crate::warn!("bus: disconnected from NATS; reconnecting");
                    }
                    _ => {}
                }
            }
        })
        .connect(addrs)
        .await
        .map_err(|e| format!("--nats: {e}"))?;
    Ok(Bus {
        client,
        connected,
        reconnects,
    })
}

/// The last-values bucket (created if missing).
pub async fn bucket(client: &async_nats::Client) -> Result<kv::Store, String> {
    let js = async_nats::jetstream::new(client.clone());
    js.create_key_value(kv::Config {
        bucket: BUCKET.into(),
        history: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("JetStream KV bucket {BUCKET}: {e}"))
}

/// The bucket, asked for until NATS answers: a node started while NATS is
/// unreachable waits for it (not ready) instead of giving up.
pub async fn bucket_when_ready(client: &async_nats::Client) -> kv::Store {
    retry("the last-values bucket", || bucket(client)).await
}

/// Every symbol's last value, read again until it can be read whole.
pub async fn load_all_when_ready(store: &kv::Store) -> Vec<Update> {
    retry("the last values", || load_all(store)).await
}

/// Edge, following every symbol: [`receive_updates`], until it succeeds.
pub async fn receive_updates_when_ready(
    client: async_nats::Client,
    store: kv::Store,
    hub: HubHandle,
    reconnects: tokio::sync::watch::Receiver<u64>,
) {
    retry("the updates' subject", || {
        receive_updates(
            client.clone(),
            store.clone(),
            hub.clone(),
            reconnects.clone(),
        )
    })
    .await
}

/// Hands what a subscription receives to the hub, as `command` reads it
/// (what it cannot read is dropped), until the subscription ends; aborting
/// the task unsubscribes.
pub(crate) fn forward(
    mut sub: async_nats::Subscriber,
    hub: HubHandle,
    command: impl Fn(&[u8]) -> Option<Command> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(c) = command(&msg.payload) {
                hub.send(c);
            }
        }
    })
}

/// Runs `attempt` until it succeeds, a second apart, logging a failure at
/// most every 10 s.
pub(crate) async fn retry<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut logged: Option<std::time::Instant> = None;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => {
                if logged.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10)) {
                    crate::warn!("bus: cannot read {what} yet ({e}); not ready, retrying");
                    logged = Some(std::time::Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// The cluster's `seq` lineage, in µs: when the bucket of last values was
/// created. Every node of a cluster reads the same, across restarts of any
/// of them; it changes only with the bucket, and then `seq` starts over.
pub async fn epoch(store: &kv::Store) -> Option<u64> {
    let status = store.status().await.ok()?;
    u64::try_from(status.info.created.unix_timestamp_nanos() / 1000).ok()
}

/// Every symbol's last value in the bucket.
pub async fn load_all(store: &kv::Store) -> Result<Vec<Update>, String> {
    values(store, decode).await
}

/// Every value of a bucket that `decode` reads (the others are skipped).
pub(crate) async fn values<T>(
    store: &kv::Store,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Result<Vec<T>, String> {
    let mut keys = store.keys().await.map_err(|e| format!("KV keys: {e}"))?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok(Some(value)) = store.get(&key).await {
            out.extend(decode(&value));
        }
    }
    Ok(out)
}

/// Ingest: sends every update the hub releases to NATS and to the bucket.
pub async fn publish_updates(
    client: async_nats::Client,
    mut updates: tokio::sync::mpsc::Receiver<Update>,
) {
    while let Some(u) = updates.recv().await {
        let payload = encode(&u);
        let name = u.symbol.as_str();
        // Both wait only while the client's own buffer is full (NATS down).
        let _ = client.publish(subject(name), payload.clone()).await;
        let _ = client
            .publish(format!("$KV.{BUCKET}.{}", token(name)), payload)
            .await;
    }
}

/// Ingest: once NATS is back after a loss, publishes every symbol's latest
/// value again, to the subjects and the bucket. What was published during
/// the outage may be lost, or arrive late and stale; this makes the bucket
/// and every edge end on the latest state (edges keep only what is newer
/// than what they hold).
pub async fn republish_on_reconnect(
    client: async_nats::Client,
    table: Arc<crate::latest::SymbolTable>,
    mut reconnects: tokio::sync::watch::Receiver<u64>,
) {
    while reconnects.changed().await.is_ok() {
        let slots = table.sorted();
        for slot in slots.iter() {
            let (Some(latest), Some(symbol)) = (slot.latest.load_full(), Symbol::new(&slot.name))
            else {
                continue;
            };
            let payload = encode(&Update {
                symbol,
                state: latest.state,
            });
            let _ = client.publish(subject(&slot.name), payload.clone()).await;
            let _ = client
                .publish(format!("$KV.{BUCKET}.{}", token(&slot.name)), payload)
                .await;
        }
        crate::info!(
            "bus: back; published the latest of {} symbols again",
            slots.len()
        );
    }
}

/// Edge: takes every update from NATS into the hub, after the bucket's last
/// values, and reads the bucket again each time NATS comes back after a loss.
pub async fn receive_updates(
    client: async_nats::Client,
    store: kv::Store,
    hub: HubHandle,
    reconnects: tokio::sync::watch::Receiver<u64>,
) -> Result<(), String> {
    // Subscribe first: an update between the load and the subscription is not lost
    // (the hub keeps whichever is newer).
    let sub = client
        .subscribe("tickcast.tick.*")
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    for u in load_all(&store).await? {
        hub.send(Command::Remote(u));
    }
    forward(sub, hub.clone(), |payload| {
        decode(payload).map(Command::Remote)
    });
    tokio::spawn(async move {
        let mut reconnects = reconnects;
        while reconnects.changed().await.is_ok() {
            for u in load_all_when_ready(&store).await {
                hub.send(Command::Remote(u));
            }
        }
    });
    Ok(())
}

/// The last value of one symbol in the bucket.
pub async fn last_value(store: &kv::Store, symbol: &str) -> Option<Update> {
    let value = store.get(token(symbol)).await.ok()??;
    decode(&value)
}

/// Edge, per-symbol interest: follows a symbol's subject while this node has
/// clients for it. On the first client it subscribes, then reads the symbol's
/// last value (newer than anything this node may hold from before), then tells
/// the hub the symbol is fresh, which releases the waiting `subscribed` replies.
/// The subscription is made first, so no update falls between the two.
///
/// Each time NATS comes back after a loss, the last value of every symbol
/// followed is read again: what was published meanwhile may be lost.
pub async fn follow_interest(
    client: async_nats::Client,
    store: kv::Store,
    hub: HubHandle,
    mut interest: tokio::sync::mpsc::UnboundedReceiver<Interest>,
    mut reconnects: tokio::sync::watch::Receiver<u64>,
) {
    let mut followed: std::collections::HashMap<Symbol, tokio::task::JoinHandle<()>> =
        Default::default();
    let mut watching = true;
    loop {
        let change = tokio::select! {
            change = interest.recv() => match change {
                Some(change) => change,
                None => return,
            },
            back = reconnects.changed(), if watching => {
                watching = back.is_ok();
                // Off this loop, so that new subscriptions are not held up.
                let (store, hub) = (store.clone(), hub.clone());
                let symbols: Vec<Symbol> = followed.keys().copied().collect();
                tokio::spawn(async move {
                    for symbol in symbols {
                        if let Some(u) = last_value(&store, symbol.as_str()).await {
                            hub.send(Command::Remote(u));
                        }
                    }
                });
                continue;
            }
        };
        match change {
            Interest::Add(symbol) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = followed.entry(symbol) {
                    match client.subscribe(subject(symbol.as_str())).await {
                        Ok(sub) => {
                            slot.insert(forward(sub, hub.clone(), |payload| {
                                decode(payload).map(Command::Remote)
                            }));
                        }
                        Err(e) => crate::warn!("bus: cannot subscribe to {symbol}: {e}"),
                    }
                }
                if let Some(u) = last_value(&store, symbol.as_str()).await {
                    hub.send(Command::Remote(u));
                }
                hub.send(Command::Fresh(symbol));
            }
            Interest::Remove(symbol) => {
                // Dropping the subscriber unsubscribes.
                if let Some(task) = followed.remove(&symbol) {
                    task.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_round_trip_through_the_wire_payload() {
        let u = Update {
            symbol: Symbol::new("FX:EUR/USD").unwrap(),
            state: TickState {
                seq: 42,
                fields: Fields {
                    bid: Some(1.0842),
                    ask: None,
                    last: Some(1.0843),
                    volume: Some(5e6),
                },
                ts: 7,
                pub_us: 9,
                gseq: 11,
            },
        };
        assert_eq!(decode(&encode(&u)), Some(u));
        assert_eq!(subject("FX:EUR/USD"), "tickcast.tick.46583a4555522f555344");
        assert!(token("BRK.B").bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            from_token(&token("FX:EUR/USD")).as_deref(),
            Some("FX:EUR/USD")
        );
        assert_eq!(from_token("zz"), None);
    }
}
