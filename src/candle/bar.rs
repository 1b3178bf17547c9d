//! What a bar is, and how a trade or a quote mid changes it.

use serde_json::{json, Value};

/// What a bar's prices are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Trades (`last`): the symbol trades.
    Trades,
    /// Quote mids: the symbol has not traded (yet).
    Mid,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Trades => "trades",
            Source::Mid => "mid",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "trades" => Some(Source::Trades),
            "mid" => Some(Source::Mid),
            _ => None,
        }
    }
}

/// One OHLCV bar of one series, as of its last change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    /// The interval's start, µs since the epoch (a multiple of the interval).
    pub start: u64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// Trades in it (0 for a bar of mids).
    pub trades: u32,
    pub source: Source,
    /// Its interval has ended: final.
    pub closed: bool,
    /// The series' `seq` of this bar's last change.
    pub seq: u64,
    /// The hub's `gseq` of that change (where an SSE stream resumes).
    pub gseq: u64,
}

impl Bar {
    /// A bar opened by one price.
    pub fn open_at(start: u64, price: f64, source: Source) -> Bar {
        Bar {
            start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 0.0,
            trades: 0,
            source,
            closed: false,
            seq: 0,
            gseq: 0,
        }
    }

    /// A trade of `size` at `price` (the bar is made of trades).
    pub fn trade(&mut self, price: f64, size: f64) {
        self.price(price);
        self.volume += size;
        self.trades = self.trades.saturating_add(1);
    }

    /// A price: the new close, and maybe a new high or low.
    pub fn price(&mut self, price: f64) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
    }

    /// The bar's fields as JSON, with the series' names when given.
    pub fn to_value(&self, series: Option<(&str, &str)>) -> Value {
        let mut v = json!({
            "seq": self.seq,
            "start": self.start,
            "open": number(self.open),
            "high": number(self.high),
            "low": number(self.low),
            "close": number(self.close),
            "volume": number(self.volume),
            "trades": self.trades,
            "source": self.source.as_str(),
            "closed": self.closed,
        });
        if let Some((symbol, interval)) = series {
            v["symbol"] = symbol.into();
            v["interval"] = interval.into();
        }
        v
    }
}

/// A price as ticks print it: an integral value without a fraction (so
/// MessagePack gets an int, as for ticks), any other as a float.
pub fn number(x: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.fract() == 0.0 && x.abs() < EXACT {
        (x as i64).into()
    } else {
        json!(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_is_72_bytes_as_docs_protocol_md_counts_them() {
        assert_eq!(std::mem::size_of::<Bar>(), 72);
    }

    #[test]
    fn trades_move_high_low_close_and_volume() {
        let mut b = Bar::open_at(60_000_000, 10.0, Source::Trades);
        b.trade(10.0, 5.0);
        b.trade(12.5, 1.0);
        b.trade(9.0, 2.0);
        b.trade(11.0, 0.0);
        assert_eq!((b.open, b.high, b.low, b.close), (10.0, 12.5, 9.0, 11.0));
        assert_eq!((b.volume, b.trades), (8.0, 4));
    }

    #[test]
    fn json_prints_integers_without_fraction_and_names_the_series() {
        let mut b = Bar::open_at(1_000_000, 189.0, Source::Mid);
        b.price(189.25);
        b.seq = 3;
        let v = b.to_value(Some(("AAPL", "1s")));
        let want: Value = serde_json::from_str(
            r#"{"symbol":"AAPL","interval":"1s","seq":3,"start":1000000,"open":189,"high":189.25,"low":189,"close":189.25,"volume":0,"trades":0,"source":"mid","closed":false}"#,
        )
        .unwrap();
        assert_eq!(v, want);
        assert!(serde_json::to_string(&v)
            .unwrap()
            .contains(r#""open":189,"#));
    }
}
