//! Candle benchmarks: what building bars costs the hub per feed tick, and
//! what answering a subscribe with 300 bars of history costs.
//! Run: `cargo bench --bench candles` (figures in BENCHMARKS.md).
//!
//! * `hub_on_batch/*`: the hub's whole per-tick path (`Hub::on_batch` of
//!   512-tick batches, then `release_due`), candles off and on (the default
//!   intervals 1s,1m,5m,1h), on the synthetic market's ticks (500 symbols,
//!   Zipf, 70% quotes / 30% trades). The bar clock follows the ticks' `ts`
//!   (as for a replay), 5,000 ticks per second of feed time (the default
//!   `--rate`), so bars close as often per tick as live. Before the
//!   measurement every hub is given a day of history (a trade of every
//!   symbol each minute of feed time): with `--candle-keep 1000` (the
//!   default) 1s and 1m series then hold 1,000 bars, 5m 288, 1h 24; with
//!   `--candle-keep 10`, 10. `window_100ms`: the default window, at the
//!   bench's pace, where most ticks merge (a saturated hub); `window_0`:
//!   every change of every bar is published (the upper bound). No
//!   subscribers: fan-out is `hot_path`'s.
//! * `builder_on_tick/*`: `Builder::on_tick` alone, at the bench's pace; and
//!   on a simulated clock at 5,000 ticks/s, which counts how many bar
//!   updates the default settings publish per tick live.
//! * `series_apply/*`: one bar update into a series' history, short or
//!   full, in the cache or not.
//! * `subscribe_history/*`: a subscribe's history of 300 bars from a full
//!   series (1,000 closed bars + the forming one): `Series::history`, then
//!   the `candles` message as a WebSocket frame, JSON and MessagePack.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickcast::candle::bar::{Bar, Source};
use tickcast::candle::builder::{Builder, Emit};
use tickcast::candle::series::Series;
use tickcast::candle::{parse_intervals, CandleConfig, Clock, VolumeMode};
use tickcast::encoding;
use tickcast::feed::synthetic::Market;
use tickcast::feed::{Batch, Tick, MAX_BATCH};
use tickcast::hub::{Hub, HubLimits};
use tickcast::latest::SymbolTable;
use tickcast::metrics::METRICS;
use tickcast::protocol::Message;
use tickcast::transport::ws::WsFraming;
use tickcast::transport::Framing;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SYMBOLS: usize = 500;
/// Ticks per benchmark iteration.
const TICKS: usize = 4096;
/// The default feed rate (`--rate`): feed time moves 1 s / RATE per tick.
const RATE: u64 = 5_000;
/// Where feed time starts: 2025-11-29 00:00 UTC, µs (a whole hour).
const START_US: u64 = 1_764_374_400_000_000;
const MINUTE_US: u64 = 60_000_000;

/// The default candle settings (`--candle-intervals 1s,1m,5m,1h
/// --candle-keep 1000 --candle-volume cumulative`) on `clock`.
fn candle_config(window: Duration, clock: Clock) -> CandleConfig {
    CandleConfig {
        intervals: parse_intervals("1s,1m,5m,1h").expect("default intervals"),
        keep: 1000,
        volume: VolumeMode::Cumulative,
        clock,
        window,
    }
}

/// The synthetic market's ticks: one opening quote per symbol, then `n`
/// ticks (their `ts` is set where they are used).
fn market_ticks(n: usize) -> (Vec<Tick>, Vec<Tick>) {
    let mut m = Market::new(SYMBOLS, 7);
    let arrival = Instant::now();
    let opening = m.opening_quotes(START_US, arrival);
    let ticks = (0..n)
        .map(|_| {
            let (symbol, fields) = m.next_tick();
            Tick {
                symbol,
                fields,
                ts: 0,
                arrival,
            }
        })
        .collect();
    (opening, ticks)
}

