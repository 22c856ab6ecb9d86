//! The [`Store`]: definitions, writes, online / as-of / historical reads.

use crate::backend::{
    Backend, Batch, Lookup, NewestLayout, RecoveryReport, RocksBackend, RocksOptions, RowRef,
};
use crate::cache::{Newest, RowCache};
use crate::defs::{cf_name, Definitions, Entity, FeatureRef, FeatureService, FeatureView};
use crate::error::{Result, StoreError};
use crate::key::{self, check_ts};
use crate::value::{StoredRow, Value};
use keel_core::envelope;
use keel_core::{Clock, Column, ColumnBuilder, DType, Field, Frame, SystemClock, ValueRef};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
        }
    }
}

/// One row to write into a feature view.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Join key values, in the order of the view's entities' join keys.
    pub key: Vec<Value>,
    /// When the values were true (Unix ms).
    pub event_ms: i64,
    /// When they were written; `None` means now.
    pub created_ms: Option<i64>,
    /// Feature values in view order.
    pub values: Vec<Value>,
}

/// Whether a feature value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Found, within TTL.
    Present,
    /// No row for this entity at or before the read time.
    NotFound,
    /// The latest row is older than the view's TTL.
    Expired,
}

/// One feature value as read.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureValue {
    /// The value (`Null` unless `Present`).
    pub value: Value,
    /// Found, missing or expired.
    pub status: Status,
    /// Event time of the row it came from.
    pub event_ms: Option<i64>,
}

/// Read results: `values[e][f]` for entity `e` and feature `f` of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineResponse {
    /// Feature refs in service order (shared with the store's cached service plan).
    pub features: Arc<[FeatureRef]>,
    /// One row per requested entity.
    pub values: Vec<Vec<FeatureValue>>,
}

/// Options of a historical (training set) read.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoricalOptions {
    /// Ignore rows created after the entity row's timestamp (no backfill leakage).
    pub no_backfill_leak: bool,
    /// Worker threads for large joins (0: one per core). Small inputs use one thread.
    pub threads: usize,
}

/// Options of [`Store::get_as_of_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsOfOptions {
    /// Ignore rows created after the read time (no backfill leakage), as
    /// [`HistoricalOptions::no_backfill_leak`] does for point-in-time joins.
    pub no_backfill_leak: bool,
}

/// The registry's cached definitions.
#[derive(Debug, Default)]
struct Registry {
    entities: HashMap<String, Entity>,
    views: HashMap<(String, u32), FeatureView>,
    services: HashMap<String, FeatureService>,
    /// Resolved services, built on first read and dropped by every `apply`.
    plans: HashMap<String, Arc<Plan>>,
}

impl Registry {
    fn join_keys(&self, view: &FeatureView) -> Result<Vec<Field>> {
        let mut keys = Vec::new();
        for en in &view.entities {
            let e = self.entities.get(en).ok_or_else(|| StoreError::Unknown {
                kind: "entity",
                name: en.clone(),
            })?;
            keys.extend(e.join_keys.iter().cloned());
        }
        Ok(keys)
    }

