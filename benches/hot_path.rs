//! Hot-path benchmarks: feed line parse (serde_json vs simd-json), parse +
//! coalesce (and the full line acceptance + coalesce), tick encode, fan-out
//! pushes, client message parse.
//! Run: `cargo bench --bench hot_path` (figures in BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickcast::encoding;
use tickcast::feed::accept::{accept_line, TsBounds};
use tickcast::feed::parse::{parse_line, SimdLineParser};
use tickcast::feed::synthetic::Market;
use tickcast::feed::Tick;
use tickcast::hub::Hub;
use tickcast::latest::{Latest, SymbolTable};
use tickcast::session::outbox::Outbox;
use tickcast::tick::{Fields, TickState};
use tickcast::transport::sse::SseFraming;
use tickcast::transport::ws::WsFraming;
use tickcast::transport::Framing;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Realistic feed lines: the synthetic market's ticks as NDJSON.
fn feed_lines(n: usize) -> Vec<String> {
    let mut m = Market::new(500, 7);
    (0..n)
        .map(|i| {
            let (s, f) = m.next_tick();
            let mut line = format!(r#"{{"symbol":"{s}""#);
            for (k, v) in [
                ("bid", f.bid),
                ("ask", f.ask),
                ("last", f.last),
                ("volume", f.volume),
            ] {
                if let Some(v) = v {
                    line.push_str(&format!(r#","{k}":{v}"#));
                }
            }
            line.push_str(&format!(
                r#","ts":{}}}"#,
                1_732_400_000_000_000u64 + i as u64
            ));
            line
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let lines = feed_lines(4096);
    let mut g = c.benchmark_group("feed_parse");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("serde_json", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(parse_line(l.as_bytes()).ok());
            }
        })
    });
    let mut simd = SimdLineParser::default();
    g.bench_function("simd_json_reused_buffers", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(simd.parse_line(l.as_bytes()).ok());
            }
        })
    });
    g.finish();
}

fn parse_and_coalesce(c: &mut Criterion) {
    let lines = feed_lines(4096);
    let limits = tickcast::hub::HubLimits {
        max_symbols: 1024,
        max_unknown_symbols: 64,
        max_unknown_names: 100_000,
    };
    let mut hub = Hub::new(
        Duration::from_millis(100),
        limits,
        Arc::new(SymbolTable::default()),
    );
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse_and_coalesce", |b| {
        let mut batch = Vec::with_capacity(512);
        b.iter(|| {
            let now = Instant::now();
            for chunk in lines.chunks(512) {
                batch.clear();
                for l in chunk {
                    if let Ok(t) = parse_line(l.as_bytes()) {
                        batch.push(Tick {
                            symbol: t.symbol,
                            fields: t.fields,
                            ts: t.ts.unwrap_or(0),
                            arrival: now,
                        });
                    }
                }
                hub.on_batch(&batch);
            }
            hub.release_due();
        })
    });
    // What a TCP publisher's thread really runs per line: blank-line check,
    // parse, `ts` range (computed once per read, as there).
    let range = TsBounds::live(Duration::from_secs(3600)).at(1_732_400_000_000_000);
    g.bench_function("accept_and_coalesce", |b| {
        let mut batch = Vec::with_capacity(512);
        b.iter(|| {
            let now = Instant::now();
            for chunk in lines.chunks(512) {
                batch.clear();
                for l in chunk {
                    if let Ok(Some(t)) = accept_line(l.as_bytes(), &range) {
                        batch.push(Tick {
                            symbol: t.symbol,
                            fields: t.fields,
                            ts: t.ts,
                            arrival: now,
                        });
                    }
                }
                hub.on_batch(&batch);
            }
            hub.release_due();
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let state = TickState {
        seq: 1042,
        fields: Fields {
            bid: Some(189.1),
            ask: Some(189.12),
            last: Some(189.11),
            volume: Some(1200.0),
        },
        ts: 1_732_400_000_123_456,
        pub_us: 1_732_400_000_129_012,
        gseq: 1,
    };
    // A fresh update each time: the bytes are made, not taken from the cache.
    let latest = Latest::new(0, state);
    let json = WsFraming::new(encoding::JSON);
    c.bench_function("tick_encode", |b| {
        b.iter(|| black_box(json.encode_tick(black_box("AAPL"), &latest, false)))
    });
    let msgpack = WsFraming::new(encoding::by_name("tickcast.msgpack").unwrap());
    c.bench_function("tick_encode_msgpack", |b| {
        b.iter(|| black_box(msgpack.encode_tick(black_box("AAPL"), &latest, false)))
    });
    let sse = SseFraming::new(1);
    c.bench_function("tick_encode_sse", |b| {
        b.iter(|| black_box(sse.encode_tick(black_box("AAPL"), &latest, false)))
    });
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_push");
    for n in [1_000usize, 10_000] {
        let outboxes: Vec<Arc<Outbox>> = (0..n as u64)
            .map(|i| Arc::new(Outbox::new(i, 256, false)))
            .collect();
        let latest = Arc::new(Latest::new(
            0,
            TickState {
                seq: 1,
                fields: Fields::default(),
                ts: 0,
                pub_us: 0,
                gseq: 1,
            },
        ));
        g.throughput(Throughput::Elements(n as u64));
        // The hub's per-update work: push the shared update, list the writer
        // once, wake the listed writers at the end of the pass. Queues are
        // drained outside the timed part, as writers do.
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut to_wake = Vec::with_capacity(outboxes.len());
                    for o in &outboxes {
                        o.push_tick(latest.clone());
                        if o.list_for_wake() {
                            to_wake.push(o.clone());
                        }
                    }
                    for o in to_wake.drain(..) {
                        o.wake();
                    }
                    total += start.elapsed();
                    for o in &outboxes {
                        while o.pop_tick().is_some() {}
                    }
                }
                total
            })
        });
    }
    g.finish();
}

fn client_messages(c: &mut Criterion) {
    let msgs = [
        r#"{"type":"subscribe","id":1,"payload":{"symbols":["AAPL","MSFT","NVDA"],"since":{"AAPL":1041}}}"#,
        r#"{"type":"ping","id":3}"#,
        r#"{"type":"unsubscribe","id":2,"payload":{"symbols":["MSFT"]}}"#,
    ];
    let mut g = c.benchmark_group("client_message_parse");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    // What the reader runs: parse, check every field, build the message.
    g.bench_function("parse_client_message", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(tickcast::protocol::parse_client_message(m).ok());
            }
        })
    });
    // The JSON parse alone, serde_json vs simd-json.
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(serde_json::from_str::<serde_json::Value>(m).ok());
            }
        })
    });
    let mut buffers = simd_json::Buffers::default();
    let mut scratch = Vec::with_capacity(256);
    g.bench_function("simd_json_value_reused_buffers", |b| {
        b.iter(|| {
            for m in &msgs {
                scratch.clear();
                scratch.extend_from_slice(m.as_bytes());
                black_box(
                    simd_json::to_borrowed_value_with_buffers(&mut scratch, &mut buffers).ok(),
                );
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = parse, parse_and_coalesce, encode, fanout, client_messages
}
criterion_main!(benches);