/// A hub, with candles kept `keep` bars deep (`None`: candles off).
fn hub(window: Duration, keep: Option<usize>) -> Hub {
    let limits = HubLimits {
        max_symbols: 1024,
        max_unknown_symbols: 64,
        max_unknown_names: 100_000,
    };
    let hub = Hub::new(window, limits, Arc::new(SymbolTable::default()));
    match keep {
        Some(keep) => hub.with_candles(CandleConfig {
            keep,
            ..candle_config(window, Clock::Feed)
        }),
        None => hub,
    }
}

/// Bars held by the hub's series, per interval: (series, bars, series at `keep`).
fn held(hub: &Hub) -> Vec<(String, usize, usize, usize)> {
    let mut out: Vec<(String, usize, usize, usize)> = ["1s", "1m", "5m", "1h"]
        .iter()
        .map(|i| (i.to_string(), 0, 0, 0))
        .collect();
    for slot in hub.series_table().sorted().iter() {
        if let Some(s) = &slot.series {
            let row = &mut out[s.interval_index];
            let n = s.len();
            row.1 += 1;
            row.2 += n;
            row.3 += usize::from(n >= 1000);
        }
    }
    out
}

/// A hub with a day of history, and where its feed time is.
struct HubRun {
    hub: Hub,
    /// Feed time, µs.
    us: u64,
    batches: Vec<Batch>,
    ticks_run: u64,
    /// `tickcast_updates_total` and `tickcast_candle_updates_total` at the start.
    counters: (u64, u64),
}

/// A hub given a day of history: a trade of every symbol each minute of feed
/// time, 1,440 times, so that 1s and 1m series hold 1,000 bars (with the
/// default keep), 5m 288, 1h 24.
fn hub_with_a_day(
    window: Duration,
    keep: Option<usize>,
    opening: &[Tick],
    batches: &[Batch],
) -> HubRun {
    let mut hub = hub(window, keep);
    let mut us = START_US;
    for chunk in opening.chunks(MAX_BATCH) {
        hub.on_batch(&chunk.to_vec());
    }
    let mut day: Batch = opening.to_vec();
    for t in day.iter_mut() {
        t.fields.last = t.fields.bid;
        t.fields.bid = None;
        t.fields.ask = None;
    }
    for minute in 0..1440 {
        for t in day.iter_mut() {
            t.ts = us;
            t.fields.volume = Some(1000.0 * (minute + 1) as f64);
        }
        hub.on_batch(&day);
        hub.release_due();
        us += MINUTE_US;
    }
    HubRun {
        hub,
        us,
        batches: batches.to_vec(),
        ticks_run: 0,
        counters: (METRICS.updates.get(), METRICS.candle_updates.get()),
    }
}

fn print_held(name: &str, hub: &Hub) {
    for (interval, series, bars, full) in held(hub) {
        let each = bars as f64 / series.max(1) as f64;
        println!(
            "hub_on_batch/{name}: {interval}: {series} series of {each:.0} bars on average, {full} at 1,000"
        );
    }
}

fn hub_on_batch(c: &mut Criterion) {
    let (opening, ticks) = market_ticks(TICKS);
    let batches: Vec<Batch> = ticks.chunks(MAX_BATCH).map(<[Tick]>::to_vec).collect();
    let mut g = c.benchmark_group("hub_on_batch");
    g.throughput(Throughput::Elements(TICKS as u64));
    for (window, wname) in [
        (Duration::from_millis(100), "window_100ms"),
        (Duration::ZERO, "window_0"),
    ] {
        for keep in [None, Some(10), Some(1000)] {
            let name = match keep {
                None => format!("no_candles/{wname}"),
                Some(keep) => format!("candles_keep_{keep}/{wname}"),
            };
            // Made when the benchmark runs (not when a filter skips it).
            let mut run: Option<HubRun> = None;
            g.bench_function(&name, |b| {
                let r = run.get_or_insert_with(|| {
                    let r = hub_with_a_day(window, keep, &opening, &batches);
                    if keep.is_some() {
                        print_held(&name, &r.hub);
                    }
                    r
                });
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // Feed time goes on at RATE ticks/s (not timed).
                        for batch in r.batches.iter_mut() {
                            for t in batch.iter_mut() {
                                t.ts = r.us;
                                r.us += 1_000_000 / RATE;
                            }
                        }
                        let start = Instant::now();
                        for batch in &r.batches {
                            r.hub.on_batch(batch);
                        }
                        r.hub.release_due();
                        total += start.elapsed();
                        r.ticks_run += TICKS as u64;
                    }
                    total
                })
            });
            if let Some(r) = run {
                // What was published per tick (criterion's warm-up and measurement).
                let per_tick = |n: u64| n as f64 / r.ticks_run.max(1) as f64;
                let ticks = per_tick(METRICS.updates.get() - r.counters.0);
                let bars = per_tick(METRICS.candle_updates.get() - r.counters.1);
                println!("hub_on_batch/{name}: per tick, {ticks:.4} tick and {bars:.4} bar updates published");
            }
        }
    }
    g.finish();
}

