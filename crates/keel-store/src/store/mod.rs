//! The [`Store`]: definitions, writes, online / as-of / historical reads.

use crate::backend::{Backend, Batch, NewestLayout, RecoveryReport, RocksBackend, RocksOptions};
use crate::cache::RowCache;
use crate::defs::{cf_name, Definitions, Entity, FeatureService, FeatureView};
use crate::error::{Result, StoreError};
use crate::key;
use crate::value::{StoredRow, Value};
use keel_core::envelope;
use keel_core::{Clock, Field, SystemClock};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

mod catalog;
mod historical;
mod read;
mod write;

use catalog::{Catalog, Plan};
pub use historical::HistoricalOptions;
pub use read::{AsOfOptions, FeatureValue, OnlineResponse, Status};
pub use write::{MaterializeOptions, MaterializeReport, Row};

/// Registry entry naming the row-key layout (docs/store.md); a store in another layout is
/// refused at open rather than misread.
const LAYOUT_KEY: &str = "format/row-keys";
/// Layout 2: times newest first.
const KEY_LAYOUT: &[u8] = b"2";

/// Largest encoded row accepted (1 MiB).
pub const MAX_VALUE: usize = 1 << 20;

/// How durable an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each write batch is in the write-ahead log in the OS's page cache when it returns: it
    /// survives the process crashing, not the machine losing power.
    #[default]
    Buffered,
    /// Each write batch's write-ahead log is synced to disk before it returns (fsync): it
    /// survives power loss; every write pays a disk flush.
    Synced,
}

/// Options for [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Source of "now" for TTL checks and default creation times.
    pub clock: Arc<dyn Clock>,
    /// When a write counts as done: [`Durability::Buffered`] (the default: in the OS's page
    /// cache, survives a process crash, not a power loss) or [`Durability::Synced`] (the
    /// write-ahead log is synced to disk before the write returns).
    pub durability: Durability,
    /// RocksDB block cache shared by every view, in bytes (default 256 MiB). Online reads
    /// that miss it pay a file read and an allocation per block.
    pub block_cache_bytes: usize,
    /// Entities whose newest row online reads keep decoded in memory, per store (default
    /// 16,384; 0 disables). Writes invalidate their entities; as-of and historical reads
    /// bypass it.
    pub row_cache_entries: usize,
    /// Keep each view version's newest rows in their own column family (default `true`):
    /// online reads are then one batched point lookup in a family that holds only newest
    /// rows, instead of a seek through history (2x faster for 100 entities over deep
    /// history here). Each batch writes one newest-row entry per entity it touches: batches
    /// with several rows per entity barely notice, a stream with one row per entity per
    /// batch writes every row twice and ingests at about half the rate (236-265k vs
    /// 440-561k rows/s at 10M rows here). `false` drops the families at open (online reads
    /// search history); `true` again rebuilds them from history at open.
    pub newest_rows: bool,
    /// How newest rows are stored: checksummed block-based tables (default) or PlainTable
    /// files read through mmap (faster cold online reads; no checksums on the table's own
    /// structure). See [`NewestLayout`]; changing it rebuilds the family at the next
    /// writable open.
    pub newest_layout: NewestLayout,
    /// On a shared backend (Redis), how often a read checks whether another process applied
    /// definitions, and reloads them if so (default 1 s; one `GET` per interval). Embedded
    /// stores ignore it.
    pub catalog_refresh: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            clock: Arc::new(SystemClock),
            durability: Durability::Buffered,
            block_cache_bytes: 256 << 20,
            row_cache_entries: 16_384,
            newest_rows: true,
            newest_layout: NewestLayout::Checked,
            catalog_refresh: Duration::from_secs(1),
        }
    }
}

/// An embedded, versioned, point-in-time-correct feature store. `Send + Sync`: share one
/// across threads; readers and writers run concurrently.
#[derive(Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    rocks: Option<Arc<RocksBackend>>,
    catalog: RwLock<Catalog>,
    cache: Arc<RowCache>,
    opts: StoreOptions,
    path: PathBuf,
    /// The backend's catalog generation the catalog was loaded at, and when it was last
    /// checked (shared backends).
    catalog_gen: AtomicU64,
    catalog_checked: Mutex<Instant>,
}

/// Counts of a view version ([`Store::view_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewStats {
    /// Distinct entity keys with at least one row.
    pub entities: usize,
    /// The materialisation watermark, when the view was materialised.
    pub watermark_ms: Option<i64>,
}

