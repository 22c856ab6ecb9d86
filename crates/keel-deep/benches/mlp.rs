//! Criterion bench of the reference MLP (32 -> 256 -> 256 -> 1, f32): one example on the packed
//! path and through candle; a 1024-row batch through candle and on the packed path (1 and 2
//! threads). The comparison with
//! onnxruntime in the same run is `cargo run --release -p keel-deep --example mlp_latency`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_deep::{Head, Mlp, MlpConfig};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let cfg = MlpConfig {
        numeric: 32,
        embeddings: vec![],
        hidden: vec![256, 256],
        layer_norm: false,
        residual: false,
        dropout: 0.0,
        head: Head::Binary,
    };
    let m = Mlp::new(cfg, 1).expect("model");
    let x: Vec<f32> = (0..32).map(|i| -1.0 + 2.0 * i as f32 / 31.0).collect();
    let batch: Vec<f32> = (0..1024 * 32)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut g = c.benchmark_group("mlp_32_256_256_1");
    g.bench_function("one_example_packed", |b| {
        let mut out = [0f32];
        b.iter(|| m.predict_one(black_box(&x), &[], &mut out).expect("scores"))
    });
    g.bench_function("one_example_candle", |b| {
        b.iter(|| {
            m.predict_batch_candle(black_box(&x), &[], 1)
                .expect("scores")
        })
    });
    g.throughput(Throughput::Elements(1024));
    g.bench_function("batch_1024_candle", |b| {
        b.iter(|| {
            m.predict_batch_candle(black_box(&batch), &[], 1024)
                .expect("scores")
        })
    });
    for threads in [1, 2] {
        g.bench_function(format!("batch_1024_packed_{threads}t"), |b| {
            b.iter(|| {
                m.predict_batch_threads(black_box(&batch), &[], 1024, threads)
                    .expect("scores")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
