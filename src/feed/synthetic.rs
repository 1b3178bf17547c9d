//! A synthetic market that looks like one: real-looking names, random-walk
//! prices on sensible tick sizes, and skewed activity.
//!
//! Popularity follows a Zipf law (s = 1.1) over the symbols in list order,
//! so the first few (AAPL, NVDA, TSLA, …) tick far more often than the tail,
//! as on a real exchange. Prices move by whole ticks of their instrument (a
//! cent for equities, a pip fraction for FX) and are computed as
//! `ticks / ticks_per_unit`, so they print as `189.11`, never `189.10999999`.

use super::{Batch, Tick, MAX_BATCH};
use crate::clock::now_us;
use crate::symbol::Symbol;
use crate::tick::Fields;
use crossbeam_channel::Sender;
use std::time::{Duration, Instant};

const EQUITIES: &[&str] = &[
    "AAPL", "NVDA", "TSLA", "MSFT", "AMZN", "META", "GOOGL", "AMD", "NFLX", "SPY", "QQQ", "GOOG",
    "AVGO", "JPM", "BAC", "INTC", "COIN", "PLTR", "UBER", "DIS", "BA", "XOM", "CVX", "WMT", "KO",
    "PEP", "COST", "V", "MA", "PYPL", "CRM", "ORCL", "ADBE", "CSCO", "QCOM", "TXN", "MU", "IBM",
    "GE", "F", "GM", "T", "VZ", "PFE", "MRK", "JNJ", "LLY", "UNH", "ABBV", "TMO", "NKE", "SBUX",
    "MCD", "HD", "LOW", "TGT", "C", "WFC", "GS", "MS", "SCHW", "BLK", "AXP", "SHOP", "SQ", "SNOW",
    "ABNB", "RIVN", "LCID", "NIO", "BABA", "TSM", "ASML", "SAP", "SONY", "TM", "HMC", "BP", "SHEL",
    "RIO", "BHP", "VALE", "FCX", "NEM", "GOLD", "CAT", "DE", "MMM", "HON", "LMT", "RTX", "NOC",
    "GD", "UPS", "FDX", "DAL", "UAL", "AAL", "LUV", "CCL", "RCL", "MAR", "HLT", "BKNG", "EXPE",
    "ZM", "DOCU", "ROKU", "SPOT", "SNAP", "PINS", "RBLX", "U", "DDOG", "CRWD", "ZS", "NET", "OKTA",
    "MDB", "TEAM", "WDAY", "NOW", "INTU", "ADSK", "ANSS", "CDNS", "SNPS", "KLAC", "LRCX", "AMAT",
    "MRVL", "ON", "NXPI", "ADI", "MCHP", "SWKS", "QRVO", "WDC", "STX", "HPQ", "DELL", "HPE",
    "ANET", "JNPR", "FTNT", "PANW", "CHKP", "AKAM", "EBAY", "ETSY", "W", "CHWY", "DASH", "LYFT",
    "HOOD", "SOFI", "AFRM", "UPST", "MSTR", "RIOT", "MARA", "DKNG", "PENN", "WYNN", "LVS", "MGM",
    "BRK.B", "BF.B", "IWM", "DIA", "XLF", "XLE", "XLK", "GLD", "SLV", "USO", "TLT", "HYG", "EEM",
    "EFA", "VXX", "ARKK", "SMH", "SOXL", "TQQQ", "SQQQ", "UVXY",
];

const FX: &[&str] = &[
    "FX:EUR/USD",
    "FX:USD/JPY",
    "FX:GBP/USD",
    "FX:AUD/USD",
    "FX:USD/CAD",
    "FX:USD/CHF",
    "FX:NZD/USD",
    "FX:EUR/GBP",
    "FX:EUR/JPY",
    "FX:GBP/JPY",
    "FX:EUR/CHF",
    "FX:AUD/JPY",
    "FX:USD/MXN",
    "FX:USD/SEK",
    "FX:USD/NOK",
    "FX:USD/SGD",
    "FX:USD/HKD",
    "FX:USD/ZAR",
];

