//! keel-store online reads against SQLite with Feast's SQLite online-store layout (one row per
//! entity and feature, primary key (entity_key, feature_name)), same data, same machine.
//! `cargo bench -p keel-benches --bench store`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keel_benches::store::{definitions, load, rows, sqlite};
use keel_store::{Store, Value};
use std::hint::black_box;

const FEATURES: usize = 50;
const ENTITIES: i64 = 10_000;

fn online(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path().join("keel")).expect("store");
    store.apply(&definitions(FEATURES)).expect("apply");
    let data = rows(0..ENTITIES, 3, FEATURES);
    load(&store, &data, 1000);
    // Feast's online store keeps only the latest row per entity.
    let latest: Vec<_> = data
        .iter()
        .filter(|r| r.event_ms >= 1_700_000_000_000 + 2 * 3_600_000)
        .cloned()
        .collect();
    let conn = sqlite(&dir.path().join("feast.db"), &latest, FEATURES);
    let mut g = c.benchmark_group("store_online");
    let mut i = 0i64;
    g.bench_function(BenchmarkId::new("keel", "1x50"), |b| {
        b.iter(|| {
            i = (i + 7919) % ENTITIES;
            black_box(
                store
                    .get_online("svc", &[vec![Value::I64(i)]])
                    .expect("read"),
            )
        })
    });
    let mut st = conn
        .prepare_cached("SELECT entity_key, feature_name, value, event_ts FROM proj_user_features WHERE entity_key = ?1")
        .expect("prepare");
    g.bench_function(BenchmarkId::new("sqlite_feast_layout", "1x50"), |b| {
        b.iter(|| {
            i = (i + 7919) % ENTITIES;
            let mut n = 0;
            let mut rows = st.query([i.to_be_bytes()]).expect("query");
            while let Some(r) = rows.next().expect("row") {
                let v: Vec<u8> = r.get(2).expect("value");
                n += v.len();
            }
            black_box(n)
        })
    });
    let keys: Vec<Vec<Value>> = (0..100)
        .map(|k| vec![Value::I64(k * 97 % ENTITIES)])
        .collect();
    g.bench_function(BenchmarkId::new("keel", "100x50"), |b| {
        b.iter(|| black_box(store.get_online("svc", &keys).expect("read")))
    });
    let placeholders = vec!["?"; 100].join(",");
    let mut st100 = conn
        .prepare(&format!(
            "SELECT entity_key, feature_name, value, event_ts FROM proj_user_features WHERE entity_key IN ({placeholders})"
        ))
        .expect("prepare");
    let params: Vec<[u8; 8]> = (0..100)
        .map(|k: i64| (k * 97 % ENTITIES).to_be_bytes())
        .collect();
    g.bench_function(BenchmarkId::new("sqlite_feast_layout", "100x50"), |b| {
        b.iter(|| {
            let mut n = 0;
            let mut rows = st100
                .query(rusqlite::params_from_iter(params.iter()))
                .expect("query");
            while let Some(r) = rows.next().expect("row") {
                let v: Vec<u8> = r.get(2).expect("value");
                n += v.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, online);
criterion_main!(benches);
