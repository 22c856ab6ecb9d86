//! Storage backends behind the store's online path. RocksDB (embedded) is the default; a shared
//! backend (Redis/Valkey cluster) implements the same trait without touching the store's logic.

#[cfg(feature = "redis")]
pub mod redis;
mod rocks;

pub(crate) use rocks::newest_of;
pub use rocks::{NewestLayout, RecoveryReport, RocksBackend, RocksOptions};

use crate::error::Result;
use crate::key;

/// Writes applied atomically by [`Backend::commit`].
#[derive(Debug, Default)]
pub struct Batch {
    /// `(view storage name, key, value)`.
    pub puts: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Registry entries `(key, value)`.
    pub registry: Vec<(String, Vec<u8>)>,
    /// `(view storage name, from, to)`: delete every key in `from..to`.
    pub delete_ranges: Vec<(String, Vec<u8>, Vec<u8>)>,
}

/// A stored row found by [`Backend::latest`].
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Event time (ms).
    pub event: i64,
    /// Creation time (ms).
    pub created: i64,
    /// The encoded row.
    pub value: Vec<u8>,
}

impl Found {
    /// The row borrowed, as the batched lookups hand it out.
    pub fn as_row(&self) -> RowRef<'_> {
        RowRef {
            event: self.event,
            created: self.created,
            value: &self.value,
        }
    }
}

/// A stored row lent by [`Backend::latest_each`] / [`Backend::newest_each`] for the duration
/// of the callback: the bytes can stay where the backend holds them (RocksDB's block cache),
/// decoded in place instead of copied out first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    /// Event time (ms).
    pub event: i64,
    /// Creation time (ms).
    pub created: i64,
    /// The encoded row.
    pub value: &'a [u8],
}

