//! `GET /snapshot`: the latest state of symbols over HTTP, and its CORS preflight.
//!
//! Every symbol can be many megabytes of JSON (up to `--max-feed-symbols`):
//! the answer is written in chunks as the client reads, from a sorted list
//! shared by all requests, so a crowd of slow readers costs a chunk each,
//! not a copy of the universe each. A cluster edge reads the bucket instead
//! and builds its answer whole; at most [`MAX_EDGE_SNAPSHOTS`] of those
//! exist at once.

use super::body::Body;
use super::{authenticate, origin, query_param, reply, text, unavailable, AppState, Reply};
use crate::auth::Claims;
use crate::encoding::json::put_tick_payload;
use crate::latest::SymbolSlot;
use crate::metrics::{Refusal, METRICS};
use crate::symbol;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of JSON made per chunk.
const CHUNK: usize = 16 * 1024;

/// Answers built from the bucket at once, at most (cluster edges).
pub const MAX_EDGE_SNAPSHOTS: usize = 8;

/// `OPTIONS /snapshot`: a browser asking whether its page may call it.
pub fn preflight(req: &Request<Incoming>, state: &AppState) -> Reply {
    if !state.origins.allows(req.headers()) {
        return text(
            StatusCode::FORBIDDEN,
            "origin not allowed (--allowed-origins)",
        );
    }
    let mut r = reply(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", "");
    origin::add_cors(&mut r, req.headers());
    origin::add_preflight(&mut r);
    r
}

pub async fn answer(req: &Request<Incoming>, state: &AppState) -> Reply {
    origin::cors(req, state, body(req, state)).await
}

async fn body(req: &Request<Incoming>, state: &AppState) -> Reply {
    let claims = match authenticate(req, state) {
        Ok(c) => c,
        Err((status, message)) => return text(status, message),
    };
    let allowed = |s: &str| claims.as_ref().is_none_or(|c| c.allows(s));
    let named = match query_param(req.uri().query(), "symbols") {
        Some(list) => {
            let mut names = Vec::new();
            for s in list.split(',').filter(|s| !s.is_empty()) {
                if !symbol::is_valid(s) {
                    return text(StatusCode::BAD_REQUEST, format!("`{s}` is not a symbol"));
                }
                if !allowed(s) {
                    return text(StatusCode::FORBIDDEN, format!("not entitled to {s}"));
                }
                names.push(s.to_string());
            }
            Some(names)
        }
        None => None,
    };
    if let Some(cell) = &state.last_values {
        return match cell.get() {
            Some(store) => from_bucket(store, named, claims, &state.snapshots).await,
            None => super::unavailable("joining the bus (NATS): no last values yet"),
        };
    }
    let slots = match named {
        Some(names) => Arc::new(names.iter().filter_map(|n| state.table.get(n)).collect()),
        None => state.table.sorted(),
    };
    let mut r = reply(StatusCode::OK, "application/json", Bytes::new());
    *r.body_mut() = Body::Chunked(Box::new(stream(slots, claims)));
    r
}

/// Makes `[tick, tick, …]` a chunk at a time: the symbols with a value that
/// `claims` allow, each as it is when its chunk is made.
fn stream(
    slots: Arc<Vec<Arc<SymbolSlot>>>,
    claims: Option<Claims>,
) -> impl FnMut() -> Option<Bytes> + Send {
    let (mut next, mut first, mut done) = (0, true, false);
    move || {
        if done {
            return None;
        }
        let mut buf = Vec::with_capacity(CHUNK + 256);
        if next == 0 && first {
            buf.push(b'[');
        }
        while buf.len() < CHUNK && next < slots.len() {
            let slot = &slots[next];
            next += 1;
            if !claims.as_ref().is_none_or(|c| c.allows(&slot.name)) {
                continue;
            }
            let Some(latest) = slot.latest.load_full() else {
                continue;
            };
            if !first {
                buf.push(b',');
            }
            first = false;
            put_tick_payload(&mut buf, &slot.name, &latest.state, false);
        }
        if next >= slots.len() {
            buf.push(b']');
            done = true;
        }
        Some(buf.into())
    }
}

/// A cluster edge's answer, from the bucket of last values; counted against
/// [`MAX_EDGE_SNAPSHOTS`] until its last chunk has been handed to hyper.
async fn from_bucket(
    store: &async_nats::jetstream::kv::Store,
    named: Option<Vec<String>>,
    claims: Option<Claims>,
    in_flight: &Arc<AtomicUsize>,
) -> Reply {
    let permit = InFlight(in_flight.clone());
    if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_EDGE_SNAPSHOTS {
        METRICS.refused(Refusal::Snapshots);
        return unavailable("busy: too many /snapshot requests at once");
    }
    let names = match named {
        Some(names) => names,
        None => {
            let mut names = Vec::new();
            if let Ok(mut keys) = store.keys().await {
                use futures_util::StreamExt;
                while let Some(Ok(key)) = keys.next().await {
                    names.extend(crate::bus::from_token(&key));
                }
            }
            names.sort();
            names
                .into_iter()
                .filter(|s| claims.as_ref().is_none_or(|c| c.allows(s)))
                .collect()
        }
    };
    let mut body = Vec::with_capacity(64 + names.len() * 160);
    body.push(b'[');
    for name in names {
        let Some(update) = crate::bus::last_value(store, &name).await else {
            continue;
        };
        if body.len() > 1 {
            body.push(b',');
        }
        put_tick_payload(&mut body, &name, &update.state, false);
    }
    body.push(b']');
    let mut whole = Bytes::from(body);
    let mut r = reply(StatusCode::OK, "application/json", Bytes::new());
    *r.body_mut() = Body::Chunked(Box::new(move || {
        let _ = &permit;
        (!whole.is_empty()).then(|| whole.split_to(whole.len().min(CHUNK)))
    }));
    r
}

/// A place among the edge's snapshots (and `/candles` read from the bus)
/// being answered; given back on drop.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// A place, or `None` when [`MAX_EDGE_SNAPSHOTS`] are taken.
    pub(super) fn take(in_flight: &Arc<AtomicUsize>) -> Option<InFlight> {
        let permit = InFlight(in_flight.clone());
        (in_flight.fetch_add(1, Ordering::AcqRel) < MAX_EDGE_SNAPSHOTS).then_some(permit)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
