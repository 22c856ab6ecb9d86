//! The catalog: definitions cached from the backend, and the resolved plans of feature
//! services.

use super::read::{FeatureValue, Status};
use crate::backend::RowRef;
use crate::defs::{Entity, FeatureRef, FeatureService, FeatureView};
use crate::error::{Result, StoreError};
use crate::key;
use crate::value::{StoredRow, Value};
use keel_core::envelope;
use keel_core::{DType, Field};
use std::collections::HashMap;
use std::sync::Arc;

/// The catalog: the definitions cached from the backend's registry entries, and the
/// resolved plans of feature services.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    pub(super) entities: HashMap<String, Entity>,
    pub(super) views: HashMap<(String, u32), FeatureView>,
    pub(super) services: HashMap<String, FeatureService>,
    /// Resolved services, built on first read and dropped by every `apply`.
    pub(super) plans: HashMap<String, Arc<Plan>>,
}

impl Catalog {
    pub(super) fn join_keys(&self, view: &FeatureView) -> Result<Vec<Field>> {
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
    pub(super) fn plan(&self, refs: &[FeatureRef]) -> Result<Plan> {
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
pub(super) struct Plan {
    pub(super) refs: Arc<[FeatureRef]>,
    /// The service's key: every join key of its views' entities, in order of first appearance.
    pub(super) keys: Vec<Field>,
    pub(super) views: Vec<PlanView>,
    /// Per ref, in ref order.
    pub(super) slots: Vec<Slot>,
}

/// Where one ref's value comes from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Index into [`Plan::views`].
    pub(super) view: usize,
    /// Feature index in the view's stored row.
    pub(super) index: usize,
    pub(super) dtype: DType,
}

/// One view version of a plan: read once per entity, shared by its refs.
#[derive(Debug)]
pub(super) struct PlanView {
    pub(super) name: String,
    pub(super) cf: String,
    pub(super) keys: Vec<Field>,
    /// Where this view's join keys sit in the service's key, when not the whole key in order
    /// (views of other entities in a multi-entity service).
    pub(super) positions: Option<Vec<usize>>,
    pub(super) ttl_ms: Option<i64>,
    pub(super) width: usize,
}

/// A decoded lookup result: event time and the row's values.
type Hit = (i64, Vec<Value>);

impl PlanView {
    /// This view's part of a service key (the whole key when the view has every join key).
    pub(super) fn service_prefix(&self, key: &[Value]) -> Result<Vec<u8>> {
        match &self.positions {
            None => self.prefix(key),
            Some(pos) => {
                let part: Vec<Value> = pos.iter().map(|&p| key[p].clone()).collect();
                self.prefix(&part)
            }
        }
    }

    /// Checks `key` against the join keys and encodes it.
    pub(super) fn prefix(&self, key: &[Value]) -> Result<Vec<u8>> {
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
    pub(super) fn decode(&self, f: RowRef<'_>) -> Result<Hit> {
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
    pub(super) fn value(&self, hit: Option<&Hit>, index: usize, at_ms: i64) -> FeatureValue {
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
