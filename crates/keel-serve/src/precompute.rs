//! Precomputed predictions: score every entity in a multi-threaded batch job and write the
//! results into the store as a versioned feature view, so serving is a single lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use keel_core::{DType, Field};
use keel_store::{Definitions, FeatureRef, FeatureService, FeatureView, Row, Status, Store, Value};

use crate::deployment::{Deployment, Request};
use crate::{Result, ServeError};

/// What a precompute job wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecomputeReport {
    /// View written (`{model}_predictions`, version = model version).
    pub view: String,
    /// Feature service serving it (`{model}_precomputed`).
    pub service: String,
    /// Model version that scored.
    pub model_version: u32,
    /// Entities scored.
    pub scored: u64,
    /// Entities that failed to score (skipped).
    pub errors: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Names of the view and service a model's precomputed predictions live in.
pub fn precomputed_names(model: &str) -> (String, String) {
    (
        format!("{model}_predictions"),
        format!("{model}_precomputed"),
    )
}

impl Deployment {
    /// Scores every entity in `entities` with the champion (feature-service lookup + pipeline +
    /// model, exactly the online path) on `threads` threads, and writes every output into view
    /// `{model}_predictions` at version = the champion's version (defined on first use, keyed
    /// like `entity_view`'s entities), event time `at_ms`: features `score` (output 0),
    /// `model_version`, then `score_1`..`score_{k-1}` for a model of `k` outputs (all the
    /// classes of a multiclass model). A later lookup through service `{model}_precomputed`
    /// ([`lookup_precomputed`]) is then a single read.
    pub fn precompute(
        &self,
        store: &Store,
        entity_view: (&str, u32),
        entities: &[Vec<Value>],
        at_ms: i64,
        threads: usize,
    ) -> Result<PrecomputeReport> {
        let t0 = Instant::now();
        let version = self.versions().0;
        let (view, service) = precomputed_names(self.name());
        let source = store.view(entity_view.0, entity_view.1)?;
        let names = score_features(self.model(None)?.0.outputs());
        let defs = Definitions {
            entities: Vec::new(),
            views: vec![FeatureView {
                name: view.clone(),
                version,
                entities: source.entities.clone(),
                features: names
                    .iter()
                    .map(|n| {
                        let dtype = if n == "model_version" {
                            DType::I64
                        } else {
                            DType::F64
                        };
                        Field::new(n, dtype)
                    })
                    .collect(),
                ttl_ms: None,
                retention_ms: None,
                owner: "keel-serve".into(),
                description: format!("precomputed predictions of {} v{version}", self.name()),
                tags: Default::default(),
            }],
            services: vec![FeatureService {
                name: service.clone(),
                features: names
                    .iter()
                    .map(|f| FeatureRef {
                        view: view.clone(),
                        version,
                        feature: f.clone(),
                    })
                    .collect(),
            }],
        };
        store.apply(&defs)?;
        let errors = AtomicU64::new(0);
        let scored = AtomicU64::new(0);
        let chunk = entities.len().div_ceil(threads.max(1)).max(1);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = entities
                .chunks(chunk)
                .map(|part| {
                    let (errors, scored, view) = (&errors, &scored, &view);
                    s.spawn(move || -> Result<()> {
                        let mut rows = Vec::with_capacity(1024);
                        for key in part {
                            let req = Request {
                                request_id: Default::default(),
                                entity: key.clone(),
                                features: Vec::new(),
                                routing_key: None,
                            };
                            match self.predict_champion(req) {
                                Ok(r) => {
                                    rows.push(Row {
                                        key: key.clone(),
                                        event_ms: at_ms,
                                        created_ms: Some(at_ms),
                                        values: row_values(&r.scores, r.model_version),
                                    });
                                    scored.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if rows.len() == 1024 {
                                store.write(view, version, &rows)?;
                                rows.clear();
                            }
                        }
                        if !rows.is_empty() {
                            store.write(view, version, &rows)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ServeError::Stage("a scoring thread panicked".into()))
                    })
                })
                .collect()
        });
        for r in results {
            r?;
        }
        Ok(PrecomputeReport {
            view,
            service,
            model_version: version,
            scored: scored.load(Ordering::Relaxed),
            errors: errors.load(Ordering::Relaxed),
            seconds: t0.elapsed().as_secs_f64(),
        })
    }
}

/// The features of a precomputed view for a model of `outputs` values per row.
fn score_features(outputs: usize) -> Vec<String> {
    let mut names = vec!["score".to_string(), "model_version".to_string()];
    names.extend((1..outputs).map(|i| format!("score_{i}")));
    names
}

/// A row of a precomputed view, in [`score_features`] order.
fn row_values(scores: &[f64], version: u32) -> Vec<Value> {
    let mut v = Vec::with_capacity(scores.len() + 1);
    v.push(Value::F64(scores.first().copied().unwrap_or(f64::NAN)));
    v.push(Value::I64(i64::from(version)));
    v.extend(scores.iter().skip(1).map(|x| Value::F64(*x)));
    v
}

/// A precomputed prediction, as [`lookup_precomputed`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Precomputed {
    /// Every output of the model (one for binary and regression, one per class otherwise).
    pub scores: Vec<f64>,
    /// The model version that scored it.
    pub model_version: u32,
}

/// Reads a precomputed prediction; `None` when absent or expired.
pub fn lookup_precomputed(
    store: &Store,
    model: &str,
    key: &[Value],
) -> Result<Option<Precomputed>> {
    let (_, service) = precomputed_names(model);
    let r = store.get_online(&service, &[key.to_vec()])?;
    let Some(row) = r.values.first() else {
        return Ok(None);
    };
    if row.len() < 2 || row.iter().any(|f| f.status != Status::Present) {
        return Ok(None);
    }
    let Value::I64(version) = row[1].value else {
        return Ok(None);
    };
    let mut scores = Vec::with_capacity(row.len() - 1);
    for f in std::iter::once(&row[0]).chain(&row[2..]) {
        match f.value {
            Value::F64(x) => scores.push(x),
            _ => return Ok(None),
        }
    }
    Ok(Some(Precomputed {
        scores,
        model_version: u32::try_from(version).unwrap_or(0),
    }))
}
