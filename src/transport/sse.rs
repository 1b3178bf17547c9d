//! Server-Sent Events: `GET /sse?symbols=A,B` answers `text/event-stream`
//! with the same ticks, queue, coalescing, entitlements and expiry as a
//! WebSocket client, for clients that cannot (or need not) open one:
//! behind proxies that refuse upgrades, dashboards, `curl -N`.
//!
//! ```text
//! retry: 2718                                   (how long a browser waits before reconnecting)
//! event: welcome
//! data: {"session":"…","heartbeat_ms":15000,…}
//!
//! event: subscribed
//! data: {"symbols":["AAPL"],"unknown":[]}
//!
//! event: tick
//! data: {"symbol":"AAPL","seq":1042,"bid":189.1,…,"snapshot":true}
//!
//! id: 1732400000000000-5567                     (resume point: epoch-gseq)
//! event: mark
//! data: {"id":"1732400000000000-5567"}
//!
//! : ping                                        (a comment: keeps proxies from closing)
//! ```
//!
//! Resume: each batch ends with a `mark` event whose `id` says "this client
//! holds every subscribed symbol's state up to this point" (the session
//! writer's watermark over `gseq`). A browser sends it back as
//! `Last-Event-ID` when it reconnects (a client that reconnects by itself,
//! with `?lastEventId=`); the stream then sends snapshots only of the symbols
//! that changed since, as long as the epoch is the same (otherwise all of
//! them). The mark is an event, with data, so that a page or a script sees it.
//!
//! The stream goes through hyper (an HTTP response body fed by a channel),
//! so it works on any connection an HTTP request can arrive on.

use super::link::ChannelLink;
use super::{form, Framing};
use crate::admission::ConnectionPermit;
use crate::encoding::json::put_tick_payload;
use crate::encoding::JSON;
use crate::latest::Latest;
use crate::metrics::DisconnectReason;
use crate::protocol::Message;
use crate::session::conn::Heartbeat;
use crate::session::{self, Identity, SessionContext};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This transport's place among [`super::TRANSPORTS`].
pub const TRANSPORT: usize = 1;

/// Longest gap between keep-alive comments: proxies commonly close a
/// response idle for 30 to 60 s.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(15);

/// Frames a stream holds between the writer and hyper.
const CHANNEL_FRAMES: usize = 64;

/// Events in JSON, with the resume marks.
pub struct SseFraming {
    epoch: u64,
    /// The last watermark written as an `id`.
    marked: u64,
}

impl SseFraming {
    pub fn new(epoch: u64) -> SseFraming {
        SseFraming { epoch, marked: 0 }
    }
}

/// `event: <kind>` and the payload as one `data` line (JSON has no newlines).
fn event(kind: &str, write_data: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut buf = Vec::with_capacity(200);
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    write_data(&mut buf);
    buf.extend_from_slice(b"\n\n");
    buf.into()
}

impl Framing for SseFraming {
    fn form(&self) -> usize {
        form(TRANSPORT, JSON)
    }

    fn encode_tick(&self, symbol: &str, latest: &Latest, snapshot: bool) -> Bytes {
        event("tick", |buf| {
            put_tick_payload(buf, symbol, &latest.state, snapshot)
        })
    }

    fn message(&self, m: &Message) -> Bytes {
        let bytes = event(m.kind(), |buf| {
            let _ = serde_json::to_writer(buf, &m.payload());
        });
        if let Message::Welcome(_) = m {
            // Where the stream starts: how long a browser waits before it
            // reconnects, spread so that a crowd cut off together does not
            // come back together.
            let retry = format!("retry: {}\n", fastrand::u32(1000..=5000));
            return [retry.as_bytes(), &bytes].concat().into();
        }
        if let Message::Reconnect { after_ms, .. } = m {
            // A browser left to reconnect by itself waits as long as asked.
            let retry = format!("retry: {after_ms}\n");
            return [retry.as_bytes(), &bytes].concat().into();
        }
        bytes
    }

    fn ping(&self) -> Bytes {
        Bytes::from_static(b": ping\n\n")
    }

    fn pong(&self, _payload: &[u8]) -> Bytes {
        Bytes::new()
    }

    fn close(&self, code: u16, reason: &str) -> Bytes {
        event("close", |buf| {
            let _ =
                serde_json::to_writer(buf, &serde_json::json!({"code": code, "reason": reason}));
        })
    }

    fn mark(&mut self, watermark: u64) -> Option<Bytes> {
        if watermark <= self.marked {
            return None;
        }
        self.marked = watermark;
        let id = event_id(self.epoch, watermark);
        Some(format!("id: {id}\nevent: mark\ndata: {{\"id\":\"{id}\"}}\n\n").into())
    }
}

/// An event id: the epoch of the `gseq` numbers, and one of them.
pub fn event_id(epoch: u64, gseq: u64) -> String {
    format!("{epoch}-{gseq}")
}