    /// Resolves feature refs: one [`PlanView`] per distinct view version, shared by its refs.
    fn plan(&self, refs: &[FeatureRef]) -> Result<Plan> {
        let mut views: Vec<PlanView> = Vec::new();
        let mut slots = Vec::with_capacity(refs.len());
        for r in refs {
            let v = self
                .views
                .get(&(r.view.clone(), r.version))
                .ok_or_else(|| StoreError::Unknown {
                    kind: "feature view",
                    name: format!("{}@{}", r.view, r.version),
                })?;
            let fi = v
                .feature_index(&r.feature)
                .ok_or_else(|| StoreError::Unknown {
                    kind: "feature",
                    name: r.to_string(),
                })?;
            let cf = v.cf_name();
            let vi = match views.iter().position(|p| p.cf == cf) {
                Some(i) => i,
                None => {
                    views.push(PlanView {
                        name: v.name.clone(),
                        cf,
                        keys: self.join_keys(v)?,
                        positions: None,
                        ttl_ms: v.ttl_ms,
                        width: v.features.len(),
                    });
                    views.len() - 1
                }
            };
            slots.push(Slot {
                view: vi,
                index: fi,
                dtype: v.features[fi].dtype,
            });
        }
        // One key per entity: the service's key is the union of its views' join keys.
        let mut keys: Vec<Field> = Vec::new();
        for pv in &views {
            for f in &pv.keys {
                match keys.iter().find(|k| k.name == f.name) {
                    Some(k) if k.dtype != f.dtype => {
                        return Err(StoreError::Definition(format!(
                            "join key `{}` is {} in one view of the service and {} in another",
                            f.name, k.dtype, f.dtype
                        )))
                    }
                    Some(_) => {}
                    None => keys.push(f.clone()),
                }
            }
        }
        for pv in &mut views {
            let positions: Vec<usize> = pv
                .keys
                .iter()
                .filter_map(|f| keys.iter().position(|k| k.name == f.name))
                .collect();
            let whole =
                positions.len() == keys.len() && positions.iter().enumerate().all(|(i, &p)| i == p);
            pv.positions = (!whole).then_some(positions);
        }
        Ok(Plan {
            refs: refs.into(),
            keys,
            views,
            slots,
        })
    }
}

/// Feature refs resolved against the registry: what a read needs, without touching the
/// registry again (cached per feature service, so an online read resolves nothing).
#[derive(Debug)]
struct Plan {
    refs: Arc<[FeatureRef]>,
    /// The service's key: every join key of its views' entities, in order of first appearance.
    keys: Vec<Field>,
    views: Vec<PlanView>,
    /// Per ref, in ref order.
    slots: Vec<Slot>,
}

/// Where one ref's value comes from.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Index into [`Plan::views`].
    view: usize,
    /// Feature index in the view's stored row.
    index: usize,
    dtype: DType,
}

/// One view version of a plan: read once per entity, shared by its refs.
#[derive(Debug)]
struct PlanView {
    name: String,
    cf: String,
    keys: Vec<Field>,
    /// Where this view's join keys sit in the service's key, when not the whole key in order
    /// (views of other entities in a multi-entity service).
    positions: Option<Vec<usize>>,
    ttl_ms: Option<i64>,
    width: usize,
}

/// A decoded lookup result: event time and the row's values.
type Hit = (i64, Vec<Value>);

impl PlanView {
    /// This view's part of a service key (the whole key when the view has every join key).
    fn service_prefix(&self, key: &[Value]) -> Result<Vec<u8>> {
        match &self.positions {
            None => self.prefix(key),
            Some(pos) => {
                let part: Vec<Value> = pos.iter().map(|&p| key[p].clone()).collect();
                self.prefix(&part)
            }
        }
    }

    /// Checks `key` against the join keys and encodes it.
    fn prefix(&self, key: &[Value]) -> Result<Vec<u8>> {
        if key.len() != self.keys.len()
            || key
                .iter()
                .zip(&self.keys)
                .any(|(k, f)| k.is_null() || !k.fits(f.dtype))
        {
            return Err(StoreError::BadValue {
                what: format!("key for view `{}`", self.name),
                reason: format!("{key:?} does not match join keys {:?}", self.keys),
            });
        }
        key::entity_prefix(key)
    }

    /// Decodes a stored row; a damaged one is a typed error for this read only.
    fn decode(&self, f: RowRef<'_>) -> Result<Hit> {
        let corrupt = |source| StoreError::Corrupt {
            view: self.cf.clone(),
            source,
        };
        let row: StoredRow = envelope::decode(f.value).map_err(corrupt)?;
        if row.0.len() != self.width {
            return Err(corrupt(keel_core::EnvelopeError::Corrupt(
                "row width".into(),
            )));
        }
        Ok((f.event, row.0))
    }

