//! # Image classification, trained and served like every other model
//!
//! Tells 8x8 pictures of a horizontal bar, a vertical bar and a diagonal apart (generated with
//! noise and random positions, so the example runs offline and the same everywhere).
//!
//! 1. A `TrainingJob` with `kind = "cnn"`: images are the columns `px_0 .. px_63` of the
//!    training frame (channel first); tracked and registered as `shapes` v1.
//! 2. Served over the Open Inference Protocol (`keel serve --model shapes` does the same): an
//!    FP32 `[N, 1, 8, 8]` tensor in, every class's probability out.
//!
//! `cargo run --release -p keel-examples --example image_classifier`

use anyhow::{Context, Result};
use keel::core::{Column, DType, Field, Frame, Validity};
use keel::registry::rollout::Rollout;
use keel::registry::Registry;
use keel::train::{TrainingData, TrainingJob};
use serde_json::json;

#[path = "shared/ask.rs"]
mod ask;

const SHAPES: [&str; 3] = ["horizontal", "vertical", "diagonal"];

const JOB: &str = r#"
experiment = "shapes"
model = "shapes"
label = "shape"
kind = "cnn"
seed = 7

[cnn]
prefix = "px"
[cnn.config]
channels = 1
height = 8
width = 8
conv = [{ filters = 8, kernel = 3, pool = 2 }]
head = { kind = "multiclass", classes = 3 }

[train]
optimizer = { kind = "adam_w", lr = 0.01 }
epochs = 8
batch_size = 32
"#;

/// One 8x8 picture of `shape` at a position drawn from `s`, with noise.
fn picture(shape: usize, s: &mut u64) -> Vec<f32> {
    let mut next = || {
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*s >> 33) as usize
    };
    let at = 1 + next() % 6;
    let mut px = vec![0f32; 64];
    for i in 0..8 {
        let (y, x) = match shape {
            0 => (at, i),
            1 => (i, at),
            _ => (i, i),
        };
        px[y * 8 + x] = 1.0;
    }
    for p in &mut px {
        *p += (next() % 100) as f32 / 400.0;
    }
    px
}

fn main() -> Result<()> {
    let mut s = 1u64;
    let n = 1200;
    let mut cols: Vec<Vec<f64>> = (0..64).map(|_| Vec::with_capacity(n)).collect();
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let shape = i % 3;
        for (c, v) in cols.iter_mut().zip(picture(shape, &mut s)) {
            c.push(f64::from(v));
        }
        labels.push(shape as i64);
    }
    let mut fields: Vec<Field> = (0..64)
        .map(|j| Field::new(format!("px_{j}"), DType::F64))
        .collect();
    fields.push(Field::new("shape", DType::I64));
    let mut columns: Vec<Column> = cols.into_iter().map(|c| Column::F64(c.into())).collect();
    columns.push(Column::I64 {
        values: labels.into(),
        validity: Validity::all_valid(),
    });
    let frame = Frame::new(fields, columns)?;

    let root = std::env::temp_dir().join(format!("keel-images-{}", std::process::id()));
    let registry = Registry::open(root.join("registry"))?;
    let out = TrainingJob::from_toml(JOB)?.run(&registry, &TrainingData::from_frame(frame))?;
    let v = out.version.clone().context("registered")?;
    println!(
        "1. run {}: test accuracy {:.3}; registered shapes v{} (flavor {})",
        out.run.id, out.metrics["test.accuracy"], v.version, v.meta.flavor
    );
    Rollout::new(&registry, "shapes").first_champion(v.version, "first model")?;

    let mut s = 99u64;
    let asks: Vec<f32> = (0..3).flat_map(|k| picture(k, &mut s)).collect();
    let body = json!({"inputs": [{"name": "px", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": asks}]});
    let probs = ask::serve_and_ask(&registry, "shapes", &body)?;
    println!("2. POST /v2/models/shapes/infer (FP32 [3, 1, 8, 8]) -> predict [3, 3]:");
    for (k, row) in probs.chunks(3).enumerate() {
        let (q, p) = ask::best(row);
        println!("   a {} bar -> {} ({p:.2})", SHAPES[k], SHAPES[q]);
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
