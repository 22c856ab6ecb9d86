//! Seeded, deterministic training with candle-nn optimisers.

use std::time::Instant;

use candle_core::{DType, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, SGD};

use crate::config::{Head, MlpConfig, OptimizerConfig, TrainConfig};
use crate::model::Mlp;
use crate::rng::{rng, Rng};
use crate::{DeepError, Result};

/// Training or validation rows, row-major.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// `rows x numeric` features.
    pub numeric: Vec<f32>,
    /// `rows x embeddings` category codes.
    pub codes: Vec<u32>,
    /// One target per row: 0/1 (binary), class index (multiclass) or value (regression).
    pub targets: Vec<f32>,
    /// Row count.
    pub rows: usize,
}

/// What the progress callback receives after each epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss, when validation data was given.
    pub valid_loss: Option<f64>,
    /// Validation accuracy (classification heads).
    pub valid_accuracy: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Training throughput.
    pub rows_per_sec: f64,
}

/// Summary of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Every epoch.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights were kept (the best validation loss, else the last).
    pub best_epoch: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

enum Opt {
    AdamW(AdamW),
    Sgd(SGD),
}

impl Opt {
    fn step(&mut self, g: &candle_core::backprop::GradStore) -> Result<()> {
        match self {
            Opt::AdamW(o) => o.step(g)?,
            Opt::Sgd(o) => o.step(g)?,
        }
        Ok(())
    }
    fn set_lr(&mut self, lr: f64) {
        match self {
            Opt::AdamW(o) => o.set_learning_rate(lr),
            Opt::Sgd(o) => o.set_learning_rate(lr),
        }
    }
}

fn check(cfg: &MlpConfig, d: &Dataset, what: &str) -> Result<()> {
    let (f, c) = (cfg.numeric, cfg.embeddings.len());
    if d.numeric.len() != d.rows * f || d.codes.len() != d.rows * c || d.targets.len() != d.rows {
        return Err(DeepError::Shape(format!(
            "{what}: {} rows need {} numeric, {} codes, {} targets",
            d.rows,
            d.rows * f,
            d.rows * c,
            d.rows
        )));
    }
    if d.numeric.iter().any(|x| !x.is_finite()) {
        return Err(DeepError::Data(format!(
            "{what}: numeric features must be finite (impute first)"
        )));
    }
    check_targets(cfg.head, &d.targets, what)
}

/// Every target is valid for the head: 0/1, a class index, or a finite value.
pub(crate) fn check_targets(head: Head, targets: &[f32], what: &str) -> Result<()> {
    for &t in targets {
        let ok = match head {
            Head::Binary => t == 0.0 || t == 1.0,
            Head::Multiclass { classes } => t >= 0.0 && t.fract() == 0.0 && (t as usize) < classes,
            Head::Regression => t.is_finite(),
        };
        if !ok {
            return Err(DeepError::Data(format!(
                "{what}: target {t} invalid for {head:?}"
            )));
        }
    }
    Ok(())
}

fn batch_tensors(m: &Mlp, d: &Dataset, idx: &[usize]) -> Result<(Tensor, Vec<Tensor>, Vec<f32>)> {
    let (f, c) = (m.cfg.numeric, m.cfg.embeddings.len());
    let mut num = Vec::with_capacity(idx.len() * f);
    let mut codes = Vec::with_capacity(idx.len() * c);
    let mut y = Vec::with_capacity(idx.len());
    for &i in idx {
        num.extend_from_slice(&d.numeric[i * f..(i + 1) * f]);
        codes.extend_from_slice(&d.codes[i * c..(i + 1) * c]);
        y.push(d.targets[i]);
    }
    let (x, cs) = m.inputs(&num, &codes, idx.len())?;
    Ok((x, cs, y))
}

