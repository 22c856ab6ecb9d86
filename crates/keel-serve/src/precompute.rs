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
    /// model, exactly the online path) on `threads` threads, and writes `score` and
    /// `model_version` into view `{model}_predictions` at version = the champion's version
    /// (defined on first use, keyed like `entity_view`'s entities), event time `at_ms`.
    /// A later lookup through service `{model}_precomputed` is then a single read.
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
        let defs = Definitions {
            entities: Vec::new(),
            views: vec![FeatureView {
                name: view.clone(),
                version,
                entities: source.entities.clone(),
                features: vec![
                    Field::new("score", DType::F64),
                    Field::new("model_version", DType::I64),
                ],
                ttl_ms: None,
                retention_ms: None,
                owner: "keel-serve".into(),
                description: format!("precomputed predictions of {} v{version}", self.name()),
                tags: Default::default(),
            }],
            services: vec![FeatureService {
                name: service.clone(),
                features: ["score", "model_version"]
                    .iter()
                    .map(|f| FeatureRef {
                        view: view.clone(),
                        version,
                        feature: (*f).into(),
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
                                        values: vec![
                                            Value::F64(r.scores[0]),
                                            Value::I64(i64::from(r.model_version)),
                                        ],
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

/// Reads a precomputed prediction: `(score, model version)`, `None` when absent or expired.
pub fn lookup_precomputed(store: &Store, model: &str, key: &[Value]) -> Result<Option<(f64, u32)>> {
    let (_, service) = precomputed_names(model);
    let r = store.get_online(&service, &[key.to_vec()])?;
    let Some(row) = r.values.first() else {
        return Ok(None);
    };
    match (&row[0], &row[1]) {
        (s, v) if s.status == Status::Present && v.status == Status::Present => {
            Ok(match (&s.value, &v.value) {
                (Value::F64(x), Value::I64(ver)) => Some((*x, *ver as u32)),
                _ => None,
            })
        }
        _ => Ok(None),
    }
}