/// The `gseq` a `Last-Event-ID` resumes from, if it names this epoch.
pub fn resume_point(last_event_id: &str, epoch: u64) -> Option<u64> {
    let (e, g) = last_event_id.trim().split_once('-')?;
    (e.parse::<u64>().ok()? == epoch).then_some(())?;
    g.parse().ok()
}

/// What a stream was asked for.
pub struct Stream {
    pub ctx: Arc<SessionContext>,
    pub identity: Identity,
    pub permit: ConnectionPermit,
    pub symbols: Vec<String>,
    /// `Last-Event-ID`, when the client resumes.
    pub last_event_id: Option<String>,
    /// The socket the stream goes out on, watched for the client hanging up.
    pub fd: Option<std::os::fd::RawFd>,
    /// At most one update per symbol per this long (`?interval_ms=`).
    pub interval: Option<std::time::Duration>,
    /// Candle series (`?candles=AAPL@1m,…`), and their histories' length (`?limit=`).
    pub candles: Vec<String>,
    pub limit: usize,
}

/// Starts a stream; returns what its HTTP response body reads, and what the
/// body drops when hyper is done with it.
pub fn start(
    s: Stream,
) -> (
    tokio::sync::mpsc::Receiver<Bytes>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (link, rx) = ChannelLink::new(CHANNEL_FRAMES);
    let epoch = s.ctx.epoch();
    let after = s
        .last_event_id
        .as_deref()
        .and_then(|id| resume_point(id, epoch));
    let heartbeat = Heartbeat {
        every: s.ctx.limits.ping_interval.min(MAX_HEARTBEAT),
        expects_answer: false,
    };
    let mut started = session::start(
        s.ctx,
        s.identity,
        s.permit,
        Box::new(SseFraming::new(epoch)),
        Box::new(link),
        heartbeat,
    );
    let wanted = session::conn::Wanted {
        symbols: s.symbols,
        candles: s.candles,
        since: Vec::new(),
        after,
        interval: s.interval,
        limit: s.limit,
    };
    started.conn.subscribe(None, wanted);
    let watch = s.fd.and_then(super::peer_watch::watch);
    let (dropped, body_gone) = tokio::sync::oneshot::channel();
    tokio::spawn(drive(started, watch, body_gone));
    (rx, dropped)
}

/// Runs the stream's timers (keep-alives, token expiry) until it ends: the
/// client goes (hyper drops the body, the writer ends) or the server closes.
async fn drive(
    mut s: session::Started,
    watch: Option<super::peer_watch::Watch>,
    mut body_gone: tokio::sync::oneshot::Receiver<()>,
) {
    let ended = s.outbox.clone();
    let hung_up = async {
        match &watch {
            Some(w) => w.hung_up().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(hung_up);
    while !s.conn.is_done() && !s.conn.is_closing() {
        let deadline = s.conn.next_deadline();
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => s.conn.on_timer(Instant::now()),
            _ = ended.writer_ended() => {
                s.outbox.set_reason(DisconnectReason::Client);
                break;
            }
            _ = &mut hung_up => {
                s.outbox.abort(DisconnectReason::Client);
                break;
            }
            // hyper dropped the response body: the connection is over (it
            // may have seen the client leave before our watch did).
            _ = &mut body_gone => {
                s.outbox.abort(DisconnectReason::Client);
                break;
            }
        }
    }
    // Dropping `s` ends the session: the writer writes what is pending (the
    // close event, if any) and ends the body.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_resume_only_within_their_epoch() {
        assert_eq!(resume_point(&event_id(7, 42), 7), Some(42));
        assert_eq!(resume_point(&event_id(6, 42), 7), None);
        for bad in ["", "7", "7-", "-42", "x-42", "7-x", "7-42-1"] {
            assert_eq!(resume_point(bad, 7), None, "{bad}");
        }
    }

    #[test]
    fn marks_only_move_forward() {
        let mut f = SseFraming::new(7);
        assert_eq!(f.mark(0), None);
        assert_eq!(
            f.mark(5).unwrap(),
            Bytes::from("id: 7-5\nevent: mark\ndata: {\"id\":\"7-5\"}\n\n")
        );
        assert_eq!(f.mark(5), None);
        assert_eq!(f.mark(4), None);
        assert!(f.mark(6).unwrap().starts_with(b"id: 7-6\n"));
    }

    #[test]
    fn events_are_one_data_line_each() {
        let f = SseFraming::new(1);
        let m = f.message(&Message::Pong { id: None, ts: 3 });
        assert_eq!(m, Bytes::from("event: pong\ndata: {\"ts\":3}\n\n"));
        let c = f.close(4401, "token expired");
        assert_eq!(
            c,
            Bytes::from("event: close\ndata: {\"code\":4401,\"reason\":\"token expired\"}\n\n")
        );
    }
}
