//! `GET /candles?symbol=S&interval=I&limit=N[&end=TS]`: a series' bars over
//! HTTP (protocol §4c), for a chart's first load and for paging back. Same
//! authentication, entitlements and CORS as `/snapshot`.

use super::{authenticate, origin, query_param, reply, text, AppState, Reply};
use crate::candle::bar::Bar;
use crate::metrics::{Refusal, METRICS};
use crate::session::DEFAULT_CANDLE_LIMIT;
use crate::symbol;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

pub async fn answer(req: &Request<Incoming>, state: &AppState) -> Reply {
    origin::cors(req, state, body(req, state)).await
}

/// What a request asks for, checked.
struct Asked {
    symbol: String,
    interval: String,
    limit: usize,
    end: Option<u64>,
}

/// What the request asks for, or the status and message refusing it.
fn asked(req: &Request<Incoming>, state: &AppState) -> Result<Asked, (StatusCode, String)> {
    let q = req.uri().query();
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let Some(config) = state
        .sessions
        .candles
        .as_ref()
        .filter(|c| !c.intervals.is_empty())
    else {
        return Err((
            StatusCode::NOT_FOUND,
            "candles are off on this server".into(),
        ));
    };
    let symbol = query_param(q, "symbol").ok_or_else(|| bad("/candles needs ?symbol=".into()))?;
    if !symbol::is_valid(&symbol) {
        return Err(bad(format!("`{symbol}` is not a symbol")));
    }
    let interval = query_param(q, "interval").unwrap_or_default();
    if config.interval(&interval).is_none() {
        return Err(bad(format!(
            "interval `{interval}` is not served here: {}",
            config.names()
        )));
    }
    let keep = config.keep;
    let limit = match query_param(q, "limit") {
        None => (DEFAULT_CANDLE_LIMIT as usize).min(keep),
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=keep).contains(&n) => n,
            _ => return Err(bad(format!("limit must be a number from 1 to {keep}"))),
        },
    };
    let end = match query_param(q, "end") {
        None => None,
        Some(ts) => Some(ts.parse::<u64>().map_err(|_| {
            bad("end must be a time in µs since the epoch (a whole number)".into())
        })?),
    };
    Ok(Asked {
        symbol,
        interval,
        limit,
        end,
    })
}

async fn body(req: &Request<Incoming>, state: &AppState) -> Reply {
    let claims = match authenticate(req, state) {
        Ok(c) => c,
        Err((status, message)) => return text(status, message),
    };
    let a = match asked(req, state) {
        Ok(a) => a,
        Err((status, message)) => return text(status, message),
    };
    if claims.as_ref().is_some_and(|c| !c.allows(&a.symbol)) {
        return text(
            StatusCode::FORBIDDEN,
            format!("not entitled to {}", a.symbol),
        );
    }
    let name = crate::candle::channel_name(&a.symbol, &a.interval);
    let bars: Vec<Bar> = match &state.candle_store {
        // A cluster edge: the bus's copy (it holds only what its clients
        // follow, and a series nobody follows any more is not kept current).
        Some(cell) => match cell.get() {
            Some(store) => {
                // Each read is a JetStream consumer: as many at once as snapshots.
                let Some(_permit) = super::snapshot::InFlight::take(&state.snapshots) else {
                    METRICS.refused(Refusal::Snapshots);
                    return super::unavailable("busy: too many bus reads at once");
                };
                match store.history(&a.symbol, &a.interval, a.limit, a.end).await {
                    Ok(bars) => bars,
                    Err(e) => return super::unavailable(format!("candles from the bus: {e}")),
                }
            }
            None => return super::unavailable("joining the bus (NATS): no candles yet"),
        },
        None => state
            .series_table
            .get(&name)
            .and_then(|slot| slot.series.as_ref().map(|s| s.history(a.limit, a.end).bars))
            .unwrap_or_default(),
    };
    // The same bytes as a subscription's history (keys in the same order).
    let mut body = Vec::new();
    crate::encoding::json::put_candles_payload(&mut body, &a.symbol, &a.interval, &bars, false);
    reply(StatusCode::OK, "application/json", body)
}
