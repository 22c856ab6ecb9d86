//! Writes: rows, frames, materialization, bulk loads.

use super::{Durability, Store, MAX_VALUE};
use crate::backend::Batch;
use crate::defs::FeatureView;
use crate::error::{Result, StoreError};
use crate::key::{self, check_ts};
use crate::value::{StoredRow, Value};
use keel_core::{Clock, Column, DType, Frame, ValueRef};
use std::collections::BTreeMap;

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

impl Store {
    /// Commits a batch, then drops the row-cache entries of every entity it touched.
    pub(super) fn commit(&self, batch: &Batch, sync: bool) -> Result<()> {
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

    /// Validates rows and encodes them into `batch`; nothing is written on error.
    pub(super) fn encode_rows(
        &self,
        view: &FeatureView,
        rows: &[Row],
        batch: &mut Batch,
    ) -> Result<()> {
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
        let rocks = self.rocks.as_ref().ok_or_else(|| StoreError::Unsupported {
            operation: "SST bulk load",
            backend: "redis",
            instead: "write the rows with Store::write (one transaction), or apply a new view \
                      version, fill it with `keel store materialize`, then switch the \
                      feature service to it in one apply"
                .into(),
        })?;
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
}

/// Integers read from CSV into float features become floats.
pub(super) fn coerce(v: Value, dtype: DType) -> Value {
    match (v, dtype) {
        (Value::I64(x), DType::F32 | DType::F64) => Value::F64(x as f64),
        (v, _) => v,
    }
}

/// What [`Store::materialize_from`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaterializeReport {
    /// Entities with at least one row copied.
    pub entities: usize,
    /// Rows copied.
    pub rows: usize,
    /// The watermark before the copy (`None`: first copy).
    pub from_ms: Option<i64>,
    /// The watermark now.
    pub until_ms: i64,
}

/// Options of [`Store::materialize_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaterializeOptions {
    /// Copy rows with event time after this instead of after the target's watermark.
    pub since_ms: Option<i64>,
    /// Copy every row in the window that is still within the view's TTL of `until`, not only
    /// each entity's newest (as-of reads on the target then see history too).
    pub history: bool,
    /// Entities per write batch (default 0: 10,000).
    pub batch_entities: usize,
}

impl Store {
    /// Incremental materialisation from another store (an embedded RocksDB store into a shared
    /// Redis one, as Feast's `materialize-incremental`): copies, for view `view@version`, the
    /// rows with `watermark < event <= until_ms` (each entity's newest, or with
    /// [`MaterializeOptions::history`] every row within the TTL), defining the view here first
    /// if it is missing, then moves this store's watermark to `until_ms` in the last batch.
    /// Batches are atomic; a copy cut short leaves the watermark where it was, and running it
    /// again copies the same rows again (writes are idempotent). `progress(entities_done,
    /// entities_total)` is called after each batch.
    pub fn materialize_from(
        &self,
        source: &Store,
        view: &str,
        version: u32,
        until_ms: i64,
        opts: &MaterializeOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<MaterializeReport> {
        check_ts(until_ms)?;
        let v = source.view(view, version)?;
        // The definitions the view needs, applied here (a no-op when already identical).
        let src = source.definitions()?;
        let defs = crate::Definitions {
            entities: src
                .entities
                .into_iter()
                .filter(|e| v.entities.contains(&e.name))
                .collect(),
            views: vec![v.clone()],
            services: Vec::new(),
        };
        self.apply(&defs)?;
        let from = match opts.since_ms {
            Some(s) => Some(s),
            None => self.watermark(view, version)?,
        };
        let lower = match (opts.history, v.ttl_ms) {
            (true, Some(ttl)) => from
                .unwrap_or(i64::MIN)
                .max(until_ms.saturating_sub(ttl) - 1),
            _ => from.unwrap_or(i64::MIN),
        };
        let cf = v.cf_name();
        let entities = source.backend.entities(&cf)?;
        let step = if opts.batch_entities == 0 {
            10_000
        } else {
            opts.batch_entities
        };
        let width = v.features.len();
        let mut report = MaterializeReport {
            entities: 0,
            rows: 0,
            from_ms: from,
            until_ms,
        };
        let wm_key = format!("watermark/{}/{:010}", view, version);
        // The watermark never moves back; with nothing to copy, one batch still moves it.
        let wm = from.map_or(until_ms, |f| f.max(until_ms));
        report.until_ms = wm;
        let chunks: Vec<&[Vec<u8>]> = if entities.is_empty() {
            vec![&[]]
        } else {
            entities.chunks(step).collect()
        };
        for (c, chunk) in chunks.iter().enumerate() {
            let mut batch = Batch::default();
            for prefix in *chunk {
                let rows = source.backend.history(&cf, prefix)?;
                let window = rows
                    .iter()
                    .filter(|f| f.event > lower && f.event <= until_ms);
                let picked: Vec<&crate::backend::Found> = if opts.history {
                    window.collect()
                } else {
                    window
                        .max_by_key(|f| (f.event, f.created))
                        .into_iter()
                        .collect()
                };
                if picked.is_empty() {
                    continue;
                }
                report.entities += 1;
                for f in picked {
                    // Rows are checked before they are copied: a damaged source row stops the
                    // copy with a typed error instead of spreading.
                    let row: StoredRow =
                        keel_core::envelope::decode(&f.value).map_err(|source| {
                            StoreError::Corrupt {
                                view: cf.clone(),
                                source,
                            }
                        })?;
                    if row.0.len() != width {
                        return Err(StoreError::Corrupt {
                            view: cf.clone(),
                            source: keel_core::EnvelopeError::Corrupt(format!(
                                "{} values for {width} features",
                                row.0.len()
                            )),
                        });
                    }
                    let mut k = prefix.clone();
                    key::push_times(&mut k, f.event, f.created);
                    batch.puts.push((cf.clone(), k, f.value.clone()));
                    report.rows += 1;
                }
            }
            if c + 1 == chunks.len() {
                batch
                    .registry
                    .push((wm_key.clone(), key::ts_bytes(wm).to_vec()));
            }
            self.commit(&batch, self.opts.durability == Durability::Synced)?;
            progress(((c + 1) * step).min(entities.len()), entities.len());
        }
        Ok(report)
    }
}