/// Identifies a checkpoint: the data version a training run records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointId {
    /// The last sequence number included.
    pub sequence: u64,
    /// Where it was written.
    pub path: PathBuf,
}

impl std::fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq-{}", self.sequence)
    }
}

impl Store {
    /// Opens or creates a store in `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens or creates a store with options.
    pub fn open_with(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let rocks = Arc::new(RocksBackend::open_with(
            path.as_ref(),
            Arc::clone(&opts.clock),
            &RocksOptions {
                cache_bytes: opts.block_cache_bytes,
                read_only: false,
                newest_rows: opts.newest_rows,
                newest_layout: opts.newest_layout,
            },
        )?);
        Self::from_rocks(rocks, opts, path.as_ref())
    }

    /// Opens a store that must already exist: a directory that is missing or holds no keel
    /// store is refused with [`StoreError::NotAStore`] and nothing is created. For commands
    /// that only read, where a misspelt path must not make a new, empty store.
    pub fn open_existing(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        RocksBackend::check_is_store(path.as_ref())?;
        Self::open_with(path, opts)
    }

    /// What recovery had to do when this store was opened: a damaged write-ahead-log tail is
    /// replayed up to the damage and the batches after it are dropped; the report says so
    /// (always empty for read-only opens and other backends).
    pub fn recovery(&self) -> RecoveryReport {
        self.rocks
            .as_ref()
            .map(|r| r.recovery().clone())
            .unwrap_or_default()
    }

    /// Opens a checkpoint (or store) read-only: reads work, writes fail.
    pub fn open_read_only(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let rocks = Arc::new(RocksBackend::open_with(
            path.as_ref(),
            Arc::clone(&opts.clock),
            &RocksOptions {
                cache_bytes: opts.block_cache_bytes,
                read_only: true,
                newest_rows: opts.newest_rows,
                newest_layout: opts.newest_layout,
            },
        )?);
        Self::from_rocks(rocks, opts, path.as_ref())
    }

    fn from_rocks(rocks: Arc<RocksBackend>, opts: StoreOptions, path: &Path) -> Result<Store> {
        let backend: Arc<dyn Backend> = Arc::clone(&rocks) as Arc<dyn Backend>;
        Self::build(backend, Some(rocks), opts, path.to_path_buf())
    }

    /// A store over any backend (the trait a shared Redis/Valkey backend implements). A
    /// shared backend keeps the row cache only if it reports other processes' writes
    /// ([`Backend::invalidations`]), and gets a catalog that follows other processes' `apply` (see
    /// [`StoreOptions::catalog_refresh`]).
    pub fn with_backend(backend: Arc<dyn Backend>, opts: StoreOptions) -> Result<Store> {
        Self::build(backend, None, opts, PathBuf::new())
    }

    /// Opens the shared store at a Redis URL: `redis://HOST:PORT` or
    /// `redis+cluster://HOST:PORT,HOST:PORT,...`, optionally with `?prefix=NAME` (see
    /// [`RedisUrl`](crate::redis::RedisUrl)), with default [`RedisOptions`](crate::redis::RedisOptions).
    #[cfg(feature = "redis")]
    pub fn connect(url: &str, opts: StoreOptions) -> Result<Store> {
        Self::connect_with(url, opts, crate::redis::RedisOptions::default())
    }

    /// [`Store::connect`] with Redis options (pool size, timeouts, key prefix).
    #[cfg(feature = "redis")]
    pub fn connect_with(
        url: &str,
        opts: StoreOptions,
        redis: crate::redis::RedisOptions,
    ) -> Result<Store> {
        let backend = crate::redis::RedisBackend::connect(url, Arc::clone(&opts.clock), redis)?;
        Self::with_backend(Arc::new(backend), opts)
    }

    fn build(
        backend: Arc<dyn Backend>,
        rocks: Option<Arc<RocksBackend>>,
        opts: StoreOptions,
        path: PathBuf,
    ) -> Result<Store> {
        // A shared store keeps a row cache only when the backend reports other processes'
        // writes (Redis' client-side caching); otherwise nothing could invalidate it.
        let cache = if backend.shared() && !backend.invalidations() {
            0
        } else {
            opts.row_cache_entries
        };
        let cache = Arc::new(RowCache::new(cache));
        if backend.shared() && backend.invalidations() {
            let sink = Arc::clone(&cache);
            backend.on_invalidate(Arc::new(move |what| match what {
                crate::backend::Invalidation::Entity { view, prefix } => {
                    sink.invalidate([(view, prefix)])
                }
                crate::backend::Invalidation::All => sink.clear(),
            }));
        }
        let store = Store {
            backend,
            rocks,
            catalog: RwLock::default(),
            cache,
            opts,
            path,
            catalog_gen: AtomicU64::new(0),
            catalog_checked: Mutex::new(Instant::now()),
        };
        store.load_registry()?;
        Ok(store)
    }