/// The operations the store needs from storage. All methods take `&self`: implementations are
/// shared across threads.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// A registry entry.
    fn registry_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Registry entries whose key starts with `prefix`, in key order.
    fn registry_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// Creates the storage of a view version if missing, with its history retention.
    fn ensure_view(&self, name: &str, retention_ms: Option<i64>) -> Result<()>;
    /// Applies every write of `batch` or none. With `sync`, returns after the log is on disk.
    fn commit(&self, batch: &Batch, sync: bool) -> Result<()>;
    /// The row of entity `prefix` with the greatest (event, created) such that
    /// `event <= event_bound` and, when given, `created <= created_cutoff`. The default asks
    /// [`Backend::latest_each`] for one lookup; an implementation overrides this one or that
    /// one (each default calls the other).
    fn latest(
        &self,
        view: &str,
        prefix: &[u8],
        event_bound: i64,
        created_cutoff: Option<i64>,
    ) -> Result<Option<Found>> {
        let mut out = None;
        let one = Lookup {
            prefix,
            event_bound,
            created_cutoff,
        };
        self.latest_each(view, &[one], &mut |_, f| {
            out = f.map(|f| Found {
                event: f.event,
                created: f.created,
                value: f.value.to_vec(),
            });
            Ok(())
        })?;
        Ok(out)
    }
    /// [`Backend::latest`] for many lookups in one view, answered in order through
    /// `found(index, row)`. Callers sort lookups by entity and time so an implementation can
    /// reuse one cursor (RocksDB) or pipeline the requests (a network backend); the default
    /// asks [`Backend::latest`] once per lookup.
    fn latest_each(
        &self,
        view: &str,
        lookups: &[Lookup<'_>],
        found: &mut dyn FnMut(usize, Option<RowRef<'_>>) -> Result<()>,
    ) -> Result<()> {
        for (i, l) in lookups.iter().enumerate() {
            let row = self.latest(view, l.prefix, l.event_bound, l.created_cutoff)?;
            found(i, row.as_ref().map(Found::as_row))?;
        }
        Ok(())
    }
    /// The newest row of each entity in `prefixes` (greatest (event, created), future-dated
    /// rows included), answered in order through `found(index, row)`: what online reads ask
    /// for. Callers pass prefixes sorted. The default asks [`Backend::latest_each`] with no
    /// time bound; RocksDB answers from a per-view newest-row column family with one batched
    /// point lookup.
    fn newest_each(
        &self,
        view: &str,
        prefixes: &[&[u8]],
        found: &mut dyn FnMut(usize, Option<RowRef<'_>>) -> Result<()>,
    ) -> Result<()> {
        newest_from_history(self, view, prefixes, found)
    }
    /// [`Backend::newest_each`] for several views at once, answered through
    /// `found(read, index, row)`: what an online read of a service asks. The default asks
    /// [`Backend::newest_each`] view by view; a network backend sends every lookup in one
    /// round trip.
    fn newest_many(&self, reads: &[NewestRead<'_>], found: &mut ManyFound<'_>) -> Result<()> {
        for (r, read) in reads.iter().enumerate() {
            self.newest_each(read.view, read.prefixes, &mut |i, row| found(r, i, row))?;
        }
        Ok(())
    }
    /// Every row of entity `prefix`, oldest first (for tests and tools).
    fn history(&self, view: &str, prefix: &[u8]) -> Result<Vec<Found>>;
    /// The distinct entity prefixes of a view's history, in key order: what a delete of one
    /// entity searches in views keyed by several entities.
    fn entities(&self, view: &str) -> Result<Vec<Vec<u8>>>;
    /// Applies a view's history retention now (RocksDB: a full compaction; Redis: a trim of
    /// every entity). The default does nothing.
    fn compact(&self, _view: &str) -> Result<()> {
        Ok(())
    }
    /// Whether other processes write through the same storage (a shared network store). The
    /// store then keeps no row cache (another process's write could not invalidate it) and
    /// follows [`Backend::catalog_generation`].
    fn shared(&self) -> bool {
        false
    }
    /// A number that changes whenever any process applies definitions (0 when never, and
    /// always 0 for a store only this process writes).
    fn catalog_generation(&self) -> Result<u64> {
        Ok(0)
    }
    /// Whether a shared backend tells this process when other processes change rows it has
    /// read (Redis: server-assisted client-side caching). The store then keeps its row cache
    /// and hands the backend a sink for those invalidations.
    fn invalidations(&self) -> bool {
        false
    }
    /// Where the backend sends invalidations (see [`Backend::invalidations`]).
    fn on_invalidate(&self, _sink: InvalidationSink) {}
    /// Noted before a read and compared after it: reads may fill the row cache only when both
    /// are `Some` and equal (the backend could report every change in between). Always
    /// `Some(0)` for a store only this process writes.
    fn cache_token(&self) -> Option<u64> {
        Some(0)
    }
    /// Sends `message` (at most 4 KiB) to every process subscribed to this store's messages
    /// ([`Backend::subscribe`]); a store only this process uses has nobody to tell
    /// ([`StoreError::Unsupported`](crate::StoreError::Unsupported)).
    fn publish(&self, _message: &[u8]) -> Result<()> {
        Err(crate::StoreError::Unsupported {
            operation: "publishing a message",
            backend: "this backend",
            instead: "messages between processes need a shared store (Redis)".into(),
        })
    }
    /// Calls `sink` with every message published to this store from now on (by any process,
    /// this one included). `Ok(false)`: this backend carries no messages.
    fn subscribe(&self, _sink: MessageSink) -> Result<bool> {
        Ok(false)
    }
}

/// A change another process made, as a shared backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation<'a> {
    /// One entity of one view version: its storage name and entity prefix.
    Entity {
        /// The view version's storage name.
        view: &'a str,
        /// The entity prefix (hash and entity bytes).
        prefix: &'a [u8],
    },
    /// Anything may have changed (a flush, or the backend lost track).
    All,
}

/// Where messages between processes go ([`Backend::subscribe`]).
pub type MessageSink = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Where invalidations go (the store's row cache).
pub type InvalidationSink = std::sync::Arc<dyn for<'a> Fn(Invalidation<'a>) + Send + Sync>;

/// The callback of [`Backend::newest_many`]: `(read, index, row)`.
pub type ManyFound<'f> = dyn FnMut(usize, usize, Option<RowRef<'_>>) -> Result<()> + 'f;

/// One view's part of [`Backend::newest_many`].
#[derive(Debug, Clone, Copy)]
pub struct NewestRead<'a> {
    /// The view's storage name.
    pub view: &'a str,
    /// Entity prefixes, sorted.
    pub prefixes: &'a [&'a [u8]],
}

/// [`Backend::newest_each`] answered by [`Backend::latest_each`] with no time bound.
pub(super) fn newest_from_history<B: Backend + ?Sized>(
    backend: &B,
    view: &str,
    prefixes: &[&[u8]],
    found: &mut dyn FnMut(usize, Option<RowRef<'_>>) -> Result<()>,
) -> Result<()> {
    let lookups: Vec<Lookup<'_>> = prefixes
        .iter()
        .map(|p| Lookup {
            prefix: p,
            event_bound: key::MAX_TS,
            created_cutoff: None,
        })
        .collect();
    backend.latest_each(view, &lookups, found)
}

/// One lookup of [`Backend::latest_each`]: the same arguments as [`Backend::latest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// Encoded entity (hash prefix and entity bytes).
    pub prefix: &'a [u8],
    /// Greatest event time accepted.
    pub event_bound: i64,
    /// Greatest creation time accepted, when given.
    pub created_cutoff: Option<i64>,
}
