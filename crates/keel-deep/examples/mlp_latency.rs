//! Latency harness: keel-deep against onnxruntime on the same MLP (32 -> 256 -> 256 -> 1, f32),
//! in the same run. onnxruntime is driven by `tests/fixtures/onnxruntime_mlp.py` (the peer
//! script), which exports keel's safetensors weights to ONNX.
//!
//! `cargo run --release -p keel-deep --example mlp_latency` (needs `scripts/python-env.sh`;
//! `KEEL_PYTHON` overrides the interpreter).

use keel_deep::{Head, Mlp, MlpConfig};
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = MlpConfig {
        numeric: 32,
        embeddings: vec![],
        hidden: vec![256, 256],
        layer_norm: false,
        residual: false,
        dropout: 0.0,
        head: Head::Binary,
    };
    let model = Mlp::new(cfg.clone(), 1)?;
    let dir = std::env::temp_dir().join(format!("keel-mlp-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (_, weights) = model.to_parts(BTreeMap::new())?;
    std::fs::write(dir.join("w.safetensors"), &weights)?;
    std::fs::write(dir.join("cfg.json"), serde_json::to_vec(&cfg)?)?;

    // keel: one example on the packed path.
    let x: Vec<f32> = (0..32).map(|i| -1.0 + 2.0 * i as f32 / 31.0).collect();
    let mut out = [0f32];
    for _ in 0..2_000 {
        model.predict_one(&x, &[], &mut out)?;
    }
    let mut lat: Vec<u128> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            model.predict_one(&x, &[], &mut out).expect("scores");
            t.elapsed().as_nanos()
        })
        .collect();
    lat.sort_unstable();
    let (p50, p99) = (lat[10_000] as f64 / 1e3, lat[19_800] as f64 / 1e3);
    // keel: batch 1024 through candle (1 thread) and through the packed path.
    let batch: Vec<f32> = (0..1024 * 32)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    // Median of 5 rounds of 100 batches (the peer script measures the same way).
    let rate = |f: &dyn Fn()| {
        for _ in 0..20 {
            f();
        }
        let mut rates: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..100 {
                    f();
                }
                1024.0 * 100.0 / t.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        rates[2]
    };
    let candle_1t = rate(&|| {
        model
            .predict_batch_candle(&batch, &[], 1024)
            .expect("scores");
    });
    let packed_1t = rate(&|| {
        model.predict_batch(&batch, &[], 1024).expect("scores");
    });
    let packed_2t = rate(&|| {
        model
            .predict_batch_threads(&batch, &[], 1024, 2)
            .expect("scores");
    });

    // The peer, same machine, same run.
    let python = std::env::var("KEEL_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/keel/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/onnxruntime_mlp.py"
    );
    let o = std::process::Command::new(&python)
        .arg(script)
        .arg(dir.join("w.safetensors"))
        .arg(dir.join("cfg.json"))
        .arg("bench")
        .output()?;
    if !o.status.success() {
        return Err(format!("peer failed: {}", String::from_utf8_lossy(&o.stderr)).into());
    }
    let ort: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let f = |k: &str| ort[k].as_f64().unwrap_or(f64::NAN);
    println!("MLP 32-256-256-1 f32, onnxruntime {}", ort["onnxruntime"]);
    println!("| measure | keel | onnxruntime | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| one example p50 | {p50:.2} us | {:.2} us | {:.2}x faster |",
        f("one_p50_us"),
        f("one_p50_us") / p50
    );
    println!(
        "| one example p99 | {p99:.2} us | {:.2} us | {:.2}x faster |",
        f("one_p99_us"),
        f("one_p99_us") / p99
    );
    println!(
        "| batch 1024, 1 thread (candle) | {:.0} rows/s | {:.0} rows/s | {:.2}x |",
        candle_1t,
        f("batch1024_rows_per_s_1t"),
        candle_1t / f("batch1024_rows_per_s_1t")
    );
    println!(
        "| batch 1024, 1 thread (packed) | {:.0} rows/s | {:.0} rows/s | {:.2}x |",
        packed_1t,
        f("batch1024_rows_per_s_1t"),
        packed_1t / f("batch1024_rows_per_s_1t")
    );
    println!(
        "| batch 1024, 2 threads (packed) | {:.0} rows/s | {:.0} rows/s | {:.2}x |",
        packed_2t,
        f("batch1024_rows_per_s_2t"),
        packed_2t / f("batch1024_rows_per_s_2t")
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