    /// Whether this store is shared with other processes (Redis) rather than embedded.
    pub fn is_shared(&self) -> bool {
        self.backend.shared()
    }

    /// Sends `message` (at most 4 KiB) to every process subscribed to this store's messages:
    /// a hint between replicas ("look now"), never state. Refused with
    /// [`StoreError::Unsupported`] on an embedded store.
    pub fn publish(&self, message: &[u8]) -> Result<()> {
        self.backend.publish(message)
    }

    /// Calls `sink` with every message published to this store from now on (by any process,
    /// this one included; delivery is best effort, a message lost to a reconnect is not sent
    /// again). `Ok(false)` on an embedded store, which carries no messages.
    pub fn subscribe(&self, sink: crate::MessageSink) -> Result<bool> {
        self.backend.subscribe(sink)
    }

    /// Reloads the definitions if another process applied some since they were loaded
    /// (shared backends; a no-op on an embedded store). Returns whether they changed. Reads
    /// call this by themselves at most once per [`StoreOptions::catalog_refresh`].
    pub fn refresh_catalog(&self) -> Result<bool> {
        if !self.backend.shared() {
            return Ok(false);
        }
        let gen = self.backend.catalog_generation()?;
        if let Ok(mut at) = self.catalog_checked.lock() {
            *at = Instant::now();
        }
        if gen == self.catalog_gen.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.load_registry()?;
        Ok(true)
    }

    /// [`Store::refresh_catalog`] when the refresh interval has passed.
    fn maybe_refresh(&self) -> Result<()> {
        if !self.backend.shared() {
            return Ok(());
        }
        let due = self
            .catalog_checked
            .lock()
            .map(|at| at.elapsed() >= self.opts.catalog_refresh)
            .unwrap_or(true);
        if due {
            self.refresh_catalog()?;
        }
        Ok(())
    }

    fn load_registry(&self) -> Result<()> {
        // Read first: definitions applied after this are picked up by the next refresh.
        let gen = self.backend.catalog_generation()?;
        let mut reg = Catalog::default();
        let layout = self.backend.registry_get(LAYOUT_KEY)?;
        for (_, b) in self.backend.registry_scan("entity/")? {
            let e: Entity = envelope::decode(&b)?;
            reg.entities.insert(e.name.clone(), e);
        }
        for (_, b) in self.backend.registry_scan("view/")? {
            let v: FeatureView = envelope::decode(&b)?;
            if self.backend.shared() {
                // Views another process defined (RocksDB reads its own at open).
                self.backend.ensure_view(&v.cf_name(), v.retention_ms)?;
            }
            reg.views.insert((v.name.clone(), v.version), v);
        }
        if !reg.views.is_empty() && layout.as_deref() != Some(KEY_LAYOUT) {
            return Err(StoreError::Definition(format!(
                "this store's row keys use layout {:?}; this build reads layout {:?} (docs/store.md)",
                layout.map(|l| String::from_utf8_lossy(&l).into_owned()),
                String::from_utf8_lossy(KEY_LAYOUT)
            )));
        }
        for (_, b) in self.backend.registry_scan("service/")? {
            let s: FeatureService = envelope::decode(&b)?;
            reg.services.insert(s.name.clone(), s);
        }
        *self.catalog.write().map_err(|_| poisoned())? = reg;
        self.catalog_gen.store(gen, Ordering::Release);
        Ok(())
    }