    /// Feature `index` of a lookup at `at_ms`, TTL enforced.
    fn value(&self, hit: Option<&Hit>, index: usize, at_ms: i64) -> FeatureValue {
        match hit {
            None => FeatureValue {
                value: Value::Null,
                status: Status::NotFound,
                event_ms: None,
            },
            Some((event, _)) if self.ttl_ms.is_some_and(|ttl| at_ms - event > ttl) => {
                FeatureValue {
                    value: Value::Null,
                    status: Status::Expired,
                    event_ms: Some(*event),
                }
            }
            Some((event, vals)) => FeatureValue {
                value: vals[index].clone(),
                status: Status::Present,
                event_ms: Some(*event),
            },
        }
    }
}

/// An embedded, versioned, point-in-time-correct feature store. `Send + Sync`: share one
/// across threads; readers and writers run concurrently.
#[derive(Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    rocks: Option<Arc<RocksBackend>>,
    registry: RwLock<Registry>,
    cache: RowCache,
    opts: StoreOptions,
    path: PathBuf,
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
        let store = Store {
            backend,
            rocks: Some(rocks),
            registry: RwLock::default(),
            cache: RowCache::new(opts.row_cache_entries),
            opts,
            path: path.to_path_buf(),
        };
        store.load_registry()?;
        Ok(store)
    }

    /// A store over any backend (the trait a shared Redis/Valkey backend implements).
    pub fn with_backend(backend: Arc<dyn Backend>, opts: StoreOptions) -> Result<Store> {
        let store = Store {
            backend,
            rocks: None,
            registry: RwLock::default(),
            cache: RowCache::new(opts.row_cache_entries),
            opts,
            path: PathBuf::new(),
        };
        store.load_registry()?;
        Ok(store)
    }

    fn load_registry(&self) -> Result<()> {
        let mut reg = Registry::default();
        let layout = self.backend.registry_get(LAYOUT_KEY)?;
        for (_, b) in self.backend.registry_scan("entity/")? {
            let e: Entity = envelope::decode(&b)?;
            reg.entities.insert(e.name.clone(), e);
        }
        for (_, b) in self.backend.registry_scan("view/")? {
            let v: FeatureView = envelope::decode(&b)?;
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
        *self.registry.write().map_err(|_| poisoned())? = reg;
        Ok(())
    }

    /// Validates and stores definitions atomically. Re-applying an identical definition is a
    /// no-op; changing a view version's entities or features is refused (make a new version).
    pub fn apply(&self, defs: &Definitions) -> Result<()> {
        let mut reg = self.registry.write().map_err(|_| poisoned())?;
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
        Ok(())
    }

    /// A view version's definition.
    pub fn view(&self, name: &str, version: u32) -> Result<FeatureView> {
        let reg = self.registry.read().map_err(|_| poisoned())?;
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
        let reg = self.registry.read().map_err(|_| poisoned())?;
        reg.services
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::Unknown {
                kind: "feature service",
                name: name.into(),
            })
    }

    /// Commits a batch, then drops the row-cache entries of every entity it touched.
    fn commit(&self, batch: &Batch, sync: bool) -> Result<()> {
        self.backend.commit(batch, sync)?;
        let puts = batch
            .puts
            .iter()
            .map(|(cf, k, _)| (cf.as_str(), &k[..k.len().saturating_sub(16)]));
        let ranges = batch
            .delete_ranges
            .iter()
            .map(|(cf, from, _)| (cf.as_str(), &from[..]));
        self.cache.invalidate(puts.chain(ranges));
        Ok(())
    }

    /// The join key fields of a view (its entities' keys, concatenated).
    pub fn join_keys(&self, view: &FeatureView) -> Result<Vec<Field>> {
        self.registry
            .read()
            .map_err(|_| poisoned())?
            .join_keys(view)
    }

    /// The resolved plan of a feature service, built once and cached until the next `apply`.
    fn service_plan(&self, service: &str) -> Result<Arc<Plan>> {
        if let Some(p) = self
            .registry
            .read()
            .map_err(|_| poisoned())?
            .plans
            .get(service)
        {
            return Ok(Arc::clone(p));
        }
        let mut reg = self.registry.write().map_err(|_| poisoned())?;
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

    /// Validates rows and encodes them into `batch`; nothing is written on error.
    fn encode_rows(&self, view: &FeatureView, rows: &[Row], batch: &mut Batch) -> Result<()> {
        let keys = self.join_keys(view)?;
        let now = self.opts.clock.now_ms();
        let cf = view.cf_name();
        for (i, r) in rows.iter().enumerate() {
            let at = || format!("view `{}` row {i}", view.name);
            if r.key.len() != keys.len() {
                return Err(StoreError::BadValue {
                    what: at(),
                    reason: format!("{} key values for {} join keys", r.key.len(), keys.len()),
                });
            }
            for (k, f) in r.key.iter().zip(&keys) {
                if k.is_null() || !k.fits(f.dtype) {
                    return Err(StoreError::BadValue {
                        what: format!("{}, join key `{}`", at(), f.name),
                        reason: format!("{k:?} is not a {}", f.dtype),
                    });
                }
            }
            if r.values.len() != view.features.len() {
                return Err(StoreError::BadValue {
                    what: at(),
                    reason: format!(
                        "{} values for {} features",
                        r.values.len(),
                        view.features.len()
                    ),
                });
            }
            for (v, f) in r.values.iter().zip(&view.features) {
                if !v.fits(f.dtype) {
                    return Err(StoreError::BadValue {
                        what: format!("{}, feature `{}`", at(), f.name),
                        reason: format!("{v:?} is not a {}", f.dtype),
                    });
                }
                if v.is_null() && !f.nullable {
                    return Err(StoreError::BadValue {
                        what: format!("{}, feature `{}`", at(), f.name),
                        reason: "null in a non-nullable feature".into(),
                    });
                }
            }
            let created = r.created_ms.unwrap_or(now);
            check_ts(r.event_ms)?;
            check_ts(created)?;
            let size: usize = r.values.iter().map(crate::value::encoded_size).sum();
            if size > MAX_VALUE {
                return Err(StoreError::TooLarge(format!(
                    "{} is {size} bytes (limit {MAX_VALUE})",
                    at()
                )));
            }
            let mut row_key = key::entity_prefix(&r.key)?;
            key::push_times(&mut row_key, r.event_ms, created);
            let value = StoredRow::encode_slice(&r.values)?;
            batch.puts.push((cf.clone(), row_key, value));
        }
        Ok(())
    }

    /// Writes rows into a view version in one atomic batch. Late and out-of-order events land at
    /// their event time; re-writing an identical row (same key, event and creation time) is
    /// idempotent.
    pub fn write(&self, view: &str, version: u32, rows: &[Row]) -> Result<()> {
        let v = self.view(view, version)?;
        let mut batch = Batch::default();
        self.encode_rows(&v, rows, &mut batch)?;
        self.commit(&batch, self.opts.durability == Durability::Synced)
    }

    /// Rows of a frame for a view: join key columns by name, `event_timestamp` (i64 ms),
    /// optional `created_timestamp`, and every feature column by name.
    pub fn rows_from_frame(&self, view: &FeatureView, frame: &Frame) -> Result<Vec<Row>> {
        let keys = self.join_keys(view)?;
        let kc: Vec<&Column> = keys
            .iter()
            .map(|k| frame.column(&k.name))
            .collect::<Result<_, _>>()?;
        let ev = frame.column("event_timestamp")?;
        let cr = frame.column("created_timestamp").ok();
        let fc: Vec<&Column> = view
            .features
            .iter()
            .map(|f| frame.column(&f.name))
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::with_capacity(frame.nrows());
        for i in 0..frame.nrows() {
            let ts = |c: &Column, what: &str| -> Result<i64> {
                match c.get(i) {
                    ValueRef::I64(t) => Ok(t),
                    other => Err(StoreError::BadValue {
                        what: format!("row {i}, {what}"),
                        reason: format!("{other:?} is not an i64 ms timestamp"),
                    }),
                }
            };
            rows.push(Row {
                key: kc.iter().map(|c| Value::from(c.get(i))).collect(),
                event_ms: ts(ev, "event_timestamp")?,
                created_ms: match cr {
                    Some(c) if c.is_valid(i) => Some(ts(c, "created_timestamp")?),
                    _ => None,
                },
                values: fc
                    .iter()
                    .zip(&view.features)
                    .map(|(c, f)| coerce(Value::from(c.get(i)), f.dtype))
                    .collect(),
            });
        }
        Ok(rows)
    }

    /// Materialises a batch source: writes the rows with `watermark < event <= until` and moves
    /// the view's watermark to `until`, in the same atomic batch. Returns the rows written.
    pub fn materialize(
        &self,
        view: &str,
        version: u32,
        source: &Frame,
        until_ms: i64,
    ) -> Result<usize> {
        check_ts(until_ms)?;
        let v = self.view(view, version)?;
        let wm_key = format!("watermark/{}/{:010}", view, version);
        let from = match self.backend.registry_get(&wm_key)? {
            Some(b) if b.len() == 8 => key::ts_from(&b),
            _ => i64::MIN,
        };
        let rows: Vec<Row> = self
            .rows_from_frame(&v, source)?
            .into_iter()
            .filter(|r| r.event_ms > from && r.event_ms <= until_ms)
            .collect();
        let mut batch = Batch::default();
        self.encode_rows(&v, &rows, &mut batch)?;
        batch
            .registry
            .push((wm_key, key::ts_bytes(until_ms.max(from)).to_vec()));
        self.commit(&batch, self.opts.durability == Durability::Synced)?;
        Ok(rows.len())
    }

    /// The materialisation watermark of a view version.
    pub fn watermark(&self, view: &str, version: u32) -> Result<Option<i64>> {
        Ok(self
            .backend
            .registry_get(&format!("watermark/{}/{:010}", view, version))?
            .filter(|b| b.len() == 8)
            .map(|b| key::ts_from(&b)))
    }

    /// Bulk-loads rows through an SST file ingested at once (RocksDB backend only): readers see
    /// none of them, then all of them.
    pub fn bulk_load(&self, view: &str, version: u32, rows: &[Row]) -> Result<()> {
        let v = self.view(view, version)?;
        let rocks = self
            .rocks
            .as_ref()
            .ok_or_else(|| StoreError::Definition("bulk load needs the RocksDB backend".into()))?;
        let mut batch = Batch::default();
        self.encode_rows(&v, rows, &mut batch)?;
        let mut pairs: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (_, k, val) in batch.puts {
            pairs.insert(k, val);
        }
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs.into_iter().collect();
        rocks.ingest_sorted(&v.cf_name(), &pairs, &self.path)?;
        self.cache.clear();
        Ok(())
    }

    /// Latest values as of now for many entities and a feature service; TTL enforced. Hot
    /// entities are answered from the row cache (see [`StoreOptions::row_cache_entries`]).
    pub fn get_online(&self, service: &str, keys: &[Vec<Value>]) -> Result<OnlineResponse> {
        self.read_service(service, keys, self.opts.clock.now_ms(), true, None)
    }

    /// The same as [`Store::get_online`] at any past time (always read from storage). Rows
    /// created after `at_ms` (backfills) count; [`Store::get_as_of_with`] can exclude them.
    pub fn get_as_of(
        &self,
        service: &str,
        keys: &[Vec<Value>],
        at_ms: i64,
    ) -> Result<OnlineResponse> {
        self.get_as_of_with(service, keys, at_ms, &AsOfOptions::default())
    }

    /// The key a read of `service` takes, one value per field: the join keys of every entity
    /// its views are keyed by, in order of first appearance (a single-entity service: that
    /// entity's join keys). Each view reads its own part.
    pub fn service_keys(&self, service: &str) -> Result<Vec<Field>> {
        Ok(self.service_plan(service)?.keys.clone())
    }

    /// [`Store::get_as_of`] with options: `no_backfill_leak` ignores rows created after
    /// `at_ms`, so the answer is what an online read at `at_ms` could have seen.
    pub fn get_as_of_with(
        &self,
        service: &str,
        keys: &[Vec<Value>],
        at_ms: i64,
        opts: &AsOfOptions,
    ) -> Result<OnlineResponse> {
        let cutoff = opts.no_backfill_leak.then_some(at_ms);
        self.read_service(service, keys, at_ms, false, cutoff)
    }

    /// Reads a service at `at_ms`. Online reads (`online`) ask for each entity's newest row
    /// (row cache, then the backend's newest rows) and fall back to history only for entities
    /// whose newest row lies after `at_ms`; as-of reads search history directly, ignoring rows
    /// created after `created_cutoff` when given.
    fn read_service(
        &self,
        service: &str,
        keys: &[Vec<Value>],
        at_ms: i64,
        online: bool,
        created_cutoff: Option<i64>,
    ) -> Result<OnlineResponse> {
        let plan = self.service_plan(service)?;
        if let Some(k) = keys.iter().find(|k| k.len() != plan.keys.len()) {
            let names: Vec<&str> = plan.keys.iter().map(|f| f.name.as_str()).collect();
            return Err(StoreError::BadValue {
                what: format!("key for service `{service}`"),
                reason: format!(
                    "{k:?} has {} values; the service's key is one per join key: {}",
                    k.len(),
                    names.join(", ")
                ),
            });
        }
        let cached = online && self.cache.enabled();
        // One backend call per view version for the keys the cache cannot answer;
        // hits[view][entity].
        let mut hits: Vec<Vec<Newest>> = Vec::with_capacity(plan.views.len());
        for pv in &plan.views {
            let prefixes = keys
                .iter()
                .map(|k| pv.service_prefix(k))
                .collect::<Result<Vec<_>>>()?;
            let mut got: Vec<Option<Newest>> = prefixes
                .iter()
                .map(|p| {
                    // A cached newest row answers unless it lies after T.
                    cached
                        .then(|| self.cache.get(&pv.cf, p))
                        .flatten()
                        .filter(|n| n.as_ref().is_none_or(|h| h.0 <= at_ms))
                })
                .collect();
            let mut misses: Vec<usize> = (0..keys.len()).filter(|&e| got[e].is_none()).collect();
            // In storage order, one iterator sweeps forward through neighbouring blocks.
            misses.sort_unstable_by(|&a, &b| prefixes[a].cmp(&prefixes[b]));
            if misses.is_empty() {
                hits.push(got.into_iter().map(Option::unwrap_or_default).collect());
                continue;
            }
            let epoch = self.cache.epoch();
            // Online reads fetch each entity's newest row (what the cache holds); if that row
            // lies after T, the row at T is read from history in a second pass.
            let mut future = Vec::new();
            if online {
                let wanted: Vec<&[u8]> = misses.iter().map(|&e| &prefixes[e][..]).collect();
                self.backend.newest_each(&pv.cf, &wanted, &mut |i, f| {
                    let e = misses[i];
                    let newest: Newest = f.map(|f| pv.decode(f)).transpose()?.map(Arc::new);
                    if cached {
                        self.cache
                            .insert(&pv.cf, &prefixes[e], newest.clone(), epoch);
                    }
                    if newest.as_ref().is_some_and(|h| h.0 > at_ms) {
                        future.push(e);
                    } else {
                        got[e] = Some(newest);
                    }
                    Ok(())
                })?;
            } else {
                future = misses;
            }
            if !future.is_empty() {
                let lookups: Vec<Lookup<'_>> = future
                    .iter()
                    .map(|&e| Lookup {
                        prefix: &prefixes[e],
                        event_bound: at_ms,
                        created_cutoff,
                    })
                    .collect();
                self.backend.latest_each(&pv.cf, &lookups, &mut |i, f| {
                    got[future[i]] = Some(f.map(|f| pv.decode(f)).transpose()?.map(Arc::new));
                    Ok(())
                })?;
            }
            hits.push(got.into_iter().map(Option::unwrap_or_default).collect());
        }
        let values = (0..keys.len())
            .map(|e| {
                plan.slots
                    .iter()
                    .map(|s| plan.views[s.view].value(hits[s.view][e].as_deref(), s.index, at_ms))
                    .collect()
            })
            .collect();
        Ok(OnlineResponse {
            features: Arc::clone(&plan.refs),
            values,
        })
    }

    /// Point-in-time join (a training set): for every row of `entities` (join key columns and
    /// `event_timestamp`), each feature's value from the row with the greatest event time at or
    /// before the entity timestamp, within the view's TTL counted back from it, ties broken by
    /// the later creation time. The output is `entities` plus one column per feature (named
    /// `feature`, or `view__feature` when two views share a name), rows in input order.
    ///
    /// Each view version is read once per entity row, in key order (one forward sweep through
    /// its storage, each block read once), split over `opts.threads` workers.
    pub fn historical(
        &self,
        entities: &Frame,
        refs: &[FeatureRef],
        opts: HistoricalOptions,
    ) -> Result<Frame> {
        let plan = self.registry.read().map_err(|_| poisoned())?.plan(refs)?;
        let mut names: Vec<String> = refs.iter().map(|r| r.feature.clone()).collect();
        for i in 0..names.len() {
            if names.iter().filter(|n| **n == refs[i].feature).count() > 1 {
                names[i] = format!("{}__{}", refs[i].view, refs[i].feature);
            }
        }
        let ts_col = entities.column("event_timestamp")?;
        let n = entities.nrows();
        let at = (0..n)
            .map(|r| match ts_col.get(r) {
                ValueRef::I64(t) => Ok(t),
                other => Err(StoreError::BadValue {
                    what: format!("entity row {r}, event_timestamp"),
                    reason: format!("{other:?} is not an i64 ms timestamp"),
                }),
            })
            .collect::<Result<Vec<i64>>>()?;
        let threads = match opts.threads {
            // Below about 20k rows per worker a thread costs more than it saves.
            0 => std::thread::available_parallelism()
                .map_or(1, |t| t.get())
                .min(n.div_ceil(20_000)),
            t => t.min(n),
        }
        .max(1);
        let mut out: Vec<Option<Column>> = vec![None; refs.len()];
        for (vi, pv) in plan.views.iter().enumerate() {
            let cols = pv
                .keys
                .iter()
                .map(|k| entities.column(&k.name))
                .collect::<Result<Vec<_>, _>>()?;
            let mut key = Vec::with_capacity(cols.len());
            let prefixes = (0..n)
                .map(|r| {
                    key.clear();
                    key.extend(cols.iter().map(|c| Value::from(c.get(r))));
                    pv.prefix(&key)
                })
                .collect::<Result<Vec<_>>>()?;
            // Key order = storage order: the sweep reads each block once.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_unstable_by(|&a, &b| prefixes[a].cmp(&prefixes[b]).then(at[a].cmp(&at[b])));
            let lookups: Vec<Lookup<'_>> = order
                .iter()
                .map(|&r| Lookup {
                    prefix: &prefixes[r],
                    event_bound: at[r],
                    created_cutoff: opts.no_backfill_leak.then_some(at[r]),
                })
                .collect();
            let mine: Vec<(usize, Slot)> = plan
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.view == vi)
                .map(|(o, s)| (o, *s))
                .collect();
            let part = n.div_ceil(threads).max(1);
            let parts = if threads == 1 || n == 0 {
                vec![self.historical_part(pv, &lookups, &mine)?]
            } else {
                std::thread::scope(|scope| {
                    let workers: Vec<_> = lookups
                        .chunks(part)
                        .map(|chunk| scope.spawn(|| self.historical_part(pv, chunk, &mine)))
                        .collect();
                    workers
                        .into_iter()
                        .map(|w| {
                            w.join().unwrap_or_else(|_| {
                                Err(StoreError::Definition("a join worker panicked".into()))
                            })
                        })
                        .collect::<Result<Vec<Frame>>>()
                })?
            };
            let sorted = Frame::concat(&parts)?;
            let mut inverse = vec![0; n];
            for (pos, &r) in order.iter().enumerate() {
                inverse[r] = pos;
            }
            let back = sorted.take(&inverse)?;
            for ((o, _), c) in mine.iter().zip(back.columns()) {
                out[*o] = Some(c.clone());
            }
        }
        let mut fields = entities.schema().fields().to_vec();
        let mut columns = entities.columns().to_vec();
        for ((c, name), s) in out.into_iter().zip(names).zip(&plan.slots) {
            fields.push(Field::new(name, s.dtype));
            columns.push(c.ok_or_else(|| StoreError::Definition("unplanned ref".into()))?);
        }
        Ok(Frame::new(fields, columns)?)
    }

    /// One worker's share of a historical read: `lookups` (sorted) in one view version, the
    /// columns of the refs `mine`, in lookup order.
    fn historical_part(
        &self,
        pv: &PlanView,
        lookups: &[Lookup<'_>],
        mine: &[(usize, Slot)],
    ) -> Result<Frame> {
        let mut builders: Vec<ColumnBuilder> = mine
            .iter()
            .map(|(_, s)| ColumnBuilder::with_capacity(s.dtype, lookups.len()))
            .collect();
        self.backend.latest_each(&pv.cf, lookups, &mut |i, found| {
            let hit = found.map(|f| pv.decode(f)).transpose()?;
            let at = lookups[i].event_bound;
            for (b, (_, s)) in builders.iter_mut().zip(mine) {
                push_value(b, &pv.value(hit.as_ref(), s.index, at).value);
            }
            Ok(())
        })?;
        let fields = mine
            .iter()
            .enumerate()
            .map(|(k, (_, s))| Field::new(format!("c{k}"), s.dtype))
            .collect();
        Ok(Frame::new(
            fields,
            builders.into_iter().map(ColumnBuilder::finish).collect(),
        )?)
    }

    /// Deletes every row of an entity key in every view version that uses the entity (right to
    /// be forgotten), atomically: in views keyed by several entities, every stored key whose
    /// part for this entity matches (found by a scan of the view's keys).
    pub fn delete_entity(&self, entity: &str, key: &[Value]) -> Result<usize> {
        let reg = self.registry.read().map_err(|_| poisoned())?;
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
        let rocks = self
            .rocks
            .as_ref()
            .ok_or_else(|| StoreError::Definition("checkpoints need the RocksDB backend".into()))?;
        let sequence = rocks.checkpoint(dir.as_ref())?;
        Ok(CheckpointId {
            sequence,
            path: dir.as_ref().to_path_buf(),
        })
    }

    /// Compacts a view version now, applying its history retention.
    pub fn compact(&self, view: &str, version: u32) -> Result<()> {
        if let Some(r) = &self.rocks {
            r.compact(&cf_name(view, version))?;
        }
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
    StoreError::Definition("registry lock poisoned by a panicking thread".into())
}

/// Integers read from CSV into float features become floats.
fn coerce(v: Value, dtype: DType) -> Value {
    match (v, dtype) {
        (Value::I64(x), DType::F32 | DType::F64) => Value::F64(x as f64),
        (v, _) => v,
    }
}

fn push_value(b: &mut ColumnBuilder, v: &Value) {
    let ok = match (b.dtype(), v) {
        (_, Value::Null) => {
            b.push_null();
            true
        }
        (DType::F32, Value::F64(x)) => b.push_value(ValueRef::F32(*x as f32)),
        (DType::F64, Value::F64(x)) => b.push_value(ValueRef::F64(*x)),
        (_, Value::I64(x)) => b.push_value(ValueRef::I64(*x)),
        (_, Value::Bool(x)) => b.push_value(ValueRef::Bool(*x)),
        (_, Value::Str(s)) => b.push_str(s),
        _ => false,
    };
    if !ok {
        b.push_null();
    }
}
