//! keel-gbdt against LightGBM's own predictor (through lightgbm3), same model, same rows.
//!
//! `cargo bench -p keel-benches --bench gbdt`. Groups:
//! - `single_row/A`: one row of model A (100 trees x 31 leaves); LightGBM's
//!   `PredictForMatSingleRowFast` vs `GbdtModel::predict_row`.
//! - `batch_10k/B`: 10k rows of model B (1000 trees x 31 leaves, 2 categorical); throughput is
//!   in tree-rows, so criterion's time per element is the time per tree-row.
//! - `load/B`: model B from keel's binary format, from LightGBM text (keel), from text (LightGBM).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_benches::{model_text, rows, MODEL_A, MODEL_B};
use keel_gbdt::{GbdtModel, PredictOptions};
use std::hint::black_box;

fn single_row(c: &mut Criterion) {
    let spec = MODEL_A;
    let text = model_text(&spec);
    let keel = GbdtModel::from_lightgbm_text(&text).unwrap();
    let mut lgb = lightgbm3::Booster::from_string(&text).unwrap();
    lgb.single_row_fast_init::<f64>(Some(&serde_json::json!({"num_threads": 1})))
        .unwrap();
    let x = rows(&spec, 256, 99);
    let f = spec.features;
    let mut g = c.benchmark_group("single_row");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function(BenchmarkId::new("keel", "A"), |b| {
        let mut out = [0.0];
        b.iter(|| {
            i = (i + 1) % 256;
            keel.predict_row(black_box(&x[i * f..(i + 1) * f]), &mut out)
                .unwrap();
            black_box(out[0])
        })
    });
    g.bench_function(BenchmarkId::new("lightgbm", "A"), |b| {
        b.iter(|| {
            i = (i + 1) % 256;
            black_box(
                lgb.predict_single_row_fast(black_box(&x[i * f..(i + 1) * f]))
                    .unwrap(),
            )
        })
    });
    g.finish();
}

fn batch(c: &mut Criterion) {
    let spec = MODEL_B;
    let text = model_text(&spec);
    let keel = GbdtModel::from_lightgbm_text(&text).unwrap();
    let lgb = lightgbm3::Booster::from_string(&text).unwrap();
    let n = 10_000;
    let x = rows(&spec, n, 42);
    // Same numbers first: the comparison is only fair if both compute the same thing.
    let ours = keel.predict(&x, &PredictOptions::default()).unwrap();
    let theirs = lgb
        .predict_with_params(&x, spec.features as i32, true, "num_threads=1")
        .unwrap();
    assert!(
        ours.iter()
            .zip(&theirs)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "parity"
    );
    let mut g = c.benchmark_group("batch_10k");
    g.sample_size(10);
    g.throughput(Throughput::Elements((n * spec.trees) as u64));
    for threads in [1, 2] {
        let opts = PredictOptions::default().with_threads(threads);
        g.bench_function(BenchmarkId::new(format!("keel_{threads}t"), "B"), |b| {
            b.iter(|| black_box(keel.predict(black_box(&x), &opts).unwrap()))
        });
    }
    g.bench_function(BenchmarkId::new("lightgbm_1t", "B"), |b| {
        b.iter(|| {
            black_box(
                lgb.predict_with_params(black_box(&x), spec.features as i32, true, "num_threads=1")
                    .unwrap(),
            )
        })
    });
    g.finish();
}

fn load(c: &mut Criterion) {
    let text = model_text(&MODEL_B);
    let bytes = GbdtModel::from_lightgbm_text(&text)
        .unwrap()
        .to_bytes()
        .unwrap();
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("keel_binary", "B"), |b| {
        b.iter(|| black_box(GbdtModel::from_bytes(black_box(&bytes)).unwrap()))
    });
    g.bench_function(BenchmarkId::new("keel_from_lightgbm_text", "B"), |b| {
        b.iter(|| black_box(GbdtModel::from_lightgbm_text(black_box(&text)).unwrap()))
    });
    g.bench_function(BenchmarkId::new("lightgbm_from_text", "B"), |b| {
        b.iter(|| black_box(lightgbm3::Booster::from_string(black_box(&text)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, single_row, batch, load);
criterion_main!(benches);
