//! Evaluation metrics, defined as scikit-learn defines them (parity tests on committed
//! fixtures): ties, clipping and degenerate inputs behave the same.

use crate::{MonitorError, Result};

fn check(what: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(MonitorError::Metric(format!(
            "{what}: {a} labels for {b} predictions"
        )));
    }
    if a == 0 {
        return Err(MonitorError::Metric(format!("{what}: no rows")));
    }
    Ok(())
}

fn binary_labels(what: &str, y: &[f64]) -> Result<(usize, usize)> {
    let mut pos = 0;
    for &v in y {
        if v == 1.0 {
            pos += 1;
        } else if v != 0.0 {
            return Err(MonitorError::Metric(format!(
                "{what}: label {v} is not 0 or 1"
            )));
        }
    }
    Ok((pos, y.len() - pos))
}

/// Area under the ROC curve (`roc_auc_score`): the probability that a random positive scores
/// above a random negative, ties counting one half. Needs both classes.
pub fn roc_auc(y: &[f64], score: &[f64]) -> Result<f64> {
    check("roc_auc", y.len(), score.len())?;
    let (pos, neg) = binary_labels("roc_auc", y)?;
    if pos == 0 || neg == 0 {
        return Err(MonitorError::Metric(
            "roc_auc: only one class present".into(),
        ));
    }
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    // Sum of mid-ranks of positives (Mann-Whitney U).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        let p = idx[i..=j].iter().filter(|&&k| y[k] == 1.0).count();
        rank_sum += mid * p as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (`average_precision_score`): the precision at each distinct threshold,
/// weighted by the recall gained there (no interpolation).
pub fn average_precision(y: &[f64], score: &[f64]) -> Result<f64> {
    check("average_precision", y.len(), score.len())?;
    let (pos, _) = binary_labels("average_precision", y)?;
    if pos == 0 {
        return Err(MonitorError::Metric(
            "average_precision: no positive label".into(),
        ));
    }
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if y[k] == 1.0 {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j + 1;
    }
    Ok(ap)
}

/// Binary log loss (`log_loss`), probabilities clipped to `[eps, 1 - eps]` with the f64
/// machine epsilon.
pub fn log_loss(y: &[f64], p: &[f64]) -> Result<f64> {
    check("log_loss", y.len(), p.len())?;
    binary_labels("log_loss", y)?;
    let eps = f64::EPSILON;
    let mut s = 0.0;
    for (&t, &q) in y.iter().zip(p) {
        if q.is_nan() {
            return Err(MonitorError::Metric("log_loss: NaN probability".into()));
        }
        let q = q.clamp(eps, 1.0 - eps);
        s -= if t == 1.0 { q.ln() } else { (1.0 - q).ln() };
    }
    Ok(s / y.len() as f64)
}

/// Multiclass log loss: `p` is row-major `n x k`, rows renormalised to sum to 1 after
/// clipping (as scikit-learn does); labels are class indices.
pub fn log_loss_multiclass(y: &[usize], p: &[f64], k: usize) -> Result<f64> {
    check("log_loss", y.len() * k, p.len())?;
    let eps = f64::EPSILON;
    let mut s = 0.0;
    for (i, &t) in y.iter().enumerate() {
        if t >= k {
            return Err(MonitorError::Metric(format!("log_loss: class {t} >= {k}")));
        }
        let row = &p[i * k..(i + 1) * k];
        let total: f64 = row.iter().map(|q| q.clamp(eps, 1.0 - eps)).sum();
        s -= (row[t].clamp(eps, 1.0 - eps) / total).ln();
    }
    Ok(s / y.len() as f64)
}

/// Share of rows whose predicted class (`p >= threshold`) equals the label.
pub fn accuracy(y: &[f64], p: &[f64], threshold: f64) -> Result<f64> {
    check("accuracy", y.len(), p.len())?;
    let hits = y
        .iter()
        .zip(p)
        .filter(|(t, q)| (**q >= threshold) == (**t == 1.0))
        .count();
    Ok(hits as f64 / y.len() as f64)
}

/// Multiclass accuracy: argmax of each row of `p` (`n x k`, first maximum wins).
pub fn accuracy_multiclass(y: &[usize], p: &[f64], k: usize) -> Result<f64> {
    check("accuracy", y.len() * k, p.len())?;
    let hits = y
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            let row = &p[i * k..(i + 1) * k];
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = j;
                }
            }
            best == **t
        })
        .count();
    Ok(hits as f64 / y.len() as f64)
}

/// Root mean squared error.
pub fn rmse(y: &[f64], p: &[f64]) -> Result<f64> {
    check("rmse", y.len(), p.len())?;
    let s: f64 = y.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum();
    Ok((s / y.len() as f64).sqrt())
}

/// Mean absolute error.
pub fn mae(y: &[f64], p: &[f64]) -> Result<f64> {
    check("mae", y.len(), p.len())?;
    let s: f64 = y.iter().zip(p).map(|(a, b)| (a - b).abs()).sum();
    Ok(s / y.len() as f64)
}

/// NDCG@k of one query (`ndcg_score` with linear gains, `1/log2(rank+1)` discounts and tied
/// scores averaged); 0 when every relevance is 0.
pub fn ndcg_at_k(relevance: &[f64], score: &[f64], k: usize) -> Result<f64> {
    check("ndcg", relevance.len(), score.len())?;
    let n = relevance.len();
    let discount = |r: usize| {
        if r < k {
            1.0 / ((r + 2) as f64).log2()
        } else {
            0.0
        }
    };
    // Ideal DCG: relevances sorted descending.
    let mut ideal: Vec<f64> = relevance.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal.iter().enumerate().map(|(r, g)| g * discount(r)).sum();
    if idcg == 0.0 {
        return Ok(0.0);
    }
    // DCG with ties: each group of equal scores shares its mean gain over its discount span.
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let mut dcg = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let gain: f64 = idx[i..=j].iter().map(|&q| relevance[q]).sum::<f64>() / (j - i + 1) as f64;
        let disc: f64 = (i..=j).map(discount).sum();
        dcg += gain * disc;
        i = j + 1;
    }
    Ok(dcg / idcg)
}

/// Mean NDCG@k over queries given as consecutive groups of `sizes`.
pub fn ndcg_grouped(relevance: &[f64], score: &[f64], sizes: &[usize], k: usize) -> Result<f64> {
    check("ndcg", relevance.len(), score.len())?;
    if sizes.iter().sum::<usize>() != relevance.len() || sizes.is_empty() {
        return Err(MonitorError::Metric(
            "ndcg: group sizes do not cover the rows".into(),
        ));
    }
    let mut at = 0;
    let mut total = 0.0;
    for &s in sizes {
        total += ndcg_at_k(&relevance[at..at + s], &score[at..at + s], k)?;
        at += s;
    }
    Ok(total / sizes.len() as f64)
}