fn builder_on_tick(c: &mut Criterion) {
    let (opening, ticks) = market_ticks(TICKS);
    // The hub's ids: each symbol's place in the market.
    let ids: std::collections::HashMap<_, u32> = opening
        .iter()
        .enumerate()
        .map(|(i, t)| (t.symbol, i as u32))
        .collect();
    let ticks: Vec<(u32, Tick)> = ticks.iter().map(|t| (ids[&t.symbol], *t)).collect();
    let mut g = c.benchmark_group("builder_on_tick");
    g.throughput(Throughput::Elements(TICKS as u64));
    let mut out: Vec<Emit> = Vec::new();

    // Both on a simulated clock: feed time moves RATE ticks/s, the bar clock
    // (`advance`, once per batch as the hub does) with it. `bench_pace`: the
    // windows on the real clock, as in `hub_on_batch/*/window_100ms`;
    // `simulated_5000_per_s`: on the simulated clock too, 5 ticks a
    // millisecond, so forming bars go out as often as they would live.
    for simulated in [false, true] {
        let name = if simulated {
            "simulated_5000_per_s"
        } else {
            "bench_pace"
        };
        let mut b = Builder::new(candle_config(Duration::from_millis(100), Clock::Wall));
        let t0 = Instant::now();
        b.advance(START_US);
        for (i, t) in opening.iter().enumerate() {
            b.on_tick(i as u32, &t.fields, START_US, t0);
        }
        b.take(&mut out);
        out.clear();
        let mut k = 0u64; // ticks so far
        let (mut ticks_run, mut emitted) = (0u64, 0u64);
        let per_batch = if simulated {
            (RATE / 1000) as usize
        } else {
            MAX_BATCH
        };
        g.bench_function(name, |bench| {
            bench.iter(|| {
                for chunk in ticks.chunks(per_batch) {
                    let us = k * 1_000_000 / RATE;
                    let now = if simulated {
                        t0 + Duration::from_micros(us)
                    } else {
                        Instant::now()
                    };
                    b.advance(START_US + us);
                    for (id, t) in chunk {
                        b.on_tick(*id, &t.fields, START_US + us, now);
                    }
                    if simulated {
                        b.release_due(now);
                        b.take(&mut out);
                        emitted += out.len() as u64;
                        out.clear();
                    }
                    k += chunk.len() as u64;
                }
                if !simulated {
                    b.release_due(Instant::now());
                    b.take(&mut out);
                    emitted += out.len() as u64;
                    out.clear();
                }
                ticks_run += TICKS as u64;
            })
        });
        println!(
            "builder_on_tick/{name}: {:.4} bar updates per tick over {:.0} s of feed time",
            emitted as f64 / ticks_run.max(1) as f64,
            k as f64 / RATE as f64
        );
    }
    g.finish();
}

