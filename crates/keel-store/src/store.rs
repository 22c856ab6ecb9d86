//! The [`Store`]: definitions, writes, online / as-of / historical reads.

use crate::backend::{Backend, Batch, RocksBackend};
use crate::defs::{cf_name, Definitions, Entity, FeatureRef, FeatureService, FeatureView};
use crate::error::{Result, StoreError};
use crate::key::{self, check_ts};
use crate::value::{StoredRow, Value};
use keel_core::envelope;
use keel_core::{Clock, Column, ColumnBuilder, DType, Field, Frame, SystemClock, ValueRef};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Largest encoded row accepted (1 MiB).
pub const MAX_VALUE: usize = 1 << 20;

/// Options for [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Source of "now" for TTL checks and default creation times.
    pub clock: Arc<dyn Clock>,
    /// Sync the write-ahead log on every write batch (durable on power loss, slower).
    pub sync_writes: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            clock: Arc::new(SystemClock),
            sync_writes: false,
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
    /// Feature refs in service order.
    pub features: Vec<FeatureRef>,
    /// One row per requested entity.
    pub values: Vec<Vec<FeatureValue>>,
}

/// Options of a historical (training set) read.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoricalOptions {
    /// Ignore rows created after the entity row's timestamp (no backfill leakage).
    pub no_backfill_leak: bool,
}

/// The registry's cached definitions.
#[derive(Debug, Default)]
struct Registry {
    entities: HashMap<String, Entity>,
    views: HashMap<(String, u32), FeatureView>,
    services: HashMap<String, FeatureService>,
}