/// Weighted loss of logits against targets (binary cross-entropy with logits, cross-entropy,
/// or squared error).
fn loss(head: Head, logits: &Tensor, y: &[f32], class_w: Option<&[f64]>) -> Result<Tensor> {
    let n = y.len();
    let w: Vec<f32> = y
        .iter()
        .map(|t| class_w.map_or(1.0, |cw| cw.get(*t as usize).copied().unwrap_or(1.0) as f32))
        .collect();
    let wsum: f32 = w.iter().sum();
    let wt = Tensor::from_vec(w, n, crate::device())?;
    let per = match head {
        Head::Binary => {
            let z = logits.flatten_all()?;
            let yt = Tensor::from_slice(y, n, crate::device())?;
            // max(z, 0) - z y + log(1 + exp(-|z|))
            let soft = ((z.abs()?.neg()?.exp()? + 1.0)?).log()?;
            ((z.relu()? - (&z * &yt)?)? + soft)?
        }
        Head::Multiclass { .. } => {
            let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
            let idx: Vec<u32> = y.iter().map(|t| *t as u32).collect();
            let it = Tensor::from_vec(idx, (n, 1), crate::device())?;
            logp.gather(&it, 1)?.flatten_all()?.neg()?
        }
        Head::Regression => {
            let yt = Tensor::from_slice(y, n, crate::device())?;
            (logits.flatten_all()? - yt)?.sqr()?
        }
    };
    Ok(((per * wt)?.sum_all()? / f64::from(wsum.max(1e-12)))?)
}

/// Which rows a forward pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    Train,
    Valid,
}

/// A forward pass over rows `idx` of a split: `(logits, targets)`; `Some(rng)` in training
/// (dropout), `None` in evaluation.
pub(crate) type Forward<'a> =
    dyn FnMut(Split, &[usize], Option<&mut Rng>) -> Result<(Tensor, Vec<f32>)> + 'a;

fn evaluate(
    head: Head,
    rows: usize,
    forward: &mut Forward<'_>,
    class_w: Option<&[f64]>,
) -> Result<(f64, Option<f64>)> {
    let idx: Vec<usize> = (0..rows).collect();
    let mut total = 0.0;
    let mut hits = 0usize;
    for chunk in idx.chunks(4096) {
        let (logits, y) = forward(Split::Valid, chunk, None)?;
        let l: f32 = loss(head, &logits, &y, class_w)?.to_scalar()?;
        total += f64::from(l) * chunk.len() as f64;
        let p: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        for (row, t) in p.iter().zip(&y) {
            let pred = match head {
                Head::Binary => f32::from(u8::from(row[0] >= 0.0)),
                Head::Multiclass { .. } => {
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
                        )
                        .0 as f32
                }
                Head::Regression => f32::NAN,
            };
            hits += usize::from(pred == *t);
        }
    }
    let acc = (!matches!(head, Head::Regression)).then(|| hits as f64 / rows.max(1) as f64);
    Ok((total / rows.max(1) as f64, acc))
}

