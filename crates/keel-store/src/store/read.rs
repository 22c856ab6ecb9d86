//! Reads: online and as-of lookups of a feature service.

use super::Store;
use crate::backend::{Lookup, NewestRead};
use crate::cache::Newest;
use crate::defs::FeatureRef;
use crate::error::{Result, StoreError};
use crate::value::Value;
use keel_core::{Clock, Field};
use std::sync::Arc;

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

/// Options of [`Store::get_as_of_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsOfOptions {
    /// Ignore rows created after the read time (no backfill leakage), as
    /// [`HistoricalOptions::no_backfill_leak`](crate::HistoricalOptions::no_backfill_leak) does for point-in-time joins.
    pub no_backfill_leak: bool,
}

impl Store {
    /// Latest values as of now for many entities and a feature service; TTL enforced. Hot
    /// entities are answered from the row cache (see [`StoreOptions::row_cache_entries`](crate::StoreOptions::row_cache_entries)).
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
    pub(super) fn read_service(
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
        // A shared backend lets reads fill the cache only while it can report every change
        // (checked again after the read, see `Backend::cache_token`).
        let token = self.backend.cache_token();
        let cached = online && self.cache.enabled() && token.is_some();
        // Per view: each entity's prefix, and its row once known (`None`: not yet).
        let mut prefixes: Vec<Vec<Vec<u8>>> = Vec::with_capacity(plan.views.len());
        let mut got: Vec<Vec<Option<Newest>>> = Vec::with_capacity(plan.views.len());
        // Per view: the entities the cache cannot answer, in storage order (one iterator
        // sweeps forward through neighbouring blocks).
        let mut misses: Vec<Vec<usize>> = Vec::with_capacity(plan.views.len());
        for pv in &plan.views {
            let p = keys
                .iter()
                .map(|k| pv.service_prefix(k))
                .collect::<Result<Vec<_>>>()?;
            let g: Vec<Option<Newest>> = p
                .iter()
                .map(|p| {
                    // A cached newest row answers unless it lies after T.
                    cached
                        .then(|| self.cache.get(&pv.cf, p))
                        .flatten()
                        .filter(|n| n.as_ref().is_none_or(|h| h.0 <= at_ms))
                })
                .collect();
            let mut m: Vec<usize> = (0..keys.len()).filter(|&e| g[e].is_none()).collect();
            m.sort_unstable_by(|&a, &b| p[a].cmp(&p[b]));
            prefixes.push(p);
            got.push(g);
            misses.push(m);
        }
        let epoch = self.cache.epoch();
        // Online reads fetch each entity's newest row (what the cache holds), every view in
        // one backend call (one round trip on a network store); a newest row after T sends
        // its entity to history in a second pass.
        let mut future: Vec<Vec<usize>> = vec![Vec::new(); plan.views.len()];
        if online {
            let wanted: Vec<Vec<&[u8]>> = misses
                .iter()
                .zip(&prefixes)
                .map(|(m, p)| m.iter().map(|&e| &p[e][..]).collect())
                .collect();
            let reads: Vec<NewestRead<'_>> = plan
                .views
                .iter()
                .zip(&wanted)
                .filter(|(_, w)| !w.is_empty())
                .map(|(pv, w)| NewestRead {
                    view: &pv.cf,
                    prefixes: w,
                })
                .collect();
            // `reads` skips views with nothing to ask: map back to view indices.
            let index: Vec<usize> = (0..plan.views.len())
                .filter(|&v| !wanted[v].is_empty())
                .collect();
            if !reads.is_empty() {
                let mut fresh: Vec<(usize, usize, Newest)> = Vec::new();
                self.backend.newest_many(&reads, &mut |r, i, f| {
                    let v = index[r];
                    let pv = &plan.views[v];
                    let e = misses[v][i];
                    let newest: Newest = f.map(|f| pv.decode(f)).transpose()?.map(Arc::new);
                    if cached {
                        fresh.push((v, e, newest.clone()));
                    }
                    if newest.as_ref().is_some_and(|h| h.0 > at_ms) {
                        future[v].push(e);
                    } else {
                        got[v][e] = Some(newest);
                    }
                    Ok(())
                })?;
                if cached && self.backend.cache_token() == token {
                    for (v, e, newest) in fresh {
                        self.cache
                            .insert(&plan.views[v].cf, &prefixes[v][e], newest, epoch);
                    }
                }
            }
        } else {
            future = misses;
        }
        for (v, pv) in plan.views.iter().enumerate() {
            if future[v].is_empty() {
                continue;
            }
            let lookups: Vec<Lookup<'_>> = future[v]
                .iter()
                .map(|&e| Lookup {
                    prefix: &prefixes[v][e],
                    event_bound: at_ms,
                    created_cutoff,
                })
                .collect();
            let (fut, g) = (&future[v], &mut got[v]);
            self.backend.latest_each(&pv.cf, &lookups, &mut |i, f| {
                g[fut[i]] = Some(f.map(|f| pv.decode(f)).transpose()?.map(Arc::new));
                Ok(())
            })?;
        }
        let hits: Vec<Vec<Newest>> = got
            .into_iter()
            .map(|g| g.into_iter().map(Option::unwrap_or_default).collect())
            .collect();
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
}