const CRYPTO: &[&str] = &[
    "BTC-USD",
    "ETH-USD",
    "SOL-USD",
    "XRP-USD",
    "DOGE-USD",
    "ADA-USD",
    "AVAX-USD",
    "LINK-USD",
    "DOT-USD",
    "LTC-USD",
    "BCH-USD",
    "MATIC-USD",
    "UNI-USD",
    "ATOM-USD",
    "ETC-USD",
    "XLM-USD",
];

/// Rough price levels of well-known instruments, so the market looks like one
/// (each run starts within 5% of these); others get a random level for their class.
const REFERENCE_PRICES: &[(&str, f64)] = &[
    ("AAPL", 190.0),
    ("NVDA", 480.0),
    ("TSLA", 250.0),
    ("MSFT", 410.0),
    ("AMZN", 180.0),
    ("META", 500.0),
    ("GOOGL", 170.0),
    ("GOOG", 172.0),
    ("AMD", 160.0),
    ("NFLX", 620.0),
    ("SPY", 520.0),
    ("QQQ", 440.0),
    ("AVGO", 1300.0),
    ("JPM", 195.0),
    ("BAC", 37.0),
    ("INTC", 31.0),
    ("COIN", 230.0),
    ("PLTR", 24.0),
    ("UBER", 72.0),
    ("DIS", 100.0),
    ("BA", 180.0),
    ("XOM", 115.0),
    ("WMT", 60.0),
    ("KO", 62.0),
    ("COST", 780.0),
    ("V", 280.0),
    ("MA", 460.0),
    ("BRK.B", 410.0),
    ("F", 12.0),
    ("T", 17.0),
    ("FX:EUR/USD", 1.08),
    ("FX:USD/JPY", 151.0),
    ("FX:GBP/USD", 1.27),
    ("FX:AUD/USD", 0.66),
    ("FX:USD/CAD", 1.36),
    ("FX:USD/CHF", 0.90),
    ("FX:NZD/USD", 0.61),
    ("FX:EUR/GBP", 0.855),
    ("FX:EUR/JPY", 163.0),
    ("FX:GBP/JPY", 191.0),
    ("FX:EUR/CHF", 0.97),
    ("FX:AUD/JPY", 99.5),
    ("FX:USD/MXN", 17.0),
    ("FX:USD/SEK", 10.5),
    ("FX:USD/NOK", 10.7),
    ("FX:USD/SGD", 1.35),
    ("FX:USD/HKD", 7.82),
    ("FX:USD/ZAR", 18.6),
    ("BTC-USD", 64000.0),
    ("ETH-USD", 3100.0),
    ("SOL-USD", 145.0),
    ("XRP-USD", 0.52),
    ("DOGE-USD", 0.15),
    ("ADA-USD", 0.45),
    ("AVAX-USD", 35.0),
    ("LINK-USD", 14.0),
    ("DOT-USD", 7.0),
    ("LTC-USD", 82.0),
    ("BCH-USD", 470.0),
    ("MATIC-USD", 0.70),
    ("UNI-USD", 7.5),
    ("ATOM-USD", 8.5),
    ("ETC-USD", 27.0),
    ("XLM-USD", 0.11),
];

/// How an instrument is quoted.
#[derive(Clone, Copy)]
pub enum Class {
    Equity,
    Fx,
    Crypto,
}

struct Instrument {
    symbol: Symbol,
    /// Mid price in ticks.
    mid: i64,
    /// Half the spread in ticks.
    half_spread: i64,
    ticks_per_unit: f64,
    lot: f64,
    volume: f64,
}

/// The instruments, their popularity and the random source.
pub struct Market {
    instruments: Vec<Instrument>,
    /// Cumulative Zipf weights, for picking which symbol ticks next.
    cdf: Vec<f64>,
    rng: fastrand::Rng,
}