/// Trains a fresh model of `cfg`. Deterministic: the same data, configs and seed give
/// bit-identical weights and reports (on the same thread count). `progress` is called after
/// every epoch.
pub fn train(
    cfg: MlpConfig,
    tc: &TrainConfig,
    data: &Dataset,
    valid: Option<&Dataset>,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<(Mlp, TrainReport)> {
    check(&cfg, data, "train")?;
    if let Some(v) = valid {
        check(&cfg, v, "valid")?;
    }
    let head = cfg.head;
    let mut model = Mlp::new(cfg, tc.seed)?;
    let report = {
        let m = &model;
        let mut forward = |split: Split, idx: &[usize], rng: Option<&mut Rng>| {
            let d = match (split, valid) {
                (Split::Valid, Some(v)) => v,
                _ => data,
            };
            let (x, c, y) = batch_tensors(m, d, idx)?;
            Ok((m.forward(&x, &c, rng)?, y))
        };
        fit(
            m.vars(),
            head,
            tc,
            data.rows,
            valid.map(|v| v.rows),
            &mut forward,
            progress,
        )?
    };
    model.repack()?;
    Ok((model, report))
}

/// The training loop shared by every architecture: seeded shuffling, optimiser, warm-up +
/// cosine schedule, gradient clipping, class weights, validation, early stopping (the best
/// epoch's weights are restored into `vars`).
pub(crate) fn fit(
    vars: Vec<candle_core::Var>,
    head: Head,
    tc: &TrainConfig,
    rows: usize,
    valid_rows: Option<usize>,
    forward: &mut Forward<'_>,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<TrainReport> {
    if tc.batch_size == 0 || tc.epochs == 0 || rows == 0 {
        return Err(DeepError::Config(
            "epochs, batch_size and rows must be > 0".into(),
        ));
    }
    if let Some(w) = &tc.class_weights {
        let need = match head {
            Head::Regression => 0,
            h => h.outputs().max(2),
        };
        if w.len() != need || w.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(DeepError::Config(format!(
                "class_weights needs {need} non-negative values"
            )));
        }
    }
    let mut rng = rng(tc.seed.wrapping_add(1));
    let (peak, mut opt) = match tc.optimizer {
        OptimizerConfig::AdamW { lr, weight_decay } => (
            lr,
            Opt::AdamW(AdamW::new(
                vars.clone(),
                ParamsAdamW {
                    lr,
                    weight_decay,
                    ..ParamsAdamW::default()
                },
            )?),
        ),
        OptimizerConfig::Sgd { lr } => (lr, Opt::Sgd(SGD::new(vars.clone(), lr)?)),
    };
    let steps_per_epoch = rows.div_ceil(tc.batch_size);
    let total = (steps_per_epoch * tc.epochs).max(1);
    let lr_at = |s: usize| -> f64 {
        if s < tc.warmup_steps {
            peak * (s + 1) as f64 / tc.warmup_steps as f64
        } else {
            let p = (s - tc.warmup_steps) as f64 / (total - tc.warmup_steps).max(1) as f64;
            peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos()))
        }
    };
    let cw = tc.class_weights.as_deref();
    let mut report = TrainReport {
        epochs: Vec::new(),
        best_epoch: 0,
        stopped_early: false,
    };
    let mut best: Option<(f64, Vec<Tensor>)> = None;
    let mut stale = 0usize;
    let mut step = 0usize;
    let mut order: Vec<usize> = (0..rows).collect();
    for epoch in 1..=tc.epochs {
        let t0 = Instant::now();
        rng.shuffle(&mut order);
        let mut sum = 0.0;
        let mut lr = peak;
        for chunk in order.chunks(tc.batch_size) {
            lr = lr_at(step);
            opt.set_lr(lr);
            let (logits, y) = forward(Split::Train, chunk, Some(&mut rng))?;
            let l = loss(head, &logits, &y, cw)?;
            sum += f64::from(l.to_scalar::<f32>()?) * chunk.len() as f64;
            let mut grads = l.backward()?;
            if let Some(clip) = tc.clip_norm {
                let mut sq = 0.0f64;
                for v in &vars {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
                    }
                }
                let norm = sq.sqrt();
                if norm > clip {
                    let f = clip / (norm + 1e-6);
                    for v in &vars {
                        if let Some(g) = grads.remove(v.as_tensor()) {
                            grads.insert(v.as_tensor(), (g * f)?);
                        }
                    }
                }
            }
            opt.step(&grads)?;
            step += 1;
        }
        let (valid_loss, valid_accuracy) = match valid_rows {
            Some(n) => {
                let (l, a) = evaluate(head, n, forward, cw)?;
                (Some(l), a)
            }
            None => (None, None),
        };
        let rep = EpochReport {
            epoch,
            train_loss: sum / rows as f64,
            valid_loss,
            valid_accuracy,
            lr,
            rows_per_sec: rows as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        };
        progress(&rep);
        report.epochs.push(rep);
        report.best_epoch = epoch;
        if let (Some(es), Some(vl)) = (tc.early_stopping, valid_loss) {
            let improved = best.as_ref().is_none_or(|(b, _)| b - vl > es.min_delta);
            if improved {
                let snap = vars
                    .iter()
                    .map(|v| v.as_tensor().copy())
                    .collect::<candle_core::Result<Vec<_>>>()?;
                best = Some((vl, snap));
                stale = 0;
            } else {
                stale += 1;
                if stale >= es.patience {
                    report.stopped_early = true;
                    break;
                }
            }
        }
    }
    if let Some((_, snap)) = best {
        for (v, t) in vars.iter().zip(snap) {
            v.set(&t)?;
        }
        report.best_epoch = report.epochs.len() - stale;
    }
    Ok(report)
}