/// An embedded, versioned, point-in-time-correct feature store. `Send + Sync`: share one
/// across threads; readers and writers run concurrently.
#[derive(Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
    rocks: Option<Arc<RocksBackend>>,
    registry: RwLock<Registry>,
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
        let rocks = Arc::new(RocksBackend::open(path.as_ref(), Arc::clone(&opts.clock))?);
        Self::from_rocks(rocks, opts, path.as_ref())
    }

    /// Opens a checkpoint (or store) read-only: reads work, writes fail.
    pub fn open_read_only(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let rocks = Arc::new(RocksBackend::open_read_only(
            path.as_ref(),
            Arc::clone(&opts.clock),
        )?);
        Self::from_rocks(rocks, opts, path.as_ref())
    }

    fn from_rocks(rocks: Arc<RocksBackend>, opts: StoreOptions, path: &Path) -> Result<Store> {
        let backend: Arc<dyn Backend> = Arc::clone(&rocks) as Arc<dyn Backend>;
        let store = Store {
            backend,
            rocks: Some(rocks),
            registry: RwLock::default(),
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
            opts,
            path: PathBuf::new(),
        };
        store.load_registry()?;
        Ok(store)
    }

    fn load_registry(&self) -> Result<()> {
        let mut reg = Registry::default();
        for (_, b) in self.backend.registry_scan("entity/")? {
            let e: Entity = envelope::decode(&b)?;
            reg.entities.insert(e.name.clone(), e);
        }
        for (_, b) in self.backend.registry_scan("view/")? {
            let v: FeatureView = envelope::decode(&b)?;
            reg.views.insert((v.name.clone(), v.version), v);
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
        self.backend.commit(batch, true)?;
        reg.entities = entities;
        reg.views = views;
        for s in &defs.services {
            reg.services.insert(s.name.clone(), s.clone());
        }
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

    /// The join key fields of a view (its entities' keys, concatenated).
    pub fn join_keys(&self, view: &FeatureView) -> Result<Vec<Field>> {
        let reg = self.registry.read().map_err(|_| poisoned())?;
        let mut keys = Vec::new();
        for en in &view.entities {
            let e = reg.entities.get(en).ok_or_else(|| StoreError::Unknown {
                kind: "entity",
                name: en.clone(),
            })?;
            keys.extend(e.join_keys.iter().cloned());
        }
        Ok(keys)
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
            let size: usize = r.values.iter().map(Value::size).sum();
            if size > MAX_VALUE {
                return Err(StoreError::TooLarge(format!(
                    "{} is {size} bytes (limit {MAX_VALUE})",
                    at()
                )));
            }
            let prefix = key::entity_prefix(&r.key)?;
            let value = envelope::encode(&StoredRow(r.values.clone()))?;
            batch.puts.push((
                cf.clone(),
                key::row_key(&prefix, r.event_ms, created),
                value,
            ));
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
        self.backend.commit(batch, self.opts.sync_writes)
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
                key: kc.iter().map(|c| value_of(c.get(i))).collect(),
                event_ms: ts(ev, "event_timestamp")?,
                created_ms: match cr {
                    Some(c) if c.is_valid(i) => Some(ts(c, "created_timestamp")?),
                    _ => None,
                },
                values: fc
                    .iter()
                    .zip(&view.features)
                    .map(|(c, f)| coerce(value_of(c.get(i)), f.dtype))
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
        self.backend.commit(batch, self.opts.sync_writes)?;
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
        rocks.ingest_sorted(&v.cf_name(), &pairs, &self.path)
    }

    fn resolve(&self, refs: &[FeatureRef]) -> Result<Vec<(Arc<FeatureView>, usize)>> {
        // One copy of each distinct view, shared by its refs (a service of 50 features from one
        // view must not copy the view 50 times per request).
        let mut seen: Vec<Arc<FeatureView>> = Vec::new();
        refs.iter()
            .map(|r| {
                let v = match seen
                    .iter()
                    .find(|v| v.name == r.view && v.version == r.version)
                {
                    Some(v) => Arc::clone(v),
                    None => {
                        let v = Arc::new(self.view(&r.view, r.version)?);
                        seen.push(Arc::clone(&v));
                        v
                    }
                };
                let i = v
                    .feature_index(&r.feature)
                    .ok_or_else(|| StoreError::Unknown {
                        kind: "feature",
                        name: r.to_string(),
                    })?;
                Ok((v, i))
            })
            .collect()
    }

    /// Reads `refs` for one entity key as of `at_ms` (`cutoff`: ignore rows created later).
    fn read_one(
        &self,
        views: &[(Arc<FeatureView>, usize)],
        key: &[Value],
        at_ms: i64,
        cutoff: Option<i64>,
        out: &mut Vec<FeatureValue>,
    ) -> Result<()> {
        // One lookup per view version, shared by its features (by index: decoded rows are not
        // copied per feature).
        let mut cache: Vec<(*const FeatureView, Hit)> = Vec::new();
        for (v, fi) in views {
            let id = Arc::as_ptr(v);
            let slot = match cache.iter().position(|(c, _)| *c == id) {
                Some(i) => i,
                None => {
                    let cf = v.cf_name();
                    let keys = self.join_keys(v)?;
                    if key.len() != keys.len()
                        || key
                            .iter()
                            .zip(&keys)
                            .any(|(k, f)| k.is_null() || !k.fits(f.dtype))
                    {
                        return Err(StoreError::BadValue {
                            what: format!("key for view `{}`", v.name),
                            reason: format!("{key:?} does not match join keys {keys:?}"),
                        });
                    }
                    let prefix = key::entity_prefix(key)?;
                    let found = self.backend.latest(&cf, &prefix, at_ms, cutoff)?;
                    let h = match found {
                        Some(f) => {
                            let row: StoredRow = envelope::decode(&f.value).map_err(|source| {
                                StoreError::Corrupt {
                                    view: cf.clone(),
                                    source,
                                }
                            })?;
                            if row.0.len() != v.features.len() {
                                return Err(StoreError::Corrupt {
                                    view: cf.clone(),
                                    source: keel_core::EnvelopeError::Corrupt("row width".into()),
                                });
                            }
                            Some((f.event, row.0))
                        }
                        None => None,
                    };
                    cache.push((id, h));
                    cache.len() - 1
                }
            };
            out.push(match &cache[slot].1 {
                None => FeatureValue {
                    value: Value::Null,
                    status: Status::NotFound,
                    event_ms: None,
                },
                Some((event, _)) if v.ttl_ms.is_some_and(|ttl| at_ms - event > ttl) => {
                    FeatureValue {
                        value: Value::Null,
                        status: Status::Expired,
                        event_ms: Some(*event),
                    }
                }
                Some((event, vals)) => FeatureValue {
                    value: vals[*fi].clone(),
                    status: Status::Present,
                    event_ms: Some(*event),
                },
            });
        }
        Ok(())
    }

    /// Latest values as of now for many entities and a feature service; TTL enforced.
    pub fn get_online(&self, service: &str, keys: &[Vec<Value>]) -> Result<OnlineResponse> {
        self.get_as_of(service, keys, self.opts.clock.now_ms())
    }

    /// The same as [`Store::get_online`] at any past time.
    pub fn get_as_of(
        &self,
        service: &str,
        keys: &[Vec<Value>],
        at_ms: i64,
    ) -> Result<OnlineResponse> {
        let s = self.service(service)?;
        let views = self.resolve(&s.features)?;
        let mut values = Vec::with_capacity(keys.len());
        for k in keys {
            let mut row = Vec::with_capacity(views.len());
            self.read_one(&views, k, at_ms, None, &mut row)?;
            values.push(row);
        }
        Ok(OnlineResponse {
            features: s.features,
            values,
        })
    }

    /// Point-in-time join (a training set): for every row of `entities` (join key columns and
    /// `event_timestamp`), each feature's value from the row with the greatest event time at or
    /// before the entity timestamp, within the view's TTL counted back from it, ties broken by
    /// the later creation time. The output is `entities` plus one column per feature (named
    /// `feature`, or `view__feature` when two views share a name). Rows stream in chunks.
    pub fn historical(
        &self,
        entities: &Frame,
        refs: &[FeatureRef],
        opts: HistoricalOptions,
    ) -> Result<Frame> {
        let views = self.resolve(refs)?;
        let mut names: Vec<String> = refs.iter().map(|r| r.feature.clone()).collect();
        for i in 0..names.len() {
            if names.iter().filter(|n| **n == refs[i].feature).count() > 1 {
                names[i] = format!("{}__{}", refs[i].view, refs[i].feature);
            }
        }
        let ts_col = entities.column("event_timestamp")?;
        let mut builders: Vec<ColumnBuilder> = views
            .iter()
            .map(|(v, i)| ColumnBuilder::with_capacity(v.features[*i].dtype, entities.nrows()))
            .collect();
        // Group the refs by view version: one lookup per entity row and view, shared by its
        // features. Each group also locates its join key columns once.
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (out, (v, fi)) in views.iter().enumerate() {
            match groups.iter_mut().find(|g| g.0 == v.cf_name()) {
                Some(g) => {
                    g.2.push((v.clone(), *fi));
                    g.3.push(out);
                }
                None => {
                    let cols = self
                        .join_keys(v)?
                        .iter()
                        .map(|k| entities.column(&k.name))
                        .collect::<Result<Vec<_>, _>>()?;
                    groups.push((v.cf_name(), cols, vec![(v.clone(), *fi)], vec![out]));
                }
            }
        }
        let mut got = Vec::with_capacity(views.len());
        for r in 0..entities.nrows() {
            let at = match ts_col.get(r) {
                ValueRef::I64(t) => t,
                other => {
                    return Err(StoreError::BadValue {
                        what: format!("entity row {r}, event_timestamp"),
                        reason: format!("{other:?} is not an i64 ms timestamp"),
                    })
                }
            };
            for (_, cols, group, outs) in &groups {
                let key: Vec<Value> = cols.iter().map(|c| value_of(c.get(r))).collect();
                got.clear();
                self.read_one(
                    group,
                    &key,
                    at,
                    opts.no_backfill_leak.then_some(at),
                    &mut got,
                )?;
                for (&out, fv) in outs.iter().zip(&got) {
                    push_value(&mut builders[out], &fv.value);
                }
            }
        }
        let mut fields = entities.schema().fields().to_vec();
        let mut columns = entities.columns().to_vec();
        for ((b, name), (v, fi)) in builders.into_iter().zip(names).zip(&views) {
            fields.push(Field::new(name, v.features[*fi].dtype));
            columns.push(b.finish());
        }
        Ok(Frame::new(fields, columns)?)
    }

    /// Deletes every row of an entity key in every view version that uses the entity (right to
    /// be forgotten), atomically.
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
        for v in reg.views.values() {
            if v.entities.len() == 1 && v.entities[0] == entity {
                let prefix = key::entity_prefix(key)?;
                batch
                    .delete_ranges
                    .push((v.cf_name(), prefix.clone(), key::prefix_end(&prefix)));
            }
        }
        let n = batch.delete_ranges.len();
        drop(reg);
        self.backend.commit(batch, true)?;
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
        match &self.rocks {
            Some(r) => r.compact(&cf_name(view, version)),
            None => Ok(()),
        }
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

/// A view lookup's result: event time and the row's values, or nothing.
type Hit = Option<(i64, Vec<Value>)>;

/// Refs of one view version in a historical read: storage name, the entity frame's join key
/// columns, the refs, and their output column positions.
type Group<'a> = (
    String,
    Vec<&'a Column>,
    Vec<(Arc<FeatureView>, usize)>,
    Vec<usize>,
);

fn poisoned() -> StoreError {
    StoreError::Definition("registry lock poisoned by a panicking thread".into())
}

pub(crate) fn value_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::F32(x) => Value::F64(f64::from(x)),
        ValueRef::F64(x) if x.is_nan() => Value::Null,
        ValueRef::F64(x) => Value::F64(x),
        ValueRef::I64(x) => Value::I64(x),
        ValueRef::Bool(b) => Value::Bool(b),
        ValueRef::Category(_, s) | ValueRef::Str(s) => Value::Str(s.to_string()),
        _ => Value::Null,
    }
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
