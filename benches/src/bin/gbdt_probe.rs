//! Quick timing probe for keel-gbdt (no peer): ns per tree-row on model B batches and per row on
//! model A. For iterating on the scorer; the criterion bench is the reference.
use keel_benches::{model_text, rows, MODEL_A, MODEL_B};
use keel_gbdt::{GbdtModel, PredictOptions};
use std::time::Instant;

fn main() {
    // `KEEL_PROBE_SINGLE=SECONDS`: only model A's single row, for that long (for a profiler).
    if let Some(secs) = std::env::var("KEEL_PROBE_SINGLE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        let a = GbdtModel::from_lightgbm_text(&model_text(&MODEL_A)).expect("model A");
        let xa = rows(&MODEL_A, 256, 99);
        let mut out = [0.0];
        let (t, mut n) = (Instant::now(), 0u64);
        while t.elapsed().as_secs_f64() < secs {
            for r in 0..256 {
                a.predict_row(std::hint::black_box(&xa[r * 10..r * 10 + 10]), &mut out)
                    .expect("row");
            }
            n += 256;
        }
        println!(
            "A single row: {:.0} ns ({n} rows)",
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        );
        return;
    }
    let b = GbdtModel::from_lightgbm_text(&model_text(&MODEL_B)).expect("model B");
    let i = b.info();
    println!(
        "B: {} trees, {} leaves, max depth {}",
        i.num_trees, i.num_leaves, i.max_depth
    );
    let x = rows(&MODEL_B, 10_000, 42);
    let opts = PredictOptions::default();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(b.predict(&x, &opts).expect("predict"));
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "B batch 10k: {:.2} ns/tree-row",
        best * 1e9 / (10_000.0 * 1000.0)
    );
    // `KEEL_PROBE_LGB=1`: load LightGBM's booster too, as the criterion bench does.
    let _lgb = std::env::var_os("KEEL_PROBE_LGB")
        .map(|_| lightgbm3::Booster::from_string(&model_text(&MODEL_B)).expect("booster"));
    let two = PredictOptions::default().with_threads(2);
    let mut all = Vec::new();
    let reps: usize = std::env::var("KEEL_PROBE_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(b.predict(&x, &two).expect("predict"));
        all.push(t.elapsed().as_secs_f64() * 1e3);
    }
    all.sort_by(f64::total_cmp);
    let best2 = all[0] / 1e3;
    println!(
        "2 threads, ms per batch: min {:.1} median {:.1} max {:.1}",
        all[0],
        all[all.len() / 2],
        all[all.len() - 1]
    );
    println!(
        "B batch 10k, 2 threads: {:.2} ns/tree-row ({:.2}x)",
        best2 * 1e9 / (10_000.0 * 1000.0),
        best / best2
    );
    let a = GbdtModel::from_lightgbm_text(&model_text(&MODEL_A)).expect("model A");
    let xa = rows(&MODEL_A, 256, 99);
    let mut out = [0.0];
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        for i in 0..256 * 20 {
            let r = i % 256;
            a.predict_row(std::hint::black_box(&xa[r * 10..r * 10 + 10]), &mut out)
                .expect("row");
        }
        best = best.min(t.elapsed().as_secs_f64() / (256.0 * 20.0));
    }
    println!("A single row: {:.0} ns", best * 1e9);
    let xb = rows(&MODEL_A, 10_000, 42);
    let t = Instant::now();
    std::hint::black_box(a.predict(&xb, &opts).expect("predict"));
    println!(
        "A batch 10k: {:.2} ns/tree-row",
        t.elapsed().as_secs_f64() * 1e9 / (10_000.0 * 100.0)
    );
}
