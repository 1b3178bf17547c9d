//! The latest value of every symbol, readable without locks by any thread.
//!
//! The hub thread writes a symbol's [`Latest`] once per update; writers read
//! it to send snapshots and to re-send what a slow client's queue dropped, and
//! `/snapshot` reads it to answer HTTP. A [`SymbolSlot`] is shared by `Arc`
//! between the hub, the subscribers' writers and the [`SymbolTable`].
//!
//! An update keeps the bytes it is sent as, one per form (transport and
//! encoding, see [`crate::transport::FORMS`]), made by the first writer that
//! needs that form and shared by all the others: a form nobody uses costs
//! nothing, and plain JSON over WebSocket is encoded once per update as before.

use crate::candle::bar::Bar;
use crate::candle::series::Series;
use crate::tick::TickState;
use crate::transport::FORMS;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// The `gseq` of the newest update published on this node: a writer that
/// reads it before reading latest values knows those are at least that new.
pub static PUBLISHED: AtomicU64 = AtomicU64::new(0);

/// The newest `gseq` published so far (see [`PUBLISHED`]).
pub fn published() -> u64 {
    PUBLISHED.load(Ordering::Acquire)
}

/// One released update and the bytes it is sent as.
pub struct Latest {
    /// The symbol's id (see [`SymbolSlot::id`]).
    pub id: u32,
    /// A tick's state; for a candle, its `seq`, `gseq` and `pub` only.
    pub state: TickState,
    /// A candle message: the bar's new state (the channel is a series).
    pub candle: Option<Box<Bar>>,
    live: [OnceLock<Bytes>; FORMS],
    /// The same with `"snapshot":true`, rarer: allocated on first use.
    snapshots: OnceLock<Box<[OnceLock<Bytes>; FORMS]>>,
}

impl Latest {
    pub fn new(id: u32, state: TickState) -> Latest {
        Latest {
            id,
            state,
            candle: None,
            live: Default::default(),
            snapshots: OnceLock::new(),
        }
    }

    /// A bar's new state on channel `id`, published at `pub_us`.
    pub fn candle(id: u32, bar: Bar, pub_us: u64) -> Latest {
        let state = TickState {
            seq: bar.seq,
            fields: Default::default(),
            ts: bar.start,
            pub_us,
            gseq: bar.gseq,
        };
        Latest {
            candle: Some(Box::new(bar)),
            ..Latest::new(id, state)
        }
    }

    pub fn seq(&self) -> u64 {
        self.state.seq
    }

    /// The bytes of this update in `form`, made by `make` the first time.
    pub fn form(&self, form: usize, snapshot: bool, make: impl FnOnce() -> Bytes) -> Bytes {
        let cell = if snapshot {
            &self.snapshots.get_or_init(Default::default)[form]
        } else {
            &self.live[form]
        };
        cell.get_or_init(make).clone()
    }
}

/// A symbol known to this node, with its latest value if it has one; or a
/// candle series (a channel named `SYMBOL@INTERVAL`), with its history.
pub struct SymbolSlot {
    /// Index in the hub's tables.
    pub id: u32,
    pub name: Box<str>,
    pub latest: ArcSwapOption<Latest>,
    /// A candle series' bars (`None` for a symbol).
    pub series: Option<Box<Series>>,
}

impl SymbolSlot {
    pub fn new(id: u32, name: &str) -> SymbolSlot {
        SymbolSlot {
            id,
            name: name.into(),
            latest: ArcSwapOption::empty(),
            series: None,
        }
    }

    /// The slot of a candle series.
    pub fn for_series(id: u32, name: &str, series: Series) -> SymbolSlot {
        SymbolSlot {
            series: Some(Box::new(series)),
            ..SymbolSlot::new(id, name)
        }
    }

    /// The symbol this slot is about (a series': its symbol's).
    pub fn symbol(&self) -> &str {
        match &self.series {
            Some(s) => &s.symbol,
            None => &self.name,
        }
    }
}

/// Symbols that have a value, by name, for `/snapshot` and the symbol universe.
///
/// Written by the hub only when a symbol gets its first value; read by HTTP
/// handlers. Not on the per-update path. The sorted list every `/snapshot`
/// of all symbols walks is made once after each change and shared.
#[derive(Default)]
pub struct SymbolTable {
    by_name: RwLock<HashMap<Box<str>, Arc<SymbolSlot>>>,
    /// Bumped by every insert (under the map's write lock).
    generation: std::sync::atomic::AtomicU64,
    /// The sorted list and the generation it was made from.
    sorted: RwLock<(u64, Arc<Vec<Arc<SymbolSlot>>>)>,
}

impl SymbolTable {
    pub fn insert(&self, slot: Arc<SymbolSlot>) {
        let mut map = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        map.insert(slot.name.clone(), slot);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn get(&self, name: &str) -> Option<Arc<SymbolSlot>> {
        let map = self.by_name.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }

    /// How many symbols have a value.
    pub fn len(&self) -> usize {
        self.by_name.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every symbol with a value, sorted by name (made once per change, shared).
    pub fn sorted(&self) -> Arc<Vec<Arc<SymbolSlot>>> {
        let current = self.generation.load(std::sync::atomic::Ordering::Acquire);
        {
            let cached = self.sorted.read().unwrap_or_else(|e| e.into_inner());
            if cached.0 == current && current > 0 {
                return cached.1.clone();
            }
        }
        let (generation, mut v) = {
            let map = self.by_name.read().unwrap_or_else(|e| e.into_inner());
            let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
            (generation, map.values().cloned().collect::<Vec<_>>())
        };
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let list = Arc::new(v);
        let mut cached = self.sorted.write().unwrap_or_else(|e| e.into_inner());
        if cached.0 < generation {
            *cached = (generation, list.clone());
        }
        list
    }
}