/// The names of an `n`-symbol market: equities, FX and crypto interleaved by
/// popularity, then made-up tickers (`ZQA`, `ZQB` …) past the real ones.
pub fn symbol_names(n: usize) -> Vec<(String, Class)> {
    let mut names = Vec::with_capacity(n);
    let (mut e, mut f, mut c) = (0, 0, 0);
    while names.len() < n && (e < EQUITIES.len() || f < FX.len() || c < CRYPTO.len()) {
        // Roughly 8 equities for each FX pair and crypto coin.
        for _ in 0..8 {
            if e < EQUITIES.len() && names.len() < n {
                names.push((EQUITIES[e].to_string(), Class::Equity));
                e += 1;
            }
        }
        if f < FX.len() && names.len() < n {
            names.push((FX[f].to_string(), Class::Fx));
            f += 1;
        }
        if c < CRYPTO.len() && names.len() < n {
            names.push((CRYPTO[c].to_string(), Class::Crypto));
            c += 1;
        }
    }
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut k = 0usize;
    while names.len() < n {
        let (a, b, d) = (k % 26, (k / 26) % 26, k / 676);
        let mut name = String::from("Z");
        if d > 0 {
            name.push_str(&d.to_string());
        }
        name.push(letters[b] as char);
        name.push(letters[a] as char);
        names.push((name, Class::Equity));
        k += 1;
    }
    names
}

impl Market {
    pub fn new(n: usize, seed: u64) -> Market {
        let mut rng = fastrand::Rng::with_seed(seed);
        let instruments = symbol_names(n)
            .into_iter()
            .map(|(name, class)| {
                let (random_price, ticks_per_unit, half_spread, lot) = match class {
                    Class::Equity => (rng.f64() * 600.0 + 5.0, 100.0, 1 + rng.i64(0..2), 100.0),
                    Class::Fx if name.contains("JPY") => {
                        (rng.f64() * 60.0 + 100.0, 1000.0, 1, 100_000.0)
                    }
                    Class::Fx => (
                        rng.f64() * 1.2 + 0.5,
                        100_000.0,
                        1 + rng.i64(0..3),
                        100_000.0,
                    ),
                    Class::Crypto => (rng.f64() * 3000.0 + 0.1, 100.0, 1 + rng.i64(0..5), 1.0),
                };
                let price = REFERENCE_PRICES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(random_price, |(_, p)| p * (0.95 + rng.f64() * 0.1));
                // Sub-dollar coins quote in finer ticks than a cent.
                let ticks_per_unit = if price < 5.0 && matches!(class, Class::Crypto) {
                    100_000.0
                } else {
                    ticks_per_unit
                };
                Instrument {
                    symbol: Symbol::new(&name).expect("generated names are valid"),
                    mid: (price * ticks_per_unit) as i64,
                    half_spread,
                    ticks_per_unit,
                    lot,
                    volume: 0.0,
                }
            })
            .collect::<Vec<_>>();
        let mut total = 0.0;
        let cdf = (1..=instruments.len())
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(1.1);
                total
            })
            .collect();
        Market {
            instruments,
            cdf,
            rng,
        }
    }

    /// One quote (bid/ask) per instrument at its current price.
    pub fn opening_quotes(&self, ts: u64, arrival: Instant) -> Vec<Tick> {
        self.instruments
            .iter()
            .map(|ins| Tick {
                symbol: ins.symbol,
                fields: Fields {
                    bid: Some((ins.mid - ins.half_spread) as f64 / ins.ticks_per_unit),
                    ask: Some((ins.mid + ins.half_spread) as f64 / ins.ticks_per_unit),
                    ..Fields::default()
                },
                ts,
                arrival,
            })
            .collect()
    }

    /// The next tick: a quote (bid/ask) most of the time, a trade (last/volume) otherwise.
    pub fn next_tick(&mut self) -> (Symbol, Fields) {
        let total = *self.cdf.last().unwrap_or(&1.0);
        let x = self.rng.f64() * total;
        let i = self
            .cdf
            .partition_point(|&c| c < x)
            .min(self.instruments.len() - 1);
        let quote = self.rng.u8(0..10) < 7;
        let step = match self.rng.u8(0..10) {
            0..=3 => -1,
            4..=7 => 1,
            8 => -2,
            _ => 2,
        };
        let ins = &mut self.instruments[i];
        ins.mid = (ins.mid + step).max(ins.half_spread + 1);
        let bid = (ins.mid - ins.half_spread) as f64 / ins.ticks_per_unit;
        let ask = (ins.mid + ins.half_spread) as f64 / ins.ticks_per_unit;
        let fields = if quote {
            Fields {
                bid: Some(bid),
                ask: Some(ask),
                ..Fields::default()
            }
        } else {
            ins.volume += ins.lot * (1 + self.rng.u32(0..20)) as f64;
            let last = if self.rng.bool() { bid } else { ask };
            Fields {
                last: Some(last),
                volume: Some(ins.volume),
                ..Fields::default()
            }
        };
        (ins.symbol, fields)
    }
}