    /// Validates and stores definitions atomically. Re-applying an identical definition is a
    /// no-op; changing a view version's entities or features is refused (make a new version).
    pub fn apply(&self, defs: &Definitions) -> Result<()> {
        // Validate against every definition applied so far, by any process.
        self.refresh_catalog()?;
        let mut reg = self.catalog.write().map_err(|_| poisoned())?;
        let mut entities = reg.entities.clone();
        for e in &defs.entities {
            e.validate()?;
            if let Some(old) = entities.get(&e.name) {
                if old != e {
                    return Err(StoreError::Definition(format!(
                        "entity `{}` exists with other join keys",
                        e.name
                    )));
                }
            }
            entities.insert(e.name.clone(), e.clone());
        }
        let mut views = reg.views.clone();
        for v in &defs.views {
            v.validate()?;
            for en in &v.entities {
                if !entities.contains_key(en) {
                    return Err(StoreError::Unknown {
                        kind: "entity",
                        name: en.clone(),
                    });
                }
            }
            if let Some(old) = views.get(&(v.name.clone(), v.version)) {
                if old.features != v.features || old.entities != v.entities {
                    return Err(StoreError::Definition(format!(
                        "view `{}` version {} exists with other entities or features; apply a new version",
                        v.name, v.version
                    )));
                }
            }
            views.insert((v.name.clone(), v.version), v.clone());
        }
        for s in &defs.services {
            crate::defs::check_name("feature service", &s.name)?;
            for r in &s.features {
                let view =
                    views
                        .get(&(r.view.clone(), r.version))
                        .ok_or_else(|| StoreError::Unknown {
                            kind: "feature view",
                            name: format!("{}@{}", r.view, r.version),
                        })?;
                if view.feature_index(&r.feature).is_none() {
                    return Err(StoreError::Unknown {
                        kind: "feature",
                        name: r.to_string(),
                    });
                }
            }
        }
        let mut batch = Batch::default();
        batch
            .registry
            .push((LAYOUT_KEY.into(), KEY_LAYOUT.to_vec()));
        for e in &defs.entities {
            batch
                .registry
                .push((format!("entity/{}", e.name), envelope::encode(e)?));
        }
        for v in &defs.views {
            self.backend.ensure_view(&v.cf_name(), v.retention_ms)?;
            batch.registry.push((
                format!("view/{}/{:010}", v.name, v.version),
                envelope::encode(v)?,
            ));
        }
        for s in &defs.services {
            batch
                .registry
                .push((format!("service/{}", s.name), envelope::encode(s)?));
        }
        self.commit(&batch, true)?;
        reg.entities = entities;
        reg.views = views;
        for s in &defs.services {
            reg.services.insert(s.name.clone(), s.clone());
        }
        reg.plans.clear();
        drop(reg);
        if self.backend.shared() {
            // Our own apply: the generation it produced needs no reload here.
            let gen = self.backend.catalog_generation()?;
            self.catalog_gen.store(gen, Ordering::Release);
        }
        Ok(())
    }

