//! # Edge scoring: a LightGBM model in a pure-Rust binary
//!
//! Edge devices and small services often need only to score. `keel` with default features
//! off and `gbdt` on is exactly that: keel's pure-Rust GBDT engine, no RocksDB, no LightGBM,
//! no candle, no C/C++ toolchain (CI checks the dependency tree). It loads LightGBM text,
//! XGBoost JSON/UBJSON or keel's own binary format, and gives the same numbers as LightGBM.
//!
//! `cargo run --release -p keel-edge-example --example edge_scoring [MODEL]` — by default it
//! scores a committed LightGBM fixture; it prints the binary's size at the end.
//! (Inside the workspace, `cargo build` unifies features; build this package alone with `-p`
//! to get the small binary.)

use anyhow::{Context, Result};
use keel::gbdt::{GbdtModel, PredictOptions};

fn main() -> Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../crates/keel-gbdt/tests/fixtures/lgb_binary.txt"
        )
        .to_string()
    });
    let t = std::time::Instant::now();
    let model = GbdtModel::from_path(&path).with_context(|| format!("loading {path}"))?;
    let info = model.info();
    println!(
        "loaded {} ({:?}, {} trees, {} features) in {:.2} ms",
        path,
        info.source,
        info.num_trees,
        info.num_features,
        t.elapsed().as_secs_f64() * 1e3
    );

    // One row at a time, no allocation, no thread pool: the request path of an edge service.
    let row: Vec<f64> = (0..model.num_features())
        .map(|i| (i as f64 * 0.37).sin())
        .collect();
    let mut out = vec![0.0; model.num_outputs()];
    let mut lat = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let t = std::time::Instant::now();
        model.predict_row(&row, &mut out)?;
        lat.push(t.elapsed().as_nanos());
    }
    lat.sort_unstable();
    println!(
        "prediction {:?}; one row p50 {} ns, p99 {} ns",
        out, lat[5_000], lat[9_900]
    );

    // A batch on two threads.
    let rows: Vec<f64> = (0..1_000 * model.num_features())
        .map(|i| (i as f64 * 0.011).cos())
        .collect();
    let batch = model.predict(&rows, &PredictOptions::default().with_threads(2))?;
    println!(
        "batch of {} rows scored on 2 threads",
        batch.len() / model.num_outputs()
    );

    let exe = std::env::current_exe()?;
    println!(
        "binary size: {:.1} MiB ({})",
        std::fs::metadata(&exe)?.len() as f64 / (1 << 20) as f64,
        exe.display()
    );
    Ok(())
}
