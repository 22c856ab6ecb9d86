//! A request's model inputs: request-time values over the feature service's stored row.

use std::sync::Arc;

use keel_core::Clock;
use keel_store::{FeatureRef, Status, Value};

use super::{Deployment, InputMap, Inputs, MissingFeature, Request};
use crate::Result;
use keel_model::ServedModel;

impl Deployment {
    /// Assembles the raw inputs of `model`'s pipeline for a request: request-time features
    /// first, then the feature service's stored values. Also returns the freshness, the stored
    /// features read as missing, and whether the entity has no stored row at all (every
    /// stored feature read is `NotFound`).
    pub(super) fn inputs(&self, model: &ServedModel, req: &Request) -> Result<Inputs> {
        let fields = model.pipeline.input_schema().fields();
        let stored = match (&self.store, req.entity.is_empty()) {
            (Some((store, service)), false) => {
                Some(store.get_online(service, std::slice::from_ref(&req.entity))?)
            }
            _ => None,
        };
        let row = stored.as_ref().and_then(|r| r.values.first());
        let map = stored.as_ref().map(|r| self.input_map(model, &r.features));
        let now = self.clock.now_ms();
        let mut oldest: Option<i64> = None;
        let mut missing = Vec::new();
        let (mut read, mut not_found) = (0usize, 0usize);
        let mut out = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            if let Some((_, v)) = req.features.iter().find(|(n, _)| *n == f.name) {
                out.push(v.clone());
                continue;
            }
            match (row, map.as_ref().and_then(|m| m[i])) {
                (Some(row), Some(j)) => {
                    let fv = &row[j];
                    read += 1;
                    if fv.status == Status::Present {
                        if let Some(e) = fv.event_ms {
                            oldest = Some(oldest.map_or(e, |o: i64| o.min(e)));
                        }
                    } else {
                        not_found += usize::from(fv.status == Status::NotFound);
                        missing.push(MissingFeature {
                            name: f.name.clone(),
                            status: fv.status,
                        });
                    }
                    out.push(fv.value.clone());
                }
                _ => out.push(Value::Null),
            }
        }
        let freshness = row
            .filter(|r| !r.is_empty())
            .map(|_| oldest.map_or(0, |o| now - o));
        let unknown = read > 0 && not_found == read;
        Ok((out, freshness, missing, unknown))
    }

    /// For each pipeline input of `model`, its position among the feature service's features,
    /// matched by name once per (version, resolved service) instead of on every request.
    pub(super) fn input_map(&self, model: &ServedModel, features: &Arc<[FeatureRef]>) -> InputMap {
        if let Some((_, _, m)) = self
            .input_maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(v, f, _)| *v == model.version && Arc::ptr_eq(f, features))
        {
            return Arc::clone(m);
        }
        let m: InputMap = model
            .pipeline
            .input_schema()
            .fields()
            .iter()
            .map(|f| features.iter().position(|r| r.feature == f.name))
            .collect();
        let mut maps = self.input_maps.write().unwrap_or_else(|p| p.into_inner());
        // A re-applied service has a new resolution: maps of the old one are dropped.
        maps.retain(|(_, f, _)| Arc::ptr_eq(f, features));
        maps.truncate(16);
        maps.push((model.version, Arc::clone(features), Arc::clone(&m)));
        m
    }
}
