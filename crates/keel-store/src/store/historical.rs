//! Historical reads: point-in-time joins for training sets.

use super::catalog::{PlanView, Slot};
use super::{poisoned, Store};
use crate::backend::Lookup;
use crate::defs::FeatureRef;
use crate::error::{Result, StoreError};
use crate::value::Value;
use keel_core::{Column, ColumnBuilder, DType, Field, Frame, ValueRef};
use std::sync::atomic::{AtomicU64, Ordering};

/// Options of a historical (training set) read.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoricalOptions {
    /// Ignore rows created after the entity row's timestamp (no backfill leakage).
    pub no_backfill_leak: bool,
    /// Worker threads for large joins (0: one per core). Small inputs use one thread.
    pub threads: usize,
}

impl Store {
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
        self.historical_counted(entities, refs, opts, &AtomicU64::new(0))
    }

    /// How many lookups [`Store::historical_counted`] makes for `refs` over `rows` entity
    /// rows: one per row and view version read.
    pub fn historical_lookups(&self, refs: &[FeatureRef], rows: usize) -> Result<u64> {
        let plan = self.catalog.read().map_err(|_| poisoned())?.plan(refs)?;
        Ok((rows as u64).saturating_mul(plan.views.len() as u64))
    }

    /// [`Store::historical`] that adds every answered lookup to `done` as it goes (at most
    /// [`Store::historical_lookups`] in all), so a caller can show progress from another
    /// thread.
    pub fn historical_counted(
        &self,
        entities: &Frame,
        refs: &[FeatureRef],
        opts: HistoricalOptions,
        done: &AtomicU64,
    ) -> Result<Frame> {
        let plan = self.catalog.read().map_err(|_| poisoned())?.plan(refs)?;
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
                vec![self.historical_part(pv, &lookups, &mine, done)?]
            } else {
                std::thread::scope(|scope| {
                    let workers: Vec<_> = lookups
                        .chunks(part)
                        .map(|chunk| scope.spawn(|| self.historical_part(pv, chunk, &mine, done)))
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
    pub(super) fn historical_part(
        &self,
        pv: &PlanView,
        lookups: &[Lookup<'_>],
        mine: &[(usize, Slot)],
        done: &AtomicU64,
    ) -> Result<Frame> {
        let mut builders: Vec<ColumnBuilder> = mine
            .iter()
            .map(|(_, s)| ColumnBuilder::with_capacity(s.dtype, lookups.len()))
            .collect();
        self.backend.latest_each(&pv.cf, lookups, &mut |i, found| {
            if i % 1024 == 1023 {
                done.fetch_add(1024, Ordering::Relaxed);
            }
            let hit = found.map(|f| pv.decode(f)).transpose()?;
            let at = lookups[i].event_bound;
            for (b, (_, s)) in builders.iter_mut().zip(mine) {
                push_value(b, &pv.value(hit.as_ref(), s.index, at).value);
            }
            Ok(())
        })?;
        done.fetch_add((lookups.len() % 1024) as u64, Ordering::Relaxed);
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
}

pub(super) fn push_value(b: &mut ColumnBuilder, v: &Value) {
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
