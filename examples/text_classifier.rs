//! # Text classification with a candle sequence model
//!
//! Routes support tickets to billing, shipping or technical queues. The corpus is generated
//! (`keel::deep::ticket_corpus`: short texts mixing class keywords, filler words and some
//! cross-class noise, 3% of labels flipped), so the example runs offline and the same everywhere.
//!
//! 1. Tokenize without a vocabulary file: lower-cased words hashed into 4096 ids.
//! 2. Train a small transformer encoder (2 layers, 4 heads, width 64) with AdamW, warm-up and
//!    cosine decay, gradient clipping and early stopping on the validation loss; every epoch
//!    reports through a callback (here: a progress line).
//! 3. Save the model (safetensors + manifest), load it back, check the scores are identical.
//! 4. Route a few new tickets.
//!
//! `cargo run --release -p keel-examples --example text_classifier`

use anyhow::Result;
use keel::deep::{
    ticket_corpus, train_text, EarlyStopping, Head, OptimizerConfig, Pooling, SeqConfig, SeqModel,
    TextData, Tokenizer, TrainConfig,
};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

const QUEUES: [&str; 3] = ["billing", "shipping", "technical"];

fn main() -> Result<()> {
    let (texts, labels) = ticket_corpus(4000, 1);
    let (valid_texts, valid_labels) = ticket_corpus(800, 2);
    let (test_texts, test_labels) = ticket_corpus(800, 3);
    println!(
        "corpus: {} train, {} valid, {} test tickets, e.g.",
        texts.len(),
        valid_texts.len(),
        test_texts.len()
    );
    for (t, l) in texts.iter().zip(&labels).take(3) {
        println!("  [{}] {t}", QUEUES[*l as usize]);
    }

    let cfg = SeqConfig {
        tokenizer: Tokenizer::HashedWords { buckets: 4096 },
        max_len: 32,
        d_model: 64,
        heads: 4,
        layers: 2,
        ff: 128,
        dropout: 0.1,
        pooling: Pooling::Mean,
        head: Head::Multiclass { classes: 3 },
    };
    let tc = TrainConfig {
        optimizer: OptimizerConfig::AdamW {
            lr: 3e-3,
            weight_decay: 0.01,
        },
        epochs: 12,
        batch_size: 64,
        warmup_steps: 50,
        clip_norm: Some(1.0),
        early_stopping: Some(EarlyStopping {
            patience: 3,
            min_delta: 1e-4,
        }),
        class_weights: None,
        seed: 42,
    };
    let t0 = Instant::now();
    let (model, report) = train_text(
        cfg,
        &tc,
        TextData {
            texts: &texts,
            targets: &labels,
        },
        Some(TextData {
            texts: &valid_texts,
            targets: &valid_labels,
        }),
        &mut |e| {
            let done = e.epoch * 30 / tc.epochs;
            let line = format!(
                "  [{}{}] epoch {:>2}/{} loss {:.3} valid loss {:.3} acc {:.3} ({:.0} texts/s)",
                "#".repeat(done),
                ".".repeat(30 - done),
                e.epoch,
                tc.epochs,
                e.train_loss,
                e.valid_loss.unwrap_or(f64::NAN),
                e.valid_accuracy.unwrap_or(f64::NAN),
                e.rows_per_sec
            );
            // Redrawn in place on a terminal; one line per epoch in a log.
            if std::io::stdout().is_terminal() {
                print!("\r{line}");
                let _ = std::io::stdout().flush();
            } else {
                println!("{line}");
            }
        },
    )?;
    if std::io::stdout().is_terminal() {
        println!();
    }
    println!(
        "trained in {:.1} s; kept epoch {} of {}{}",
        t0.elapsed().as_secs_f64(),
        report.best_epoch,
        report.epochs.len(),
        if report.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );

    let refs: Vec<&str> = test_texts.iter().map(String::as_str).collect();
    let p = model.predict_texts(&refs)?;
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
            )
            .0
    };
    let hits = p
        .chunks(3)
        .zip(&test_labels)
        .filter(|(row, y)| argmax(row) == **y as usize)
        .count();
    println!(
        "test accuracy {:.3} on {} held-out tickets (3% of labels are flipped on purpose)",
        hits as f64 / test_labels.len() as f64,
        test_labels.len()
    );

    let (manifest, weights) = model.to_parts(BTreeMap::from([(
        "task".to_string(),
        "ticket routing".to_string(),
    )]))?;
    let (loaded, meta) = SeqModel::from_parts(&manifest, &weights)?;
    assert_eq!(
        loaded.predict_texts(&refs)?,
        p,
        "a loaded model scores identically"
    );
    println!(
        "saved: {} KiB of safetensors + {} B manifest ({meta:?}); reloaded scores are bit-identical",
        weights.len() / 1024,
        manifest.len()
    );

    for t in [
        "I was charged twice for my subscription",
        "the parcel never arrived and tracking is stuck",
        "app crashes at login after the update",
    ] {
        let p = loaded.predict_texts(&[t])?;
        let q = argmax(&p);
        println!("  {:<48} -> {} ({:.2})", t, QUEUES[q], p[q]);
    }
    Ok(())
}