    /// Every definition applied so far: entities, view versions and services, each sorted by
    /// name (views by name then version).
    pub fn definitions(&self) -> Result<Definitions> {
        self.maybe_refresh()?;
        let cat = self.catalog.read().map_err(|_| poisoned())?;
        let mut entities: Vec<Entity> = cat.entities.values().cloned().collect();
        entities.sort_by(|a, b| a.name.cmp(&b.name));
        let mut views: Vec<FeatureView> = cat.views.values().cloned().collect();
        views.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        let mut services: Vec<FeatureService> = cat.services.values().cloned().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Definitions {
            entities,
            views,
            services,
        })
    }

    /// What a view version holds: its distinct entity keys (a scan of its keys, one seek per
    /// entity) and its materialisation watermark.
    pub fn view_stats(&self, name: &str, version: u32) -> Result<ViewStats> {
        let v = self.view(name, version)?;
        Ok(ViewStats {
            entities: self.backend.entities(&v.cf_name())?.len(),
            watermark_ms: self.watermark(name, version)?,
        })
    }

    /// A view version's definition.
    pub fn view(&self, name: &str, version: u32) -> Result<FeatureView> {
        self.maybe_refresh()?;
        let reg = self.catalog.read().map_err(|_| poisoned())?;
        reg.views
            .get(&(name.to_string(), version))
            .cloned()
            .ok_or_else(|| StoreError::Unknown {
                kind: "feature view",
                name: format!("{name}@{version}"),
            })
    }

    /// A feature service's definition.
    pub fn service(&self, name: &str) -> Result<FeatureService> {
        self.maybe_refresh()?;
        let reg = self.catalog.read().map_err(|_| poisoned())?;
        reg.services
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::Unknown {
                kind: "feature service",
                name: name.into(),
            })
    }

    /// The join key fields of a view (its entities' keys, concatenated).
    pub fn join_keys(&self, view: &FeatureView) -> Result<Vec<Field>> {
        self.catalog.read().map_err(|_| poisoned())?.join_keys(view)
    }

    /// The resolved plan of a feature service, built once and cached until the next `apply`.
    fn service_plan(&self, service: &str) -> Result<Arc<Plan>> {
        self.maybe_refresh()?;
        if let Some(p) = self
            .catalog
            .read()
            .map_err(|_| poisoned())?
            .plans
            .get(service)
        {
            return Ok(Arc::clone(p));
        }
        let mut reg = self.catalog.write().map_err(|_| poisoned())?;
        if let Some(p) = reg.plans.get(service) {
            return Ok(Arc::clone(p));
        }
        let s = reg
            .services
            .get(service)
            .ok_or_else(|| StoreError::Unknown {
                kind: "feature service",
                name: service.into(),
            })?;
        let plan = Arc::new(reg.plan(&s.features)?);
        reg.plans.insert(service.to_string(), Arc::clone(&plan));
        Ok(plan)
    }

    /// Deletes every row of an entity key in every view version that uses the entity (right to
    /// be forgotten), atomically: in views keyed by several entities, every stored key whose
    /// part for this entity matches (found by a scan of the view's keys).
    pub fn delete_entity(&self, entity: &str, key: &[Value]) -> Result<usize> {
        let reg = self.catalog.read().map_err(|_| poisoned())?;
        let e = reg
            .entities
            .get(entity)
            .ok_or_else(|| StoreError::Unknown {
                kind: "entity",
                name: entity.into(),
            })?;
        if key.len() != e.join_keys.len() {
            return Err(StoreError::BadValue {
                what: format!("key of `{entity}`"),
                reason: "wrong number of values".into(),
            });
        }
        let mut batch = Batch::default();
        let prefix = key::entity_prefix(key)?;
        let target = &prefix[8..];
        for v in reg.views.values() {
            let Some(at) = v.entities.iter().position(|e| e == entity) else {
                continue;
            };
            if v.entities.len() == 1 {
                batch
                    .delete_ranges
                    .push((v.cf_name(), prefix.clone(), key::prefix_end(&prefix)));
                continue;
            }
            // A view keyed by several entities: every stored entity whose part for `entity`
            // (its join keys after those of the entities before it) is this key.
            let offset: usize = v.entities[..at]
                .iter()
                .map(|e| reg.entities.get(e).map_or(0, |e| e.join_keys.len()))
                .sum();
            let n = e.join_keys.len();
            for stored in self.backend.entities(&v.cf_name())? {
                let matches = key::split_entity(&stored[8..])
                    .filter(|segs| segs.len() >= offset + n)
                    .is_some_and(|segs| segs[offset..offset + n].concat() == target);
                if matches {
                    let end = key::prefix_end(&stored);
                    batch.delete_ranges.push((v.cf_name(), stored, end));
                }
            }
        }
        let n = batch.delete_ranges.len();
        drop(reg);
        self.commit(&batch, true)?;
        Ok(n)
    }

    /// Writes a consistent read-only snapshot to `dir` (RocksDB checkpoint). Its id is the data
    /// version to record with a model; open it with [`Store::open_read_only`].
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<CheckpointId> {
        let rocks = self.rocks.as_ref().ok_or_else(|| StoreError::Unsupported {
            operation: "checkpoint",
            backend: "redis",
            instead: "Redis has no read-only snapshot to open; train from a checkpoint of the \
                      embedded store the rows were materialised from, or record the view \
                      version and watermark as the data version"
                .into(),
        })?;
        let sequence = rocks.checkpoint(dir.as_ref())?;
        Ok(CheckpointId {
            sequence,
            path: dir.as_ref().to_path_buf(),
        })
    }

    /// Compacts a view version now, applying its history retention.
    pub fn compact(&self, view: &str, version: u32) -> Result<()> {
        self.backend.compact(&cf_name(view, version))?;
        // Retention may have dropped a cached row.
        self.cache.clear();
        Ok(())
    }

    /// Every stored row of one entity in a view version, oldest first: `(event, created, values)`.
    pub fn history(
        &self,
        view: &str,
        version: u32,
        key: &[Value],
    ) -> Result<Vec<(i64, i64, Vec<Value>)>> {
        let v = self.view(view, version)?;
        let prefix = key::entity_prefix(key)?;
        self.backend
            .history(&v.cf_name(), &prefix)?
            .into_iter()
            .map(|f| {
                let row: StoredRow =
                    envelope::decode(&f.value).map_err(|source| StoreError::Corrupt {
                        view: v.cf_name(),
                        source,
                    })?;
                Ok((f.event, f.created, row.0))
            })
            .collect()
    }
}

fn poisoned() -> StoreError {
    StoreError::Definition("catalog lock poisoned by a panicking thread".into())
}
