//! # Text classification, trained and served like every other model
//!
//! Routes support tickets to billing, shipping or technical queues. The corpus is generated
//! (`keel::deep::ticket_corpus`: short texts mixing class keywords, filler words and some
//! cross-class noise, 3% of labels flipped), so the example runs offline and the same everywhere.
//!
//! 1. A `TrainingJob` with `kind = "sequence"`: a small transformer encoder over hashed words,
//!    AdamW with warm-up, clipping and early stopping; params, per-epoch losses, seed and data
//!    hash tracked in a run; the bundle registered as `tickets` v1.
//! 2. Served over the Open Inference Protocol: the same `Deployment` and V2 server as tabular
//!    models (`keel serve --registry ... --model tickets` does the same), texts sent as a BYTES
//!    tensor, every queue's probability back.
//!
//! `cargo run --release -p keel-examples --example text_classifier`

use anyhow::{Context, Result};
use keel::core::{Column, DType, Field, Frame, Validity};
use keel::deep::ticket_corpus;
use keel::registry::rollout::Rollout;
use keel::registry::Registry;
use keel::train::{TrainingData, TrainingJob};
use serde_json::json;

#[path = "shared/ask.rs"]
mod ask;
use std::time::Instant;

const QUEUES: [&str; 3] = ["billing", "shipping", "technical"];

const JOB: &str = r#"
experiment = "tickets"
model = "tickets"
label = "queue"
kind = "sequence"
seed = 42
split = { valid = 0.15, test = 0.15 }

[sequence]
column = "ticket"
[sequence.config]
tokenizer = { kind = "hashed_words", buckets = 4096 }
max_len = 32
d_model = 64
heads = 4
layers = 2
ff = 128
dropout = 0.1
pooling = "mean"
head = { kind = "multiclass", classes = 3 }

[train]
optimizer = { kind = "adam_w", lr = 3e-3, weight_decay = 0.01 }
epochs = 12
batch_size = 64
warmup_steps = 50
clip_norm = 1.0
early_stopping = { patience = 3, min_delta = 1e-4 }
"#;

fn main() -> Result<()> {
    let (texts, labels) = ticket_corpus(5000, 1);
    for (t, l) in texts.iter().zip(&labels).take(3) {
        println!("  [{}] {t}", QUEUES[*l as usize]);
    }
    let frame = Frame::new(
        vec![
            Field::new("ticket", DType::String),
            Field::new("queue", DType::I64),
        ],
        vec![
            Column::String {
                values: texts,
                validity: Validity::all_valid(),
            },
            Column::I64 {
                values: labels.iter().map(|l| *l as i64).collect::<Vec<_>>().into(),
                validity: Validity::all_valid(),
            },
        ],
    )?;

    // 1. Train, track, register.
    let root = std::env::temp_dir().join(format!("keel-text-{}", std::process::id()));
    let registry = Registry::open(root.join("registry"))?;
    let t0 = Instant::now();
    let out = TrainingJob::from_toml(JOB)?.run(&registry, &TrainingData::from_frame(frame))?;
    for p in out
        .run
        .metrics
        .get("epoch.valid.accuracy")
        .into_iter()
        .flatten()
    {
        println!("  epoch {:>2}: valid accuracy {:.3}", p.step, p.value);
    }
    let v = out.version.clone().context("registered")?;
    println!(
        "1. run {} ({:.1}s): test accuracy {:.3}, logloss {:.3}; registered tickets v{} (flavor {})",
        out.run.id,
        t0.elapsed().as_secs_f64(),
        out.metrics["test.accuracy"],
        out.metrics["test.logloss"],
        v.version,
        v.meta.flavor
    );
    Rollout::new(&registry, "tickets").first_champion(v.version, "first model")?;

    // 2. Serve it over V2 and ask.
    let asks = [
        "I was charged twice for my subscription",
        "the parcel never arrived and tracking is stuck",
        "app crashes at login after the update",
    ];
    let body = json!({"inputs": [{"name": "ticket", "shape": [asks.len()], "datatype": "BYTES", "data": asks}]});
    let probs = ask::serve_and_ask(&registry, "tickets", &body)?;
    println!("2. POST /v2/models/tickets/infer (BYTES [3]) -> predict [3, 3]:");
    for (t, row) in asks.iter().zip(probs.chunks(3)) {
        let (q, p) = ask::best(row);
        println!("   {t:<48} -> {} ({p:.2})", QUEUES[q]);
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