/// A 1m series of AAPL: `closed` closed bars and the forming one, prices in
/// cents around 189, volume in lots of 100.
fn series(closed: u64) -> Series {
    let series = Series::new("AAPL", "1m", 1, 1000);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut cents: i64 = 18_911;
    for i in 0..=closed {
        let mut bar = Bar::open_at(
            START_US + i * MINUTE_US,
            cents as f64 / 100.0,
            Source::Trades,
        );
        for _ in 0..rng.u32(5..40) {
            cents = (cents + rng.i64(-3..=3)).max(100);
            bar.trade(cents as f64 / 100.0, 100.0 * rng.u32(1..20) as f64);
        }
        bar.seq = i + 1;
        bar.gseq = (i + 1) * 7;
        bar.closed = i < closed;
        series.apply(bar);
    }
    series
}

fn series_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("series_apply");
    // The forming bar's next state (a new `seq`), as the hub applies it.
    for closed in [10u64, 1000] {
        let s = series(closed);
        let mut bar = s.forming().expect("a forming bar");
        g.bench_function(format!("forming_update_{closed}_closed"), |b| {
            b.iter(|| {
                bar.seq += 1;
                bar.close += 0.01;
                black_box(s.apply(black_box(bar)))
            })
        });
    }
    // The same, one series after the other among 1,000 full ones (500
    // symbols' 1s and 1m series after a day): what the hub meets, a series
    // not in the cache.
    let mut many: Option<Vec<(Series, Bar)>> = None;
    let mut next = 0;
    g.bench_function("forming_update_1000_closed_1000_series", |b| {
        let many = many.get_or_insert_with(|| {
            (0..1000)
                .map(|_| {
                    let s = series(1000);
                    let bar = s.forming().expect("a forming bar");
                    (s, bar)
                })
                .collect()
        });
        let n = many.len();
        b.iter(|| {
            let (s, bar) = &mut many[next];
            next = (next + 1) % n;
            bar.seq += 1;
            bar.close += 0.01;
            black_box(s.apply(black_box(*bar)))
        })
    });
    g.finish();
}

/// What the writer sends for a subscribe with `limit` bars (the `candles` message).
fn history_frame(series: &Series, framing: &WsFraming, limit: usize) -> bytes::Bytes {
    let read = series.history(limit, None);
    let m = Message::Candles {
        symbol: series.symbol.to_string(),
        interval: series.interval.to_string(),
        bars: read.bars,
        snapshot: true,
    };
    framing.message(&m)
}

fn subscribe_history(c: &mut Criterion) {
    let series = series(1000);
    assert_eq!(series.len(), 1001);
    let read = series.history(300, None);
    assert_eq!(read.bars.len(), 301, "300 closed bars and the forming one");
    let json = WsFraming::new(encoding::JSON);
    let msgpack = WsFraming::new(encoding::by_name("tickcast.msgpack").expect("msgpack"));
    for (name, f) in [("json", &json), ("msgpack", &msgpack)] {
        println!(
            "subscribe_history: the {name} frame of 300 bars + the forming one is {} bytes",
            history_frame(&series, f, 300).len()
        );
    }
    let message = Message::Candles {
        symbol: series.symbol.to_string(),
        interval: series.interval.to_string(),
        bars: read.bars.clone(),
        snapshot: true,
    };
    let mut g = c.benchmark_group("subscribe_history");
    g.bench_function("series_history_300", |b| {
        b.iter(|| black_box(series.history(black_box(300), None)))
    });
    // The two halves of encoding: the `Value` tree, then its bytes.
    g.bench_function("message_to_value", |b| {
        b.iter(|| black_box(black_box(&message).to_value()))
    });
    for (name, f) in [("json", &json), ("msgpack", &msgpack)] {
        g.bench_function(format!("frame_{name}"), |b| {
            b.iter(|| black_box(f.message(black_box(&message))))
        });
        g.bench_function(format!("history_and_frame_{name}"), |b| {
            b.iter(|| black_box(history_frame(&series, f, black_box(300))))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hub_on_batch, builder_on_tick, series_apply, subscribe_history
}
criterion_main!(benches);
