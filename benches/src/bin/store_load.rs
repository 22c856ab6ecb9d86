//! Feature-store harness: online read latency p50/p99 against SQLite in Feast's layout (1 and
//! 100 entities x 50 features, 100k entities, random keys), ingest rate (20 features, WAL on,
//! no fsync per batch) and the point-in-time join of an entity table against the history.
//!
//! `cargo run --release -p keel-benches --bin store_load -- [HISTORY_ROWS] [ENTITY_ROWS]`
//! (defaults 1,000,000 and 100,000; the scale is 10,000,000 and 1,000,000).
use keel_benches::store::{definitions, load, rows, sqlite};
use keel_core::{Column, DType, Field, Frame};
use keel_store::{FeatureRef, HistoricalOptions, NewestLayout, Store, StoreOptions, Value};
use std::time::{Duration, Instant};

fn percentiles(mut d: Vec<Duration>) -> String {
    d.sort();
    let p = |q: f64| d[((d.len() as f64 * q) as usize).min(d.len() - 1)].as_secs_f64() * 1e6;
    format!("p50 {:>7.1} us  p99 {:>7.1} us", p(0.5), p(0.99))
}

/// Entity ids in `0..entities`, uniformly random (xorshift) and the same sequence each call.
fn random_entities(entities: i64) -> impl FnMut() -> i64 {
    let mut x = 88_172_645_463_325_252u64;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % entities as u64) as i64
    }
}

/// Online reads with random keys (xorshift), `batch` entities per read.
fn online_latency() {
    const ENTITIES: i64 = 100_000;
    let dir = tempfile::tempdir().expect("tmp");
    // History rows per entity (KEEL_ONLINE_HISTORY, default 3): with deep history the newest
    // rows are spread over far more blocks than the block cache holds.
    let depth: i64 = std::env::var("KEEL_ONLINE_HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let data = rows(0..ENTITIES, depth, 50);
    let latest: Vec<_> = data
        .iter()
        .filter(|r| r.event_ms >= 1_700_000_000_000 + (depth - 1) * 3_600_000)
        .cloned()
        .collect();
    let conn = sqlite(&dir.path().join("feast.db"), &latest, 50);
    let mut single = conn
        .prepare_cached("SELECT entity_key, feature_name, value, event_ts FROM proj_user_features WHERE entity_key = ?1")
        .expect("prepare");
    for (name, cache, layout) in [
        (
            "keel (row cache 16k of 100k entities)",
            16_384,
            NewestLayout::Checked,
        ),
        ("keel (no row cache)", 0, NewestLayout::Checked),
        (
            "keel (mapped newest rows, no row cache)",
            0,
            NewestLayout::Mapped,
        ),
    ] {
        let store = Store::open_with(
            dir.path().join(format!("keel{cache}-{layout:?}")),
            StoreOptions {
                row_cache_entries: cache,
                newest_layout: layout,
                ..Default::default()
            },
        )
        .expect("store");
        store.apply(&definitions(50)).expect("apply");
        load(&store, &data, 1000);
        store.compact("user_features", 1).expect("compact");
        // `KEEL_ONLINE_PROBE=SECONDS`: only single-entity reads without the row cache, for
        // that long (for a profiler); with `KEEL_PROBE_MAPPED` set, of mapped newest rows.
        let probe_mapped = std::env::var_os("KEEL_PROBE_MAPPED").is_some();
        if let Some(secs) = std::env::var("KEEL_ONLINE_PROBE")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|_| cache == 0 && (layout == NewestLayout::Mapped) == probe_mapped)
        {
            let (t, mut n, mut next) = (Instant::now(), 0u64, random_entities(ENTITIES));
            while t.elapsed().as_secs_f64() < secs {
                for _ in 0..1000 {
                    let keys = [vec![Value::I64(next())]];
                    std::hint::black_box(store.get_online("svc", &keys).expect("read"));
                }
                n += 1000;
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("online 1x50 probe: {us:.2} us mean over {n} reads");
            drop(store);
            // `exit` skips the temporary directory's drop.
            std::fs::remove_dir_all(dir.path()).expect("remove the stores");
            std::process::exit(0);
        }
        for batch in [1usize, 100] {
            let mut next = random_entities(ENTITIES);
            let n = if batch == 1 { 200_000 } else { 5_000 };
            let mut d = Vec::with_capacity(n);
            for _ in 0..n {
                let keys: Vec<Vec<Value>> = (0..batch).map(|_| vec![Value::I64(next())]).collect();
                let t = Instant::now();
                std::hint::black_box(store.get_online("svc", &keys).expect("read"));
                d.push(t.elapsed());
            }
            println!("online {batch}x50 {name:<40} {}", percentiles(d));
        }
    }
    let mut next = random_entities(ENTITIES);
    let mut d = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let k = next();
        let t = Instant::now();
        let mut rows = single.query([k.to_be_bytes()]).expect("query");
        let mut n = 0;
        while let Some(r) = rows.next().expect("row") {
            let v: Vec<u8> = r.get(2).expect("value");
            n += v.len();
        }
        std::hint::black_box(n);
        d.push(t.elapsed());
    }
    println!(
        "online 1x50 {:<40} {}",
        "sqlite (Feast layout)",
        percentiles(d)
    );
}

/// Ingest as a stream arrives: each batch holds 10k different entities at one time step, so
/// every row also updates its entity's newest row.
fn time_major_ingest(history: usize, features: usize, per_entity: i64, newest_rows: bool) {
    let entities = (history as i64 / per_entity).max(1);
    let dir = tempfile::tempdir().expect("tmp");
    let opts = StoreOptions {
        newest_rows,
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), opts).expect("store");
    store.apply(&definitions(features)).expect("apply");
    let t = Instant::now();
    let mut written = 0usize;
    for h in 0..per_entity {
        let mut e = 0;
        while e < entities {
            let end = (e + 10_000).min(entities);
            let batch: Vec<_> = (e..end)
                .map(|id| keel_store::Row {
                    key: vec![Value::I64(id)],
                    event_ms: 1_700_000_000_000 + h * 3_600_000 + id % 1000,
                    created_ms: None,
                    values: (0..features)
                        .map(|f| Value::F64((id * 31 + f as i64 + h) as f64 * 0.5))
                        .collect(),
                })
                .collect();
            store.write("user_features", 1, &batch).expect("write");
            written += batch.len();
            e = end;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ingest (time-major batches, newest rows {}): {written} rows x {features} features in {secs:.2}s = {:.0} rows/s",
        if newest_rows { "on" } else { "off" },
        written as f64 / secs
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let history = args.first().copied().unwrap_or(1_000_000);
    let entity_rows = args.get(1).copied().unwrap_or(100_000);
    if std::env::var_os("KEEL_SKIP_ONLINE").is_none() {
        online_latency();
    }
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
        "ingest (entity-major batches, newest rows on): {written} rows x {features} features in {secs:.2}s = {:.0} rows/s",
        written as f64 / secs
    );
    time_major_ingest(history, features, per_entity, true);
    time_major_ingest(history, features, per_entity, false);

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
