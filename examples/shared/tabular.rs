//! The tabular model of the serving examples (`v2_load`, `resilience`): 100 LightGBM trees over
//! 10 features `f0..f9` of a fixed rule, trained through a tracked job, registered and made
//! champion.

use anyhow::{Context, Result};
use keel::core::Frame;
use keel::registry::Registry;
use keel::train::{TrainingData, TrainingJob};

/// Features per row.
pub const FEATURES: usize = 10;

/// Feature `f` of row `r`: deterministic, spread over `[0, 1 + f)`.
pub fn value(r: usize, f: usize) -> f64 {
    ((r * 7919 + f * 104_729) % 10_007) as f64 / 10_007.0 * (1.0 + f as f64)
}

/// Trains on 20,000 rows, registers `model` in `registry` and points `champion` at it; returns
/// the version.
pub fn train(registry: &Registry, experiment: &str, model: &str) -> Result<u32> {
    let names: Vec<String> = (0..FEATURES).map(|f| format!("f{f}")).collect();
    let mut csv = names.join(",") + ",label\n";
    for r in 0..20_000 {
        let v: Vec<f64> = (0..FEATURES).map(|f| value(r, f)).collect();
        let y = u8::from(v[0] + v[3] * 0.5 - v[7] * 0.2 + (v[1] * 3.0).sin() > 1.2);
        let row: Vec<String> = v.iter().map(|x| format!("{x:.5}")).collect();
        csv += &format!("{},{y}\n", row.join(","));
    }
    let frame = Frame::from_csv_reader(csv.as_bytes(), None)?;
    let mut job = format!(
        "experiment = \"{experiment}\"\nmodel = \"{model}\"\nlabel = \"label\"\nparams = {{ objective = \"binary\", num_iterations = 100, num_leaves = 31 }}\n"
    );
    for n in &names {
        job += &format!("[[transform.columns]]\ncolumn = \"{n}\"\n");
    }
    let out = TrainingJob::from_toml(&job)?.run(registry, &TrainingData::from_frame(frame))?;
    let v = out.version.context("the job registered no version")?;
    registry.set_alias(model, "champion", v.version, experiment)?;
    Ok(v.version)
}
