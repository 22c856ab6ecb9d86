//! Shared set-up: a registry with two trained versions of `fraud` and a feature store.
#![allow(dead_code)]

use keel_core::ManualClock;
use keel_core::{DType, Field};
use keel_monitor::synth::{self, Shift};
use keel_registry::Registry;
use keel_serve::*;
use keel_store::{
    Definitions, Entity, FeatureRef, FeatureService, FeatureView, Row, Store, StoreOptions, Value,
};
use keel_train::{TrainingData, TrainingJob};
use std::sync::Arc;

pub const NOW: i64 = 1_800_000_000_000;

pub fn job(iters: u32) -> TrainingJob {
    job_with(&format!(
        "objective = \"binary\", num_iterations = {iters}, num_leaves = 15"
    ))
}

/// The fraud job with these LightGBM parameters (TOML inline-table contents).
pub fn job_with(params: &str) -> TrainingJob {
    TrainingJob::from_toml(&format!(
        r#"
experiment = "fraud"
model = "fraud"
label = "label"
params = {{ {params} }}
[[transform.columns]]
column = "amount"
steps = [{{ op = "log1p" }}]
[[transform.columns]]
column = "risk"
[[transform.columns]]
column = "country"
steps = [{{ op = "one_hot" }}]
"#
    ))
    .unwrap()
}

/// Registry with v1 (champion) and v2; a store with the features of 200 cards.
pub fn setup(dir: &std::path::Path) -> (Registry, Arc<Store>) {
    let reg = Registry::open(dir.join("registry")).unwrap();
    let data = TrainingData::from_frame(synth::transactions(3000, Shift::None, 1));
    let v1 = job(20).run(&reg, &data).unwrap().version.unwrap();
    job(60).run(&reg, &data).unwrap();
    reg.set_alias("fraud", CHAMPION, v1.version, "first")
        .unwrap();
    let store = Store::open_with(
        dir.join("store"),
        StoreOptions {
            clock: Arc::new(ManualClock::new(NOW)),
            durability: keel_store::Durability::Buffered,
            ..Default::default()
        },
    )
    .unwrap();
    store
        .apply(&Definitions {
            entities: vec![Entity {
                name: "card".into(),
                join_keys: vec![Field::required("card_id", DType::String)],
            }],
            views: vec![FeatureView {
                name: "card_features".into(),
                version: 1,
                entities: vec!["card".into()],
                features: vec![
                    Field::new("amount", DType::F64),
                    Field::new("risk", DType::F64),
                    Field::new("country", DType::String),
                ],
                ttl_ms: Some(86_400_000),
                retention_ms: None,
                owner: "risk".into(),
                description: String::new(),
                tags: Default::default(),
            }],
            services: vec![FeatureService {
                name: "fraud".into(),
                features: [
                    "card_features@1:amount",
                    "card_features@1:risk",
                    "card_features@1:country",
                ]
                .iter()
                .map(|s| FeatureRef::parse(s).unwrap())
                .collect(),
            }],
        })
        .unwrap();
    let f = synth::transactions(200, Shift::None, 2);
    let rows: Vec<Row> = (0..200)
        .map(|i| Row {
            key: vec![Value::Str(format!("card{i}"))],
            event_ms: NOW - 60_000,
            created_ms: Some(NOW - 60_000),
            values: vec![
                Value::F64(f.column("amount").unwrap().get_f64(i).unwrap()),
                Value::F64(f.column("risk").unwrap().get_f64(i).unwrap()),
                match f.column("country").unwrap().get(i) {
                    keel_core::ValueRef::Str(s) => Value::Str(s.into()),
                    _ => Value::Null,
                },
            ],
        })
        .collect();
    store.write("card_features", 1, &rows).unwrap();
    (reg, Arc::new(store))
}

pub fn deployment(reg: &Registry, store: &Arc<Store>, cfg: DeploymentConfig) -> Deployment {
    Deployment::from_registry(
        reg.clone(),
        "fraud",
        Some((store.clone(), "fraud".into())),
        cfg,
    )
    .unwrap()
    .with_clock(Arc::new(ManualClock::new(NOW)))
}

/// Starts `d` on a free loopback port with two runtime threads and `cfg`'s other settings.
#[cfg(feature = "http")]
pub fn serve_on_loopback(
    d: Arc<Deployment>,
    cfg: keel_serve::http::ServerConfig,
) -> keel_serve::Result<keel_serve::http::RunningServer> {
    keel_serve::http::start(
        vec![d],
        keel_serve::http::ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            ..cfg
        },
    )
}