/// Emits `rate` ticks per second, in small batches about every millisecond,
/// until the hub goes away.
pub fn run(mut market: Market, rate: f64, tx: Sender<Batch>) {
    let start = Instant::now();
    let mut sent: u64 = 0;
    // Every symbol gets one quote first, so that each has a value from the start.
    let first = market.opening_quotes(now_us(), Instant::now());
    for chunk in first.chunks(MAX_BATCH) {
        if tx.send(chunk.to_vec()).is_err() {
            return;
        }
    }
    loop {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        // After a stall, catch up at most 100 ms worth at once.
        let n = due.saturating_sub(sent).min((rate / 10.0).max(1.0) as u64);
        sent = sent.max(due.saturating_sub(n)) + n;
        let mut remaining = n as usize;
        while remaining > 0 {
            let (ts, arrival) = (now_us(), Instant::now());
            let take = remaining.min(MAX_BATCH);
            let batch: Batch = (0..take)
                .map(|_| {
                    let (symbol, fields) = market.next_tick();
                    Tick {
                        symbol,
                        fields,
                        ts,
                        arrival,
                    }
                })
                .collect();
            remaining -= take;
            if tx.send(batch).is_err() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_are_valid_unique_and_realistic() {
        for n in [1, 300, 500, 5000] {
            let names = symbol_names(n);
            assert_eq!(names.len(), n);
            let unique: std::collections::HashSet<_> = names.iter().map(|(s, _)| s).collect();
            assert_eq!(unique.len(), n);
            assert!(names.iter().all(|(s, _)| crate::symbol::is_valid(s)));
        }
        let names: Vec<String> = symbol_names(20).into_iter().map(|(s, _)| s).collect();
        assert_eq!(names[0], "AAPL");
        assert!(names.contains(&"FX:EUR/USD".to_string()));
        assert!(names.contains(&"BTC-USD".to_string()));
    }

    #[test]
    fn well_known_names_trade_near_their_real_levels() {
        let mut m = Market::new(60, 9);
        let mut seen = HashMap::new();
        for _ in 0..20_000 {
            let (s, f) = m.next_tick();
            if let Some(bid) = f.bid {
                seen.insert(s.to_string(), bid);
            }
        }
        for (name, level) in [("AAPL", 190.0), ("BTC-USD", 64000.0), ("FX:EUR/USD", 1.08)] {
            let bid = seen[name];
            assert!(
                (bid / level - 1.0).abs() < 0.15,
                "{name} at {bid}, expected near {level}"
            );
        }
    }

    #[test]
    fn activity_is_skewed_and_prices_are_on_ticks() {
        let mut m = Market::new(300, 42);
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..100_000 {
            let (s, f) = m.next_tick();
            *counts.entry(s.to_string()).or_default() += 1;
            for v in [f.bid, f.ask, f.last].into_iter().flatten() {
                assert!(v > 0.0);
                let text = ryu::Buffer::new().format(v).to_string();
                let decimals = text.split('.').nth(1).map_or(0, |d| d.len());
                assert!(
                    decimals <= 5,
                    "{s}: {text} has more decimals than its tick size"
                );
            }
        }
        let top = counts["AAPL"];
        let tail = counts
            .get("ZAA")
            .copied()
            .unwrap_or(0)
            .max(counts.get("UVXY").copied().unwrap_or(0));
        assert!(top > 20 * tail.max(1), "AAPL {top} vs tail {tail}");
    }
}
