//! Shared fixtures for keel's benchmarks: deterministic synthetic data and the reference GBDT
//! models (A: 100 trees x 31 leaves, 10 features; B: 1000 trees x 31 leaves, 15 features of
//! which 2 categorical), trained through `lightgbm3` and cached on disk.
#![deny(missing_docs)]

use std::path::PathBuf;

/// A small deterministic generator (SplitMix64), so data never depends on a crate's version.
pub use keel_core::SplitMix64 as Rng;

/// A reference model's shape.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Name used in reports and cache files.
    pub name: &'static str,
    /// Boosting rounds.
    pub trees: usize,
    /// `num_leaves`.
    pub leaves: usize,
    /// Features.
    pub features: usize,
    /// How many of the last features are categorical.
    pub categorical: usize,
}

/// Model A: 100 trees x 31 leaves, 10 numeric features.
pub const MODEL_A: Spec = Spec {
    name: "A",
    trees: 100,
    leaves: 31,
    features: 10,
    categorical: 0,
};
/// Model B: 1000 trees x 31 leaves, 15 features (2 categorical).
pub const MODEL_B: Spec = Spec {
    name: "B",
    trees: 1000,
    leaves: 31,
    features: 15,
    categorical: 2,
};

/// `n` rows of synthetic data for `spec`, row-major, with 5% missing values; categorical
/// features take integer codes 0..30.
pub fn rows(spec: &Spec, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n * spec.features);
    for _ in 0..n {
        for f in 0..spec.features {
            let v = if f >= spec.features - spec.categorical {
                (rng.uniform() * 30.0).floor()
            } else {
                rng.normal()
            };
            out.push(if rng.uniform() < 0.05 { f64::NAN } else { v });
        }
    }
    out
}

/// A label with interactions, for `rows`.
pub fn labels(spec: &Spec, x: &[f64]) -> Vec<f32> {
    x.chunks(spec.features)
        .map(|r| {
            let g = |i: usize| if r[i].is_nan() { 0.0 } else { r[i] };
            let mut y = g(0) * 1.5 + (g(1) * 2.0).sin() + g(2) * g(3) - 0.5 * g(4).abs();
            if spec.categorical > 0 {
                let c = g(spec.features - 1) as i64;
                y += if c % 3 == 0 { 1.0 } else { -0.3 };
            }
            y as f32
        })
        .collect()
}

/// LightGBM parameters for `spec` (deterministic, one thread).
pub fn params(spec: &Spec) -> serde_json::Value {
    serde_json::json!({
        "objective": "regression",
        "num_iterations": spec.trees,
        "num_leaves": spec.leaves,
        "min_data_in_leaf": 5,
        "learning_rate": 0.05,
        "seed": 7,
        "deterministic": true,
        "num_threads": 1,
        "verbose": -1,
    })
}

/// The model's LightGBM text, trained on 20k rows through keel-gbdt (LightGBM) and cached under the
/// target directory (delete the file to retrain).
pub fn model_text(spec: &Spec) -> String {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("keel-bench-models");
    // v2: categorical columns train as categorical (keel-gbdt builds LightGBM's dataset with
    // the parameters; lightgbm3's own constructors drop them).
    let path = dir.join(format!("model_{}_v2.txt", spec.name));
    if let Ok(text) = std::fs::read_to_string(&path) {
        return text;
    }
    let x = rows(spec, 20_000, 1);
    let y = labels(spec, &x);
    let names: Vec<String> = (0..spec.features).map(|i| format!("f{i}")).collect();
    let categorical: Vec<usize> = (spec.features - spec.categorical..spec.features).collect();
    let text = keel_gbdt::train_dense(&x, &y, None, &names, &categorical, &params(spec), 7)
        .expect("train")
        .lightgbm_text;
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&path, &text);
    text
}

/// Feature-store fixtures shared by the store bench and harness.
pub mod store {
    use keel_core::{DType, Field};
    use keel_store::{
        Definitions, Entity, FeatureRef, FeatureService, FeatureView, Row, Store, Value,
    };

    /// Builds the definitions: one entity (`user_id` i64), one view of `features` f64 features
    /// and a service over all of them.
    pub fn definitions(features: usize) -> Definitions {
        let fields: Vec<Field> = (0..features)
            .map(|i| Field::new(format!("f{i}"), DType::F64))
            .collect();
        Definitions {
            entities: vec![Entity {
                name: "user".into(),
                join_keys: vec![Field::required("user_id", DType::I64)],
            }],
            views: vec![FeatureView {
                name: "user_features".into(),
                version: 1,
                entities: vec!["user".into()],
                features: fields,
                ttl_ms: None,
                retention_ms: None,
                owner: String::new(),
                description: String::new(),
                tags: Default::default(),
            }],
            services: vec![FeatureService {
                name: "svc".into(),
                features: (0..features)
                    .map(|i| FeatureRef {
                        view: "user_features".into(),
                        version: 1,
                        feature: format!("f{i}"),
                    })
                    .collect(),
            }],
        }
    }

    /// Rows for entity ids `ids`, `history` event times each, `features` values per row.
    pub fn rows(ids: std::ops::Range<i64>, history: i64, features: usize) -> Vec<Row> {
        let mut out = Vec::new();
        for id in ids {
            for h in 0..history {
                let t = 1_700_000_000_000 + h * 3_600_000 + id % 1000;
                out.push(Row {
                    key: vec![Value::I64(id)],
                    event_ms: t,
                    created_ms: Some(t),
                    values: (0..features)
                        .map(|f| Value::F64((id * 31 + f as i64 + h) as f64 * 0.5))
                        .collect(),
                });
            }
        }
        out
    }

    /// Writes `rows` in batches of `batch`.
    pub fn load(store: &Store, rows: &[Row], batch: usize) {
        for chunk in rows.chunks(batch) {
            store.write("user_features", 1, chunk).expect("write");
        }
    }

    /// Feast's SQLite online-store layout: one row per (entity key, feature), value as bytes.
    pub fn sqlite(path: &std::path::Path, rows: &[Row], features: usize) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).expect("sqlite");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS proj_user_features (entity_key BLOB, feature_name TEXT, value BLOB,
               event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name));
             CREATE INDEX IF NOT EXISTS proj_user_features_ek ON proj_user_features (entity_key);",
        )
        .expect("schema");
        let tx = conn.unchecked_transaction().expect("tx");
        {
            let mut st = tx
                .prepare("INSERT OR REPLACE INTO proj_user_features VALUES (?1, ?2, ?3, ?4, ?5)")
                .expect("prepare");
            for r in rows {
                let Value::I64(id) = r.key[0] else { continue };
                for (f, v) in r.values.iter().enumerate().take(features) {
                    let bytes = v.as_f64().unwrap_or(f64::NAN).to_le_bytes();
                    st.execute(rusqlite::params![
                        id.to_be_bytes(),
                        format!("f{f}"),
                        bytes,
                        r.event_ms,
                        r.created_ms
                    ])
                    .expect("insert");
                }
            }
        }
        tx.commit().expect("commit");
        conn
    }
}
