//! keel-store online reads against SQLite with Feast's SQLite online-store layout (one row per
//! entity and feature, primary key (entity_key, feature_name)), same data, same machine.
//! `cargo bench -p keel-benches --bench store`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use keel_benches::store::{definitions, load, rows, sqlite};
use keel_store::{NewestLayout, Store, StoreOptions, Value};
use std::hint::black_box;

const FEATURES: usize = 50;
const ENTITIES: i64 = 10_000;

fn online(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let data = rows(0..ENTITIES, 3, FEATURES);
    let open = |name: &str, row_cache_entries: usize, newest_layout: NewestLayout| {
        let store = Store::open_with(
            dir.path().join(name),
            StoreOptions {
                row_cache_entries,
                newest_layout,
                ..Default::default()
            },
        )
        .expect("store");
        store.apply(&definitions(FEATURES)).expect("apply");
        load(&store, &data, 1000);
        // A populated store serves from SST files (the memtable holds only recent writes).
        store.compact("user_features", 1).expect("compact");
        store
    };
    // Default options: hot entities come from the row cache (all 10k fit here).
    let defaults = StoreOptions::default();
    let store = open("keel", defaults.row_cache_entries, defaults.newest_layout);
    // Every read asks RocksDB and decodes: checksummed block-based newest rows (the default),
    // and PlainTable files read through mmap.
    let uncached = open("keel-uncached", 0, NewestLayout::Checked);
    let mapped = open("keel-mapped", 0, NewestLayout::Mapped);
    // Feast's online store keeps only the latest row per entity.
    let latest: Vec<_> = data
        .iter()
        .filter(|r| r.event_ms >= 1_700_000_000_000 + 2 * 3_600_000)
        .cloned()
        .collect();
    let conn = sqlite(&dir.path().join("feast.db"), &latest, FEATURES);
    let mut g = c.benchmark_group("store_online");
    let mut i = 0i64;
    for (name, s) in [
        ("keel", &store),
        ("keel_no_row_cache", &uncached),
        ("keel_mapped_no_row_cache", &mapped),
    ] {
        g.bench_function(BenchmarkId::new(name, "1x50"), |b| {
            b.iter(|| {
                i = (i + 7919) % ENTITIES;
                black_box(s.get_online("svc", &[vec![Value::I64(i)]]).expect("read"))
            })
        });
    }
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
    for (name, s) in [
        ("keel", &store),
        ("keel_no_row_cache", &uncached),
        ("keel_mapped_no_row_cache", &mapped),
    ] {
        g.bench_function(BenchmarkId::new(name, "100x50"), |b| {
            b.iter(|| black_box(s.get_online("svc", &keys).expect("read")))
        });
    }
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
