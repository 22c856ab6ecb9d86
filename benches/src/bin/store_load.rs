//! Feature-store throughput harness: ingest rate (20 features, WAL on, no fsync per batch) and
//! the point-in-time join of an entity table against the history.
//!
//! `cargo run --release -p keel-benches --bin store_load -- [HISTORY_ROWS] [ENTITY_ROWS]`
//! (defaults 1,000,000 and 100,000; the scale is 10,000,000 and 1,000,000).
use keel_benches::store::{definitions, rows};
use keel_core::{Column, DType, Field, Frame};
use keel_store::{FeatureRef, HistoricalOptions, Store};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let history = args.first().copied().unwrap_or(1_000_000);
    let entity_rows = args.get(1).copied().unwrap_or(100_000);
    let features = 20;
    let per_entity = 10i64;
    let entities = (history as i64 / per_entity).max(1);
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    store.apply(&definitions(features)).expect("apply");

    let t = Instant::now();
    let mut written = 0usize;
    let chunk = 10_000i64 / per_entity;
    let mut e = 0;
    while e < entities {
        let batch = rows(e..(e + chunk).min(entities), per_entity, features);
        store.write("user_features", 1, &batch).expect("write");
        written += batch.len();
        e += chunk;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ingest: {written} rows x {features} features in {secs:.2}s = {:.0} rows/s",
        written as f64 / secs
    );

    let ids: Vec<i64> = (0..entity_rows as i64)
        .map(|i| (i * 7919) % entities)
        .collect();
    let ts: Vec<i64> = (0..entity_rows as i64)
        .map(|i| 1_700_000_000_000 + (i % 12) * 3_600_000)
        .collect();
    let frame = Frame::new(
        vec![
            Field::required("user_id", DType::I64),
            Field::required("event_timestamp", DType::I64),
        ],
        vec![
            Column::I64 {
                values: ids.into(),
                validity: Default::default(),
            },
            Column::I64 {
                values: ts.into(),
                validity: Default::default(),
            },
        ],
    )
    .expect("frame");
    let refs: Vec<FeatureRef> = (0..features)
        .map(|i| FeatureRef {
            view: "user_features".into(),
            version: 1,
            feature: format!("f{i}"),
        })
        .collect();
    let t = Instant::now();
    let out = store
        .historical(&frame, &refs, HistoricalOptions::default())
        .expect("join");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "historical join: {entity_rows} entity rows x {} history rows -> {} x {} in {secs:.2}s",
        written,
        out.nrows(),
        out.ncols()
    );
}
