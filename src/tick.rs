//! What a tick is, with no bytes in sight: the fields of a symbol's state,
//! how they merge, a tick from the feed, and an update released by the
//! coalescer. Feed, coalescer, hub, bus and every encoding share these types;
//! turning them into bytes is [`crate::encoding`]'s job.

use crate::symbol::Symbol;
use std::time::Instant;

/// The fields of a symbol's state; each is present once the feed has sent it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fields {
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub last: Option<f64>,
    pub volume: Option<f64>,
}

impl Fields {
    /// Overwrites the fields that `newer` has.
    pub fn merge(&mut self, newer: &Fields) {
        if newer.bid.is_some() {
            self.bid = newer.bid;
        }
        if newer.ask.is_some() {
            self.ask = newer.ask;
        }
        if newer.last.is_some() {
            self.last = newer.last;
        }
        if newer.volume.is_some() {
            self.volume = newer.volume;
        }
    }

    /// Whether no field is present.
    pub fn is_empty(&self) -> bool {
        self.bid.is_none() && self.ask.is_none() && self.last.is_none() && self.volume.is_none()
    }
}

/// One tick from the feed.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    pub symbol: Symbol,
    pub fields: Fields,
    /// Feed event time, µs since the epoch (time of receipt when the line had none).
    pub ts: u64,
    /// When tickcast received it, for `tickcast_coalesce_delay_seconds`.
    pub arrival: Instant,
}

/// One released update of one symbol: the full state, never a delta.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TickState {
    /// Per symbol: 1, 2, 3 … (the coalescer's, the same on every node).
    pub seq: u64,
    pub fields: Fields,
    /// Feed event time of the newest tick merged in, µs since the epoch.
    pub ts: u64,
    /// When the coalescer released it, µs since the epoch.
    pub pub_us: u64,
    /// Across all symbols, in release order (the hub's, carried to every
    /// node of a cluster): "everything up to here" for a stream that resumes
    /// from one number (Server-Sent Events' `Last-Event-ID`). 0 until the hub
    /// publishes the update.
    pub gseq: u64,
}

/// A released update and whose it is, as it crosses nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    pub symbol: Symbol,
    pub state: TickState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_overwrites_only_present_fields() {
        let mut a = Fields {
            bid: Some(1.0),
            ask: Some(2.0),
            ..Fields::default()
        };
        a.merge(&Fields {
            last: Some(1.5),
            volume: Some(10.0),
            ..Fields::default()
        });
        a.merge(&Fields {
            bid: Some(1.1),
            ..Fields::default()
        });
        assert_eq!(
            a,
            Fields {
                bid: Some(1.1),
                ask: Some(2.0),
                last: Some(1.5),
                volume: Some(10.0)
            }
        );
        assert!(!a.is_empty());
        assert!(Fields::default().is_empty());
    }
}
