//! The row cache of online reads: the newest decoded row of recently read entities, per view
//! version, so a hot entity costs a hash lookup instead of a storage seek and a decode.
//!
//! Correctness rests on two rules:
//! - only an entity's *newest* row is cached (or its absence), and it answers a read at time T
//!   only when its event time is at or before T: a future-dated newest row falls through to
//!   storage;
//! - every commit bumps a write epoch, then drops the entries it touched. A reader notes the
//!   epoch before it reads storage and inserts only if the epoch is unchanged, so a read that
//!   raced a write can never leave a stale entry behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::value::Value;

/// An entity's newest row: event time and values; `None` when the entity has no row.
pub(crate) type Newest = Option<Arc<(i64, Vec<Value>)>>;

const SHARDS: usize = 16;

struct Entry {
    /// `view storage name ++ 0x00 ++ entity prefix`: checked on every hit (the map key is a
    /// hash).
    key: Box<[u8]>,
    row: Newest,
}

/// A sharded, bounded map from (view, entity) to its newest row.
pub(crate) struct RowCache {
    shards: Vec<Mutex<HashMap<u64, Entry>>>,
    per_shard: usize,
    epoch: AtomicU64,
    /// Entries held (a write into an empty cache skips the per-row hashing).
    len: AtomicU64,
}

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

fn hash(cf: &str, prefix: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in cf.as_bytes().iter().chain(&[0u8]).chain(prefix) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn same(key: &[u8], cf: &str, prefix: &[u8]) -> bool {
    key.len() == cf.len() + 1 + prefix.len()
        && key[..cf.len()] == *cf.as_bytes()
        && key[cf.len()] == 0
        && key[cf.len() + 1..] == *prefix
}

impl RowCache {
    /// A cache of about `capacity` entities (0 disables it).
    pub(crate) fn new(capacity: usize) -> RowCache {
        RowCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            epoch: AtomicU64::new(0),
            len: AtomicU64::new(0),
        }
    }

    fn shard(&self, h: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.shards[(h >> 60) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the cache holds anything at all.
    pub(crate) fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    /// The write epoch, to pass to [`RowCache::insert`] after reading storage.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The cached newest row of an entity, if any.
    pub(crate) fn get(&self, cf: &str, prefix: &[u8]) -> Option<Newest> {
        if !self.enabled() {
            return None;
        }
        let h = hash(cf, prefix);
        self.shard(h)
            .get(&h)
            .filter(|e| same(&e.key, cf, prefix))
            .map(|e| e.row.clone())
    }

    /// Caches an entity's newest row read from storage at write epoch `epoch`; dropped when a
    /// write committed since.
    pub(crate) fn insert(&self, cf: &str, prefix: &[u8], row: Newest, epoch: u64) {
        if !self.enabled() {
            return;
        }
        let h = hash(cf, prefix);
        let mut shard = self.shard(h);
        // Count the entry before checking the epoch (both SeqCst): a writer either sees the
        // count and takes this shard's lock to drop the entry, or this check sees its epoch.
        self.len.fetch_add(1, Ordering::SeqCst);
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.len.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if shard.len() >= self.per_shard && !shard.contains_key(&h) {
            // Bounded: evict an arbitrary entry (hash order is effectively random).
            if let Some(&victim) = shard.keys().next() {
                shard.remove(&victim);
                self.len.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let mut key = Vec::with_capacity(cf.len() + 1 + prefix.len());
        key.extend_from_slice(cf.as_bytes());
        key.push(0);
        key.extend_from_slice(prefix);
        let replaced = shard.insert(
            h,
            Entry {
                key: key.into(),
                row,
            },
        );
        if replaced.is_some() {
            self.len.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Call after a commit: bumps the epoch, then drops the entries of `(view, entity prefix)`.
    pub(crate) fn invalidate<'a>(&self, touched: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        // Empty: any insert racing this write sees the new epoch and is refused.
        if self.len.load(Ordering::SeqCst) == 0 {
            return;
        }
        for (cf, prefix) in touched {
            let h = hash(cf, prefix);
            if self.shard(h).remove(&h).is_some() {
                self.len.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Drops everything (bulk loads, compactions).
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            self.len.fetch_sub(s.len() as u64, Ordering::SeqCst);
            s.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_inserts_are_refused_and_capacity_is_bounded() {
        let c = RowCache::new(32);
        let e = c.epoch();
        c.invalidate([("fv:a:v1", &b"k1"[..])]);
        c.insert("fv:a:v1", b"k1", None, e);
        assert!(c.get("fv:a:v1", b"k1").is_none(), "raced a write");
        let e = c.epoch();
        c.insert("fv:a:v1", b"k1", Some(Arc::new((5, vec![]))), e);
        assert_eq!(c.get("fv:a:v1", b"k1").unwrap().unwrap().0, 5);
        assert!(c.get("fv:a:v2", b"k1").is_none());
        for i in 0..1000u32 {
            c.insert("fv:a:v1", &i.to_be_bytes(), None, c.epoch());
        }
        let n: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(n <= 32, "{n}");
        c.invalidate([("fv:a:v1", &b"k1"[..])]);
        assert!(c.get("fv:a:v1", b"k1").is_none());
        assert!(!RowCache::new(0).enabled());
    }
}
